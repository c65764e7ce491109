//! Local volumes, as Docker's `local` driver keeps them: `<root>/volumes/NAME/_data`, with the
//! volume's metadata in `<root>/volumes/NAME/volume.json`.
//!
//! Locks: the containers lock (`store::names_lock`) is taken first by everything that decides
//! whether a volume is in use (container create records its use under it), then
//! `<root>/locks/volumes.lock` for the volume directory itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::record::Kind;
use crate::record::Record;
use crate::store;

/// Docker's label on the volumes it makes for `-v /path` (what `volume prune` removes).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// `volume inspect`'s JSON.
    pub fn to_json(&self, root: &Path) -> Value {
        json!({
            "CreatedAt": self.created.to_rfc3339_opts(SecondsFormat::Secs, true),
            "Driver": "local",
            "Labels": if self.labels.is_empty() { Value::Null } else { json!(self.labels) },
            "Mountpoint": data_dir(root, &self.name),
            "Name": self.name,
            "Options": Value::Null,
            "Scope": "local",
        })
    }
}

fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

fn meta(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("volume.json")
}

/// Docker's local volume names (the container name rule).
pub fn valid_name(n: &str) -> bool {
    crate::store::valid_name(n)
}

/// Where a volume's content lives (the bind source of its mounts).
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

fn lock(root: &Path) -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(
        &root.join("locks").join("volumes.lock"),
    )?)
}

fn no_such(name: &str) -> Error {
    Error::Invalid(format!("get {name}: no such volume"))
}

/// Creates volume `name` unless it exists (Docker's `volume create` is idempotent); returns it.
pub fn create(root: &Path, name: &str, labels: BTreeMap<String, String>) -> Result<Volume> {
    if !valid_name(name) {
        return Err(Error::Invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
        )));
    }
    let _l = lock(root)?;
    if let Some(v) = statefile::read_json_opt::<Volume>(&meta(root, name))? {
        return Ok(v);
    }
    store::create_topdir(&volumes_dir(root))?;
    let data = data_dir(root, name);
    std::fs::create_dir_all(&data).map_err(|e| Error::io(data.display(), e))?;
    let v = Volume {
        name: name.to_string(),
        created: Utc::now(),
        labels,
    };
    // The metadata is written last: a volume directory without it is unfinished and is
    // finished by the next create or removed by prune.
    if let Err(e) = statefile::write_json(&meta(root, name), &v) {
        let _ = std::fs::remove_dir_all(volumes_dir(root).join(name));
        return Err(e.into());
    }
    Ok(v)
}

pub fn get(root: &Path, name: &str) -> Result<Volume> {
    statefile::read_json_opt(&meta(root, name))?.ok_or_else(|| no_such(name))
}

