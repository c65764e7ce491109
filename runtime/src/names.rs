//! The index of container names: `<root>/names/<name>` is a symlink to the id of the container
//! that holds the name.
//!
//! Why: `create`'s uniqueness check and every lookup by name read every record, so a `run -d`
//! at 600 containers opened 619 `container.json` files (a fifth of its CPU time, perf). With
//! the index a check or a lookup reads one link and one record.
//!
//! The index is a hint checked against the records, never trusted alone: an entry counts only
//! while the record it points to exists and carries that name. So an entry left by a crash
//! (between writing it and the record, or an `rm` that did not get to remove it) names
//! nobody and is overwritten; what must hold is the other direction, that every record's name
//! has its entry. Hence the order: the entry is written before the record (and made durable
//! first when the record is), removed after it, and every change to it happens under the
//! containers lock (`store::names_lock`), which each function here takes as a proof.
//!
//! A root made by an older rbox has no index: the first `create` or `rename` builds it from
//! the records (into a temporary directory renamed into place, so a crash leaves none or all of
//! it); until then lookups scan the records as before. Names that cannot be a file name (longer
//! than 255 bytes) have no entry and are always found by a scan.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{self, Paths};

/// NAME_MAX: the longest name that is one directory entry.
const NAME_MAX: usize = 255;

fn dir(root: &Path) -> PathBuf {
    root.join("names")
}

fn entry(root: &Path, name: &str) -> Option<PathBuf> {
    (name.len() <= NAME_MAX).then(|| dir(root).join(name))
}

/// The id an entry points to, if it is one.
fn target(link: &Path) -> Option<String> {
    let id = fs::read_link(link)
        .ok()?
        .into_os_string()
        .into_string()
        .ok()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The container that holds `name`, if any.
pub fn holder(root: &Path, name: &str) -> Option<Record> {
    match entry(root, name).filter(|_| dir(root).is_dir()) {
        Some(link) => {
            let rec = store::load(&Paths::new(root, &target(&link)?)).ok()?;
            (rec.name == name).then_some(rec)
        }
        None => store::all(root).into_iter().find(|r| r.name == name),
    }
}

/// Builds the index of a root that has none. The caller holds the containers lock.
pub fn ensure(root: &Path, _held: &statefile::Lock) -> Result<()> {
    let dir = dir(root);
    if dir.is_dir() {
        return Ok(());
    }
    let tmp = root.join(format!("{}names", statefile::TEMP_PREFIX));
    let build = || -> io::Result<()> {
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        for rec in store::all(root) {
            if rec.name.len() <= NAME_MAX {
                // Two records with one name (state from a bug) must not make every create
                // fail: the first keeps the entry, the other is still found by its id.
                match symlink(&rec.id, tmp.join(&rec.name)) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    r => r?,
                }
            }
        }
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &dir)
    };
    build().map_err(|e| {
        let _ = fs::remove_dir_all(&tmp);
        Error::io(dir.display(), e)
    })
}

/// Points `name` at `id`, replacing an entry that names nobody (the caller checked with
/// `holder`). `durable`: synced before it returns, for a record that will be synced too; a
/// record that may be lost on power loss needs no durable entry (a lost entry of a surviving
/// record is what must not happen, and repair removes the --rm containers a power loss ended).
pub fn claim(
    root: &Path,
    name: &str,
    id: &str,
    durable: bool,
    _held: &statefile::Lock,
) -> Result<()> {
    let Some(link) = entry(root, name) else {
        return Ok(());
    };
    let dir = dir(root);
    let tmp = dir.join(format!(
        "{}{}-{name}",
        statefile::TEMP_PREFIX,
        std::process::id()
    ));
    let write = || -> io::Result<()> {
        let _ = fs::remove_file(&tmp);
        symlink(id, &tmp)?;
        fs::rename(&tmp, &link)?;
        if durable {
            fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(link.display(), e)
    })
}

/// Removes `name`'s entry if it still points at `id` (a later container may hold it now).
pub fn release(root: &Path, name: &str, id: &str, _held: &statefile::Lock) {
    if let Some(link) = entry(root, name) {
        if target(&link).as_deref() == Some(id) {
            let _ = fs::remove_file(&link);
        }
    }
}

/// Removes the entries that name nobody and the temp files of dead writers (`prune`).
pub fn sweep(root: &Path, _held: &statefile::Lock) {
    let dir = dir(root);
    statefile::cleanup_temp(&dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(statefile::TEMP_PREFIX) {
            continue;
        }
        let held = target(&e.path())
            .and_then(|id| store::load(&Paths::new(root, &id)).ok())
            .is_some_and(|r| r.name == name);
        if !held {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(root: &Path, id: &str, name: &str) {
        let paths = Paths::new(root, id);
        fs::create_dir_all(&paths.dir).unwrap();
        let rec = Record::new(
            id.into(),
            name.into(),
            "busybox".into(),
            "sha256:x".into(),
            Default::default(),
        );
        store::save(&paths, &rec).unwrap();
    }

    #[test]
    fn an_entry_counts_only_while_its_record_carries_the_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        record(root, &a, "web");
        let lock = store::names_lock(root).unwrap();
        // Built from the records of a root made before the index.
        ensure(root, &lock).unwrap();
        assert_eq!(holder(root, "web").map(|r| r.id), Some(a.clone()));
        assert!(holder(root, "db").is_none());
        // A claim left by a create that crashed before its record names nobody.
        claim(root, "db", &b, true, &lock).unwrap();
        assert!(holder(root, "db").is_none());
        // A renamed record no longer holds its old entry.
        record(root, &a, "api");
        assert!(holder(root, "web").is_none());
        claim(root, "api", &a, false, &lock).unwrap();
        assert_eq!(holder(root, "api").map(|r| r.id), Some(a.clone()));
        // release leaves an entry that points at someone else.
        release(root, "api", &b, &lock);
        assert!(holder(root, "api").is_some());
        sweep(root, &lock);
        let left: Vec<_> = fs::read_dir(dir(root))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["api".to_string()]);
        release(root, "api", &a, &lock);
        assert!(holder(root, "api").is_none());
    }

    #[test]
    fn names_too_long_for_an_entry_are_found_by_a_scan() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let lock = store::names_lock(root).unwrap();
        ensure(root, &lock).unwrap();
        let long = "n".repeat(300);
        let id = "c".repeat(64);
        claim(root, &long, &id, true, &lock).unwrap();
        record(root, &id, &long);
        assert_eq!(holder(root, &long).map(|r| r.id), Some(id));
    }
}
