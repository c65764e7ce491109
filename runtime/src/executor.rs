//! The last step of a container process before execve, run inside the container by
//! libcontainer's init (and by an `exec`'d process): load the seccomp filter, become the
//! `--init` reaper if asked, and give the workload Docker's signal state.
//!
//! The filter is not put in the OCI spec: libcontainer would compile it with libseccomp on
//! every start, and its tenant (exec) path does not apply the spec's filter at all. It is
//! loaded here, where no_new_privs is set and no privilege is needed.

use std::path::Path;

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use crate::error::Result;
use crate::seccomp::filter::Filter;

#[derive(Clone)]
pub struct Workload {
    filter: Option<Filter>,
    /// `--init`: this process stays PID 1 as the reaper and a child runs the workload.
    init: bool,
    /// Killed when the process that started it dies (a healthcheck probe: the monitor kills
    /// the probe's helper at the probe's timeout).
    die_with_parent: bool,
}

/// The workload hook for a container of `root` with these `--security-opt`s and
/// capabilities (Docker's profile allows some system calls only with some capabilities).
pub fn for_container(
    root: &Path,
    security_opt: &[String],
    caps: &[String],
    init: bool,
) -> Result<Workload> {
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    Ok(Workload {
        filter: crate::seccomp::filter_for(root, security_opt, &caps)?,
        init,
        die_with_parent: false,
    })
}

impl Workload {
    pub fn dying_with_parent(mut self, yes: bool) -> Workload {
        self.die_with_parent = yes;
        self
    }
}

impl Executor for Workload {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> std::result::Result<(), ExecutorError> {
        if let Some(f) = &self.filter {
            f.load()
                .map_err(|e| ExecutorError::Other(format!("loading seccomp filter: {e}")))?;
        }
        if self.init {
            // Returns in the child only; confined by the filter like the workload.
            crate::init::fork_reaper(spec)
                .map_err(|e| ExecutorError::Other(format!("starting the init: {e}")))?;
        }
        crate::signal::reset_to_default();
        if self.die_with_parent {
            // After the credentials changed, which would have cleared it.
            // SAFETY: prctl on this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        }
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> std::result::Result<(), ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}
