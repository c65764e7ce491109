//! Fault injection for the integration tests: in debug builds, `RBOX_FAULT=<point>` in the
//! environment kills the process at that point as a kill -9 would, so the tests can prove
//! what the next command repairs. Release builds compile it to nothing.

/// Dies here if `RBOX_FAULT` names this point (debug builds only).
pub(crate) fn point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("RBOX_FAULT").is_ok_and(|v| v == name) {
        tracing::debug!("fault injected at {name}");
        // SAFETY: kills this process, as the test asked.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
