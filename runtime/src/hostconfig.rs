//! Checks a new container's host settings as Docker's daemon does
//! (`verifyPlatformContainerSettings`/`Resources`, Docker 20.10): ranges, conflicting options
//! and names in Docker's words; settings the host cannot enforce are dropped with Docker's
//! warning; Docker's defaults filled in (swap twice the memory limit).

use std::path::Path;

use crate::cgroup::controller_available;
use crate::error::{Error, Result};
use crate::record::Settings;

const MIN_MEMORY: i64 = 6 * 1024 * 1024;

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn v1_file(controller: &str, file: &str) -> bool {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(file)
        .exists()
}

fn unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The kernel's cpu or memory-node list (`0-3,5`) as numbers.
fn parse_list(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn available(file: &str) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn check_set(requested: &str, what: &str, avail_file: &str) -> Result<()> {
    if requested.is_empty() {
        return Ok(());
    }
    let Some(want) = parse_list(requested) else {
        return Err(invalid(format!(
            "Invalid value {requested} for cpuset {what}: invalid format: {requested}"
        )));
    };
    let avail = available(avail_file);
    let have = parse_list(&avail).unwrap_or_default();
    if want.iter().any(|c| !have.contains(c)) {
        let noun = if what == "cpus" {
            "CPUs"
        } else {
            "memory nodes"
        };
        return Err(invalid(format!(
            "Requested {noun} are not available - requested {requested}, available: {avail}"
        )));
    }
    Ok(())
}

/// Docker's checks and adjustments of `s`; returns the warnings to print.
pub fn check(s: &mut Settings) -> Result<Vec<String>> {
    let mut warnings = crate::cgroup::discard_unsupported(s)?;
    let v2 = unified();
    // Memory.
    if s.memory > 0 && s.memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    let swap_limit = if v2 {
        controller_available("memory")
    } else {
        v1_file("memory", "memory.memsw.limit_in_bytes")
    };
    if s.memory > 0 && s.memory_swap > 0 && s.memory_swap < s.memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if s.memory == 0 && s.memory_swap > 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if s.memory > 0 && s.memory_swap != -1 && !swap_limit {
        warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".into());
        s.memory_swap = -1;
    }
    // Docker's default: as much swap as memory (the limit covers both).
    if s.memory > 0 && s.memory_swap == 0 {
        s.memory_swap = s.memory * 2;
    }
    if s.memory_reservation > 0 && !controller_available("memory") {
        warnings.push("Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
        s.memory_reservation = 0;
    }
    if s.memory_reservation > 0 && s.memory_reservation < MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if s.memory > 0 && s.memory_reservation > 0 && s.memory < s.memory_reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if s.oom_kill_disable && (v2 || !v1_file("memory", "memory.oom_control")) {
        warnings
            .push("Your kernel does not support OomKillDisable. OomKillDisable discarded.".into());
        s.oom_kill_disable = false;
    }
    if s.oom_kill_disable && s.memory == 0 {
        warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".into());
    }
    // CPU.
    if s.nano_cpus > 0 && s.cpu_period > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if s.nano_cpus > 0 && s.cpu_quota > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    if s.nano_cpus > ncpu * 1_000_000_000 {
        return Err(invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    if s.cpu_shares > 0 && !controller_available("cpu") {
        warnings.push(
            "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded."
                .into(),
        );
        s.cpu_shares = 0;
    }
    if (s.cpu_period != 0 || s.cpu_quota != 0) && !controller_available("cpu") {
        warnings.push(
            "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.".into(),
        );
        s.cpu_period = 0;
        s.cpu_quota = 0;
    }
    if s.cpu_period != 0 && !(1000..=1_000_000).contains(&s.cpu_period) {
        return Err(invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if s.cpu_quota > 0 && s.cpu_quota < 1000 {
        return Err(invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    if (!s.cpuset_cpus.is_empty() || !s.cpuset_mems.is_empty()) && !controller_available("cpuset") {
        warnings.push(
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
                .into(),
        );
        s.cpuset_cpus.clear();
        s.cpuset_mems.clear();
    }
    let (cpus, mems) = if v2 {
        (
            "/sys/fs/cgroup/cpuset.cpus.effective",
            "/sys/fs/cgroup/cpuset.mems.effective",
        )
    } else {
        (
            "/sys/fs/cgroup/cpuset/cpuset.cpus",
            "/sys/fs/cgroup/cpuset/cpuset.mems",
        )
    };
    let cpus = if Path::new(cpus).exists() {
        cpus
    } else {
        "/sys/devices/system/cpu/online"
    };
    check_set(&s.cpuset_cpus, "cpus", cpus)?;
    check_set(&s.cpuset_mems, "mems", mems)?;
    // Process and namespaces.
    if !(-1000..=1000).contains(&s.oom_score_adj) {
        return Err(invalid(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            s.oom_score_adj
        )));
    }
    if s.shm_size < 0 {
        return Err(invalid("SHM size can not be less than 0"));
    }
    let ipc = s.ipc_mode.as_str();
    let joins = ipc
        .strip_prefix("container:")
        .is_some_and(|c| !c.is_empty());
    if !joins && !matches!(ipc, "" | "none" | "private" | "shareable" | "host") {
        return Err(invalid(format!("invalid IPC mode: {ipc}")));
    }
    if s.uts_mode == "host" && !s.hostname.is_empty() {
        return Err(invalid("Conflicting options: hostname and the UTS mode"));
    }
    // Sysctls need the namespace they belong to (runc's check).
    for k in s.sysctls.keys() {
        let ipc_sysctl = k.starts_with("kernel.") || k.starts_with("fs.mqueue.");
        if k.starts_with("net.") && s.network_mode == "host" {
            return Err(invalid(format!(
                "sysctl {k:?} is not allowed in the hosts network namespace"
            )));
        }
        if ipc_sysctl && (s.ipc_mode == "host" || s.ipc_mode.starts_with("container:")) {
            return Err(invalid(format!(
                "sysctl {k:?} is not allowed in the hosts ipc namespace"
            )));
        }
    }
    crate::caps::normalize(&s.cap_add)?;
    crate::caps::normalize(&s.cap_drop)?;
    crate::devices::check(&s.devices)?;
    Ok(warnings)
}

/// Docker's CLI-side sysctl check (`opts.ValidateSysctl`): the namespaced ones it allows.
pub fn sysctl_allowed(key: &str) -> bool {
    const KEYS: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    KEYS.contains(&key) || key.starts_with("net.") || key.starts_with("fs.mqueue.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_sysctls() {
        assert_eq!(parse_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("x"), None);
        assert!(sysctl_allowed("net.ipv4.ip_forward"));
        assert!(sysctl_allowed("kernel.shmmax"));
        assert!(!sysctl_allowed("kernel.foo"));
    }

    #[test]
    fn conflicts_in_docker_words() {
        let mut s = Settings {
            nano_cpus: 1_000_000_000,
            cpu_quota: 50_000,
            ..Default::default()
        };
        assert_eq!(
            check(&mut s).unwrap_err().to_string(),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        let mut s = Settings {
            oom_score_adj: 1001,
            ..Default::default()
        };
        assert!(check(&mut s)
            .unwrap_err()
            .to_string()
            .contains("range for oom score adj is [-1000, 1000]"));
        let mut s = Settings {
            memory: 64 << 20,
            memory_reservation: 128 << 20,
            ..Default::default()
        };
        assert!(check(&mut s).is_err());
    }
}
