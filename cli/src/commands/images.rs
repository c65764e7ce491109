//! `rbox` image commands: import, load, save, images / image ls, image inspect, rmi / image rm,
//! tag. Output matches Docker's.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use images::{short_id, Change, Image, Removed, Store};
use serde_json::{json, Value};

use crate::format::{human_duration, human_size, ListFormat, Row};
use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// List images
    Images(LsArgs),
    /// Remove one or more images
    Rmi(RmArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Remove unused images
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=k=v", "label!=k")
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, LABEL)
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Tarball (plain or gzip), or - for STDIN
    file: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show all images (accepted for compatibility; there are no intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling, label, reference, before, since)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template ("table", "table TEMPLATE", "json" or TEMPLATE)
    #[arg(long)]
    format: Option<String>,
    /// REPOSITORY[:TAG] to list
    reference: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> anyhow::Result<i32> {
    let store = Store::open(&cli.root)?;
    match cmd {
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => import(&store, a),
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => load(&store, a),
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => save(&store, a),
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => list(&store, a),
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => remove(cli, &store, a),
        Cmd::Tag(a) | Cmd::Image(ImageCmd::Tag(a)) => {
            store.tag(&a.source, &a.target)?;
            let id = store.resolve(&a.target).map(|i| i.id).unwrap_or_default();
            runtime::events::object(&cli.root, "image", "tag", &id, &a.target);
            Ok(0)
        }
        Cmd::Image(ImageCmd::Inspect(a)) => inspect(cli, a),
        Cmd::Image(ImageCmd::Prune(a)) => {
            let f = runtime::filter::Filters::parse(&a.filter, runtime::filter::PRUNE_KEYS)?;
            let warning = if a.all {
                "WARNING! This will remove all images without at least one container associated to them."
            } else {
                "WARNING! This will remove all dangling images."
            };
            if !a.force && !crate::prompt::confirm(warning)? {
                return Ok(0);
            }
            let (lines, bytes) = prune_images(cli, a.all, &f)?;
            crate::prompt::deleted("Images", &lines);
            println!(
                "Total reclaimed space: {}",
                runtime::volume::human_size(bytes)
            );
            Ok(0)
        }
    }
}

