//! The firewall: isolation, NAT and published-port rules, generated from rbox's state so that a
//! reload is "generate and apply" and a golden-file test is "generate and compare".
//!
//! One `Firewall` per process, chosen once (`select`, from `--firewall`/RBOX_FIREWALL) and handed
//! to the drivers and the port code, which describe what they need (`FwNetwork`, `FwPorts`,
//! both address families at once) and never name a backend. Backends: `iptables`
//! (`iptables-restore` batches), `nftables` (`nft -f -` transactions in table `inet rbox`) and
//! `none` (no rules: the admin owns the firewall).
//!
//! Adding a backend: a module implementing `Firewall` (one batch per call, undo succeeding when
//! already gone, repair from what the kernel has when a fast batch is refused), a `Setting`
//! variant and its arm in `backend()`.

mod command;
pub mod iptables;
pub mod nftables;
mod none;

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use ipnetwork::IpNetwork;

use crate::error::{io, Error, Result};
use crate::ports::Proto;

/// What the rules of one network with a bridge on this host depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct FwNetwork {
    /// First 12 hex digits of the network id: names the network's own chains.
    pub short_id: String,
    pub bridge: String,
    /// The network's subnets, at most one per family (a network spanning hosts: all of it,
    /// the other hosts' parts included).
    pub subnets: Vec<IpNetwork>,
    pub icc: bool,
    pub masquerade: bool,
    pub internal: bool,
    /// A network spanning hosts (overlay): the link its other hosts' containers are reached
    /// through (the VXLAN device). Then traffic between `bridge` and `tunnel` is the network's
    /// own (ACCEPT, or DROP with `icc` false; never masqueraded, also not when internal);
    /// `tunnel` exchanges traffic with nothing else (isolated like another network's bridge
    /// in both directions); and the masquerade of outbound traffic is for destinations
    /// outside `subnets` (not "not out of `bridge`").
    pub tunnel: Option<String>,
}

/// One published port as the firewall needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct FwPort {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

/// Where one family's published ports lead: the container's address and its network's subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct FwTarget {
    pub subnet: IpNetwork,
    pub ip: IpAddr,
}

/// What one container's port rules depend on. A port's host address picks its family.
#[derive(Debug, Clone, PartialEq)]
pub struct FwPorts {
    /// First 12 hex digits of the container id: names the container's chains.
    pub short_id: String,
    /// The host interface the container is reached through (its bridge).
    pub interface: String,
    pub v4: Option<FwTarget>,
    pub v6: Option<FwTarget>,
    pub ports: Vec<FwPort>,
}

impl FwPorts {
    /// The ports and target of one family; `None` when that family has no port.
    pub fn family(&self, v6: bool) -> Option<(&FwTarget, Vec<&FwPort>)> {
        let target = if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }?;
        let ports: Vec<&FwPort> = self
            .ports
            .iter()
            .filter(|p| p.host_ip.is_ipv6() == v6)
            .collect();
        (!ports.is_empty()).then_some((target, ports))
    }
}

/// A firewall backend. Every call is one transaction per address family (one batch), leaves
/// other networks' and containers' rules alone, and is safe to repeat; removals succeed when
/// the rules are already gone.
pub trait Firewall: Sync {
    /// `RBOX_FIREWALL`'s name for it; also the prefix of its errors.
    fn name(&self) -> &'static str;
    /// Adds or regenerates the rules of `nets`.
    fn install_networks(&self, nets: &[FwNetwork]) -> Result<()>;
    /// Removes the rules of `net`. With `whole_bridge` (no other network can be using its
    /// bridge: it is `net`'s own or gone) also every rule that goes through the bridge —
    /// isolation and masquerade, port rules of containers reached through it — whatever network
    /// made it; without, only what is `net`'s by its id, since another root's network of the
    /// same bridge name may rely on the rest.
    fn remove_network(&self, net: &FwNetwork, whole_bridge: bool) -> Result<()>;
    /// Adds a new container's port rules, written from `p` alone (the fast path of `run -p`);
    /// falls back to `repair_ports` when the kernel's state is not what rbox's state says.
    fn add_ports(&self, p: &FwPorts) -> Result<()>;
    /// Regenerates one container's port rules from what the kernel has (reload, repair), and
    /// removes stale rules of dead containers that capture the same ports.
    fn repair_ports(&self, p: &FwPorts) -> Result<()>;
    /// Removes one container's port rules.
    fn remove_ports(&self, p: &FwPorts) -> Result<()>;
}

/// What `--firewall` / RBOX_FIREWALL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// iptables when `iptables-restore` is on PATH, else nftables.
    Auto,
    Iptables,
    Nftables,
    None,
}

