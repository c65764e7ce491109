//! The default seccomp profile: allow by default and deny (EPERM) the syscalls Docker's
//! default profile keeps from containers that do not add capabilities. This is a deny-list
//! subset of Docker's allow-list profile, not a copy of it.

use serde_json::{json, Value};

const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "_sysctl",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

pub fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            { "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
        ]
    })
}

/// Runs an `exec`'d process under the default profile. libcontainer's tenant (exec) path
/// copies only namespaces and cgroup from the container's spec, not its seccomp filter, so
/// the filter is loaded here, in the new process right before execve (no_new_privs is
/// already set by then, so no privilege is needed).
#[derive(Clone)]
pub struct SeccompExecutor;

impl libcontainer::workload::Executor for SeccompExecutor {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        use libcontainer::workload::ExecutorError;
        let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(default_profile())
            .map_err(|e| ExecutorError::Other(e.to_string()))?;
        libcontainer::seccomp::initialize_seccomp(&profile)
            .map_err(|e| ExecutorError::Other(format!("seccomp: {e}")))?;
        libcontainer::workload::default::DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }
}
