//! What the drivers whose endpoints are children of a host link (macvlan, ipvlan) share: the
//! parent link (`-o parent`), the links rbox makes for it, the opt-in host shim, and wiring a
//! child link straight into a sandbox.
//!
//! - **Parent**: `-o parent=IF` names a host link. A missing `IF.VID` (`eth0.10`) is an 802.1q
//!   sub-interface rbox makes on `IF` (VID 1-4094), marked as rbox's in its alias. No parent:
//!   the network gets a dummy link of its own (`dm-`/`di-` + 12 hex of its id, as Docker) and is
//!   internal. Both are made again by a join when missing (after a reboot).
//! - **Who may delete a VLAN link rbox made**: the last network using it, on any root. Each
//!   network using one is registered in `/run/rbox-links/<netns>/<link>/<network id>` (every
//!   root's, under a lock; /run goes with a reboot, as the link does; `<netns>` is the inode of
//!   rbox's network namespace, whose links these are: an rbox in another namespace has its own
//!   `eth0.10`); removing a network unregisters it and deletes the link when no registration is
//!   left. A link that existed without rbox's mark is
//!   never deleted.
//! - **Host shim** (`-o rbox.host_shim=IP`): the kernel keeps a parent from talking to its own
//!   children, so the host cannot reach its macvlan/ipvlan containers. The shim is one more child
//!   on the host side (`rbs` + 12 hex of the network id) with `IP/32`; each endpoint adds a /32
//!   route to its container through it (so the LAN's own routes are untouched) and its
//!   `release` removes it.
//! - **Children** are created by the host-namespace netlink socket with the sandbox as their
//!   namespace (IFLA_NET_NS_FD): the parent is looked up where it lives and the child never
//!   appears on the host, like the bridge driver's veth peers.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkDummy, LinkVeth, LinkVlan};
use serde::{Deserialize, Serialize};

use crate::error::{io, nl, Error, Result};
use crate::netlink::{
    self, add_addr, add_default_routes, alias, block_on, delete_link, host_handle, host_route,
    is_errno, is_exists, link_by_name, ns_handle, set_alias, set_up, DefaultVia,
};
use crate::network::{EndpointRecord, Network};
use crate::sandbox::Sandbox;

/// Docker's key for the parent link.
pub const OPT_PARENT: &str = "parent";
/// rbox's key for the host shim's address.
pub const OPT_HOST_SHIM: &str = "rbox.host_shim";

/// The alias of a VLAN link rbox made.
const VLAN_MARK: &str = "rbox vlan";
/// Registrations of networks on VLAN links rbox made (see the module docs).
const REGISTRY: &str = "/run/rbox-links";
const REGISTRY_LOCK: &str = "/run/rbox-links.lock";

/// A network's parent link and host shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    /// The host link: `-o parent` as given, or the network's own dummy link.
    pub link: String,
    /// No `-o parent` was given: `link` is a dummy link made for this network alone.
    #[serde(default)]
    pub dummy: bool,
    /// `-o rbox.host_shim=IP`: the host's address on its shim link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<Ipv4Addr>,
}

/// Whether `-o key` is read by `Parent::parse` (the drivers refuse the keys nobody reads).
pub fn owns(key: &str) -> bool {
    key == OPT_PARENT || key == OPT_HOST_SHIM
}

/// The base link and VLAN id of a sub-interface name (`eth0.10`), checked as Docker does.
fn vlan_of(link: &str) -> Result<(&str, u16)> {
    let Some((base, vid)) = link.split_once('.') else {
        return Err(Error::Invalid(format!(
            "-o parent interface was not found on the host: {link}"
        )));
    };
    if vid.contains('.') {
        return Err(Error::Invalid(format!(
            "required interface name format is: name.vlan_id, ex. eth0.10 for vlan 10, instead received {link}"
        )));
    }
    let n: i64 = vid.parse().map_err(|_| {
        Error::Invalid(format!(
            "unable to parse a valid vlan id from: {vid} (ex. eth0.10 for vlan 10)"
        ))
    })?;
    if !(1..=4094).contains(&n) {
        return Err(Error::Invalid(format!(
            "vlan id must be between 1-4094, received: {n}"
        )));
    }
    Ok((base, n as u16))
}

