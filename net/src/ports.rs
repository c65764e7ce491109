//! Published ports (`-p`/`-P`): reserve each host port with a bound socket, record the mapping
//! in `<root>/ports/<container id>.json`, and install the container's DNAT rules in one batch.
//!
//! The reservation sockets are bound but never listen: they keep every other program (and
//! every other container) off the port for as long as their holder — the container's monitor —
//! lives, and a connection that somehow misses the DNAT gets a reset instead of a hang. Because
//! a live holder always owns the socket, a successful bind proves that any other rule still
//! capturing the port is stale: the new container's jumps are inserted before it, so it is
//! never black-holed, and the stale rule goes when its owner is repaired (or when a publish has
//! to read the kernel's rules anyway). UDP conntrack entries of the port are deleted on publish
//! and unpublish (`conntrack`), so a client that keeps sending follows the port too.
//!
//! The one exception is TCP on `[::1]`, which the kernel cannot forward to a container (see
//! `proxy`): its reservation socket listens and goes to a userland proxy process, recorded
//! with its pid and start time so that `unpublish` (crash repair included) can stop it. It has
//! no rule. UDP on `[::1]` is refused.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
    SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use serde::{Deserialize, Serialize};

use crate::error::{io, Error, Errors, Result};
use crate::firewall::ports::{self as fw, FwPort, FwPorts};
use crate::network::{Network, Store, OPT_HOST_BINDING};
pub use crate::portspec::{PortRange, PortSpec, Proto};
use crate::proxy;
use crate::sandbox;

/// One published port: Docker's `{HostIp, HostPort}` under `"<port>/<proto>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortBinding {
    /// "80/tcp"
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    /// "0.0.0.0:8080", "[::1]:8080"
    pub fn host_addr(&self) -> String {
        SocketAddr::new(self.host_ip, self.host_port).to_string()
    }

    /// Served by a userland proxy, not by the kernel's DNAT.
    fn proxied(&self) -> bool {
        proxied(self.host_ip)
    }
}

fn proxied(host_ip: IpAddr) -> bool {
    host_ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

impl std::fmt::Display for PortBinding {
    /// The PORTS column of `ps`: "0.0.0.0:8080->80/tcp".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.host_addr(), self.container_key())
    }
}

