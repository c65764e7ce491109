//! `bridge`: a Linux bridge per network, a veth per endpoint (host end on the bridge, peer
//! created directly inside the sandbox), NAT and isolation rules from the firewall.

pub(crate) mod link;
mod options;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub(crate) use options::default_network;
pub use options::{
    Options, OPT_BRIDGE_NAME, OPT_DEFAULT_BRIDGE, OPT_HOST_BINDING, OPT_ICC, OPT_MASQUERADE,
    OPT_MTU,
};

use super::{Caps, Driver, DriverOpts, Ipam, Namespace, PortPath};
use crate::error::{Error, Errors, Result};
use crate::firewall::{Firewall, FwNetwork};
use crate::netlink::{self, block_on, delete_link, host_handle, link_by_name, DefaultVia};
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;
use link::{alias, ensure_bridge, owner_tag};

pub struct Bridge;

impl Bridge {
    pub const NAME: &'static str = "bridge";
}

/// What the firewall's rules of `net` depend on.
fn fw_network(net: &Network) -> Result<FwNetwork> {
    let o = options::of(net)?;
    Ok(FwNetwork {
        short_id: net.id[..12].to_string(),
        bridge: o.name.clone(),
        subnets: net
            .ipam
            .iter()
            .map(|c| c.subnet.into())
            .chain(net.ipam6.iter().map(|c| c.subnet.into()))
            .collect(),
        icc: o.icc,
        masquerade: o.masquerade,
        internal: net.internal,
        tunnel: None,
    })
}

/// Makes the bridge if missing; a bridge this call made gets its rules, or goes again.
async fn ensure_with_rules(
    handle: &rtnetlink::Handle,
    net: &Network,
    fw: &dyn Firewall,
) -> Result<()> {
    if !ensure_bridge(handle, net, fw).await? {
        return Ok(());
    }
    let rules = link::enable_ip_forward()
        .and_then(|()| fw_network(net))
        .and_then(|f| fw.install_networks(&[f]));
    if let Err(e) = rules {
        let _ = delete_link(handle, &options::of(net)?.name).await;
        return Err(e);
    }
    Ok(())
}

/// A host veth name that a quick reuse of the same container id cannot collide with while the
/// kernel is still removing the previous pair: "vrb" + 12 hex digits.
fn host_veth_name(container_id: &str, network_id: &str) -> String {
    let nonce: u64 = rand::random();
    let digest = Sha256::digest(format!("{container_id}/{network_id}/{nonce}"));
    format!("vrb{}", &hex::encode(digest)[..12])
}

impl Driver for Bridge {
    fn name(&self) -> &'static str {
        Bridge::NAME
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::Local,
            namespace: Namespace::Joined,
            exclusive: false,
            ports: true,
            default_route: true,
            dns: true,
        }
    }

    fn parse_options(
        &self,
        network_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<DriverOpts> {
        Ok(DriverOpts::Bridge(Options::parse(network_id, options)?))
    }

    /// The bridge name is this network's alone, in the root and on the host.
    fn check(&self, net: &Network, others: &[Network]) -> Result<()> {
        let name = &options::of(net)?.name;
        if others
            .iter()
            .any(|n| options::of(n).is_ok_and(|o| &o.name == name))
        {
            return Err(Error::Conflict(format!(
                "bridge name {name} is used by another network"
            )));
        }
        if netlink::link_exists(name)? {
            return Err(Error::Conflict(format!(
                "bridge name {name} is used by another network on this host"
            )));
        }
        Ok(())
    }

    fn create_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        block_on(async { ensure_with_rules(&host_handle()?, net, fw).await })?
    }

    /// The rules go, and the bridge when it is this network's own: another root's `rbox0` is
    /// not ours to delete, nor are the rules it relies on (see `Firewall::remove_network`).
    fn delete_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        let o = options::of(net)?;
        let f = fw_network(net)?;
        // Under the bridges' lock, so that no root makes the bridge between the look and the
        // removal (its fresh rules would go with a bridge judged gone).
        let _held = link::lock_bridges()?;
        block_on(async {
            let handle = host_handle()?;
            let link = link_by_name(&handle, &o.name).await?;
            let ours = link
                .as_ref()
                .is_some_and(|l| alias(l) == Some(owner_tag(net).as_str()));
            let mut errors = Errors::default();
            errors.check(fw.remove_network(&f, ours || link.is_none()));
            if ours {
                errors.check(delete_link(&handle, &o.name).await);
            }
            errors.into_result()
        })?
    }

    fn new_endpoint(&self, net: &Network, container_id: &str, ep: &mut EndpointRecord) {
        ep.host_veth = host_veth_name(container_id, &net.id);
    }

    fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        sandbox: &Sandbox,
        fw: &dyn Firewall,
    ) -> Result<()> {
        let o = options::of(net)?;
        let ns = sandbox.file()?;
        block_on(async {
            let handle = host_handle()?;
            // The default bridge is created on first use; user bridges normally exist already
            // but come back here after a reboot.
            ensure_with_rules(&handle, net, fw).await?;
            let bridge = link_by_name(&handle, &o.name)
                .await?
                .ok_or_else(|| Error::Invalid(format!("bridge {} missing", o.name)))?;
            link::add_veth(&handle, net, o, &bridge, ep, &ns).await
        })?
    }

    fn leave(&self, _net: &Network, ep: &EndpointRecord, _sandbox: Option<&Sandbox>) -> Result<()> {
        block_on(async { delete_link(&host_handle()?, &ep.host_veth).await })?
    }

    fn set_default_route(
        &self,
        net: &Network,
        ep: &EndpointRecord,
        sandbox: &Sandbox,
    ) -> Result<()> {
        netlink::route_default_through(&sandbox.file()?, net, &ep.interface, DefaultVia::Gateway)
    }

    fn firewall(&self, net: &Network) -> Result<Option<FwNetwork>> {
        let o = options::of(net)?;
        if !netlink::link_exists(&o.name)? {
            return Ok(None);
        }
        fw_network(net).map(Some)
    }

    fn port_path(&self, net: &Network) -> Result<PortPath> {
        let o = options::of(net)?;
        Ok(PortPath {
            interface: o.name.clone(),
            host_ip: o.host_binding,
        })
    }
}
