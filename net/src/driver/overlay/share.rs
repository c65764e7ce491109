//! A host's share of an overlay network in the cluster store: one subnet of the network's
//! `--subnet` per host (`/rbox/subnet/<id>/<a.b.c.d>-<len>`), taken by compare-and-swap when
//! the host's first endpoint joins and attached to the host's lease. Inside its share a host
//! leases addresses locally, so no two hosts can ever hand out one address and a new container
//! costs no transaction.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::cluster::etcd::{Cmp, EtcdError, Op};
use crate::cluster::{self, registry, Config, Host};
use crate::error::{Error, Result};

/// One host's share, as stored (the value is compared byte for byte on release).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub subnet: Ipv4Network,
    /// The host's advertised address: its VTEP.
    pub host: Ipv4Addr,
    #[serde(default)]
    pub hostname: String,
}

impl Share {
    /// The bridge's address on the host holding the share: its first address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

pub fn key(id: &str, subnet: &Ipv4Network) -> String {
    format!(
        "{}{}-{}",
        registry::share_prefix(id),
        subnet.network(),
        subnet.prefix()
    )
}

/// Every host's share of network `id`, and the revision they were read at.
pub fn list(cfg: &Config, id: &str) -> Result<(Vec<Share>, i64)> {
    let r = cfg
        .etcd
        .range(&registry::share_prefix(id), true)
        .map_err(|e| cfg.err(e))?;
    Ok((
        r.kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect(),
        r.revision,
    ))
}

/// The shares of `subnet` with prefix `len`, in address order.
fn candidates(subnet: Ipv4Network, len: u8) -> impl Iterator<Item = Ipv4Network> {
    let base = u32::from(subnet.network());
    let count = 1u64 << (len - subnet.prefix());
    let step = 1u64 << (32 - len);
    (0..count)
        .filter_map(move |i| Ipv4Network::new(Ipv4Addr::from(base + (i * step) as u32), len).ok())
}

const RACE_RETRIES: usize = 10;

/// Takes a share of network `id` (`subnet`, shares of prefix `len`) for `host`: the one it
/// holds already (renewed onto its current lease), else `prefer` (the share it had last) if
/// free, else the first free one. Returns it with the revision that recorded it.
pub fn claim(
    root: &Path,
    cfg: &Config,
    id: &str,
    subnet: Ipv4Network,
    len: u8,
    host: &Host,
    prefer: Option<Ipv4Network>,
) -> Result<(Share, i64)> {
    let network = registry::network_key(id);
    for _ in 0..RACE_RETRIES {
        let (shares, _) = list(cfg, id)?;
        let mine = shares.iter().find(|s| s.host == host.ip).cloned();
        let share = match &mine {
            Some(s) => s.clone(),
            None => {
                let free = |n: &Ipv4Network| !shares.iter().any(|s| s.subnet == *n);
                let pick = prefer
                    .filter(|p| p.prefix() == len && subnet.contains(p.network()) && free(p))
                    .or_else(|| candidates(subnet, len).find(free))
                    .ok_or_else(|| {
                        Error::Conflict(format!(
                            "no free /{len} left in {subnet} for this host: every one is held by another host"
                        ))
                    })?;
                Share {
                    subnet: pick,
                    host: host.ip,
                    hostname: host.name.clone(),
                }
            }
        };
        let k = key(id, &share.subnet);
        let (value, old) = (share.bytes(), mine.as_ref().map(Share::bytes));
        let done = cluster::host::with_lease(
            root,
            cfg,
            |lease| {
                let guard = match &old {
                    Some(old) => Cmp::Value(&k, old),
                    None => Cmp::Absent(&k, false),
                };
                cfg.etcd.txn(
                    &[Cmp::Exists(&network), guard],
                    &[Op::Put(&k, &value, lease)],
                )
            },
            || {},
        )?;
        if let (true, rev) = done {
            return Ok((share, rev));
        }
        if registry::get(cfg, id)?.is_none() {
            return Err(Error::NetworkNotFound(id.to_string()));
        }
    }
    Err(Error::Cluster(format!(
        "cluster store {}: no share of {subnet} could be taken: too many concurrent changes",
        cfg.url
    )))
}

/// Puts `share` under this host's current lease again, if it is free or still this host's
/// (a host coming back after its lease expired); false when another host took it meanwhile.
pub fn reclaim(root: &Path, cfg: &Config, id: &str, share: &Share) -> Result<bool> {
    let k = key(id, &share.subnet);
    let v = share.bytes();
    cluster::host::with_lease(
        root,
        cfg,
        |lease| {
            let (ok, _) = cfg
                .etcd
                .txn(&[Cmp::Absent(&k, false)], &[Op::Put(&k, &v, lease)])?;
            if ok {
                return Ok(true);
            }
            cfg.etcd
                .txn(&[Cmp::Value(&k, &v)], &[Op::Put(&k, &v, lease)])
                .map(|(ok, _)| ok)
        },
        || {},
    )
}

/// A host's helper's account of what it has programmed (`/rbox/host/<ip>`, under the host's
/// lease): per network id, every share change up to that revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub name: String,
    pub nets: std::collections::BTreeMap<String, i64>,
}

