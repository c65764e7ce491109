//! The overlay's kernel side on one host, over rtnetlink: the network's VXLAN device (learning
//! off, no miss handlers) and, per remote host, flannel's three static objects on it — a
//! neighbour entry (the peer's share `.0` -> the peer's VTEP MAC), an FDB entry (that MAC ->
//! the peer's address) and an onlink route to the peer's share via `.0` — added in that order
//! (the route last, or the kernel would ARP for the gateway) and removed in reverse.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnetwork::Ipv4Network;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::Share;
use crate::cluster::Host;
use crate::error::{nl, Error, Result};
use crate::netlink::{self, link_by_name};

/// IANA's VXLAN port, as Docker and flannel use by default.
pub const PORT: u16 = 4789;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const OVERHEAD: u32 = 50;

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The MAC of this host's VTEP on every overlay: fixed by its address, so a device made again
/// (after a reboot) needs no change on the peers. 02:52 (locally administered) + the address;
/// containers use 02:42.
pub fn vtep_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x52, o[0], o[1], o[2], o[3]]
}

fn owner_tag(network_id: &str) -> String {
    format!("rbox network {network_id}")
}

/// Makes the VXLAN device `name` of network `network_id` with VNI `vni` on `host`'s underlay,
/// with the share's `.0` as a /32 (no broadcast routes) and `mtu`; an existing one of the same
/// network is kept. Returns its index.
pub async fn ensure(
    handle: &Handle,
    name: &str,
    network_id: &str,
    vni: u32,
    mtu: u32,
    share: &Share,
    host: &Host,
) -> Result<u32> {
    if let Some(link) = link_by_name(handle, name).await? {
        if crate::netlink::alias(&link) == Some(owner_tag(network_id).as_str()) {
            return Ok(netlink::index(&link));
        }
        return Err(Error::Invalid(format!(
            "link {name} exists and is not this network's VXLAN device"
        )));
    }
    let msg = LinkVxlan::new(name, vni)
        .dev(host.link_index)
        .local(host.ip)
        .port(PORT)
        .learning(false)
        .mtu(mtu)
        .address(vtep_mac(host.ip).to_vec())
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl(format!("creating VXLAN device {name} (VNI {vni})")))?;
    let made = async {
        let link = link_by_name(handle, name)
            .await?
            .ok_or_else(|| Error::Invalid(format!("VXLAN device {name} vanished")))?;
        let idx = netlink::index(&link);
        let mut owner = LinkUnspec::new_with_index(idx).build();
        owner
            .attributes
            .push(LinkAttribute::IfAlias(owner_tag(network_id)));
        handle
            .link()
            .set(owner)
            .execute()
            .await
            .map_err(nl(format!("naming the owner of {name}")))?;
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        match handle
            .address()
            .add(idx, share.subnet.network().into(), 32)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("adding the VTEP address to {name}"))(e)),
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(nl(format!("setting {name} up")))?;
        Ok(idx)
    }
    .await;
    if made.is_err() {
        let _ = delete(handle, name, network_id).await;
    }
    made
}

/// Deletes network `network_id`'s VXLAN device `name`; its neighbour, FDB entries and routes go
/// with it. A device of another owner is left alone.
pub async fn delete(handle: &Handle, name: &str, network_id: &str) -> Result<()> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(());
    };
    if crate::netlink::alias(&link).is_some_and(|a| a != owner_tag(network_id)) {
        return Ok(());
    }
    match handle.link().del(netlink::index(&link)).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(nl(format!("deleting VXLAN device {name}"))(e)),
    }
}

fn route_to(peer: &Share, idx: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(peer.subnet.network(), peer.subnet.prefix())
        .gateway(peer.subnet.network())
        .output_interface(idx)
        .onlink()
        .build()
}

/// Makes `peer` reachable through device `idx` (replacing what an earlier share of the same
/// host left).
pub async fn add_peer(handle: &Handle, idx: u32, peer: &Share) -> Result<()> {
    let mac = vtep_mac(peer.host);
    let what = format!("peer {} ({})", peer.host, peer.subnet);
    handle
        .neighbours()
        .add(idx, IpAddr::V4(peer.subnet.network()))
        .link_layer_address(&mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding the neighbour entry of {what}")))?;
    let mut fdb = handle
        .neighbours()
        .add_bridge(idx, &mac)
        .flags(NeighbourFlags::Own)
        .state(NeighbourState::Permanent)
        .replace();
    fdb.message_mut()
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            peer.host,
        )));
    fdb.execute()
        .await
        .map_err(nl(format!("adding the FDB entry of {what}")))?;
    handle
        .route()
        .add(route_to(peer, idx))
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding the route to {what}")))
}

