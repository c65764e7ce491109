//! Restart policies and boot against the real binary and kernel: a container's process
//! killed under each policy, on-failure's count, stop/kill/rm during the backoff, what a
//! restart keeps (IP addresses, `network connect`-ed networks, host ports), `restart` of an
//! --rm container, and `system boot` after a simulated reboot.
//!
//! Name space of this file: bridges `rbt-l*`, subnets 10.181.0.0/16, host ports 19500-19599.

use std::time::{Duration, Instant};

use rbox_tests::{alive, kill9, sh, wait_for, Rbox, RboxCli};

const NONE: &str = "--network=none";

fn pid(r: &Rbox, c: &str) -> i32 {
    r.inspect(c, "{{.State.Pid}}").parse().unwrap()
}

fn status(r: &Rbox, c: &str) -> String {
    r.inspect(c, "{{.State.Status}} {{.RestartCount}}")
}

#[test]
fn a_killed_process_comes_back_as_its_policy_says() {
    let r = Rbox::with_busybox("policies");
    for (policy, restarts) in [
        ("no", false),
        ("on-failure", true),
        ("always", true),
        ("unless-stopped", true),
    ] {
        let name = format!("p-{policy}");
        r.ok(&[
            "run",
            "-d",
            NONE,
            "--name",
            &name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ]);
        assert_eq!(
            r.inspect(&name, "{{.HostConfig.RestartPolicy.Name}}"),
            policy
        );
        let first = pid(&r, &name);
        kill9(first);
        if restarts {
            wait_for(&format!("{name} to run again"), 10, || {
                status(&r, &name) == "running 1"
            });
            let second = pid(&r, &name);
            assert!(
                second != first && alive(second),
                "{name}: {first} -> {second}"
            );
        } else {
            wait_for(&format!("{name} to exit"), 10, || {
                status(&r, &name) == "exited 0"
            });
            assert_eq!(r.inspect(&name, "{{.State.ExitCode}}"), "137");
        }
    }
    // Docker's kill is a manual stop: no policy brings the container back.
    let before = pid(&r, "p-always");
    r.ok(&["kill", "p-always"]);
    assert!(!alive(before));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        r.inspect("p-always", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    // A manual start counts from 0 again.
    r.ok(&["start", "p-always"]);
    assert_eq!(status(&r, "p-always"), "running 0");
}

#[test]
fn on_failure_counts_its_retries() {
    let r = Rbox::with_busybox("on-failure");
    let id = r
        .ok(&[
            "run",
            "-d",
            NONE,
            "--restart",
            "on-failure:3",
            "busybox",
            "sh",
            "-c",
            "echo run; exit 3",
        ])
        .trim()
        .to_string();
    // 100 + 200 + 400 ms of backoff, then it stays down.
    wait_for("the retries to run out", 15, || {
        r.inspect(&id, "{{.State.Status}}") == "exited"
    });
    assert_eq!(
        r.inspect(
            &id,
            "{{.RestartCount}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "3 3 3"
    );
    assert_eq!(r.ok(&["logs", &id]).matches("run\n").count(), 4);
    // A clean exit is not a failure.
    let ok = r
        .ok(&[
            "run",
            "-d",
            NONE,
            "--restart",
            "on-failure",
            "busybox",
            "true",
        ])
        .trim()
        .to_string();
    assert_eq!(r.ok(&["wait", &ok]).trim(), "0");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(status(&r, &ok), "exited 0");
    // `wait` returns at the end of a run, as Docker's does, also when a restart follows.
    let w = r
        .ok(&[
            "run",
            "-d",
            NONE,
            "--restart",
            "on-failure:1",
            "busybox",
            "sh",
            "-c",
            "sleep 0.3; exit 4",
        ])
        .trim()
        .to_string();
    assert_eq!(r.ok(&["wait", &w]).trim(), "4");
}

#[test]
fn stop_kill_and_rm_are_obeyed_during_the_backoff() {
    let r = Rbox::with_busybox("backoff");
    let start = |name: &str| {
        r.ok(&[
            "run",
            "-d",
            NONE,
            "--name",
            name,
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ]);
    };
    // After five quick failures the next delay is 3.2 s: the container waits in `restarting`.
    let waiting = |name: &str| {
        wait_for(&format!("{name} to back off"), 20, || {
            let s = status(&r, name);
            s.starts_with("restarting") && s.split(' ').nth(1).unwrap().parse::<u32>().unwrap() >= 5
        });
        let ps = r.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
        assert!(ps.contains(&format!("{name} Restarting (1) ")), "{ps}");
    };
    start("b-stop");
    start("b-kill");
    start("b-rm");
    waiting("b-stop");
    let t = Instant::now();
    r.ok(&["stop", "b-stop"]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let count = r.inspect("b-stop", "{{.RestartCount}}");
    assert_eq!(
        r.inspect(
            "b-stop",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Restarting}}"
        ),
        "exited 1 false"
    );
    waiting("b-kill");
    r.ok(&["kill", "b-kill"]);
    assert_eq!(r.inspect("b-kill", "{{.State.Status}}"), "exited");
    waiting("b-rm");
    let e = r.bad(&["rm", "b-rm"]);
    assert!(e.contains("container is restarting"), "{e}");
    r.ok(&["rm", "-f", "b-rm"]);
    // Nothing restarts them later either.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(r.inspect("b-stop", "{{.RestartCount}}"), count);
    assert_eq!(status(&r, "b-kill").split(' ').next(), Some("exited"));
    assert!(!r.ok(&["ps", "-a"]).contains("b-rm"));
}

/// The test's two user networks `lnet1` and `lnet2`, on bridges rbt-l`first` and the next.
fn networks(r: &Rbox, first: u8) {
    for (n, i) in [("lnet1", first), ("lnet2", first + 1)] {
        r.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.181.{i}.0/24"),
            "-o",
            &format!("com.docker.network.bridge.name=rbt-l{i}"),
            n,
        ]);
    }
}

