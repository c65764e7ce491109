//! nftables backend: one `nft -f -` transaction per operation, both families at once, in the
//! table `inet rbox` that rbox owns (shared by every root on the host, like the iptables
//! chains); no other table is read or touched. It works on hosts without any iptables tool.
//!
//! Layout (`render::ruleset` writes it whole; golden files under tests/golden/nftables/):
//! - Base chains `forward`, `input` (filter) and `prerouting`, `output`, `postrouting` (nat)
//!   hold a fixed handful of rules that dispatch through verdict maps, so what a packet walks
//!   does not grow with networks or ports: `forward` jumps to `user` (empty, the admin's), then
//!   `iifname vmap @isolation`, `ct status dnat ip[6] daddr vmap @published4/6` (accept of
//!   published container ports), `iifname`/`oifname vmap @networks`; `prerouting`/`output`
//!   jump to `published` for local destinations, which looks up `@dnat4/6` by
//!   `daddr . l4proto . dport` (interval keys: `0.0.0.0/0` is every address, and overlapping
//!   keys are refused by the kernel); `postrouting` masquerades DNATed loopback clients, hairpin
//!   traffic (`@hairpin`: same bridge in and out) and `iifname vmap @outbound`.
//! - Per network (`<id12>`): chains `iso-<id>` (isolation: drop towards other bridges unless
//!   DNATed; internal: drop everything leaving), `net-<id>` (icc, internal, outbound and
//!   replies), `masq-<id>`, and their elements keyed by the bridge name. A network spanning
//!   hosts has its tunnel (VXLAN device) keyed beside its bridge, to the same chains: one of
//!   `@bridges` to every other network, talking to its own bridge only, not masqueraded.
//! - Per container (`<id12>`): chains `dnat-<id>` (its DNAT rules) and `fwd-<id>` (accept of its
//!   ports), and elements pointing at them.
//!
//! As with iptables, a container's ports are added and removed by a constant-size transaction
//! written from its record alone; the kernel refuses it when the table is not as rbox's state
//! says (the first publish after boot or `nft flush ruleset`, an element a crashed container
//! left on the same port, its chains already taken away), and only then is the table read
//! (`state`) and repaired. A container's elements exist exactly as long as its chains: a repair
//! that takes a dead container's port removes all of it, so that container's own later removal
//! fails on its missing chains and cannot remove the new owner's elements.

mod render;
mod state;

use super::{enable_route_localnet, Firewall, FwNetwork, FwPorts};
use crate::error::{Error, Result};
use render::{
    delete_chains, net_chains, net_elements, net_links, net_rules, port_chains, port_elements,
    port_rules, skeleton, subnet_elements, write_chains, write_elements, BRIDGES, DNAT4, DNAT6,
    ISOLATION, MASQ4, MASQ6, NETWORKS, PUBLISHED4, PUBLISHED6, SUBNETS4, SUBNETS6,
};
use state::{key_subnet, keys_overlap, subnets_overlap, State};

pub(super) const NAME: &str = "nftables";
/// The tool the backend needs on PATH.
pub(super) const NFT: &str = "nft";
const TABLE: &str = "inet rbox";
/// Serialises rbox's reads and repairs of the table across processes and roots.
const LOCK: &str = "/run/rbox-nftables.lock";

pub struct Nftables;

fn lock() -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(std::path::Path::new(LOCK))?)
}

/// Applies `batch` as one transaction.
fn apply(what: &str, batch: &str) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    tracing::debug!(what, batch, "nft -f");
    super::command::run(NAME, NFT, &["-f", "-"], Some(batch)).map(|_| ())
}

/// The table as it is now (empty when it does not exist).
fn read() -> Result<State> {
    tracing::debug!("nft -j list table inet rbox");
    match super::command::run(NAME, NFT, &["-j", "list", "table", "inet", "rbox"], None) {
        Ok(json) => Ok(State::parse(&json)),
        Err(Error::Firewall { message, .. }) if message.contains("No such file or directory") => {
            Ok(State::default())
        }
        Err(e) => Err(e),
    }
}

