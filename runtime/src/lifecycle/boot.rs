//! `rbox system boot`: what dockerd does when it starts, for a host without a daemon — after
//! a reboot or a crash (every rbox process gone, mounts and network namespaces gone), repair
//! every container, bring the networks' bridges, rules and resolver back, and start the
//! containers Docker would: `always` ones (even if they had been stopped by hand) and
//! `unless-stopped` ones that were not stopped by hand, if they ever ran. `no` and
//! `on-failure` stay down. Running it again, or on a host that did not reboot, starts only
//! what is down and should be up.

use std::path::Path;

use super::repair::list;
use super::start::start;
use super::stop::{stop_for_shutdown, StopOptions};
use crate::error::Result;

/// What `boot` did to one container.
#[derive(Debug)]
pub struct Booted {
    pub name: String,
    pub result: Result<()>,
}

/// Repairs every container, restores the networks, then starts the containers the restart
/// policies say should run; returns what it started (or failed to), oldest container first.
pub fn boot(root: &Path) -> Vec<Booted> {
    let mut recs = list(root);
    // Bridges, firewall rules and the resolver of every network that has a bridge left, and
    // the rules of what still runs; the containers started below recreate the rest.
    if let Err(e) = net::manage::reload(root) {
        tracing::warn!("restoring networks: {e}");
    }
    recs.sort_by_key(|r| r.created);
    recs.into_iter()
        .filter(|r| {
            !r.active()
                && r.state.has_been_started
                && r.settings
                    .restart_policy
                    .starts_at_boot(r.state.manually_stopped)
        })
        .map(|r| Booted {
            result: start(root, &r.id).map(|_| ()),
            name: r.name,
        })
        .collect()
}

/// `rbox system shutdown`: what dockerd does when it stops — every running container gets its
/// stop signal (SIGKILL after its stop timeout, or `timeout` seconds), all at once, without
/// counting as stopped by hand, so the next `system boot` applies the restart policies as
/// after a power cut. Init systems call it before the host goes down; otherwise the host's
/// final SIGTERM/SIGKILL round hits containers that may ignore SIGTERM.
pub fn shutdown(root: &Path, timeout: Option<i64>) -> Vec<Booted> {
    let opts = StopOptions {
        signal: None,
        timeout,
    };
    let running: Vec<_> = list(root).into_iter().filter(|r| r.active()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = running
            .iter()
            .map(|r| s.spawn(move || stop_for_shutdown(root, &r.id, opts).map(|_| ())))
            .collect();
        running
            .iter()
            .zip(handles)
            .map(|(r, h)| Booted {
                name: r.name.clone(),
                result: h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            })
            .collect()
    })
}
