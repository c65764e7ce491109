//! Container lifecycle on youki's libcontainer: records under `<root>/containers/<id>/`, an
//! overlay rootfs, the OCI spec with Docker's security defaults, a per-container owner
//! process (the detached monitor, or the CLI of a foreground run) that writes json-file logs,
//! applies the restart policy and records the exit, and crash repair by whoever looks next
//! (which adopts a container that still runs).
//!
//! API for other crates:
//! - `Container::find(root, name_or_id)` -> id, name, running, sandbox path.
//! - `Container::connect(&self, network, &Connect)` / `disconnect(&self, network)`: `network
//!   connect/disconnect`: join or leave now if it runs (rewriting its /etc/hosts in place),
//!   and record it so that every later start joins the same networks.
//! - `image_in_use(root, image_id)`: any container (running or not) made from that image.
//! - Lifecycle entry points for the CLI are in `lifecycle` (create/start/stop/kill/restart/
//!   remove/rename/wait/list/prune/boot), `exec`, `logs` and `inspect`; `policy` and `signal`
//!   parse `--restart` and signal names.
//!
//! Locks: `<root>/locks/containers.lock` keeps names unique; `<dir>/lock` serialises record
//! updates; `<dir>/monitor.lock` is held by the owner while the container is started (a POSIX
//! record lock, which libcontainer's clone of the monitor does not inherit), so "is it
//! alive" is a lock probe (immune to pid reuse) and waiting for its end is a blocking lock.
//! `<dir>/control.sock` is the owner's control socket (`monitor::control`).

pub mod attach;
pub mod caps;
pub mod cgroup;
mod cleanup;
mod container;
pub mod contents;
pub mod copy;
pub mod detachkeys;
pub mod devices;
mod error;
mod etcfiles;
pub mod events;
pub mod exec;
mod executor;
mod fault;
pub mod filter;
pub mod health;
pub mod hostconfig;
mod init;
pub mod inspect;
pub mod lifecycle;
pub mod links;
pub mod logs;
mod monitor;
pub mod mounts;
mod names;
mod network;
pub mod pause;
pub mod policy;
mod process;
pub mod record;
pub mod rootconfig;
mod rootfs;
pub mod seccomp;
mod security;
pub mod signal;
mod spec;
pub mod stats;
pub mod store;
pub mod timestamp;
mod tty;
pub mod units;
pub mod update;
pub mod usage;
mod user;
pub mod volume;

use std::path::Path;

pub use container::{Connect, Container};
pub use error::{Error, Result};
pub use record::{Record, Status};
pub use store::Paths;

/// True if any container was created from `image_id` ("sha256:...").
pub fn image_in_use(root: &Path, image_id: &str) -> bool {
    store::all(root).iter().any(|r| r.image_id == image_id)
}
