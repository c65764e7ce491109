//! The OCI runtime spec (`config.json`) for a container: Docker's security defaults plus the
//! user's settings. Written as JSON because it is the OCI document libcontainer reads.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::Result;
use crate::record::Record;
use crate::security::DEFAULT_CAPS;
use crate::store::Paths;
use crate::user::User;

/// Docker's /dev/shm size when `--shm-size` is not given.
pub(crate) const DEFAULT_SHM_SIZE: i64 = 64 << 20;

pub(crate) const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub(crate) const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host hard limit of a resource, so the spec never asks for more (no CAP_SYS_RESOURCE here).
fn host_hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    unsafe { libc::getrlimit(resource, &mut r) };
    r.rlim_max
}

/// The environment the process gets: the links', image + user env, with PATH, HOSTNAME, HOME,
/// TERM as Docker.
pub fn process_env(root: &Path, rec: &Record, user: &User) -> Vec<String> {
    let s = &rec.settings;
    // Docker puts the links' variables first: the container's own override them.
    let mut env: Vec<String> = match s.links.is_empty() {
        true => Vec::new(),
        false => crate::links::env(
            &crate::links::resolve(root, rec).unwrap_or_default(),
            &rec.name,
        ),
    };
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    for e in &s.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !has(&env, "PATH") {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    if !has(&env, "HOSTNAME") {
        env.insert(1, format!("HOSTNAME={}", s.hostname));
    }
    if s.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    if !has(&env, "HOME") {
        env.push(format!(
            "HOME={}",
            if user.home.is_empty() {
                "/"
            } else {
                &user.home
            }
        ));
    }
    env
}

/// The capabilities of the container's processes (`--cap-add`, `--cap-drop`,
/// `--privileged`); validated at create, so an error here is a record edited by hand.
pub fn caps(s: &crate::record::Settings) -> Vec<String> {
    crate::caps::effective(DEFAULT_CAPS, &s.cap_add, &s.cap_drop, s.privileged)
        .unwrap_or_else(|_| DEFAULT_CAPS.iter().map(|c| c.to_string()).collect())
}

/// `--security-opt` as the container's processes get it: `--privileged` is unconfined.
pub fn security_opt(s: &crate::record::Settings) -> Vec<String> {
    let mut v = s.security_opt.clone();
    if s.privileged {
        v.retain(|o| !o.starts_with("seccomp"));
        v.push("seccomp=unconfined".into());
    }
    v
}

/// The namespace of kind `typ` per its `--pid`/`--ipc`/`--uts`/`--cgroupns` mode: `None` to
/// stay in the host's, a path to join another container's.
fn namespace(root: &Path, typ: &str, mode: &str) -> Result<Option<Value>> {
    Ok(match mode {
        "host" => None,
        m => match m.strip_prefix("container:") {
            Some(other) => {
                let pid = running_pid(root, other, typ)?;
                Some(json!({"type": typ, "path": format!("/proc/{pid}/ns/{}", ns_file(typ))}))
            }
            None => Some(json!({"type": typ})),
        },
    })
}

fn ns_file(typ: &str) -> &str {
    match typ {
        "network" => "net",
        "mount" => "mnt",
        t => t,
    }
}

/// The init pid of the running container `key` whose `what` namespace another joins.
fn running_pid(root: &Path, key: &str, what: &str) -> Result<i32> {
    let r = crate::lifecycle::find(root, key)?;
    if !r.running() || r.state.pid <= 0 {
        return Err(crate::Error::Invalid(format!(
            "cannot join {} of a non running container: {key}",
            what.to_ascii_uppercase()
        )));
    }
    Ok(r.state.pid)
}

/// `--ulimit` names as OCI rlimit types.
fn rlimit_type(name: &str) -> String {
    format!("RLIMIT_{}", name.to_ascii_uppercase())
}

pub fn build(
    paths: &Paths,
    rec: &Record,
    user: &User,
    env: &[String],
    netns: Option<&Path>,
) -> Result<Value> {
    let s = &rec.settings;
    let nofile = host_hard_limit(libc::RLIMIT_NOFILE).min(1_048_576);
    let mut namespaces = Vec::new();
    for (typ, mode) in [
        ("pid", s.pid_mode.as_str()),
        ("ipc", s.ipc_mode.as_str()),
        ("uts", s.uts_mode.as_str()),
        ("mount", ""),
        ("cgroup", s.cgroupns_mode.as_str()),
    ] {
        namespaces.extend(namespace(&paths.root, typ, mode)?);
    }
    if let Some(p) = netns {
        namespaces.push(json!({"type": "network", "path": p}));
    }
    let shm_size = if s.shm_size > 0 {
        s.shm_size
    } else {
        DEFAULT_SHM_SIZE
    };
    let shm = match s.ipc_mode.as_str() {
        "none" => None,
        // Sharing another IPC namespace means sharing its /dev/shm too, as Docker does.
        "host" => Some(
            json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]}),
        ),
        m => match m.strip_prefix("container:") {
            Some(other) => {
                let pid = running_pid(&paths.root, other, "ipc")?;
                Some(
                    json!({"destination": "/dev/shm", "type": "bind", "source": format!("/proc/{pid}/root/dev/shm"), "options": ["rbind", "rprivate"]}),
                )
            }
            None => Some(
                json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]}),
            ),
        },
    };
    let sys_ro = if s.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_ro]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys_ro]}),
    ];
    mounts.extend(shm);
    let etc = crate::network::etc_dir(paths, rec);
    for f in ["hostname", "hosts", "resolv.conf"] {
        mounts.push(json!({
            "destination": format!("/etc/{f}"), "type": "bind",
            "source": etc.join(f), "options": ["rbind", "rprivate"]
        }));
    }
    let rootfs = paths.rootfs();
    let user_mounts = crate::mounts::spec_mounts(&paths.root, &s.mounts, |t| {
        // Too many links: left to libcontainer, whose own lookup stays in the rootfs.
        let Ok(p) = crate::rootfs::resolve_in(&rootfs, t) else {
            return t.to_string();
        };
        match p.strip_prefix(&rootfs) {
            // A destination resolving to the root itself is left to libcontainer's own lookup.
            Ok(rel) if !rel.as_os_str().is_empty() => format!("/{}", rel.display()),
            _ => t.to_string(),
        }
    });
    // As Docker: a user's mount replaces rbox's own at the same place (/etc/hosts, /dev/shm),
    // and parents go before children, so `-v vol:/etc` does not hide /etc/hosts.
    mounts.retain(|m| {
        !user_mounts
            .iter()
            .any(|u| u["destination"] == m["destination"])
    });
    mounts.extend(user_mounts);
    mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |d| d.matches('/').count())
    });
    let (devices, allow) = crate::devices::spec(&s.devices, &s.device_cgroup_rules, s.privileged)?;
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    rules.extend(allow);
    let mut resources = json!({ "devices": rules });
    let mut memory = serde_json::Map::new();
    for (k, v) in [
        ("limit", s.memory),
        ("reservation", s.memory_reservation),
        ("swap", s.memory_swap),
    ] {
        if v != 0 {
            memory.insert(k.into(), json!(v));
        }
    }
    if s.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if s.nano_cpus > 0 {
        cpu.insert("quota".into(), json!(s.nano_cpus / 10_000));
        cpu.insert("period".into(), json!(100_000));
    }
    for (k, v) in [
        ("shares", s.cpu_shares),
        ("quota", s.cpu_quota),
        ("period", s.cpu_period),
    ] {
        if v > 0 {
            cpu.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [("cpus", &s.cpuset_cpus), ("mems", &s.cpuset_mems)] {
        if !v.is_empty() {
            cpu.insert(k.into(), json!(v));
        }
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if s.pids_limit > 0 {
        resources["pids"] = json!({"limit": s.pids_limit});
    }
    let mut gids = user.additional_gids.clone();
    for g in crate::user::group_ids(&paths.rootfs(), &s.group_add)? {
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    let mut user_json = json!({"uid": user.uid, "gid": user.gid});
    if !gids.is_empty() {
        user_json["additionalGids"] = json!(gids);
    }
    let cwd = if s.working_dir.is_empty() {
        "/"
    } else {
        &s.working_dir
    };
    let caps = caps(s);
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile})];
    for u in &s.ulimits {
        let t = rlimit_type(&u.name);
        rlimits.retain(|r| r["type"] != t.as_str());
        // -1 is unlimited.
        let v = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
        rlimits.push(json!({"type": t, "soft": v(u.soft), "hard": v(u.hard)}));
    }
    let mut process = json!({
        "terminal": s.tty,
        "user": user_json,
        "args": rec.argv(),
        "env": env,
        "cwd": cwd,
        // rbox's default, as `--security-opt no-new-privileges`; a privileged container may
        // gain privileges, as under Docker.
        "noNewPrivileges": !s.privileged,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
    });
    if s.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(s.oom_score_adj);
    }
    let mut linux = json!({
        "cgroupsPath": format!("/rbox/{}", rec.id),
        "namespaces": namespaces,
        "resources": resources,
        "devices": devices,
        // No "seccomp": seccomp::SeccompExecutor loads a BPF compiled once per root.
    });
    if !s.privileged {
        let mut readonly: Vec<String> = READONLY.iter().map(|p| p.to_string()).collect();
        readonly.extend(crate::cgroup::readonly_mounts());
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(readonly);
    }
    if !s.sysctls.is_empty() {
        linux["sysctl"] = json!(s.sysctls);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": paths.rootfs(), "readonly": s.read_only},
        "mounts": mounts,
        "process": process,
        "linux": linux,
    });
    // Without a UTS namespace of its own the container has the host's name (OCI forbids one).
    if s.uts_mode != "host" {
        spec["hostname"] = json!(s.hostname);
    }
    Ok(spec)
}