/// Whether host link `name` is a Wi-Fi interface (macvlan's extra MACs rarely pass there).
pub fn is_wireless(sys_class_net: &Path, name: &str) -> bool {
    let dir = sys_class_net.join(name);
    dir.join("wireless").exists() || dir.join("phy80211").exists()
}

impl Parent {
    /// Reads `-o parent` and `-o rbox.host_shim` of a new network `network_id` of the driver
    /// `driver` whose dummy links are named `dummy_prefix` + 12 hex.
    pub fn parse(
        driver: &str,
        dummy_prefix: &str,
        network_id: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Parent> {
        let given = options.get(OPT_PARENT).filter(|p| !p.is_empty());
        let shim = options
            .get(OPT_HOST_SHIM)
            .map(|v| {
                v.parse::<Ipv4Addr>().map_err(|_| {
                    Error::Invalid(format!(
                        "invalid {OPT_HOST_SHIM} address {v:?}: expected an IPv4 address"
                    ))
                })
            })
            .transpose()?;
        match given {
            Some(p) if p == "lo" => Err(Error::Invalid(format!(
                "loopback interface is not a valid {driver} parent link"
            ))),
            Some(p) => {
                netlink::check_ifname(p, "parent interface name")?;
                Ok(Parent {
                    link: p.clone(),
                    dummy: false,
                    shim,
                })
            }
            None => Ok(Parent {
                link: format!("{dummy_prefix}{}", &network_id[..12]),
                dummy: true,
                shim,
            }),
        }
    }

    /// Checks the host before a network is made: the parent exists, or is a sub-interface rbox
    /// can make on an existing link.
    pub fn check_host(&self) -> Result<()> {
        if self.dummy || netlink::link_exists(&self.link)? {
            return Ok(());
        }
        let (base, _) = vlan_of(&self.link)?;
        if !netlink::link_exists(base)? {
            return Err(Error::Invalid(format!(
                "-o parent interface was not found on the host: {base}"
            )));
        }
        Ok(())
    }

    /// The host link whose kind says what the children's frames go over (a VLAN's base).
    pub fn physical(&self) -> &str {
        match self.link.split_once('.') {
            Some((base, _)) if !netlink::link_exists(&self.link).unwrap_or(false) => base,
            _ => &self.link,
        }
    }

    fn shim_name(net: &Network) -> String {
        format!("rbs{}", &net.id[..12])
    }

    /// Makes the parent if rbox makes it (dummy, missing sub-interface) and returns its index.
    async fn ensure(&self, handle: &Handle, net: &Network) -> Result<u32> {
        if self.dummy {
            if let Some(l) = link_by_name(handle, &self.link).await? {
                return Ok(netlink::index(&l));
            }
            let dummy = LinkDummy::new(&self.link).build();
            return match make(handle, &self.link, dummy, &owner(net)).await {
                // A kernel without dummy links (CONFIG_DUMMY): a veth pair with both ends up
                // carries children just as well; deleting one end deletes the other.
                Err(Error::Netlink { source, .. }) if is_errno(&source, libc::EOPNOTSUPP) => {
                    let peer = self.link.replacen('-', "p", 1);
                    let veth = LinkVeth::new(&self.link, &peer).build();
                    let idx = make(handle, &self.link, veth, &owner(net)).await?;
                    match link_by_name(handle, &peer).await? {
                        Some(p) => set_up(handle, netlink::index(&p), &peer).await?,
                        None => return Err(Error::Invalid(format!("link {peer} vanished"))),
                    }
                    Ok(idx)
                }
                r => r,
            };
        }
        // Existing links are taken as they are; one rbox made is registered on.
        let existing = |l: LinkMessage| -> Result<u32> {
            if alias(&l) == Some(VLAN_MARK) && !registered(&self.link, &net.id) {
                register(&self.link, &net.id)?;
            }
            Ok(netlink::index(&l))
        };
        if let Some(l) = link_by_name(handle, &self.link).await? {
            if alias(&l) != Some(VLAN_MARK) || registered(&self.link, &net.id) {
                return Ok(netlink::index(&l));
            }
        }
        let (base, vid) = vlan_of(&self.link)?;
        let _held = statefile::Lock::exclusive(Path::new(REGISTRY_LOCK))?;
        // Looked up again under the lock: another process may have made it meanwhile.
        if let Some(l) = link_by_name(handle, &self.link).await? {
            return existing(l);
        }
        let base_idx = link_by_name(handle, base)
            .await?
            .map(|l| netlink::index(&l))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "-o parent interface was not found on the host: {base}"
                ))
            })?;
        let vlan = LinkVlan::new(&self.link, base_idx, vid).build();
        let idx = match make(handle, &self.link, vlan, VLAN_MARK).await {
            Err(Error::Netlink { source, .. }) if is_errno(&source, libc::EOPNOTSUPP) => {
                return Err(Error::Invalid(format!(
                    "cannot make {}: this kernel has no 802.1q VLAN support (CONFIG_VLAN_8021Q)",
                    self.link
                )))
            }
            r => r?,
        };
        if let Err(e) = register(&self.link, &net.id) {
            let _ = delete_link(handle, &self.link).await;
            return Err(e);
        }
        Ok(idx)
    }

    /// Undoes `ensure` for `net`: its dummy goes; a sub-interface rbox made goes with the last
    /// network registered on it.
    async fn release(&self, handle: &Handle, net: &Network) -> Result<()> {
        let Some(l) = link_by_name(handle, &self.link).await? else {
            return Ok(());
        };
        if self.dummy {
            if alias(&l) == Some(owner(net).as_str()) {
                delete_link(handle, &self.link).await?;
            }
            return Ok(());
        }
        if alias(&l) != Some(VLAN_MARK) {
            return Ok(());
        }
        let _held = statefile::Lock::exclusive(Path::new(REGISTRY_LOCK))?;
        if unregister(&self.link, &net.id)? {
            delete_link(handle, &self.link).await?;
        }
        Ok(())
    }

    /// Makes the host shim if the network has one and it is missing (at create, and at a join
    /// after a reboot or a `system prune` took it). `child` builds it on parent `idx`.
    async fn ensure_shim(
        &self,
        handle: &Handle,
        net: &Network,
        idx: u32,
        child: &dyn Fn(&str, u32) -> LinkMessage,
    ) -> Result<()> {
        let Some(ip) = self.shim else {
            return Ok(());
        };
        let name = Parent::shim_name(net);
        if link_by_name(handle, &name).await?.is_some() {
            return Ok(());
        }
        let shim = async {
            let sidx = make(handle, &name, child(&name, idx), &owner(net)).await?;
            add_addr(handle, sidx, IpAddr::V4(ip), 32, &name).await
        }
        .await;
        if shim.is_err() {
            let _ = delete_link(handle, &name).await;
        }
        shim
    }

    /// `create_network`: the parent, then the shim, whose child link `shim` builds.
    pub fn create(&self, net: &Network, shim: &dyn Fn(&str, u32) -> LinkMessage) -> Result<()> {
        block_on(async {
            let handle = host_handle()?;
            let idx = self.ensure(&handle, net).await?;
            if let Err(e) = self.ensure_shim(&handle, net, idx, shim).await {
                let _ = self.release(&handle, net).await;
                return Err(e);
            }
            Ok(())
        })?
    }

    /// `delete_network`: the shim and what `ensure` made.
    pub fn delete(&self, net: &Network) -> Result<()> {
        block_on(async {
            let handle = host_handle()?;
            delete_link(&handle, &Parent::shim_name(net)).await?;
            self.release(&handle, net).await
        })?
    }

    /// Wires `ep` into `sandbox`: the child `child` builds on the parent, made inside the
    /// sandbox, with the endpoint's addresses, up, the default routes `via` if it carries them,
    /// and the shim's route to it (`shim` builds the shim if it is missing). Records the
    /// child's real MAC (ipvlan children share the parent's). On error the child is deleted.
    pub fn join(
        &self,
        net: &Network,
        ep: &mut EndpointRecord,
        sandbox: &Sandbox,
        via: DefaultVia,
        child: &dyn Fn(&str, u32) -> LinkMessage,
        shim: &dyn Fn(&str, u32) -> LinkMessage,
    ) -> Result<()> {
        let ns = sandbox.file()?;
        block_on(async {
            let handle = host_handle()?;
            let parent = self.ensure(&handle, net).await?;
            self.ensure_shim(&handle, net, parent, shim).await?;
            let mut msg = child(&ep.interface, parent);
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
            handle.link().add(msg).execute().await.map_err(|e| {
                if is_errno(&e, libc::EOPNOTSUPP) {
                    Error::Invalid(format!(
                        "cannot make a {} link: this kernel has no {} support",
                        net.driver, net.driver
                    ))
                } else if is_errno(&e, libc::EBUSY) {
                    Error::Conflict(format!(
                        "parent interface {} is busy: a macvlan and an ipvlan cannot share a \
                         parent, and a passthru macvlan takes it alone",
                        self.link
                    ))
                } else {
                    nl(format!(
                        "creating {} for {}",
                        ep.interface, ep.container_name
                    ))(e)
                }
            })?;
            let nsh = ns_handle(&ns)?;
            let inside = async {
                let link = link_by_name(&nsh, &ep.interface).await?.ok_or_else(|| {
                    Error::Invalid(format!("{} missing in sandbox", ep.interface))
                })?;
                let idx = netlink::index(&link);
                if let Some(ip) = ep.ip {
                    let prefix = net.ipam.as_ref().map_or(32, |c| c.subnet.prefix());
                    add_addr(&nsh, idx, ip.into(), prefix, &ep.interface).await?;
                }
                if let (Some(ip6), Some(v6)) = (ep.ip6, &net.ipam6) {
                    add_addr(&nsh, idx, ip6.into(), v6.subnet.prefix(), &ep.interface).await?;
                }
                set_up(&nsh, idx, &ep.interface).await?;
                if ep.default_route {
                    add_default_routes(&nsh, net, idx, via).await?;
                }
                if let Some(mac) = mac(&link) {
                    ep.mac = crate::ipam::format_mac(&mac);
                }
                self.shim_route(&handle, net, ep, true).await
            }
            .await;
            if let Err(e) = inside {
                let _ = delete_link(&nsh, &ep.interface).await;
                return Err(e);
            }
            Ok(())
        })?
    }

    /// Unwires `ep`: its child (if the sandbox is still there) and its shim route.
    pub fn leave(
        &self,
        net: &Network,
        ep: &EndpointRecord,
        sandbox: Option<&Sandbox>,
    ) -> Result<()> {
        let ns = sandbox.map(|s| s.file()).transpose()?;
        block_on(async {
            if let Some(ns) = &ns {
                delete_link(&ns_handle(ns)?, &ep.interface).await?;
            }
            self.shim_route(&host_handle()?, net, ep, false).await
        })?
    }

    /// What an endpoint holds on the host: its shim route.
    pub fn release_endpoint(&self, net: &Network, ep: &EndpointRecord) -> Result<()> {
        if self.shim.is_none() {
            return Ok(());
        }
        block_on(async { self.shim_route(&host_handle()?, net, ep, false).await })?
    }

    pub fn set_default_route(
        &self,
        net: &Network,
        ep: &EndpointRecord,
        sandbox: &Sandbox,
        via: DefaultVia,
    ) -> Result<()> {
        netlink::route_default_through(&sandbox.file()?, net, &ep.interface, via)
    }

    async fn shim_route(
        &self,
        handle: &Handle,
        net: &Network,
        ep: &EndpointRecord,
        add: bool,
    ) -> Result<()> {
        let (Some(_), Some(ip)) = (self.shim, ep.ip) else {
            return Ok(());
        };
        let name = Parent::shim_name(net);
        match link_by_name(handle, &name).await? {
            Some(l) => host_route(handle, ip, netlink::index(&l), add).await,
            None if add => Err(Error::Invalid(format!("host shim {name} missing"))),
            // The shim went with its network: so did the route.
            None => Ok(()),
        }
    }
}

