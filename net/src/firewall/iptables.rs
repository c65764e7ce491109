//! iptables backend: one `iptables-restore --noflush` batch per operation.
//!
//! Layout (shared by every rbox root on the host, so no shared chain is ever flushed):
//! - filter `FORWARD` jumps to `RBOX-USER` (empty, for the admin), `RBOX-ISOLATION`,
//!   `RBOX-FORWARD`, in that order, at the top.
//! - per network: `RBOX-FORWARD -i/-o <bridge> -j RBOX-N-<id12>`, a chain holding that network's
//!   policy (icc, internal, outbound); `RBOX-ISOLATION -i <br> ! -o <br> -j RBOX-ISOLATION-2`
//!   and `RBOX-ISOLATION-2 -o <br> -j DROP` (Docker's two-stage isolation between networks).
//! - nat `POSTROUTING` jumps to `RBOX-POSTROUTING`, which holds one MASQUERADE per network.
//!
//! Bridged traffic is accepted explicitly so it flows when another engine set the FORWARD policy
//! to DROP with br_netfilter loaded.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};

use super::{Firewall, FwNetwork};
use crate::error::{io, Error, Result};

pub const USER: &str = "RBOX-USER";
pub const FORWARD: &str = "RBOX-FORWARD";
pub const ISOLATION: &str = "RBOX-ISOLATION";
pub const ISOLATION2: &str = "RBOX-ISOLATION-2";
pub const POSTROUTING: &str = "RBOX-POSTROUTING";

/// Serialises rbox's read-modify-write of the rules across processes and roots.
const LOCK: &str = "/run/rbox-iptables.lock";

pub fn chain(net: &FwNetwork) -> String {
    format!("RBOX-N-{}", net.short_id)
}

/// The rules of `net`'s own chain, in order.
pub fn own_rules(net: &FwNetwork) -> Vec<String> {
    let (c, b) = (chain(net), &net.bridge);
    let mut rules = vec![format!(
        "-A {c} -i {b} -o {b} -j {}",
        if net.icc { "ACCEPT" } else { "DROP" }
    )];
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

/// The rules `net` adds to the shared filter chains.
pub fn shared_filter_rules(net: &FwNetwork) -> Vec<String> {
    let (c, b) = (chain(net), &net.bridge);
    vec![
        format!("-A {FORWARD} -i {b} -j {c}"),
        format!("-A {FORWARD} -o {b} -j {c}"),
        format!("-A {ISOLATION} -i {b} ! -o {b} -j {ISOLATION2}"),
        format!("-A {ISOLATION2} -o {b} -j DROP"),
    ]
}

/// The rules `net` adds to the shared nat chain.
pub fn nat_rules(net: &FwNetwork) -> Vec<String> {
    if net.masquerade && !net.internal {
        vec![format!(
            "-A {POSTROUTING} -s {} ! -o {} -j MASQUERADE",
            net.subnet, net.bridge
        )]
    } else {
        Vec::new()
    }
}

const FILTER_JUMPS: [&str; 3] = [USER, ISOLATION, FORWARD];
const NAT_JUMP: &str = "-A POSTROUTING -j RBOX-POSTROUTING";

/// The whole of rbox's rules for `nets` in `iptables-save` form: what the host shows when only
/// these networks exist. Used by golden files and as the model the batches realise.
pub fn ruleset(nets: &[FwNetwork]) -> String {
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
    rules.sort_by_key(rank);
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

/// What `iptables-save` reported for one table: declared chains and rule lines, in kernel
/// order (port publishing looks for stale rules in that order).
#[derive(Default)]
pub(crate) struct Table {
    pub chains: Vec<String>,
    pub rules: Vec<String>,
}

impl Table {
    pub fn parse(text: &str, table: &str) -> Table {
        let mut t = Table::default();
        let mut inside = false;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                inside = name == table;
            } else if !inside {
            } else if let Some(decl) = line.strip_prefix(':') {
                t.chains
                    .push(decl.split(' ').next().unwrap_or_default().to_string());
            } else if line.starts_with("-A ") {
                t.rules.push(line.to_string());
            }
        }
        t
    }

    pub fn has_chain(&self, c: &str) -> bool {
        self.chains.iter().any(|x| x == c)
    }

    pub fn has_rule(&self, r: &str) -> bool {
        self.rules.iter().any(|x| x == r)
    }
}

