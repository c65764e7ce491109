//! The resolver's view of the root: the served networks, the names of their endpoints, and
//! which upstreams each container forwards to. Built from the networks' state files on every
//! reload; lookups are pure (the asker is named by the sandbox its query arrived in) so they are
//! unit-tested without sockets.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::driver::Caps;
use crate::network::EndpointRecord;
use crate::network::{Network, Store};
use crate::records::Endpoints;
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
    /// Its interface in the sandbox: a container on several networks searches them in this
    /// order (eth0 first).
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Network name, lower case: also the DNS domain of its containers (`web.mynet`).
    pub name: String,
    pub subnet4: Ipv4Network,
    pub subnet6: Option<Ipv6Network>,
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

    fn entry_of(&self, container_id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.container_id == container_id)
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
    /// Containers with a way out: an endpoint on a network that is not `--internal`. Only
    /// their queries are relayed anywhere outside their networks (see `lookup`).
    pub connected: BTreeSet<String>,
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
    /// The asker is on no served network (a socket about to be closed), or the name is not
    /// ours and the asker may not be relayed anywhere (internal networks only).
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

/// The names and addresses `ep` gives container `cid` on its network.
fn entry(cid: &str, ep: &EndpointRecord) -> Entry {
    let mut names = vec![ep.container_name.to_ascii_lowercase()];
    names.push(cid.chars().take(12).collect());
    names.extend(ep.aliases.iter().map(|a| a.to_ascii_lowercase()));
    names.retain(|s| !s.is_empty());
    Entry {
        container_id: cid.to_string(),
        names,
        ip4: ep.ip,
        ip6: ep.ip6,
        upstreams: ep.dns_servers.clone(),
        interface: ep.interface.clone(),
    }
}

impl Table {
    pub fn load(root: &Path, host_upstreams: Vec<IpAddr>) -> crate::Result<Table> {
        let store = Store::new(root);
        let nets = store.list()?;
        // Every endpoint of the served networks; of the others only who is on them.
        let mut served = Vec::new();
        let mut connected = BTreeSet::new();
        for n in &nets {
            if !n.internal {
                connected.extend(store.endpoint_ids(&n.id)?);
            }
            if serves(n) {
                served.push((n.clone(), store.endpoints(&n.id)?));
            }
        }
        let live = sandbox::ids(root);
        let mut t =
            Table::from_networks(&served, connected, host_upstreams, |cid| live.contains(cid));
        // Global networks: the other hosts' containers too.
        crate::cluster::names::add_remote(root, &nets, &mut t);
        Ok(t)
    }

