//! Starting, reloading and stopping the resolver from rbox commands, and the resolver process's
//! own start-up (daemonising, binding, readiness).
//!
//! Every change goes through [`sync`] under `<root>/locks/dns.lock`: it asks a live resolver to
//! reload (or stop, when nothing is left to serve) over `<root>/dns/resolver.sock` and waits for
//! its "ok", so the records are current when the command returns; with no live resolver and
//! something to serve it starts one and waits until it listens. A resolver killed with -9 leaves
//! a socket nobody accepts on, which reads as "not running": the next change starts a new one.
//!
//! Commands that change nothing call [`ensure`] instead: the resolver holds a lock on its pid
//! file for its whole life, so "is it alive" is one open and a lock probe (no fork, no request,
//! immune to pid reuse), and only a dead one leads to a `sync`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::listen::Home;
use super::{config, server, table::Table};
use crate::error::{io, Result};
use crate::helper::{self, Outcome};

pub fn dir(root: &Path) -> PathBuf {
    root.join("dns")
}

/// Where the live resolver's pid is (for `kill`, tests and benchmarks).
pub fn pid_file(root: &Path) -> PathBuf {
    dir(root).join("resolver.pid")
}

fn sock_path(root: &Path) -> PathBuf {
    dir(root).join("resolver.sock")
}

/// The pid recorded by the resolver, if its file exists.
pub fn pid(root: &Path) -> Option<i32> {
    helper::pid(&pid_file(root))
}

const WHAT: &str = "DNS resolver";

/// Sends `cmd` to the resolver and waits for its answer.
fn request(root: &Path, cmd: &str) -> Result<Outcome> {
    helper::request(&sock_path(root), cmd, Duration::from_secs(5), WHAT)
}

/// Brings the resolver in line with the state: reloaded when there are names to serve, started
/// if it is not running, stopped when nothing is left. Returns once it answers from the new
/// state. Leaves no thread behind (plain blocking sockets and a child that daemonises).
pub fn sync(root: &Path) -> Result<()> {
    let wanted = Table::wanted(root)?;
    let _lock = statefile::Lock::exclusive(&root.join("locks/dns.lock"))?;
    match request(root, if wanted { "reload" } else { "stop" })? {
        Outcome::Done => Ok(()),
        Outcome::NotRunning if wanted => spawn(root),
        Outcome::NotRunning => {
            // A resolver killed with nothing left to serve: forget it, so `ensure` stops asking.
            let _ = std::fs::remove_file(pid_file(root));
            Ok(())
        }
    }
}

/// `sync` after `container_id` joined the served network `network_id`: the resolver adds that
/// one endpoint instead of reading every endpoint again (O(1) per join, not O(containers)).
pub fn joined(root: &Path, network_id: &str, container_id: &str) -> Result<()> {
    let _lock = statefile::Lock::exclusive(&root.join("locks/dns.lock"))?;
    let outcome = match request(root, &format!("joined {network_id} {container_id}")) {
        // A resolver an older rbox started (still running after an upgrade) knows "reload".
        Err(crate::Error::Invalid(e)) if e.contains("unknown request") => request(root, "reload")?,
        r => r?,
    };
    match outcome {
        Outcome::Done => Ok(()),
        Outcome::NotRunning => spawn(root),
    }
}

/// Restarts the resolver of `root` if it died (kill -9) while names are served; cheap when it
/// is alive or was never needed: no fork, no request (see the module docs).
pub fn ensure(root: &Path) -> Result<()> {
    let Ok(f) = std::fs::File::open(pid_file(root)) else {
        return Ok(());
    };
    // SAFETY: flock on a descriptor we own; it is released when `f` is closed.
    let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    drop(f);
    if !free {
        return Ok(());
    }
    sync(root)
}

/// Stops the resolver of `root` if one runs (for teardown).
pub fn stop(root: &Path) -> Result<()> {
    let _lock = statefile::Lock::exclusive(&root.join("locks/dns.lock"))?;
    request(root, "stop").map(|_| ())
}

/// Starts `rbox --root R dns serve`, which forks the resolver and exits once it listens (or
/// prints why it could not).
fn spawn(root: &Path) -> Result<()> {
    helper::spawn(root, &["dns", "serve"], &[], WHAT)
}

/// Body of the hidden `dns serve` command: the child binds, writes its pid, reports ready and
/// serves; this parent exits 0 once it is ready, else prints the error and exits 125.
pub fn serve_main(root: &Path) -> i32 {
    helper::daemonize(
        || prepare(root),
        |(server, _alive)| match server::run(server, &pid_file(root), &sock_path(root)) {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!("resolver: {e}");
                1
            }
        },
    )
}

/// Writes the pid file holding a lock on it, which the returned file keeps for the process's
/// life: `ensure` tells a live resolver by the lock.
fn write_pid(root: &Path) -> Result<std::fs::File> {
    let path = pid_file(root);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io("writing the resolver pid"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("locking the resolver pid file")(
            std::io::Error::last_os_error(),
        ));
    }
    std::fs::rename(&tmp, &path).map_err(io(format!("creating {}", path.display())))?;
    Ok(f)
}

/// Everything that can fail before the resolver reports ready: the table, the sockets in every
/// sandbox, the control socket, the pid file (and its lock, held by the returned file), and
/// stderr moved to `<root>/dns/resolver.log`.
fn prepare(root: &Path) -> Result<(server::Server, std::fs::File)> {
    let _ = std::env::set_current_dir("/");
    let d = dir(root);
    std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
    let home = Home::here().map_err(io("opening the resolver's network namespace"))?;
    let table = Table::load(root, config::host_upstreams())?;
    let bound = server::bind_all(root, &table, &home).map_err(io("starting the DNS resolver"))?;
    let sock = sock_path(root);
    let _ = std::fs::remove_file(&sock);
    let control = UnixListener::bind(&sock).map_err(io(format!("binding {}", sock.display())))?;
    let alive = write_pid(root)?;
    let log =
        std::fs::File::create(d.join("resolver.log")).map_err(io("creating the resolver log"))?;
    // SAFETY: dup2 onto stderr; the pipe to whoever started us closes with it.
    unsafe { libc::dup2(log.as_raw_fd(), 2) };
    Ok((
        server::Server {
            root: root.to_path_buf(),
            table,
            bound,
            control,
            home,
        },
        alive,
    ))
}
