//! rtnetlink plumbing. Every call runs on a `current_thread` runtime created and dropped inside
//! the call, and helper threads are joined: libcontainer forks with raw clone3 and needs the
//! process to be single-threaded when it builds a container.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use futures_util::TryStreamExt;
use ipnetwork::Ipv4Network;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::error::{io, nl, Error, Result};
use crate::network::Network;

/// Runs `f` to completion on a fresh single-threaded runtime that is gone when this returns.
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io("starting netlink runtime"))?;
    Ok(rt.block_on(f))
}

/// A netlink handle in the current (host) network namespace. Call inside `block_on`.
pub fn host_handle() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(io("opening netlink socket"))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A netlink handle bound to the network namespace `ns`: the socket is opened on a throw-away
/// thread that entered `ns` and stays bound to it after the thread ends. Call inside `block_on`.
pub fn ns_handle(ns: &File) -> Result<Handle> {
    ns_handle_after(ns, &[])
}

/// `ns_handle`, writing the `/proc/sys/net/...` files `sysctls` (path below `net/`, value)
/// inside `ns` first, on the same thread (best effort: a kernel without IPv6 has no
/// `ipv6/` files).
pub fn ns_handle_after(ns: &File, sysctls: &[(String, &str)]) -> Result<Handle> {
    let rt = tokio::runtime::Handle::current();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Handle> {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| io("entering sandbox network namespace")(e.into()))?;
            for (path, value) in sysctls {
                let _ = std::fs::write(format!("/proc/sys/net/{path}"), value);
            }
            let _guard = rt.enter();
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(io("opening netlink socket in sandbox"))?;
            rt.spawn(conn);
            Ok(handle)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("netlink helper thread panicked".into())))
    })
}

/// The link named `name`, or `None` when there is no such link.
pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// The index of `link`.
pub fn index(link: &LinkMessage) -> u32 {
    link.header.index
}

/// The MTU of `link`, if the kernel reported it.
pub fn mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// Subnets routed on the host, so new networks do not shadow them (docker0, the LAN, ...).
pub fn host_routes() -> Result<Vec<Ipv4Network>> {
    block_on(async {
        let handle = host_handle()?;
        let routes: Vec<_> = handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing host routes"))?;
        Ok(routes
            .into_iter()
            .filter(|r| r.header.destination_prefix_length > 0)
            .filter_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                        Ipv4Network::new(*ip, r.header.destination_prefix_length).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    })?
}

/// Whether a link named `name` exists on the host.
pub fn link_exists(name: &str) -> Result<bool> {
    block_on(async { Ok(link_by_name(&host_handle()?, name).await?.is_some()) })?
}

/// Whether a netlink error is "already exists" (EEXIST).
pub fn is_exists(e: &rtnetlink::Error) -> bool {
    is_errno(e, libc::EEXIST)
}

pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// Adds `ip/prefix` to link `idx`. IPv6 addresses skip duplicate address detection, which would
/// keep them unusable ("tentative") for a second or more.
pub async fn add_addr(handle: &Handle, idx: u32, ip: IpAddr, prefix: u8, what: &str) -> Result<()> {
    let mut req = handle.address().add(idx, ip, prefix);
    if ip.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_exists(&e) => Ok(()),
        Err(e) => Err(nl(format!("adding {ip} to {what}"))(e)),
    }
}

/// Sets link `idx` up.
pub async fn set_up(handle: &Handle, idx: u32, what: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {what} up")))
}

/// Deletes link `name`; succeeds when it is already gone.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<()> {
    if let Some(link) = link_by_name(handle, name).await? {
        match handle.link().del(index(&link)).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::ENODEV) => {}
            Err(e) => return Err(nl(format!("deleting link {name}"))(e)),
        }
    }
    Ok(())
}

/// How a sandbox's default routes leave through an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultVia {
    /// Through the network's gateways (bridge, macvlan, ipvlan l2).
    Gateway,
    /// Straight out of the interface, no next hop (ipvlan l3: the parent routes).
    Device,
}

/// Default routes of the sandbox out of interface `idx`, per address family of `net`.
pub async fn add_default_routes(
    nsh: &Handle,
    net: &Network,
    idx: u32,
    via: DefaultVia,
) -> Result<()> {
    if let Some(v4) = &net.ipam {
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new().output_interface(idx);
        route = match via {
            DefaultVia::Gateway => route.gateway(v4.gateway),
            DefaultVia::Device => route.scope(RouteScope::Link),
        };
        nsh.route()
            .add(route.build())
            .execute()
            .await
            .map_err(nl(format!("adding default route via {}", v4.gateway)))?;
    }
    if let Some(v6) = &net.ipam6 {
        let mut route = RouteMessageBuilder::<Ipv6Addr>::new().output_interface(idx);
        if via == DefaultVia::Gateway {
            route = route.gateway(v6.gateway);
        }
        nsh.route()
            .add(route.build())
            .execute()
            .await
            .map_err(nl(format!("adding default route via {}", v6.gateway)))?;
    }
    Ok(())
}

/// Adds (or, with `add` false, removes) the host route to `ip`/32 out of link `idx`; removing a
/// route that is gone succeeds.
pub async fn host_route(handle: &Handle, ip: Ipv4Addr, idx: u32, add: bool) -> Result<()> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .output_interface(idx)
        .scope(RouteScope::Link)
        .build();
    let r = if add {
        handle.route().add(route).replace().execute().await
    } else {
        handle.route().del(route).execute().await
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if !add && (is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT)) => Ok(()),
        Err(e) => Err(nl(format!(
            "{} the route to {ip}",
            if add { "adding" } else { "removing" }
        ))(e)),
    }
}

/// The alias of `link` (IFLA_IFALIAS): rbox names the owner of links it makes there.
pub fn alias(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) => Some(s.as_str()),
        _ => None,
    })
}

/// Sets the alias of link `idx`. The kernel ignores IFLA_IFALIAS when a link is created, so it is
/// set right after.
pub async fn set_alias(handle: &Handle, idx: u32, alias: &str, what: &str) -> Result<()> {
    let mut msg = LinkUnspec::new_with_index(idx).build();
    msg.attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(nl(format!("naming the owner of {what}")))
}

/// Points the default routes of the sandbox `ns` through its interface `ifname` (`via`).
pub fn route_default_through(
    ns: &File,
    net: &Network,
    ifname: &str,
    via: DefaultVia,
) -> Result<()> {
    block_on(async {
        let nsh = ns_handle(ns)?;
        let link = link_by_name(&nsh, ifname)
            .await?
            .ok_or_else(|| Error::Invalid(format!("{ifname} missing in sandbox")))?;
        add_default_routes(&nsh, net, index(&link), via).await
    })?
}

/// Linux interface names: 1-15 bytes, no '/', ':' or whitespace. `what` names the option.
pub fn check_ifname(name: &str, what: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(Error::Invalid(format!(
            "invalid {what} {name:?}: 1 to 15 characters, no '/', ':' or spaces"
        )));
    }
    Ok(())
}
