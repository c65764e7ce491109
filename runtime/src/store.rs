//! Where a container's files live under `--root`, and finding containers by name or id.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::Record;

/// The files of one container under `<root>/containers/<id>/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub id: String,
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(root: &Path, id: &str) -> Paths {
        Paths {
            root: root.to_path_buf(),
            id: id.to_string(),
            dir: containers_dir(root).join(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    /// Serialises read-modify-write of the record.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// Held exclusively by the process that owns the running container, for its lifetime.
    pub fn monitor_lock(&self) -> PathBuf {
        self.dir.join("monitor.lock")
    }
    /// The OCI bundle is the container dir itself: `config.json` + `rootfs/`.
    pub fn bundle(&self) -> &Path {
        &self.dir
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Outside the container dir: a unix socket path must fit in 108 bytes.
    pub fn console_socket(&self) -> PathBuf {
        std::env::temp_dir().join(format!(
            ".rbox-console-{}-{}",
            &self.id[..12],
            std::process::id()
        ))
    }
    /// The healthcheck's state, published by the monitor (`health`).
    pub fn health(&self) -> PathBuf {
        self.dir.join("health.json")
    }
    /// The monitor's control socket (`monitor::control`).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
    /// libcontainer's state root, one per rbox root.
    pub fn lc_root(&self) -> PathBuf {
        self.root.join("run")
    }
}

pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// ext4's FS_TOPDIR_FL (`chattr +T`, linux/fs.h).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Creates `dir` and marks it, where the file system knows the flag (ext2/3/4), as the top of
/// unrelated directory trees (`chattr +T`), so each per-container directory made in it is
/// placed in its own block group (Orlov) instead of its parent's. Why: every run creates and
/// deletes ~30 inodes; on ext4 without a journal (this host) allocating an inode skips, one by
/// one, every inode of the group deleted in the last 1-5 minutes, so with all containers in one
/// group a busy root paid ~1 ms per file (30 ms per run) against ~0.04 ms when spread.
/// Other file systems refuse or ignore the flag; that is fine.
pub fn create_topdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    if let Ok(f) = File::open(dir) {
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_{GET,SET}FLAGS read/write one int through the pointer we pass.
        unsafe {
            if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) == 0
                && flags & FS_TOPDIR_FL == 0
            {
                flags |= FS_TOPDIR_FL;
                libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
            }
        }
    }
    Ok(())
}

/// The root-wide lock that keeps names unique.
pub fn names_lock(root: &Path) -> Result<statefile::Lock> {
    Ok(statefile::Lock::exclusive(
        &root.join("locks").join("containers.lock"),
    )?)
}

pub fn load(paths: &Paths) -> Result<Record> {
    let rec = statefile::read_json_opt(&paths.record())?
        .ok_or_else(|| Error::NotFound(paths.id.clone()))?;
    Ok(with_health(paths, rec))
}

/// The record with its healthcheck's published state (only containers with a probe have one).
fn with_health(paths: &Paths, mut rec: Record) -> Record {
    if rec
        .settings
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.probes())
    {
        rec.health = crate::health::read(paths);
    }
    rec
}

pub fn save(paths: &Paths, rec: &Record) -> Result<()> {
    Ok(statefile::write_json(&paths.record(), rec)?)
}

/// `save` without fsync, for the updates of a run in progress (who owns it, its pid, that it
/// runs): after a power loss every container is stopped and crash repair rebuilds that part
/// from the last durable record (created, or the previous exit), so an fsync would buy nothing.
/// What a container is (create, rename) and how it ended stay durable.
pub fn save_transient(paths: &Paths, rec: &Record) -> Result<()> {
    Ok(statefile::write_json_unsynced(&paths.record(), rec)?)
}

/// All container records (not repaired; see `lifecycle::list`).
pub fn all(root: &Path) -> Vec<Record> {
    ids(root)
        .into_iter()
        .filter_map(|id| load(&Paths::new(root, &id)).ok())
        .collect()
}

