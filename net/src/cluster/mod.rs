//! Multi-host networking without a daemon of rbox's own: global-scope networks (the overlay
//! driver's) kept in etcd, which every host's rbox reads and writes directly.
//!
//! - **Store**: etcd v3 through its JSON gateway with a small blocking HTTP/1.1 client (`etcd`,
//!   `http`): no protoc, no async runtime in `rbox run` (libcontainer forks with raw clone3 and
//!   needs a single-threaded process), and it works on Debian's etcd 3.4.23 and later.
//! - **What is stored** (`registry`; layout in its module docs and ARCHITECTURE.md): network
//!   definitions (names unique and subnets disjoint cluster-wide, by compare-and-swap), each
//!   host's share of a network's subnet (`driver::overlay::share`) and every endpoint (names
//!   across hosts, `network inspect`). Keys a host writes are attached to its lease (`host`),
//!   so a dead host's shares and names go once the lease's TTL passes.
//! - **Local mirrors**: a host keeps a copy of each global network it has seen in its own
//!   `<root>/networks/<id>.json` (with its own endpoints and, while it has any, its share), so
//!   everything local (leases, rules, the resolver) works as for a bridge; `network ls/inspect`
//!   and a name not found locally bring the mirrors up to date (`sync_networks`, `fetch`).
//! - **The helper** (`agent`): one small process per root, alive while the host has overlay
//!   endpoints, keeps the lease alive and watches the store to program peers as hosts join and
//!   leave; commands start it on demand and it reconciles from the store when (re)started.
//!   Nothing breaks while it is dead except learning about new hosts.
//! - **etcd unreachable**: what needs it (overlay create/rm/run/connect) fails with one line
//!   and undoes itself; running containers keep their kernel state; bridge networks never wait
//!   on the store (mirrors are consulted first, the store only for names not known locally).

pub mod agent;
mod config;
pub mod etcd;
pub mod host;
pub(crate) mod http;
pub(crate) mod names;
pub mod registry;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use config::{
    current, file_path as config_path, parse_store, required, resolve, select, Config,
    DEFAULT_LEASE_TTL,
};
pub use host::Host;
pub(crate) use sync::fetch;
pub use sync::{inspect, sync};

use crate::error::Result;

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Records the root this process works on, for drivers (which are given no root) to find the
/// cluster settings and the host's lease. Called by every entry point of the crate.
pub(crate) fn init(root: &Path) {
    let _ = ROOT.get_or_init(|| root.to_path_buf());
    let _ = current(root);
}

/// The process's root and cluster settings; without settings, the one line saying so.
pub(crate) fn process() -> Result<(&'static Path, &'static Config)> {
    let root = ROOT
        .get()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new("/var/lib/rbox"));
    Ok((root, required(root)?))
}
