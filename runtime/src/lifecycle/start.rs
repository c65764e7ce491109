//! Starting a container: a detached monitor (this binary re-executed as
//! `rbox --root R container-monitor [--adopt|--resume] ID`) or, for a foreground run, the
//! CLI itself becomes its owner.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::repair::find;
use crate::error::{Error, Result};
use crate::monitor::{self, Attach, Begin};
use crate::record::Record;
use crate::store::Paths;

/// The descriptor the monitor reports on ("ok" or "<code> <message>").
pub const MONITOR_REPORT_FD: i32 = 3;

/// The descriptor of the client a monitor started with `--attached` answers as an attach.
const MONITOR_CLIENT_FD: i32 = 4;

/// Runs the container in this process (foreground `run`, `start -a`); returns its exit code.
pub fn run_attached(root: &Path, id: &str, stdin: bool) -> Result<i32> {
    run_attached_streams(root, id, stdin, true, true)
}

/// `run_attached` for `run -a`: only the named streams reach ours.
pub fn run_attached_streams(
    root: &Path,
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<i32> {
    let paths = Paths::new(root, id);
    let attach = Attach::Foreground {
        stdin,
        stdout,
        stderr,
    };
    monitor::run(&paths, Begin::Start, attach, None, &mut |_| {})
}

/// Starts the container under a detached monitor; returns once it runs, or with the reason
/// it could not start.
pub fn start(root: &Path, key: &str) -> Result<Record> {
    start_with_client(root, key, None)
}

/// `start`, the monitor serving `client` (one end of a SOCK_SEQPACKET pair) as an attached
/// client from the run's first output on: a foreground run that can detach and leave the
/// container running (`run -it`, `start -ai`).
pub fn start_with_client(root: &Path, key: &str, client: Option<OwnedFd>) -> Result<Record> {
    let rec = find(root, key)?;
    if rec.active() {
        return Err(Error::AlreadyRunning(rec.name));
    }
    spawn_monitor(root, &rec.id, Begin::Start, client)?;
    find(root, &rec.id)
}

/// Starts a detached monitor for container `id` and waits for its report. A monitor that dies
/// before reporting is noticed at once (its pidfd), also when the container's init, stuck
/// before its start, still holds the report pipe.
pub(crate) fn spawn_monitor(
    root: &Path,
    id: &str,
    begin: Begin,
    client: Option<OwnedFd>,
) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    let wfd = w.as_raw_fd();
    let cfd = client.as_ref().map(|c| c.as_raw_fd());
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("rbox")
        .arg("--root")
        .arg(root)
        .arg("container-monitor");
    cmd.args(begin.arg());
    if client.is_some() {
        cmd.arg("--attached");
    }
    cmd.arg(id);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // The client's end first out of the report's way, then each to its number.
            let c = match cfd {
                Some(c) if c == MONITOR_REPORT_FD => libc::fcntl(c, libc::F_DUPFD_CLOEXEC, 5),
                c => c.unwrap_or(-1),
            };
            place(wfd, MONITOR_REPORT_FD)?;
            if cfd.is_some() {
                place(c, MONITOR_CLIENT_FD)?;
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("starting the container monitor", e))?;
    drop(w);
    // Only the monitor holds its end now: a monitor that dies closes it for the client.
    drop(client);
    let pidfd = crate::process::pidfd_open(child.id() as i32)
        .map_err(|e| Error::io("pidfd of the container monitor", e))?;
    let mut report = File::from(r);
    let mut msg = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            PollFd::new(report.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("waiting for the container monitor", e.into())),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            match report.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    msg.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if msg.contains('\n') {
                        break;
                    }
                    continue;
                }
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            break;
        }
    }
    let line = msg.lines().next().unwrap_or("");
    if line == "ok" {
        return Ok(());
    }
    let _ = child.wait();
    match line.split_once(' ') {
        Some(("126", m)) => Err(Error::CannotInvoke(m.to_string())),
        Some(("127", m)) => Err(Error::CommandNotFound(m.to_string())),
        Some((_, m)) => Err(Error::Invalid(m.to_string())),
        None => Err(Error::Invalid(
            "the container monitor exited before starting the container".into(),
        )),
    }
}

/// `fd` as descriptor `to` of the exec'd program (a dup2 onto itself keeps close-on-exec).
/// Async-signal-safe, for `pre_exec`.
fn place(fd: i32, to: i32) -> std::io::Result<()> {
    // SAFETY: plain descriptor calls on numbers of this process.
    let r = unsafe {
        match fd == to {
            true => libc::fcntl(fd, libc::F_SETFD, 0),
            false => libc::dup2(fd, to),
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Body of the hidden `container-monitor` subcommand.
pub fn monitor_main(root: &Path, id: &str, begin: Begin, attached: bool) -> i32 {
    // `ps` and `top` show the monitor as rbox, not as the /proc/self/exe it was run as.
    crate::process::set_name("rbox");
    // SAFETY: fd 3 was set up by `spawn_monitor`; we take ownership once.
    let report = unsafe { OwnedFd::from_raw_fd(MONITOR_REPORT_FD) };
    // Not for the container's processes after execve (until then they hold it, see above).
    let _ = nix::fcntl::fcntl(
        report.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut report = Some(File::from(report));
    let client = attached.then(|| {
        // SAFETY: fd 4 was set up by `spawn_monitor` for `--attached`; taken once.
        let c = unsafe { OwnedFd::from_raw_fd(MONITOR_CLIENT_FD) };
        let _ = nix::fcntl::fcntl(
            c.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        c
    });
    let paths = Paths::new(root, id);
    let r = monitor::run(&paths, begin, Attach::Detached, client, &mut |res| {
        if let Some(mut f) = report.take() {
            let line = match res {
                Ok(()) => "ok\n".to_string(),
                Err(e) => format!("{} {}\n", e.exit_code(), e.to_string().replace('\n', " ")),
            };
            let _ = f.write_all(line.as_bytes());
        }
    });
    match r {
        Ok(c) => c,
        Err(e) => e.exit_code(),
    }
}

/// Body of `container-monitor --continue FD ID`: the monitor's small mode (`rbox-shim`)
/// handed the container back with its state in descriptor `fd`.
pub fn continue_main(root: &Path, id: &str, fd: i32) -> i32 {
    crate::process::set_name("rbox");
    match monitor::resume(&Paths::new(root, id), fd) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(id, "taking the container back from rbox-shim: {e}");
            e.exit_code()
        }
    }
}
