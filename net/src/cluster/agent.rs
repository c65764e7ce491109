//! The cluster helper: one process per root (`rbox cluster serve`, hidden), alive while the host
//! has joined an overlay network or still owes the store a deletion. It
//! - keeps the host's lease alive (a keepalive every TTL/3; a lease found expired is replaced
//!   and everything of this host put back: its shares if still free, its endpoints);
//! - watches the store (one `/v3/watch` on `/rbox/`) and programs the VXLAN peers of the
//!   networks this host has joined as other hosts join and leave them;
//! - keeps the other hosts' container names of those networks for this host's resolver
//!   (`names`), so a name is served on every host as soon as the store has it;
//! - retries deletions a command could not make while the store was unreachable
//!   (`<root>/cluster/pending.json`).
//!
//! Commands talk to it over `<root>/cluster/agent.sock` (one line each: `join <id>` programs a
//! newly joined network's peers before answering, `leave <id>`, `resync`, `ping`, `stop`), and
//! start it when it is not running (`activate`, and every rbox command through `ensure` while
//! this host has a lease). When (re)started it reconciles everything from the store and the
//! local state, so a kill -9 costs only the events missed until the next command. It exits by
//! itself once nothing is joined and nothing is owed; the lease is not revoked (a command may
//! be attaching to it at that moment) but left to expire with nothing attached.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnetwork::Ipv4Network;

use super::etcd::{EtcdError, Event};
use super::{host, registry, required, Config, Host};
use crate::driver::overlay::{self, vxlan, Share};
use crate::driver::DriverOpts;
use crate::error::{io, Error, Result};
use crate::helper::{self, Outcome};
use crate::netlink::{block_on, host_handle, link_by_name};
use crate::network::{Network, Store};

const WHAT: &str = "cluster helper";
/// How long a command waits for the helper (a join lists the network's hosts in the store).
const WAIT: Duration = Duration::from_secs(10);
/// A watch with no message for this long is restarted (etcd sends progress every 10 minutes),
/// so a store host that vanished without closing the connection is noticed.
const WATCH_IDLE: Duration = Duration::from_secs(11 * 60);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

pub fn pid_file(root: &Path) -> PathBuf {
    host::dir(root).join("agent.pid")
}

fn sock(root: &Path) -> PathBuf {
    host::dir(root).join("agent.sock")
}

fn pending_file(root: &Path) -> PathBuf {
    host::dir(root).join("pending.json")
}

fn lease_file(root: &Path) -> PathBuf {
    host::dir(root).join("lease.json")
}

/// The pid of the running helper, if its file exists.
pub fn pid(root: &Path) -> Option<i32> {
    helper::pid(&pid_file(root))
}

fn env_of(cfg: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("RBOX_CLUSTER_STORE", cfg.url.clone()),
        (
            "RBOX_CLUSTER_ADVERTISE",
            cfg.advertise.clone().unwrap_or_default(),
        ),
        ("RBOX_CLUSTER_LEASE_TTL", cfg.lease_ttl.to_string()),
    ]
}

/// Starts the helper unless another command just did.
fn start(root: &Path, cfg: &Config) -> Result<()> {
    let _held = statefile::Lock::exclusive(&root.join("locks/cluster-agent.lock"))?;
    match helper::request(&sock(root), "ping", WAIT, WHAT)? {
        Outcome::Done => Ok(()),
        Outcome::NotRunning => helper::spawn(root, &["cluster", "serve"], &env_of(cfg), WHAT),
    }
}

/// Makes sure the helper runs and has programmed the peers of network `id`, which this host
/// has just joined.
pub fn activate(root: &Path, id: &str) -> Result<()> {
    let cfg = required(root)?;
    for _ in 0..2 {
        match helper::request(&sock(root), &format!("join {id}"), WAIT, WHAT)? {
            Outcome::Done => return Ok(()),
            Outcome::NotRunning => start(root, cfg)?,
        }
    }
    Err(Error::Invalid(format!(
        "{WHAT} exited right after starting"
    )))
}

/// Tells the helper that this host left network `id`.
pub fn deactivate(root: &Path, id: &str) {
    let _ = helper::request(&sock(root), &format!("leave {id}"), WAIT, WHAT);
}

/// Asks the helper to put everything of this host back into the store (a new lease).
pub fn resync(root: &Path) {
    let _ = helper::request(&sock(root), "resync", WAIT, WHAT);
}

