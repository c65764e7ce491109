//! Seccomp: Docker's default profile, `--security-opt seccomp=unconfined|PROFILE.json`.
//!
//! The default is Docker's own `default.json`, embedded unchanged from moby/profiles
//! (`seccomp/default.json` at commit 02e898b137aed1024e232d59bcb05e6179b72177, Apache-2.0,
//! Copyright Docker, Inc.; see `runtime/data/NOTICE`): no io_uring, and `socket` only for an
//! allow-list of address families (no AF_ALG, AF_VSOCK, ...). Profiles in Docker's format
//! are resolved the way dockerd does before handing them to the OCI runtime: `archMap` picks the
//! native architecture and its sub-architectures, `includes`/`excludes` keep or drop a rule by
//! architecture, kernel version and the container's bounding capabilities. What comes out is an
//! OCI `linux.seccomp`; `filter` compiles it to BPF (cached per root) and `executor::Workload`
//! loads that right before execve, in the init and in `exec`'d processes. Names libseccomp does
//! not know are skipped, as libcontainer does, so a newer profile never fails a container.

pub(crate) mod filter;

use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

const DOCKER_DEFAULT: &str = include_str!("../data/docker-seccomp-default.json");

/// A seccomp profile in Docker's format (a superset of the OCI one).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: Value,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<Value>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: Value,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// The machine a profile is resolved for: Go's GOARCH name (what `includes.arches` lists),
/// libseccomp's name for it (what `archMap` is keyed by) and the kernel's major.minor.
#[derive(Debug, Clone, Copy)]
struct Host {
    goarch: &'static str,
    scmp_arch: &'static str,
    kernel: (u32, u32),
}

