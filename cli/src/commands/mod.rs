//! One module per command group; each defines a clap `Cmd` enum flattened into the top level.

pub mod containers;
pub mod dns;
pub mod images;
pub mod networks;
pub mod pull;
pub mod volumes;

use crate::{Cli, Command};

/// Runs the parsed command; `Ok(code)` is the process exit code.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.cmd {
        Command::Images(c) => images::run(cli, c),
        Command::Containers(c) => containers::run(cli, c),
        Command::Networks(c) => networks::run(cli, c),
        Command::Pull(c) => pull::run(cli, c),
        Command::Dns(c) => dns::run(cli, c),
        Command::Volumes(c) => volumes::run(cli, c),
    }
}

/// The hidden commands rbox runs itself (the resolver, monitors, port proxies): they must not
/// start a resolver of their own.
pub fn internal(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Dns(_)
            | Command::Containers(containers::Cmd::Monitor { .. })
            | Command::Networks(networks::Cmd::Network {
                cmd: networks::NetworkCmd::PortProxy { .. }
            })
    )
}
