//! `rbox attach`: the client of the monitor's `attach` request (`shim::attach`). The monitor
//! that owns the container sends its output on the connection and hands over its input (the
//! stdin pipe for `-i`, or the pty master for `-t`), so this process writes keystrokes and the
//! window size straight to the container and never needs the monitor for them. The run's end
//! arrives on the same connection with its exit code.
//!
//! One poll loop, no thread: the connection, our stdin (when forwarded) and a signalfd
//! (SIGWINCH for a tty; the signals `--sig-proxy` forwards without one).

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use crate::detachkeys::{self, Escape, Keys};
use crate::error::{Error, Result};
use crate::logs::Stream;
use crate::record::Status;
use crate::store::Paths;
use crate::{lifecycle, tty};
use shim::attach::{Attachment, Message, MESSAGE_MAX};

#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Forward our stdin (the container must have been created with -i); `--no-stdin` clears.
    pub stdin: bool,
    /// `--sig-proxy`: without a tty, signals to this process go to the container.
    pub sig_proxy: bool,
    /// `--detach-keys`, else Docker's ctrl-p,ctrl-q.
    pub detach_keys: Option<String>,
}

impl Default for AttachOptions {
    fn default() -> AttachOptions {
        AttachOptions {
            stdin: true,
            sig_proxy: true,
            detach_keys: None,
        }
    }
}

/// How an attachment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The run ended with this code.
    Exited(i32),
    /// The detach keys were typed; the container runs on.
    Detached,
}

/// The signals `--sig-proxy` passes on (docker/cli forwards every catchable one but SIGCHLD,
/// SIGPIPE, SIGURG and SIGWINCH; job control stays this terminal's).
const PROXIED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
];

/// The detach keys `keys` names (Docker's default when `None`), or Docker's error.
pub fn detach_keys(keys: Option<&str>) -> Result<Vec<u8>> {
    match keys {
        None => Ok(detachkeys::DEFAULT.to_vec()),
        Some(k) => detachkeys::parse(k).map_err(|_| Error::DetachKeys(k.to_string())),
    }
}

/// Attaches this process's stdio to the running container `key` until its run ends (or the
/// detach keys are typed on a tty).
pub fn attach(root: &Path, key: &str, opts: &AttachOptions) -> Result<Ended> {
    let keys = detach_keys(opts.detach_keys.as_deref())?;
    let rec = lifecycle::find(root, key)?;
    match rec.state.status {
        Status::Running if crate::pause::is_paused(&rec.id) => return Err(Error::AttachPaused),
        Status::Running => {}
        Status::Restarting => return Err(Error::AttachRestarting),
        _ => return Err(Error::AttachStopped),
    }
    let tty_mode = rec.settings.tty;
    // docker/cli's CheckTty: a tty container's stdin only from a terminal.
    if tty_mode && opts.stdin && !std::io::stdin().is_terminal() {
        return Err(Error::NotATty);
    }
    let paths = Paths::new(root, &rec.id);
    let attachment = match shim::attach::attach(&paths.dir, rec.state.monitor_pid, true, false)
        .map_err(|e| Error::io(format!("attaching to {}", rec.id), e))?
    {
        Some(Ok(a)) => a,
        Some(Err(m)) => return Err(Error::Invalid(m)),
        // The monitor is gone: the container ended meanwhile (or is being adopted).
        None => return Err(Error::AttachStopped),
    };
    Session::new(root, &rec.id, attachment, &rec.settings, keys, opts).run(opts.sig_proxy)
}

/// A container started with this process as its first attached client (`start_attached`).
pub struct Started {
    root: std::path::PathBuf,
    id: String,
    settings: crate::record::Settings,
    keys: Vec<u8>,
    attachment: Option<Attachment>,
}

/// Starts the created container `key` under a detached monitor that serves this process as
/// an attached client from its first output on: a foreground `run -it` or `start -ai` whose
/// detach keys (`keys`, else the container's `--detach-keys`, else Docker's) leave the
/// container running, as Docker's do. An error means it did not start.
pub fn start_attached(root: &Path, key: &str, keys: Option<&str>) -> Result<Started> {
    let rec = lifecycle::find(root, key)?;
    let keys =
        keys.or((!rec.settings.detach_keys.is_empty()).then_some(&*rec.settings.detach_keys));
    let keys = detach_keys(keys)?;
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::io("socketpair", e.into()))?;
    lifecycle::start_with_client(root, &rec.id, Some(theirs))?;
    let attachment = match shim::attach::answer(ours)
        .map_err(|e| Error::io(format!("attaching to {}", rec.id), e))?
    {
        Some(Ok(a)) => Some(a),
        Some(Err(m)) => return Err(Error::Invalid(m)),
        // The monitor died right after the start (the next command adopts the container).
        None => None,
    };
    Ok(Started {
        root: root.to_path_buf(),
        id: rec.id,
        settings: rec.settings,
        keys,
        attachment,
    })
}

