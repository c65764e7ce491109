//! `Network`: one segment owned by a driver, stored in `<root>/networks/<id>.json`; its
//! endpoints and leases are files of their own (`records`). Names and subnets are checked
//! under the root's networks lock; endpoints and leases are changed under the network's own
//! lock.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::{Ipv4Network, Ipv6Network};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::driver::{self, Caps, DriverOpts};
use crate::error::{io, Error, Result};
use crate::ipam::{Ipam6Config, IpamConfig};

pub const DEFAULT_BRIDGE_NAME: &str = "bridge";

/// One container's endpoint on a network: its lease and the interfaces carrying it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The container it belongs to (also the name of its file), for drivers whose host-side
    /// state is keyed by the container (a CNI attachment).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    pub container_name: String,
    pub endpoint_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub mac: String,
    /// Name inside the sandbox (eth0, eth1, ...).
    #[serde(default)]
    pub interface: String,
    /// The endpoint's link on the host, if its driver makes one (the bridge's veth end).
    #[serde(default)]
    pub host_veth: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether the sandbox's default route goes through this network's gateway.
    #[serde(default)]
    pub default_route: bool,
    /// The container's `--dns` servers: where the embedded resolver relays its other queries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<std::net::IpAddr>,
    /// Host ports the driver maps to this endpoint itself (`Driver::maps_ports`): what `run -p`
    /// reserved for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::ports::PortBinding>,
    /// The subnets and gateways of the addresses a driver assigned (`Ipam::Driver`), as it
    /// gave them: they need not be the network's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned: Option<Assigned>,
}

/// Where a driver-assigned address lives (`EndpointRecord::assigned`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// The driver's name: `driver::driver(&net.driver)` is its implementation.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam6: Option<Ipam6Config>,
    /// `-o` as given (inspect's `Options`); the driver's reading of them is `driver_opts`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The default `bridge` network: `--ip`, aliases and connect-by-name are refused on it.
    #[serde(default)]
    pub default: bool,
    /// The driver's typed settings.
    #[serde(default)]
    pub driver_opts: DriverOpts,
}

/// A network's state file as read: today's fields, plus those an older rbox kept elsewhere
/// (the driver's settings at the top; every endpoint in this one file).
#[derive(Deserialize)]
struct Stored {
    #[serde(flatten)]
    net: Network,
    #[serde(flatten)]
    legacy: driver::Legacy,
    #[serde(default)]
    endpoints: crate::records::Endpoints,
}

impl Network {
    /// A network with a new id and no addresses, options or endpoints.
    pub fn new(name: &str, driver: &str, options: BTreeMap<String, String>) -> Network {
        Network {
            id: new_id(),
            name: name.to_string(),
            driver: driver.to_string(),
            created: now(),
            internal: false,
            attachable: false,
            enable_ipv6: false,
            ipam: None,
            ipam6: None,
            options,
            labels: BTreeMap::new(),
            default: false,
            driver_opts: DriverOpts::None,
        }
    }

    /// What the network's driver can do; `None` for a driver this rbox does not have.
    pub fn caps(&self) -> Option<Caps> {
        driver::driver(&self.driver).ok().map(|d| d.caps())
    }

    /// Docker's scope: "global" for a network shared through the cluster store.
    pub fn scope(&self) -> &'static str {
        driver::driver(&self.driver).map_or("local", |d| d.scope())
    }

    /// The default bridge and the exclusive singletons (host, none).
    pub fn is_predefined(&self) -> bool {
        self.default || self.caps().is_some_and(|c| c.exclusive)
    }
}

