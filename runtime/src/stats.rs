//! `stats`: a running container's resource use from its cgroup (v1, or v2), its network
//! namespace's interfaces and its block I/O, as Docker computes it (CPU % over an interval,
//! memory without the inactive file cache).

use std::path::{Path, PathBuf};

use crate::record::Record;

/// One reading of a container.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Nanoseconds of CPU the container used, and of all CPUs of the host, so far.
    pub cpu_ns: u64,
    pub system_ns: u64,
    pub online_cpus: u64,
    pub mem_usage: u64,
    pub mem_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub pids: u64,
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn num(p: impl AsRef<Path>) -> u64 {
    read(p).trim().parse().unwrap_or(0)
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn v1(controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("rbox")
        .join(id)
}

fn unified(id: &str) -> Option<PathBuf> {
    ["", "unified"]
        .iter()
        .map(|b| Path::new("/sys/fs/cgroup").join(b).join("rbox").join(id))
        .find(|p| p.join("cgroup.procs").exists())
}

/// The host's CPU time in nanoseconds (the first line of /proc/stat, as Docker reads it).
fn system_ns() -> u64 {
    let stat = read("/proc/stat");
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}

/// Reads the container's counters now.
pub fn sample(rec: &Record) -> Sample {
    let id = &rec.id;
    let mut s = Sample {
        system_ns: system_ns(),
        online_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        ..Default::default()
    };
    let host_mem = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    if v1("cpuacct", id).is_dir() {
        s.cpu_ns = num(v1("cpuacct", id).join("cpuacct.usage"));
    }
    if v1("memory", id).is_dir() {
        let m = v1("memory", id);
        let stat = read(m.join("memory.stat"));
        // Docker (20.10+): usage less the inactive file cache.
        s.mem_usage = num(m.join("memory.usage_in_bytes"))
            .saturating_sub(field(&stat, "total_inactive_file"));
        s.mem_limit = num(m.join("memory.limit_in_bytes"));
    }
    if v1("pids", id).is_dir() {
        s.pids = num(v1("pids", id).join("pids.current"));
    }
    if v1("blkio", id).is_dir() {
        for l in read(v1("blkio", id).join("blkio.throttle.io_service_bytes")).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [_, op, v] = f.as_slice() {
                let v: u64 = v.parse().unwrap_or(0);
                match *op {
                    "Read" => s.blk_read += v,
                    "Write" => s.blk_write += v,
                    _ => {}
                }
            }
        }
    }
    if let Some(u) = unified(id) {
        let cpu = read(u.join("cpu.stat"));
        if s.cpu_ns == 0 {
            s.cpu_ns = field(&cpu, "usage_usec") * 1000;
        }
        if s.mem_limit == 0 && u.join("memory.current").exists() {
            let stat = read(u.join("memory.stat"));
            s.mem_usage =
                num(u.join("memory.current")).saturating_sub(field(&stat, "inactive_file"));
            s.mem_limit = read(u.join("memory.max"))
                .trim()
                .parse()
                .unwrap_or(u64::MAX);
        }
        if s.pids == 0 {
            s.pids = num(u.join("pids.current"));
        }
        if s.blk_read == 0 && s.blk_write == 0 {
            for l in read(u.join("io.stat")).lines() {
                for kv in l.split_whitespace().skip(1) {
                    match kv.split_once('=') {
                        Some(("rbytes", v)) => s.blk_read += v.parse().unwrap_or(0),
                        Some(("wbytes", v)) => s.blk_write += v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
        }
    }
    // No limit reads as a huge number: the host's memory then, as Docker shows.
    if s.mem_limit == 0 || s.mem_limit > host_mem {
        s.mem_limit = host_mem;
    }
    // The container's interfaces, from its network namespace (lo is not counted).
    if rec.state.pid > 0 {
        for l in read(format!("/proc/{}/net/dev", rec.state.pid))
            .lines()
            .skip(2)
        {
            let Some((name, rest)) = l.split_once(':') else {
                continue;
            };
            if name.trim() == "lo" {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if f.len() >= 9 {
                s.net_rx += f[0];
                s.net_tx += f[8];
            }
        }
    }
    s
}

/// Docker's CPU %: the container's share of the host's CPU time between two samples, times
/// the number of CPUs.
pub fn cpu_percent(prev: &Sample, now: &Sample) -> f64 {
    let cpu = now.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
    let sys = now.system_ns.saturating_sub(prev.system_ns) as f64;
    if cpu > 0.0 && sys > 0.0 {
        cpu / sys * now.online_cpus as f64 * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_as_docker() {
        let a = Sample {
            cpu_ns: 1_000_000_000,
            system_ns: 10_000_000_000,
            online_cpus: 2,
            ..Default::default()
        };
        let b = Sample {
            cpu_ns: 1_500_000_000,
            system_ns: 12_000_000_000,
            online_cpus: 2,
            ..Default::default()
        };
        assert!((cpu_percent(&a, &b) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&b, &b), 0.0);
        assert_eq!(
            field("cache 10\ntotal_inactive_file 42\n", "total_inactive_file"),
            42
        );
    }
}