/// The volumes `volume ls --filter` keeps: `name` (a regular expression, as Docker's),
/// `driver`, `label`, `dangling` (used by no container).
pub fn list_filtered(root: &Path, f: &crate::filter::Filters) -> Result<Vec<Volume>> {
    let used = used_names(root);
    let mut out = Vec::new();
    for v in list(root) {
        if f.bool_matches("dangling", !used.contains(&v.name))?
            && f.any("name", |n| crate::filter::regex_match(n, &v.name))
            && f.any("driver", |d| d == "local")
            && f.labels_match("label", &v.labels)
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// The volumes some container (running or not) mounts.
pub fn used(root: &Path) -> Vec<String> {
    let mut v = used_names(root);
    v.sort();
    v.dedup();
    v
}

fn used_names(root: &Path) -> Vec<String> {
    store::all(root)
        .iter()
        .flat_map(|r| r.settings.mounts.iter())
        .filter(|m| m.kind == Kind::Volume)
        .map(|m| m.source.clone())
        .collect()
}

/// All volumes, by name.
pub fn list(root: &Path) -> Vec<Volume> {
    let Ok(entries) = std::fs::read_dir(volumes_dir(root)) else {
        return Vec::new();
    };
    let mut v: Vec<Volume> = entries
        .flatten()
        .filter_map(|e| get(root, &e.file_name().to_string_lossy()).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Ids of the containers (running or not) that mount volume `name`.
fn users(root: &Path, name: &str) -> Vec<String> {
    store::all(root)
        .into_iter()
        .filter(|r| {
            r.settings
                .mounts
                .iter()
                .any(|m| m.kind == Kind::Volume && m.source == name)
        })
        .map(|r| r.id)
        .collect()
}

/// Bytes under `dir` (what removing it reclaims).
/// Deletes an unused volume; the caller holds both locks. Returns the bytes reclaimed.
fn delete(root: &Path, name: &str) -> Result<u64> {
    let dir = volumes_dir(root).join(name);
    let bytes = crate::usage::disk_usage(&dir.join("_data"));
    // The metadata goes first, so a half-removed volume is never listed.
    let _ = std::fs::remove_file(meta(root, name));
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove {name}"), e))?;
    Ok(bytes)
}

/// `volume rm [-f] NAME`: refuses a volume in use (also with -f, as Docker).
pub fn remove(root: &Path, name: &str, force: bool) -> Result<()> {
    let _names = store::names_lock(root)?;
    let _l = lock(root)?;
    if !meta(root, name).exists() {
        return match force {
            true => Ok(()),
            false => Err(no_such(name)),
        };
    }
    let users = users(root, name);
    if !users.is_empty() {
        return Err(Error::Invalid(format!(
            "remove {name}: volume is in use - [{}]",
            users.join(", ")
        )));
    }
    delete(root, name).map(|_| ())
}

/// `volume prune [-a] [--filter]`: removes unused anonymous volumes (all unused ones with
/// `all`) that the prune filters select; returns their names and the bytes reclaimed.
pub fn prune(root: &Path, all: bool, f: &crate::filter::Filters) -> Result<(Vec<String>, u64)> {
    let _names = store::names_lock(root)?;
    let _l = lock(root)?;
    let used = used_names(root);
    let (mut names, mut bytes) = (Vec::new(), 0);
    for v in list(root) {
        if used.contains(&v.name)
            || !(all || v.anonymous())
            || !f.prune_matches(v.created, &v.labels)?
        {
            continue;
        }
        bytes += delete(root, &v.name)?;
        names.push(v.name);
    }
    Ok((names, bytes))
}

/// Creates the volumes a new container names (anonymous ones get their label). The caller
/// holds the containers lock and records the container before releasing it.
pub fn create_for(root: &Path, rec: &Record) -> Result<()> {
    for m in &rec.settings.mounts {
        if m.kind != Kind::Volume {
            continue;
        }
        let mut labels = BTreeMap::new();
        if m.anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        create(root, &m.source, labels)?;
    }
    Ok(())
}

/// `rm -v` and `--rm`: removes the container's anonymous volumes once its record is gone. A
/// volume another container also mounts stays. Only the volumes lock is taken: the caller may
/// hold the containers lock already.
pub fn remove_anonymous(root: &Path, rec: &Record) {
    let mounts = rec.settings.mounts.iter();
    let anonymous: Vec<&str> = mounts
        .filter(|m| m.kind == Kind::Volume && m.anonymous)
        .map(|m| m.source.as_str())
        .collect();
    if anonymous.is_empty() {
        return;
    }
    let Ok(_l) = lock(root) else {
        return;
    };
    for name in anonymous {
        if meta(root, name).exists() && users(root, name).is_empty() {
            if let Err(e) = delete(root, name) {
                tracing::warn!("removing volume {name}: {e}");
            }
        }
    }
}

/// Copies a directory tree from the image into an empty volume, keeping modes, owners and
/// symlinks (never followed: the image's links are the image's business).
pub fn copy_up(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(from)?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let m = std::fs::symlink_metadata(&src)?;
        let t = m.file_type();
        if t.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_up(&src, &dst)?;
            continue;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if t.is_file() {
            std::fs::copy(&src, &dst)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        } else {
            // Devices, fifos and sockets are not volume content.
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
    }
    Ok(())
}

/// Docker's `units.HumanSize`: decimal units, `%.4g`.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = (v.max(1.0).log10().floor() as usize) + 1;
    let s = format!("{v:.*}", 4usize.saturating_sub(int_digits));
    let s = match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.'),
        false => &s,
    };
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(12_345_678), "12.35MB");
    }

    #[test]
    fn create_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let v = create(root, "data", BTreeMap::new()).unwrap();
        assert!(!v.anonymous());
        assert!(data_dir(root, "data").is_dir());
        std::fs::write(data_dir(root, "data").join("f"), "keep").unwrap();
        // Idempotent: the content stays.
        create(root, "data", BTreeMap::new()).unwrap();
        assert!(data_dir(root, "data").join("f").exists());
        let anon: BTreeMap<_, _> = [(ANONYMOUS_LABEL.to_string(), String::new())].into();
        create(root, "anon1", anon).unwrap();
        let names: Vec<_> = list(root).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["anon1", "data"]);
        assert!(create(root, "./x", BTreeMap::new()).is_err());
        assert_eq!(
            remove(root, "nope", false).unwrap_err().to_string(),
            "get nope: no such volume"
        );
        assert!(remove(root, "nope", true).is_ok());
        let (pruned, bytes) = prune(root, false, &Default::default()).unwrap();
        assert_eq!((pruned, bytes), (vec!["anon1".to_string()], 0));
        let (pruned, bytes) = prune(root, true, &Default::default()).unwrap();
        assert_eq!((pruned, bytes), (vec!["data".to_string()], 4));
        assert!(list(root).is_empty());
    }
}
