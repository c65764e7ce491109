//! Docker's `-p` syntax: `[ip:][hostPort[-end]:]containerPort[-end][/proto]`, IPv6 host IPs in
//! brackets (`[::1]:8080:80`). Pure parsing; reserving and publishing is in `ports`.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Result<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(Error::Invalid(format!("invalid proto: {s}"))),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One `-p` (or one `EXPOSE`d port under `-P`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `None`: the network's default host IP (`host_binding_ipv4`, else 0.0.0.0).
    pub host_ip: Option<IpAddr>,
    /// `None`: ephemeral ports from the host's `ip_local_port_range`. A range with a single
    /// container port is a pool: the first free port of it is taken.
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub proto: Proto,
}

fn parse_port(s: &str, what: &str) -> Result<u16> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(Error::Invalid(format!("invalid {what}: {s}"))),
    }
}

fn parse_range(s: &str, what: &str) -> Result<PortRange> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (parse_port(a, what)?, parse_port(b, what)?),
        None => {
            let p = parse_port(s, what)?;
            (p, p)
        }
    };
    if b < a {
        return Err(Error::Invalid(format!("invalid {what}: {s}")));
    }
    Ok(PortRange { start: a, end: b })
}

/// Splits `ip:host:container`, where `ip` may be a bracketed IPv6 address.
fn split(spec: &str) -> Result<(Option<&str>, Option<&str>, &str)> {
    let bad = || Error::Invalid(format!("invalid port specification: \"{spec}\""));
    if let Some(rest) = spec.strip_prefix('[') {
        let (ip, rest) = rest.split_once(']').ok_or_else(bad)?;
        let rest = rest.strip_prefix(':').ok_or_else(bad)?;
        let (host, ctr) = rest.split_once(':').ok_or_else(bad)?;
        return Ok((Some(ip), Some(host), ctr));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [c] => Ok((None, None, c)),
        [h, c] => Ok((None, Some(h), c)),
        [ip, h, c] => Ok((Some(ip), Some(h), c)),
        // An unbracketed IPv6 address: everything before the last two fields.
        _ => {
            let c = parts[parts.len() - 1];
            let h = parts[parts.len() - 2];
            let ip_len = spec.len() - c.len() - h.len() - 2;
            Ok((Some(&spec[..ip_len]), Some(h), c))
        }
    }
}

