//! The process that owns a started container for its whole life: the detached monitor
//! (`run -d`, `start`, `rbox` re-executed) or the CLI of a foreground run.
//!
//! Two lifetimes (see docs/ARCHITECTURE.md):
//! - `Attached`: what the container holds while started — rootfs, sandbox, leases, ports,
//!   log. Set up once, released once when the monitor ends.
//! - `Attempt`: one run of its process — the libcontainer container and its cgroup. A restart
//!   policy (`policy::Restarts`) makes a new one after each exit, with Docker's backoff.
//!
//! The monitor is one event loop (`events`): output to copy, the init's exit (pidfd),
//! requests on its control socket (`control`: stop, kill, restart, wait, attach), a foreground run's
//! signals and keystrokes, and its timers (the backoff, the stop timeout). Everything it does
//! is a reaction to one of those, so `stop` is obeyed at once also while it waits to restart.
//!
//! How it begins (`Begin`): a new start; taking over (adopting) a running init whose monitor
//! died; or resuming the restart a dead monitor was waiting for.
//!
//! A detached monitor whose run is steady becomes its small mode, `rbox-shim`, by execve, and
//! comes back here (`resume`) for anything that needs more (`handover`).

mod attached;
mod attempt;
pub(crate) mod control;
mod handover;
mod io;

use std::fs::File;
use std::io::Write;

use chrono::Utc;

pub(crate) use attempt::MONITOR_OOM_SCORE_ADJ;
pub use handover::resume;
pub(crate) use io::proxy_tty;

use attached::Attached;
use attempt::Attempt;
use control::{Conn, Reply, Request};
use io::{Sink, Terminal};
use shim::events::{self, Event, Source, Timer, Timers};

use crate::error::{Error, Result};
use crate::logs::Stream;
use crate::policy::Restarts;
use crate::record::{Record, RunState, Status};
use crate::store::{self, Paths};
use crate::{cgroup, cleanup, process};

/// How the owner is connected to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Detached monitor: output only to the log.
    Detached,
    /// Foreground: output also to our stdout/stderr (those of them named: `run -a`); `stdin`
    /// forwards ours to the container.
    Foreground {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
}

/// How the monitor takes the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// `start`, `run`, `system boot`: RestartCount and the manual-stop mark start over.
    Start,
    /// Crash repair of a monitor that died waiting to restart its container: the restart the
    /// policy decided goes on (count kept).
    Resume,
    /// Crash repair of a monitor that died while its container ran: watch that very process.
    Adopt,
}

impl Begin {
    pub fn arg(self) -> Option<&'static str> {
        match self {
            Begin::Start => None,
            Begin::Resume => Some("--resume"),
            Begin::Adopt => Some("--adopt"),
        }
    }
}

/// Owns the container until it ends for good. `started` is called once: with `Ok` when the
/// process runs (or, adopting, is watched), or with the error that kept it from starting
/// (then nothing is left running or mounted). Returns the last run's exit code. `client`: a
/// socket a detached monitor was started with, answered as an `attach` request with output
/// right after the start, before any output is read (a foreground `run -it` that may detach:
/// it sees the output from the first byte).
pub fn run(
    paths: &Paths,
    begin: Begin,
    attach: Attach,
    client: Option<std::os::fd::OwnedFd>,
    started: &mut dyn FnMut(std::result::Result<(), &Error>),
) -> Result<i32> {
    let warm_up = (begin != Begin::Adopt).then(cgroup::MigrationWarmUp::start);
    let fail = |started: &mut dyn FnMut(std::result::Result<(), &Error>), e: Error| {
        started(Err(&e));
        Err(e)
    };
    let Some(claim) = store::claim_monitor(paths)? else {
        return fail(started, Error::AlreadyRunning(paths.id.clone()));
    };
    let rec = match claim_record(paths, begin) {
        Ok(r) => r,
        Err(e) => return fail(started, e),
    };
    tracing::debug!(id = %paths.id, ?begin, "claimed");
    process::set_oom_score_adj(MONITOR_OOM_SCORE_ADJ);
    let before = rec.state.clone();
    let mut m = match Monitor::begin(paths, rec, begin, attach) {
        Ok(m) => m,
        Err(failed) => {
            let (e, rec) = *failed;
            drop(warm_up);
            rollback(paths, begin, &rec, before, &e);
            return fail(started, e);
        }
    };
    drop(warm_up);
    tracing::debug!(id = %paths.id, "started");
    started(Ok(()));
    if let Some(fd) = client {
        m.request(
            Request::Attach {
                output: true,
                once: false,
            },
            Conn::from_fd(fd),
        );
    }
    m.claim = Some(std::os::fd::AsRawFd::as_raw_fd(&claim));
    let code = m.supervise();
    m.end(claim, code)
}

