//! `overlay`: one network across hosts, over the kernel's VXLAN, with its state in the cluster
//! store (`crate::cluster`) and no daemon.
//!
//! Data plane, flannel's model rather than Docker's shared L2, and why: each host that has
//! endpoints on the network holds a share of its `--subnet` (a /24 of a /16 by default,
//! `share`), a local bridge carrying the share's first address, and a VXLAN device (learning
//! off) with, per remote host, three static kernel objects (`vxlan`). A new container on a host
//! that already has a share changes nothing on any other host, and its address is leased
//! locally (no transaction per container); only a host joining or leaving a network changes
//! the others, and the kernel needs no miss handler, so nothing breaks when rbox's helper is
//! not running. Docker's model (one L2 segment per network) needs a neighbour and an FDB
//! entry per remote *endpoint* on every host, kept current as containers come and go: far more
//! state to sync, and a helper that must be up for every container start anywhere.
//!
//! Containers still see one subnet: their address carries the network's prefix (Docker's
//! view), and the bridge answers ARP for the other hosts' shares (proxy ARP, no delay), which
//! it routes to the VXLAN device. MTU = the underlay link's - 50 (`-o
//! com.docker.network.driver.mtu` to lower it). The VNI is unique cluster-wide (from 4096, or
//! `-o com.docker.network.driver.overlay.vxlanid_list=N`), the UDP port is 4789.
//!
//! Local state: the network's mirror in `<root>/networks/<id>.json`; while the host has
//! endpoints its IPAM config is the host's pool (`ip_range` = the share, the share's `.0` kept
//! for the VTEP) and `Options::joined` holds the share. The first endpoint on a host joins it
//! (`attach_host`), the last leaves it (`detach_host`), both under the network's lock.

mod share;
pub(crate) mod vxlan;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

pub use share::{list as shares, reclaim, record_seen, Seen, Share};

use super::bridge::{self, Bridge};
use super::{unknown_option, Caps, Driver, DriverOpts, Ipam, Namespace, PortPath};
use crate::cluster::{self, registry, Host};
use crate::error::{Error, Errors, Result};
use crate::firewall::{Firewall, FwNetwork};
use crate::ipam::IpamConfig;
use crate::netlink::{block_on, host_handle, link_by_name};
use crate::network::{EndpointRecord, Network, Store};
use crate::sandbox::Sandbox;

pub const OPT_VNI: &str = "com.docker.network.driver.overlay.vxlanid_list";
pub const OPT_HOST_PREFIX: &str = "rbox.overlay.host_prefix";
/// Docker's first VNI for overlay networks.
const FIRST_VNI: u32 = 4096;
const MAX_VNI: u32 = (1 << 24) - 1;
/// The IPAM aux name of the address a host's VTEP holds (its share's `.0`).
const VTEP_AUX: &str = "vtep";

/// What an overlay network is, beyond the generic fields of `Network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Unique cluster-wide; 0 until the network is recorded in the store.
    pub vni: u32,
    /// The prefix length of each host's share; 0 until chosen.
    pub host_prefix: u8,
    /// `-o com.docker.network.driver.mtu`: at most the underlay's MTU - 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// This host's part while it has endpoints (local: never stored in the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<Joined>,
}

/// This host's part of an overlay network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub share: Share,
    /// The MTU of its bridge, VXLAN device and veths.
    pub mtu: u32,
    /// The store's revision that recorded the share.
    #[serde(default)]
    pub since: i64,
    /// The other hosts confirmed they programmed the share (or were waited for in vain).
    #[serde(default)]
    pub confirmed: bool,
}

pub struct Overlay;

impl Overlay {
    pub const NAME: &'static str = "overlay";
}

fn options(net: &Network) -> Result<&Options> {
    match &net.driver_opts {
        DriverOpts::Overlay(o) => Ok(o),
        _ => Err(Error::Invalid(format!(
            "network {} has no overlay settings (damaged state file?)",
            net.name
        ))),
    }
}

