//! `host`: the container shares the host's network namespace; nothing to wire.

use super::Driver;
use crate::error::Result;
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;

pub struct Host;

impl Driver for Host {
    fn create_network(&self, _: &Network) -> Result<()> {
        Ok(())
    }
    fn delete_network(&self, _: &Network) -> Result<()> {
        Ok(())
    }
    fn join(&self, _: &Network, _: &EndpointRecord, _: &Sandbox) -> Result<()> {
        Ok(())
    }
    fn leave(&self, _: &Network, _: &EndpointRecord) -> Result<()> {
        Ok(())
    }
}
