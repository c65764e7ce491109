//! Published ports (`-p`/`-P`): reserve each host port with a bound socket (`reserve`), record
//! the mapping in `<root>/ports/<container id>.json` (`record`), and have the firewall install
//! the container's DNAT rules in one batch.
//!
//! The rules are generated from the record alone, so `network reload` re-applies them and crash
//! repair removes them without reading anything else; a record left by a crash means rules may
//! exist, so the next publish of that container repairs instead of adding. UDP conntrack entries
//! of the ports are deleted on publish and unpublish (`conntrack`), so a client that keeps
//! sending follows the port. TCP on IPv6 the kernel cannot forward to a container (`[::1]`,
//! and every IPv6 address of a container without IPv6) is served by one userland proxy per
//! container (`proxy`), recorded with its pid and start time so that unpublish (crash repair
//! included) can stop it. UDP there is refused (or, for the implicit `[::]` of `-p H:C`, left
//! out).
//!
//! `run` reserves before the container joins its network (`reserve`, then `publish_reserved`):
//! a port already allocated is refused before any link exists, so nothing is left behind even
//! for the moment the kernel takes to free a released namespace.

mod record;
mod reserve;
mod spec;

use std::net::{IpAddr, SocketAddr};

pub use record::PortBinding;
pub(crate) use record::Record;
pub use reserve::Reservation;
pub use spec::{PortRange, PortSpec, Proto};

use crate::context::Context;
use crate::error::{Error, Errors, Result};
use crate::network::Network;
use crate::proxy;
use crate::sandbox;
use reserve::{Listener, Taken};