impl Host {
    fn current() -> Host {
        let (goarch, scmp_arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "x86" => ("386", "SCMP_ARCH_X86"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
            other => (other, ""),
        };
        Host {
            goarch,
            scmp_arch,
            kernel: kernel_version(),
        }
    }
}

/// major.minor of the running kernel; (0, 0) if unknown, so that `minKernel` rules stay out.
fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Docker's rule selection (moby `profiles/seccomp/seccomp_linux.go`, `setupSeccomp`).
fn resolve(p: &Profile, caps: &[&str], host: Host) -> Result<Value> {
    let bad = |m: String| Error::Invalid(format!("invalid seccomp profile: {m}"));
    if !p.architectures.is_empty() && !p.arch_map.is_empty() {
        return Err(bad(
            "both 'architectures' and 'archMap' are specified, use either".into(),
        ));
    }
    let mut arches = p.architectures.clone();
    for m in p
        .arch_map
        .iter()
        .filter(|m| m.architecture == host.scmp_arch)
    {
        arches.push(m.architecture.clone());
        arches.extend(m.sub_architectures.iter().flatten().cloned());
    }
    let min_kernel_ok = |v: &str| -> Result<bool> {
        let want = parse_version(v).ok_or_else(|| bad(format!("invalid minKernel {v:?}")))?;
        Ok(host.kernel >= want)
    };
    let has_cap = |c: &String| caps.contains(&c.as_str());
    let mut syscalls = Vec::new();
    for r in &p.syscalls {
        let mut names = r.names.clone();
        if let Some(n) = &r.name {
            if !names.is_empty() {
                return Err(bad("'name' and 'names' were both specified".into()));
            }
            names.push(n.clone());
        }
        let ex = &r.excludes;
        if ex.arches.iter().any(|a| a == host.goarch) || ex.caps.iter().any(has_cap) {
            continue;
        }
        if let Some(v) = &ex.min_kernel {
            if min_kernel_ok(v)? {
                continue;
            }
        }
        let inc = &r.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.goarch) {
            continue;
        }
        if !inc.caps.iter().all(has_cap) {
            continue;
        }
        if let Some(v) = &inc.min_kernel {
            if !min_kernel_ok(v)? {
                continue;
            }
        }
        let mut rule = json!({"names": names, "action": r.action});
        if let Some(e) = r.errno_ret {
            rule["errnoRet"] = json!(e);
        }
        if !r.args.is_empty() {
            rule["args"] = json!(r.args);
        }
        syscalls.push(rule);
    }
    let mut out = json!({
        "defaultAction": p.default_action,
        "architectures": arches,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if !p.flags.is_empty() {
        out["flags"] = json!(p.flags);
    }
    // Checks action, architecture and operator names now, at create, rather than at start.
    let checked: LinuxSeccomp =
        serde_json::from_value(out.clone()).map_err(|e| bad(e.to_string()))?;
    filter::check(&checked)?;
    Ok(out)
}

/// Resolves a profile's JSON text for a container with bounding set `caps`.
fn resolve_text(text: &str, caps: &[&str]) -> Result<Value> {
    let p: Profile = serde_json::from_str(text)
        .map_err(|e| Error::Invalid(format!("decoding seccomp profile failed: {e}")))?;
    resolve(&p, caps, Host::current())
}

/// What `--security-opt` values ask of seccomp.
enum Choice<'a> {
    Default,
    Unconfined,
    Custom(&'a str),
}

fn choice(security_opt: &[String]) -> Choice<'_> {
    let mut c = Choice::Default;
    for o in security_opt {
        if let Some(v) = o.strip_prefix("seccomp=") {
            c = match v {
                "unconfined" => Choice::Unconfined,
                "builtin" => Choice::Default,
                profile => Choice::Custom(profile),
            };
        }
    }
    c
}

/// The resolved profile of a container, in OCI form (`null` when unconfined). `security_opt` is as
/// stored by `security_opts`, so a custom profile is already its checked JSON text.
fn for_container(security_opt: &[String], caps: &[&str]) -> Value {
    let text = match choice(security_opt) {
        Choice::Unconfined => return Value::Null,
        Choice::Default => DOCKER_DEFAULT,
        Choice::Custom(t) => t,
    };
    resolve_text(text, caps).unwrap_or_else(|e| {
        // Only a hand-edited record gets here (profiles are checked at create): stay confined.
        tracing::warn!("{e}; using the default seccomp profile");
        resolve_text(DOCKER_DEFAULT, caps).expect("embedded profile resolves")
    })
}

/// Checks `--security-opt` values as Docker does and returns them as the record keeps them:
/// `seccomp=PATH` becomes `seccomp=<the file's JSON>`, so later starts do not depend on the
/// file (Docker's CLI sends the content too).
pub fn security_opts(opts: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        let invalid = || Error::Invalid(format!("invalid --security-opt {}: {o:?}", i + 1));
        // Docker still accepts the old `key:value` form.
        let (key, value) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (key, value) {
            // Always on in rbox; `=false` cannot be honoured, so it is refused.
            ("no-new-privileges", None | Some("true")) => out.push(o.clone()),
            // rbox applies no AppArmor or SELinux profile: turning them off is a no-op.
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {
                out.push(format!("{key}={}", value.unwrap_or_default()))
            }
            ("seccomp", Some(v @ ("unconfined" | "builtin"))) => out.push(format!("seccomp={v}")),
            ("seccomp", Some(path)) if !path.is_empty() => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Invalid(format!("opening seccomp profile ({path}) failed: {e}"))
                })?;
                resolve_text(&text, crate::security::DEFAULT_CAPS)?;
                let compact: Value = serde_json::from_str(&text)
                    .map_err(|e| Error::Invalid(format!("decoding seccomp profile failed: {e}")))?;
                out.push(format!("seccomp={compact}"));
            }
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

