//! What rbox's own table holds now, read only where a transaction written from rbox's state
//! was refused or state must be judged (repair, network install and removal). Only
//! `nft -j list table inet rbox` is read, never another table (their JSON has broken parsers
//! before: netavark#942), and only the shapes rbox itself writes are understood.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::render::keyed_by_ifname;

/// One element of a set or map.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Elem {
    pub collection: String,
    /// The key in nft's syntax (what `delete element` takes).
    pub key: String,
    /// The chain a map element's verdict jumps to.
    pub target: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub chains: BTreeSet<String>,
    pub elems: Vec<Elem>,
}

/// nft's syntax for a key in its JSON form.
fn key_text(v: &Value, ifname: bool) -> Option<String> {
    Some(match v {
        // In a key with interface names, the strings that are not addresses are those.
        Value::String(s) if ifname && s.parse::<IpAddr>().is_err() => format!("\"{s}\""),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(parts) = o.get("concat").and_then(Value::as_array) {
                let texts: Option<Vec<String>> =
                    parts.iter().map(|p| key_text(p, ifname)).collect();
                texts?.join(" . ")
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", p.get("addr")?.as_str()?, p.get("len")?.as_u64()?)
            } else if let Some(r) = o.get("range").and_then(Value::as_array) {
                format!(
                    "{}-{}",
                    key_text(r.first()?, ifname)?,
                    key_text(r.get(1)?, ifname)?
                )
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

fn target(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let verdict = o.get("jump").or_else(|| o.get("goto"))?;
    Some(verdict.get("target")?.as_str()?.to_string())
}

impl State {
    /// Reads `nft -j list table` output; an absent table is an empty state.
    pub fn parse(json: &str) -> State {
        let mut st = State::default();
        let Ok(v) = serde_json::from_str::<Value>(json) else {
            return st;
        };
        let Some(items) = v.get("nftables").and_then(Value::as_array) else {
            return st;
        };
        for item in items {
            if let Some(c) = item.get("chain") {
                if let Some(name) = c.get("name").and_then(Value::as_str) {
                    st.chains.insert(name.to_string());
                }
            }
            let Some(set) = item.get("set").or_else(|| item.get("map")) else {
                continue;
            };
            let Some(name) = set.get("name").and_then(Value::as_str) else {
                continue;
            };
            let ifname = keyed_by_ifname(name);
            for e in set
                .get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // A map element is [key, value]; a set element is the key itself.
                let (k, val) = match e.as_array() {
                    Some(pair) if pair.len() == 2 && item.get("map").is_some() => {
                        (&pair[0], Some(&pair[1]))
                    }
                    _ => (e, None),
                };
                if let Some(key) = key_text(k, ifname) {
                    st.elems.push(Elem {
                        collection: name.to_string(),
                        key,
                        target: val.and_then(target),
                    });
                }
            }
        }
        st
    }

    /// Elements whose verdict jumps to one of `chains`.
    pub fn pointing_to<'a>(&'a self, chains: &'a [String]) -> impl Iterator<Item = &'a Elem> + 'a {
        self.elems
            .iter()
            .filter(move |e| e.target.as_ref().is_some_and(|t| chains.contains(t)))
    }

    /// Elements of `collection` with key `key`.
    pub fn keyed<'a>(
        &'a self,
        collection: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = &'a Elem> + 'a {
        self.elems
            .iter()
            .filter(move |e| e.collection == collection && e.key == key)
    }
}

/// The subnet a `subnets4/6` or `masquerade4/6` key starts with.
pub(super) fn key_subnet(key: &str) -> Option<ipnetwork::IpNetwork> {
    key.split(" . ").next()?.parse().ok()
}

/// Whether two subnets share addresses.
pub(super) fn subnets_overlap(a: ipnetwork::IpNetwork, b: ipnetwork::IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// A dispatch key of `dnat4`/`dnat6` read back: host address (`None`: every address), protocol,
/// port.
fn dnat_parts(key: &str) -> Option<(Option<IpAddr>, &str, &str)> {
    let mut it = key.split(" . ");
    let (addr, proto, port) = (it.next()?, it.next()?, it.next()?);
    let addr = match addr {
        "0.0.0.0/0" | "::/0" => None,
        a => Some(a.parse().ok()?),
    };
    Some((addr, proto, port))
}

/// Whether two dispatch keys capture the same packets: same protocol and port, and host
/// addresses that overlap (equal, or either is every address).
pub(super) fn keys_overlap(a: &str, b: &str) -> bool {
    match (dnat_parts(a), dnat_parts(b)) {
        (Some((x, p1, n1)), Some((y, p2, n2))) => {
            p1 == p2 && n1 == n2 && (x.is_none() || y.is_none() || x == y)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_rbox_writes_and_nothing_else() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "rbox", "handle": 1}},
          {"set": {"family": "inet", "name": "subnets4", "table": "rbox", "type": ["ipv4_addr", "ifname"],
                   "elem": [{"concat": [{"prefix": {"addr": "172.17.0.0", "len": 16}}, "rbox0"]}]}},
          {"map": {"family": "inet", "name": "dnat4", "table": "rbox", "map": "verdict",
                   "elem": [[{"concat": [{"prefix": {"addr": "0.0.0.0", "len": 0}}, "tcp", 8080]},
                             {"jump": {"target": "dnat-eeeeeeeeeeee"}}],
                            [{"concat": ["127.0.0.1", "udp", 53]}, {"jump": {"target": "dnat-ffffffffffff"}}]]}},
          {"map": {"family": "inet", "name": "networks", "table": "rbox", "map": "verdict",
                   "elem": [["rbox0", {"jump": {"target": "net-aaaaaaaaaaaa"}}]]}},
          {"chain": {"family": "inet", "table": "rbox", "name": "dnat-eeeeeeeeeeee", "handle": 2}}]}"#;
        let st = State::parse(json);
        assert!(st.chains.contains("dnat-eeeeeeeeeeee"));
        let keys: Vec<(&str, &str, Option<&str>)> = st
            .elems
            .iter()
            .map(|e| (e.collection.as_str(), e.key.as_str(), e.target.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("subnets4", "172.17.0.0/16 . \"rbox0\"", None),
                ("dnat4", "0.0.0.0/0 . tcp . 8080", Some("dnat-eeeeeeeeeeee")),
                ("dnat4", "127.0.0.1 . udp . 53", Some("dnat-ffffffffffff")),
                ("networks", "\"rbox0\"", Some("net-aaaaaaaaaaaa")),
            ]
        );
        assert_eq!(State::parse("").elems, Vec::new());
        assert!(keys_overlap(
            "0.0.0.0/0 . tcp . 8080",
            "127.0.0.1 . tcp . 8080"
        ));
        assert!(keys_overlap(
            "10.0.0.1 . tcp . 8080",
            "10.0.0.1 . tcp . 8080"
        ));
        assert!(!keys_overlap(
            "10.0.0.1 . tcp . 8080",
            "10.0.0.2 . tcp . 8080"
        ));
        assert!(!keys_overlap(
            "0.0.0.0/0 . tcp . 8080",
            "0.0.0.0/0 . udp . 8080"
        ));
        assert!(!keys_overlap("::/0 . tcp . 8080", "::/0 . tcp . 8081"));
    }
}
