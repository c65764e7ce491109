//! The resolver's view of the root: user bridge networks, the names of their endpoints, and
//! which upstreams each container forwards to. Built from the networks' state files on every
//! reload; lookups are pure so they are unit-tested without sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::driver::Caps;
use crate::network::{Network, Store};
use crate::sandbox;

/// One container's endpoint on a network.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub container_id: String,
    /// Container name (first), 12-hex short id, aliases; all lower case.
    pub names: Vec<String>,
    pub ip4: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    /// `--dns` servers of the container: where its other queries go.
    pub upstreams: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Network name, lower case: also the DNS domain of its containers (`web.mynet`).
    pub name: String,
    pub subnet4: Ipv4Network,
    pub gateway4: Ipv4Addr,
    pub subnet6: Option<Ipv6Network>,
    pub gateway6: Option<Ipv6Addr>,
    pub entries: Vec<Entry>,
}

impl Segment {
    fn holds(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.subnet4.contains(a),
            IpAddr::V6(a) => self.subnet6.is_some_and(|s| s.contains(a)),
        }
    }

    fn entry_by_ip(&self, ip: IpAddr) -> Option<&Entry> {
        self.entries.iter().find(|e| match ip {
            IpAddr::V4(a) => e.ip4 == Some(a),
            IpAddr::V6(a) => e.ip6 == Some(a),
        })
    }

    fn entries_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.names.iter().any(|n| n == name))
    }
}

/// Whether containers on `net` get the embedded resolver: user-defined networks of drivers with
/// names (`Caps::dns`), as Docker (the default bridge keeps the host's resolvers and /etc/hosts).
pub fn serves(net: &Network) -> bool {
    net.caps().is_some_and(|c| serves_with(net, &c))
}

/// `serves` for a network whose driver's capabilities are `caps`.
pub fn serves_with(net: &Network, caps: &Caps) -> bool {
    caps.dns && !net.default && net.ipam.is_some() && net.driver_opts.gateway_on_host()
}

/// Every network served, with the endpoints whose sandbox still exists (a lease left by a
/// holder killed with -9 is not served).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub segments: Vec<Segment>,
    /// The host's resolvers: upstreams of containers without `--dns`.
    pub host_upstreams: Vec<IpAddr>,
}

/// What to do with one query.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Authoritative data (possibly empty: NODATA).
    Addrs(Vec<IpAddr>),
    /// Authoritative PTR target.
    Ptr(String),
    NxDomain,
    /// Not ours: ask these servers (empty = none known: SERVFAIL).
    Forward(Vec<IpAddr>),
    /// The asker is not on the network whose gateway it asked.
    Refused,
}

/// The query types the table answers itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    A,
    Aaaa,
    Any,
    Ptr,
    Other,
}

impl Table {
    pub fn load(root: &Path, host_upstreams: Vec<IpAddr>) -> crate::Result<Table> {
        let nets = Store::new(root).list()?;
        Ok(Table::from_networks(&nets, host_upstreams, |cid| {
            sandbox::netns_path(root, cid).exists()
        }))
    }