/// Under the lock: applies `fast` (written from rbox's state alone); if the kernel refuses it,
/// reads the table and applies `repair(state)` instead. A refused transaction changed nothing.
fn apply_or_repair(what: &str, fast: &str, repair: impl FnOnce(&State) -> String) -> Result<()> {
    let _held = lock()?;
    match apply(what, fast) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(what, error = %e, "transaction refused; repairing from the table");
            apply(what, &repair(&read()?))
        }
    }
}

/// Under the lock: reads the table and applies `make(state)`.
fn with_state(what: &str, make: impl FnOnce(&State) -> String) -> Result<()> {
    let _held = lock()?;
    apply(what, &make(&read()?))
}

/// Deletes, where present, the elements pointing to `chains` and then the chains.
fn remove_owned(out: &mut String, st: &State, chains: &[String]) {
    let elems: Vec<(&'static str, String, Option<String>)> = st
        .pointing_to(chains)
        .filter_map(|e| collection(&e.collection).map(|c| (c, e.key.clone(), None)))
        .collect();
    write_elements(out, "delete", &elems);
    delete_chains(out, chains.iter().filter(|c| st.chains.contains(*c)));
}

/// The static name of a collection read back from the kernel.
fn collection(name: &str) -> Option<&'static str> {
    render::COLLECTIONS
        .iter()
        .map(|c| c.name)
        .find(|n| *n == name)
}

/// The container short ids whose chains elements of `st` point to, for `keep` elements.
fn owners(st: &State, keep: impl Fn(&state::Elem) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in st.elems.iter().filter(|e| keep(e)) {
        let id = e
            .target
            .as_deref()
            .and_then(|t| t.strip_prefix("dnat-").or_else(|| t.strip_prefix("fwd-")));
        if let Some(id) = id {
            if !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        }
    }
    out
}

/// Removes container `id`'s elements and chains present in `st`.
fn remove_container(out: &mut String, st: &State, id: &str) {
    remove_owned(out, st, &port_chains(id));
}

/// The transaction that adds a container's chains and elements, written from `p` alone.
fn add_batch(p: &FwPorts) -> String {
    let mut out = String::new();
    write_chains(&mut out, &port_rules(p));
    write_elements(&mut out, "add", &port_elements(p));
    out
}

/// The transaction that removes a container's chains and elements as `add_batch` made them;
/// refused when its chains are gone (a repair took its ports away).
fn drop_batch(p: &FwPorts) -> String {
    let mut out = String::new();
    write_elements(&mut out, "delete", &port_elements(p));
    delete_chains(&mut out, &port_chains(&p.short_id));
    out
}

/// The transaction that makes `p`'s rules present over what `st` shows: the shared part, no
/// stale container capturing its ports or holding its address, its own chains regenerated.
fn install_ports_batch(p: &FwPorts, st: &State) -> String {
    let mine = port_elements(p);
    let stale = owners(st, |e| {
        mine.iter().any(|(c, k, _)| {
            e.collection == *c
                && match *c {
                    DNAT4 | DNAT6 => keys_overlap(&e.key, k),
                    _ => e.key == *k,
                }
        })
    });
    let mut out = skeleton();
    for id in stale.iter().filter(|id| **id != p.short_id) {
        remove_container(&mut out, st, id);
    }
    // Its own elements are written again (they may point elsewhere after a crash).
    remove_owned(&mut out, st, &port_chains(&p.short_id));
    out += &add_batch(p);
    out
}