/// Docker's lookup order: full id, exact name, unique id prefix.
pub fn resolve(root: &Path, key: &str) -> Result<Record> {
    let key = key.trim_start_matches('/');
    if key.is_empty() {
        return Err(Error::NotFound(key.to_string()));
    }
    // A full id (what rbox's own processes pass) is one file, not a read of every record.
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        let paths = Paths::new(root, key);
        if let Ok(Some(rec)) = statefile::read_json_opt::<Record>(&paths.record()) {
            return Ok(with_health(&paths, rec));
        }
    }
    if let Some(r) = crate::names::holder(root, key) {
        return Ok(r);
    }
    let mut hits = ids(root)
        .into_iter()
        .filter(|id| id.starts_with(key))
        .filter_map(|id| load(&Paths::new(root, &id)).ok());
    match (hits.next(), hits.next()) {
        (Some(r), None) => Ok(r),
        (Some(_), Some(_)) => Err(Error::Ambiguous(key.to_string())),
        _ => Err(Error::NotFound(key.to_string())),
    }
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// A POSIX record lock over the whole file. Why not flock(2) like every other lock: a flock
/// belongs to the open file, which libcontainer's init inherits through clone (it runs our
/// code, without exec, until the container starts), so a monitor killed before the start
/// left its lock held by a stuck init and `rm -f` waited for ever. A record lock belongs to
/// the process and is not inherited. Its pitfall: closing *any* descriptor of the file drops
/// the process's lock, so the monitor never opens monitor.lock a second time.
fn record_lock(f: &File, kind: libc::c_int, wait: bool) -> nix::Result<()> {
    let lock = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let arg = if wait {
        nix::fcntl::FcntlArg::F_SETLKW(&lock)
    } else {
        nix::fcntl::FcntlArg::F_SETLK(&lock)
    };
    nix::fcntl::fcntl(f.as_raw_fd(), arg).map(|_| ())
}

/// True while some process holds the container's monitor lock. Asks the kernel who holds it
/// (F_GETLK) without taking a lock, so it disturbs no waiter.
pub fn monitor_alive(paths: &Paths) -> bool {
    let Ok(f) = File::open(paths.monitor_lock()) else {
        return false;
    };
    let mut lock = libc::flock {
        l_type: libc::F_RDLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETLK(&mut lock)) {
        Ok(_) => lock.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => false,
    }
}

/// Blocks until the owner of the container (if any) has exited and written its final state;
/// returns the exit code the owner left in the lock file, if it finished normally.
pub fn wait_monitor(paths: &Paths) -> Option<i32> {
    let mut f = File::open(paths.monitor_lock()).ok()?;
    while let Err(nix::errno::Errno::EINTR) = record_lock(&f, libc::F_RDLCK, true) {}
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s).ok()?;
    s.trim().parse().ok()
}

/// Claims the container for this process; `None` if another process owns it. The caller
/// keeps the file open for as long as it owns the container.
pub fn claim_monitor(paths: &Paths) -> Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(paths.monitor_lock())
        .map_err(|e| Error::io(paths.monitor_lock().display(), e))?;
    Ok(record_lock(&f, libc::F_WRLCK, false).is_ok().then_some(f))
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "fervent",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];
const NAMES: &[&str] = &[
    "albattani",
    "bell",
    "curie",
    "darwin",
    "euler",
    "feynman",
    "galileo",
    "hopper",
    "knuth",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pasteur",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wozniak",
    "yalow",
];

/// A Docker-style random name (`adjective_scientist`) that `taken` says is free.
pub fn random_name(taken: impl Fn(&str) -> bool) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        let mut n = format!(
            "{}_{}",
            ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())],
            NAMES[rng.gen_range(0..NAMES.len())]
        );
        if taken(&n) {
            n.push_str(&rng.gen_range(0..100).to_string());
        }
        if !taken(&n) {
            return n;
        }
    }
}

/// The ids of the container directories under `root` (a read of the directory, no record).
fn ids(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(containers_dir(root)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect()
}

/// A fresh id whose 12-character short form no other container has.
pub fn new_unique_id(root: &Path) -> String {
    let taken = ids(root);
    loop {
        let id = new_id();
        if !taken.iter().any(|t| t[..12] == id[..12]) {
            return id;
        }
    }
}

/// A fresh 64-hex container id.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1"));
        assert!(valid_name("a.b_c"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("we b"));
        assert!(!valid_name("web/1"));
    }

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
