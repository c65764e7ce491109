//! `rbox-shim`: the container monitor's small mode. Once the container runs, the detached
//! monitor (the rbox binary, with libcontainer and everything else mapped) execs this small
//! program, which keeps every descriptor and the process itself (pid, the init as its child,
//! the lock on monitor.lock) and does what the steady state needs: copies output to the log,
//! runs the healthcheck, answers `status` and `attach` (sending output to attached clients too)
//! and queues `wait`. Anything else (the init's exit,
//! `stop`, `kill`, `restart`, an unhealthy container with `--health-on-failure`) needs the
//! record or libcontainer: it execs the rbox binary again (held open since, so an upgrade in
//! between changes nothing), handing over its state (`shim::handoff`), and that program goes
//! on as the full monitor.
//!
//! Usage (by the monitor only): `rbox-shim --root ROOT container-shim STATE_FD ID EXE_FD VERSION`;
//! a VERSION of another build goes straight back to the rbox binary (EXE_FD), which stays.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shim::attach::Attachers;
use shim::control::{Conn, Reply, Request, Server, Status};
use shim::events::{self, Event, Source, Timer, Timers};
use shim::handoff::{self, Handoff, Reason};
use shim::health::Prober;
use shim::logs::Writer;
use shim::output::Streams;
use shim::sys;

struct Small {
    root: PathBuf,
    id: String,
    claim: OwnedFd,
    exe: OwnedFd,
    server: Server,
    waiters: Vec<Conn>,
    attachers: Attachers,
    pid: i32,
    pidfd: OwnedFd,
    start_time: u64,
    started: Instant,
    streams: Streams,
    stdin: Option<OwnedFd>,
    ports: Vec<OwnedFd>,
    log: Option<Writer>,
    prober: Option<Prober>,
    timers: Timers,
    restart_count: u32,
    restart_delay: Option<Duration>,
    manually_stopped: bool,
}

fn adopt(fd: i32) -> Option<OwnedFd> {
    sys::adopt_fd(fd)
}

fn fail(msg: &str) -> ! {
    // stderr is /dev/null for a detached monitor; the exit releases monitor.lock and the next
    // rbox command adopts the container, which keeps running.
    eprintln!("rbox-shim: {msg}");
    std::process::exit(1)
}

impl Small {
    fn from(h: Handoff) -> Small {
        let need = |fd: i32, what: &str| {
            adopt(fd).unwrap_or_else(|| fail(&format!("no {what} descriptor")))
        };
        let exe = need(h.exe, "rbox binary");
        let mut timers = Timers::default();
        let program = PathBuf::from(format!("/proc/self/fd/{}", exe.as_raw_fd()));
        let prober = h.health.map(|s| Prober::resume(s, program, &mut timers));
        let log = h.log.and_then(|s| Writer::resume(s).ok()).map(|mut w| {
            w.compress_in_background(true);
            w
        });
        Small {
            claim: need(h.claim, "lock"),
            exe,
            server: Server::from_fds(
                need(h.listener, "control socket"),
                h.pending.into_iter().filter_map(adopt).collect(),
            ),
            waiters: h
                .waiters
                .into_iter()
                .filter_map(adopt)
                .map(Conn::from_fd)
                .collect(),
            attachers: Attachers::from_fds(h.attachers.into_iter().filter_map(adopt).collect()),
            pid: h.pid,
            pidfd: need(h.pidfd, "pidfd"),
            start_time: h.start_time,
            started: Instant::now()
                .checked_sub(h.up)
                .unwrap_or_else(Instant::now),
            streams: Streams::new(
                h.out.and_then(adopt),
                h.err.and_then(adopt),
                h.master.and_then(adopt),
            ),
            stdin: h.stdin.and_then(adopt),
            ports: h.ports.into_iter().filter_map(adopt).collect(),
            log,
            prober,
            timers,
            restart_count: h.restart_count,
            restart_delay: h.restart_delay,
            manually_stopped: h.manually_stopped,
            root: h.root,
            id: h.id,
        }
    }

