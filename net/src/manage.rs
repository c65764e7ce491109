//! Network lifecycle for `rbox network create/rm/prune/reload/inspect`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::Ipv4Network;
use serde_json::{json, Value};

use crate::driver::{self, bridge};
use crate::error::{Error, Errors, Result};
use crate::firewall;
use crate::ipam::{self, IpamRequest};
use crate::network::*;

/// `network create`'s flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    /// The IPv6 `--subnet` (with `--ipv6`; a random ULA /64 when absent).
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// `name=IP` pairs.
    pub aux_addresses: Vec<String>,
    pub internal: bool,
    pub ipv6: bool,
    pub attachable: bool,
    pub ipam_driver: Option<String>,
    /// `k=v` labels.
    pub labels: Vec<String>,
    /// `-o k=v` driver options.
    pub options: Vec<String>,
}

fn kv(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Error::Invalid(format!("invalid {what} {s:?}: expected key=value")))
}

fn parse_net(s: &str, what: &str) -> Result<Ipv4Network> {
    s.parse()
        .map_err(|_| Error::Invalid(format!("invalid {what} {s}: invalid CIDR address")))
}

fn parse_bool(v: &str, key: &str) -> Result<bool> {
    v.parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid value {v:?} for option {key}: expected true or false"
        ))
    })
}

