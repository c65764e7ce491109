//! rtnetlink plumbing. Every call runs on a `current_thread` runtime created and dropped inside
//! the call, and helper threads are joined: libcontainer forks with raw clone3 and needs the
//! process to be single-threaded when it builds a container.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use futures_util::TryStreamExt;
use ipnetwork::Ipv4Network;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::error::{io, nl, Error, Result};

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
    let rt = tokio::runtime::Handle::current();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Handle> {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| io("entering sandbox network namespace")(e.into()))?;
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
