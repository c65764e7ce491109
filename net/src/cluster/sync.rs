//! This root's mirrors of the cluster's global networks: made when a network is first seen
//! (`network ls`, a name not known locally), removed when the network is gone from the store
//! and this host has no endpoint on it; and `network inspect`'s cluster-wide view.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use super::{current, registry};
use crate::context::Context;
use crate::error::{Error, Errors, Result};
use crate::network::{Network, Store};

/// Mirrors the store's networks missing here; with `prune`, also forgets mirrors of networks
/// the store no longer has (and removes their kernel side). A global network whose name a
/// local network already has is skipped with a warning.
pub(crate) fn sync_networks(ctx: &Context, prune: bool) -> Result<()> {
    let Some(cfg) = current(ctx.root()) else {
        return Ok(());
    };
    let (globals, _) = registry::list(cfg)?;
    let store = &ctx.store;
    // Before the lock: making the predefined networks takes it too.
    store.ensure_defaults()?;
    let _all = store.lock_all()?;
    let locals = store.list()?;
    for g in &globals {
        if locals.iter().any(|l| l.id == g.id) {
            continue;
        }
        if let Some(l) = locals.iter().find(|l| l.name == g.name) {
            tracing::warn!(
                "global network {} ({}) is hidden by this host's network {} ({})",
                g.name,
                &g.id[..12],
                l.name,
                &l.id[..12]
            );
            continue;
        }
        store.save(g)?;
    }
    if !prune {
        return Ok(());
    }
    let mut errors = Errors::default();
    for l in locals.iter().filter(|l| l.scope() == "global") {
        if globals.iter().any(|g| g.id == l.id) {
            continue;
        }
        errors.check(forget(ctx, l));
    }
    errors.into_result()
}

/// Drops the mirror of a network removed from the store, unless this host still has
/// endpoints on it.
fn forget(ctx: &Context, l: &Network) -> Result<()> {
    let store = &ctx.store;
    let _lock = store.lock(&l.id)?;
    let mut net = store.load(&l.id)?;
    crate::endpoint::drop_stale(ctx, &net);
    if store.has_endpoints(&net.id)? {
        return Ok(());
    }
    let drv = ctx.driver(&net)?;
    drv.detach_host(&mut net, ctx.fw)?;
    drv.delete_network(&net, ctx.fw)?;
    store.delete(&net.id)
}

/// `Store::find`'s second chance: a name or id not known here, looked up among the cluster's
/// networks (without a store configured: not found).
pub(crate) fn fetch(store: &Store, key: &str) -> Result<Network> {
    if current(store.root()).is_none() {
        return Err(Error::NetworkNotFound(key.to_string()));
    }
    let ctx = Context::new(store.root())?;
    sync_networks(&ctx, false)?;
    store.find_local(key)
}

/// Brings the mirrors of `root` in line with the cluster store (`network ls`).
pub fn sync(root: &Path) -> Result<()> {
    sync_networks(&Context::new(root)?, true)
}

/// Docker's `network inspect` JSON of the network `key` names. A global network is shown as
/// the store holds it, with every host's containers (each with the address of its host) and
/// the hosts as `Peers`.
pub fn inspect(root: &Path, key: &str) -> Result<Value> {
    let store = Store::new(root);
    let net = store.find(key)?;
    let cfg = match current(root) {
        Some(cfg) if net.scope() == "global" => cfg,
        _ => return Ok(crate::docker::network(&net, &store.endpoints(&net.id)?)),
    };
    let global = registry::get(cfg, &net.id)?.ok_or_else(|| Error::NetworkNotFound(key.into()))?;
    let mut v = crate::docker::network(&global, &Default::default());
    let prefix = global.ipam.as_ref().map_or(32, |c| c.subnet.prefix());
    let mut containers = BTreeMap::new();
    let mut peers = BTreeSet::new();
    for e in registry::endpoints(cfg, &net.id)? {
        peers.insert((e.host, e.hostname.clone()));
        containers.insert(
            e.container_id.clone(),
            json!({
                "Name": e.name,
                "EndpointID": e.endpoint_id,
                "MacAddress": e.mac,
                "IPv4Address": e.ip.map(|ip| format!("{ip}/{prefix}")).unwrap_or_default(),
                "IPv6Address": "",
                "Host": e.host.to_string(),
            }),
        );
    }
    v["Containers"] = json!(containers);
    v["Peers"] = peers
        .into_iter()
        .map(|(ip, name)| json!({"Name": name, "IP": ip.to_string()}))
        .collect();
    Ok(v)
}
