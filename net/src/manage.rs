//! Network lifecycle for `rbox network create/rm/prune/reload` and `system prune`: the generic
//! checks (name, IPAM pools, overlaps) here, everything driver-specific behind `Driver`.

use std::collections::BTreeMap;
use std::path::Path;

use ipnetwork::Ipv4Network;

use crate::context::Context;
use crate::driver::Ipam;
use crate::error::{Error, Errors, Result};
use crate::ipam::{self, Ipam6Config, IpamConfig, IpamRequest};
use crate::network::*;

/// `network create`'s flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    /// The IPv6 `--subnet` (with `--ipv6`; a random ULA /64 when absent).
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// `name=IP` pairs.
    pub aux_addresses: Vec<String>,
    pub internal: bool,
    pub ipv6: bool,
    pub attachable: bool,
    pub ipam_driver: Option<String>,
    /// `k=v` labels.
    pub labels: Vec<String>,
    /// `-o k=v` driver options.
    pub options: Vec<String>,
}

fn kv(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Error::Invalid(format!("invalid {what} {s:?}: expected key=value")))
}

fn parse_net(s: &str, what: &str) -> Result<Ipv4Network> {
    s.parse()
        .map_err(|_| Error::Invalid(format!("invalid {what} {s}: invalid CIDR address")))
}

