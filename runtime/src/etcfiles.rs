//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` that rbox writes per container and
//! bind-mounts into it.

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::Paths;

const DOCKER_DNS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The hosts file: localhost lines, then each address of the container with its hostname
/// (and its name and aliases, so peers resolve it the same way).
pub fn hosts(rec: &Record) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for ep in rec.networks.values() {
        for ip in [&ep.ip_address, &ep.global_ipv6_address] {
            if !ip.is_empty() {
                s.push_str(&format!("{ip}\t{}\n", rec.settings.hostname));
            }
        }
    }
    s
}

/// The host's resolvers minus loopback ones (unreachable from a container netns); Docker's
/// public defaults only when nothing is left.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("nameserver") {
            let addr = addr.trim();
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        if t.starts_with("nameserver")
            || t.starts_with("search")
            || t.starts_with("options")
            || t.starts_with("domain")
        {
            out.push_str(t);
            out.push('\n');
        }
    }
    if servers == 0 {
        for d in DOCKER_DNS {
            out.push_str(&format!("nameserver {d}\n"));
        }
    }
    out
}

pub fn write_all(paths: &Paths, rec: &Record, host_network: bool) -> Result<()> {
    let w = |name: &str, data: String| {
        // Written before the container exists and bind-mounted into it, so a plain write
        // (no rename, no fsync) is enough: a crash here leaves nothing that runs.
        let p = paths.dir.join(name);
        std::fs::write(&p, data.as_bytes()).map_err(|e| Error::io(p.display(), e))
    };
    w("hostname", format!("{}\n", rec.settings.hostname))?;
    let hosts_text = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| hosts(rec))
    } else {
        hosts(rec)
    };
    w("hosts", hosts_text)?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    w(
        "resolv.conf",
        if host_network {
            host_resolv
        } else {
            resolv_conf(&host_resolv)
        },
    )
}

/// Rewrites /etc/hosts in place (same inode, so the bind mount inside a running container
/// sees it): used when endpoints are added or removed.
pub fn rewrite_hosts(paths: &Paths, rec: &Record) -> Result<()> {
    let p = paths.dir.join("hosts");
    std::fs::write(&p, hosts(rec)).map_err(|e| Error::io(p.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback() {
        let r = resolv_conf("# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\n");
        assert_eq!(r, "nameserver 10.0.0.2\nsearch lan\n");
        let r = resolv_conf("nameserver 127.0.0.1\n");
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
}
