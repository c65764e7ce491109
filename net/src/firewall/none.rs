//! `none`: rbox writes no firewall rule; the admin's firewall decides what flows (netavark's
//! `none`, dockerd's `--iptables=false`). Bridges, addresses, routes and the reservations of
//! published ports are still made.

use super::{Firewall, FwNetwork, FwPorts};
use crate::error::Result;

pub struct NoFirewall;

impl Firewall for NoFirewall {
    fn name(&self) -> &'static str {
        "none"
    }
    fn install_networks(&self, _: &[FwNetwork]) -> Result<()> {
        Ok(())
    }
    fn remove_network(&self, _: &FwNetwork, _: bool) -> Result<()> {
        Ok(())
    }
    fn add_ports(&self, _: &FwPorts) -> Result<()> {
        Ok(())
    }
    fn repair_ports(&self, _: &FwPorts) -> Result<()> {
        Ok(())
    }
    fn remove_ports(&self, _: &FwPorts) -> Result<()> {
        Ok(())
    }
}
