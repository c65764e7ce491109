//! `<root>/ports/<container id>.json`: what a container publishes, written before its rules
//! exist, so that the rules can always be regenerated (`network reload`) or removed (crash
//! repair) from it alone.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::spec::Proto;
use crate::error::{io, Result};
use crate::firewall::{FwPort, FwPorts, FwTarget};
use crate::proxy;

/// One published port: Docker's `{HostIp, HostPort}` under `"<port>/<proto>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub network_id: String,
    /// The host interface the container is reached through (its bridge).
    #[serde(alias = "bridge")]
    pub interface: String,
    pub subnet: IpNetwork,
    pub container_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<IpNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_ip6: Option<IpAddr>,
    pub bindings: Vec<PortBinding>,
    /// The proxy of the bindings the kernel cannot forward (older records: one per binding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<proxy::Process>,
    /// The network's driver maps the ports itself (`Driver::maps_ports`): rbox's firewall has
    /// no rules for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_driver: bool,
}

impl Record {
    /// Whether the kernel forwards (DNATs) `b`: IPv4 always; IPv6 when the container has an
    /// IPv6 address, except ::1 (see `proxy`).
    pub fn forwarded(&self, b: &PortBinding) -> bool {
        match b.host_ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(ip) => self.container_ip6.is_some() && !ip.is_loopback(),
        }
    }

    /// What the firewall's rules of the container's kernel-forwarded ports depend on.
    pub fn firewall(&self, container_id: &str) -> FwPorts {
        FwPorts {
            short_id: container_id.chars().take(12).collect(),
            interface: self.interface.clone(),
            v4: Some(FwTarget {
                subnet: self.subnet,
                ip: self.container_ip,
            }),
            v6: self
                .subnet6
                .zip(self.container_ip6)
                .map(|(subnet, ip)| FwTarget { subnet, ip }),
            ports: self
                .bindings
                .iter()
                .filter(|b| self.forwarded(b))
                .map(|b| FwPort {
                    host_ip: b.host_ip,
                    host_port: b.host_port,
                    container_port: b.container_port,
                    proto: b.proto,
                })
                .collect(),
        }
    }
}

fn dir(root: &Path) -> PathBuf {
    root.join("ports")
}

fn file(root: &Path, container_id: &str) -> PathBuf {
    dir(root).join(format!("{container_id}.json"))
}

pub(crate) fn read(root: &Path, container_id: &str) -> Result<Option<Record>> {
    Ok(statefile::read_json_opt(&file(root, container_id))?)
}

pub(crate) fn write(root: &Path, container_id: &str, rec: &Record) -> Result<()> {
    let d = dir(root);
    fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
    Ok(statefile::write_json(&file(root, container_id), rec)?)
}

/// Removes the record; succeeds when it is already gone.
pub(crate) fn remove(root: &Path, container_id: &str) -> Result<()> {
    let path = file(root, container_id);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Containers with a ports record.
pub(crate) fn recorded(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir(root)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json")
                .filter(|n| !n.starts_with('.'))
                .map(str::to_string)
        })
        .collect()
}