/// The transaction that installs `nets` over what `st` shows: elements of their bridges that
/// point to another network's chains (left by a network of the same bridge name), and subnet
/// elements that overlap theirs (the kernel refuses overlapping intervals), go first.
fn install_networks_batch(nets: &[FwNetwork], st: &State) -> String {
    let mut out = skeleton();
    for n in nets {
        let chains = net_chains(&n.short_id);
        let links = net_links(n);
        let mine = subnet_elements(n);
        let mut foreign: Vec<(&'static str, String, Option<String>)> = [ISOLATION, NETWORKS]
            .into_iter()
            .flat_map(|c| {
                links
                    .iter()
                    .flat_map(move |l| st.keyed(c, l).map(move |e| (c, e)))
            })
            .filter(|(_, e)| !e.target.as_ref().is_some_and(|t| chains.contains(t)))
            .map(|(c, e)| (c, e.key.clone(), None))
            .collect();
        for c in [SUBNETS4, SUBNETS6, MASQ4, MASQ6] {
            for e in st.elems.iter().filter(|e| e.collection == c) {
                let overlaps = key_subnet(&e.key)
                    .is_some_and(|s| n.subnets.iter().any(|m| subnets_overlap(s, *m)));
                let identical = mine.iter().any(|(mc, k, _)| *mc == c && *k == e.key);
                if overlaps && !identical {
                    foreign.push((c, e.key.clone(), None));
                }
            }
        }
        write_elements(&mut out, "delete", &foreign);
        write_chains(&mut out, &net_rules(n));
        write_elements(&mut out, "add", &net_elements(n));
    }
    out
}

/// The transaction that removes `net`'s chains and elements; with `whole_bridge` also whatever
/// its bridge (and tunnel) and subnets key, and the containers on its subnets.
fn remove_network_batch(net: &FwNetwork, whole_bridge: bool, st: &State) -> String {
    let mut out = String::new();
    if !whole_bridge {
        remove_owned(&mut out, st, &net_chains(&net.short_id));
        return out;
    }
    let mut keyed: Vec<(&'static str, String, Option<String>)> = Vec::new();
    for c in [BRIDGES, ISOLATION, NETWORKS] {
        for l in net_links(net) {
            keyed.extend(st.keyed(c, &l).map(|e| (c, e.key.clone(), None)));
        }
    }
    for c in [SUBNETS4, SUBNETS6, MASQ4, MASQ6] {
        for e in st.elems.iter().filter(|e| e.collection == c) {
            if key_subnet(&e.key).is_some_and(|s| net.subnets.contains(&s)) {
                keyed.push((c, e.key.clone(), None));
            }
        }
    }
    write_elements(&mut out, "delete", &keyed);
    let on_subnets = owners(st, |e| {
        (e.collection == PUBLISHED4 || e.collection == PUBLISHED6)
            && e.key
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| net.subnets.iter().any(|s| s.contains(ip)))
    });
    for id in on_subnets {
        remove_container(&mut out, st, &id);
    }
    // Its own chains, now unreferenced.
    let chains = net_chains(&net.short_id);
    delete_chains(&mut out, chains.iter().filter(|c| st.chains.contains(*c)));
    out
}

impl Firewall for Nftables {
    fn name(&self) -> &'static str {
        NAME
    }

    fn install_networks(&self, nets: &[FwNetwork]) -> Result<()> {
        with_state("install", |st| install_networks_batch(nets, st))
    }

    fn remove_network(&self, net: &FwNetwork, whole_bridge: bool) -> Result<()> {
        with_state("remove", |st| remove_network_batch(net, whole_bridge, st))
    }

    fn add_ports(&self, p: &FwPorts) -> Result<()> {
        if p.ports.is_empty() {
            return Ok(());
        }
        if p.family(false).is_some() {
            enable_route_localnet(&p.interface)?;
        }
        apply_or_repair("publish", &add_batch(p), |st| install_ports_batch(p, st))
    }

    fn repair_ports(&self, p: &FwPorts) -> Result<()> {
        if p.ports.is_empty() {
            return Ok(());
        }
        if p.family(false).is_some() {
            enable_route_localnet(&p.interface)?;
        }
        with_state("publish", |st| install_ports_batch(p, st))
    }

    fn remove_ports(&self, p: &FwPorts) -> Result<()> {
        if p.ports.is_empty() {
            return Ok(());
        }
        apply_or_repair("unpublish", &drop_batch(p), |st| {
            let mut out = String::new();
            remove_container(&mut out, st, &p.short_id);
            out
        })
    }
}

