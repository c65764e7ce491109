//! `cni`: any CNI plugin chain as an rbox network (libnetwork's "remote driver", in the form
//! plugins speak today).
//!
//! - **Networks**: every configuration list in the CNI directory (`conflist::conf_dir`:
//!   RBOX_CNI_CONF_DIR / `--cni-conf-dir`, default /etc/cni/net.d) is a network of every root
//!   under its `name` (`merge`: listed with a stable id derived from the name; its state file,
//!   holding its endpoints, exists while it has some (`Store::save`); the file is read again at each use,
//!   as nerdctl and podman do). A root's own network of the same name hides it. `network
//!   create -d cni -o cni.conflist=PATH NAME` copies a list into the root under NAME instead.
//!   The plugins are told the rbox network's name.
//! - **Endpoints**: `join` is ADD through the list (`attach`), in a sandbox rbox made; the
//!   plugins choose the addresses (`Ipam::Driver`): `--ip`/`--mac-address` go in CNI_ARGS as
//!   `IP=`/`MAC=` with `IgnoreUnknown=1` (and `mac` to plugins with that capability) and a
//!   plugin that does not honour them fails the join. `-p` goes to plugins with the
//!   `portMappings` capability (portmap) as their runtime config; rbox reserves the host ports
//!   and records them, but writes no rules of its own (`maps_ports`). `leave` and `release`
//!   are DEL with what ADD was told, so `rm`, `disconnect` and crash repair give back the
//!   plugins' leases.
//! - **Names**: the embedded resolver serves the addresses the plugins gave.
//! - **Plugins** are looked up in RBOX_CNI_PATH (default /usr/lib/cni:/opt/cni/bin) and run by
//!   `exec` with a deadline (RBOX_CNI_TIMEOUT seconds, default 60).

mod attach;
pub mod conflist;
mod exec;
mod result;
mod version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{Caps, Driver, DriverOpts, Ipam, Namespace, PortPath};
use crate::error::{Error, Result};
use crate::firewall::Firewall;
use crate::network::{Assigned, EndpointRecord, Network, Store};
use crate::ports::PortBinding;
use crate::sandbox::Sandbox;
pub use conflist::conf_dir;
use conflist::{Conflist, Found, PORT_MAPPINGS};

/// The `-o` key of `network create -d cni`: the configuration list to copy.
pub const OPT_CONFLIST: &str = "cni.conflist";

/// A CNI network's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// The file the list was read from.
    pub file: PathBuf,
    /// Defined by that file in the configuration directory (read again at each use, gone with
    /// the file), rather than copied into the root by `network create`.
    #[serde(default)]
    pub discovered: bool,
    /// The list as read.
    pub conflist: Value,
}

/// The driver; `root` is where attachments are recorded (`None`: only its capabilities and
/// options are asked for).
pub struct Cni {
    root: Option<PathBuf>,
}

impl Cni {
    pub const NAME: &'static str = "cni";

    pub fn new(root: Option<&Path>) -> Cni {
        Cni {
            root: root.map(Path::to_path_buf),
        }
    }

    fn root(&self) -> Result<&Path> {
        self.root
            .as_deref()
            .ok_or_else(|| Error::Invalid("the cni driver was asked to act without a root".into()))
    }
}

pub(crate) fn options(net: &Network) -> Result<&Options> {
    match &net.driver_opts {
        DriverOpts::Cni(o) => Ok(o),
        _ => Err(Error::Invalid(format!(
            "network {} has no CNI configuration",
            net.name
        ))),
    }
}

/// The network's list, checked; the error names the network and its file.
fn checked(net: &Network) -> Result<Conflist> {
    let o = options(net)?;
    Conflist::parse(&o.conflist)
        .map_err(|e| Error::Invalid(format!("network {} ({}): {e}", net.name, o.file.display())))
}

/// The id of the network a configuration file names `name`: the same in every root and run.
pub fn discovered_id(name: &str) -> String {
    hex::encode(Sha256::digest(format!("rbox cni network\0{name}")))
}

