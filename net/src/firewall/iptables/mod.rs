//! iptables backend: one `iptables-restore --noflush` batch per operation and family
//! (`ip6tables-restore` for IPv6), whichever of nft or legacy the host's tools point to.
//!
//! Layout (shared by every rbox root on the host, so no shared chain is ever flushed):
//! - filter `FORWARD` jumps to `RBOX-USER` (empty, for the admin), `RBOX-ISOLATION`,
//!   `RBOX-FORWARD`, in that order, at the top.
//! - per network: `RBOX-FORWARD -i/-o <bridge> -j RBOX-N-<id12>`, a chain holding that network's
//!   policy (icc, internal, outbound); `RBOX-ISOLATION -i <br> ! -o <br> -j RBOX-ISOLATION-2`
//!   and `RBOX-ISOLATION-2 -o <br> -j DROP` (Docker's two-stage isolation between networks).
//! - nat `POSTROUTING` jumps to `RBOX-POSTROUTING`, which holds one MASQUERADE per network.
//! - published ports: per-container chains, see `dnat`.
//!
//! Bridged traffic is accepted explicitly so it flows when another engine set the FORWARD policy
//! to DROP with br_netfilter loaded.

mod dnat;
mod exec;
mod network;
mod save;

use super::{enable_route_localnet, Firewall, FwNetwork, FwPorts};
use crate::error::{Errors, Result};
use dnat::FamilyPorts;
use exec::Tool;
use network::FamilyNet;
use save::Table;

pub(crate) const NAME: &str = "iptables";
/// The tool whose presence `auto` looks for.
pub(super) const RESTORE: &str = "iptables-restore";

pub struct Iptables;

/// Runs `f` for each family in which `of` gives something, collecting every failure.
fn per_family<T>(of: impl Fn(bool) -> Option<T>, f: impl Fn(&Tool, T) -> Result<()>) -> Result<()> {
    let mut errors = Errors::default();
    for v6 in [false, true] {
        if let Some(x) = of(v6) {
            errors.check(f(Tool::family(v6), x));
        }
    }
    errors.into_result()
}

fn tables(saved: &str) -> (Table, Table) {
    (Table::parse(saved, "filter"), Table::parse(saved, "nat"))
}

impl Firewall for Iptables {
    fn name(&self) -> &'static str {
        NAME
    }

    fn install_networks(&self, nets: &[FwNetwork]) -> Result<()> {
        per_family(
            |v6| {
                let fam: Vec<FamilyNet> =
                    nets.iter().filter_map(|n| FamilyNet::of(n, v6)).collect();
                (!fam.is_empty()).then_some(fam)
            },
            |tool, fam| tool.with_state("install", |f, n| network::install_batch(&fam, f, n)),
        )
    }

    fn remove_network(&self, net: &FwNetwork, whole_bridge: bool) -> Result<()> {
        per_family(
            |v6| FamilyNet::of(net, v6),
            |tool, fam| {
                tool.with_state("remove", |f, n| {
                    network::remove_batch(&fam, whole_bridge, f, n)
                })
            },
        )
    }

    /// One `iptables-restore` of `add_batch`, no `iptables-save`. The first publish in a network
    /// namespace (no shared chains yet), or one over rules a crash left, falls back to repair.
    fn add_ports(&self, p: &FwPorts) -> Result<()> {
        if p.family(false).is_some() {
            enable_route_localnet(&p.interface)?;
        }
        per_family(
            |v6| FamilyPorts::of(p, v6),
            |tool, fam| {
                tool.apply_or_repair("publish", &dnat::add_batch(&fam), |saved| {
                    let (f, n) = tables(saved);
                    dnat::install_batch(&fam, &f, &n)
                })
            },
        )
    }

    fn repair_ports(&self, p: &FwPorts) -> Result<()> {
        if p.family(false).is_some() {
            enable_route_localnet(&p.interface)?;
        }
        per_family(
            |v6| FamilyPorts::of(p, v6),
            |tool, fam| {
                tool.with_saved("publish", |saved| {
                    let (f, n) = tables(saved);
                    dnat::install_batch(&fam, &f, &n)
                })
            },
        )
    }

    /// One `iptables-restore` of `drop_batch` when the rules are as `add_ports` made them, else
    /// read-and-remove what is present.
    fn remove_ports(&self, p: &FwPorts) -> Result<()> {
        per_family(
            |v6| FamilyPorts::of(p, v6),
            |tool, fam| {
                tool.apply_or_repair("unpublish", &dnat::drop_batch(&fam.short_id), |saved| {
                    let (f, n) = tables(saved);
                    dnat::remove_batch(&fam.short_id, &f, &n)
                })
            },
        )
    }
}
