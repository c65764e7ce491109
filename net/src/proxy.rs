//! The userland proxy of the published paths the kernel cannot forward: `[::1]` (always), and
//! every IPv6 address of a container that has only IPv4 (`-p H:C` binds `[::]` too, as Docker
//! does, for clients that try `localhost` as ::1 first). One proxy process per container
//! serves all its listeners.
//!
//! Why not DNAT: tried DNAT in nat OUTPUT plus MASQUERADE of ::1 to the bridge address. The SYN
//! reaches the container, but its SYN-ACK, un-NATed back to ::1 as it arrives on the bridge, is
//! dropped: the input route lookup for a loopback destination is strict about the device
//! (ip6_route_input_lookup() adds RT6_LOOKUP_F_IFACE when rt6_need_strict(), which includes
//! IPV6_ADDR_LOOPBACK, net/ipv6/route.c), so it fails for anything but lo (seen as kfree_skb at
//! br_nf_pre_routing_finish_ipv6; without br_netfilter, ip6_rcv_finish does the same lookup).
//! IPv6 has no route_localnet. Docker runs its docker-proxy there too.
//!
//! So `publish` puts the reservation sockets of those bindings into listen() and hands them, as
//! fds 3, 4, ..., to `rbox network port-proxy --to ADDR --to ADDR ...` (this binary
//! re-executed; the n-th `--to` is where fd 3+n's connections go). Where the kernel DNATs the
//! rest of a `[::]` binding (a container with IPv6), only ::1 ever reaches the listener. The
//! proxy is then the ports' only holder: killing it frees them at once and a connection can
//! never wait in a backlog nobody accepts. It dies with the thread that started it (PR_SET_PDEATHSIG: the
//! container's monitor, which calls `publish` on its main thread), and `unpublish` kills it by
//! pid once /proc/PID/stat's start time proves the pid is still that proxy.
//!
//! A thread per listener; per connection a thread per direction (64 KiB stacks), bytes moved
//! with splice(2) through a pipe, a half-close passed on with shutdown(SHUT_WR), an error
//! closing both sides.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{io as io_err, Error, Result};

/// The descriptor the proxy finds its first listening socket on (the others follow).
const LISTEN_FD: i32 = 3;
const STACK: usize = 64 * 1024;
/// Listeners one proxy takes (a fixed array: the child may not allocate before exec).
const MAX_LISTENERS: usize = 1024;
/// Bytes per splice: the pipe is grown to hold it (fewer syscalls per byte than 64 KiB).
const CHUNK: usize = 256 * 1024;

/// A running proxy, as the ports record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Process {
    /// The first host port it serves (for logs).
    pub host_port: u16,
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: tells this proxy from a later process given the same pid.
    pub start_time: u64,
}

