//! Running `iptables-save` / `iptables-restore` (or the ip6tables pair) under rbox's lock.

use super::save::Table;
use crate::error::Result;

/// Serialises rbox's read-modify-write of the rules across processes and roots.
const LOCK: &str = "/run/rbox-iptables.lock";

/// The host's iptables or ip6tables (whichever of nft or legacy `*-restore` points to).
pub struct Tool {
    save: &'static str,
    restore: &'static str,
}

impl Tool {
    pub const V4: Tool = Tool {
        save: "iptables-save",
        restore: "iptables-restore",
    };
    pub const V6: Tool = Tool {
        save: "ip6tables-save",
        restore: "ip6tables-restore",
    };

    pub fn family(v6: bool) -> &'static Tool {
        if v6 {
            &Tool::V6
        } else {
            &Tool::V4
        }
    }

    pub fn with_state<F: FnOnce(&Table, &Table) -> String>(
        &self,
        what: &str,
        make: F,
    ) -> Result<()> {
        self.with_saved(what, |saved| {
            make(&Table::parse(saved, "filter"), &Table::parse(saved, "nat"))
        })
    }

    /// Under rbox's iptables lock: reads `iptables-save`, builds a batch from it and applies it
    /// with `iptables-restore --noflush`.
    pub fn with_saved<F: FnOnce(&str) -> String>(&self, what: &str, make: F) -> Result<()> {
        let _held = lock()?;
        self.save_and_apply(what, make)
    }

    /// Under rbox's iptables lock: applies `batch`, written from what rbox's own state says
    /// exists, with one `iptables-restore`; if the kernel refuses it (a shared chain not made
    /// yet in this namespace, rules gone or left over after a crash or an `iptables -F`), reads
    /// `iptables-save` and applies `repair(saved)` instead. A refused table of the batch
    /// changed nothing, and the repair batch only adds what is missing, so a half-applied batch
    /// (iptables-restore commits table by table) is completed, not doubled.
    pub fn apply_or_repair<F: FnOnce(&str) -> String>(
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
fn lock() -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(std::path::Path::new(LOCK))?)
}

fn run(prog: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    super::super::command::run(super::NAME, prog, args, input)
}
