//! The bridge driver's kernel side over rtnetlink: the bridge itself (created under a host-wide
//! lock, named after its owner network), veths with their peer made inside the sandbox,
//! addresses and default routes.

use std::fs;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth};

use super::options::{self, Options};
use crate::error::{io, nl, Error, Result};
use crate::firewall::{Firewall, FwNetwork};
use crate::ipam::parse_mac;
pub(super) use crate::netlink::alias;
use crate::netlink::{
    self, add_addr, add_default_routes, delete_link, is_exists, link_by_name, set_alias, set_up,
    DefaultVia,
};
use crate::network::{EndpointRecord, Network};

/// The owner tag rbox puts in a bridge's alias (IFLA_IFALIAS): bridges of other `--root`s can
/// share a name (`rbox0`), and neither may take the other's bridge or delete it.
pub(super) fn owner_tag(net: &Network) -> String {
    tag(&net.id)
}

fn tag(network_id: &str) -> String {
    format!("rbox network {network_id}")
}

/// Deletes bridge `name` if it is network `network_id`'s: another root's bridge of the same
/// name (`rbox0`) is not ours to delete.
pub(crate) async fn delete_owned(handle: &Handle, name: &str, network_id: &str) -> Result<()> {
    match link_by_name(handle, name).await? {
        Some(link) if alias(&link) == Some(tag(network_id).as_str()) => {
            delete_link(handle, name).await
        }
        _ => Ok(()),
    }
}

/// Whether interfaces are attached to bridge `name` (sysfs lists them in `brif`).
fn has_ports(name: &str) -> bool {
    fs::read_dir(format!("/sys/class/net/{name}/brif"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// The subnets of the addresses on link `idx` (link-local ones aside).
async fn link_subnets(handle: &Handle, idx: u32) -> Result<Vec<IpNetwork>> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(idx)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing a bridge's addresses"))?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => IpNetwork::new(*ip, m.header.prefix_len)
                    .ok()
                    .map(|n| IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)),
                _ => None,
            })
        })
        .filter(|n| !matches!(n, IpNetwork::V6(v6) if v6.ip().segments()[0] & 0xffc0 == 0xfe80))
        .collect())
}

/// Removes the rules another root's network `owner` (an id) made for bridge `link`: its own
/// state is gone with its root, so they are rebuilt from the id and the bridge's addresses.
async fn remove_rules_of(
    handle: &Handle,
    owner: &str,
    link: &LinkMessage,
    name: &str,
    fw: &dyn Firewall,
) -> Result<()> {
    let leftover = FwNetwork {
        short_id: owner.chars().take(12).collect(),
        bridge: name.to_string(),
        subnets: link_subnets(handle, netlink::index(link)).await?,
        icc: true,
        masquerade: true,
        internal: false,
        tunnel: None,
    };
    fw.remove_network(&leftover, true)
}

/// Checks that an existing bridge is this network's. Another rbox network's bridge with nothing
/// attached is a leftover (its root was removed without `system prune`): it is deleted with
/// the rules that network left, and true is returned so that the caller makes it anew.
async fn claim_existing(
    handle: &Handle,
    net: &Network,
    o: &Options,
    link: &LinkMessage,
    fw: &dyn Firewall,
) -> Result<bool> {
    let tag = owner_tag(net);
    match alias(link) {
        Some(a) if a == tag => Ok(false),
        Some(a) if a.starts_with("rbox network ") && !has_ports(&o.name) => {
            remove_rules_of(handle, &a["rbox network ".len()..], link, &o.name, fw).await?;
            delete_link(handle, &o.name).await?;
            Ok(true)
        }
        Some(a) if a.starts_with("rbox network ") => Err(Error::Invalid(format!(
            "bridge {} is in use by another rbox network ({}, another --root?): \
             give this root its own default bridge (RBOX_DEFAULT_BRIDGE)",
            o.name,
            &a["rbox network ".len()..]
                .chars()
                .take(12)
                .collect::<String>()
        ))),
        // A crash between creating the bridge and naming its owner: down, empty, and with the
        // address rbox gives this network's bridge (02:42 + gateway), which nobody else uses.
        None if !link.header.flags.contains(LinkFlags::Up)
            && !has_ports(&o.name)
            && mac(link) == Some(gateway_mac(net)?) =>
        {
            delete_link(handle, &o.name).await?;
            Ok(true)
        }
        _ => Err(Error::Invalid(format!(
            "bridge {} exists and was not created by rbox",
            o.name
        ))),
    }
}

fn mac(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// A fixed address: otherwise the bridge takes the lowest MAC of its ports and changes it as
/// containers leave, and every container's cached neighbour entry for the gateway goes stale
/// (traffic to the gateway, the DNS resolver and the default route stalls for seconds).
fn gateway_mac(net: &Network) -> Result<Vec<u8>> {
    let ipam = net
        .ipam
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("network {} has no subnet", net.name)))?;
    parse_mac(&crate::ipam::mac_for(ipam.gateway))
}

/// Serialises bridge creation and removal across processes and roots: a bridge gets its owner
/// alias only after it exists, and no other process may judge it in between.
const BRIDGE_LOCK: &str = "/run/rbox-bridges.lock";

pub(crate) fn lock_bridges() -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(std::path::Path::new(
        BRIDGE_LOCK,
    ))?)
}