    /// Whether `load` would give a table with names to serve, without reading the endpoints
    /// (a listing of the served networks' endpoints and of the sandboxes). May say yes for an
    /// endpoint without an address; the resolver then finds nothing and stops.
    pub fn wanted(root: &Path) -> crate::Result<bool> {
        let store = Store::new(root);
        let live = sandbox::ids(root);
        for n in store.list()?.iter().filter(|n| serves(n)) {
            if store.endpoint_ids(&n.id)?.iter().any(|c| live.contains(c)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The table of the served networks `nets` with their endpoints; `connected`: the
    /// containers on external networks.
    pub fn from_networks(
        nets: &[(Network, Endpoints)],
        connected: BTreeSet<String>,
        host_upstreams: Vec<IpAddr>,
        alive: impl Fn(&str) -> bool,
    ) -> Table {
        let segments = nets
            .iter()
            .filter(|(n, _)| serves(n))
            .filter_map(|(n, endpoints)| {
                let ipam = n.ipam.as_ref()?;
                let entries: Vec<Entry> = endpoints
                    .iter()
                    .filter(|(cid, ep)| ep.ip.is_some() && alive(cid))
                    .map(|(cid, ep)| entry(cid, ep))
                    .collect();
                (!entries.is_empty()).then(|| Segment {
                    name: n.name.to_ascii_lowercase(),
                    subnet4: ipam.subnet,
                    subnet6: n.ipam6.as_ref().map(|c| c.subnet),
                    entries,
                })
            })
            .collect();
        Table {
            segments,
            host_upstreams,
            connected,
        }
    }

    /// This table with `container_id`'s endpoint `ep` on `net` added (or replaced): what a
    /// join changes, without reading every other endpoint again; `connected`: whether the
    /// container has an endpoint on a network that is not internal. `None` when `net` has no
    /// segment yet (its first name: a full `load` builds it) or `ep` has no address.
    pub fn with_endpoint(
        &self,
        net: &Network,
        container_id: &str,
        ep: &EndpointRecord,
        connected: bool,
    ) -> Option<Table> {
        let name = net.name.to_ascii_lowercase();
        let at = self.segments.iter().position(|s| s.name == name)?;
        ep.ip?;
        let mut t = self.clone();
        let seg = &mut t.segments[at];
        seg.entries.retain(|e| e.container_id != container_id);
        seg.entries.push(entry(container_id, ep));
        if connected {
            t.connected.insert(container_id.to_string());
        }
        Some(t)
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The sandboxes to answer in: every container with an endpoint on a served network.
    pub fn sandboxes(&self) -> BTreeSet<&str> {
        self.segments
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.container_id.as_str()))
            .collect()
    }

    /// Answers `name` (lower case, no trailing dot) of `kind` asked from the sandbox of
    /// `asker`. `turn` rotates the order of a name several containers share (an alias), so
    /// clients that take the first address spread over all of them.
    ///
    /// Queries for other names are relayed from the host's namespace, so for a container only
    /// on internal networks they would leave the machine where its packets cannot (Docker's
    /// CVE-2024-29018): as Docker, such a container's queries go only to its `--dns` servers
    /// inside its own networks (a DNS server it runs there), else they are refused.
    pub fn lookup(&self, asker: &str, name: &str, kind: Kind, turn: usize) -> Answer {
        // The asker's networks, in the order of its interfaces.
        let mut mine: Vec<(&Segment, &Entry)> = self
            .segments
            .iter()
            .filter_map(|s| s.entry_of(asker).map(|e| (s, e)))
            .collect();
        if mine.is_empty() {
            return Answer::Refused;
        }
        mine.sort_by(|a, b| a.1.interface.cmp(&b.1.interface));
        let mut upstreams = mine
            .iter()
            .map(|(_, e)| &e.upstreams)
            .find(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| self.host_upstreams.clone());
        let scope: Vec<&Segment> = mine.iter().map(|(s, _)| *s).collect();
        if !self.connected.contains(asker) {
            upstreams.retain(|u| scope.iter().any(|s| s.holds(*u)));
        }
        let forward = || {
            if upstreams.is_empty() && !self.connected.contains(asker) {
                Answer::Refused
            } else {
                Answer::Forward(upstreams.clone())
            }
        };

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
            return forward();
        }
        let addrs = |s: &Segment, n: &str| -> Option<Vec<IpAddr>> {
            let mut found: Vec<&Entry> = s.entries_named(n).collect();
            if found.is_empty() {
                return None;
            }
            let len = found.len();
            found.rotate_left(turn % len);
            let mut v = Vec::new();
            for e in found {
                if matches!(kind, Kind::A | Kind::Any) {
                    v.extend(e.ip4.map(IpAddr::from));
                }
                if matches!(kind, Kind::Aaaa | Kind::Any) {
                    v.extend(e.ip6.map(IpAddr::from));
                }
            }
            Some(v)
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
            return forward();
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

    fn entry(id: &str, name: &str, ip: &str, aliases: &[&str], ifname: &str) -> Entry {
        let mut names = vec![name.to_string(), id[..12].to_string()];
        names.extend(aliases.iter().map(|s| s.to_string()));
        Entry {
            container_id: id.to_string(),
            names,
            ip4: Some(ip.parse().unwrap()),
            ip6: None,
            upstreams: vec![],
            interface: ifname.into(),
        }
    }

    const WEB: &str = "aaaaaaaaaaaaaaaa";
    const CLI: &str = "bbbbbbbbbbbbbbbb";
    const DB: &str = "cccccccccccccccc";

    fn table() -> Table {
        let a = Segment {
            name: "front".into(),
            subnet4: "10.1.0.0/24".parse().unwrap(),
            subnet6: None,
            entries: vec![
                entry(WEB, "web", "10.1.0.2", &["www", "site.local"], "eth0"),
                entry(CLI, "cli", "10.1.0.3", &[], "eth0"),
            ],
        };
        let b = Segment {
            name: "back".into(),
            subnet4: "10.2.0.0/24".parse().unwrap(),
            subnet6: None,
            entries: vec![
                entry(WEB, "web", "10.2.0.2", &[], "eth1"),
                entry(DB, "db", "10.2.0.3", &[], "eth0"),
            ],
        };
        Table {
            segments: vec![a, b],
            host_upstreams: vec!["192.0.2.53".parse().unwrap()],
            connected: [WEB, CLI, DB].map(String::from).into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_join_adds_its_entry_as_a_full_load_would() {
        let t = table();
        let net = |name: &str| crate::Network::new(name, "bridge", Default::default());
        const NEW: &str = "dddddddddddddddd";
        let ep = EndpointRecord {
            container_id: NEW.into(),
            container_name: "New".into(),
            ip: Some("10.1.0.9".parse().unwrap()),
            aliases: vec!["N2".into()],
            interface: "eth0".into(),
            ..Default::default()
        };
        let t2 = t.with_endpoint(&net("front"), NEW, &ep, false).unwrap();
        for n in ["new", "n2", "dddddddddddd", "new.front"] {
            assert_eq!(
                t2.lookup(CLI, n, Kind::A, 0),
                Answer::Addrs(vec![ip("10.1.0.9")]),
                "{n}"
            );
        }
        assert_eq!(
            t2.lookup(NEW, "web", Kind::A, 0),
            Answer::Addrs(vec![ip("10.1.0.2")])
        );
        assert!(
            !t2.connected.contains(NEW),
            "only internal networks: no way out"
        );
        assert_eq!(
            t.lookup(CLI, "new", Kind::A, 0),
            t.lookup(CLI, "nosuch", Kind::A, 0)
        );
        // Joined again (a changed endpoint): replaced, not doubled; and now with a way out.
        let mut moved = ep.clone();
        moved.ip = Some("10.1.0.10".parse().unwrap());
        let t3 = t2.with_endpoint(&net("front"), NEW, &moved, true).unwrap();
        assert_eq!(t3.segments[0].entries.len(), 3);
        assert_eq!(
            t3.lookup(CLI, "new", Kind::A, 0),
            Answer::Addrs(vec![ip("10.1.0.10")])
        );
        assert!(t3.connected.contains(NEW));
        // A network without names yet, or no address: left to a full load.
        assert!(t.with_endpoint(&net("other"), NEW, &ep, true).is_none());
        let bare = EndpointRecord { ip: None, ..ep };
        assert!(t.with_endpoint(&net("front"), NEW, &bare, true).is_none());
    }

    #[test]
    fn names_short_ids_and_aliases_resolve_on_the_shared_network() {
        let t = table();
        for n in ["web", "aaaaaaaaaaaa", "www", "site.local", "web.front"] {
            assert_eq!(
                t.lookup(CLI, n, Kind::A, 0),
                Answer::Addrs(vec![ip("10.1.0.2")]),
                "{n}"
            );
        }
        assert_eq!(t.lookup(CLI, "web", Kind::Aaaa, 0), Answer::Addrs(vec![]));
        assert_eq!(t.lookup(CLI, "nope", Kind::A, 0), Answer::NxDomain);
        assert_eq!(t.lookup(CLI, "nope.front", Kind::A, 0), Answer::NxDomain);
        assert_eq!(
            t.sandboxes().into_iter().collect::<Vec<_>>(),
            [WEB, CLI, DB]
        );
    }

    #[test]
    fn isolation_and_multi_network_askers() {
        let t = table();
        // cli is only on front: db (back) is not visible, nor is web.back.
        assert_eq!(t.lookup(CLI, "db", Kind::A, 0), Answer::NxDomain);
        assert_eq!(
            t.lookup(CLI, "db.back", Kind::A, 0),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        // web is on both: it finds db on back, and itself on its first network (eth0).
        assert_eq!(
            t.lookup(WEB, "db", Kind::A, 0),
            Answer::Addrs(vec![ip("10.2.0.3")])
        );
        assert_eq!(
            t.lookup(WEB, "web", Kind::A, 0),
            Answer::Addrs(vec![ip("10.1.0.2")])
        );
        // db sees web at its address on back.
        assert_eq!(
            t.lookup(DB, "web", Kind::A, 0),
            Answer::Addrs(vec![ip("10.2.0.2")])
        );
        // A sandbox on no served network is refused.
        assert_eq!(t.lookup("dddddddddddd", "db", Kind::A, 0), Answer::Refused);
    }

    #[test]
    fn a_shared_alias_rotates() {
        let mut t = table();
        t.segments[0].entries.push(entry(
            "eeeeeeeeeeeeeeee",
            "web2",
            "10.1.0.4",
            &["www"],
            "eth0",
        ));
        t.segments[0].entries.push(entry(
            "ffffffffffffffff",
            "web3",
            "10.1.0.5",
            &["www"],
            "eth0",
        ));
        let firsts: Vec<IpAddr> = (0..6)
            .map(|turn| match t.lookup(CLI, "www", Kind::A, turn) {
                Answer::Addrs(v) => {
                    assert_eq!(v.len(), 3, "all of them, every time");
                    v[0]
                }
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<IpAddr> = ["10.1.0.2", "10.1.0.4", "10.1.0.5"]
            .iter()
            .cycle()
            .take(6)
            .map(|a| ip(a))
            .collect();
        assert_eq!(firsts, want);
    }

    #[test]
    fn ptr_and_forwarding() {
        let mut t = table();
        assert_eq!(
            t.lookup(CLI, "2.0.1.10.in-addr.arpa", Kind::Ptr, 0),
            Answer::Ptr("web.front".into())
        );
        assert_eq!(
            t.lookup(CLI, "9.0.1.10.in-addr.arpa", Kind::Ptr, 0),
            Answer::NxDomain
        );
        assert_eq!(
            t.lookup(CLI, "1.2.0.192.in-addr.arpa", Kind::Ptr, 0),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        assert_eq!(
            t.lookup(CLI, "example.org", Kind::A, 0),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        t.segments[0].entries[1].upstreams = vec![ip("127.0.0.9")];
        assert_eq!(
            t.lookup(CLI, "example.org", Kind::A, 0),
            Answer::Forward(vec![ip("127.0.0.9")])
        );
    }

    #[test]
    fn only_containers_with_a_way_out_are_relayed_outside_their_networks() {
        let mut t = table();
        t.connected.remove(DB);
        assert_eq!(
            t.lookup(DB, "web", Kind::A, 0),
            Answer::Addrs(vec![ip("10.2.0.2")]),
            "names still resolve"
        );
        assert_eq!(t.lookup(DB, "example.org", Kind::A, 0), Answer::Refused);
        assert_eq!(
            t.lookup(DB, "1.2.0.192.in-addr.arpa", Kind::Ptr, 0),
            Answer::Refused
        );
        // Its own DNS server on its internal network is asked; one outside it is not.
        t.segments[1].entries[1].upstreams = vec![ip("192.0.2.1"), ip("10.2.0.53")];
        assert_eq!(
            t.lookup(DB, "example.org", Kind::A, 0),
            Answer::Forward(vec![ip("10.2.0.53")])
        );
        // web is on the same internal network and on another with a way out.
        assert_eq!(
            t.lookup(WEB, "example.org", Kind::A, 0),
            Answer::Forward(vec![ip("192.0.2.53")])
        );
        // A connected container without upstreams still gets SERVFAIL, not REFUSED.
        t.host_upstreams.clear();
        assert_eq!(
            t.lookup(CLI, "example.org", Kind::A, 0),
            Answer::Forward(vec![])
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
