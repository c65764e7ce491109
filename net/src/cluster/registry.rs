//! Global-scope networks in the cluster store: their definitions (names unique and subnets
//! disjoint cluster-wide, by compare-and-swap) and the endpoints every host has on them, which
//! give names across hosts and `network inspect`'s Containers. Key layout (all under `/rbox/`):
//!
//! ```text
//! /rbox/network/<id>               the network as created (rbox's Network JSON, no endpoints)
//! /rbox/name/<name>                <id>: the name is taken
//! /rbox/vni/<vni>                  <id>: claims of the driver (see `create`'s `claim`)
//! /rbox/subnet/<id>/<a.b.c.d-len>  a host's share of the network (driver::overlay), host lease
//! /rbox/endpoint/<id>/<endpoint>   an endpoint: container, aliases, address, host; host lease
//! /rbox/host/<ip>                  a host with overlay endpoints: name, revision seen; host lease
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::config::Config;
use super::etcd::{Cmp, EtcdError, Op};
use crate::error::{Error, Result};
use crate::ipam;
use crate::network::Network;

pub const PREFIX: &str = "/rbox/";
const NETWORKS: &str = "/rbox/network/";

pub fn network_key(id: &str) -> String {
    format!("{NETWORKS}{id}")
}

fn name_key(name: &str) -> String {
    format!("/rbox/name/{name}")
}

pub fn endpoint_prefix(id: &str) -> String {
    format!("/rbox/endpoint/{id}/")
}

pub fn endpoint_key(id: &str, endpoint: &str) -> String {
    format!("/rbox/endpoint/{id}/{endpoint}")
}

pub fn share_prefix(id: &str) -> String {
    format!("/rbox/subnet/{id}/")
}

pub fn host_key(ip: Ipv4Addr) -> String {
    format!("/rbox/host/{ip}")
}

/// One endpoint as every host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointEntry {
    pub container_id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub endpoint_id: String,
    /// The address the host advertises (its VTEP).
    pub host: Ipv4Addr,
    #[serde(default)]
    pub hostname: String,
}

/// How many times a compare-and-swap is retried when other hosts change the same keys.
const RACE_RETRIES: usize = 10;

impl Config {
    /// The one line an unreachable or refusing store gives.
    pub fn err(&self, e: EtcdError) -> Error {
        match e {
            EtcdError::Unreachable(m) => {
                Error::Cluster(format!("cluster store {} unreachable ({m})", self.url))
            }
            e => Error::Cluster(format!("cluster store {}: {e}", self.url)),
        }
    }
}

fn decode(kv: &super::etcd::Kv) -> Option<Network> {
    serde_json::from_slice(&kv.value).ok()
}

/// Every global network, and the revision they were read at.
pub fn list(cfg: &Config) -> Result<(Vec<Network>, i64)> {
    let r = cfg.etcd.range(NETWORKS, true).map_err(|e| cfg.err(e))?;
    Ok((r.kvs.iter().filter_map(decode).collect(), r.revision))
}

pub fn get(cfg: &Config, id: &str) -> Result<Option<Network>> {
    let kv = cfg.etcd.get(&network_key(id)).map_err(|e| cfg.err(e))?;
    Ok(kv.as_ref().and_then(decode))
}

fn overlapping<'a>(net: &Network, others: &'a [Network]) -> Option<&'a Network> {
    others.iter().find(|o| {
        let v4 = matches!((&net.ipam, &o.ipam), (Some(a), Some(b)) if ipam::overlaps(&a.subnet, &b.subnet));
        let v6 = matches!((&net.ipam6, &o.ipam6), (Some(a), Some(b))
            if a.subnet.contains(b.subnet.network()) || b.subnet.contains(a.subnet.network()));
        v4 || v6
    })
}

/// Records `net` cluster-wide: its name must be free and its subnets disjoint from every other
/// global network's. `claim` sees the others, may set driver fields of `net`, and names keys
/// that must be free too (an overlay's VNI); all are taken in one transaction, retried when
/// another host changed the networks meanwhile.
pub fn create(
    cfg: &Config,
    net: &mut Network,
    mut claim: impl FnMut(&mut Network, &[Network]) -> Result<Vec<String>>,
) -> Result<()> {
    for _ in 0..RACE_RETRIES {
        let (others, rev) = list(cfg)?;
        if others.iter().any(|o| o.name == net.name) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                net.name
            )));
        }
        if let Some(o) = overlapping(net, &others) {
            return Err(Error::Conflict(format!(
                "invalid pool request: Pool overlaps with other one on this address space (network {})",
                o.name
            )));
        }
        let claims = claim(net, &others)?;
        let def = serde_json::to_vec(net).map_err(|e| Error::Invalid(e.to_string()))?;
        let (nk, namek) = (network_key(&net.id), name_key(&net.name));
        let mut cmps = vec![
            Cmp::Absent(&namek, false),
            Cmp::Absent(&nk, false),
            Cmp::UnchangedSince(NETWORKS, rev),
        ];
        cmps.extend(claims.iter().map(|c| Cmp::Absent(c, false)));
        let mut ops = vec![Op::Put(&nk, &def, 0), Op::Put(&namek, net.id.as_bytes(), 0)];
        ops.extend(claims.iter().map(|c| Op::Put(c, net.id.as_bytes(), 0)));
        let (done, _) = cfg.etcd.txn(&cmps, &ops).map_err(|e| cfg.err(e))?;
        if done {
            return Ok(());
        }
    }
    Err(Error::Cluster(format!(
        "cluster store {}: network {} could not be recorded: too many concurrent changes",
        cfg.url, net.name
    )))
}

/// Removes `net` cluster-wide with its `claims`, only while no host has an endpoint or a share
/// of it.
pub fn remove(cfg: &Config, net: &Network, claims: &[String]) -> Result<()> {
    let (nk, namek) = (network_key(&net.id), name_key(&net.name));
    let (eps, shares) = (endpoint_prefix(&net.id), share_prefix(&net.id));
    let cmps = [
        Cmp::Exists(&nk),
        Cmp::Absent(&eps, true),
        Cmp::Absent(&shares, true),
    ];
    let mut ops = vec![Op::Delete(&nk), Op::Delete(&namek)];
    ops.extend(claims.iter().map(|c| Op::Delete(c)));
    let (done, _) = cfg.etcd.txn(&cmps, &ops).map_err(|e| cfg.err(e))?;
    if done {
        return Ok(());
    }
    if get(cfg, &net.id)?.is_none() {
        // Removed from another host meanwhile: what was asked is done.
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "error while removing network: network {} id {} has active endpoints",
        net.name, net.id
    )))
}

/// Every host's endpoints on network `id`.
pub fn endpoints(cfg: &Config, id: &str) -> Result<Vec<EndpointEntry>> {
    let r = cfg
        .etcd
        .range(&endpoint_prefix(id), true)
        .map_err(|e| cfg.err(e))?;
    Ok(r.kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

pub fn put_endpoint(
    cfg: &Config,
    id: &str,
    e: &EndpointEntry,
    lease: i64,
) -> std::result::Result<(), EtcdError> {
    let v = serde_json::to_vec(e).unwrap_or_default();
    cfg.etcd
        .put(&endpoint_key(id, &e.endpoint_id), &v, lease)
        .map(|_| ())
}

pub fn delete_endpoint(cfg: &Config, id: &str, endpoint: &str) -> Result<()> {
    cfg.etcd
        .delete(&endpoint_key(id, endpoint), false)
        .map_err(|e| cfg.err(e))
}
