//! IPv4 address management: subnet choice from Docker's pools and address leases inside one
//! network's subnet. Pure logic; the caller holds the network's lock and persists the result.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One IPAM pool entry of a network: Docker's `IPAM.Config[0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpamConfig {
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Network>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, Ipv4Addr>,
}

/// What `network create` asked for; `None` fields are chosen by IPAM.
#[derive(Debug, Clone, Default)]
pub struct IpamRequest {
    pub subnet: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Network>,
    pub aux: BTreeMap<String, Ipv4Addr>,
}

/// Docker's default address pools in order: 172.17–172.31 as /16s, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> impl Iterator<Item = Ipv4Network> {
    let big = (17..=31u8).map(|b| Ipv4Network::new(Ipv4Addr::new(172, b, 0, 0), 16).unwrap());
    let small =
        (0..16u8).map(|i| Ipv4Network::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).unwrap());
    big.chain(small)
}

pub fn overlaps(a: &Ipv4Network, b: &Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// The first default pool that overlaps none of `used` (other networks' subnets, host routes).
pub fn pick_subnet(used: &[Ipv4Network]) -> Result<Ipv4Network> {
    default_pools()
        .find(|p| !used.iter().any(|u| overlaps(p, u)))
        .ok_or_else(|| {
            Error::Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into())
        })
}

/// Checks a request against its subnet and fills in the gateway.
pub fn configure(subnet: Ipv4Network, req: &IpamRequest) -> Result<IpamConfig> {
    // Docker stores the subnet by its network address ("10.1.2.3/24" becomes 10.1.2.0/24).
    let subnet = Ipv4Network::new(subnet.network(), subnet.prefix())
        .map_err(|e| Error::Invalid(format!("invalid subnet {subnet}: {e}")))?;
    if subnet.prefix() > 30 {
        return Err(Error::Invalid(format!(
            "invalid subnet {subnet}: too small for a network"
        )));
    }
    let gateway = match req.gateway {
        Some(g) => {
            if !subnet.contains(g) {
                return Err(Error::Invalid(format!(
                    "no matching subnet for gateway {g}"
                )));
            }
            g
        }
        None => first_host(&subnet),
    };
    if let Some(range) = req.ip_range {
        if !overlaps(&subnet, &range) || range.prefix() < subnet.prefix() {
            return Err(Error::Invalid(format!(
                "no matching subnet for range {range}"
            )));
        }
    }
    for (name, ip) in &req.aux {
        if !subnet.contains(*ip) {
            return Err(Error::Invalid(format!(
                "no matching subnet for aux-address {name}={ip}"
            )));
        }
    }
    Ok(IpamConfig {
        subnet,
        gateway,
        ip_range: req.ip_range,
        aux: req.aux.clone(),
    })
}

