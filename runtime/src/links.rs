//! Docker's legacy `--link NAME[:ALIAS]`: the linked container's address under the alias in
//! /etc/hosts (`IP\tALIAS ID NAME`) and its `ALIAS_PORT_...`/`ALIAS_NAME` environment, read
//! from the linked container when this one starts (it must be running then).

use std::path::Path;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store;

/// A link as recorded (`/db:/web/database`): the target's name and the alias.
pub fn parse(recorded: &str) -> (String, String) {
    let (target, alias) = recorded.split_once(':').unwrap_or((recorded, recorded));
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    (
        target.trim_start_matches('/').to_string(),
        alias.to_string(),
    )
}

/// `NAME[:ALIAS]` as Docker records it for container `this`: `/NAME:/this/ALIAS`.
pub fn record_form(link: &str, this: &str) -> Result<String> {
    let (name, alias) = link.split_once(':').unwrap_or((link, link));
    let name = name.trim_start_matches('/');
    if name.is_empty() || alias.is_empty() {
        return Err(Error::Invalid(format!("invalid link format: {link}")));
    }
    Ok(format!("/{name}:/{this}/{}", alias.trim_start_matches('/')))
}

/// A linked container, running.
pub struct Linked {
    pub alias: String,
    pub rec: Record,
    pub ip: String,
}

/// The containers `rec` links to; each must exist and run.
pub fn resolve(root: &Path, rec: &Record) -> Result<Vec<Linked>> {
    let mut out = Vec::new();
    for l in &rec.settings.links {
        let (name, alias) = parse(l);
        let target = store::resolve(root, &name)
            .map_err(|_| Error::Invalid(format!("could not get container for {name}")))?;
        let target = crate::lifecycle::repair(root, target)
            .filter(|t| t.running())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "Cannot link to a non running container: /{name} AS /{}/{alias}",
                    rec.name
                ))
            })?;
        let ip = target
            .networks
            .values()
            .map(|e| e.ip_address.clone())
            .find(|ip| !ip.is_empty())
            .unwrap_or_default();
        out.push(Linked {
            alias,
            rec: target,
            ip,
        });
    }
    Ok(out)
}

/// The /etc/hosts lines of the links.
pub fn hosts_lines(links: &[Linked]) -> String {
    links
        .iter()
        .filter(|l| !l.ip.is_empty())
        .map(|l| format!("{}\t{} {} {}\n", l.ip, l.alias, &l.rec.id[..12], l.rec.name))
        .collect()
}

/// Docker's link environment (`DB_PORT=tcp://IP:5432`, `DB_PORT_5432_TCP_ADDR=IP`, ...,
/// `DB_NAME=/this/db`, and the target's own `-e` variables as `DB_ENV_KEY`).
pub fn env(links: &[Linked], this: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in links {
        let p = l.alias.to_ascii_uppercase().replace('-', "_");
        let mut ports: Vec<(u16, String)> = l
            .rec
            .settings
            .exposed_ports
            .iter()
            .filter_map(|e| {
                let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
                Some((port.parse().ok()?, proto.to_string()))
            })
            .collect();
        ports.sort();
        if let Some((port, proto)) = ports.first() {
            out.push(format!("{p}_PORT={proto}://{}:{port}", l.ip));
        }
        for (port, proto) in &ports {
            let k = format!("{p}_PORT_{port}_{}", proto.to_ascii_uppercase());
            out.push(format!("{k}={proto}://{}:{port}", l.ip));
            out.push(format!("{k}_ADDR={}", l.ip));
            out.push(format!("{k}_PORT={port}"));
            out.push(format!("{k}_PROTO={proto}"));
        }
        out.push(format!("{p}_NAME=/{this}/{}", l.alias));
        for e in &l.rec.settings.env {
            if let Some((k, v)) = e.split_once('=') {
                if !matches!(k, "PATH" | "HOME") {
                    out.push(format!("{p}_ENV_{k}={v}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_as_docker() {
        assert_eq!(
            record_form("db:database", "web").unwrap(),
            "/db:/web/database"
        );
        assert_eq!(record_form("db", "web").unwrap(), "/db:/web/db");
        assert_eq!(parse("/db:/web/database"), ("db".into(), "database".into()));
    }
}
