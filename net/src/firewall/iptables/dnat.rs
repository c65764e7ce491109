//! iptables rules of published ports: kernel DNAT.
//!
//! Layout (shared chains are created once and never flushed; each container owns its chains,
//! so publishing costs one constant-size batch whatever else is published). Publishing and
//! unpublishing write that batch from the container's record alone (`add_batch`, `drop_batch`):
//! one `iptables-restore` fork, no `iptables-save`. Only when the kernel refuses it (the first
//! publish in a network namespace, when the shared chains do not exist yet, or rules that a
//! crash or an `iptables -F` changed) is the state read and repaired (`install_batch`,
//! `remove_batch`), which also removes stale chains of dead containers capturing the ports.
//! A v6 DNAT for `[::]` leaves `::1` alone (the kernel cannot forward it, see `proxy`; an
//! explicit `[::1]` binding is served by a userland proxy instead, with no rule).
//! - nat `PREROUTING` and `OUTPUT` jump to `RBOX-DNAT` for destination-local traffic, loopback
//!   included (`route_localnet=1` on the bridge lets 127.0.0.1 be routed to it).
//! - nat `RBOX-DNAT -j RBOX-P-<id12>`, inserted first so a newer container wins over any stale
//!   chain; `RBOX-P-<id12>` holds one DNAT per published port.
//! - nat `RBOX-POSTROUTING -j RBOX-PM-<id12>`: MASQUERADE for DNATed traffic to the container
//!   that comes from the host itself (127.0.0.1 must not reach the bridge) or from its own
//!   subnet (hairpin and siblings, whose replies would otherwise bypass the un-DNAT).
//! - filter `RBOX-FORWARD` starts with `-j RBOX-PORTS`, which jumps to filter `RBOX-P-<id12>`:
//!   ACCEPT of DNATed traffic to each published container port (also with icc=false and under
//!   a FORWARD DROP policy).
//! - filter `INPUT -j RBOX-INPUT` drops non-loopback packets to 127.0.0.0/8 that are not replies:
//!   `route_localnet=1` would otherwise let containers reach the host's loopback services.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::network::{FORWARD, POSTROUTING};
use super::save::Table;
use crate::firewall::{FwPort, FwPorts};

pub const DNAT: &str = "RBOX-DNAT";
pub const PORTS: &str = "RBOX-PORTS";
pub const INPUT: &str = "RBOX-INPUT";

const PREROUTING_JUMP: &str = "-A PREROUTING -m addrtype --dst-type LOCAL -j RBOX-DNAT";
const OUTPUT_JUMP: &str = "-A OUTPUT -m addrtype --dst-type LOCAL -j RBOX-DNAT";
const FORWARD_JUMP: &str = "-A RBOX-FORWARD -j RBOX-PORTS";
const INPUT_JUMP: &str = "-A INPUT -j RBOX-INPUT";
const POSTROUTING_JUMP: &str = "-A POSTROUTING -j RBOX-POSTROUTING";

/// One family's view of a container's published ports.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyPorts {
    /// First 12 hex digits of the container id: names the container's chains.
    pub short_id: String,
    pub bridge: String,
    pub subnet: IpNetwork,
    pub container_ip: IpAddr,
    pub ports: Vec<FwPort>,
}

impl FamilyPorts {
    /// `p`'s ports of one family; `None` when it has none there.
    pub fn of(p: &FwPorts, v6: bool) -> Option<FamilyPorts> {
        let (target, ports) = p.family(v6)?;
        Some(FamilyPorts {
            short_id: p.short_id.clone(),
            bridge: p.interface.clone(),
            subnet: target.subnet,
            container_ip: target.ip,
            ports: ports.into_iter().cloned().collect(),
        })
    }
}

pub fn chain(p: &FamilyPorts) -> String {
    format!("RBOX-P-{}", p.short_id)
}

