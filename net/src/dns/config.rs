//! What containers' resolver settings are made of: the host's resolvers, `--dns`,
//! `--dns-search`, `--dns-option`, `--add-host`, and the names (`--network-alias`) the resolver
//! serves. Pure parsing and formatting, shared by the resolver and the runtime's etc files.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// Which file holds the host's resolvers: `RBOX_HOST_RESOLV_CONF` when set (tests point it at
/// their own upstream, like dockerd's --dns), else /etc/resolv.conf.
pub fn host_resolv_conf_path() -> std::path::PathBuf {
    std::env::var_os("RBOX_HOST_RESOLV_CONF")
        .map(Into::into)
        .unwrap_or_else(|| "/etc/resolv.conf".into())
}

pub fn read_host_resolv_conf() -> String {
    std::fs::read_to_string(host_resolv_conf_path()).unwrap_or_default()
}

/// The `nameserver` addresses of a resolv.conf text, in order (zone ids dropped).
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect()
}

/// The upstreams of the resolver: every nameserver of the host. Loopback ones are kept (unlike
/// in a container's own resolv.conf): the resolver runs in the host's network namespace, so a
/// local stub such as systemd-resolved's 127.0.0.53 is reachable from it (Docker 26 does the
/// same through its internal resolver).
pub fn host_upstreams() -> Vec<IpAddr> {
    nameservers(&read_host_resolv_conf())
}

/// `--dns IP`: an IPv4 or IPv6 address.
pub fn parse_dns_server(s: &str) -> Result<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("{s} is not an ip address")))
}

/// A DNS name as RFC 1123 allows: labels of 1-63 letters, digits, '-' and '_' (not starting or
/// ending with '-'), at most 253 bytes, dots between labels. `--network-alias`, `--add-host` and
/// `--dns-search` values must be one.
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub fn check_alias(alias: &str) -> Result<()> {
    if valid_name(alias) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid network alias {alias:?}: not a valid DNS name"
        )))
    }
}

/// What `--add-host host-gateway` stands for: the gateway of the container's first network,
/// or the host's address on the default bridge (Docker uses the default bridge's gateway).
pub const HOST_GATEWAY: &str = "host-gateway";

/// `--add-host name:IP` (also `name=IP`, and `name:host-gateway`); IPv6 addresses may be
/// bracketed. Returns the name and the address text (`host-gateway` kept as is).
pub fn parse_add_host(s: &str) -> Result<(String, String)> {
    let bad = || {
        Error::Invalid(format!(
            "invalid argument \"{s}\" for \"--add-host\" flag: bad format for add-host: {s:?}"
        ))
    };
    let (name, addr) = match s.split_once('=') {
        Some(p) => p,
        None => s.split_once(':').ok_or_else(bad)?,
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    if !valid_name(name) {
        return Err(bad());
    }
    if addr == HOST_GATEWAY {
        return Ok((name.to_string(), addr.to_string()));
    }
    let ip: IpAddr = addr.parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid argument \"{s}\" for \"--add-host\" flag: invalid IP address in add-host: {addr:?}"
        ))
    })?;
    Ok((name.to_string(), ip.to_string()))
}

/// `--dns-search`: a domain name, or "." for none.
pub fn check_dns_search(s: &str) -> Result<()> {
    if s == "." || valid_name(s) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{s} is not a valid domain")))
    }
}

/// `--dns-option`: one resolv.conf option word (`ndots:2`, `edns0`, `use-vc`).
pub fn check_dns_option(s: &str) -> Result<()> {
    if !s.is_empty() && !s.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid dns option {s:?}")))
    }
}

/// A container's resolver settings (Docker's HostConfig.Dns, DnsSearch, DnsOptions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsSettings {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The container's resolv.conf. `resolver` is the embedded resolver's address when the
/// container is on a user network: then it is the only nameserver (the container's `--dns`
/// servers become the resolver's upstreams for it) and `ndots:0` is added as Docker does.
/// Otherwise the `--dns` servers, else the host's minus loopback ones (unreachable from the
/// container), else Docker's public defaults. `--dns-search`/`--dns-option` replace the host's.
pub fn resolv_conf(host: &str, dns: &DnsSettings, resolver: Option<IpAddr>) -> String {
    let mut out = String::new();
    match resolver {
        Some(r) => out.push_str(&format!("nameserver {r}\n")),
        None if !dns.servers.is_empty() => {
            for s in &dns.servers {
                out.push_str(&format!("nameserver {s}\n"));
            }
        }
        None => {
            let usable: Vec<IpAddr> = nameservers(host)
                .into_iter()
                .filter(|a| !a.is_loopback())
                .collect();
            if usable.is_empty() {
                out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
            }
            for a in usable {
                out.push_str(&format!("nameserver {a}\n"));
            }
        }
    }
    let host_lines = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let t = l.trim();
                let mut w = t.split_whitespace();
                (w.next() == Some(key)).then(|| w.collect::<Vec<_>>().join(" "))
            })
            .filter(|v| !v.is_empty())
            .collect()
    };
    let search: Vec<String> = if dns.search.is_empty() {
        host_lines("search")
    } else {
        dns.search.iter().filter(|s| *s != ".").cloned().collect()
    };
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut options: Vec<String> = if dns.options.is_empty() {
        host_lines("options")
    } else {
        dns.options.clone()
    };
    if resolver.is_some() && !options.iter().any(|o| o.contains("ndots")) {
        options.insert(0, "ndots:0".into());
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "web-1", "a.b.c", "x_y", "web."] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-web", "web-", "a..b", "we b", "wéb", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn add_host() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(
            parse_add_host("db=10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(
            parse_add_host("v6:[fd00::1]").unwrap(),
            ("v6".into(), "fd00::1".into())
        );
        assert_eq!(
            parse_add_host("v6=fd00::1").unwrap(),
            ("v6".into(), "fd00::1".into())
        );
        assert_eq!(
            parse_add_host("gw:host-gateway").unwrap(),
            ("gw".into(), "host-gateway".into())
        );
        for bad in [
            "db",
            "db:",
            "db:10.0.0",
            ":1.2.3.4",
            "d b:1.2.3.4",
            "db:nope",
        ] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_variants() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\noptions edns0\n";
        let none = DnsSettings::default();
        assert_eq!(
            resolv_conf(host, &none, None),
            "nameserver 10.0.0.2\nsearch lan\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &none, None),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let mine = DnsSettings {
            servers: vec!["192.0.2.1".into()],
            search: vec!["example.com".into()],
            options: vec!["ndots:2".into(), "timeout:1".into()],
        };
        assert_eq!(
            resolv_conf(host, &mine, None),
            "nameserver 192.0.2.1\nsearch example.com\noptions ndots:2 timeout:1\n"
        );
        assert_eq!(
            resolv_conf(host, &none, Some("10.207.1.1".parse().unwrap())),
            "nameserver 10.207.1.1\nsearch lan\noptions ndots:0 edns0\n"
        );
        assert_eq!(
            nameservers("nameserver fe80::1%eth0\nnameserver 1.2.3.4\n"),
            vec![
                "fe80::1".parse::<IpAddr>().unwrap(),
                "1.2.3.4".parse().unwrap()
            ]
        );
    }
}
