//! `macvlan`: each endpoint is a macvlan child of the network's parent link, with a MAC of its
//! own, so containers are hosts of the parent's LAN: they reach it and are reached from it
//! directly, without NAT or firewall rules (Docker's macvlan driver and option names:
//! `-o parent=IF`, `-o macvlan_mode=bridge|vepa|private|passthru`). The parent, its VLAN or
//! dummy link and the host shim are `parent::Parent`'s.

use std::collections::BTreeMap;

use rtnetlink::packet_route::link::{LinkMessage, MacVlanMode};
use rtnetlink::LinkMacVlan;
use serde::{Deserialize, Serialize};

use super::parent::{self, is_wireless, Parent};
use super::{unknown_option, Caps, Driver, DriverOpts, Ipam, Namespace};
use crate::error::{Error, Result};
use crate::firewall::Firewall;
use crate::ipam::parse_mac;
use crate::netlink::DefaultVia;
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;

pub const NAME: &str = "macvlan";
pub const OPT_MODE: &str = "macvlan_mode";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Children reach each other inside the host (Docker's default).
    #[default]
    Bridge,
    /// Children reach each other only through the external switch (reflective relay).
    Vepa,
    /// Children never reach each other.
    Private,
    /// One child takes the parent over.
    Passthru,
}

impl Mode {
    fn parse(v: &str) -> Result<Mode> {
        match v {
            "" | "bridge" => Ok(Mode::Bridge),
            "vepa" => Ok(Mode::Vepa),
            "private" => Ok(Mode::Private),
            "passthru" => Ok(Mode::Passthru),
            _ => Err(Error::Invalid(format!(
                "requested macvlan mode '{v}' is not valid, 'bridge' mode is the macvlan driver default"
            ))),
        }
    }

    fn kernel(self) -> MacVlanMode {
        match self {
            Mode::Bridge => MacVlanMode::Bridge,
            Mode::Vepa => MacVlanMode::Vepa,
            Mode::Private => MacVlanMode::Private,
            Mode::Passthru => MacVlanMode::Passthrough,
        }
    }
}

/// What a macvlan network is, beyond the generic fields of `Network`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    #[serde(flatten)]
    pub parent: Parent,
    #[serde(default)]
    pub mode: Mode,
}

fn of(net: &Network) -> Result<&Options> {
    match &net.driver_opts {
        DriverOpts::Macvlan(o) => Ok(o),
        _ => Err(Error::Invalid(format!(
            "network {} has no macvlan settings (damaged state file?)",
            net.name
        ))),
    }
}

/// A child in `mode` named `name` on parent `idx`, with `mac` (a passthru child keeps the
/// parent's: setting one would change the parent's own).
fn child(mode: Mode, mac: Option<Vec<u8>>) -> impl Fn(&str, u32) -> LinkMessage {
    move |name, idx| {
        let mut b = LinkMacVlan::new(name, idx, mode.kernel());
        if let Some(m) = mac.clone().filter(|_| mode != Mode::Passthru) {
            b = b.address(m);
        }
        b.build()
    }
}

pub struct Macvlan;

