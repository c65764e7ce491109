//! Commands on containers: create, start, stop, kill, rm, rename, wait, list, prune. Every
//! lookup goes through `find`, which repairs a container whose owner died (crash repair).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::Utc;

use crate::error::{Error, Result};
use crate::monitor::{self, Attach};
use crate::record::{Record, RunState, Settings, Status};
use crate::store::{self, Paths};

/// What `create`/`run` ask for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub image: String,
    /// Replaces the image's Cmd when non-empty.
    pub cmd: Vec<String>,
    /// Replaces the image's Entrypoint (and then its Cmd) when set; "" clears it.
    pub entrypoint: Option<String>,
    pub settings: Settings,
}

/// Parses Docker's byte sizes: "64m", "1g", "512k", "1048576", "1.5g".
pub fn parse_bytes(s: &str) -> Result<i64> {
    let bad = || Error::Invalid(format!("invalid size: '{s}'"));
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok((v * mult as f64) as i64)
}

/// Creates the container's record and directory; nothing runs yet.
pub fn create(root: &Path, opts: &CreateOptions) -> Result<Record> {
    let store = images::Store::open(root)?;
    let image = store.resolve(&opts.image)?;
    tracing::debug!(image = %image.id, "image resolved");
    let mut s = opts.settings.clone();
    let cfg = &image.config;
    match &opts.entrypoint {
        Some(e) if e.is_empty() => s.entrypoint = Vec::new(),
        Some(e) => s.entrypoint = vec![e.clone()],
        None => s.entrypoint = cfg.entrypoint.clone().unwrap_or_default(),
    }
    s.cmd = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        cfg.cmd.clone().unwrap_or_default()
    };
    if s.entrypoint.is_empty() && s.cmd.is_empty() {
        return Err(Error::Invalid("No command specified".into()));
    }
    let mut env = cfg.env.clone();
    env.extend(s.env.iter().cloned());
    s.env = env;
    if s.working_dir.is_empty() {
        s.working_dir = cfg.working_dir.clone();
    }
    if s.user.is_empty() {
        s.user = cfg.user.clone();
    }
    if s.network_mode.is_empty() {
        s.network_mode = "bridge".into();
    }
    for e in &cfg.exposed_ports {
        if !s.exposed_ports.contains(e) {
            s.exposed_ports.push(e.clone());
        }
    }
    // Bad -p values fail here, before anything exists.
    crate::network::port_specs(&s)?;
    for (k, v) in &cfg.labels {
        s.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if s.memory < 0 || s.nano_cpus < 0 {
        return Err(Error::Invalid("invalid resource limit".into()));
    }
    if s.memory > 0 && s.memory < 6 * 1024 * 1024 {
        return Err(Error::Invalid("Minimum memory limit allowed is 6MB".into()));
    }
    crate::mounts::check(&s.mounts)?;
    crate::mounts::name_anonymous(&mut s.mounts);
    let _names = store::names_lock(root)?;
    // `rmi` checks for users under this lock too: the image must still be there once we hold it.
    store.resolve(&image.id)?;
    let all = store::all(root);
    let name = match &opts.name {
        Some(n) => {
            let n = n.trim_start_matches('/').to_string();
            if !store::valid_name(&n) {
                return Err(Error::InvalidName(n));
            }
            if let Some(other) = all.iter().find(|r| r.name == n) {
                return Err(Error::NameInUse(n, other.id.clone()));
            }
            n
        }
        None => store::random_name(&all.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
    };
    let id = loop {
        let id = store::new_id();
        if !all.iter().any(|r| r.id[..12] == id[..12]) {
            break id;
        }
    };
    if s.hostname.is_empty() {
        s.hostname = match net::attachment(root, &s.network_mode) {
            // Docker: a container on the host's network has the host's name.
            Ok((_, caps)) if caps.namespace == net::Namespace::Host => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => id[..12].to_string(),
        };
    }
    let rec = Record {
        id: id.clone(),
        name,
        created: Utc::now(),
        image: opts.image.clone(),
        image_id: image.id.clone(),
        settings: s,
        state: RunState {
            status: Status::Created,
            pid: 0,
            monitor_pid: 0,
            exit_code: 0,
            started_at: None,
            finished_at: None,
            oom_killed: false,
            error: String::new(),
        },
        networks: Default::default(),
        sandbox_key: String::new(),
        ports: Vec::new(),
        restart_count: 0,
    };
    let paths = Paths::new(root, &id);
    store::create_topdir(&store::containers_dir(root))?;
    std::fs::create_dir_all(&paths.dir).map_err(|e| Error::io(paths.dir.display(), e))?;
    // An --rm container does not outlive a power loss anyway, so its record needs no fsync; a
    // record lost that way leaves a directory `prune` removes.
    let save = if rec.settings.auto_remove {
        store::save_transient
    } else {
        store::save
    };
    // Last, so that no other error leaves a host directory behind.
    if let Err(e) = save(&paths, &rec)
        .and_then(|_| crate::mounts::create_sources(&rec.settings.mounts))
        .and_then(|_| crate::volume::create_for(root, &rec))
    {
        let _ = std::fs::remove_dir_all(&paths.dir);
        return Err(e);
    }
    Ok(rec)
}

/// Finds a container and repairs it first if its owner died.
pub fn find(root: &Path, key: &str) -> Result<Record> {
    let rec = store::resolve(root, key)?;
    repair(root, rec).ok_or_else(|| Error::NotFound(key.to_string()))
}

/// Crash repair: a container claimed by a process that is gone is torn down and marked
/// Exited (or removed, with --rm). Returns `None` when it was removed.
pub fn repair(root: &Path, rec: Record) -> Option<Record> {
    let paths = Paths::new(root, &rec.id);
    if rec.state.monitor_pid == 0 || store::monitor_alive(&paths) {
        return Some(rec);
    }
    let _l = statefile::Lock::exclusive(&paths.lock()).ok()?;
    let mut rec = store::load(&paths).ok()?;
    if rec.state.monitor_pid == 0 || store::monitor_alive(&paths) {
        return Some(rec);
    }
    tracing::debug!(id = %rec.id, "owner of the container is gone: repairing");
    crate::teardown(&paths);
    if rec.state.status == Status::Running {
        rec.state.status = Status::Exited;
        rec.state.exit_code = 137;
        rec.state.finished_at = Some(Utc::now());
        rec.state.error = "rbox monitor died".into();
    }
    rec.state.pid = 0;
    rec.state.monitor_pid = 0;
    rec.networks.clear();
    rec.sandbox_key.clear();
    rec.ports.clear();
    if rec.settings.auto_remove && rec.state.status == Status::Exited {
        remove_files(&paths);
        return None;
    }
    let _ = store::save(&paths, &rec);
    Some(rec)
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

/// Runs the container in this process (foreground `run`, `start -a`); returns its exit code.
pub fn run_attached(root: &Path, id: &str, stdin: bool) -> Result<i32> {
    let paths = Paths::new(root, id);
    monitor::run(&paths, Attach::Foreground { stdin }, &mut |_| {})
}

/// Starts the container under a detached monitor (this binary re-executed as
/// `rbox --root R container-monitor ID`); returns once it runs, or with the reason it could
/// not start.
pub fn start(root: &Path, key: &str) -> Result<Record> {
    let rec = find(root, key)?;
    if rec.running() {
        return Err(Error::AlreadyRunning(rec.name));
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(root)
        .arg("container-monitor")
        .arg(&rec.id);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::dup2(wfd, MONITOR_REPORT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("starting the container monitor", e))?;
    drop(w);
    let mut msg = String::new();
    let _ = File::from(r).read_to_string(&mut msg);
    let line = msg.lines().next().unwrap_or("");
    if line == "ok" {
        return find(root, &rec.id);
    }
    let _ = child.wait();
    match line.split_once(' ') {
        Some(("126", m)) => Err(Error::CannotInvoke(m.to_string())),
        Some(("127", m)) => Err(Error::CommandNotFound(m.to_string())),
        Some((_, m)) => Err(Error::Invalid(m.to_string())),
        None => Err(Error::Invalid(
            "the container monitor exited before starting the container".into(),
        )),
    }
}

/// The descriptor the monitor reports on ("ok" or "<code> <message>").
pub const MONITOR_REPORT_FD: i32 = 3;

/// Body of the `container-monitor` subcommand.
pub fn monitor_main(root: &Path, id: &str) -> i32 {
    // SAFETY: fd 3 was set up by `start`; we take ownership once.
    let report = unsafe { OwnedFd::from_raw_fd(MONITOR_REPORT_FD) };
    // The container must not inherit the report pipe, or `start` would wait for it to exit.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(report.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    let mut report = Some(File::from(report));
    let paths = Paths::new(root, id);
    let r = monitor::run(&paths, Attach::Detached, &mut |res| {
        if let Some(mut f) = report.take() {
            use std::io::Write;
            let line = match res {
                Ok(()) => "ok\n".to_string(),
                Err(e) => format!("{} {}\n", e.exit_code(), e.to_string().replace('\n', " ")),
            };
            let _ = f.write_all(line.as_bytes());
        }
    });
    match r {
        Ok(c) => c,
        Err(e) => e.exit_code(),
    }
}

fn pidfd_wait(pid: i32, timeout_ms: i32) -> bool {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true;
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: poll on one pollfd we own.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return n > 0;
        }
    }
}

/// Sends `sig` to the container's init.
pub fn kill(root: &Path, key: &str, sig: i32) -> Result<Record> {
    let rec = find(root, key)?;
    if !rec.running() {
        return Err(Error::Invalid(format!(
            "Cannot kill container: {key}: Container {} is not running",
            rec.id
        )));
    }
    // SAFETY: signalling the init pid recorded by its owner, which is alive (checked by find).
    if unsafe { libc::kill(rec.state.pid, sig) } != 0 {
        return Err(Error::io(
            format!("killing {key}"),
            std::io::Error::last_os_error(),
        ));
    }
    if sig == libc::SIGKILL {
        store::wait_monitor(&Paths::new(root, &rec.id));
    }
    Ok(rec)
}

/// SIGTERM, then SIGKILL after `timeout` seconds; returns when the owner recorded the exit.
pub fn stop(root: &Path, key: &str, timeout: u64) -> Result<Record> {
    let rec = find(root, key)?;
    if !rec.running() {
        return Ok(rec);
    }
    let pid = rec.state.pid;
    // SAFETY: see `kill`.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let ms = (timeout.min(i32::MAX as u64 / 1000) * 1000) as i32;
    if !pidfd_wait(pid, ms) {
        // SAFETY: see `kill`.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    store::wait_monitor(&Paths::new(root, &rec.id));
    Ok(rec)
}

/// Blocks until the container is not running; returns its exit code.
pub fn wait(root: &Path, key: &str) -> Result<i32> {
    let rec = find(root, key)?;
    let paths = Paths::new(root, &rec.id);
    let left = store::wait_monitor(&paths);
    match store::load(&paths) {
        Ok(r) => Ok(repair(root, r)
            .map(|r| r.state.exit_code)
            .or(left)
            .unwrap_or(rec.state.exit_code)),
        // Removed by --rm after it ended: the monitor left the code in its lock file.
        Err(_) => Ok(left.unwrap_or(rec.state.exit_code)),
    }
}

/// Deletes the container's files; the caller made sure nothing runs.
pub fn remove_files(paths: &Paths) {
    if store::load(paths).is_ok() {
        crate::teardown(paths);
    }
    remove_dir(paths);
}

/// Deletes the container's directory once everything it held was released.
pub(crate) fn remove_dir(paths: &Paths) {
    let rec = store::load(paths).ok();
    // Never recurse into a still-mounted rootfs.
    crate::rootfs::unmount(paths);
    let _ = std::fs::remove_dir_all(&paths.dir);
    // Docker drops the anonymous volumes of an --rm container with it.
    if let Some(r) = rec.filter(|r| r.settings.auto_remove) {
        crate::volume::remove_anonymous(&paths.root, &r);
    }
}

/// `rm -v`: `remove`, then the container's anonymous volumes.
pub fn remove_with_volumes(root: &Path, key: &str, force: bool) -> Result<Record> {
    let rec = remove(root, key, force)?;
    crate::volume::remove_anonymous(root, &rec);
    Ok(rec)
}

/// `rm [-f]`.
pub fn remove(root: &Path, key: &str, force: bool) -> Result<Record> {
    let rec = find(root, key)?;
    let paths = Paths::new(root, &rec.id);
    if rec.running() || store::monitor_alive(&paths) {
        if !force {
            return Err(Error::RunningRemove(rec.name));
        }
        if rec.state.pid > 0 {
            // SAFETY: see `kill`.
            unsafe { libc::kill(rec.state.pid, libc::SIGKILL) };
        }
        store::wait_monitor(&paths);
    }
    let _names = store::names_lock(root)?;
    if paths.dir.exists() {
        remove_files(&paths);
    }
    Ok(rec)
}

/// `rename OLD NEW`.
pub fn rename(root: &Path, key: &str, new: &str) -> Result<()> {
    let new = new.trim_start_matches('/');
    if !store::valid_name(new) {
        return Err(Error::InvalidName(new.to_string()));
    }
    let _names = store::names_lock(root)?;
    let rec = find(root, key)?;
    if let Some(other) = store::all(root).iter().find(|r| r.name == new) {
        return Err(Error::NameInUse(new.to_string(), other.id.clone()));
    }
    let paths = Paths::new(root, &rec.id);
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let mut r = store::load(&paths)?;
    r.name = new.to_string();
    store::save(&paths, &r)?;
    // Its endpoints answer to the new name (and no longer to the old) when this returns.
    Ok(net::rename(root, &r.id, new)?)
}

/// `container prune` / `system prune`: removes stopped containers; returns their ids.
pub fn prune(root: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for rec in list(root) {
        if rec.running() || store::monitor_alive(&Paths::new(root, &rec.id)) {
            continue;
        }
        if remove(root, &rec.id, false).is_ok() {
            removed.push(rec.id);
        }
    }
    statefile::cleanup_temp(&store::containers_dir(root));
    remove_recordless(root);
    removed
}

/// Removes container directories without a readable record (a power loss before an unsynced
/// record reached the disk) whose monitor is gone. Under the names lock, which `create` holds
/// from making a directory to writing its record.
fn remove_recordless(root: &Path) {
    let Ok(_names) = store::names_lock(root) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(store::containers_dir(root)) else {
        return;
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let paths = Paths::new(root, &id);
        if id.len() == 64 && store::load(&paths).is_err() && !store::monitor_alive(&paths) {
            crate::rootfs::unmount(&paths);
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("32m").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512K").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("64mb").unwrap(), 64 << 20);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }
}
