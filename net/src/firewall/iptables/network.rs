//! iptables rules of bridge networks (see the layout in `super`).

use ipnetwork::IpNetwork;

use super::save::Table;
use crate::firewall::FwNetwork;

pub const USER: &str = "RBOX-USER";
pub const FORWARD: &str = "RBOX-FORWARD";
pub const ISOLATION: &str = "RBOX-ISOLATION";
pub const ISOLATION2: &str = "RBOX-ISOLATION-2";
pub const POSTROUTING: &str = "RBOX-POSTROUTING";

/// One family's view of a network: what its rules in iptables or ip6tables depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyNet {
    pub short_id: String,
    pub bridge: String,
    pub subnet: IpNetwork,
    pub icc: bool,
    pub masquerade: bool,
    pub internal: bool,
    /// The VXLAN link of a network spanning hosts (see `FwNetwork::tunnel`).
    pub tunnel: Option<String>,
}

impl FamilyNet {
    /// `net` as seen by one family; `None` when it has no subnet of that family.
    pub fn of(net: &FwNetwork, v6: bool) -> Option<FamilyNet> {
        let subnet = *net.subnets.iter().find(|s| s.is_ipv6() == v6)?;
        Some(FamilyNet {
            short_id: net.short_id.clone(),
            bridge: net.bridge.clone(),
            subnet,
            icc: net.icc,
            masquerade: net.masquerade,
            internal: net.internal,
            tunnel: net.tunnel.clone(),
        })
    }
}

pub fn chain(net: &FamilyNet) -> String {
    format!("RBOX-N-{}", net.short_id)
}