impl Driver for Macvlan {
    fn name(&self) -> &'static str {
        NAME
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::Local,
            namespace: Namespace::Joined,
            exclusive: false,
            // Docker publishes nothing on macvlan: the container has its own LAN address.
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
        let mut mode = Mode::Bridge;
        for (k, v) in options {
            match k.as_str() {
                OPT_MODE => mode = Mode::parse(v)?,
                k if parent::owns(k) => {}
                _ => return Err(unknown_option(NAME, k)),
            }
        }
        let parent = Parent::parse(NAME, "dm-", network_id, options)?;
        if parent.shim.is_some() && mode != Mode::Bridge {
            return Err(Error::Invalid(format!(
                "{} needs macvlan_mode bridge: only bridge children reach each other",
                parent::OPT_HOST_SHIM
            )));
        }
        Ok(DriverOpts::Macvlan(Options { parent, mode }))
    }

    fn internal(&self, opts: &DriverOpts) -> bool {
        opts.parent().is_some_and(|p| p.dummy)
    }

    /// Docker's rules: macvlan networks may share a parent unless one is passthru; an ipvlan
    /// network's parent is not shared.
    fn check(&self, net: &Network, others: &[Network]) -> Result<()> {
        let o = of(net)?;
        o.parent.check_host()?;
        for other in others {
            let Some(p) = other.driver_opts.parent() else {
                continue;
            };
            if p.link != o.parent.link {
                continue;
            }
            let passthru =
                matches!(&other.driver_opts, DriverOpts::Macvlan(x) if x.mode == Mode::Passthru);
            if other.driver != NAME {
                return Err(Error::Conflict(format!(
                    "{} network {} is already using parent interface {}",
                    other.driver, other.name, p.link
                )));
            } else if o.mode == Mode::Passthru {
                return Err(Error::Conflict(format!(
                    "cannot use mode passthru, macvlan network {} is already using parent interface {}",
                    other.name, p.link
                )));
            } else if passthru {
                return Err(Error::Conflict(format!(
                    "macvlan network {} is already using parent interface {} in mode passthru",
                    other.name, p.link
                )));
            }
        }
        Ok(())
    }

    fn warnings(&self, net: &Network) -> Vec<String> {
        let Ok(o) = of(net) else {
            return Vec::new();
        };
        let link = o.parent.physical();
        if o.parent.dummy || !is_wireless(std::path::Path::new("/sys/class/net"), link) {
            return Vec::new();
        }
        vec![format!(
            "parent interface {link} is a Wi-Fi link: access points drop frames from the extra \
             MAC addresses of macvlan containers; an ipvlan network (-d ipvlan) works there"
        )]
    }

    fn create_network(&self, net: &Network, _fw: &dyn Firewall) -> Result<()> {
        let o = of(net)?;
        o.parent.create(net, &child(Mode::Bridge, None))
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
        let mac = parse_mac(&ep.mac)?;
        let (me, shim) = (child(o.mode, Some(mac)), child(Mode::Bridge, None));
        o.parent
            .join(net, ep, sandbox, DefaultVia::Gateway, &me, &shim)
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
        of(net)?
            .parent
            .set_default_route(net, ep, sandbox, DefaultVia::Gateway)
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
        Macvlan.parse_options("0123456789abcdef", &o)
    }

    fn net(name: &str, driver: &str, opts: DriverOpts) -> Network {
        let mut n = Network::new(name, driver, BTreeMap::new());
        n.driver_opts = opts;
        n
    }

    #[test]
    fn options_modes_and_unknown_keys() {
        let DriverOpts::Macvlan(o) =
            parse(&[("parent", "lo.5"), ("macvlan_mode", "vepa")]).unwrap()
        else {
            panic!("not macvlan options");
        };
        assert_eq!((o.parent.link.as_str(), o.mode), ("lo.5", Mode::Vepa));
        let DriverOpts::Macvlan(o) = parse(&[]).unwrap() else {
            panic!()
        };
        assert!(o.parent.dummy && o.mode == Mode::Bridge);
        assert!(
            Macvlan.internal(&DriverOpts::Macvlan(o)),
            "no parent: internal"
        );
        for (kv, want) in [
            (
                ("macvlan_mode", "l2"),
                "requested macvlan mode 'l2' is not valid, 'bridge' mode is the macvlan driver default",
            ),
            (("ipvlan_mode", "l2"), "unknown macvlan driver option ipvlan_mode"),
            (
                ("com.docker.network.bridge.name", "x"),
                "unknown macvlan driver option com.docker.network.bridge.name",
            ),
        ] {
            assert_eq!(parse(&[kv]).unwrap_err().to_string(), want, "{kv:?}");
        }
        let e = parse(&[("macvlan_mode", "private"), ("rbox.host_shim", "192.0.2.1")]);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("needs macvlan_mode bridge"));
    }

    #[test]
    fn parents_are_shared_as_docker_shares_them() {
        let mine = |mode: &str| {
            net(
                "new",
                NAME,
                parse(&[("parent", "lo.5"), ("macvlan_mode", mode)]).unwrap(),
            )
        };
        let mv = net("mv1", NAME, parse(&[("parent", "lo.5")]).unwrap());
        let pt = net(
            "pt",
            NAME,
            parse(&[("parent", "lo.5"), ("macvlan_mode", "passthru")]).unwrap(),
        );
        let other_parent = net("mv2", NAME, parse(&[("parent", "lo.9")]).unwrap());
        let ipvlan = net(
            "iv",
            super::super::ipvlan::NAME,
            super::super::ipvlan::Ipvlan
                .parse_options(
                    "fedcba9876543210",
                    &[("parent".to_string(), "lo.5".to_string())].into(),
                )
                .unwrap(),
        );
        assert!(Macvlan
            .check(&mine("bridge"), &[mv.clone(), other_parent.clone()])
            .is_ok());
        let e = Macvlan
            .check(&mine("bridge"), &[ipvlan])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "ipvlan network iv is already using parent interface lo.5"
        );
        let e = Macvlan
            .check(&mine("passthru"), &[mv])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot use mode passthru, macvlan network mv1"),
            "{e}"
        );
        let e = Macvlan
            .check(&mine("bridge"), &[pt])
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("is already using parent interface lo.5 in mode passthru"),
            "{e}"
        );
        // Parentless networks each have their own dummy: they never clash.
        let d1 = net("d1", NAME, parse(&[]).unwrap());
        let mut d2 = net("d2", NAME, DriverOpts::None);
        d2.driver_opts = Macvlan
            .parse_options(&"f".repeat(16), &BTreeMap::new())
            .unwrap();
        assert!(Macvlan.check(&d2, &[d1]).is_ok());
    }
}
