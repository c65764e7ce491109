//! A run's output and the caller's terminal: the pipes (or pty master) a container process
//! writes to, copied to the json-file log and, for a foreground run, to our stdout/stderr;
//! the signals and keystrokes a foreground run forwards.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::logs::{Stream, Writer};
use crate::tty;
use shim::events::{self, Event, Source, Timers};

/// Where output goes.
pub(crate) struct Sink {
    pub log: Option<Writer>,
    /// Also to our stdout and stderr (foreground run; `run -a` names which).
    pub shown: [bool; 2],
    /// And to the clients attached over the control socket (`rbox attach`).
    pub attachers: shim::attach::Attachers,
}

impl Sink {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        if let Some(l) = &mut self.log {
            l.write(stream, data);
        }
        let (target, shown) = match stream {
            Stream::Stdout => (1, self.shown[0]),
            Stream::Stderr => (2, self.shown[1]),
        };
        if shown {
            write_all_fd(target, data);
        }
        self.attachers.send(stream, data);
    }
}

pub(crate) use shim::output::Streams;

impl Sink {
    /// What a run's output goes to, as `Streams` takes it.
    pub fn as_fn(&mut self) -> impl FnMut(Stream, &[u8]) + '_ {
        move |s, d| self.write(s, d)
    }

    /// `Streams::drain` into this sink, then the log's unterminated lines.
    pub fn drain(&mut self, streams: &mut Streams) {
        streams.drain(&mut self.as_fn());
        if let Some(l) = &mut self.log {
            l.flush();
        }
    }
}

/// A foreground run's terminal: the signals it forwards (blocked and read from a signalfd),
/// the user's keystrokes for a tty container, and raw mode while that runs.
pub(crate) struct Terminal {
    mask: SigSet,
    sigfd: Option<SignalFd>,
    raw: Option<tty::RawMode>,
    /// Forward our stdin to the container's pty.
    pub stdin: bool,
}

/// The signals a foreground run passes on to the container (and SIGWINCH, which resizes).
const FORWARDED: [Signal; 5] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGWINCH,
];

impl Terminal {
    /// Blocks the forwarded signals; the container's processes get Docker's signal state
    /// back before execve (`signal::reset_to_default`), so this may precede their clone.
    pub fn open(forward_stdin: bool) -> Terminal {
        let mut mask = SigSet::empty();
        for s in FORWARDED {
            mask.add(s);
        }
        let _ = mask.thread_block();
        Terminal {
            sigfd: SignalFd::new(&mask).ok(),
            mask,
            raw: None,
            stdin: forward_stdin,
        }
    }

    /// A new run with a pty: copy our window size and go raw (once).
    pub fn attach_pty(&mut self, master: BorrowedFd) {
        tty::copy_winsize(std::io::stdin().as_fd(), master);
        if self.raw.is_none() {
            self.raw = tty::RawMode::enable();
        }
    }

    pub fn sources(&self, with_stdin: bool) -> Vec<(BorrowedFd<'_>, Source)> {
        let mut v = Vec::new();
        if let Some(s) = &self.sigfd {
            v.push((s.as_fd(), Source::Signal));
        }
        if self.stdin && with_stdin {
            // SAFETY: fd 0 stays open for the life of this process.
            v.push((unsafe { BorrowedFd::borrow_raw(0) }, Source::Input));
        }
        v
    }

