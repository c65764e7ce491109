//! What one program of the monitor hands to the next when it execs it (the full monitor to the
//! small mode once the container runs, the small mode back to the full monitor for anything
//! that needs libcontainer or the record): the numbers of the descriptors it keeps open (they
//! survive execve, as do the pid, the init's parent relationship and the record lock on
//! monitor.lock) and its state, as `key value` lines in a memfd whose number is an argument.
//!
//! Both programs are built from one tree; `VERSION` tells a mismatched pair, and a small mode
//! that is given a state it cannot take hands it straight back.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use crate::control::Request;
use crate::health::{Health, OnFailure, Probe, Status};
use crate::logs::{Driver, Lost};
use crate::time::Timestamp;

/// Changes whenever the format does.
pub const VERSION: u32 = 3;

/// Why the receiving program runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The container runs: go on watching it (full monitor -> small mode).
    Watch,
    /// The init exited (its pidfd is readable, it is not reaped yet).
    Exited,
    /// A client asked this (its connection is `request_conn`).
    Request(Request),
    /// The healthcheck turned unhealthy and `--health-on-failure` says this.
    Unhealthy(OnFailure),
}

/// The log writer's state between programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    pub path: PathBuf,
    pub driver: Driver,
    pub max_size: Option<u64>,
    pub max_file: u32,
    pub compress: bool,
    pub attrs: Vec<(String, String)>,
    pub partial: [Vec<u8>; 2],
    pub pieces: [(String, u32); 2],
    pub lost: Option<Lost>,
    pub compressor: Option<i32>,
}

