//! `rbox attach` over the control socket. The client sends `attach`; the monitor (full or
//! small mode, whichever holds the container now) answers at once with a dup of the
//! container's input as SCM_RIGHTS — the write end of the stdin pipe it holds for `-i`, or the
//! pty master for `-t` — so the client writes keystrokes and sets the window size itself and
//! the monitor never relays input. With `output` the connection stays with the monitor
//! (`Attachers`), which sends every read of the run's output on it as one message, then the
//! exit code when the run ends.
//!
//! Output goes over the connection rather than being followed from the log because the log
//! holds whole lines only (a shell's prompt or the echo of what one types on a tty would show
//! late), and a container logging to `none` has no log at all.
//!
//! Messages (SOCK_SEQPACKET keeps their bounds): `1` and bytes (stdout, or a tty's output),
//! `2` and bytes (stderr), `x` and the exit code in decimal. The monitor never blocks on a
//! client: a client whose socket buffer is full (it does not read fast enough) is dropped, and
//! sees the connection end without an exit code.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::control::{self, Conn, Reply, Request};
use crate::events::Source;
use crate::logs::Stream;

const STDOUT: u8 = b'1';
const STDERR: u8 = b'2';
const EXIT: u8 = b'x';

/// The room output may take in one client's socket before the client is dropped: a terminal
/// that is slow for a moment (a burst of output over ssh) keeps its stream.
const SEND_BUFFER: libc::c_int = 4 << 20;

/// The most one message carries: a read of the output (the `Streams` buffer) and its tag.
pub const MESSAGE_MAX: usize = 64 * 1024 + 1;

/// Sends `data` on `sock`, with `pass` as SCM_RIGHTS.
pub(crate) fn send_with_fd(
    sock: BorrowedFd,
    data: &[u8],
    pass: Option<BorrowedFd>,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one descriptor's control message, aligned as cmsghdr wants.
    let mut space = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = pass {
        // SAFETY: CMSG_* over our own buffer, which is large enough for one int.
        unsafe {
            let len = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = len;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    // SAFETY: sendmsg on a socket we hold, from buffers that outlive the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message into `buf`, and a descriptor passed with it.
fn recv_with_fd(sock: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut space = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    // SAFETY: recvmsg into buffers we own; descriptors arrive close-on-exec.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into `space`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, fd))
}

/// The clients attached to the run's output, on the monitor's side.
#[derive(Default)]
pub struct Attachers {
    conns: Vec<OwnedFd>,
}

impl Attachers {
    /// The clients a previous program of this monitor had.
    pub fn from_fds(conns: Vec<OwnedFd>) -> Attachers {
        Attachers { conns }
    }

    /// Their numbers, for a hand-over by execve.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.conns.iter().map(|c| c.as_raw_fd()).collect()
    }

    /// Answers an `attach` request: `input` (the stdin pipe's write end or the pty master)
    /// goes along as a descriptor of the client's own; with `output` the client stays.
    pub fn add(&mut self, conn: Conn, input: Option<BorrowedFd>, output: bool) {
        if conn.reply_with_fd(&Reply::Ok(None), input).is_err() || !output {
            return;
        }
        let fd = conn.into_fd();
        // SAFETY: setsockopt with an int on our socket; SO_SNDBUFFORCE needs CAP_NET_ADMIN
        // (the monitor runs as root), SO_SNDBUF is the capped fallback.
        unsafe {
            let v = SEND_BUFFER;
            let len = std::mem::size_of_val(&v) as libc::socklen_t;
            let p = (&v as *const libc::c_int).cast();
            if libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                p,
                len,
            ) < 0
            {
                libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, p, len);
            }
        }
        self.conns.push(fd);
    }

    /// The clients, for the event loop: a client never sends after its request, so readiness
    /// means it hung up (`remove`).
    pub fn sources(&self) -> Vec<(BorrowedFd<'_>, Source)> {
        self.conns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_fd(), Source::Attacher(i)))
            .collect()
    }

    /// Drops the clients at `gone` (indices from `sources`).
    pub fn remove(&mut self, gone: &[usize]) {
        let mut i = 0;
        self.conns.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
    }

    /// One read of the run's output, to every client; one that cannot take it now is dropped
    /// (the monitor waits for no client).
    pub fn send(&mut self, stream: Stream, data: &[u8]) {
        if self.conns.is_empty() || data.is_empty() {
            return;
        }
        let tag = [match stream {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        }];
        self.conns.retain(|c| {
            let iov = [
                libc::iovec {
                    iov_base: tag.as_ptr() as *mut libc::c_void,
                    iov_len: 1,
                },
                libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                },
            ];
            // SAFETY: an all-zero msghdr is valid; it points at `iov`, which outlives the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = 2;
            // SAFETY: sendmsg on a socket we hold.
            let n = unsafe {
                libc::sendmsg(c.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
            };
            n >= 0
        });
    }

    /// The run ended with `code`: every client gets it and goes (Docker's attach ends with the
    /// run, also when a restart policy starts the next one).
    pub fn finish(&mut self, code: i32) {
        for c in self.conns.drain(..) {
            let msg = format!("{}{code}", EXIT as char);
            // SAFETY: send from our buffer on a socket we hold.
            unsafe {
                libc::send(
                    c.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
        }
    }
}

/// What an attached client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Output: the first `n` bytes of the buffer after the tag, i.e. `buf[1..=n]`.
    Output(Stream, usize),
    /// The run ended with this code.
    Exit(i32),
    /// The monitor closed the connection without a code: it dropped a client that read too
    /// slowly, or it died.
    Closed,
}

