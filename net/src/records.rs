//! A network's endpoints and address leases on disk, one file each, beside the network's own
//! (small) state file:
//!
//! ```text
//! networks/<id>.json                    the network (`Store::save`)
//! networks/<id>/endpoints/<cid>.json    one container's endpoint
//! networks/<id>/leases/<ip>             -> <cid>: the address is taken
//! ```
//!
//! Joining the 600th container reads and writes its own endpoint and lists the leases' names,
//! instead of parsing and rewriting every endpoint of the network (what one file per network
//! cost: 287 KB read 7 times per `run -d` at 600 containers). Changes are made under the
//! network's lock (`Store::lock`). A lease is made before its endpoint's file and removed
//! after it, so a crash between the two can only leave an address taken by nobody (given back
//! by `repair_leases`, which allocation runs before it reports a pool exhausted), never an
//! endpoint whose address is free.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::error::{io, Result};
use crate::network::{EndpointRecord, Store};

/// A network's endpoints by container id.
pub type Endpoints = BTreeMap<String, EndpointRecord>;

/// The addresses taken on a network.
#[derive(Debug, Default)]
pub(crate) struct Leased {
    pub v4: BTreeSet<Ipv4Addr>,
    pub v6: BTreeSet<Ipv6Addr>,
}

fn addresses(rec: &EndpointRecord) -> Vec<IpAddr> {
    rec.ip
        .map(IpAddr::V4)
        .into_iter()
        .chain(rec.ip6.map(IpAddr::V6))
        .collect()
}

/// The names in `dir` (none if it does not exist).
fn names(dir: &std::path::Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(format!("reading {}", dir.display()))(e)),
    }
}