/// After a failed begin: nothing of this start may stay. A start goes back to how it was
/// (created or exited) with the reason; an adoption that failed because the init is gone
/// ends the container as crash repair would, and never touches an init that still runs.
fn rollback(paths: &Paths, begin: Begin, rec: &Record, before: RunState, e: &Error) {
    let init_alive =
        begin == Begin::Adopt && process::is_running(rec.state.pid, rec.state.start_time);
    if init_alive {
        tracing::warn!(id = %paths.id, "adopting the running container failed: {e}");
        return;
    }
    cleanup::teardown(paths);
    let state = match begin {
        Begin::Adopt => RunState {
            status: Status::Exited,
            exit_code: 137,
            pid: 0,
            monitor_pid: 0,
            finished_at: Some(Utc::now()),
            error: "rbox monitor died".into(),
            ..before
        },
        Begin::Start | Begin::Resume => RunState {
            status: match before.status {
                Status::Restarting | Status::Running => Status::Exited,
                s => s,
            },
            monitor_pid: 0,
            pid: 0,
            error: e.to_string(),
            ..before
        },
    };
    let _ = update(paths, |r| {
        r.state = state;
        r.networks.clear();
        r.sandbox_key.clear();
        r.ports.clear();
    });
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

fn claim_record(paths: &Paths, begin: Begin) -> Result<Record> {
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = store::load(paths)?;
    let durable = match begin {
        Begin::Start if r.active() => return Err(Error::AlreadyRunning(r.name)),
        Begin::Resume if r.running() => return Err(Error::AlreadyRunning(r.name)),
        Begin::Adopt if !r.running() => return Err(Error::NotRunning(r.name)),
        Begin::Start => {
            // `system boot` decides by these two: they must survive a power loss.
            let boot_relevant = r.settings.restart_policy.starts_at_boot(false)
                && (!r.state.has_been_started || r.state.manually_stopped);
            r.state.manually_stopped = false;
            r.state.has_been_started = true;
            r.restart_count = 0;
            boot_relevant
        }
        Begin::Resume | Begin::Adopt => false,
    };
    r.state.monitor_pid = std::process::id() as i32;
    if begin != Begin::Adopt {
        r.state.error.clear();
        r.state.oom_killed = false;
    }
    if durable {
        store::save(paths, &r)?;
    } else {
        store::save_transient(paths, &r)?;
    }
    Ok(r)
}

/// Which run `Monitor::running` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// The first of this start, right after attaching.
    First,
    /// A later one in the same set-up.
    Restart,
    /// One a dead monitor started.
    Adopted,
}

/// What ends the current run, as a client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Only the restart policy decides.
    Policy,
    /// `stop`/`kill`/`rm -f`: the monitor ends with this run.
    Stop,
    /// `restart`: a new run at once, RestartCount back to 0.
    Restart,
}

struct Monitor<'a> {
    paths: &'a Paths,
    /// The monitor's copy of the record: settings and what it attached. Only the fields it
    /// owns (state, restart count) are written back, so `network connect` is not undone.
    rec: Record,
    attach: Attach,
    attached: Attached,
    sink: Sink,
    run: Option<Attempt>,
    control: control::Server,
    terminal: Option<Terminal>,
    timers: Timers,
    restarts: Restarts,
    ending: Ending,
    /// `wait` clients: answered when the current run ends.
    waiters: Vec<Conn>,
    /// `restart` clients: answered when the new run started.
    restarters: Vec<Conn>,
    last: (i32, bool),
    done: bool,
    buf: Vec<u8>,
    /// The healthcheck, if the container has one.
    health: Option<shim::health::Prober>,
    /// monitor.lock, once the caller was told that the container runs: what a hand-over to
    /// the small mode keeps (`handover`).
    claim: Option<std::os::fd::RawFd>,
    /// The small mode cannot be used (not installed, or exec failed).
    no_shim: bool,
}

