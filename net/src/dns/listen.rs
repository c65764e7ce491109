//! The resolver's sockets inside one sandbox: UDP and TCP on 127.0.0.11, made by entering the
//! sandbox's network namespace for the time of a few syscalls on the resolver's only thread
//! (a socket stays in the namespace it was made in), then coming straight back: forwarding and
//! the control socket stay in the host's namespace.
//!
//! They are bound to ephemeral ports that `redirect` maps 127.0.0.11:53 to, so port 53 stays
//! free for a container's own DNS server; a kernel without nf_tables NAT gets them on port 53
//! itself (then such a container cannot bind it).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};

use super::redirect;

/// Sockets bound in one sandbox, not yet attached to the runtime.
pub struct Bound {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// The resolver's own network namespace, to come back to.
pub struct Home(File);

impl Home {
    pub fn here() -> io::Result<Home> {
        File::open("/proc/thread-self/ns/net").map(Home)
    }
}

/// Binds in the sandbox whose namespace is pinned at `netns`. `Ok(None)` when the sandbox is
/// gone (released meanwhile).
pub fn bind_in(netns: &Path, home: &Home) -> io::Result<Option<Bound>> {
    let ns = match File::open(netns) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let bound = bind_here();
    if setns(home.0.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
        // Forwarding from a container's namespace would be a hole: better no resolver at all
        // (the next command starts a new one).
        eprintln!("resolver: cannot return to its own network namespace");
        std::process::abort();
    }
    bound.map(Some)
}

fn socket(ty: Type, proto: Protocol, port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
    s.set_nonblocking(true)?;
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    let addr = SocketAddr::from((redirect::ADDR, port));
    s.bind(&addr.into())?;
    if ty == Type::STREAM {
        s.listen(128)?;
    }
    Ok(s)
}

fn port(s: &Socket) -> io::Result<u16> {
    s.local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("socket without an address"))
}

/// In the current namespace: sockets on ephemeral ports and the redirect to them, or port 53.
fn bind_here() -> io::Result<Bound> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let udp = socket(Type::DGRAM, Protocol::UDP, 0)?;
    let tcp = socket(Type::STREAM, Protocol::TCP, 0)?;
    match redirect::install(port(&udp)?, port(&tcp)?) {
        Ok(()) => Ok(Bound {
            udp: udp.into(),
            tcp: tcp.into(),
        }),
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "no nf_tables NAT in sandboxes ({e}): answering on 127.0.0.11:53 itself"
                );
            }
            Ok(Bound {
                udp: socket(Type::DGRAM, Protocol::UDP, 53)?.into(),
                tcp: socket(Type::STREAM, Protocol::TCP, 53)?.into(),
            })
        }
    }
}
