//! `update`: new resource limits (and restart policy) for a container, as Docker's: checked
//! as at create, written to a running container's cgroup at once (v1 files, or their v2
//! equivalents), and recorded for its next starts.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::{Record, Settings};

/// What `update` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub restart: Option<crate::policy::RestartPolicy>,
}

impl Update {
    fn apply(&self, s: &mut Settings) {
        let old_memory = s.memory;
        let set = |v: &Option<i64>, to: &mut i64| {
            if let Some(x) = v {
                *to = *x;
            }
        };
        set(&self.memory, &mut s.memory);
        set(&self.memory_swap, &mut s.memory_swap);
        set(&self.memory_reservation, &mut s.memory_reservation);
        set(&self.nano_cpus, &mut s.nano_cpus);
        set(&self.cpu_shares, &mut s.cpu_shares);
        set(&self.cpu_period, &mut s.cpu_period);
        set(&self.cpu_quota, &mut s.cpu_quota);
        if let Some(p) = self.pids_limit {
            s.pids_limit = p.max(0);
        }
        if let Some(c) = &self.cpuset_cpus {
            s.cpuset_cpus = c.clone();
        }
        if let Some(m) = &self.cpuset_mems {
            s.cpuset_mems = m.clone();
        }
        if let Some(r) = self.restart {
            s.restart_policy = r;
        }
        // Docker: a new memory limit without a swap limit keeps swap at twice the memory.
        if self.memory.is_some() && self.memory_swap.is_none() && s.memory_swap == 2 * old_memory {
            s.memory_swap = 0;
        }
    }
}

fn cg(controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("rbox")
        .join(id)
}

fn write(f: PathBuf, v: impl std::fmt::Display) -> Result<()> {
    std::fs::write(&f, v.to_string()).map_err(|e| Error::io(f.display(), e))
}

/// The unified cgroup of the container, when the host has one for it.
fn unified(id: &str) -> Option<PathBuf> {
    ["", "unified"]
        .iter()
        .map(|b| Path::new("/sys/fs/cgroup").join(b).join("rbox").join(id))
        .find(|p| p.join("cgroup.controllers").exists())
}

/// Writes the limits of `s` to the running container's cgroup.
fn write_cgroup(id: &str, s: &Settings) -> Result<()> {
    let v1 = |c: &str| cg(c, id).is_dir();
    if v1("memory") {
        let m = cg("memory", id);
        let limit = if s.memory > 0 { s.memory } else { -1 };
        let swap = match s.memory_swap {
            0 if s.memory > 0 => 2 * s.memory,
            0 => -1,
            x => x,
        };
        // The kernel wants memory <= memory+swap at every step: raise swap first when the
        // limit grows, lower it last when it shrinks.
        let memsw = m.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            let _ = write(memsw.clone(), -1);
            write(m.join("memory.limit_in_bytes"), limit)?;
            write(memsw, swap)?;
        } else {
            write(m.join("memory.limit_in_bytes"), limit)?;
        }
        write(
            m.join("memory.soft_limit_in_bytes"),
            if s.memory_reservation > 0 {
                s.memory_reservation
            } else {
                -1
            },
        )?;
    }
    if v1("cpu") {
        let c = cg("cpu", id);
        if s.cpu_shares > 0 {
            write(c.join("cpu.shares"), s.cpu_shares)?;
        }
        let (quota, period) = if s.nano_cpus > 0 {
            (s.nano_cpus / 10_000, 100_000)
        } else {
            (
                if s.cpu_quota > 0 { s.cpu_quota } else { -1 },
                if s.cpu_period > 0 {
                    s.cpu_period
                } else {
                    100_000
                },
            )
        };
        write(c.join("cpu.cfs_period_us"), period)?;
        write(c.join("cpu.cfs_quota_us"), quota)?;
    }
    if v1("cpuset") {
        let c = cg("cpuset", id);
        if !s.cpuset_cpus.is_empty() {
            write(c.join("cpuset.cpus"), &s.cpuset_cpus)?;
        }
        if !s.cpuset_mems.is_empty() {
            write(c.join("cpuset.mems"), &s.cpuset_mems)?;
        }
    }
    if v1("pids") {
        write(
            cg("pids", id).join("pids.max"),
            if s.pids_limit > 0 {
                s.pids_limit.to_string()
            } else {
                "max".into()
            },
        )?;
    }
    if let Some(u) = unified(id) {
        let has = |f: &str| u.join(f).exists();
        if has("memory.max") {
            let max = |v: i64| if v > 0 { v.to_string() } else { "max".into() };
            write(u.join("memory.max"), max(s.memory))?;
            if has("memory.swap.max") && s.memory > 0 {
                let swap = match s.memory_swap {
                    0 => s.memory,
                    -1 => -1,
                    x => x - s.memory,
                };
                write(u.join("memory.swap.max"), max(swap))?;
            }
            write(u.join("memory.low"), s.memory_reservation.max(0))?;
        }
        if has("cpu.max") {
            let (quota, period) = if s.nano_cpus > 0 {
                ((s.nano_cpus / 10_000).to_string(), 100_000)
            } else if s.cpu_quota > 0 {
                (
                    s.cpu_quota.to_string(),
                    if s.cpu_period > 0 {
                        s.cpu_period
                    } else {
                        100_000
                    },
                )
            } else {
                ("max".into(), 100_000)
            };
            write(u.join("cpu.max"), format!("{quota} {period}"))?;
        }
        if has("cpu.weight") && s.cpu_shares > 0 {
            write(
                u.join("cpu.weight"),
                1 + ((s.cpu_shares - 2) * 9999) / 262_142,
            )?;
        }
        if has("pids.max") {
            write(
                u.join("pids.max"),
                if s.pids_limit > 0 {
                    s.pids_limit.to_string()
                } else {
                    "max".into()
                },
            )?;
        }
        if has("cpuset.cpus") && !s.cpuset_cpus.is_empty() {
            write(u.join("cpuset.cpus"), &s.cpuset_cpus)?;
        }
    }
    Ok(())
}

/// `update CONTAINER`: checks the new settings as at create (Docker's words), applies them to
/// a running container's cgroup, then records them; returns the warnings to print.
pub fn update(root: &Path, key: &str, u: &Update) -> Result<(Record, Vec<String>)> {
    let rec = crate::lifecycle::find(root, key)?;
    let paths = crate::store::Paths::new(root, &rec.id);
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = crate::store::load(&paths)?;
    let mut s = r.settings.clone();
    u.apply(&mut s);
    if s.auto_remove && !s.restart_policy.is_none() {
        return Err(Error::Invalid(
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
                .into(),
        ));
    }
    let warnings = crate::hostconfig::check(&mut s)?;
    if r.running() {
        write_cgroup(&r.id, &s)
            .map_err(|e| Error::Invalid(format!("Cannot update container {}: {e}", r.id)))?;
    }
    r.settings = s;
    crate::store::save(&paths, &r)?;
    Ok((r, warnings))
}
