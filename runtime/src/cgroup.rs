//! What rbox does with the container's cgroup (`/rbox/<id>`) itself, on v1, hybrid and unified
//! hosts: reads OOM kills and member processes, removes it once the container stopped
//! (libcontainer creates it; its `delete` is the fallback), and warms up the kernel lock that
//! libcontainer's move of the container into it takes (`MigrationWarmUp`).

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

/// Whether the host can enforce limits of cgroup controller `name`: on a unified (v2) host it
/// is listed in the root's `cgroup.controllers`, on v1 and hybrid hosts it has a hierarchy.
pub fn controller_available(name: &str) -> bool {
    match std::fs::read_to_string(PathBuf::from(BASE).join("cgroup.controllers")) {
        Ok(list) => list.split_whitespace().any(|c| c == name),
        Err(_) => PathBuf::from(BASE).join(name).is_dir(),
    }
}

/// Docker's answer to a limit the host cannot enforce: memory and pids limits are dropped with
/// a warning (returned, for the CLI to print), a CPU limit is an error.
pub fn discard_unsupported(s: &mut crate::record::Settings) -> crate::Result<Vec<String>> {
    let mut warnings = Vec::new();
    if s.memory > 0 && !controller_available("memory") {
        s.memory = 0;
        warnings.push(
            "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded."
                .to_string(),
        );
    }
    if s.pids_limit > 0 && !controller_available("pids") {
        s.pids_limit = 0;
        warnings.push(
            "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded."
                .to_string(),
        );
    }
    if s.nano_cpus > 0 && !controller_available("cpu") {
        return Err(crate::Error::Invalid(
            "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted".into(),
        ));
    }
    Ok(warnings)
}

/// What the spec asks for that libcontainer 0.7 does not apply itself, set once it made the
/// container's cgroup and before the container runs: `--oom-kill-disable` (libcontainer
/// writes `memory.oom_control` 0 whatever the spec says; v1 only, the create checks drop it
/// elsewhere).
pub fn after_create(id: &str, s: &crate::record::Settings) -> crate::Result<()> {
    if s.oom_kill_disable {
        let f = PathBuf::from(BASE)
            .join("memory/rbox")
            .join(id)
            .join("memory.oom_control");
        std::fs::write(&f, "1").map_err(|e| crate::Error::io(f.display(), e))?;
    }
    Ok(())
}

fn oom_kills_in(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// True when the kernel OOM-killed a process of the container. Only the memory controller
/// counts OOM kills: v1 `memory/` (memory.oom_control), unified at the base or, on a hybrid
/// host, at `unified/` (memory.events).
pub fn oom_killed(id: &str) -> bool {
    let base = PathBuf::from(BASE);
    [
        base.join("memory/rbox").join(id).join("memory.oom_control"),
        base.join("rbox").join(id).join("memory.events"),
        base.join("unified/rbox").join(id).join("memory.events"),
    ]
    .iter()
    .any(|f| {
        std::fs::read_to_string(f)
            .map(|t| oom_kills_in(&t) > 0)
            .unwrap_or(false)
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

/// Removes the container's cgroups (what libcontainer made, or left after a crash); non-empty
/// ones stay. True when there were some and none is left (a co-mounted hierarchy such as
/// `cpu,cpuacct` shows up under several names: the later ones are already gone).
pub fn remove(id: &str) -> bool {
    let found = dirs(id);
    let mut all_gone = !found.is_empty();
    for d in found {
        all_gone &= match std::fs::remove_dir(&d) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
    }
    all_gone
}

/// The cgroup filesystems a container sees, for the spec's `readonlyPaths`: `/sys/fs/cgroup`
/// and, on v1 and hybrid hosts, each hierarchy's directory below it.
///
/// Why: libcontainer 0.7 mounts the v1 hierarchies of a cgroup-namespaced container
/// read-write whatever the spec's `ro` says (`setup_namespaced_subsystem`), which let the
/// container's root raise its own memory, pids and CPU limits. Each path listed here is
/// bind-mounted onto itself and remounted read-only by the init, as runc's `ro` cgroup mount
/// does. A hierarchy the host lists but has not mounted is skipped by libcontainer (ENOENT).
pub fn readonly_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    readonly_mounts_in(&text)
}

fn readonly_mounts_in(text: &str) -> Vec<String> {
    let mut paths = vec![BASE.to_string()];
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers)) = (f.next(), f.next()) else {
            continue;
        };
        if controllers.is_empty() {
            continue;
        }
        // Named hierarchies (`name=systemd`) are mounted under their name.
        let dir = controllers.strip_prefix("name=").unwrap_or(controllers);
        paths.push(format!("{BASE}/{dir}"));
    }
    paths
}

