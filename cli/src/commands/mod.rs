//! One module per command group; each defines a clap `Cmd` enum flattened into the top level.

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
        Command::Dns(_) => true,
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
        Command::Volumes(c) => volumes::run(cli, c),
        Command::Inspect(a) => inspect::run(cli, a),
        Command::System(c) => system::run(cli, c),
    }
}
