//! Firewall rules for bridge networks, generated from network state so a reload is "generate
//! and apply" and a golden-file test is "generate and compare".

pub mod iptables;
pub mod ports;

use ipnetwork::IpNetwork;

use crate::error::{Errors, Result};
use crate::network::Network;
use iptables::Iptables;

/// What the rules of one bridge network depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct FwNetwork {
    /// First 12 hex digits of the network id: names the network's own chain.
    pub short_id: String,
    pub bridge: String,
    pub subnet: IpNetwork,
    pub icc: bool,
    pub masquerade: bool,
    pub internal: bool,
}

pub trait Firewall {
    /// Adds or regenerates the rules of `nets`, leaving every other network's rules alone.
    fn install(&self, nets: &[FwNetwork]) -> crate::Result<()>;
    /// Removes the rules of `net`; succeeds when they are already gone.
    fn remove(&self, net: &FwNetwork) -> crate::Result<()>;
}

/// Installs (or regenerates) the rules of `nets` for both address families: one batch each.
pub fn install(nets: &[&Network]) -> Result<()> {
    let v4: Vec<_> = nets.iter().filter_map(|n| n.firewall()).collect();
    let v6: Vec<_> = nets.iter().filter_map(|n| n.firewall6()).collect();
    if !v4.is_empty() {
        Iptables::V4.install(&v4)?;
    }
    if !v6.is_empty() {
        Iptables::V6.install(&v6)?;
    }
    Ok(())
}

/// Removes the rules of `net` for both families, reporting every failure.
pub fn remove(net: &Network) -> Result<()> {
    let mut errors = Errors::default();
    if let Some(fw) = net.firewall() {
        errors.check(Iptables::V4.remove(&fw));
    }
    if let Some(fw) = net.firewall6() {
        errors.check(Iptables::V6.remove(&fw));
    }
    errors.into_result()
}

/// Compares a generated rules document with `tests/golden/<name>.rules`
/// (`RBOX_UPDATE_GOLDEN=1` rewrites the file instead).
#[cfg(test)]
pub(crate) fn check_golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(format!("{name}.rules"));
    if std::env::var_os("RBOX_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (RBOX_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        got,
        want,
        "ruleset for {name} differs from {}",
        path.display()
    );
}
