//! One module per command group; each defines a clap `Cmd` enum flattened into the top level.

pub mod cluster;
pub mod containers;
pub mod dns;
pub mod images;
pub mod networks;
pub mod pull;
pub mod volumes;

use crate::{Cli, Command};

/// Whether `cmd` is one of rbox's own helper processes (not a user's command).
pub fn is_helper(cmd: &Command) -> bool {
    matches!(cmd, Command::Dns(_) | Command::Cluster(_))
}

/// Runs the parsed command; `Ok(code)` is the process exit code.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.cmd {
        Command::Images(c) => images::run(cli, c),
        Command::Containers(c) => containers::run(cli, c),
        Command::Networks(c) => networks::run(cli, c),
        Command::Pull(c) => pull::run(cli, c),
        Command::Dns(c) => dns::run(cli, c),
        Command::Cluster(c) => cluster::run(cli, c),
        Command::Volumes(c) => volumes::run(cli, c),
    }
}
