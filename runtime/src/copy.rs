//! `cp` between a container and the host, as tar streams (Docker's `archive.CopyTo`): paths
//! in the container resolve inside it (symlinks never lead out), archives are written from the
//! host side, and unpacking into a container happens in a child chrooted into the
//! container's root, so that a symlink the container made cannot redirect a write to the host.
//! A running container is reached through `/proc/PID/root` (its volumes included); a stopped
//! one has its overlay mounted for the call.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::Record;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    File,
    Dir,
}

pub fn kind_of(p: &Path) -> Kind {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Kind::Dir,
        Ok(_) => Kind::File,
        Err(_) => Kind::Missing,
    }
}

/// Runs `f` with the container's root as the host sees it: `/proc/PID/root` while it runs,
/// else its overlay mounted for the call.
pub fn with_container_root<T>(
    root: &Path,
    rec: &Record,
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    if rec.running() && rec.state.pid > 0 {
        return f(&PathBuf::from(format!("/proc/{}/root", rec.state.pid)));
    }
    crate::contents::with_rootfs(root, rec, f)
}

/// `path` of the container resolved on the host side, inside `croot`.
pub fn resolve(croot: &Path, path: &str) -> Result<PathBuf> {
    crate::rootfs::resolve_in(croot, path).map_err(|e| Error::io(path, e))
}

/// The name a copy of `src` gets and the directory it is unpacked into, for a destination
/// `dst` that is of kind `dst_kind` (Docker's `PrepareArchiveCopy`).
fn layout(src: &str, src_kind: Kind, dst: &str, dst_kind: Kind) -> Result<(PathBuf, PathBuf)> {
    let contents_only = src_kind == Kind::Dir && (src.ends_with("/.") || src == ".");
    let base = Path::new(src.trim_end_matches("/."))
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let dst_path = PathBuf::from(dst);
    match (src_kind, dst_kind) {
        (Kind::Dir, Kind::File) => Err(Error::Invalid("cannot copy directory".into())),
        (_, Kind::Dir) if contents_only => Ok((PathBuf::new(), dst_path)),
        (_, Kind::Dir) => Ok((base, dst_path)),
        (Kind::File, Kind::Missing) if dst.ends_with('/') => {
            Err(Error::Invalid("no such directory".into()))
        }
        (Kind::File, Kind::File) if dst.ends_with('/') => {
            Err(Error::Invalid("not a directory".into()))
        }
        // A new or replaced file, or a new directory: the copy takes the destination's name.
        _ => {
            let parent = dst_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let name = dst_path.file_name().map(PathBuf::from).unwrap_or_default();
            Ok((name, parent))
        }
    }
}

/// A local end of `cp`: a path, or `-` (a tar archive on stdout or stdin).
pub enum Local {
    Path(PathBuf),
    Stream,
}

fn name_of(path: &str) -> PathBuf {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `cp CONTAINER:PATH LOCAL`: unpacked under Docker's rules, owners ours unless `archive`; to
/// `Local::Stream` the tar archive goes to `out`.
pub fn from_container(
    root: &Path,
    rec: &Record,
    path: &str,
    local: &Local,
    archive: bool,
    out: impl Write,
) -> Result<()> {
    with_container_root(root, rec, |croot| {
        let src = resolve(croot, path)?;
        let kind = match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => Kind::Dir,
            Ok(_) => Kind::File,
            Err(_) => Kind::Missing,
        };
        if kind == Kind::Missing {
            return Err(Error::Invalid(format!(
                "No such container:path: {}:{path}",
                rec.name
            )));
        }
        let dest = match local {
            Local::Stream => return pack(&src, &name_of(path), out),
            Local::Path(p) => p,
        };
        let dest_s = dest.to_string_lossy();
        let (name, into) = layout(path, kind, &dest_s, kind_of(dest))?;
        if !into.is_dir() {
            return Err(Error::Invalid(format!(
                "destination directory {:?} does not exist",
                into.display().to_string()
            )));
        }
        pack_to_host(&src, &name, &into, archive)
    })
}

