//! Owning a running container: build and start it with libcontainer while single-threaded,
//! copy its output to the json-file log (and the caller's terminal when attached), wait for
//! it, record how it ended and release what it held. The detached monitor (`run -d`, `start`)
//! and a foreground `run` both come through `run`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use chrono::Utc;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::logs::{Stream, Writer};
use crate::record::{Record, RunState, Status};
use crate::store::{self, Paths};
use crate::{cgroup, etcfiles, rootfs, spec, teardown, tty, user};

/// How the owner is connected to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Detached monitor: output only to the log.
    Detached,
    /// Foreground: output also to our stdout/stderr; `stdin` forwards ours to the container.
    Foreground { stdin: bool },
    /// Foreground with `run -a`: only the streams named are copied to ours.
    Streams {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
}

/// Runs the container to its end. `started` is called once: with `Ok` when the process runs,
/// or with the error that kept it from starting (then nothing is left running or mounted).
pub fn run(
    paths: &Paths,
    attach: Attach,
    started: &mut dyn FnMut(std::result::Result<(), &Error>),
) -> Result<i32> {
    let warm_up = cgroup::MigrationWarmUp::start();
    let mut claim = match store::claim_monitor(paths)? {
        Some(f) => f,
        None => {
            let e = Error::AlreadyRunning(paths.id.clone());
            started(Err(&e));
            return Err(e);
        }
    };
    let mut rec = match claim_record(paths) {
        Ok(r) => r,
        Err(e) => {
            started(Err(&e));
            return Err(e);
        }
    };
    tracing::debug!(id = %paths.id, "claimed");
    let before = rec.state.clone();
    let prepared = prepare_and_start(paths, &mut rec, attach);
    drop(warm_up);
    let mut lc = match prepared {
        Ok(lc) => lc,
        Err(e) => {
            teardown(paths);
            // As it was before this start (created or exited), with the reason it failed.
            let state = RunState {
                monitor_pid: 0,
                error: e.to_string(),
                ..before
            };
            let _ = update(paths, |r| {
                r.state = state;
                r.networks.clear();
                r.sandbox_key.clear();
                r.ports.clear();
            });
            started(Err(&e));
            return Err(e);
        }
    };
    tracing::debug!(id = %paths.id, "started");
    started(Ok(()));
    if attach == Attach::Detached {
        // A detached monitor lives as long as its container: hand back to the kernel the heap
        // pages that setting up the container used and freed (parsed spec and profiles,
        // libcontainer's builder), ~1 MB per monitor otherwise.
        // SAFETY: malloc_trim only releases free memory of this process's allocator.
        unsafe { libc::malloc_trim(0) };
    }
    let code = lc.io.pump(attach);
    tracing::debug!(id = %paths.id, code, "container exited");
    let oom = cgroup::oom_killed(&paths.id);
    delete_stopped(paths, &mut lc.container);
    tracing::debug!(id = %paths.id, "libcontainer state deleted");
    teardown(paths);
    tracing::debug!(id = %paths.id, "torn down");
    // Waiters hold this file open: they read the code here even after --rm removed it all.
    let _ = claim
        .set_len(0)
        .and_then(|_| claim.write_all(code.to_string().as_bytes()));
    if rec.settings.auto_remove {
        crate::lifecycle::remove_dir(paths);
        tracing::debug!(id = %paths.id, "removed");
        return Ok(code);
    }
    update(paths, |r| {
        r.state.status = Status::Exited;
        r.state.exit_code = code;
        r.state.oom_killed = oom;
        r.state.pid = 0;
        r.state.monitor_pid = 0;
        r.state.finished_at = Some(Utc::now());
        r.networks.clear();
        r.sandbox_key.clear();
        r.ports.clear();
    })?;
    Ok(code)
}

