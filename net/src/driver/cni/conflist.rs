//! CNI network configuration lists: reading them (a `.conflist`, or a single-plugin `.conf` as
//! libcni accepts it), checking them, finding them in the configuration directory, and what rbox
//! can tell of a network from its plugins alone (its pool, whether it maps ports).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use crate::ipam::{Ipam6Config, IpamConfig};

/// Where conflists are looked for: RBOX_CNI_CONF_DIR (set by `--cni-conf-dir`), else the CNI
/// default.
pub fn conf_dir() -> PathBuf {
    std::env::var_os("RBOX_CNI_CONF_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/cni/net.d"))
}

/// The capability of a plugin that maps host ports (portmap's).
pub const PORT_MAPPINGS: &str = "portMappings";

/// A checked configuration list. `name` is not kept: the plugins are given the rbox network's.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflist {
    /// `cniVersion` as written (negotiated down to what the plugins speak at use).
    pub version: Option<String>,
    /// Each plugin's own configuration, in order; every one has a distinct `type`.
    pub plugins: Vec<Map<String, Value>>,
}

impl Conflist {
    /// Checks `v` (a list with `plugins`, or one plugin's configuration); the error says what
    /// is wrong with it, without saying where it came from.
    pub fn parse(v: &Value) -> Result<Conflist, String> {
        let Some(top) = v.as_object() else {
            return Err("not a JSON object".into());
        };
        let version = match top.get("cniVersion") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err("cniVersion is not a string".into()),
        };
        let plugins: Vec<Map<String, Value>> = match top.get("plugins") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|p| {
                    p.as_object()
                        .cloned()
                        .ok_or("a plugin is not a JSON object")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("plugins is not a list".into()),
            // A single plugin's configuration (`.conf`).
            None if top.contains_key("type") => vec![top.clone()],
            None => return Err("no plugins".into()),
        };
        if plugins.is_empty() {
            return Err("no plugins".into());
        }
        let mut seen = BTreeSet::new();
        for p in &plugins {
            let t = match p.get("type") {
                Some(Value::String(t)) if !t.is_empty() => t,
                _ => return Err("a plugin has no type".into()),
            };
            if t.contains('/') || t.starts_with('.') {
                return Err(format!("invalid plugin type {t:?}"));
            }
            if !seen.insert(t.clone()) {
                return Err(format!("plugin {t} is listed twice"));
            }
        }
        Ok(Conflist { version, plugins })
    }

    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
    }

    /// Whether a plugin declares `capability` (`"capabilities": {"portMappings": true}`).
    pub fn has_capability(&self, capability: &str) -> bool {
        self.plugins.iter().any(|p| declares(p, capability))
    }

    /// The pool the first plugin's host-local (or static) IPAM hands addresses from, as far as
    /// its configuration says: shown by `network inspect`, kept clear of new rbox networks,
    /// and the subnet names are resolved in.
    pub fn pools(&self) -> (Option<IpamConfig>, Option<Ipam6Config>) {
        let Some(ipam) = self
            .plugins
            .iter()
            .find_map(|p| p.get("ipam").and_then(Value::as_object))
        else {
            return (None, None);
        };
        let mut v4 = None;
        let mut v6 = None;
        for (subnet, gateway) in ranges(ipam) {
            match subnet {
                IpNetwork::V4(s) if v4.is_none() => {
                    let gateway = match gateway {
                        Some(IpAddr::V4(g)) => g,
                        _ => first_host4(s),
                    };
                    let subnet = ipnetwork::Ipv4Network::new(s.network(), s.prefix()).unwrap_or(s);
                    v4 = Some(IpamConfig {
                        subnet,
                        gateway,
                        ip_range: None,
                        aux: Default::default(),
                    });
                }
                IpNetwork::V6(s) if v6.is_none() => {
                    let gateway = match gateway {
                        Some(IpAddr::V6(g)) => g,
                        _ => std::net::Ipv6Addr::from(u128::from(s.network()) + 1),
                    };
                    v6 = Some(Ipam6Config { subnet: s, gateway });
                }
                _ => {}
            }
        }
        (v4, v6)
    }
}

/// Whether plugin `p` declares `capability`.
pub fn declares(p: &Map<String, Value>, capability: &str) -> bool {
    p.get("capabilities")
        .and_then(|c| c.get(capability))
        .and_then(Value::as_bool)
        == Some(true)
}

fn first_host4(s: ipnetwork::Ipv4Network) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(s.network()) + 1)
}

