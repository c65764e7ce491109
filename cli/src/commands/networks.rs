//! `rbox network ...`: Docker's network commands over the `net` crate.

use std::io::Write;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::format::Format;
use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
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
    /// The userland proxy of a `-p [::1]:H:C` port, started by publishing (fd 3: its socket)
    #[command(hide = true)]
    PortProxy {
        /// The container it serves (for `ps`)
        #[arg(long)]
        container: String,
        #[arg(long)]
        to: std::net::SocketAddr,
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
            let n = net::manage::create(root, &opts)?;
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCmd::Inspect { format, networks } => inspect(root, format.as_deref(), networks),
        NetworkCmd::Rm { networks } => {
            let mut code = 0;
            for n in networks {
                match net::manage::remove(root, n) {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        code = 125;
                    }
                }
            }
            Ok(code)
        }
        NetworkCmd::Prune { force } => {
            if !force && !confirm("WARNING! This will remove all custom networks not used by at least one container.")? {
                return Ok(0);
            }
            let removed = net::manage::prune(root)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
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
        NetworkCmd::PortProxy { to, .. } => Ok(net::port_proxy(*to)),
    }
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

fn confirm(warning: &str) -> Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
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

fn row(n: &net::Network, no_trunc: bool) -> Value {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "ID": if no_trunc { n.id.clone() } else { n.id[..12].to_string() },
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope(),
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": n.created,
    })
}

fn matches(n: &net::Network, filters: &[(String, String)]) -> Result<bool> {
    for (k, v) in filters {
        let ok = match k.as_str() {
            "name" => n.name.contains(v.as_str()),
            "driver" => &n.driver == v,
            "id" => n.id.starts_with(v.as_str()),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
                None => n.labels.contains_key(v),
            },
            "type" => match v.as_str() {
                "custom" => !n.is_predefined(),
                "builtin" => n.is_predefined(),
                _ => bail!("invalid filter: 'type'='{v}'"),
            },
            _ => bail!("invalid filter '{k}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ls(root: &std::path::Path, a: &LsArgs) -> Result<i32> {
    let filters: Vec<(String, String)> = a
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))
        })
        .collect::<Result<_>>()?;
    // Global networks created on other hosts appear, removed ones go.
    if let Err(e) = net::cluster::sync(root) {
        eprintln!("Warning: global networks may be out of date: {e}");
    }
    let mut nets = Vec::new();
    for n in net::Store::new(root).list()? {
        if matches(&n, &filters)? {
            nets.push(n);
        }
    }
    let rows: Vec<Value> = nets.iter().map(|n| row(n, a.no_trunc)).collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let format = a.format.as_deref().unwrap_or("table");
    let format = if format == "table" {
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    } else {
        format
    };
    let f = Format::parse(format)?;
    let mut lines = Vec::new();
    if let Some(h) = f.header() {
        lines.push(
            h.replace("ID", "NETWORK ID")
                .replace("NETWORK NETWORK ID", "NETWORK ID"),
        );
    }
    for r in &rows {
        lines.push(f.render(r)?);
    }
    print!("{}", align(&lines));
    Ok(0)
}

/// Docker's tabwriter: tab-separated cells padded to the widest cell plus three spaces.
fn align(lines: &[String]) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if i + 1 < row.len() {
                out += &format!("{c:<w$}", w = widths[i] + 3);
            } else {
                out += c;
            }
        }
        out.push('\n');
    }
    out
}

fn inspect(root: &std::path::Path, format: Option<&str>, names: &[String]) -> Result<i32> {
    let mut found = Vec::new();
    let mut code = 0;
    for n in names {
        match net::cluster::inspect(root, n) {
            Ok(v) => found.push(v),
            Err(net::Error::NetworkNotFound(_)) => {
                eprintln!("Error: No such network: {n}");
                code = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match format {
        Some(f) => {
            let f = Format::parse(f)?;
            for v in &found {
                println!("{}", f.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(found))?),
    }
    Ok(code)
}

fn parse_ip(s: Option<&str>, flag: &str) -> Result<Option<std::net::IpAddr>> {
    s.filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("invalid {flag} address: {v}"))
        })
        .transpose()
}

/// `network connect`: a new `ethN` in the running container, recorded in its state.
fn connect(
    root: &std::path::Path,
    network: &str,
    ctr: &str,
    ip: Option<&str>,
    ip6: Option<&str>,
    aliases: &[String],
) -> Result<i32> {
    let c = runtime::Container::find(root, ctr)?;
    if !c.running {
        bail!("container {} is not running", c.name);
    }
    let sb = net::Sandbox::open(root, &c.id).ok_or_else(|| {
        anyhow::anyhow!(
            "container {} has no network sandbox (host network?)",
            c.name
        )
    })?;
    let req = net::EndpointRequest {
        network: network.to_string(),
        container_name: c.name.clone(),
        ip: parse_ip(ip, "--ip")?,
        ip6: parse_ip(ip6, "--ip6")?,
        mac: None,
        aliases: aliases.to_vec(),
        dns: Vec::new(),
    };
    let settings = net::connect(root, &c.id, &sb, &req)?;
    let name = settings.network_name.clone();
    if let Err(e) = c.add_endpoint(&name, settings) {
        let _ = net::disconnect(root, &c.id, &name);
        return Err(e.into());
    }
    Ok(0)
}

/// `network disconnect`: the container's `ethN` on that network vanishes and its lease is freed.
fn disconnect(root: &std::path::Path, network: &str, ctr: &str, force: bool) -> Result<i32> {
    let netw = net::Store::new(root).find(network)?;
    let c = match runtime::Container::find(root, ctr) {
        Ok(c) => c,
        Err(e) if force => {
            // A container that is gone: free whatever lease still carries its name or id.
            let stale = netw
                .endpoints
                .iter()
                .find(|(id, ep)| id.starts_with(ctr) || ep.container_name == ctr);
            match stale {
                Some((id, _)) => net::disconnect(root, id, &netw.id)?,
                None => return Err(e.into()),
            }
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    match net::disconnect(root, &c.id, &netw.id) {
        Ok(()) => {}
        Err(net::Error::Conflict(_)) if force => {}
        Err(e) => return Err(e.into()),
    }
    c.remove_endpoint(&netw.name)?;
    Ok(0)
}
