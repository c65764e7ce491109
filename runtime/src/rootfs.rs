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
///
/// `volatile` is for a container whose writable layer is thrown away when it stops (`--rm`, as
/// podman does): unmounting an overlay otherwise syncs the whole file system that holds the
/// upper dir (ovl_sync_fs -> sync_filesystem), which costs from ~1 ms to tens of ms on a busy
/// disk, on the path of every `run --rm`. A volatile mount marks its work dir so that it can
/// never be mounted again after a crash; a fresh work dir each time keeps a second start of a
/// container that failed to start possible. Kernels before 5.10 refuse the option: then it is
/// mounted without.
pub fn mount_overlay(paths: &Paths, layers: &[PathBuf], volatile: bool) -> Result<()> {
    if layers.is_empty() {
        return Err(Error::Invalid("image has no layers".into()));
    }
    if volatile {
        let _ = std::fs::remove_dir_all(paths.work());
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
    let mount_with = |data: &str| {
        mount(
            Some("overlay"),
            &paths.rootfs(),
            Some("overlay"),
            MsFlags::empty(),
            Some(data),
        )
    };
    let mut result = Err(nix::errno::Errno::EINVAL);
    if volatile {
        result = mount_with(&format!("{data},volatile"));
    }
    if result == Err(nix::errno::Errno::EINVAL) {
        result = mount_with(&data);
    }
    result.map_err(|e| {
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
/// pivot_root: absolute symlinks restart at `root`, `..` never climbs above it. More than 40
/// links is ELOOP, as for the kernel: a path with links left in it would be followed by the
/// host, out of the rootfs.
pub fn resolve_in(root: &Path, path: &str) -> std::io::Result<PathBuf> {
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
            Ok(_) if hops >= 40 => {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
            }
            Ok(target) => {
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
            Err(_) => out.push(part),
        }
    }
    Ok(root.join(out))
}

/// The metadata of `path` resolved by the kernel as if `root_dir` were `/` (openat2 with
/// RESOLVE_IN_ROOT, Linux 5.6+): what `resolve_in` computes with a readlink per component, in
/// one system call. `None` when the kernel has no openat2; then the caller uses `resolve_in`.
fn metadata_in_root(
    root_dir: &std::fs::File,
    path: &str,
) -> Option<std::io::Result<std::fs::Metadata>> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // "/" itself is the root directory ("" would be ENOENT).
    let rel = match path.trim_start_matches('/') {
        "" => CString::new("."),
        p => CString::new(p),
    }
    .ok()?;
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: openat2 with a valid directory fd, a NUL-terminated path and a sized struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => None,
            _ => Some(Err(e)),
        };
    }
    // SAFETY: the kernel just returned this descriptor; the File owns it from here.
    let f = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    Some(f.metadata())
}

/// Docker's 127/126 checks on the command, done before the container is built so the user
/// gets Docker's wording and exit code.
pub fn check_executable(root: &Path, argv0: &str, env: &[String]) -> Result<()> {
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let candidates: Vec<String> = if argv0.contains('/') {
        vec![argv0.to_string()]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{argv0}"))
            .collect()
    };
    let mut denied = false;
    let root_dir = std::fs::File::open(root).ok();
    for c in &candidates {
        let meta = match root_dir.as_ref().and_then(|d| metadata_in_root(d, c)) {
            Some(m) => m,
            None => resolve_in(root, c).and_then(std::fs::metadata),
        };
        let Ok(meta) = meta else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(());
        }
        denied = true;
    }
    match denied {
        true => Err(Error::CannotInvoke(format!(
            "exec: \"{argv0}\": permission denied"
        ))),
        false if argv0.contains('/') => Err(Error::CommandNotFound(format!(
            "exec: \"{argv0}\": stat {argv0}: no such file or directory"
        ))),
        false => Err(Error::CommandNotFound(format!(
            "exec: \"{argv0}\": executable file not found in $PATH"
        ))),
    }
}

/// Makes sure `path` exists inside `root` as a directory (Docker creates a missing `-w` dir).
pub fn ensure_dir(root: &Path, path: &str, uid: u32, gid: u32) -> Result<()> {
    let p = resolve_in(root, path)
        .map_err(|e| Error::io(format!("creating working directory {path}"), e))?;
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
    let p = resolve_in(root, path).map_err(|e| Error::io(path, e))?;
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
        assert_eq!(resolve_in(r, "/bin/sh").unwrap(), r.join("bin/busybox"));
        assert_eq!(resolve_in(r, "/bin/escape").unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve_in(r, "/up/sh").unwrap(), r.join("bin/busybox"));
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
        // An absolute symlink resolves inside the root, never to the host's file.
        symlink("/usr/bin/env", r.join("bin/hostenv")).unwrap();
        assert!(Path::new("/usr/bin/env").exists());
        assert_eq!(
            check_executable(r, "hostenv", &env)
                .unwrap_err()
                .exit_code(),
            127
        );
        std::fs::write(r.join("bin/data"), b"x").unwrap();
        assert_eq!(
            check_executable(r, "/bin/data", &env)
                .unwrap_err()
                .exit_code(),
            126
        );
    }

    /// A chain of more links than the kernel follows, ending at a host directory: ELOOP, and
    /// `ensure_dir` (`-w`) / `ensure_file` create nothing on the host.
    #[test]
    fn long_link_chains_are_eloop_not_an_escape() {
        let d = tempfile::tempdir().unwrap();
        let (r, host) = (d.path().join("rootfs"), d.path().join("host"));
        std::fs::create_dir_all(&r).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        for i in 0..45 {
            symlink(format!("l{}", i + 1), r.join(format!("l{i}"))).unwrap();
        }
        symlink(&host, r.join("l45")).unwrap();
        let err = resolve_in(&r, "/l0/x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert!(ensure_dir(&r, "/l0/made", 0, 0).is_err());
        assert!(ensure_file(&r, "/l0/file").is_err());
        assert_eq!(
            std::fs::read_dir(&host).unwrap().count(),
            0,
            "written on the host"
        );
        // 40 links are still followed.
        std::fs::remove_file(r.join("l40")).unwrap();
        std::fs::create_dir(r.join("l40")).unwrap();
        assert_eq!(resolve_in(&r, "/l0/x").unwrap(), r.join("l40/x"));
    }
}
