//! `null` (network `none`): the sandbox keeps only `lo`.

use std::collections::BTreeMap;

use super::{Caps, Driver, Ipam, Namespace};
use crate::network::Network;

pub struct Null;

impl Driver for Null {
    fn name(&self) -> &'static str {
        "null"
    }

    fn caps(&self) -> Caps {
        Caps {
            ipam: Ipam::None,
            namespace: Namespace::Empty,
            exclusive: true,
            ports: false,
            default_route: false,
            dns: false,
        }
    }
}

/// The root's `none` network.
pub(crate) fn network() -> Network {
    Network::new("none", Null.name(), BTreeMap::new())
}
