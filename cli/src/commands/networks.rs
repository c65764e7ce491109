//! `rbox` networks commands.

use clap::Subcommand;

use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {}

pub fn run(_cli: &Cli, cmd: &Cmd) -> anyhow::Result<i32> {
    match *cmd {}
}
