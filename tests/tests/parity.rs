//! Docker parity: what a Docker user types, answered as Docker answers it. Each table states
//! Docker's expected exit code and output for a command line, with the Docker version the
//! answer comes from (no Docker engine runs here: the answers are Docker's documented and
//! source-level behaviour, docker/cli and moby at the tags named).

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use rbox_tests::{Rbox, RboxCli};

const NONE: &str = "--network=none";

/// One command line and Docker's answer to it. `{id}` in an expectation stands for the full id
/// of the test's created container.
struct Case {
    args: &'static [&'static str],
    code: i32,
    /// The whole stdout, when the case pins it.
    stdout: Option<&'static str>,
    /// A part of stderr ("" when stderr must be empty).
    stderr: &'static str,
}

const fn case(
    args: &'static [&'static str],
    code: i32,
    stdout: Option<&'static str>,
    stderr: &'static str,
) -> Case {
    Case {
        args,
        code,
        stdout,
        stderr,
    }
}

#[track_caller]
fn check(r: &impl RboxCli, cases: &[Case], id: &str) {
    let mut wrong = Vec::new();
    for c in cases {
        let out = r.run(c.args);
        let want_err = c.stderr.replace("{id}", id);
        let stdout_ok = c.stdout.is_none_or(|s| out.stdout == s.replace("{id}", id));
        let stderr_ok = match want_err.as_str() {
            "" => out.stderr.is_empty(),
            w => out.stderr.contains(w),
        };
        if out.code != c.code || !stdout_ok || !stderr_ok {
            wrong.push(format!(
                "rbox {:?}: want exit {} stdout {:?} stderr ~{:?}\n   got exit {} stdout {:?} stderr {:?}",
                c.args, c.code, c.stdout, want_err, out.code, out.stdout, out.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Docker's CLI exits 1 for an error of any command but `run`/`create` (the daemon's error,
/// printed as the 20.10 client prints a 404: "Error: No such container: x"), 125 for a bad
/// flag, and keeps 125/126/127 for `run`. The idempotent forms cleanup scripts use succeed.
#[test]
fn exit_codes_and_idempotent_forms() {
    let r = Rbox::with_busybox("parity-exit");
    r.ok(&[
        "run", "-d", "--name", "up", NONE, "busybox", "sleep", "1000",
    ]);
    let made = r.ok(&["create", "--name", "made", NONE, "busybox", "true"]);
    let made = made.trim();
    // Docker 20.10.24 (docker/cli v20.10.24, moby v20.10.24).
    let cases = [
        case(
            &["rm", "nosuch"],
            1,
            Some(""),
            "Error: No such container: nosuch",
        ),
        // `rm -f`: not-found errors go to stderr, the command succeeds.
        case(
            &["rm", "-f", "nosuch"],
            0,
            Some(""),
            "No such container: nosuch",
        ),
        case(&["rm", "up"], 1, Some(""), "container is running"),
        case(
            &["stop", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(&["stop", "made"], 0, Some("made\n"), ""),
        case(
            &["start", "nosuch"],
            1,
            Some(""),
            "Error: failed to start containers: nosuch",
        ),
        // Starting a running container is a no-op that prints its name.
        case(&["start", "up"], 0, Some("up\n"), ""),
        case(
            &["kill", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["kill", "made"],
            1,
            Some(""),
            "Cannot kill container: made: Container {id} is not running",
        ),
        case(
            &["restart", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["exec", "nosuch", "true"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["exec", "made", "true"],
            1,
            Some(""),
            "Container {id} is not running",
        ),
        case(
            &["logs", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["wait", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["port", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["port", "up", "80"],
            1,
            Some(""),
            "Error: No public port '80/tcp' published for up",
        ),
        case(
            &["rename", "nosuch", "x1"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(&["top", "nosuch"], 1, Some(""), "No such container: nosuch"),
        case(
            &["container", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "No such container: nosuch",
        ),
        case(
            &["network", "rm", "nosuch"],
            1,
            Some(""),
            "Error: No such network: nosuch",
        ),
        case(
            &["network", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "No such network: nosuch",
        ),
        case(
            &["network", "create", "--subnet", "bad", "x"],
            1,
            Some(""),
            "Error: ",
        ),
        case(
            &["network", "connect", "nosuch", "up"],
            1,
            Some(""),
            "Error: ",
        ),
        case(
            &["network", "disconnect", "nosuch", "up"],
            1,
            Some(""),
            "Error: ",
        ),
        case(
            &["rmi", "nosuch"],
            1,
            Some(""),
            "Error: No such image: nosuch",
        ),
        case(
            &["image", "rm", "nosuch"],
            1,
            Some(""),
            "Error: No such image: nosuch",
        ),
        // `rmi -f`: as `rm -f`, images that are not there are reported, not fatal.
        case(
            &["rmi", "-f", "nosuch"],
            0,
            Some(""),
            "No such image: nosuch",
        ),
        case(
            &["image", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "Error: No such image: nosuch",
        ),
        case(
            &["tag", "nosuch", "x:1"],
            1,
            Some(""),
            "No such image: nosuch",
        ),
        // Docker 28's daemon words (20.10's client said "No such volume: nosuch").
        case(
            &["volume", "rm", "nosuch"],
            1,
            Some(""),
            "get nosuch: no such volume",
        ),
        case(&["volume", "rm", "-f", "nosuch"], 0, Some("nosuch\n"), ""),
        case(
            &["volume", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "No such volume: nosuch",
        ),
        case(&["volume", "create", "bad/name"], 1, Some(""), "Error: "),
        // Argument checks are plain errors (exit 1), flag errors exit 125 (cobra's flag
        // error func), in every command.
        case(&["stop"], 1, Some(""), "required"),
        case(&["ps", "--no-such-flag"], 125, Some(""), "--no-such-flag"),
        case(
            &["rm", "--no-such-flag", "up"],
            125,
            Some(""),
            "--no-such-flag",
        ),
        // run keeps Docker's 125/126/127.
        case(
            &["run", "--rm", NONE, "nosuchimage"],
            125,
            Some(""),
            "No such image",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "nosuchcmd"],
            127,
            Some(""),
            "executable file not found",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "/"],
            126,
            Some(""),
            "exec: \"/\": permission denied",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "/etc"],
            126,
            Some(""),
            "permission denied",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "sh", "-c", "exit 7"],
            7,
            Some(""),
            "",
        ),
    ];
    check(&r, &cases, made);
    // The failures changed nothing (`stop` of a created container is a no-op).
    let ps = r.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps, "made created\nup running\n");
}

/// A reader that went away ends the command silently, as Docker's Go CLI dies of SIGPIPE
/// (`docker ps -q | head -1` prints no "Broken pipe"): rbox's stdout here is a pipe whose
/// reading end is already closed, so its first write fails.
#[test]
fn closed_stdout_is_silent() {
    let r = Rbox::with_busybox("parity-pipe");
    r.ok(&["create", NONE, "busybox"]);
    for args in [
        &["ps", "-a"][..],
        &["ps", "-aq"],
        &["images"],
        &["network", "ls"],
        &["volume", "ls"],
        &["image", "inspect", "busybox"],
    ] {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two descriptors we pass.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just made and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let out = r
            .command(args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "rbox {args:?}: {stderr}");
        // Killed by SIGPIPE as the Go CLI is (not aborted, no core).
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "rbox {args:?}: {:?}",
            out.status
        );
    }
}

/// Containers start with SIGPIPE at its default, as under Docker, although rbox itself (the
/// container's monitor) ignores it: `yes | head -1` in a container ends.
#[test]
fn containers_get_default_sigpipe() {
    let r = Rbox::with_busybox("parity-sigpipe");
    let ignored = |out: &str| {
        let line = out
            .lines()
            .find(|l| l.starts_with("SigIgn:"))
            .unwrap()
            .to_string();
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        mask & (1 << (libc::SIGPIPE - 1)) != 0
    };
    let out = r.ok(&["run", "--rm", NONE, "busybox", "cat", "/proc/self/status"]);
    assert!(!ignored(&out), "{out}");
    assert_eq!(
        r.ok(&["run", "--rm", NONE, "busybox", "sh", "-c", "yes | head -1"]),
        "y\n"
    );
    let id = r.ok(&["run", "-d", NONE, "busybox", "sleep", "1000"]);
    let out = r.ok(&["exec", id.trim(), "cat", "/proc/self/status"]);
    assert!(!ignored(&out), "{out}");
}

/// A `--root` that is a regular file is refused by every command (one line, exit 1, 125 for
/// `run`/`create`), and the file is left as it was.
#[test]
fn root_that_is_a_file_is_refused() {
    let file = std::env::temp_dir().join(format!("rbt-q-rootfile-{}", std::process::id()));
    std::fs::write(&file, "not a root\n").unwrap();
    let root = file.to_str().unwrap();
    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["images"],
        &["network", "ls"],
        &["volume", "ls"],
        &["inspect", "x"],
        &["rm", "-f", "x"],
        &["system", "prune", "-f"],
        &["run", "busybox"],
        &["create", "busybox"],
    ] {
        let out = rbox_tests::rbox_command(&file, None, args)
            .output()
            .unwrap();
        let code = rbox_tests::error_exit_code(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "--root {root} {args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a directory"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a root\n");
    std::fs::remove_file(&file).unwrap();
}
