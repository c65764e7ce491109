//! A container's interface on a CNI network (an attachment): ADD through the list in order,
//! DEL in reverse, and the record that makes DEL possible after anything.
//!
//! - **The record** (`<root>/cni/<network id>/<container id>-<ifname>.json`, the spec's key) holds
//!   everything the plugins were told: the plugin configurations, the negotiated version,
//!   CNI_ARGS, the runtime config (port mappings), the namespace and, once ADD finished, the
//!   final result. It is written *before* the first plugin runs, so a kill -9 at any point
//!   leaves what the next command needs to DEL (without a result the plugins get no
//!   `prevResult` and clean up what they can, as the spec asks), and it goes only after a DEL
//!   of every plugin succeeded. DEL repeats the ADD's parameters, with the result as
//!   `prevResult`; a record found when adding is DELeted first (a retried ADD).
//! - **Serialised per root** (`locks/cni.lock`): plugins are not safe to run concurrently.
//! - **Orphans**: plugins inherit the descriptor of a second lock (`locks/cni-plugins.lock`),
//!   whose file names the process group of the latest plugin. If rbox dies mid-call, its direct
//!   child dies with it (PR_SET_PDEATHSIG) but a plugin it delegated to (an IPAM plugin) may
//!   live on and still take a lease. The next holder of the first lock finds the second held
//!   (nobody alive holds the first: only orphans can hold the second), kills that group and
//!   waits for the lock, so its DEL runs after the last of the old call, never beside it.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::conflist::declares;
use super::exec::{self, Call, Failure};
use super::version;
use crate::error::{io, Error, Result};

/// What the plugins were told of one interface, and what the last of them answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name as the plugins know it (host-local keys its leases by it).
    pub network: String,
    pub network_id: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    /// The `cniVersion` negotiated for this ADD (and its DEL).
    #[serde(default)]
    pub version: String,
    /// The version the list asked for.
    #[serde(default)]
    pub wanted_version: Option<String>,
    pub plugins: Vec<Map<String, Value>>,
    /// CNI_ARGS.
    pub args: String,
    /// The runtime config by capability (`portMappings`, `mac`); a plugin gets the keys it
    /// declares.
    #[serde(default)]
    pub runtime_config: Map<String, Value>,
    /// The final ADD result; `None` while ADD runs or when it failed.
    #[serde(default)]
    pub result: Option<Value>,
}

impl Attachment {
    fn file(root: &Path, network_id: &str, container_id: &str, ifname: &str) -> PathBuf {
        root.join("cni")
            .join(network_id)
            .join(format!("{container_id}-{ifname}.json"))
    }

    fn path(&self, root: &Path) -> PathBuf {
        Attachment::file(root, &self.network_id, &self.container_id, &self.ifname)
    }

    fn kind(p: &Map<String, Value>) -> &str {
        p.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// Plugin `p`'s stdin: its configuration with the network's name, the version, the
    /// runtime config of the capabilities it declares and `prev` as `prevResult` (libcni's
    /// `buildOneConfig`).
    fn config(&self, p: &Map<String, Value>, prev: Option<&Value>) -> Vec<u8> {
        let mut c = p.clone();
        c.insert("name".into(), Value::from(self.network.as_str()));
        c.insert("cniVersion".into(), Value::from(self.version.as_str()));
        c.remove("prevResult");
        if let Some(prev) = prev {
            c.insert("prevResult".into(), prev.clone());
        }
        let rc: Map<String, Value> = self
            .runtime_config
            .iter()
            .filter(|(cap, _)| declares(p, cap))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !rc.is_empty() {
            c.insert("runtimeConfig".into(), Value::Object(rc));
        }
        serde_json::to_vec(&c).unwrap_or_default()
    }
}

/// The root's CNI locks, held for one ADD or DEL.
pub struct Locks {
    _calls: statefile::Lock,
    plugins: statefile::Lock,
}

impl Locks {
    pub fn take(root: &Path) -> Result<Locks> {
        let calls = statefile::Lock::exclusive(&root.join("locks/cni.lock"))?;
        let path = root.join("locks/cni-plugins.lock");
        let plugins = match statefile::Lock::try_exclusive(&path)? {
            Some(l) => l,
            None => {
                kill_orphans(&path);
                statefile::Lock::exclusive(&path)?
            }
        };
        Ok(Locks {
            _calls: calls,
            plugins,
        })
    }