/// rbox's table for `nets` and `ports` as nft lists it (golden files).
#[cfg(test)]
pub(crate) fn ruleset(nets: &[FwNetwork], ports: &[FwPorts]) -> String {
    render::ruleset(nets, ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{FwPort, FwTarget};
    use crate::ports::Proto;

    fn net(id: &str, bridge: &str, subnet: &str) -> FwNetwork {
        FwNetwork {
            short_id: id.into(),
            bridge: bridge.into(),
            subnets: vec![subnet.parse().unwrap()],
            icc: true,
            masquerade: true,
            internal: false,
            tunnel: None,
        }
    }

    fn ports(id: &str, list: &[(&str, u16, u16, Proto)]) -> FwPorts {
        FwPorts {
            short_id: id.into(),
            interface: "rbox0".into(),
            v4: Some(FwTarget {
                subnet: "172.17.0.0/16".parse().unwrap(),
                ip: "172.17.0.2".parse().unwrap(),
            }),
            v6: None,
            ports: list
                .iter()
                .map(|(ip, h, c, proto)| FwPort {
                    host_ip: ip.parse().unwrap(),
                    host_port: *h,
                    container_port: *c,
                    proto: *proto,
                })
                .collect(),
        }
    }

    fn golden(name: &str, nets: &[FwNetwork], p: &[FwPorts]) {
        crate::firewall::check_golden(NAME, name, &ruleset(nets, p));
    }

    fn default_bridge() -> FwNetwork {
        net("aaaaaaaaaaaa", "rbox0", "172.17.0.0/16")
    }

    /// The same scenarios as the iptables golden files.
    #[test]
    fn golden_networks() {
        golden("empty", &[], &[]);
        golden("default-bridge", &[default_bridge()], &[]);
        golden(
            "user-bridge",
            &[net("bbbbbbbbbbbb", "rbox-bbbbbbbbbb", "172.18.0.0/16")],
            &[],
        );
        let mut internal = net("cccccccccccc", "rbox-cccccccccc", "172.19.0.0/16");
        internal.internal = true;
        golden("internal", &[internal], &[]);
        let mut icc = net("dddddddddddd", "rbox-dddddddddd", "172.20.0.0/16");
        icc.icc = false;
        golden("icc-false", &[icc], &[]);
        golden(
            "two-networks",
            &[
                default_bridge(),
                net("bbbbbbbbbbbb", "rbox-bbbbbbbbbb", "172.18.0.0/16"),
            ],
            &[],
        );
    }

    fn overlay(id: &str, vni: u32, subnet: &str, internal: bool) -> FwNetwork {
        let mut n = net(id, &format!("rbox-ov{vni}"), subnet);
        n.tunnel = Some(format!("rbox-vx{vni}"));
        n.internal = internal;
        n
    }

    /// The iptables golden file's scenario: overlays beside a bridge, one internal.
    #[test]
    fn golden_overlay_beside_a_bridge() {
        golden(
            "overlay",
            &[
                default_bridge(),
                overlay("eeeeeeeeeeee", 4096, "10.232.0.0/16", false),
                overlay("ffffffffffff", 4097, "10.233.0.0/16", true),
            ],
            &[],
        );
    }

    #[test]
    fn an_overlays_tunnel_is_installed_and_removed_with_its_bridge() {
        let n = overlay("eeeeeeeeeeee", 4096, "10.232.0.0/16", false);
        let b = install_networks_batch(std::slice::from_ref(&n), &State::default());
        for want in [
            "add element inet rbox bridges { \"rbox-ov4096\", \"rbox-vx4096\" }",
            "add element inet rbox subnets4 { 10.232.0.0/16 . \"rbox-ov4096\", 10.232.0.0/16 . \"rbox-vx4096\" }",
            "add rule inet rbox iso-eeeeeeeeeeee iifname \"rbox-ov4096\" oifname \"rbox-vx4096\" return",
        ] {
            assert!(b.contains(want), "{want} missing: {b}");
        }
        let st = state_with(
            &[
                ("bridges", "\"rbox-ov4096\"", None),
                ("bridges", "\"rbox-vx4096\"", None),
                ("isolation", "\"rbox-vx4096\"", Some("iso-eeeeeeeeeeee")),
                ("networks", "\"rbox-vx4096\"", Some("net-eeeeeeeeeeee")),
                ("subnets4", "10.232.0.0/16 . \"rbox-vx4096\"", None),
            ],
            &["iso-eeeeeeeeeeee", "net-eeeeeeeeeeee"],
        );
        let rm = remove_network_batch(&n, true, &st);
        for gone in [
            "delete element inet rbox bridges { \"rbox-ov4096\", \"rbox-vx4096\" }",
            "delete element inet rbox isolation { \"rbox-vx4096\" }",
            "delete element inet rbox networks { \"rbox-vx4096\" }",
            "delete element inet rbox subnets4 { 10.232.0.0/16 . \"rbox-vx4096\" }",
        ] {
            assert!(rm.contains(gone), "{gone} missing: {rm}");
        }
    }

    #[test]
    fn golden_ports() {
        let n = [default_bridge()];
        golden(
            "ports-published",
            &n,
            &[ports("eeeeeeeeeeee", &[("0.0.0.0", 8080, 80, Proto::Tcp)])],
        );
        golden(
            "ports-range",
            &n,
            &[ports(
                "eeeeeeeeeeee",
                &[
                    ("127.0.0.1", 8080, 80, Proto::Tcp),
                    ("127.0.0.1", 8081, 81, Proto::Tcp),
                    ("127.0.0.1", 8082, 82, Proto::Tcp),
                ],
            )],
        );
        golden(
            "ports-udp",
            &n,
            &[ports("eeeeeeeeeeee", &[("0.0.0.0", 5353, 53, Proto::Udp)])],
        );
    }

    #[test]
    fn publishing_is_one_constant_transaction_of_the_containers_own_objects() {
        let a = ports("aaaaaaaaaaaa", &[("0.0.0.0", 8080, 80, Proto::Tcp)]);
        let add = add_batch(&a);
        // Nothing shared is declared or flushed: its size depends on `a` alone.
        assert!(!add.contains("add table") && !add.contains("flush chain inet rbox forward"));
        assert_eq!(
            add,
            "add chain inet rbox dnat-aaaaaaaaaaaa\nflush chain inet rbox dnat-aaaaaaaaaaaa\n\
             add rule inet rbox dnat-aaaaaaaaaaaa meta nfproto ipv4 tcp dport 8080 dnat ip to 172.17.0.2:80\n\
             add chain inet rbox fwd-aaaaaaaaaaaa\nflush chain inet rbox fwd-aaaaaaaaaaaa\n\
             add rule inet rbox fwd-aaaaaaaaaaaa tcp dport 80 accept\n\
             add element inet rbox published4 { 172.17.0.2 : jump fwd-aaaaaaaaaaaa }\n\
             add element inet rbox dnat4 { 0.0.0.0/0 . tcp . 8080 : jump dnat-aaaaaaaaaaaa }\n"
        );
        let drop = drop_batch(&a);
        assert!(drop.contains("delete element inet rbox dnat4 { 0.0.0.0/0 . tcp . 8080 }"));
        assert!(
            drop.ends_with("delete chain inet rbox fwd-aaaaaaaaaaaa\n"),
            "{drop}"
        );
    }

    fn state_with(elems: &[(&str, &str, Option<&str>)], chains: &[&str]) -> State {
        State {
            chains: chains.iter().map(|c| c.to_string()).collect(),
            elems: elems
                .iter()
                .map(|(c, k, t)| state::Elem {
                    collection: c.to_string(),
                    key: k.to_string(),
                    target: t.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn repair_removes_whole_stale_containers_capturing_the_ports_and_no_one_else() {
        let st = state_with(
            &[
                ("dnat4", "127.0.0.1 . tcp . 8080", Some("dnat-dddddddddddd")),
                ("dnat4", "0.0.0.0/0 . udp . 9090", Some("dnat-dddddddddddd")),
                ("published4", "172.17.0.9", Some("fwd-dddddddddddd")),
                ("dnat4", "127.0.0.1 . tcp . 8081", Some("dnat-cccccccccccc")),
                ("published4", "172.17.0.3", Some("fwd-cccccccccccc")),
            ],
            &[
                "dnat-dddddddddddd",
                "fwd-dddddddddddd",
                "dnat-cccccccccccc",
                "fwd-cccccccccccc",
            ],
        );
        let new = ports("ffffffffffff", &[("0.0.0.0", 8080, 80, Proto::Tcp)]);
        let b = install_ports_batch(&new, &st);
        assert!(b.starts_with("add table inet rbox\n"), "{b}");
        for gone in [
            "delete element inet rbox dnat4 { 127.0.0.1 . tcp . 8080, 0.0.0.0/0 . udp . 9090 }",
            "delete element inet rbox published4 { 172.17.0.9 }",
            "delete chain inet rbox dnat-dddddddddddd",
            "delete chain inet rbox fwd-dddddddddddd",
        ] {
            assert!(b.contains(gone), "{gone} missing: {b}");
        }
        assert!(
            !b.contains("cccccccccccc"),
            "a live container on another port stays: {b}"
        );
        assert!(b.contains(
            "add element inet rbox dnat4 { 0.0.0.0/0 . tcp . 8080 : jump dnat-ffffffffffff }"
        ));
        // Its address held by a dead container: that one goes too.
        let reuse = FwPorts {
            v4: Some(FwTarget {
                subnet: "172.17.0.0/16".parse().unwrap(),
                ip: "172.17.0.3".parse().unwrap(),
            }),
            ..ports("ffffffffffff", &[("0.0.0.0", 7070, 70, Proto::Tcp)])
        };
        assert!(
            install_ports_batch(&reuse, &st).contains("delete chain inet rbox fwd-cccccccccccc")
        );
    }

    #[test]
    fn network_removal_spares_what_another_network_of_the_bridge_relies_on() {
        let n = default_bridge();
        let st = state_with(
            &[
                ("bridges", "\"rbox0\"", None),
                ("subnets4", "172.17.0.0/16 . \"rbox0\"", None),
                ("masquerade4", "172.17.0.0/16", None),
                ("networks", "\"rbox0\"", Some("net-aaaaaaaaaaaa")),
                ("isolation", "\"rbox0\"", Some("iso-aaaaaaaaaaaa")),
                ("published4", "172.17.0.2", Some("fwd-eeeeeeeeeeee")),
                ("dnat4", "0.0.0.0/0 . tcp . 8080", Some("dnat-eeeeeeeeeeee")),
                ("published4", "10.9.0.2", Some("fwd-ffffffffffff")),
            ],
            &[
                "iso-aaaaaaaaaaaa",
                "net-aaaaaaaaaaaa",
                "dnat-eeeeeeeeeeee",
                "fwd-eeeeeeeeeeee",
            ],
        );
        let own = remove_network_batch(&n, false, &st);
        assert!(
            own.contains("delete chain inet rbox net-aaaaaaaaaaaa"),
            "{own}"
        );
        for kept in ["bridges", "subnets4", "masquerade4", "eeeeeeeeeeee"] {
            assert!(
                !own.contains(kept),
                "{kept} removed without the bridge: {own}"
            );
        }
        let whole = remove_network_batch(&n, true, &st);
        for gone in [
            "delete element inet rbox bridges { \"rbox0\" }",
            "delete element inet rbox subnets4 { 172.17.0.0/16 . \"rbox0\" }",
            "delete element inet rbox masquerade4 { 172.17.0.0/16 }",
            "delete chain inet rbox dnat-eeeeeeeeeeee",
            "delete chain inet rbox iso-aaaaaaaaaaaa",
        ] {
            assert!(whole.contains(gone), "{gone} missing: {whole}");
        }
        assert!(
            !whole.contains("ffffffffffff"),
            "a container elsewhere stays: {whole}"
        );
        // A network of the same bridge name elsewhere: its elements are replaced on install.
        let other = net("bbbbbbbbbbbb", "rbox0", "172.18.0.0/16");
        let b = install_networks_batch(&[other], &st);
        assert!(
            b.contains("delete element inet rbox networks { \"rbox0\" }"),
            "{b}"
        );
        assert!(b.contains("add element inet rbox networks { \"rbox0\" : jump net-bbbbbbbbbbbb }"));
        // Its subnet does not overlap the other's: those elements stay.
        assert!(!b.contains("delete element inet rbox subnets4"), "{b}");
    }
}