/// Sets what a network shows of its list: pools, IPv6, the file in `Options`.
fn describe(net: &mut Network) {
    let Ok(o) = options(net) else {
        return;
    };
    let file = o.file.display().to_string();
    let (v4, v6) = Conflist::parse(&o.conflist)
        .map(|c| c.pools())
        .unwrap_or((None, None));
    net.enable_ipv6 = v6.is_some();
    net.ipam = v4;
    net.ipam6 = v6;
    net.options.insert(OPT_CONFLIST.into(), file);
}

fn from_found(f: &Found) -> Network {
    let mut net = Network::new(&f.name, Cni::NAME, BTreeMap::new());
    net.id = discovered_id(&f.name);
    if let Some(t) = f.modified {
        net.created = chrono::DateTime::<chrono::Utc>::from(t)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    }
    net.attachable = true;
    net.driver_opts = DriverOpts::Cni(Options {
        file: f.path.clone(),
        discovered: true,
        conflist: f.value.clone(),
    });
    describe(&mut net);
    net
}

/// Adds the configuration directory's networks to a root's `stored` ones: a stored copy (one
/// with endpoints) takes the file's current list; a file whose name a network of the root
/// already has is hidden by it; a copy whose file is gone stays while it has endpoints, so
/// that they can still be removed.
pub(crate) fn merge(stored: &mut Vec<Network>, has_endpoints: &dyn Fn(&str) -> bool) {
    let (found, _) = conflist::scan(&conf_dir());
    let mut present = Vec::new();
    for f in &found {
        let fresh = from_found(f);
        present.push(fresh.id.clone());
        if let Some(n) = stored.iter_mut().find(|n| n.id == fresh.id) {
            n.driver_opts = fresh.driver_opts;
            n.created = fresh.created;
            describe(n);
        } else if !stored.iter().any(|n| n.name == f.name) {
            stored.push(fresh);
        }
    }
    stored.retain(|n| {
        let discovered = options(n).is_ok_and(|o| o.discovered);
        !discovered || present.contains(&n.id) || has_endpoints(&n.id)
    });
}

/// The network of the configuration directory with id `id`, if one has it.
pub(crate) fn external(id: &str) -> Option<Network> {
    conflist::scan(&conf_dir())
        .0
        .iter()
        .find(|f| discovered_id(&f.name) == id)
        .map(from_found)
}

/// A stored CNI network as it is now: a directory's one with its file's current list.
pub(crate) fn refresh(net: &mut Network) {
    let Ok(o) = options(net) else {
        return;
    };
    if o.discovered {
        if let Ok(f) = conflist::read(&o.file) {
            if discovered_id(&f.name) == net.id {
                net.driver_opts = from_found(&f).driver_opts;
            }
        }
    }
    describe(net);
}

/// One line for each file of the configuration directory that defines no network, a list
/// that cannot run (it stays listed, so that using it says why), or a network that another
/// file or the root's own network of that name hides.
pub fn problems(root_networks: &[Network]) -> Vec<String> {
    let (found, mut problems) = conflist::scan(&conf_dir());
    for f in found {
        if let Err(e) = Conflist::parse(&f.value) {
            problems.push(format!("{}: {e}", f.path.display()));
            continue;
        }
        let hidden = root_networks
            .iter()
            .any(|n| n.name == f.name && n.id != discovered_id(&f.name));
        if hidden {
            problems.push(format!(
                "{}: network {} is hidden by this root's own network of that name",
                f.path.display(),
                f.name
            ));
        }
    }
    problems
}

/// portmap's runtime config for the host ports reserved for an endpoint: an unspecified host
/// address is left out (every address of the container's families), `[::1]` is not
/// forwardable (rbox's port proxy serves it).
fn port_mappings(ports: &[PortBinding]) -> Value {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for b in ports {
        if b.host_ip.is_loopback() && b.host_ip.is_ipv6() {
            continue;
        }
        let host = (!b.host_ip.is_unspecified()).then(|| b.host_ip.to_string());
        let key = (host.clone(), b.host_port, b.container_port, b.proto);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let mut m = json!({"hostPort": b.host_port, "containerPort": b.container_port,
                           "protocol": b.proto.to_string()});
        if let Some(h) = host {
            m["hostIP"] = Value::from(h);
        }
        out.push(m);
    }
    Value::Array(out)
}

