//! `ipvlan`: each endpoint is an ipvlan child of the network's parent link; children share the
//! parent's MAC (so it works where extra MACs are dropped: Wi-Fi, strict switch ports) and the
//! kernel tells them apart by address. L2 mode puts them on the parent's LAN with the gateway
//! as next hop; L3/L3S route through the parent, default route straight out of the device.
//! Docker's option names: `-o parent=IF`, `-o ipvlan_mode=l2|l3|l3s`,
//! `-o ipvlan_flag=bridge|private|vepa`. The parent itself is `parent::Parent`'s.

use std::collections::BTreeMap;

use rtnetlink::packet_route::link::{IpVlanFlags, IpVlanMode, LinkMessage};
use rtnetlink::LinkIpVlan;
use serde::{Deserialize, Serialize};

use super::parent::{self, Parent};
use super::{unknown_option, Caps, Driver, DriverOpts, Ipam, Namespace};
use crate::error::{Error, Result};
use crate::firewall::Firewall;
use crate::netlink::DefaultVia;
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;
use crate::EndpointRequest;

pub const NAME: &str = "ipvlan";
pub const OPT_MODE: &str = "ipvlan_mode";
pub const OPT_FLAG: &str = "ipvlan_flag";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    L2,
    L3,
    L3s,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flag {
    /// Children reach each other inside the host (Docker's default).
    #[default]
    Bridge,
    Private,
    Vepa,
}

/// What an ipvlan network is, beyond the generic fields of `Network`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    #[serde(flatten)]
    pub parent: Parent,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub flag: Flag,
}

impl Options {
    /// L3 modes route: the default route leaves through the device, no gateway hop.
    fn via(&self) -> DefaultVia {
        match self.mode {
            Mode::L2 => DefaultVia::Gateway,
            Mode::L3 | Mode::L3s => DefaultVia::Device,
        }
    }

    /// A child named `name` on parent `idx`. The mode is the parent's port's (the kernel keeps
    /// one per parent), so the shim gets the same.
    fn child(&self) -> impl Fn(&str, u32) -> LinkMessage {
        let mode = match self.mode {
            Mode::L2 => IpVlanMode::L2,
            Mode::L3 => IpVlanMode::L3,
            Mode::L3s => IpVlanMode::L3S,
        };
        let flag = match self.flag {
            Flag::Bridge => IpVlanFlags::empty(),
            Flag::Private => IpVlanFlags::Private,
            Flag::Vepa => IpVlanFlags::Vepa,
        };
        move |name, idx| LinkIpVlan::new(name, idx, mode).flag(flag).build()
    }
}

fn of(net: &Network) -> Result<&Options> {
    match &net.driver_opts {
        DriverOpts::Ipvlan(o) => Ok(o),
        _ => Err(Error::Invalid(format!(
            "network {} has no ipvlan settings (damaged state file?)",
            net.name
        ))),
    }
}

pub struct Ipvlan;

