//! The OCI runtime spec (`config.json`) for a container: Docker's security defaults plus the
//! user's settings. Written as JSON because it is the OCI document libcontainer reads.

use std::path::Path;

use serde_json::{json, Value};

use crate::record::Record;
use crate::security::DEFAULT_CAPS;
use crate::store::Paths;
use crate::user::User;

const MASKED: &[&str] = &[
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

const READONLY: &[&str] = &[
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

/// The environment the process gets: image + user env, with PATH, HOSTNAME, HOME, TERM as Docker.
pub fn process_env(rec: &Record, user: &User) -> Vec<String> {
    let s = &rec.settings;
    let mut env: Vec<String> = Vec::new();
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

pub fn build(
    paths: &Paths,
    rec: &Record,
    user: &User,
    env: &[String],
    netns: Option<&Path>,
) -> Value {
    let s = &rec.settings;
    let nofile = host_hard_limit(libc::RLIMIT_NOFILE).min(1_048_576);
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if let Some(p) = netns {
        namespaces.push(json!({"type": "network", "path": p}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for f in ["hostname", "hosts", "resolv.conf"] {
        mounts.push(json!({
            "destination": format!("/etc/{f}"), "type": "bind",
            "source": paths.dir.join(f), "options": ["rbind", "rprivate"]
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
    let mut resources = json!({ "devices": [{"allow": false, "access": "rwm"}] });
    if s.memory > 0 {
        resources["memory"] = json!({"limit": s.memory});
    }
    if s.nano_cpus > 0 {
        resources["cpu"] = json!({"quota": s.nano_cpus / 10_000, "period": 100_000});
    }
    if s.pids_limit > 0 {
        resources["pids"] = json!({"limit": s.pids_limit});
    }
    let mut user_json = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        user_json["additionalGids"] = json!(user.additional_gids);
    }
    let mut readonly: Vec<String> = READONLY.iter().map(|p| p.to_string()).collect();
    readonly.extend(crate::cgroup::readonly_mounts());
    let cwd = if s.working_dir.is_empty() {
        "/"
    } else {
        &s.working_dir
    };
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": paths.rootfs(), "readonly": s.read_only},
        "hostname": s.hostname,
        "mounts": mounts,
        "process": {
            "terminal": s.tty,
            "user": user_json,
            "args": rec.argv(),
            "env": env,
            "cwd": cwd,
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        },
        "linux": {
            "cgroupsPath": format!("/rbox/{}", rec.id),
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": MASKED,
            "readonlyPaths": readonly,
            // No "seccomp": seccomp::SeccompExecutor loads a BPF compiled once per root.
        }
    })
}
