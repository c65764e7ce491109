//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` that rbox writes per container and
//! bind-mounts into it.

use std::net::IpAddr;
use std::path::Path;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::Paths;

/// The hosts file: localhost lines, `--add-host` entries, then each address of the container
/// with its hostname (and its name and aliases, so peers resolve it the same way).
pub fn hosts(root: &Path, rec: &Record) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    s.push_str(&extra_hosts(root, rec));
    if !rec.settings.links.is_empty() {
        s.push_str(&crate::links::hosts_lines(
            &crate::links::resolve(root, rec).unwrap_or_default(),
        ));
    }
    for ep in rec.networks.values() {
        for ip in [&ep.ip_address, &ep.global_ipv6_address] {
            if !ip.is_empty() {
                s.push_str(&format!("{ip}\t{}\n", rec.settings.hostname));
            }
        }
    }
    s
}

/// `--add-host` lines; `host-gateway` is the default bridge's gateway, the host's address as
/// containers see it (Docker's default for it).
fn extra_hosts(root: &Path, rec: &Record) -> String {
    let mut s = String::new();
    for h in &rec.settings.extra_hosts {
        let Ok((name, ip)) = net::dns::parse_add_host(h) else {
            continue;
        };
        let ip = if ip == net::dns::HOST_GATEWAY {
            match host_gateway(root) {
                Some(g) => g,
                None => continue,
            }
        } else {
            ip
        };
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

fn host_gateway(root: &Path) -> Option<String> {
    let bridge = net::Store::new(root).find("bridge").ok()?;
    Some(bridge.ipam?.gateway.to_string())
}

/// The embedded resolver's address for `rec` (127.0.0.11, in its sandbox) when its network is
/// a user network; `None` on the default bridge, host and none.
fn resolver(root: &Path, rec: &Record) -> Option<IpAddr> {
    let net = net::Store::new(root)
        .find(&rec.settings.network_mode)
        .ok()?;
    net::dns::serves(&net).then_some(IpAddr::V4(net::dns::ADDRESS))
}

pub fn write_all(paths: &Paths, rec: &Record, host_network: bool) -> Result<()> {
    // Linked containers must run when this one starts (Docker's "Cannot link to a non
    // running container").
    crate::links::resolve(&paths.root, rec)?;
    let w = |name: &str, data: String| {
        // Written before the container exists and bind-mounted into it, so a plain write
        // (no rename, no fsync) is enough: a crash here leaves nothing that runs.
        let p = paths.dir.join(name);
        std::fs::write(&p, data.as_bytes()).map_err(|e| Error::io(p.display(), e))
    };
    w("hostname", format!("{}\n", rec.settings.hostname))?;
    let hosts_text = if host_network {
        let mut h =
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| hosts(&paths.root, rec));
        h.push_str(&extra_hosts(&paths.root, rec));
        h
    } else {
        hosts(&paths.root, rec)
    };
    w("hosts", hosts_text)?;
    let host_resolv = net::dns::config::read_host_resolv_conf();
    let dns = net::dns::DnsSettings {
        servers: rec.settings.dns.clone(),
        search: rec.settings.dns_search.clone(),
        options: rec.settings.dns_options.clone(),
    };
    let text = if host_network && dns == net::dns::DnsSettings::default() {
        host_resolv
    } else {
        net::dns::resolv_conf(&host_resolv, &dns, resolver(&paths.root, rec))
    };
    w("resolv.conf", text)
}

/// Rewrites /etc/hosts in place (same inode, so the bind mount inside a running container
/// sees it): used when endpoints are added or removed.
pub fn rewrite_hosts(paths: &Paths, rec: &Record) -> Result<()> {
    let p = paths.dir.join("hosts");
    std::fs::write(&p, hosts(&paths.root, rec)).map_err(|e| Error::io(p.display(), e))
}

#[cfg(test)]
mod tests {
    fn resolv_conf(host: &str) -> String {
        net::dns::resolv_conf(host, &Default::default(), None)
    }

    #[test]
    fn resolv_conf_drops_loopback() {
        let r = resolv_conf("# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\n");
        assert_eq!(r, "nameserver 10.0.0.2\nsearch lan\n");
        let r = resolv_conf("nameserver 127.0.0.1\n");
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
}