/// Whether a foreground run of a container with `settings` is `start_attached`'s: a tty with
/// input from our terminal, where detach keys apply (Docker looks for them there only).
pub fn can_detach(settings: &crate::record::Settings, stdin: bool) -> bool {
    stdin && settings.tty && settings.open_stdin && std::io::stdin().is_terminal()
}

impl Started {
    /// Relays our stdio until the run ends (its code) or the detach keys are typed.
    pub fn session(self, opts: &AttachOptions) -> Result<Ended> {
        let Some(attachment) = self.attachment else {
            return Ok(Ended::Exited(lifecycle::wait(&self.root, &self.id)?));
        };
        Session::new(
            &self.root,
            &self.id,
            attachment,
            &self.settings,
            self.keys,
            opts,
        )
        .run(opts.sig_proxy)
    }
}

struct Session<'a> {
    root: &'a Path,
    id: &'a str,
    attachment: Attachment,
    /// Our stdin goes to the container's input.
    forward: bool,
    tty: bool,
    /// Detach keys are looked for (a tty with stdin forwarded, as Docker's proxy).
    escape: Option<Escape>,
}

impl<'a> Session<'a> {
    /// Our stdin goes to the container's input when asked, the container has one (`-i`) and
    /// the monitor handed it over; the detach keys are looked for on a tty only, as Docker's.
    fn new(
        root: &'a Path,
        id: &'a str,
        attachment: Attachment,
        settings: &crate::record::Settings,
        keys: Vec<u8>,
        opts: &AttachOptions,
    ) -> Session<'a> {
        let forward = opts.stdin && settings.open_stdin && attachment.input.is_some();
        Session {
            root,
            id,
            escape: (settings.tty && forward).then(|| Escape::new(keys)),
            forward,
            tty: settings.tty,
            attachment,
        }
    }

    fn run(&mut self, sig_proxy: bool) -> Result<Ended> {
        let mut mask = SigSet::empty();
        if self.tty {
            mask.add(Signal::SIGWINCH);
        } else if sig_proxy {
            for s in PROXIED {
                mask.add(s);
            }
        }
        // Blocked and read from a signalfd, so a signal is one more event of the loop.
        let _ = mask.thread_block();
        let sigfd = SignalFd::new(&mask).ok();
        let raw = (self.tty && self.forward)
            .then(tty::RawMode::enable)
            .flatten();
        self.resize();
        let r = self.relay(sigfd.as_ref());
        drop(raw);
        let _ = mask.thread_unblock();
        r
    }

    /// The pty gets our terminal's size (stdout's, as docker/cli's, else stdin's).
    fn resize(&self) {
        let Some(m) = self.attachment.input.as_ref().filter(|_| self.tty) else {
            return;
        };
        for from in [1, 0] {
            // SAFETY: fds 0 and 1 stay open for the life of this process.
            let from = unsafe { BorrowedFd::borrow_raw(from) };
            if nix::unistd::isatty(from.as_raw_fd()).unwrap_or(false) {
                tty::copy_winsize(from, m.as_fd());
                return;
            }
        }
    }

    fn relay(&mut self, sigfd: Option<&SignalFd>) -> Result<Ended> {
        let mut msg = vec![0u8; MESSAGE_MAX];
        let mut input = vec![0u8; 16 * 1024];
        loop {
            let mut fds = vec![pollin(self.attachment.conn.as_fd())];
            if let Some(s) = sigfd {
                fds.push(pollin(s.as_fd()));
            }
            if self.forward {
                fds.push(libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: poll over descriptors we hold for this call.
            if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
                continue;
            }
            // Output first: what the container printed before it ended is shown before its
            // exit code ends the loop.
            if fds[0].revents != 0 {
                match self
                    .attachment
                    .read(&mut msg)
                    .map_err(|e| Error::io("reading the container's output", e))?
                {
                    Message::Output(s, n) => {
                        let fd = match s {
                            Stream::Stdout => 1,
                            Stream::Stderr => 2,
                        };
                        // Our output went away (`attach c | head`): so does this client,
                        // silently and with a shell's code for SIGPIPE, as a CLI that died of
                        // it (once the terminal is restored); the container runs on.
                        match write_all(fd, &msg[1..=n]) {
                            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                                return Ok(Ended::Exited(128 + libc::SIGPIPE))
                            }
                            Err(e) => return Err(Error::io("writing the container's output", e)),
                            Ok(()) => {}
                        }
                    }
                    Message::Exit(code) => {
                        // The record says how the run ended; a monitor that ends with it
                        // still holds monitor.lock for a moment, and a `start` right after
                        // this command must not find it there (a wait on the lock).
                        let paths = Paths::new(self.root, self.id);
                        if lifecycle::find(self.root, self.id).is_ok_and(|r| !r.active()) {
                            crate::store::wait_monitor(&paths);
                        }
                        return Ok(Ended::Exited(code));
                    }
                    Message::Closed => return self.closed(),
                }
            }
            if let Some(s) = sigfd {
                if fds[1].revents != 0 {
                    if let Ok(Some(info)) = s.read_signal() {
                        self.signal(info.ssi_signo as i32);
                    }
                }
            }
            if self.forward && fds.last().is_some_and(|f| f.revents != 0) {
                if let Some(end) = self.input(&mut input) {
                    return Ok(end);
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        if sig == libc::SIGWINCH {
            self.resize();
        } else {
            // Docker's sig-proxy is a kill through the daemon; here through the monitor.
            let _ = lifecycle::kill(self.root, self.id, sig);
        }
    }

    /// One read of our stdin to the container; `Some` when the detach keys end the session.
    fn input(&mut self, buf: &mut [u8]) -> Option<Ended> {
        let n = match shim::sys::read_some(0, buf) {
            Some(0) => return None,
            Some(n) => n,
            None => {
                // End of our input: the container's stays open (the monitor holds it), as
                // Docker keeps it for a container that is not StdinOnce.
                self.forward = false;
                self.attachment.input = self.attachment.input.take().filter(|_| self.tty);
                return None;
            }
        };
        let (data, detach) = match self.escape.as_mut().map(|e| e.feed(&buf[..n])) {
            None => (buf[..n].to_vec(), false),
            Some(Keys::Forward(d)) => (d, false),
            Some(Keys::Detach(d)) => (d, true),
        };
        if let Some(i) = &self.attachment.input {
            // A container that closed its stdin just does not get it (Docker drops it too).
            let _ = write_all(i.as_raw_fd(), &data);
        }
        detach.then_some(Ended::Detached)
    }

    /// The monitor closed the connection without an exit code: it died (the next command
    /// adopts the container), or it dropped this client for not reading its output fast
    /// enough. The run's code then comes from `wait`.
    fn closed(&self) -> Result<Ended> {
        if lifecycle::find(self.root, self.id).is_ok_and(|r| r.running()) {
            eprintln!("rbox: the container's monitor ended this attachment (its output was not read fast enough, or the monitor was replaced); waiting for the container to exit");
        }
        Ok(Ended::Exited(lifecycle::wait(self.root, self.id)?))
    }
}

/// The input of the running container `key` (its stdin pipe or pty master), for a client that
/// reads its output elsewhere (the Engine API follows the log); `None` when it has none (not
/// created with -i, or not running). `once`: Docker's StdinOnce, the container's stdin ends
/// when this descriptor is closed.
pub fn input(root: &Path, key: &str, once: bool) -> Result<Option<std::os::fd::OwnedFd>> {
    let rec = lifecycle::find(root, key)?;
    if !rec.running() || !rec.settings.open_stdin {
        return Ok(None);
    }
    let paths = Paths::new(root, &rec.id);
    match shim::attach::attach(&paths.dir, rec.state.monitor_pid, false, once)
        .map_err(|e| Error::io(format!("attaching to {}", rec.id), e))?
    {
        Some(Ok(a)) => Ok(a.input),
        Some(Err(m)) => Err(Error::Invalid(m)),
        None => Ok(None),
    }
}

/// Sets the size of the running container's pty (the Engine API's `/containers/{id}/resize`):
/// its monitor hands over the master as for an attach, and the kernel tells the container's
/// foreground processes (SIGWINCH). Without a tty there is nothing to resize.
pub fn resize(root: &Path, key: &str, rows: u16, cols: u16) -> Result<()> {
    let rec = lifecycle::find(root, key)?;
    if !rec.running() {
        return Err(Error::NotRunning(rec.id));
    }
    if !rec.settings.tty {
        return Ok(());
    }
    let paths = Paths::new(root, &rec.id);
    let master = match shim::attach::attach(&paths.dir, rec.state.monitor_pid, false, false)
        .map_err(|e| Error::io(format!("attaching to {}", rec.id), e))?
    {
        Some(Ok(a)) => a.input,
        Some(Err(m)) => return Err(Error::Invalid(m)),
        None => None,
    };
    let Some(m) = master else {
        return Err(Error::NotRunning(rec.id));
    };
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a winsize struct on the pty master we were handed.
    if unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(Error::io(
            "resizing the pty",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `write_all` for the container's input from `input`.
pub fn write_input(fd: BorrowedFd, data: &[u8]) {
    // A container that closed its stdin just does not get it (Docker drops it too).
    let _ = write_all(fd.as_raw_fd(), data);
}

fn pollin(fd: BorrowedFd) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Writes all of `data` to `fd`, waiting when it is full: the pty master is non-blocking (the
/// monitor set that on the open file this descriptor shares).
fn write_all(fd: i32, mut data: &[u8]) -> std::io::Result<()> {
    // SAFETY: fds 1 and 2, or the container's input we hold, for the duration of this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
