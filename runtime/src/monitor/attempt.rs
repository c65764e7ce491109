//! One run of a container's process: the libcontainer container (its state and cgroup), the
//! init's pid and pidfd, and its output streams. A restart policy makes a new one in the same
//! `Attached` set-up; `finish` releases only what belongs to the run.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

use super::attached::Attached;
use super::io::{Sink, Streams};
use super::Attach;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::Paths;
use crate::{cgroup, process, tty};

/// The monitor's own OOM score: the kernel kills workloads before the process that watches
/// them (conmon and containerd-shim use the same value).
pub(crate) const MONITOR_OOM_SCORE_ADJ: i32 = -999;

pub(crate) struct Attempt {
    /// `None` for a run adopted from a dead monitor (its libcontainer state stays on disk),
    /// or handed over by a previous program of this monitor (`resume`).
    container: Option<libcontainer::container::Container>,
    /// The init is this process's child (reaped with waitpid), also when `container` is None
    /// after a hand-over; not for an adopted run.
    ours: bool,
    pub pid: Pid,
    pub start_time: u64,
    pidfd: OwnedFd,
    pub streams: Streams,
    started: Instant,
    /// `run -di`: the write end of the container's stdin, held open (as Docker keeps it for a
    /// later attach) so that a shell reading it waits instead of seeing end of file.
    _stdin: Option<OwnedFd>,
}

fn lc_err(what: &str, e: impl std::fmt::Display) -> Error {
    let msg = e.to_string();
    if msg.contains("not found in $PATH") {
        return Error::CommandNotFound(msg);
    }
    if msg.contains("does not have correct permissions") {
        return Error::CannotInvoke(msg);
    }
    Error::Libcontainer(what.to_string(), msg)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))
}

