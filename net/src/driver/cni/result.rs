//! A CNI result as rbox reads it (spec 0.3.0 to 1.x share the shape): the container's
//! interface, its MAC and the first address of each family with its subnet and gateway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<Ip>,
}

#[derive(Debug, Deserialize)]
struct Interface {
    name: String,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Debug, Deserialize)]
struct Ip {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

/// What the container got on one interface.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assigned {
    pub mac: String,
    pub v4: Option<(Ipv4Network, Option<Ipv4Addr>)>,
    pub v6: Option<(Ipv6Network, Option<Ipv6Addr>)>,
}

impl Assigned {
    pub fn ip4(&self) -> Option<Ipv4Addr> {
        self.v4.map(|(n, _)| n.ip())
    }

    pub fn ip6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|(n, _)| n.ip())
    }
}

/// Reads what the final plugin returned for the sandbox interface `ifname`: addresses that
/// name no interface count as its own (IPAM-only and older plugins leave the index out).
pub fn read(result: &Value, ifname: &str) -> Result<Assigned, String> {
    let raw: Raw =
        serde_json::from_value(result.clone()).map_err(|e| format!("invalid result: {e}"))?;
    let index = raw
        .interfaces
        .iter()
        .position(|i| i.name == ifname && !i.sandbox.is_empty());
    let mut out = Assigned {
        mac: index
            .map(|i| raw.interfaces[i].mac.to_ascii_lowercase())
            .unwrap_or_default(),
        ..Default::default()
    };
    for ip in &raw.ips {
        if ip.interface.is_some() && ip.interface != index {
            continue;
        }
        let addr: IpNetwork = ip
            .address
            .parse()
            .map_err(|_| format!("invalid address {:?} in result", ip.address))?;
        let gateway: Option<IpAddr> = ip.gateway.as_deref().and_then(|g| g.parse().ok());
        match addr {
            IpNetwork::V4(a) if out.v4.is_none() => {
                let g = match gateway {
                    Some(IpAddr::V4(g)) => Some(g),
                    _ => None,
                };
                out.v4 = Some((a, g));
            }
            IpNetwork::V6(a) if out.v6.is_none() => {
                let g = match gateway {
                    Some(IpAddr::V6(g)) => Some(g),
                    _ => None,
                };
                out.v6 = Some((a, g));
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sandbox_interface_and_its_first_addresses() {
        let r = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                           {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                           {"name": "eth0", "mac": "02:42:0A:00:00:05", "sandbox": "/x"}],
            "ips": [{"interface": 0, "address": "10.187.0.1/24"},
                    {"interface": 2, "address": "10.187.0.5/24", "gateway": "10.187.0.1"},
                    {"interface": 2, "address": "10.187.0.6/24"},
                    {"interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"}]});
        let a = read(&r, "eth0").unwrap();
        assert_eq!(a.mac, "02:42:0a:00:00:05");
        assert_eq!(a.ip4(), Some("10.187.0.5".parse().unwrap()));
        assert_eq!(a.v4.unwrap().0.prefix(), 24);
        assert_eq!(a.v4.unwrap().1, Some("10.187.0.1".parse().unwrap()));
        assert_eq!(a.ip6(), Some("fd00::5".parse().unwrap()));
        // 0.3.x with "version" and no interface index.
        let old =
            json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.187.9.2/16"}]});
        let a = read(&old, "eth0").unwrap();
        assert_eq!(
            (a.ip4(), a.mac.as_str()),
            (Some("10.187.9.2".parse().unwrap()), "")
        );
        assert!(read(&json!({"ips": [{"address": "nonsense"}]}), "eth0").is_err());
        assert_eq!(read(&json!({}), "eth0").unwrap(), Assigned::default());
    }
}
