//! `commit` (a container's changes as a new image, Docker 20.10's flags) and `history`.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::format::{human_duration, human_size, ListFormat, Row};
use crate::Cli;

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

pub fn commit(cli: &Cli, a: &CommitArgs) -> Result<i32> {
    let root = &cli.root;
    let changes = a
        .change
        .iter()
        .map(|c| images::Change::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let rec = runtime::lifecycle::find(root, &a.container)?;
    let s = &rec.settings;
    let mut config = images::ImageConfig {
        cmd: (!s.cmd.is_empty()).then(|| s.cmd.clone()),
        entrypoint: (!s.entrypoint.is_empty()).then(|| s.entrypoint.clone()),
        env: s.env.clone(),
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        exposed_ports: s.exposed_ports.clone(),
        labels: s.labels.clone(),
        stop_signal: s.stop_signal.clone(),
        // Docker commits the container's config, its healthcheck included.
        healthcheck: s.healthcheck.clone(),
    };
    for c in &changes {
        c.apply(&mut config);
    }
    let info = images::CommitInfo {
        config,
        comment: a.message.clone().unwrap_or_default(),
        author: a.author.clone().unwrap_or_default(),
        created_by: s.cmd.join(" "),
        container: rec.id.clone(),
    };
    let store = images::Store::open(root)?;
    let parent = store.resolve(&rec.image_id)?;
    // Docker pauses a running container meanwhile, so that its files hold still.
    let paused = a.pause && rec.running() && runtime::pause::pause(root, &rec.id).is_ok();
    let layer = (|| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        runtime::contents::changes_tar(root, &rec, &mut buf)?;
        Ok(buf)
    })();
    if paused {
        let _ = runtime::pause::unpause(root, &rec.id);
    }
    let img = store.commit_layer(&parent, &layer?[..], &info, a.reference.as_deref())?;
    println!("{}", img.id);
    Ok(0)
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Format output using a custom template ("table", "table TEMPLATE", "json" or TEMPLATE)
    #[arg(long)]
    format: Option<String>,
    image: String,
}

/// `formatter.historyContext`'s column names.
const HEADER: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// One entry of an image's history, newest first: the id of the image it made (the image's
/// own on its newest entry, a local image whose layers are the first ones otherwise, else
/// Docker's `<missing>`). `history` and the Engine API's `/images/{name}/history`.
pub struct HistoryEntry {
    pub id: String,
    pub history: images::History,
}

pub fn history_entries(store: &images::Store, img: &images::Image) -> Result<Vec<HistoryEntry>> {
    let entries = store.history(img)?;
    let all = store.list()?;
    let n = entries.len();
    let mut out = Vec::new();
    for (i, h) in entries.iter().enumerate().rev() {
        let upto: Vec<&String> = entries[..=i]
            .iter()
            .filter_map(|e| e.layer.as_ref().map(|l| &l.0))
            .collect();
        let id = if i + 1 == n {
            img.id.clone()
        } else {
            all.iter()
                .find(|o| {
                    o.id != img.id
                        && o.layers.iter().collect::<Vec<_>>() == upto
                        && store.history(o).is_ok_and(|oh| oh.len() == i + 1)
                })
                .map(|o| o.id.clone())
                .unwrap_or_else(|| "<missing>".into())
        };
        out.push(HistoryEntry {
            id,
            history: h.clone(),
        });
    }
    Ok(out)
}

pub fn history(cli: &Cli, a: &HistoryArgs) -> Result<i32> {
    let store = images::Store::open(&cli.root)?;
    let img = store.resolve(&a.image)?;
    let mut rows = Vec::new();
    for HistoryEntry { id, history: h } in history_entries(&store, &img)? {
        let shown_id = match (a.no_trunc, id.as_str()) {
            (_, "<missing>") | (true, _) => id.clone(),
            _ => images::short_id(&id),
        };
        let created = h
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        let size = h.layer.as_ref().map_or(0, |l| l.1);
        let by = h.created_by.replace('\t', " ");
        let by = if a.no_trunc {
            by
        } else {
            super::ps::ellipsis(&by, 45)
        };
        let fields = json!({
            "Comment": h.comment,
            "CreatedAt": created.map(|c| c.to_rfc3339()).unwrap_or_default(),
            "CreatedBy": by,
            "CreatedSince": match (a.human, created) {
                (true, Some(c)) => format!("{} ago", human_duration((chrono::Utc::now() - c.with_timezone(&chrono::Utc)).num_seconds())),
                (false, Some(c)) => c.to_rfc3339(),
                _ => "N/A".into(),
            },
            "ID": shown_id,
            "Size": if a.human { human_size(size as f64, 3) } else { size.to_string() },
        });
        let Value::Object(fields) = fields else {
            unreachable!("a JSON object literal")
        };
        rows.push(Row::new(
            "*formatter.historyContext",
            fields,
            &Default::default(),
        ));
    }
    let format = if a.quiet {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let f = ListFormat::parse(
        format,
        "table {{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}",
    )?;
    std::io::stdout().write_all(f.render(&rows, HEADER)?.as_bytes())?;
    Ok(0)
}
