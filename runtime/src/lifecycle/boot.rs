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
