//! Network drivers (libnetwork's `Driver`): what a network type does to the kernel when a
//! network is created or deleted and when a sandbox joins or leaves it.

pub mod bridge;
pub mod host;
pub mod null;

use crate::error::{Error, Result};
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;

pub trait Driver {
    /// Makes the network exist in the kernel (idempotent).
    fn create_network(&self, net: &Network) -> Result<()>;
    /// Removes what `create_network` made; succeeds when it is already gone.
    fn delete_network(&self, net: &Network) -> Result<()>;
    /// Wires `ep` into `sandbox`.
    fn join(&self, net: &Network, ep: &EndpointRecord, sandbox: &Sandbox) -> Result<()>;
    /// Unwires `ep` while the sandbox lives on (disconnect); releasing the sandbox needs no call.
    fn leave(&self, net: &Network, ep: &EndpointRecord) -> Result<()>;
}

pub fn for_network(net: &Network) -> Result<Box<dyn Driver>> {
    driver(&net.driver)
}

pub fn driver(name: &str) -> Result<Box<dyn Driver>> {
    match name {
        "bridge" => Ok(Box::new(bridge::Bridge)),
        "host" => Ok(Box::new(host::Host)),
        "null" => Ok(Box::new(null::Null)),
        other => Err(Error::Invalid(format!(
            "could not find plugin {other} in v1 plugin registry: plugin not found"
        ))),
    }
}
