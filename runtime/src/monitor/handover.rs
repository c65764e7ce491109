//! The detached monitor's small mode (`rbox-shim`, see shim/src/main.rs) and the way back.
//!
//! Once the container runs and nothing is pending (no stop timeout, no `restart` waiting for
//! its new run), the monitor execs `rbox-shim` from beside the rbox binary: the same process
//! (pid, the init as its child, the record lock on monitor.lock), every descriptor it needs
//! kept open, its state in a memfd (`shim::handoff`). The small program copies output to the
//! log, probes the healthcheck and answers `status` and `wait` without libcontainer's pages
//! (the monitor's RSS and private memory are mostly the big binary's). For anything else it
//! execs rbox again as `container-monitor --continue FD ID`, which rebuilds the monitor here
//! (`resume`) and handles what made it come back.
//!
//! No `rbox-shim` beside the binary (or `RBOX_SHIM=0`): the full monitor stays, as before.
//! A kill -9 of either program is a dead monitor: the next command adopts the container.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use shim::events::{Timer, Timers};
use shim::handoff::{self, Handoff, Reason};
use shim::sys::adopt_fd;

use super::attached::Attached;
use super::attempt::Attempt;
use super::control::{Conn, Server};
use super::io::Sink;
use super::{Attach, Ending, Monitor};
use crate::policy::Restarts;
use crate::store::{self, Paths};

/// The small mode's binary, `rbox-shim` beside this one.
fn shim_program() -> Option<PathBuf> {
    if std::env::var_os("RBOX_SHIM").is_some_and(|v| v == "0") {
        return None;
    }
    let p = std::env::current_exe().ok()?.with_file_name("rbox-shim");
    p.is_file().then_some(p)
}

impl Monitor<'_> {
    /// Whether the small mode can watch the container now: a detached monitor whose run is
    /// its own child and up, with nothing in progress that needs the full one.
    pub(super) fn can_hand_over(&self) -> bool {
        self.attach == Attach::Detached
            && self.claim.is_some()
            && !self.no_shim
            && !self.done
            && self.ending == Ending::Policy
            && self.restarters.is_empty()
            && !self.timers.is_set(Timer::Kill)
            && self.run.as_ref().is_some_and(Attempt::is_ours)
    }

    /// Execs the small mode. Returns only when that cannot be done; the full monitor then
    /// goes on as it was (and does not try again).
    pub(super) fn hand_over(&mut self) {
        self.no_shim = true;
        let Some(program) = shim_program() else {
            return;
        };
        let Some(claim) = self.claim else { return };
        let Some(run) = &self.run else { return };
        // SAFETY: open of a NUL-terminated path; the descriptor is owned below.
        let exe = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_PATH) };
        if exe < 0 {
            return;
        }
        // SAFETY: just opened, ours alone.
        let exe = unsafe { OwnedFd::from_raw_fd(exe) };
        if let Some(h) = &mut self.health {
            if h.busy() {
                // A probe in flight is not handed over: it is killed and run again soon.
                h.run_ended(&mut self.timers);
                self.timers
                    .set(Timer::Probe, std::time::Duration::from_secs(1));
            }
        }
        let (listener, pending) = self.control.raw_fds();
        let [out, err, master] = run.streams.raw_fds();
        let (pidfd, stdin) = run.raw_fds();
        let state = Handoff {
            reason: Reason::Watch,
            root: self.paths.root.clone(),
            id: self.paths.id.clone(),
            claim,
            exe: exe.as_raw_fd(),
            listener,
            pending,
            waiters: self.waiters.iter().map(Conn::raw).collect(),
            attachers: self.sink.attachers.raw_fds(),
            request_conn: None,
            pid: run.pid.as_raw(),
            pidfd,
            start_time: run.start_time,
            up: run.ran_for(),
            out,
            err,
            master,
            stdin,
            ports: self.attached.port_fds(),
            log: self.sink.log.as_mut().map(|l| l.state()),
            health: self.health.as_ref().map(|h| h.state(&self.timers)),
            restart_count: self.restarts.count,
            restart_delay: self.restarts.delay(),
            manually_stopped: self.rec.state.manually_stopped,
        };
        let memfd = match state.to_memfd() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(id = %self.paths.id, "monitor state for rbox-shim: {e}");
                return;
            }
        };
        if let Err(e) = state.keep_fds(&[]) {
            state.close_fds_on_exec(&[]);
            tracing::warn!(id = %self.paths.id, "descriptors for rbox-shim: {e}");
            return;
        }
        let argv = [
            "rbox".to_string(),
            "--root".into(),
            self.paths.root.display().to_string(),
            "container-shim".into(),
            memfd.as_raw_fd().to_string(),
            self.paths.id.clone(),
            exe.as_raw_fd().to_string(),
            handoff::VERSION.to_string(),
        ];
        let path =
            std::ffi::CString::new(program.as_os_str().as_encoded_bytes()).unwrap_or_default();
        let e = handoff::exec(&path, &argv);
        state.close_fds_on_exec(&[]);
        tracing::warn!(id = %self.paths.id, "running {}: {e}", program.display());
    }
}

