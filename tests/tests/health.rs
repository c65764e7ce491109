//! Healthchecks run by the container's monitor, against the real binary: the transitions
//! starting -> healthy -> unhealthy -> healthy with a restart policy present that does not act
//! on health, the probe's timeout (and its process killed), the output kept as Docker keeps it,
//! the start period, HEALTHCHECK from the image and the flags over it, `ps` STATUS and
//! `--filter health=`, `--health-on-failure`, and bad input.
//!
//! Name space of this file: roots only (`--network none` everywhere), no bridges or ports.

use std::time::Duration;

use rbox_tests::{wait_for, Rbox, RboxCli};

const NONE: &str = "--network=none";

fn health(r: &Rbox, c: &str) -> serde_json::Value {
    serde_json::from_str(&r.inspect(c, "{{json .State.Health}}")).unwrap()
}

fn status_of(r: &Rbox, c: &str) -> String {
    health(r, c)["Status"].as_str().unwrap_or("").to_string()
}

/// Seconds since midnight of an RFC 3339 UTC time (`2026-12-02T02:14:00.129101567Z`).
fn secs_of_day(t: &serde_json::Value) -> f64 {
    let t = t.as_str().unwrap();
    let h: f64 = t[11..13].parse().unwrap();
    let m: f64 = t[14..16].parse().unwrap();
    let s: f64 = t[17..].trim_end_matches('Z').parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

fn ps_status(r: &Rbox, c: &str) -> String {
    r.ok(&[
        "ps",
        "--filter",
        &format!("name=^{c}$"),
        "--format",
        "{{.Status}}",
    ])
    .trim()
    .to_string()
}

#[test]
fn starting_healthy_unhealthy_and_back_while_the_restart_policy_stays_out_of_it() {
    let r = Rbox::with_busybox("health-cycle");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        NONE,
        "--restart",
        "always",
        "--health-cmd",
        "cat /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = r.inspect("web", "{{.State.Pid}}");
    assert_eq!(status_of(&r, "web"), "starting");
    assert!(
        ps_status(&r, "web").ends_with("(health: starting)"),
        "{}",
        ps_status(&r, "web")
    );
    r.ok(&["exec", "web", "sh", "-c", "echo fine > /tmp/ok"]);
    wait_for("healthy", 10, || status_of(&r, "web") == "healthy");
    assert!(ps_status(&r, "web").ends_with("(healthy)"));
    let h = health(&r, "web");
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["ExitCode"].as_i64(), last["Output"].as_str()),
        (Some(0), Some("fine\n"))
    );
    r.ok(&["exec", "web", "rm", "/tmp/ok"]);
    wait_for("unhealthy", 10, || status_of(&r, "web") == "unhealthy");
    let h = health(&r, "web");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    assert!(ps_status(&r, "web").ends_with("(unhealthy)"));
    assert_eq!(
        r.ok(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}"
        ])
        .trim(),
        "web"
    );
    // Docker's rule: restart policies do not act on health.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        r.inspect("web", "{{.State.Pid}} {{.RestartCount}}"),
        format!("{pid} 0")
    );
    r.ok(&["exec", "web", "touch", "/tmp/ok"]);
    wait_for("healthy again", 10, || status_of(&r, "web") == "healthy");
    let h = health(&r, "web");
    assert_eq!(h["Log"].as_array().unwrap().len(), 5, "{h}");
    assert_eq!(
        r.ok(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"])
            .trim(),
        "web"
    );
    assert_eq!(r.ok(&["ps", "--filter", "health=unhealthy", "-q"]), "");
    // A restart starts over at `starting`, keeping the results.
    r.ok(&["restart", "-t", "0", "web"]);
    assert_eq!(status_of(&r, "web"), "starting");
    assert_eq!(health(&r, "web")["Log"].as_array().unwrap().len(), 5);
    // Each change of status is an event, as dockerd logs it (a restart's `starting` is not).
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let until = until.to_string();
    let ev = r.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        ev,
        "health_status: healthy web\nhealth_status: unhealthy web\nhealth_status: healthy web\n"
    );
}