    /// Notes the process group of the plugin that just started, with its start time.
    fn note(&self, pid: i32) {
        let start = crate::proxy::start_time(pid).unwrap_or(0);
        let f = self.plugins.file();
        let line = format!("{pid} {start}\n");
        let _ = f.set_len(0);
        let _ = f.write_at(line.as_bytes(), 0);
    }
}

/// Kills what is left of the plugin group named in the plugins' lock file: the lock is held by
/// processes of a dead rbox's call. The group is killed only if its leader is the process
/// noted (same start time), or gone: a pid that is still some group's id cannot have been
/// given to another process.
fn kill_orphans(path: &Path) {
    let mut text = String::new();
    if fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return;
    }
    let mut it = text.split_whitespace();
    let (Some(Ok(pid)), Some(Ok(start))) = (
        it.next().map(str::parse::<i32>),
        it.next().map(str::parse::<u64>),
    ) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    let ours = match crate::proxy::start_time(pid) {
        Some(s) => s == start,
        // SAFETY: kill(2) with signal 0 only probes for the group.
        None => (unsafe { libc::kill(-pid, 0) }) == 0,
    };
    if ours {
        tracing::warn!(pgid = pid, "killing the plugins of an interrupted CNI call");
        // SAFETY: kill(2) of a process group shown to be a dead call's plugins.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

/// One plugin call with its error in libcni's words: `plugin type="bridge" name="n" failed
/// (add): ...`.
fn invoke(
    locks: &Locks,
    att: &Attachment,
    p: &Map<String, Value>,
    command: &str,
    netns: &str,
    prev: Option<&Value>,
    dirs: &[PathBuf],
) -> Result<Vec<u8>> {
    let kind = Attachment::kind(p);
    let fail = |e: String| {
        Error::Plugin(format!(
            "plugin type={kind:?} name={:?} failed ({}): {e}",
            att.network,
            command.to_ascii_lowercase()
        ))
    };
    let plugin = exec::find(kind, dirs).map_err(fail)?;
    let path = join_dirs(dirs);
    let call = Call {
        command,
        container_id: &att.container_id,
        netns,
        ifname: &att.ifname,
        args: &att.args,
        path: &path,
    };
    let fd = locks.plugins.file().as_raw_fd();
    exec::run(
        &plugin,
        &call,
        &att.config(p, prev),
        exec::timeout(),
        Some(fd),
        &mut |pid| locks.note(pid),
    )
    .map_err(|e| {
        fail(match e {
            Failure::Spawn(e) => format!("fork/exec {}: {e}", plugin.display()),
            other => other.to_string(),
        })
    })
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespace as DEL gets it: empty once it is gone (the spec's "not provided").
fn netns_arg(netns: &Path) -> String {
    if netns.exists() {
        netns.display().to_string()
    } else {
        String::new()
    }
}

/// DEL of every plugin in reverse with the record's result as `prevResult`. Keeps going past
/// a failing plugin (each DEL is idempotent, the record stays for the next try).
fn del_all(locks: &Locks, att: &Attachment, dirs: &[PathBuf]) -> Result<()> {
    let netns = netns_arg(&att.netns);
    let mut first = None;
    for p in att.plugins.iter().rev() {
        if let Err(e) = invoke(locks, att, p, "DEL", &netns, att.result.as_ref(), dirs) {
            first.get_or_insert(e);
        }
    }
    match first {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Removes a record, and its network's directory with the last one (under the root's CNI
/// lock, so no record is being added there meanwhile).
fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", path.display()))(e)),
    }
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

/// ADD `att` through its plugins in order; the final result, recorded. On failure every
/// plugin is DELeted again (in reverse) and the record goes with them: nothing is left.
pub fn add(root: &Path, mut att: Attachment, dirs: &[PathBuf]) -> Result<Attachment> {
    let locks = Locks::take(root)?;
    let file = att.path(root);
    // The spec forbids a second ADD without a DEL for the same key: a left-over goes first.
    if let Some(old) = statefile::read_json_opt::<Attachment>(&file)? {
        del_all(&locks, &old, dirs)?;
        remove_file(&file)?;
    }
    // Every plugin exists and a common version is found before anything is made.
    let mut supported = Vec::new();
    for p in &att.plugins {
        let kind = Attachment::kind(p);
        let path = exec::find(kind, dirs).map_err(Error::Invalid)?;
        let versions = version::supported(root, kind, &path, &mut version::ask).map_err(|e| {
            Error::Plugin(format!(
                "plugin type={kind:?} name={:?} failed (version): {e}",
                att.network
            ))
        })?;
        supported.push((kind.to_string(), versions));
    }
    att.version = version::negotiate(att.wanted_version.as_deref(), &supported)
        .map_err(|e| Error::Invalid(format!("network {}: {e}", att.network)))?;
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    att.result = None;
    statefile::write_json(&file, &att)?;
    let netns = att.netns.display().to_string();
    let mut prev: Option<Value> = None;
    for p in &att.plugins {
        let out = invoke(&locks, &att, p, "ADD", &netns, prev.as_ref(), dirs).and_then(|out| {
            serde_json::from_slice::<Value>(&out).map_err(|e| {
                Error::Plugin(format!(
                    "plugin type={:?} name={:?} failed (add): invalid result: {e}",
                    Attachment::kind(p),
                    att.network
                ))
            })
        });
        match out {
            Ok(v) => prev = Some(v),
            Err(e) => {
                let undo = Attachment {
                    result: prev,
                    ..att.clone()
                };
                match del_all(&locks, &undo, dirs) {
                    Ok(()) => remove_file(&file)?,
                    Err(d) => tracing::warn!("undoing a failed CNI ADD: {d}"),
                }
                return Err(e);
            }
        }
    }
    att.result = prev;
    if let Err(e) = statefile::write_json(&file, &att) {
        if del_all(&locks, &att, dirs).is_ok() {
            let _ = remove_file(&file);
        }
        return Err(e.into());
    }
    Ok(att)
}

/// DEL of the attachment (network, container, ifname) if there is one; its record goes once
/// every plugin's DEL succeeded. Idempotent.
pub fn remove(
    root: &Path,
    network_id: &str,
    container_id: &str,
    ifname: &str,
    dirs: &[PathBuf],
) -> Result<()> {
    let file = Attachment::file(root, network_id, container_id, ifname);
    // Nothing to do costs no lock.
    if !file.exists() {
        return Ok(());
    }
    let locks = Locks::take(root)?;
    let Some(att) = statefile::read_json_opt::<Attachment>(&file)? else {
        return Ok(());
    };
    del_all(&locks, &att, dirs)?;
    remove_file(&file)
}

/// Every attachment recorded for `network_id` (for `network rm`: none may be left).
pub fn recorded(root: &Path, network_id: &str) -> Vec<Attachment> {
    let dir = root.join("cni").join(network_id);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| statefile::read_json_opt(&e.path()).ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugin_configs_get_name_version_prev_result_and_their_capabilities() {
        let att = Attachment {
            network: "net1".into(),
            network_id: "id".into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            netns: "/x".into(),
            version: "1.0.0".into(),
            wanted_version: Some("1.1.0".into()),
            plugins: vec![],
            args: String::new(),
            runtime_config: json!({"portMappings": [{"hostPort": 80}], "mac": "x"})
                .as_object()
                .unwrap()
                .clone(),
            result: None,
        };
        let p = json!({"type": "portmap", "name": "other", "capabilities": {"portMappings": true}});
        let c: Value =
            serde_json::from_slice(&att.config(p.as_object().unwrap(), Some(&json!({"ips": []}))))
                .unwrap();
        assert_eq!(
            c,
            json!({"type": "portmap", "name": "net1", "capabilities": {"portMappings": true},
                   "cniVersion": "1.0.0", "prevResult": {"ips": []},
                   "runtimeConfig": {"portMappings": [{"hostPort": 80}]}})
        );
        let b = json!({"type": "bridge"});
        let c: Value = serde_json::from_slice(&att.config(b.as_object().unwrap(), None)).unwrap();
        assert_eq!(
            c,
            json!({"type": "bridge", "name": "net1", "cniVersion": "1.0.0"})
        );
    }
}