/// "net=ip net=ip", sorted by network.
fn addresses(r: &Rbox, c: &str) -> String {
    let s = r.inspect(
        c,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
    );
    let mut v: Vec<&str> = s.split_whitespace().collect();
    v.sort();
    v.join(" ")
}

fn http(port: u16) -> String {
    sh(&format!(
        "curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/hostname"
    ))
    .stdout
}

#[test]
fn restarts_keep_addresses_connected_networks_and_ports() {
    let r = Rbox::with_busybox("keeps");
    networks(&r, 1);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "lnet1",
        "-p",
        "19510:80",
        "--restart",
        "always",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    r.ok(&["network", "connect", "lnet2", "web"]);
    let addrs = addresses(&r, "web");
    assert!(
        addrs.contains("lnet1=10.181.1.") && addrs.contains("lnet2=10.181.2."),
        "{addrs}"
    );
    assert_eq!(http(19510), "200");
    // The policy's restart: same sandbox, so same addresses and the port held throughout.
    kill9(pid(&r, "web"));
    wait_for("web to run again", 10, || status(&r, "web") == "running 1");
    assert_eq!(addresses(&r, "web"), addrs);
    assert_eq!(http(19510), "200");
    // `restart` too (and it starts the count over).
    r.ok(&["restart", "-t", "1", "web"]);
    assert_eq!(status(&r, "web"), "running 0");
    assert_eq!(addresses(&r, "web"), addrs);
    assert_eq!(http(19510), "200");
    // stop + start joins every network again.
    r.ok(&["stop", "web"]);
    r.ok(&["start", "web"]);
    let again = addresses(&r, "web");
    assert!(
        again.contains("lnet1=10.181.1.") && again.contains("lnet2=10.181.2."),
        "{again}"
    );
    assert_eq!(http(19510), "200");
    // Connected while stopped: joined at the next start; disconnected: not any more.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "idle",
        "--network",
        "lnet1",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&["stop", "-t", "0", "idle"]);
    r.ok(&["network", "connect", "lnet2", "idle"]);
    let e = r.bad(&["network", "connect", "lnet2", "idle"]);
    assert!(e.contains("already exists"), "{e}");
    r.ok(&["start", "idle"]);
    assert!(addresses(&r, "idle").contains("lnet2=10.181.2."));
    r.ok(&["network", "disconnect", "lnet2", "idle"]);
    r.ok(&["restart", "-t", "0", "idle"]);
    assert!(!addresses(&r, "idle").contains("lnet2"));
    r.ok(&["rm", "-f", "web", "idle"]);
}