/// Stops the helper of `root` if it runs (teardown).
pub fn stop(root: &Path) -> Result<()> {
    helper::request(&sock(root), "stop", WAIT, WHAT).map(|_| ())
}

/// Starts the helper again if this host needs one and it is not running (after a kill -9):
/// every rbox command calls this; it costs two `stat`s when the host has no overlay.
pub fn ensure(root: &Path) -> Result<()> {
    if !lease_file(root).exists() && !pending_file(root).exists() {
        return Ok(());
    }
    let Some(cfg) = super::current(root) else {
        return Ok(());
    };
    match helper::request(&sock(root), "ping", WAIT, WHAT)? {
        Outcome::Done => Ok(()),
        Outcome::NotRunning => start(root, cfg),
    }
}

fn pending_lock(root: &Path) -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(
        &root.join("locks/cluster-pending.lock"),
    )?)
}

fn read_pending(root: &Path) -> Vec<String> {
    statefile::read_json_opt::<Vec<String>>(&pending_file(root))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Records that `key` must leave the store (it could not be deleted now); the helper retries.
pub fn defer_release(root: &Path, key: &str) {
    let write = || -> Result<()> {
        let _held = pending_lock(root)?;
        let mut keys = read_pending(root);
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
        std::fs::create_dir_all(host::dir(root)).map_err(io("creating the cluster directory"))?;
        Ok(statefile::write_json(&pending_file(root), &keys)?)
    };
    if let Err(e) = write() {
        tracing::warn!("recording {key} for deletion: {e}");
        return;
    }
    if let Some(cfg) = super::current(root) {
        if let Err(e) = start(root, cfg) {
            tracing::warn!("starting the {WHAT}: {e}");
        }
    }
}

/// Deletes the keys owed to the store; true when none is left.
fn retry_pending(root: &Path, cfg: &Config) -> bool {
    let Ok(_held) = pending_lock(root) else {
        return false;
    };
    let keys = read_pending(root);
    if keys.is_empty() {
        let _ = std::fs::remove_file(pending_file(root));
        return true;
    }
    let left: Vec<String> = keys
        .into_iter()
        .filter(|k| cfg.etcd.delete(k, false).is_err())
        .collect();
    if left.is_empty() {
        let _ = std::fs::remove_file(pending_file(root));
        return true;
    }
    let _ = statefile::write_json(&pending_file(root), &left);
    false
}

/// A network this host has joined, as the helper tracks it.
struct Active {
    vni: u32,
    /// Remote hosts' shares programmed on the VXLAN device, with their addresses.
    peers: BTreeMap<Ipv4Network, Ipv4Addr>,
    /// Other hosts' endpoints by endpoint id: names for this host's resolver.
    names: BTreeMap<String, registry::EndpointEntry>,
}

struct State {
    root: PathBuf,
    cfg: &'static Config,
    host: Host,
    active: BTreeMap<String, Active>,
    /// Networks a command said this host left: its state file may still show them joined for
    /// a moment (it is saved after the leave), so they count as left until joined again.
    left: std::collections::BTreeSet<String>,
    /// What this host told the store it has programmed (`overlay::Seen`).
    acked: overlay::Seen,
}

fn joined(net: &Network) -> Option<(&overlay::Options, &overlay::Joined)> {
    match &net.driver_opts {
        DriverOpts::Overlay(o) => o.joined.as_ref().map(|j| (o, j)),
        _ => None,
    }
}

/// Network `id` and the share this host holds of it, from its share key.
fn parse_share_key(key: &str) -> Option<(&str, Ipv4Network)> {
    let rest = key.strip_prefix("/rbox/subnet/")?;
    let (id, sub) = rest.split_once('/')?;
    let (ip, len) = sub.rsplit_once('-')?;
    Some((
        id,
        Ipv4Network::new(ip.parse().ok()?, len.parse().ok()?).ok()?,
    ))
}

fn vxlan_index(vni: u32) -> Result<Option<u32>> {
    block_on(async {
        Ok(link_by_name(&host_handle()?, &overlay::vxlan_name(vni))
            .await?
            .map(|l| crate::netlink::index(&l)))
    })?
}

impl State {
    /// This host's joined overlay networks, from the local state.
    fn local(&self) -> Result<Vec<Network>> {
        Ok(Store::new(&self.root)
            .list()?
            .into_iter()
            .filter(|n| joined(n).is_some() && !self.left.contains(&n.id))
            .collect())
    }

    /// Nothing joined and nothing owed: the helper may go.
    fn idle(&self) -> bool {
        self.active.is_empty()
            && self.local().is_ok_and(|l| l.is_empty())
            && read_pending(&self.root).is_empty()
    }

    /// Starts tracking `net`: its share and endpoints put (back) under the current lease, the
    /// other hosts' shares programmed as peers, this host's stale endpoints removed.
    /// Returns the revision of the shares it programmed.
    fn activate(&mut self, net: &Network) -> Result<i64> {
        let Some((o, j)) = joined(net) else {
            return Ok(0);
        };
        let (root, cfg) = (self.root.clone(), self.cfg);
        if !overlay::reclaim(&root, cfg, &net.id, &j.share)? {
            tracing::error!(
                network = %net.name,
                "this host's share {} was taken by another host while this host was away; \
                 its containers' addresses may clash: restart them",
                j.share.subnet
            );
        }
        let lease = host::lease(&root, cfg)?;
        let stored = registry::endpoints(cfg, &net.id)?;
        // Read after the store: a command records an endpoint here before it puts it there, so
        // every endpoint of this host in `stored` is in `net` (or gone from it since).
        let local = Store::new(&root);
        let net = &local.load(&net.id)?;
        let endpoints = local.endpoints(&net.id)?;
        for (cid, ep) in &endpoints {
            if !crate::sandbox::netns_path(&root, cid).exists() {
                continue;
            }
            let entry = overlay::entry(net, j, cid, ep);
            if !stored.contains(&entry) {
                registry::put_endpoint(cfg, &net.id, &entry, lease).map_err(|e| cfg.err(e))?;
            }
        }
        for e in stored.iter().filter(|e| e.host == self.host.ip) {
            if !endpoints.values().any(|l| l.endpoint_id == e.endpoint_id) {
                let _ = registry::delete_endpoint(cfg, &net.id, &e.endpoint_id);
            }
        }
        let (shares, rev) = overlay::shares(cfg, &net.id)?;
        let peers: Vec<Share> = shares
            .into_iter()
            .filter(|s| s.host != self.host.ip)
            .collect();
        if let Some(idx) = vxlan_index(o.vni)? {
            block_on(async { vxlan::sync_peers(&host_handle()?, idx, &peers).await })??;
        }
        let names: BTreeMap<_, _> = stored
            .into_iter()
            .filter(|e| e.host != self.host.ip)
            .map(|e| (e.endpoint_id.clone(), e))
            .collect();
        self.active.insert(
            net.id.clone(),
            Active {
                vni: o.vni,
                peers: peers.iter().map(|p| (p.subnet, p.host)).collect(),
                names,
            },
        );
        self.publish_names(&net.id);
        Ok(rev)
    }

    /// Writes network `id`'s names of other hosts and has the resolver reload.
    fn publish_names(&self, id: &str) {
        let Some(a) = self.active.get(id) else {
            return;
        };
        let entries: Vec<_> = a.names.values().cloned().collect();
        if let Err(e) = super::names::write(&self.root, id, &entries) {
            tracing::warn!("writing names: {e}");
            return;
        }
        if let Err(e) = crate::dns::sync(&self.root) {
            tracing::warn!("reloading the resolver: {e}");
        }
    }

    /// Applies a change of another host's endpoint; true when names changed.
    fn apply_endpoint(&mut self, ev: &Event) -> Option<String> {
        let rest = ev.kv.key.strip_prefix("/rbox/endpoint/")?;
        let (id, endpoint) = rest.split_once('/')?;
        let a = self.active.get_mut(id)?;
        if ev.deleted {
            a.names.remove(endpoint)?;
        } else {
            let e: registry::EndpointEntry = serde_json::from_slice(&ev.kv.value).ok()?;
            if e.host == self.host.ip {
                return None;
            }
            a.names.insert(endpoint.to_string(), e);
        }
        Some(id.to_string())
    }

    /// Everything again from the store and the local state (start, a new lease, a watch that
    /// broke). Returns the revision to watch from.
    fn reconcile(&mut self) -> Result<i64> {
        let (_, rev) = registry::list(self.cfg)?;
        let cfg = self.cfg;
        if let Ok(id) = host::lease(&self.root, cfg) {
            if let Err(EtcdError::LeaseNotFound) = cfg.etcd.keepalive(id) {
                host::renew(&self.root, cfg, id)?;
            }
        }
        retry_pending(&self.root, cfg);
        self.active.clear();
        for net in self.local()? {
            if let Err(e) = self.activate(&net) {
                tracing::warn!(network = %net.name, "reconciling: {e}");
                return Err(e);
            }
        }
        self.seen(None, rev);
        Ok(rev)
    }

    /// Tells joining hosts that every share change of network `only` (else of every active
    /// network) up to `rev` is programmed here.
    fn seen(&mut self, only: Option<&str>, rev: i64) {
        let ids: Vec<String> = match only {
            Some(id) => vec![id.to_string()],
            None => self.active.keys().cloned().collect(),
        };
        for id in ids {
            let r = self.acked.nets.entry(id).or_default();
            *r = (*r).max(rev);
        }
        self.acked.nets.retain(|id, _| self.active.contains_key(id));
        if self.acked.nets.is_empty() {
            return;
        }
        self.acked.name = self.host.name.clone();
        let r = host::lease(&self.root, self.cfg)
            .map_err(|e| EtcdError::Refused(e.to_string()))
            .and_then(|lease| overlay::record_seen(self.cfg, &self.host, &self.acked, lease));
        if let Err(e) = r {
            tracing::warn!("recording what this host has programmed: {e}");
        }
    }

    /// Applies one batch of watched changes: other hosts' shares of joined networks.
    fn apply(&mut self, events: &[Event], rev: i64) {
        let mut renamed = std::collections::BTreeSet::new();
        let mut programmed = false;
        for ev in events {
            if let Some(id) = self.apply_endpoint(ev) {
                renamed.insert(id);
                continue;
            }
            let Some((id, subnet)) = parse_share_key(&ev.kv.key) else {
                continue;
            };
            let Some(a) = self.active.get_mut(id) else {
                continue;
            };
            programmed = true;
            let Ok(Some(idx)) = vxlan_index(a.vni) else {
                continue;
            };
            let r = if ev.deleted {
                let host = a.peers.remove(&subnet);
                block_on(async { vxlan::del_peer(&host_handle()?, idx, subnet, host).await })
            } else {
                match serde_json::from_slice::<Share>(&ev.kv.value) {
                    Ok(s) if s.host != self.host.ip => {
                        a.peers.insert(s.subnet, s.host);
                        block_on(async { vxlan::add_peer(&host_handle()?, idx, &s).await })
                    }
                    _ => continue,
                }
            };
            if let Err(e) = r.and_then(|r| r) {
                tracing::warn!("programming peer {subnet}: {e}");
            }
        }
        if programmed {
            self.seen(None, rev);
        }
        for id in renamed {
            self.publish_names(&id);
        }
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Leaves if there is nothing left to do (removing the pid file, socket and lease record).
fn exit_if_idle(s: &State) {
    if !s.idle() {
        return;
    }
    let _ = s.cfg.etcd.delete(&registry::host_key(s.host.ip), false);
    let _ = std::fs::remove_file(lease_file(&s.root));
    let _ = std::fs::remove_file(sock(&s.root));
    let _ = std::fs::remove_file(pid_file(&s.root));
    std::process::exit(0);
}

/// Watches the store for the life of the process, reconciling whenever the watch (re)starts.
fn watch_loop(shared: Shared) {
    let mut wait = Duration::from_millis(100);
    loop {
        let (rev, cfg) = {
            let mut s = lock(&shared);
            let r = s.reconcile();
            exit_if_idle(&s);
            (r, s.cfg)
        };
        let rev = match rev {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("reconciling with the store: {e}");
                std::thread::sleep(helper::backoff(&mut wait, BACKOFF_CAP));
                continue;
            }
        };
        match cfg.etcd.watch(registry::PREFIX, rev + 1, Some(WATCH_IDLE)) {
            Ok(mut w) => loop {
                match w.next_batch() {
                    Ok((events, rev)) => {
                        wait = Duration::from_millis(100);
                        lock(&shared).apply(&events, rev);
                    }
                    Err(e) => {
                        tracing::info!("watch ended: {e}");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!("watching the store: {e}"),
        }
        std::thread::sleep(helper::backoff(&mut wait, BACKOFF_CAP));
    }
}

/// Keeps the host's lease alive; a lease found gone is replaced and everything put back.
fn keepalive_loop(shared: Shared) {
    let (root, cfg) = {
        let s = lock(&shared);
        (s.root.clone(), s.cfg)
    };
    let every = Duration::from_secs((cfg.lease_ttl / 3).max(1));
    let mut wait = Duration::from_millis(100);
    loop {
        let id = host::lease(&root, cfg);
        let r = id
            .map_err(|e| EtcdError::Refused(e.to_string()))
            .and_then(|id| {
                cfg.etcd.keepalive(id).map(|_| ()).or_else(|e| match e {
                    EtcdError::LeaseNotFound => {
                        host::renew(&root, cfg, id)
                            .map_err(|e| EtcdError::Refused(e.to_string()))?;
                        lock(&shared)
                            .reconcile()
                            .map(|_| ())
                            .map_err(|e| EtcdError::Refused(e.to_string()))
                    }
                    e => Err(e),
                })
            });
        let owed = !retry_pending(&root, cfg);
        match r {
            Ok(()) if !owed => {
                wait = Duration::from_millis(100);
                exit_if_idle(&lock(&shared));
                std::thread::sleep(every);
            }
            _ => {
                if let Err(e) = r {
                    tracing::warn!("renewing the host's lease: {e}");
                }
                exit_if_idle(&lock(&shared));
                std::thread::sleep(helper::backoff(&mut wait, BACKOFF_CAP).min(every));
            }
        }
    }
}

/// One control request; returns the answer line.
fn control(shared: &Shared, line: &str) -> String {
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    // Every rbox command pings; it must not wait for a reconcile stuck on a dead store.
    if cmd == "ping" {
        return "ok".into();
    }
    let mut s = lock(shared);
    let r = match cmd {
        "join" if s.active.contains_key(arg) => Ok(()),
        "join" => {
            s.left.remove(arg);
            Store::new(&s.root.clone())
                .load(arg)
                .and_then(|net| s.activate(&net))
                .map(|rev| s.seen(Some(arg), rev))
        }
        "leave" => {
            s.active.remove(arg);
            super::names::forget(&s.root, arg);
            s.left.insert(arg.to_string());
            Ok(())
        }
        "resync" => s.reconcile().map(|_| ()),
        "stop" => {
            let _ = std::fs::remove_file(sock(&s.root));
            let _ = std::fs::remove_file(pid_file(&s.root));
            std::process::exit(0);
        }
        other => Err(Error::Invalid(format!("unknown request {other:?}"))),
    };
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("error {}", e.to_string().replace('\n', " ")),
    }
}

fn serve(conn: UnixStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let reply = control(shared, line.trim());
    let _ = (&conn).write_all(format!("{reply}\n").as_bytes());
    if line.trim().starts_with("leave") {
        exit_if_idle(&lock(shared));
    }
}

/// What the helper needs, made before it reports ready.
pub struct Prepared {
    state: State,
    listener: UnixListener,
}

fn prepare(root: &Path) -> Result<Prepared> {
    let cfg = required(root)?;
    let dir = host::dir(root);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let host = host::identity(cfg)?;
    let path = sock(root);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io(format!("binding {}", path.display())))?;
    statefile::write_atomic(
        &pid_file(root),
        format!("{}\n", std::process::id()).as_bytes(),
    )?;
    let log =
        std::fs::File::create(dir.join("agent.log")).map_err(io("creating the helper log"))?;
    // SAFETY: dup2 onto stderr; the pipe to whoever started us closes with it.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 2) };
    Ok(Prepared {
        state: State {
            root: root.to_path_buf(),
            cfg,
            host,
            active: BTreeMap::new(),
            left: Default::default(),
            acked: Default::default(),
        },
        listener,
    })
}

fn run(p: Prepared) -> i32 {
    let shared: Shared = Arc::new(Mutex::new(p.state));
    {
        let s = shared.clone();
        std::thread::spawn(move || watch_loop(s));
        let s = shared.clone();
        std::thread::spawn(move || keepalive_loop(s));
    }
    for conn in p.listener.incoming() {
        match conn {
            // A thread per request: a ping never queues behind a join waiting on the store.
            Ok(c) => {
                let s = shared.clone();
                std::thread::spawn(move || serve(c, &s));
            }
            Err(e) => {
                tracing::warn!("accepting: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    0
}

/// Body of the hidden `rbox cluster serve`.
pub fn serve_main(root: &Path) -> i32 {
    crate::cluster::init(root);
    helper::daemonize(|| prepare(root), run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_keys_parse() {
        assert_eq!(
            parse_share_key("/rbox/subnet/abc/10.185.3.0-24"),
            Some(("abc", "10.185.3.0/24".parse().unwrap()))
        );
        assert_eq!(parse_share_key("/rbox/endpoint/abc/x"), None);
        assert_eq!(parse_share_key("/rbox/subnet/abc/nope"), None);
    }
}