/// The alias of links rbox makes for `net` alone (its dummy parent, its shim).
fn owner(net: &Network) -> String {
    format!("rbox network {}", net.id)
}

fn mac(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// Adds link `msg` named `name`, names its owner `mark` and sets it up; deleted again if that
/// fails. A link another process made meanwhile is taken as it is.
async fn make(handle: &Handle, name: &str, msg: LinkMessage, mark: &str) -> Result<u32> {
    match handle.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if is_exists(&e) => {}
        Err(e) => return Err(nl(format!("creating link {name}"))(e)),
    }
    let r = async {
        let l = link_by_name(handle, name)
            .await?
            .ok_or_else(|| Error::Invalid(format!("link {name} vanished")))?;
        let idx = netlink::index(&l);
        set_alias(handle, idx, mark, name).await?;
        set_up(handle, idx, name).await?;
        Ok::<_, Error>(idx)
    }
    .await;
    if r.is_err() {
        let _ = delete_link(handle, name).await;
    }
    r
}

fn registry(link: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let netns = fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    Path::new(REGISTRY).join(format!("net{netns}")).join(link)
}

fn registered(link: &str, network_id: &str) -> bool {
    registry(link).join(network_id).exists()
}

fn register(link: &str, network_id: &str) -> Result<()> {
    let dir = registry(link);
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    fs::write(dir.join(network_id), b"").map_err(io(format!("registering on {link}")))
}