/// libcontainer's `delete` for a container whose init was reaped, without its cost: the
/// kernel killed and released every other process of the pid namespace before the init could
/// be reaped, so the cgroups are empty and removing them plus libcontainer's state directory is
/// all that is left. (`delete` re-reads its config and parses /proc/self/mountinfo and
/// /proc/self/cgroup once per v1 controller, ~2-3 ms.) Anything unexpected, e.g. a cgroup
/// that is still busy or none found under /sys/fs/cgroup, goes through `delete(true)`, which
/// kills and retries.
fn delete_stopped(paths: &Paths, container: &mut libcontainer::container::Container) {
    if cgroup::remove(&paths.id) {
        let dir = paths.lc_root().join(&paths.id);
        if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
            return;
        }
    }
    let _ = container.delete(true);
}

fn update(paths: &Paths, f: impl FnOnce(&mut Record)) -> Result<Record> {
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = store::load(paths)?;
    f(&mut r);
    store::save(paths, &r)?;
    Ok(r)
}

/// `update` without fsync, for what only matters while this process lives (see
/// `store::save_transient`).
fn update_transient(paths: &Paths, f: impl FnOnce(&mut Record)) -> Result<Record> {
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = store::load(paths)?;
    f(&mut r);
    store::save_transient(paths, &r)?;
    Ok(r)
}

fn claim_record(paths: &Paths) -> Result<Record> {
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = store::load(paths)?;
    if r.running() {
        return Err(Error::AlreadyRunning(r.name));
    }
    r.state.monitor_pid = std::process::id() as i32;
    r.state.error.clear();
    r.state.oom_killed = false;
    store::save_transient(paths, &r)?;
    Ok(r)
}

struct Started {
    container: libcontainer::container::Container,
    io: Io,
    /// The published host ports' sockets: held until the container is torn down.
    _ports: net::Reservation,
    /// `run -di`: the write end of the container's stdin, held open (as Docker keeps it for a
    /// later attach) so that a shell reading it waits instead of seeing end of file.
    _stdin: Option<OwnedFd>,
}

/// The streams of one container process and where they go.
struct Io {
    pid: Pid,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    master: Option<OwnedFd>,
    log: Option<Writer>,
}