    fn sources(&self) -> Vec<(std::os::fd::BorrowedFd<'_>, Source)> {
        let mut v = vec![(self.server.fd(), Source::Control)];
        v.extend(self.server.pending().map(|(i, fd)| (fd, Source::Client(i))));
        v.extend(self.attachers.sources());
        v.extend(self.streams.sources());
        v.push((self.pidfd.as_fd(), Source::Exit));
        if let Some(p) = &self.prober {
            v.extend(p.sources());
        }
        v
    }

    fn copy(&mut self, stream: shim::logs::Stream) {
        let (log, attachers) = (&mut self.log, &mut self.attachers);
        self.streams.copy(stream, &mut |s, d| {
            if let Some(l) = log.as_mut() {
                l.write(s, d);
            }
            attachers.send(s, d);
        });
    }

    fn run(mut self) -> ! {
        loop {
            let mut timers = std::mem::take(&mut self.timers);
            let (evs, clients) = events::wait_ordered(&self.sources(), &mut timers);
            self.timers = timers;
            for (req, conn) in self.server.read(&clients) {
                match req {
                    Request::Status => {
                        conn.reply(&Reply::Status(Status::of_log(self.log.as_ref())))
                    }
                    Request::Wait => self.waiters.push(conn),
                    Request::Attach { output, once } => {
                        // The container's input as the full monitor gives it: the pty master,
                        // else the stdin pipe held for -i.
                        let input = self.streams.master.as_ref().or(self.stdin.as_ref());
                        self.attachers.add(conn, input.map(|f| f.as_fd()), output);
                        if once && self.streams.master.is_none() {
                            // StdinOnce: the client's end is the last.
                            self.stdin = None;
                        }
                    }
                    other => self.hand_back(Reason::Request(other), Some(conn)),
                }
            }
            let mut gone = Vec::new();
            for ev in evs {
                match ev {
                    Event::Ready(Source::Attacher(i)) | Event::Hangup(Source::Attacher(i)) => {
                        gone.push(i)
                    }
                    Event::Ready(Source::Control) => self.server.accept(),
                    Event::Ready(Source::Output(s)) | Event::Hangup(Source::Output(s)) => {
                        self.copy(s)
                    }
                    Event::Ready(Source::Exit) | Event::Hangup(Source::Exit) => {
                        let (log, attachers) = (&mut self.log, &mut self.attachers);
                        self.streams.drain(&mut |s, d| {
                            if let Some(l) = log.as_mut() {
                                l.write(s, d);
                            }
                            attachers.send(s, d);
                        });
                        self.hand_back(Reason::Exited, None);
                    }
                    Event::Ready(Source::ProbeOutput) | Event::Hangup(Source::ProbeOutput) => {
                        if let Some(p) = &mut self.prober {
                            p.read_output();
                        }
                    }
                    Event::Ready(Source::ProbeExit) | Event::Hangup(Source::ProbeExit) => {
                        let act = self
                            .prober
                            .as_mut()
                            .and_then(|p| p.probe_ended(&mut self.timers, false));
                        self.acted(act);
                    }
                    Event::Timer(Timer::ProbeTimeout) => {
                        let act = self
                            .prober
                            .as_mut()
                            .and_then(|p| p.probe_ended(&mut self.timers, true));
                        self.acted(act);
                    }
                    Event::Timer(Timer::Probe) => {
                        let act = self
                            .prober
                            .as_mut()
                            .and_then(|p| p.start_probe(&mut self.timers));
                        self.acted(act);
                    }
                    _ => {}
                }
            }
            // After the batch: the indices are those of `sources`.
            self.attachers.remove(&gone);
        }
    }

    fn acted(&mut self, act: Option<shim::health::OnFailure>) {
        if let Some(a) = act {
            self.hand_back(Reason::Unhealthy(a), None);
        }
    }

