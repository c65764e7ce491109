//! `pause`/`unpause`: the container's processes frozen by the cgroup freezer (v1
//! `freezer.state`, v2 `cgroup.freeze`). The freezer is the state: a container is paused
//! while its cgroup is frozen, so nothing else records it and a container that ends is never
//! left "paused".

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::Record;

const BASE: &str = "/sys/fs/cgroup";

/// The freezer file of the container's cgroup and what frozen/thawed are written as.
fn freezer(id: &str) -> Option<(PathBuf, &'static str, &'static str)> {
    let v1 = Path::new(BASE)
        .join("freezer/rbox")
        .join(id)
        .join("freezer.state");
    if v1.exists() {
        return Some((v1, "FROZEN", "THAWED"));
    }
    for base in [
        Path::new(BASE).join("rbox"),
        Path::new(BASE).join("unified/rbox"),
    ] {
        let v2 = base.join(id).join("cgroup.freeze");
        if v2.exists() {
            return Some((v2, "1", "0"));
        }
    }
    None
}

/// True while the container's cgroup is frozen.
pub fn is_paused(id: &str) -> bool {
    let Some((f, frozen, _)) = freezer(id) else {
        return false;
    };
    std::fs::read_to_string(f).is_ok_and(|s| s.trim() == frozen || s.trim() == "FREEZING")
}

fn set(rec: &Record, freeze: bool) -> Result<()> {
    let (f, frozen, thawed) = freezer(&rec.id).ok_or_else(|| {
        Error::Invalid(format!(
            "Cannot pause container {}: the cgroup freezer is not available",
            rec.id
        ))
    })?;
    let v = if freeze { frozen } else { thawed };
    std::fs::write(&f, v).map_err(|e| Error::io(f.display(), e))?;
    // v1 freezes asynchronously: wait until it says FROZEN (each read lets it progress).
    if freeze {
        for _ in 0..1000 {
            match std::fs::read_to_string(&f) {
                Ok(s) if s.trim() == "FREEZING" => std::thread::yield_now(),
                _ => break,
            }
        }
    }
    Ok(())
}

/// `pause`: Docker's errors for a container that does not run or is paused already.
pub fn pause(root: &Path, key: &str) -> Result<Record> {
    let rec = crate::lifecycle::find(root, key)?;
    if !rec.running() {
        return Err(Error::Invalid(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    if is_paused(&rec.id) {
        return Err(Error::Invalid(format!(
            "Container {} is already paused",
            rec.id
        )));
    }
    set(&rec, true)?;
    crate::events::container(root, &rec, "pause", &[]);
    Ok(rec)
}

/// `unpause`.
pub fn unpause(root: &Path, key: &str) -> Result<Record> {
    let rec = crate::lifecycle::find(root, key)?;
    if !is_paused(&rec.id) {
        return Err(Error::Invalid(format!(
            "Container {} is not paused",
            rec.id
        )));
    }
    set(&rec, false)?;
    crate::events::container(root, &rec, "unpause", &[]);
    Ok(rec)
}

/// Thaws a paused container so that a signal (`stop`, `kill`, `rm -f`) reaches it, as
/// Docker does; nothing for one that is not paused or not there.
pub fn thaw(root: &Path, key: &str) {
    if let Ok(rec) = crate::lifecycle::find(root, key) {
        if is_paused(&rec.id) {
            let _ = set(&rec, false);
        }
    }
}
