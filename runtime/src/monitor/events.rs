//! The monitor's event loop: one poll(2) over the descriptors it watches, each tagged with
//! what it is (`Source`), plus deadlines (`Timer`) that bound the wait. No work happens on a
//! clock tick: the monitor sleeps until the kernel reports something or a deadline is due.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::logs::Stream;

/// What a ready descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
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
}

/// Deadlines the monitor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The restart policy's delay is over: run the container again.
    Backoff,
    /// The stop timeout is over: SIGKILL.
    Kill,
}

/// What woke the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Ready(Source),
    /// The descriptor reported hangup or an error without data.
    Hangup(Source),
    Timer(Timer),
}

/// Pending deadlines; at most one per kind.
#[derive(Debug, Default)]
pub(crate) struct Timers {
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

    #[cfg(test)]
    pub fn is_set(&self, t: Timer) -> bool {
        self.due.iter().any(|(k, _)| *k == t)
    }

    /// How long poll may sleep: until the nearest deadline, or for ever.
    fn timeout(&self) -> PollTimeout {
        let Some(next) = self.due.iter().map(|(_, at)| *at).min() else {
            return PollTimeout::NONE;
        };
        let ms = next.saturating_duration_since(Instant::now()).as_millis();
        // Rounded up: waking a little early would only mean another poll.
        PollTimeout::try_from(ms.saturating_add(1).min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX)
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
pub(crate) fn wait(fds: &[(BorrowedFd, Source)], timers: &mut Timers) -> Vec<Event> {
    let mut pfds: Vec<PollFd> = fds
        .iter()
        .map(|(fd, _)| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let mut events = Vec::new();
    match poll(&mut pfds, timers.timeout()) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => tracing::warn!("monitor poll: {e}"),
    }
    for (p, (_, src)) in pfds.iter().zip(fds) {
        let Some(r) = p.revents() else { continue };
        if r.contains(PollFlags::POLLIN) {
            events.push(Event::Ready(*src));
        } else if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            events.push(Event::Hangup(*src));
        }
    }
    events.extend(timers.take_due().into_iter().map(Event::Timer));
    events
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
        assert_eq!(t.timeout(), PollTimeout::NONE);
    }
}