fn options_mut(net: &mut Network) -> Result<&mut Options> {
    match &mut net.driver_opts {
        DriverOpts::Overlay(o) => Ok(o),
        _ => Err(Error::Invalid("network has no overlay settings".into())),
    }
}

/// The host-side links of the network with VNI `vni`.
pub fn bridge_name(vni: u32) -> String {
    format!("rbox-ov{vni}")
}

pub fn vxlan_name(vni: u32) -> String {
    format!("rbox-vx{vni}")
}

fn subnet(net: &Network) -> Result<Ipv4Network> {
    net.ipam
        .as_ref()
        .map(|c| c.subnet)
        .ok_or_else(|| Error::Invalid(format!("network {} has no subnet", net.name)))
}

/// The default share size: a /24 while the network has room for 16 hosts, else 16 shares.
fn default_host_prefix(subnet: Ipv4Network) -> u8 {
    (subnet.prefix() + 4).clamp(24, 30)
}

/// The network as the store holds it and as it is before this host joins: the network's
/// subnet with Docker's gateway (its first address), no pool of this host's.
fn global_ipam(subnet: Ipv4Network) -> IpamConfig {
    IpamConfig {
        subnet,
        gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
        ip_range: None,
        aux: BTreeMap::new(),
    }
}

/// This host's pool: addresses of its share, on the network's prefix, the share's first
/// address on the bridge, its `.0` on the VTEP.
fn host_ipam(subnet: Ipv4Network, share: &Share) -> IpamConfig {
    IpamConfig {
        subnet,
        gateway: share.gateway(),
        ip_range: Some(share.subnet),
        aux: [(VTEP_AUX.to_string(), share.subnet.network())].into(),
    }
}

/// `net` as the bridge driver sees it on this host: its bridge, MTU and pool.
fn bridged(net: &Network, o: &Options, joined: &Joined) -> Network {
    let mut b = net.clone();
    b.driver = Bridge::NAME.into();
    b.driver_opts = DriverOpts::Bridge(bridge::Options {
        name: bridge_name(o.vni),
        mtu: Some(joined.mtu),
        icc: true,
        masquerade: !net.internal,
        host_binding: None,
    });
    b
}

fn joined(net: &Network) -> Result<(&Options, &Joined)> {
    let o = options(net)?;
    let j = o.joined.as_ref().ok_or_else(|| {
        Error::Invalid(format!(
            "this host has not joined overlay network {}",
            net.name
        ))
    })?;
    Ok((o, j))
}

fn fw_network(net: &Network, o: &Options) -> Result<FwNetwork> {
    Ok(FwNetwork {
        short_id: net.id[..12].to_string(),
        bridge: bridge_name(o.vni),
        subnets: vec![subnet(net)?.into()],
        icc: true,
        masquerade: true,
        internal: net.internal,
        tunnel: Some(vxlan_name(o.vni)),
    })
}

fn parse_u32(v: &str, key: &str) -> Result<u32> {
    v.trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid value {v:?} for option {key}")))
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(crate::error::io(format!("setting {path}")))
}

/// Makes this host's kernel side of `net`: the VXLAN device, the bridge (proxy ARP for the
/// other hosts' shares) and the network's rules. Undone by `unwire` on error.
fn wire(net: &Network, o: &Options, j: &Joined, host: &Host, fw: &dyn Firewall) -> Result<()> {
    let b = bridged(net, o, j);
    let br = bridge_name(o.vni);
    block_on(async {
        let handle = host_handle()?;
        vxlan::ensure(
            &handle,
            &vxlan_name(o.vni),
            &net.id,
            o.vni,
            j.mtu,
            &j.share,
            host,
        )
        .await?;
        bridge::link::ensure_bridge(&handle, &b, fw).await?;
        Ok::<_, Error>(())
    })??;
    bridge::link::enable_ip_forward()?;
    sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/proxy_arp"), "1")?;
    sysctl(&format!("/proc/sys/net/ipv4/neigh/{br}/proxy_delay"), "0")?;
    fw.install_networks(&[fw_network(net, o)?])
}