/// The client's side of an attachment.
pub struct Attachment {
    pub conn: OwnedFd,
    /// The container's input (stdin pipe or pty master), if the monitor holds one.
    pub input: Option<OwnedFd>,
}

impl Attachment {
    /// Reads one message into `buf` (at least `MESSAGE_MAX` long).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Message> {
        let (n, _) = loop {
            match recv_with_fd(self.conn.as_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(Message::Closed);
        }
        Ok(match buf[0] {
            STDOUT => Message::Output(Stream::Stdout, n - 1),
            STDERR => Message::Output(Stream::Stderr, n - 1),
            EXIT => match std::str::from_utf8(&buf[1..n])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                Some(code) => Message::Exit(code),
                None => Message::Closed,
            },
            _ => Message::Closed,
        })
    }
}

/// Attaches to the monitor in `dir` (pid `monitor_pid`); `output` and `once` as
/// `Request::Attach` has them. `None` when no monitor answers;
/// `Some(Err)` with the monitor's refusal.
pub fn attach(
    dir: &Path,
    monitor_pid: i32,
    output: bool,
    once: bool,
) -> io::Result<Option<Result<Attachment, String>>> {
    let Some((conn, pidfd)) = control::connect(dir, monitor_pid)? else {
        return Ok(None);
    };
    if control::send_request(conn.as_fd(), &Request::Attach { output, once }).is_err() {
        return Ok(None);
    }
    loop {
        let mut fds = [
            control::pollfd(conn.as_fd()),
            control::pollfd(pidfd.as_fd()),
        ];
        // SAFETY: poll on two descriptors we hold.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents == 0 {
            // The monitor exited without answering.
            return Ok(None);
        }
        return answer(conn);
    }
}

/// The monitor's answer to an attach on `conn`: also the end of a socket pair a monitor was
/// started with (`--attached`), which it answers as an `attach` with output once the run is
/// up. `None` when the monitor closed it without an answer (it died, or the run never
/// started).
pub fn answer(conn: OwnedFd) -> io::Result<Option<Result<Attachment, String>>> {
    let mut buf = [0u8; 4096];
    let (n, input) = loop {
        match recv_with_fd(conn.as_fd(), &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        match Reply::decode(&String::from_utf8_lossy(&buf[..n])) {
            Reply::Ok(_) => Ok(Attachment { conn, input }),
            Reply::Err(m) => Err(m),
            Reply::Status(_) => Err("unexpected answer from the container's monitor".into()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_input_and_the_exit_code_reach_the_client() {
        let d = tempfile::tempdir().unwrap();
        let mut server = control::Server::listen(d.path()).unwrap();
        let me = std::process::id() as i32;
        let dir = d.path().to_path_buf();
        let client =
            std::thread::spawn(move || attach(&dir, me, true, false).unwrap().unwrap().unwrap());
        let (req, conn) = loop {
            let mut fds = vec![control::pollfd(server.fd())];
            fds.extend(server.pending().map(|(_, fd)| control::pollfd(fd)));
            // SAFETY: poll on descriptors we hold.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            let ready: Vec<usize> = (0..fds.len() - 1).collect();
            if let Some(got) = server.read(&ready).pop() {
                break got;
            }
            server.accept();
        };
        assert_eq!(
            req,
            Request::Attach {
                output: true,
                once: false
            }
        );
        let (r, w) = crate::sys::pipe().unwrap();
        let mut attachers = Attachers::default();
        attachers.add(conn, Some(w.as_fd()), true);
        drop(w);
        let a = client.join().unwrap();
        attachers.send(Stream::Stderr, b"err\n");
        attachers.send(Stream::Stdout, b"out");
        attachers.finish(3);
        let mut buf = vec![0u8; MESSAGE_MAX];
        assert_eq!(
            a.read(&mut buf).unwrap(),
            Message::Output(Stream::Stderr, 4)
        );
        assert_eq!(&buf[1..5], b"err\n");
        assert_eq!(
            a.read(&mut buf).unwrap(),
            Message::Output(Stream::Stdout, 3)
        );
        assert_eq!(a.read(&mut buf).unwrap(), Message::Exit(3));
        assert_eq!(a.read(&mut buf).unwrap(), Message::Closed);
        // The passed descriptor is the pipe's write end.
        let input = a.input.unwrap();
        assert_eq!(nix_write(input.as_raw_fd(), b"hi"), 2);
        let mut got = [0u8; 2];
        // SAFETY: read into our buffer from the pipe we hold.
        assert_eq!(
            unsafe { libc::read(r.as_raw_fd(), got.as_mut_ptr().cast(), 2) },
            2
        );
        assert_eq!(&got, b"hi");
    }

    fn nix_write(fd: RawFd, b: &[u8]) -> isize {
        // SAFETY: write from our buffer to a descriptor we hold.
        unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
    }
}
