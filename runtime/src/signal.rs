//! Signals: Docker's names for them (`--stop-signal`, `kill -s`, STOPSIGNAL) and the signal
//! state a container's process starts with.

use crate::error::{Error, Result};

/// The signal `stop` sends when the container names none (Docker's default).
pub const DEFAULT_STOP: i32 = libc::SIGTERM;

/// Docker's `signal.ParseSignal`: a number, or a name with or without `SIG` in any case
/// ("TERM", "sigquit", "RTMIN+3").
pub fn parse(s: &str) -> Result<i32> {
    let bad = || Error::Invalid(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if n > 0 && n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        return realtime(rt, libc::SIGRTMIN(), 1).ok_or_else(bad);
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        return realtime(rt, libc::SIGRTMAX(), -1).ok_or_else(bad);
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

/// `RTMIN`, `RTMIN+N`, `RTMAX-N`.
fn realtime(offset: &str, base: i32, dir: i32) -> Option<i32> {
    let n = match offset {
        "" => 0,
        o => {
            let digits = o.strip_prefix(if dir > 0 { '+' } else { '-' })?;
            digits.parse::<i32>().ok()?
        }
    };
    let sig = base + dir * n;
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&sig)
        .then_some(sig)
}

/// The signal a container stops with: its own (`--stop-signal`, image STOPSIGNAL) or SIGTERM.
pub fn stop_signal(configured: &str) -> i32 {
    if configured.is_empty() {
        return DEFAULT_STOP;
    }
    parse(configured).unwrap_or(DEFAULT_STOP)
}

/// Gives the calling process Docker's signal state for a container's process: every signal
/// at its default action and none blocked. Why: rbox's own process ignores SIGPIPE (Rust's
/// runtime does) and its monitor blocks the signals it forwards, and libcontainer's init is
/// a clone of it: ignored and blocked signals survive execve, so `yes | head` spun for minutes
/// on a SIGPIPE it could not receive. Runs in the container's init right before execve.
pub(crate) fn reset_to_default() {
    /// The kernel's `struct sigaction` (rt_sigaction), which glibc's wrapper would refuse for
    /// the two signals it keeps for itself (32 and 33; an ignored one survives execve too).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid action for this process, about to execve; the
        // kernel ignores what it cannot set.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_docker() {
        assert_eq!(parse("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse("sigquit").unwrap(), libc::SIGQUIT);
        assert_eq!(parse("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse("SIGRTMAX-2").unwrap(), libc::SIGRTMAX() - 2);
        for bad in ["FOO", "0", "-1", "1000", "", "RTMIN+100", "RTMIN-1"] {
            assert_eq!(
                parse(bad).unwrap_err().to_string(),
                format!("Invalid signal: {bad}")
            );
        }
        assert_eq!(stop_signal(""), libc::SIGTERM);
        assert_eq!(stop_signal("SIGUSR1"), libc::SIGUSR1);
    }
}