/// Body of `container-monitor --continue FD ID`: the small mode handed the container back.
/// Returns the last run's exit code, as the monitor's `run` does.
pub fn resume(paths: &Paths, fd: RawFd) -> crate::error::Result<i32> {
    use crate::error::Error;
    let h = Handoff::from_fd(fd).map_err(Error::Invalid)?;
    let claim = File::from(
        adopt_fd(h.claim).ok_or_else(|| Error::Invalid("no monitor.lock descriptor".into()))?,
    );
    drop(adopt_fd(h.exe));
    let need = |fd: RawFd, what: &str| {
        adopt_fd(fd).ok_or_else(|| Error::Invalid(format!("no {what} descriptor handed over")))
    };
    let control = Server::from_fds(
        need(h.listener, "control socket")?,
        h.pending.iter().filter_map(|f| adopt_fd(*f)).collect(),
    );
    let waiters: Vec<Conn> = h
        .waiters
        .iter()
        .filter_map(|f| adopt_fd(*f))
        .map(Conn::from_fd)
        .collect();
    let request_conn = h.request_conn.and_then(adopt_fd).map(Conn::from_fd);
    let streams = shim::output::Streams::new(
        h.out.and_then(adopt_fd),
        h.err.and_then(adopt_fd),
        h.master.and_then(adopt_fd),
    );
    let run = Attempt::resume(
        h.pid,
        h.start_time,
        need(h.pidfd, "pidfd")?,
        streams,
        h.up,
        h.stdin.and_then(adopt_fd),
    );
    let ports = net::Reservation::from_fds(h.ports.iter().filter_map(|f| adopt_fd(*f)).collect());
    let mut rec = store::load(paths)?;
    rec.state.manually_stopped |= h.manually_stopped;
    let attached = Attached::resume(paths, &rec, ports)?;
    let log = match h.log {
        Some(s) => {
            let mut w = shim::logs::Writer::resume(s)
                .map_err(|e| Error::io(format!("log of {}", paths.id), e))?;
            w.compress_in_background(true);
            Some(w)
        }
        None => None,
    };
    let mut timers = Timers::default();
    let health = h
        .health
        .map(|s| shim::health::Prober::resume(s, "/proc/self/exe".into(), &mut timers));
    let mut m = Monitor {
        health,
        paths,
        restarts: Restarts::resume(
            rec.settings.restart_policy,
            h.restart_count,
            h.restart_delay,
        ),
        rec,
        attach: Attach::Detached,
        attached,
        sink: Sink {
            log,
            shown: [false, false],
            attachers: shim::attach::Attachers::from_fds(
                h.attachers.iter().filter_map(|f| adopt_fd(*f)).collect(),
            ),
        },
        run: Some(run),
        control,
        terminal: None,
        timers,
        ending: Ending::Policy,
        waiters,
        restarters: Vec::new(),
        last: (0, false),
        done: false,
        buf: vec![0u8; 16 * 1024],
        claim: Some(claim.as_raw_fd()),
        no_shim: false,
    };
    tracing::debug!(id = %paths.id, reason = ?h.reason, "back from rbox-shim");
    match h.reason {
        // Only an rbox-shim of another build hands back a run to watch: stay the full monitor.
        Reason::Watch => m.no_shim = true,
        Reason::Exited => m.run_ended(),
        Reason::Request(req) => match request_conn {
            Some(c) => m.request(req, c),
            None => tracing::warn!(id = %paths.id, "request handed back without its client"),
        },
        Reason::Unhealthy(act) => m.unhealthy(Some(act)),
    }
    let code = m.supervise();
    m.end(claim, code)
}
