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

/// A forced backend whose tool is missing is refused before anything is made; with neither
/// tool, `auto` picks nftables and the first command that needs rules fails with one line and
/// rolls back (no bridge, no network). PATH=/usr/bin holds neither nft nor iptables (both are in
/// /usr/sbin on Debian).
#[test]
fn missing_firewall_tools_fail_with_one_line_and_make_nothing() {
    let r = Rbox::with_busybox("cli-nonft");
    let no_tools = |args: &[&str], fw: &str| {
        r.command(args)
            .env("PATH", "/usr/bin")
            .env("RBOX_FIREWALL", fw)
            .env("RBOX_DEFAULT_BRIDGE", "rbt-f73")
            .env("RBOX_DEFAULT_SUBNET", "10.180.73.0/24")
            .output()
            .unwrap()
    };
    for (fw, tool) in [("nftables", "nft"), ("iptables", "iptables-restore")] {
        let out = no_tools(
            &["run", "-d", "-p", "19081:80", "busybox", "sleep", "9"],
            fw,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert_eq!(
            err.trim(),
            format!("Error: firewall backend {fw}: {tool} not found on PATH")
        );
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "", "a refused run made a container");
    let out = no_tools(
        &[
            "network",
            "create",
            "--subnet",
            "10.180.74.0/24",
            "-o",
            "com.docker.network.bridge.name=rbt-f74",
            "n74",
        ],
        "auto",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // Not a usage error (auto is a valid choice): a daemon-side error of `network create`,
    // which Docker's CLI exits 1 for.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("Error: nftables: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(
        !std::path::Path::new("/sys/class/net/rbt-f74").exists(),
        "the bridge of the refused network is left"
    );
    assert!(!r.ok(&["network", "ls"]).contains("n74"));
}
