//! Releasing what a container held, in two lifetimes: one run of its process (the libcontainer
//! container and its cgroup) and the container's own (rootfs mount, network sandbox with its
//! leases and published ports). Every function keeps going past errors and is idempotent, so
//! crash repair can call it on whatever a killed process left.

use crate::record::Record;
use crate::store::{self, Paths};
use crate::{cgroup, rootfs};

/// Releases one run: libcontainer's state (killing what is left in the cgroup) and the cgroup.
pub(crate) fn release_run(paths: &Paths) {
    let lc_dir = paths.lc_root().join(&paths.id);
    if lc_dir.exists() {
        match libcontainer::container::Container::load(lc_dir.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    tracing::debug!(id = %paths.id, "libcontainer delete: {e}");
                    let _ = std::fs::remove_dir_all(&lc_dir);
                }
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(&lc_dir);
            }
        }
    }
    cgroup::remove(&paths.id);
    let _ = std::fs::remove_file(paths.console_socket());
}

/// Releases what lives as long as the container is started: rootfs mount, network sandbox
/// (leases, ports, rules) and the monitor's control socket.
pub(crate) fn release_container(paths: &Paths) {
    rootfs::unmount(paths);
    tracing::debug!(id = %paths.id, "rootfs unmounted");
    // Idempotent: a container on the host's namespace has nothing to give back.
    if let Err(e) = net::release(&paths.root, &paths.id) {
        tracing::warn!(id = %paths.id, "releasing network: {e}");
    }
    tracing::debug!(id = %paths.id, "network released");
    let _ = std::fs::remove_file(paths.control_socket());
}

/// Both lifetimes at once: what crash repair releases for a container whose owner died.
pub(crate) fn teardown(paths: &Paths) {
    release_run(paths);
    release_container(paths);
}

/// Deletes the container's files; the caller made sure nothing runs. Returns the record as it
/// was last (what `remove_dir` returns).
pub(crate) fn remove_files(paths: &Paths) -> Option<Record> {
    if store::load(paths).is_ok() {
        teardown(paths);
    }
    remove_dir(paths)
}

/// Deletes the container's directory once everything it held was released. Returns the record
/// read just before, for what the caller still has to release by it (its name's entry: the
/// name may have changed since the caller read the record, `rename` works on a running one).
pub(crate) fn remove_dir(paths: &Paths) -> Option<Record> {
    let rec = store::load(paths).ok();
    // Never recurse into a still-mounted rootfs.
    rootfs::unmount(paths);
    let _ = std::fs::remove_dir_all(&paths.dir);
    // Docker drops the anonymous volumes of an --rm container with it.
    if let Some(r) = rec.as_ref().filter(|r| r.settings.auto_remove) {
        crate::volume::remove_anonymous(&paths.root, r);
    }
    rec
}