/// How long a joining host waits for the other hosts to program it: their helpers answer in
/// milliseconds; one that is dead is waited for this long and then not waited for.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Returns once every other host holding a share of network `id` has programmed the share
/// recorded at `rev` (so its containers reach this host's as soon as `run` returns), or after
/// `ACK_WAIT`. Watches the hosts' records instead of polling them.
pub fn wait_for_peers(cfg: &Config, id: &str, me: Ipv4Addr, rev: i64) {
    let deadline = std::time::Instant::now() + ACK_WAIT;
    let Ok((shares, _)) = list(cfg, id) else {
        return;
    };
    let mut waiting: Vec<Ipv4Addr> = shares.iter().map(|s| s.host).filter(|h| *h != me).collect();
    waiting.sort();
    waiting.dedup();
    let seen = |kv: &crate::cluster::etcd::Kv, waiting: &mut Vec<Ipv4Addr>| {
        let ip: Option<Ipv4Addr> = kv.key.rsplit('/').next().and_then(|s| s.parse().ok());
        let s: Option<Seen> = serde_json::from_slice(&kv.value).ok();
        if let (Some(ip), Some(s)) = (ip, s) {
            if s.nets.get(id).is_some_and(|r| *r >= rev) {
                waiting.retain(|h| *h != ip);
            }
        }
    };
    let Ok(r) = cfg.etcd.range(HOSTS, true) else {
        return;
    };
    for kv in &r.kvs {
        seen(kv, &mut waiting);
    }
    if waiting.is_empty() {
        return;
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let Ok(mut w) = cfg.etcd.watch(HOSTS, r.revision + 1, Some(left)) else {
        return;
    };
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        match w.next_batch() {
            Ok((events, _)) => {
                for e in events.iter().filter(|e| !e.deleted) {
                    seen(&e.kv, &mut waiting);
                }
            }
            Err(_) => break,
        }
    }
    if !waiting.is_empty() {
        tracing::warn!(
            "hosts {waiting:?} did not confirm this host's share of {id} in time (their rbox \
             helper is not running?): they reach this host once it runs again"
        );
    }
}

const HOSTS: &str = "/rbox/host/";

/// Records what this host's helper has programmed.
pub fn record_seen(
    cfg: &Config,
    host: &Host,
    seen: &Seen,
    lease: i64,
) -> std::result::Result<(), EtcdError> {
    let v = serde_json::to_vec(seen).unwrap_or_default();
    cfg.etcd
        .put(&registry::host_key(host.ip), &v, lease)
        .map(|_| ())
}

/// Gives `share` back, if it is still this host's.
pub fn release(cfg: &Config, id: &str, share: &Share) -> std::result::Result<(), EtcdError> {
    let k = key(id, &share.subnet);
    let v = share.bytes();
    cfg.etcd
        .txn(&[Cmp::Value(&k, &v)], &[Op::Delete(&k)])
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_carved_in_order() {
        let s: Ipv4Network = "10.185.0.0/16".parse().unwrap();
        let c: Vec<_> = candidates(s, 24).take(3).map(|n| n.to_string()).collect();
        assert_eq!(c, ["10.185.0.0/24", "10.185.1.0/24", "10.185.2.0/24"]);
        assert_eq!(candidates(s, 24).count(), 256);
        let small: Ipv4Network = "10.185.4.0/22".parse().unwrap();
        let c: Vec<_> = candidates(small, 26).map(|n| n.to_string()).collect();
        assert_eq!(c.len(), 16);
        assert_eq!(c[15], "10.185.7.192/26");
        let sh = Share {
            subnet: "10.185.3.0/24".parse().unwrap(),
            host: "10.186.0.11".parse().unwrap(),
            hostname: "h".into(),
        };
        assert_eq!(sh.gateway().to_string(), "10.185.3.1");
        assert_eq!(key("n1", &sh.subnet), "/rbox/subnet/n1/10.185.3.0-24");
    }
}
