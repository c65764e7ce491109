//! The monitor's control socket (`<container dir>/control.sock`): how `stop`, `kill`,
//! `restart`, `wait` and `status` reach the process that owns a container, also while it
//! waits to restart it (there is no process to signal then). One request per connection, one
//! reply; a `restart` or `wait` is answered once the new run started or the current run ended.
//!
//! A unix socket path must fit in 108 bytes and container directories can be longer, so both
//! ends reach the socket through `/proc/self/fd/<dir fd>/control.sock`, as conmon does. Only
//! root can connect: the socket lives in the root-owned container directory. The listener and
//! the connections are plain descriptors, so the monitor can hand them to its next program
//! (`into_fds`, `from_fds`) and no client notices.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sys;

const NAME: &str = "control.sock";

/// What a client asks of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Send `signal`, SIGKILL after `timeout` (`None`: wait for ever); no restart follows.
    Stop {
        signal: i32,
        timeout: Option<Duration>,
    },
    /// Send `signal`; the container is not restarted when this run ends (Docker's kill).
    Kill { signal: i32 },
    /// `Stop` for the host going down (`system shutdown`): not a stop by hand, so the restart
    /// policy brings the container back at the next `system boot`.
    Shutdown {
        signal: i32,
        timeout: Option<Duration>,
    },
    /// Stop the run as `Stop` does, then start a new one in the same sandbox.
    Restart {
        signal: i32,
        timeout: Option<Duration>,
    },
    /// Answered with the exit code once the current run ends.
    Wait,
    /// Answered at once with what the monitor knows that no file may show (`Status`).
    Status,
    /// `rbox attach`: answered at once, with a dup of the container's input (the write end
    /// of its stdin pipe, or its pty master) as SCM_RIGHTS when the monitor holds one; with
    /// `output` the connection then carries the run's output and its exit code
    /// (`crate::attach`). Without it (the Engine API, which reads output from the log) only
    /// the descriptor. With `once` (Docker's StdinOnce) the monitor lets go of its own end of
    /// a stdin pipe once it handed it over, so the container sees end of file when the client
    /// closes it.
    Attach { output: bool, once: bool },
}

impl Request {
    pub fn encode(&self) -> String {
        let secs = |t: &Option<Duration>| t.map_or(-1, |d| d.as_secs() as i64);
        match self {
            Request::Stop { signal, timeout } => format!("stop {signal} {}", secs(timeout)),
            Request::Kill { signal } => format!("kill {signal}"),
            Request::Shutdown { signal, timeout } => {
                format!("shutdown {signal} {}", secs(timeout))
            }
            Request::Restart { signal, timeout } => format!("restart {signal} {}", secs(timeout)),
            Request::Wait => "wait".into(),
            Request::Status => "status".into(),
            Request::Attach { output, once } => {
                format!("attach {} {}", *output as u8, *once as u8)
            }
        }
    }

    pub fn decode(s: &str) -> Option<Request> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let timeout = |t: &str| -> Option<Option<Duration>> {
            let n: i64 = t.parse().ok()?;
            Some((n >= 0).then(|| Duration::from_secs(n as u64)))
        };
        match w[..] {
            ["stop", sig, t] => Some(Request::Stop {
                signal: sig.parse().ok()?,
                timeout: timeout(t)?,
            }),
            ["kill", sig] => Some(Request::Kill {
                signal: sig.parse().ok()?,
            }),
            ["shutdown", sig, t] => Some(Request::Shutdown {
                signal: sig.parse().ok()?,
                timeout: timeout(t)?,
            }),
            ["restart", sig, t] => Some(Request::Restart {
                signal: sig.parse().ok()?,
                timeout: timeout(t)?,
            }),
            ["wait"] => Some(Request::Wait),
            ["status"] => Some(Request::Status),
            ["attach", o, once] => {
                let flag = |v: &str| match v {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                };
                Some(Request::Attach {
                    output: flag(o)?,
                    once: flag(once)?,
                })
            }
            _ => None,
        }
    }
}

/// The answer to `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Output being lost (the log cannot be written), as a sentence.
    pub lost: Option<String>,
}

/// The monitor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done; `wait` carries the exit code.
    Ok(Option<i32>),
    Err(String),
    Status(Status),
}

impl Status {
    /// What the monitor says of its log writer (`None`: no log).
    pub fn of_log(log: Option<&crate::logs::Writer>) -> Status {
        Status {
            lost: log.and_then(|l| l.lost()).map(|l| {
                format!(
                    "{} bytes of output lost since {}: {}",
                    l.bytes,
                    l.since.rfc3339(),
                    l.error
                )
            }),
        }
    }
}

