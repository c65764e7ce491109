//! Container lifecycle on youki's libcontainer: records under `<root>/containers/<id>/`, an
//! overlay rootfs, the OCI spec with Docker's security defaults, a per-container owner
//! process (the detached monitor, or the CLI of a foreground run) that writes json-file logs
//! and records the exit, and crash repair by whoever looks next.
//!
//! API for other crates:
//! - `Container::find(root, name_or_id)` -> id, name, running, sandbox path: for `network
//!   connect/disconnect` on a running container.
//! - `Container::add_endpoint(&self, network, settings)` / `remove_endpoint(&self, network)`:
//!   record what `net::connect`/`disconnect` did, under the container's lock, and rewrite the
//!   container's /etc/hosts in place (the running container sees it at once).
//! - `image_in_use(root, image_id)`: any container (running or not) made from that image.
//! - Lifecycle entry points for the CLI are in `lifecycle` (create/start/stop/kill/remove/
//!   rename/wait/list/prune), `exec`, `logs` and `inspect`.
//!
//! Locks: `<root>/locks/containers.lock` keeps names unique; `<dir>/lock` serialises record
//! updates; `<dir>/monitor.lock` is held by the owner while the container runs, so "is it
//! alive" is a lock probe (immune to pid reuse) and `wait` is a blocking lock.

pub mod caps;
pub mod cgroup;
pub mod devices;
mod error;
mod etcfiles;
pub mod exec;
pub mod filter;
pub mod hostconfig;
pub mod inspect;
pub mod lifecycle;
pub mod links;
pub mod logs;
mod monitor;
pub mod mounts;
mod network;
pub mod record;
mod rootfs;
pub mod seccomp;
mod spec;
pub mod store;
pub mod timestamp;
mod tty;
pub mod usage;
mod user;
pub mod volume;

use std::path::Path;

pub use error::{Error, Result};
pub use record::{Record, Status};
pub use store::Paths;

/// Releases what a stopped (or crashed) container held: libcontainer state and cgroup,
/// rootfs mount, network sandbox. Keeps going past errors and is idempotent.
pub(crate) fn teardown(paths: &Paths) {
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
    rootfs::unmount(paths);
    tracing::debug!(id = %paths.id, "rootfs unmounted");
    // Idempotent: a container on the host's namespace has nothing to give back.
    if let Err(e) = net::release(&paths.root, &paths.id) {
        tracing::warn!(id = %paths.id, "releasing network: {e}");
    }
    tracing::debug!(id = %paths.id, "network released");
    cgroup::remove(&paths.id);
    let _ = std::fs::remove_file(paths.console_socket());
}

/// True if any container was created from `image_id` ("sha256:...").
pub fn image_in_use(root: &Path, image_id: &str) -> bool {
    store::all(root).iter().any(|r| r.image_id == image_id)
}

/// A container as other crates see it (see the module docs).
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// The network namespace path while running ("" otherwise).
    pub sandbox_key: String,
    root: std::path::PathBuf,
}

impl Container {
    pub fn find(root: &Path, name_or_id: &str) -> Result<Container> {
        let r = lifecycle::find(root, name_or_id)?;
        Ok(Container {
            running: r.running(),
            sandbox_key: r.sandbox_key.clone(),
            id: r.id,
            name: r.name,
            root: root.to_path_buf(),
        })
    }

    fn edit(&self, f: impl FnOnce(&mut Record)) -> Result<()> {
        let paths = Paths::new(&self.root, &self.id);
        let _l = statefile::Lock::exclusive(&paths.lock())?;
        let mut r = store::load(&paths)?;
        f(&mut r);
        store::save(&paths, &r)?;
        if r.running() {
            etcfiles::rewrite_hosts(&paths, &r)?;
        }
        Ok(())
    }

    pub fn add_endpoint(&self, network: &str, settings: net::EndpointSettings) -> Result<()> {
        self.edit(|r| {
            r.networks.insert(network.to_string(), settings);
        })
    }

    /// Records `--link`s in Docker's form (`/NAME:/THIS/ALIAS`), once the name is known.
    pub fn set_links(&self, links: Vec<String>) -> Result<()> {
        self.edit(|r| r.settings.links = links)
    }

    pub fn remove_endpoint(&self, network: &str) -> Result<()> {
        self.edit(|r| {
            r.networks.remove(network);
        })
    }
}