/// Proxies an exec'd process's pty to our terminal until it exits; returns its exit code.
pub(crate) fn proxy_tty(pid: Pid, master: OwnedFd, stdin: bool) -> i32 {
    let mut io = Io {
        pid,
        out: None,
        err: None,
        master: Some(master),
        log: None,
    };
    io.pump(Attach::Foreground { stdin })
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

fn prepare_and_start(paths: &Paths, rec: &mut Record, attach: Attach) -> Result<Started> {
    let store = images::Store::open(&paths.root)?;
    let image = store.resolve(&rec.image_id)?;
    tracing::debug!(id = %paths.id, "image resolved");
    rootfs::mount_overlay(paths, &store.layer_dirs(&image), rec.settings.auto_remove)?;
    tracing::debug!(id = %paths.id, "rootfs mounted");
    let root = paths.rootfs();
    let user = user::resolve(&root, &rec.settings.user)?;
    let env = spec::process_env(&paths.root, rec, &user);
    let argv = rec.argv();
    let Some(argv0) = argv.first() else {
        return Err(Error::Invalid("No command specified".into()));
    };
    rootfs::check_executable(&root, argv0, &env)?;
    if !rec.settings.working_dir.is_empty() {
        rootfs::ensure_dir(&root, &rec.settings.working_dir, user.uid, user.gid)?;
    }
    for f in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
        rootfs::ensure_file(&root, f)?;
    }
    // -v host directories removed since create come back; empty volumes get the image's files.
    crate::mounts::prepare_start(&paths.root, &root, &rec.settings.mounts)?;
    let (netns, ports) = crate::network::attach(paths, rec)?;
    tracing::debug!(id = %paths.id, "network attached");
    etcfiles::write_all(paths, rec, netns.is_none())?;
    let config = spec::build(paths, rec, &user, &env, netns.as_deref())?;
    // Rewritten at every start and read only by libcontainer right below: no fsync needed.
    let config_path = paths.bundle().join("config.json");
    std::fs::write(&config_path, config.to_string())
        .map_err(|e| Error::io(config_path.display(), e))?;
    tracing::debug!(id = %paths.id, "spec written");

    let lc_root = paths.lc_root();
    store::create_topdir(&lc_root)?;
    let mut builder = ContainerBuilder::new(paths.id.clone(), SyscallType::default())
        .with_root_path(&lc_root)
        .map_err(|e| lc_err("libcontainer root", e))?;
    let mut stdin_hold = None;
    let stdin: OwnedFd = match attach {
        Attach::Foreground { stdin: true } | Attach::Streams { stdin: true, .. }
            if !rec.settings.tty =>
        {
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("stdin", e))?
        }
        Attach::Detached if rec.settings.open_stdin && !rec.settings.tty => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("pipe", e.into()))?;
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
        let (or, ow) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("pipe", e.into()))?;
        let (er, ew) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("pipe", e.into()))?;
        builder = builder.with_stdout(ow).with_stderr(ew);
        out = Some(or);
        err = Some(er);
    }
    let log = Writer::open(&paths.log()).map_err(|e| Error::io(paths.log().display(), e))?;
    let caps = spec::caps(&rec.settings);
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let seccomp = crate::seccomp::executor(&paths.root, &spec::security_opt(&rec.settings), &caps)?;
    // libcontainer's intermediate process exits through std::process::exit, which would flush
    // a copy of anything still buffered.
    let _ = std::io::stdout().flush();
    let mut container = builder
        .validate_id()
        .map_err(|e| lc_err("invalid id", e))?
        .with_executor(seccomp)
        .as_init(paths.bundle())
        .with_systemd(false)
        // libcontainer accepts a console socket only when "detached"; it only gates that check.
        .with_detach(rec.settings.tty)
        .build()
        .map_err(|e| lc_err("creating container", e))?;
    let result = (|| {
        let master = match &listener {
            Some(l) => Some(tty::receive_master(l)?),
            None => None,
        };
        let _ = std::fs::remove_file(paths.console_socket());
        cgroup::after_create(&paths.id, &rec.settings)?;
        container
            .start()
            .map_err(|e| lc_err("starting container", e))?;
        let pid = container
            .pid()
            .ok_or_else(|| Error::Invalid("container has no pid".into()))?;
        Ok((master, pid))
    })();
    let (master, pid) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = container.delete(true);
            return Err(e);
        }
    };
    rec.state.status = Status::Running;
    rec.state.pid = pid.as_raw();
    rec.state.started_at = Some(Utc::now());
    rec.state.finished_at = None;
    rec.state.exit_code = 0;
    if let Err(e) = update_transient(paths, |r| {
        r.state = rec.state.clone();
        r.networks = rec.networks.clone();
        r.sandbox_key = rec.sandbox_key.clone();
        r.ports = rec.ports.clone();
    }) {
        let _ = container.delete(true);
        return Err(e);
    }
    Ok(Started {
        container,
        io: Io {
            pid,
            out,
            err,
            master,
            log: Some(log),
        },
        _ports: ports,
        _stdin: stdin_hold,
    })
}

fn set_nonblocking(fd: BorrowedFd) {
    // SAFETY: fcntl flag changes on a descriptor we hold.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads what is available; `None` at EOF or error (a pty master reports EIO at hangup).
fn read_some(fd: BorrowedFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: read into our buffer from a descriptor we hold.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n > 0 => Some(n as usize),
        0 => None,
        _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock => Some(0),
        _ => None,
    }
}