/// What device `idx` holds for remote hosts: routed shares, neighbour entries, FDB entries.
#[derive(Debug, Default)]
pub struct Programmed {
    pub routes: Vec<Ipv4Network>,
    pub neighbours: Vec<Ipv4Addr>,
    /// (VTEP MAC, peer address)
    pub fdb: Vec<([u8; 6], Ipv4Addr)>,
}

pub async fn programmed(handle: &Handle, idx: u32) -> Result<Programmed> {
    let mut p = Programmed::default();
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    for r in routes {
        let oif = r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == idx));
        let gw = r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_)));
        let dst = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        if let (true, true, Some(dst)) = (oif, gw, dst) {
            if let Ok(n) = Ipv4Network::new(dst, r.header.destination_prefix_length) {
                p.routes.push(n);
            }
        }
    }
    for family in [AddressFamily::Inet, AddressFamily::Bridge] {
        let entries: Vec<NeighbourMessage> = handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing neighbour entries"))?;
        for n in entries.iter().filter(|n| n.header.ifindex == idx) {
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let lla = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(m);
                    Some(mac)
                }
                _ => None,
            });
            match (family, dst, lla) {
                (AddressFamily::Inet, Some(ip), _) => p.neighbours.push(ip),
                (AddressFamily::Bridge, Some(ip), Some(mac)) => p.fdb.push((mac, ip)),
                _ => {}
            }
        }
    }
    Ok(p)
}

/// Removes what device `idx` holds for the host whose share is `subnet` at `host` (any part
/// may be missing already); keeps going past errors, route first.
pub async fn del_peer(
    handle: &Handle,
    idx: u32,
    subnet: Ipv4Network,
    host: Option<Ipv4Addr>,
) -> Result<()> {
    let mut first: Option<Error> = None;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(subnet.network(), subnet.prefix())
        .output_interface(idx)
        .build();
    if let Err(e) = handle.route().del(route).execute().await {
        if !is_errno(&e, libc::ESRCH) {
            first.get_or_insert(nl(format!("deleting the route to {subnet}"))(e));
        }
    }
    let mut neigh = NeighbourMessage::default();
    neigh.header.family = AddressFamily::Inet;
    neigh.header.ifindex = idx;
    neigh
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            subnet.network(),
        )));
    if let Err(e) = handle.neighbours().del(neigh).execute().await {
        if !is_errno(&e, libc::ENOENT) {
            first.get_or_insert(nl(format!("deleting the neighbour entry of {subnet}"))(e));
        }
    }
    if let Some(h) = host {
        let mut fdb = NeighbourMessage::default();
        fdb.header.family = AddressFamily::Bridge;
        fdb.header.ifindex = idx;
        fdb.header.flags = NeighbourFlags::Own;
        fdb.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vtep_mac(h).to_vec()));
        fdb.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(h)));
        if let Err(e) = handle.neighbours().del(fdb).execute().await {
            if !is_errno(&e, libc::ENOENT) {
                first.get_or_insert(nl(format!("deleting the FDB entry of {h}"))(e));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Brings device `idx` in line with `peers`: adds each, removes whatever else it holds.
pub async fn sync_peers(handle: &Handle, idx: u32, peers: &[Share]) -> Result<()> {
    let have = programmed(handle, idx).await?;
    let mut first: Option<Error> = None;
    for r in &have.routes {
        if !peers.iter().any(|p| p.subnet == *r) {
            if let Err(e) = del_peer(handle, idx, *r, None).await {
                first.get_or_insert(e);
            }
        }
    }
    for n in &have.neighbours {
        if !peers.iter().any(|p| p.subnet.network() == *n) {
            if let Ok(s) = Ipv4Network::new(*n, 32) {
                let _ = del_peer(handle, idx, s, None).await;
            }
        }
    }
    for (mac, ip) in &have.fdb {
        if !peers
            .iter()
            .any(|p| p.host == *ip && vtep_mac(p.host) == *mac)
        {
            let mut fdb = NeighbourMessage::default();
            fdb.header.family = AddressFamily::Bridge;
            fdb.header.ifindex = idx;
            fdb.header.flags = NeighbourFlags::Own;
            fdb.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            fdb.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(*ip)));
            let _ = handle.neighbours().del(fdb).execute().await;
        }
    }
    for p in peers {
        if let Err(e) = add_peer(handle, idx, p).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