pub fn new_id() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The networks of one root.
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.join("networks")
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir().join(format!("{id}.json"))
    }

    /// Guards names, subnets and the set of networks.
    pub fn lock_all(&self) -> Result<statefile::Lock> {
        Ok(statefile::Lock::exclusive(
            &self.root.join("locks/networks.lock"),
        )?)
    }

    /// Guards one network's leases.
    pub fn lock(&self, id: &str) -> Result<statefile::Lock> {
        Ok(statefile::Lock::exclusive(
            &self.root.join(format!("locks/network-{id}.lock")),
        )?)
    }

    pub fn save(&self, net: &Network) -> Result<()> {
        // A network defined outside the root has a state file only while it has endpoints.
        if driver::is_external(net) && !self.has_endpoints(&net.id)? {
            self.remove_records(&net.id)?;
            return match fs::remove_file(self.file(&net.id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io(format!("removing network {}", net.id))(e))
                }
                _ => Ok(()),
            };
        }
        let dir = self.dir();
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(statefile::write_json(&self.file(&net.id), net)?)
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        self.remove_records(id)?;
        let _ = fs::remove_file(self.root.join(format!("locks/network-{id}.lock")));
        fs::remove_file(self.file(id)).map_err(io(format!("removing network {id}")))
    }

    /// The network `id`: its state file, else a network defined outside the root that has
    /// none yet (a CNI conflist of the config dir).
    pub fn load(&self, id: &str) -> Result<Network> {
        match read(&self.file(id))? {
            Some((n, _)) => Ok(n),
            None => driver::external(id).ok_or_else(|| Error::NetworkNotFound(id.to_string())),
        }
    }

    /// Every network, the predefined ones first, then by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        self.ensure_defaults()?;
        let mut nets = self.list_raw()?;
        nets.sort_by(|a, b| (!a.is_predefined(), &a.name).cmp(&(!b.is_predefined(), &b.name)));
        Ok(nets)
    }

    fn list_raw(&self) -> Result<Vec<Network>> {
        let mut nets = Vec::new();
        let entries = match fs::read_dir(self.dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                driver::merge_external(&mut nets, &|_| false);
                return Ok(nets);
            }
            Err(e) => return Err(io("reading networks")(e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some((n, _)) = read(&entry.path())? {
                nets.push(n);
            }
        }
        driver::merge_external(&mut nets, &|id| self.has_endpoints(id).unwrap_or(true));
        Ok(nets)
    }

    /// Finds a network by exact name, full id or unique id prefix, as Docker does; one not
    /// known here may be a global network of the cluster, which is then mirrored here.
    pub fn find(&self, key: &str) -> Result<Network> {
        match self.find_local(key) {
            Err(Error::NetworkNotFound(_)) => crate::cluster::fetch(self, key),
            r => r,
        }
    }

    /// `find` among this root's own records.
    pub fn find_local(&self, key: &str) -> Result<Network> {
        let nets = self.list()?;
        if let Some(n) = nets.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let mut by_prefix = nets.iter().filter(|n| n.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) if !key.is_empty() => Ok(n.clone()),
            (Some(_), Some(_)) => Err(Error::Conflict(format!("network {key} is ambiguous"))),
            _ => Err(Error::NetworkNotFound(key.to_string())),
        }
    }

    /// Creates the records of `bridge`, `host` and `none` on first use of a root, and gives
    /// the endpoints an older rbox kept in the network files files of their own. Called
    /// before any network's lock is taken (`Context::new`, `list`): it takes them itself.
    pub fn ensure_defaults(&self) -> Result<()> {
        let marker = self.dir().join(SPLIT_MARKER);
        if marker.exists() {
            return Ok(());
        }
        if self.make_defaults(&marker)? {
            // A resolver an older rbox started reads endpoints from the network files, now
            // empty: it would stop answering. Replaced by one of this binary (once the
            // networks lock is given back: the new one lists the networks).
            let _ = crate::dns::stop(&self.root);
            if let Err(e) = crate::dns::sync(&self.root) {
                tracing::warn!("restarting the DNS resolver after the state split: {e}");
            }
        }
        Ok(())
    }

    /// `ensure_defaults` under the networks lock; whether endpoints were moved.
    fn make_defaults(&self, marker: &Path) -> Result<bool> {
        let _lock = self.lock_all()?;
        if marker.exists() {
            return Ok(false);
        }
        let defaults = self.dir().join(".defaults");
        if !defaults.exists() {
            let existing = self.list_raw()?;
            let used: Vec<_> = existing
                .iter()
                .filter_map(|n| n.ipam.as_ref().map(|i| i.subnet))
                .collect();
            for n in driver::predefined(&used)? {
                if !existing.iter().any(|e| e.name == n.name) {
                    self.save(&n)?;
                }
            }
            statefile::write_atomic(&defaults, b"")?;
        }
        let moved = self.split_endpoints()?;
        statefile::write_atomic(marker, b"")?;
        Ok(moved)
    }

    /// Moves the endpoints of network files of an older rbox into their own files, one network
    /// at a time under its lock (the caller holds the networks lock); whether there were any.
    /// Rerun after a crash, it writes the same files again.
    fn split_endpoints(&self) -> Result<bool> {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return Ok(false);
        };
        let mut moved = false;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            else {
                continue;
            };
            let _lock = self.lock(id)?;
            let Some((net, eps)) = read(&entry.path())? else {
                continue;
            };
            if eps.is_empty() {
                continue;
            }
            for (cid, mut ep) in eps {
                if ep.container_id.is_empty() {
                    ep.container_id = cid;
                }
                self.put_endpoint(&net.id, &ep)?;
            }
            self.save(&net)?;
            moved = true;
        }
        Ok(moved)
    }
}

/// In `networks/`: the endpoints of this root's networks have files of their own.
const SPLIT_MARKER: &str = ".endpoint-files";

