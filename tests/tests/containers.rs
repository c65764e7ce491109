//! Container lifecycle against the real binary and kernel: exit codes, detached runs and
//! logs, stop/kill, --rm, exec, ttys, settings, limits, crash repair, concurrency, and that
//! nothing (mounts, cgroups, state, processes) is left behind.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rbox_tests::{sh, Rbox, RboxCli};

const NONE: &str = "--network=none";

/// Asserts that the root holds no container state and the host no mounts or cgroups of it.
#[track_caller]
fn assert_clean(r: &Rbox, ids: &[&str]) {
    let left: Vec<_> = std::fs::read_dir(r.root.join("containers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let left: Vec<_> = left.into_iter().filter(|n| n.len() == 64).collect();
    assert!(left.is_empty(), "container dirs left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = r.root.to_string_lossy();
    assert!(
        !mounts.contains(&*root),
        "mounts left under {root}:\n{mounts}"
    );
    for id in ids {
        let cg = sh(&format!(
            "ls -d /sys/fs/cgroup/*/rbox/{id} /sys/fs/cgroup/rbox/{id} 2>/dev/null"
        ))
        .stdout;
        assert!(cg.trim().is_empty(), "cgroups left: {cg}");
        let lc = r.root.join("run").join(id);
        assert!(!lc.exists(), "libcontainer state left: {}", lc.display());
    }
}

/// `run -d --network=none ARGS...`; returns the id.
#[track_caller]
fn detached(r: &Rbox, args: &[&str]) -> String {
    let mut a = vec!["run", "-d", NONE];
    a.extend_from_slice(args);
    r.ok(&a).trim().to_string()
}

fn inspect(r: &Rbox, c: &str, f: &str) -> String {
    r.ok(&["inspect", "--format", f, c]).trim().to_string()
}

#[test]
fn exit_codes_as_docker() {
    let r = Rbox::with_busybox("exitcodes");
    assert_eq!(
        r.ok(&["run", "--rm", NONE, "busybox", "echo", "hello"]),
        "hello\n"
    );
    assert_eq!(
        r.run(&["run", "--rm", NONE, "busybox", "sh", "-c", "exit 3"])
            .code,
        3
    );
    let e = r.fails(127, &["run", "--rm", NONE, "busybox", "nosuchcmd"]);
    assert!(e.contains("executable file not found"), "{e}");
    let e = r.fails(126, &["run", "--rm", NONE, "busybox", "/etc"]);
    assert!(e.contains("permission denied"), "{e}");
    let e = r.fails(125, &["run", "--rm", NONE, "nosuchimage"]);
    assert!(e.contains("No such image"), "{e}");
    r.fails(
        125,
        &["run", "--rm", NONE, "--memory", "lots", "busybox", "true"],
    );
    r.fails(
        125,
        &["run", "--rm", NONE, "-u", "ghost", "busybox", "true"],
    );
    r.fails(
        125,
        &["run", "--rm", NONE, "--name=-bad", "busybox", "true"],
    );
    // Failed runs leave nothing, with or without --rm and -d.
    r.fails(127, &["run", NONE, "busybox", "nosuchcmd"]);
    r.fails(127, &["run", "-d", NONE, "busybox", "nosuchcmd"]);
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    assert_clean(&r, &[]);
}

#[test]
fn detached_logs_follow_and_inspect() {
    let r = Rbox::with_busybox("detached");
    let id = r
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            NONE,
            "busybox",
            "sh",
            "-c",
            "echo one; echo two >&2; sleep 1; echo three; sleep 1; exit 4",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let ps = r.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up "),
        "{ps}"
    );
    assert_eq!(
        inspect(
            &r,
            &id[..8],
            "{{.State.Status}} {{.State.Running}} {{.Name}}"
        ),
        "running true /web"
    );
    let pid: i32 = inspect(&r, "web", "{{.State.Pid}}").parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // -f follows until the container ends, and sees output written after it started.
    let f = r.run(&["logs", "-f", "web"]);
    assert_eq!(f.stdout, "one\nthree\n");
    assert_eq!(f.stderr, "two\n");
    assert_eq!(r.ok(&["wait", "web"]).trim(), "4");
    assert_eq!(r.ok(&["logs", "--tail", "1", "web"]), "three\n");
    let ts = r.ok(&["logs", "-t", "web"]);
    assert!(
        ts.lines()
            .all(|l| l.len() > 31 && l.as_bytes()[4] == b'-' && l.contains("Z ")),
        "{ts}"
    );
    let raw = std::fs::read_to_string(inspect(&r, "web", "{{.LogPath}}")).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["stream"], "stdout");
    assert!(first["log"] == "one\n" || first["log"] == "two\n");
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["container", "inspect", "web"])).unwrap();
    let c = &v[0];
    assert_eq!(c["Id"], id);
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 4);
    assert_eq!(c["State"]["OOMKilled"], false);
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    assert_eq!(c["Config"]["Cmd"][0], "sh");
    assert_eq!(c["Path"], "sh");
    assert!(r.ok(&["ps", "-a"]).contains("Exited (4)"));
    assert_eq!(r.ok(&["ps", "-aq", "--no-trunc"]).trim(), id);
    assert_eq!(
        r.ok(&["ps", "-a", "--format", "{{.Names}}:{{.State}}"])
            .trim(),
        "web:exited"
    );
    assert!(!r.ok(&["ps"]).contains("web"));
    // Names are unique; rename frees the old one.
    let e = r.fails(125, &["create", "--name", "web", NONE, "busybox"]);
    assert!(e.contains("already in use"), "{e}");
    r.ok(&["rename", "web", "web2"]);
    r.ok(&["rm", "web2"]);
    r.fails(1, &["rm", "web2"]);
    assert_clean(&r, &[&id]);
}

