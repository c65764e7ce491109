//! Capabilities as Docker computes them (moby `oci/caps`): `--cap-add`/`--cap-drop` names in
//! any case, with or without `CAP_`, or `ALL`; `--privileged` is every capability this host's
//! bounding set still allows (a container cannot get more than rbox itself may pass on).

use crate::error::{Error, Result};

/// Linux capabilities by number.
const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities the kernel knows (Docker's `GetAllCapabilities`, which validates names).
pub fn known() -> Vec<&'static str> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(NAMES.len() - 1);
    NAMES.iter().take(last + 1).copied().collect()
}

/// The capabilities rbox's own bounding set allows: all a container can be given.
pub fn allowed() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    known()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1 << i) != 0)
        .map(|(_, n)| n)
        .collect()
}

/// Docker's `NormalizeLegacyCapabilities`: upper case, `CAP_` added, `ALL` kept; an unknown
/// name is "unknown capability".
pub fn normalize(names: &[String]) -> Result<Vec<String>> {
    let known = known();
    let mut out = Vec::new();
    for n in names {
        let mut c = n.to_ascii_uppercase();
        if c != "ALL" {
            if !c.starts_with("CAP_") {
                c = format!("CAP_{c}");
            }
            if !known.contains(&c.as_str()) {
                return Err(Error::Invalid(format!("unknown capability: {c:?}")));
            }
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Docker's `TweakCapabilities`: the container's set from the default one, the additions and
/// the drops (`ALL` in either), or everything for `--privileged`; limited to what the host
/// allows.
pub fn effective(
    base: &[&str],
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>> {
    let allowed = allowed();
    if privileged {
        return Ok(allowed.iter().map(|c| c.to_string()).collect());
    }
    let (add, drop) = (normalize(add)?, normalize(drop)?);
    let all = |v: &[String]| v.iter().any(|c| c == "ALL");
    let caps: Vec<String> = if all(&add) {
        known()
            .into_iter()
            .filter(|c| !drop.iter().any(|d| d == c))
            .map(str::to_string)
            .collect()
    } else if all(&drop) {
        add
    } else {
        let mut v: Vec<String> = base
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| c.to_string())
            .collect();
        for a in add {
            if !v.contains(&a) {
                v.push(a);
            }
        }
        v
    };
    Ok(caps
        .into_iter()
        .filter(|c| allowed.contains(&c.as_str()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_and_sets_as_docker() {
        assert_eq!(
            normalize(&s(&["net_admin", "CAP_SYS_TIME", "all"])).unwrap(),
            s(&["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"])
        );
        assert_eq!(
            normalize(&s(&["NOPE"])).unwrap_err().to_string(),
            "unknown capability: \"CAP_NOPE\""
        );
        let base = ["CAP_CHOWN", "CAP_KILL"];
        assert_eq!(
            effective(&base, &s(&["NET_ADMIN"]), &s(&["chown"]), false).unwrap(),
            s(&["CAP_KILL", "CAP_NET_ADMIN"])
        );
        assert_eq!(
            effective(&base, &s(&["kill"]), &s(&["ALL"]), false).unwrap(),
            s(&["CAP_KILL"])
        );
        assert!(effective(&base, &[], &s(&["ALL"]), false)
            .unwrap()
            .is_empty());
        let all = effective(&base, &s(&["ALL"]), &s(&["CAP_CHOWN"]), false).unwrap();
        assert!(all.contains(&"CAP_KILL".to_string()) && !all.contains(&"CAP_CHOWN".to_string()));
    }
}
