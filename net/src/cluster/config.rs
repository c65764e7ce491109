//! Where the cluster store is and how this host appears in it: `--cluster-store`,
//! `--cluster-advertise` (or RBOX_CLUSTER_STORE / RBOX_CLUSTER_ADVERTISE), else the same keys in
//! `<root>/config.json`, which also holds the host lease's TTL (`cluster-lease-ttl`, or
//! RBOX_CLUSTER_LEASE_TTL):
//!
//! ```json
//! {"cluster-store": "etcd://10.0.0.10:2379", "cluster-advertise": "eth1", "cluster-lease-ttl": 86400}
//! ```
//!
//! The keys are dockerd's `daemon.json` names for its old cluster flags.

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use super::etcd::Etcd;
use crate::error::{Error, Result};

/// A host whose keepalives stop (dead, or its helper killed and no rbox command run since) keeps
/// its subnets and names for this long. See ARCHITECTURE.md for the trade-off.
pub const DEFAULT_LEASE_TTL: u64 = 24 * 3600;
/// Below this the keepalive traffic grows and a short pause of the helper loses the leases.
const MIN_LEASE_TTL: u64 = 5;

/// The cluster settings of this process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// As given, for messages.
    pub url: String,
    pub etcd: Etcd,
    /// An IPv4 address of this host or the name of its interface; `None`: the address this host
    /// reaches the store from.
    pub advertise: Option<String>,
    /// Seconds a host's leases outlive its last keepalive.
    pub lease_ttl: u64,
}

/// `<root>/config.json` as far as the cluster goes.
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default, rename = "cluster-store")]
    store: Option<String>,
    #[serde(default, rename = "cluster-advertise")]
    advertise: Option<String>,
    #[serde(default, rename = "cluster-lease-ttl")]
    lease_ttl: Option<u64>,
}

pub fn file_path(root: &Path) -> std::path::PathBuf {
    root.join("config.json")
}

fn read_file(root: &Path) -> Result<File> {
    let path = file_path(root);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::Invalid(format!("invalid {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(crate::error::io(format!("reading {}", path.display()))(e)),
    }
}

/// Parses `etcd://host:port[,host:port...]` (each part may carry `etcd://` or `http://`; the
/// port defaults to 2379).
pub fn parse_store(url: &str) -> Result<Etcd> {
    let mut endpoints = Vec::new();
    for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let rest = part
            .strip_prefix("etcd://")
            .or_else(|| part.strip_prefix("http://"))
            .or_else(|| (!part.contains("://")).then_some(part))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid cluster store {url:?}: only etcd://HOST:PORT is supported"
                ))
            })?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(Error::Invalid(format!(
                "invalid cluster store {url:?}: expected etcd://HOST:PORT"
            )));
        }
        // "[v6]:port", "[v6]", "host:port", "host".
        let (name, port) = match host.rsplit_once(':') {
            Some((h, p)) if !host.starts_with('[') || h.ends_with(']') => (h, Some(p)),
            _ => (host, None),
        };
        if let Some(p) = port {
            p.parse::<u16>().map_err(|_| {
                Error::Invalid(format!("invalid cluster store {url:?}: bad port {p:?}"))
            })?;
        }
        let with_port = format!("{name}:{}", port.unwrap_or("2379"));
        endpoints.push(with_port);
    }
    if endpoints.is_empty() {
        return Err(Error::Invalid(format!(
            "invalid cluster store {url:?}: expected etcd://HOST:PORT"
        )));
    }
    Ok(Etcd::new(endpoints))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The settings from `store`/`advertise` (flags or their env), else `<root>/config.json`.
pub fn resolve(
    root: &Path,
    store: Option<&str>,
    advertise: Option<&str>,
) -> Result<Option<Config>> {
    let file = read_file(root)?;
    let Some(url) = store
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .or(file.store)
    else {
        return Ok(None);
    };
    let etcd = parse_store(&url)?;
    let lease_ttl = match env("RBOX_CLUSTER_LEASE_TTL") {
        Some(v) => v.parse().map_err(|_| {
            Error::Invalid(format!(
                "invalid RBOX_CLUSTER_LEASE_TTL {v:?}: expected seconds"
            ))
        })?,
        None => file.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
    };
    if lease_ttl < MIN_LEASE_TTL {
        return Err(Error::Invalid(format!(
            "invalid cluster lease TTL {lease_ttl}: at least {MIN_LEASE_TTL} seconds"
        )));
    }
    Ok(Some(Config {
        url,
        etcd,
        advertise: advertise
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .or(file.advertise),
        lease_ttl,
    }))
}

static CURRENT: OnceLock<Option<Config>> = OnceLock::new();

/// Fixes the process's settings (the CLI, from its flags); the first call holds.
pub fn select(
    root: &Path,
    store: Option<&str>,
    advertise: Option<&str>,
) -> Result<Option<&'static Config>> {
    let cfg = resolve(root, store, advertise)?;
    Ok(CURRENT.get_or_init(|| cfg).as_ref())
}

/// The process's settings: those `select` fixed, else the environment's and the root's file.
/// An unreadable setting reads as none here; `select` reports it.
pub fn current(root: &Path) -> Option<&'static Config> {
    CURRENT
        .get_or_init(|| {
            resolve(
                root,
                env("RBOX_CLUSTER_STORE").as_deref(),
                env("RBOX_CLUSTER_ADVERTISE").as_deref(),
            )
            .unwrap_or(None)
        })
        .as_ref()
}

/// The settings, or the one line a global-scope operation without a store gets.
pub fn required(root: &Path) -> Result<&'static Config> {
    current(root).ok_or_else(|| {
        Error::Invalid(
            "overlay networks need a cluster store: set --cluster-store etcd://HOST:PORT \
             (RBOX_CLUSTER_STORE, or \"cluster-store\" in the root's config.json)"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            parse_store("etcd://10.0.0.10:2379").unwrap().endpoints,
            ["10.0.0.10:2379"]
        );
        assert_eq!(
            parse_store("etcd://a,http://b:23790/, c:1")
                .unwrap()
                .endpoints,
            ["a:2379", "b:23790", "c:1"]
        );
        for bad in [
            "consul://x:8500",
            "https://x:2379",
            "etcd://",
            "etcd://x:port",
            "etcd://x/p",
        ] {
            assert!(parse_store(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_ttl_is_checked() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(resolve(root.path(), None, None).unwrap(), None);
        std::fs::write(
            file_path(root.path()),
            r#"{"cluster-store":"etcd://f:1","cluster-advertise":"eth9","cluster-lease-ttl":60,"other":1}"#,
        )
        .unwrap();
        let c = resolve(root.path(), None, None).unwrap().unwrap();
        assert_eq!(
            (
                c.etcd.endpoints[0].as_str(),
                c.advertise.as_deref(),
                c.lease_ttl
            ),
            ("f:1", Some("eth9"), 60)
        );
        let c = resolve(root.path(), Some("etcd://g:2"), Some("10.1.1.1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.etcd.endpoints[0].as_str(), c.advertise.as_deref()),
            ("g:2", Some("10.1.1.1"))
        );
        std::fs::write(
            file_path(root.path()),
            r#"{"cluster-store":"etcd://f:1","cluster-lease-ttl":1}"#,
        )
        .unwrap();
        assert!(resolve(root.path(), None, None).is_err());
        std::fs::write(file_path(root.path()), "{nope").unwrap();
        assert!(resolve(root.path(), None, None)
            .unwrap_err()
            .to_string()
            .contains("config.json"));
    }
}