/// host-local's `ranges` (sets of ranges), its older `subnet`/`gateway`, static's `addresses`.
fn ranges(ipam: &Map<String, Value>) -> Vec<(IpNetwork, Option<IpAddr>)> {
    let parse = |r: &Value| -> Option<(IpNetwork, Option<IpAddr>)> {
        let subnet = r
            .get("subnet")
            .or_else(|| r.get("address"))?
            .as_str()?
            .parse()
            .ok()?;
        let gateway = r
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        Some((subnet, gateway))
    };
    let mut out = Vec::new();
    if let Some(sets) = ipam.get("ranges").and_then(Value::as_array) {
        for set in sets {
            out.extend(set.as_array().into_iter().flatten().filter_map(parse));
        }
    }
    if let Some(addrs) = ipam.get("addresses").and_then(Value::as_array) {
        out.extend(addrs.iter().filter_map(parse));
    }
    out.extend(parse(&Value::Object(ipam.clone())));
    out
}

/// One configuration file of the directory, with the network name it defines.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub name: String,
    pub value: Value,
    pub modified: Option<std::time::SystemTime>,
}

/// The directory's configurations in libcni's order (by file name; `.conf`, `.conflist` and
/// `.json`), the first of each name; and one line for each file that defines no network.
pub fn scan(dir: &Path) -> (Vec<Found>, Vec<String>) {
    let mut found: Vec<Found> = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (found, problems);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    paths.sort();
    for path in paths {
        match read(&path) {
            Ok(f) if found.iter().any(|o| o.name == f.name) => problems.push(format!(
                "{}: network {} is already defined by an earlier file",
                path.display(),
                f.name
            )),
            Ok(f) => found.push(f),
            Err(e) => problems.push(e),
        }
    }
    (found, problems)
}

/// Reads one configuration file; the error is one line naming the file.
pub fn read(path: &Path) -> Result<Found, String> {
    let what = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{what}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{what}: not a file"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{what}: {e}"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{what}: not JSON: {e}"))?;
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{what}: no network name"))?
        .to_string();
    Ok(Found {
        path: path.to_path_buf(),
        name,
        value,
        modified: meta.modified().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_and_single_confs_are_checked() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local",
                "ranges": [[{"subnet": "10.187.1.0/24"}], [{"subnet": "fd00:187::/64"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]});
        let c = Conflist::parse(&list).unwrap();
        assert_eq!(c.version.as_deref(), Some("1.0.0"));
        assert_eq!(c.types().collect::<Vec<_>>(), ["bridge", "portmap"]);
        assert!(c.has_capability(PORT_MAPPINGS));
        let (v4, v6) = c.pools();
        let v4 = v4.unwrap();
        assert_eq!(
            (v4.subnet.to_string(), v4.gateway.to_string()),
            ("10.187.1.0/24".into(), "10.187.1.1".into())
        );
        assert_eq!(v6.unwrap().gateway.to_string(), "fd00:187::1");

        let single = json!({"cniVersion": "0.4.0", "name": "n", "type": "macvlan",
            "master": "eth9", "ipam": {"type": "host-local", "subnet": "10.187.2.0/24",
            "gateway": "10.187.2.254"}});
        let c = Conflist::parse(&single).unwrap();
        assert_eq!(c.plugins.len(), 1);
        assert!(!c.has_capability(PORT_MAPPINGS));
        assert_eq!(c.pools().0.unwrap().gateway.to_string(), "10.187.2.254");
        assert_eq!(c.pools().1, None);

        for (bad, want) in [
            (json!([1]), "not a JSON object"),
            (json!({"name": "n"}), "no plugins"),
            (json!({"name": "n", "plugins": []}), "no plugins"),
            (
                json!({"name": "n", "plugins": [{"x": 1}]}),
                "a plugin has no type",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "bridge"}, {"type": "bridge"}]}),
                "plugin bridge is listed twice",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "../bin/sh"}]}),
                "invalid plugin type",
            ),
        ] {
            let e = Conflist::parse(&bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn scan_takes_the_first_of_each_name_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let w = |f: &str, s: &str| std::fs::write(dir.path().join(f), s).unwrap();
        w(
            "10-a.conflist",
            r#"{"name":"a","plugins":[{"type":"bridge"}]}"#,
        );
        w("20-b.conf", r#"{"name":"b","type":"ptp"}"#);
        w(
            "30-a.conflist",
            r#"{"name":"a","plugins":[{"type":"ptp"}]}"#,
        );
        w("40-bad.conflist", "{not json");
        w("50-noname.json", r#"{"plugins":[]}"#);
        w("README", "ignored");
        let (found, problems) = scan(dir.path());
        let names: Vec<_> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(found[0].path.ends_with("10-a.conflist"));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("30-a.conflist: network a is already defined"));
        assert!(problems[1].contains("40-bad.conflist: not JSON"));
        assert!(problems[2].contains("50-noname.json: no network name"));
        assert!(scan(&dir.path().join("missing")).0.is_empty());
    }
}