#[test]
fn stop_waits_then_kills_and_rm_needs_force() {
    let r = Rbox::with_busybox("stop");
    // sh as PID 1 has no TERM handler, so SIGTERM is ignored as in Docker.
    let id = detached(&r, &["busybox", "sleep", "1000"]);
    let e = r.fails(1, &["rm", &id]);
    assert!(e.contains("container is running"), "{e}");
    // Docker 20.10: starting a running container prints its name and succeeds.
    assert_eq!(r.ok(&["start", &id]), format!("{id}\n"));
    let t = Instant::now();
    r.ok(&["stop", "-t", "2", &id]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(inspect(&r, &id, "{{.State.ExitCode}}"), "137");
    // A process that handles TERM stops at once.
    r.ok(&["start", &id]);
    assert_eq!(inspect(&r, &id, "{{.State.Status}}"), "running");
    r.ok(&["kill", "-s", "TERM", &id]);
    r.ok(&["kill", &id]);
    assert_eq!(
        inspect(&r, &id, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    let id2 = detached(
        &r,
        &[
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    let t = Instant::now();
    r.ok(&["stop", &id2]);
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(inspect(&r, &id2, "{{.State.ExitCode}}"), "0");
    r.ok(&["restart", "-t", "0", &id2]);
    assert_eq!(inspect(&r, &id2, "{{.State.Status}}"), "running");
    r.ok(&["rm", "-f", &id, &id2]);
    assert_clean(&r, &[&id, &id2]);
}

#[test]
fn rm_flag_removes_after_exit() {
    let r = Rbox::with_busybox("autorm");
    r.ok(&["run", "--rm", NONE, "busybox", "true"]);
    let id = r
        .ok(&[
            "run",
            "-d",
            "--rm",
            NONE,
            "busybox",
            "sh",
            "-c",
            "sleep 1; exit 3",
        ])
        .trim()
        .to_string();
    assert_eq!(r.ok(&["wait", &id]).trim(), "3");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    assert_clean(&r, &[&id]);
}

#[test]
fn exec_shares_pid_namespace_and_hostname() {
    let r = Rbox::with_busybox("exec");
    let id = r
        .ok(&[
            "run",
            "-d",
            "--hostname",
            "box1",
            NONE,
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let out = r.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
    ]);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1].trim(), "sleep 1000");
    assert_ne!(lines[2], "1");
    assert_eq!(
        r.ok(&[
            "exec",
            "-e",
            "A=b",
            "-w",
            "/tmp",
            &id,
            "sh",
            "-c",
            "echo $A $(pwd)"
        ]),
        "b /tmp\n"
    );
    assert_eq!(r.ok(&["exec", "-u", "nobody", &id, "id", "-u"]), "65534\n");
    assert_eq!(r.run(&["exec", &id, "sh", "-c", "exit 5"]).code, 5);
    r.fails(127, &["exec", &id, "nosuchcmd"]);
    r.fails(126, &["exec", &id, "/etc"]);
    // Docker's top: `ps -ef` columns, only the container's processes; ps options pass through.
    let top = r.ok(&["top", &id]);
    let header: Vec<&str> = top.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "{top}"
    );
    assert_eq!(top.lines().count(), 2, "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    let top = r.ok(&["top", &id, "-o", "pid,comm"]);
    assert_eq!(
        top.lines().nth(1).unwrap().split_whitespace().nth(1),
        Some("sleep"),
        "{top}"
    );
    // stdin with -i.
    let mut c = r.command(&["exec", "-i", &id, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"via stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "via stdin\n");
    r.ok(&["stop", "-t", "0", &id]);
    let e = r.fails(1, &["exec", &id, "true"]);
    assert!(e.contains("not running"), "{e}");
    r.ok(&["rm", &id]);
    assert_clean(&r, &[&id]);
}

#[test]
fn tty_with_a_real_pty() {
    let r = Rbox::with_busybox("tty");
    let bin = rbox_tests::rbox_bin();
    let root = r.root.display().to_string();
    // `script` gives rbox a real terminal; the container must see a pty and a terminal size.
    let run = sh(&format!(
        "script -qec \"{} --root {root} run --rm -it {NONE} busybox sh -c 'tty; test -t 0 && echo stdin-tty; exit 7'\" /dev/null </dev/null",
        bin.display()
    ));
    assert!(
        run.stdout.contains("/dev/pts/0"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("stdin-tty"), "{}", run.stdout);
    assert_eq!(run.code, 7, "{}{}", run.stdout, run.stderr);
    let id = detached(&r, &["busybox", "sleep", "100"]);
    let ex = sh(&format!(
        "script -qec \"{} --root {root} exec -it {id} sh -c 'tty; exit 2'\" /dev/null </dev/null",
        bin.display()
    ));
    assert!(
        ex.stdout.contains("/dev/pts/"),
        "{}{}",
        ex.stdout,
        ex.stderr
    );
    assert_eq!(ex.code, 2);
    // Interactive input through the pty.
    let inp = sh(&format!(
        "printf 'echo typed-$((40+2))\\nexit\\n' | script -qec \"{} --root {root} run --rm -it {NONE} busybox sh\" /dev/null",
        bin.display()
    ));
    assert!(
        inp.stdout.contains("typed-42"),
        "{}{}",
        inp.stdout,
        inp.stderr
    );
    r.ok(&["rm", "-f", &id]);
    assert_clean(&r, &[&id]);
}

#[test]
fn settings_are_applied() {
    let r = Rbox::with_busybox("settings");
    let env_file = r.root.join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = r.ok(&[
        "run", "--rm", NONE, "--hostname", "h1", "-e", "A=1", "--env-file", env_file.to_str().unwrap(),
        "-w", "/work/dir", "-u", "nobody", "busybox", "sh", "-c",
        "hostname; echo $A $FROM_FILE $HOSTNAME; pwd; id -u; id -g; cat /etc/hostname; grep -c localhost /etc/hosts",
    ]);
    assert_eq!(out, "h1\n1 yes h1\n/work/dir\n65534\n65534\nh1\n2\n");
    assert!(r
        .ok(&["run", "--rm", NONE, "-u", "1234:5", "busybox", "id"])
        .starts_with("uid=1234 gid=5"));
    assert_eq!(
        r.ok(&["run", "--rm", NONE, "--entrypoint", "echo", "busybox", "hi"]),
        "hi\n"
    );
    let ro = r.run(&["run", "--rm", NONE, "--read-only", "busybox", "touch", "/x"]);
    assert_eq!(ro.code, 1);
    assert!(ro.stderr.contains("Read-only"), "{}", ro.stderr);
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            NONE,
            "busybox",
            "sh",
            "-c",
            "touch /x && echo ok"
        ]),
        "ok\n"
    );
    // Host network: same netns and host name as the host.
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let inside = r.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(inside.trim(), host_ns.to_string_lossy());
    let none = r.ok(&[
        "run",
        "--rm",
        NONE,
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; ls /sys/class/net",
    ]);
    assert_ne!(none.lines().next().unwrap(), host_ns.to_string_lossy());
    assert_eq!(none.lines().skip(1).collect::<Vec<_>>(), vec!["lo"]);
    assert_clean(&r, &[]);
}

#[test]
fn security_defaults() {
    let r = Rbox::with_busybox("security");
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "busybox",
        "sh",
        "-c",
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ulimit -n",
    ]);
    // Docker's 14 default capabilities.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let nofile: u64 = out.lines().last().unwrap().parse().unwrap();
    assert!(nofile <= 1_048_576);
    let probe = r.run(&[
        "run",
        "--rm",
        NONE,
        "busybox",
        "sh",
        "-c",
        "cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable; \
         echo x > /proc/sys/kernel/domainname 2>/dev/null && echo procsys-writable; \
         ls /sys/firmware 2>/dev/null | grep -q . && echo firmware-visible; \
         unshare -n true 2>/dev/null && echo unshare-ok; \
         mount -t tmpfs t /mnt 2>/dev/null && echo mount-ok; echo done",
    ]);
    assert_eq!(probe.stdout, "done\n", "{}", probe.stderr);
    // exec'd processes get the same filter, capabilities and no_new_privs.
    let id = detached(&r, &["busybox", "sleep", "100"]);
    let ex = r.ok(&[
        "exec",
        &id,
        "grep",
        "-E",
        "^(CapEff|NoNewPrivs|Seccomp):",
        "/proc/self/status",
    ]);
    assert!(
        ex.contains("Seccomp:\t2")
            && ex.contains("NoNewPrivs:\t1")
            && ex.contains("CapEff:\t00000000a80425fb"),
        "{ex}"
    );
    r.ok(&["rm", "-f", &id]);
    assert_clean(&r, &[&id]);
}

#[test]
fn memory_limit_oom_kills() {
    let r = Rbox::with_busybox("oom");
    let run = r.run(&[
        "run",
        "--name",
        "hog",
        NONE,
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(run.code, 137, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("survived"));
    assert_eq!(
        inspect(&r, "hog", "{{.State.OOMKilled}} {{.HostConfig.Memory}}"),
        "true 33554432"
    );
    let limits = r.ok(&[
        "run",
        "--rm",
        NONE,
        "--pids-limit",
        "10",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 20); do sleep 5 & done 2>&1 | grep -c 'can.t fork'",
    ]);
    assert_ne!(limits.trim(), "0", "pids limit not enforced");
    let id = inspect(&r, "hog", "{{.Id}}");
    r.ok(&["rm", "hog"]);
    assert_clean(&r, &[&id]);
}

/// The name index (`<root>/names/<name>` -> id) against what a record says: a root from
/// before the index gets one built on the first create, an entry a crash left behind blocks
/// nothing, rename/rm/--rm keep it exact, prune sweeps what names nobody, and concurrent
/// creates of one name still give it to exactly one.
#[test]
fn names_stay_unique_through_the_index() {
    let r = Rbox::with_busybox("nameindex");
    let names = r.root.join("names");
    let points = |name: &str| {
        std::fs::read_link(names.join(name))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    let web = r
        .ok(&["create", "--name", "web", NONE, "busybox"])
        .trim()
        .to_string();
    assert_eq!(points("web").as_deref(), Some(web.as_str()));
    // A root made by an older rbox: no index, the name is still taken.
    std::fs::remove_dir_all(&names).unwrap();
    let e = r.fails(125, &["create", "--name", "web", NONE, "busybox"]);
    assert!(
        e.contains(&format!("is already in use by container \"{web}\"")),
        "{e}"
    );
    assert_eq!(
        points("web").as_deref(),
        Some(web.as_str()),
        "index not rebuilt"
    );
    assert_eq!(inspect(&r, "web", "{{.Id}}"), web);
    assert_eq!(inspect(&r, &web[..7], "{{.Name}}"), "/web");
    // An entry left by a create killed between its entry and its record.
    std::os::unix::fs::symlink("f".repeat(64), names.join("db")).unwrap();
    let db = r
        .ok(&["create", "--name", "db", NONE, "busybox"])
        .trim()
        .to_string();
    assert_eq!(points("db").as_deref(), Some(db.as_str()));
    // rename moves the entry; the old name is free at once.
    r.ok(&["rename", "web", "api"]);
    assert_eq!(points("web"), None);
    assert_eq!(points("api").as_deref(), Some(web.as_str()));
    r.fails(125, &["create", "--name", "api", NONE, "busybox"]);
    let web2 = r
        .ok(&["create", "--name", "web", NONE, "busybox"])
        .trim()
        .to_string();
    r.fails(1, &["rename", "db", "web"]);
    // rm and an --rm container's own end drop their entries.
    r.ok(&["rm", "db"]);
    assert_eq!(points("db"), None);
    r.ok(&["run", "--rm", "--name", "once", NONE, "busybox", "true"]);
    assert_eq!(points("once"), None);
    // ...by the name it has at its end, after a rename while it ran.
    let moved = detached(&r, &["--rm", "--name", "early", "busybox", "sleep", "100"]);
    r.ok(&["rename", "early", "late"]);
    assert_eq!(points("late").as_deref(), Some(moved.as_str()));
    r.ok(&["kill", "late"]);
    // (the monitor drops the entry just after the directory)
    rbox_tests::wait_for("the --rm container's removal", 10, || {
        !r.root.join("containers").join(&moved).exists() && points("late").is_none()
    });
    assert_eq!(points("early"), None);
    // Eight creates of one name at once: one wins, seven are told who has it.
    let root = r.root.clone();
    let outs: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                std::process::Command::new(rbox_tests::rbox_bin())
                    .args(["--root", root.to_str().unwrap(), "create", "--name", "race"])
                    .args([NONE, "busybox"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(won.len(), 1, "{outs:?}");
    let winner = String::from_utf8_lossy(&won[0].stdout).trim().to_string();
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(125));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(&format!("by container \"{winner}\"")), "{e}");
    }
    assert_eq!(points("race").as_deref(), Some(winner.as_str()));
    let left: Vec<_> = std::fs::read_dir(&names)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(left, ["api", "race", "web"]);
    r.ok(&["rm", "api", "web"]);
    // prune sweeps what names nobody (and removes the stopped `race`).
    std::os::unix::fs::symlink("e".repeat(64), names.join("ghost")).unwrap();
    r.ok(&["container", "prune", "-f"]);
    assert_eq!(std::fs::read_dir(&names).unwrap().count(), 0);
    assert_clean(&r, &[&web, &web2, &db, &winner, &moved]);
}

#[test]
fn twenty_concurrent_runs_and_removals() {
    let r = Rbox::with_busybox("concurrent");
    let root = r.root.clone();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                let o = std::process::Command::new(rbox_tests::rbox_bin())
                    .args([
                        "--root",
                        root.to_str().unwrap(),
                        "run",
                        "-d",
                        "--name",
                        &format!("c{i}"),
                        NONE,
                        "busybox",
                        "sleep",
                        "1000",
                    ])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            })
        })
        .collect();
    let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let running = r.ok(&["ps", "-q", "--no-trunc"]);
    for id in &ids {
        assert!(running.contains(id.as_str()), "{id} missing from {running}");
    }
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let root = root.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                let o = std::process::Command::new(rbox_tests::rbox_bin())
                    .args(["--root", root.to_str().unwrap(), "rm", "-f", &id])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_clean(&r, &refs);
}

