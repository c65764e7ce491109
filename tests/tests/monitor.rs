//! The container's monitor against the real binary and kernel: adoption of a running
//! container after its monitor was killed, a monitor dying before the start, the signal
//! state containers start with, the monitor's name and OOM score, parallel stop, `--init`,
//! stop signals and timeouts.
//!
//! Name space of this file: host ports 19600-19699 (inside rbox's 19500-19999).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rbox_tests::{alive, kill9, sh, wait_for, Rbox, RboxCli};

const NONE: &str = "--network=none";

fn pid(r: &Rbox, c: &str) -> i32 {
    r.inspect(c, "{{.State.Pid}}").parse().unwrap()
}

fn port_is_held(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
}

/// Asserts that the root holds no container and the host no mount, cgroup or process of it.
#[track_caller]
fn assert_clean(r: &Rbox, ids: &[&str]) {
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*r.root.to_string_lossy()), "mounts left");
    for id in ids {
        let cg = sh(&format!(
            "ls -d /sys/fs/cgroup/*/rbox/{id} /sys/fs/cgroup/rbox/{id} 2>/dev/null"
        ))
        .stdout;
        assert!(cg.trim().is_empty(), "cgroups left: {cg}");
        assert!(
            !r.root.join("run").join(id).exists(),
            "libcontainer state left"
        );
        assert!(
            !r.root.join("containers").join(id).exists(),
            "container dir left"
        );
    }
}

#[test]
fn a_killed_monitor_is_replaced_and_its_container_keeps_running() {
    let r = Rbox::with_busybox("adopt");
    let id = r
        .ok(&[
            "run",
            "-d",
            "-p",
            "19600:80",
            "--restart",
            "on-failure",
            "busybox",
            "sh",
            "-c",
            "httpd -p 80 -h /etc; while :; do echo tick; sleep 0.2; done",
        ])
        .trim()
        .to_string();
    let init = pid(&r, &id);
    let monitor = r.monitor_pid(&id);
    wait_for("output", 5, || r.ok(&["logs", &id]).contains("tick"));
    kill9(monitor);
    wait_for("the monitor to die", 5, || !alive(monitor));
    // Meanwhile nobody holds the port; the next command adopts the container.
    assert_eq!(
        r.inspect(&id, "{{.State.Status}} {{.State.Pid}}"),
        format!("running {init}")
    );
    let adopter = r.monitor_pid(&id);
    assert!(
        adopter != monitor && alive(adopter),
        "{monitor} -> {adopter}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{adopter}/comm")).unwrap(),
        "rbox\n"
    );
    assert!(alive(init), "the container died with its monitor");
    assert!(port_is_held(19600), "port 19600 not held after adoption");
    let got = sh("curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:19600/hostname");
    assert_eq!(got.stdout, "200");
    let logs = r.run(&["logs", &id]);
    assert!(
        logs.stderr.contains("monitor died; output from"),
        "{}",
        logs.stderr
    );
    // The adopter reads the container's output again.
    let ticks = logs.stdout.matches("tick").count();
    wait_for("output after adoption", 5, || {
        r.ok(&["logs", &id]).matches("tick").count() > ticks + 2
    });
    // And applies the restart policy (exit status read from the pidfd of a process that is
    // not its child).
    kill9(init);
    wait_for("the restart", 10, || {
        r.inspect(&id, "{{.State.Status}} {{.RestartCount}}") == "running 1"
    });
    assert!(port_is_held(19600));
    // stop still works, through the new monitor.
    let t = Instant::now();
    r.ok(&["stop", "-t", "1", &id]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(r.inspect(&id, "{{.State.Status}}"), "exited");
    assert!(!port_is_held(19600));
    r.ok(&["rm", &id]);
    assert_clean(&r, &[&id]);
}

