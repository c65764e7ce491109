//! A container's files, for `diff`, `export` and `cp`: its merged root filesystem (mounted
//! for the time of the call when the container does not run) and its changes against the
//! image (the overlay's upper directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::Paths;

/// Runs `f` on the container's merged root filesystem (the host's view: no volumes). A
/// container that does not run gets its overlay mounted for the call, under its record lock
/// so that no start mounts it meanwhile.
pub fn with_rootfs<T>(root: &Path, rec: &Record, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let paths = Paths::new(root, &rec.id);
    if rec.running() {
        return f(&paths.rootfs());
    }
    let _l = statefile::Lock::exclusive(&paths.lock())?;
    let store = images::Store::open(root)?;
    let image = store.resolve(&rec.image_id)?;
    crate::rootfs::mount_overlay(&paths, &store.layer_dirs(&image), false)?;
    let r = f(&paths.rootfs());
    crate::rootfs::unmount(&paths);
    r
}

/// A change of `docker diff`: `A` added, `C` changed, `D` deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: char,
    pub path: String,
}

/// What rbox itself puts into every container (Docker keeps them in its init layer, so
/// `docker diff` never shows them).
const OWN: &[&str] = &[
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
];

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether a path (`/etc/x`) is in one of the layers of the container's image.
fn in_image(root: &Path, rec: &Record) -> Result<impl Fn(&str) -> bool> {
    let store = images::Store::open(root)?;
    let lowers = store.layer_dirs(&store.resolve(&rec.image_id)?);
    Ok(move |rel: &str| {
        lowers.iter().any(|l| {
            l.join(rel.trim_start_matches('/'))
                .symlink_metadata()
                .is_ok()
        })
    })
}

/// `docker diff`: the overlay's upper directory against the image's layers, sorted by path.
pub fn changes(root: &Path, rec: &Record) -> Result<Vec<Change>> {
    let paths = Paths::new(root, &rec.id);
    let in_image = in_image(root, rec)?;
    let mut out: BTreeMap<String, char> = BTreeMap::new();
    walk(&paths.upper(), "", &mut |rel, m| {
        if OWN.contains(&rel) {
            return;
        }
        let kind = if is_whiteout(m) {
            'D'
        } else if in_image(rel) {
            'C'
        } else {
            'A'
        };
        out.insert(rel.to_string(), kind);
    });
    // A changed directory that only holds rbox's own files is not a change.
    let keep: Vec<Change> = out
        .iter()
        .filter(|(p, k)| {
            **k != 'C'
                || !Path::new(&paths.upper().join(p.trim_start_matches('/'))).is_dir()
                || out.keys().any(|q| q.starts_with(&format!("{p}/")))
                || !in_image(p)
        })
        .map(|(p, k)| Change {
            kind: *k,
            path: p.clone(),
        })
        .collect();
    Ok(keep)
}

fn walk(dir: &Path, rel: &str, f: &mut dyn FnMut(&str, &std::fs::Metadata)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = format!("{rel}/{name}");
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        f(&r, &m);
        if m.is_dir() {
            walk(&e.path(), &r, f);
        }
    }
}

/// Writes `dir` as a tar archive to `out`, names relative to it (`export`; `cp` out).
/// Sockets are left out (tar has no such entries), as Docker's archiver does.
pub fn tar_dir(dir: &Path, prefix: &Path, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let err = |e: std::io::Error| Error::io(format!("archiving {}", dir.display()), e);
    let m = dir.symlink_metadata().map_err(err)?;
    if !prefix.as_os_str().is_empty() {
        b.append_path_with_name(dir, prefix).map_err(err)?;
    }
    if m.is_dir() {
        let mut entries: Vec<PathBuf> = Vec::new();
        collect(dir, &mut entries);
        for p in entries {
            let rel = p.strip_prefix(dir).unwrap_or(&p);
            if p.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_socket())
            {
                continue;
            }
            b.append_path_with_name(&p, prefix.join(rel)).map_err(err)?;
        }
    }
    b.finish().map_err(err)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        out.push(p.clone());
        if is_dir {
            collect(&p, out);
        }
    }
}

/// The container's changes as an OCI layer tar (`commit`): the overlay's upper directory,
/// its whiteouts as `.wh.NAME` entries and opaque directories with `.wh..wh..opq`, without
/// the files rbox itself made (the /etc files it mounts over, /proc and friends).
pub fn changes_tar(root: &Path, rec: &Record, out: impl Write) -> Result<()> {
    let paths = Paths::new(root, &rec.id);
    let upper = paths.upper();
    let in_image = in_image(root, rec)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let err = |e: std::io::Error| Error::io("archiving the container's changes", e);
    let mut entries = Vec::new();
    collect(&upper, &mut entries);
    for p in entries {
        let rel = p.strip_prefix(&upper).unwrap_or(&p);
        let rel_s = format!("/{}", rel.display());
        if OWN.contains(&rel_s.as_str()) && !in_image(&rel_s) {
            continue;
        }
        if OWN.iter().any(|o| rel_s.starts_with(&format!("{o}/"))) && !in_image(&rel_s) {
            continue;
        }
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.file_type().is_socket() {
            continue;
        }
        if is_whiteout(&m) {
            let name = rel.file_name().unwrap_or_default().to_string_lossy();
            let wh = rel.with_file_name(format!(".wh.{name}"));
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, wh, std::io::empty()).map_err(err)?;
            continue;
        }
        b.append_path_with_name(&p, rel).map_err(err)?;
        if m.is_dir() && opaque(&p) {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, rel.join(".wh..wh..opq"), std::io::empty())
                .map_err(err)?;
        }
    }
    b.finish().map_err(err)
}

/// An overlay directory that hides the lower ones' (`trusted.overlay.opaque` is `y`).
fn opaque(dir: &Path) -> bool {
    let (Ok(p), Ok(name)) = (
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new("trusted.overlay.opaque"),
    ) else {
        return false;
    };
    let mut v = [0u8; 4];
    // SAFETY: lgetxattr into our buffer, with C strings we own.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    n == 1 && v[0] == b'y'
}