#[test]
fn bridge_network_endpoint_is_recorded_and_released() {
    let r = Rbox::with_busybox("ctrnet");
    let net = format!("ctrnet{}", std::process::id() % 10000);
    r.ok(&["network", "create", "--subnet", "10.251.77.0/24", &net]);
    let a = r
        .ok(&[
            "run",
            "-d",
            "--name",
            "a1",
            "--network",
            &net,
            "--ip",
            "10.251.77.10",
            "--mac-address",
            "02:42:0a:fb:4d:0a",
            "--network-alias",
            "alpha",
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
    let ip = inspect(
        &r,
        "a1",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
    );
    assert_eq!(ip, "10.251.77.10");
    let v: serde_json::Value = serde_json::from_str(&r.ok(&["inspect", "a1"])).unwrap();
    let ns = &v[0]["NetworkSettings"];
    assert!(ns["SandboxKey"].as_str().unwrap().ends_with(&a), "{ns}");
    assert_eq!(ns["Networks"][&net]["MacAddress"], "02:42:0a:fb:4d:0a");
    assert_eq!(ns["Networks"][&net]["Gateway"], "10.251.77.1");
    let hosts = r.ok(&["exec", "a1", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!("10.251.77.10\t{}", &a[..12])),
        "{hosts}"
    );
    assert!(r
        .ok(&["exec", "a1", "cat", "/etc/resolv.conf"])
        .contains("nameserver"));
    // A second container reaches the first over the bridge.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.251.77.10",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    r.ok(&["stop", "-t", "0", "a1"]);
    // The endpoint is released on exit: the address can be handed out again.
    assert_eq!(
        inspect(&r, "a1", "{{json .NetworkSettings.Networks}}"),
        "{}"
    );
    r.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--ip",
        "10.251.77.10",
        "busybox",
        "true",
    ]);
    r.ok(&["rm", "a1"]);
    r.ok(&["network", "rm", &net]);
    assert_clean(&r, &[&a]);
    assert!(!r.root.join("netns").join(&a).exists());
}

