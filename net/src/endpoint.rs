//! Joining and leaving networks: lease under the network's lock, wire outside it (so many
//! containers can join one network at once), give the lease back on every failure. What the
//! network's driver can do is asked of its `Caps`, never of its name.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::context::Context;
use crate::driver::{Ipam, Namespace};
use crate::error::{Error, Errors, Result};
use crate::ipam;
use crate::network::{new_id, EndpointRecord, Network, Store, DEFAULT_BRIDGE_NAME};
use crate::sandbox::{self, Sandbox};
use crate::{EndpointRequest, EndpointSettings};

/// The container's endpoints on every network of the root.
fn container_endpoints(
    store: &Store,
    container_id: &str,
) -> Result<Vec<(Network, EndpointRecord)>> {
    let mut mine = Vec::new();
    for n in store.list()? {
        if let Some(e) = store.endpoint(&n.id, container_id)? {
            mine.push((n, e));
        }
    }
    Ok(mine)
}

/// A prefix length and the gateway of an address.
type Addressing<A> = Option<(u8, Option<A>)>;

/// The prefix lengths and gateways of an endpoint's addresses: what its driver said it
/// assigned, else its network's pools.
pub(crate) fn addressing(
    net: &Network,
    ep: &EndpointRecord,
) -> (
    Addressing<std::net::Ipv4Addr>,
    Addressing<std::net::Ipv6Addr>,
) {
    let a = ep.assigned.as_ref();
    let v4 = match a.and_then(|a| a.subnet) {
        Some(s) => Some((s.prefix(), a.and_then(|a| a.gateway))),
        None => net
            .ipam
            .as_ref()
            .map(|i| (i.subnet.prefix(), Some(i.gateway))),
    };
    let v6 = match a.and_then(|a| a.subnet6) {
        Some(s) => Some((s.prefix(), a.and_then(|a| a.gateway6))),
        None => net
            .ipam6
            .as_ref()
            .map(|i| (i.subnet.prefix(), Some(i.gateway))),
    };
    (
        v4.filter(|_| ep.ip.is_some()),
        v6.filter(|_| ep.ip6.is_some()),
    )
}

/// The subnets of an endpoint's addresses: what its driver assigned, else its network's pools.
pub(crate) fn subnets(
    net: &Network,
    ep: &EndpointRecord,
) -> (
    Option<ipnetwork::Ipv4Network>,
    Option<ipnetwork::Ipv6Network>,
) {
    let a = ep.assigned.as_ref();
    let v4 = a
        .and_then(|a| a.subnet)
        .and_then(|s| ipnetwork::Ipv4Network::new(s.network(), s.prefix()).ok())
        .or_else(|| net.ipam.as_ref().map(|i| i.subnet));
    let v6 = a
        .and_then(|a| a.subnet6)
        .and_then(|s| ipnetwork::Ipv6Network::new(s.network(), s.prefix()).ok())
        .or_else(|| net.ipam6.as_ref().map(|i| i.subnet));
    (
        v4.filter(|_| ep.ip.is_some()),
        v6.filter(|_| ep.ip6.is_some()),
    )
}

pub fn settings(net: &Network, ep: &EndpointRecord) -> EndpointSettings {
    let (v4, v6) = addressing(net, ep);
    let gateway4 = match (&ep.assigned, &net.ipam) {
        (Some(_), _) => v4.and_then(|(_, g)| g),
        (None, Some(i)) => Some(i.gateway),
        (None, None) => None,
    };
    EndpointSettings {
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        endpoint_id: ep.endpoint_id.clone(),
        gateway: gateway4.map(|g| g.to_string()).unwrap_or_default(),
        ip_address: ep.ip.map(|i| i.to_string()).unwrap_or_default(),
        ip_prefix_len: v4.map(|(p, _)| p).unwrap_or(0),
        ipv6_gateway: v6
            .and_then(|(_, g)| g)
            .map(|g| g.to_string())
            .unwrap_or_default(),
        global_ipv6_address: ep.ip6.map(|i| i.to_string()).unwrap_or_default(),
        global_ipv6_prefix_len: v6.map(|(p, _)| p).unwrap_or(0),
        mac_address: ep.mac.clone(),
        aliases: ep.aliases.clone(),
        interface: ep.interface.clone(),
    }
}

