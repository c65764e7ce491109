//! `rbox cluster serve` (hidden): the helper of overlay networks (keeps the host's lease in the
//! cluster store alive, programs VXLAN peers as hosts come and go), started by rbox itself when
//! this host joins an overlay network (see `net::cluster::agent`). Not for users to run.

use anyhow::Result;
use clap::Subcommand;

use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// The cluster helper (started by rbox on demand)
    #[command(hide = true)]
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Start the helper for --root in the background; exits once it is ready
    Serve,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    let Cmd::Cluster {
        cmd: ClusterCmd::Serve,
    } = cmd;
    // Its warnings go to <root>/cluster/agent.log (its stderr once it runs).
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
    Ok(net::cluster::agent::serve_main(&cli.root))
}