impl<'a> Monitor<'a> {
    /// Attaches and starts the first run (or adopts the running one). On error returns the
    /// record as far as it got, for the rollback.
    fn begin(
        paths: &'a Paths,
        mut rec: Record,
        begin: Begin,
        attach: Attach,
    ) -> std::result::Result<Monitor<'a>, Box<(Error, Record)>> {
        let control = match control::listen(paths) {
            Ok(c) => c,
            Err(e) => return Err(Box::new((e, rec))),
        };
        let terminal = match attach {
            Attach::Detached => None,
            Attach::Foreground { stdin, .. } => Some(Terminal::open(stdin && rec.settings.tty)),
        };
        let made = match begin {
            Begin::Adopt => Attempt::adopt(&rec)
                .and_then(|run| Attached::adopt(paths, &mut rec).map(|a| (a, run))),
            Begin::Start | Begin::Resume => Attached::attach(paths, &mut rec)
                .and_then(|a| Attempt::spawn(paths, &rec, &a, attach).map(|run| (a, run))),
        };
        let (mut attached, run) = match made {
            Ok(x) => x,
            Err(e) => return Err(Box::new((e, rec))),
        };
        let mut log = attached.log.take();
        if let Some(l) = &mut log {
            // A detached monitor is single-threaded: a forked child may gzip rotated files.
            l.compress_in_background(attach == Attach::Detached);
        }
        let health = crate::health::prober(paths, &rec);
        let mut m = Monitor {
            health,
            paths,
            restarts: Restarts::new(rec.settings.restart_policy, rec.restart_count),
            rec,
            attach,
            attached,
            sink: Sink {
                log,
                shown: match attach {
                    Attach::Detached => [false, false],
                    Attach::Foreground { stdout, stderr, .. } => [stdout, stderr],
                },
                attachers: Default::default(),
            },
            run: None,
            control,
            terminal,
            timers: Timers::default(),
            ending: Ending::Policy,
            waiters: Vec::new(),
            restarters: Vec::new(),
            last: (0, false),
            done: false,
            buf: vec![0u8; 16 * 1024],
            claim: None,
            no_shim: false,
        };
        let kind = match begin {
            Begin::Adopt => RunKind::Adopted,
            Begin::Start | Begin::Resume => RunKind::First,
        };
        if let Err(e) = m.running(run, kind) {
            // The rollback kills what runs through libcontainer's state (not when adopting).
            drop(m.run.take());
            return Err(Box::new((e, m.rec)));
        }
        Ok(m)
    }

    /// Records a run that started (or was adopted) and makes it the current one.
    fn running(&mut self, run: Attempt, kind: RunKind) -> Result<()> {
        if let (Some(t), Some(m)) = (&mut self.terminal, &run.streams.master) {
            t.attach_pty(std::os::fd::AsFd::as_fd(m));
        }
        let (pid, start_time) = (run.pid.as_raw(), run.start_time);
        self.run = Some(run);
        if kind != RunKind::Adopted {
            crate::events::container(&self.paths.root, &self.rec, "start", &[]);
        }
        let rec = &self.rec;
        let count = self.restarts.count;
        let r = update_transient(self.paths, |r| {
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.start_time = start_time;
            r.state.boot_id = process::boot_id();
            r.state.monitor_pid = std::process::id() as i32;
            if kind != RunKind::Adopted {
                r.state.started_at = Some(Utc::now());
                r.state.finished_at = None;
                r.state.exit_code = 0;
                r.state.oom_killed = false;
            }
            // What attaching made; a restart keeps the record's, `network connect`s included.
            match kind {
                RunKind::First => {
                    r.networks = rec.networks.clone();
                    r.sandbox_key = rec.sandbox_key.clone();
                    r.ports = rec.ports.clone();
                }
                RunKind::Adopted => r.ports = rec.ports.clone(),
                RunKind::Restart => {}
            }
            r.restart_count = count;
        })?;
        self.rec.state = r.state;
        if let Some(h) = &mut self.health {
            let started = self
                .rec
                .state
                .started_at
                .and_then(|t| t.timestamp_nanos_opt())
                .map(shim::time::Timestamp)
                .unwrap_or_else(shim::time::Timestamp::now);
            h.run_started(&mut self.timers, started, false);
        }
        // A detached monitor lives as long as its container: hand back to the kernel the heap
        // pages that starting the run used and freed (parsed spec and profiles, libcontainer's
        // builder), ~1 MB per monitor otherwise.
        if self.attach == Attach::Detached {
            // SAFETY: malloc_trim only releases free memory of this process's allocator.
            unsafe { libc::malloc_trim(0) };
        }
        Ok(())
    }

    /// The descriptors to wait on now.
    fn sources(&self) -> Vec<(std::os::fd::BorrowedFd<'_>, Source)> {
        let mut v = vec![(self.control.fd(), Source::Control)];
        v.extend(
            self.control
                .pending()
                .map(|(i, fd)| (fd, Source::Client(i))),
        );
        v.extend(self.sink.attachers.sources());
        let mut pty = false;
        if let Some(run) = &self.run {
            v.extend(run.streams.sources());
            v.push((run.pidfd(), Source::Exit));
            pty = run.streams.master.is_some();
        }
        if let Some(t) = &self.terminal {
            v.extend(t.sources(pty));
        }
        if let Some(h) = &self.health {
            v.extend(h.sources());
        }
        v
    }

    /// Reacts to events until the container ends for good; returns the last exit code.
    fn supervise(&mut self) -> i32 {
        while !self.done {
            if self.can_hand_over() {
                self.hand_over();
            }
            let mut timers = std::mem::take(&mut self.timers);
            let (evs, clients) = events::wait_ordered(&self.sources(), &mut timers);
            self.timers = timers;
            for (req, conn) in self.control.read(&clients) {
                self.request(req, conn);
            }
            let mut gone = Vec::new();
            for ev in evs {
                match ev {
                    Event::Ready(Source::Attacher(i)) | Event::Hangup(Source::Attacher(i)) => {
                        gone.push(i)
                    }
                    ev => self.handle(ev),
                }
            }
            // After the batch: the indices are those of `sources`.
            self.sink.attachers.remove(&gone);
        }
        self.last.0
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Ready(Source::Control) => self.control.accept(),
            Event::Ready(Source::Client(_) | Source::Attacher(_))
            | Event::Hangup(Source::Client(_) | Source::Attacher(_)) => {}
            Event::Ready(Source::Output(s)) | Event::Hangup(Source::Output(s)) => {
                if let Some(run) = &mut self.run {
                    run.streams.copy(s, &mut self.sink.as_fn());
                }
            }
            Event::Ready(Source::Exit) | Event::Hangup(Source::Exit) => self.run_ended(),
            Event::Ready(Source::Signal) => {
                let sig = self.terminal.as_ref().and_then(|t| t.signal());
                match sig {
                    Some(libc::SIGWINCH) => {
                        if let Some(m) = self.run.as_ref().and_then(|r| r.streams.master.as_ref()) {
                            crate::tty::copy_winsize(
                                std::os::fd::AsFd::as_fd(&std::io::stdin()),
                                std::os::fd::AsFd::as_fd(m),
                            );
                        }
                    }
                    // Docker's sig-proxy forwards through `kill`: no restart follows.
                    Some(sig) => {
                        let _ = self.kill(sig);
                    }
                    None => {}
                }
            }
            Event::Ready(Source::Input) | Event::Hangup(Source::Input) => {
                if let Some(t) = &mut self.terminal {
                    let m = self
                        .run
                        .as_ref()
                        .and_then(|r| r.streams.master.as_ref())
                        .map(std::os::fd::AsFd::as_fd);
                    t.forward_input(m, &mut self.buf, None);
                }
            }
            Event::Hangup(Source::Control) | Event::Hangup(Source::Signal) => {}
            Event::Timer(Timer::Kill) => {
                if let Some(run) = &self.run {
                    let _ = run.signal(libc::SIGKILL);
                }
            }
            Event::Timer(Timer::Backoff) => self.restart_now(),
            Event::Ready(Source::ProbeOutput) | Event::Hangup(Source::ProbeOutput) => {
                if let Some(h) = &mut self.health {
                    h.read_output();
                }
            }
            Event::Ready(Source::ProbeExit) | Event::Hangup(Source::ProbeExit) => {
                let act = self
                    .health
                    .as_mut()
                    .and_then(|h| h.probe_ended(&mut self.timers, false));
                self.unhealthy(act);
            }
            Event::Timer(Timer::ProbeTimeout) => {
                let act = self
                    .health
                    .as_mut()
                    .and_then(|h| h.probe_ended(&mut self.timers, true));
                self.unhealthy(act);
            }
            Event::Timer(Timer::Probe) => {
                let act = self
                    .health
                    .as_mut()
                    .and_then(|h| h.start_probe(&mut self.timers));
                self.unhealthy(act);
            }
        }
    }

    /// The container just became unhealthy: what `--health-on-failure` says. Restart
    /// policies never act on health (Docker's rule); `kill` leaves the decision to them.
    fn unhealthy(&mut self, act: Option<shim::health::OnFailure>) {
        use shim::health::OnFailure;
        let Some(act) = act else { return };
        if self.run.is_none() || self.ending != Ending::Policy {
            return;
        }
        tracing::debug!(id = %self.paths.id, action = act.name(), "unhealthy");
        if let Some(l) = self.sink.log.as_mut() {
            l.note(
                Stream::Stderr,
                &format!(
                    "rbox: the container is unhealthy: --health-on-failure={}",
                    act.name()
                ),
            );
        }
        let (signal, timeout) = crate::lifecycle::StopOptions::default().resolve(&self.rec);
        match act {
            OnFailure::None => {}
            OnFailure::Kill => {
                if let Some(run) = &self.run {
                    let _ = run.signal(libc::SIGKILL);
                }
            }
            OnFailure::Stop => {
                self.mark_manually_stopped();
                self.end_run(Ending::Stop, signal, timeout);
            }
            OnFailure::Restart => self.end_run(Ending::Restart, signal, timeout),
        }
    }

    fn request(&mut self, req: Request, conn: Conn) {
        match req {
            Request::Wait => self.waiters.push(conn),
            Request::Attach { output, once } => {
                let input = self.run.as_ref().and_then(Attempt::input);
                self.sink.attachers.add(conn, input, output);
                if once {
                    // StdinOnce: the client's end is the last.
                    if let Some(run) = &mut self.run {
                        run.release_stdin();
                    }
                }
            }
            Request::Status => conn.reply(&Reply::Status(control::Status::of_log(
                self.sink.log.as_ref(),
            ))),
            Request::Kill { signal } => conn.reply(&match self.kill(signal) {
                Ok(()) => Reply::Ok(None),
                Err(e) => Reply::Err(e),
            }),
            Request::Stop { signal, timeout } => {
                self.mark_manually_stopped();
                self.end_run(Ending::Stop, signal, timeout);
                conn.reply(&Reply::Ok(None));
            }
            Request::Shutdown { signal, timeout } => {
                self.end_run(Ending::Stop, signal, timeout);
                conn.reply(&Reply::Ok(None));
            }
            Request::Restart { signal, timeout } => {
                self.restarters.push(conn);
                self.end_run(Ending::Restart, signal, timeout);
            }
        }
    }

    /// Docker's kill: the signal, and no restart when this run ends.
    fn kill(&mut self, signal: i32) -> std::result::Result<(), String> {
        self.mark_manually_stopped();
        self.ending = Ending::Stop;
        match &self.run {
            Some(run) => run
                .signal(signal)
                .map_err(|e| format!("Cannot kill container {}: {e}", self.rec.id)),
            None => {
                self.stop_waiting();
                Ok(())
            }
        }
    }

    /// Stops the current run with `signal`, SIGKILL after `timeout`; what follows is `then`.
    fn end_run(&mut self, then: Ending, signal: i32, timeout: Option<std::time::Duration>) {
        self.ending = then;
        match &self.run {
            Some(run) => {
                if run.signal(signal).is_err() {
                    // Already exiting: its exit event follows.
                    return;
                }
                if let Some(t) = timeout {
                    self.timers.set(Timer::Kill, t);
                }
            }
            None if then == Ending::Restart => self.restart_now(),
            None => self.stop_waiting(),
        }
    }

    /// Waiting to restart and told to stop: the container ends as its last run did.
    fn stop_waiting(&mut self) {
        self.timers.cancel(Timer::Backoff);
        self.done = true;
    }

    /// `stop`/`kill` said so: `unless-stopped` stays down from now on, also at boot.
    fn mark_manually_stopped(&mut self) {
        if self.rec.state.manually_stopped {
            return;
        }
        self.rec.state.manually_stopped = true;
        let durable = !self.rec.settings.restart_policy.is_none();
        let set = |r: &mut Record| r.state.manually_stopped = true;
        let _ = if durable {
            update(self.paths, set)
        } else {
            update_transient(self.paths, set)
        };
    }

    fn run_ended(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        let ran = run.ran_for();
        if let Some(h) = &mut self.health {
            h.run_ended(&mut self.timers);
        }
        let (code, oom) = run.finish(self.paths, &mut self.sink);
        if oom {
            crate::events::container(&self.paths.root, &self.rec, "oom", &[]);
        }
        crate::events::container(
            &self.paths.root,
            &self.rec,
            "die",
            &[("exitCode", code.to_string())],
        );
        self.timers.cancel(Timer::Kill);
        self.last = (code, oom);
        for w in self.waiters.drain(..) {
            w.reply(&Reply::Ok(Some(code)));
        }
        // Attached clients get the code once the record says how the run ended (a client
        // that then starts the container again must find it stopped): here when the
        // container restarts, in `end` when the monitor ends with it.
        match self.ending {
            Ending::Stop => self.done = true,
            Ending::Restart => {
                self.sink.attachers.finish(code);
                self.restart_now()
            }
            Ending::Policy => {
                let stopped = self.rec.state.manually_stopped;
                match self.restarts.after_exit(code, stopped, ran) {
                    Some(delay) => {
                        tracing::debug!(id = %self.paths.id, code, ?delay, "restarting");
                        let count = self.restarts.count;
                        let _ = update_transient(self.paths, |r| {
                            r.state.status = Status::Restarting;
                            r.state.pid = 0;
                            r.state.exit_code = code;
                            r.state.oom_killed = oom;
                            r.state.finished_at = Some(Utc::now());
                            r.restart_count = count;
                        });
                        self.sink.attachers.finish(code);
                        self.timers.set(Timer::Backoff, delay);
                    }
                    None => self.done = true,
                }
            }
        }
    }

    /// Starts the next run in the same set-up: after the backoff, or at once for `restart`.
    fn restart_now(&mut self) {
        self.timers.cancel(Timer::Backoff);
        if self.ending == Ending::Restart {
            self.restarts.reset();
            self.ending = Ending::Policy;
        }
        let spawned = Attempt::spawn(self.paths, &self.rec, &self.attached, self.attach)
            .and_then(|run| self.running(run, RunKind::Restart));
        let reply = match spawned {
            Ok(()) => Reply::Ok(None),
            Err(e) => {
                tracing::warn!(id = %self.paths.id, "restarting: {e}");
                if let Some(l) = self.sink.log.as_mut() {
                    l.note(Stream::Stderr, &format!("rbox: restarting failed: {e}"));
                }
                self.rec.state.error = e.to_string();
                self.done = true;
                Reply::Err(e.to_string())
            }
        };
        for c in self.restarters.drain(..) {
            c.reply(&reply);
        }
    }

    /// Releases the container and records how it ended (or removes it, with --rm).
    fn end(mut self, mut claim: File, code: i32) -> Result<i32> {
        if let Some(l) = &mut self.sink.log {
            l.finish();
        }
        for c in self.restarters.drain(..).chain(self.waiters.drain(..)) {
            c.reply(&Reply::Ok(Some(code)));
        }
        drop(self.terminal.take());
        let Monitor {
            paths,
            rec,
            attached,
            last,
            mut sink,
            ..
        } = self;
        drop(attached);
        cleanup::release_container(paths);
        tracing::debug!(id = %paths.id, "torn down");
        // Waiters hold this file open: they read the code here even after --rm removed it all.
        let _ = claim
            .set_len(0)
            .and_then(|_| claim.write_all(code.to_string().as_bytes()));
        if rec.settings.auto_remove {
            // The name now, not at the start: `rename` works on a running container.
            let name = cleanup::remove_dir(paths).map_or(rec.name.clone(), |r| r.name);
            if let Ok(names) = store::names_lock(&paths.root) {
                crate::names::release(&paths.root, &name, &paths.id, &names);
            }
            crate::events::container(&paths.root, &rec, "destroy", &[]);
            tracing::debug!(id = %paths.id, "removed");
            sink.attachers.finish(code);
            return Ok(code);
        }
        let error = rec.state.error.clone();
        update(paths, |r| {
            // Stopped while waiting to restart: it finished when its last run did.
            if r.state.status != Status::Restarting || r.state.finished_at.is_none() {
                r.state.finished_at = Some(Utc::now());
            }
            r.state.status = Status::Exited;
            r.state.exit_code = code;
            r.state.oom_killed = last.1;
            r.state.pid = 0;
            r.state.monitor_pid = 0;
            r.state.error = error;
            r.networks.clear();
            r.sandbox_key.clear();
            r.ports.clear();
        })?;
        sink.attachers.finish(code);
        Ok(code)
    }
}