pub fn masq_chain(p: &FamilyPorts) -> String {
    format!("RBOX-PM-{}", p.short_id)
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

fn to(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// nat `RBOX-P-<id>`: one DNAT per port. An unspecified host IP matches every local address
/// (the jump into `RBOX-DNAT` already limits it to them).
pub fn dnat_rules(p: &FamilyPorts) -> Vec<String> {
    let c = chain(p);
    p.ports
        .iter()
        .map(|port| {
            let dst = if port.host_ip.is_unspecified() && p.container_ip.is_ipv6() {
                // [::]:port must leave [::1]:port alone: replies could not come back to ::1
                // (see proxy.rs), so a DNAT would only turn a refused connection
                // into a hang.
                "! -d ::1/128 ".to_string()
            } else if port.host_ip.is_unspecified() {
                String::new()
            } else {
                format!("-d {} ", host(port.host_ip))
            };
            format!(
                "-A {c} {dst}-p {proto} -m {proto} --dport {hp} -j DNAT --to-destination {to}",
                proto = port.proto,
                hp = port.host_port,
                to = to(p.container_ip, port.container_port)
            )
        })
        .collect()
}

/// nat `RBOX-PM-<id>`: MASQUERADE of DNATed traffic from the host's loopback (127.0.0.0/8 must
/// not reach the bridge; IPv6 loopback is never DNATed) and from the subnet (hairpin and
/// siblings, whose replies would otherwise bypass the un-DNAT). The host's other addresses keep
/// their source: the container replies through its gateway, and many local sources never share
/// one masqueraded address (whose reused ports met the container's TIME_WAITs).
pub fn masq_rules(p: &FamilyPorts) -> Vec<String> {
    let (c, ip, b) = (masq_chain(p), host(p.container_ip), &p.bridge);
    let mut rules = Vec::new();
    if !is_v6(p) {
        rules.push(format!(
            "-A {c} -s {} -d {ip} -o {b} -m conntrack --ctstate DNAT -j MASQUERADE",
            loopback(false)
        ));
    }
    rules.push(format!(
        "-A {c} -s {} -d {ip} -o {b} -m conntrack --ctstate DNAT -j MASQUERADE",
        p.subnet
    ));
    rules
}

/// filter `RBOX-P-<id>`: accept DNATed traffic to each published container port.
pub fn filter_rules(p: &FamilyPorts) -> Vec<String> {
    let (c, ip, b) = (chain(p), host(p.container_ip), &p.bridge);
    let mut seen = Vec::new();
    for port in &p.ports {
        let r = format!(
            "-A {c} -d {ip} -o {b} -p {proto} -m {proto} --dport {cp} -m conntrack --ctstate DNAT -j ACCEPT",
            proto = port.proto,
            cp = port.container_port
        );
        if !seen.contains(&r) {
            seen.push(r);
        }
    }
    seen
}

fn loopback(v6: bool) -> &'static str {
    if v6 {
        "::1/128"
    } else {
        "127.0.0.0/8"
    }
}

fn input_rule(v6: bool) -> String {
    format!(
        "-A {INPUT} -d {} ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP",
        loopback(v6)
    )
}

fn is_v6(p: &FamilyPorts) -> bool {
    p.container_ip.is_ipv6()
}

/// rbox's port rules for `containers` in `iptables-save` form (chains sorted, rules grouped by
/// chain): what golden files hold. The network's own rules are in `iptables::ruleset`.
#[cfg(test)]
pub fn ruleset(containers: &[FamilyPorts]) -> String {
    let v6 = containers.first().is_some_and(is_v6);
    let mut filter_chains = vec![INPUT.to_string(), PORTS.to_string()];
    filter_chains.extend(containers.iter().map(chain));
    filter_chains.sort();
    let mut out = String::from("*filter\n");
    for c in &filter_chains {
        out += &format!(":{c} - [0:0]\n");
    }
    out += &format!("{INPUT_JUMP}\n{FORWARD_JUMP}\n{}\n", input_rule(v6));
    for p in containers {
        out += &format!("-A {PORTS} -j {}\n", chain(p));
    }
    for p in containers {
        for r in filter_rules(p) {
            out += &r;
            out.push('\n');
        }
    }
    out += "COMMIT\n*nat\n";
    let mut nat_chains = vec![DNAT.to_string()];
    for p in containers {
        nat_chains.push(chain(p));
        nat_chains.push(masq_chain(p));
    }
    nat_chains.sort();
    for c in &nat_chains {
        out += &format!(":{c} - [0:0]\n");
    }
    out += &format!("{PREROUTING_JUMP}\n{OUTPUT_JUMP}\n");
    // Each new container's jump goes first: the newest is listed first.
    for p in containers.iter().rev() {
        out += &format!("-A {DNAT} -j {}\n", chain(p));
    }
    for p in containers.iter().rev() {
        out += &format!("-A {POSTROUTING} -j {}\n", masq_chain(p));
    }
    for p in containers {
        for r in dnat_rules(p).into_iter().chain(masq_rules(p)) {
            out += &r;
            out.push('\n');
        }
    }
    out += "COMMIT\n";
    out
}

/// Whether a DNAT rule line of another container captures what `port` publishes: same
/// protocol and host port, and host addresses that overlap (equal, or either unspecified).
fn captures(rule: &str, port: &FwPort) -> bool {
    let words: Vec<&str> = rule.split(' ').collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1).copied())
    };
    if after("-j") != Some("DNAT")
        || after("-p") != Some(port.proto.as_str())
        || after("--dport") != Some(&port.host_port.to_string())
    {
        return false;
    }
    let negated = words
        .iter()
        .position(|w| *w == "-d")
        .is_some_and(|i| i > 0 && words[i - 1] == "!");
    match after("-d").filter(|_| !negated) {
        None => true,
        Some(d) => port.host_ip.is_unspecified() || d == host(port.host_ip),
    }
}

