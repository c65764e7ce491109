//! The container's root filesystem: an overlay of the image layers plus a private upper dir,
//! and lookups inside it that cannot escape it through symlinks.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::store::Paths;

/// Mounts the overlay at `paths.rootfs()`. `layers` are lowest first (as images gives them);
/// overlayfs wants the topmost lowerdir first.
pub fn mount_overlay(paths: &Paths, layers: &[PathBuf]) -> Result<()> {
    if layers.is_empty() {
        return Err(Error::Invalid("image has no layers".into()));
    }
    for d in [paths.rootfs(), paths.upper(), paths.work()] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(d.display(), e))?;
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        paths.upper().display(),
        paths.work().display()
    );
    mount(
        Some("overlay"),
        &paths.rootfs(),
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mounting overlay rootfs for {}", paths.id),
            e.into(),
        )
    })
}

/// Unmounts the rootfs if mounted; a no-op otherwise (crash repair calls it blindly).
pub fn unmount(paths: &Paths) {
    let _ = umount2(&paths.rootfs(), MntFlags::MNT_DETACH);
}

/// Resolves `path` (absolute or relative to `/`) inside `root` the way the kernel would after
/// pivot_root: absolute symlinks restart at `root`, `..` never climbs above it.
pub fn resolve_in(root: &Path, path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    let mut pending: Vec<String> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            out.pop();
            continue;
        }
        let candidate = root.join(&out).join(&part);
        match std::fs::read_link(&candidate) {
            Ok(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => pending.push(s.to_string_lossy().into_owned()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => out.push(part),
        }
    }
    root.join(out)
}

/// Docker's 127/126 checks on the command, done before the container is built so the user
/// gets Docker's wording and exit code.
pub fn check_executable(root: &Path, argv0: &str, env: &[String]) -> Result<()> {
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let candidates: Vec<PathBuf> = if argv0.contains('/') {
        vec![resolve_in(root, argv0)]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| resolve_in(root, &format!("{d}/{argv0}")))
            .collect()
    };
    let mut denied = None;
    for c in &candidates {
        let Ok(meta) = std::fs::metadata(c) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(());
        }
        denied.get_or_insert(c.clone());
    }
    match denied {
        Some(_) => Err(Error::CannotInvoke(format!(
            "exec: \"{argv0}\": permission denied"
        ))),
        None if argv0.contains('/') => Err(Error::CommandNotFound(format!(
            "exec: \"{argv0}\": stat {argv0}: no such file or directory"
        ))),
        None => Err(Error::CommandNotFound(format!(
            "exec: \"{argv0}\": executable file not found in $PATH"
        ))),
    }
}

/// Makes sure `path` exists inside `root` as a directory (Docker creates a missing `-w` dir).
pub fn ensure_dir(root: &Path, path: &str, uid: u32, gid: u32) -> Result<()> {
    let p = resolve_in(root, path);
    if p.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(&p)
        .map_err(|e| Error::io(format!("creating working directory {path}"), e))?;
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: chown on a path we just created inside the container's rootfs.
    unsafe { libc::chown(c.as_ptr(), uid, gid) };
    Ok(())
}

/// Makes sure a file exists at `path` inside `root`, as a bind-mount target.
pub fn ensure_file(root: &Path, path: &str) -> Result<()> {
    let p = resolve_in(root, path);
    if p.exists() {
        return Ok(());
    }
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d.display(), e))?;
    }
    std::fs::write(&p, b"").map_err(|e| Error::io(p.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("bin/busybox"), b"x").unwrap();
        std::fs::set_permissions(
            r.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink("busybox", r.join("bin/sh")).unwrap();
        symlink("/etc/passwd", r.join("bin/escape")).unwrap();
        symlink("../../../../bin", r.join("up")).unwrap();
        assert_eq!(resolve_in(r, "/bin/sh"), r.join("bin/busybox"));
        assert_eq!(resolve_in(r, "/bin/escape"), r.join("etc/passwd"));
        assert_eq!(resolve_in(r, "/up/sh"), r.join("bin/busybox"));
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        assert!(check_executable(r, "sh", &env).is_ok());
        assert!(check_executable(r, "/bin/sh", &env).is_ok());
        assert_eq!(
            check_executable(r, "nope", &env).unwrap_err().exit_code(),
            127
        );
        assert_eq!(
            check_executable(r, "/bin", &env).unwrap_err().exit_code(),
            126
        );
        std::fs::write(r.join("bin/data"), b"x").unwrap();
        assert_eq!(
            check_executable(r, "/bin/data", &env)
                .unwrap_err()
                .exit_code(),
            126
        );
    }
}
