//! The monitor's control socket (`<container dir>/control.sock`): how `stop`, `kill`,
//! `restart` and `wait` reach the process that owns a container, also while it waits to
//! restart it (there is no process to signal then). One request per connection, one reply;
//! a `restart` or `wait` is answered once the new run started or the current run ended.
//!
//! A unix socket path must fit in 108 bytes and container directories can be longer, so both
//! ends reach the socket through `/proc/self/fd/<dir fd>/control.sock`, as conmon does. Only
//! root can connect: the socket lives in the root-owned container directory.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, connect, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockType, UnixAddr,
};

use crate::error::{Error, Result};
use crate::store::Paths;

const NAME: &str = "control.sock";

/// What a client asks of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
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
}

impl Request {
    fn encode(&self) -> String {
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
        }
    }

    fn decode(s: &str) -> Option<Request> {
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
            _ => None,
        }
    }
}

/// The answer to `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// Output being lost (the log cannot be written), as a sentence.
    pub lost: Option<String>,
}

/// The monitor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Done; `wait` carries the exit code.
    Ok(Option<i32>),
    Err(String),
    Status(Status),
}

impl Reply {
    fn encode(&self) -> String {
        match self {
            Reply::Ok(None) => "ok".into(),
            Reply::Ok(Some(c)) => format!("ok {c}"),
            Reply::Err(m) => format!("err {m}"),
            Reply::Status(s) => format!("status\n{}", s.lost.as_deref().unwrap_or("")),
        }
    }

    fn decode(s: &str) -> Reply {
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
fn address(paths: &Paths) -> std::io::Result<(File, UnixAddr)> {
    let dir = nix::fcntl::open(
        &paths.dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: open just returned this descriptor; File owns it from here on.
    let dir = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(dir) };
    let addr = UnixAddr::new(format!("/proc/self/fd/{}/{NAME}", dir.as_raw_fd()).as_str())?;
    Ok((dir, addr))
}

fn seqpacket(extra: SockFlag) -> nix::Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | extra,
        None,
    )
}

/// A client whose request has not arrived yet, or that waits for its reply.
pub(crate) struct Conn(OwnedFd);

impl Conn {
    pub fn reply(self, r: &Reply) {
        let _ = send(
            self.0.as_raw_fd(),
            r.encode().as_bytes(),
            MsgFlags::MSG_NOSIGNAL,
        );
    }
}

/// The listening socket and the clients connected to it.
pub(crate) struct Server {
    listener: OwnedFd,
    pending: Vec<Conn>,
}

impl Server {
    /// Listens on the container's control socket (replacing one a dead monitor left).
    pub fn listen(paths: &Paths) -> Result<Server> {
        let what = || format!("control socket of {}", paths.id);
        let _ = std::fs::remove_file(paths.control_socket());
        let fd = seqpacket(SockFlag::SOCK_NONBLOCK).map_err(|e| Error::io(what(), e.into()))?;
        let (_dir, addr) = address(paths).map_err(|e| Error::io(what(), e))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| Error::io(what(), e.into()))?;
        listen(&fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
            .map_err(|e| Error::io(what(), e.into()))?;
        Ok(Server {
            listener: fd,
            pending: Vec::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
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
        while let Ok(fd) = accept4(
            self.listener.as_raw_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            // SAFETY: accept4 just returned this descriptor.
            self.pending
                .push(Conn(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }));
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
            match recv(c.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) if n > 0 => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    match Request::decode(&text) {
                        Some(r) => got.push((r, c)),
                        None => c.reply(&Reply::Err(format!("unknown request: {text}"))),
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => keep.push(c),
                _ => {}
            }
        }
        self.pending = keep;
        got
    }
}

/// Sends `req` to the monitor of the container (pid `monitor_pid`) and waits for its reply.
/// `None` when no monitor answers: none listens, or it died before replying.
pub(crate) fn request(paths: &Paths, monitor_pid: i32, req: Request) -> Result<Option<Reply>> {
    if monitor_pid <= 0 {
        return Ok(None);
    }
    let Ok(pidfd) = crate::process::pidfd_open(monitor_pid) else {
        return Ok(None);
    };
    let what = || format!("asking the monitor of {}", paths.id);
    let fd = seqpacket(SockFlag::empty()).map_err(|e| Error::io(what(), e.into()))?;
    let Ok((_dir, addr)) = address(paths) else {
        return Ok(None);
    };
    if connect(fd.as_raw_fd(), &addr).is_err() {
        return Ok(None);
    }
    if send(
        fd.as_raw_fd(),
        req.encode().as_bytes(),
        MsgFlags::MSG_NOSIGNAL,
    )
    .is_err()
    {
        return Ok(None);
    }
    loop {
        let mut fds = [
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io(what(), e.into())),
        }
        let mut buf = [0u8; 4096];
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
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
        let paths = Paths::new(&long, &"a".repeat(64));
        std::fs::create_dir_all(&paths.dir).unwrap();
        let mut server = Server::listen(&paths).unwrap();
        let me = std::process::id() as i32;
        let p2 = paths.clone();
        let client = std::thread::spawn(move || request(&p2, me, Request::Wait).unwrap());
        let mut got = Vec::new();
        while got.is_empty() {
            let mut fds = vec![PollFd::new(server.fd(), PollFlags::POLLIN)];
            fds.extend(
                server
                    .pending()
                    .map(|(_, fd)| PollFd::new(fd, PollFlags::POLLIN)),
            );
            poll(&mut fds, PollTimeout::NONE).unwrap();
            let ready: Vec<usize> = fds[1..]
                .iter()
                .enumerate()
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
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
