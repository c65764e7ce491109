//! The Container Network Model: `Sandbox` (a container's network namespace), `Endpoint` (its
//! interface on one network), `Network` (a segment owned by a driver).
//!
//! API CONTRACT used by `runtime` (the net owner implements and may extend, keeping these):
//! - `Sandbox::create(root, container_id)`  new netns bind-mounted at `<root>/netns/<id>`, `lo` up
//! - `Sandbox::path()`                      what the OCI spec's network namespace joins by path
//! - `attachment(root, network)` -> `(Network, Caps)`: the network a `--network` value names and
//!   how a container joins it (`Caps::namespace`: host's, an empty sandbox, or joined)
//! - `connect(root, container_id, &sandbox, &EndpointRequest)` -> `EndpointSettings`
//!   (IPAM lease, then the driver joins the sandbox: for a bridge a veth with its peer created
//!   inside the sandbox, addresses, routes, rules)
//! - `disconnect(root, container_id, network)`  leave one network
//! - `release(root, container_id)`  leave every network and remove the sandbox; keeps going past
//!   errors; idempotent; works when the netns is already gone (crash repair uses it too); the
//!   endpoints are unwired when it returns (also when a `--network container:` container keeps
//!   the namespace alive)
//! - `endpoints(root, container_id)`  what the container is connected to now, for `inspect`
//! - `rename(root, container_id, name)`  its endpoints take the new name (and DNS with them)
//!
//! - `publish(root, container_id, &[PortSpec])` -> `(Vec<PortBinding>, Reservation)`: reserve
//!   host ports (the caller holds the `Reservation` while the container runs), record them in
//!   `<root>/ports/<id>.json` and install the DNAT rules; `unpublish(root, container_id)`;
//!   `published(root, container_id)`. `release` unpublishes too, so crash repair removes them.
//!   `reclaim(root, container_id)` -> `(Vec<PortBinding>, Reservation)`: binds the recorded
//!   host ports again for a new holder after the old one died (a monitor adopting a running
//!   container); a port taken meanwhile is dropped with its rules.
//!   `reserve(root, &network, &specs)` before joining + `publish_reserved` after it is the same
//!   with a taken port refused before any link exists (what `run` does). TCP that the kernel
//!   cannot forward (`[::1]`, IPv6 of a container without it) goes through a proxy process that
//!   publishing starts (on the caller's main thread: it dies with it) and `unpublish` stops:
//!   `port_proxy` is its body.
//!
//! - Names: `connect`/`disconnect`/`release`/`rename` on user networks keep the embedded DNS
//!   resolver (`dns`, one `rbox dns serve` process per root, answering on 127.0.0.11 inside each
//!   sandbox) current before they return; `dns::ensure` restarts a killed one;
//!   `dns::{resolv_conf, parse_add_host, ...}` build a container's resolver files.
//!
//! - Global networks (overlay): `cluster::select` (the process's `--cluster-store` settings),
//!   `cluster::sync`/`cluster::inspect` (`network ls`/`inspect` across hosts),
//!   `cluster::agent::{ensure, serve_main}` (the per-root helper, restarted by any command).
//!
//! - CNI networks (`driver::cni`): the CNI configuration directory's lists (RBOX_CNI_CONF_DIR)
//!   are networks of every root, `Store::list`/`load` include them; `connect`/`release` run
//!   their plugins (ADD/DEL), and `reserve` + `publish_reserved` hand `-p` to their portmap.
//!
//! Also for the CLI: `manage::{create, remove, prune, reload}` (`rbox network ...`),
//! `manage::teardown(root)` (removes the root's bridges and rules, keeps state: for
//! `system prune`), `Store` (list/find networks), `docker` (Docker's JSON and column shapes),
//! `firewall::select` (the process's firewall backend, from `--firewall`).
//!
//! Every public function leaves no thread behind (netlink runs on a current_thread runtime that
//! is dropped before returning; helper threads are joined): libcontainer forks with raw clone3.
//! Files: `<root>/networks/<id>.json` (definition + leases), `<root>/netns/<id>` (sandboxes),
//! `<root>/locks/network*.lock`; firewall rules (iptables chains RBOX-*, nft table `inet rbox`) are
//! shared by all roots on the host.