/// The `cgroup.procs` of this process's own cgroup in one hierarchy (a v1 controller's when
/// there is one, else the unified one).
fn own_procs_file() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    procs_file_in(&text, |p| p.exists())
}

/// `own_procs_file` for the text of /proc/self/cgroup; `exists` says which files are there
/// (/proc/self/cgroup lists every hierarchy of the host, mounted in our namespace or not).
fn procs_file_in(text: &str, exists: impl Fn(&std::path::Path) -> bool) -> Option<PathBuf> {
    let mut unified = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            unified = Some(PathBuf::from(BASE).join(path).join("cgroup.procs"));
        } else if !controllers.contains('=') {
            let p = PathBuf::from(BASE)
                .join(controllers)
                .join(path)
                .join("cgroup.procs");
            if exists(&p) {
                return Some(p);
            }
        }
    }
    unified.filter(|p| exists(p))
}

/// A throw-away child that moved itself into the cgroup it already is in; reaped on drop.
///
/// Why: every write to a `cgroup.procs` takes a global lock (cgroup_threadgroup_rwsem) whose
/// first writer after a quiet spell waits for an RCU grace period, 5-20 ms on this 2-CPU VM;
/// writers within about one grace period after that take ~0.1 ms. libcontainer moves the
/// container's first process ~6 ms into a run, after our own set-up (claim, overlay, netns,
/// spec). Forked at the start of the run, this child pays the wait in parallel with that
/// set-up, so the container's move finds the lock warm or waits only for the rest of the
/// grace period. The child only makes raw system calls between fork and _exit.
pub struct MigrationWarmUp(Option<nix::unistd::Pid>);

impl MigrationWarmUp {
    pub fn start() -> MigrationWarmUp {
        let Some(file) = own_procs_file()
            .and_then(|p| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).ok())
        else {
            return MigrationWarmUp(None);
        };
        // SAFETY: the child makes only async-signal-safe calls (open, write, _exit) on data
        // prepared before the fork.
        match unsafe { libc::fork() } {
            0 => unsafe {
                let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    // "0" is the writing process itself.
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                }
                libc::_exit(0)
            },
            pid if pid > 0 => MigrationWarmUp(Some(nix::unistd::Pid::from_raw(pid))),
            _ => MigrationWarmUp(None),
        }
    }
}

impl Drop for MigrationWarmUp {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    #[test]
    fn readonly_mounts_cover_every_v1_hierarchy() {
        let hybrid = "12:pids:/a\n4:cpu,cpuacct:/a\n1:name=systemd:/a\n0::/\n";
        assert_eq!(
            super::readonly_mounts_in(hybrid),
            [
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/systemd"
            ]
        );
        assert_eq!(
            super::readonly_mounts_in("0::/rbox/x\n"),
            ["/sys/fs/cgroup"]
        );
    }

    #[test]
    fn warm_up_writes_to_an_own_cgroup_that_is_mounted() {
        let hybrid = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/x\n0::/\n";
        assert_eq!(
            super::procs_file_in(hybrid, |_| true),
            Some(PathBuf::from("/sys/fs/cgroup/pids/cgroup.procs"))
        );
        let memory = Path::new("/sys/fs/cgroup/memory/process_api/x/cgroup.procs");
        assert_eq!(
            super::procs_file_in(hybrid, |p| p == memory),
            Some(memory.to_path_buf())
        );
        // Pure v2 (or v1 hierarchies that are not mounted here): the unified cgroup.
        let v2 = Path::new("/sys/fs/cgroup/user.slice/cgroup.procs");
        assert_eq!(
            super::procs_file_in("8:pids:/\n0::/user.slice\n", |p| p == v2),
            Some(v2.to_path_buf())
        );
        assert_eq!(super::procs_file_in("0::/\n", |_| false), None);
    }

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
