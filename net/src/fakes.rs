//! Recording fakes of the `Driver` and `Firewall` seams (youki's `TestHelperSyscall` idea): they
//! log every call and fail where told, so the orchestration's rollback and hand-over paths are
//! unit-tested without root, namespaces or rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::driver::{Caps, Driver, DriverOpts, Ipam, Namespace, PortPath};
use crate::error::{Error, Result};
use crate::firewall::{Firewall, FwNetwork, FwPorts};
use crate::ipam::{self, IpamRequest};
use crate::network::{EndpointRecord, Network, Store};
use crate::sandbox::Sandbox;

/// The calls the fakes saw, in order ("join n1", "add_ports c1", ...).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }

    pub fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn has(&self, call: &str) -> bool {
        self.calls().iter().any(|c| c == call)
    }
}

/// A driver that records its calls and fails the ones named in `fail` ("join", "create", ...).
#[derive(Clone)]
pub struct RecordingDriver {
    caps: Arc<Mutex<Caps>>,
    pub log: Log,
    pub fail: Arc<Mutex<Vec<&'static str>>>,
}

impl RecordingDriver {
    pub const NAME: &'static str = "recording";

    pub fn new(log: &Log) -> RecordingDriver {
        RecordingDriver {
            caps: Arc::new(Mutex::new(Caps {
                ipam: Ipam::Local,
                namespace: Namespace::Joined,
                exclusive: false,
                ports: true,
                default_route: true,
                dns: false,
            })),
            log: log.clone(),
            fail: Default::default(),
        }
    }

    pub fn set_caps(&self, f: impl FnOnce(&mut Caps)) {
        f(&mut self.caps.lock().unwrap());
    }

    pub fn fail(&self, call: &'static str) {
        self.fail.lock().unwrap().push(call);
    }

    fn call(&self, what: &'static str, on: &str) -> Result<()> {
        self.log.push(format!("{what} {on}"));
        if self.fail.lock().unwrap().contains(&what) {
            return Err(Error::Invalid(format!("{what} failed (as the test asked)")));
        }
        Ok(())
    }
}

impl Driver for RecordingDriver {
    fn name(&self) -> &'static str {
        RecordingDriver::NAME
    }
    fn caps(&self) -> Caps {
        *self.caps.lock().unwrap()
    }
    fn parse_options(&self, _: &str, options: &BTreeMap<String, String>) -> Result<DriverOpts> {
        match options.keys().find(|k| *k != "ok") {
            Some(k) => Err(crate::driver::unknown_option(self.name(), k)),
            None => Ok(DriverOpts::None),
        }
    }
    fn check(&self, net: &Network, _: &[Network]) -> Result<()> {
        self.call("check", &net.name)
    }
    fn create_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        self.call("create_network", &net.name)?;
        fw.install_networks(&[fw_network(net)])
    }
    fn delete_network(&self, net: &Network, fw: &dyn Firewall) -> Result<()> {
        self.call("delete_network", &net.name)?;
        fw.remove_network(&fw_network(net), true)
    }
    fn new_endpoint(&self, net: &Network, _: &str, ep: &mut EndpointRecord) {
        ep.host_veth = format!("rec-{}", net.name);
    }
    /// With `Ipam::Driver`, assigns what was asked for, else .77 of a /26 of its own.
    fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        _: &Sandbox,
        _: &dyn Firewall,
    ) -> Result<()> {
        self.call("join", &net.name)?;
        if self.caps().ipam == Ipam::Driver {
            let ip = ep.ip.unwrap_or(std::net::Ipv4Addr::new(10, 180, 99, 77));
            ep.ip = Some(ip);
            ep.mac = "02:00:00:00:00:77".into();
            ep.assigned = Some(crate::network::Assigned {
                subnet: Some(ipnetwork::Ipv4Network::new(ip, 26).unwrap()),
                gateway: Some(std::net::Ipv4Addr::new(10, 180, 99, 65)),
                ..Default::default()
            });
        }
        Ok(())
    }
    fn leave(&self, net: &Network, _: &EndpointRecord, _: Option<&Sandbox>) -> Result<()> {
        self.call("leave", &net.name)
    }
    fn set_default_route(&self, net: &Network, _: &EndpointRecord, _: &Sandbox) -> Result<()> {
        self.call("set_default_route", &net.name)
    }
    fn release(&self, net: &Network, ep: &EndpointRecord) -> Result<()> {
        self.call("release", &format!("{} {}", net.name, ep.container_name))
    }
    fn port_path(&self, net: &Network) -> Result<PortPath> {
        Ok(PortPath {
            interface: format!("rec-{}", net.name),
            host_ip: None,
        })
    }
}