/// Drops `network_id`'s registration on `link`; true when none is left.
fn unregister(link: &str, network_id: &str) -> Result<bool> {
    let dir = registry(link);
    match fs::remove_file(dir.join(network_id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("unregistering from {link}"))(e)),
    }
    let empty = fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
    if empty {
        let _ = fs::remove_dir(&dir);
        // The namespace's directory too, when this was its last link (fails while it is not).
        if let Some(ns) = dir.parent() {
            let _ = fs::remove_dir(ns);
        }
    }
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parent_names_vlans_dummies_and_shims() {
        let id = "0123456789abcdef0123";
        let p = Parent::parse("macvlan", "dm-", id, &opts(&[])).unwrap();
        assert_eq!((p.link.as_str(), p.dummy), ("dm-0123456789ab", true));
        let p = Parent::parse("macvlan", "dm-", id, &opts(&[("parent", "")])).unwrap();
        assert!(p.dummy, "an empty parent is no parent");
        let p = Parent::parse(
            "ipvlan",
            "di-",
            id,
            &opts(&[("parent", "eth0.10"), ("rbox.host_shim", "192.0.2.9")]),
        )
        .unwrap();
        assert_eq!(p.link, "eth0.10");
        assert_eq!(p.shim, Some("192.0.2.9".parse().unwrap()));
        for (kv, want) in [
            (
                ("parent", "lo"),
                "loopback interface is not a valid macvlan parent link",
            ),
            (
                ("parent", "a-name-far-too-long"),
                "invalid parent interface name",
            ),
            (("rbox.host_shim", "fd00::1"), "expected an IPv4 address"),
        ] {
            let e = Parent::parse("macvlan", "dm-", id, &opts(&[kv]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{kv:?}: {e}");
        }
        assert_eq!(vlan_of("eth0.10").unwrap(), ("eth0", 10));
        assert_eq!(vlan_of("eth0.4094").unwrap(), ("eth0", 4094));
        for (link, want) in [
            ("eth0.0", "vlan id must be between 1-4094, received: 0"),
            (
                "eth0.4095",
                "vlan id must be between 1-4094, received: 4095",
            ),
            ("eth0.x", "unable to parse a valid vlan id from: x"),
            (
                "eth0.1.2",
                "required interface name format is: name.vlan_id",
            ),
            (
                "eth9",
                "-o parent interface was not found on the host: eth9",
            ),
        ] {
            let e = vlan_of(link).unwrap_err().to_string();
            assert!(e.contains(want), "{link}: {e}");
        }
        assert!(owns("parent") && owns("rbox.host_shim") && !owns("macvlan_mode"));
    }

    #[test]
    fn missing_parents_are_refused_before_anything_is_made() {
        let p = |link: &str| Parent {
            link: link.into(),
            dummy: false,
            shim: None,
        };
        assert!(p("lo").check_host().is_ok(), "an existing link is taken");
        let e = p("rbt-mnone0").check_host().unwrap_err().to_string();
        assert_eq!(
            e,
            "-o parent interface was not found on the host: rbt-mnone0"
        );
        let e = p("rbt-mnone0.7").check_host().unwrap_err().to_string();
        assert_eq!(
            e,
            "-o parent interface was not found on the host: rbt-mnone0"
        );
        let e = p("lo.4095").check_host().unwrap_err().to_string();
        assert_eq!(e, "vlan id must be between 1-4094, received: 4095");
        assert!(
            p("lo.7").check_host().is_ok(),
            "a sub-interface rbox can make"
        );
    }

    #[test]
    fn wireless_links_are_told_from_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        fs::create_dir_all(sys.path().join("wlan0/wireless")).unwrap();
        fs::create_dir_all(sys.path().join("wlp2s0/phy80211")).unwrap();
        fs::create_dir_all(sys.path().join("eth0")).unwrap();
        assert!(is_wireless(sys.path(), "wlan0"));
        assert!(is_wireless(sys.path(), "wlp2s0"));
        assert!(!is_wireless(sys.path(), "eth0"));
    }
}