#[test]
fn restart_keeps_an_rm_container() {
    let r = Rbox::with_busybox("restart-rm");
    let id = r
        .ok(&["run", "-d", "--rm", NONE, "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let first = pid(&r, &id);
    r.ok(&["restart", "-t", "0", &id]);
    assert_eq!(r.inspect(&id, "{{.State.Status}}"), "running");
    assert_ne!(pid(&r, &id), first);
    r.ok(&["stop", "-t", "0", &id]);
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn boot_after_a_simulated_reboot_applies_dockers_rules() {
    let r = Rbox::with_busybox("boot");
    networks(&r, 3);
    let run = |name: &str, policy: &str, extra: &[&str]| {
        let mut a = vec![
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "--network",
            "lnet1",
        ];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
        r.ok(&a);
    };
    run("b-no", "no", &[]);
    run("b-on-failure", "on-failure", &[]);
    run("b-always", "always", &["-p", "19511:80"]);
    run("b-unless", "unless-stopped", &[]);
    run("b-always-stopped", "always", &[]);
    run("b-unless-stopped", "unless-stopped", &[]);
    r.ok(&["stop", "b-always-stopped", "b-unless-stopped"]);
    r.ok(&[
        "create",
        "--name",
        "b-never",
        "--restart",
        "always",
        NONE,
        "busybox",
        "true",
    ]);
    // The power goes: every process of the root dies at once, the mounts and the bridges go.
    r.kill_everything();
    rbox_tests::unmount_under(&r.root);
    sh("ip link del rbt-l3");
    let booted = r.ok(&["system", "boot"]);
    let mut started: Vec<&str> = booted.lines().collect();
    started.sort();
    assert_eq!(started, ["b-always", "b-always-stopped", "b-unless"]);
    let state = |c: &str| r.inspect(c, "{{.State.Status}}");
    for c in ["b-always", "b-always-stopped", "b-unless"] {
        assert_eq!(state(c), "running", "{c}");
    }
    for c in ["b-no", "b-on-failure", "b-unless-stopped"] {
        assert_eq!(state(c), "exited", "{c}");
    }
    assert_eq!(state("b-never"), "created");
    // The bridge, the rules and the port are back.
    assert_eq!(sh("ip link show rbt-l3").code, 0);
    assert_eq!(http(19511), "200");
    // Booting again starts nothing more.
    assert_eq!(r.ok(&["system", "boot"]), "");
}

#[test]
fn shutdown_stops_everything_without_counting_as_a_stop_by_hand() {
    let r = Rbox::with_busybox("shutdown");
    let run = |name: &str, policy: &str| {
        // PID 1 ignores SIGTERM it has no handler for: only the SIGKILL after -t ends it.
        r.ok(&[
            "run",
            "-d",
            NONE,
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ]);
    };
    run("s-always", "always");
    run("s-unless", "unless-stopped");
    run("s-unless-by-hand", "unless-stopped");
    run("s-no", "no");
    r.ok(&["stop", "-t", "0", "s-unless-by-hand"]);
    let t = Instant::now();
    let out = r.ok(&["system", "shutdown", "-t", "1"]);
    // In parallel: three containers that each need their whole timeout.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let mut stopped: Vec<&str> = out.lines().collect();
    stopped.sort();
    assert_eq!(stopped, ["s-always", "s-no", "s-unless"]);
    for c in ["s-always", "s-unless", "s-no", "s-unless-by-hand"] {
        assert_eq!(r.inspect(c, "{{.State.Status}}"), "exited", "{c}");
    }
    // Nothing comes back by itself (no restart after a shutdown's stop) ...
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.inspect("s-always", "{{.State.Status}}"), "exited");
    // ... and the next boot applies the policies as after a power cut.
    let mut booted: Vec<String> = r
        .ok(&["system", "boot"])
        .lines()
        .map(str::to_string)
        .collect();
    booted.sort();
    assert_eq!(booted, ["s-always", "s-unless"]);
    assert_eq!(r.ok(&["system", "shutdown", "-t", "0"]).lines().count(), 2);
}

#[test]
fn bad_lifecycle_options_leave_nothing() {
    let r = Rbox::with_busybox("bad-restart");
    for (args, msg) in [
        (vec!["--restart", "sometimes"], "unknown policy 'sometimes'"),
        (vec!["--restart", "on-failure:-1"], "cannot be negative"),
        (
            vec!["--restart", "always:3"],
            "only be used with 'on-failure'",
        ),
        (vec!["--restart", "on-failure:x"], "must be an integer"),
        (
            vec!["--rm", "--restart", "always"],
            "Conflicting options: --restart and --rm",
        ),
        (vec!["--stop-signal", "SIGNOPE"], "Invalid signal: SIGNOPE"),
    ] {
        let mut a = vec!["run", "-d", NONE];
        a.extend_from_slice(&args);
        a.extend_from_slice(&["busybox", "true"]);
        let e = r.bad(&a);
        assert!(e.contains(msg), "{args:?}: {e}");
        if args[0] != "--rm" {
            a[0] = "create";
            a.remove(1);
            let e = r.bad(&a);
            assert!(e.contains(msg), "create {args:?}: {e}");
        }
    }
    let e = r.bad(&["kill", "-s", "NOPE", "whatever"]);
    assert!(e.contains("Invalid signal: NOPE"), "{e}");
    let e = r.bad(&["stop", "-s", "NOPE", "whatever"]);
    assert!(e.contains("Invalid signal: NOPE"), "{e}");
    let tar = rbox_tests::image_tar("busybox");
    let e = r.bad(&[
        "import",
        "--change",
        "STOPSIGNAL NOPE",
        tar.to_str().unwrap(),
        "x:y",
    ]);
    assert!(e.contains("Invalid signal: NOPE"), "{e}");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let dirs = std::fs::read_dir(r.root.join("containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(dirs, 0);
    assert_ne!(r.run(&["image", "inspect", "x:y"]).code, 0);
}
