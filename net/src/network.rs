//! `Network`: one segment owned by a driver, stored with its IPAM leases in
//! `<root>/networks/<id>.json`. Names and subnets are checked under the root's networks lock;
//! leases are changed under the network's own lock.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{io, Error, Result};
use crate::firewall::FwNetwork;
use crate::ipam::{Ipam6Config, IpamConfig};

pub const DEFAULT_BRIDGE_NAME: &str = "bridge";
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub const OPT_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub const OPT_DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";

/// One container's endpoint on a network: its lease and the interfaces carrying it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRecord {
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
    /// Host end of the veth.
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
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
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Linux bridge carrying the network (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default = "yes")]
    pub icc: bool,
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// The default `bridge` network: `--ip`, aliases and connect-by-name are refused on it.
    #[serde(default)]
    pub default: bool,
    /// Endpoints by container id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

fn yes() -> bool {
    true
}

impl Network {
    pub fn is_predefined(&self) -> bool {
        self.default || self.driver == "host" || self.driver == "null"
    }

    pub fn firewall(&self) -> Option<FwNetwork> {
        self.fw(self.ipam.as_ref()?.subnet.into())
    }

    pub fn firewall6(&self) -> Option<FwNetwork> {
        self.fw(self.ipam6.as_ref()?.subnet.into())
    }

    fn fw(&self, subnet: ipnetwork::IpNetwork) -> Option<FwNetwork> {
        (self.driver == "bridge").then(|| FwNetwork {
            short_id: self.id[..12].to_string(),
            bridge: self.bridge.clone(),
            subnet,
            icc: self.icc,
            masquerade: self.masquerade,
            internal: self.internal,
        })
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
        let dir = self.dir();
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(statefile::write_json(&self.file(&net.id), net)?)
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        let _ = fs::remove_file(self.root.join(format!("locks/network-{id}.lock")));
        fs::remove_file(self.file(id)).map_err(io(format!("removing network {id}")))
    }

    pub fn load(&self, id: &str) -> Result<Network> {
        statefile::read_json_opt(&self.file(id))?
            .ok_or_else(|| Error::NetworkNotFound(id.to_string()))
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(nets),
            Err(e) => return Err(io("reading networks")(e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(n) = statefile::read_json_opt::<Network>(&entry.path())? {
                nets.push(n);
            }
        }
        Ok(nets)
    }

    /// Finds a network by exact name, full id or unique id prefix, as Docker does.
    pub fn find(&self, key: &str) -> Result<Network> {
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

    /// Creates the records of `bridge`, `host` and `none` on first use of a root. The default
    /// bridge's Linux bridge and subnet come from RBOX_DEFAULT_BRIDGE / RBOX_DEFAULT_SUBNET
    /// (like dockerd's --bridge/--bip) and are recorded here once.
    pub fn ensure_defaults(&self) -> Result<()> {
        let marker = self.dir().join(".defaults");
        if marker.exists() {
            return Ok(());
        }
        let _lock = self.lock_all()?;
        if marker.exists() {
            return Ok(());
        }
        let existing = self.list_raw()?;
        let bridge = std::env::var("RBOX_DEFAULT_BRIDGE").unwrap_or_else(|_| "rbox0".into());
        let subnet = match std::env::var("RBOX_DEFAULT_SUBNET") {
            Ok(s) => s
                .parse::<Ipv4Network>()
                .map_err(|e| Error::Invalid(format!("invalid RBOX_DEFAULT_SUBNET {s}: {e}")))?,
            Err(_) => {
                let mut used = crate::driver::bridge::host_routes()?;
                used.extend(
                    existing
                        .iter()
                        .filter_map(|n| n.ipam.as_ref().map(|i| i.subnet)),
                );
                crate::ipam::pick_subnet(&used)?
            }
        };
        let ipam = crate::ipam::configure(subnet, &Default::default())?;
        let mut options = BTreeMap::new();
        options.insert(OPT_DEFAULT_BRIDGE.to_string(), "true".to_string());
        options.insert(OPT_ICC.to_string(), "true".to_string());
        options.insert(OPT_MASQUERADE.to_string(), "true".to_string());
        options.insert(OPT_HOST_BINDING.to_string(), "0.0.0.0".to_string());
        options.insert(OPT_BRIDGE_NAME.to_string(), bridge.clone());
        let base = |name: &str, driver: &str| Network {
            id: new_id(),
            name: name.to_string(),
            driver: driver.to_string(),
            created: now(),
            internal: false,
            attachable: false,
            enable_ipv6: false,
            ipam: None,
            ipam6: None,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            bridge: String::new(),
            mtu: None,
            icc: true,
            masquerade: true,
            default: false,
            endpoints: BTreeMap::new(),
        };
        let default = Network {
            ipam: Some(ipam),
            options,
            bridge,
            default: true,
            ..base(DEFAULT_BRIDGE_NAME, "bridge")
        };
        for n in [default, base("host", "host"), base("none", "null")] {
            if !existing.iter().any(|e| e.name == n.name) {
                self.save(&n)?;
            }
        }
        statefile::write_atomic(&marker, b"")?;
        Ok(())
    }
}
