//! nft text for rbox's table: the commands of each transaction (`nft -f -` input) and, for
//! golden files, the whole table as `nft list table inet rbox` shows it.

use std::fmt::Write;
use std::net::IpAddr;

use super::TABLE;
use crate::firewall::{FwNetwork, FwPort, FwPorts, FwTarget};

/// A named set or map of the table: name, type line, flags line.
pub(super) struct Collection {
    pub name: &'static str,
    pub kind: &'static str,
    pub ty: &'static str,
    pub interval: bool,
}

const fn coll(
    name: &'static str,
    kind: &'static str,
    ty: &'static str,
    interval: bool,
) -> Collection {
    Collection {
        name,
        kind,
        ty,
        interval,
    }
}

pub(super) const BRIDGES: &str = "bridges";
pub(super) const ISOLATION: &str = "isolation";
pub(super) const NETWORKS: &str = "networks";
pub(super) const SUBNETS4: &str = "subnets4";
pub(super) const SUBNETS6: &str = "subnets6";
pub(super) const MASQ4: &str = "masquerade4";
pub(super) const MASQ6: &str = "masquerade6";
pub(super) const PUBLISHED4: &str = "published4";
pub(super) const PUBLISHED6: &str = "published6";
pub(super) const DNAT4: &str = "dnat4";
pub(super) const DNAT6: &str = "dnat6";

/// Every set and map, in the order they are made (and listed). Postrouting cannot see the
/// input interface of bridged traffic (br_netfilter hands it over without one), so masquerade
/// goes by source subnet: `subnets4/6` pair each network's subnet with its bridge.
pub(super) const COLLECTIONS: [Collection; 11] = [
    coll(BRIDGES, "set", "ifname", false),
    coll(ISOLATION, "map", "ifname : verdict", false),
    coll(NETWORKS, "map", "ifname : verdict", false),
    coll(SUBNETS4, "set", "ipv4_addr . ifname", true),
    coll(SUBNETS6, "set", "ipv6_addr . ifname", true),
    coll(MASQ4, "set", "ipv4_addr", true),
    coll(MASQ6, "set", "ipv6_addr", true),
    coll(PUBLISHED4, "map", "ipv4_addr : verdict", false),
    coll(PUBLISHED6, "map", "ipv6_addr : verdict", false),
    coll(
        DNAT4,
        "map",
        "ipv4_addr . inet_proto . inet_service : verdict",
        true,
    ),
    coll(
        DNAT6,
        "map",
        "ipv6_addr . inet_proto . inet_service : verdict",
        true,
    ),
];

/// Whether the keys of collection `name` hold interface names (quoted in nft's syntax).
pub(super) fn keyed_by_ifname(name: &str) -> bool {
    matches!(name, BRIDGES | ISOLATION | NETWORKS | SUBNETS4 | SUBNETS6)
}

/// The shared chains: name, base-chain declaration (`None`: a regular chain), fixed rules.
/// `user` is the admin's (never flushed); the base chains dispatch through the maps above, so
/// a packet's path does not grow with networks or ports.
pub(super) fn shared_chains() -> Vec<(&'static str, Option<&'static str>, Vec<String>)> {
    let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("user", None, Vec::new()),
        (
            "forward",
            Some("type filter hook forward priority filter; policy accept;"),
            r(&[
                "jump user",
                "iifname vmap @isolation",
                "ct status dnat ip daddr vmap @published4",
                "ct status dnat ip6 daddr vmap @published6",
                "iifname vmap @networks",
                "oifname vmap @networks",
            ]),
        ),
        (
            "input",
            Some("type filter hook input priority filter; policy accept;"),
            r(&[
                "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state != { established, related } drop",
                "iifname != \"lo\" ip6 daddr ::1 ct state != { established, related } drop",
            ]),
        ),
        (
            "prerouting",
            Some("type nat hook prerouting priority dstnat; policy accept;"),
            r(&["fib daddr type local jump published"]),
        ),
        (
            "output",
            Some("type nat hook output priority -100; policy accept;"),
            r(&["fib daddr type local jump published"]),
        ),
        (
            "postrouting",
            Some("type nat hook postrouting priority srcnat; policy accept;"),
            r(&[
                // Loopback clients of published ports, then hairpin and siblings.
                "ct status dnat ip saddr 127.0.0.0/8 masquerade",
                "ct status dnat ip saddr . oifname @subnets4 masquerade",
                "ct status dnat ip6 saddr . oifname @subnets6 masquerade",
                // What leaves a masquerading network by another interface.
                "ip saddr @masquerade4 ip saddr . oifname != @subnets4 masquerade",
                "ip6 saddr @masquerade6 ip6 saddr . oifname != @subnets6 masquerade",
            ]),
        ),
        (
            "published",
            None,
            r(&[
                "ip daddr . meta l4proto . th dport vmap @dnat4",
                "ip6 daddr . meta l4proto . th dport vmap @dnat6",
            ]),
        ),
    ]
}

