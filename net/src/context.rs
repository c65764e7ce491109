//! `Context`: what the orchestration (endpoints, ports, network lifecycle) acts through — the
//! root's state, the drivers, the firewall and the name resolver. `Context::new` is the real
//! one; unit tests hand in recording fakes, so rollback and hand-over paths are tested
//! without root.

use std::path::Path;

use crate::driver::{self, Driver};
use crate::error::Result;
use crate::firewall::{self, Firewall};
use crate::network::{Network, Store};

/// Driver lookup by name, for a root.
pub(crate) type Drivers<'a> = &'a dyn Fn(&str, &Path) -> Result<Box<dyn Driver>>;
/// Brings the resolver of a root in line with its state (`dns::sync`); given (network id,
/// container id), after that one join only (`dns::joined`).
pub(crate) type Names<'a> = &'a dyn Fn(&Path, Option<(&str, &str)>) -> Result<()>;

pub(crate) struct Context<'a> {
    pub store: Store,
    pub fw: &'a dyn Firewall,
    drivers: Drivers<'a>,
    names: Names<'a>,
}

fn real_driver(name: &str, root: &Path) -> Result<Box<dyn Driver>> {
    driver::for_root(name, Some(root))
}

fn real_names(root: &Path, joined: Option<(&str, &str)>) -> Result<()> {
    match joined {
        Some((network, container)) => crate::dns::joined(root, network, container),
        None => crate::dns::sync(root),
    }
}

impl Context<'static> {
    /// The process's own: real drivers, the chosen firewall, the root's resolver.
    pub fn new(root: &Path) -> Result<Context<'static>> {
        crate::cluster::init(root);
        Ok(Context {
            store: Store::new(root),
            fw: firewall::current()?,
            drivers: &real_driver,
            names: &real_names,
        })
    }
}

impl<'a> Context<'a> {
    #[cfg(test)]
    pub fn with(root: &Path, fw: &'a dyn Firewall, drivers: Drivers<'a>, names: Names<'a>) -> Self {
        Context {
            store: Store::new(root),
            fw,
            drivers,
            names,
        }
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    pub fn driver(&self, net: &Network) -> Result<Box<dyn Driver>> {
        (self.drivers)(&net.driver, self.root())
    }

    pub fn driver_named(&self, name: &str) -> Result<Box<dyn Driver>> {
        (self.drivers)(name, self.root())
    }

    /// Whether the resolver serves `net`: user networks of drivers with names.
    pub fn serves(&self, net: &Network) -> bool {
        self.driver(net)
            .is_ok_and(|d| crate::dns::serves_with(net, &d.caps()))
    }

    pub fn sync_names(&self) -> Result<()> {
        (self.names)(self.root(), None)
    }

    /// `sync_names` after `container_id` joined `network_id`, and nothing else changed.
    pub fn sync_joined(&self, network_id: &str, container_id: &str) -> Result<()> {
        (self.names)(self.root(), Some((network_id, container_id)))
    }
}
