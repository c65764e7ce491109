//! The container's side of networking: which sandbox the spec joins and what `net` configured.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::record::{Attachment, Record, Settings};
use crate::store::Paths;

fn parse_ip(s: &Option<String>, flag: &str) -> Result<Option<std::net::IpAddr>> {
    s.as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| Error::Invalid(format!("invalid {flag} address: {v}")))
        })
        .transpose()
}

fn dns_servers(s: &Settings) -> Vec<std::net::IpAddr> {
    s.dns.iter().filter_map(|d| d.parse().ok()).collect()
}

/// What joining a `network connect`-ed network asks for.
pub fn request(name: &str, s: &Settings, a: &Attachment) -> Result<net::EndpointRequest> {
    Ok(net::EndpointRequest {
        network: a.network.clone(),
        container_name: name.to_string(),
        ip: parse_ip(&a.ip, "--ip")?,
        ip6: parse_ip(&a.ip6, "--ip6")?,
        mac: None,
        aliases: a.aliases.clone(),
        dns: dns_servers(s),
    })
}

/// The container's `-p` specs and, with `-P`, its image's exposed ports.
pub fn port_specs(s: &Settings) -> Result<Vec<net::PortSpec>> {
    let mut specs = Vec::new();
    for p in &s.publish {
        specs.push(net::PortSpec::parse(p)?);
    }
    if s.publish_all {
        for e in &s.exposed_ports {
            specs.push(net::PortSpec::exposed(e)?);
        }
    }
    Ok(specs)
}

/// Creates the sandbox, joins the container's network and publishes its ports; `None` for a
/// network whose driver shares the host's namespace (`--network host`: the spec then has no
/// network namespace). The caller holds the returned reservation while the container runs.
pub fn attach(paths: &Paths, rec: &mut Record) -> Result<(Option<PathBuf>, net::Reservation)> {
    let (network, caps) = net::attachment(&paths.root, &rec.settings.network_mode)?;
    // What Docker shows for a network without an endpoint of its own (host, none).
    let bare = |rec: &mut Record| {
        rec.networks.insert(
            network.name.clone(),
            net::EndpointSettings {
                network_name: network.name.clone(),
                ..Default::default()
            },
        );
    };
    if caps.namespace == net::Namespace::Host {
        bare(rec);
        return Ok((None, net::Reservation::default()));
    }
    // Before anything is made: a port already allocated must leave no link behind.
    let reserved = net::reserve(&paths.root, &network, &port_specs(&rec.settings)?)?;
    let sandbox = net::Sandbox::create(&paths.root, &paths.id)?;
    rec.sandbox_key = sandbox.path().display().to_string();
    if caps.namespace == net::Namespace::Empty {
        bare(rec);
    } else {
        let req = net::EndpointRequest {
            network: network.id.clone(),
            container_name: rec.name.clone(),
            ip: parse_ip(&rec.settings.ip, "--ip")?,
            ip6: parse_ip(&rec.settings.ip6, "--ip6")?,
            mac: rec.settings.mac_address.clone(),
            aliases: rec.settings.aliases.clone(),
            dns: dns_servers(&rec.settings),
        };
        let ep = net::connect(&paths.root, &paths.id, &sandbox, &req)?;
        rec.networks.insert(ep.network_name.clone(), ep);
        // `network connect`-ed networks come back at every start, in the order joined.
        for a in rec.connected.clone() {
            let ep = net::connect(
                &paths.root,
                &paths.id,
                &sandbox,
                &request(&rec.name, &rec.settings, &a)?,
            )?;
            rec.networks.insert(ep.network_name.clone(), ep);
        }
    }
    let held = match reserved {
        Some(r) => {
            let (ports, held) = net::publish_reserved(&paths.root, &paths.id, r)?;
            rec.ports = ports;
            held
        }
        None => net::Reservation::default(),
    };
    Ok((Some(sandbox.path().to_path_buf()), held))
}
