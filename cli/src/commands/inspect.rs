//! `rbox inspect`: any object by name or id, looked up as Docker does (container, image,
//! network, volume, in that order, unless `--type` says which), printed as the object's own
//! `inspect` command prints it.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use gotemplate::Schema;
use serde_json::Value;

use crate::format::{self, schema};
use crate::Cli;

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template ("json": the JSON on one line)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Return JSON for specified type (container, image, network, volume)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

type Found = (Value, &'static Schema<'static>);

/// A container's inspect JSON (with `SizeRw`/`SizeRootFs` when `size`).
pub fn container(cli: &Cli, key: &str, size: bool) -> Result<Found> {
    let r = runtime::lifecycle::find(&cli.root, key)?;
    let mut v = runtime::inspect::to_json(&cli.root, &r);
    if size {
        let (rw, image) = super::containers::sizes(cli, &r);
        v["SizeRw"] = Value::from(rw);
        v["SizeRootFs"] = Value::from(rw + image);
    }
    Ok((v, &schema::CONTAINER))
}

pub fn image(cli: &Cli, key: &str) -> Result<Found> {
    let store = images::Store::open(&cli.root)?;
    let img = store.resolve(key)?;
    Ok((super::images::inspect_json(&store, &img), &schema::IMAGE))
}

pub fn network(cli: &Cli, key: &str) -> Result<Found> {
    network_in(&cli.root, key)
}

pub fn network_in(root: &std::path::Path, key: &str) -> Result<Found> {
    match net::cluster::inspect(root, key) {
        Ok(v) => Ok((v, &schema::NETWORK)),
        // Docker 20.10's words (the client's 404).
        Err(net::Error::NetworkNotFound(_)) => bail!("No such network: {key}"),
        Err(e) => Err(e.into()),
    }
}

pub fn volume(cli: &Cli, key: &str) -> Result<Found> {
    let v = runtime::volume::get(&cli.root, key).map_err(|_| anyhow!("No such volume: {key}"))?;
    Ok((v.to_json(&cli.root), &schema::VOLUME))
}

/// True for "not there" errors, after which Docker tries the next kind of object.
fn not_found(e: &anyhow::Error) -> bool {
    if let Some(r) = e.downcast_ref::<runtime::Error>() {
        return matches!(
            r,
            runtime::Error::NotFound(_) | runtime::Error::Image(images::Error::NotFound(_))
        );
    }
    if let Some(i) = e.downcast_ref::<images::Error>() {
        return matches!(
            i,
            images::Error::NotFound(_) | images::Error::InvalidReference(..)
        );
    }
    let m = e.to_string();
    m.starts_with("No such network") || m.starts_with("No such volume")
}

pub fn run(cli: &Cli, a: &InspectArgs) -> Result<i32> {
    const KINDS: [&str; 4] = ["container", "image", "network", "volume"];
    if let Some(k) = &a.kind {
        if !KINDS.contains(&k.as_str()) {
            bail!("{k:?} is not a valid value for --type");
        }
    }
    format::inspect_each(a.format.as_deref(), &a.names, |name| {
        for kind in KINDS {
            if a.kind.as_deref().is_some_and(|k| k != kind) {
                continue;
            }
            let found = match kind {
                "container" => container(cli, name, a.size),
                "image" => image(cli, name),
                "network" => network(cli, name),
                _ => volume(cli, name),
            };
            match found {
                Err(e) if a.kind.is_none() && not_found(&e) => continue,
                r => return r,
            }
        }
        bail!("No such object: {name}")
    })
}