/// In a child between fork and exec (async-signal-safe): it gets SIGKILL when `parent` (the
/// process that forked it) dies, and fails with ESRCH if that happened already.
pub(crate) fn die_with_parent(parent: i32) -> io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Dead before the line above: the signal will never come.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Starts the proxy of `listeners` (listening sockets, each with the address its connections
/// go to). Must run on the thread that lives as long as the ports are held: the proxy is killed
/// when that thread ends.
pub(crate) fn spawn(
    listeners: Vec<(OwnedFd, SocketAddr)>,
    container_id: &str,
    host_port: u16,
) -> Result<Process> {
    let what = format!("starting the port proxy of port {host_port}");
    if listeners.len() > MAX_LISTENERS {
        return Err(Error::Invalid(format!(
            "{what}: more than {MAX_LISTENERS} ports on IPv6 or ::1"
        )));
    }
    // PR_SET_PDEATHSIG fires when the forking *thread* exits; only the main thread's end is
    // the process's end. Every caller (monitor, `network sandbox publish`) publishes there.
    if nix::unistd::gettid() != nix::unistd::getpid() {
        return Err(Error::Invalid(format!(
            "{what}: not on the main thread, the proxy could outlive its container"
        )));
    }
    let parent = std::process::id() as i32;
    let fds: Vec<i32> = listeners.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let n = fds.len() as i32;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("rbox")
        .args(["network", "port-proxy", "--container"])
        .arg(container_id);
    for (_, to) in &listeners {
        cmd.arg("--to").arg(to.to_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Above every source and target slot, so that placing one never overwrites another.
    let spare = fds.iter().copied().max().unwrap_or(0).max(LISTEN_FD + n) + 1;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // If the holder is gone, nobody would ever kill this proxy.
            die_with_parent(parent)?;
            // Its own session: a terminal's ^C or hangup reaches the monitor's group, not it.
            libc::setsid();
            let mut moved = [0i32; MAX_LISTENERS];
            for (i, fd) in fds.iter().enumerate() {
                moved[i] = libc::fcntl(*fd, libc::F_DUPFD, spare);
                if moved[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, fd) in moved.iter().take(fds.len()).enumerate() {
                if libc::dup2(*fd, LISTEN_FD + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Nothing else of the monitor's (its report pipe would keep `run -d` waiting).
            libc::close_range(
                (LISTEN_FD + n) as u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC as i32,
            );
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io_err(what.clone()))?;
    drop(listeners);
    let pid = child.id() as i32;
    // Our unreaped child: its pid cannot have been reused yet.
    let Some(start_time) = start_time(pid) else {
        let p = Process {
            host_port,
            pid,
            start_time: 0,
        };
        kill_child(&p);
        return Err(Error::Invalid(format!("{what}: it exited at once")));
    };
    tracing::debug!(pid, host_port, n, "port proxy started");
    Ok(Process {
        host_port,
        pid,
        start_time,
    })
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the kernel just gave us this descriptor.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Kills `p` if it still runs, and returns once it is gone (its socket closed). Whoever holds a
/// pid it did not start checks the start time first: the pidfd then pins that very process.
pub(crate) fn stop(p: &Process) {
    let Some(pidfd) = pidfd_open(p.pid) else {
        return;
    };
    if start_time(p.pid) != Some(p.start_time) {
        return;
    }
    kill_pidfd(p, &pidfd);
}

/// `stop` for a child we just started (no start time needed: it is not reaped).
fn kill_child(p: &Process) {
    if let Some(pidfd) = pidfd_open(p.pid) {
        kill_pidfd(p, &pidfd);
    }
}

fn kill_pidfd(p: &Process, pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on a descriptor we own, no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r != 0 {
        return;
    }
    // Readable once it has exited: its descriptors, the port among them, are closed then.
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16));
    // The monitor is its parent: reap it here rather than leave a zombie (ECHILD otherwise).
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(p.pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
    tracing::debug!(pid = p.pid, port = p.host_port, "port proxy stopped");
}

/// Body of the hidden `network port-proxy` command: serves the listening sockets on fds 3, 4,
/// ... (one per `to`, in order) until killed. Returns (an exit code) only when one of them is
/// unusable.
pub fn serve_main(to: &[SocketAddr]) -> i32 {
    // A peer's reset must never kill the proxy: writes to it fail with EPIPE instead.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    // `ps -C rbox-proxy`, `ss -p`: a name of its own rather than the monitor's "exe".
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"rbox-proxy".as_ptr()) };
    // Changing credentials clears PR_SET_PDEATHSIG (prctl(2)): armed again right after, and a
    // holder that died in between is seen as a new parent.
    let holder = nix::unistd::getppid();
    if let Err(e) = drop_privileges() {
        eprintln!("Error: port proxy: dropping privileges: {e}");
        return 125;
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0
        || nix::unistd::getppid() != holder
    {
        return 125;
    }
    let mut serving = Vec::new();
    for (i, dest) in to.iter().copied().enumerate() {
        let fd = LISTEN_FD + i as i32;
        // SAFETY: fds 3.. are the sockets `spawn` handed over, one per `to`; each taken once.
        let listener = TcpListener::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let t = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || accept_loop(&listener, fd, dest));
        match t {
            Ok(t) => serving.push(t),
            Err(e) => {
                eprintln!("Error: port proxy: no thread for fd {fd}: {e}");
                return 125;
            }
        }
    }
    // Each loop returns only when its socket is unusable.
    for t in serving {
        if let Ok(code) = t.join() {
            return code;
        }
    }
    125
}

fn accept_loop(listener: &TcpListener, fd: i32, to: SocketAddr) -> i32 {
    loop {
        match listener.accept() {
            Ok((client, _)) => {
                let spawned = std::thread::Builder::new()
                    .stack_size(STACK)
                    .spawn(move || relay(client, to));
                if let Err(e) = spawned {
                    // The connection went with the closure: it is closed, the proxy goes on.
                    tracing::debug!("port proxy: no thread for a connection: {e}");
                }
            }
            Err(e) => match e.raw_os_error() {
                // Out of descriptors or memory: wait for connections to end instead of spinning.
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EOPNOTSUPP) => {
                    eprintln!("Error: port proxy: fd {fd} is not a listening socket: {e}");
                    return 125;
                }
                // Aborted or reset before accept, EINTR, network errors: the next one.
                _ => {}
            },
        }
    }
}

/// The proxy needs no privilege once it has its listening socket: it dials the container as any
/// client would. It runs as `nobody` (leaving uid 0 clears every capability) with
/// no_new_privs, so a bug in it cannot be turned against the host.
fn drop_privileges() -> nix::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let (uid, gid) = (Uid::from_raw(65534), Gid::from_raw(65534));
    setgroups(&[])?;
    setresgid(gid, gid, gid)?;
    setresuid(uid, uid, uid)?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// One connection: the container side is dialled, then each direction is copied on its own
/// thread (this one downstream).
fn relay(client: TcpStream, to: SocketAddr) {
    let server = match TcpStream::connect(to) {
        Ok(s) => s,
        Err(_) => {
            // Refused by the container: the client sees a reset too, not an empty reply.
            let _ = nix::sys::socket::setsockopt(
                &client,
                nix::sys::socket::sockopt::Linger,
                &libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
            return;
        }
    };
    // Segments are relayed as they come: Nagle here would only add a delay.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || pump(&c2, &s2));
    if up.is_err() {
        return;
    }
    pump(&server, &client);
    if let Ok(t) = up {
        let _ = t.join();
    }
}

/// Copies `from` to `to` until EOF, then half-closes `to`; on an error both sockets are shut
/// down, which also ends the other direction's thread.
fn pump(from: &TcpStream, to: &TcpStream) {
    match splice_all(from.as_fd(), to.as_fd()) {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

fn splice(from: BorrowedFd, to: BorrowedFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: splice between descriptors we borrow, no offsets (sockets and pipes).
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Socket to socket through a pipe: the kernel moves the pages, no copy through user space.
fn splice_all(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Best effort: a smaller pipe (pipe-max-size, pipe-user-pages-soft) only moves less a call.
    // SAFETY: fcntl on a pipe we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
    loop {
        let mut n = splice(from, w.as_fd(), CHUNK)?;
        if n == 0 {
            return Ok(());
        }
        while n > 0 {
            match splice(r.as_fd(), to, n)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                m => n -= m,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn start_time_reads_field_22() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(t > 0);
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(i32::MAX), None);
    }

    /// A pid whose start time does not match is somebody else's: left alone.
    #[test]
    fn stop_kills_only_the_recorded_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let real = start_time(pid).unwrap();
        let other = Process {
            host_port: 1,
            pid,
            start_time: real + 1,
        };
        stop(&other);
        assert_eq!(child.try_wait().unwrap(), None, "a reused pid was killed");
        stop(&Process {
            start_time: real,
            ..other
        });
        // Reaped by stop (we are its parent, as the monitor is the proxy's).
        assert!(child.try_wait().is_err() || child.try_wait().unwrap().is_some());
        assert_eq!(start_time(pid), None);
    }

    const CHILD: &str = "RBOX_PROXY_RELAY_TEST";

    /// Both directions, a half-close passed on, then the server's close ending the relay. Run
    /// in a child process: its threads would upset the thread counts of sandbox's test.
    #[test]
    fn relay_copies_both_ways_and_passes_half_closes() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "proxy::tests::relay_in_child", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    fn relay_in_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let backend = TcpListener::bind("[::1]:0").unwrap();
        let to = backend.local_addr().unwrap();
        let front = TcpListener::bind("[::1]:0").unwrap();
        let addr = front.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (c, _) = front.accept().unwrap();
            relay(c, to);
        });
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut server, _) = backend.accept().unwrap();
        let big = vec![7u8; 1 << 20];
        client.write_all(&big).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), big.len(), "upstream bytes or EOF lost");
        server.write_all(b"reply").unwrap();
        drop(server);
        let mut back = String::new();
        client.read_to_string(&mut back).unwrap();
        assert_eq!(back, "reply");
        t.join().unwrap();
    }
}
