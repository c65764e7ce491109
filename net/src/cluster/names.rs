//! Names of other hosts' containers for this host's resolver: the helper keeps one file per
//! joined global network (`<root>/cluster/names/<id>.json`, the store's endpoints of the other
//! hosts) current from its watch and has the resolver reload; the resolver's table adds them to
//! the network's local entries.

use std::path::{Path, PathBuf};

use super::registry::EndpointEntry;
use crate::dns::Table;
use crate::network::Network;

fn dir(root: &Path) -> PathBuf {
    super::host::dir(root).join("names")
}

fn file(root: &Path, id: &str) -> PathBuf {
    dir(root).join(format!("{id}.json"))
}

/// Records the other hosts' endpoints of network `id`.
pub(crate) fn write(root: &Path, id: &str, entries: &[EndpointEntry]) -> crate::Result<()> {
    std::fs::create_dir_all(dir(root))
        .map_err(crate::error::io("creating the cluster names directory"))?;
    Ok(statefile::write_json_unsynced(&file(root, id), &entries)?)
}

pub(crate) fn forget(root: &Path, id: &str) {
    let _ = std::fs::remove_file(file(root, id));
}

fn read(root: &Path, id: &str) -> Vec<EndpointEntry> {
    statefile::read_json_opt(&file(root, id))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Adds the other hosts' containers to the segments of `nets`' global networks in `table`.
pub fn add_remote(root: &Path, nets: &[Network], table: &mut Table) {
    for n in nets.iter().filter(|n| n.scope() == "global") {
        let name = n.name.to_ascii_lowercase();
        let Some(seg) = table.segments.iter_mut().find(|s| s.name == name) else {
            continue;
        };
        for e in read(root, &n.id) {
            if e.ip.is_none() || seg.entries.iter().any(|l| l.container_id == e.container_id) {
                continue;
            }
            let mut names = vec![
                e.name.to_ascii_lowercase(),
                e.container_id.chars().take(12).collect(),
            ];
            names.extend(e.aliases.iter().map(|a| a.to_ascii_lowercase()));
            names.retain(|s| !s.is_empty());
            seg.entries.push(crate::dns::Entry {
                container_id: e.container_id,
                names,
                ip4: e.ip,
                ip6: e.ip6,
                upstreams: Vec::new(),
                // Only a local container asks this resolver: a remote one's interface orders
                // no search.
                interface: String::new(),
            });
        }
    }
}
