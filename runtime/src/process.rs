//! What rbox needs of processes it did not necessarily start: pidfds, start times that tell a
//! process from a later one with the same pid, the exit status of a process that is not our
//! child, and the monitor's own name and OOM score.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::wait::WaitStatus;

// The small mode (rbox-shim) needs them too.
pub use shim::sys::{pidfd_open, send_signal};

/// The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses),
/// so that `fields[0]` is field 3 (state).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `pid` is the process that started at `start_time` and has not exited (a zombie has).
pub fn is_running(pid: i32, start_time: u64) -> bool {
    let Some(f) = stat_fields(pid) else {
        return false;
    };
    f.first().map(String::as_str) != Some("Z")
        && f.get(19).and_then(|t| t.parse().ok()) == Some(start_time)
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The kernel's id of this boot: a pid and start time recorded before a reboot mean nothing.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Docker's exit code for a wait status: the code, or 128 + the signal that killed it.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => 255,
    }
}

/// The same for a raw status word as waitpid(2) reports it.
fn raw_exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// `struct pidfd_info` of linux/pidfd.h as of 6.15 (its first published size).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

/// The exit code of a process that exited but is not our child (an adopted container's init,
/// reparented to the host's init when its monitor died), once `pidfd` has polled readable.
/// The kernel keeps it for pidfds from 6.15 on, but only once the process is reaped; until
/// then a zombie's /proc/PID/stat shows it (field 52). `None` when neither can tell (older
/// kernels, once reaped).
pub fn exit_code_of(pidfd: BorrowedFd, pid: i32, start_time: u64) -> Option<i32> {
    let from_pidfd = || {
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..Default::default()
        };
        // SAFETY: PIDFD_GET_INFO fills at most the 64 bytes its number encodes.
        let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
        (r == 0 && info.mask & PIDFD_INFO_EXIT != 0).then(|| raw_exit_code(info.exit_code))
    };
    if let Some(c) = from_pidfd() {
        return Some(c);
    }
    // Not reaped yet (or an older kernel): the zombie, if it still is ours.
    if let Some(f) = stat_fields(pid) {
        if f.first().map(String::as_str) == Some("Z")
            && f.get(19).and_then(|t| t.parse().ok()) == Some(start_time)
        {
            if let Some(status) = f.get(49).and_then(|c| c.parse::<i32>().ok()) {
                return Some(raw_exit_code(status));
            }
        }
    }
    // Reaped in between.
    from_pidfd()
}

/// Sets this process's OOM score adjustment (-1000..1000). Children inherit it, and only a
/// process with CAP_SYS_RESOURCE may lower it again, so the container's init gets its 0
/// while the monitor still has that capability (see `monitor::attempt`).
pub fn set_oom_score_adj(v: i32) {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", v.to_string()) {
        tracing::debug!("oom_score_adj {v}: {e}");
    }
}

/// The name `ps`, `top` and /proc/PID/comm show for this process (at most 15 bytes).
pub fn set_name(name: &str) {
    let Ok(c) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_and_exit_code_of_a_process() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(raw_exit_code(3 << 8), 3);
        assert_eq!(raw_exit_code(libc::SIGKILL), 137);
        // Our own child, exited: the zombie (or pidfd info) tells its code.
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let t = start_time(pid).unwrap();
        let fd = pidfd_open(pid).unwrap();
        let mut p = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE).unwrap();
        assert_eq!(exit_code_of(std::os::fd::AsFd::as_fd(&fd), pid, t), Some(7));
        let mut child = child;
        assert_eq!(child.wait().unwrap().code(), Some(7));
        assert_eq!(boot_id().len(), 36);
    }
}