impl PortSpec {
    /// Parses one `-p` value.
    pub fn parse(spec: &str) -> Result<PortSpec> {
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, p)) => (b, Proto::parse(p)?),
            None => (spec, Proto::Tcp),
        };
        let (ip, host, ctr) = split(body)?;
        let host_ip = match ip.filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| Error::Invalid(format!("invalid IP address: {s}")))?,
            ),
            None => None,
        };
        if ctr.is_empty() {
            return Err(Error::Invalid(format!("no port specified: {spec}<empty>")));
        }
        let container_ports = parse_range(ctr, "containerPort")?;
        let host_ports = match host.filter(|s| !s.is_empty()) {
            Some(h) => Some(parse_range(h, "hostPort")?),
            None => None,
        };
        if let Some(h) = host_ports {
            if container_ports.len() > 1 && h.len() != container_ports.len() {
                return Err(Error::Invalid(format!(
                    "invalid ranges specified for container and host Ports: {container_ports} and {h}"
                )));
            }
        }
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            proto,
        })
    }

    /// `-P`: an image's `EXPOSE` entry ("80/tcp", "8000-8010/udp", "53") on ephemeral ports.
    pub fn exposed(entry: &str) -> Result<PortSpec> {
        let (ports, proto) = match entry.rsplit_once('/') {
            Some((p, proto)) => (p, Proto::parse(proto)?),
            None => (entry, Proto::Tcp),
        };
        Ok(PortSpec {
            host_ip: None,
            host_ports: None,
            container_ports: parse_range(ports, "containerPort")?,
            proto,
        })
    }

    /// Docker's `HostConfig.PortBindings` entries: ("80/tcp", HostIp, HostPort) per container
    /// port, as the user asked (empty strings for unspecified parts).
    pub fn docker_bindings(&self) -> Vec<(String, String, String)> {
        let ip = self.host_ip.map(|i| i.to_string()).unwrap_or_default();
        self.container_ports
            .ports()
            .enumerate()
            .map(|(i, c)| {
                let host = match self.host_ports {
                    None => String::new(),
                    Some(h) if self.container_ports.len() > 1 => (h.start + i as u16).to_string(),
                    Some(h) => h.to_string(),
                };
                (format!("{c}/{}", self.proto), ip.clone(), host)
            })
            .collect()
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        if let Some(h) = self.host_ports {
            write!(f, "{h}:")?;
        } else if self.host_ip.is_some() {
            f.write_str(":")?;
        }
        write!(f, "{}/{}", self.container_ports, self.proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn r(a: u16, b: u16) -> PortRange {
        PortRange { start: a, end: b }
    }

    #[test]
    fn dockers_forms() {
        let s = p("80");
        assert_eq!(
            (s.host_ip, s.host_ports, s.container_ports, s.proto),
            (None, None, r(80, 80), Proto::Tcp)
        );
        let s = p("8080:80");
        assert_eq!(
            (s.host_ports, s.container_ports),
            (Some(r(8080, 8080)), r(80, 80))
        );
        let s = p("127.0.0.1:8080:80");
        assert_eq!(s.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(s.host_ports, Some(r(8080, 8080)));
        let s = p("127.0.0.1::80");
        assert_eq!((s.host_ports, s.container_ports), (None, r(80, 80)));
        let s = p("8080-8082:80-82");
        assert_eq!(
            (s.host_ports, s.container_ports),
            (Some(r(8080, 8082)), r(80, 82))
        );
        let s = p("53:53/udp");
        assert_eq!(s.proto, Proto::Udp);
        assert_eq!(p("80/TCP").proto, Proto::Tcp);
        let s = p("[::1]:8080:80");
        assert_eq!(s.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(s.host_ports, Some(r(8080, 8080)));
        let s = p("[fd00::1]::80/udp");
        assert_eq!((s.host_ports, s.proto), (None, Proto::Udp));
        // Unbracketed IPv6 as Docker also accepts it.
        let s = p("::1:8080:80");
        assert_eq!(s.host_ip, Some("::1".parse().unwrap()));
        // A host range with one container port is a pool.
        let s = p("8080-8090:80");
        assert_eq!(
            (s.host_ports, s.container_ports),
            (Some(r(8080, 8090)), r(80, 80))
        );
        // Ephemeral host ports for a container range.
        assert_eq!(p("80-82").container_ports, r(80, 82));
    }

    #[test]
    fn bad_specs() {
        for (s, want) in [
            ("", "no port specified"),
            ("abc", "invalid containerPort: abc"),
            ("0", "invalid containerPort: 0"),
            ("70000", "invalid containerPort: 70000"),
            ("8080:0", "invalid containerPort: 0"),
            ("70000:80", "invalid hostPort: 70000"),
            ("127.0.0.1:0:80", "invalid hostPort: 0"),
            ("127.0.0.1:65536:80", "invalid hostPort: 65536"),
            ("80/sctpx", "invalid proto: sctpx"),
            ("80/", "invalid proto: "),
            (
                "8080-8081:80-82",
                "invalid ranges specified for container and host Ports: 80-82 and 8080-8081",
            ),
            ("82-80", "invalid containerPort: 82-80"),
            ("1.2.3:80:80", "invalid IP address: 1.2.3"),
            ("[::1:80:80", "invalid port specification"),
            ("x:y:z", "invalid IP address: x"),
            ("8080:", "no port specified"),
        ] {
            let e = PortSpec::parse(s).expect_err(s).to_string();
            assert!(e.contains(want), "{s:?}: got {e:?}, want {want:?}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn exposed_and_docker_bindings() {
        let s = PortSpec::exposed("8000-8001/udp").unwrap();
        assert_eq!(
            (s.container_ports, s.proto, s.host_ports),
            (r(8000, 8001), Proto::Udp, None)
        );
        assert_eq!(PortSpec::exposed("80").unwrap().proto, Proto::Tcp);
        assert!(PortSpec::exposed("80/xyz").is_err());
        assert_eq!(
            p("127.0.0.1:8080-8081:80-81").docker_bindings(),
            vec![
                ("80/tcp".into(), "127.0.0.1".into(), "8080".into()),
                ("81/tcp".into(), "127.0.0.1".into(), "8081".into())
            ]
        );
        assert_eq!(
            p("80/udp").docker_bindings(),
            vec![("80/udp".into(), String::new(), String::new())]
        );
        assert_eq!(p("[::1]:8080:80").to_string(), "[::1]:8080:80/tcp");
        assert_eq!(p("127.0.0.1::80").to_string(), "127.0.0.1::80/tcp");
    }
}