fn remove(path: &std::path::Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

impl Store {
    /// Where the endpoints and leases of network `id` are kept.
    pub(crate) fn records_dir(&self, id: &str) -> PathBuf {
        self.root().join("networks").join(id)
    }

    fn endpoints_dir(&self, id: &str) -> PathBuf {
        self.records_dir(id).join("endpoints")
    }

    fn endpoint_file(&self, id: &str, container_id: &str) -> PathBuf {
        self.endpoints_dir(id).join(format!("{container_id}.json"))
    }

    fn leases_dir(&self, id: &str) -> PathBuf {
        self.records_dir(id).join("leases")
    }

    /// The endpoint of `container_id` on network `id`.
    pub fn endpoint(&self, id: &str, container_id: &str) -> Result<Option<EndpointRecord>> {
        Ok(statefile::read_json_opt(
            &self.endpoint_file(id, container_id),
        )?)
    }

    /// The containers with an endpoint on network `id`.
    pub fn endpoint_ids(&self, id: &str) -> Result<Vec<String>> {
        Ok(names(&self.endpoints_dir(id))?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .collect())
    }

    /// Every endpoint of network `id`.
    pub fn endpoints(&self, id: &str) -> Result<Endpoints> {
        let mut all = Endpoints::new();
        for cid in self.endpoint_ids(id)? {
            // Gone since the listing: released meanwhile.
            if let Some(e) = self.endpoint(id, &cid)? {
                all.insert(cid, e);
            }
        }
        Ok(all)
    }

    pub fn has_endpoints(&self, id: &str) -> Result<bool> {
        Ok(!self.endpoint_ids(id)?.is_empty())
    }

    /// The addresses leased on network `id`.
    pub(crate) fn leased(&self, id: &str) -> Result<Leased> {
        let mut l = Leased::default();
        for n in names(&self.leases_dir(id))? {
            match n.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => {
                    l.v4.insert(a);
                }
                Ok(IpAddr::V6(a)) => {
                    l.v6.insert(a);
                }
                Err(_) => {}
            }
        }
        Ok(l)
    }

    /// Records `rec` (new or changed) with its leases; the caller holds the network's lock.
    pub(crate) fn put_endpoint(&self, id: &str, rec: &EndpointRecord) -> Result<()> {
        let old = self.endpoint(id, &rec.container_id)?;
        let leases = self.leases_dir(id);
        fs::create_dir_all(&leases).map_err(io(format!("creating {}", leases.display())))?;
        let eps = self.endpoints_dir(id);
        fs::create_dir_all(&eps).map_err(io(format!("creating {}", eps.display())))?;
        for a in addresses(rec) {
            let link = leases.join(a.to_string());
            match std::os::unix::fs::symlink(&rec.container_id, &link) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if fs::read_link(&link)
                        .is_ok_and(|h| h.as_os_str() == rec.container_id.as_str())
                    {
                        continue;
                    }
                    // Held by another id: the caller chose it free from `leased`, so it is
                    // a crash's leftover (taken by nobody): now ours.
                    let tmp = leases.join(format!(".{a}"));
                    let _ = fs::remove_file(&tmp);
                    std::os::unix::fs::symlink(&rec.container_id, &tmp)
                        .and_then(|()| fs::rename(&tmp, &link))
                        .map_err(io(format!("leasing {a}")))?;
                }
                r => r.map_err(io(format!("leasing {a}")))?,
            }
        }
        if let Err(e) = statefile::write_json(&self.endpoint_file(id, &rec.container_id), rec) {
            let held = old.as_ref().map(addresses).unwrap_or_default();
            for a in addresses(rec).into_iter().filter(|a| !held.contains(a)) {
                let _ = self.drop_address(id, a, &rec.container_id);
            }
            return Err(e.into());
        }
        if let Some(old) = old {
            let kept = addresses(rec);
            for a in addresses(&old).into_iter().filter(|a| !kept.contains(a)) {
                self.drop_address(id, a, &rec.container_id)?;
            }
        }
        Ok(())
    }

    /// Forgets the endpoint of `container_id` and gives its addresses back; the caller holds
    /// the network's lock.
    pub(crate) fn remove_endpoint(
        &self,
        id: &str,
        container_id: &str,
    ) -> Result<Option<EndpointRecord>> {
        let Some(rec) = self.endpoint(id, container_id)? else {
            return Ok(None);
        };
        remove(&self.endpoint_file(id, container_id))?;
        for a in addresses(&rec) {
            self.drop_address(id, a, container_id)?;
        }
        Ok(Some(rec))
    }

    /// Removes the lease of `a` if `container_id` holds it.
    fn drop_address(&self, id: &str, a: IpAddr, container_id: &str) -> Result<()> {
        let link = self.leases_dir(id).join(a.to_string());
        match fs::read_link(&link) {
            Ok(holder) if holder.as_os_str() == container_id => remove(&link),
            _ => Ok(()),
        }
    }

    /// Gives back the addresses leased to no endpoint (what a crash between a lease and its
    /// endpoint's file left); whether any was. The caller holds the network's lock.
    pub(crate) fn repair_leases(&self, id: &str) -> Result<bool> {
        let dir = self.leases_dir(id);
        let mut repaired = false;
        for n in names(&dir)? {
            let Ok(a) = n.parse::<IpAddr>() else { continue };
            let link = dir.join(&n);
            let holder = fs::read_link(&link)
                .ok()
                .map(|h| h.to_string_lossy().into_owned());
            let held = match &holder {
                Some(cid) => self
                    .endpoint(id, cid)?
                    .is_some_and(|e| addresses(&e).contains(&a)),
                None => false,
            };
            if !held {
                remove(&link)?;
                repaired = true;
            }
        }
        Ok(repaired)
    }

    /// Removes the endpoints and leases of a network that is deleted.
    pub(crate) fn remove_records(&self, id: &str) -> Result<()> {
        let dir = self.records_dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(io(format!("removing {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(cid: &str, ip: &str) -> EndpointRecord {
        EndpointRecord {
            container_id: cid.into(),
            container_name: format!("n-{cid}"),
            endpoint_id: format!("e-{cid}"),
            ip: Some(ip.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn endpoints_and_leases_come_and_go_together() {
        let root = tempfile::tempdir().unwrap();
        let s = Store::new(root.path());
        assert!(!s.has_endpoints("n").unwrap());
        s.put_endpoint("n", &ep("c1", "10.0.0.2")).unwrap();
        s.put_endpoint("n", &ep("c2", "10.0.0.3")).unwrap();
        let mut c2 = ep("c2", "10.0.0.4");
        c2.ip6 = Some("fd00::4".parse().unwrap());
        s.put_endpoint("n", &c2).unwrap();
        let l = s.leased("n").unwrap();
        let v4: Vec<String> = l.v4.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            v4,
            ["10.0.0.2", "10.0.0.4"],
            "a changed address frees the old one"
        );
        assert_eq!(l.v6.len(), 1);
        assert_eq!(s.endpoints("n").unwrap()["c2"], c2);
        assert_eq!(s.remove_endpoint("n", "c2").unwrap(), Some(c2));
        assert_eq!(s.remove_endpoint("n", "c2").unwrap(), None);
        let l = s.leased("n").unwrap();
        assert_eq!((l.v4.len(), l.v6.len()), (1, 0));
        assert_eq!(s.endpoint_ids("n").unwrap(), ["c1"]);
    }

    #[test]
    fn a_lease_left_by_a_crash_is_repaired_and_one_in_use_is_not() {
        let root = tempfile::tempdir().unwrap();
        let s = Store::new(root.path());
        s.put_endpoint("n", &ep("c1", "10.0.0.2")).unwrap();
        // A lease made, its endpoint's file never written (killed in between).
        std::os::unix::fs::symlink("c9", s.leases_dir("n").join("10.0.0.3")).unwrap();
        assert_eq!(s.leased("n").unwrap().v4.len(), 2);
        assert!(s.repair_leases("n").unwrap());
        let v4: Vec<String> = s
            .leased("n")
            .unwrap()
            .v4
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v4, ["10.0.0.2"]);
        assert!(!s.repair_leases("n").unwrap());
        // A leftover lease is taken over by the next endpoint given that address.
        std::os::unix::fs::symlink("c9", s.leases_dir("n").join("10.0.0.3")).unwrap();
        s.put_endpoint("n", &ep("c3", "10.0.0.3")).unwrap();
        assert!(!s.repair_leases("n").unwrap());
        s.remove_records("n").unwrap();
        assert!(!s.records_dir("n").exists());
    }
}
