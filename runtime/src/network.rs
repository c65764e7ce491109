//! The container's side of networking: which sandbox the spec joins and what `net` configured,
//! and `--network container:NAME|ID` (the container joins another's sandbox, has no endpoint of
//! its own and shares its /etc/hosts, /etc/resolv.conf and hostname, as in Docker).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::{Attachment, Record, Settings};
use crate::store::{self, Paths};

const CONTAINER_MODE: &str = "container:";

/// The container whose sandbox `network_mode` joins (`container:ID`), if any.
pub fn joined(network_mode: &str) -> Option<&str> {
    network_mode.strip_prefix(CONTAINER_MODE)
}

/// Checks `--network container:X` at create, with Docker's wording for what cannot go with it,
/// and records the full id of X (which must exist). Returns X's hostname, which the container
/// takes.
pub fn check_container_mode(root: &Path, s: &mut Settings) -> Result<Option<String>> {
    let Some(target) = joined(&s.network_mode) else {
        return Ok(None);
    };
    let conflict = |what: &str| Err(Error::Invalid(format!("conflicting options: {what}")));
    if target.is_empty() {
        return Err(Error::Invalid(
            "Invalid network mode: invalid container format container:<name|id>".into(),
        ));
    }
    if !s.hostname.is_empty() {
        return conflict("hostname and the network mode");
    }
    if !s.dns.is_empty() {
        return conflict("dns and the network mode");
    }
    if !s.extra_hosts.is_empty() {
        return conflict("custom host-to-IP mapping and the network mode");
    }
    if s.mac_address.is_some() {
        return conflict("mac-address and the network mode");
    }
    if !s.publish.is_empty() || s.publish_all {
        return conflict("port publishing and the container type network mode");
    }
    if s.ip.is_some() || s.ip6.is_some() {
        return Err(Error::Invalid(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    if !s.aliases.is_empty() {
        return Err(Error::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    let t = crate::lifecycle::find(root, target)?;
    s.network_mode = format!("{CONTAINER_MODE}{}", t.id);
    Ok(Some(t.settings.hostname))
}

/// The container that owns the sandbox `rec` runs in: itself, or the end of its chain of
/// `container:` joins.
fn sandbox_owner(root: &Path, rec: &Record) -> Result<Record> {
    let mut owner = rec.clone();
    for _ in 0..16 {
        let Some(next) = joined(&owner.settings.network_mode) else {
            return Ok(owner);
        };
        owner = store::load(&Paths::new(root, next))?;
    }
    Err(Error::Invalid(format!(
        "network mode of {} joins containers in a loop",
        rec.name
    )))
}

/// Where `rec`'s /etc/hostname, /etc/hosts and /etc/resolv.conf come from: its own directory,
/// or that of the container whose sandbox it joins (so that connects show there too).
pub fn etc_dir(paths: &Paths, rec: &Record) -> PathBuf {
    match joined(&rec.settings.network_mode) {
        Some(_) => sandbox_owner(&paths.root, rec)
            .map(|o| Paths::new(&paths.root, &o.id).dir)
            .unwrap_or_else(|_| paths.dir.clone()),
        None => paths.dir.clone(),
    }
}

/// `container:X` at start: X must run; the spec joins the namespace of X's init (as Docker).
/// When X stops, `net::release` unwires its endpoints, and the namespace lives on with this
/// container in it, with `lo` only.
fn join_container(paths: &Paths, rec: &Record, target: &str) -> Result<PathBuf> {
    let t = crate::lifecycle::find(&paths.root, target)?;
    if !t.running() || t.state.pid <= 0 {
        return Err(Error::Invalid(format!(
            "cannot join network of a non running container: {target}"
        )));
    }
    if t.id == rec.id {
        return Err(Error::Invalid("cannot join own network".into()));
    }
    sandbox_owner(&paths.root, &t)?;
    Ok(PathBuf::from(format!("/proc/{}/ns/net", t.state.pid)))
}

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
        ports: Vec::new(),
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
    if let Some(target) = joined(&rec.settings.network_mode) {
        let target = target.to_string();
        return Ok((
            Some(join_container(paths, rec, &target)?),
            net::Reservation::default(),
        ));
    }
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
            // For a network whose driver maps them itself as the container joins.
            ports: reserved
                .as_ref()
                .map(|r| r.bindings().to_vec())
                .unwrap_or_default(),
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
