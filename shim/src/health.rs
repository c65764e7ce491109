//! Healthchecks as dockerd runs them (daemon/health.go), without systemd or a daemon: the
//! container's monitor runs the probe every `interval` (from the end of one to the start of
//! the next; `start-interval` while starting within the start period), kills it after
//! `timeout`, keeps the last 5 results with their first 4 KiB of output, and says
//! `healthy` after a success, `unhealthy` after `retries` failures in a row (failures within
//! the start period do not count while starting).
//!
//! The probe is a process of rbox's (`rbox container-health ID`: an `exec` of the test in the
//! container, its stdout and stderr on one pipe to the monitor), so this crate needs no
//! libcontainer. The state is published in `<dir>/health.json`, Docker's `State.Health`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::events::{Source, Timer, Timers};
use crate::logs::format::json_string;
use crate::time::Timestamp;

/// Docker's limits: results kept, bytes of output kept per result.
pub const MAX_LOG: usize = 5;
pub const MAX_OUTPUT: usize = 4096;

/// Docker's defaults for a zero setting.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 3;

/// When and how often to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

impl Check {
    /// From Docker's nanosecond settings (0 = default).
    pub fn new(
        interval: i64,
        timeout: i64,
        start_period: i64,
        start_interval: i64,
        retries: i64,
    ) -> Check {
        let d = |ns: i64, default: Duration| {
            if ns <= 0 {
                default
            } else {
                Duration::from_nanos(ns as u64)
            }
        };
        Check {
            interval: d(interval, DEFAULT_INTERVAL),
            timeout: d(timeout, DEFAULT_TIMEOUT),
            start_period: d(start_period, Duration::ZERO),
            start_interval: d(start_interval, DEFAULT_START_INTERVAL),
            retries: if retries <= 0 {
                DEFAULT_RETRIES
            } else {
                retries.min(u32::MAX as i64) as u32
            },
        }
    }

    /// The wait before the next probe, `since_start` after the run started.
    pub fn next_in(&self, status: Status, since_start: Duration) -> Duration {
        if status == Status::Starting && since_start < self.start_period {
            self.start_interval
        } else {
            self.interval
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }

    pub fn from_name(s: &str) -> Option<Status> {
        match s {
            "starting" => Some(Status::Starting),
            "healthy" => Some(Status::Healthy),
            "unhealthy" => Some(Status::Unhealthy),
            _ => None,
        }
    }
}

/// One probe's result (Docker's HealthcheckResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub start: Timestamp,
    pub end: Timestamp,
    /// 0 healthy; anything else (-1: timed out or could not run) a failure.
    pub exit_code: i32,
    pub output: String,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: Status,
    pub failing_streak: u32,
    pub log: VecDeque<Probe>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            status: Status::Starting,
            failing_streak: 0,
            log: VecDeque::new(),
        }
    }
}

impl Health {
    /// A run started: `starting` again, the streak at 0; the results stay (dockerd's
    /// initHealthMonitor).
    pub fn restart(&mut self) {
        self.status = Status::Starting;
        self.failing_streak = 0;
    }

    /// Takes a result (dockerd's handleProbeResult); returns the status before it.
    pub fn record(&mut self, probe: Probe, check: &Check, run_started: Timestamp) -> Status {
        let before = self.status;
        let started_ago =
            Duration::from_nanos(probe.start.0.saturating_sub(run_started.0).max(0) as u64);
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = Status::Healthy;
        } else if self.status != Status::Starting || started_ago >= check.start_period {
            self.failing_streak += 1;
            if self.failing_streak >= check.retries {
                self.status = Status::Unhealthy;
            }
        }
        self.log.push_back(probe);
        while self.log.len() > MAX_LOG {
            self.log.pop_front();
        }
        before
    }

    /// Docker's JSON: `{"Status":..,"FailingStreak":..,"Log":[{"Start","End","ExitCode","Output"}]}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = b"{\"Status\":\"".to_vec();
        out.extend_from_slice(self.status.name().as_bytes());
        out.extend_from_slice(
            format!("\",\"FailingStreak\":{},\"Log\":[", self.failing_streak).as_bytes(),
        );
        for (i, p) in self.log.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(
                format!(
                    "{{\"Start\":\"{}\",\"End\":\"{}\",\"ExitCode\":{},\"Output\":",
                    p.start.rfc3339(),
                    p.end.rfc3339(),
                    p.exit_code
                )
                .as_bytes(),
            );
            json_string(&mut out, p.output.as_bytes());
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// Publishes the state at `path` (temporary name, rename: readers see one whole state).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.to_json())?;
        std::fs::rename(&tmp, path)
    }
}

