//! Network drivers (libnetwork's `Driver`): what a network type does to the kernel when a
//! network is created or deleted and when a sandbox joins or leaves it, and what the generic
//! code may ask of it (`Caps`) instead of comparing driver names.
//!
//! Adding a driver is one file here and one match arm: `driver/macvlan.rs` holds its typed
//! options (a variant of `DriverOpts`, parsed and validated by `parse_options`) and its
//! `impl Driver`; `driver()` gets the arm `"macvlan" => ...`. Nothing outside `driver/` names a
//! driver: endpoints, ports, DNS, `network create/rm/reload` and the runtime only read `caps()`
//! and call the trait. Drivers whose endpoints are children of a host link (macvlan, ipvlan)
//! share `parent` (the parent link, VLAN and dummy links, the host shim, wiring a child into a
//! sandbox); a new one of that kind also gets an arm in `DriverOpts::parent`.
//! `cni` is the one driver with state outside the root's network files (the directory's lists,
//! its attachment records under `<root>/cni/`): `merge_external`, `external` and `refresh` are
//! its hooks into the `Store`.

pub mod bridge;
pub mod cni;
pub mod host;
pub mod ipvlan;
pub mod macvlan;
pub mod null;
pub mod overlay;
pub mod parent;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::firewall::{Firewall, FwNetwork};
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;
use crate::EndpointRequest;

/// Where the addresses of a driver's endpoints come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipam {
    /// rbox's IPAM leases them from the network's subnets (under the network's lock).
    Local,
    /// Endpoints have no address (host, none).
    None,
    /// The driver assigns them in `join` (a CNI plugin, DHCP); they are recorded after it.
    Driver,
}

/// How a container on the network relates to its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// The container shares the host's namespace: no sandbox, nothing to join (host).
    Host,
    /// A sandbox with only `lo`; the container records no endpoint (none).
    Empty,
    /// A sandbox that the driver wires into the network in `join`.
    Joined,
}

/// What generic code needs to know about a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub ipam: Ipam,
    pub namespace: Namespace,
    /// A container on it can be on no other network (host, none); such a network is a
    /// predefined singleton that `network create` refuses to make another of.
    pub exclusive: bool,
    /// Published ports can reach a container through it (see `Driver::port_path`).
    pub ports: bool,
    /// Its endpoints can carry the sandbox's default route (see `Driver::set_default_route`).
    pub default_route: bool,
    /// The embedded resolver serves its user networks.
    pub dns: bool,
}

/// How published ports reach a container on a network.
#[derive(Debug, Clone, PartialEq)]
pub struct PortPath {
    /// The host interface the container is reached through: port rules match on it.
    pub interface: String,
    /// The host address of a `-p` without one (`host_binding_ipv4`); `None`: every address.
    pub host_ip: Option<IpAddr>,
}

/// A driver's own settings, parsed from `-o` at `network create` and stored with the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverOpts {
    #[default]
    None,
    Bridge(bridge::Options),
    Cni(cni::Options),
    Macvlan(macvlan::Options),
    Ipvlan(ipvlan::Options),
    Overlay(overlay::Options),
}

impl DriverOpts {
    /// The parent link of a network whose endpoints are its children (macvlan, ipvlan): the
    /// drivers of such networks check each other's parents.
    pub fn parent(&self) -> Option<&parent::Parent> {
        match self {
            DriverOpts::Macvlan(o) => Some(&o.parent),
            DriverOpts::Ipvlan(o) => Some(&o.parent),
            DriverOpts::None
            | DriverOpts::Bridge(_)
            | DriverOpts::Cni(_)
            | DriverOpts::Overlay(_) => None,
        }
    }

    /// `network inspect`'s `IPAM.Driver`.
    pub fn ipam_driver(&self) -> String {
        match self {
            DriverOpts::Cni(o) => cni::ipam_driver(o).unwrap_or_else(|| "cni".into()),
            _ => "default".into(),
        }
    }

    /// Whether the embedded resolver can serve the network's containers: it listens on the
    /// gateway, which must then be an address of the host (not so on a CNI macvlan LAN).
    pub fn gateway_on_host(&self) -> bool {
        match self {
            DriverOpts::Cni(o) => cni::gateway_on_host(o),
            _ => true,
        }
    }

    /// What `network inspect` shows of the driver's settings beside Docker's fields.
    pub fn inspect(&self) -> Option<(&'static str, serde_json::Value)> {
        match self {
            DriverOpts::Cni(o) => Some(("CNI", cni::inspect(o))),
            _ => None,
        }
    }
}