fn parse_gateway<T: std::str::FromStr>(g: Option<&str>) -> Result<Option<T>> {
    g.map(|g| {
        g.parse()
            .map_err(|_| Error::Invalid(format!("invalid gateway address {g}")))
    })
    .transpose()
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

fn pool_overlap(other: &Network) -> Error {
    Error::Conflict(format!(
        "invalid pool request: Pool overlaps with other one on this address space (network {})",
        other.name
    ))
}

/// What `network create` asked of IPAM, checked but not yet placed among the other networks.
struct PoolRequest {
    subnet: Option<Ipv4Network>,
    req: IpamRequest,
    ipv6: bool,
    subnet6: Option<ipnetwork::Ipv6Network>,
    gateway6: Option<std::net::Ipv6Addr>,
}

impl PoolRequest {
    fn parse(opts: &CreateOptions) -> Result<PoolRequest> {
        if let Some(d) = &opts.ipam_driver {
            if d != "default" {
                return Err(Error::Invalid(format!(
                    "could not find IPAM driver {d}: plugin not found"
                )));
            }
        }
        if !opts.ipv6 && (opts.subnet6.is_some() || opts.gateway6.is_some()) {
            return Err(Error::Invalid(
                "an IPv6 subnet or gateway needs --ipv6".into(),
            ));
        }
        let subnet6 = opts
            .subnet6
            .as_deref()
            .map(|s| {
                s.parse::<ipnetwork::Ipv6Network>().map_err(|_| {
                    Error::Invalid(format!("invalid subnet {s}: invalid CIDR address"))
                })
            })
            .transpose()?;
        let gateway6 = parse_gateway(opts.gateway6.as_deref())?;
        let gateway = parse_gateway(opts.gateway.as_deref())?;
        let ip_range = opts
            .ip_range
            .as_deref()
            .map(|r| parse_net(r, "ip-range"))
            .transpose()?;
        let mut aux = BTreeMap::new();
        for a in &opts.aux_addresses {
            let (k, v) = kv(a, "aux-address")?;
            let ip = v
                .parse()
                .map_err(|_| Error::Invalid(format!("invalid aux-address {a}")))?;
            aux.insert(k, ip);
        }
        let req = IpamRequest {
            subnet: None,
            gateway,
            ip_range,
            aux,
        };
        let subnet = opts
            .subnet
            .as_deref()
            .map(|s| parse_net(s, "subnet"))
            .transpose()?;
        if subnet.is_none()
            && (req.gateway.is_some() || req.ip_range.is_some() || !req.aux.is_empty())
        {
            return Err(Error::Invalid(
                "--gateway, --ip-range and --aux-address need --subnet".into(),
            ));
        }
        Ok(PoolRequest {
            subnet,
            req,
            ipv6: opts.ipv6,
            subnet6,
            gateway6,
        })
    }

    /// The pools among `existing` networks: the requested subnets if free, else the first
    /// default pool that overlaps no network and no route of the host.
    fn place(self, existing: &[Network]) -> Result<(IpamConfig, Option<Ipam6Config>)> {
        let cfg = match self.subnet {
            Some(s) => {
                let cfg = ipam::configure(s, &self.req)?;
                if let Some(o) = existing.iter().find(|n| {
                    n.ipam
                        .as_ref()
                        .is_some_and(|i| ipam::overlaps(&i.subnet, &cfg.subnet))
                }) {
                    return Err(pool_overlap(o));
                }
                cfg
            }
            None => {
                let mut taken: Vec<Ipv4Network> = existing
                    .iter()
                    .filter_map(|n| n.ipam.as_ref().map(|i| i.subnet))
                    .collect();
                taken.extend(crate::netlink::host_routes()?);
                ipam::configure(ipam::pick_subnet(&taken)?, &self.req)?
            }
        };
        if !self.ipv6 {
            return Ok((cfg, None));
        }
        let cfg6 = ipam::configure6(self.subnet6.unwrap_or_else(ipam::random_ula), self.gateway6)?;
        let clash = existing.iter().find(|n| {
            n.ipam6.as_ref().is_some_and(|i| {
                i.subnet.contains(cfg6.subnet.network()) || cfg6.subnet.contains(i.subnet.network())
            })
        });
        if let Some(o) = clash {
            return Err(pool_overlap(o));
        }
        Ok((cfg, Some(cfg6)))
    }
}

/// Validates everything, then makes the network's kernel side, its rules and its state file;
/// rolls all of it back on failure. Returns the new network and what the user should be warned
/// of (a Wi-Fi parent for macvlan).
pub fn create(root: &Path, opts: &CreateOptions) -> Result<(Network, Vec<String>)> {
    let ctx = Context::new(root)?;
    let net = create_in(&ctx, opts)?;
    let warnings = ctx.driver(&net)?.warnings(&net);
    Ok((net, warnings))
}

pub(crate) fn create_in(ctx: &Context, opts: &CreateOptions) -> Result<Network> {
    check_name(&opts.name)?;
    let driver_name = opts
        .driver
        .as_deref()
        .unwrap_or(crate::driver::bridge::Bridge::NAME);
    let drv = ctx.driver_named(driver_name)?;
    let caps = drv.caps();
    if caps.exclusive {
        return Err(Error::Invalid(format!(
            "only one instance of \"{driver_name}\" network is allowed"
        )));
    }
    if caps.ipam == Ipam::Driver
        && (opts.subnet.is_some()
            || opts.gateway.is_some()
            || opts.ip_range.is_some()
            || !opts.aux_addresses.is_empty()
            || opts.ipv6
            || opts.subnet6.is_some())
    {
        return Err(Error::Invalid(format!(
            "the {driver_name} driver assigns addresses itself: --subnet, --gateway, \
             --ip-range, --aux-address and --ipv6 do not apply"
        )));
    }
    let pools = PoolRequest::parse(opts)?;
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    for o in &opts.options {
        let (k, v) = kv(o, "option")?;
        if let Some(old) = options.get(&k).filter(|old| **old != v) {
            return Err(Error::Invalid(format!(
                "option {k} given twice: {old} and {v}"
            )));
        }
        options.insert(k, v);
    }
    let mut net = Network::new(&opts.name, driver_name, options);
    net.driver_opts = drv.parse_options(&net.id, &net.options)?;
    for l in &opts.labels {
        let (k, v) = kv(l, "label")?;
        net.labels.insert(k, v);
    }
    net.internal = opts.internal || drv.internal(&net.driver_opts);
    net.attachable = opts.attachable;
    net.enable_ipv6 = opts.ipv6;

    let store = &ctx.store;
    store.ensure_defaults()?;
    let _lock = store.lock_all()?;
    let existing = store.list()?;
    if existing.iter().any(|n| n.name == opts.name) {
        return Err(Error::Conflict(format!(
            "network with name {} already exists",
            opts.name
        )));
    }
    if caps.ipam == Ipam::Local {
        let (cfg, cfg6) = pools.place(&existing)?;
        net.ipam = Some(cfg);
        net.ipam6 = cfg6;
    }
    drv.check(&net, &existing)?;
    drv.allocate(&mut net)?;
    let made = drv.create_network(&net, ctx.fw).and_then(|()| {
        store.save(&net).inspect_err(|_| {
            let _ = drv.delete_network(&net, ctx.fw);
        })
    });
    if let Err(e) = made {
        let _ = drv.free(&net);
        return Err(e);
    }
    Ok(net)
}

/// `network rm`: refused for predefined networks and while endpoints exist.
pub fn remove(root: &Path, key: &str) -> Result<Network> {
    remove_in(&Context::new(root)?, key)
}

pub(crate) fn remove_in(ctx: &Context, key: &str) -> Result<Network> {
    let store = &ctx.store;
    let net = store.find(key)?;
    if net.is_predefined() {
        return Err(Error::Invalid(format!(
            "{} is a pre-defined network and cannot be removed",
            net.name
        )));
    }
    ctx.driver(&net)?.check_remove(&net)?;
    let _all = store.lock_all()?;
    let _lock = store.lock(&net.id)?;
    let mut net = store.load(&net.id)?;
    // A host-side part left without endpoints (a crash before the last leave finished) goes
    // too, before the network is given back.
    if crate::endpoint::drop_stale(ctx, &net) || !store.has_endpoints(&net.id)? {
        let vacated = crate::endpoint::vacate(ctx, &mut net);
        store.save(&net)?;
        vacated?;
    }
    if store.has_endpoints(&net.id)? {
        return Err(Error::Conflict(format!(
            "error while removing network: network {} id {} has active endpoints",
            net.name, net.id
        )));
    }
    let drv = ctx.driver(&net)?;
    drv.free(&net)?;
    drv.delete_network(&net, ctx.fw)?;
    store.delete(&net.id)?;
    Ok(net)
}

/// `network prune`: removes user networks without (live) endpoints; returns their names.
pub fn prune(root: &Path) -> Result<Vec<String>> {
    let ctx = Context::new(root)?;
    let nets = ctx.store.list()?;
    let mut removed = Vec::new();
    for n in &nets {
        if let Err(e) = sweep(&ctx, &n.id) {
            tracing::warn!(network = %n.name, "giving back what failed releases left: {e}");
        }
    }
    // A global network is the cluster's: it goes with `network rm`, not with one host's prune.
    for n in nets
        .iter()
        .filter(|n| !n.is_predefined() && n.scope() == "local")
    {
        if remove_in(&ctx, &n.id).is_ok() {
            removed.push(n.name.clone());
        }
    }
    Ok(removed)
}

/// `Driver::sweep` of network `id`, under its lock.
fn sweep(ctx: &Context, id: &str) -> Result<()> {
    let _lock = ctx.store.lock(id)?;
    let net = ctx.store.load(id)?;
    // Endpoints whose holder was killed, then leases a crash left to nobody.
    crate::endpoint::drop_stale(ctx, &net);
    ctx.store.repair_leases(id)?;
    ctx.driver(&net)?.sweep(&net)
}

/// Re-applies every network's rules from state, e.g. after `iptables -F`: one batch for all
/// networks whose kernel side exists, then every container's port rules.
pub fn reload(root: &Path) -> Result<()> {
    let ctx = Context::new(root)?;
    let mut errors = Errors::default();
    let mut live = Vec::new();
    if let Some(nets) = errors.check(ctx.store.list()) {
        for n in &nets {
            if let Some(Some(fw)) = errors.check(ctx.driver(n).and_then(|d| d.firewall(n))) {
                live.push(fw);
            }
        }
    }
    if !live.is_empty() {
        errors.check(ctx.fw.install_networks(&live));
    }
    errors.check(crate::ports::reload(&ctx));
    // Also brings back a resolver that was killed.
    errors.check(ctx.sync_names());
    errors.into_result()
}

/// Removes every kernel object of the root's networks (bridges, rules), keeping the state:
/// for `system prune` and test cleanup. The default bridge comes back on first use.
pub fn teardown(root: &Path) -> Result<()> {
    let ctx = Context::new(root)?;
    let mut errors = Errors::default();
    errors.check(crate::dns::stop(root));
    // Its peers go with the VXLAN devices; a helper started again programs them anew.
    errors.check(crate::cluster::agent::stop(root));
    errors.check(crate::ports::teardown(&ctx));
    if let Some(nets) = errors.check(ctx.store.list()) {
        for n in &nets {
            errors.check(ctx.driver(n).and_then(|d| d.delete_network(n, ctx.fw)));
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{RecordingDriver, Root};

    fn opts(name: &str, subnet: &str) -> CreateOptions {
        CreateOptions {
            name: name.into(),
            driver: Some(RecordingDriver::NAME.into()),
            subnet: Some(subnet.into()),
            ..Default::default()
        }
    }

    fn files(r: &Root) -> usize {
        std::fs::read_dir(r.path().join("networks"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    }

    #[test]
    fn create_validates_before_making_anything_and_rolls_back() {
        let r = Root::new();
        let ok = create_in(&r.ctx(), &opts("n1", "10.180.10.0/24")).unwrap();
        assert_eq!(ok.ipam.as_ref().unwrap().gateway.to_string(), "10.180.10.1");
        assert_eq!(
            r.log.calls(),
            ["check n1", "create_network n1", "install_networks rec-n1"]
        );
        let mut bad_opt = opts("n2", "10.180.11.0/24");
        bad_opt.options = vec!["bogus=1".into()];
        let mut exclusive = opts("n3", "10.180.12.0/24");
        exclusive.driver = Some("null".into());
        let mut no_plugin = opts("n4", "10.180.13.0/24");
        no_plugin.driver = Some("overlay9".into());
        for (o, want) in [
            (bad_opt, "unknown recording driver option bogus"),
            (
                exclusive,
                "only one instance of \"null\" network is allowed",
            ),
            (no_plugin, "plugin not found"),
            (
                opts("n1", "10.180.14.0/24"),
                "network with name n1 already exists",
            ),
            (opts("n5", "10.180.10.128/25"), "Pool overlaps"),
            (opts("bad name", "10.180.15.0/24"), "invalid network name"),
        ] {
            let e = create_in(&r.ctx(), &o).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", o.name);
        }
        assert_eq!(files(&r), 1);
        assert_eq!(r.log.calls().len(), 3, "{:?}", r.log.calls());
        // The driver's failure leaves no state file.
        r.driver.fail("create_network");
        assert!(create_in(&r.ctx(), &opts("n6", "10.180.16.0/24")).is_err());
        assert_eq!(files(&r), 1);
        // rm asks the driver and the firewall to undo it.
        remove_in(&r.ctx(), "n1").unwrap();
        assert!(r.log.has("delete_network n1") && r.log.has("remove_network rec-n1"));
        assert_eq!(files(&r), 0);
    }

    #[test]
    fn macvlan_and_ipvlan_refusals_leave_nothing() {
        let r = Root::new();
        let mut iv = Network::new("iv", "ipvlan", BTreeMap::new());
        iv.driver_opts = crate::driver::driver("ipvlan")
            .unwrap()
            .parse_options(&iv.id, &[("parent".into(), "lo.7".into())].into())
            .unwrap();
        r.store().save(&iv).unwrap();
        for (driver, o, want) in [
            (
                "macvlan",
                &["macvlan_mode=l2"][..],
                "requested macvlan mode 'l2' is not valid",
            ),
            (
                "macvlan",
                &["parent=rbt-mnope0"],
                "-o parent interface was not found on the host: rbt-mnope0",
            ),
            (
                "macvlan",
                &["parent=lo.0"],
                "vlan id must be between 1-4094, received: 0",
            ),
            (
                "macvlan",
                &["parent=lo.4095"],
                "vlan id must be between 1-4094, received: 4095",
            ),
            (
                "macvlan",
                &["parent=lo.7"],
                "ipvlan network iv is already using parent interface lo.7",
            ),
            (
                "ipvlan",
                &["parent=lo.8", "parent=lo.9"],
                "option parent given twice: lo.8 and lo.9",
            ),
            ("ipvlan", &["bogus=1"], "unknown ipvlan driver option bogus"),
            (
                "ipvlan",
                &["ipvlan_flag=l3"],
                "requested ipvlan flag 'l3' is not valid",
            ),
        ] {
            let mut c = opts("m1", "10.184.200.0/24");
            c.driver = Some(driver.into());
            c.options = o.iter().map(|s| s.to_string()).collect();
            let e = create_in(&r.ctx(), &c).unwrap_err().to_string();
            assert!(e.contains(want), "{driver} {o:?}: {e}");
        }
        assert_eq!(files(&r), 1, "a refused network left a state file");
        assert!(r.log.calls().is_empty(), "{:?}", r.log.calls());
    }
}