/// Short ids of other containers whose DNAT chains capture one of `p`'s ports. Their owner is
/// gone: `p`'s reservation sockets bound those very ports, which a live owner would still hold.
fn stale_owners(p: &FamilyPorts, nat: &Table) -> Vec<String> {
    let mine = chain(p);
    let mut out: Vec<String> = Vec::new();
    for r in &nat.rules {
        let Some(c) = r.split(' ').nth(1) else {
            continue;
        };
        let Some(id) = c.strip_prefix("RBOX-P-") else {
            continue;
        };
        if c != mine && p.ports.iter().any(|port| captures(r, port)) && !out.iter().any(|o| o == id)
        {
            out.push(id.to_string());
        }
    }
    out
}

/// Lines that remove container `id`'s chains and jumps where present, per table.
fn remove_lines(id: &str, filter: &Table, nat: &Table) -> (String, String) {
    let (c, m) = (format!("RBOX-P-{id}"), format!("RBOX-PM-{id}"));
    // Every copy of a jump goes: a chain still referenced cannot be deleted.
    let deletes = |t: &Table, jump: &str| {
        let copies = t.rules.iter().filter(|r| *r == jump).count();
        format!("-D{}\n", &jump[2..]).repeat(copies)
    };
    let mut f = deletes(filter, &format!("-A {PORTS} -j {c}"));
    if filter.has_chain(&c) {
        f += &format!("-F {c}\n-X {c}\n");
    }
    let mut n = deletes(nat, &format!("-A {DNAT} -j {c}"));
    n += &deletes(nat, &format!("-A {POSTROUTING} -j {m}"));
    for ch in [&c, &m] {
        if nat.has_chain(ch) {
            n += &format!("-F {ch}\n-X {ch}\n");
        }
    }
    (f, n)
}

