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

/// A firewall setting rbox cannot honour is refused by every command before it does anything
/// (exit 125, one line), whether it comes from `--firewall` or RBOX_FIREWALL.
#[test]
fn bogus_firewall_setting_is_a_usage_error() {
    let r = Rbox::with_busybox("cli-firewall");
    for args in [
        &["--firewall", "bogus", "network", "ls"][..],
        &[
            "--firewall",
            "bogus",
            "run",
            "-d",
            "-p",
            "19001:80",
            "busybox",
            "true",
        ][..],
        &["create", "--firewall", "ipfw", "busybox"][..],
    ] {
        // A usage error of every command, so 125 whatever the command is (`bad` would
        // expect Docker's 1 for the errors of commands other than run/create).
        let err = r.fails(125, args);
        assert_eq!(err.trim().lines().count(), 1, "{err:?}");
        assert!(err.contains("invalid firewall backend"), "{args:?}: {err}");
    }
    let err = r
        .command(&["run", "--rm", "busybox", "true"])
        .env("RBOX_FIREWALL", "bogus")
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.starts_with("Error: invalid firewall backend \"bogus\"")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(
        r.ok(&["ps", "-aq"]),
        "",
        "a refused command made a container"
    );
    assert!(
        !r.root.join("networks").exists(),
        "a refused command made networks"
    );
    // `none` is a valid choice: rbox then writes no rules.
    r.ok(&["--firewall", "none", "network", "ls"]);
}
