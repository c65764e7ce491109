//! One module per command group; each defines a clap `Cmd` enum flattened into the top level.

pub mod cluster;
pub mod containers;
pub mod dns;
pub mod events;
pub mod images;
pub mod inspect;
pub mod networks;
pub mod pull;
pub mod system;
pub mod volumes;

use crate::{Cli, Command};

/// The exit code of an error of `cmd` (Docker's CLI: 125 for `run` and `create`, whose
/// errors it wraps as such, 1 for the others).
pub fn error_exit_code(cmd: &Command) -> i32 {
    match cmd {
        Command::Containers(c) if c.is_run_or_create() => 125,
        _ => 1,
    }
}

/// True for the commands that own running processes (a container, a relay, the resolver):
/// they must survive a closed stdout (see `main`).
pub fn owns_processes(cmd: &Command) -> bool {
    match cmd {
        Command::Containers(c) => c.owns_processes(),
        Command::Networks(c) => c.owns_processes(),
        Command::Dns(_) | Command::Cluster(_) => true,
        // The API service writes to sockets its clients may close.
        Command::System(system::Cmd::System {
            cmd: system::SystemCmd::Service(_),
        }) => true,
        _ => false,
    }
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
        Command::Inspect(a) => inspect::run(cli, a),
        Command::System(c) => system::run(cli, c),
    }
}

/// Whether `cmd` is one of rbox's per-root helper processes (the resolver, the cluster
/// helper): they must not start the cluster helper (monitors do: a restarted container needs it).
pub fn is_helper(cmd: &Command) -> bool {
    matches!(cmd, Command::Dns(_) | Command::Cluster(_))
}

/// The hidden commands rbox runs itself (the helpers, monitors, port proxies): they must not
/// start a resolver of their own.
pub fn internal(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Dns(_)
            | Command::Cluster(_)
            | Command::Containers(containers::Cmd::Monitor { .. })
            | Command::Networks(networks::Cmd::Network {
                cmd: networks::NetworkCmd::PortProxy { .. }
            })
    )
}
