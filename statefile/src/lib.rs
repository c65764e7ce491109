//! State files under `--root`, shared by every crate: each is written whole to a temp file and
//! renamed into place, so a reader (or a crash) only ever sees the old or the new version; and
//! advisory `flock` locks, so many `rbox` processes can work on one root at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    #[error("{0}: invalid JSON: {1}")]
    Json(String, #[source] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_err(path: &Path, e: io::Error) -> Error {
    Error::Io(path.display().to_string(), e)
}

/// Prefix of every temporary file this crate writes; `cleanup_temp` removes leftovers of a crash.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, true)
}

/// Like `write_atomic` but without the fsync: readers and a killed writer still only ever see
/// the old or the new version (rename is atomic), but a power loss may bring back the previous
/// version, or, on file systems that do not order data before the rename (ext4 does, for a
/// rename over an existing file), an empty file. For state that is worthless after a reboot
/// anyway, e.g. which process runs a container right now.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, false)
}

fn write_atomic_with(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TEMP_PREFIX}{}-{name}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    Ok(())
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let data =
        serde_json::to_vec_pretty(value).map_err(|e| Error::Json(path.display().to_string(), e))?;
    write_atomic(path, &data)
}

/// Serializes `value` as pretty JSON and writes it atomically without fsync (see
/// `write_atomic_unsynced` for what a power loss may do).
pub fn write_json_unsynced<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let data =
        serde_json::to_vec_pretty(value).map_err(|e| Error::Json(path.display().to_string(), e))?;
    write_atomic_unsynced(path, &data)
}

/// Reads a JSON state file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice(&data).map_err(|e| Error::Json(path.display().to_string(), e))
}

/// Reads a JSON state file, or `None` when it does not exist.
pub fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::Json(path.display().to_string(), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Removes temp files left in `dir` by a writer that crashed between create and rename.
/// Only files whose writer process is gone are removed.
pub fn cleanup_temp(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
        }
        let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
    }
}

/// An exclusive or shared `flock` on a lock file; released on drop (or when the process dies,
/// so a kill -9 never leaves a lock held).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Blocks until the exclusive lock on `path` is held, creating the file if needed.
    pub fn exclusive(path: &Path) -> Result<Lock> {
        Self::take(path, libc::LOCK_EX)
    }

    /// Blocks until a shared lock on `path` is held.
    pub fn shared(path: &Path) -> Result<Lock> {
        Self::take(path, libc::LOCK_SH)
    }

    /// The exclusive lock on `path` if nobody holds it now; `None` when it is held.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        match Self::take(path, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(l) => Ok(Some(l)),
            Err(Error::Io(_, e)) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take(path: &Path, op: libc::c_int) -> Result<Lock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err(path, e));
            }
        }
        Ok(Lock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file: a child that inherits its descriptor shares the lock, which then lasts
    /// until the last of them exits (what a holder's helpers must keep held after it dies).
    pub fn file(&self) -> &File {
        &self._file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_exclusive_fails_only_while_another_descriptor_holds_it() {
        let dir = std::env::temp_dir().join(format!("statefile-lock-{}", std::process::id()));
        let p = dir.join("locks/x.lock");
        let held = Lock::exclusive(&p).unwrap();
        // flock is per open file description: a second open of the file conflicts.
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        let again = Lock::try_exclusive(&p).unwrap();
        assert!(again.is_some());
        assert_eq!(again.unwrap().file().metadata().unwrap().len(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_round_trip_and_no_temp_left() {
        let dir = std::env::temp_dir().join(format!("statefile-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        let v: Vec<i32> = read_json(&p).unwrap();
        assert_eq!(v, vec![1, 2, 3]);
        assert!(read_json_opt::<Vec<i32>>(&dir.join("missing.json"))
            .unwrap()
            .is_none());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "only the target file remains: {names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsynced_write_replaces_atomically_too() {
        let dir = std::env::temp_dir().join(format!("statefile-unsynced-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        write_json(&p, &vec![1]).unwrap();
        write_json_unsynced(&p, &vec![2, 3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&p).unwrap(), vec![2, 3]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cleanup_removes_dead_writers_temp_only() {
        let dir = std::env::temp_dir().join(format!("statefile-clean-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dead = dir.join(format!("{TEMP_PREFIX}999999999-a"));
        let live = dir.join(format!("{TEMP_PREFIX}{}-b", std::process::id()));
        fs::write(&dead, b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        cleanup_temp(&dir);
        assert!(!dead.exists());
        assert!(live.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
