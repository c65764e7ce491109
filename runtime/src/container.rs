//! A container as other crates see it, and `network connect`/`disconnect` on it. A network
//! joined with `network connect` is recorded (`Record::connected`) so that every later start,
//! restart and policy restart joins it again; on a stopped container connect only records it,
//! as Docker does.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::{Attachment, Record};
use crate::store::{self, Paths};
use crate::{etcfiles, lifecycle};

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// The network namespace path while started ("" otherwise).
    pub sandbox_key: String,
    root: PathBuf,
}

/// What `network connect` asks for.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub aliases: Vec<String>,
}

impl Container {
    pub fn find(root: &Path, name_or_id: &str) -> Result<Container> {
        let r = lifecycle::find(root, name_or_id)?;
        Ok(Container {
            running: r.active(),
            sandbox_key: r.sandbox_key.clone(),
            id: r.id,
            name: r.name,
            root: root.to_path_buf(),
        })
    }

    fn paths(&self) -> Paths {
        Paths::new(&self.root, &self.id)
    }

    fn edit(&self, f: impl FnOnce(&mut Record)) -> Result<()> {
        let paths = self.paths();
        let _l = statefile::Lock::exclusive(&paths.lock())?;
        let mut r = store::load(&paths)?;
        f(&mut r);
        store::save(&paths, &r)?;
        if r.active() && !r.sandbox_key.is_empty() {
            etcfiles::rewrite_hosts(&paths, &r)?;
        }
        Ok(())
    }

    /// Records `--link`s in Docker's form (`/NAME:/THIS/ALIAS`), once the name is known.
    pub fn set_links(&self, links: Vec<String>) -> Result<()> {
        self.edit(|r| r.settings.links = links)
    }

    /// `network connect NETWORK CONTAINER`: joins now when it runs (a new `ethN`), and at
    /// every later start.
    pub fn connect(&self, network: &str, opts: &Connect) -> Result<()> {
        let net = net::Store::new(&self.root).find(network)?;
        let rec = store::load(&self.paths())?;
        if crate::network::joined(&rec.settings.network_mode).is_some() {
            return Err(Error::Invalid(
                "container sharing network namespace with another container or host cannot be \
                 connected to any other network"
                    .into(),
            ));
        }
        let attachment = Attachment {
            network: net.name.clone(),
            ip: opts.ip.clone(),
            ip6: opts.ip6.clone(),
            aliases: opts.aliases.clone(),
        };
        // Checked here also for a stopped container, which net::connect does not see.
        let req = crate::network::request(&rec.name, &rec.settings, &attachment)?;
        let primary = net::Store::new(&self.root)
            .find(&rec.settings.network_mode)
            .is_ok_and(|p| p.id == net.id);
        if primary
            || rec.connected.iter().any(|a| a.network == net.name)
            || rec.networks.contains_key(&net.name)
        {
            return Err(net::Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, net.name
            ))
            .into());
        }
        let sandbox = net::Sandbox::open(&self.root, &self.id).filter(|_| self.running);
        let Some(sandbox) = sandbox else {
            // What net::connect refuses at the next start had better be refused now.
            let exclusive =
                |n: &str| net::attachment(&self.root, n).is_ok_and(|(_, c)| c.exclusive);
            if exclusive(&rec.settings.network_mode) || exclusive(&net.id) {
                return Err(net::Error::Conflict(format!(
                    "container cannot be disconnected from host network or connected to host network; \
                     container {} cannot join network {} alongside its other networks",
                    rec.name, net.name
                ))
                .into());
            }
            if self.running {
                return Err(Error::Invalid(format!(
                    "container {} has no network sandbox (host network?)",
                    self.name
                )));
            }
            return self.edit(|r| r.connected.push(attachment));
        };
        let settings = net::connect(&self.root, &self.id, &sandbox, &req)?;
        let name = settings.network_name.clone();
        let recorded = self.edit(|r| {
            r.networks.insert(name.clone(), settings);
            r.connected.push(attachment);
        });
        if let Err(e) = recorded {
            let _ = net::disconnect(&self.root, &self.id, &net.id);
            return Err(e);
        }
        Ok(())
    }

    /// `network disconnect NETWORK CONTAINER`: leaves now and is not joined again.
    pub fn disconnect(&self, network: &str) -> Result<()> {
        let net = net::Store::new(&self.root).find(network)?;
        let rec = store::load(&self.paths())?;
        let attached = rec.connected.iter().any(|a| a.network == net.name);
        if self.running {
            match net::disconnect(&self.root, &self.id, &net.id) {
                Ok(()) => {}
                // Recorded but not joined in this run (it failed to): forget it all the same.
                Err(net::Error::Conflict(_)) if attached => {}
                Err(e) => return Err(e.into()),
            }
        } else if !attached {
            return Err(net::Error::Conflict(format!(
                "container {} is not connected to network {}",
                self.id, net.name
            ))
            .into());
        }
        self.edit(|r| {
            r.networks.remove(&net.name);
            r.connected.retain(|a| a.network != net.name);
        })
    }
}
