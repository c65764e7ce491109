use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use procfs::ProcError;
use procfs::process::MountInfo;

use super::ControllerType;
use super::controller_type::CONTROLLERS;

#[derive(thiserror::Error, Debug)]
pub enum V1MountPointError {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("failed to get mountinfo: {0}")]
    MountInfo(ProcError),
    #[error("could not find mountpoint for {subsystem}")]
    NotFound { subsystem: ControllerType },
    #[error(transparent)]
    Pathrs(#[from] pathrs::error::Error),
}

/// The cgroup mount points in /proc/self/mountinfo, in its order; read once per process
/// (rbox patch: upstream reads the whole file once per controller, and a controller that is
/// not mounted reads all of it, which made every container start cost more as the host's
/// mount table grew). The read stops once every v1 hierarchy this process is in
/// (/proc/self/cgroup) has been seen mounted where the lookups below would find it: the
/// cgroup mounts come early in the table, the containers' mounts after them.
static CGROUP_MOUNTS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

fn cgroup_mounts() -> Result<&'static [PathBuf], V1MountPointError> {
    if let Some(m) = CGROUP_MOUNTS.get() {
        return Ok(m);
    }
    let mut pending = hierarchies();
    let reader = BufReader::new(ProcfsHandle::new()?.open(
        ProcfsBase::ProcSelf,
        "mountinfo",
        OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
    )?);
    let mut found = Vec::new();
    for line in reader.lines() {
        let m = MountInfo::from_line(&line?).map_err(V1MountPointError::MountInfo)?;
        if m.fs_type != "cgroup" {
            continue;
        }
        if let Some(p) = pending.as_mut() {
            p.retain(|h| !covers(&m, h));
        }
        found.push(m.mount_point);
        if pending.as_ref().is_some_and(|p| p.is_empty()) {
            break;
        }
    }
    Ok(CGROUP_MOUNTS.get_or_init(|| found))
}

/// The v1 hierarchies of /proc/self/cgroup, each as its controllers ("cpu,cpuacct",
/// "name=systemd"); `None` (read every line) when it cannot be read.
fn hierarchies() -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (id, controllers) = (f.next()?, f.next()?);
        if id != "0" && !controllers.is_empty() {
            out.push(controllers.to_string());
        }
    }
    Some(out)
}

/// `m` mounts hierarchy `h` where a lookup finds it: its super options name every controller
/// of `h`, and a hierarchy of controllers sits at a path ending in their names. A hierarchy
/// seen only elsewhere stays pending, which at worst reads the whole table as upstream does.
fn covers(m: &MountInfo, h: &str) -> bool {
    let has = |token: &str| match token.split_once('=') {
        Some((k, v)) => m.super_options.get(k).is_some_and(|o| o.as_deref() == Some(v)),
        None => m.super_options.contains_key(token),
    };
    h.split(',').all(has) && (h.contains("name=") || m.mount_point.ends_with(h))
}

/// List all cgroup v1 subsystem mount points on the system. This can include unsupported
/// subsystems, comounted controllers and named hierarchies.
pub fn list_subsystem_mount_points() -> Result<Vec<PathBuf>, V1MountPointError> {
    Ok(cgroup_mounts()?.to_vec())
}

/// List the mount points of all currently supported cgroup subsystems.
pub fn list_supported_mount_points() -> Result<HashMap<ControllerType, PathBuf>, V1MountPointError>
{
    let mut mount_paths = HashMap::with_capacity(CONTROLLERS.len());

    for controller in CONTROLLERS {
        if let Ok(mount_point) = get_subsystem_mount_point(controller) {
            mount_paths.insert(controller.to_owned(), mount_point);
        }
    }

    Ok(mount_paths)
}

pub fn get_subsystem_mount_point(subsystem: &ControllerType) -> Result<PathBuf, V1MountPointError> {
    let subsystem_name = subsystem.to_string();
    cgroup_mounts()?
        .iter()
        .find(|mount_point| {
            // Some systems mount net_prio and net_cls in the same directory
            // other systems mount them in their own directories. This
            // should handle both cases.
            match subsystem_name.as_str() {
                "net_cls" => ["net_cls,net_prio", "net_prio,net_cls", "net_cls"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                "net_prio" => ["net_cls,net_prio", "net_prio,net_cls", "net_prio"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                "cpu" => ["cpu,cpuacct", "cpu"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                "cpuacct" => ["cpu,cpuacct", "cpuacct"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                _ => mount_point.ends_with(&subsystem_name),
            }
        })
        .cloned()
        .ok_or(V1MountPointError::NotFound {
            subsystem: *subsystem,
        })
}
