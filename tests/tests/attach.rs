//! `rbox attach` and `--detach-keys` against the real binary: output from now on (stdout and
//! stderr apart without a tty), stdin of a `-i` container, the container's exit code, the
//! errors Docker gives, a tty's raw relay with its size and detach keys, sig-proxy, `exec -it`
//! detaching, and all of it with the full monitor (RBOX_SHIM=0) and with rbox-shim.
//!
//! Docker's answers written here are those of Docker 24/25's CLI and daemon (docker/cli
//! `attach.go`, moby `daemon/attach.go`, `daemon/exec.go`, moby/term `ToBytes`).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rbox_tests::{sh, wait_for, Rbox, RboxCli};

const NONE: &str = "--network=none";

/// Which program watches the container while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The full monitor stays (RBOX_SHIM=0 in the environment of `run`).
    Full,
    /// The monitor hands over to rbox-shim.
    Shim,
}

const MODES: [Mode; 2] = [Mode::Full, Mode::Shim];

fn exe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `run -d ARGS` in `mode`; returns the id once the monitor is the mode's program.
fn run_d(r: &Rbox, mode: Mode, args: &[&str]) -> String {
    let mut a = vec!["run", "-d", NONE];
    a.extend_from_slice(args);
    let mut c = r.command(&a);
    if mode == Mode::Full {
        c.env("RBOX_SHIM", "0");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let m = r.monitor_pid(&id);
    match mode {
        Mode::Shim => wait_for("rbox-shim", 5, || exe_of(m).ends_with("/rbox-shim")),
        Mode::Full => {
            std::thread::sleep(Duration::from_millis(200));
            assert!(exe_of(m).ends_with("/rbox"), "{}", exe_of(m));
        }
    }
    id
}

/// `rbox attach ARGS` under `timeout` (a broken attach fails the test instead of hanging it;
/// timeout passes on the signals it gets), stdio piped.
fn attach(r: &Rbox, args: &[&str]) -> Child {
    let mut c = Command::new("timeout");
    // --foreground: a signal sent to timeout reaches rbox once. Without it timeout passes it
    // to rbox and then to its whole process group, rbox again: two SIGTERMs that the
    // container's trap saw twice when they came apart (seen once in CI under load).
    c.arg("--foreground")
        .arg("30")
        .arg(rbox_tests::rbox_bin())
        .arg("--root")
        .arg(&r.root)
        .arg("attach")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn finish(c: Child) -> (i32, String, String) {
    use std::os::unix::process::ExitStatusExt;
    let o = c.wait_with_output().unwrap();
    (
        // A shell's number for a death by signal (timeout dies by the one that killed rbox).
        o.status
            .code()
            .or(o.status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A `-i` container that answers each line on stdout and stderr and exits 5 at "quit".
const ECHOER: &str =
    "echo started; while read l; do echo \"out $l\"; echo \"err $l\" >&2; [ \"$l\" = quit ] && exit 5; done";

#[test]
fn attach_forwards_stdin_and_returns_the_exit_code() {
    let r = Rbox::with_busybox("attach-io");
    for mode in MODES {
        let name = format!("rbt-at-io-{mode:?}").to_lowercase();
        let id = run_d(
            &r,
            mode,
            &["-i", "--name", &name, "busybox", "sh", "-c", ECHOER],
        );
        let m = r.monitor_pid(&id);
        // An attacher that does not give its stdin: what it is fed never reaches the container.
        let mut quiet = attach(&r, &["--no-stdin", &name]);
        quiet
            .stdin
            .take()
            .unwrap()
            .write_all(b"from-no-stdin\n")
            .unwrap();
        let mut a = attach(&r, &[&name]);
        std::thread::sleep(Duration::from_millis(800));
        let mut input = a.stdin.take().unwrap();
        input.write_all(b"hello\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        // Attaching changed nothing of who watches the container.
        assert_eq!(r.monitor_pid(&id), m);
        if mode == Mode::Shim {
            assert!(exe_of(m).ends_with("/rbox-shim"), "{}", exe_of(m));
        }
        input.write_all(b"quit\n").unwrap();
        drop(input);
        let (code, out, err) = finish(a);
        assert_eq!(code, 5, "{mode:?}: {out}{err}");
        // Output from now on ("started" was before), stdout and stderr apart.
        assert_eq!(out, "out hello\nout quit\n", "{mode:?}");
        assert_eq!(err, "err hello\nerr quit\n", "{mode:?}");
        let (code, out, err) = finish(quiet);
        assert_eq!(code, 5, "{mode:?}: {out}{err}");
        assert_eq!(out, "out hello\nout quit\n", "{mode:?}");
        let logs = r.ok(&["logs", &name]);
        assert!(!logs.contains("from-no-stdin"), "{logs}");
        assert_eq!(r.inspect(&name, "{{.State.ExitCode}}"), "5");
        r.ok(&["rm", &name]);
    }
}

#[test]
fn attach_refuses_as_docker() {
    let r = Rbox::with_busybox("attach-err");
    let stderr = r.bad(&["attach", "rbt-at-nope"]);
    assert_eq!(stderr, "Error: No such container: rbt-at-nope\n");
    r.ok(&[
        "create",
        NONE,
        "--name",
        "rbt-at-created",
        "busybox",
        "true",
    ]);
    let stderr = r.bad(&["attach", "rbt-at-created"]);
    assert_eq!(
        stderr,
        "Error: You cannot attach to a stopped container, start it first\n"
    );
    r.ok(&["run", NONE, "--name", "rbt-at-exited", "busybox", "true"]);
    r.bad(&["attach", "rbt-at-exited"]);
    let id = run_d(
        &r,
        Mode::Shim,
        &["--name", "rbt-at-run", "busybox", "sleep", "100"],
    );
    r.ok(&["pause", &id]);
    let stderr = r.bad(&["attach", "rbt-at-run"]);
    assert_eq!(
        stderr,
        "Error: You cannot attach to a paused container, unpause it first\n"
    );
    r.ok(&["unpause", &id]);
    // moby/term's ToBytes refuses these; dockerd words it per command.
    for keys in ["ctrl-P", "ctrl-", "ab", "ctrl-pp", " a"] {
        let stderr = r.bad(&["attach", "--detach-keys", keys, "rbt-at-run"]);
        assert_eq!(
            stderr,
            format!("Error: Invalid detach keys ({keys}) provided\n")
        );
        let stderr = r.bad(&["start", "--detach-keys", keys, "rbt-at-run"]);
        assert_eq!(
            stderr,
            format!("Error: Invalid detach keys ({keys}) provided\n")
        );
        let stderr = r.bad(&["exec", "--detach-keys", keys, "rbt-at-run", "true"]);
        assert_eq!(
            stderr,
            format!("Error: Invalid escape keys ({keys}) provided\n")
        );
        let stderr = r.bad(&["run", "--detach-keys", keys, NONE, "busybox", "true"]);
        assert_eq!(
            stderr,
            format!("Error: Invalid detach keys ({keys}) provided\n")
        );
    }
    r.ok(&[
        "exec",
        "--detach-keys",
        "ctrl-@,DEL,a",
        "rbt-at-run",
        "true",
    ]);
    // A tty container's stdin only from a terminal (docker/cli's CheckTty); --no-stdin is fine.
    run_d(
        &r,
        Mode::Shim,
        &["-it", "--name", "rbt-at-tty", "busybox", "sh"],
    );
    let stderr = r.bad(&["attach", "rbt-at-tty"]);
    assert_eq!(stderr, "Error: the input device is not a TTY\n");
    r.ok(&[
        "rm",
        "-f",
        "rbt-at-run",
        "rbt-at-tty",
        "rbt-at-created",
        "rbt-at-exited",
    ]);
}

#[test]
fn a_tty_attach_is_raw_resizes_and_detaches() {
    let r = Rbox::with_busybox("attach-tty");
    let bin = rbox_tests::rbox_bin();
    let root = r.root.display().to_string();
    for mode in MODES {
        let name = format!("rbt-at-tty-{mode:?}").to_lowercase();
        run_d(&r, mode, &["-it", "--name", &name, "busybox", "sh"]);
        // In `script`'s terminal: the size at attach, a resize while attached (the terminal's
        // SIGWINCH), then Docker's default detach keys, typed one at a time.
        let run = sh(&format!(
            "(sleep 1; printf 'stty size\\r'; sleep 2; printf 'stty size\\r'; sleep 1; printf '\\020'; sleep 0.3; printf '\\021'; sleep 1) \
             | timeout 30 script -qec \"stty cols 91 rows 33; exec 3<&0; {bin} --root {root} attach {name} <&3 & sleep 2; stty cols 100 rows 40; wait \\$!\" /dev/null",
            bin = bin.display()
        ));
        assert!(
            run.stdout.contains("33 91"),
            "{mode:?}: {}{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout.contains("40 100"),
            "{mode:?}: {}{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout.contains("read escape sequence"),
            "{mode:?}: {}",
            run.stdout
        );
        // docker/cli: the detach is its "read escape sequence" error, exit 1.
        assert_eq!(run.code, 1, "{mode:?}: {}{}", run.stdout, run.stderr);
        assert_eq!(r.inspect(&name, "{{.State.Status}}"), "running");
        // Other keys: ctrl-p ctrl-q then reach the shell (its line editor's "previous line",
        // cleared with ctrl-u), ctrl-x x detach.
        let run = sh(&format!(
            "(sleep 1; printf '\\020\\021\\025echo two-$((1+1))\\r'; sleep 1; printf '\\030x'; sleep 1) \
             | timeout 30 script -qec \"{bin} --root {root} attach --detach-keys ctrl-x,x {name}\" /dev/null",
            bin = bin.display()
        ));
        assert!(
            run.stdout.contains("two-2"),
            "{mode:?}: {}{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout.contains("read escape sequence"),
            "{mode:?}: {}",
            run.stdout
        );
        assert_eq!(run.code, 1, "{mode:?}: {}{}", run.stdout, run.stderr);
        assert_eq!(r.inspect(&name, "{{.State.Status}}"), "running");
        // The shell's exit is the attach's.
        let run = sh(&format!(
            "(sleep 1; printf 'exit 3\\r'; sleep 2) | timeout 30 script -qec \"{bin} --root {root} attach {name}\" /dev/null",
            bin = bin.display()
        ));
        assert_eq!(run.code, 3, "{mode:?}: {}{}", run.stdout, run.stderr);
        assert_eq!(
            r.inspect(&name, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 3"
        );
        r.ok(&["rm", &name]);
    }
}

#[test]
fn run_it_and_start_ai_detach_with_the_keys_and_the_container_runs_on() {
    let r = Rbox::with_busybox("attach-runit");
    let bin = rbox_tests::rbox_bin();
    let root = r.root.display().to_string();
    for mode in MODES {
        let env = match mode {
            Mode::Full => "RBOX_SHIM=0 ",
            Mode::Shim => "",
        };
        let name = format!("rbt-at-runit-{mode:?}").to_lowercase();
        // The first output is shown (the client is attached before the start), what is typed
        // reaches the shell, Docker's default keys detach: exit 0 and no message (docker/cli
        // run.go returns nil on its EscapeError).
        let run = sh(&format!(
            "(sleep 1.5; printf 'echo typed-$((40+2))\\r'; sleep 0.5; printf '\\020'; sleep 0.3; printf '\\021'; sleep 1) \
             | timeout 30 script -qec \"{env}{bin} --root {root} run -it --name {name} {NONE} busybox sh -c 'echo early-$((2+3)); exec sh'\" /dev/null",
            bin = bin.display()
        ));
        assert_eq!(run.code, 0, "{mode:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("early-5"), "{mode:?}: {}", run.stdout);
        assert!(run.stdout.contains("typed-42"), "{mode:?}: {}", run.stdout);
        assert!(
            !run.stdout.contains("escape sequence"),
            "{mode:?}: {}",
            run.stdout
        );
        assert_eq!(r.inspect(&name, "{{.State.Status}}"), "running");
        assert!(r.ok(&["logs", &name]).contains("early-5"));
        // `start -ai` with keys of its own.
        let run = sh(&format!(
            "(sleep 1; printf 'exit 4\\r'; sleep 2) | timeout 30 script -qec \"{bin} --root {root} attach {name}\" /dev/null",
            bin = bin.display()
        ));
        assert_eq!(run.code, 4, "{mode:?}: {}{}", run.stdout, run.stderr);
        let run = sh(&format!(
            "(sleep 1.5; printf 'echo again-$((3+4))\\r'; sleep 0.5; printf '\\030'; sleep 0.3; printf 'x'; sleep 1) \
             | timeout 30 script -qec \"{env}{bin} --root {root} start -ai --detach-keys ctrl-x,x {name}\" /dev/null",
            bin = bin.display()
        ));
        assert_eq!(run.code, 0, "{mode:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("again-7"), "{mode:?}: {}", run.stdout);
        assert_eq!(r.inspect(&name, "{{.State.Status}}"), "running");
        r.ok(&["rm", "-f", &name]);
        // `run --detach-keys` is the run's own; the run's end is still the command's.
        let run = sh(&format!(
            "(sleep 1.5; printf '\\030'; sleep 0.3; printf 'y'; sleep 1) \
             | timeout 30 script -qec \"{env}{bin} --root {root} run -it --detach-keys ctrl-x,y --name {name} {NONE} busybox sh\" /dev/null",
            bin = bin.display()
        ));
        assert_eq!(run.code, 0, "{mode:?}: {}{}", run.stdout, run.stderr);
        assert_eq!(r.inspect(&name, "{{.State.Status}}"), "running");
        r.ok(&["rm", "-f", &name]);
        let run = sh(&format!(
            "(sleep 1.5; printf 'exit 6\\r'; sleep 1) | timeout 30 script -qec \"{env}{bin} --root {root} run -it --rm {NONE} busybox sh; echo code=\\$? left=\\$({bin} --root {root} ps -aq | wc -l)\" /dev/null",
            bin = bin.display()
        ));
        assert!(
            run.stdout.contains("code=6 left=0"),
            "{mode:?}: {}{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn sig_proxy_forwards_signals_without_a_tty() {
    let r = Rbox::with_busybox("attach-sig");
    let trap = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    for mode in MODES {
        let name = format!("rbt-at-sig-{mode:?}").to_lowercase();
        run_d(&r, mode, &["--name", &name, "busybox", "sh", "-c", trap]);
        let a = attach(&r, &[&name]);
        std::thread::sleep(Duration::from_millis(800));
        // SAFETY: kill(2) of the child this test started (timeout, which passes it on).
        unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
        let (code, out, err) = finish(a);
        assert_eq!(code, 7, "{mode:?}: {out}{err}");
        assert_eq!(out, "got-term\n", "{mode:?}");
        // --sig-proxy=false: the signal is the client's own; the container runs on.
        r.ok(&["start", &name]);
        std::thread::sleep(Duration::from_millis(300));
        let a = attach(&r, &["--sig-proxy=false", &name]);
        std::thread::sleep(Duration::from_millis(800));
        // SAFETY: as above.
        unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
        let (code, out, err) = finish(a);
        assert_eq!(code, 143, "{mode:?}: {out}{err}");
        assert_eq!(r.inspect(&name, "{{.State.Status}}"), "running");
        r.ok(&["rm", "-f", &name]);
    }
}

/// The shim hands a `stop` back to the full monitor: the attached client goes with it and
/// still gets the last output and the exit code.
#[test]
fn an_attachment_survives_the_hand_back_and_a_log_driver_none() {
    let r = Rbox::with_busybox("attach-hand");
    let trap = "trap 'echo bye; exit 3' TERM; while :; do sleep 0.1; done";
    let id = run_d(
        &r,
        Mode::Shim,
        &[
            "--log-driver",
            "none",
            "--name",
            "rbt-at-hand",
            "busybox",
            "sh",
            "-c",
            trap,
        ],
    );
    let m = r.monitor_pid(&id);
    let a = attach(&r, &["rbt-at-hand"]);
    std::thread::sleep(Duration::from_millis(800));
    r.ok(&["stop", "-t", "5", "rbt-at-hand"]);
    let (code, out, err) = finish(a);
    assert_eq!((code, out.as_str()), (3, "bye\n"), "{err}");
    assert!(!rbox_tests::alive(m));
    r.ok(&["rm", "rbt-at-hand"]);
}

#[test]
fn exec_it_detaches_with_the_keys_and_the_process_runs_on() {
    let r = Rbox::with_busybox("attach-exec");
    let bin = rbox_tests::rbox_bin();
    let root = r.root.display().to_string();
    run_d(
        &r,
        Mode::Shim,
        &["--name", "rbt-at-ex", "busybox", "sleep", "300"],
    );
    let run = sh(&format!(
        "(sleep 1; printf '\\030'; sleep 0.3; printf 'x'; sleep 1) | timeout 30 script -qec \"{bin} --root {root} exec -it --detach-keys ctrl-x,x rbt-at-ex sh -c 'echo exec-started; exec sleep 777'\" /dev/null",
        bin = bin.display()
    ));
    assert!(
        run.stdout.contains("exec-started"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("read escape sequence"),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let ps = r.ok(&["exec", "rbt-at-ex", "ps"]);
    assert!(ps.contains("sleep 777"), "{ps}");
    r.ok(&["rm", "-f", "rbt-at-ex"]);
}

/// A reader that goes away (`attach c | head`) ends the attach quietly, with the shell's code
/// for SIGPIPE, and the container runs on.
#[test]
fn a_closed_stdout_ends_the_attach_not_the_container() {
    let r = Rbox::with_busybox("attach-pipe");
    let lines = "while :; do echo line; sleep 0.1; done";
    run_d(
        &r,
        Mode::Shim,
        &["--name", "rbt-at-pipe", "busybox", "sh", "-c", lines],
    );
    let err = r.root.join("pipe.err");
    let run = sh(&format!(
        "timeout 30 {} --root {} attach rbt-at-pipe 2>{} | head -2",
        rbox_tests::rbox_bin().display(),
        r.root.display(),
        err.display()
    ));
    assert_eq!(run.stdout, "line\nline\n");
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
    assert_eq!(r.inspect("rbt-at-pipe", "{{.State.Status}}"), "running");
    r.ok(&["rm", "-f", "rbt-at-pipe"]);
}