/// One network type. Only `name` and `caps` are required: the defaults suit a driver with nothing in the
/// kernel (host, none). Every method that makes something is undone by its counterpart, and
/// undoing succeeds when the thing is already gone (crash repair calls it again).
pub trait Driver {
    /// Docker's name for it (`network create -d`, inspect's `Driver`).
    fn name(&self) -> &'static str;

    fn caps(&self) -> Caps;

    /// Docker's scope: "local" (the network exists on this host) or "global" (one network
    /// across the hosts sharing a cluster store; see `allocate`, `attach_host`).
    fn scope(&self) -> &'static str {
        "local"
    }

    /// Parses and validates `network create -o` (Docker's `com.docker.network.*` keys) for a
    /// new network with id `network_id`; an unknown key is refused.
    fn parse_options(
        &self,
        network_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<DriverOpts> {
        let _ = network_id;
        match options.keys().next() {
            Some(k) => Err(unknown_option(self.name(), k)),
            None => Ok(DriverOpts::None),
        }
    }

    /// Whether a network with these options is internal whatever `--internal` says (a macvlan
    /// without a parent has nowhere to go).
    fn internal(&self, opts: &DriverOpts) -> bool {
        let _ = opts;
        false
    }

    /// Checks a new network against the root's `others` and the host before anything is made.
    fn check(&self, net: &Network, others: &[Network]) -> Result<()> {
        let _ = (net, others);
        Ok(())
    }

    /// Refuses `network rm` of a network that is not the root's to remove (a CNI list of the
    /// configuration directory goes with its file).
    fn check_remove(&self, net: &Network) -> Result<()> {
        let _ = net;
        Ok(())
    }

    /// Whether the driver maps published ports itself when an endpoint joins (a CNI list's
    /// portmap): `connect` hands it the reserved host ports in `EndpointRecord::ports`, and
    /// rbox only holds and records them, writing no firewall rules for them.
    fn maps_ports(&self) -> bool {
        false
    }

    /// What the user should be told about a new network that is nonetheless made (`network
    /// create` prints them as warnings).
    fn warnings(&self, net: &Network) -> Vec<String> {
        let _ = net;
        Vec::new()
    }

    /// Checks what a container asks of its endpoint on `net` before anything is leased (ipvlan
    /// refuses `--mac-address`: its children have the parent's).
    fn check_endpoint(&self, net: &Network, req: &EndpointRequest) -> Result<()> {
        let _ = (net, req);
        Ok(())
    }

    /// Reserves what a global network must hold cluster-wide before anything is made (its name,
    /// subnet, an overlay's VNI, recorded in `net.driver_opts`; libnetwork's NetworkAllocate).
    /// Undone by `free`.
    fn allocate(&self, net: &mut Network) -> Result<()> {
        let _ = net;
        Ok(())
    }

    /// Gives back what `allocate` reserved (`network rm`); refused while any host has
    /// endpoints on the network.
    fn free(&self, net: &Network) -> Result<()> {
        let _ = net;
        Ok(())
    }

    /// Makes the network usable on this host before an endpoint leases an address from it
    /// (an overlay takes this host's share of the subnet and makes its bridge and VXLAN
    /// device), under the network's lock; may change `net` (saved with the lease). Cheap when
    /// already done.
    fn attach_host(&self, net: &mut Network, fw: &dyn Firewall) -> Result<()> {
        let _ = (net, fw);
        Ok(())
    }

    /// Undoes `attach_host` once the network's last endpoint on this host is gone (also after
    /// a lease that failed right after it), under the network's lock.
    fn detach_host(&self, net: &mut Network, fw: &dyn Firewall) -> Result<()> {
        let _ = (net, fw);
        Ok(())
    }

    /// Makes the network exist in the kernel (idempotent).
    fn create_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        let _ = (net, fw);
        Ok(())
    }

    /// Removes what `create_network` made.
    fn delete_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        let _ = (net, fw);
        Ok(())
    }

    /// Gives back what the driver still holds for endpoints `net` no longer records (a
    /// `release` that failed after the lease was dropped). `net` is freshly loaded under its
    /// lock, so an endpoint being joined is in it.
    fn sweep(&self, net: &Network) -> Result<()> {
        let _ = net;
        Ok(())
    }

    /// Fills the driver's fields of a new endpoint before its lease is recorded (the bridge
    /// names the host end of its veth), so that a crash right after leaves enough to repair.
    fn new_endpoint(&self, net: &Network, container_id: &str, ep: &mut EndpointRecord) {
        let _ = (net, container_id, ep);
    }

    /// Wires `ep` into `sandbox`; on error nothing of it is left. What it changes in `ep` is
    /// recorded (with `Ipam::Driver` the addresses; an ipvlan child's MAC, the parent's).
    fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        sandbox: &Sandbox,
        fw: &dyn Firewall,
    ) -> Result<()> {
        let _ = (net, ep, sandbox, fw);
        Ok(())
    }

    /// Unwires `ep` at once (disconnect, rollback); `sandbox` is `None` when it is gone.
    fn leave(&self, net: &Network, ep: &EndpointRecord, sandbox: Option<&Sandbox>) -> Result<()> {
        let _ = (net, ep, sandbox);
        Ok(())
    }

    /// Points the sandbox's default routes through `ep` (the network that carried them left).
    fn set_default_route(
        &self,
        net: &Network,
        ep: &EndpointRecord,
        sandbox: &Sandbox,
    ) -> Result<()> {
        let _ = (net, ep, sandbox);
        Ok(())
    }

    /// Gives back what `ep` holds outside the sandbox (a VXLAN FDB entry, a CNI DEL) when its
    /// container is removed or repaired; what lives in the sandbox goes with its namespace.
    fn release(&self, net: &Network, ep: &EndpointRecord) -> Result<()> {
        let _ = (net, ep);
        Ok(())
    }

    /// What `network reload` installs for `net`: its firewall rules, if it has any and its
    /// kernel side exists now.
    fn firewall(&self, net: &Network) -> Result<Option<FwNetwork>> {
        let _ = net;
        Ok(None)
    }

    /// How published ports reach `net`'s containers (asked only when `caps().ports`).
    fn port_path(&self, net: &Network) -> Result<PortPath> {
        Err(Error::Invalid(format!(
            "network {} cannot carry published ports",
            net.name
        )))
    }
}

