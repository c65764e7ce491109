//! `rbox`: parse the command line, call the crates, print. Errors become Docker's exit codes:
//! for `run`/`create` 125 for an rbox error, 126/127 for a command that cannot run / is not
//! found, else the container's own code; 1 for an error of any other command.

mod commands;
mod engine;
mod exit;
mod format;
mod prompt;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use exit::Exit;

#[derive(Parser)]
#[command(
    name = "rbox",
    version,
    about = "A small daemonless container runtime with networking built in",
    arg_required_else_help = true
)]
pub struct Cli {
    /// State directory (images, containers, networks)
    #[arg(
        long,
        global = true,
        env = "RBOX_ROOT",
        default_value = "/var/lib/rbox"
    )]
    pub root: PathBuf,

    /// Firewall backend for network and port rules: iptables, none (rbox writes no rules) or
    /// auto (iptables when iptables-restore is on PATH)
    #[arg(long, global = true, env = "RBOX_FIREWALL", default_value = "auto")]
    pub firewall: String,

    /// Cluster store of overlay networks (etcd://HOST:PORT[,HOST:PORT...]); also
    /// "cluster-store" in <root>/config.json
    #[arg(long, global = true, env = "RBOX_CLUSTER_STORE", value_name = "URL")]
    pub cluster_store: Option<String>,

    /// This host's address (or interface) in the cluster: where the other hosts reach its
    /// overlay networks; default: the address it reaches the store from
    #[arg(
        long,
        global = true,
        env = "RBOX_CLUSTER_ADVERTISE",
        value_name = "IP|IFACE"
    )]
    pub cluster_advertise: Option<String>,

    /// Directory of CNI network configuration lists, each a network of driver cni
    /// (default /etc/cni/net.d)
    #[arg(long, global = true, env = "RBOX_CNI_CONF_DIR", value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,

    /// Log debug details of what rbox and libcontainer do (to stderr)
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand)]
pub enum Command {
    #[command(flatten)]
    Images(commands::images::Cmd),
    #[command(flatten)]
    Containers(commands::containers::Cmd),
    #[command(flatten)]
    Networks(commands::networks::Cmd),
    #[command(flatten)]
    Pull(commands::pull::Cmd),
    #[command(flatten)]
    Dns(commands::dns::Cmd),
    #[command(flatten)]
    Cluster(commands::cluster::Cmd),
    #[command(flatten)]
    Volumes(commands::volumes::Cmd),
    /// Return low-level information on Docker objects
    Inspect(commands::inspect::InspectArgs),
    #[command(flatten)]
    System(commands::system::Cmd),
}

fn main() {
    abort_on_panic();
    let cli = Cli::try_parse().unwrap_or_else(|e| exit::usage(e));
    if cli.debug || std::env::var_os("RUST_LOG").is_some() {
        let filter = if cli.debug {
            "debug".to_string()
        } else {
            std::env::var("RUST_LOG").unwrap_or_default()
        };
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let default_code = commands::error_exit_code(&cli.cmd);
    if !commands::owns_processes(&cli.cmd) {
        // As Docker's CLI: a reader that went away (`rbox ps -q | head -1`) ends the command
        // silently. Commands that own a container keep ignoring SIGPIPE (the Rust default)
        // and stop copying to a closed stdout instead of dying with their container's state.
        // SAFETY: restoring a signal's default disposition before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // A setting the host cannot honour is a usage error of every command (exit 125), as a bad
    // daemon flag is for dockerd. The processes rbox starts (monitors) inherit the choice.
    if let Err(e) = net::firewall::select(&cli.firewall) {
        std::process::exit(exit::report(&e.into(), 125));
    }
    std::env::set_var("RBOX_FIREWALL", &cli.firewall);
    // Before anything reads the root (the cluster settings in its config.json).
    if let Err(e) = check_root(&cli.root) {
        std::process::exit(exit::report(&e, default_code));
    }
    match net::cluster::select(
        &cli.root,
        cli.cluster_store.as_deref(),
        cli.cluster_advertise.as_deref(),
    ) {
        Ok(Some(cfg)) => {
            std::env::set_var("RBOX_CLUSTER_STORE", &cfg.url);
            std::env::set_var(
                "RBOX_CLUSTER_ADVERTISE",
                cfg.advertise.as_deref().unwrap_or(""),
            );
            // A helper killed with -9 is started again by the next command.
            if !commands::is_helper(&cli.cmd) {
                if let Err(e) = net::cluster::agent::ensure(&cli.root) {
                    tracing::warn!("cluster helper: {e}");
                }
            }
        }
        Ok(None) => {}
        Err(e) => std::process::exit(exit::report(&e.into(), 125)),
    }
    // Read by `net` wherever it lists networks, here and in the processes rbox starts.
    // Absolute: the processes rbox starts may run elsewhere.
    if let Some(dir) = &cli.cni_conf_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        std::env::set_var("RBOX_CNI_CONF_DIR", dir);
    }
    // Any command on a root brings back a resolver that was killed (a lock probe when it lives).
    if !commands::internal(&cli.cmd) && cli.root.is_dir() {
        if let Err(e) = net::dns::ensure(&cli.root) {
            tracing::warn!("restarting the DNS resolver: {e}");
        }
    }
    let code = match commands::run(&cli) {
        Ok(code) => code,
        Err(e) => exit::report(&e, default_code),
    };
    std::process::exit(code);
}

/// Every command refuses a `--root` that exists but is no directory (it would otherwise read
/// as an empty root, e.g. `ps` printing an empty table).
fn check_root(root: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::metadata(root) {
        Ok(m) if !m.is_dir() => Err(anyhow::anyhow!(
            "--root {}: not a directory",
            root.display()
        )),
        _ => Ok(()),
    }
}

/// A panic must never unwind: in a child that libcontainer forked without exec, unwinding
/// would run the CLI's own code inside the container. Release builds have `panic = "abort"`;
/// debug builds unwind (the test harness needs it), so the hook aborts before any unwinding.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}