/// Reads a network's state file, moving what an older rbox stored elsewhere into place; with
/// the endpoints an older rbox kept in it (`Store::split_endpoints` gives them files).
fn read(path: &Path) -> Result<Option<(Network, crate::records::Endpoints)>> {
    Ok(statefile::read_json_opt::<Stored>(path)?.map(|s| {
        let mut net = s.net;
        s.legacy.migrate(&mut net);
        driver::refresh(&mut net);
        (net, s.endpoints)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::bridge;

    /// A user network and the predefined ones as session 2 wrote them: the bridge's settings
    /// at the top level, no `driver_opts`.
    const SESSION2: [(&str, &str); 3] = [
        (
            "aaaa",
            r#"{"id":"aaaa000000000000000000000000000000000000000000000000000000000000",
            "name":"web","driver":"bridge","created":"2026-11-30T10:00:00.000000000Z",
            "internal":false,"attachable":false,"enable_ipv6":true,
            "ipam":{"subnet":"10.180.30.0/24","gateway":"10.180.30.1"},
            "ipam6":{"subnet":"fd00:180:30::/64","gateway":"fd00:180:30::1"},
            "options":{"com.docker.network.bridge.name":"rbt-f30",
                       "com.docker.network.bridge.enable_icc":"false",
                       "com.docker.network.driver.mtu":"1400",
                       "com.docker.network.bridge.host_binding_ipv4":"127.0.0.1"},
            "labels":{"a":"b"},"bridge":"rbt-f30","mtu":1400,"icc":false,"masquerade":true,
            "default":false,
            "endpoints":{"c1":{"container_name":"one","endpoint_id":"e1","ip":"10.180.30.2",
                "ip6":"fd00:180:30::2","mac":"02:42:0a:b4:1e:02","interface":"eth0",
                "host_veth":"vrb0123456789ab","aliases":["x"],"default_route":true}}}"#,
        ),
        (
            "bbbb",
            r#"{"id":"bbbb000000000000000000000000000000000000000000000000000000000000",
            "name":"bridge","driver":"bridge","created":"2026-11-30T10:00:00.000000000Z",
            "internal":false,"attachable":false,"enable_ipv6":false,
            "ipam":{"subnet":"10.180.31.0/24","gateway":"10.180.31.1"},
            "options":{"com.docker.network.bridge.default_bridge":"true",
                       "com.docker.network.bridge.host_binding_ipv4":"0.0.0.0",
                       "com.docker.network.bridge.name":"rbt-f31"},
            "labels":{},"bridge":"rbt-f31","mtu":null,"icc":true,"masquerade":true,
            "default":true,"endpoints":{}}"#,
        ),
        (
            "cccc",
            r#"{"id":"cccc000000000000000000000000000000000000000000000000000000000000",
            "name":"host","driver":"host","created":"2026-11-30T10:00:00.000000000Z",
            "internal":false,"attachable":false,"enable_ipv6":false,"options":{},"labels":{},
            "bridge":"","mtu":null,"icc":true,"masquerade":true,"default":false,"endpoints":{}}"#,
        ),
    ];

    #[test]
    fn loads_session_2_network_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("networks");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".defaults"), "").unwrap();
        for (id, json) in SESSION2 {
            fs::write(dir.join(format!("{id}{}.json", "0".repeat(60))), json).unwrap();
        }
        let store = Store::new(root.path());
        let nets = store.list().unwrap();
        let by = |name: &str| nets.iter().find(|n| n.name == name).unwrap().clone();
        let web = by("web");
        assert_eq!(
            web.driver_opts,
            DriverOpts::Bridge(bridge::Options {
                name: "rbt-f30".into(),
                mtu: Some(1400),
                icc: false,
                masquerade: true,
                host_binding: Some("127.0.0.1".parse().unwrap()),
            })
        );
        let ep = &store.endpoint(&web.id, "c1").unwrap().unwrap();
        assert_eq!(ep.ip, Some("10.180.30.2".parse().unwrap()));
        assert_eq!(
            (ep.host_veth.as_str(), ep.default_route),
            ("vrb0123456789ab", true)
        );
        assert_eq!(web.labels["a"], "b");
        assert_eq!(
            web.ipam6.as_ref().unwrap().gateway.to_string(),
            "fd00:180:30::1"
        );
        let default = by("bridge");
        assert!(default.default && default.is_predefined());
        assert_eq!(
            default.driver_opts,
            DriverOpts::Bridge(bridge::Options {
                name: "rbt-f31".into(),
                mtu: None,
                icc: true,
                masquerade: true,
                host_binding: Some("0.0.0.0".parse().unwrap()),
            })
        );
        let host = by("host");
        assert_eq!(host.driver_opts, DriverOpts::None);
        assert!(host.is_predefined());
        // Predefined first, then by name; saved again, the new form reads back the same.
        let names: Vec<&str> = nets.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["bridge", "host", "web"]);
        // The endpoint has a file of its own and its address a lease; the network file lost it.
        assert_eq!(ep.container_id, "c1");
        let leased = store.leased(&web.id).unwrap();
        assert!(leased.v4.contains(&"10.180.30.2".parse().unwrap()));
        assert!(leased.v6.contains(&"fd00:180:30::2".parse().unwrap()));
        store.save(&web).unwrap();
        let again = store.load(&web.id).unwrap();
        assert_eq!(again.driver_opts, web.driver_opts);
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(format!("{}.json", web.id))).unwrap())
                .unwrap();
        for legacy in ["bridge", "mtu", "icc", "masquerade", "endpoints"] {
            assert!(v.get(legacy).is_none(), "{legacy} written at the top: {v}");
        }
        assert_eq!(v["driver_opts"]["bridge"]["name"], "rbt-f30");
    }
}