/// Removes this host's kernel side of `net`: rules, bridge, VXLAN device (with its peers).
fn unwire(net: &Network, o: &Options, fw: &dyn Firewall) -> Result<()> {
    let mut errors = Errors::default();
    // The bridge is this network's own: every rule through it goes.
    errors.check(fw_network(net, o).and_then(|f| fw.remove_network(&f, true)));
    let _held = bridge::link::lock_bridges()?;
    errors.check(
        block_on(async {
            let handle = host_handle()?;
            let mut e = Errors::default();
            e.check(vxlan::delete(&handle, &vxlan_name(o.vni), &net.id).await);
            e.check(bridge::link::delete_owned(&handle, &bridge_name(o.vni), &net.id).await);
            e.into_result()
        })
        .and_then(|r| r),
    );
    errors.into_result()
}

/// Whether this host's kernel side of `net` exists.
fn wired(o: &Options) -> Result<bool> {
    block_on(async {
        let handle = host_handle()?;
        Ok(link_by_name(&handle, &vxlan_name(o.vni)).await?.is_some()
            && link_by_name(&handle, &bridge_name(o.vni)).await?.is_some())
    })?
}

/// Refuses to join a network whose subnet overlaps one of this host's own networks.
fn check_local_overlap(root: &std::path::Path, net: &Network) -> Result<()> {
    let s = subnet(net)?;
    let clash = Store::new(root).list()?.into_iter().find(|n| {
        n.id != net.id
            && n.ipam
                .as_ref()
                .is_some_and(|c| crate::ipam::overlaps(&c.subnet, &s))
    });
    match clash {
        Some(n) => Err(Error::Conflict(format!(
            "overlay network {} ({s}) overlaps network {} of this host",
            net.name, n.name
        ))),
        None => Ok(()),
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        Overlay::NAME
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::Local,
            namespace: Namespace::Joined,
            exclusive: false,
            ports: true,
            default_route: true,
            dns: true,
        }
    }

    fn scope(&self) -> &'static str {
        "global"
    }

    fn parse_options(
        &self,
        _network_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<DriverOpts> {
        cluster::process()?;
        let mut o = Options::default();
        for (k, v) in options {
            match k.as_str() {
                OPT_VNI => {
                    let vni = parse_u32(v.split(',').next().unwrap_or(v), k)?;
                    if !(1..=MAX_VNI).contains(&vni) {
                        return Err(Error::Invalid(format!(
                            "invalid VXLAN id {vni}: must be between 1 and {MAX_VNI}"
                        )));
                    }
                    o.vni = vni;
                }
                bridge::OPT_MTU => {
                    let m = parse_u32(v, k)?;
                    if !(68..=65535).contains(&m) {
                        return Err(Error::Invalid(format!(
                            "invalid MTU {m}: must be between 68 and 65535"
                        )));
                    }
                    o.mtu = Some(m);
                }
                OPT_HOST_PREFIX => {
                    let p = parse_u32(v.trim_start_matches('/'), k)?;
                    if !(8..=30).contains(&p) {
                        return Err(Error::Invalid(format!(
                            "invalid {OPT_HOST_PREFIX} {p}: must be between 8 and 30"
                        )));
                    }
                    o.host_prefix = p as u8;
                }
                _ => return Err(unknown_option(Overlay::NAME, k)),
            }
        }
        Ok(DriverOpts::Overlay(o))
    }

    fn check(&self, net: &Network, _others: &[Network]) -> Result<()> {
        if net.enable_ipv6 {
            return Err(Error::Invalid(
                "overlay networks are IPv4 only in this version of rbox".into(),
            ));
        }
        let cfg = net
            .ipam
            .as_ref()
            .ok_or_else(|| Error::Invalid("overlay networks need a subnet".into()))?;
        if cfg.ip_range.is_some() || !cfg.aux.is_empty() {
            return Err(Error::Invalid(
                "--ip-range and --aux-address are not supported on overlay networks: \
                 each host leases from its own share of the subnet"
                    .into(),
            ));
        }
        if cfg.gateway != global_ipam(cfg.subnet).gateway {
            return Err(Error::Invalid(
                "--gateway is not supported on overlay networks: each host's bridge is the \
                 gateway of its share of the subnet"
                    .into(),
            ));
        }
        let o = options(net)?;
        let len = if o.host_prefix == 0 {
            default_host_prefix(cfg.subnet)
        } else {
            o.host_prefix
        };
        if len <= cfg.subnet.prefix() || len > 30 {
            return Err(Error::Invalid(format!(
                "subnet {} is too small for hosts' shares of /{len} \
                 (-o {OPT_HOST_PREFIX}=N, N between {} and 30)",
                cfg.subnet,
                cfg.subnet.prefix() + 1
            )));
        }
        Ok(())
    }

    /// Records the network in the store with a VNI no other network has.
    fn allocate(&self, net: &mut Network) -> Result<()> {
        let (_, cfg) = cluster::process()?;
        let s = subnet(net)?;
        let o = options_mut(net)?;
        if o.host_prefix == 0 {
            o.host_prefix = default_host_prefix(s);
        }
        let asked = o.vni;
        registry::create(cfg, net, |net, others| {
            let used: Vec<u32> = others
                .iter()
                .filter_map(|n| options(n).ok().map(|o| o.vni))
                .collect();
            let vni = if asked != 0 {
                if used.contains(&asked) {
                    return Err(Error::Conflict(format!(
                        "VXLAN id {asked} is used by another overlay network"
                    )));
                }
                asked
            } else {
                (FIRST_VNI..=MAX_VNI)
                    .find(|v| !used.contains(v))
                    .ok_or_else(|| Error::Conflict("no free VXLAN id".into()))?
            };
            options_mut(net)?.vni = vni;
            Ok(vec![vni_key(vni)])
        })
    }

    fn free(&self, net: &Network) -> Result<()> {
        let (_, cfg) = cluster::process()?;
        registry::remove(cfg, net, &[vni_key(options(net)?.vni)])
    }

    /// The host has nothing of the network until an endpoint joins.
    fn create_network(&self, _net: &Network, _fw: &dyn Firewall) -> Result<()> {
        Ok(())
    }

    /// Removes this host's kernel side only (the store's records go with `free` and
    /// `detach_host`): `system prune` keeps state.
    fn delete_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        let o = options(net)?;
        if o.vni == 0 {
            return Ok(());
        }
        unwire(net, o, fw)
    }

    /// Joins this host: takes a share of the subnet in the store, makes the VXLAN device,
    /// bridge and rules, and points the network's pool at the share.
    fn attach_host(&self, net: &mut Network, fw: &dyn Firewall) -> Result<()> {
        let o = options(net)?.clone();
        if let Some(j) = &o.joined {
            if wired(&o)? {
                return Ok(());
            }
            // The kernel side is gone (reboot, teardown): made again on the same share.
            let (_, cfg) = cluster::process()?;
            let host = cluster::host::identity(cfg)?;
            if let Err(e) = wire(net, &o, j, &host, fw) {
                let _ = unwire(net, &o, fw);
                return Err(e);
            }
            // A running helper programs the peers on the new device.
            cluster::agent::resync(cluster::process()?.0);
            return Ok(());
        }
        let (root, cfg) = cluster::process()?;
        check_local_overlap(root, net)?;
        let s = subnet(net)?;
        let host = cluster::host::identity(cfg)?;
        let (share, rev) = share::claim(root, cfg, &net.id, s, o.host_prefix, &host, None)?;
        let mtu = o
            .mtu
            .unwrap_or(u32::MAX)
            .min(host.mtu.saturating_sub(vxlan::OVERHEAD));
        let j = Joined {
            share,
            mtu,
            since: rev,
            confirmed: false,
        };
        // The bridge takes the share's gateway from the pool.
        net.ipam = Some(host_ipam(s, &j.share));
        if let Err(e) = wire(net, &o, &j, &host, fw) {
            let _ = unwire(net, &o, fw);
            if share::release(cfg, &net.id, &j.share).is_err() {
                cluster::agent::defer_release(root, &share::key(&net.id, &j.share.subnet));
            }
            net.ipam = Some(global_ipam(s));
            return Err(e);
        }
        options_mut(net)?.joined = Some(j);
        Ok(())
    }

    /// The host's last endpoint left: removes its kernel side and gives its share back.
    fn detach_host(&self, net: &mut Network, fw: &dyn Firewall) -> Result<()> {
        let o = options(net)?.clone();
        let Some(j) = &o.joined else {
            return Ok(());
        };
        let (root, cfg) = cluster::process()?;
        let mut errors = Errors::default();
        errors.check(unwire(net, &o, fw));
        if let Err(e) = share::release(cfg, &net.id, &j.share) {
            tracing::warn!(network = %net.name, "giving the share back: {e}; retried by the helper");
            cluster::agent::defer_release(root, &share::key(&net.id, &j.share.subnet));
        }
        net.ipam = Some(global_ipam(subnet(net)?));
        options_mut(net)?.joined = None;
        cluster::agent::deactivate(root, &net.id);
        errors.into_result()
    }

    fn new_endpoint(&self, net: &Network, container_id: &str, ep: &mut EndpointRecord) {
        Bridge.new_endpoint(net, container_id, ep);
    }

    /// A veth on the host's bridge, then the endpoint in the store (names across hosts), then
    /// the helper told to watch the network's hosts.
    fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        sandbox: &Sandbox,
        fw: &dyn Firewall,
    ) -> Result<()> {
        let (o, j) = joined(net)?;
        let b = bridged(net, o, j);
        Bridge.join(&b, ep, sandbox, fw)?;
        let published = publish_endpoint(net, j, &sandbox.container_id, ep)
            .and_then(|()| cluster::process())
            .and_then(|(root, cfg)| {
                cluster::agent::activate(root, &net.id)?;
                if !j.confirmed {
                    // The host's first endpoints: the other hosts must route to its share
                    // before `run` returns (after this host's helper programmed theirs).
                    share::wait_for_peers(cfg, &net.id, j.share.host, j.since);
                    confirm(root, &net.id)?;
                }
                Ok(())
            });
        if let Err(e) = published {
            let _ = Bridge.leave(&b, ep, Some(sandbox));
            // The store just failed or may hold the entry: the helper removes it when it can,
            // so that a store that does not answer costs one timeout, not two.
            if let Ok((root, _)) = cluster::process() {
                cluster::agent::defer_release(
                    root,
                    &registry::endpoint_key(&net.id, &ep.endpoint_id),
                );
            }
            return Err(e);
        }
        Ok(())
    }

    fn leave(&self, net: &Network, ep: &EndpointRecord, sandbox: Option<&Sandbox>) -> Result<()> {
        let (o, j) = joined(net)?;
        Bridge.leave(&bridged(net, o, j), ep, sandbox)
    }

    fn set_default_route(
        &self,
        net: &Network,
        ep: &EndpointRecord,
        sandbox: &Sandbox,
    ) -> Result<()> {
        let (o, j) = joined(net)?;
        Bridge.set_default_route(&bridged(net, o, j), ep, sandbox)
    }

    /// Removes the endpoint from the store; with the store unreachable the helper does it
    /// later, so that `rm` never fails on it.
    fn release(&self, net: &Network, ep: &EndpointRecord) -> Result<()> {
        unpublish_endpoint(net, &ep.endpoint_id)
    }

    fn firewall(&self, net: &Network) -> Result<Option<FwNetwork>> {
        let o = options(net)?;
        if o.joined.is_none() || !wired(o)? {
            return Ok(None);
        }
        fw_network(net, o).map(Some)
    }

    fn port_path(&self, net: &Network) -> Result<PortPath> {
        Ok(PortPath {
            interface: bridge_name(options(net)?.vni),
            host_ip: None,
        })
    }
}