#[test]
fn the_timeout_kills_the_probe_and_output_is_kept_as_docker_keeps_it() {
    let r = Rbox::with_busybox("health-timeout");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        NONE,
        "--health-cmd",
        "echo started; sleep 30",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1500ms",
        "busybox",
        "sleep",
        "1000",
    ]);
    wait_for("a timed out probe", 15, || {
        health(&r, "slow")["Log"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    let probe = health(&r, "slow")["Log"][0].clone();
    assert_eq!(probe["ExitCode"], -1);
    assert_eq!(probe["Output"], "Health check exceeded timeout (1.5s)");
    let took = secs_of_day(&probe["End"]) - secs_of_day(&probe["Start"]);
    assert!((1.4..5.0).contains(&took), "{took}");
    // The probe's process went with it: only the workload is left in the container.
    std::thread::sleep(Duration::from_millis(300));
    let top = r.ok(&["top", "slow"]);
    assert!(
        !top.contains("sleep 30") || top.matches("sleep 30").count() <= 1,
        "{top}"
    );

    r.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        NONE,
        "--health-cmd",
        "yes abcdefghi | head -c 10000; echo; echo to-stderr >&2; exit 3",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "1000",
    ]);
    wait_for("a probe result", 15, || {
        health(&r, "chatty")["Log"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    let probe = health(&r, "chatty")["Log"][0].clone();
    assert_eq!(probe["ExitCode"], 3);
    let out = probe["Output"].as_str().unwrap();
    assert_eq!(out.len(), 4096 + 3, "first 4 KiB and Docker's ...");
    assert!(out.starts_with("abcdefghi\n") && out.ends_with("..."));
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let r = Rbox::with_busybox("health-start");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "boot",
        NONE,
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "--health-start-period",
        "4s",
        "--health-start-interval",
        "500ms",
        "busybox",
        "sleep",
        "1000",
    ]);
    wait_for("two probes", 10, || {
        health(&r, "boot")["Log"]
            .as_array()
            .is_some_and(|l| l.len() >= 2)
    });
    let h = health(&r, "boot");
    assert_eq!(
        (h["Status"].as_str(), h["FailingStreak"].as_i64()),
        (Some("starting"), Some(0))
    );
    wait_for("unhealthy after the start period", 15, || {
        status_of(&r, "boot") == "unhealthy"
    });
}

#[test]
fn the_images_healthcheck_and_the_flags_over_it() {
    let r = Rbox::with_busybox("health-image");
    let tar = rbox_tests::image_tar("busybox");
    r.ok(&[
        "import",
        "--change",
        r#"CMD ["sleep", "1000"]"#,
        "--change",
        "HEALTHCHECK --interval=1s --retries=1 CMD test -e /etc/passwd",
        tar.to_str().unwrap(),
        "checked:latest",
    ]);
    assert_eq!(
        r.ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Healthcheck}}",
            "checked"
        ])
        .trim(),
        r#"{"Test":["CMD-SHELL","test -e /etc/passwd"],"Interval":1000000000,"Retries":1}"#
    );
    r.ok(&["run", "-d", "--name", "img", NONE, "checked"]);
    wait_for("healthy from the image's check", 10, || {
        status_of(&r, "img") == "healthy"
    });
    // A flag replaces its field only.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "over",
        NONE,
        "--health-cmd",
        "test -e /nonexistent",
        "checked",
    ]);
    assert_eq!(
        r.inspect("over", "{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD-SHELL","test -e /nonexistent"],"Interval":1000000000,"Retries":1}"#
    );
    wait_for("unhealthy by the flag's command", 10, || {
        status_of(&r, "over") == "unhealthy"
    });
    r.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        NONE,
        "--no-healthcheck",
        "checked",
    ]);
    // dockerd merges the image's other fields in, as here.
    assert_eq!(
        r.inspect("off", "{{json .Config.Healthcheck}}"),
        r#"{"Test":["NONE"],"Interval":1000000000,"Retries":1}"#
    );
    // Docker's State.Health is omitted (omitempty) without a probe.
    let raw: serde_json::Value = serde_json::from_str(&r.ok(&["inspect", "off"])).unwrap();
    assert!(
        raw[0]["State"].get("Health").is_none(),
        "{}",
        raw[0]["State"]
    );
    assert!(ps_status(&r, "off").starts_with("Up ") && !ps_status(&r, "off").contains('('));
    assert_eq!(
        r.ok(&["ps", "--filter", "health=none", "--format", "{{.Names}}"])
            .trim(),
        "off"
    );
    r.ok(&[
        "import",
        "--change",
        "HEALTHCHECK NONE",
        tar.to_str().unwrap(),
        "plain:latest",
    ]);
    assert_eq!(
        r.ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Healthcheck}}",
            "plain"
        ])
        .trim(),
        r#"{"Test":["NONE"]}"#
    );
}

