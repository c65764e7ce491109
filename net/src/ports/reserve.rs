//! Reserving host ports: a bound socket per published address, held by the container's monitor
//! for as long as the container runs.
//!
//! The sockets are bound but never listen: they keep every other program (and every other
//! container) off the port, and a connection that somehow misses the DNAT gets a reset instead
//! of a hang. Because a live holder always owns its socket, a successful bind proves that any
//! other rule still capturing the port is stale (see `firewall::Firewall::add_ports`). The
//! exception is TCP on IPv6 where the kernel cannot forward all of it — `[::1]`, `[::]` (for
//! ::1), any IPv6 address of a container without IPv6: that socket listens and goes to the
//! userland proxy (`proxy`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
    SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
};

use super::record::PortBinding;
use super::spec::{PortSpec, Proto};
use crate::driver::PortPath;
use crate::error::{Error, Result};

/// The bound sockets that hold a container's host ports. Dropping it frees the ports.
#[derive(Debug, Default)]
pub struct Reservation {
    sockets: Vec<OwnedFd>,
}

impl Reservation {
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    pub(crate) fn hold(&mut self, socket: OwnedFd) {
        self.sockets.push(socket);
    }

    /// The sockets' numbers: a monitor that execs its next program keeps them open across
    /// execve and hands them over (`from_fds`).
    pub fn raw_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.sockets.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// The reservation a previous program of this process held.
    pub fn from_fds(sockets: Vec<OwnedFd>) -> Reservation {
        Reservation { sockets }
    }
}

/// Whether the proxy serves (part of) a binding of `ip`: TCP on IPv6 that the kernel cannot
/// DNAT — ::1 always, and every address when the container has no IPv6.
pub(crate) fn proxied(ip: IpAddr, proto: Proto, has_v6: bool) -> bool {
    proto == Proto::Tcp && ip.is_ipv6() && (ip.is_loopback() || ip.is_unspecified() || !has_v6)
}

/// Whether this host can listen on IPv6 at all (Docker's IsV6Listenable): a module or boot
/// option may have turned it off, and then the implicit `[::]` of a `-p` is left out.
fn ipv6_listenable() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok())
}