/// Records that the other hosts were waited for, so that later runs do not wait.
fn confirm(root: &std::path::Path, id: &str) -> Result<()> {
    let store = Store::new(root);
    let _lock = store.lock(id)?;
    let mut net = store.load(id)?;
    if let DriverOpts::Overlay(Options {
        joined: Some(j), ..
    }) = &mut net.driver_opts
    {
        j.confirmed = true;
        store.save(&net)?;
    }
    Ok(())
}

fn vni_key(vni: u32) -> String {
    format!("/rbox/vni/{vni}")
}

/// How the store shows endpoint `ep` of container `container_id` on this host.
pub fn entry(
    net: &Network,
    j: &Joined,
    container_id: &str,
    ep: &EndpointRecord,
) -> registry::EndpointEntry {
    let _ = net;
    registry::EndpointEntry {
        container_id: container_id.to_string(),
        name: ep.container_name.clone(),
        aliases: ep.aliases.clone(),
        ip: ep.ip,
        ip6: ep.ip6,
        mac: ep.mac.clone(),
        endpoint_id: ep.endpoint_id.clone(),
        host: j.share.host,
        hostname: j.share.hostname.clone(),
    }
}

/// Puts `ep` in the store under this host's lease.
fn publish_endpoint(
    net: &Network,
    j: &Joined,
    container_id: &str,
    ep: &EndpointRecord,
) -> Result<()> {
    let (root, cfg) = cluster::process()?;
    let entry = entry(net, j, container_id, ep);
    cluster::host::with_lease(
        root,
        cfg,
        |lease| registry::put_endpoint(cfg, &net.id, &entry, lease),
        || cluster::agent::resync(root),
    )
}