    /// The signal that arrived, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.sigfd.as_ref()?.read_signal() {
            Ok(Some(info)) => Some(info.ssi_signo as i32),
            _ => None,
        }
    }

    /// Copies the user's keystrokes to the container's pty; stops forwarding at end of file.
    /// With `escape`, returns true when the detach keys were typed (what preceded them in this
    /// read was sent on; they were not).
    pub fn forward_input(
        &mut self,
        master: Option<BorrowedFd>,
        buf: &mut [u8],
        escape: Option<&mut crate::detachkeys::Escape>,
    ) -> bool {
        use crate::detachkeys::Keys;
        match read_some(0, buf) {
            Some(0) => false,
            Some(n) => {
                let (data, detach) = match escape.map(|e| e.feed(&buf[..n])) {
                    None => (buf[..n].to_vec(), false),
                    Some(Keys::Forward(d)) => (d, false),
                    Some(Keys::Detach(d)) => (d, true),
                };
                if let Some(m) = master {
                    write_all_fd(m.as_raw_fd(), &data);
                }
                detach
            }
            None => {
                self.stdin = false;
                false
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.raw = None;
        let _ = self.mask.thread_unblock();
    }
}

/// Proxies an exec'd process's pty to our terminal until it exits; returns its exit code, or
/// `None` when the detach keys (`keys`, looked for in what we forward) were typed: the process
/// runs on, its pty held by a child of ours (`keep_pty`).
pub(crate) fn proxy_tty(pid: Pid, master: OwnedFd, stdin: bool, keys: Vec<u8>) -> Option<i32> {
    let Ok(pidfd) = crate::process::pidfd_open(pid.as_raw()) else {
        return Some(crate::process::exit_code(
            nix::sys::wait::waitpid(pid, None).unwrap_or(nix::sys::wait::WaitStatus::StillAlive),
        ));
    };
    let mut term = Terminal::open(stdin);
    term.attach_pty(master.as_fd());
    let mut escape = crate::detachkeys::Escape::new(keys);
    let mut streams = Streams::new(None, None, Some(master));
    let mut sink = Sink {
        log: None,
        shown: [true, true],
        attachers: Default::default(),
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut timers = Timers::default();
    'run: loop {
        let mut fds = streams.sources();
        fds.extend(term.sources(true));
        fds.push((pidfd.as_fd(), Source::Exit));
        for ev in events::wait(&fds, &mut timers) {
            match ev {
                Event::Ready(Source::Exit) | Event::Hangup(Source::Exit) => break 'run,
                Event::Ready(Source::Output(s)) | Event::Hangup(Source::Output(s)) => {
                    streams.copy(s, &mut sink.as_fn());
                }
                Event::Ready(Source::Signal) => match term.signal() {
                    Some(libc::SIGWINCH) => {
                        if let Some(m) = &streams.master {
                            tty::copy_winsize(std::io::stdin().as_fd(), m.as_fd());
                        }
                    }
                    Some(sig) => {
                        let _ = crate::process::send_signal(pidfd.as_fd(), sig);
                    }
                    None => {}
                },
                Event::Ready(Source::Input) | Event::Hangup(Source::Input) => {
                    let m = streams.master.as_ref().map(|m| m.as_fd());
                    if term.forward_input(m, &mut buf, Some(&mut escape)) {
                        let [_, _, master] = streams.into_fds();
                        drop(term);
                        if let Some(m) = master {
                            keep_pty(m, pidfd);
                        }
                        eprintln!("read escape sequence");
                        return None;
                    }
                }
                _ => {}
            }
        }
    }
    sink.drain(&mut streams);
    drop(term);
    Some(crate::process::exit_code(
        nix::sys::wait::waitpid(pid, None).unwrap_or(nix::sys::wait::WaitStatus::StillAlive),
    ))
}

/// After a detach from `exec -it`: the exec'd process must not lose its terminal (the last
/// close of a pty master hangs up its session), so a forked child of ours holds the master,
/// reads and drops what it prints, and exits with it. Nobody watches that output any more,
/// as with Docker, where a detached exec's output goes nowhere either.
fn keep_pty(master: OwnedFd, pidfd: OwnedFd) {
    // SAFETY: `rbox exec` is single-threaded here; the child only polls, reads and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // Off the user's terminal: it must not keep it (or a `script` session) open.
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for fd in 0..3 {
                    // SAFETY: dup2 of /dev/null over our own stdio.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let mut fds = [
                    nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN),
                    nix::poll::PollFd::new(pidfd.as_fd(), nix::poll::PollFlags::POLLIN),
                ];
                if nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).is_err() {
                    continue;
                }
                let exited = fds[1].revents().is_some_and(|r| !r.is_empty());
                if exited || read_some(master.as_raw_fd(), &mut buf).is_none() {
                    // SAFETY: leave the forked child without running our parent's exit code.
                    unsafe { libc::_exit(0) };
                }
            }
        }
        // Without the child the process loses its terminal, as when the terminal goes away.
        Ok(nix::unistd::ForkResult::Parent { .. }) | Err(_) => {}
    }
}

use shim::sys::read_some;

fn write_all_fd(fd: i32, mut data: &[u8]) {
    // SAFETY: fds 1 and 2, or a pty master we hold, for the duration of this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                // A non-blocking terminal that is full: wait until it drains.
                let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE);
            }
            Err(_) => return,
        }
    }
}