impl Reply {
    pub fn encode(&self) -> String {
        match self {
            Reply::Ok(None) => "ok".into(),
            Reply::Ok(Some(c)) => format!("ok {c}"),
            Reply::Err(m) => format!("err {m}"),
            Reply::Status(s) => format!("status\n{}", s.lost.as_deref().unwrap_or("")),
        }
    }

    pub fn decode(s: &str) -> Reply {
        if let Some(rest) = s.strip_prefix("status\n").or((s == "status").then_some("")) {
            return Reply::Status(Status {
                lost: (!rest.is_empty()).then(|| rest.to_string()),
            });
        }
        match s.split_once(' ') {
            _ if s == "ok" => Reply::Ok(None),
            Some(("ok", c)) => Reply::Ok(c.parse().ok()),
            Some(("err", m)) => Reply::Err(m.to_string()),
            _ => Reply::Err(format!(
                "unexpected answer from the container's monitor: {s}"
            )),
        }
    }
}

/// `/proc/self/fd/N/control.sock` for the container's directory, held open by `File`.
fn address(dir: &Path) -> io::Result<(File, libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: open of a NUL-terminated path; the descriptor goes to File at once.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this descriptor; File owns it from here on.
    let dir = unsafe { File::from_raw_fd(fd) };
    let path = format!("/proc/self/fd/{}/{NAME}", dir.as_raw_fd());
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.len() >= addr.sun_path.len() {
        return Err(io::Error::other("control socket path too long"));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(path.bytes()) {
        *d = s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + path.len() + 1) as libc::socklen_t;
    Ok((dir, addr, len))
}

fn seqpacket(extra: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | extra,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send(fd: RawFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: send from our buffer on a socket the caller holds.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv into our buffer on a socket the caller holds.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

pub(crate) fn pollfd(fd: BorrowedFd) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// A client whose request has not arrived yet, or that waits for its reply.
pub struct Conn(OwnedFd);

impl Conn {
    pub fn reply(self, r: &Reply) {
        let _ = send(self.0.as_raw_fd(), r.encode().as_bytes());
    }

    /// `reply` with `fd` passed along (SCM_RIGHTS): the receiver gets its own descriptor of
    /// the same open file.
    pub fn reply_with_fd(&self, r: &Reply, fd: Option<BorrowedFd>) -> io::Result<()> {
        crate::attach::send_with_fd(self.0.as_fd(), r.encode().as_bytes(), fd)
    }

    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    pub fn from_fd(fd: OwnedFd) -> Conn {
        Conn(fd)
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The listening socket and the clients connected to it.
pub struct Server {
    listener: OwnedFd,
    pending: Vec<Conn>,
}

impl Server {
    /// Listens on the control socket in `dir` (replacing one a dead monitor left).
    pub fn listen(dir: &Path) -> io::Result<Server> {
        let _ = std::fs::remove_file(socket_path(dir));
        let fd = seqpacket(libc::SOCK_NONBLOCK)?;
        let (_dir, addr, len) = address(dir)?;
        // SAFETY: bind/listen on our socket with an initialised address of `len` bytes.
        unsafe {
            if libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            ) < 0
                || libc::listen(fd.as_raw_fd(), 16) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Server {
            listener: fd,
            pending: Vec::new(),
        })
    }

    /// The server a previous program of this process ran: its listener and pending clients.
    pub fn from_fds(listener: OwnedFd, pending: Vec<OwnedFd>) -> Server {
        Server {
            listener,
            pending: pending.into_iter().map(Conn).collect(),
        }
    }

    /// Its descriptors, for the next program: the listener and the pending clients.
    pub fn into_fds(self) -> (OwnedFd, Vec<OwnedFd>) {
        (
            self.listener,
            self.pending.into_iter().map(|c| c.0).collect(),
        )
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The listener's and the pending clients' numbers (for a hand-over by execve, which
    /// keeps them open without this process giving them up).
    pub fn raw_fds(&self) -> (RawFd, Vec<RawFd>) {
        (
            self.listener.as_raw_fd(),
            self.pending.iter().map(|c| c.0.as_raw_fd()).collect(),
        )
    }

    /// The clients that have not sent their request yet, as (index, fd).
    pub fn pending(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.pending
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.0.as_fd()))
    }

    /// Takes the connections waiting on the listener.
    pub fn accept(&mut self) {
        loop {
            // SAFETY: accept4 on our listener; no peer address wanted.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd < 0 {
                return;
            }
            // SAFETY: accept4 just returned this descriptor.
            self.pending.push(Conn(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }

    /// Reads the requests of the clients at `ready` (indices from `pending`); those that sent
    /// one are returned with it, those that hung up are dropped.
    pub fn read(&mut self, ready: &[usize]) -> Vec<(Request, Conn)> {
        let mut got = Vec::new();
        let mut keep = Vec::new();
        for (i, c) in self.pending.drain(..).enumerate() {
            if !ready.contains(&i) {
                keep.push(c);
                continue;
            }
            let mut buf = [0u8; 256];
            match recv(c.0.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    match Request::decode(&text) {
                        Some(r) => got.push((r, c)),
                        None => c.reply(&Reply::Err(format!("unknown request: {text}"))),
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => keep.push(c),
                _ => {}
            }
        }
        self.pending = keep;
        got
    }
}

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

/// A connection to the monitor in `dir` (pid `monitor_pid`) and that monitor's pidfd (which
/// tells its death); `None` when none listens.
pub(crate) fn connect(dir: &Path, monitor_pid: i32) -> io::Result<Option<(OwnedFd, OwnedFd)>> {
    if monitor_pid <= 0 {
        return Ok(None);
    }
    let Ok(pidfd) = sys::pidfd_open(monitor_pid) else {
        return Ok(None);
    };
    let fd = seqpacket(0)?;
    let Ok((_dir, addr, len)) = address(dir) else {
        return Ok(None);
    };
    // SAFETY: connect our socket to an initialised address of `len` bytes.
    if unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    } < 0
    {
        return Ok(None);
    }
    Ok(Some((fd, pidfd)))
}

pub(crate) fn send_request(fd: BorrowedFd, req: &Request) -> io::Result<()> {
    send(fd.as_raw_fd(), req.encode().as_bytes())
}

/// Sends `req` to the monitor in `dir` (pid `monitor_pid`) and waits for its reply. `None`
/// when no monitor answers: none listens, or it died before replying (a monitor that hands
/// over to its next program keeps its pid: its pidfd does not report it).
pub fn request(dir: &Path, monitor_pid: i32, req: Request) -> io::Result<Option<Reply>> {
    let Some((fd, pidfd)) = connect(dir, monitor_pid)? else {
        return Ok(None);
    };
    if send(fd.as_raw_fd(), req.encode().as_bytes()).is_err() {
        return Ok(None);
    }
    loop {
        let mut fds = [pollfd(fd.as_fd()), pollfd(pidfd.as_fd())];
        // SAFETY: poll on two descriptors we hold.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        let mut buf = [0u8; 4096];
        if fds[0].revents != 0 {
            return match recv(fd.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => Ok(Some(Reply::decode(&String::from_utf8_lossy(&buf[..n])))),
                _ => Ok(None),
            };
        }
        // The monitor exited without answering.
        return Ok(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        for r in [
            Request::Stop {
                signal: 15,
                timeout: Some(Duration::from_secs(10)),
            },
            Request::Stop {
                signal: 3,
                timeout: None,
            },
            Request::Kill { signal: 9 },
            Request::Shutdown {
                signal: 15,
                timeout: Some(Duration::from_secs(1)),
            },
            Request::Restart {
                signal: 15,
                timeout: Some(Duration::ZERO),
            },
            Request::Wait,
            Request::Status,
            Request::Attach {
                output: true,
                once: false,
            },
            Request::Attach {
                output: false,
                once: true,
            },
        ] {
            assert_eq!(Request::decode(&r.encode()), Some(r));
        }
        assert_eq!(Request::decode("stop x 1"), None);
        for r in [
            Reply::Ok(None),
            Reply::Ok(Some(137)),
            Reply::Err("no such thing".into()),
            Reply::Status(Status::default()),
            Reply::Status(Status {
                lost: Some("12 bytes lost".into()),
            }),
        ] {
            assert_eq!(Reply::decode(&r.encode()), r);
        }
    }

    #[test]
    fn a_request_reaches_the_server_through_a_long_path() {
        let d = tempfile::tempdir().unwrap();
        let long = d.path().join("x".repeat(100));
        let dir = long.join("a".repeat(64));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Server::listen(&dir).unwrap();
        let me = std::process::id() as i32;
        let d2 = dir.clone();
        let client = std::thread::spawn(move || request(&d2, me, Request::Wait).unwrap());
        let mut got = Vec::new();
        while got.is_empty() {
            let mut fds = vec![pollfd(server.fd())];
            fds.extend(server.pending().map(|(_, fd)| pollfd(fd)));
            // SAFETY: poll on descriptors we hold.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            let ready: Vec<usize> = fds[1..]
                .iter()
                .enumerate()
                .filter(|(_, f)| f.revents != 0)
                .map(|(i, _)| i)
                .collect();
            got = server.read(&ready);
            server.accept();
        }
        let (req, conn) = got.pop().unwrap();
        assert_eq!(req, Request::Wait);
        conn.reply(&Reply::Ok(Some(3)));
        assert_eq!(client.join().unwrap(), Some(Reply::Ok(Some(3))));
    }
}