#[test]
fn create_start_attach_and_prune() {
    let r = Rbox::with_busybox("createstart");
    let id = r
        .ok(&[
            "create",
            "--name",
            "later",
            NONE,
            "busybox",
            "sh",
            "-c",
            "echo from-start; exit 6",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(r.ok(&["ps", "-a"]).contains("Created"));
    assert_eq!(inspect(&r, "later", "{{.State.Status}}"), "created");
    // Nothing is mounted or running for a created container.
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&id));
    let a = r.run(&["start", "-a", "later"]);
    assert_eq!((a.code, a.stdout.as_str()), (6, "from-start\n"));
    assert_eq!(r.ok(&["start", "later"]).trim(), "later");
    assert_eq!(r.ok(&["wait", "later"]).trim(), "6");
    assert_eq!(r.ok(&["logs", "later"]), "from-start\nfrom-start\n");
    let keep = detached(&r, &["busybox", "sleep", "100"]);
    let listed = r.ok(&["container", "ls", "-q", "--no-trunc"]);
    assert_eq!(listed.trim(), keep);
    let pruned = r.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains(&id), "{pruned}");
    assert!(!pruned.contains(&keep));
    assert_eq!(r.run(&["inspect", "--format", "{{.Id}}", "later"]).code, 1);
    assert_eq!(r.ok(&["ps", "-aq", "--no-trunc"]).trim(), keep);
    r.ok(&["rm", "-f", &keep[..6]]);
    assert_clean(&r, &[&id, &keep]);
}