/// Lines that remove the port chains of every container reached through `bridge` (their
/// filter or masquerade rules go out through it), per table.
pub(super) fn remove_reached_through(
    bridge: &str,
    filter: &Table,
    nat: &Table,
) -> (String, String) {
    let through = format!(" -o {bridge} ");
    let mut ids: Vec<&str> = Vec::new();
    for r in filter.rules.iter().chain(&nat.rules) {
        let id = r.split(' ').nth(1).and_then(|c| {
            c.strip_prefix("RBOX-PM-")
                .or_else(|| c.strip_prefix("RBOX-P-"))
        });
        if let Some(id) = id.filter(|_| r.contains(&through)) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let (mut f, mut n) = (String::new(), String::new());
    for id in ids {
        let (a, b) = remove_lines(id, filter, nat);
        f += &a;
        n += &b;
    }
    (f, n)
}

/// The batch that makes `p`'s rules present (regenerating its chains) and removes stale chains
/// of dead containers that capture the same ports.
pub(super) fn install_batch(p: &FamilyPorts, filter: &Table, nat: &Table) -> String {
    let v6 = is_v6(p);
    let (c, m) = (chain(p), masq_chain(p));
    let stale = stale_owners(p, nat);
    let mut out = String::from("*filter\n");
    for sc in [INPUT, PORTS, FORWARD] {
        if !filter.has_chain(sc) {
            out += &format!(":{sc} - [0:0]\n");
        }
    }
    // Declaring an existing chain in a --noflush batch flushes it: the container's own chains
    // are regenerated in one step.
    out += &format!(":{c} - [0:0]\n");
    if !filter.has_rule(INPUT_JUMP) {
        out += "-I INPUT 1 -j RBOX-INPUT\n";
    }
    if !filter.has_rule(&input_rule(v6)) {
        out += &input_rule(v6);
        out.push('\n');
    }
    if !filter.has_rule(FORWARD_JUMP) {
        out += "-I RBOX-FORWARD 1 -j RBOX-PORTS\n";
    }
    let mut nat_out = String::new();
    for id in &stale {
        let (f, n) = remove_lines(id, filter, nat);
        out += &f;
        nat_out += &n;
    }
    if !filter.has_rule(&format!("-A {PORTS} -j {c}")) {
        out += &format!("-A {PORTS} -j {c}\n");
    }
    for r in filter_rules(p) {
        out += &r;
        out.push('\n');
    }
    out += "COMMIT\n*nat\n";
    for sc in [DNAT, POSTROUTING] {
        if !nat.has_chain(sc) {
            out += &format!(":{sc} - [0:0]\n");
        }
    }
    out += &format!(":{c} - [0:0]\n:{m} - [0:0]\n");
    out += &nat_out;
    for j in [PREROUTING_JUMP, OUTPUT_JUMP] {
        if !nat.has_rule(j) {
            out += j;
            out.push('\n');
        }
    }
    if !nat.has_rule(POSTROUTING_JUMP) {
        out += "-I POSTROUTING 1 -j RBOX-POSTROUTING\n";
    }
    if !nat.has_rule(&format!("-A {DNAT} -j {c}")) {
        out += &format!("-I {DNAT} 1 -j {c}\n");
    }
    if !nat.has_rule(&format!("-A {POSTROUTING} -j {m}")) {
        out += &format!("-I {POSTROUTING} 1 -j {m}\n");
    }
    for r in dnat_rules(p).into_iter().chain(masq_rules(p)) {
        out += &r;
        out.push('\n');
    }
    out += "COMMIT\n";
    out
}

/// The batch that adds a new container's chains, rules and jumps, written without looking at
/// the kernel: it assumes the shared chains exist and `p`'s own do not (the caller's record says
/// so). Its size depends on `p` alone. The jumps are inserted first, so a new container wins over
/// any stale chain a crashed one left capturing the same port.
pub(super) fn add_batch(p: &FamilyPorts) -> String {
    let (c, m) = (chain(p), masq_chain(p));
    let mut out = format!("*filter\n:{c} - [0:0]\n-I {PORTS} 1 -j {c}\n");
    for r in filter_rules(p) {
        out += &r;
        out.push('\n');
    }
    out += &format!(
        "COMMIT\n*nat\n:{c} - [0:0]\n:{m} - [0:0]\n-I {DNAT} 1 -j {c}\n-I {POSTROUTING} 1 -j {m}\n"
    );
    for r in dnat_rules(p).into_iter().chain(masq_rules(p)) {
        out += &r;
        out.push('\n');
    }
    out += "COMMIT\n";
    out
}

/// The batch that removes container `short_id`'s chains and jumps as `add_batch` made them,
/// written without looking at the kernel.
pub(super) fn drop_batch(short_id: &str) -> String {
    let (c, m) = (format!("RBOX-P-{short_id}"), format!("RBOX-PM-{short_id}"));
    format!(
        "*filter\n-D {PORTS} -j {c}\n-F {c}\n-X {c}\nCOMMIT\n\
         *nat\n-D {DNAT} -j {c}\n-D {POSTROUTING} -j {m}\n-F {c}\n-X {c}\n-F {m}\n-X {m}\nCOMMIT\n"
    )
}

/// The batch that removes container `short_id`'s port rules that are present.
pub(super) fn remove_batch(short_id: &str, filter: &Table, nat: &Table) -> String {
    let (f, n) = remove_lines(short_id, filter, nat);
    format!("*filter\n{f}COMMIT\n*nat\n{n}COMMIT\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Proto;

    fn ports(id: &str, list: &[(&str, u16, u16, Proto)]) -> FamilyPorts {
        FamilyPorts {
            short_id: id.into(),
            bridge: "rbox0".into(),
            subnet: "172.17.0.0/16".parse().unwrap(),
            container_ip: "172.17.0.2".parse().unwrap(),
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

    /// The whole golden document for one network with `p` published, as the kernel shows it
    /// once normalised (tests/tests/ports.rs compares it with a real `iptables-save`): chains
    /// sorted, built-in chains' rules first in `iptables-save` order, then rules grouped by
    /// chain in kernel order (the ports' jumps were inserted first in shared chains).
    fn document(p: &[FamilyPorts]) -> String {
        let net = super::super::network::FamilyNet {
            short_id: "aaaaaaaaaaaa".into(),
            bridge: "rbox0".into(),
            subnet: "172.17.0.0/16".parse().unwrap(),
            icc: true,
            masquerade: true,
            internal: false,
            tunnel: None,
        };
        let (a, b) = (
            super::super::network::ruleset(std::slice::from_ref(&net)),
            ruleset(p),
        );
        let mut out = String::new();
        for (table, builtins) in [
            ("filter", &["INPUT", "FORWARD", "OUTPUT"][..]),
            ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"][..]),
        ] {
            let (na, pb) = (Table::parse(&a, table), Table::parse(&b, table));
            let mut chains: Vec<String> = na.chains.iter().chain(&pb.chains).cloned().collect();
            chains.sort();
            chains.dedup();
            let of = |r: &String| r.split(' ').nth(1).unwrap_or_default().to_string();
            // Ports' rules in shared chains were inserted at the top.
            let mut rules: Vec<String> = pb
                .rules
                .iter()
                .filter(|r| na.chains.contains(&of(r)))
                .cloned()
                .collect();
            rules.extend(na.rules.iter().cloned());
            rules.extend(
                pb.rules
                    .iter()
                    .filter(|r| !na.chains.contains(&of(r)))
                    .cloned(),
            );
            out += &format!("*{table}\n");
            for c in &chains {
                out += &format!(":{c} - [0:0]\n");
            }
            for bc in builtins {
                for r in rules.iter().filter(|r| of(r) == *bc) {
                    out += &format!("{r}\n");
                }
            }
            for c in &chains {
                for r in rules.iter().filter(|r| of(r) == *c) {
                    out += &format!("{r}\n");
                }
            }
            out += "COMMIT\n";
        }
        out
    }

    fn golden(name: &str, p: &[FamilyPorts]) {
        crate::firewall::check_golden(super::super::NAME, name, &document(p));
    }

    #[test]
    fn golden_ports_published() {
        golden(
            "ports-published",
            &[ports("eeeeeeeeeeee", &[("0.0.0.0", 8080, 80, Proto::Tcp)])],
        );
    }

    #[test]
    fn golden_ports_range() {
        golden(
            "ports-range",
            &[ports(
                "eeeeeeeeeeee",
                &[
                    ("127.0.0.1", 8080, 80, Proto::Tcp),
                    ("127.0.0.1", 8081, 81, Proto::Tcp),
                    ("127.0.0.1", 8082, 82, Proto::Tcp),
                ],
            )],
        );
    }

    #[test]
    fn golden_ports_udp() {
        golden(
            "ports-udp",
            &[ports("eeeeeeeeeeee", &[("0.0.0.0", 5353, 53, Proto::Udp)])],
        );
    }

    #[test]
    fn batch_size_does_not_depend_on_other_containers() {
        let a = ports("aaaaaaaaaaaa", &[("0.0.0.0", 8080, 80, Proto::Tcp)]);
        let empty = Table::default();
        let first = install_batch(&a, &empty, &empty);
        assert!(first.contains(":RBOX-DNAT - [0:0]") && first.contains(PREROUTING_JUMP));
        // With 50 other containers published, the batch for one more has the same length.
        let others: Vec<FamilyPorts> = (0..50)
            .map(|i| {
                ports(
                    &format!("{i:012}"),
                    &[("0.0.0.0", 9000 + i as u16, 80, Proto::Tcp)],
                )
            })
            .collect();
        let mut all = others.clone();
        all.push(ports("bbbbbbbbbbbb", &[("0.0.0.0", 1, 1, Proto::Tcp)]));
        let text = ruleset(&all);
        let (f, n) = (Table::parse(&text, "filter"), Table::parse(&text, "nat"));
        let again = install_batch(&a, &f, &n);
        let alone = {
            let text = ruleset(std::slice::from_ref(&all[50]));
            install_batch(
                &a,
                &Table::parse(&text, "filter"),
                &Table::parse(&text, "nat"),
            )
        };
        assert_eq!(again, alone, "the batch must not touch other containers");
        assert!(
            !again.contains(":RBOX-DNAT"),
            "shared chain would be flushed: {again}"
        );
        assert!(again.contains("-I RBOX-DNAT 1 -j RBOX-P-aaaaaaaaaaaa"));
    }

    #[test]
    fn add_batch_makes_what_the_ruleset_shows_and_drop_batch_undoes_it() {
        let a = ports(
            "aaaaaaaaaaaa",
            &[
                ("0.0.0.0", 8080, 80, Proto::Tcp),
                ("127.0.0.1", 5353, 53, Proto::Udp),
            ],
        );
        let add = add_batch(&a);
        // Only a's own chains are declared: declaring a shared chain would flush it.
        let declared: Vec<&str> = add.lines().filter(|l| l.starts_with(':')).collect();
        assert_eq!(
            declared,
            [
                ":RBOX-P-aaaaaaaaaaaa - [0:0]",
                ":RBOX-P-aaaaaaaaaaaa - [0:0]",
                ":RBOX-PM-aaaaaaaaaaaa - [0:0]"
            ]
        );
        // Its rules, with the inserted jumps as iptables-save lists them, are a's rules of the
        // ruleset (what the golden files hold).
        let as_saved = |l: &str| match l.strip_prefix("-I ") {
            Some(rest) => format!("-A {}", rest.replacen(" 1 ", " ", 1)),
            None => l.to_string(),
        };
        let mut got: Vec<String> = add
            .lines()
            .filter(|l| l.starts_with("-A ") || l.starts_with("-I "))
            .map(as_saved)
            .collect();
        let mut want: Vec<String> = ruleset(std::slice::from_ref(&a))
            .lines()
            .filter(|l| l.starts_with("-A ") && l.contains("aaaaaaaaaaaa"))
            .map(str::to_string)
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        for jump in ["RBOX-PORTS", "RBOX-DNAT", "RBOX-POSTROUTING"] {
            assert!(
                add.contains(&format!("-I {jump} 1 ")),
                "{jump} jump not first: {add}"
            );
        }
        let drop = drop_batch("aaaaaaaaaaaa");
        for want in [
            "-D RBOX-PORTS -j RBOX-P-aaaaaaaaaaaa",
            "-D RBOX-DNAT -j RBOX-P-aaaaaaaaaaaa",
            "-D RBOX-POSTROUTING -j RBOX-PM-aaaaaaaaaaaa",
            "-X RBOX-P-aaaaaaaaaaaa",
            "-X RBOX-PM-aaaaaaaaaaaa",
        ] {
            assert!(drop.contains(want), "{want} missing: {drop}");
        }
        assert_eq!(drop.matches("-X ").count(), 3, "{drop}");
    }

    #[test]
    fn repair_removes_every_copy_of_a_jump() {
        let a = ports("aaaaaaaaaaaa", &[("0.0.0.0", 8080, 80, Proto::Tcp)]);
        let mut text = ruleset(std::slice::from_ref(&a));
        // What a fast add over chains a crash left produces: a second copy of each jump.
        text = text.replace(
            "-A RBOX-DNAT -j RBOX-P-aaaaaaaaaaaa\n",
            "-A RBOX-DNAT -j RBOX-P-aaaaaaaaaaaa\n-A RBOX-DNAT -j RBOX-P-aaaaaaaaaaaa\n",
        );
        let (f, n) = (Table::parse(&text, "filter"), Table::parse(&text, "nat"));
        let b = remove_batch("aaaaaaaaaaaa", &f, &n);
        assert_eq!(
            b.matches("-D RBOX-DNAT -j RBOX-P-aaaaaaaaaaaa").count(),
            2,
            "{b}"
        );
    }

    #[test]
    fn stale_chains_capturing_the_port_are_removed() {
        let dead = ports(
            "dddddddddddd",
            &[
                ("0.0.0.0", 8080, 80, Proto::Tcp),
                ("0.0.0.0", 9090, 90, Proto::Udp),
            ],
        );
        let other = ports("cccccccccccc", &[("127.0.0.1", 8081, 80, Proto::Tcp)]);
        let text = ruleset(&[dead, other]);
        let (f, n) = (Table::parse(&text, "filter"), Table::parse(&text, "nat"));
        let new = ports("ffffffffffff", &[("127.0.0.1", 8080, 80, Proto::Tcp)]);
        let b = install_batch(&new, &f, &n);
        assert!(b.contains("-D RBOX-DNAT -j RBOX-P-dddddddddddd"), "{b}");
        assert!(b.contains("-X RBOX-PM-dddddddddddd"), "{b}");
        assert!(b.contains("-D RBOX-PORTS -j RBOX-P-dddddddddddd"), "{b}");
        assert!(
            !b.contains("cccccccccccc"),
            "a live container on another port stays: {b}"
        );
        // Same port, other protocol, or a different specific host IP: not captured.
        let udp = ports("ffffffffffff", &[("0.0.0.0", 8080, 80, Proto::Udp)]);
        assert!(!install_batch(&udp, &f, &n).contains("dddddddddddd"));
        let text = ruleset(&[ports(
            "dddddddddddd",
            &[("127.0.0.1", 8080, 80, Proto::Tcp)],
        )]);
        let (f, n) = (Table::parse(&text, "filter"), Table::parse(&text, "nat"));
        let elsewhere = ports("ffffffffffff", &[("10.0.0.1", 8080, 80, Proto::Tcp)]);
        assert!(!install_batch(&elsewhere, &f, &n).contains("dddddddddddd"));
    }

    #[test]
    fn remove_batch_only_touches_present_rules() {
        let a = ports("aaaaaaaaaaaa", &[("0.0.0.0", 8080, 80, Proto::Tcp)]);
        let text = ruleset(std::slice::from_ref(&a));
        let (f, n) = (Table::parse(&text, "filter"), Table::parse(&text, "nat"));
        let b = remove_batch("aaaaaaaaaaaa", &f, &n);
        for want in [
            "-D RBOX-PORTS -j RBOX-P-aaaaaaaaaaaa",
            "-X RBOX-P-aaaaaaaaaaaa",
            "-D RBOX-DNAT -j RBOX-P-aaaaaaaaaaaa",
            "-D RBOX-POSTROUTING -j RBOX-PM-aaaaaaaaaaaa",
            "-X RBOX-PM-aaaaaaaaaaaa",
        ] {
            assert!(b.contains(want), "{want} missing: {b}");
        }
        let empty = Table::default();
        assert_eq!(
            remove_batch("aaaaaaaaaaaa", &empty, &empty),
            "*filter\nCOMMIT\n*nat\nCOMMIT\n"
        );
    }
}
