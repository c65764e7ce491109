//! `stop`, `kill`, `restart`, `wait`: requests to the container's monitor over its control
//! socket. The monitor signals its own child (never a recycled pid), owns the stop timeout, and
//! is reachable while it waits to restart the container, so these commands work in every
//! state; callers then wait for the monitor's exit on its lock, not by polling.

use std::path::Path;
use std::time::Duration;

use super::repair::find;
use super::start::start;
use crate::error::{Error, Result};
use crate::monitor::control::{self, Reply, Request};
use crate::record::Record;
use crate::store::{self, Paths};

/// Docker's default stop timeout, in seconds.
const DEFAULT_TIMEOUT: i64 = 10;

/// `stop`/`restart` options; `None` takes the container's own (`--stop-signal`,
/// `--stop-timeout`, the image's STOPSIGNAL), else Docker's defaults (SIGTERM, 10 s).
#[derive(Debug, Clone, Copy, Default)]
pub struct StopOptions {
    pub signal: Option<i32>,
    /// Seconds; negative waits for ever.
    pub timeout: Option<i64>,
}

impl StopOptions {
    pub(crate) fn resolve(&self, rec: &Record) -> (i32, Option<Duration>) {
        let signal = self
            .signal
            .unwrap_or_else(|| crate::signal::stop_signal(&rec.settings.stop_signal));
        let secs = self
            .timeout
            .or(rec.settings.stop_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        (
            signal,
            (secs >= 0).then(|| Duration::from_secs(secs as u64)),
        )
    }
}

/// Asks the monitor of `rec`; `None` when none answered (it died: the next lookup repairs).
fn ask(root: &Path, rec: &Record, req: Request) -> Result<Option<Reply>> {
    control::request(&Paths::new(root, &rec.id), rec.state.monitor_pid, req)
}

fn refused(m: String) -> Error {
    Error::Invalid(m)
}

/// How many times a request is sent again after its monitor died: the next lookup adopts
/// the container under a new monitor, which answers.
const RETRIES: usize = 3;

/// The stop signal, SIGKILL after the timeout; returns when the monitor recorded the exit.
/// A container waiting to restart just stays down.
pub fn stop(root: &Path, key: &str, opts: StopOptions) -> Result<Record> {
    stop_with(root, key, opts, |signal, timeout| Request::Stop {
        signal,
        timeout,
    })
}

/// `stop` because the host goes down (`system shutdown`): the container's restart policy
/// still counts at the next boot, as when dockerd stops its containers on shutdown.
pub(crate) fn stop_for_shutdown(root: &Path, key: &str, opts: StopOptions) -> Result<Record> {
    stop_with(root, key, opts, |signal, timeout| Request::Shutdown {
        signal,
        timeout,
    })
}

fn stop_with(
    root: &Path,
    key: &str,
    opts: StopOptions,
    request: impl Fn(i32, Option<Duration>) -> Request,
) -> Result<Record> {
    for _ in 0..RETRIES {
        let rec = find(root, key)?;
        if !rec.active() {
            return Ok(rec);
        }
        let (signal, timeout) = opts.resolve(&rec);
        match ask(root, &rec, request(signal, timeout))? {
            Some(Reply::Err(m)) => return Err(refused(m)),
            Some(Reply::Ok(_) | Reply::Status(_)) => {
                store::wait_monitor(&Paths::new(root, &rec.id));
                crate::events::container(root, &rec, "stop", &[]);
                // Gone when --rm removed it.
                return Ok(find(root, &rec.id).unwrap_or(rec));
            }
            None => {
                store::wait_monitor(&Paths::new(root, &rec.id));
            }
        }
    }
    find(root, key)
}

/// Sends `sig` to the container's process; no restart follows (Docker's kill). SIGKILL
/// returns once the monitor recorded the exit.
pub fn kill(root: &Path, key: &str, sig: i32) -> Result<Record> {
    for _ in 0..RETRIES {
        let rec = find(root, key)?;
        if !rec.active() {
            return Err(Error::Invalid(format!(
                "Cannot kill container: {key}: Container {} is not running",
                rec.id
            )));
        }
        match ask(root, &rec, Request::Kill { signal: sig })? {
            Some(Reply::Err(m)) => return Err(refused(m)),
            Some(Reply::Ok(_) | Reply::Status(_)) => {
                crate::events::container(root, &rec, "kill", &[("signal", sig.to_string())]);
                if sig == libc::SIGKILL {
                    store::wait_monitor(&Paths::new(root, &rec.id));
                }
                return Ok(rec);
            }
            None => {
                store::wait_monitor(&Paths::new(root, &rec.id));
            }
        }
    }
    find(root, key)
}

/// `rm -f`: SIGKILL through the monitor (which cancels any restart), then its exit.
pub(super) fn kill_and_wait(paths: &Paths, rec: &Record) {
    let _ = control::request(
        paths,
        rec.state.monitor_pid,
        Request::Kill {
            signal: libc::SIGKILL,
        },
    );
    store::wait_monitor(paths);
}

/// Stops the container's process and starts it again. A running (or restarting) container
/// keeps its monitor and with it its sandbox, IP addresses, networks and host ports, and an
/// --rm container is not removed in between; a stopped one is just started.
pub fn restart(root: &Path, key: &str, opts: StopOptions) -> Result<Record> {
    let rec = find(root, key)?;
    if !rec.active() {
        return start(root, &rec.id);
    }
    let (signal, timeout) = opts.resolve(&rec);
    match ask(root, &rec, Request::Restart { signal, timeout })? {
        Some(Reply::Ok(_) | Reply::Status(_)) => {
            crate::events::container(root, &rec, "restart", &[]);
            find(root, &rec.id)
        }
        Some(Reply::Err(m)) => Err(refused(m)),
        // Its monitor died meanwhile: stop what got adopted, then start.
        None => {
            stop(root, &rec.id, opts)?;
            start(root, &rec.id)
        }
    }
}

/// Blocks until the container's current run ends; returns its exit code. Under a restart
/// policy that is the end of this run (the container may run again, as with Docker).
pub fn wait(root: &Path, key: &str) -> Result<i32> {
    let rec = find(root, key)?;
    let paths = Paths::new(root, &rec.id);
    if rec.active() && !rec.settings.restart_policy.is_none() {
        if let Some(Reply::Ok(Some(code))) = ask(root, &rec, Request::Wait)? {
            return Ok(code);
        }
    }
    // Without a restart policy the run's end is the monitor's: its lock says when, also once
    // --rm removed the container (the monitor left the code in the lock file).
    let left = store::wait_monitor(&paths);
    match store::load(&paths) {
        Ok(r) => Ok(super::repair(root, r)
            .map(|r| r.state.exit_code)
            .or(left)
            .unwrap_or(rec.state.exit_code)),
        Err(_) => Ok(left.unwrap_or(rec.state.exit_code)),
    }
}
