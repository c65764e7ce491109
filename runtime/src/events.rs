//! The root's event log (`docker events`): each state change rbox makes (a container
//! created, started, dead, killed, paused, renamed, destroyed; images, networks and volumes
//! made and removed) appended as one JSON line to `<root>/events.jsonl` by the process that
//! made it. One `write` per event on an `O_APPEND` file, so concurrent writers never interleave
//! and the run path pays one small write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Docker's `events.Message`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

pub fn log_path(root: &Path) -> PathBuf {
    root.join("events.jsonl")
}

/// Appends an event; a log that cannot be written costs the event, never the operation.
pub fn emit(root: &Path, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or(0);
    let e = Event {
        kind: kind.into(),
        action: action.into(),
        actor: Actor {
            id: id.into(),
            attributes,
        },
        scope: "local".into(),
        time: nanos / 1_000_000_000,
        time_nano: nanos,
    };
    let Ok(mut line) = serde_json::to_vec(&e) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(root))
    {
        let _ = f.write_all(&line);
    }
}

/// A container event with Docker's attributes: the image, the name, the labels and `extra`
/// (`exitCode`, `signal`, `oldName`, `execID`).
pub fn container(root: &Path, rec: &Record, action: &str, extra: &[(&str, String)]) {
    let mut a = attributes(rec);
    for (k, v) in extra {
        a.insert(k.to_string(), v.clone());
    }
    emit(root, "container", action, &rec.id, a);
}

/// The start of a container event's line, up to its action and time, for the healthcheck
/// prober (which logs `health_status: S` from the monitor's small mode too); with the log.
pub fn container_line_start(root: &Path, rec: &Record) -> Option<(PathBuf, String)> {
    let actor = serde_json::to_string(&Actor {
        id: rec.id.clone(),
        attributes: attributes(rec),
    })
    .ok()?;
    Some((
        log_path(root),
        format!(r#"{{"Type":"container","Actor":{actor},"scope":"local""#),
    ))
}

/// Docker's attributes of a container event: its labels, image and name.
fn attributes(rec: &Record) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = rec.settings.labels.clone();
    a.insert("image".into(), rec.image.clone());
    a.insert("name".into(), rec.name.clone());
    a
}

/// Another object's event (image, network, volume), with its name.
pub fn object(root: &Path, kind: &str, action: &str, id: &str, name: &str) {
    let mut a = BTreeMap::new();
    a.insert("name".to_string(), name.to_string());
    emit(root, kind, action, id, a);
}

/// The events logged from byte `offset` on (whole lines); the new offset.
pub fn read_from(root: &Path, offset: u64) -> (Vec<Event>, u64) {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log_path(root)) else {
        return (Vec::new(), offset);
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut r = BufReader::new(f);
    let (mut out, mut pos, mut line) = (Vec::new(), offset, String::new());
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {
                pos += n as u64;
                if let Ok(e) = serde_json::from_str(line.trim_end()) {
                    out.push(e);
                }
            }
            _ => break,
        }
    }
    (out, pos)
}

/// The keys of `events --filter` rbox can answer.
pub const FILTER_KEYS: &[&str] = &[
    "container",
    "event",
    "image",
    "label",
    "network",
    "type",
    "volume",
    "scope",
    "daemon",
];

/// Docker's event filters: `container`/`image`/`network`/`volume` by id or name, `event` by
/// action (`exec_start` matches `exec_start: CMD`), `label`, `type`.
pub fn matches(e: &Event, f: &crate::filter::Filters) -> bool {
    let a = &e.actor.attributes;
    let name = a.get("name").map(String::as_str).unwrap_or("");
    let of = |kind: &str, key: &str| {
        f.values(key).is_empty()
            || (e.kind == kind
                && f.values(key)
                    .iter()
                    .any(|v| *v == e.actor.id || e.actor.id.starts_with(v.as_str()) || v == name))
    };
    let action = e.action.split(':').next().unwrap_or("");
    of("container", "container")
        && of("network", "network")
        && of("volume", "volume")
        && (f.values("image").is_empty()
            || f.values("image").iter().any(|v| {
                a.get("image").is_some_and(|i| i == v)
                    || (e.kind == "image" && (*v == e.actor.id || v == name))
            }))
        && f.any("event", |v| v == e.action || v == action)
        && f.any("type", |v| v == e.kind)
        && f.any("scope", |v| v == "local")
        && f.labels_match("label", a)
}