    /// Execs the rbox binary as the full monitor with everything this program holds.
    fn hand_back(&mut self, reason: Reason, conn: Option<Conn>) -> ! {
        if let Some(p) = &mut self.prober {
            if p.busy() {
                // A probe in flight is not handed over: it is killed and run again soon.
                p.run_ended(&mut self.timers);
                self.timers.set(Timer::Probe, Duration::from_secs(1));
            }
        }
        let health = self.prober.as_ref().map(|p| p.state(&self.timers));
        let log = self.log.as_mut().map(|l| l.state());
        // Nothing is given up here: execve keeps what `keep_fds` marks, and a failed one ends
        // the process.
        let (listener, pending) = self.server.raw_fds();
        let fd = |f: &OwnedFd| f.as_raw_fd();
        let [out, err, master] = self.streams.raw_fds();
        let request_conn = conn.as_ref().map(Conn::raw);
        std::mem::forget(conn);
        let state = Handoff {
            reason,
            root: self.root.clone(),
            id: self.id.clone(),
            claim: fd(&self.claim),
            exe: fd(&self.exe),
            listener,
            pending,
            waiters: self.waiters.iter().map(Conn::raw).collect(),
            attachers: self.attachers.raw_fds(),
            request_conn,
            pid: self.pid,
            pidfd: fd(&self.pidfd),
            start_time: self.start_time,
            up: self.started.elapsed(),
            out,
            err,
            master,
            stdin: self.stdin.as_ref().map(fd),
            ports: self.ports.iter().map(fd).collect(),
            log,
            health,
            restart_count: self.restart_count,
            restart_delay: self.restart_delay,
            manually_stopped: self.manually_stopped,
        };
        let memfd = state
            .to_memfd()
            .unwrap_or_else(|e| fail(&format!("monitor state: {e}")));
        if let Err(e) = state.keep_fds(&[]) {
            fail(&format!("keeping descriptors: {e}"));
        }
        let argv = [
            "rbox".to_string(),
            "--root".into(),
            self.root.display().to_string(),
            "container-monitor".into(),
            "--continue".into(),
            memfd.as_raw_fd().to_string(),
            self.id.clone(),
        ];
        let e = handoff::exec(&handoff::fd_path(&self.exe), &argv);
        fail(&format!("running rbox again: {e}"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // rbox-shim --root ROOT container-shim STATE_FD ID EXE_FD VERSION
    let arg = |name: &str, n: usize| {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + n).cloned()
    };
    let (Some(root), Some(state_fd), Some(id)) = (
        arg("--root", 1),
        arg("container-shim", 1),
        arg("container-shim", 2),
    ) else {
        eprintln!("usage: rbox-shim --root ROOT container-shim STATE_FD ID EXE_FD VERSION (run by rbox's monitor)");
        std::process::exit(2);
    };
    sys::set_name("rbox");
    let version = arg("container-shim", 4).and_then(|v| v.parse::<u32>().ok());
    // Debug builds: the integration tests' stand-in for an rbox-shim of another build.
    let fault =
        cfg!(debug_assertions) && std::env::var("RBOX_FAULT").is_ok_and(|v| v == "shim-version");
    if version != Some(handoff::VERSION) || fault {
        // A state this program may not read (rbox and rbox-shim of different builds): the
        // rbox binary that wrote it goes on as the full monitor, with every descriptor as
        // it passed them.
        if let Some(exe) = arg("container-shim", 3) {
            let argv = [
                "rbox".to_string(),
                "--root".into(),
                root,
                "container-monitor".into(),
                "--continue".into(),
                state_fd,
                id,
            ];
            let path = std::ffi::CString::new(format!("/proc/self/fd/{exe}")).unwrap_or_default();
            let e = handoff::exec(&path, &argv);
            fail(&format!("running rbox again: {e}"));
        }
        fail("started by an rbox of another build");
    }
    let state_fd: i32 = state_fd.parse().unwrap_or(-1);
    let state = match Handoff::from_fd(state_fd) {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    let reason = state.reason.clone();
    let mut small = Small::from(state);
    if reason != Reason::Watch {
        // Only a running container is ours to watch: anything else goes straight back.
        small.hand_back(reason, None);
    }
    small.run()
}
