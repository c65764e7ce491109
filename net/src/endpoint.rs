//! Joining and leaving networks: lease under the network's lock, wire outside it (so many
//! containers can join one network at once), give the lease back on every failure.

use std::collections::BTreeSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::driver;
use crate::error::{Error, Errors, Result};
use crate::ipam;
use crate::network::{new_id, EndpointRecord, Network, Store};
use crate::sandbox::{self, Sandbox};
use crate::{EndpointRequest, EndpointSettings};

/// A host veth name that a quick reuse of the same container id cannot collide with while the
/// kernel is still removing the previous pair: "vrb" + 12 hex digits.
fn host_veth_name(container_id: &str, network_id: &str) -> String {
    let nonce: u64 = rand::random();
    let digest = Sha256::digest(format!("{container_id}/{network_id}/{nonce}"));
    format!("vrb{}", &hex::encode(digest)[..12])
}

/// The container's endpoints on every network of the root.
fn container_endpoints(nets: &[Network], container_id: &str) -> Vec<(Network, EndpointRecord)> {
    nets.iter()
        .filter_map(|n| {
            n.endpoints
                .get(container_id)
                .map(|e| (n.clone(), e.clone()))
        })
        .collect()
}

pub fn settings(net: &Network, ep: &EndpointRecord) -> EndpointSettings {
    let ipam = net.ipam.as_ref();
    EndpointSettings {
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        endpoint_id: ep.endpoint_id.clone(),
        gateway: ipam.map(|i| i.gateway.to_string()).unwrap_or_default(),
        ip_address: ep.ip.map(|i| i.to_string()).unwrap_or_default(),
        ip_prefix_len: ep.ip.and(ipam.map(|i| i.subnet.prefix())).unwrap_or(0),
        ipv6_gateway: net
            .ipam6
            .as_ref()
            .filter(|_| ep.ip6.is_some())
            .map(|c| c.gateway.to_string())
            .unwrap_or_default(),
        global_ipv6_address: ep.ip6.map(|i| i.to_string()).unwrap_or_default(),
        global_ipv6_prefix_len: ep
            .ip6
            .and(net.ipam6.as_ref().map(|c| c.subnet.prefix()))
            .unwrap_or(0),
        mac_address: ep.mac.clone(),
        aliases: ep.aliases.clone(),
        interface: ep.interface.clone(),
    }
}

pub fn connect(
    root: &Path,
    container_id: &str,
    sandbox: &Sandbox,
    req: &EndpointRequest,
) -> Result<EndpointSettings> {
    let store = Store::new(root);
    let name = if req.network.is_empty() {
        "bridge"
    } else {
        req.network.as_str()
    };
    let net = store.find(name)?;
    if net.driver != "bridge"
        && (req.ip.is_some() || !req.aliases.is_empty())
        && net.driver == "host"
    {
        return Err(Error::Invalid(
            "conflicting options: ip and aliases are not supported on the host network".into(),
        ));
    }
    let requested = match req.ip {
        None => None,
        Some(_) if net.default => {
            return Err(Error::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ))
        }
        Some(std::net::IpAddr::V4(ip)) => Some(ip),
        Some(std::net::IpAddr::V6(ip)) => {
            return Err(Error::Invalid(format!("invalid IPv4 address: {ip}")))
        }
    };
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

    // Lease under the network's lock.
    let record = {
        let _lock = store.lock(&net.id)?;
        let mut net = store.load(&net.id)?;
        drop_stale(store.root(), &mut net);
        if net.endpoints.contains_key(container_id) {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                req.container_name, net.name
            )));
        }
        let all = store.list()?;
        let mine = container_endpoints(&all, container_id);
        let exclusive = |d: &str| d == "host" || d == "null";
        if exclusive(&net.driver) && !mine.is_empty()
            || mine.iter().any(|(n, _)| exclusive(&n.driver))
        {
            return Err(Error::Conflict(format!(
                "container cannot be disconnected from host network or connected to host network; \
                 container {} cannot join network {} alongside its other networks",
                req.container_name, net.name
            )));
        }
        let mut rec = EndpointRecord {
            container_name: req.container_name.clone(),
            endpoint_id: new_id(),
            ip: None,
            ip6: None,
            mac: String::new(),
            interface: String::new(),
            host_veth: String::new(),
            aliases: req.aliases.clone(),
            default_route: false,
            dns_servers: req.dns.clone(),
        };
        if let Some(cfg) = &net.ipam {
            let leased: BTreeSet<_> = net.endpoints.values().filter_map(|e| e.ip).collect();
            let ip = ipam::allocate(cfg, &leased, requested)?;
            let used: BTreeSet<_> = mine.iter().map(|(_, e)| e.interface.clone()).collect();
            rec.ip = Some(ip);
            if let Some(v6) = &net.ipam6 {
                let leased6: BTreeSet<_> = net.endpoints.values().filter_map(|e| e.ip6).collect();
                let want6 = match req.ip6 {
                    Some(std::net::IpAddr::V6(a)) => Some(a),
                    Some(other) => {
                        return Err(Error::Invalid(format!("invalid IPv6 address: {other}")))
                    }
                    None => None,
                };
                rec.ip6 = Some(ipam::allocate6(v6, &leased6, want6)?);
            } else if req.ip6.is_some() {
                return Err(Error::Invalid(format!(
                    "network {} does not have IPv6 enabled",
                    net.name
                )));
            }
            rec.mac = req.mac.clone().unwrap_or_else(|| ipam::mac_for(ip));
            rec.interface = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_default();
            rec.host_veth = host_veth_name(container_id, &net.id);
            rec.default_route = !net.internal && !mine.iter().any(|(_, e)| e.default_route);
        } else if requested.is_some() {
            return Err(Error::Invalid(format!(
                "network {} has no address pool for --ip",
                net.name
            )));
        }
        net.endpoints.insert(container_id.to_string(), rec.clone());
        store.save(&net)?;
        rec
    };

    let net = store.load(&net.id)?;
    let wired = driver::for_network(&net).and_then(|d| d.join(&net, &record, sandbox));
    if let Err(e) = wired {
        let _ = drop_lease(&store, &net.id, container_id);
        return Err(e);
    }
    // The name must resolve once this returns; without a resolver the join is undone.
    if crate::dns::serves(&net) {
        if let Err(e) = crate::dns::sync(root) {
            let _ = driver::for_network(&net).and_then(|d| d.leave(&net, &record));
            let _ = drop_lease(&store, &net.id, container_id);
            return Err(e);
        }
    }
    Ok(settings(&net, &record))
}