fn first_host(net: &Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Addresses never handed out: network and broadcast address, gateway, aux addresses.
fn reserved(cfg: &IpamConfig, ip: Ipv4Addr) -> bool {
    ip == cfg.subnet.network()
        || ip == cfg.subnet.broadcast()
        || ip == cfg.gateway
        || cfg.aux.values().any(|a| *a == ip)
}

/// Leases `requested` (checked) or the first free address of the range/subnet.
pub fn allocate(
    cfg: &IpamConfig,
    leased: &BTreeSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    if let Some(ip) = requested {
        if !cfg.subnet.contains(ip) {
            return Err(Error::Invalid(format!(
                "invalid endpoint settings: no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
        if reserved(cfg, ip) || leased.contains(&ip) {
            return Err(Error::Conflict(format!(
                "failed to allocate IP {ip}: Address already in use"
            )));
        }
        return Ok(ip);
    }
    let pool = cfg.ip_range.unwrap_or(cfg.subnet);
    pool.iter()
        .filter(|ip| cfg.subnet.contains(*ip))
        .find(|ip| !reserved(cfg, *ip) && !leased.contains(ip))
        .ok_or_else(|| {
            Error::Conflict(format!(
                "no available IPv4 addresses on this network's address pools: {pool}"
            ))
        })
}

/// Docker's MAC for an IPv4 address: 02:42 followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// `aa:bb:cc:dd:ee:ff`, as Docker shows MACs.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(mac: &str) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Invalid(format!("invalid MAC address: {mac}")))?;
    if bytes.len() != 6 || mac.split(':').any(|p| p.len() != 2) {
        return Err(Error::Invalid(format!("invalid MAC address: {mac}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn pools_follow_docker_order_and_skip_used() {
        assert_eq!(pick_subnet(&[]).unwrap(), net("172.17.0.0/16"));
        assert_eq!(
            pick_subnet(&[net("172.17.0.0/16"), net("172.18.5.0/24")]).unwrap(),
            net("172.19.0.0/16")
        );
        let all16: Vec<_> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        assert_eq!(pick_subnet(&all16).unwrap(), net("192.168.0.0/20"));
        let mut all = all16.clone();
        all.push(net("192.168.0.0/16"));
        assert!(pick_subnet(&all).is_err());
    }

    #[test]
    fn gateway_first_address_and_checks() {
        let cfg = configure(net("10.1.2.7/24"), &IpamRequest::default()).unwrap();
        assert_eq!(cfg.subnet, net("10.1.2.0/24"));
        assert_eq!(cfg.gateway, "10.1.2.1".parse::<Ipv4Addr>().unwrap());
        let bad_gw = IpamRequest {
            gateway: Some("10.9.9.9".parse().unwrap()),
            ..Default::default()
        };
        assert!(configure(net("10.1.2.0/24"), &bad_gw).is_err());
        let bad_range = IpamRequest {
            ip_range: Some(net("10.1.3.0/25")),
            ..Default::default()
        };
        assert!(configure(net("10.1.2.0/24"), &bad_range).is_err());
        let mut aux = BTreeMap::new();
        aux.insert("a".to_string(), "10.1.9.1".parse().unwrap());
        assert!(configure(
            net("10.1.2.0/24"),
            &IpamRequest {
                aux,
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn allocation_skips_gateway_aux_and_leases_and_honours_range() {
        let mut aux = BTreeMap::new();
        aux.insert("r".to_string(), "10.1.2.2".parse().unwrap());
        let req = IpamRequest {
            aux,
            ..Default::default()
        };
        let cfg = configure(net("10.1.2.0/24"), &req).unwrap();
        let mut leased = BTreeSet::new();
        let a = allocate(&cfg, &leased, None).unwrap();
        assert_eq!(a, "10.1.2.3".parse::<Ipv4Addr>().unwrap());
        leased.insert(a);
        assert_eq!(
            allocate(&cfg, &leased, None).unwrap(),
            "10.1.2.4".parse::<Ipv4Addr>().unwrap()
        );
        assert!(allocate(&cfg, &leased, Some(a)).is_err(), "leased twice");
        assert!(
            allocate(&cfg, &leased, Some(cfg.gateway)).is_err(),
            "gateway handed out"
        );
        assert!(allocate(&cfg, &leased, Some("10.9.0.1".parse().unwrap())).is_err());
        let ranged = configure(
            net("10.1.2.0/24"),
            &IpamRequest {
                ip_range: Some(net("10.1.2.128/25")),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            allocate(&ranged, &BTreeSet::new(), None).unwrap(),
            "10.1.2.128".parse::<Ipv4Addr>().unwrap()
        );
        let tiny = configure(net("10.1.2.0/30"), &IpamRequest::default()).unwrap();
        let one = allocate(&tiny, &BTreeSet::new(), None).unwrap();
        assert!(
            allocate(&tiny, &[one].into_iter().collect(), None).is_err(),
            "pool exhausted"
        );
    }

    #[test]
    fn mac_from_ipv4_as_docker() {
        assert_eq!(mac_for("172.17.0.2".parse().unwrap()), "02:42:ac:11:00:02");
        assert_eq!(
            parse_mac("02:42:ac:11:00:02").unwrap(),
            vec![2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert!(parse_mac("02:42:ac:11:00").is_err());
    }
}

/// The IPv6 pool of a dual-stack network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ipam6Config {
    pub subnet: ipnetwork::Ipv6Network,
    pub gateway: std::net::Ipv6Addr,
}

/// A random unique local /64 (RFC 4193: fd00::/8 + 40 random bits + subnet 0).
pub fn random_ula() -> ipnetwork::Ipv6Network {
    let r: u64 = rand::random();
    let global = (r & 0xff_ffff_ffff) as u128;
    let addr = (0xfdu128 << 120) | (global << 80);
    ipnetwork::Ipv6Network::new(addr.into(), 64).unwrap()
}

pub fn configure6(
    subnet: ipnetwork::Ipv6Network,
    gateway: Option<std::net::Ipv6Addr>,
) -> Result<Ipam6Config> {
    let subnet = ipnetwork::Ipv6Network::new(subnet.network(), subnet.prefix())
        .map_err(|e| Error::Invalid(format!("invalid subnet {subnet}: {e}")))?;
    if subnet.prefix() > 126 {
        return Err(Error::Invalid(format!(
            "invalid subnet {subnet}: too small for a network"
        )));
    }
    let gateway = match gateway {
        Some(g) if !subnet.contains(g) => {
            return Err(Error::Invalid(format!(
                "no matching subnet for gateway {g}"
            )))
        }
        Some(g) => g,
        None => (u128::from(subnet.network()) + 1).into(),
    };
    Ok(Ipam6Config { subnet, gateway })
}

/// Leases `requested` (checked) or the lowest free address above the subnet's first.
pub fn allocate6(
    cfg: &Ipam6Config,
    leased: &BTreeSet<std::net::Ipv6Addr>,
    requested: Option<std::net::Ipv6Addr>,
) -> Result<std::net::Ipv6Addr> {
    let taken = |ip: &std::net::Ipv6Addr| {
        *ip == cfg.gateway || *ip == cfg.subnet.network() || leased.contains(ip)
    };
    if let Some(ip) = requested {
        if !cfg.subnet.contains(ip) {
            return Err(Error::Invalid(format!(
                "invalid endpoint settings: no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
        if taken(&ip) {
            return Err(Error::Conflict(format!(
                "failed to allocate IP {ip}: Address already in use"
            )));
        }
        return Ok(ip);
    }
    let base = u128::from(cfg.subnet.network());
    // At most leased+2 candidates are taken, so the search is bounded by the lease count.
    (1..=leased.len() as u128 + 2)
        .map(|i| std::net::Ipv6Addr::from(base + i))
        .find(|ip| cfg.subnet.contains(*ip) && !taken(ip))
        .ok_or_else(|| {
            Error::Conflict(format!(
                "no available IPv6 addresses on this network's address pools: {}",
                cfg.subnet
            ))
        })
}

#[cfg(test)]
mod tests6 {
    use super::*;

    #[test]
    fn ula_and_v6_allocation() {
        let ula = random_ula();
        assert_eq!(ula.prefix(), 64);
        assert_eq!(ula.network().octets()[0], 0xfd);
        let cfg = configure6("fd00:1:2:3::/64".parse().unwrap(), None).unwrap();
        assert_eq!(
            cfg.gateway,
            "fd00:1:2:3::1".parse::<std::net::Ipv6Addr>().unwrap()
        );
        let mut leased = BTreeSet::new();
        let a = allocate6(&cfg, &leased, None).unwrap();
        assert_eq!(a, "fd00:1:2:3::2".parse::<std::net::Ipv6Addr>().unwrap());
        leased.insert(a);
        assert_eq!(
            allocate6(&cfg, &leased, None).unwrap(),
            "fd00:1:2:3::3".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert!(allocate6(&cfg, &leased, Some(a)).is_err());
        assert!(allocate6(&cfg, &leased, Some("fd00:9::5".parse().unwrap())).is_err());
        assert!(configure6(
            "fd00:1:2:3::/64".parse().unwrap(),
            Some("fd00:9::1".parse().unwrap())
        )
        .is_err());
    }
}