/// Linux interface names: 1-15 bytes, no '/', ':' or whitespace.
fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(Error::Invalid(format!(
            "invalid bridge name {name:?}: 1 to 15 characters, no '/', ':' or spaces"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

/// Validates everything, then makes the bridge, the rules and the state file; rolls all of it
/// back on failure. Returns the new network.
pub fn create(root: &Path, opts: &CreateOptions) -> Result<Network> {
    check_name(&opts.name)?;
    let driver_name = opts.driver.clone().unwrap_or_else(|| "bridge".into());
    if driver_name != "bridge" {
        driver::driver(&driver_name)?;
        return Err(Error::Invalid(format!(
            "only one instance of \"{driver_name}\" network is allowed"
        )));
    }
    if let Some(d) = &opts.ipam_driver {
        if d != "default" {
            return Err(Error::Invalid(format!(
                "could not find IPAM driver {d}: plugin not found"
            )));
        }
    }
    if !opts.ipv6 && (opts.subnet6.is_some() || opts.gateway6.is_some()) {
        return Err(Error::Invalid(
            "an IPv6 subnet or gateway needs --ipv6".into(),
        ));
    }
    let subnet6 = opts
        .subnet6
        .as_deref()
        .map(|s| {
            s.parse::<ipnetwork::Ipv6Network>()
                .map_err(|_| Error::Invalid(format!("invalid subnet {s}: invalid CIDR address")))
        })
        .transpose()?;
    let gateway6 = opts
        .gateway6
        .as_deref()
        .map(|g| {
            g.parse()
                .map_err(|_| Error::Invalid(format!("invalid gateway address {g}")))
        })
        .transpose()?;
    let mut options = BTreeMap::new();
    let (mut bridge_name, mut icc, mut masq, mut mtu) = (None, true, true, None);
    for o in &opts.options {
        let (k, v) = kv(o, "option")?;
        match k.as_str() {
            OPT_BRIDGE_NAME => {
                check_ifname(&v)?;
                bridge_name = Some(v.clone());
            }
            OPT_ICC => icc = parse_bool(&v, &k)?,
            OPT_MASQUERADE => masq = parse_bool(&v, &k)?,
            OPT_HOST_BINDING => {
                v.parse::<Ipv4Addr>()
                    .map_err(|_| Error::Invalid(format!("invalid host binding address {v}")))?;
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
                mtu = Some(m);
            }
            _ => return Err(Error::Invalid(format!("unknown bridge driver option {k}"))),
        }
        options.insert(k, v);
    }
    let mut labels = BTreeMap::new();
    for l in &opts.labels {
        let (k, v) = kv(l, "label")?;
        labels.insert(k, v);
    }
    let gateway = opts
        .gateway
        .as_deref()
        .map(|g| {
            g.parse()
                .map_err(|_| Error::Invalid(format!("invalid gateway address {g}")))
        })
        .transpose()?;
    let ip_range = opts
        .ip_range
        .as_deref()
        .map(|r| parse_net(r, "ip-range"))
        .transpose()?;
    let mut aux = BTreeMap::new();
    for a in &opts.aux_addresses {
        let (k, v) = kv(a, "aux-address")?;
        let ip = v
            .parse()
            .map_err(|_| Error::Invalid(format!("invalid aux-address {a}")))?;
        aux.insert(k, ip);
    }
    let req = IpamRequest {
        subnet: None,
        gateway,
        ip_range,
        aux,
    };
    let subnet = opts
        .subnet
        .as_deref()
        .map(|s| parse_net(s, "subnet"))
        .transpose()?;
    if subnet.is_none() && (req.gateway.is_some() || req.ip_range.is_some() || !req.aux.is_empty())
    {
        return Err(Error::Invalid(
            "--gateway, --ip-range and --aux-address need --subnet".into(),
        ));
    }

    let store = Store::new(root);
    store.ensure_defaults()?;
    let _lock = store.lock_all()?;
    let existing = store.list()?;
    if existing.iter().any(|n| n.name == opts.name) {
        return Err(Error::Conflict(format!(
            "network with name {} already exists",
            opts.name
        )));
    }
    let used: Vec<Ipv4Network> = existing
        .iter()
        .filter_map(|n| n.ipam.as_ref().map(|i| i.subnet))
        .collect();
    let cfg = match subnet {
        Some(s) => {
            let cfg = ipam::configure(s, &req)?;
            if let Some(o) = existing.iter().find(|n| {
                n.ipam
                    .as_ref()
                    .is_some_and(|i| ipam::overlaps(&i.subnet, &cfg.subnet))
            }) {
                return Err(Error::Conflict(format!(
                    "invalid pool request: Pool overlaps with other one on this address space (network {})",
                    o.name
                )));
            }
            cfg
        }
        None => {
            let mut taken = used.clone();
            taken.extend(bridge::host_routes()?);
            ipam::configure(ipam::pick_subnet(&taken)?, &req)?
        }
    };
    let ipam6 = if opts.ipv6 {
        let cfg = ipam::configure6(subnet6.unwrap_or_else(ipam::random_ula), gateway6)?;
        let clash = existing.iter().find(|n| {
            n.ipam6.as_ref().is_some_and(|i| {
                i.subnet.contains(cfg.subnet.network()) || cfg.subnet.contains(i.subnet.network())
            })
        });
        if let Some(o) = clash {
            return Err(Error::Conflict(format!(
                "invalid pool request: Pool overlaps with other one on this address space (network {})",
                o.name
            )));
        }
        Some(cfg)
    } else {
        None
    };
    let id = new_id();
    // Linux caps interface names at 15 bytes, so "rbox-" leaves room for 10 hex digits of the id
    // (Docker's "br-" takes 12).
    let bridge_name = bridge_name.unwrap_or_else(|| format!("rbox-{}", &id[..10]));
    if existing.iter().any(|n| n.bridge == bridge_name) {
        return Err(Error::Conflict(format!(
            "bridge name {bridge_name} is used by another network"
        )));
    }
    if bridge::link_exists(&bridge_name)? {
        return Err(Error::Conflict(format!(
            "bridge name {bridge_name} is used by another network on this host"
        )));
    }
    let net = Network {
        id,
        name: opts.name.clone(),
        driver: driver_name,
        created: now(),
        internal: opts.internal,
        attachable: opts.attachable,
        enable_ipv6: opts.ipv6,
        ipam: Some(cfg),
        ipam6,
        options,
        labels,
        bridge: bridge_name,
        mtu,
        icc,
        masquerade: masq,
        default: false,
        endpoints: BTreeMap::new(),
    };
    let drv = driver::for_network(&net)?;
    drv.create_network(&net)?;
    if let Err(e) = store.save(&net) {
        let _ = drv.delete_network(&net);
        return Err(e);
    }
    Ok(net)
}

/// `network rm`: refused for predefined networks and while endpoints exist.
pub fn remove(root: &Path, key: &str) -> Result<Network> {
    let store = Store::new(root);
    let net = store.find(key)?;
    if net.is_predefined() {
        return Err(Error::Invalid(format!(
            "{} is a pre-defined network and cannot be removed",
            net.name
        )));
    }
    let _all = store.lock_all()?;
    let _lock = store.lock(&net.id)?;
    let mut net = store.load(&net.id)?;
    if crate::endpoint::drop_stale(root, &mut net) {
        store.save(&net)?;
    }
    if !net.endpoints.is_empty() {
        return Err(Error::Conflict(format!(
            "error while removing network: network {} id {} has active endpoints",
            net.name, net.id
        )));
    }
    driver::for_network(&net)?.delete_network(&net)?;
    store.delete(&net.id)?;
    Ok(net)
}

/// `network prune`: removes user networks without (live) endpoints; returns their names.
pub fn prune(root: &Path) -> Result<Vec<String>> {
    let nets = Store::new(root).list()?;
    let mut removed = Vec::new();
    for n in nets.iter().filter(|n| !n.is_predefined()) {
        if remove(root, &n.id).is_ok() {
            removed.push(n.name.clone());
        }
    }
    Ok(removed)
}

/// Re-applies every bridge network's rules from state, e.g. after `iptables -F`.
pub fn reload(root: &Path) -> Result<()> {
    let nets = Store::new(root).list()?;
    let live: Vec<&Network> = nets
        .iter()
        .filter(|n| n.driver == "bridge" && bridge::link_exists(&n.bridge).unwrap_or(false))
        .collect();
    let mut errors = Errors::default();
    errors.check(firewall::install(&live));
    errors.check(crate::ports::reload(root));
    // Also brings back a resolver that was killed.
    errors.check(crate::dns::sync(root));
    errors.into_result()
}

/// Removes every kernel object of the root's networks (bridges, rules), keeping the state:
/// for `system prune` and test cleanup. The default bridge comes back on first use.
pub fn teardown(root: &Path) -> Result<()> {
    let mut errors = Errors::default();
    errors.check(crate::dns::stop(root));
    errors.check(crate::ports::teardown(root));
    if let Some(nets) = errors.check(Store::new(root).list()) {
        for n in nets.iter().filter(|n| n.driver == "bridge") {
            errors.check(driver::for_network(n).and_then(|d| d.delete_network(n)));
        }
    }
    errors.into_result()
}

/// Docker's `network inspect` JSON for `net`.
pub fn inspect(net: &Network) -> Value {
    let config: Vec<Value> = net
        .ipam
        .iter()
        .map(|c| {
            let mut v = json!({"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()});
            if let Some(r) = c.ip_range {
                v["IPRange"] = json!(r.to_string());
            }
            if !c.aux.is_empty() {
                let aux: BTreeMap<_, _> = c
                    .aux
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect();
                v["AuxiliaryAddresses"] = json!(aux);
            }
            v
        })
        .chain(
            net.ipam6
                .iter()
                .map(|c| json!({"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()})),
        )
        .collect();
    let containers: BTreeMap<_, _> = net
        .endpoints
        .iter()
        .map(|(id, e)| {
            let ipv4 = match (e.ip, &net.ipam) {
                (Some(ip), Some(c)) => format!("{ip}/{}", c.subnet.prefix()),
                _ => String::new(),
            };
            let ipv6 = match (e.ip6, &net.ipam6) {
                (Some(ip), Some(c)) => format!("{ip}/{}", c.subnet.prefix()),
                _ => String::new(),
            };
            (
                id.clone(),
                json!({"Name": e.container_name, "EndpointID": e.endpoint_id, "MacAddress": e.mac,
                       "IPv4Address": ipv4, "IPv6Address": ipv6}),
            )
        })
        .collect();
    json!({
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": net.options,
        "Labels": net.labels,
    })
}
