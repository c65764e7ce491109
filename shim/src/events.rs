//! The monitor's event loop: one poll(2) over the descriptors it watches, each tagged with
//! what it is (`Source`), plus deadlines (`Timer`) that bound the wait. No work happens on a
//! clock tick: the monitor sleeps until the kernel reports something or a deadline is due.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::logs::Stream;

/// What a ready descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Output of the current run (a pipe, or the pty master as `Stdout`).
    Output(Stream),
    /// The current run's init exited (its pidfd).
    Exit,
    /// A signal for the container (foreground: ^C, hangup, window size).
    Signal,
    /// The user's terminal has input for the container (foreground with a tty).
    Input,
    /// A client connects to the control socket.
    Control,
    /// A connected client sent its request (index into the monitor's pending clients).
    Client(usize),
    /// An attached client hung up (index into the monitor's `Attachers`).
    Attacher(usize),
    /// The healthcheck probe printed something.
    ProbeOutput,
    /// The healthcheck probe exited (its pidfd).
    ProbeExit,
}

/// Deadlines the monitor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The restart policy's delay is over: run the container again.
    Backoff,
    /// The stop timeout is over: SIGKILL.
    Kill,
    /// Time for the next healthcheck probe.
    Probe,
    /// The running probe's timeout is over.
    ProbeTimeout,
}

/// What woke the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Ready(Source),
    /// The descriptor reported hangup or an error without data.
    Hangup(Source),
    Timer(Timer),
}

/// Pending deadlines; at most one per kind.
#[derive(Debug, Default)]
pub struct Timers {
    due: Vec<(Timer, Instant)>,
}

impl Timers {
    pub fn set(&mut self, t: Timer, after: Duration) {
        self.cancel(t);
        self.due.push((t, Instant::now() + after));
    }

    pub fn cancel(&mut self, t: Timer) {
        self.due.retain(|(k, _)| *k != t);
    }

    pub fn is_set(&self, t: Timer) -> bool {
        self.due.iter().any(|(k, _)| *k == t)
    }

    /// When `t` is due, if set.
    pub fn due_at(&self, t: Timer) -> Option<Instant> {
        self.due.iter().find(|(k, _)| *k == t).map(|(_, at)| *at)
    }

    /// How long poll may sleep, in ms: until the nearest deadline, or for ever (-1).
    fn timeout(&self) -> i32 {
        let Some(next) = self.due.iter().map(|(_, at)| *at).min() else {
            return -1;
        };
        let ms = next.saturating_duration_since(Instant::now()).as_millis();
        // Rounded up: waking a little early would only mean another poll.
        ms.saturating_add(1).min(i32::MAX as u128) as i32
    }

    /// Removes and returns the deadlines that are due.
    fn take_due(&mut self) -> Vec<Timer> {
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|(_, at)| *at <= now);
        self.due = rest;
        due.into_iter().map(|(t, _)| t).collect()
    }
}

/// Sleeps until one of `fds` is ready or a timer is due; returns what happened.
pub fn wait(fds: &[(BorrowedFd, Source)], timers: &mut Timers) -> Vec<Event> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, _)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut events = Vec::new();
    // SAFETY: poll over descriptors borrowed for this call; EINTR just returns early.
    unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            timers.timeout(),
        )
    };
    for (p, (_, src)) in pfds.iter().zip(fds) {
        if p.revents & libc::POLLIN != 0 {
            events.push(Event::Ready(*src));
        } else if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            events.push(Event::Hangup(*src));
        }
    }
    events.extend(timers.take_due().into_iter().map(Event::Timer));
    events
}

/// `wait`, the init's exit put last (output first, so that none of it is lost or taken for the
/// next run's), and the control clients that have something to read.
pub fn wait_ordered(fds: &[(BorrowedFd, Source)], timers: &mut Timers) -> (Vec<Event>, Vec<usize>) {
    let mut evs = wait(fds, timers);
    evs.sort_by_key(|e| matches!(e, Event::Ready(Source::Exit) | Event::Hangup(Source::Exit)));
    let clients = evs
        .iter()
        .filter_map(|e| match e {
            Event::Ready(Source::Client(i)) | Event::Hangup(Source::Client(i)) => Some(*i),
            _ => None,
        })
        .collect();
    (evs, clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_bound_the_wait_and_fire_once() {
        let mut t = Timers::default();
        t.set(Timer::Backoff, Duration::from_millis(30));
        t.set(Timer::Kill, Duration::from_secs(3600));
        assert!(t.is_set(Timer::Kill));
        let start = Instant::now();
        let ev = wait(&[], &mut t);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(ev, [Event::Timer(Timer::Backoff)]);
        assert!(!t.is_set(Timer::Backoff));
        t.cancel(Timer::Kill);
        assert_eq!(t.timeout(), -1);
    }
}