#[test]
fn a_killed_monitor_of_an_exited_container_is_repaired() {
    let r = Rbox::with_busybox("crash");
    let id = r
        .ok(&["run", "-d", NONE, "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let init = pid(&r, &id);
    let monitor = r.monitor_pid(&id);
    kill9(monitor);
    kill9(init);
    // kill(2) returns before the process is gone (and its lock released).
    wait_for("both to die", 5, || !alive(init) && !alive(monitor));
    let ps = r.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert_eq!(r.inspect(&id, "{{.State.Error}}"), "rbox monitor died");
    r.ok(&["rm", &id]);
    assert_clean(&r, &[&id]);
}

#[test]
fn a_monitor_dying_before_the_start_hangs_nothing() {
    let r = Rbox::with_busybox("early-death");
    // Killed right after libcontainer created the init, which waits for a start that never
    // comes: it must hold neither the report pipe of `run -d` nor the monitor's lock.
    let t = Instant::now();
    let out = r
        .command(&[
            "run", "-d", NONE, "--name", "early", "busybox", "sleep", "1000",
        ])
        .env("RBOX_FAULT", "monitor-after-build")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    // The same with create + start: the container stays created, and rm -f does not wait.
    let id = r
        .ok(&[
            "create", NONE, "--name", "early", "busybox", "sleep", "1000",
        ])
        .trim()
        .to_string();
    let out = r
        .command(&["start", "early"])
        .env("RBOX_FAULT", "monitor-after-build")
        .output()
        .unwrap();
    // Docker's CLI: a failed `start` exits 1 (125 is for run/create).
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(r.inspect("early", "{{.State.Status}}"), "created");
    let t = Instant::now();
    r.ok(&["rm", "-f", "early"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_clean(&r, &[&id]);
}

#[test]
fn containers_start_with_dockers_signal_state() {
    let r = Rbox::with_busybox("signals");
    // SIGPIPE at its default action: `yes` dies when `head` is done instead of spinning.
    let mut child = r
        .command(&[
            "run",
            "--rm",
            NONE,
            "busybox",
            "sh",
            "-c",
            "yes | head -c 1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("`yes | head -c 1` did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing blocked or ignored (not through a shell: sh ignores SIGQUIT itself).
    let zero = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    let grep = ["grep", "-E", "^Sig(Blk|Ign)"];
    let fg = r.ok(&[
        &["run", "--rm", NONE, "busybox"][..],
        &grep,
        &["/proc/self/status"],
    ]
    .concat());
    assert_eq!(fg, zero);
    let id = r
        .ok(&["run", "-d", NONE, "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    for f in ["/proc/1/status", "/proc/self/status"] {
        assert_eq!(
            r.ok(&[&["exec", &id][..], &grep, &[f]].concat()),
            zero,
            "{f}"
        );
    }
    r.ok(&["rm", "-f", &id]);
}

/// CAP_SYS_RESOURCE, which lowering an OOM score below 0 needs (some sandboxes lack it).
fn may_lower_oom_score() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    eff & (1 << CAP_SYS_RESOURCE) != 0
}

#[test]
fn the_monitor_is_named_rbox_and_spared_by_the_oom_killer() {
    let r = Rbox::with_busybox("monitor-name");
    let id = r
        .ok(&["run", "-d", NONE, "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let m = r.monitor_pid(&id);
    let proc = |pid: i32, f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap();
    // Right after `run -d` the monitor may be execing its small mode, which names itself
    // first thing (rbox-shim until then).
    wait_for("the monitor's name", 5, || {
        proc(m, "comm") == "rbox\n" && proc(m, "cmdline").starts_with("rbox\0--root\0")
    });
    let want = if may_lower_oom_score() {
        "-999\n"
    } else {
        "0\n"
    };
    assert_eq!(proc(m, "oom_score_adj"), want);
    // The workload is the OOM killer's candidate, as Docker's are.
    assert_eq!(proc(pid(&r, &id), "oom_score_adj"), "0\n");
    assert_eq!(r.ok(&["exec", &id, "cat", "/proc/1/oom_score_adj"]), "0\n");
    r.ok(&["rm", "-f", &id]);
}

#[test]
fn stop_of_many_containers_runs_in_parallel() {
    let r = Rbox::with_busybox("parallel-stop");
    // `sleep` as PID 1 ignores SIGTERM: each stop waits its full timeout.
    let names = ["ps-a", "ps-b", "ps-c"];
    for n in names {
        r.ok(&["run", "-d", NONE, "--name", n, "busybox", "sleep", "1000"]);
    }
    let t = Instant::now();
    let out = r.ok(&["stop", "-t", "2", "ps-a", "ps-b", "ps-c"]);
    let took = t.elapsed();
    assert_eq!(out, "ps-a\nps-b\nps-c\n");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "three 2 s stops took {took:?}"
    );
    for n in names {
        assert_eq!(r.inspect(n, "{{.State.ExitCode}}"), "137");
    }
}

#[test]
fn init_reaps_forwards_signals_and_passes_the_exit_code() {
    let r = Rbox::with_busybox("init");
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "--init",
        "busybox",
        "sh",
        "-c",
        "sh -c 'sleep 0.1 &'; sleep 0.4; ps -o pid,stat,comm",
    ]);
    let mut rows = out.lines().skip(1);
    let pid1 = rows.next().unwrap();
    assert!(
        pid1.trim().starts_with("1 ") && pid1.ends_with("rbox-init"),
        "{out}"
    );
    assert!(!out.contains(" Z "), "a zombie was not reaped:\n{out}");
    assert_eq!(
        r.run(&["run", "--rm", NONE, "--init", "busybox", "sh", "-c", "exit 5"])
            .code,
        5
    );
    // Under the init, `sleep` is not PID 1 and dies of SIGTERM at once.
    let id = r
        .ok(&["run", "-d", NONE, "--init", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    assert_eq!(r.inspect(&id, "{{.HostConfig.Init}}"), "true");
    let t = Instant::now();
    r.ok(&["stop", &id]);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(r.inspect(&id, "{{.State.ExitCode}}"), "143");
    r.ok(&["rm", &id]);
}

#[test]
fn stop_uses_the_containers_signal_and_timeout() {
    let r = Rbox::with_busybox("stop-signal");
    let trap = "trap 'echo got-usr1; exit 3' USR1; while :; do sleep 0.1; done";
    let id = r
        .ok(&[
            "run",
            "-d",
            NONE,
            "--stop-signal",
            "SIGUSR1",
            "busybox",
            "sh",
            "-c",
            trap,
        ])
        .trim()
        .to_string();
    assert_eq!(r.inspect(&id, "{{.Config.StopSignal}}"), "SIGUSR1");
    r.ok(&["restart", &id]);
    wait_for("the trap of the first run", 5, || {
        r.ok(&["logs", &id]).contains("got-usr1")
    });
    r.ok(&["stop", &id]);
    assert_eq!(r.inspect(&id, "{{.State.ExitCode}}"), "3");
    assert_eq!(r.ok(&["logs", &id]).matches("got-usr1").count(), 2);
    // The image's STOPSIGNAL, unless the container names its own.
    let tar = rbox_tests::image_tar("busybox");
    r.ok(&[
        "import",
        "--change",
        "STOPSIGNAL USR1",
        "--change",
        r#"CMD ["sh"]"#,
        tar.to_str().unwrap(),
        "usr1:latest",
    ]);
    let img = r
        .ok(&["run", "-d", NONE, "usr1", "sh", "-c", trap])
        .trim()
        .to_string();
    assert_eq!(r.inspect(&img, "{{.Config.StopSignal}}"), "USR1");
    r.ok(&["stop", &img]);
    assert_eq!(r.inspect(&img, "{{.State.ExitCode}}"), "3");
    // --stop-timeout, and `stop -t`/`-s` over it.
    let slow = r
        .ok(&[
            "run",
            "-d",
            NONE,
            "--stop-timeout",
            "1",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let t = Instant::now();
    r.ok(&["stop", &slow]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(
        r.inspect(&slow, "{{.Config.StopTimeout}} {{.State.ExitCode}}"),
        "1 137"
    );
    r.ok(&["start", &slow]);
    let t = Instant::now();
    r.ok(&["stop", "-s", "KILL", "-t", "30", &slow]);
    assert!(t.elapsed() < Duration::from_secs(3));
    r.ok(&["rm", "-f", &id, &img, &slow]);
    assert!(!Path::new(&r.root.join("containers").join(&id)).exists());
}

fn exe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn private_dirty_kb(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The numbers of `line N` in `out`, split into runs where N starts over.
fn runs_of(out: &str) -> Vec<Vec<u64>> {
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for n in out
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse::<u64>().ok())
    {
        match runs.last_mut() {
            Some(r) if n != 0 => r.push(n),
            _ => runs.push(vec![n]),
        }
    }
    runs
}

#[test]
fn once_the_container_runs_its_monitor_is_the_small_rbox_shim() {
    let r = Rbox::with_busybox("shim");
    let id = r
        .ok(&[
            "run",
            "-d",
            NONE,
            "--restart",
            "always",
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            "busybox",
            "sh",
            "-c",
            "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.05; done",
        ])
        .trim()
        .to_string();
    let m = r.monitor_pid(&id);
    wait_for("the small mode, named rbox", 5, || {
        exe_of(m).ends_with("/rbox-shim")
            && std::fs::read_to_string(format!("/proc/{m}/comm")).unwrap() == "rbox\n"
    });
    // Issue 12's goal is 0.6 MB for a release build; this is a debug one.
    assert!(private_dirty_kb(m) < 1024, "{} kB", private_dirty_kb(m));
    wait_for("healthy", 5, || {
        r.inspect(&id, "{{.State.Health.Status}}") == "healthy"
    });
    // The init's exit goes back to the full monitor (the same process), which restarts it
    // and hands over again.
    let init = pid(&r, &id);
    std::thread::sleep(Duration::from_millis(500));
    kill9(init);
    wait_for("the restart", 10, || {
        r.inspect(&id, "{{.State.Status}} {{.RestartCount}}") == "running 1"
    });
    assert_eq!(r.monitor_pid(&id), m);
    wait_for("the small mode again", 5, || {
        exe_of(m).ends_with("/rbox-shim")
    });
    // `restart` and `wait` reach it too; no line is lost across the hand-overs.
    r.ok(&["restart", "-t", "1", &id]);
    assert_eq!(r.monitor_pid(&id), m);
    assert_eq!(r.inspect(&id, "{{.RestartCount}}"), "0");
    wait_for("the small mode after restart", 5, || {
        exe_of(m).ends_with("/rbox-shim")
    });
    let waiter = r
        .command(&["wait", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    r.ok(&["kill", &id]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "137\n");
    wait_for("the monitor to end", 5, || !alive(m));
    assert_eq!(r.inspect(&id, "{{.State.Status}}"), "exited");
    let runs = runs_of(&r.ok(&["logs", &id]));
    assert_eq!(runs.len(), 3, "{runs:?}");
    for run in &runs {
        assert!(
            run.len() > 5 && run.windows(2).all(|w| w[1] == w[0] + 1),
            "{run:?}"
        );
    }
    // Without it (RBOX_SHIM=0) the full monitor stays.
    let out = r
        .command(&["run", "-d", NONE, "busybox", "sleep", "100"])
        .env("RBOX_SHIM", "0")
        .output()
        .unwrap();
    let full = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fm = r.monitor_pid(&full);
    std::thread::sleep(Duration::from_millis(300));
    assert!(exe_of(fm).ends_with("/rbox"), "{}", exe_of(fm));
    // An rbox-shim of another build hands the state straight back: the full monitor stays and
    // works.
    let out = r
        .command(&["run", "-d", NONE, "busybox", "sleep", "100"])
        .env("RBOX_FAULT", "shim-version")
        .output()
        .unwrap();
    let other = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let om = r.monitor_pid(&other);
    wait_for("the full monitor back", 5, || exe_of(om).ends_with("/rbox"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(exe_of(om).ends_with("/rbox"), "{}", exe_of(om));
    assert_eq!(r.inspect(&other, "{{.State.Status}}"), "running");
    let t = Instant::now();
    r.ok(&["stop", "-t", "0", &other]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        r.inspect(&other, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    r.ok(&["rm", "-f", &id, &full, &other]);
    assert_clean(&r, &[&id, &full, &other]);
}