impl Driver for Cni {
    fn name(&self) -> &'static str {
        Cni::NAME
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::Driver,
            namespace: Namespace::Joined,
            exclusive: false,
            ports: true,
            // The plugins set the sandbox's routes themselves.
            default_route: false,
            dns: true,
        }
    }

    fn maps_ports(&self) -> bool {
        true
    }

    /// `-o cni.conflist=PATH`: the list is read and checked now and copied into the root.
    fn parse_options(
        &self,
        _network_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<DriverOpts> {
        if let Some(k) = options.keys().find(|k| *k != OPT_CONFLIST) {
            return Err(super::unknown_option(self.name(), k));
        }
        let Some(path) = options.get(OPT_CONFLIST) else {
            return Err(Error::Invalid(format!(
                "the cni driver needs -o {OPT_CONFLIST}=PATH (a CNI configuration list)"
            )));
        };
        let file = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
        let found = conflist::read(&file).map_err(Error::Invalid)?;
        Conflist::parse(&found.value)
            .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
        Ok(DriverOpts::Cni(Options {
            file,
            discovered: false,
            conflist: found.value,
        }))
    }

    /// The plugins exist, and the list's pool overlaps no other network of the root.
    fn check(&self, net: &Network, others: &[Network]) -> Result<()> {
        if net.internal {
            return Err(Error::Invalid(
                "--internal is not supported by the cni driver: its plugins decide where traffic goes".into(),
            ));
        }
        let list = checked(net)?;
        let dirs = exec::plugin_dirs();
        for kind in list.types() {
            exec::find(kind, &dirs).map_err(Error::Invalid)?;
        }
        let (v4, _) = list.pools();
        if let Some(mine) = v4 {
            if let Some(o) = others.iter().find(|o| {
                o.ipam
                    .as_ref()
                    .is_some_and(|i| crate::ipam::overlaps(&i.subnet, &mine.subnet))
            }) {
                return Err(Error::Conflict(format!(
                    "invalid pool request: Pool overlaps with other one on this address space (network {})",
                    o.name
                )));
            }
        }
        Ok(())
    }

    fn check_remove(&self, net: &Network) -> Result<()> {
        match options(net) {
            Ok(o) if o.discovered => Err(Error::Invalid(format!(
                "network {} is defined by {}: remove that file to remove it",
                net.name,
                o.file.display()
            ))),
            _ => Ok(()),
        }
    }

    /// A network's own kernel objects are its plugins' (a CNI bridge stays, as with other
    /// runtimes); what goes is what is still recorded of endpoints on it.
    fn delete_network(&self, net: &Network, _fw: &dyn Firewall) -> Result<()> {
        self.sweep(net)
    }

    /// DEL of every attachment recorded for no endpoint of `net` (or for another interface
    /// than its endpoint's). An endpoint is recorded before its ADD and dropped after its DEL,
    /// so what is left here is what a failed DEL left behind.
    fn sweep(&self, net: &Network) -> Result<()> {
        let root = self.root()?;
        let dirs = exec::plugin_dirs();
        let mut errors = crate::error::Errors::default();
        for a in attach::recorded(root, &net.id) {
            let live = Store::new(root)
                .endpoint(&net.id, &a.container_id)?
                .is_some_and(|e| e.interface == a.ifname);
            if !live {
                errors.check(attach::remove(
                    root,
                    &net.id,
                    &a.container_id,
                    &a.ifname,
                    &dirs,
                ));
            }
        }
        errors.into_result()
    }

    /// ADD. `ep` comes with what the container asked for (`ip`, `mac`, `ports`) and leaves
    /// with what the plugins assigned.
    fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        sandbox: &Sandbox,
        _fw: &dyn Firewall,
    ) -> Result<()> {
        let root = self.root()?;
        let list = checked(net)?;
        if ep.ip6.is_some() {
            return Err(Error::Invalid(format!(
                "network {}: --ip6 is not supported on CNI networks",
                net.name
            )));
        }
        let mut args = vec!["IgnoreUnknown=1".to_string()];
        let mut runtime_config = Map::new();
        if let Some(ip) = ep.ip {
            args.push(format!("IP={ip}"));
        }
        let want_mac = (!ep.mac.is_empty()).then(|| ep.mac.to_ascii_lowercase());
        if let Some(mac) = &want_mac {
            args.push(format!("MAC={mac}"));
            runtime_config.insert("mac".into(), Value::from(mac.as_str()));
        }
        if !ep.ports.is_empty() {
            if !list.has_capability(PORT_MAPPINGS) {
                return Err(no_ports(net));
            }
            runtime_config.insert(PORT_MAPPINGS.into(), port_mappings(&ep.ports));
        }
        let att = attach::Attachment {
            network: net.name.clone(),
            network_id: net.id.clone(),
            container_id: sandbox.container_id.clone(),
            ifname: ep.interface.clone(),
            netns: sandbox.path().to_path_buf(),
            version: String::new(),
            wanted_version: list.version.clone(),
            plugins: list.plugins.clone(),
            args: args.join(";"),
            runtime_config,
            result: None,
        };
        let dirs = exec::plugin_dirs();
        let att = attach::add(root, att, &dirs)?;
        let undo = |e: Error| {
            let _ = attach::remove(root, &net.id, &att.container_id, &att.ifname, &dirs);
            e
        };
        let got = result::read(att.result.as_ref().unwrap_or(&Value::Null), &ep.interface)
            .map_err(|e| undo(Error::Plugin(format!("network {}: {e}", net.name))))?;
        if let Some(want) = ep.ip {
            if got.ip4() != Some(want) {
                return Err(undo(Error::Invalid(format!(
                    "network {}: its plugins did not assign the requested address {want}",
                    net.name
                ))));
            }
        }
        if let Some(want) = &want_mac {
            if &got.mac != want {
                return Err(undo(Error::Invalid(format!(
                    "network {}: its plugins did not set the requested MAC address {want}",
                    net.name
                ))));
            }
        }
        ep.ip = got.ip4();
        ep.ip6 = got.ip6();
        ep.mac = got.mac.clone();
        ep.assigned = Some(Assigned {
            subnet: got.v4.map(|(n, _)| n),
            gateway: got.v4.and_then(|(_, g)| g),
            subnet6: got.v6.map(|(n, _)| n),
            gateway6: got.v6.and_then(|(_, g)| g),
        });
        Ok(())
    }

    /// DEL while the sandbox still exists (disconnect).
    fn leave(&self, net: &Network, ep: &EndpointRecord, sandbox: Option<&Sandbox>) -> Result<()> {
        let id = sandbox.map_or(ep.container_id.as_str(), |s| s.container_id.as_str());
        attach::remove(
            self.root()?,
            &net.id,
            id,
            &ep.interface,
            &exec::plugin_dirs(),
        )
    }

    /// DEL (rm, crash repair); nothing when `leave` did it already.
    fn release(&self, net: &Network, ep: &EndpointRecord) -> Result<()> {
        attach::remove(
            self.root()?,
            &net.id,
            &ep.container_id,
            &ep.interface,
            &exec::plugin_dirs(),
        )
    }

    /// Ports go to the list's portmap; a list without one carries none.
    fn port_path(&self, net: &Network) -> Result<PortPath> {
        if !checked(net)?.has_capability(PORT_MAPPINGS) {
            return Err(no_ports(net));
        }
        Ok(PortPath {
            interface: String::new(),
            host_ip: None,
        })
    }
}