/// Packs `src` in a forked child into a pipe that this process unpacks into `into`, so a copy
/// costs a pipe's worth of memory whatever its size (the CLI's `cp` has one thread here).
fn pack_to_host(src: &Path, name: &Path, into: &Path, keep_owner: bool) -> Result<()> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::io("pipe", e.into()))?;
    let (er, ew) = nix::unistd::pipe().map_err(|e| Error::io("pipe", e.into()))?;
    // SAFETY: the child only packs into the pipe and _exits; this process has one thread.
    match unsafe { libc::fork() } {
        0 => {
            drop(r);
            drop(er);
            // SAFETY: a signal disposition in this single-threaded child: a reader that
            // failed makes the write fail (EPIPE) instead of killing the child unreported.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            let status = match pack(src, name, File::from(w)) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = File::from(ew).write_all(e.to_string().as_bytes());
                    1
                }
            };
            // SAFETY: ending the forked child without running the parent's destructors.
            unsafe { libc::_exit(status) }
        }
        pid if pid > 0 => {
            drop(w);
            drop(ew);
            let unpacked = unpack_on_host(into, File::from(r), keep_owner);
            let mut msg = String::new();
            let _ = File::from(er).read_to_string(&mut msg);
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            unpacked?;
            match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                _ => Err(Error::Invalid(msg.trim().to_string())),
            }
        }
        _ => Err(Error::io("fork", std::io::Error::last_os_error())),
    }
}

/// `cp LOCAL CONTAINER:PATH`: owners root's unless `archive`, `follow` for a symlink source;
/// from `Local::Stream` the tar archive comes from `input` and `PATH` must be a directory.
pub fn into_container(
    root: &Path,
    rec: &Record,
    path: &str,
    local: &Local,
    archive: bool,
    follow: bool,
    mut input: impl Read,
) -> Result<()> {
    if rec.settings.read_only {
        return Err(Error::Invalid(
            "container rootfs is marked read-only".into(),
        ));
    }
    with_container_root(root, rec, |croot| {
        let dst_kind = kind_of(&resolve(croot, path)?);
        let src = match local {
            Local::Stream => {
                if dst_kind != Kind::Dir {
                    return Err(Error::Invalid(format!(
                        "destination \"{}:{path}\" must be a directory",
                        rec.name
                    )));
                }
                return unpack_in_container(croot, path, archive, |w| {
                    std::io::copy(&mut input, w)
                        .map(|_| ())
                        .map_err(|e| Error::io("copying into the container", e))
                });
            }
            Local::Path(p) => p,
        };
        let meta = match follow {
            true => std::fs::metadata(src),
            false => std::fs::symlink_metadata(src),
        };
        let src_kind = match meta {
            Ok(m) if m.is_dir() => Kind::Dir,
            Ok(_) => Kind::File,
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "stat {}: {}",
                    src.display(),
                    crate::error::errno_text(&e)
                )))
            }
        };
        let (name, into) = layout(&src.to_string_lossy(), src_kind, path, dst_kind)?;
        let into_s = into.to_string_lossy().into_owned();
        if kind_of(&resolve(croot, &into_s)?) != Kind::Dir {
            return Err(Error::Invalid(format!(
                "Could not find the file {path} in container {}",
                rec.name
            )));
        }
        let src = match follow {
            true => std::fs::canonicalize(src).map_err(|e| Error::io(src.display(), e))?,
            false => src.clone(),
        };
        unpack_in_container(croot, &into_s, archive, |w| pack(&src, &name, w))
    })
}

/// Writes `src` as a tar archive whose top entry is `name` ("" for the directory's contents),
/// symlinks as links, owners and modes as they are.
pub fn pack(src: &Path, name: &Path, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let err = |e: std::io::Error| Error::io(format!("archiving {}", src.display()), e);
    let mut entries = vec![src.to_path_buf()];
    if src.is_dir() {
        collect(src, &mut entries);
    }
    for p in entries {
        let rel = p.strip_prefix(src).unwrap_or(Path::new(""));
        // (`join("")` would add a slash, which tar reads as a directory.)
        let target = match rel.as_os_str().is_empty() {
            true => name.to_path_buf(),
            false => name.join(rel),
        };
        if target.as_os_str().is_empty() {
            continue;
        }
        let meta = p.symlink_metadata().map_err(err)?;
        if meta.file_type().is_socket_like() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if meta.file_type().is_symlink() {
            let to = std::fs::read_link(&p).map_err(err)?;
            b.append_link(&mut h, &target, &to).map_err(err)?;
        } else if meta.is_file() {
            let f = File::open(&p).map_err(err)?;
            b.append_data(&mut h, &target, f).map_err(err)?;
        } else {
            b.append_data(&mut h, &target, std::io::empty())
                .map_err(err)?;
        }
    }
    b.finish().map_err(err)
}

trait SocketLike {
    fn is_socket_like(&self) -> bool;
}

impl SocketLike for std::fs::FileType {
    fn is_socket_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_socket()
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut v: Vec<_> = rd.flatten().collect();
    v.sort_by_key(|e| e.file_name());
    for e in v {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&p, out);
        }
    }
}

/// Unpacks a tar archive into host directory `dir` (trusted: the user's own path); owners
/// are the archive's with `keep_owner` (`cp -a`), else ours.
pub fn unpack_on_host(dir: &Path, input: impl Read, keep_owner: bool) -> Result<()> {
    let mut a = tar::Archive::new(input);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(keep_owner);
    a.set_overwrite(true);
    unpack_whole(a, dir).map_err(|e| Error::io(format!("extracting into {}", dir.display()), e))
}

