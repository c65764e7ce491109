//! Commands on containers: create, start, stop, kill, restart, rm, rename, wait, list, prune,
//! boot. Every lookup goes through `find`, which repairs a container whose owner died: it
//! adopts a container that still runs and ends one that does not (`repair`).
//!
//! - `create`: the record, checked settings, nothing runs;
//! - `start`: a monitor process owns the container from then on (`monitor`);
//! - `stop`: stop, kill, restart and wait are requests to that monitor (its control socket),
//!   which acts on them also while it waits to restart the container;
//! - `repair`: crash repair and adoption;
//! - `boot`: `system boot`, Docker's daemon-start rules, and `system shutdown`, its stop.

mod boot;
mod create;
mod repair;
mod start;
mod stop;

use std::path::Path;

pub use boot::{boot, shutdown, Booted};
pub use create::{create, CreateOptions};
pub use repair::{find, list, repair};
pub use start::{
    continue_main, monitor_main, run_attached, run_attached_streams, start, start_with_client,
    MONITOR_REPORT_FD,
};
pub use stop::{kill, restart, stop, wait, StopOptions};

pub use crate::monitor::Begin;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{self, Paths};

/// `rm -v`: `remove`, then the container's anonymous volumes.
pub fn remove_with_volumes(root: &Path, key: &str, force: bool) -> Result<Record> {
    let rec = remove(root, key, force)?;
    crate::volume::remove_anonymous(root, &rec);
    Ok(rec)
}

/// `rm [-f]`: a running or restarting container only with force, which kills it (and cancels
/// its restart policy) first.
pub fn remove(root: &Path, key: &str, force: bool) -> Result<Record> {
    let rec = find(root, key)?;
    let paths = Paths::new(root, &rec.id);
    if rec.active() || store::monitor_alive(&paths) {
        if !force {
            return Err(match rec.state.status {
                crate::record::Status::Restarting => Error::RestartingRemove(rec.name),
                _ => Error::RunningRemove(rec.name),
            });
        }
        stop::kill_and_wait(&paths, &rec);
    }
    let names = store::names_lock(root)?;
    let mut name = rec.name.clone();
    if paths.dir.exists() {
        if let Some(last) = crate::cleanup::remove_files(&paths) {
            name = last.name;
        }
        crate::events::container(root, &rec, "destroy", &[]);
    }
    crate::names::release(root, &name, &rec.id, &names);
    Ok(rec)
}

/// `rename OLD NEW`.
pub fn rename(root: &Path, key: &str, new: &str) -> Result<()> {
    let new = new.trim_start_matches('/');
    if !store::valid_name(new) {
        return Err(Error::InvalidName(new.to_string()));
    }
    let names = store::names_lock(root)?;
    crate::names::ensure(root, &names)?;
    let rec = find(root, key)?;
    if let Some(other) = crate::names::holder(root, new) {
        return Err(Error::NameInUse(new.to_string(), other.id));
    }
    let paths = Paths::new(root, &rec.id);
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = store::load(&paths)?;
    let old = std::mem::replace(&mut r.name, new.to_string());
    // The new entry before the record, the old one after it (`names`).
    crate::names::claim(root, new, &r.id, true, &names)?;
    if let Err(e) = store::save(&paths, &r) {
        crate::names::release(root, new, &r.id, &names);
        return Err(e);
    }
    crate::names::release(root, &old, &r.id, &names);
    // Its endpoints answer to the new name (and no longer to the old) when this returns.
    net::rename(root, &r.id, new)?;
    crate::events::container(root, &r, "rename", &[("oldName", format!("/{old}"))]);
    Ok(())
}

/// `container prune` / `system prune`: removes stopped containers; returns their ids.
pub fn prune(root: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for rec in list(root) {
        if rec.active() || store::monitor_alive(&Paths::new(root, &rec.id)) {
            continue;
        }
        if remove(root, &rec.id, false).is_ok() {
            removed.push(rec.id);
        }
    }
    statefile::cleanup_temp(&store::containers_dir(root));
    remove_recordless(root);
    removed
}

/// Removes container directories without a readable record (a power loss before an unsynced
/// record reached the disk) whose monitor is gone. Under the names lock, which `create` holds
/// from making a directory to writing its record; and the name entries that name nobody.
fn remove_recordless(root: &Path) {
    let Ok(names) = store::names_lock(root) else {
        return;
    };
    crate::names::sweep(root, &names);
    let Ok(entries) = std::fs::read_dir(store::containers_dir(root)) else {
        return;
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let paths = Paths::new(root, &id);
        if id.len() == 64 && store::load(&paths).is_err() && !store::monitor_alive(&paths) {
            crate::rootfs::unmount(&paths);
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
    }
}