impl Attempt {
    /// Creates and starts the container's process with libcontainer (this process must be
    /// single-threaded here). Nothing of the run is left on error.
    pub fn spawn(
        paths: &Paths,
        rec: &Record,
        attached: &Attached,
        attach: Attach,
    ) -> Result<Attempt> {
        let mut builder = ContainerBuilder::new(paths.id.clone(), SyscallType::default())
            .with_root_path(paths.lc_root())
            .map_err(|e| lc_err("libcontainer root", e))?;
        let mut stdin_hold = None;
        let stdin: OwnedFd = match attach {
            Attach::Foreground { stdin: true, .. } if !rec.settings.tty => std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("stdin", e))?,
            Attach::Detached if rec.settings.open_stdin && !rec.settings.tty => {
                let (r, w) = pipe()?;
                stdin_hold = Some(w);
                r
            }
            _ => File::open("/dev/null")
                .map_err(|e| Error::io("/dev/null", e))?
                .into(),
        };
        builder = builder.with_stdin(stdin);
        let (mut out, mut err, mut listener) = (None, None, None);
        if rec.settings.tty {
            listener = Some(tty::listen(&paths.console_socket())?);
            builder = builder.with_console_socket(Some(paths.console_socket()));
        } else {
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            builder = builder.with_stdout(ow).with_stderr(ew);
            out = Some(or);
            err = Some(er);
        }
        // libcontainer's intermediate process exits through std::process::exit, which would
        // flush a copy of anything still buffered.
        let _ = std::io::stdout().flush();
        // The init inherits our OOM score; only while we may lower it again (CAP_SYS_RESOURCE)
        // can it get the workload's 0 and we our own back.
        process::set_oom_score_adj(0);
        let built = builder
            .validate_id()
            .map_err(|e| lc_err("invalid id", e))
            .and_then(|b| {
                b.with_executor(attached.workload.clone())
                    .as_init(paths.bundle())
                    .with_systemd(false)
                    // libcontainer accepts a console socket only when "detached"; it only
                    // gates that check.
                    .with_detach(rec.settings.tty)
                    .build()
                    .map_err(|e| lc_err("creating container", e))
            });
        process::set_oom_score_adj(MONITOR_OOM_SCORE_ADJ);
        let mut container = built?;
        // Where a monitor killed now leaves an init that waits to be started.
        crate::fault::point("monitor-after-build");
        let result = (|| {
            let master = match &listener {
                Some(l) => Some(tty::receive_master(l)?),
                None => None,
            };
            let _ = std::fs::remove_file(paths.console_socket());
            crate::cgroup::after_create(&paths.id, &rec.settings)?;
            container
                .start()
                .map_err(|e| lc_err("starting container", e))?;
            let pid = container
                .pid()
                .ok_or_else(|| Error::Invalid("container has no pid".into()))?;
            // Our child until we reap it: neither can change under us.
            let pidfd = process::pidfd_open(pid.as_raw())
                .map_err(|e| Error::io("pidfd of the container's init", e))?;
            let start_time = process::start_time(pid.as_raw()).unwrap_or(0);
            Ok((master, pid, pidfd, start_time))
        })();
        let (master, pid, pidfd, start_time) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = container.delete(true);
                return Err(e);
            }
        };
        Ok(Attempt {
            container: Some(container),
            ours: true,
            pid,
            start_time,
            pidfd,
            streams: Streams::new(out, err, master),
            started: Instant::now(),
            _stdin: stdin_hold,
        })
    }

    /// Watches a run whose monitor died: the init `rec` names, if it is still that process.
    /// Its output pipes are found again through /proc (the kernel keeps a pipe while its
    /// writer lives); a pty's master died with the old monitor.
    pub fn adopt(rec: &Record) -> Result<Attempt> {
        let pid = rec.state.pid;
        let gone = || Error::NotRunning(rec.name.clone());
        let pidfd = process::pidfd_open(pid).map_err(|_| gone())?;
        // Checked after the pidfd is open, so the pidfd is the process recorded.
        if pid <= 0
            || process::start_time(pid) != Some(rec.state.start_time)
            || rec.state.boot_id != process::boot_id()
        {
            return Err(gone());
        }
        let pipe_of = |n: i32| -> Option<OwnedFd> {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{n}")).ok()?;
            if !link.to_string_lossy().starts_with("pipe:") {
                return None;
            }
            // Non-blocking: opening a pipe for reading through /proc is a FIFO open.
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/{pid}/fd/{n}"))
                .ok()
                .map(OwnedFd::from)
        };
        let (out, err) = if rec.settings.tty {
            (None, None)
        } else {
            (pipe_of(1), pipe_of(2))
        };
        let ran = rec
            .state
            .started_at
            .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
            .unwrap_or_default();
        Ok(Attempt {
            container: None,
            ours: false,
            pid: Pid::from_raw(pid),
            start_time: rec.state.start_time,
            pidfd,
            streams: Streams::new(out, err, None),
            started: Instant::now().checked_sub(ran).unwrap_or_else(Instant::now),
            _stdin: None,
        })
    }

    /// The run a previous program of this monitor started and handed over: still our child.
    pub fn resume(
        pid: i32,
        start_time: u64,
        pidfd: OwnedFd,
        streams: Streams,
        up: Duration,
        stdin: Option<OwnedFd>,
    ) -> Attempt {
        Attempt {
            container: None,
            ours: true,
            pid: Pid::from_raw(pid),
            start_time,
            pidfd,
            streams,
            started: Instant::now().checked_sub(up).unwrap_or_else(Instant::now),
            _stdin: stdin,
        }
    }

    /// The descriptors a hand-over keeps open: the pidfd and the write end of stdin.
    pub fn raw_fds(&self) -> (RawFd, Option<RawFd>) {
        (
            self.pidfd.as_raw_fd(),
            self._stdin.as_ref().map(|f| f.as_raw_fd()),
        )
    }

    /// The container's input an attached client writes to: the pty master, else the stdin
    /// pipe held for `-i` (a foreground run's stdin is the caller's own: none).
    pub fn input(&self) -> Option<BorrowedFd<'_>> {
        self.streams
            .master
            .as_ref()
            .or(self._stdin.as_ref())
            .map(|f| f.as_fd())
    }

    /// Lets go of the stdin pipe held for `-i` (a StdinOnce attach took it over).
    pub fn release_stdin(&mut self) {
        self._stdin = None;
    }

    /// The init is this process's child (not an adopted run's).
    pub fn is_ours(&self) -> bool {
        self.ours
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    pub fn ran_for(&self) -> Duration {
        self.started.elapsed()
    }

    /// Signals the init (never a later process with its pid).
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        process::send_signal(self.pidfd.as_fd(), sig)
    }

    /// After the init exited: takes the rest of its output, reaps it and releases the run's
    /// libcontainer state and cgroup. Returns the exit code as Docker reports it and whether
    /// the kernel OOM-killed a process of the run.
    pub fn finish(mut self, paths: &Paths, sink: &mut Sink) -> (i32, bool) {
        sink.drain(&mut self.streams);
        let code = match self.ours {
            true => process::exit_code(
                nix::sys::wait::waitpid(self.pid, None)
                    .unwrap_or(nix::sys::wait::WaitStatus::StillAlive),
            ),
            // Not our child: the kernel keeps the code for its pidfd (or the zombie shows it).
            false => process::exit_code_of(self.pidfd.as_fd(), self.pid.as_raw(), self.start_time)
                .unwrap_or_else(|| {
                    tracing::warn!(id = %paths.id, "exit status of the adopted init unknown");
                    255
                }),
        };
        let oom = cgroup::oom_killed(&paths.id);
        delete_stopped(paths, self.container.as_mut());
        tracing::debug!(id = %paths.id, code, "run ended and released");
        (code, oom)
    }
}

/// libcontainer's `delete` for a container whose init was reaped, without its cost: the
/// kernel killed and released every other process of the pid namespace before the init could
/// be reaped, so the cgroups are empty and removing them plus libcontainer's state directory is
/// all that is left. (`delete` re-reads its config and parses /proc/self/mountinfo and
/// /proc/self/cgroup once per v1 controller, ~2-3 ms.) Anything unexpected, e.g. a cgroup
/// that is still busy or none found under /sys/fs/cgroup, goes through `delete(true)`, which
/// kills and retries.
fn delete_stopped(paths: &Paths, container: Option<&mut libcontainer::container::Container>) {
    if cgroup::remove(&paths.id) {
        let dir = paths.lc_root().join(&paths.id);
        if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
            return;
        }
    }
    match container {
        Some(c) => {
            let _ = c.delete(true);
        }
        None => crate::cleanup::release_run(paths),
    }
}