#[test]
fn foreground_run_forwards_sigterm() {
    let r = Rbox::with_busybox("sigfwd");
    let mut child = r
        .command(&[
            "run",
            "--name",
            "fg",
            NONE,
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    use std::io::Read;
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    // SAFETY: signalling the rbox process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(9));
    assert_eq!(rest, "got-term\n");
    assert_eq!(
        inspect(&r, "fg", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 9"
    );
    r.ok(&["rm", "fg"]);
    assert_clean(&r, &[]);
}

#[test]
fn network_connect_updates_state_and_hosts() {
    let r = Rbox::with_busybox("ctrconnect");
    let net = format!("ctrcon{}", std::process::id() % 10000);
    r.ok(&["network", "create", "--subnet", "10.251.78.0/24", &net]);
    let id = detached(&r, &["--name", "c1", "busybox", "sleep", "100"]);
    r.ok(&["network", "connect", "--ip", "10.251.78.20", &net, "c1"]);
    let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
    assert_eq!(inspect(&r, "c1", &f), "10.251.78.20");
    // The running container sees the new address in its /etc/hosts at once.
    let hosts = r.ok(&["exec", "c1", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!("10.251.78.20\t{}", &id[..12])),
        "{hosts}"
    );
    r.ok(&["network", "disconnect", &net, "c1"]);
    assert_eq!(inspect(&r, "c1", "{{len .NetworkSettings.Networks}}"), "1");
    assert!(!r
        .ok(&["exec", "c1", "cat", "/etc/hosts"])
        .contains("10.251.78.20"));
    // An image a container was made from cannot be removed (runtime::image_in_use).
    assert_ne!(r.run(&["rmi", "busybox"]).code, 0);
    assert!(r.ok(&["images"]).contains("busybox"));
    r.ok(&["rm", "-f", "c1"]);
    r.ok(&["network", "rm", &net]);
    assert_clean(&r, &[&id]);
}

/// `rmi` and `create` of the same image at once: either the container was recorded first and
/// `rmi` refuses, or the image went first and `create` fails; never a container without its
/// image.
#[test]
fn rmi_racing_create_never_orphans_a_container() {
    let r = Rbox::with_busybox("rmi-race");
    let tar = rbox_tests::image_tar("busybox");
    for i in 0..12 {
        let tag = format!("race{i}:latest");
        let label = format!("LABEL n={i}");
        r.ok(&[
            "import",
            "--change",
            &label,
            "--change",
            r#"CMD ["true"]"#,
            tar.to_str().unwrap(),
            &tag,
        ]);
        let create = r
            .command(&["create", NONE, &tag])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rmi = r.run(&["rmi", &tag]);
        let created: rbox_tests::Run = create.wait_with_output().unwrap().into();
        assert!(
            created.code != 0 || rmi.code != 0,
            "both create and rmi of {tag} succeeded: {}",
            created.stdout
        );
        if created.code == 0 {
            let id = created.stdout.trim();
            let image = r.ok(&["inspect", "--format", "{{.Image}}", id]);
            r.ok(&["image", "inspect", image.trim()]);
            r.ok(&["rm", id]);
            r.ok(&["rmi", &tag]);
        } else {
            assert!(
                created.stderr.contains("No such image"),
                "{}",
                created.stderr
            );
        }
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// `run -di` / `-dit` keep the container's stdin open (a pipe, or the pty, held by the monitor
/// as Docker holds it for attach): a shell waits instead of exiting at end of file.
#[test]
fn detached_interactive_shells_stay_up() {
    let r = Rbox::with_busybox("detached-i");
    let di = r.ok(&["run", "-di", NONE, "busybox", "sh"]);
    let dit = r.ok(&["run", "-dit", NONE, "busybox", "sh"]);
    let d = r.ok(&["run", "-d", NONE, "busybox", "sh"]);
    let (di, dit, d) = (di.trim(), dit.trim(), d.trim());
    assert_eq!(
        r.ok(&["wait", d]),
        "0\n",
        "sh with stdin at end of file exits"
    );
    for id in [di, dit] {
        assert_eq!(
            r.ok(&["exec", id, "echo", "alive"]),
            "alive\n",
            "{id} stopped"
        );
        assert_eq!(
            inspect(&r, id, "{{.State.Status}} {{.Config.OpenStdin}}"),
            "running true"
        );
    }
    let stdin = r.ok(&["exec", di, "readlink", "/proc/1/fd/0"]);
    assert!(stdin.starts_with("pipe:"), "{stdin}");
    r.ok(&["rm", "-f", di, dit, d]);
    assert_clean(&r, &[di, dit, d]);
}

/// A container directory whose record never reached the disk (an `--rm` record is written
/// without fsync; a power loss can leave it empty) is removed by `container prune`; a running
/// container in the same root is left alone.
#[test]
fn prune_removes_directories_without_a_record() {
    let r = Rbox::with_busybox("prune-norecord");
    let id = r.ok(&["run", "-d", NONE, "busybox", "sleep", "100"]);
    let id = id.trim();
    let dir = r.root.join("containers").join("ab".repeat(32));
    std::fs::create_dir_all(dir.join("upper")).unwrap();
    std::fs::write(dir.join("container.json"), "").unwrap();
    r.ok(&["container", "prune", "-f"]);
    assert!(!dir.exists(), "a directory without a record is left");
    assert_eq!(
        inspect(&r, id, "{{.State.Status}}"),
        "running",
        "prune touched a running container"
    );
    r.ok(&["rm", "-f", id]);
    assert_clean(&r, &[id]);
}