/// The network that carries a container's published ports: its first external network whose
/// driver carries ports, with an address (Docker publishes nothing for host, none and internal
/// networks).
fn carrier(ctx: &Context, container_id: &str) -> Result<Option<Network>> {
    let mut found: Vec<(String, Network)> = Vec::new();
    for n in ctx.store.list()? {
        if n.internal || !ctx.driver(&n).is_ok_and(|d| d.caps().ports) {
            continue;
        }
        if let Some(ep) = ctx
            .store
            .endpoint(&n.id, container_id)?
            .filter(|e| e.ip.is_some())
        {
            found.push((ep.interface.clone(), n.clone()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().next().map(|(_, n)| n))
}

/// Starts the container's proxy for its listening reservations (none: no proxy), each relayed
/// to the container's IPv6 address if it has one, else to its IPv4 address.
fn start_proxy(
    container_id: &str,
    ip: IpAddr,
    ip6: Option<IpAddr>,
    listeners: Vec<Listener>,
) -> Result<Vec<proxy::Process>> {
    let Some(first) = listeners.first().map(|l| l.host_port) else {
        return Ok(Vec::new());
    };
    let to = ip6.unwrap_or(ip);
    let socks = listeners
        .into_iter()
        .map(|l| (l.socket, SocketAddr::new(to, l.container_port)))
        .collect();
    Ok(vec![proxy::spawn(socks, container_id, first)?])
}

/// How rules are put in place: `Add` for a container whose rules do not exist yet (one
/// constant-size batch), `Repair` to regenerate them from what the kernel has.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Add,
    Repair,
}

fn install(ctx: &Context, container_id: &str, rec: &Record, mode: Mode) -> Result<()> {
    if rec.by_driver {
        return Ok(());
    }
    let fw = rec.firewall(container_id);
    match mode {
        Mode::Add => ctx.fw.add_ports(&fw),
        Mode::Repair => ctx.fw.repair_ports(&fw),
    }
}

/// Removes the rules rbox's firewall has for `rec`'s ports (none when the driver maps them).
fn remove_rules(ctx: &Context, container_id: &str, rec: &Record) -> Result<()> {
    if rec.by_driver {
        return Ok(());
    }
    ctx.fw.remove_ports(&rec.firewall(container_id))
}

/// Host ports reserved for a container before it joins the network that will carry them.
pub struct Reserved {
    network_id: String,
    taken: Taken,
}

impl Reserved {
    /// The host ports taken: what a driver that maps ports itself is handed at the join.
    pub fn bindings(&self) -> &[PortBinding] {
        &self.taken.bindings
    }
}

/// Reserves the host ports of `specs` on `net` for a container about to join it; `None` when
/// `net` carries no published ports (host, none, internal networks: Docker publishes nothing
/// there). Nothing but sockets is made: a taken port fails here, before any link exists.
pub(crate) fn reserve(
    ctx: &Context,
    net: &Network,
    specs: &[PortSpec],
) -> Result<Option<Reserved>> {
    if specs.is_empty() || net.internal {
        return Ok(None);
    }
    let drv = ctx.driver(net)?;
    if !drv.caps().ports {
        return Ok(None);
    }
    let path = drv.port_path(net)?;
    let taken = reserve::reserve_all(specs, &net.name, &path, net.ipam6.is_some())?;
    Ok(Some(Reserved {
        network_id: net.id.clone(),
        taken,
    }))
}

/// Publishes what `reserve` took for a container now connected to that network: records the
/// bindings and installs the rules. The caller holds the `Reservation` for the container's
/// lifetime. Nothing is left behind on error.
pub(crate) fn publish_reserved(
    ctx: &Context,
    container_id: &str,
    reserved: Reserved,
) -> Result<(Vec<PortBinding>, Reservation)> {
    let net = ctx.store.load(&reserved.network_id)?;
    let ep = ctx.store.endpoint(&net.id, container_id)?;
    let ep = ep.as_ref();
    let Some((ip, ip6)) = ep.and_then(|e| Some((IpAddr::from(e.ip?), e.ip6.map(IpAddr::from))))
    else {
        return Err(Error::Invalid(format!(
            "container {container_id} has no address on network {} to publish ports on",
            net.name
        )));
    };
    let (v4, v6) = match ep {
        Some(e) => crate::endpoint::subnets(&net, e),
        None => (None, None),
    };
    let subnet = v4.ok_or_else(|| Error::Invalid(format!("network {} has no subnet", net.name)))?;
    let drv = ctx.driver(&net)?;
    let path = drv.port_path(&net)?;
    let root = ctx.root();
    // A record left by a crash may have rules behind it: regenerate those instead of adding.
    let old = record::read(root, container_id)?;
    if let Some(old) = &old {
        old.proxies.iter().for_each(proxy::stop);
    }
    let mode = match old {
        Some(_) => Mode::Repair,
        None => Mode::Add,
    };
    let Taken {
        bindings,
        held,
        listeners,
    } = reserved.taken;
    // Before the record: a crash in between kills it with its holder (PDEATHSIG).
    let proxies = start_proxy(container_id, ip, ip6, listeners)?;
    let rec = Record {
        network_id: net.id.clone(),
        interface: path.interface,
        subnet: subnet.into(),
        container_ip: ip,
        subnet6: v6.map(Into::into),
        container_ip6: ip6,
        bindings,
        proxies,
        by_driver: drv.maps_ports(),
    };
    // Recorded before the rules exist, so a crash in between leaves something to repair.
    if let Err(e) = record::write(root, container_id, &rec) {
        rec.proxies.iter().for_each(proxy::stop);
        return Err(e);
    }
    if let Err(e) = install(ctx, container_id, &rec, mode) {
        let _ = unpublish(ctx, container_id);
        return Err(e);
    }
    // Now that the port leads here, a client still sending to it must not stay on an old path.
    forget_udp_flows(&rec.bindings);
    Ok((rec.bindings, held))
}

/// Publishes `specs` for a container already connected to its networks, on the first that
/// carries ports (`reserve` + `publish_reserved`).
pub(crate) fn publish(
    ctx: &Context,
    container_id: &str,
    specs: &[PortSpec],
) -> Result<(Vec<PortBinding>, Reservation)> {
    let Some(net) = carrier(ctx, container_id)? else {
        return Ok((Vec::new(), Reservation::default()));
    };
    if !specs.is_empty() && ctx.driver(&net)?.maps_ports() {
        return Err(Error::Invalid(format!(
            "network {} maps published ports when a container joins it: publish them with run -p",
            net.name
        )));
    }
    match reserve(ctx, &net, specs)? {
        Some(r) => publish_reserved(ctx, container_id, r),
        None => Ok((Vec::new(), Reservation::default())),
    }
}

/// Binds again the host ports recorded for a container whose holder died (its sockets and
/// `[::1]` proxies went with it) while the container lives on: a new monitor adopting it
/// holds them from now on; returns them with what the container still publishes. A port some
/// other program or container took in between cannot be had back: it is dropped from the
/// record and its rules, rather than failing the adoption of a running container.
pub(crate) fn reclaim(
    ctx: &Context,
    container_id: &str,
) -> Result<(Vec<PortBinding>, Reservation)> {
    let root = ctx.root();
    let Some(mut rec) = record::read(root, container_id)? else {
        return Ok((Vec::new(), Reservation::default()));
    };
    // A proxy that outlived its holder still listens on its port.
    rec.proxies.iter().for_each(proxy::stop);
    let old_rules = rec.clone();
    let has_v6 = rec.container_ip6.is_some();
    let mut held = Reservation::default();
    let mut listeners = Vec::new();
    let before = rec.bindings.len();
    rec.bindings.retain(|b| {
        let listens = reserve::proxied(b.host_ip, b.proto, has_v6);
        match reserve::reserve(b.host_ip, b.host_port, b.proto, listens) {
            Ok((socket, _)) if listens => {
                listeners.push(Listener {
                    socket,
                    host_port: b.host_port,
                    container_port: b.container_port,
                });
                true
            }
            Ok((socket, _)) => {
                held.hold(socket);
                true
            }
            Err(e) => {
                tracing::warn!("{container_id}: {} taken meanwhile: {e}", b.host_addr());
                false
            }
        }
    });
    let lost = rec.bindings.len() != before;
    if lost {
        // The rules of the ports it keeps come back below; the lost ones must not stay.
        remove_rules(ctx, container_id, &old_rules)?;
    }
    rec.proxies = start_proxy(container_id, rec.container_ip, rec.container_ip6, listeners)?;
    if rec.bindings.is_empty() {
        record::remove(root, container_id)?;
        return Ok((Vec::new(), held));
    }
    record::write(root, container_id, &rec)?;
    if lost {
        install(ctx, container_id, &rec, Mode::Add)?;
    }
    Ok((rec.bindings, held))
}

/// Removes a container's port rules and record; succeeds when already gone (crash repair).
pub(crate) fn unpublish(ctx: &Context, container_id: &str) -> Result<()> {
    let root = ctx.root();
    let Some(rec) = record::read(root, container_id)? else {
        return Ok(());
    };
    // First, so the port is free when this returns: the proxy was its only holder.
    rec.proxies.iter().for_each(proxy::stop);
    let mut errors = Errors::default();
    errors.check(remove_rules(ctx, container_id, &rec));
    if errors.is_empty() {
        forget_udp_flows(&rec.bindings);
        errors.check(record::remove(root, container_id));
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
pub(crate) fn left_network(ctx: &Context, container_id: &str, network_id: &str) -> Result<()> {
    match record::read(ctx.root(), container_id)? {
        Some(rec) if rec.network_id == network_id => unpublish(ctx, container_id),
        _ => Ok(()),
    }
}

/// What a container publishes now (empty when nothing).
pub fn published(root: &std::path::Path, container_id: &str) -> Result<Vec<PortBinding>> {
    Ok(record::read(root, container_id)?
        .map(|r| r.bindings)
        .unwrap_or_default())
}

/// `network reload`: reinstalls the rules of every container whose sandbox lives; drops the
/// records (and rules) of the others.
pub(crate) fn reload(ctx: &Context) -> Result<()> {
    let mut errors = Errors::default();
    for id in record::recorded(ctx.root()) {
        if sandbox::netns_path(ctx.root(), &id).exists() {
            if let Some(rec) = errors.check(record::read(ctx.root(), &id)).flatten() {
                errors.check(install(ctx, &id, &rec, Mode::Repair));
            }
        } else {
            errors.check(unpublish(ctx, &id));
        }
    }
    errors.into_result()
}

/// Removes every port rule and record of the root (`system prune`, test cleanup).
pub(crate) fn teardown(ctx: &Context) -> Result<()> {
    let mut errors = Errors::default();
    for id in record::recorded(ctx.root()) {
        errors.check(unpublish(ctx, &id));
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::Root;

    #[test]
    fn failed_rules_leave_no_record_and_free_the_port() {
        let r = Root::new();
        let sb = r.sandbox("c1");
        r.network("n1", "10.180.20.0/24");
        let req = crate::EndpointRequest {
            network: "n1".into(),
            container_name: "web".into(),
            ..Default::default()
        };
        crate::endpoint::connect(&r.ctx(), "c1", &sb, &req).unwrap();
        let spec = [PortSpec::parse("127.0.0.1::80").unwrap()];
        let (b, held) = publish(&r.ctx(), "c1", &spec).unwrap();
        assert_eq!(held.len(), 1);
        assert!(r.log.has("add_ports c1"));
        assert_eq!(published(r.path(), "c1").unwrap(), b);
        // While held, the port is taken; once the holder lets go it is free.
        assert!(std::net::TcpListener::bind(("127.0.0.1", b[0].host_port)).is_err());
        drop(held);
        unpublish(&r.ctx(), "c1").unwrap();
        assert!(r.log.has("remove_ports c1"));
        assert!(published(r.path(), "c1").unwrap().is_empty());

        r.fw.fail.lock().unwrap().push("add_ports");
        let e = publish(&r.ctx(), "c1", &spec).unwrap_err();
        assert!(
            e.to_string().starts_with("recording: add_ports failed"),
            "{e}"
        );
        assert!(published(r.path(), "c1").unwrap().is_empty(), "record left");
        assert_eq!(
            r.log
                .calls()
                .iter()
                .filter(|c| *c == "remove_ports c1")
                .count(),
            2,
            "the failed publish is undone: {:?}",
            r.log.calls()
        );
    }
}