fn unpublish_endpoint(net: &Network, endpoint_id: &str) -> Result<()> {
    let (root, cfg) = cluster::process()?;
    if let Err(e) = registry::delete_endpoint(cfg, &net.id, endpoint_id) {
        tracing::warn!(network = %net.name, "removing endpoint from the store: {e}; retried by the helper");
        cluster::agent::defer_release(root, &registry::endpoint_key(&net.id, endpoint_id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_and_share_sizes() {
        let s: Ipv4Network = "10.185.0.0/16".parse().unwrap();
        assert_eq!(default_host_prefix(s), 24);
        assert_eq!(default_host_prefix("10.185.0.0/22".parse().unwrap()), 26);
        assert_eq!(default_host_prefix("10.185.0.0/28".parse().unwrap()), 30);
        let share = Share {
            subnet: "10.185.7.0/24".parse().unwrap(),
            host: "10.186.0.12".parse().unwrap(),
            hostname: String::new(),
        };
        let pool = host_ipam(s, &share);
        let first = crate::ipam::allocate(&pool, &Default::default(), None).unwrap();
        assert_eq!(
            first.to_string(),
            "10.185.7.2",
            "not .0 (VTEP) nor .1 (bridge)"
        );
        assert!(crate::ipam::allocate(
            &pool,
            &Default::default(),
            Some("10.185.7.0".parse().unwrap())
        )
        .is_err());
        assert_eq!(global_ipam(s).gateway.to_string(), "10.185.0.1");
        assert_eq!(
            (bridge_name(4096), vxlan_name(4096)),
            ("rbox-ov4096".into(), "rbox-vx4096".into())
        );
    }
}