/// Commands that make the table, its sets and maps and the shared chains exist with their
/// fixed rules, whatever was there: `add` is idempotent and each base chain is flushed and
/// written again in the same transaction. Nothing of a network or container is touched.
pub(super) fn skeleton() -> String {
    let mut out = format!("add table {TABLE}\n");
    for c in &COLLECTIONS {
        let flags = if c.interval { " flags interval;" } else { "" };
        let _ = writeln!(
            out,
            "add {} {TABLE} {} {{ type {};{flags} }}",
            c.kind, c.name, c.ty
        );
    }
    let chains = shared_chains();
    // Every chain first: rules jump to chains listed after them.
    for (name, base, _) in &chains {
        match base {
            Some(decl) => {
                let _ = writeln!(out, "add chain {TABLE} {name} {{ {decl} }}");
            }
            None => {
                let _ = writeln!(out, "add chain {TABLE} {name}");
            }
        }
    }
    for (name, _, rules) in chains.iter().filter(|(n, _, _)| *n != "user") {
        let _ = writeln!(out, "flush chain {TABLE} {name}");
        for rule in rules {
            let _ = writeln!(out, "add rule {TABLE} {name} {rule}");
        }
    }
    out
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The names of network `id`'s chains: isolation, policy.
pub(super) fn net_chains(id: &str) -> [String; 2] {
    [format!("iso-{id}"), format!("net-{id}")]
}

/// The names of container `id`'s chains: its DNAT rules and its accept rules.
pub(super) fn port_chains(id: &str) -> [String; 2] {
    [format!("dnat-{id}"), format!("fwd-{id}")]
}

/// One network's chains and rules, in order. Mirrors the iptables backend: isolation spares
/// DNATed traffic (an internal network sends nothing off its bridge), icc, outbound only with
/// replies coming back (masquerade is by source subnet, in `postrouting`). A network's tunnel
/// (`FwNetwork::tunnel`) is one of `@bridges` to every other network, so their isolation drops
/// what they send it; its own chains let the bridge and the tunnel talk (as the bridge talks to
/// itself: `icc`) and drop whatever else enters or leaves the tunnel.
pub(super) fn net_rules(n: &FwNetwork) -> Vec<(String, Vec<String>)> {
    let b = quoted(&n.bridge);
    let [iso, net] = net_chains(&n.short_id);
    let mut isolation = Vec::new();
    if let Some(t) = n.tunnel.as_deref().map(quoted) {
        isolation.push(format!("iifname {t} oifname != {b} drop"));
        isolation.push(format!("iifname {b} oifname {t} return"));
    }
    isolation.push(if n.internal {
        format!("oifname != {b} drop")
    } else {
        format!("oifname != {b} oifname @{BRIDGES} ct status & dnat != dnat drop")
    });
    let icc = if n.icc { "accept" } else { "drop" };
    let mut policy = vec![format!("iifname {b} oifname {b} {icc}")];
    if let Some(t) = n.tunnel.as_deref().map(quoted) {
        policy.push(format!("iifname {b} oifname {t} {icc}"));
        policy.push(format!("iifname {t} oifname {b} {icc}"));
        policy.push(format!("iifname {t} drop"));
        policy.push(format!("oifname {t} drop"));
    }
    if n.internal {
        policy.push(format!("iifname {b} drop"));
        policy.push(format!("oifname {b} drop"));
    } else {
        policy.push(format!("oifname {b} ct state established,related accept"));
        policy.push(format!("iifname {b} accept"));
    }
    vec![(iso, isolation), (net, policy)]
}

/// The interfaces a network's elements are keyed by: its bridge, and its tunnel if any.
pub(super) fn net_links(n: &FwNetwork) -> Vec<String> {
    std::iter::once(&n.bridge)
        .chain(n.tunnel.as_ref())
        .map(|l| quoted(l))
        .collect()
}

fn masquerades(n: &FwNetwork) -> bool {
    n.masquerade && !n.internal
}

/// One network's elements keyed by its bridge and subnets: (collection, key, value).
pub(super) fn net_elements(n: &FwNetwork) -> Vec<(&'static str, String, Option<String>)> {
    let [iso, net] = net_chains(&n.short_id);
    let mut out = Vec::new();
    for l in net_links(n) {
        out.push((BRIDGES, l.clone(), None));
        out.push((ISOLATION, l.clone(), Some(format!("jump {iso}"))));
        out.push((NETWORKS, l, Some(format!("jump {net}"))));
    }
    out.extend(subnet_elements(n));
    out
}

/// One network's elements keyed by its subnets: each paired with the bridge (hairpin, and
/// what stays on the bridge) and the tunnel (what goes to the network's other hosts is not
/// masqueraded), and on its own when the network masquerades.
pub(super) fn subnet_elements(n: &FwNetwork) -> Vec<(&'static str, String, Option<String>)> {
    let mut out = Vec::new();
    for s in &n.subnets {
        let (pairs, masq) = if s.is_ipv6() {
            (SUBNETS6, MASQ6)
        } else {
            (SUBNETS4, MASQ4)
        };
        for l in net_links(n) {
            out.push((pairs, format!("{s} . {l}"), None));
        }
        if masquerades(n) {
            out.push((masq, s.to_string(), None));
        }
    }
    out
}

/// The DNAT rule of one port of a family whose target is `t`.
fn dnat_rule(port: &FwPort, t: &FwTarget) -> String {
    let (p, hp, cp) = (port.proto.as_str(), port.host_port, port.container_port);
    match (port.host_ip, t.ip) {
        (IpAddr::V4(h), IpAddr::V4(ip)) if h.is_unspecified() => {
            format!("meta nfproto ipv4 {p} dport {hp} dnat ip to {ip}:{cp}")
        }
        (IpAddr::V4(h), IpAddr::V4(ip)) => {
            format!("ip daddr {h} {p} dport {hp} dnat ip to {ip}:{cp}")
        }
        // [::] leaves ::1 alone: the kernel cannot forward it (see `proxy`), the proxy does.
        (IpAddr::V6(h), ip) if h.is_unspecified() => {
            format!("ip6 daddr != ::1 {p} dport {hp} dnat ip6 to [{ip}]:{cp}")
        }
        (h, ip) => format!("ip6 daddr {h} {p} dport {hp} dnat ip6 to [{ip}]:{cp}"),
    }
}

/// The dispatch key of one port: host address (every one when unspecified), protocol, port.
pub(super) fn dnat_key(port: &FwPort) -> String {
    let addr = match port.host_ip {
        IpAddr::V4(a) if a.is_unspecified() => "0.0.0.0/0".to_string(),
        IpAddr::V6(a) if a.is_unspecified() => "::/0".to_string(),
        a => a.to_string(),
    };
    format!("{addr} . {} . {}", port.proto.as_str(), port.host_port)
}

/// One container's chains (DNAT rules, accept rules) in order.
pub(super) fn port_rules(p: &FwPorts) -> Vec<(String, Vec<String>)> {
    let [dnat, fwd] = port_chains(&p.short_id);
    let (mut d, mut f) = (Vec::new(), Vec::new());
    for v6 in [false, true] {
        if let Some((t, ports)) = p.family(v6) {
            for port in ports {
                d.push(dnat_rule(port, t));
                let accept = format!(
                    "{} dport {} accept",
                    port.proto.as_str(),
                    port.container_port
                );
                if !f.contains(&accept) {
                    f.push(accept);
                }
            }
        }
    }
    vec![(dnat, d), (fwd, f)]
}

/// One container's elements: (collection, key, value).
pub(super) fn port_elements(p: &FwPorts) -> Vec<(&'static str, String, Option<String>)> {
    let [dnat, fwd] = port_chains(&p.short_id);
    let mut out = Vec::new();
    for (v6, dmap, pmap) in [(false, DNAT4, PUBLISHED4), (true, DNAT6, PUBLISHED6)] {
        if let Some((t, ports)) = p.family(v6) {
            for port in ports {
                out.push((dmap, dnat_key(port), Some(format!("jump {dnat}"))));
            }
            out.push((pmap, t.ip.to_string(), Some(format!("jump {fwd}"))));
        }
    }
    out
}

/// `add chain`, `flush chain` and `add rule` for each chain: made or regenerated in place.
pub(super) fn write_chains(out: &mut String, chains: &[(String, Vec<String>)]) {
    for (name, rules) in chains {
        let _ = writeln!(out, "add chain {TABLE} {name}\nflush chain {TABLE} {name}");
        for r in rules {
            let _ = writeln!(out, "add rule {TABLE} {name} {r}");
        }
    }
}

/// `delete chain` (after `flush chain`) for each chain name.
pub(super) fn delete_chains<'a>(out: &mut String, names: impl IntoIterator<Item = &'a String>) {
    for name in names {
        let _ = writeln!(
            out,
            "flush chain {TABLE} {name}\ndelete chain {TABLE} {name}"
        );
    }
}