#[test]
fn health_on_failure_acts_when_the_container_turns_unhealthy() {
    let r = Rbox::with_busybox("health-act");
    let probe = [
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
    ];
    let mut restart = vec![
        "run",
        "-d",
        "--name",
        "again",
        NONE,
        "--health-on-failure",
        "restart",
    ];
    restart.extend(probe);
    restart.extend(["busybox", "sleep", "1000"]);
    r.ok(&restart);
    assert_eq!(
        r.inspect("again", "{{.Config.HealthcheckOnFailureAction}}"),
        "restart"
    );
    let first = r.inspect("again", "{{.State.Pid}}");
    wait_for("a new run", 15, || {
        let p = r.inspect("again", "{{.State.Pid}} {{.State.Status}}");
        p != format!("{first} running") && p.ends_with(" running")
    });
    let logs = r.run(&["logs", "again"]);
    assert!(
        logs.stderr.contains("--health-on-failure=restart"),
        "{}",
        logs.stderr
    );

    let mut stop = vec![
        "run",
        "-d",
        "--name",
        "halt",
        NONE,
        "--restart",
        "always",
        "--health-on-failure",
        "stop",
    ];
    stop.extend(probe);
    stop.extend(["busybox", "sleep", "1000"]);
    r.ok(&stop);
    wait_for("stopped", 20, || {
        r.inspect("halt", "{{.State.Status}}") == "exited"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.inspect("halt", "{{.State.Status}}"), "exited");

    let mut kill = vec![
        "run",
        "-d",
        "--name",
        "shot",
        NONE,
        "--restart",
        "on-failure",
        "--health-on-failure",
        "kill",
    ];
    kill.extend(probe);
    kill.extend(["busybox", "sleep", "1000"]);
    r.ok(&kill);
    // Killed, then brought back by its restart policy as after any non-zero exit.
    wait_for("restarted by its policy", 20, || {
        r.inspect("shot", "{{.RestartCount}}")
            .parse::<u32>()
            .unwrap()
            >= 1
    });
}

#[test]
fn bad_health_settings_make_nothing() {
    let r = Rbox::with_busybox("health-bad");
    for (args, says) in [
        (&["--health-interval", "abc"][..], "invalid argument \"abc\" for \"--health-interval\" flag: time: invalid duration \"abc\""),
        (&["--health-timeout", "10"][..], "time: invalid duration \"10\""),
        (&["--health-start-period", "-1s"][..], "--health-start-period cannot be negative"),
        (&["--health-retries", "-1"][..], "--health-retries cannot be negative"),
        (&["--health-retries", "x"][..], "invalid argument \"x\" for \"--health-retries\""),
        (&["--health-interval", "500us"][..], "Interval in Healthcheck cannot be less than 1ms"),
        (&["--no-healthcheck", "--health-cmd", "true"][..], "--no-healthcheck conflicts with --health-* options"),
        (&["--health-on-failure", "reboot"][..], "invalid --health-on-failure \"reboot\""),
    ] {
        for cmd in ["run", "create"] {
            let mut a = vec![cmd, NONE];
            a.extend_from_slice(args);
            a.extend(["busybox", "true"]);
            let e = r.bad(&a);
            assert!(e.contains(says), "{a:?}: {e}");
        }
    }
    let tar = rbox_tests::image_tar("busybox");
    for change in [
        "HEALTHCHECK --interval=5 CMD true",
        "HEALTHCHECK CMD",
        "HEALTHCHECK RUN x",
    ] {
        let e = r.run(&[
            "import",
            "--change",
            change,
            tar.to_str().unwrap(),
            "bad:latest",
        ]);
        assert_ne!(e.code, 0, "{change}");
        assert_eq!(e.stderr.trim().lines().count(), 1, "{change}: {}", e.stderr);
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    assert!(r.run(&["image", "inspect", "bad"]).code != 0);
}
