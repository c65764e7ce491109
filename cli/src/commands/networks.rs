//! `rbox network ...`: Docker's network commands over the `net` crate.

use std::io::Write;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::format::{ListFormat, Row};
use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
}

impl Cmd {
    /// The hidden relay and the test hook that holds published ports own processes.
    pub fn owns_processes(&self) -> bool {
        let Cmd::Network { cmd } = self;
        matches!(
            cmd,
            NetworkCmd::PortProxy { .. } | NetworkCmd::Sandbox(SandboxCmd::Publish { .. })
        )
    }
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Create a network
    Create(CreateArgs),
    /// Display detailed information on one or more networks
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. "until=<timestamp>", "label=k=v", "label!=k")
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        /// IPv4 address (e.g., "172.30.100.104")
        #[arg(long)]
        ip: Option<String>,
        /// IPv6 address
        #[arg(long)]
        ip6: Option<String>,
        /// Add network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Re-apply every network's firewall rules from state (after `iptables -F` or a firewall reload)
    Reload,
    /// Remove the kernel side (bridges, rules) of every network of this root; state is kept
    #[command(hide = true)]
    Teardown,
    /// Test hook: wire a bare network namespace without a container
    #[command(hide = true, subcommand)]
    Sandbox(SandboxCmd),
    /// The userland proxy of a container's ports on `[::1]` (and on IPv6 for a container without
    /// it), started by publishing: fd 3+n is the listening socket of the n-th `--to`
    #[command(hide = true)]
    PortProxy {
        /// The container it serves (for `ps`)
        #[arg(long)]
        container: String,
        #[arg(long, required = true)]
        to: Vec<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
pub enum SandboxCmd {
    Create {
        id: String,
    },
    Connect {
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        ip6: Option<String>,
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        id: String,
    },
    Disconnect {
        network: String,
        id: String,
    },
    Release {
        id: String,
    },
    /// Publishes ports of a connected sandbox, prints the bindings as JSON, then holds the
    /// reservation until stdin closes (the role of a container's monitor).
    Publish {
        #[arg(short = 'p', long = "publish")]
        publish: Vec<String>,
        /// EXPOSE entries published on ephemeral ports, as -P does
        #[arg(long)]
        expose: Vec<String>,
        id: String,
    },
    Unpublish {
        id: String,
    },
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Pretty-print networks using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long)]
    filter: Vec<String>,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long)]
    driver: Option<String>,
    /// Subnet in CIDR format that represents a network segment (one IPv4, one IPv6)
    #[arg(long)]
    subnet: Vec<String>,
    /// Gateway for the master subnet (one IPv4, one IPv6)
    #[arg(long)]
    gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long)]
    ip_range: Option<String>,
    /// Auxiliary IPv4 addresses used by Network driver (name=IP)
    #[arg(long)]
    aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Enable IPv6 networking
    #[arg(long)]
    ipv6: bool,
    /// Enable manual container attachment
    #[arg(long)]
    attachable: bool,
    /// IP Address Management Driver
    #[arg(long)]
    ipam_driver: Option<String>,
    /// Set metadata on a network
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    name: String,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    let Cmd::Network { cmd } = cmd;
    let root = cli.root.as_path();
    match cmd {
        NetworkCmd::Ls(a) => ls(root, a),
        NetworkCmd::Create(a) => {
            let (subnet, subnet6) = by_family(&a.subnet, "--subnet")?;
            let (gateway, gateway6) = by_family(&a.gateway, "--gateway")?;
            let opts = net::CreateOptions {
                name: a.name.clone(),
                driver: a.driver.clone(),
                subnet,
                subnet6,
                gateway,
                gateway6,
                ip_range: a.ip_range.clone(),
                aux_addresses: a.aux_address.clone(),
                internal: a.internal,
                ipv6: a.ipv6,
                attachable: a.attachable,
                ipam_driver: a.ipam_driver.clone(),
                labels: a.label.clone(),
                options: a.opt.clone(),
            };
            let (n, warnings) = create(root, &opts)?;
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCmd::Inspect { format, networks } => inspect(root, format.as_deref(), networks),
        NetworkCmd::Rm { networks } => {
            let mut code = 0;
            for n in networks {
                match net::manage::remove(root, n) {
                    Ok(_) => {
                        println!("{n}");
                        runtime::events::object(root, "network", "destroy", n, n);
                    }
                    // Docker 20.10's words for a network that is not there.
                    Err(net::Error::NetworkNotFound(_)) => {
                        eprintln!("Error: No such network: {n}");
                        code = 1;
                    }
                    Err(e) => {
                        eprintln!("Error: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCmd::Prune { force, filter } => {
            let f = runtime::filter::Filters::parse(filter, runtime::filter::PRUNE_KEYS)?;
            if !force
                && !crate::prompt::confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )?
            {
                return Ok(0);
            }
            crate::prompt::deleted("Networks", &prune_networks(root, &f)?);
            Ok(0)
        }
        NetworkCmd::Connect {
            ip,
            ip6,
            alias,
            network,
            container,
        } => connect(
            root,
            network,
            container,
            ip.as_deref(),
            ip6.as_deref(),
            alias,
        ),
        NetworkCmd::Disconnect {
            force,
            network,
            container,
        } => disconnect(root, network, container, *force),
        NetworkCmd::Reload => {
            net::manage::reload(root)?;
            Ok(0)
        }
        NetworkCmd::Teardown => {
            net::manage::teardown(root)?;
            Ok(0)
        }
        NetworkCmd::Sandbox(s) => sandbox(root, s),
        NetworkCmd::PortProxy { to, .. } => Ok(net::port_proxy(to)),
    }
}

/// `network create` (also the Engine API's), with its event; the warnings the driver has for
/// the user (a Wi-Fi parent).
pub fn create(
    root: &std::path::Path,
    opts: &net::CreateOptions,
) -> Result<(net::Network, Vec<String>)> {
    let (n, warnings) = net::manage::create(root, opts)?;
    runtime::events::object(root, "network", "create", &n.id, &n.name);
    Ok((n, warnings))
}

/// Splits repeated `--subnet`/`--gateway` values into the IPv4 one and the IPv6 one.
fn by_family(values: &[String], flag: &str) -> Result<(Option<String>, Option<String>)> {
    let (v6, v4): (Vec<&String>, Vec<&String>) = values.iter().partition(|v| v.contains(':'));
    if v4.len() > 1 || v6.len() > 1 {
        bail!("{flag} may be given once per address family");
    }
    Ok((
        v4.first().map(|s| s.to_string()),
        v6.first().map(|s| s.to_string()),
    ))
}

/// Removes the unused user networks `f` selects; their names.
pub fn prune_networks(root: &std::path::Path, f: &runtime::filter::Filters) -> Result<Vec<String>> {
    if f.is_empty() {
        return Ok(net::manage::prune(root)?);
    }
    let mut removed = Vec::new();
    for n in net::Store::new(root).list()? {
        let created = chrono::DateTime::parse_from_rfc3339(&n.created)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        if !n.is_predefined()
            && f.prune_matches(created, &n.labels)?
            && net::manage::remove(root, &n.id).is_ok()
        {
            removed.push(n.name.clone());
        }
    }
    Ok(removed)
}

fn sandbox(root: &std::path::Path, cmd: &SandboxCmd) -> Result<i32> {
    match cmd {
        SandboxCmd::Create { id } => {
            let sb = net::Sandbox::create(root, id)?;
            println!("{}", sb.path().display());
        }
        SandboxCmd::Connect {
            ip,
            ip6,
            alias,
            network,
            id,
        } => {
            let sb =
                net::Sandbox::open(root, id).ok_or_else(|| anyhow::anyhow!("no sandbox {id}"))?;
            let ip = ip
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| anyhow::anyhow!("invalid IP address"))?;
            let req = net::EndpointRequest {
                network: network.clone(),
                container_name: id.clone(),
                ip,
                ip6: parse_ip(ip6.as_deref(), "--ip6")?,
                aliases: alias.clone(),
                ..Default::default()
            };
            let s = net::connect(root, id, &sb, &req)?;
            println!("{}", serde_json::to_string(&s)?);
        }
        SandboxCmd::Disconnect { network, id } => net::disconnect(root, id, network)?,
        SandboxCmd::Release { id } => net::release(root, id)?,
        SandboxCmd::Publish {
            publish,
            expose,
            id,
        } => {
            let mut specs = Vec::new();
            for p in publish {
                specs.push(net::PortSpec::parse(p)?);
            }
            for e in expose {
                specs.push(net::PortSpec::exposed(e)?);
            }
            let (bindings, _held) = net::publish(root, id, &specs)?;
            println!("{}", serde_json::to_string(&bindings)?);
            std::io::stdout().flush()?;
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)?;
        }
        SandboxCmd::Unpublish { id } => net::unpublish(root, id)?,
    }
    Ok(0)
}

/// The column names of `formatter.NetworkContext` (Docker 28).
const HEADER: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

/// Go's `time.Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`, the fraction
/// without trailing zeros (here in UTC, as the network's record keeps it).
pub fn go_time(t: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(t) else {
        return t.to_string();
    };
    let t = t.with_timezone(&chrono::Utc);
    let nanos = t.timestamp_subsec_nanos();
    let frac = match nanos {
        0 => String::new(),
        n => format!(".{n:09}").trim_end_matches('0').to_string(),
    };
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

fn row(n: &net::Network, no_trunc: bool) -> Row {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let fields = json!({
        "ID": if no_trunc { n.id.clone() } else { n.id[..12].to_string() },
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope(),
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": go_time(&n.created),
    });
    let Value::Object(fields) = fields else {
        unreachable!("a JSON object literal")
    };
    Row::new("*formatter.NetworkContext", fields, &n.labels)
}

pub fn matches(
    store: &net::Store,
    n: &net::Network,
    filters: &runtime::filter::Filters,
) -> Result<bool> {
    let type_ok = filters.values("type").iter().try_fold(
        filters.values("type").is_empty(),
        |ok, v| match v.as_str() {
            "custom" => Ok(ok || !n.is_predefined()),
            "builtin" => Ok(ok || n.is_predefined()),
            _ => bail!("invalid filter: 'type'='{v}'"),
        },
    )?;
    // Dangling: a user network no container uses.
    let dangling = !n.is_predefined() && !store.has_endpoints(&n.id)?;
    Ok(type_ok
        && filters.bool_matches("dangling", dangling)?
        && filters.any("name", |v| runtime::filter::regex_match(v, &n.name))
        && filters.any("driver", |v| n.driver == v)
        && filters.any("id", |v| n.id.starts_with(v))
        && filters.any("scope", |v| v == n.scope())
        && filters.labels_match("label", &n.labels))
}

fn ls(root: &std::path::Path, a: &LsArgs) -> Result<i32> {
    let filters = runtime::filter::Filters::parse(
        &a.filter,
        &["name", "driver", "id", "label", "type", "scope", "dangling"],
    )?;
    // Global networks created on other hosts appear, removed ones go.
    if let Err(e) = net::cluster::sync(root) {
        eprintln!("Warning: global networks may be out of date: {e}");
    }
    let mut rows = Vec::new();
    let store = net::Store::new(root);
    let nets = store.list()?;
    for p in net::driver::cni::problems(&nets) {
        eprintln!("WARNING: CNI configuration {p}");
    }
    for n in nets {
        if matches(&store, &n, &filters)? {
            rows.push(row(&n, a.no_trunc));
        }
    }
    let format = if a.quiet {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let f = ListFormat::parse(format, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")?;
    std::io::stdout().write_all(f.render(&rows, HEADER)?.as_bytes())?;
    Ok(0)
}

fn inspect(root: &std::path::Path, format: Option<&str>, names: &[String]) -> Result<i32> {
    let cli_root = root.to_path_buf();
    crate::format::inspect_each(format, names, |n| {
        crate::commands::inspect::network_in(&cli_root, n)
    })
}

fn parse_ip(s: Option<&str>, flag: &str) -> Result<Option<std::net::IpAddr>> {
    s.filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("invalid {flag} address: {v}"))
        })
        .transpose()
}

/// `network connect`: a new `ethN` in the running container, and at every later start.
pub fn connect(
    root: &std::path::Path,
    network: &str,
    ctr: &str,
    ip: Option<&str>,
    ip6: Option<&str>,
    aliases: &[String],
) -> Result<i32> {
    let c = runtime::Container::find(root, ctr)?;
    let opts = runtime::Connect {
        ip: ip.map(str::to_string),
        ip6: ip6.map(str::to_string),
        aliases: aliases.to_vec(),
    };
    c.connect(network, &opts)?;
    Ok(0)
}

/// `network disconnect`: the container's `ethN` on that network vanishes and its lease is freed.
pub fn disconnect(root: &std::path::Path, network: &str, ctr: &str, force: bool) -> Result<i32> {
    let netw = net::Store::new(root).find(network)?;
    let c = match runtime::Container::find(root, ctr) {
        Ok(c) => c,
        Err(e) if force => {
            // A container that is gone: free whatever lease still carries its name or id.
            let stale = net::Store::new(root)
                .endpoints(&netw.id)?
                .into_iter()
                .find(|(id, ep)| id.starts_with(ctr) || ep.container_name == ctr);
            match stale {
                Some((id, _)) => net::disconnect(root, &id, &netw.id)?,
                None => return Err(e.into()),
            }
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    match c.disconnect(&netw.id) {
        Ok(()) => {}
        Err(runtime::Error::Net(net::Error::Conflict(_))) if force => {}
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}