/// `--health-on-failure` (podman's option; Docker has none, and restart policies never act on
/// health): what the monitor does when the container becomes unhealthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    #[default]
    None,
    /// SIGKILL the process; the restart policy then decides, as after any exit.
    Kill,
    /// As `rbox restart`: a new run now.
    Restart,
    /// As `rbox stop`: no restart follows.
    Stop,
}

impl OnFailure {
    pub fn parse(s: &str) -> Result<OnFailure, String> {
        match s {
            "" | "none" => Ok(OnFailure::None),
            "kill" => Ok(OnFailure::Kill),
            "restart" => Ok(OnFailure::Restart),
            "stop" => Ok(OnFailure::Stop),
            _ => Err(format!(
                "invalid --health-on-failure \"{s}\": must be none, kill, restart or stop"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OnFailure::None => "none",
            OnFailure::Kill => "kill",
            OnFailure::Restart => "restart",
            OnFailure::Stop => "stop",
        }
    }
}

/// The monitor's side of a container's healthcheck: schedules probes on its timers, runs one
/// at a time, takes their results and publishes the state; tells the monitor when the
/// container became unhealthy and `--health-on-failure` wants something done.
pub struct Prober {
    check: Check,
    on_failure: OnFailure,
    pub state: Health,
    probe: Option<Running>,
    run_started: Timestamp,
    path: PathBuf,
    /// The probe helper: program and arguments (`rbox --root R container-health ID`).
    program: PathBuf,
    args: Vec<OsString>,
    /// Where a change of status is logged as Docker's `health_status: S` event: the root's
    /// event log and the line's start (type, actor, scope), which the runtime renders.
    events: Option<(PathBuf, String)>,
}

impl Prober {
    pub fn new(
        check: Check,
        on_failure: OnFailure,
        path: PathBuf,
        program: PathBuf,
        args: Vec<OsString>,
    ) -> Prober {
        Prober {
            check,
            on_failure,
            state: Health::default(),
            probe: None,
            run_started: Timestamp::now(),
            path,
            program,
            args,
            events: None,
        }
    }

    /// Logs changes of status as events (see `events`).
    pub fn with_events(mut self, log: PathBuf, prefix: String) -> Prober {
        self.events = Some((log, prefix));
        self
    }

    /// Its state for the monitor's next program (between probes: see `busy`).
    pub fn state(&self, timers: &Timers) -> crate::handoff::HealthState {
        crate::handoff::HealthState {
            interval: self.check.interval,
            timeout: self.check.timeout,
            start_period: self.check.start_period,
            start_interval: self.check.start_interval,
            retries: self.check.retries,
            on_failure: self.on_failure,
            health: self.state.clone(),
            run_started: self.run_started,
            next_probe: timers
                .due_at(Timer::Probe)
                .map(|at| at.saturating_duration_since(std::time::Instant::now())),
            path: self.path.clone(),
            args: self
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            events: self.events.clone(),
        }
    }

    /// The prober a previous program of this monitor had, its next probe on `timers`;
    /// `program` runs the probe helper now (the rbox binary).
    pub fn resume(s: crate::handoff::HealthState, program: PathBuf, timers: &mut Timers) -> Prober {
        if let Some(d) = s.next_probe {
            timers.set(Timer::Probe, d);
        }
        Prober {
            check: Check {
                interval: s.interval,
                timeout: s.timeout,
                start_period: s.start_period,
                start_interval: s.start_interval,
                retries: s.retries,
            },
            on_failure: s.on_failure,
            state: s.health,
            probe: None,
            run_started: s.run_started,
            path: s.path,
            program,
            args: s.args.into_iter().map(OsString::from).collect(),
            events: s.events,
        }
    }

    /// A run started at `started`: `starting` unless `keep` (an adopted run goes on as it
    /// was), the first probe after the first interval.
    pub fn run_started(&mut self, timers: &mut Timers, started: Timestamp, keep: bool) {
        self.run_started = started;
        if !keep {
            self.state.restart();
        }
        self.publish();
        let since =
            Duration::from_nanos(Timestamp::now().0.saturating_sub(started.0).max(0) as u64);
        timers.set(Timer::Probe, self.check.next_in(self.state.status, since));
    }

    /// The run ended: a probe in flight is killed and forgotten, nothing is scheduled.
    pub fn run_ended(&mut self, timers: &mut Timers) {
        timers.cancel(Timer::Probe);
        timers.cancel(Timer::ProbeTimeout);
        if let Some(p) = self.probe.take() {
            p.kill();
            let _ = p.finish(None);
        }
    }

    /// A probe runs now (a monitor hands over only between probes).
    pub fn busy(&self) -> bool {
        self.probe.is_some()
    }

    pub fn sources(&self) -> Vec<(BorrowedFd<'_>, Source)> {
        let mut v = Vec::new();
        if let Some(p) = &self.probe {
            if let Some(fd) = p.output_fd() {
                v.push((fd, Source::ProbeOutput));
            }
            v.push((p.pidfd(), Source::ProbeExit));
        }
        v
    }

    /// `Timer::Probe`: starts the probe; one that cannot start is a failed result.
    pub fn start_probe(&mut self, timers: &mut Timers) -> Option<OnFailure> {
        let mut cmd = std::process::Command::new(&self.program);
        {
            use std::os::unix::process::CommandExt;
            cmd.arg0("rbox");
        }
        cmd.args(&self.args);
        match Running::spawn(cmd) {
            Ok(r) => {
                self.probe = Some(r);
                timers.set(Timer::ProbeTimeout, self.check.timeout);
                None
            }
            Err(e) => {
                let now = Timestamp::now();
                self.result(
                    Probe {
                        start: now,
                        end: now,
                        exit_code: -1,
                        output: format!("starting the health check: {e}"),
                    },
                    timers,
                )
            }
        }
    }

    /// `Source::ProbeOutput`.
    pub fn read_output(&mut self) {
        if let Some(p) = &mut self.probe {
            p.read_output();
        }
    }

    /// `Source::ProbeExit` (`timed_out: false`) or `Timer::ProbeTimeout` (true).
    pub fn probe_ended(&mut self, timers: &mut Timers, timed_out: bool) -> Option<OnFailure> {
        let p = self.probe.take()?;
        timers.cancel(Timer::ProbeTimeout);
        let result = p.finish(timed_out.then_some(self.check.timeout));
        self.result(result, timers)
    }

    fn result(&mut self, probe: Probe, timers: &mut Timers) -> Option<OnFailure> {
        let before = self.state.record(probe, &self.check, self.run_started);
        self.publish();
        if before != self.state.status {
            self.log_event();
        }
        let since = Duration::from_nanos(
            Timestamp::now().0.saturating_sub(self.run_started.0).max(0) as u64,
        );
        timers.set(Timer::Probe, self.check.next_in(self.state.status, since));
        let turned = before != Status::Unhealthy && self.state.status == Status::Unhealthy;
        (turned && self.on_failure != OnFailure::None).then_some(self.on_failure)
    }

    fn publish(&self) {
        // A full disk must not stop the checks: the next result tries again.
        let _ = self.state.write(&self.path);
    }

    /// Docker's `health_status: S` event, one write on the O_APPEND log (as the runtime's
    /// events are); a log that cannot be written costs the event only.
    fn log_event(&self) {
        use std::io::Write;
        let Some((log, prefix)) = &self.events else {
            return;
        };
        let now = Timestamp::now().0;
        let line = format!(
            "{prefix},\"Action\":\"health_status: {}\",\"time\":{},\"timeNano\":{now}}}\n",
            self.state.status.name(),
            now / 1_000_000_000
        );
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// A probe process that runs now: its pid, pidfd, output pipe and what it printed so far.
pub struct Running {
    pub pid: libc::pid_t,
    pidfd: OwnedFd,
    out: Option<OwnedFd>,
    buf: Vec<u8>,
    truncated: bool,
    pub start: Timestamp,
}

impl Running {
    /// Starts `cmd` (the probe helper) with its stdout and stderr on one pipe, stdin
    /// /dev/null, killed if this process dies.
    pub fn spawn(mut cmd: std::process::Command) -> io::Result<Running> {
        use std::os::unix::process::CommandExt;
        let (r, w) = crate::sys::pipe()?;
        let w2 = w.try_clone()?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(w))
            .stderr(std::process::Stdio::from(w2));
        // SAFETY: only prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let start = Timestamp::now();
        let child = cmd.spawn()?;
        drop(cmd);
        let pid = child.id() as libc::pid_t;
        // The child is reaped through its pid; std's handle does not wait on drop.
        drop(child);
        let pidfd = crate::sys::pidfd_open(pid)?;
        crate::sys::set_nonblocking(r.as_fd());
        Ok(Running {
            pid,
            pidfd,
            out: Some(r),
            buf: Vec::new(),
            truncated: false,
            start,
        })
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    pub fn output_fd(&self) -> Option<BorrowedFd<'_>> {
        self.out.as_ref().map(|f| f.as_fd())
    }

    /// Takes what the probe printed; keeps the first MAX_OUTPUT bytes (Docker's
    /// limitedBuffer), reads and drops the rest so the probe never blocks on a full pipe.
    pub fn read_output(&mut self) {
        let Some(fd) = &self.out else { return };
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: read into our buffer from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                let n = n as usize;
                let keep = (MAX_OUTPUT - self.buf.len()).min(n);
                self.buf.extend_from_slice(&chunk[..keep]);
                if keep < n {
                    self.truncated = true;
                }
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n == 0 {
                self.out = None;
            }
            return;
        }
    }

    /// Kills the probe (its timeout passed, or the run ended).
    pub fn kill(&self) {
        let _ = crate::sys::send_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }

    /// Reaps the probe and makes its result; `timed_out` when it was killed for its timeout.
    pub fn finish(mut self, timed_out: Option<Duration>) -> Probe {
        if timed_out.is_some() {
            self.kill();
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
        self.read_output();
        let end = Timestamp::now();
        if let Some(t) = timed_out {
            return Probe {
                start: self.start,
                end,
                exit_code: -1,
                output: format!(
                    "Health check exceeded timeout ({})",
                    crate::time::go_duration(t)
                ),
            };
        }
        let mut output = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            output.push_str("...");
        }
        let exit_code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        Probe {
            start: self.start,
            end,
            exit_code,
            output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(at: i64, code: i32) -> Probe {
        Probe {
            start: Timestamp::from_secs(at),
            end: Timestamp::from_secs(at),
            exit_code: code,
            output: format!("run {at}"),
        }
    }

    #[test]
    fn transitions_as_dockerd_makes_them() {
        let check = Check::new(1_000_000_000, 0, 10_000_000_000, 0, 2);
        let mut h = Health::default();
        let t0 = Timestamp::from_secs(100);
        // Failures in the start period do not count while starting.
        h.record(probe(101, 1), &check, t0);
        h.record(probe(105, 1), &check, t0);
        assert_eq!((h.status, h.failing_streak), (Status::Starting, 0));
        assert_eq!(h.record(probe(106, 0), &check, t0), Status::Starting);
        assert_eq!(h.status, Status::Healthy);
        // Once healthy, failures count even within the start period.
        h.record(probe(107, 1), &check, t0);
        assert_eq!((h.status, h.failing_streak), (Status::Healthy, 1));
        h.record(probe(108, 3), &check, t0);
        assert_eq!((h.status, h.failing_streak), (Status::Unhealthy, 2));
        h.record(probe(109, 0), &check, t0);
        assert_eq!((h.status, h.failing_streak), (Status::Healthy, 0));
        assert_eq!(h.log.len(), MAX_LOG);
        assert_eq!(h.log.back().unwrap().output, "run 109");
        h.restart();
        assert_eq!(
            (h.status, h.failing_streak, h.log.len()),
            (Status::Starting, 0, MAX_LOG)
        );
        // The start interval applies only while starting in the start period.
        assert_eq!(
            check.next_in(Status::Starting, Duration::from_secs(3)),
            DEFAULT_START_INTERVAL
        );
        assert_eq!(
            check.next_in(Status::Healthy, Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            check.next_in(Status::Starting, Duration::from_secs(30)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn json_is_dockers_shape() {
        let mut h = Health::default();
        h.record(probe(0, 0), &Check::new(0, 0, 0, 0, 0), Timestamp(0));
        h.log[0].output = "ok \"quoted\"\n".into();
        assert_eq!(
            String::from_utf8(h.to_json()).unwrap(),
            "{\"Status\":\"healthy\",\"FailingStreak\":0,\"Log\":[{\"Start\":\"1970-01-01T00:00:00.000000000Z\",\"End\":\"1970-01-01T00:00:00.000000000Z\",\"ExitCode\":0,\"Output\":\"ok \\\"quoted\\\"\\n\"}]}"
        );
    }

    #[test]
    fn a_probe_is_timed_out_and_its_output_bounded() {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "yes x | head -c 10000; exit 3"]);
        let mut r = Running::spawn(cmd).unwrap();
        let mut fds = [libc::pollfd {
            fd: r.pidfd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        while fds[0].revents == 0 {
            r.read_output();
            // SAFETY: poll on our pidfd.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 10) };
        }
        let p = r.finish(None);
        assert_eq!(p.exit_code, 3);
        assert_eq!(p.output.len(), MAX_OUTPUT + 3);
        assert!(p.output.ends_with("x\n..."));
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("10");
        let r = Running::spawn(cmd).unwrap();
        let p = r.finish(Some(Duration::from_millis(1500)));
        assert_eq!(p.exit_code, -1);
        assert_eq!(p.output, "Health check exceeded timeout (1.5s)");
    }
}
