//! rbox's on-demand helper processes (the cluster agent; the pattern of the DNS resolver): a
//! hidden `rbox` command that forks a daemon and exits once the daemon reports ready, a control
//! socket answering one line per request, and a pid file. A helper killed with -9 leaves a
//! socket nobody accepts on, which reads as "not running", so the next command starts another.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::unistd::{fork, ForkResult};

use crate::error::{io, Error, Result};

pub(crate) enum Outcome {
    Done,
    NotRunning,
}

/// Sends `cmd` to the helper listening on `sock` and waits up to `wait` for "ok ..." or
/// "error ...".
pub(crate) fn request(sock: &Path, cmd: &str, wait: Duration, what: &str) -> Result<Outcome> {
    let mut s = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Outcome::NotRunning)
        }
        Err(e) => return Err(io(format!("contacting the {what}"))(e)),
    };
    s.set_read_timeout(Some(wait))
        .map_err(io(format!("contacting the {what}")))?;
    if s.write_all(format!("{cmd}\n").as_bytes()).is_err() {
        return Ok(Outcome::NotRunning);
    }
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    let line = line.trim();
    if line == "ok" {
        return Ok(Outcome::Done);
    }
    match line {
        // It died between accepting and answering.
        "" => Ok(Outcome::NotRunning),
        other => Err(Error::Invalid(format!(
            "{what}: {}",
            other.strip_prefix("error ").unwrap_or(other)
        ))),
    }
}

/// Runs `rbox --root R ARGS...` (with `env`), which forks the helper and exits once it is ready
/// (or prints why not). The helper is thus never our child: nothing to reap later.
pub(crate) fn spawn(root: &Path, args: &[&str], env: &[(&str, String)], what: &str) -> Result<()> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("rbox")
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec. Descriptors our caller left
    // inheritable (the monitor's report pipe) must not reach a long-lived daemon: it would keep
    // `run -d` waiting for their end.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32);
            Ok(())
        });
    }
    let out = cmd.output().map_err(io(format!("starting the {what}")))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg = msg.trim().lines().last().unwrap_or("exited early");
    Err(Error::Invalid(format!(
        "starting the {what}: {}",
        msg.strip_prefix("Error: ").unwrap_or(msg)
    )))
}

/// Body of a helper's hidden command: forks; the child runs `prepare` (everything that can fail
/// before it is ready), reports on a pipe and then runs `serve`; this parent exits 0 once the
/// child is ready, else prints its error and exits 125. Call while single-threaded.
pub(crate) fn daemonize<T>(
    prepare: impl FnOnce() -> Result<T>,
    serve: impl FnOnce(T) -> i32,
) -> i32 {
    // A monitor may have blocked signals; the helper needs SIGTERM.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: pipe: {e}");
            return 125;
        }
    };
    // SAFETY: the caller is single-threaded here.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("Error: fork: {e}");
            125
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(w);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            if msg.trim() == "ok" {
                0
            } else {
                eprintln!("Error: {}", msg.trim());
                125
            }
        }
        Ok(ForkResult::Child) => {
            drop(r);
            let _ = std::env::set_current_dir("/");
            let mut w = std::fs::File::from(w);
            match prepare() {
                Ok(state) => {
                    let _ = w.write_all(b"ok\n");
                    drop(w);
                    std::process::exit(serve(state))
                }
                Err(e) => {
                    let _ = w.write_all(e.to_string().as_bytes());
                    std::process::exit(1)
                }
            }
        }
    }
}

/// The pid a helper recorded in `file`.
pub(crate) fn pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Waits before the next try after a failure: doubling from 100 ms to `cap`.
pub(crate) fn backoff(current: &mut Duration, cap: Duration) -> Duration {
    let d = *current;
    *current = (*current * 2).min(cap);
    d
}
