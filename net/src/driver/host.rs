//! `host`: the container shares the host's network namespace; nothing to wire.

use std::collections::BTreeMap;

use super::{Caps, Driver, Ipam, Namespace};
use crate::network::Network;

pub struct Host;

impl Driver for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::None,
            namespace: Namespace::Host,
            exclusive: true,
            ports: false,
            default_route: false,
            dns: false,
        }
    }
}

/// The root's `host` network.
pub(crate) fn network() -> Network {
    Network::new("host", Host.name(), BTreeMap::new())
}
