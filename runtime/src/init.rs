//! `--init`: a tiny reaper as the container's PID 1, built into rbox itself (no binary to
//! install or bind-mount, and none that must run on the image's libc).
//!
//! libcontainer's init process is a clone of the monitor running rbox's code until execve.
//! With `--init` it forks right there (`executor::Workload`): the child execs the workload,
//! the parent stays PID 1 and does what tini does — reaps every process orphaned in the
//! namespace, forwards every signal it gets to the workload (PID 1 ignores signals it has no
//! handler for, so `stop` would otherwise wait for SIGKILL), and exits with the workload's
//! code (128 + signal when it was killed), which ends the namespace.

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Forks; returns in the child (which goes on to exec the workload). The parent never
/// returns: it reaps until the workload ends, then exits with its code.
pub(crate) fn fork_reaper(spec: &oci_spec::runtime::Spec) -> nix::Result<()> {
    // Blocked before the fork, so no signal meant for the workload is lost in between; the
    // child's mask is reset before execve (signal::reset_to_default).
    let all = SigSet::all();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None)?;
    // SAFETY: this process is single-threaded (libcontainer's init), so the child may run
    // any code; the parent only makes system calls from here on.
    match unsafe { fork() }? {
        ForkResult::Child => Ok(()),
        ForkResult::Parent { child } => {
            let argv0 = spec
                .process()
                .as_ref()
                .and_then(|p| p.args().as_ref())
                .and_then(|a| a.first().cloned())
                .unwrap_or_default();
            reap(child, &all, &argv0)
        }
    }
}

fn reap(child: Pid, all: &SigSet, argv0: &str) -> ! {
    // Nothing of the monitor's: its log, sockets and pipes are not the init's to hold.
    // SAFETY: closes descriptors this process owns; nothing here uses them again.
    unsafe { libc::close_range(3, u32::MAX, 0) };
    crate::process::set_name("rbox-init");
    set_title(&format!("rbox-init -- {argv0}"));
    loop {
        let Ok(sig) = all.wait() else {
            continue;
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(child) => {
                    // SAFETY: exits this process; nothing is left to flush.
                    unsafe { libc::_exit(crate::process::exit_code(status)) }
                }
                Ok(_) => {}
            }
        }
    }
}

/// Rewrites this process's command line (what `ps` inside the container shows for PID 1) in
/// the memory that holds it: the monitor's own, with its --root, would be shown otherwise.
fn set_title(title: &str) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return;
    };
    // Fields 48 and 49: arg_start and arg_end (counted from field 3 here).
    let f: Vec<usize> = rest
        .split_whitespace()
        .skip(45)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let [start, end] = f[..] else {
        return;
    };
    if end <= start {
        return;
    }
    let len = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: [arg_start, arg_end) is this process's own argument area, mapped writable on
    // its stack; nothing in this process reads its arguments any more.
    unsafe {
        let p = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n);
        std::ptr::write_bytes(p.add(n), 0, len - n);
    }
}
