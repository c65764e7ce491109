//! This host in the cluster: the address it advertises (its VTEP), the underlay link holding it,
//! and its etcd lease, to which every key it writes is attached, so that a host that dies
//! frees its subnets and names once the lease's TTL passes. The lease id is kept in
//! `<root>/cluster/lease.json` (one lease per root and store) and renewed by the helper.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::etcd::EtcdError;
use crate::error::{nl, Error, Result};
use crate::netlink::{self, block_on, host_handle, link_by_name};

/// How this host takes part in the overlay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// The advertised address: peers send VXLAN packets to it.
    pub ip: Ipv4Addr,
    /// Its host name, for `network inspect`.
    pub name: String,
    /// The underlay link holding `ip` and its MTU.
    pub link: String,
    pub link_index: u32,
    pub mtu: u32,
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Which address to advertise: `--cluster-advertise` as an address or an interface, else the
/// address this host reaches the store from.
fn wanted(cfg: &Config) -> Result<Wanted> {
    match cfg.advertise.as_deref() {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Ok(Wanted::Ip(ip)),
            Ok(IpAddr::V6(_)) => Err(Error::Invalid(format!(
                "invalid --cluster-advertise {a}: overlay networks need an IPv4 underlay"
            ))),
            // "eth1" or dockerd's "eth1:2376" form.
            Err(_) => Ok(Wanted::Link(a.split(':').next().unwrap_or(a).to_string())),
        },
        None => {
            let mut last = String::from("no endpoint");
            for ep in &cfg.etcd.endpoints {
                match super::http::connect(ep).and_then(|s| s.local_addr()) {
                    Ok(a) => match a.ip() {
                        IpAddr::V4(ip) => return Ok(Wanted::Ip(ip)),
                        IpAddr::V6(_) => last = format!("{ep} is reached over IPv6"),
                    },
                    Err(e) => last = format!("{ep}: {e}"),
                }
            }
            Err(Error::Cluster(format!(
                "cluster store {}: unreachable ({last}); set --cluster-advertise to choose this host's address",
                cfg.url
            )))
        }
    }
}

enum Wanted {
    Ip(Ipv4Addr),
    Link(String),
}

/// Finds the advertised address and its link.
pub fn identity(cfg: &Config) -> Result<Host> {
    let want = wanted(cfg)?;
    block_on(async {
        let handle = host_handle()?;
        let addrs: Vec<_> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing addresses"))?;
        let v4 = |m: &rtnetlink::packet_route::address::AddressMessage| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        };
        let (ip, index) = match &want {
            Wanted::Ip(ip) => addrs
                .iter()
                .find(|m| v4(m) == Some(*ip))
                .map(|m| (*ip, m.header.index))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "--cluster-advertise {ip}: no interface of this host has that address"
                    ))
                })?,
            Wanted::Link(name) => {
                let link = link_by_name(&handle, name).await?.ok_or_else(|| {
                    Error::Invalid(format!("--cluster-advertise {name}: no such interface"))
                })?;
                let idx = netlink::index(&link);
                let ip = addrs
                    .iter()
                    .filter(|m| m.header.index == idx)
                    .find_map(v4)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "--cluster-advertise {name}: the interface has no IPv4 address"
                        ))
                    })?;
                (ip, idx)
            }
        };
        let mut links = handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(nl("looking up the underlay link"))?
            .ok_or_else(|| Error::Invalid("underlay link vanished".into()))?;
        let name = link
            .attributes
            .iter()
            .find_map(|a| match a {
                rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Host {
            ip,
            name: hostname(),
            link: name,
            link_index: index,
            mtu: netlink::mtu(&link).unwrap_or(1500),
        })
    })?
}

/// `<root>/cluster/lease.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LeaseFile {
    id: i64,
    ttl: u64,
    store: String,
}

pub fn dir(root: &Path) -> PathBuf {
    root.join("cluster")
}

fn lease_path(root: &Path) -> PathBuf {
    dir(root).join("lease.json")
}

fn lock(root: &Path) -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(
        &root.join("locks/cluster.lock"),
    )?)
}

fn recorded(root: &Path, cfg: &Config) -> Option<i64> {
    statefile::read_json_opt::<LeaseFile>(&lease_path(root))
        .ok()
        .flatten()
        .filter(|l| l.store == cfg.url && l.ttl == cfg.lease_ttl)
        .map(|l| l.id)
}

/// The host's lease: the recorded one (checked by whoever uses it: a put with a lease that is
/// gone fails with `LeaseNotFound`), else a new one.
pub fn lease(root: &Path, cfg: &Config) -> Result<i64> {
    if let Some(id) = recorded(root, cfg) {
        return Ok(id);
    }
    renew(root, cfg, 0)
}

/// A new lease in place of `stale` (unless another process already replaced it).
pub fn renew(root: &Path, cfg: &Config, stale: i64) -> Result<i64> {
    let _held = lock(root)?;
    if let Some(id) = recorded(root, cfg).filter(|id| *id != stale) {
        return Ok(id);
    }
    let id = cfg.etcd.grant(cfg.lease_ttl).map_err(|e| cfg.err(e))?;
    std::fs::create_dir_all(dir(root))
        .map_err(crate::error::io("creating the cluster state directory"))?;
    let f = LeaseFile {
        id,
        ttl: cfg.lease_ttl,
        store: cfg.url.clone(),
    };
    if let Err(e) = statefile::write_json(&lease_path(root), &f) {
        let _ = cfg.etcd.revoke(id);
        return Err(e.into());
    }
    Ok(id)
}

/// Revokes the host's lease (every key it holds goes) and forgets it.
pub fn release(root: &Path, cfg: &Config) -> std::result::Result<(), EtcdError> {
    let _held = lock(root).map_err(|e| EtcdError::Refused(e.to_string()))?;
    if let Some(id) = recorded(root, cfg) {
        cfg.etcd.revoke(id)?;
    }
    let _ = std::fs::remove_file(lease_path(root));
    Ok(())
}

/// Runs `f` with the host's lease; a lease found gone is replaced once, and `on_new` told.
pub fn with_lease<T>(
    root: &Path,
    cfg: &Config,
    mut f: impl FnMut(i64) -> std::result::Result<T, EtcdError>,
    on_new: impl FnOnce(),
) -> Result<T> {
    let id = lease(root, cfg)?;
    match f(id) {
        Err(EtcdError::LeaseNotFound) => {
            let id = renew(root, cfg, id)?;
            on_new();
            f(id).map_err(|e| cfg.err(e))
        }
        r => r.map_err(|e| cfg.err(e)),
    }
}
