//! The command line itself: Docker's exit codes for usage errors, help and version.

use rbox_tests::{Rbox, RboxCli};

#[test]
/// Docker 20.10: a bad flag exits 125 (cobra's flag error func), a missing argument or an
/// unknown command 1 (plain errors of cli/required.go and the root's argument check).
fn usage_errors_exit_125_and_help_exits_0() {
    let r = Rbox::new("cli-usage");
    let err = r.fails(125, &["run", "--no-such-flag", "busybox"]);
    assert!(err.contains("--no-such-flag"), "{err}");
    r.fails(1, &["no-such-command"]);
    r.fails(1, &["stop"]);
    let help = r.ok(&["run", "--help"]);
    assert!(help.contains("Usage: rbox run"), "{help}");
    assert!(r.ok(&["--version"]).starts_with("rbox "));
    let bare = r.run(&[]);
    assert_eq!(bare.code, 0);
    assert!(bare.stderr.contains("Usage: rbox"), "{}", bare.stderr);
    // Nothing was created by the failed commands.
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}