/// The rules of `net`'s own chain, in order.
pub fn own_rules(net: &FamilyNet) -> Vec<String> {
    let (c, b) = (chain(net), &net.bridge);
    let icc = if net.icc { "ACCEPT" } else { "DROP" };
    let mut rules = vec![format!("-A {c} -i {b} -o {b} -j {icc}")];
    if let Some(t) = &net.tunnel {
        // The network's other hosts, and nothing else, through the tunnel.
        rules.push(format!("-A {c} -i {b} -o {t} -j {icc}"));
        rules.push(format!("-A {c} -i {t} -o {b} -j {icc}"));
        rules.push(format!("-A {c} -i {t} -j DROP"));
        rules.push(format!("-A {c} -o {t} -j DROP"));
    }
    if net.internal {
        rules.push(format!("-A {c} -i {b} ! -o {b} -j DROP"));
        rules.push(format!("-A {c} ! -i {b} -o {b} -j DROP"));
    } else {
        rules.push(format!(
            "-A {c} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        rules.push(format!("-A {c} -i {b} ! -o {b} -j ACCEPT"));
    }
    rules
}

/// The rules `net` adds to the shared filter chains: the jumps to its own chain, then the
/// isolation of its bridge (and tunnel). Isolation between networks spares DNATed traffic, so
/// a container reaches a port another network's container publishes through the host's address
/// as it would from outside; an internal network sends nothing off its bridge, published ports
/// included. A tunnel is isolated like a bridge, except from its own network's bridge, whose
/// RETURN goes first in RBOX-ISOLATION (`install_batch` inserts it at the top).
pub fn shared_filter_rules(net: &FamilyNet) -> Vec<String> {
    let mut rules = jumps(net);
    rules.extend(bridge_rules(net));
    rules
}

/// The jumps to `net`'s own chain.
fn jumps(net: &FamilyNet) -> Vec<String> {
    let (c, b) = (chain(net), &net.bridge);
    let mut rules = vec![
        format!("-A {FORWARD} -i {b} -j {c}"),
        format!("-A {FORWARD} -o {b} -j {c}"),
    ];
    if let Some(t) = &net.tunnel {
        rules.push(format!("-A {FORWARD} -i {t} -j {c}"));
        rules.push(format!("-A {FORWARD} -o {t} -j {c}"));
    }
    rules
}

/// The isolation rules of `net`'s bridge (and tunnel).
fn bridge_rules(net: &FamilyNet) -> Vec<String> {
    let b = &net.bridge;
    let mut rules = Vec::new();
    if let Some(t) = &net.tunnel {
        rules.push(tunnel_return(b, t));
    }
    rules.push(stage1(b, net.internal));
    if let Some(t) = &net.tunnel {
        rules.push(format!("-A {ISOLATION} -i {t} ! -o {b} -j DROP"));
    }
    rules.push(stage2(b));
    if let Some(t) = &net.tunnel {
        rules.push(stage2(t));
    }
    rules
}

fn stage1(b: &str, internal: bool) -> String {
    let to = if internal { "DROP" } else { ISOLATION2 };
    format!("-A {ISOLATION} -i {b} ! -o {b} -j {to}")
}

fn stage2(link: &str) -> String {
    format!("-A {ISOLATION2} -o {link} -m conntrack ! --ctstate DNAT -j DROP")
}

/// Lets a bridge's traffic into its own network's tunnel past the isolation chain.
fn tunnel_return(bridge: &str, tunnel: &str) -> String {
    format!("-A {ISOLATION} -i {bridge} -o {tunnel} -j RETURN")
}

/// Shared rules of `net`'s bridge that it does not have now but may have had: the other form
/// of stage 1 (`--internal` of an earlier network of that bridge) and session 2's stage 2,
/// which dropped DNATed traffic too. Installing replaces them, removing deletes them.
fn other_forms(net: &FamilyNet) -> Vec<String> {
    vec![
        stage1(&net.bridge, !net.internal),
        format!("-A {ISOLATION2} -o {} -j DROP", net.bridge),
    ]
}

/// The masquerade of `net`'s outbound traffic (present or not): not out of its bridge, or for
/// a network spanning hosts, not to the network itself.
fn masquerade_rule(net: &FamilyNet) -> String {
    match &net.tunnel {
        Some(_) => format!(
            "-A {POSTROUTING} -s {} ! -d {} -j MASQUERADE",
            net.subnet, net.subnet
        ),
        None => format!(
            "-A {POSTROUTING} -s {} ! -o {} -j MASQUERADE",
            net.subnet, net.bridge
        ),
    }
}

/// The rules `net` adds to the shared nat chain.
pub fn nat_rules(net: &FamilyNet) -> Vec<String> {
    if net.masquerade && !net.internal {
        vec![masquerade_rule(net)]
    } else {
        Vec::new()
    }
}

const FILTER_JUMPS: [&str; 3] = [USER, ISOLATION, FORWARD];
const NAT_JUMP: &str = "-A POSTROUTING -j RBOX-POSTROUTING";

/// The whole of rbox's rules for `nets` in `iptables-save` form: what the host shows when only
/// these networks exist. Used by golden files and as the model the batches realise.
#[cfg(test)]
pub fn ruleset(nets: &[FamilyNet]) -> String {
    // iptables-save lists user chains by name, then rules chain by chain in that order.
    let mut chains: Vec<String> = [FORWARD, ISOLATION, ISOLATION2, USER]
        .map(String::from)
        .to_vec();
    chains.extend(nets.iter().map(chain));
    chains.sort();
    let mut out = String::from("*filter\n");
    for c in &chains {
        out += &format!(":{c} - [0:0]\n");
    }
    let mut rules: Vec<String> = FILTER_JUMPS
        .iter()
        .map(|j| format!("-A FORWARD -j {j}"))
        .collect();
    for n in nets {
        rules.extend(shared_filter_rules(n));
        rules.extend(own_rules(n));
    }
    let mut order = vec!["FORWARD".to_string()];
    order.extend(chains);
    let rank = |r: &String| {
        order
            .iter()
            .position(|c| r.split(' ').nth(1) == Some(c.as_str()))
    };
    // A tunnel's RETURN is inserted at the top of its chain.
    rules.sort_by_key(|r| (rank(r), !r.ends_with("-j RETURN")));
    for r in rules {
        out += &r;
        out.push('\n');
    }
    out += "COMMIT\n*nat\n";
    out += &format!(":{POSTROUTING} - [0:0]\n{NAT_JUMP}\n");
    for n in nets {
        for r in nat_rules(n) {
            out += &r;
            out.push('\n');
        }
    }
    out += "COMMIT\n";
    out
}

/// The batch that makes `nets`' rules present, given the current state.
pub(super) fn install_batch(nets: &[FamilyNet], filter: &Table, nat: &Table) -> String {
    let mut out = String::from("*filter\n");
    for c in [USER, FORWARD, ISOLATION, ISOLATION2] {
        if !filter.has_chain(c) {
            out += &format!(":{c} - [0:0]\n");
        }
    }
    // Declaring an existing chain in a --noflush batch flushes it: that regenerates a network's
    // own chain in one step without touching anything else.
    for n in nets {
        out += &format!(":{} - [0:0]\n", chain(n));
    }
    if FILTER_JUMPS
        .iter()
        .any(|j| !filter.has_rule(&format!("-A FORWARD -j {j}")))
    {
        for j in FILTER_JUMPS {
            if filter.has_rule(&format!("-A FORWARD -j {j}")) {
                out += &format!("-D FORWARD -j {j}\n");
            }
        }
        for j in FILTER_JUMPS.iter().rev() {
            out += &format!("-I FORWARD 1 -j {j}\n");
        }
    }
    for n in nets {
        for r in other_forms(n) {
            if filter.has_rule(&r) {
                out += &format!("-D{}\n", &r[2..]);
            }
        }
        for r in shared_filter_rules(n) {
            if filter.has_rule(&r) {
                continue;
            }
            let ret = n.tunnel.as_ref().map(|t| tunnel_return(&n.bridge, t));
            if ret.as_ref() == Some(&r) {
                out += &format!("-I {ISOLATION} 1{}\n", &r[2 + ISOLATION.len() + 1..]);
            } else {
                out += &r;
                out.push('\n');
            }
        }
        for r in own_rules(n) {
            out += &r;
            out.push('\n');
        }
    }
    out += "COMMIT\n*nat\n";
    if !nat.has_chain(POSTROUTING) {
        out += &format!(":{POSTROUTING} - [0:0]\n");
    }
    if !nat.has_rule(NAT_JUMP) {
        out += "-I POSTROUTING 1 -j RBOX-POSTROUTING\n";
    }
    for n in nets {
        for r in nat_rules(n) {
            if !nat.has_rule(&r) {
                out += &r;
                out.push('\n');
            }
        }
    }
    out += "COMMIT\n";
    out
}

/// The batch that removes `net`'s rules that are present. With `whole_bridge` also those of
/// its bridge in any form they had, and the port rules of containers reached through it (none
/// of them can be alive when their network goes; an idle bridge another root left goes this
/// way too); without, only its own chain and the jumps to it.
pub(super) fn remove_batch(
    net: &FamilyNet,
    whole_bridge: bool,
    filter: &Table,
    nat: &Table,
) -> String {
    let mut out = String::from("*filter\n");
    let mut gone: Vec<String> = jumps(net);
    if whole_bridge {
        gone.extend(bridge_rules(net).into_iter().chain(other_forms(net)));
    }
    gone.dedup();
    for r in gone {
        if filter.has_rule(&r) {
            out += &format!("-D{}\n", &r[2..]);
        }
    }
    let mut ports_nat = String::new();
    if whole_bridge {
        let (f, n) = super::dnat::remove_reached_through(&net.bridge, filter, nat);
        out += &f;
        ports_nat = n;
    }
    let c = chain(net);
    if filter.has_chain(&c) {
        out += &format!("-F {c}\n-X {c}\n");
    }
    out += "COMMIT\n*nat\n";
    out += &ports_nat;
    let masq = masquerade_rule(net);
    if whole_bridge && nat.has_rule(&masq) {
        out += &format!("-D{}\n", &masq[2..]);
    }
    out += "COMMIT\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, bridge: &str, subnet: &str) -> FamilyNet {
        FamilyNet {
            short_id: id.into(),
            bridge: bridge.into(),
            subnet: subnet.parse().unwrap(),
            icc: true,
            masquerade: true,
            internal: false,
            tunnel: None,
        }
    }

    fn golden(name: &str, nets: &[FamilyNet]) {
        crate::firewall::check_golden(super::super::NAME, name, &ruleset(nets));
    }

    #[test]
    fn golden_empty() {
        golden("empty", &[]);
    }

    #[test]
    fn golden_default_bridge() {
        golden(
            "default-bridge",
            &[net("aaaaaaaaaaaa", "rbox0", "172.17.0.0/16")],
        );
    }

    #[test]
    fn golden_user_bridge() {
        golden(
            "user-bridge",
            &[net("bbbbbbbbbbbb", "rbox-bbbbbbbbbb", "172.18.0.0/16")],
        );
    }

    #[test]
    fn golden_internal() {
        let mut n = net("cccccccccccc", "rbox-cccccccccc", "172.19.0.0/16");
        n.internal = true;
        golden("internal", &[n]);
    }

    #[test]
    fn golden_icc_false() {
        let mut n = net("dddddddddddd", "rbox-dddddddddd", "172.20.0.0/16");
        n.icc = false;
        golden("icc-false", &[n]);
    }

    #[test]
    fn golden_two_networks() {
        golden(
            "two-networks",
            &[
                net("aaaaaaaaaaaa", "rbox0", "172.17.0.0/16"),
                net("bbbbbbbbbbbb", "rbox-bbbbbbbbbb", "172.18.0.0/16"),
            ],
        );
    }

    fn overlay(id: &str, vni: u32, subnet: &str, internal: bool) -> FamilyNet {
        let mut n = net(id, &format!("rbox-ov{vni}"), subnet);
        n.tunnel = Some(format!("rbox-vx{vni}"));
        n.internal = internal;
        n
    }

    #[test]
    fn golden_overlay_beside_a_bridge() {
        golden(
            "overlay",
            &[
                net("aaaaaaaaaaaa", "rbox0", "172.17.0.0/16"),
                overlay("eeeeeeeeeeee", 4096, "10.232.0.0/16", false),
                overlay("ffffffffffff", 4097, "10.233.0.0/16", true),
            ],
        );
    }

    #[test]
    fn a_tunnel_return_goes_first_and_removal_finds_the_overlay_masquerade() {
        let n = overlay("eeeeeeeeeeee", 4096, "10.232.0.0/16", false);
        let empty = Table::default();
        let first = install_batch(std::slice::from_ref(&n), &empty, &empty);
        assert!(
            first.contains("-I RBOX-ISOLATION 1 -i rbox-ov4096 -o rbox-vx4096 -j RETURN\n"),
            "{first}"
        );
        assert!(
            first.contains("-A RBOX-POSTROUTING -s 10.232.0.0/16 ! -d 10.232.0.0/16 -j MASQUERADE")
        );
        let full = ruleset(std::slice::from_ref(&n));
        let (f, t) = (Table::parse(&full, "filter"), Table::parse(&full, "nat"));
        let rm = remove_batch(&n, true, &f, &t);
        assert!(
            rm.contains("-D RBOX-ISOLATION -i rbox-ov4096 -o rbox-vx4096 -j RETURN"),
            "{rm}"
        );
        assert!(
            rm.contains("-D RBOX-ISOLATION-2 -o rbox-vx4096 -m conntrack ! --ctstate DNAT -j DROP"),
            "{rm}"
        );
        assert!(
            rm.contains("-D RBOX-POSTROUTING -s 10.232.0.0/16 ! -d 10.232.0.0/16 -j MASQUERADE"),
            "{rm}"
        );
    }

    #[test]
    fn batches_add_only_missing_shared_rules_and_remove_only_present() {
        let n = net("aaaaaaaaaaaa", "br-a", "10.0.0.0/24");
        let empty = Table::default();
        let first = install_batch(std::slice::from_ref(&n), &empty, &empty);
        assert!(first.contains(":RBOX-FORWARD - [0:0]"));
        assert!(first.contains("-I FORWARD 1 -j RBOX-USER"));
        // Once everything exists, a re-install only regenerates the network's own chain.
        let full = ruleset(std::slice::from_ref(&n));
        let (f, t) = (Table::parse(&full, "filter"), Table::parse(&full, "nat"));
        let again = install_batch(std::slice::from_ref(&n), &f, &t);
        assert!(
            !again.contains(":RBOX-FORWARD"),
            "shared chain would be flushed: {again}"
        );
        assert!(
            !again.contains("-A RBOX-FORWARD"),
            "duplicate shared rule: {again}"
        );
        assert!(again.contains(":RBOX-N-aaaaaaaaaaaa - [0:0]"));
        let rm = remove_batch(&n, true, &f, &t);
        assert!(rm.contains("-D RBOX-FORWARD -i br-a -j RBOX-N-aaaaaaaaaaaa"));
        assert!(rm.contains("-X RBOX-N-aaaaaaaaaaaa"));
        assert!(rm.contains("-D RBOX-POSTROUTING -s 10.0.0.0/24 ! -o br-a -j MASQUERADE"));
        let none = remove_batch(&n, true, &empty, &empty);
        assert_eq!(none, "*filter\nCOMMIT\n*nat\nCOMMIT\n");
    }

    #[test]
    fn removal_spares_what_another_network_of_the_bridge_relies_on() {
        let n = net("aaaaaaaaaaaa", "br-a", "10.0.0.0/24");
        // A container of a's reached through br-a, and one elsewhere.
        let mut text = ruleset(std::slice::from_ref(&n));
        text = text.replace(
            "COMMIT\n*nat\n",
            ":RBOX-P-c1c1c1c1c1c1 - [0:0]\n\
             -A RBOX-P-c1c1c1c1c1c1 -d 10.0.0.2/32 -o br-a -p tcp -m tcp --dport 80 -j ACCEPT\n\
             :RBOX-P-c2c2c2c2c2c2 - [0:0]\n\
             -A RBOX-P-c2c2c2c2c2c2 -d 10.9.0.2/32 -o br-b -p tcp -m tcp --dport 80 -j ACCEPT\n\
             COMMIT\n*nat\n",
        );
        let (f, t) = (Table::parse(&text, "filter"), Table::parse(&text, "nat"));
        let own = remove_batch(&n, false, &f, &t);
        assert!(own.contains("-X RBOX-N-aaaaaaaaaaaa"), "{own}");
        assert!(
            own.contains("-D RBOX-FORWARD -o br-a -j RBOX-N-aaaaaaaaaaaa"),
            "{own}"
        );
        for kept in ["RBOX-ISOLATION", "MASQUERADE", "c1c1c1c1c1c1"] {
            assert!(
                !own.contains(kept),
                "{kept} removed without the bridge: {own}"
            );
        }
        let whole = remove_batch(&n, true, &f, &t);
        assert!(whole.contains("-X RBOX-P-c1c1c1c1c1c1"), "{whole}");
        assert!(!whole.contains("c2c2c2c2c2c2"), "{whole}");
        assert!(whole.contains("-D RBOX-ISOLATION -i br-a ! -o br-a -j RBOX-ISOLATION-2"));
    }

    #[test]
    fn install_replaces_other_forms_of_the_bridges_rules() {
        let mut n = net("aaaaaaaaaaaa", "br-a", "10.0.0.0/24");
        // Session 2's stage 2, and the bridge's network was not internal then.
        let old = ruleset(std::slice::from_ref(&n)).replace(
            "-A RBOX-ISOLATION-2 -o br-a -m conntrack ! --ctstate DNAT -j DROP",
            "-A RBOX-ISOLATION-2 -o br-a -j DROP",
        );
        n.internal = true;
        let (f, t) = (Table::parse(&old, "filter"), Table::parse(&old, "nat"));
        let b = install_batch(std::slice::from_ref(&n), &f, &t);
        for want in [
            "-D RBOX-ISOLATION-2 -o br-a -j DROP",
            "-D RBOX-ISOLATION -i br-a ! -o br-a -j RBOX-ISOLATION-2",
            "-A RBOX-ISOLATION -i br-a ! -o br-a -j DROP",
            "-A RBOX-ISOLATION-2 -o br-a -m conntrack ! --ctstate DNAT -j DROP",
        ] {
            assert!(b.contains(want), "{want} missing: {b}");
        }
    }
}