/// Checks what `req` asks of `net` before anything is leased.
fn check_request(ctx: &Context, net: &Network, req: &EndpointRequest) -> Result<()> {
    let drv = ctx.driver(net)?;
    let caps = drv.caps();
    if caps.namespace == Namespace::Host && (req.ip.is_some() || !req.aliases.is_empty()) {
        return Err(Error::Invalid(
            "conflicting options: ip and aliases are not supported on the host network".into(),
        ));
    }
    if req.ip.is_some() && net.default {
        return Err(Error::Invalid(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    if let Some(IpAddr::V6(ip)) = req.ip {
        return Err(Error::Invalid(format!("invalid IPv4 address: {ip}")));
    }
    if net.default && !req.aliases.is_empty() {
        return Err(Error::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    if let Some(mac) = &req.mac {
        ipam::parse_mac(mac)?;
    }
    for a in &req.aliases {
        crate::dns::check_alias(a)?;
    }
    drv.check_endpoint(net, req)
}

/// Leases addresses from `net`'s pools for a new endpoint `rec`. An address that looks taken
/// may be a crash's leftover: those are given back and the lease tried once more.
fn lease(
    store: &Store,
    net: &Network,
    req: &EndpointRequest,
    rec: &mut EndpointRecord,
) -> Result<()> {
    match lease_from(store, net, req, rec) {
        Err(Error::Conflict(_)) if store.repair_leases(&net.id)? => {
            lease_from(store, net, req, rec)
        }
        r => r,
    }
}

fn lease_from(
    store: &Store,
    net: &Network,
    req: &EndpointRequest,
    rec: &mut EndpointRecord,
) -> Result<()> {
    let requested = match req.ip {
        Some(IpAddr::V4(ip)) => Some(ip),
        _ => None,
    };
    let Some(cfg) = &net.ipam else {
        if requested.is_some() {
            return Err(Error::Invalid(format!(
                "network {} has no address pool for --ip",
                net.name
            )));
        }
        return Ok(());
    };
    let leased = store.leased(&net.id)?;
    let ip = ipam::allocate(cfg, &leased.v4, requested)?;
    rec.ip = Some(ip);
    if let Some(v6) = &net.ipam6 {
        let leased6 = &leased.v6;
        let want6 = match req.ip6 {
            Some(IpAddr::V6(a)) => Some(a),
            Some(other) => return Err(Error::Invalid(format!("invalid IPv6 address: {other}"))),
            None => None,
        };
        rec.ip6 = Some(ipam::allocate6(v6, leased6, want6)?);
    } else if req.ip6.is_some() {
        return Err(Error::Invalid(format!(
            "network {} does not have IPv6 enabled",
            net.name
        )));
    }
    rec.mac = req.mac.clone().unwrap_or_else(|| ipam::mac_for(ip));
    Ok(())
}

pub(crate) fn connect(
    ctx: &Context,
    container_id: &str,
    sandbox: &Sandbox,
    req: &EndpointRequest,
) -> Result<EndpointSettings> {
    let store = &ctx.store;
    let name = if req.network.is_empty() {
        DEFAULT_BRIDGE_NAME
    } else {
        req.network.as_str()
    };
    let net = store.find(name)?;
    check_request(ctx, &net, req)?;
    let drv = ctx.driver(&net)?;
    let caps = drv.caps();

    // Lease under the network's lock.
    let (net, mut record) = {
        let _lock = store.lock(&net.id)?;
        let mut net = store.load(&net.id)?;
        drop_stale(ctx, &net);
        if store.endpoint(&net.id, container_id)?.is_some() {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                req.container_name, net.name
            )));
        }
        let mine = container_endpoints(store, container_id)?;
        let exclusive = |n: &Network| ctx.driver(n).is_ok_and(|d| d.caps().exclusive);
        if caps.exclusive && !mine.is_empty() || mine.iter().any(|(n, _)| exclusive(n)) {
            return Err(Error::Conflict(format!(
                "container cannot be disconnected from host network or connected to host network; \
                 container {} cannot join network {} alongside its other networks",
                req.container_name, net.name
            )));
        }
        let before = net.clone();
        drv.attach_host(&mut net, ctx.fw)?;
        // A network defined outside the root gets its state file with its first endpoint.
        let leased =
            new_lease(ctx, &mut net, container_id, req, &mine, drv.as_ref()).and_then(|rec| {
                match net != before || crate::driver::is_external(&net) {
                    true => store.save(&net).map(|()| rec),
                    false => Ok(rec),
                }
            });
        if leased.is_err() {
            let _ = store.remove_endpoint(&net.id, container_id);
            if !store.has_endpoints(&net.id).unwrap_or(true)
                && drv.detach_host(&mut net, ctx.fw).is_ok()
            {
                let _ = store.save(&net);
            }
        }
        (net, leased?)
    };

    let leased = record.clone();
    if let Err(e) = drv.join(&net, &mut record, sandbox, ctx.fw) {
        // A failed join left nothing of itself in the kernel.
        let _ = drop_lease(ctx, &net.id, container_id);
        return Err(e);
    }
    // What the driver set (addresses it chose, the real MAC) is recorded, and the name must
    // resolve, once this returns; otherwise the join is undone.
    let done = if record != leased {
        update_endpoint(store, &net.id, container_id, &record)
    } else {
        Ok(())
    }
    .and_then(|()| match ctx.serves(&net) {
        true => ctx.sync_joined(&net.id, container_id),
        false => Ok(()),
    });
    if let Err(e) = done {
        let _ = drv.leave(&net, &record, Some(sandbox));
        let _ = drop_lease(ctx, &net.id, container_id);
        return Err(e);
    }
    Ok(settings(&net, &record))
}

/// Leases an endpoint of `net` for `container_id` (whose other endpoints are `mine`) and
/// records it.
fn new_lease(
    ctx: &Context,
    net: &mut Network,
    container_id: &str,
    req: &EndpointRequest,
    mine: &[(Network, EndpointRecord)],
    drv: &dyn crate::driver::Driver,
) -> Result<EndpointRecord> {
    let caps = drv.caps();
    let mut rec = EndpointRecord {
        container_id: container_id.to_string(),
        container_name: req.container_name.clone(),
        endpoint_id: new_id(),
        aliases: req.aliases.clone(),
        dns_servers: req.dns.clone(),
        ..Default::default()
    };
    if drv.maps_ports() {
        rec.ports = req.ports.clone();
    }
    match caps.ipam {
        Ipam::Local => lease(&ctx.store, net, req, &mut rec)?,
        Ipam::None if req.ip.is_some() => {
            return Err(Error::Invalid(format!(
                "network {} has no address pool for --ip",
                net.name
            )))
        }
        Ipam::None => {}
        // What the container asks for; the driver assigns it or refuses in `join`.
        Ipam::Driver => {
            rec.ip = match req.ip {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            };
            rec.ip6 = match req.ip6 {
                Some(IpAddr::V6(ip)) => Some(ip),
                Some(other) => {
                    return Err(Error::Invalid(format!("invalid IPv6 address: {other}")))
                }
                None => None,
            };
            rec.mac = req.mac.clone().unwrap_or_default();
        }
    }
    if caps.namespace == Namespace::Joined {
        let used: BTreeSet<_> = mine.iter().map(|(_, e)| e.interface.clone()).collect();
        rec.interface = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_default();
        rec.default_route =
            caps.default_route && !net.internal && !mine.iter().any(|(_, e)| e.default_route);
        drv.new_endpoint(net, container_id, &mut rec);
    }
    ctx.store.put_endpoint(&net.id, &rec)?;
    Ok(rec)
}

fn update_endpoint(
    store: &Store,
    network_id: &str,
    container_id: &str,
    rec: &EndpointRecord,
) -> Result<()> {
    let _lock = store.lock(network_id)?;
    // Released meanwhile (a `rm -f` of the container): not brought back.
    if store.endpoint(network_id, container_id)?.is_none() {
        return Err(Error::Conflict(format!(
            "container {container_id} left network {network_id} while joining it"
        )));
    }
    store.put_endpoint(network_id, rec)
}

/// Forgets leases whose sandbox is gone: their holder was killed (kill -9) before it could
/// release them; the driver releases what they held outside the sandbox. A live endpoint always
/// has its sandbox file, which is made before the lease and removed after it, so this never
/// drops a lease in use. Endpoints of host-namespace networks have no sandbox and are kept.
/// The caller holds the network's lock. Two directory listings, whatever the number of
/// endpoints: only the stale ones are read.
pub(crate) fn drop_stale(ctx: &Context, net: &Network) -> bool {
    let Ok(drv) = ctx.driver(net) else {
        return false;
    };
    if drv.caps().namespace == Namespace::Host {
        return false;
    }
    let Ok(ids) = ctx.store.endpoint_ids(&net.id) else {
        return false;
    };
    if ids.is_empty() {
        return false;
    }
    let live = sandbox::ids(ctx.root());
    let mut dropped = false;
    for cid in ids.iter().filter(|cid| !live.contains(*cid)) {
        let Ok(Some(ep)) = ctx.store.endpoint(&net.id, cid) else {
            continue;
        };
        // Released by the driver first: a failure leaves the record for the next repair.
        if let Err(e) = drv.release(net, &ep) {
            tracing::warn!(container = %cid, network = %net.name, "releasing endpoint: {e}");
        }
        match ctx.store.remove_endpoint(&net.id, cid) {
            Ok(_) => dropped = true,
            Err(e) => tracing::warn!(container = %cid, network = %net.name, "{e}"),
        }
    }
    dropped
}

/// Once `net` has no endpoint left here, its driver detaches it from this host (the caller
/// holds the network's lock and saves `net`).
pub(crate) fn vacate(ctx: &Context, net: &mut Network) -> Result<()> {
    if ctx.store.has_endpoints(&net.id)? {
        return Ok(());
    }
    ctx.driver(net)?.detach_host(net, ctx.fw)
}

fn drop_lease(
    ctx: &Context,
    network_id: &str,
    container_id: &str,
) -> Result<Option<EndpointRecord>> {
    let store = &ctx.store;
    let _lock = store.lock(network_id)?;
    let rec = store.remove_endpoint(network_id, container_id)?;
    if rec.is_some() && !store.has_endpoints(network_id)? {
        let mut net = store.load(network_id)?;
        let vacated = vacate(ctx, &mut net);
        store.save(&net)?;
        vacated?;
    }
    Ok(rec)
}

pub(crate) fn disconnect(ctx: &Context, container_id: &str, network: &str) -> Result<()> {
    let store = &ctx.store;
    let net = store.find(network)?;
    let Some(rec) = store.endpoint(&net.id, container_id)? else {
        return Err(Error::Conflict(format!(
            "container {container_id} is not connected to network {}",
            net.name
        )));
    };
    let drv = ctx.driver(&net)?;
    let mut errors = Errors::default();
    errors.check(crate::ports::left_network(ctx, container_id, &net.id));
    if let Some(sandbox) = Sandbox::open(ctx.root(), container_id) {
        errors.check(drv.leave(&net, &rec, Some(&sandbox)));
    }
    errors.check(drv.release(&net, &rec));
    errors.check(drop_lease(ctx, &net.id, container_id));
    if ctx.serves(&net) {
        errors.check(ctx.sync_names());
    }
    if rec.default_route {
        errors.check(hand_over_default_route(ctx, container_id));
    }
    errors.into_result()
}

/// After the network carrying the default route left, the first remaining external network of
/// the container whose driver gives default routes takes it over, as Docker does.
fn hand_over_default_route(ctx: &Context, container_id: &str) -> Result<()> {
    let store = &ctx.store;
    let Some(sandbox) = Sandbox::open(ctx.root(), container_id) else {
        return Ok(());
    };
    let mut mine = container_endpoints(store, container_id)?;
    mine.sort_by(|a, b| a.1.interface.cmp(&b.1.interface));
    let candidate = mine.into_iter().find_map(|(n, e)| {
        let drv = ctx.driver(&n).ok()?;
        (drv.caps().default_route && !n.internal && e.ip.is_some()).then_some((n, e, drv))
    });
    let Some((net, ep, drv)) = candidate else {
        return Ok(());
    };
    drv.set_default_route(&net, &ep, &sandbox)?;
    let _lock = store.lock(&net.id)?;
    if let Some(mut e) = store.endpoint(&net.id, container_id)? {
        e.default_route = true;
        store.put_endpoint(&net.id, &e)?;
    }
    Ok(())
}

/// Leaves every network and removes the sandbox; keeps going past errors, idempotent. The
/// endpoints are unwired here rather than left to the kernel's freeing of the namespace, which
/// comes a moment later (asynchronously, later still under load): when this returns no link of
/// the container is left (a macvlan child would still answer for an address whose lease is
/// given back, on a LAN where the next container may get it), and a container that joined the
/// sandbox (and keeps it alive) is left with `lo`, as in Docker.
pub(crate) fn release(ctx: &Context, container_id: &str) -> Result<()> {
    let mut errors = Errors::default();
    errors.check(crate::ports::unpublish(ctx, container_id));
    let sandbox = Sandbox::open(ctx.root(), container_id);
    let mut named = false;
    if let Some(mine) = errors.check(container_endpoints(&ctx.store, container_id)) {
        for (net, ep) in mine {
            named |= ctx.serves(&net);
            let drv = ctx.driver(&net);
            if let (Some(sb), Ok(d)) = (&sandbox, &drv) {
                errors.check(d.leave(&net, &ep, Some(sb)));
            }
            errors.check(drv.and_then(|d| d.release(&net, &ep)));
            errors.check(drop_lease(ctx, &net.id, container_id));
        }
    }
    errors.check(sandbox::remove(ctx.root(), container_id));
    if named {
        errors.check(ctx.sync_names());
    }
    errors.into_result()
}

/// Renames the container's endpoints (the resolver's names for it).
pub(crate) fn rename(ctx: &Context, container_id: &str, name: &str) -> Result<()> {
    let store = &ctx.store;
    let mut named = false;
    for (net, _) in container_endpoints(store, container_id)? {
        let _lock = store.lock(&net.id)?;
        if let Some(mut ep) = store.endpoint(&net.id, container_id)? {
            ep.container_name = name.to_string();
            store.put_endpoint(&net.id, &ep)?;
            named |= ctx.serves(&net);
        }
    }
    if named {
        ctx.sync_names()?;
    }
    Ok(())
}

pub fn endpoints(store: &Store, container_id: &str) -> Result<Vec<EndpointSettings>> {
    let mut eps: Vec<_> = container_endpoints(store, container_id)?
        .iter()
        .map(|(n, e)| settings(n, e))
        .collect();
    eps.sort_by(|a, b| a.interface.cmp(&b.interface));
    Ok(eps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::Root;

    fn req(network: &str, name: &str) -> EndpointRequest {
        EndpointRequest {
            network: network.into(),
            container_name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_failed_join_gives_the_lease_back() {
        let r = Root::new();
        let net = r.network("n1", "10.180.1.0/24");
        let sb = r.sandbox("c1");
        r.driver.fail("join");
        let e = connect(&r.ctx(), "c1", &sb, &req("n1", "web")).unwrap_err();
        assert!(e.to_string().contains("join failed"), "{e}");
        assert!(r.endpoints(&net).is_empty(), "lease left");
        assert!(r.log.has("join n1"));
        // The lease is free again: the next container gets the first address.
        r.driver.fail.lock().unwrap().clear();
        let s = connect(&r.ctx(), "c1", &sb, &req("n1", "web")).unwrap();
        assert_eq!(s.ip_address, "10.180.1.2");
        assert_eq!(s.interface, "eth0");
        let ep = &r.endpoints(&net)["c1"];
        assert!(
            ep.default_route,
            "the first network gives the default route"
        );
        assert_eq!(
            ep.host_veth, "rec-n1",
            "the driver named its link before the lease"
        );
    }

    #[test]
    fn a_failed_name_sync_undoes_the_join() {
        let r = Root::new();
        r.driver.set_caps(|c| c.dns = true);
        let net = r.network("n1", "10.180.2.0/24");
        let sb = r.sandbox("c1");
        *r.names_fail.lock().unwrap() = true;
        assert!(connect(&r.ctx(), "c1", &sb, &req("n1", "web")).is_err());
        assert_eq!(r.log.calls(), ["join n1", "sync_names", "leave n1"]);
        assert!(r.endpoints(&net).is_empty(), "lease left");
    }

    #[test]
    fn driver_assigned_addresses_are_recorded_and_shown_with_their_subnet() {
        let r = Root::new();
        r.driver.set_caps(|c| c.ipam = Ipam::Driver);
        let net = r.network("n1", "10.180.4.0/24");
        let sb = r.sandbox("c1");
        let s = connect(&r.ctx(), "c1", &sb, &req("n1", "web")).unwrap();
        // The driver's subnet and gateway, not the network's pool.
        assert_eq!(
            (s.ip_address.as_str(), s.ip_prefix_len, s.gateway.as_str()),
            ("10.180.99.77", 26, "10.180.99.65")
        );
        assert_eq!(s.mac_address, "02:00:00:00:00:77");
        let ep = &r.endpoints(&net)["c1"];
        assert_eq!(ep.ip, Some("10.180.99.77".parse().unwrap()));
        assert_eq!(ep.container_id, "c1");
        // What the container asks for reaches the driver.
        let sb2 = r.sandbox("c2");
        let mut want = req("n1", "db");
        want.ip = Some("10.180.99.80".parse().unwrap());
        let s = connect(&r.ctx(), "c2", &sb2, &want).unwrap();
        assert_eq!(s.ip_address, "10.180.99.80");
    }

    #[test]
    fn exclusive_networks_refuse_company_and_ip_requests_are_checked() {
        let r = Root::new();
        r.network("n1", "10.180.3.0/24");
        let none = crate::driver::null::network();
        r.store().save(&none).unwrap();
        let sb = r.sandbox("c1");
        connect(&r.ctx(), "c1", &sb, &req("n1", "web")).unwrap();
        let e = connect(&r.ctx(), "c1", &sb, &req("none", "web")).unwrap_err();
        assert!(e.to_string().contains("cannot join network none"), "{e}");
        let sb2 = r.sandbox("c2");
        let mut bad = req("n1", "db");
        bad.ip = Some("fd00::1".parse().unwrap());
        let e = connect(&r.ctx(), "c2", &sb2, &bad).unwrap_err();
        assert_eq!(e.to_string(), "invalid IPv4 address: fd00::1");
        bad.ip = Some("10.180.3.2".parse().unwrap());
        let e = connect(&r.ctx(), "c2", &sb2, &bad).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        assert!(
            !r.log.has("join none"),
            "nothing wired for refused requests"
        );
    }

    #[test]
    fn disconnect_hands_the_default_route_to_the_next_network() {
        let r = Root::new();
        let (n1, n2) = (
            r.network("n1", "10.180.4.0/24"),
            r.network("n2", "10.180.5.0/24"),
        );
        let sb = r.sandbox("c1");
        connect(&r.ctx(), "c1", &sb, &req("n1", "web")).unwrap();
        let s2 = connect(&r.ctx(), "c1", &sb, &req("n2", "web")).unwrap();
        assert_eq!(s2.interface, "eth1");
        assert!(!r.endpoints(&n2)["c1"].default_route);
        disconnect(&r.ctx(), "c1", "n1").unwrap();
        let calls = r.log.calls();
        let at = |c: &str| calls.iter().position(|x| x == c).unwrap();
        assert!(at("leave n1") < at("set_default_route n2"), "{calls:?}");
        assert!(r.log.has("release n1 web"));
        assert!(r.endpoints(&n1).is_empty());
        assert!(r.endpoints(&n2)["c1"].default_route, "not recorded");
    }

    #[test]
    fn release_and_crash_repair_call_the_driver() {
        let r = Root::new();
        let net = r.network("n1", "10.180.6.0/24");
        for (id, name) in [("c1", "a"), ("c2", "b")] {
            let sb = r.sandbox(id);
            connect(&r.ctx(), id, &sb, &req("n1", name)).unwrap();
        }
        release(&r.ctx(), "c1").unwrap();
        assert!(r.log.has("release n1 a"));
        assert!(!r.path().join("netns/c1").exists());
        // c2's holder was killed: its sandbox file is gone, its lease is still recorded.
        std::fs::remove_file(r.path().join("netns/c2")).unwrap();
        let n = r.store().load(&net.id).unwrap();
        assert!(drop_stale(&r.ctx(), &n));
        assert!(r.log.has("release n1 b"));
        assert!(r.endpoints(&net).is_empty());
        assert!(
            r.store().leased(&net.id).unwrap().v4.is_empty(),
            "address kept"
        );
    }

    #[test]
    fn an_address_a_crash_left_leased_to_nobody_is_given_out_again() {
        let r = Root::new();
        let net = r.network("n1", "10.180.10.0/24");
        // Killed between the lease and its endpoint's file: .2 taken by nobody.
        let leases = r.store().records_dir(&net.id).join("leases");
        std::fs::create_dir_all(&leases).unwrap();
        std::os::unix::fs::symlink("ghost", leases.join("10.180.10.2")).unwrap();
        let sb = r.sandbox("c1");
        let s = connect(&r.ctx(), "c1", &sb, &req("n1", "a")).unwrap();
        assert_eq!(
            s.ip_address, "10.180.10.3",
            "the pool has room: no repair needed"
        );
        // Asked for by --ip, it is repaired and given.
        let sb2 = r.sandbox("c2");
        let mut want = req("n1", "b");
        want.ip = Some("10.180.10.2".parse().unwrap());
        let s = connect(&r.ctx(), "c2", &sb2, &want).unwrap();
        assert_eq!(s.ip_address, "10.180.10.2");
        // One held for real is refused.
        let sb3 = r.sandbox("c3");
        let mut taken = req("n1", "c");
        taken.ip = Some("10.180.10.3".parse().unwrap());
        let e = connect(&r.ctx(), "c3", &sb3, &taken).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        assert_eq!(r.endpoints(&net).len(), 2);
    }

    #[test]
    fn rename_renames_every_endpoint_and_syncs_names() {
        let r = Root::new();
        r.driver.set_caps(|c| c.dns = true);
        let (n1, n2) = (
            r.network("n1", "10.180.7.0/24"),
            r.network("n2", "10.180.8.0/24"),
        );
        let sb = r.sandbox("c1");
        connect(&r.ctx(), "c1", &sb, &req("n1", "old")).unwrap();
        connect(&r.ctx(), "c1", &sb, &req("n2", "old")).unwrap();
        let syncs = r.log.calls().iter().filter(|c| *c == "sync_names").count();
        rename(&r.ctx(), "c1", "new").unwrap();
        for n in [&n1, &n2] {
            assert_eq!(r.endpoints(n)["c1"].container_name, "new");
        }
        let after = r.log.calls().iter().filter(|c| *c == "sync_names").count();
        assert_eq!(
            after,
            syncs + 1,
            "one sync, after every endpoint was renamed"
        );
    }

    #[test]
    fn release_unwires_the_sandbox_before_it_goes() {
        let r = Root::new();
        r.network("n1", "10.180.9.0/24");
        let sb = r.sandbox("c1");
        connect(&r.ctx(), "c1", &sb, &req("n1", "a")).unwrap();
        release(&r.ctx(), "c1").unwrap();
        let calls = r.log.calls();
        let at = |c: &str| calls.iter().position(|x| x == c);
        assert!(
            at("leave n1") < at("release n1 a") && at("leave n1").is_some(),
            "{calls:?}"
        );
        // Each one: not left to the kernel's (later) freeing of the namespace.
        let sb = r.sandbox("c2");
        connect(&r.ctx(), "c2", &sb, &req("n1", "b")).unwrap();
        release(&r.ctx(), "c2").unwrap();
        assert_eq!(r.log.calls().iter().filter(|c| *c == "leave n1").count(), 2);
        // A sandbox already gone (a reboot, a crash): nothing to unwire, the rest is given back.
        let sb = r.sandbox("c3");
        connect(&r.ctx(), "c3", &sb, &req("n1", "c")).unwrap();
        std::fs::remove_file(r.path().join("netns/c3")).unwrap();
        release(&r.ctx(), "c3").unwrap();
        assert_eq!(r.log.calls().iter().filter(|c| *c == "leave n1").count(), 2);
        assert!(r.log.has("release n1 c"));
    }
}