/// Binds `ip:port` (port 0: the kernel picks a free one from `ip_local_port_range`), listening
/// when a proxy takes it; returns the socket and the port it holds.
pub(crate) fn reserve(
    ip: IpAddr,
    port: u16,
    proto: Proto,
    listens: bool,
) -> std::result::Result<(OwnedFd, u16), Errno> {
    let family = if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
    if ip.is_ipv6() {
        // [::]:port must not also claim 0.0.0.0:port.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if listens {
        // The proxy closes first, so its connections linger in TIME_WAIT on this port: they
        // must not keep the next container off it. A listener conflicts with any other bind
        // all the same, and two binds racing are told apart by listen() right below.
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    match SocketAddr::new(ip, port) {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    if listens {
        listen(&fd, Backlog::MAXCONN)?;
    }
    let bound: SockaddrStorage = getsockname(fd.as_raw_fd())?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .unwrap_or(port);
    Ok((fd, port))
}

fn bind_error(ip: IpAddr, ports: &str, e: Errno) -> Error {
    let at = match ip {
        IpAddr::V6(a) => format!("[{a}]:{ports}"),
        IpAddr::V4(a) => format!("{a}:{ports}"),
    };
    match e {
        Errno::EADDRINUSE => {
            Error::Conflict(format!("Bind for {at} failed: port is already allocated"))
        }
        Errno::EADDRNOTAVAIL => Error::Invalid(format!(
            "Bind for {at} failed: {ip} is not an address of this host"
        )),
        e => Error::Io {
            context: format!("Bind for {at} failed"),
            source: e.into(),
        },
    }
}

/// The host IPs a spec binds: its own, else the network's default (`host_binding_ipv4`) unless
/// that is 0.0.0.0; else, as Docker, 0.0.0.0 and `::` — forwarded by the kernel when the
/// container has IPv6, by the proxy otherwise (TCP only), and left out when the host cannot
/// listen on IPv6.
fn host_ips(spec: &PortSpec, path: &PortPath, has_v6: bool) -> Vec<IpAddr> {
    match (spec.host_ip, path.host_ip) {
        (Some(ip), _) => vec![ip],
        (None, Some(ip)) if !ip.is_unspecified() => vec![ip],
        _ => {
            let mut ips = vec![IpAddr::from(Ipv4Addr::UNSPECIFIED)];
            if (has_v6 || spec.proto == Proto::Tcp) && ipv6_listenable() {
                ips.push(Ipv6Addr::UNSPECIFIED.into());
            }
            ips
        }
    }
}

/// Binds `port` (0: an ephemeral one) on every address of `ips` (with whether it listens), the
/// same port on each.
fn reserve_on(
    ips: &[(IpAddr, bool)],
    port: u16,
    proto: Proto,
) -> std::result::Result<(Vec<OwnedFd>, u16), (IpAddr, Errno)> {
    // An ephemeral port the first family got may be taken in another: pick again a few times.
    let tries = if port == 0 && ips.len() > 1 { 8 } else { 1 };
    let mut last = (ips[0].0, Errno::EADDRINUSE);
    for _ in 0..tries {
        let mut fds = Vec::new();
        let mut want = port;
        let mut failed = None;
        for &(ip, listens) in ips {
            match reserve(ip, want, proto, listens) {
                Ok((fd, got)) => {
                    fds.push(fd);
                    want = got;
                }
                Err(e) => {
                    failed = Some((ip, e));
                    break;
                }
            }
        }
        match failed {
            None => return Ok((fds, want)),
            Some((ip, Errno::EADDRINUSE)) if port == 0 => last = (ip, Errno::EADDRINUSE),
            Some(f) => return Err(f),
        }
    }
    Err(last)
}

/// A listening reservation, to be handed to the proxy.
pub(crate) struct Listener {
    pub socket: OwnedFd,
    pub host_port: u16,
    pub container_port: u16,
}

/// What `reserve_all` took: the bindings, the sockets that hold them, and the listening sockets
/// that go to the proxy.
pub(crate) struct Taken {
    pub bindings: Vec<PortBinding>,
    pub held: Reservation,
    pub listeners: Vec<Listener>,
}

/// Reserves the host ports of every spec on a network called `network` reached through `path`
/// (`has_v6`: its containers get IPv6 addresses); on error every socket taken so far is
/// released.
pub(crate) fn reserve_all(
    specs: &[PortSpec],
    network: &str,
    path: &PortPath,
    has_v6: bool,
) -> Result<Taken> {
    let mut res = Reservation::default();
    let mut listeners = Vec::new();
    let mut bindings = Vec::new();
    for spec in specs {
        let proto = spec.proto;
        let ips: Vec<(IpAddr, bool)> = host_ips(spec, path, has_v6)
            .into_iter()
            .map(|ip| (ip, proxied(ip, proto, has_v6)))
            .collect();
        for &(ip, by_proxy) in &ips {
            if ip.is_loopback() && ip.is_ipv6() && proto != Proto::Tcp {
                return Err(Error::Invalid(format!(
                    "cannot publish {spec} on ::1: only TCP is supported on ::1"
                )));
            }
            if ip.is_ipv6() && !has_v6 && !by_proxy {
                return Err(Error::Invalid(format!(
                    "cannot publish {spec} on {ip}: network {network} has no IPv6"
                )));
            }
        }
        let ctr = spec.container_ports;
        let mut keep = |fds: Vec<OwnedFd>, host_port: u16, container_port: u16| {
            for (fd, &(ip, by_proxy)) in fds.into_iter().zip(&ips) {
                if by_proxy {
                    listeners.push(Listener {
                        socket: fd,
                        host_port,
                        container_port,
                    });
                } else {
                    res.sockets.push(fd);
                }
                bindings.push(PortBinding {
                    host_ip: ip,
                    host_port,
                    container_port,
                    proto,
                });
            }
        };
        match spec.host_ports {
            // A pool: the first port of the host range free on every address.
            Some(h) if ctr.len() == 1 && h.len() > 1 => {
                let mut taken = None;
                for port in h.ports() {
                    match reserve_on(&ips, port, proto) {
                        Ok(x) => {
                            taken = Some(x);
                            break;
                        }
                        Err((_, Errno::EADDRINUSE)) => continue,
                        Err((ip, e)) => return Err(bind_error(ip, &h.to_string(), e)),
                    }
                }
                let (fds, port) =
                    taken.ok_or_else(|| bind_error(ips[0].0, &h.to_string(), Errno::EADDRINUSE))?;
                keep(fds, port, ctr.start);
            }
            host => {
                for (i, c) in ctr.ports().enumerate() {
                    let want = host.map(|h| h.start + i as u16).unwrap_or(0);
                    let (fds, port) = reserve_on(&ips, want, proto)
                        .map_err(|(ip, e)| bind_error(ip, &want.to_string(), e))?;
                    keep(fds, port, c);
                }
            }
        }
    }
    Ok(Taken {
        bindings,
        held: res,
        listeners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reserve_detects_holders_and_picks_ephemeral_ports_in_range() {
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let (fd, port) = reserve(lo, 0, Proto::Tcp, false).unwrap();
        let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let r: Vec<u16> = range
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert!((r[0]..=r[1]).contains(&port), "{port} outside {range}");
        // Another rbox reservation and another program's listener are both detected.
        assert_eq!(
            reserve(lo, port, Proto::Tcp, false).unwrap_err(),
            Errno::EADDRINUSE
        );
        assert_eq!(
            reserve(Ipv4Addr::UNSPECIFIED.into(), port, Proto::Tcp, false).unwrap_err(),
            Errno::EADDRINUSE
        );
        // UDP is a separate space.
        let (_u, up) = reserve(lo, port, Proto::Udp, false).unwrap();
        assert_eq!(up, port);
        drop(fd);
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = l.local_addr().unwrap().port();
        let e = reserve(Ipv4Addr::UNSPECIFIED.into(), taken, Proto::Tcp, false).unwrap_err();
        assert_eq!(e, Errno::EADDRINUSE);
        assert_eq!(
            bind_error(Ipv4Addr::UNSPECIFIED.into(), "8080", e).to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
        let e = reserve("192.0.2.1".parse().unwrap(), 8080, Proto::Tcp, false).unwrap_err();
        assert_eq!(e, Errno::EADDRNOTAVAIL);
    }

    #[test]
    fn both_families_hold_the_same_port() {
        let ips: [(IpAddr, bool); 2] = [
            (Ipv4Addr::UNSPECIFIED.into(), false),
            (Ipv6Addr::UNSPECIFIED.into(), false),
        ];
        let (fds, port) = reserve_on(&ips, 0, Proto::Tcp).unwrap();
        assert_eq!(fds.len(), 2);
        for lo in [
            IpAddr::from(Ipv4Addr::LOCALHOST),
            Ipv6Addr::LOCALHOST.into(),
        ] {
            assert_eq!(
                reserve(lo, port, Proto::Tcp, false).unwrap_err(),
                Errno::EADDRINUSE,
                "{lo} not held"
            );
        }
        // An explicit port taken is reported for the first address that cannot have it.
        assert_eq!(
            reserve_on(&ips[1..], port, Proto::Tcp).unwrap_err(),
            (ips[1].0, Errno::EADDRINUSE)
        );
        drop(fds);
        let (again, p2) = reserve_on(&ips, port, Proto::Tcp).unwrap();
        assert_eq!((again.len(), p2), (2, port));
    }

    #[test]
    fn which_addresses_a_spec_binds_and_who_serves_them() {
        let spec = |s: &str| PortSpec::parse(s).unwrap();
        let path = |ip: Option<&str>| PortPath {
            interface: "br".into(),
            host_ip: ip.map(|i| i.parse().unwrap()),
        };
        let any4: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let any6: IpAddr = Ipv6Addr::UNSPECIFIED.into();
        let v6 = ipv6_listenable();
        let both = if v6 { vec![any4, any6] } else { vec![any4] };
        // No address: both families as Docker, also for the default bridge's 0.0.0.0.
        assert_eq!(host_ips(&spec("8080:80"), &path(None), false), both);
        assert_eq!(
            host_ips(&spec("8080:80"), &path(Some("0.0.0.0")), false),
            both
        );
        // UDP without IPv6 in the container: the proxy cannot carry it.
        assert_eq!(host_ips(&spec("53:53/udp"), &path(None), false), vec![any4]);
        assert_eq!(host_ips(&spec("53:53/udp"), &path(None), true), both);
        // An explicit address, or a specific default one, is the only one.
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        assert_eq!(
            host_ips(&spec("8080:80"), &path(Some("127.0.0.1")), true),
            vec![lo]
        );
        assert_eq!(
            host_ips(&spec("0.0.0.0:8080:80"), &path(None), true),
            vec![any4]
        );
        let (tcp, udp) = (Proto::Tcp, Proto::Udp);
        let lo6: IpAddr = Ipv6Addr::LOCALHOST.into();
        let global6: IpAddr = "fd00::1".parse().unwrap();
        assert!(proxied(lo6, tcp, true) && proxied(any6, tcp, true));
        assert!(!proxied(global6, tcp, true), "the kernel forwards it");
        assert!(proxied(global6, tcp, false), "no IPv6 in the container");
        assert!(!proxied(any4, tcp, false) && !proxied(lo6, udp, true));
    }
}