/// The compiled filter for a container of `root` with these `--security-opt`s and bounding
/// `caps`; `None` when unconfined. `executor::Workload` loads it right before execve.
pub fn filter_for(
    root: &Path,
    security_opt: &[String],
    caps: &[&str],
) -> Result<Option<filter::Filter>> {
    let profile = for_container(security_opt, caps);
    if profile.is_null() {
        return Ok(None);
    }
    let profile: LinuxSeccomp = serde_json::from_value(profile)
        .map_err(|e| Error::Invalid(format!("invalid seccomp profile: {e}")))?;
    Ok(Some(filter::compiled(&root.join("seccomp"), &profile)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: &[&str] = crate::security::DEFAULT_CAPS;
    const AMD64: Host = Host {
        goarch: "amd64",
        scmp_arch: "SCMP_ARCH_X86_64",
        kernel: (6, 1),
    };

    fn default_for(caps: &[&str], host: Host) -> Value {
        let p: Profile = serde_json::from_str(DOCKER_DEFAULT).unwrap();
        resolve(&p, caps, host).unwrap()
    }

    /// The rules that name `syscall`, as (action, errnoRet, args).
    fn rules<'a>(v: &'a Value, syscall: &str) -> Vec<&'a Value> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == syscall))
            .collect()
    }

    #[test]
    fn default_profile_denies_by_default_with_eperm() {
        let v = default_for(CAPS, AMD64);
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(rules(&v, "read").len(), 1);
        for denied in [
            "mount", "unshare", "setns", "keyctl", "reboot", "bpf", "add_key",
        ] {
            assert!(rules(&v, denied).is_empty(), "{denied} must be denied");
        }
    }

    #[test]
    fn without_sys_admin_clone_is_masked_and_clone3_is_enosys() {
        let v = default_for(CAPS, AMD64);
        let clone = rules(&v, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone[0]["args"][0]["index"], 0);
        let clone3 = rules(&v, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
    }

    #[test]
    fn capabilities_select_rules() {
        let mut caps = CAPS.to_vec();
        caps.push("CAP_SYS_ADMIN");
        caps.push("CAP_SYS_PTRACE");
        let v = default_for(&caps, AMD64);
        let clone = rules(&v, "clone");
        assert_eq!(clone.len(), 1);
        assert!(
            clone[0].get("args").is_none(),
            "unconditional with SYS_ADMIN"
        );
        assert_eq!(rules(&v, "clone3")[0]["action"], "SCMP_ACT_ALLOW");
        assert!(!rules(&v, "mount").is_empty());
        assert!(!rules(&v, "kcmp").is_empty());
        // CAP_SYS_CHROOT is in Docker's default set.
        assert!(!rules(&default_for(CAPS, AMD64), "chroot").is_empty());
    }

    #[test]
    fn arches_and_kernel_select_rules() {
        let v = default_for(CAPS, AMD64);
        assert!(!rules(&v, "arch_prctl").is_empty());
        assert!(rules(&v, "set_tls").is_empty());
        let personality = rules(&v, "personality");
        assert_eq!(personality.len(), 5);
        assert!(personality
            .iter()
            .all(|r| r["args"][0]["op"] == "SCMP_CMP_EQ"));
        // socket(2) only for an allow-list of families: below 12, then one rule per family.
        let families: Vec<&Value> = rules(&v, "socket")
            .iter()
            .map(|r| &r["args"][0]["value"])
            .collect();
        assert_eq!(rules(&v, "socket")[0]["args"][0]["op"], "SCMP_CMP_LT");
        assert_eq!(families[0], 12);
        for denied in [38, 40] {
            assert!(!families.contains(&&json!(denied)), "family {denied}");
        }
        assert!(families.contains(&&json!(16)), "AF_NETLINK");
        assert!(rules(&v, "io_uring_setup").is_empty());

        let arm = Host {
            goarch: "arm64",
            scmp_arch: "SCMP_ARCH_AARCH64",
            kernel: (4, 4),
        };
        let v = default_for(CAPS, arm);
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        assert!(rules(&v, "arch_prctl").is_empty());
        assert!(!rules(&v, "set_tls").is_empty());
        // process_vm_readv & co. need kernel 4.8 without CAP_SYS_PTRACE.
        assert!(rules(&v, "process_vm_readv").is_empty());
        assert!(!rules(&default_for(CAPS, AMD64), "process_vm_readv").is_empty());
    }

    #[test]
    fn security_opts_are_checked_and_profiles_inlined() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            security_opts(&s(&["seccomp:unconfined", "no-new-privileges"])).unwrap(),
            s(&["seccomp=unconfined", "no-new-privileges"])
        );
        assert_eq!(
            security_opts(&s(&["apparmor:unconfined", "label=disable"])).unwrap(),
            s(&["apparmor=unconfined", "label=disable"])
        );
        for bad in [
            "apparmor",
            "apparmor=p",
            "no-new-privileges=false",
            "seccomp=",
            "foo=bar",
        ] {
            let e = security_opts(&s(&[bad])).unwrap_err().to_string();
            assert!(e.starts_with("invalid --security-opt 1"), "{e}");
        }
        let e = security_opts(&s(&["seccomp=/nonexistent.json"])).unwrap_err();
        assert!(e.to_string().starts_with("opening seccomp profile"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#).unwrap();
        let opt = format!("seccomp={}", f.display());
        let e = security_opts(std::slice::from_ref(&opt))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid seccomp profile"), "{e}");

        let profile = r#"{ "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}] }"#;
        std::fs::write(&f, profile).unwrap();
        let kept = security_opts(&[opt]).unwrap();
        assert!(kept[0].starts_with("seccomp={"), "{kept:?}");
        let v = for_container(&kept, CAPS);
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(rules(&v, "mkdir")[0]["errnoRet"], 13);
        assert!(for_container(&s(&["seccomp=unconfined"]), CAPS).is_null());
        assert_eq!(for_container(&[], CAPS)["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_version("4.8"), Some((4, 8)));
        assert_eq!(parse_version("5"), Some((5, 0)));
        assert_eq!(parse_version("x"), None);
    }
}
