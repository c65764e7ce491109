//! Unpacks one layer tar into a layer directory that overlayfs can stack as a lower dir.
//!
//! OCI whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character device, `.wh..wh..opq` the
//! `trusted.overlay.opaque=y` xattr on its directory. Nothing is ever written outside `dst`:
//! names with `..` and writes through symlinks are refused (leading `/` is dropped, as GNU tar
//! and Docker do), hard links must point at an entry inside `dst`, and a symlink that is
//! replaced by a later entry is removed, never followed.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use tar::{Archive, EntryType};

use crate::{Error, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";

/// Unpacks the tar stream into `dst` (an existing, empty directory). Returns the bytes of file
/// content unpacked (Docker's layer size).
pub(crate) fn unpack_layer<R: Read>(reader: R, dst: &Path) -> Result<u64> {
    let mut archive = Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false); // applied below, tolerating filesystems that refuse some
    archive.set_overwrite(true);
    let bad = |e: io::Error| Error::InvalidArchive(format!("reading layer tar: {e}"));
    let mut size = 0;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = clean(&raw)? else { continue };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            whiteout(dst, &rel, hidden)?;
            continue;
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            tracing::info!("skipping device node {}", rel.display());
            continue;
        }
        make_parents(dst, &rel)?;
        let full = dst.join(&rel);
        let xattrs = pax_xattrs(&mut entry).map_err(bad)?;
        if kind == EntryType::Link {
            let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                Error::InvalidArchive(format!("hard link {} without target", rel.display()))
            })?;
            hard_link(dst, &rel, &target)?;
            continue;
        }
        replace_existing(&full, kind == EntryType::Directory)?;
        entry.unpack(&full).map_err(|e| {
            Error::InvalidArchive(format!("unpacking {}: {}", rel.display(), root_cause(&e)))
        })?;
        if kind.is_file() || kind == EntryType::Continuous || kind == EntryType::GNUSparse {
            size += entry.size();
        }
        for (key, value) in xattrs {
            if let Err(e) = lsetxattr(&full, &key, &value) {
                tracing::info!("cannot set xattr {key} on {}: {e}", rel.display());
            }
        }
    }
    Ok(size)
}

/// The entry's path relative to the layer root; `None` for the root itself.
pub(crate) fn clean(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(unsafe_path(raw, "contains '..'"));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// The innermost cause: tar wraps I/O errors in messages naming our temp paths.
fn root_cause(e: &io::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    match cur.to_string() {
        m if m.contains("entire") || m.contains("whole buffer") || m.contains("unexpected EOF") => {
            format!("{m} (truncated archive?)")
        }
        m => m,
    }
}

fn unsafe_path(entry: &Path, reason: &str) -> Error {
    Error::UnsafePath {
        entry: entry.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Creates the missing parent directories of `rel`, refusing to pass through a symlink or a
/// non-directory (which is how `lnk -> /tmp` followed by `lnk/file` would escape).
fn make_parents(dst: &Path, rel: &Path) -> Result<()> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut cur = dst.to_path_buf();
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_path(rel, "a parent directory is a symlink"));
            }
            Ok(_) => return Err(unsafe_path(rel, "a parent is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(Error::at(&cur, "creating"))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(Error::at(&cur, "chmod"))?;
            }
            Err(e) => return Err(Error::io(format!("inspecting {}", cur.display()), e)),
        }
    }
    Ok(())
}

/// Clears the way for a new entry: a directory entry keeps an existing directory (its contents
/// come from the same layer), anything else replaces what is there. Symlinks are unlinked,
/// never followed.
fn replace_existing(full: &Path, is_dir: bool) -> Result<()> {
    match fs::symlink_metadata(full) {
        Ok(m) if m.is_dir() && is_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(full).map_err(Error::at(full, "replacing")),
        Ok(_) => fs::remove_file(full).map_err(Error::at(full, "replacing")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("inspecting {}", full.display()), e)),
    }
}

fn hard_link(dst: &Path, rel: &Path, target: &Path) -> Result<()> {
    let target_rel =
        clean(target).map_err(|_| unsafe_path(rel, "hard link target outside the layer"))?;
    let Some(target_rel) = target_rel else {
        return Err(unsafe_path(rel, "hard link to the layer root"));
    };
    // The target's parents must be real directories inside dst, as for any entry.
    let mut cur = dst.to_path_buf();
    for c in target_rel.parent().into_iter().flat_map(Path::components) {
        cur.push(c);
        let m = fs::symlink_metadata(&cur)
            .map_err(|_| unsafe_path(rel, "hard link target not in this layer"))?;
        if !m.is_dir() {
            return Err(unsafe_path(rel, "hard link target goes through a symlink"));
        }
    }
    let src = dst.join(&target_rel);
    match fs::symlink_metadata(&src) {
        Ok(m) if !m.is_dir() => {}
        _ => {
            return Err(unsafe_path(
                rel,
                "hard link target not a file in this layer",
            ))
        }
    }
    let full = dst.join(rel);
    if src == full {
        return Ok(());
    }
    replace_existing(&full, false)?;
    // linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
    fs::hard_link(&src, &full).map_err(Error::at(&full, "hard-linking"))
}

fn whiteout(dst: &Path, rel: &Path, hidden: &str) -> Result<()> {
    make_parents(dst, rel)?;
    let dir = dst.join(rel.parent().unwrap_or(Path::new("")));
    if format!("{WHITEOUT_PREFIX}{hidden}") == OPAQUE_MARKER {
        return lsetxattr(&dir, OPAQUE_XATTR, b"y")
            .map_err(|e| Error::io(format!("marking {} opaque", dir.display()), e));
    }
    if hidden.is_empty() || hidden == "." || hidden == ".." {
        return Err(unsafe_path(rel, "invalid whiteout"));
    }
    let target = dir.join(hidden);
    replace_existing(&target, false)?;
    mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
        .map_err(|e| Error::io(format!("creating whiteout {}", target.display()), e.into()))
}

/// `SCHILY.xattr.*` PAX records, minus overlayfs' own (a layer must not forge whiteouts or
/// redirects that way).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                if !name.starts_with("trusted.overlay.") {
                    out.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(
            clean(Path::new("./a/b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(
            clean(Path::new("/etc/passwd")).unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(clean(Path::new("./")).unwrap(), None);
        assert!(clean(Path::new("a/../../b")).is_err());
        assert!(clean(Path::new("../x")).is_err());
    }
}