impl std::str::FromStr for Setting {
    type Err = Error;

    fn from_str(s: &str) -> Result<Setting> {
        match s {
            "auto" | "" => Ok(Setting::Auto),
            "iptables" => Ok(Setting::Iptables),
            "nftables" => Ok(Setting::Nftables),
            "none" => Ok(Setting::None),
            _ => Err(Error::Invalid(format!(
                "invalid firewall backend {s:?} (--firewall, RBOX_FIREWALL): \
                 expected iptables, nftables, none or auto"
            ))),
        }
    }
}

/// Lets DNAT from 127.0.0.0/8 (OUTPUT) leave through `interface`: without it the kernel drops
/// a packet with a loopback source routed anywhere but `lo`. Backends that DNAT loopback
/// traffic call it before their rules.
pub(crate) fn enable_route_localnet(interface: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/route_localnet");
    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(io(format!("enabling route_localnet on {interface}")))
}

/// Whether `prog` is an executable file in a directory of PATH.
pub(crate) fn on_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':').filter(|d| !d.is_empty()).any(|d| {
        std::fs::metadata(Path::new(d).join(prog))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The backend `setting` names on this host; a forced backend whose tool is missing is refused
/// (`auto` on a host with neither tool picks nftables, whose first use then says so).
pub fn backend(setting: Setting) -> Result<&'static dyn Firewall> {
    static IPTABLES: iptables::Iptables = iptables::Iptables;
    static NFTABLES: nftables::Nftables = nftables::Nftables;
    static NONE: none::NoFirewall = none::NoFirewall;
    let missing = |backend: &str, tool: &str| {
        Error::Invalid(format!(
            "firewall backend {backend}: {tool} not found on PATH"
        ))
    };
    match setting {
        Setting::Auto if on_path(iptables::RESTORE) => Ok(&IPTABLES),
        Setting::Auto => Ok(&NFTABLES),
        Setting::Iptables if !on_path(iptables::RESTORE) => {
            Err(missing(iptables::NAME, iptables::RESTORE))
        }
        Setting::Iptables => Ok(&IPTABLES),
        Setting::Nftables if !on_path(nftables::NFT) => Err(missing(nftables::NAME, nftables::NFT)),
        Setting::Nftables => Ok(&NFTABLES),
        Setting::None => Ok(&NONE),
    }
}

static CURRENT: OnceLock<&'static dyn Firewall> = OnceLock::new();

/// Chooses the process's firewall from `setting` (the value of `--firewall`). The first choice
/// holds for the life of the process.
pub fn select(setting: &str) -> Result<&'static dyn Firewall> {
    let fw = backend(setting.parse()?)?;
    Ok(*CURRENT.get_or_init(|| fw))
}

/// The process's firewall: the one `select` chose, else RBOX_FIREWALL's (default auto).
pub fn current() -> Result<&'static dyn Firewall> {
    if let Some(fw) = CURRENT.get() {
        return Ok(*fw);
    }
    select(&std::env::var("RBOX_FIREWALL").unwrap_or_default())
}

/// Compares a generated rules document with `tests/golden/<backend>/<name>` (`.rules` for
/// iptables-save documents, `.nft` for nft listings; `RBOX_UPDATE_GOLDEN=1` rewrites the file
/// instead).
#[cfg(test)]
pub(crate) fn check_golden(backend: &str, name: &str, got: &str) {
    let ext = if backend == nftables::NAME {
        "nft"
    } else {
        "rules"
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(backend)
        .join(format!("{name}.{ext}"));
    if std::env::var_os("RBOX_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (RBOX_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        got,
        want,
        "ruleset for {name} differs from {}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bogus_is_refused() {
        assert_eq!("auto".parse::<Setting>().unwrap(), Setting::Auto);
        assert_eq!("".parse::<Setting>().unwrap(), Setting::Auto);
        assert_eq!("iptables".parse::<Setting>().unwrap(), Setting::Iptables);
        assert_eq!("none".parse::<Setting>().unwrap(), Setting::None);
        assert_eq!("nftables".parse::<Setting>().unwrap(), Setting::Nftables);
        let e = "bogus".parse::<Setting>().unwrap_err().to_string();
        assert!(e.starts_with("invalid firewall backend \"bogus\""), "{e}");
        assert_eq!(backend(Setting::None).unwrap().name(), "none");
    }

    #[test]
    fn on_path_wants_an_executable_file() {
        assert!(on_path("sh"));
        assert!(!on_path("rbox-no-such-program"));
    }
}