pub mod cluster;
mod conntrack;
mod context;
pub mod dns;
pub mod docker;
pub mod driver;
mod endpoint;
mod error;
#[cfg(test)]
mod fakes;
pub mod firewall;
mod helper;
pub mod ipam;
pub mod manage;
mod netlink;
pub mod network;
pub mod ports;
mod proxy;
mod records;
mod sandbox;

use std::net::IpAddr;
use std::path::Path;

use context::Context;
pub use driver::{Caps, Namespace};
pub use error::{Error, Result};
pub use manage::CreateOptions;
pub use network::{Network, Store};
pub use ports::{PortBinding, PortRange, PortSpec, Proto, Reservation, Reserved};
pub use records::Endpoints;
pub use sandbox::Sandbox;

/// What a container asks of one network when it joins it.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// Network name or id ("bridge" = the default bridge).
    pub network: String,
    pub container_name: String,
    pub ip: Option<IpAddr>,
    pub ip6: Option<IpAddr>,
    pub mac: Option<String>,
    pub aliases: Vec<String>,
    /// The container's `--dns` servers: the embedded resolver relays its other queries there.
    pub dns: Vec<IpAddr>,
    /// The host ports reserved for the container on this network (`Reserved::bindings`), for a
    /// driver that maps them itself when the container joins (`Driver::maps_ports`).
    pub ports: Vec<PortBinding>,
}

/// What joining configured: Docker's `NetworkSettings.Networks[NAME]`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    pub network_name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    pub mac_address: String,
    pub aliases: Vec<String>,
    /// Interface name inside the sandbox (eth0, eth1, ...).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub interface: String,
}

pub fn connect(
    root: &Path,
    container_id: &str,
    sandbox: &Sandbox,
    req: &EndpointRequest,
) -> Result<EndpointSettings> {
    endpoint::connect(&Context::new(root)?, container_id, sandbox, req)
}

pub fn disconnect(root: &Path, container_id: &str, network: &str) -> Result<()> {
    endpoint::disconnect(&Context::new(root)?, container_id, network)
}

pub fn release(root: &Path, container_id: &str) -> Result<()> {
    endpoint::release(&Context::new(root)?, container_id)
}

/// Gives the container's endpoints its new name; the resolver answers to it when this returns.
pub fn rename(root: &Path, container_id: &str, name: &str) -> Result<()> {
    endpoint::rename(&Context::new(root)?, container_id, name)
}

pub fn endpoints(root: &Path, container_id: &str) -> Result<Vec<EndpointSettings>> {
    endpoint::endpoints(&Store::new(root), container_id)
}

/// The network a `--network` value names and what its driver can do: the runtime's way to tell
/// a host-namespace or empty sandbox from a joined one.
pub fn attachment(root: &Path, network: &str) -> Result<(Network, Caps)> {
    let net = Store::new(root).find(network)?;
    let caps = driver::driver(&net.driver)?.caps();
    Ok((net, caps))
}

pub fn publish(
    root: &Path,
    container_id: &str,
    specs: &[PortSpec],
) -> Result<(Vec<PortBinding>, Reservation)> {
    ports::publish(&Context::new(root)?, container_id, specs)
}

pub fn reclaim(root: &Path, container_id: &str) -> Result<(Vec<PortBinding>, Reservation)> {
    ports::reclaim(&Context::new(root)?, container_id)
}

/// Reserves the host ports of `specs` on `network` for a container that is about to join it
/// (`None`: the network carries no ports), so that a port already allocated fails before any
/// link exists; `publish_reserved` publishes them once it has joined.
pub fn reserve(root: &Path, network: &Network, specs: &[PortSpec]) -> Result<Option<Reserved>> {
    ports::reserve(&Context::new(root)?, network, specs)
}

pub fn publish_reserved(
    root: &Path,
    container_id: &str,
    reserved: Reserved,
) -> Result<(Vec<PortBinding>, Reservation)> {
    ports::publish_reserved(&Context::new(root)?, container_id, reserved)
}

pub fn unpublish(root: &Path, container_id: &str) -> Result<()> {
    ports::unpublish(&Context::new(root)?, container_id)
}

/// Body of the hidden `rbox network port-proxy --to ADDR...` that `publish` starts for the
/// ports the kernel cannot forward: relays the listening socket on fd 3+n to `to[n]` until
/// killed.
pub fn port_proxy(to: &[std::net::SocketAddr]) -> i32 {
    proxy::serve_main(to)
}

pub fn published(root: &Path, container_id: &str) -> Result<Vec<PortBinding>> {
    ports::published(root, container_id)
}