/// The PORTS column of `ps`: bindings joined by ", ", consecutive ones folded into ranges as
/// Docker does ("0.0.0.0:8080-8082->80-82/tcp").
pub fn display(bindings: &[PortBinding]) -> String {
    let mut sorted = bindings.to_vec();
    sorted.sort_by_key(|b| (b.proto, b.host_ip, b.container_port));
    let mut groups: Vec<(PortBinding, u16)> = Vec::new();
    for b in sorted {
        if let Some((first, n)) = groups.last_mut() {
            if first.proto == b.proto
                && first.host_ip == b.host_ip
                && u32::from(first.container_port) + u32::from(*n) == u32::from(b.container_port)
                && u32::from(first.host_port) + u32::from(*n) == u32::from(b.host_port)
            {
                *n += 1;
                continue;
            }
        }
        groups.push((b, 1));
    }
    groups
        .iter()
        .map(|(b, n)| {
            if *n == 1 {
                b.to_string()
            } else {
                let host = SocketAddr::new(b.host_ip, b.host_port).to_string();
                format!(
                    "{host}-{}->{}-{}/{}",
                    b.host_port + n - 1,
                    b.container_port,
                    b.container_port + n - 1,
                    b.proto
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

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
}

/// What `<root>/ports/<id>.json` holds: enough to regenerate or remove the rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    network_id: String,
    bridge: String,
    subnet: IpNetwork,
    container_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet6: Option<IpNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container_ip6: Option<IpAddr>,
    bindings: Vec<PortBinding>,
    /// The proxies of the `[::1]` bindings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    proxies: Vec<proxy::Process>,
}

impl Record {
    /// Whether the kernel has rules for this family.
    fn has_rules(&self, v6: bool) -> bool {
        self.bindings
            .iter()
            .any(|b| b.host_ip.is_ipv6() == v6 && !b.proxied())
    }

    fn short_id(container_id: &str) -> String {
        container_id.chars().take(12).collect()
    }

    fn firewall(&self, container_id: &str, v6: bool) -> Option<FwPorts> {
        let (subnet, ip) = if v6 {
            (self.subnet6?, self.container_ip6?)
        } else {
            (self.subnet, self.container_ip)
        };
        let ports: Vec<FwPort> = self
            .bindings
            .iter()
            .filter(|b| b.host_ip.is_ipv6() == v6 && !b.proxied())
            .map(|b| FwPort {
                host_ip: b.host_ip,
                host_port: b.host_port,
                container_port: b.container_port,
                proto: b.proto,
            })
            .collect();
        (!ports.is_empty()).then(|| FwPorts {
            short_id: Record::short_id(container_id),
            bridge: self.bridge.clone(),
            subnet,
            container_ip: ip,
            ports,
        })
    }
}

fn dir(root: &Path) -> PathBuf {
    root.join("ports")
}

fn file(root: &Path, container_id: &str) -> PathBuf {
    dir(root).join(format!("{container_id}.json"))
}

/// The network that carries a container's published ports: its first external bridge network
/// with an address (Docker publishes nothing for host, none and internal networks).
fn carrier(root: &Path, container_id: &str) -> Result<Option<(Network, IpAddr, Option<IpAddr>)>> {
    let mut found: Vec<(String, Network, IpAddr, Option<IpAddr>)> = Vec::new();
    for n in Store::new(root).list()? {
        if n.driver != "bridge" || n.internal {
            continue;
        }
        if let Some(ep) = n.endpoints.get(container_id) {
            if let Some(ip) = ep.ip {
                found.push((
                    ep.interface.clone(),
                    n.clone(),
                    ip.into(),
                    ep.ip6.map(Into::into),
                ));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().next().map(|(_, n, a, b)| (n, a, b)))
}

/// Binds `ip:port` (port 0: the kernel picks a free one from `ip_local_port_range`), listening
/// only for a proxied `[::1]` TCP port; returns the socket and the port it holds.
fn reserve(ip: IpAddr, port: u16, proto: Proto) -> std::result::Result<(OwnedFd, u16), Errno> {
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
    let listens = proxied(ip) && proto == Proto::Tcp;
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

/// The host IPs a spec binds: its own, else the network's `host_binding_ipv4`, else 0.0.0.0 —
/// and, like Docker, also `::` when the container has an IPv6 address on the network.
fn host_ips(spec: &PortSpec, net: &Network, has_v6: bool) -> Result<Vec<IpAddr>> {
    if let Some(ip) = spec.host_ip {
        return Ok(vec![ip]);
    }
    match net.options.get(OPT_HOST_BINDING).filter(|s| !s.is_empty()) {
        Some(s) => s
            .parse()
            .map(|ip| vec![ip])
            .map_err(|_| Error::Invalid(format!("invalid host binding address {s}"))),
        None if has_v6 => Ok(vec![
            Ipv4Addr::UNSPECIFIED.into(),
            Ipv6Addr::UNSPECIFIED.into(),
        ]),
        None => Ok(vec![Ipv4Addr::UNSPECIFIED.into()]),
    }
}

/// Binds `port` (0: an ephemeral one) on every address of `ips`, the same port on each.
fn reserve_on(
    ips: &[IpAddr],
    port: u16,
    proto: Proto,
) -> std::result::Result<(Vec<OwnedFd>, u16), (IpAddr, Errno)> {
    // An ephemeral port the first family got may be taken in another: pick again a few times.
    let tries = if port == 0 && ips.len() > 1 { 8 } else { 1 };
    let mut last = (ips[0], Errno::EADDRINUSE);
    for _ in 0..tries {
        let mut fds = Vec::new();
        let mut want = port;
        let mut failed = None;
        for ip in ips {
            match reserve(*ip, want, proto) {
                Ok((fd, got)) => {
                    fds.push(fd);
                    want = got;
                }
                Err(e) => {
                    failed = Some((*ip, e));
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

/// A `[::1]` TCP reservation, to be handed to a proxy.
struct Loopback {
    socket: OwnedFd,
    host_port: u16,
    container_port: u16,
}

/// Reserves the host ports of every spec; on error every socket taken so far is released.
fn reserve_all(
    specs: &[PortSpec],
    net: &Network,
    has_v6: bool,
) -> Result<(Vec<PortBinding>, Reservation, Vec<Loopback>)> {
    let mut res = Reservation::default();
    let mut loopback = Vec::new();
    let mut bindings = Vec::new();
    for spec in specs {
        let ips = host_ips(spec, net, has_v6)?;
        for ip in &ips {
            if ip.is_ipv6() && !has_v6 {
                return Err(Error::Invalid(format!(
                    "cannot publish {spec} on {ip}: network {} has no IPv6",
                    net.name
                )));
            }
            if proxied(*ip) && spec.proto != Proto::Tcp {
                return Err(Error::Invalid(format!(
                    "cannot publish {spec} on ::1: only TCP is supported on ::1"
                )));
            }
        }
        let proto = spec.proto;
        let ctr = spec.container_ports;
        let mut keep = |fds: Vec<OwnedFd>, host_port: u16, container_port: u16| {
            for (fd, ip) in fds.into_iter().zip(&ips) {
                if proxied(*ip) {
                    loopback.push(Loopback {
                        socket: fd,
                        host_port,
                        container_port,
                    });
                } else {
                    res.sockets.push(fd);
                }
                bindings.push(PortBinding {
                    host_ip: *ip,
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
                    taken.ok_or_else(|| bind_error(ips[0], &h.to_string(), Errno::EADDRINUSE))?;
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
    Ok((bindings, res, loopback))
}

/// Starts a proxy for each `[::1]` reservation; on error those started are stopped.
fn start_proxies(
    container_id: &str,
    ip6: Option<IpAddr>,
    loopback: Vec<Loopback>,
) -> Result<Vec<proxy::Process>> {
    let mut started: Vec<proxy::Process> = Vec::new();
    for l in loopback {
        // reserve_all refused ::1 unless the container has an IPv6 address.
        let to = ip6.map(|ip| SocketAddr::new(ip, l.container_port));
        let r = to
            .ok_or_else(|| Error::Invalid(format!("cannot publish [::1]:{}: no IPv6", l.host_port)))
            .and_then(|to| proxy::spawn(l.socket, container_id, l.host_port, to));
        match r {
            Ok(p) => started.push(p),
            Err(e) => {
                started.iter().for_each(proxy::stop);
                return Err(e);
            }
        }
    }
    Ok(started)
}

/// Lets DNAT from 127.0.0.0/8 (OUTPUT) leave through the bridge.
fn enable_route_localnet(bridge: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    if fs::read_to_string(&path).is_ok_and(|s| s.trim() == "1") {
        return Ok(());
    }
    fs::write(&path, "1").map_err(io(format!("enabling route_localnet on {bridge}")))
}

/// How rules are put in place: `Add` for a container whose chains do not exist yet (one
/// constant-size batch), `Repair` to regenerate them from what the kernel has.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Add,
    Repair,
}

fn install(container_id: &str, rec: &Record, mode: Mode) -> Result<()> {
    let apply = |p: &FwPorts| match mode {
        Mode::Add => fw::add(p),
        Mode::Repair => fw::install(p),
    };
    if let Some(v4) = rec.firewall(container_id, false) {
        enable_route_localnet(&rec.bridge)?;
        apply(&v4)?;
    }
    if let Some(v6) = rec.firewall(container_id, true) {
        apply(&v6)?;
    }
    Ok(())
}

/// Publishes `specs` for a container already connected to its networks: reserves the host
/// ports, records them and installs the rules. The caller holds the `Reservation` for the
/// container's lifetime. Nothing is left behind on error.
pub fn publish(
    root: &Path,
    container_id: &str,
    specs: &[PortSpec],
) -> Result<(Vec<PortBinding>, Reservation)> {
    if specs.is_empty() {
        return Ok((Vec::new(), Reservation::default()));
    }
    let Some((net, ip, ip6)) = carrier(root, container_id)? else {
        return Ok((Vec::new(), Reservation::default()));
    };
    let ipam = net
        .ipam
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("network {} has no subnet", net.name)))?;
    let (bindings, reservation, loopback) = reserve_all(specs, &net, ip6.is_some())?;
    let path = file(root, container_id);
    // A record left by a crash may have rules behind it: regenerate those instead of adding.
    let old = statefile::read_json_opt::<Record>(&path)?;
    if let Some(old) = &old {
        old.proxies.iter().for_each(proxy::stop);
    }
    let mode = match old {
        Some(_) => Mode::Repair,
        None => Mode::Add,
    };
    // Before the record: a crash in between kills them with their holder (PDEATHSIG).
    let proxies = start_proxies(container_id, ip6, loopback)?;
    let rec = Record {
        network_id: net.id.clone(),
        bridge: net.bridge.clone(),
        subnet: ipam.subnet.into(),
        container_ip: ip,
        subnet6: net.ipam6.as_ref().map(|c| c.subnet.into()),
        container_ip6: ip6,
        bindings: bindings.clone(),
        proxies,
    };
    let d = dir(root);
    // Recorded before the rules exist, so a crash in between leaves something to repair.
    let recorded = fs::create_dir_all(&d)
        .map_err(io(format!("creating {}", d.display())))
        .and_then(|_| Ok(statefile::write_json(&path, &rec)?));
    if let Err(e) = recorded {
        rec.proxies.iter().for_each(proxy::stop);
        return Err(e);
    }
    if let Err(e) = install(container_id, &rec, mode) {
        let _ = unpublish(root, container_id);
        return Err(e);
    }
    // Now that the port leads here, a client still sending to it must not stay on an old path.
    forget_udp_flows(&bindings);
    Ok((bindings, reservation))
}

/// Binds again the host ports recorded for a container whose holder died (its sockets and
/// `[::1]` proxies went with it) while the container lives on: a new monitor adopting it
/// holds them from now on; returns them with what the container still publishes. A port some
/// other program or container took in between cannot be had back: it is dropped from the
/// record and its rules, rather than failing the adoption of a running container.
pub fn reclaim(root: &Path, container_id: &str) -> Result<(Vec<PortBinding>, Reservation)> {
    let path = file(root, container_id);
    let Some(mut rec) = statefile::read_json_opt::<Record>(&path)? else {
        return Ok((Vec::new(), Reservation::default()));
    };
    // A proxy that outlived its holder still listens on its port.
    rec.proxies.iter().for_each(proxy::stop);
    let mut res = Reservation::default();
    let mut loopback = Vec::new();
    let had_rules = [rec.has_rules(false), rec.has_rules(true)];
    let before = rec.bindings.len();
    rec.bindings
        .retain(|b| match reserve(b.host_ip, b.host_port, b.proto) {
            Ok((fd, _)) if b.proxied() => {
                loopback.push(Loopback {
                    socket: fd,
                    host_port: b.host_port,
                    container_port: b.container_port,
                });
                true
            }
            Ok((fd, _)) => {
                res.sockets.push(fd);
                true
            }
            Err(e) => {
                tracing::warn!("{container_id}: {} taken meanwhile: {e}", b.host_addr());
                false
            }
        });
    let lost = rec.bindings.len() != before;
    if lost {
        // The rules of the ports it keeps come back below; the lost ones must not stay.
        let short = Record::short_id(container_id);
        for (v6, had) in [false, true].into_iter().zip(had_rules) {
            if had {
                fw::remove(&short, v6)?;
            }
        }
    }
    rec.proxies = start_proxies(container_id, rec.container_ip6, loopback)?;
    if rec.bindings.is_empty() {
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io(format!("removing {}", path.display()))(e));
            }
        }
        return Ok((Vec::new(), res));
    }
    statefile::write_json(&path, &rec)?;
    if lost {
        install(container_id, &rec, Mode::Add)?;
    }
    Ok((rec.bindings, res))
}

/// Removes a container's port rules and record; succeeds when already gone (crash repair).
pub fn unpublish(root: &Path, container_id: &str) -> Result<()> {
    let path = file(root, container_id);
    let Some(rec) = statefile::read_json_opt::<Record>(&path)? else {
        return Ok(());
    };
    let short = Record::short_id(container_id);
    // First, so the port is free when this returns: the proxy was its only holder.
    rec.proxies.iter().for_each(proxy::stop);
    let mut errors = Errors::default();
    for v6 in [false, true] {
        if rec.has_rules(v6) {
            errors.check(fw::remove(&short, v6));
        }
    }
    if errors.is_empty() {
        forget_udp_flows(&rec.bindings);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.check::<()>(Err(io(format!("removing {}", path.display()))(e)));
            }
        }
    }
    errors.into_result()
}

/// Deletes the conntrack entries of the UDP host ports in `bindings`, so the next datagram of a
/// client that kept sending is NATed afresh (to whoever publishes the port then, or to nobody).
/// Best effort: without ctnetlink there is nothing rbox can do about them, and publishing or
/// removing a container must not fail for it.
fn forget_udp_flows(bindings: &[PortBinding]) {
    for v6 in [false, true] {
        let targets: Vec<(IpAddr, u16)> = bindings
            .iter()
            .filter(|b| b.proto == Proto::Udp && b.host_ip.is_ipv6() == v6)
            .map(|b| (b.host_ip, b.host_port))
            .collect();
        if targets.is_empty() {
            continue;
        }
        match crate::conntrack::delete_udp(v6, &targets) {
            Ok(n) => tracing::debug!(?targets, n, "udp conntrack entries deleted"),
            Err(e) => tracing::warn!(?targets, "deleting udp conntrack entries: {e}"),
        }
    }
}

/// A container left `network_id`: if its ports went there, their rules go too (the address
/// they point to may be leased to another container next).
pub(crate) fn left_network(root: &Path, container_id: &str, network_id: &str) -> Result<()> {
    match statefile::read_json_opt::<Record>(&file(root, container_id))? {
        Some(rec) if rec.network_id == network_id => unpublish(root, container_id),
        _ => Ok(()),
    }
}

/// What a container publishes now (empty when nothing).
pub fn published(root: &Path, container_id: &str) -> Result<Vec<PortBinding>> {
    Ok(
        statefile::read_json_opt::<Record>(&file(root, container_id))?
            .map(|r| r.bindings)
            .unwrap_or_default(),
    )
}

/// Containers with a ports record.
fn recorded(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir(root)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json")
                .filter(|n| !n.starts_with('.'))
                .map(str::to_string)
        })
        .collect()
}

/// `network reload`: reinstalls the rules of every container whose sandbox lives; drops the
/// records (and rules) of the others.
pub fn reload(root: &Path) -> Result<()> {
    let mut errors = Errors::default();
    for id in recorded(root) {
        if sandbox::netns_path(root, &id).exists() {
            if let Some(rec) = errors
                .check(statefile::read_json_opt::<Record>(&file(root, &id)).map_err(Error::from))
                .flatten()
            {
                errors.check(install(&id, &rec, Mode::Repair));
            }
        } else {
            errors.check(unpublish(root, &id));
        }
    }
    errors.into_result()
}

/// Removes every port rule and record of the root (`system prune`, test cleanup).
pub fn teardown(root: &Path) -> Result<()> {
    let mut errors = Errors::default();
    for id in recorded(root) {
        errors.check(unpublish(root, &id));
    }
    errors.into_result()
}

/// Docker's `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`,
/// with `null` for `exposed` ports ("80/tcp") that are not published.
pub fn docker_ports(bindings: &[PortBinding], exposed: &[String]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for e in exposed {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        map.insert(key, serde_json::Value::Null);
    }
    for b in bindings {
        let entry = map
            .entry(b.container_key())
            .or_insert_with(|| serde_json::json!([]));
        if !entry.is_array() {
            *entry = serde_json::json!([]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(serde_json::json!({"HostIp": b.host_ip.to_string(), "HostPort": b.host_port.to_string()}));
        }
    }
    serde_json::Value::Object(map)
}

/// Docker's `HostConfig.PortBindings` for what the user asked.
pub fn docker_port_bindings(specs: &[PortSpec]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for s in specs {
        for (key, ip, port) in s.docker_bindings() {
            let entry = map.entry(key).or_insert_with(|| serde_json::json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(serde_json::json!({"HostIp": ip, "HostPort": port}));
            }
        }
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_detects_holders_and_picks_ephemeral_ports_in_range() {
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let (fd, port) = reserve(lo, 0, Proto::Tcp).unwrap();
        let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let r: Vec<u16> = range
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert!((r[0]..=r[1]).contains(&port), "{port} outside {range}");
        // Another rbox reservation and another program's listener are both detected.
        assert_eq!(
            reserve(lo, port, Proto::Tcp).unwrap_err(),
            Errno::EADDRINUSE
        );
        assert_eq!(
            reserve(Ipv4Addr::UNSPECIFIED.into(), port, Proto::Tcp).unwrap_err(),
            Errno::EADDRINUSE
        );
        // UDP is a separate space.
        let (_u, up) = reserve(lo, port, Proto::Udp).unwrap();
        assert_eq!(up, port);
        drop(fd);
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = l.local_addr().unwrap().port();
        let e = reserve(Ipv4Addr::UNSPECIFIED.into(), taken, Proto::Tcp).unwrap_err();
        assert_eq!(e, Errno::EADDRINUSE);
        assert_eq!(
            bind_error(Ipv4Addr::UNSPECIFIED.into(), "8080", e).to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
        let e = reserve("192.0.2.1".parse().unwrap(), 8080, Proto::Tcp).unwrap_err();
        assert_eq!(e, Errno::EADDRNOTAVAIL);
    }

    #[test]
    fn both_families_hold_the_same_port() {
        let ips: [IpAddr; 2] = [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()];
        let (fds, port) = reserve_on(&ips, 0, Proto::Tcp).unwrap();
        assert_eq!(fds.len(), 2);
        for lo in [
            IpAddr::from(Ipv4Addr::LOCALHOST),
            Ipv6Addr::LOCALHOST.into(),
        ] {
            assert_eq!(
                reserve(lo, port, Proto::Tcp).unwrap_err(),
                Errno::EADDRINUSE,
                "{lo} not held"
            );
        }
        // An explicit port taken is reported for the first address that cannot have it.
        assert_eq!(
            reserve_on(&ips[1..], port, Proto::Tcp).unwrap_err(),
            (ips[1], Errno::EADDRINUSE)
        );
        drop(fds);
        let (again, p2) = reserve_on(&ips, port, Proto::Tcp).unwrap();
        assert_eq!((again.len(), p2), (2, port));
    }

    #[test]
    fn docker_json_shapes() {
        let b = PortBinding {
            host_ip: Ipv4Addr::UNSPECIFIED.into(),
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(b.to_string(), "0.0.0.0:8080->80/tcp");
        let range: Vec<PortBinding> = (0..3)
            .map(|i| PortBinding {
                host_port: 8082 - i,
                container_port: 82 - i,
                ..b.clone()
            })
            .chain([PortBinding {
                proto: Proto::Udp,
                host_port: 5353,
                container_port: 53,
                ..b.clone()
            }])
            .collect();
        assert_eq!(
            display(&range),
            "0.0.0.0:8080-8082->80-82/tcp, 0.0.0.0:5353->53/udp"
        );
        assert_eq!(display(std::slice::from_ref(&b)), "0.0.0.0:8080->80/tcp");
        let v = docker_ports(
            std::slice::from_ref(&b),
            &["80/tcp".into(), "53/udp".into()],
        );
        assert_eq!(
            v,
            serde_json::json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": null})
        );
        let specs = [
            PortSpec::parse("127.0.0.1:8080:80").unwrap(),
            PortSpec::parse("90/udp").unwrap(),
        ];
        assert_eq!(
            docker_port_bindings(&specs),
            serde_json::json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                               "90/udp": [{"HostIp": "", "HostPort": ""}]})
        );
    }
}