/// The batch that makes `nets`' rules present, given the current state.
fn install_batch(nets: &[FwNetwork], filter: &Table, nat: &Table) -> String {
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
        for r in shared_filter_rules(n) {
            if !filter.has_rule(&r) {
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

/// The batch that removes `net`'s rules that are present.
fn remove_batch(net: &FwNetwork, filter: &Table, nat: &Table) -> String {
    let mut out = String::from("*filter\n");
    for r in shared_filter_rules(net) {
        if filter.has_rule(&r) {
            out += &format!("-D{}\n", &r[2..]);
        }
    }
    let c = chain(net);
    if filter.has_chain(&c) {
        out += &format!("-F {c}\n-X {c}\n");
    }
    out += "COMMIT\n*nat\n";
    let masq = format!(
        "-A {POSTROUTING} -s {} ! -o {} -j MASQUERADE",
        net.subnet, net.bridge
    );
    if nat.has_rule(&masq) {
        out += &format!("-D{}\n", &masq[2..]);
    }
    out += "COMMIT\n";
    out
}

/// The host's iptables or ip6tables (whichever of nft or legacy `*-restore` points to).
pub struct Iptables {
    save: &'static str,
    restore: &'static str,
}

impl Iptables {
    pub const V4: Iptables = Iptables {
        save: "iptables-save",
        restore: "iptables-restore",
    };
    pub const V6: Iptables = Iptables {
        save: "ip6tables-save",
        restore: "ip6tables-restore",
    };

    fn with_state<F: FnOnce(&Table, &Table) -> String>(&self, what: &str, make: F) -> Result<()> {
        self.with_saved(what, |saved| {
            make(&Table::parse(saved, "filter"), &Table::parse(saved, "nat"))
        })
    }

    /// Under rbox's iptables lock: reads `iptables-save`, builds a batch from it and applies it
    /// with `iptables-restore --noflush`.
    pub(crate) fn with_saved<F: FnOnce(&str) -> String>(&self, what: &str, make: F) -> Result<()> {
        let _held = lock()?;
        self.save_and_apply(what, make)
    }

    /// Under rbox's iptables lock: applies `batch`, written from what rbox's own state says
    /// exists, with one `iptables-restore`; if the kernel refuses it (a shared chain not made
    /// yet in this namespace, rules gone or left over after a crash or an `iptables -F`), reads
    /// `iptables-save` and applies `repair(saved)` instead. A refused table of the batch
    /// changed nothing, and the repair batch only adds what is missing, so a half-applied batch
    /// (iptables-restore commits table by table) is completed, not doubled.
    pub(crate) fn apply_or_repair<F: FnOnce(&str) -> String>(
        &self,
        what: &str,
        batch: &str,
        repair: F,
    ) -> Result<()> {
        let _held = lock()?;
        tracing::debug!(what, batch, "iptables-restore");
        match run(self.restore, &["--noflush", "-w"], Some(batch)) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(what, error = %e, "batch refused; repairing from iptables-save");
                self.save_and_apply(what, repair)
            }
        }
    }

    fn save_and_apply<F: FnOnce(&str) -> String>(&self, what: &str, make: F) -> Result<()> {
        let saved = run(self.save, &[], None)?;
        let batch = make(&saved);
        tracing::debug!(what, batch, "iptables-restore");
        run(self.restore, &["--noflush", "-w"], Some(&batch)).map(|_| ())
    }
}

/// Takes rbox's iptables lock (held until the returned guard drops).
fn lock() -> Result<nix::fcntl::Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(io(format!("opening {LOCK}")))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io(format!("locking {LOCK}"))(e.into()))
}

impl Firewall for Iptables {
    fn install(&self, nets: &[FwNetwork]) -> Result<()> {
        self.with_state("install", |f, n| install_batch(nets, f, n))
    }

    fn remove(&self, net: &FwNetwork) -> Result<()> {
        self.with_state("remove", |f, n| remove_batch(net, f, n))
    }
}

fn run(prog: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("running {prog}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(io(format!("writing to {prog}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io(format!("running {prog}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Firewall(format!(
            "{prog} failed: {}",
            err.trim().replace('\n', " ")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, bridge: &str, subnet: &str) -> FwNetwork {
        FwNetwork {
            short_id: id.into(),
            bridge: bridge.into(),
            subnet: subnet.parse().unwrap(),
            icc: true,
            masquerade: true,
            internal: false,
        }
    }

    fn golden(name: &str, nets: &[FwNetwork]) {
        crate::firewall::check_golden(name, &ruleset(nets));
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
        let rm = remove_batch(&n, &f, &t);
        assert!(rm.contains("-D RBOX-FORWARD -i br-a -j RBOX-N-aaaaaaaaaaaa"));
        assert!(rm.contains("-X RBOX-N-aaaaaaaaaaaa"));
        assert!(rm.contains("-D RBOX-POSTROUTING -s 10.0.0.0/24 ! -o br-a -j MASQUERADE"));
        let none = remove_batch(&n, &empty, &empty);
        assert_eq!(none, "*filter\nCOMMIT\n*nat\nCOMMIT\n");
    }
}