fn no_ports(net: &Network) -> Error {
    Error::Invalid(format!(
        "network {} cannot publish ports: no plugin of its CNI configuration has the {PORT_MAPPINGS} capability (add portmap)",
        net.name
    ))
}

/// What `network inspect` shows of a CNI network beside Docker's fields: the file and the list.
pub(crate) fn inspect(o: &Options) -> Value {
    json!({"Conflist": o.file.display().to_string(), "Discovered": o.discovered,
           "Config": o.conflist})
}

/// Whether the list's first plugin puts the gateway on the host: a `bridge` with `isGateway`
/// (the bridge holds it) or `ptp` (the host end of each pair does). Others (macvlan, ipvlan,
/// host-device) attach to a LAN whose gateway is some other machine, so rbox's resolver
/// cannot serve them and their containers get the host's resolvers.
pub(crate) fn gateway_on_host(o: &Options) -> bool {
    let Ok(list) = Conflist::parse(&o.conflist) else {
        return false;
    };
    let Some(first) = list.plugins.first() else {
        return false;
    };
    match first.get("type").and_then(Value::as_str) {
        Some("bridge") => first.get("isGateway").and_then(Value::as_bool) == Some(true),
        Some("ptp") => true,
        _ => false,
    }
}

/// The IPAM plugin of the list's first plugin (`network inspect`'s `IPAM.Driver`).
pub(crate) fn ipam_driver(o: &Options) -> Option<String> {
    Conflist::parse(&o.conflist)
        .ok()?
        .plugins
        .iter()
        .find_map(|p| p.get("ipam")?.get("type")?.as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Proto;

    #[test]
    fn port_mappings_leave_out_unspecified_addresses_and_v6_loopback() {
        let b = |ip: &str, hp: u16| PortBinding {
            host_ip: ip.parse().unwrap(),
            host_port: hp,
            container_port: 80,
            proto: Proto::Tcp,
        };
        let m = port_mappings(&[
            b("0.0.0.0", 8080),
            b("::", 8080),
            b("::1", 8081),
            b("127.0.0.1", 8082),
        ]);
        assert_eq!(
            m,
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                   {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
        );
    }

    #[test]
    fn directory_networks_merge_with_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-k.conflist"),
            r#"{"cniVersion":"1.0.0","name":"kn","plugins":[{"type":"bridge",
               "ipam":{"type":"host-local","ranges":[[{"subnet":"10.187.3.0/24"}]]}}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("20-h.conflist"),
            r#"{"name":"taken","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        let (found, _) = conflist::scan(dir.path());
        let mut nets = vec![Network::new("taken", "bridge", BTreeMap::new())];
        // `merge` reads the process's directory; the same steps on this one:
        for f in &found {
            if !nets.iter().any(|n| n.name == f.name) {
                nets.push(from_found(f));
            }
        }
        let kn = nets.iter().find(|n| n.name == "kn").unwrap();
        assert_eq!(kn.id, discovered_id("kn"));
        assert_eq!(kn.driver, "cni");
        assert_eq!(
            kn.ipam.as_ref().unwrap().subnet.to_string(),
            "10.187.3.0/24"
        );
        assert!(kn.options[OPT_CONFLIST].ends_with("10-k.conflist"));
        assert_eq!(
            ipam_driver(options(kn).unwrap()).as_deref(),
            Some("host-local")
        );
        assert_eq!(nets.iter().filter(|n| n.name == "taken").count(), 1);
        assert_eq!(
            nets.iter().find(|n| n.name == "taken").unwrap().driver,
            "bridge"
        );
        assert_ne!(discovered_id("a"), discovered_id("b"));
        assert!(Cni::new(None).check_remove(kn).is_err());
        // A bridge without isGateway, as the list says: no address of the host to serve names on.
        assert!(!gateway_on_host(options(kn).unwrap()));
        let with = |v: Value| Options {
            file: "x".into(),
            discovered: false,
            conflist: v,
        };
        assert!(gateway_on_host(&with(
            json!({"plugins": [{"type": "bridge", "isGateway": true}, {"type": "portmap"}]})
        )));
        assert!(gateway_on_host(&with(json!({"type": "ptp"}))));
        assert!(!gateway_on_host(&with(
            json!({"type": "macvlan", "master": "eth0"})
        )));
    }
}