/// Forgets bridge leases whose sandbox is gone: their holder was killed (kill -9) before it could
/// release them. A live endpoint always has its sandbox file, which is made before the lease and
/// removed after it, so this never drops a lease in use.
pub(crate) fn drop_stale(root: &Path, net: &mut Network) -> bool {
    let before = net.endpoints.len();
    net.endpoints
        .retain(|cid, ep| ep.host_veth.is_empty() || sandbox::netns_path(root, cid).exists());
    before != net.endpoints.len()
}

fn drop_lease(
    store: &Store,
    network_id: &str,
    container_id: &str,
) -> Result<Option<EndpointRecord>> {
    let _lock = store.lock(network_id)?;
    let mut net = store.load(network_id)?;
    let rec = net.endpoints.remove(container_id);
    if rec.is_some() {
        store.save(&net)?;
    }
    Ok(rec)
}

pub fn disconnect(root: &Path, container_id: &str, network: &str) -> Result<()> {
    let store = Store::new(root);
    let net = store.find(network)?;
    let Some(rec) = net.endpoints.get(container_id).cloned() else {
        return Err(Error::Conflict(format!(
            "container {container_id} is not connected to network {}",
            net.name
        )));
    };
    let mut errors = Errors::default();
    errors.check(crate::ports::left_network(root, container_id, &net.id));
    if sandbox::netns_path(root, container_id).exists() && !rec.host_veth.is_empty() {
        errors.check(driver::for_network(&net).and_then(|d| d.leave(&net, &rec)));
    }
    errors.check(drop_lease(&store, &net.id, container_id));
    if crate::dns::serves(&net) {
        errors.check(crate::dns::sync(root));
    }
    if rec.default_route {
        errors.check(hand_over_default_route(&store, container_id));
    }
    errors.into_result()
}

/// After the network carrying the default route left, the first remaining external bridge
/// network of the container takes it over, as Docker does.
fn hand_over_default_route(store: &Store, container_id: &str) -> Result<()> {
    let Some(sandbox) = Sandbox::open(store.root(), container_id) else {
        return Ok(());
    };
    let nets = store.list()?;
    let mut mine = container_endpoints(&nets, container_id);
    mine.sort_by(|a, b| a.1.interface.cmp(&b.1.interface));
    let Some((net, ep)) = mine
        .into_iter()
        .find(|(n, e)| n.driver == "bridge" && !n.internal && e.ip.is_some())
    else {
        return Ok(());
    };
    crate::driver::bridge::take_default_route(&net, &ep, &sandbox)?;
    let _lock = store.lock(&net.id)?;
    let mut net = store.load(&net.id)?;
    if let Some(e) = net.endpoints.get_mut(container_id) {
        e.default_route = true;
        store.save(&net)?;
    }
    Ok(())
}

pub fn release(root: &Path, container_id: &str) -> Result<()> {
    let store = Store::new(root);
    let mut errors = Errors::default();
    errors.check(crate::ports::unpublish(root, container_id));
    let mut named = false;
    if let Some(nets) = errors.check(store.list()) {
        for (net, _) in container_endpoints(&nets, container_id) {
            named |= crate::dns::serves(&net);
            errors.check(drop_lease(&store, &net.id, container_id));
        }
    }
    errors.check(sandbox::remove(root, container_id));
    if named {
        errors.check(crate::dns::sync(root));
    }
    errors.into_result()
}

pub fn endpoints(root: &Path, container_id: &str) -> Result<Vec<EndpointSettings>> {
    let nets = Store::new(root).list()?;
    let mut eps: Vec<_> = container_endpoints(&nets, container_id)
        .iter()
        .map(|(n, e)| settings(n, e))
        .collect();
    eps.sort_by(|a, b| a.interface.cmp(&b.interface));
    Ok(eps)
}
