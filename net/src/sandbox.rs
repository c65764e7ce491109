//! `Sandbox`: a container's network namespace, bind-mounted at `<root>/netns/<id>` so it can be
//! wired before the container starts and outlives the container's processes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rtnetlink::LinkUnspec;

use crate::error::{io, nl, Error, Result};
use crate::netlink;

/// Index of `lo` in every new network namespace.
const LOOPBACK_INDEX: u32 = 1;

#[derive(Debug, Clone)]
pub struct Sandbox {
    pub container_id: String,
    pub path: PathBuf,
}

pub fn netns_path(root: &Path, container_id: &str) -> PathBuf {
    root.join("netns").join(container_id)
}

/// The containers that have a sandbox file: one listing instead of a lookup per container.
pub(crate) fn ids(root: &Path) -> std::collections::HashSet<String> {
    std::fs::read_dir(root.join("netns"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Sandbox {
    /// Creates a new network namespace with `lo` up and pins it at `<root>/netns/<id>`.
    pub fn create(root: &Path, container_id: &str) -> Result<Sandbox> {
        let path = netns_path(root, container_id);
        let dir = root.join("netns");
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(format!("creating sandbox for {container_id}")))?;
        // unshare(CLONE_NEWNET) only changes the calling thread, so a throw-away thread makes
        // the namespace and the process's own namespace is never touched.
        let result = std::thread::scope(|s| {
            s.spawn(|| make_netns(&path))
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("sandbox thread panicked".into())))
        });
        if let Err(e) = result {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Sandbox {
            container_id: container_id.to_string(),
            path,
        })
    }

    /// The sandbox of `container_id` if its namespace file exists.
    pub fn open(root: &Path, container_id: &str) -> Option<Sandbox> {
        let path = netns_path(root, container_id);
        path.exists().then(|| Sandbox {
            container_id: container_id.to_string(),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> Result<File> {
        File::open(&self.path).map_err(io(format!("opening sandbox of {}", self.container_id)))
    }
}

fn make_netns(path: &Path) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| io("creating network namespace")(e.into()))?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        io(format!(
            "bind-mounting network namespace at {}",
            path.display()
        ))(e.into())
    })?;
    netlink::block_on(async {
        let handle = netlink::host_handle()?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build())
            .execute()
            .await
            .map_err(nl("setting lo up in sandbox"))
    })?
}

/// Unpins the namespace of `container_id`; the kernel then frees it, and with it the sandbox
/// ends of every veth, which also removes their host ends. Succeeds when already gone.
pub(crate) fn remove(root: &Path, container_id: &str) -> Result<()> {
    let path = netns_path(root, container_id);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(io(format!("unmounting sandbox of {container_id}"))(
                e.into(),
            ))
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing sandbox of {container_id}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn threads() -> usize {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Set in the copy of this test binary that `create_leaves_no_thread_behind` runs.
    const ALONE: &str = "RBOX_SANDBOX_TEST_ALONE";

    /// libcontainer forks with raw clone3, so `create` must leave no thread. Counted in a copy
    /// of this binary that runs only this test: beside other tests the count moves.
    #[test]
    fn create_leaves_no_thread_behind() {
        if std::env::var_os(ALONE).is_none() {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sandbox::tests::create_leaves_no_thread_behind",
                    "--test-threads=1",
                ])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let before = threads();
        let sb = Sandbox::create(root.path(), "t1");
        let after = threads();
        let _ = remove(root.path(), "t1");
        sb.unwrap();
        assert_eq!(after, before, "Sandbox::create left a thread behind");
    }

    #[test]
    fn create_pins_netns_with_lo_up_and_release_is_idempotent() {
        let root = tempfile::tempdir().unwrap();
        // Unpins both namespaces also when an assertion fails (before the tempdir goes).
        struct Release<'a>(&'a Path);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let _ = remove(self.0, "c1");
                let _ = remove(self.0, "c2");
            }
        }
        let _release = Release(root.path());
        let sb = Sandbox::create(root.path(), "c1").unwrap();
        let sb2 = Sandbox::create(root.path(), "c2").unwrap();
        let out = Command::new("nsenter")
            .arg(format!("--net={}", sb.path().display()))
            .args(["ip", "-o", "link", "show", "lo"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("LOWER_UP"), "lo not up in sandbox: {text}");
        let own = fs::read_link("/proc/thread-self/ns/net").unwrap();
        let out = Command::new("nsenter")
            .arg(format!("--net={}", sb.path().display()))
            .args(["readlink", "/proc/self/ns/net"])
            .output()
            .unwrap();
        assert_ne!(
            String::from_utf8_lossy(&out.stdout).trim(),
            own.to_string_lossy()
        );
        assert!(
            Sandbox::create(root.path(), "c1").is_err(),
            "a second sandbox for c1 must fail"
        );
        remove(root.path(), "c1").unwrap();
        remove(root.path(), "c1").unwrap();
        remove(root.path(), "c2").unwrap();
        drop(sb2);
        assert!(!netns_path(root.path(), "c1").exists());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&root.path().to_string_lossy().to_string()));
    }
}