/// The healthcheck's state between programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
    pub on_failure: OnFailure,
    pub health: Health,
    pub run_started: Timestamp,
    /// When the next probe is due, from the hand-over.
    pub next_probe: Option<Duration>,
    pub path: PathBuf,
    pub args: Vec<String>,
    /// The event log and the start of its lines (`Prober::with_events`).
    pub events: Option<(PathBuf, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub reason: Reason,
    pub root: PathBuf,
    pub id: String,
    /// monitor.lock, which holds the record lock that says "a monitor owns this container".
    pub claim: RawFd,
    /// The rbox binary (O_PATH), whatever is installed at its path by now.
    pub exe: RawFd,
    pub listener: RawFd,
    /// Control clients that have not sent their request yet.
    pub pending: Vec<RawFd>,
    /// `wait` clients, answered when the run ends.
    pub waiters: Vec<RawFd>,
    /// Attached clients (`rbox attach`), sent the run's output.
    pub attachers: Vec<RawFd>,
    /// The client whose request is `Reason::Request`.
    pub request_conn: Option<RawFd>,
    pub pid: i32,
    pub pidfd: RawFd,
    pub start_time: u64,
    /// How long the run had been up at the hand-over.
    pub up: Duration,
    /// Stdout and stderr pipes, or the pty master; the write end of stdin held for `-di`.
    pub out: Option<RawFd>,
    pub err: Option<RawFd>,
    pub master: Option<RawFd>,
    pub stdin: Option<RawFd>,
    /// The sockets that hold the published host ports.
    pub ports: Vec<RawFd>,
    pub log: Option<LogState>,
    pub health: Option<HealthState>,
    pub restart_count: u32,
    pub restart_delay: Option<Duration>,
    pub manually_stopped: bool,
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2 + 1);
    // A leading marker keeps the empty value a word of its own.
    s.push('x');
    for &c in b {
        s.push(H[(c >> 4) as usize] as char);
        s.push(H[(c & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix('x')?;
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn fds(v: &[RawFd]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |x| x.to_string())
}

fn reason_text(r: &Reason) -> String {
    match r {
        Reason::Watch => "watch".into(),
        Reason::Exited => "exited".into(),
        Reason::Request(req) => format!("request {}", hex(req.encode().as_bytes())),
        Reason::Unhealthy(a) => format!("unhealthy {}", a.name()),
    }
}

impl Handoff {
    pub fn encode(&self) -> String {
        let mut out = format!("rbox-monitor-state {VERSION}\n");
        let mut put = |k: &str, v: String| {
            out.push_str(k);
            out.push(' ');
            out.push_str(&v);
            out.push('\n');
        };
        put("reason", reason_text(&self.reason));
        put("root", hex(self.root.as_os_str().as_encoded_bytes()));
        put("id", self.id.clone());
        put("claim", self.claim.to_string());
        put("exe", self.exe.to_string());
        put("listener", self.listener.to_string());
        put("pending", fds(&self.pending));
        put("waiters", fds(&self.waiters));
        put("attachers", fds(&self.attachers));
        put("request_conn", opt(&self.request_conn));
        put("pid", self.pid.to_string());
        put("pidfd", self.pidfd.to_string());
        put("start_time", self.start_time.to_string());
        put("up_ms", self.up.as_millis().to_string());
        put("out", opt(&self.out));
        put("err", opt(&self.err));
        put("master", opt(&self.master));
        put("stdin", opt(&self.stdin));
        put("ports", fds(&self.ports));
        put("restart_count", self.restart_count.to_string());
        put(
            "restart_delay_ms",
            opt(&self.restart_delay.map(|d| d.as_millis())),
        );
        put(
            "manually_stopped",
            (self.manually_stopped as u8).to_string(),
        );
        if let Some(l) = &self.log {
            put("log_path", hex(l.path.as_os_str().as_encoded_bytes()));
            put("log_driver", l.driver.name().into());
            put("log_max_size", opt(&l.max_size));
            put("log_max_file", l.max_file.to_string());
            put("log_compress", (l.compress as u8).to_string());
            for (k, v) in &l.attrs {
                put(
                    "log_attr",
                    format!("{} {}", hex(k.as_bytes()), hex(v.as_bytes())),
                );
            }
            for i in 0..2 {
                put(&format!("log_partial{i}"), hex(&l.partial[i]));
                put(
                    &format!("log_pieces{i}"),
                    format!("{} {}", hex(l.pieces[i].0.as_bytes()), l.pieces[i].1),
                );
            }
            if let Some(lost) = &l.lost {
                put(
                    "log_lost",
                    format!(
                        "{} {} {}",
                        lost.since.0,
                        lost.bytes,
                        hex(lost.error.as_bytes())
                    ),
                );
            }
            put("log_compressor", opt(&l.compressor));
        }
        if let Some(h) = &self.health {
            put(
                "health_check",
                format!(
                    "{} {} {} {} {}",
                    h.interval.as_nanos(),
                    h.timeout.as_nanos(),
                    h.start_period.as_nanos(),
                    h.start_interval.as_nanos(),
                    h.retries
                ),
            );
            put("health_on_failure", h.on_failure.name().into());
            put("health_status", h.health.status.name().into());
            put("health_streak", h.health.failing_streak.to_string());
            for p in &h.health.log {
                put(
                    "health_probe",
                    format!(
                        "{} {} {} {}",
                        p.start.0,
                        p.end.0,
                        p.exit_code,
                        hex(p.output.as_bytes())
                    ),
                );
            }
            put("health_run_started", h.run_started.0.to_string());
            put("health_next_ms", opt(&h.next_probe.map(|d| d.as_millis())));
            put("health_path", hex(h.path.as_os_str().as_encoded_bytes()));
            for a in &h.args {
                put("health_arg", hex(a.as_bytes()));
            }
            if let Some((log, prefix)) = &h.events {
                put(
                    "health_events",
                    format!(
                        "{} {}",
                        hex(log.as_os_str().as_encoded_bytes()),
                        hex(prefix.as_bytes())
                    ),
                );
            }
        }
        out
    }

    pub fn decode(text: &str) -> Result<Handoff, String> {
        let mut lines = text.lines();
        let head = lines.next().unwrap_or("");
        if head != format!("rbox-monitor-state {VERSION}") {
            return Err(format!("monitor state of another rbox version: {head:?}"));
        }
        let mut one: BTreeMap<&str, &str> = BTreeMap::new();
        let mut many: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for l in lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            one.insert(k, v);
            many.entry(k).or_default().push(v);
        }
        let bad = |k: &str| format!("monitor state: bad or missing {k}");
        let get = |k: &str| one.get(k).copied().ok_or_else(|| bad(k));
        let num = |k: &str| -> Result<i64, String> { get(k)?.parse().map_err(|_| bad(k)) };
        let fd = |k: &str| -> Result<RawFd, String> { num(k).map(|n| n as RawFd) };
        let opt_num = |k: &str| -> Result<Option<i64>, String> {
            match get(k)? {
                "-" => Ok(None),
                v => v.parse().map(Some).map_err(|_| bad(k)),
            }
        };
        let opt_fd = |k: &str| opt_num(k).map(|v| v.map(|n| n as RawFd));
        let fd_list = |k: &str| -> Result<Vec<RawFd>, String> {
            match get(k)? {
                "-" => Ok(Vec::new()),
                v => v
                    .split(',')
                    .map(|f| f.parse().map_err(|_| bad(k)))
                    .collect(),
            }
        };
        let path = |k: &str| -> Result<PathBuf, String> {
            let b = unhex(get(k)?).ok_or_else(|| bad(k))?;
            Ok(PathBuf::from(String::from_utf8(b).map_err(|_| bad(k))?))
        };
        let string = |v: &str, k: &str| -> Result<String, String> {
            String::from_utf8(unhex(v).ok_or_else(|| bad(k))?).map_err(|_| bad(k))
        };
        let reason = {
            let r = get("reason")?;
            let (w, rest) = r.split_once(' ').unwrap_or((r, ""));
            match w {
                "watch" => Reason::Watch,
                "exited" => Reason::Exited,
                "request" => Reason::Request(
                    Request::decode(&string(rest, "reason")?).ok_or_else(|| bad("reason"))?,
                ),
                "unhealthy" => {
                    Reason::Unhealthy(OnFailure::parse(rest).map_err(|_| bad("reason"))?)
                }
                _ => return Err(bad("reason")),
            }
        };
        let log = match one.get("log_path") {
            None => None,
            Some(_) => {
                let mut attrs = Vec::new();
                for a in many.get("log_attr").cloned().unwrap_or_default() {
                    let (k, v) = a.split_once(' ').ok_or_else(|| bad("log_attr"))?;
                    attrs.push((string(k, "log_attr")?, string(v, "log_attr")?));
                }
                let pieces = |i: usize| -> Result<(String, u32), String> {
                    let k = format!("log_pieces{i}");
                    let v = get(&k)?;
                    let (id, n) = v.split_once(' ').ok_or_else(|| bad(&k))?;
                    Ok((string(id, &k)?, n.parse().map_err(|_| bad(&k))?))
                };
                let partial = |i: usize| -> Result<Vec<u8>, String> {
                    let k = format!("log_partial{i}");
                    unhex(get(&k)?).ok_or_else(|| bad(&k))
                };
                let lost = match one.get("log_lost") {
                    None => None,
                    Some(v) => {
                        let w: Vec<&str> = v.split(' ').collect();
                        let [since, bytes, err] = w[..] else {
                            return Err(bad("log_lost"));
                        };
                        Some(Lost {
                            since: Timestamp(since.parse().map_err(|_| bad("log_lost"))?),
                            bytes: bytes.parse().map_err(|_| bad("log_lost"))?,
                            error: string(err, "log_lost")?,
                        })
                    }
                };
                Some(LogState {
                    path: path("log_path")?,
                    driver: Driver::parse(get("log_driver")?).map_err(|_| bad("log_driver"))?,
                    max_size: opt_num("log_max_size")?.map(|n| n as u64),
                    max_file: num("log_max_file")? as u32,
                    compress: num("log_compress")? != 0,
                    attrs,
                    partial: [partial(0)?, partial(1)?],
                    pieces: [pieces(0)?, pieces(1)?],
                    lost,
                    compressor: opt_num("log_compressor")?.map(|n| n as i32),
                })
            }
        };
        let health = match one.get("health_check") {
            None => None,
            Some(v) => {
                let n: Vec<u64> = v
                    .split(' ')
                    .map(|x| x.parse().map_err(|_| bad("health_check")))
                    .collect::<Result<_, _>>()?;
                let [interval, timeout, start_period, start_interval, retries] = n[..] else {
                    return Err(bad("health_check"));
                };
                let mut log = std::collections::VecDeque::new();
                for p in many.get("health_probe").cloned().unwrap_or_default() {
                    let w: Vec<&str> = p.split(' ').collect();
                    let [start, end, code, out] = w[..] else {
                        return Err(bad("health_probe"));
                    };
                    let n = |s: &str| s.parse::<i64>().map_err(|_| bad("health_probe"));
                    log.push_back(Probe {
                        start: Timestamp(n(start)?),
                        end: Timestamp(n(end)?),
                        exit_code: n(code)? as i32,
                        output: string(out, "health_probe")?,
                    });
                }
                let mut args = Vec::new();
                for a in many.get("health_arg").cloned().unwrap_or_default() {
                    args.push(string(a, "health_arg")?);
                }
                let events = match one.get("health_events") {
                    None => None,
                    Some(v) => {
                        let (log, prefix) =
                            v.split_once(' ').ok_or_else(|| bad("health_events"))?;
                        Some((
                            PathBuf::from(string(log, "health_events")?),
                            string(prefix, "health_events")?,
                        ))
                    }
                };
                Some(HealthState {
                    interval: Duration::from_nanos(interval),
                    timeout: Duration::from_nanos(timeout),
                    start_period: Duration::from_nanos(start_period),
                    start_interval: Duration::from_nanos(start_interval),
                    retries: retries as u32,
                    on_failure: OnFailure::parse(get("health_on_failure")?)
                        .map_err(|_| bad("health_on_failure"))?,
                    health: Health {
                        status: Status::from_name(get("health_status")?)
                            .ok_or_else(|| bad("health_status"))?,
                        failing_streak: num("health_streak")? as u32,
                        log,
                    },
                    run_started: Timestamp(num("health_run_started")?),
                    next_probe: opt_num("health_next_ms")?
                        .map(|ms| Duration::from_millis(ms as u64)),
                    path: path("health_path")?,
                    args,
                    events,
                })
            }
        };
        Ok(Handoff {
            reason,
            root: path("root")?,
            id: get("id")?.to_string(),
            claim: fd("claim")?,
            exe: fd("exe")?,
            listener: fd("listener")?,
            pending: fd_list("pending")?,
            waiters: fd_list("waiters")?,
            attachers: fd_list("attachers")?,
            request_conn: opt_fd("request_conn")?,
            pid: num("pid")? as i32,
            pidfd: fd("pidfd")?,
            start_time: num("start_time")? as u64,
            up: Duration::from_millis(num("up_ms")? as u64),
            out: opt_fd("out")?,
            err: opt_fd("err")?,
            master: opt_fd("master")?,
            stdin: opt_fd("stdin")?,
            ports: fd_list("ports")?,
            log,
            health,
            restart_count: num("restart_count")? as u32,
            restart_delay: opt_num("restart_delay_ms")?.map(|ms| Duration::from_millis(ms as u64)),
            manually_stopped: num("manually_stopped")? != 0,
        })
    }

    /// Every descriptor the state names, for keeping them open across execve.
    pub fn all_fds(&self) -> Vec<RawFd> {
        let mut v = vec![self.claim, self.exe, self.listener, self.pidfd];
        v.extend(&self.pending);
        v.extend(&self.waiters);
        v.extend(&self.attachers);
        v.extend(self.request_conn);
        v.extend(
            [self.out, self.err, self.master, self.stdin]
                .into_iter()
                .flatten(),
        );
        v.extend(&self.ports);
        v
    }

    /// Writes the state to a memfd that stays open across execve; returns it.
    pub fn to_memfd(&self) -> io::Result<OwnedFd> {
        // SAFETY: memfd_create with a NUL-terminated name; not close-on-exec on purpose.
        let fd = unsafe { libc::memfd_create(c"rbox-monitor-state".as_ptr(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        f.write_all(self.encode().as_bytes())?;
        f.rewind()?;
        Ok(OwnedFd::from(f))
    }

    /// Reads the state from the descriptor the previous program passed, and closes it.
    pub fn from_fd(fd: RawFd) -> Result<Handoff, String> {
        let owned = crate::sys::adopt_fd(fd).ok_or("no monitor state descriptor")?;
        let mut f = std::fs::File::from(owned);
        let mut s = String::new();
        f.read_to_string(&mut s).map_err(|e| e.to_string())?;
        Handoff::decode(&s)
    }

    /// Makes every descriptor of the state survive execve. Errors name the first that fails.
    pub fn keep_fds(&self, extra: &[RawFd]) -> io::Result<()> {
        for fd in self.all_fds().into_iter().chain(extra.iter().copied()) {
            crate::sys::keep_on_exec(fd)?;
        }
        Ok(())
    }

    /// Undoes `keep_fds` when the execve failed.
    pub fn close_fds_on_exec(&self, extra: &[RawFd]) {
        for fd in self.all_fds().into_iter().chain(extra.iter().copied()) {
            crate::sys::close_on_exec(fd);
        }
    }
}

/// execve(`program`, argv) keeping what `keep_fds` marked; returns only on failure.
pub fn exec(program: &std::ffi::CStr, argv: &[String]) -> io::Error {
    let c: Vec<std::ffi::CString> = argv
        .iter()
        .filter_map(|a| std::ffi::CString::new(a.as_str()).ok())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = c.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: NUL-terminated program and argv that outlive the call; the process image is
    // replaced on success.
    unsafe { libc::execve(program.as_ptr(), ptrs.as_ptr(), environ) };
    io::Error::last_os_error()
}

/// The descriptor as a path execve takes: `/proc/self/fd/N`.
pub fn fd_path(fd: &impl AsRawFd) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips() {
        let mut h = Health::default();
        h.record(
            Probe {
                start: Timestamp(5),
                end: Timestamp(6),
                exit_code: 1,
                output: "a b\nc".into(),
            },
            &crate::health::Check::new(0, 0, 0, 0, 0),
            Timestamp(0),
        );
        let s = Handoff {
            reason: Reason::Request(Request::Stop {
                signal: 15,
                timeout: Some(Duration::from_secs(3)),
            }),
            root: "/var/lib/rbox dir".into(),
            id: "abc".into(),
            claim: 5,
            exe: 6,
            listener: 7,
            pending: vec![8, 9],
            waiters: vec![],
            attachers: vec![15, 16],
            request_conn: Some(10),
            pid: 1234,
            pidfd: 11,
            start_time: 99,
            up: Duration::from_millis(1500),
            out: Some(12),
            err: Some(13),
            master: None,
            stdin: None,
            ports: vec![14],
            log: Some(LogState {
                path: "/x/y-json.log".into(),
                driver: Driver::JsonFile,
                max_size: Some(10_000_000),
                max_file: 3,
                compress: false,
                attrs: vec![("k".into(), "v v".into())],
                partial: [b"half".to_vec(), Vec::new()],
                pieces: [("id1".into(), 2), (String::new(), 0)],
                lost: Some(Lost {
                    since: Timestamp(7),
                    bytes: 8,
                    error: "No space left".into(),
                }),
                compressor: Some(4321),
            }),
            health: Some(HealthState {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(30),
                start_period: Duration::ZERO,
                start_interval: Duration::from_secs(5),
                retries: 3,
                on_failure: OnFailure::Restart,
                health: h,
                run_started: Timestamp(1),
                next_probe: Some(Duration::from_millis(250)),
                path: "/x/health.json".into(),
                args: vec!["--root".into(), "/var/lib/rbox dir".into()],
                events: Some(("/r/events.jsonl".into(), "{\"Type\":\"container\"".into())),
            }),
            restart_count: 2,
            restart_delay: Some(Duration::from_millis(400)),
            manually_stopped: true,
        };
        assert_eq!(Handoff::decode(&s.encode()).unwrap(), s);
        assert!(Handoff::decode("rbox-monitor-state 0\n").is_err());
        for r in [
            Reason::Watch,
            Reason::Exited,
            Reason::Unhealthy(OnFailure::Kill),
        ] {
            let t = Handoff {
                reason: r.clone(),
                log: None,
                health: None,
                ..s.clone()
            };
            assert_eq!(Handoff::decode(&t.encode()).unwrap().reason, r);
        }
    }
}
