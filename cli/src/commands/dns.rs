//! `rbox dns serve` (hidden): the embedded DNS resolver of user networks, started by rbox
//! itself when a container joins a user network (see `net::dns`). Not for users to run.

use anyhow::Result;
use clap::Subcommand;

use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// The embedded DNS resolver (started by rbox on demand)
    #[command(hide = true)]
    Dns {
        #[command(subcommand)]
        cmd: DnsCmd,
    },
}

#[derive(Subcommand)]
pub enum DnsCmd {
    /// Start the resolver for --root in the background; exits once it listens
    Serve,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    let Cmd::Dns { cmd: DnsCmd::Serve } = cmd;
    // Its warnings go to <root>/dns/resolver.log (its stderr once it runs).
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
    Ok(net::dns::serve_main(&cli.root))
}