fn import(store: &Store, a: &ImportArgs) -> anyhow::Result<i32> {
    let changes = a
        .changes
        .iter()
        .map(|c| Change::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let comment = a
        .message
        .clone()
        .unwrap_or_else(|| format!("Imported from {}", a.file));
    let image = if a.file == "-" {
        store.import(
            io::stdin().lock(),
            &changes,
            a.reference.as_deref(),
            &comment,
        )?
    } else {
        let f = File::open(&a.file).with_context(|| format!("open {}", a.file))?;
        store.import(f, &changes, a.reference.as_deref(), &comment)?
    };
    println!("{}", image.id);
    let name = a.reference.clone().unwrap_or_default();
    runtime::events::object(store.root(), "image", "import", &image.id, &name);
    Ok(0)
}

fn load(store: &Store, a: &LoadArgs) -> anyhow::Result<i32> {
    let loaded = match &a.input {
        Some(p) => store.load(File::open(p).with_context(|| format!("open {}", p.display()))?)?,
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            store.load(io::stdin().lock())?
        }
    };
    if !a.quiet {
        for l in loaded {
            if l.tags.is_empty() {
                println!("Loaded image ID: {}", l.image.id);
            }
            for t in l.tags {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(0)
}

fn save(store: &Store, a: &SaveArgs) -> anyhow::Result<i32> {
    match &a.output {
        Some(path) => {
            // Written beside the target and renamed, so a failed save leaves no partial file.
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!(".{name}.rbox-{}", std::process::id()));
            let result = (|| -> anyhow::Result<()> {
                let f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
                let mut w = io::BufWriter::new(f);
                store.save(&a.images, &mut w)?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("rename to {}", path.display()))?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = io::BufWriter::new(io::stdout().lock());
            store.save(&a.images, &mut out)?;
            out.flush()?;
        }
    }
    Ok(0)
}

/// `docker images`'s default tables.
const TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const TABLE_DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// The column names of `formatter.ImageContext` (Docker 28).
const HEADER: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("VirtualSize", "SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
];

fn list(store: &Store, a: &LsArgs) -> anyhow::Result<i32> {
    let filter = a
        .reference
        .as_deref()
        .map(images::Reference::parse)
        .transpose()?;
    let filters = runtime::filter::Filters::parse(
        &a.filter,
        &["dangling", "label", "reference", "before", "since"],
    )?;
    let all = store.list()?;
    let created = |img: &Image| {
        img.created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
    };
    // before=/since= name an image; its creation time bounds the others'.
    let bound = |key: &str| -> anyhow::Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
        match filters.values(key).first() {
            Some(r) => Ok(created(&store.resolve(r)?)),
            None => Ok(None),
        }
    };
    let (before, since) = (bound("before")?, bound("since")?);
    let mut rows = Vec::new();
    for img in &all {
        let dangling = img.repo_tags.is_empty();
        if !filters.bool_matches("dangling", dangling)?
            || !filters.labels_match("label", &img.config.labels)
            || before.is_some_and(|b| created(img).is_none_or(|c| c >= b))
            || since.is_some_and(|b| created(img).is_none_or(|c| c <= b))
        {
            continue;
        }
        let tags: Vec<Option<&String>> = if dangling {
            vec![None]
        } else {
            img.repo_tags.iter().map(Some).collect()
        };
        for t in tags {
            if let Some(f) = &filter {
                let Some(t) = t else { continue };
                let (repo, tag) = split_tag(t);
                if repo != f.familiar_name() || f.tag.as_deref().is_some_and(|ft| ft != tag) {
                    continue;
                }
            }
            let refs = filters.values("reference");
            if !refs.is_empty()
                && !t.is_some_and(|t| {
                    refs.iter().any(|p| {
                        runtime::filter::glob(p, t) || runtime::filter::glob(p, split_tag(t).0)
                    })
                })
            {
                continue;
            }
            rows.push(row(img, t, a.no_trunc));
        }
    }
    let format = if a.quiet {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let table = if a.digests { TABLE_DIGESTS } else { TABLE };
    let f = ListFormat::parse(format, table)?;
    let mut text = f.render(&rows, HEADER)?;
    if a.quiet {
        // One line per image, not per tag.
        let mut seen = std::collections::HashSet::new();
        text = text
            .lines()
            .filter(|l| seen.insert(l.to_string()))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    io::stdout().write_all(text.as_bytes())?;
    Ok(0)
}

fn split_tag(t: &str) -> (&str, &str) {
    let slash = t.rfind('/').map(|i| i + 1).unwrap_or(0);
    match t[slash..].rfind(':') {
        Some(i) => (&t[..slash + i], &t[slash + i + 1..]),
        None => (t, "latest"),
    }
}

/// One `images` row (Docker's `formatter.ImageContext`).
fn row(img: &Image, tag: Option<&String>, no_trunc: bool) -> Row {
    let (repo, tag) = tag.map(|t| split_tag(t)).unwrap_or(("<none>", "<none>"));
    let created = img
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
    let id = if no_trunc {
        img.id.clone()
    } else {
        short_id(&img.id)
    };
    let digest = img
        .repo_digests
        .iter()
        .find(|d| d.split('@').next() == Some(repo))
        .and_then(|d| d.split('@').nth(1))
        .unwrap_or("<none>");
    let size = human_size(img.size as f64, 3);
    let fields = json!({
        "Containers": "N/A",
        "CreatedAt": created.map(|c| c.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
        "CreatedSince": created.map(|c| format!("{} ago", human_duration(chrono::Utc::now().signed_duration_since(c).num_seconds()))).unwrap_or_else(|| "N/A".into()),
        "Digest": digest,
        "ID": id,
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": size,
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": size,
    });
    let Value::Object(fields) = fields else {
        unreachable!("a JSON object literal")
    };
    Row::new("*formatter.ImageContext", fields, &img.config.labels)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> anyhow::Result<i32> {
    crate::format::inspect_each(a.format.as_deref(), &a.images, |r| {
        super::inspect::image(cli, r)
    })
}

/// Docker-shaped `image inspect` object.
pub fn inspect_json(store: &Store, img: &Image) -> Value {
    // Docker's Comment and Author are the newest history entry's.
    let top = store.history(img).ok().and_then(|h| h.last().cloned());
    let c = &img.config;
    let mut config = json!({
        "Hostname": "",
        "Domainname": "",
        "User": c.user,
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": if c.env.is_empty() { Value::Null } else { json!(c.env) },
        "Cmd": c.cmd,
    });
    if let Some(h) = &c.healthcheck {
        config["Healthcheck"] = json!(h);
    }
    let rest = json!({
        "Image": "",
        "Volumes": null,
        "WorkingDir": c.working_dir,
        "Entrypoint": c.entrypoint,
        "OnBuild": null,
        "Labels": if c.labels.is_empty() { Value::Null } else { json!(c.labels) },
    });
    if let (Value::Object(config), Value::Object(rest)) = (&mut config, rest) {
        config.extend(rest);
    }
    if !c.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, Value> = c
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        config["ExposedPorts"] = Value::Object(ports);
    }
    let dirs: Vec<String> = store
        .layer_dirs(img)
        .iter()
        .rev()
        .map(|d| d.display().to_string())
        .collect();
    json!({
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": top.as_ref().map(|h| h.comment.clone()).unwrap_or_default(),
        "Created": img.created.clone().unwrap_or_default(),
        "DockerVersion": "",
        "Author": top.as_ref().map(|h| h.author.clone()).unwrap_or_default(),
        "Config": config,
        "Architecture": img.architecture,
        "Os": img.os,
        "Size": img.size,
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": dirs.join(":")}},
        "RootFS": {"Type": "layers", "Layers": img.layers},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

/// Removes the images no container uses that `f` selects: dangling ones, or with `all` every
/// unused one. Returns Docker's lines (`untagged: REF`, `deleted: ID`) and the bytes freed.
pub fn prune_images(
    cli: &Cli,
    all: bool,
    f: &runtime::filter::Filters,
) -> anyhow::Result<(Vec<String>, u64)> {
    prune_images_in(&cli.root, all, f)
}

pub fn prune_images_in(
    root: &Path,
    all: bool,
    f: &runtime::filter::Filters,
) -> anyhow::Result<(Vec<String>, u64)> {
    let store = Store::open(root)?;
    let in_use = |id: &str| runtime::image_in_use(root, id);
    // Held while checking for users and deleting (as `rmi`).
    let _names = runtime::store::names_lock(root)?;
    let (mut lines, mut bytes) = (Vec::new(), 0);
    for img in store.list()? {
        let created = img
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map_or_else(chrono::Utc::now, |c| c.with_timezone(&chrono::Utc));
        if (!all && !img.repo_tags.is_empty())
            || in_use(&img.id)
            || !f.prune_matches(created, &img.config.labels)?
        {
            continue;
        }
        for d in store.remove(&img.id, true, &in_use)? {
            match d {
                Removed::Untagged(t) => lines.push(format!("untagged: {t}")),
                Removed::Deleted(id) => {
                    bytes += img.size;
                    lines.push(format!("deleted: {id}"));
                }
            }
        }
    }
    Ok((lines, bytes))
}

/// `rmi REF` of one image (also the Engine API's `DELETE /images/REF`), with its events.
pub fn remove_image(
    root: &Path,
    store: &Store,
    r: &str,
    force: bool,
) -> anyhow::Result<Vec<Removed>> {
    let in_use = |id: &str| runtime::image_in_use(root, id);
    // Held while checking for users and deleting, so no `create` records a container on an
    // image being removed (create resolves the image again under the same lock).
    let _names = runtime::store::names_lock(root)?;
    let done = store.remove(r, force, &in_use)?;
    for d in &done {
        match d {
            Removed::Untagged(t) => runtime::events::object(root, "image", "untag", r, t),
            Removed::Deleted(id) => runtime::events::object(root, "image", "delete", id, r),
        }
    }
    Ok(done)
}

fn remove(cli: &Cli, store: &Store, a: &RmArgs) -> anyhow::Result<i32> {
    let mut errors = Vec::new();
    let mut fatal = false;
    for r in &a.images {
        match remove_image(&cli.root, store, r, a.force) {
            Ok(done) => {
                for d in done {
                    match d {
                        Removed::Untagged(t) => println!("Untagged: {t}"),
                        Removed::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                fatal |= !matches!(
                    e.downcast_ref::<images::Error>(),
                    Some(images::Error::NotFound(_))
                );
                errors.push(e.to_string());
            }
        }
    }
    if errors.is_empty() {
        return Ok(0);
    }
    // Docker 20.10: `rmi -f` of images that are not there reports them and succeeds.
    if a.force && !fatal {
        for e in &errors {
            eprintln!("Error: {e}");
        }
        return Ok(0);
    }
    bail!("{}", errors.join("; "))
}
