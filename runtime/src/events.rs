//! The root's event log (`docker events`): each state change rbox makes (a container
//! created, started, dead, killed, paused, renamed, destroyed; images, networks and volumes
//! made and removed) appended as one JSON line to `<root>/events.jsonl` by the process that
//! made it. One `write` per event on an `O_APPEND` file, so concurrent writers never interleave
//! and the run path pays one small write. Bounded as an edge host needs: past `MAX_BYTES` the
//! writer that notices renames the log to `events.1.jsonl` (the one before is dropped), so
//! the log keeps between one and two `MAX_BYTES` of the latest events; readers follow the
//! rename by the file's inode (`Cursor`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
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

/// The log before the last rotation.
fn old_path(root: &Path) -> PathBuf {
    root.join("events.1.jsonl")
}

/// Where the log is rotated: about 4,000 events (Docker's daemon keeps only 256, in memory).
const MAX_BYTES: u64 = 1 << 20;

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
    let _ = append(root, &line, MAX_BYTES);
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Appends `line`, first rotating the log when it has reached `max` bytes. The rotating writer
/// holds a flock on the full file and renames it only while the path still names it, so two
/// writers that both see it full rotate it once.
fn append(root: &Path, line: &[u8], max: u64) -> std::io::Result<()> {
    let path = log_path(root);
    let mut f = open_append(&path)?;
    if f.metadata()?.len() >= max {
        // SAFETY: a valid descriptor; the lock goes with it when `f` is dropped.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            let same = std::fs::metadata(&path)
                .is_ok_and(|m| m.ino() == f.metadata().map_or(0, |n| n.ino()));
            if same {
                std::fs::rename(&path, old_path(root))?;
            }
        }
        f = open_append(&path)?;
    }
    f.write_all(line)
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

/// How far a reader has read: the log file (by inode, which a rotation changes) and the offset
/// of the first line not read yet. `Cursor::default()` reads everything the root still has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cursor {
    ino: u64,
    offset: u64,
}

/// Where the log ends now: a reader from here sees only what happens from now on (records
/// are whole lines, written with one append each, so the end is always between two).
pub fn now(root: &Path) -> Cursor {
    match std::fs::metadata(log_path(root)) {
        Ok(m) => Cursor {
            ino: m.ino(),
            offset: m.len(),
        },
        Err(_) => Cursor::default(),
    }
}

/// The events logged since `from` (whole lines), oldest first, and where to go on from. After a
/// rotation the rest of the renamed file comes first, then the new log from its start.
pub fn read_from(root: &Path, from: Cursor) -> (Vec<Event>, Cursor) {
    let mut out = Vec::new();
    let Ok(f) = File::open(log_path(root)) else {
        return (out, from);
    };
    let ino = f.metadata().map_or(0, |m| m.ino());
    if ino != from.ino {
        if let Ok(old) = File::open(old_path(root)) {
            let old_ino = old.metadata().map_or(0, |m| m.ino());
            // A cursor into the renamed file goes on there; a fresh one reads it whole.
            match from.ino {
                0 => read_lines(old, 0, &mut out),
                i if i == old_ino => read_lines(old, from.offset, &mut out),
                _ => 0,
            };
        }
    }
    let start = if ino == from.ino { from.offset } else { 0 };
    let offset = read_lines(f, start, &mut out);
    (out, Cursor { ino, offset })
}

/// Appends the events of the whole lines of `f` from `offset` on; the offset after them.
fn read_lines(mut f: File, offset: u64, out: &mut Vec<Event>) -> u64 {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut r = BufReader::new(f);
    let (mut pos, mut line) = (offset, String::new());
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
    pos
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Vec<u8> {
        let e = Event {
            kind: "container".into(),
            action: format!("start{n}"),
            actor: Actor {
                id: n.to_string(),
                attributes: BTreeMap::new(),
            },
            scope: "local".into(),
            time: 0,
            time_nano: 0,
        };
        let mut l = serde_json::to_vec(&e).unwrap();
        l.push(b'\n');
        l
    }

    fn ids(events: &[Event]) -> Vec<usize> {
        events.iter().map(|e| e.actor.id.parse().unwrap()).collect()
    }

    #[test]
    fn the_log_is_bounded_and_a_follower_reads_across_rotations() {
        let root = tempfile::tempdir().unwrap();
        let max = 10 * line(0).len() as u64;
        let mut cursor = Cursor::default();
        let mut seen = Vec::new();
        for n in 0..100 {
            append(root.path(), &line(n), max).unwrap();
            // A follower that reads every few events sees each one once, in order.
            if n % 7 == 0 {
                let (new, c) = read_from(root.path(), cursor);
                seen.extend(ids(&new));
                cursor = c;
            }
        }
        let (new, _) = read_from(root.path(), cursor);
        seen.extend(ids(&new));
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
        assert!(size(log_path(root.path())) <= max + line(99).len() as u64);
        assert!(size(old_path(root.path())) <= max + line(99).len() as u64);
        // A new reader gets the latest events, oldest first, ending with the last one.
        let (all, _) = read_from(root.path(), Cursor::default());
        let all = ids(&all);
        assert!(all.len() >= 10 && all.len() <= 22, "{all:?}");
        assert_eq!(all, ((100 - all.len())..100).collect::<Vec<_>>());
    }

    #[test]
    fn concurrent_writers_rotate_once_and_lose_no_event() {
        let root = tempfile::tempdir().unwrap();
        let max = 1000 * line(0).len() as u64;
        std::thread::scope(|s| {
            for t in 0..4 {
                let root = root.path();
                s.spawn(move || {
                    for n in 0..300 {
                        append(root, &line(t * 1000 + n), max).unwrap();
                    }
                });
            }
        });
        let (all, _) = read_from(root.path(), Cursor::default());
        let mut got = ids(&all);
        got.sort();
        let mut want: Vec<usize> = (0..4)
            .flat_map(|t| (0..300).map(move |n| t * 1000 + n))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
