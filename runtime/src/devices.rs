//! Devices of a container: `--device HOST[:CONTAINER][:PERMS]` (a node, or every node below a
//! directory, as Docker), `--device-cgroup-rule 'c 1:3 rwm'`, and `--privileged`'s every host
//! device, as OCI `linux.devices` entries and device cgroup rules.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::record::Device;

/// A device node to create in the container and allow in its cgroup.
struct Node {
    path: String,
    kind: &'static str,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    access: String,
}

fn node_of(host: &Path, in_container: &str, access: &str) -> Result<Option<Node>> {
    let m = std::fs::metadata(host).map_err(|e| {
        Error::Invalid(format!(
            "error gathering device information while adding custom device {:?}: {}",
            host.display().to_string(),
            crate::error::errno_text(&e)
        ))
    })?;
    let kind = match m.file_type() {
        t if t.is_char_device() => "c",
        t if t.is_block_device() => "b",
        _ => return Ok(None),
    };
    let rdev = m.rdev();
    Ok(Some(Node {
        path: in_container.to_string(),
        kind,
        major: libc::major(rdev) as u64,
        minor: libc::minor(rdev) as u64,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        access: access.to_string(),
    }))
}

/// Checks a `--device` and returns what it adds (at create: a missing path fails early).
fn nodes(d: &Device) -> Result<Vec<Node>> {
    let host = Path::new(&d.path_on_host);
    let meta = std::fs::metadata(host).map_err(|e| {
        Error::Invalid(format!(
            "error gathering device information while adding custom device {:?}: {}",
            d.path_on_host,
            crate::error::errno_text(&e)
        ))
    })?;
    if meta.is_dir() {
        // Docker adds every device node below a directory, at the same relative place.
        let mut out = Vec::new();
        walk(host, &mut |p| {
            let rel = p.strip_prefix(host).unwrap_or(p);
            let target = Path::new(&d.path_in_container).join(rel);
            if let Ok(Some(n)) = node_of(p, &target.to_string_lossy(), &d.cgroup_permissions) {
                out.push(n);
            }
        });
        return Ok(out);
    }
    match node_of(host, &d.path_in_container, &d.cgroup_permissions)? {
        Some(n) => Ok(vec![n]),
        None => Err(Error::Invalid(format!(
            "error gathering device information while adding custom device {:?}: not a device node",
            d.path_on_host
        ))),
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, f),
            Ok(t) if t.is_symlink() => {}
            Ok(_) => f(&p),
            Err(_) => {}
        }
    }
}

/// Validates `--device`s (the host paths exist and are devices).
pub fn check(devices: &[Device]) -> Result<()> {
    for d in devices {
        nodes(d)?;
    }
    Ok(())
}

/// Every device node of the host under /dev, as libcontainer's `HostDevices` finds them
/// (skipping /dev/pts, /dev/shm, /dev/mqueue and the like, which the container has its own of).
fn host_devices() -> Vec<Node> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if matches!(
            name.as_str(),
            "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev" | "console" | "ptmx"
        ) {
            continue;
        }
        let p = e.path();
        let mut add = |p: &Path| {
            if let Ok(Some(n)) = node_of(p, &p.to_string_lossy(), "rwm") {
                out.push(n);
            }
        };
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, &mut add),
            Ok(t) if t.is_symlink() => {}
            Ok(_) => add(&p),
            Err(_) => {}
        }
    }
    out
}

/// A `--device-cgroup-rule` (`c 1:3 mr`, `a *:* rwm`) as an OCI device rule; `None` when
/// malformed (Docker's CLI checks `^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$`).
pub fn cgroup_rule(rule: &str) -> Option<Value> {
    let parts: Vec<&str> = rule.split(' ').collect();
    let [kind, nums, access] = parts.as_slice() else {
        return None;
    };
    if !matches!(*kind, "a" | "b" | "c") {
        return None;
    }
    let (major, minor) = nums.split_once(':')?;
    let num = |s: &str| -> Option<Option<u64>> {
        match s {
            "*" => Some(None),
            s => s.parse().ok().map(Some),
        }
    };
    let (major, minor) = (num(major)?, num(minor)?);
    if access.is_empty() || access.len() > 3 || !access.chars().all(|c| "rwm".contains(c)) {
        return None;
    }
    let mut v = json!({"allow": true, "type": kind, "access": access});
    if let Some(m) = major {
        v["major"] = json!(m);
    }
    if let Some(m) = minor {
        v["minor"] = json!(m);
    }
    Some(v)
}

/// The spec's `linux.devices` and the device cgroup rules after the default deny.
pub fn spec(
    devices: &[Device],
    rules: &[String],
    privileged: bool,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut nodes_all = Vec::new();
    if privileged {
        nodes_all.extend(host_devices());
    }
    for d in devices {
        nodes_all.extend(nodes(d)?);
    }
    let mut allow = Vec::new();
    if privileged {
        allow.push(json!({"allow": true, "access": "rwm"}));
    }
    let mut entries = Vec::new();
    for n in &nodes_all {
        entries.push(json!({
            "path": n.path, "type": n.kind, "major": n.major, "minor": n.minor,
            "fileMode": n.mode, "uid": n.uid, "gid": n.gid,
        }));
        if !privileged {
            allow.push(json!({"allow": true, "type": n.kind, "major": n.major, "minor": n.minor, "access": n.access}));
        }
    }
    allow.extend(rules.iter().filter_map(|r| cgroup_rule(r)));
    Ok((entries, allow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_rules_as_docker() {
        assert_eq!(
            cgroup_rule("c 1:3 mr").unwrap(),
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "mr"})
        );
        assert_eq!(
            cgroup_rule("a *:* rwm").unwrap(),
            json!({"allow": true, "type": "a", "access": "rwm"})
        );
        for bad in ["c 1:3", "x 1:3 r", "c 1:3 rwmx", "c a:3 r", "c 1:3 q"] {
            assert!(cgroup_rule(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_missing_device_is_docker_s_error() {
        let d = Device {
            path_on_host: "/nonexistent".into(),
            path_in_container: "/nonexistent".into(),
            cgroup_permissions: "rwm".into(),
        };
        assert_eq!(
            check(&[d]).unwrap_err().to_string(),
            "error gathering device information while adding custom device \"/nonexistent\": no such file or directory"
        );
    }
}
