//! The bridge driver's `-o` options (Docker's `com.docker.network.bridge.*` keys), parsed once
//! at `network create` into `Options`, and the root's default `bridge` network.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::driver::{unknown_option, DriverOpts};
use crate::error::{Error, Result};
use crate::network::{Network, DEFAULT_BRIDGE_NAME};

pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub const OPT_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub const OPT_DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";

/// What a bridge network is, beyond the generic fields of `Network`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// The Linux bridge carrying the network.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default = "yes")]
    pub icc: bool,
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// The host address of a `-p` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_binding: Option<IpAddr>,
}

fn yes() -> bool {
    true
}

fn parse_bool(v: &str, key: &str) -> Result<bool> {
    v.parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid value {v:?} for option {key}: expected true or false"
        ))
    })
}

impl Options {
    /// Reads `-o` of a new network with id `network_id`. Without a bridge name it gets
    /// "rbox-" and 10 hex digits of the id (Linux caps names at 15 bytes; Docker's "br-"
    /// leaves room for 12).
    pub fn parse(network_id: &str, options: &BTreeMap<String, String>) -> Result<Options> {
        let mut o = Options {
            name: format!("rbox-{}", &network_id[..10]),
            mtu: None,
            icc: true,
            masquerade: true,
            host_binding: None,
        };
        for (k, v) in options {
            match k.as_str() {
                OPT_BRIDGE_NAME => {
                    crate::netlink::check_ifname(v, "bridge name")?;
                    o.name = v.clone();
                }
                OPT_ICC => o.icc = parse_bool(v, k)?,
                OPT_MASQUERADE => o.masquerade = parse_bool(v, k)?,
                OPT_HOST_BINDING => {
                    let ip = v
                        .parse::<Ipv4Addr>()
                        .map_err(|_| Error::Invalid(format!("invalid host binding address {v}")))?;
                    o.host_binding = Some(ip.into());
                }
                OPT_MTU => {
                    let m: u32 = v
                        .parse()
                        .map_err(|_| Error::Invalid(format!("invalid MTU {v:?}")))?;
                    if !(68..=65535).contains(&m) {
                        return Err(Error::Invalid(format!(
                            "invalid MTU {m}: must be between 68 and 65535"
                        )));
                    }
                    o.mtu = Some(m);
                }
                _ => return Err(unknown_option("bridge", k)),
            }
        }
        Ok(o)
    }

    /// The options of a network written by session 2, which kept them at the top level.
    pub(crate) fn from_legacy(
        name: String,
        mtu: Option<u32>,
        icc: bool,
        masquerade: bool,
        options: &BTreeMap<String, String>,
    ) -> Options {
        Options {
            name,
            mtu,
            icc,
            masquerade,
            host_binding: options.get(OPT_HOST_BINDING).and_then(|s| s.parse().ok()),
        }
    }
}

/// The bridge driver's settings of `net`: every bridge network has them.
pub(crate) fn of(net: &Network) -> Result<&Options> {
    match &net.driver_opts {
        DriverOpts::Bridge(o) => Ok(o),
        _ => Err(Error::Invalid(format!(
            "network {} has no bridge settings (damaged state file?)",
            net.name
        ))),
    }
}

/// The root's default `bridge` network. Its Linux bridge and subnet come from
/// RBOX_DEFAULT_BRIDGE / RBOX_DEFAULT_SUBNET (like dockerd's --bridge/--bip) and are recorded
/// once; without a subnet it takes the first default pool that overlaps none of `used` and no
/// route of the host.
pub(crate) fn default_network(used: &[Ipv4Network]) -> Result<Network> {
    let bridge = std::env::var("RBOX_DEFAULT_BRIDGE").unwrap_or_else(|_| "rbox0".into());
    let subnet = match std::env::var("RBOX_DEFAULT_SUBNET") {
        Ok(s) => s
            .parse::<Ipv4Network>()
            .map_err(|e| Error::Invalid(format!("invalid RBOX_DEFAULT_SUBNET {s}: {e}")))?,
        Err(_) => {
            let mut taken = crate::netlink::host_routes()?;
            taken.extend_from_slice(used);
            crate::ipam::pick_subnet(&taken)?
        }
    };
    let mut options = BTreeMap::new();
    options.insert(OPT_DEFAULT_BRIDGE.to_string(), "true".to_string());
    options.insert(OPT_ICC.to_string(), "true".to_string());
    options.insert(OPT_MASQUERADE.to_string(), "true".to_string());
    options.insert(OPT_HOST_BINDING.to_string(), "0.0.0.0".to_string());
    options.insert(OPT_BRIDGE_NAME.to_string(), bridge.clone());
    let mut net = Network::new(DEFAULT_BRIDGE_NAME, super::Bridge::NAME, options);
    net.ipam = Some(crate::ipam::configure(subnet, &Default::default())?);
    net.default = true;
    net.driver_opts = DriverOpts::Bridge(Options {
        name: bridge,
        mtu: None,
        icc: true,
        masquerade: true,
        host_binding: Some(Ipv4Addr::UNSPECIFIED.into()),
    });
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_docker_keys_and_refuses_unknown_ones() {
        let id = "0123456789abcdef";
        let o = Options::parse(id, &BTreeMap::new()).unwrap();
        assert_eq!(o.name, "rbox-0123456789");
        assert!(o.icc && o.masquerade && o.mtu.is_none() && o.host_binding.is_none());
        let o = Options::parse(
            id,
            &opts(&[
                (OPT_BRIDGE_NAME, "br-x"),
                (OPT_ICC, "false"),
                (OPT_MASQUERADE, "false"),
                (OPT_MTU, "1400"),
                (OPT_HOST_BINDING, "127.0.0.1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            o,
            Options {
                name: "br-x".into(),
                mtu: Some(1400),
                icc: false,
                masquerade: false,
                host_binding: Some("127.0.0.1".parse().unwrap()),
            }
        );
        for (k, v, want) in [
            (
                "com.docker.network.bogus",
                "1",
                "unknown bridge driver option",
            ),
            (OPT_MTU, "abc", "invalid MTU"),
            (OPT_MTU, "40", "between 68 and 65535"),
            (OPT_ICC, "yes", "expected true or false"),
            (
                OPT_BRIDGE_NAME,
                "a-name-far-too-long",
                "invalid bridge name",
            ),
            (OPT_HOST_BINDING, "::1", "invalid host binding address"),
        ] {
            let e = Options::parse(id, &opts(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{k}={v}: {e}");
        }
    }
}
