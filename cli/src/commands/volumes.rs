//! `rbox volume create/ls/inspect/rm/prune`, with Docker's output.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use runtime::volume;
use serde_json::Value;

use crate::format::{ListFormat, Row};
use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
}

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a custom template
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm {
        /// Do not error if the volume does not exist
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused local volumes (anonymous ones unless --all)
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Provide filter values (e.g. "label=<label>", "label!=<label>")
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    label: Vec<String>,
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Provide filter values (dangling, driver, label, name)
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format output using a custom template ("table", "table TEMPLATE", "json" or TEMPLATE)
    #[arg(long)]
    format: Option<String>,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    let root = &cli.root;
    let Cmd::Volume(cmd) = cmd;
    match cmd {
        VolumeCmd::Create(a) => {
            if a.driver != "local" {
                bail!("plugin \"{}\" not found", a.driver);
            }
            let labels: BTreeMap<String, String> = a
                .label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let name = a.name.clone().unwrap_or_else(runtime::store::new_id);
            let v = volume::create(root, &name, labels)?;
            println!("{}", v.name);
            runtime::events::object(root, "volume", "create", &v.name, &v.name);
            Ok(0)
        }
        VolumeCmd::Ls(a) => ls(root, a),
        VolumeCmd::Inspect { format, volumes } => {
            crate::format::inspect_each(format.as_deref(), volumes, |n| {
                crate::commands::inspect::volume(cli, n)
            })
        }
        VolumeCmd::Rm { force, volumes } => {
            let mut last = None;
            for n in volumes {
                match volume::remove(root, n, *force) {
                    Ok(()) => {
                        println!("{n}");
                        runtime::events::object(root, "volume", "destroy", n, n);
                    }
                    Err(e) => {
                        if volumes.len() > 1 {
                            eprintln!("Error: {e}");
                        }
                        last = Some(e);
                    }
                }
            }
            match last {
                Some(e) if volumes.len() == 1 => Err(anyhow!(e)),
                Some(_) => Ok(1),
                None => Ok(0),
            }
        }
        VolumeCmd::Prune { all, force, filter } => {
            let f = runtime::filter::Filters::parse(filter, &["label", "label!", "all"])?;
            // Docker 23+: the `all=true` filter is the API's form of -a.
            let all = *all || f.bool_matches("all", true)? && !f.values("all").is_empty();
            if !force
                && !crate::prompt::confirm(&format!(
                "WARNING! This will remove {} local volumes not used by at least one container.",
                if all { "all" } else { "anonymous" }
            ))? {
                return Ok(0);
            }
            let (names, bytes) = volume::prune(root, all, &f)?;
            crate::prompt::deleted("Volumes", &names);
            println!("Total reclaimed space: {}", volume::human_size(bytes));
            Ok(0)
        }
    }
}

/// The column names of `formatter.VolumeContext` (Docker 28).
const HEADER: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

fn ls(root: &std::path::Path, a: &LsArgs) -> Result<i32> {
    let filters =
        runtime::filter::Filters::parse(&a.filter, &["dangling", "driver", "label", "name"])?;
    let vols = volume::list_filtered(root, &filters)?;
    let rows: Vec<Row> = vols
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let fields = serde_json::json!({
                "Name": v.name,
                "Driver": "local",
                "Scope": "local",
                "Mountpoint": volume::data_dir(root, &v.name),
                "Labels": labels.join(","),
                "Links": "N/A",
                "Size": "N/A",
            });
            let Value::Object(fields) = fields else {
                unreachable!("a JSON object literal")
            };
            Row::new("*formatter.VolumeContext", fields, &v.labels)
        })
        .collect();
    let format = if a.quiet {
        Some("{{.Name}}")
    } else {
        a.format.as_deref()
    };
    let f = ListFormat::parse(format, "table {{.Driver}}\t{{.Name}}")?;
    std::io::stdout().write_all(f.render(&rows, HEADER)?.as_bytes())?;
    Ok(0)
}