/// The driver called `name` (Docker's `-d` value), for its capabilities and options.
pub fn driver(name: &str) -> Result<Box<dyn Driver>> {
    for_root(name, None)
}

/// The driver called `name` acting on `root` (drivers that record state under the root,
/// such as `cni`, need it to join and release).
pub fn for_root(name: &str, root: Option<&Path>) -> Result<Box<dyn Driver>> {
    match name {
        "bridge" => Ok(Box::new(bridge::Bridge)),
        "cni" => Ok(Box::new(cni::Cni::new(root))),
        "host" => Ok(Box::new(host::Host)),
        "macvlan" => Ok(Box::new(macvlan::Macvlan)),
        "ipvlan" => Ok(Box::new(ipvlan::Ipvlan)),
        "null" => Ok(Box::new(null::Null)),
        "overlay" => Ok(Box::new(overlay::Overlay)),
        other => Err(Error::Invalid(format!(
            "could not find plugin {other} in v1 plugin registry: plugin not found"
        ))),
    }
}

/// The networks every root starts with: the default bridge, host and none. `used` are the
/// subnets the default bridge must not overlap.
pub(crate) fn predefined(used: &[ipnetwork::Ipv4Network]) -> Result<Vec<Network>> {
    Ok(vec![
        bridge::default_network(used)?,
        host::network(),
        null::network(),
    ])
}

/// Adds to a root's stored networks those defined outside it (the CNI configuration
/// directory's), as `Store::list` shows them.
/// `has_endpoints` tells a stored network with endpoints (kept while they last).
pub(crate) fn merge_external(stored: &mut Vec<Network>, has_endpoints: &dyn Fn(&str) -> bool) {
    cni::merge(stored, has_endpoints);
}

/// Whether `net` is defined outside the root (a CNI list of the configuration directory).
pub(crate) fn is_external(net: &Network) -> bool {
    cni::options(net).is_ok_and(|o| o.discovered)
}

/// A network defined outside the root that it has not stored yet, by id.
pub(crate) fn external(id: &str) -> Option<Network> {
    cni::external(id)
}

/// Brings a stored network defined outside the root in line with its definition.
pub(crate) fn refresh(net: &mut Network) {
    cni::refresh(net);
}

/// Docker's refusal of a `-o` key the driver does not know.
pub fn unknown_option(driver: &str, key: &str) -> Error {
    Error::Invalid(format!("unknown {driver} driver option {key}"))
}

/// Session 2's state files kept the bridge's settings at the top of the network's JSON; they
/// are read into this and moved into `DriverOpts` on load.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Legacy {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    icc: Option<bool>,
    #[serde(default)]
    masquerade: Option<bool>,
}

impl Legacy {
    /// Gives `net` the driver options an old file held in legacy fields.
    pub fn migrate(self, net: &mut Network) {
        if net.driver_opts != DriverOpts::None {
            return;
        }
        if let Some(name) = self.bridge.filter(|b| !b.is_empty()) {
            net.driver_opts = DriverOpts::Bridge(bridge::Options::from_legacy(
                name,
                self.mtu,
                self.icc.unwrap_or(true),
                self.masquerade.unwrap_or(true),
                &net.options,
            ));
        }
    }
}