    pub fn from_networks(
        nets: &[Network],
        host_upstreams: Vec<IpAddr>,
        alive: impl Fn(&str) -> bool,
    ) -> Table {
        let segments = nets
            .iter()
            .filter(|n| serves(n))
            .filter_map(|n| {
                let ipam = n.ipam.as_ref()?;
                let entries: Vec<Entry> = n
                    .endpoints
                    .iter()
                    .filter(|(cid, ep)| ep.ip.is_some() && alive(cid))
                    .map(|(cid, ep)| {
                        let mut names = vec![ep.container_name.to_ascii_lowercase()];
                        names.push(cid.chars().take(12).collect());
                        names.extend(ep.aliases.iter().map(|a| a.to_ascii_lowercase()));
                        names.retain(|s| !s.is_empty());
                        Entry {
                            container_id: cid.clone(),
                            names,
                            ip4: ep.ip,
                            ip6: ep.ip6,
                            upstreams: ep.dns_servers.clone(),
                        }
                    })
                    .collect();
                (!entries.is_empty()).then(|| Segment {
                    name: n.name.to_ascii_lowercase(),
                    subnet4: ipam.subnet,
                    gateway4: ipam.gateway,
                    subnet6: n.ipam6.as_ref().map(|c| c.subnet),
                    gateway6: n.ipam6.as_ref().map(|c| c.gateway),
                    entries,
                })
            })
            .collect();
        Table {
            segments,
            host_upstreams,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The addresses to listen on: every served network's gateways.
    pub fn listen_addrs(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = Vec::new();
        for s in &self.segments {
            v.push(s.gateway4.into());
            v.extend(s.gateway6.map(IpAddr::from));
        }
        v
    }

    fn segment_at(&self, gateway: IpAddr) -> Option<&Segment> {
        self.segments.iter().find(|s| {
            IpAddr::from(s.gateway4) == gateway || s.gateway6.map(IpAddr::from) == Some(gateway)
        })
    }

    /// Answers `name` (lower case, no trailing dot) of `kind` asked by `src` at `gateway`.
    pub fn lookup(&self, gateway: IpAddr, src: IpAddr, name: &str, kind: Kind) -> Answer {
        let Some(here) = self.segment_at(gateway) else {
            return Answer::Refused;
        };
        if !here.holds(src) {
            return Answer::Refused;
        }
        let asker = here.entry_by_ip(src);
        // Networks the asker shares: the one it asked on first, then its others.
        let mut scope: Vec<&Segment> = vec![here];
        if let Some(a) = asker {
            scope.extend(self.segments.iter().filter(|s| {
                !std::ptr::eq(*s, here)
                    && s.entries.iter().any(|e| e.container_id == a.container_id)
            }));
        }
        let upstreams = asker
            .filter(|a| !a.upstreams.is_empty())
            .map(|a| a.upstreams.clone())
            .unwrap_or_else(|| self.host_upstreams.clone());

        if kind == Kind::Ptr {
            if let Some(ip) = arpa_ip(name) {
                for s in &scope {
                    if let Some(e) = s.entry_by_ip(ip) {
                        return Answer::Ptr(format!("{}.{}", e.names[0], s.name));
                    }
                }
                if scope.iter().any(|s| s.holds(ip)) {
                    return Answer::NxDomain;
                }
            }
            return Answer::Forward(upstreams);
        }
        let addrs = |s: &Segment, n: &str| -> Option<Vec<IpAddr>> {
            let mut found = false;
            let mut v = Vec::new();
            for e in s.entries_named(n) {
                found = true;
                if matches!(kind, Kind::A | Kind::Any) {
                    v.extend(e.ip4.map(IpAddr::from));
                }
                if matches!(kind, Kind::Aaaa | Kind::Any) {
                    v.extend(e.ip6.map(IpAddr::from));
                }
            }
            found.then_some(v)
        };
        // A bare name, or an alias that itself has dots.
        for s in &scope {
            if let Some(v) = addrs(s, name) {
                return Answer::Addrs(v);
            }
        }
        // `<name>.<network>`: only in that network, and nothing else there exists.
        if let Some((first, domain)) = name.split_once('.') {
            if let Some(s) = scope.iter().find(|s| s.name == domain) {
                return match addrs(s, first) {
                    Some(v) => Answer::Addrs(v),
                    None => Answer::NxDomain,
                };
            }
            return Answer::Forward(upstreams);
        }
        Answer::NxDomain
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`) stands for.
fn arpa_ip(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = Vec::with_capacity(4);
        for p in rest.split('.') {
            octets.push(p.parse().ok()?);
        }
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, name: &str, ip: &str, aliases: &[&str]) -> Entry {
        let mut names = vec![name.to_string(), id[..12].to_string()];
        names.extend(aliases.iter().map(|s| s.to_string()));
        Entry {
            container_id: id.to_string(),
            names,
            ip4: Some(ip.parse().unwrap()),
            ip6: None,
            upstreams: vec![],
        }
    }

    fn table() -> Table {
        let a = Segment {
            name: "front".into(),
            subnet4: "10.1.0.0/24".parse().unwrap(),
            gateway4: "10.1.0.1".parse().unwrap(),
            subnet6: None,
            gateway6: None,
            entries: vec![
                entry(
                    "aaaaaaaaaaaaaaaa",
                    "web",
                    "10.1.0.2",
                    &["www", "site.local"],
                ),
                entry("bbbbbbbbbbbbbbbb", "cli", "10.1.0.3", &[]),
            ],
        };
        let b = Segment {
            name: "back".into(),
            subnet4: "10.2.0.0/24".parse().unwrap(),
            gateway4: "10.2.0.1".parse().unwrap(),
            subnet6: None,
            gateway6: None,
            entries: vec![
                entry("aaaaaaaaaaaaaaaa", "web", "10.2.0.2", &[]),
                entry("cccccccccccccccc", "db", "10.2.0.3", &[]),
            ],
        };
        Table {
            segments: vec![a, b],
            host_upstreams: vec!["192.0.2.53".parse().unwrap()],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_short_ids_and_aliases_resolve_on_the_shared_network() {
        let t = table();
        let gw = ip("10.1.0.1");
        let cli = ip("10.1.0.3");
        for n in ["web", "aaaaaaaaaaaa", "www", "site.local", "web.front"] {
            assert_eq!(
                t.lookup(gw, cli, n, Kind::A),
                Answer::Addrs(vec![ip("10.1.0.2")]),
                "{n}"
            );
        }
        assert_eq!(t.lookup(gw, cli, "web", Kind::Aaaa), Answer::Addrs(vec![]));
        assert_eq!(t.lookup(gw, cli, "nope", Kind::A), Answer::NxDomain);
        assert_eq!(t.lookup(gw, cli, "nope.front", Kind::A), Answer::NxDomain);
    }

    #[test]
    fn isolation_and_multi_network_askers() {
        let t = table();
        // cli is only on front: db (back) is not visible, nor is web.back.
        assert_eq!(
            t.lookup(ip("10.1.0.1"), ip("10.1.0.3"), "db", Kind::A),
            Answer::NxDomain
        );
        assert_eq!(
            t.lookup(ip("10.1.0.1"), ip("10.1.0.3"), "db.back", Kind::A),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        // web is on both: asking on front, it finds db on back at back's address.
        assert_eq!(
            t.lookup(ip("10.1.0.1"), ip("10.1.0.2"), "db", Kind::A),
            Answer::Addrs(vec![ip("10.2.0.3")])
        );
        // db asks on back: web's address there.
        assert_eq!(
            t.lookup(ip("10.2.0.1"), ip("10.2.0.3"), "web", Kind::A),
            Answer::Addrs(vec![ip("10.2.0.2")])
        );
        // A container of front asking back's gateway is refused.
        assert_eq!(
            t.lookup(ip("10.2.0.1"), ip("10.1.0.3"), "db", Kind::A),
            Answer::Refused
        );
        assert_eq!(
            t.lookup(ip("10.9.0.1"), ip("10.1.0.3"), "db", Kind::A),
            Answer::Refused
        );
    }

    #[test]
    fn ptr_and_forwarding() {
        let mut t = table();
        let (gw, cli) = (ip("10.1.0.1"), ip("10.1.0.3"));
        assert_eq!(
            t.lookup(gw, cli, "2.0.1.10.in-addr.arpa", Kind::Ptr),
            Answer::Ptr("web.front".into())
        );
        assert_eq!(
            t.lookup(gw, cli, "9.0.1.10.in-addr.arpa", Kind::Ptr),
            Answer::NxDomain
        );
        assert_eq!(
            t.lookup(gw, cli, "1.2.0.192.in-addr.arpa", Kind::Ptr),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        assert_eq!(
            t.lookup(gw, cli, "example.org", Kind::A),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        t.segments[0].entries[1].upstreams = vec![ip("127.0.0.9")];
        assert_eq!(
            t.lookup(gw, cli, "example.org", Kind::A),
            Answer::Forward(vec![ip("127.0.0.9")])
        );
    }

    #[test]
    fn arpa_names() {
        assert_eq!(arpa_ip("4.3.2.1.in-addr.arpa"), Some(ip("1.2.3.4")));
        assert_eq!(arpa_ip("3.2.1.in-addr.arpa"), None);
        assert_eq!(arpa_ip("x.3.2.1.in-addr.arpa"), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(arpa_ip(v6), Some(ip("fd00::1")));
    }
}