impl Driver for Ipvlan {
    fn name(&self) -> &'static str {
        NAME
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::Local,
            namespace: Namespace::Joined,
            exclusive: false,
            ports: false,
            default_route: true,
            dns: true,
        }
    }

    fn parse_options(
        &self,
        network_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<DriverOpts> {
        let (mut mode, mut flag) = (Mode::L2, Flag::Bridge);
        for (k, v) in options {
            match (k.as_str(), v.as_str()) {
                (OPT_MODE, "" | "l2") => mode = Mode::L2,
                (OPT_MODE, "l3") => mode = Mode::L3,
                (OPT_MODE, "l3s") => mode = Mode::L3s,
                (OPT_MODE, _) => {
                    return Err(Error::Invalid(format!(
                        "requested ipvlan mode '{v}' is not valid, 'l2' mode is the ipvlan driver default"
                    )))
                }
                (OPT_FLAG, "" | "bridge") => flag = Flag::Bridge,
                (OPT_FLAG, "private") => flag = Flag::Private,
                (OPT_FLAG, "vepa") => flag = Flag::Vepa,
                (OPT_FLAG, _) => {
                    return Err(Error::Invalid(format!(
                        "requested ipvlan flag '{v}' is not valid, 'bridge' is the ipvlan driver default"
                    )))
                }
                (k, _) if parent::owns(k) => {}
                _ => return Err(unknown_option(NAME, k)),
            }
        }
        let parent = Parent::parse(NAME, "di-", network_id, options)?;
        if parent.shim.is_some() && flag != Flag::Bridge {
            return Err(Error::Invalid(format!(
                "{} needs ipvlan_flag bridge: only bridge children reach each other",
                parent::OPT_HOST_SHIM
            )));
        }
        Ok(DriverOpts::Ipvlan(Options { parent, mode, flag }))
    }

    fn internal(&self, opts: &DriverOpts) -> bool {
        opts.parent().is_some_and(|p| p.dummy)
    }

    /// Docker's rule: an ipvlan network has its parent alone (the kernel keeps one mode per
    /// parent, and a macvlan cannot share it).
    fn check(&self, net: &Network, others: &[Network]) -> Result<()> {
        let o = of(net)?;
        o.parent.check_host()?;
        if let Some(other) = others.iter().find(|n| {
            n.driver_opts
                .parent()
                .is_some_and(|p| p.link == o.parent.link)
        }) {
            return Err(Error::Conflict(format!(
                "{} network {} is already using parent interface {}",
                other.driver, other.name, o.parent.link
            )));
        }
        Ok(())
    }

    fn check_endpoint(&self, _net: &Network, req: &EndpointRequest) -> Result<()> {
        if req.mac.is_some() {
            return Err(Error::Invalid(
                "ipvlan interfaces do not support custom mac address assignment".into(),
            ));
        }
        Ok(())
    }

    fn create_network(&self, net: &Network, _fw: &dyn Firewall) -> Result<()> {
        let o = of(net)?;
        o.parent.create(net, &o.child())
    }

    fn delete_network(&self, net: &Network, _fw: &dyn Firewall) -> Result<()> {
        of(net)?.parent.delete(net)
    }

    fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        sandbox: &Sandbox,
        _fw: &dyn Firewall,
    ) -> Result<()> {
        let o = of(net)?;
        let child = o.child();
        o.parent.join(net, ep, sandbox, o.via(), &child, &child)
    }

    fn leave(&self, net: &Network, ep: &EndpointRecord, sandbox: Option<&Sandbox>) -> Result<()> {
        of(net)?.parent.leave(net, ep, sandbox)
    }

    fn set_default_route(
        &self,
        net: &Network,
        ep: &EndpointRecord,
        sandbox: &Sandbox,
    ) -> Result<()> {
        let o = of(net)?;
        o.parent.set_default_route(net, ep, sandbox, o.via())
    }

    fn release(&self, net: &Network, ep: &EndpointRecord) -> Result<()> {
        of(net)?.parent.release_endpoint(net, ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kv: &[(&str, &str)]) -> Result<DriverOpts> {
        let o = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ipvlan.parse_options("0123456789abcdef", &o)
    }

    #[test]
    fn modes_flags_and_refusals() {
        let DriverOpts::Ipvlan(o) = parse(&[
            ("parent", "lo.5"),
            ("ipvlan_mode", "l3s"),
            ("ipvlan_flag", "private"),
        ])
        .unwrap() else {
            panic!("not ipvlan options");
        };
        assert_eq!(
            (o.mode, o.flag, o.via()),
            (Mode::L3s, Flag::Private, DefaultVia::Device)
        );
        let DriverOpts::Ipvlan(o) = parse(&[]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (o.parent.link.as_str(), o.via()),
            ("di-0123456789ab", DefaultVia::Gateway)
        );
        for (kv, want) in [
            (
                ("ipvlan_mode", "bridge"),
                "requested ipvlan mode 'bridge' is not valid, 'l2' mode is the ipvlan driver default",
            ),
            (
                ("ipvlan_flag", "l2"),
                "requested ipvlan flag 'l2' is not valid, 'bridge' is the ipvlan driver default",
            ),
            (("macvlan_mode", "bridge"), "unknown ipvlan driver option macvlan_mode"),
        ] {
            assert_eq!(parse(&[kv]).unwrap_err().to_string(), want, "{kv:?}");
        }
        let net = Network::new("n", NAME, BTreeMap::new());
        let req = EndpointRequest {
            mac: Some("02:42:00:00:00:01".into()),
            ..Default::default()
        };
        assert_eq!(
            Ipvlan.check_endpoint(&net, &req).unwrap_err().to_string(),
            "ipvlan interfaces do not support custom mac address assignment"
        );
        let mut mine = Network::new("new", NAME, BTreeMap::new());
        mine.driver_opts = parse(&[("parent", "lo.5")]).unwrap();
        let mut other = Network::new("iv1", NAME, BTreeMap::new());
        other.driver_opts = parse(&[("parent", "lo.5")]).unwrap();
        assert_eq!(
            Ipvlan.check(&mine, &[other]).unwrap_err().to_string(),
            "ipvlan network iv1 is already using parent interface lo.5"
        );
    }
}