/// Creates the bridge with the gateway address if missing; true when this call created it.
pub(crate) async fn ensure_bridge(
    handle: &Handle,
    net: &Network,
    fw: &dyn Firewall,
) -> Result<bool> {
    let o = options::of(net)?;
    let _held = lock_bridges()?;
    if let Some(link) = link_by_name(handle, &o.name).await? {
        if !claim_existing(handle, net, o, &link, fw).await? {
            return Ok(false);
        }
    }
    let ipam = net
        .ipam
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("network {} has no subnet", net.name)))?;
    let mut msg = LinkBridge::new(&o.name).address(gateway_mac(net)?);
    if let Some(mtu) = o.mtu {
        msg = msg.mtu(mtu);
    }
    match handle.link().add(msg.build()).execute().await {
        Ok(()) => {}
        // Another rbox process made it first; it also adds the address and rules.
        Err(e) if is_exists(&e) => return Ok(false),
        Err(e) => return Err(nl(format!("creating bridge {}", o.name))(e)),
    }
    let result = async {
        let link = link_by_name(handle, &o.name)
            .await?
            .ok_or_else(|| Error::Invalid(format!("bridge {} vanished", o.name)))?;
        let idx = netlink::index(&link);
        // The kernel ignores IFLA_IFALIAS when creating a link, so the owner is named now,
        // before anything else (see claim_existing for a crash before this).
        set_alias(handle, idx, &owner_tag(net), &format!("bridge {}", o.name)).await?;
        let what = format!("bridge {}", o.name);
        add_addr(
            handle,
            idx,
            ipam.gateway.into(),
            ipam.subnet.prefix(),
            &what,
        )
        .await?;
        if let Some(v6) = &net.ipam6 {
            add_addr(handle, idx, v6.gateway.into(), v6.subnet.prefix(), &what).await?;
        }
        set_up(handle, idx, &what).await
    }
    .await;
    if let Err(e) = result {
        let _ = delete_link(handle, &o.name).await;
        return Err(e);
    }
    Ok(true)
}

pub(crate) fn enable_ip_forward() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if fs::read_to_string(path)
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
    {
        return Ok(());
    }
    fs::write(path, "1").map_err(io("enabling ip_forward"))
}

/// Creates `ep`'s veth: the host end (`ep.host_veth`) on bridge `bridge`, with hairpin so a
/// container reaches itself through published ports, the peer (`ep.interface`) made directly
/// inside the sandbox `ns` with the endpoint's addresses, up, and the default routes if `ep`
/// carries them. On error the pair is deleted.
pub(super) async fn add_veth(
    handle: &Handle,
    net: &Network,
    o: &Options,
    bridge: &LinkMessage,
    ep: &EndpointRecord,
    ns: &fs::File,
) -> Result<()> {
    let ipam = net
        .ipam
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("network {} has no subnet", net.name)))?;
    let ip = ep
        .ip
        .ok_or_else(|| Error::Invalid("endpoint without address".into()))?;
    let mac = parse_mac(&ep.mac)?;
    let mtu = o
        .mtu
        .or_else(|| netlink::mtu(bridge))
        .filter(|m| *m != 1500);
    let mut peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
        .name(ep.interface.clone())
        .setns_by_fd(ns.as_raw_fd())
        .address(mac);
    let mut veth = LinkVeth::new(&ep.host_veth, &ep.interface).controller(netlink::index(bridge));
    if let Some(m) = mtu {
        peer = peer.mtu(m);
        veth = veth.mtu(m);
    }
    let veth = veth.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    handle
        .link()
        .add(veth.build())
        .execute()
        .await
        .map_err(nl(format!(
            "creating veth {} for {}",
            ep.host_veth, ep.container_name
        )))?;
    let inside = async {
        // IPv6 off on a bridge port, and on the container's end of an IPv4-only network (as
        // Docker up to 25 did): each end's link-local address, DAD and MLD reports would be
        // multicast the bridge floods to every other port, so each start cost every running
        // container's namespace a share of softirq work (O(N) per start). Set while the ends
        // are down, before the kernel starts any of it.
        let _ = fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", ep.host_veth),
            "1",
        );
        let host_end = link_by_name(handle, &ep.host_veth)
            .await?
            .ok_or_else(|| Error::Invalid(format!("veth {} vanished", ep.host_veth)))?;
        handle
            .link()
            .change(
                LinkBridgePort::new(netlink::index(&host_end))
                    .hairpin(true)
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("enabling hairpin on {}", ep.host_veth)))?;
        set_up(handle, netlink::index(&host_end), &ep.host_veth).await?;
        let sysctls = match ep.ip6 {
            Some(_) => Vec::new(),
            None => vec![(format!("ipv6/conf/{}/disable_ipv6", ep.interface), "1")],
        };
        let nsh = netlink::ns_handle_after(ns, &sysctls)?;
        let link = link_by_name(&nsh, &ep.interface)
            .await?
            .ok_or_else(|| Error::Invalid(format!("{} missing in sandbox", ep.interface)))?;
        let idx = netlink::index(&link);
        add_addr(&nsh, idx, ip.into(), ipam.subnet.prefix(), &ep.interface).await?;
        if let (Some(ip6), Some(v6)) = (ep.ip6, &net.ipam6) {
            add_addr(&nsh, idx, ip6.into(), v6.subnet.prefix(), &ep.interface).await?;
        }
        set_up(&nsh, idx, &ep.interface).await?;
        if ep.default_route {
            add_default_routes(&nsh, net, idx, DefaultVia::Gateway).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = inside {
        let _ = delete_link(handle, &ep.host_veth).await;
        return Err(e);
    }
    Ok(())
}