/// Unpacks `a` into `dest` and reads its input to the end: the archive ends at its first zero
/// block, and a writer still sending the rest (tar's second zero block, a record's padding)
/// would otherwise see EPIPE and fail a copy that worked, now and then, when it is slower.
fn unpack_whole<R: Read>(mut a: tar::Archive<R>, dest: impl AsRef<Path>) -> std::io::Result<()> {
    a.unpack(dest)?;
    std::io::copy(&mut a.into_inner(), &mut std::io::sink())?;
    Ok(())
}

/// Unpacks the tar archive `feed` writes into directory `dest` of the container whose root is
/// `croot`, in a child chrooted there that reads it from a pipe (so nothing is buffered whole);
/// owners are the archive's with `keep_owner` (`cp -a`), else root's.
pub fn unpack_in_container(
    croot: &Path,
    dest: &str,
    keep_owner: bool,
    feed: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::io("pipe", e.into()))?;
    let (er, ew) = nix::unistd::pipe().map_err(|e| Error::io("pipe", e.into()))?;
    let croot_c = std::ffi::CString::new(croot.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Invalid("bad path".into()))?;
    let dest_owned = dest.to_string();
    // SAFETY: the child only chroots, reads the pipe and unpacks, then _exits; this process
    // has one thread here (the CLI's `cp`).
    match unsafe { libc::fork() } {
        0 => {
            drop(w);
            drop(er);
            let mut errf = File::from(ew);
            let code = (|| -> std::result::Result<(), String> {
                // SAFETY: chroot/chdir on a C string we own.
                if unsafe { libc::chroot(croot_c.as_ptr()) } != 0
                    || unsafe { libc::chdir(c"/".as_ptr()) } != 0
                {
                    return Err(std::io::Error::last_os_error().to_string());
                }
                let mut a = tar::Archive::new(File::from(r));
                a.set_preserve_permissions(true);
                a.set_preserve_ownerships(keep_owner);
                a.set_overwrite(true);
                unpack_whole(a, &dest_owned).map_err(|e| e.to_string())
            })();
            let status = match code {
                Ok(()) => 0,
                Err(e) => {
                    let _ = errf.write_all(e.as_bytes());
                    1
                }
            };
            // SAFETY: ending the forked child without running the parent's destructors.
            unsafe { libc::_exit(status) }
        }
        pid if pid > 0 => {
            drop(r);
            drop(ew);
            let mut wf = File::from(w);
            // SAFETY: signal dispositions of this single-threaded process: a child that failed
            // early makes `feed` fail with EPIPE (its message is the error) instead of
            // killing the CLI (which may restore SIGPIPE's default for other commands).
            let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            let fed = feed(&mut wf);
            // SAFETY: as above.
            unsafe { libc::signal(libc::SIGPIPE, old) };
            drop(wf);
            let mut msg = String::new();
            let _ = File::from(er).read_to_string(&mut msg);
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            let ok = matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 0)));
            if !ok {
                return Err(Error::Invalid(format!(
                    "extracting into {dest}: {}",
                    msg.trim()
                )));
            }
            fed
        }
        _ => Err(Error::io("fork", std::io::Error::last_os_error())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_as_docker() {
        let l = |s, sk, d, dk| {
            layout(s, sk, d, dk).map(|(n, i)| (n.display().to_string(), i.display().to_string()))
        };
        assert_eq!(
            l("/etc/hosts", Kind::File, "/tmp", Kind::Dir).unwrap(),
            ("hosts".into(), "/tmp".into())
        );
        assert_eq!(
            l("/etc/hosts", Kind::File, "/tmp/h", Kind::Missing).unwrap(),
            ("h".into(), "/tmp".into())
        );
        assert_eq!(
            l("/etc", Kind::Dir, "/tmp/e", Kind::Missing).unwrap(),
            ("e".into(), "/tmp".into())
        );
        assert_eq!(
            l("/etc", Kind::Dir, "/tmp", Kind::Dir).unwrap(),
            ("etc".into(), "/tmp".into())
        );
        assert_eq!(
            l("/etc/.", Kind::Dir, "/tmp", Kind::Dir).unwrap(),
            ("".into(), "/tmp".into())
        );
        assert_eq!(
            l("/etc", Kind::Dir, "/tmp/f", Kind::File)
                .unwrap_err()
                .to_string(),
            "cannot copy directory"
        );
        assert_eq!(
            l("/etc/hosts", Kind::File, "/nope/", Kind::Missing)
                .unwrap_err()
                .to_string(),
            "no such directory"
        );
    }
}