fn fw_network(net: &Network) -> FwNetwork {
    FwNetwork {
        short_id: net.id[..12].to_string(),
        bridge: format!("rec-{}", net.name),
        subnets: net.ipam.iter().map(|c| c.subnet.into()).collect(),
        icc: true,
        masquerade: true,
        internal: net.internal,
        tunnel: None,
    }
}

/// A firewall that records its calls and fails the ones named in `fail`.
#[derive(Default)]
pub struct RecordingFirewall {
    pub log: Log,
    pub fail: Mutex<Vec<&'static str>>,
}

impl RecordingFirewall {
    fn call(&self, what: &'static str, on: &str) -> Result<()> {
        self.log.push(format!("{what} {on}"));
        if self.fail.lock().unwrap().contains(&what) {
            return Err(Error::Firewall {
                backend: "recording",
                message: format!("{what} failed (as the test asked)"),
            });
        }
        Ok(())
    }
}

impl Firewall for RecordingFirewall {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn install_networks(&self, nets: &[FwNetwork]) -> Result<()> {
        let names: Vec<&str> = nets.iter().map(|n| n.bridge.as_str()).collect();
        self.call("install_networks", &names.join(","))
    }
    fn remove_network(&self, net: &FwNetwork, _: bool) -> Result<()> {
        self.call("remove_network", &net.bridge)
    }
    fn add_ports(&self, p: &FwPorts) -> Result<()> {
        self.call("add_ports", &p.short_id)
    }
    fn repair_ports(&self, p: &FwPorts) -> Result<()> {
        self.call("repair_ports", &p.short_id)
    }
    fn remove_ports(&self, p: &FwPorts) -> Result<()> {
        self.call("remove_ports", &p.short_id)
    }
}

type DriverFn = Box<dyn Fn(&str, &Path) -> Result<Box<dyn Driver>>>;
type NamesFn = Box<dyn Fn(&Path, Option<(&str, &str)>) -> Result<()>>;

/// A root in a temp dir with the fakes wired in: its networks use `RecordingDriver`, its
/// firewall is `RecordingFirewall`, and the resolver "sync" succeeds unless `names_fail`.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub driver: RecordingDriver,
    pub fw: RecordingFirewall,
    pub log: Log,
    pub names_fail: Arc<Mutex<bool>>,
    drivers: DriverFn,
    names: NamesFn,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        // No predefined networks: they would need the host's routes.
        std::fs::create_dir_all(dir.path().join("networks")).unwrap();
        std::fs::write(dir.path().join("networks/.defaults"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("netns")).unwrap();
        let log = Log::default();
        let driver = RecordingDriver::new(&log);
        let fw = RecordingFirewall {
            log: log.clone(),
            ..Default::default()
        };
        let names_fail: Arc<Mutex<bool>> = Default::default();
        let d = driver.clone();
        let drivers: DriverFn = Box::new(move |name, _root| {
            if name == RecordingDriver::NAME {
                Ok(Box::new(d.clone()))
            } else {
                crate::driver::driver(name)
            }
        });
        let (nf, nlog) = (names_fail.clone(), log.clone());
        let names: NamesFn = Box::new(move |_, _| {
            nlog.push("sync_names".into());
            match *nf.lock().unwrap() {
                true => Err(Error::Invalid("resolver failed (as the test asked)".into())),
                false => Ok(()),
            }
        });
        Root {
            dir,
            driver,
            fw,
            log,
            names_fail,
            drivers,
            names,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ctx(&self) -> Context<'_> {
        Context::with(self.path(), &self.fw, &*self.drivers, &*self.names)
    }

    pub fn store(&self) -> Store {
        Store::new(self.path())
    }

    /// A recording-driver network with subnet `subnet`, saved directly.
    pub fn network(&self, name: &str, subnet: &str) -> Network {
        let mut net = Network::new(name, RecordingDriver::NAME, BTreeMap::new());
        net.ipam = Some(ipam::configure(subnet.parse().unwrap(), &IpamRequest::default()).unwrap());
        self.store().save(&net).unwrap();
        net
    }

    /// A sandbox file for `id` (the fakes never enter it).
    pub fn sandbox(&self, id: &str) -> Sandbox {
        let path: PathBuf = self.path().join("netns").join(id);
        std::fs::write(&path, "").unwrap();
        Sandbox {
            container_id: id.to_string(),
            path,
        }
    }

    pub fn endpoints(&self, net: &Network) -> BTreeMap<String, EndpointRecord> {
        self.store().endpoints(&net.id).unwrap()
    }
}
