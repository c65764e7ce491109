//! Crash repair, done by whichever command looks at a container next. A container whose
//! monitor died is not a dead container: if its init still runs, a new monitor adopts it
//! (holds its ports again, waits for its exit, applies its restart policy); if the dead
//! monitor was waiting to restart it, a new one restarts it. Only a container whose process
//! is gone is torn down and marked exited. Repair never kills a running workload.

use std::path::Path;

use chrono::Utc;

use crate::error::{Error, Result};
use crate::monitor::Begin;
use crate::record::{Record, Status};
use crate::store::{self, Paths};
use crate::{cleanup, process};

/// Finds a container and repairs it first if its owner died.
pub fn find(root: &Path, key: &str) -> Result<Record> {
    let rec = store::resolve(root, key)?;
    repair(root, rec).ok_or_else(|| Error::NotFound(key.to_string()))
}

/// All containers, repaired, newest first.
pub fn list(root: &Path) -> Vec<Record> {
    let mut v: Vec<Record> = store::all(root)
        .into_iter()
        .filter_map(|r| repair(root, r))
        .collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.created));
    v
}

/// The recorded init is still that process (same pid, start time and boot) and runs.
fn init_alive(rec: &Record) -> bool {
    rec.state.pid > 0
        && rec.state.start_time != 0
        && rec.state.boot_id == process::boot_id()
        && process::is_running(rec.state.pid, rec.state.start_time)
}

/// Crash repair of a container claimed by a process that is gone. Returns `None` when the
/// container was removed (an ended --rm container).
pub fn repair(root: &Path, rec: Record) -> Option<Record> {
    let paths = Paths::new(root, &rec.id);
    if rec.state.monitor_pid == 0 || store::monitor_alive(&paths) {
        return Some(rec);
    }
    let begin = {
        let _l = statefile::Lock::exclusive(&paths.lock()).ok()?;
        let rec = store::load(&paths).ok()?;
        if rec.state.monitor_pid == 0 || store::monitor_alive(&paths) {
            return Some(rec);
        }
        match rec.state.status {
            Status::Running if init_alive(&rec) => Begin::Adopt,
            Status::Restarting if !rec.state.manually_stopped => {
                // What the dead monitor held goes; the new one sets it up afresh.
                cleanup::teardown(&paths);
                Begin::Resume
            }
            _ => return end(&paths, rec),
        }
    };
    tracing::debug!(id = %rec.id, ?begin, "owner of the container is gone: taking it over");
    // Outside the record lock, which the new monitor takes to claim it. Two commands may
    // both get here: the monitor lock lets one monitor win, the other reports so and exits.
    if let Err(e) = super::start::spawn_monitor(root, &rec.id, begin, None) {
        tracing::warn!(id = %rec.id, "taking the container over: {e}");
    }
    store::load(&paths).ok()
}

/// The container's process is gone with its owner: release what they held and record it.
fn end(paths: &Paths, mut rec: Record) -> Option<Record> {
    tracing::debug!(id = %rec.id, "owner of the container is gone: repairing");
    cleanup::teardown(paths);
    match rec.state.status {
        Status::Running => {
            rec.state.exit_code = 137;
            rec.state.finished_at = Some(Utc::now());
            rec.state.error = "rbox monitor died".into();
            rec.state.status = Status::Exited;
        }
        // Stopped while waiting to restart: it ended as its last run did.
        Status::Restarting => rec.state.status = Status::Exited,
        Status::Created | Status::Exited => {}
    }
    rec.state.pid = 0;
    rec.state.monitor_pid = 0;
    rec.networks.clear();
    rec.sandbox_key.clear();
    rec.ports.clear();
    if rec.settings.auto_remove && rec.state.status == Status::Exited {
        cleanup::remove_files(paths);
        return None;
    }
    let _ = store::save(paths, &rec);
    Some(rec)
}