/// `add element` (or `delete element`, keys only) grouped per collection, in the order given.
pub(super) fn write_elements(
    out: &mut String,
    verb: &str,
    elems: &[(&'static str, String, Option<String>)],
) {
    for c in &COLLECTIONS {
        let mine: Vec<String> = elems
            .iter()
            .filter(|(name, _, _)| *name == c.name)
            .map(|(_, k, v)| match (verb, v) {
                ("add", Some(v)) => format!("{k} : {v}"),
                _ => k.clone(),
            })
            .collect();
        if !mine.is_empty() {
            let _ = writeln!(
                out,
                "{verb} element {TABLE} {} {{ {} }}",
                c.name,
                mine.join(", ")
            );
        }
    }
}

/// The whole table for `nets` and `ports` as `nft list table inet rbox` shows it (elements on
/// one line): what golden files hold and the model the transactions realise.
#[cfg(test)]
pub(super) fn ruleset(nets: &[FwNetwork], ports: &[FwPorts]) -> String {
    let mut elems = Vec::new();
    for n in nets {
        elems.extend(net_elements(n));
    }
    for p in ports {
        elems.extend(port_elements(p));
    }
    let mut blocks: Vec<String> = Vec::new();
    for c in &COLLECTIONS {
        let mut b = format!("\t{} {} {{\n\t\ttype {}\n", c.kind, c.name, c.ty);
        if c.interval {
            b += "\t\tflags interval\n";
        }
        let mine: Vec<String> = elems
            .iter()
            .filter(|(name, _, _)| *name == c.name)
            .map(|(_, k, v)| match v {
                Some(v) => format!("{k} : {v}"),
                None => k.clone(),
            })
            .collect();
        let mut seen: Vec<String> = Vec::new();
        for m in mine {
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        if !seen.is_empty() {
            let _ = writeln!(b, "\t\telements = {{ {} }}", seen.join(", "));
        }
        b += "\t}\n";
        blocks.push(b);
    }
    let mut chains: Vec<(String, Option<&str>, Vec<String>)> = shared_chains()
        .into_iter()
        .map(|(n, d, r)| (n.to_string(), d, r))
        .collect();
    for n in nets {
        chains.extend(net_rules(n).into_iter().map(|(c, r)| (c, None, r)));
    }
    for p in ports {
        chains.extend(port_rules(p).into_iter().map(|(c, r)| (c, None, r)));
    }
    for (name, decl, rules) in chains {
        let mut b = format!("\tchain {name} {{\n");
        if let Some(d) = decl {
            let _ = writeln!(b, "\t\t{d}");
        }
        for r in rules {
            let _ = writeln!(b, "\t\t{r}");
        }
        b += "\t}\n";
        blocks.push(b);
    }
    format!("table {TABLE} {{\n{}}}\n", blocks.join("\n"))
}
