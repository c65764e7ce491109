//! What rbox reads from the container's cgroup (`/rbox/<id>`) itself: OOM kills and member
//! processes, on v1, hybrid and unified hosts. libcontainer creates and deletes the cgroup.

use std::path::PathBuf;

const BASE: &str = "/sys/fs/cgroup";

/// Every directory of the container's cgroup, over all mounted hierarchies.
pub fn dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let unified = PathBuf::from(BASE).join("rbox").join(id);
    if unified.is_dir() {
        out.push(unified);
    }
    if let Ok(entries) = std::fs::read_dir(BASE) {
        for e in entries.flatten() {
            let d = e.path().join("rbox").join(id);
            if d.is_dir() {
                out.push(d);
            }
        }
    }
    out
}

fn oom_kills_in(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// True when the kernel OOM-killed a process of the container.
pub fn oom_killed(id: &str) -> bool {
    dirs(id).iter().any(|d| {
        ["memory.oom_control", "memory.events"].iter().any(|f| {
            std::fs::read_to_string(d.join(f))
                .map(|t| oom_kills_in(&t) > 0)
                .unwrap_or(false)
        })
    })
}

/// Pids (host namespace) of the container's processes.
pub fn pids(id: &str) -> Vec<i32> {
    for d in dirs(id) {
        if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
            let v: Vec<i32> = t.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if !v.is_empty() {
                return v;
            }
        }
    }
    Vec::new()
}

/// Removes what libcontainer left (e.g. after a crash); non-empty cgroups stay.
pub fn remove(id: &str) {
    for d in dirs(id) {
        let _ = std::fs::remove_dir(&d);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_v1_and_v2_counters() {
        assert_eq!(
            super::oom_kills_in("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            super::oom_kills_in("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(super::oom_kills_in("oom_kill_disable 0\n"), 0);
    }
}
