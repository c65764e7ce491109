//! A profile compiled to BPF once per root and loaded with seccomp(2) right before execve.
//!
//! libseccomp needs ~8 ms here to turn Docker's profile (350 names, three x86 ABIs) into BPF;
//! doing that in every container's init would add as much to every start. The BPF depends only
//! on the resolved profile, the libseccomp version and the architecture, so it is cached under
//! `<root>/seccomp/` by a hash of those and a start only reads a few KB.
//!
//! The rule translation follows libcontainer's `seccomp::initialize_seccomp` (names libseccomp
//! does not know are skipped, rules equal to the default action dropped, several conditions on
//! one argument split into separate rules as runc does).

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A compiled filter and the seccomp(2) flags to load it with.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("seccomp: {what}: {e}"))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    }
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Refuses what the BPF path cannot do (a notify listener needs a supervisor rbox lacks).
pub fn check(p: &LinuxSeccomp) -> Result<()> {
    let notify = p.default_action() == LinuxSeccompAction::ScmpActNotify
        || p.syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify);
    if notify {
        return Err(Error::Invalid(
            "invalid seccomp profile: SCMP_ACT_NOTIFY is not supported".into(),
        ));
    }
    Ok(())
}

fn context(p: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(p.default_action(), p.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("new filter", e))?;
    for arch in p.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).unwrap_or_default();
        let a: ScmpArch = name
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| err("architecture", e))?;
        ctx.add_arch(a).map_err(|e| err("adding architecture", e))?;
    }
    for rule in p.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let oci_args = rule.args().as_deref().unwrap_or_default();
        let mut seen = HashSet::new();
        let split = !oci_args.iter().all(|a| seen.insert(a.index()));
        let args: Vec<ScmpArgCompare> = oci_args
            .iter()
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
            .collect();
        for name in rule.names() {
            // Not known to this libseccomp (a newer syscall): nothing to filter.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if split {
                args.iter().try_for_each(|a| {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(a))
                        .map(|_| ())
                })
            } else {
                ctx.add_rule_conditional(act, sc, &args).map(|_| ())
            };
            added.map_err(|e| err(&format!("rule for {name}"), e))?;
        }
    }
    Ok(ctx)
}

fn flags(p: &LinuxSeccomp) -> libc::c_ulong {
    p.flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        })
        .fold(0, |a, b| a | b)
}

/// The BPF of `p` as libseccomp exports it (native-endian `sock_filter`s).
fn compile(p: &LinuxSeccomp) -> Result<Vec<u8>> {
    let ctx = context(p)?;
    // A filter is at most BPF_MAXINSNS (4096) * 8 bytes = 32 KiB: it fits a pipe's buffer.
    let (r, w) = nix::unistd::pipe().map_err(|e| err("pipe", e))?;
    ctx.export_bpf(&w).map_err(|e| err("exporting BPF", e))?;
    drop(w);
    let mut bpf = Vec::new();
    std::fs::File::from(r)
        .read_to_end(&mut bpf)
        .map_err(|e| err("reading BPF", e))?;
    Ok(bpf)
}

fn program(bpf: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) || bpf.len() / 8 > 4096 {
        return None;
    }
    Some(
        bpf.chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// The compiled `p`, from `cache` if an earlier start stored it, else compiled and stored
/// there (atomically; a cache that cannot be written only costs the next start a compile).
pub fn compiled(cache: &Path, p: &LinuxSeccomp) -> Result<Filter> {
    let v = libseccomp::ScmpVersion::current().map_err(|e| err("version", e))?;
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(p).unwrap_or_default());
    h.update(format!(
        "{}.{}.{} {}",
        v.major,
        v.minor,
        v.micro,
        std::env::consts::ARCH
    ));
    let file = cache.join(format!("{}.bpf", hex::encode(h.finalize())));
    let flags = flags(p);
    if let Some(program) = std::fs::read(&file).ok().and_then(|b| program(&b)) {
        return Ok(Filter { program, flags });
    }
    let bpf = compile(p)?;
    let program = program(&bpf).ok_or_else(|| err("compiling", "empty or oversized filter"))?;
    let tmp = cache.join(format!(".{}.tmp", std::process::id()));
    let stored = std::fs::create_dir_all(cache)
        .and_then(|_| std::fs::write(&tmp, &bpf))
        .and_then(|_| std::fs::rename(&tmp, &file));
    if let Err(e) = stored {
        tracing::debug!("caching seccomp filter in {}: {e}", cache.display());
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(Filter { program, flags })
}

impl Filter {
    /// Installs the filter on the calling thread; needs no_new_privs (or CAP_SYS_ADMIN).
    pub fn load(&self) -> std::io::Result<()> {
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `self.program`, which outlives the call; the kernel copies it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_and_caches() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        }));
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("seccomp");
        let f = compiled(&cache, &p).unwrap();
        assert!(f.program.len() > 10 && f.program.len() <= 4096);
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let stored = std::fs::read(files[0].path()).unwrap();
        assert_eq!(stored.len(), f.program.len() * 8);
        // A damaged entry is compiled again and replaced.
        std::fs::write(files[0].path(), b"garbage").unwrap();
        let again = compiled(&cache, &p).unwrap();
        assert_eq!(again.program.len(), f.program.len());
        assert_eq!(std::fs::read(files[0].path()).unwrap(), stored);
    }

    #[test]
    fn rejects_bad_programs_and_notify() {
        assert!(program(&[]).is_none());
        assert!(program(&[0; 7]).is_none());
        assert!(program(&vec![0; 8 * 4097]).is_none());
        assert_eq!(program(&[0; 16]).unwrap().len(), 2);
        let notify = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(check(&notify).is_err());
        let flags = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
        }));
        assert_eq!(super::flags(&flags), 6);
    }
}