fn write_all_fd(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write from our buffer to a descriptor we hold.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

impl Io {
    /// Copies output until the init exits; returns its exit code as Docker reports it.
    fn pump(&mut self, attach: Attach) -> i32 {
        let attached = attach != Attach::Detached;
        // Blocked only now: the container's processes were cloned with the old mask.
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGWINCH,
            Signal::SIGQUIT,
        ] {
            mask.add(s);
        }
        let _ = mask.thread_block();
        let sigfd = SignalFd::new(&mask).ok();
        let pidfd = pidfd_open(self.pid);
        let mut raw = None;
        if let Some(m) = &self.master {
            if attached {
                tty::copy_winsize(std::io::stdin().as_fd(), m.as_fd());
                raw = tty::RawMode::enable();
            }
        }
        let forward_stdin = matches!(
            attach,
            Attach::Foreground { stdin: true } | Attach::Streams { stdin: true, .. }
        ) && self.master.is_some();
        // Which of our streams get the container's stdout and stderr.
        let shown = match attach {
            Attach::Detached => [false, false],
            Attach::Foreground { .. } => [true, true],
            Attach::Streams { stdout, stderr, .. } => [stdout, stderr],
        };
        let mut stdin_open = forward_stdin;
        let sources: Vec<(BorrowedFd, Stream)> = [
            (&self.out, Stream::Stdout),
            (&self.err, Stream::Stderr),
            (&self.master, Stream::Stdout),
        ]
        .into_iter()
        .filter_map(|(fd, s)| fd.as_ref().map(|f| (f.as_fd(), s)))
        .collect();
        for (fd, _) in &sources {
            set_nonblocking(*fd);
        }
        let mut open: Vec<bool> = vec![true; sources.len()];
        let mut buf = vec![0u8; 64 * 1024];
        let stdin = std::io::stdin();
        let mut exited = pidfd.is_none();
        let mut log = self.log.take();
        while !exited {
            let mut fds: Vec<PollFd> = Vec::new();
            let mut kinds: Vec<usize> = Vec::new();
            for (i, (fd, _)) in sources.iter().enumerate() {
                if open[i] {
                    fds.push(PollFd::new(*fd, PollFlags::POLLIN));
                    kinds.push(i);
                }
            }
            if let Some(p) = &pidfd {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                kinds.push(100);
            }
            if let Some(s) = &sigfd {
                // SAFETY: the signalfd outlives this poll call.
                fds.push(PollFd::new(
                    unsafe { BorrowedFd::borrow_raw(s.as_raw_fd()) },
                    PollFlags::POLLIN,
                ));
                kinds.push(101);
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                kinds.push(102);
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready: Vec<usize> = fds
                .iter()
                .zip(&kinds)
                .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, k)| *k)
                .collect();
            for k in ready {
                match k {
                    100 => exited = true,
                    101 => {
                        if let Some(Ok(Some(info))) = sigfd.as_ref().map(|s| s.read_signal()) {
                            let sig = info.ssi_signo as i32;
                            if sig == libc::SIGWINCH {
                                if let Some(m) = &self.master {
                                    tty::copy_winsize(std::io::stdin().as_fd(), m.as_fd());
                                }
                            } else {
                                // SAFETY: signalling the init we started.
                                unsafe { libc::kill(self.pid.as_raw(), sig) };
                            }
                        }
                    }
                    102 => match read_some(stdin.as_fd(), &mut buf) {
                        Some(n) if n > 0 => {
                            if let Some(m) = &self.master {
                                write_all_fd(m.as_raw_fd(), &buf[..n]);
                            }
                        }
                        Some(_) => {}
                        None => stdin_open = false,
                    },
                    i => {
                        if copy_out(&mut log, sources[i], &mut buf, shown).is_none() {
                            open[i] = false;
                        }
                    }
                }
            }
        }
        // The init is gone, so the namespace's other processes are being killed: take what
        // they wrote before.
        for (i, src) in sources.iter().enumerate() {
            while open[i] && copy_out(&mut log, *src, &mut buf, shown) == Some(true) {}
        }
        if let Some(l) = &mut log {
            l.flush();
        }
        drop(raw);
        let code = match waitpid(self.pid, None) {
            Ok(WaitStatus::Exited(_, c)) => c,
            Ok(WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
            _ => 255,
        };
        let _ = mask.thread_unblock();
        code
    }
}

/// One read from a container stream: `Some(true)` copied data, `Some(false)` nothing to
/// read now, `None` at EOF.
fn copy_out(
    log: &mut Option<Writer>,
    (fd, stream): (BorrowedFd, Stream),
    buf: &mut [u8],
    shown: [bool; 2],
) -> Option<bool> {
    {
        match read_some(fd, buf)? {
            0 => Some(false),
            n => {
                if let Some(l) = log {
                    l.write(stream, &buf[..n]);
                }
                let (target, show) = match stream {
                    Stream::Stdout => (1, shown[0]),
                    Stream::Stderr => (2, shown[1]),
                };
                if show {
                    write_all_fd(target, &buf[..n]);
                }
                Some(true)
            }
        }
    }
}
