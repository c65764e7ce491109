//! `events` / `system events`: the root's event log (`runtime::events`) printed as Docker's
//! CLI prints events, from `--since` and then as they come, until `--until`.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{anyhow, Result};
use clap::Args;
use runtime::events::Event;
use serde_json::{json, Value};

use crate::Cli;

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format the output using the given Go template ("json" for JSON)
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

/// Docker's line: `TIME TYPE ACTION ID (k=v, ...)`, the time as RFC 3339 with nine digits.
fn pretty(e: &Event) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(e.time_nano).with_timezone(&chrono::Local);
    let mut s = format!(
        "{} {} {} {}",
        t.format("%Y-%m-%dT%H:%M:%S%.9f%:z")
            .to_string()
            .replace("+00:00", "Z"),
        e.kind,
        e.action,
        e.actor.id
    );
    if !e.actor.attributes.is_empty() {
        let attrs: Vec<String> = e
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(" ({})", attrs.join(", ")));
    }
    s
}

/// Docker's `events.Message` JSON (with its legacy `status`, `id`, `from`).
pub fn message(e: &Event) -> Value {
    let mut v = json!({});
    if e.kind == "container" || e.kind == "image" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor.id);
        if let Some(i) = e.actor.attributes.get("image") {
            v["from"] = json!(i);
        }
    }
    let rest = serde_json::to_value(e).unwrap_or_default();
    if let (Value::Object(a), Value::Object(b)) = (&mut v, rest) {
        a.extend(b);
    }
    v
}

pub fn run(cli: &Cli, a: &EventsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let time = |v: &Option<String>, flag: &str| {
        runtime::timestamp::parse_flag(v.as_deref(), flag, now).map_err(|e| anyhow!(e))
    };
    let (since, until) = (time(&a.since, "since")?, time(&a.until, "until")?);
    let filters = runtime::filter::Filters::parse(&a.filter, runtime::events::FILTER_KEYS)?;
    let format = a
        .format
        .as_deref()
        .map(|f| if f == "json" { "{{json .}}" } else { f });
    let template = format
        .map(|f| {
            gotemplate::Template::parse(
                &f.replace("\\t", "\t").replace("\\n", "\n"),
                &gotemplate::Funcs::docker(),
            )
        })
        .transpose()
        .map_err(|e| anyhow!("template parsing error: {e}"))?;
    let until_nanos = until.and_then(|u| u.timestamp_nanos_opt());
    let since_nanos = since.and_then(|s| s.timestamp_nanos_opt());
    let print = |e: &Event, out: &mut dyn Write| -> Result<()> {
        if !runtime::events::matches(e, &filters) {
            return Ok(());
        }
        let line = match &template {
            Some(t) => {
                let v = gotemplate::Value::from_json(
                    &message(e),
                    &gotemplate::Schema {
                        maps: &["Actor.Attributes"],
                        ..Default::default()
                    },
                );
                t.execute(&v, &gotemplate::Funcs::docker())
                    .map_err(|e| anyhow!("template parsing error: {e}"))?
            }
            None => pretty(e),
        };
        writeln!(out, "{line}")?;
        Ok(())
    };
    let mut out = std::io::stdout().lock();
    follow(&cli.root, since_nanos, until_nanos, &mut |e| {
        print(e, &mut out)?;
        out.flush()?;
        Ok(true)
    })?;
    Ok(0)
}

/// The events from `since` (none of the past without it, as Docker) and then as they come,
/// until `until` (for ever without it) or until `emit` returns false. `rbox events` and the
/// Engine API's `/events` (which filters in `emit`).
pub fn follow(
    root: &std::path::Path,
    since_nanos: Option<i64>,
    until_nanos: Option<i64>,
    emit: &mut dyn FnMut(&Event) -> Result<bool>,
) -> Result<()> {
    let now_nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let (past, cursor) = runtime::events::read_from(root, Default::default());
    for e in &past {
        let from = since_nanos.unwrap_or(i64::MAX);
        if e.time_nano >= from && until_nanos.is_none_or(|u| e.time_nano <= u) && !emit(e)? {
            return Ok(());
        }
    }
    if until_nanos.is_some_and(|u| u <= now_nanos) {
        return Ok(());
    }
    follow_from(root, cursor, until_nanos, emit)
}

/// The events logged after `cursor`, as they come, until `until` or until `emit` returns
/// false (also the Engine API's wait for a container's next exit or removal).
pub fn follow_from(
    root: &std::path::Path,
    mut cursor: runtime::events::Cursor,
    until_nanos: Option<i64>,
    emit: &mut dyn FnMut(&Event) -> Result<bool>,
) -> Result<()> {
    let watch = Watch::new(root)?;
    loop {
        // Read before waiting: what was logged between `cursor` and the watch woke no one.
        let (new, c) = runtime::events::read_from(root, cursor);
        cursor = c;
        for e in &new {
            if until_nanos.is_some_and(|u| e.time_nano > u) || !emit(e)? {
                return Ok(());
            }
        }
        let timeout = until_nanos.map(|u| {
            let left = u - chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            (left / 1_000_000).max(0) as i32
        });
        if timeout == Some(0) {
            return Ok(());
        }
        watch.wait(timeout.unwrap_or(-1));
    }
}

/// inotify on the root directory, where the log is created and appended to.
struct Watch(OwnedFd);

impl Watch {
    fn new(root: &std::path::Path) -> Result<Watch> {
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(anyhow!("inotify: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the kernel just gave us this descriptor.
        let ino = unsafe { OwnedFd::from_raw_fd(fd) };
        std::fs::create_dir_all(root)?;
        let dir = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd, dir.as_ptr(), libc::IN_MODIFY | libc::IN_CREATE) }
            < 0
        {
            return Err(anyhow!("inotify: {}", std::io::Error::last_os_error()));
        }
        Ok(Watch(ino))
    }

    /// Until something changed in the root, or `timeout_ms` (-1: no limit).
    fn wait(&self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one descriptor we own; a read drains what is pending.
        unsafe {
            libc::poll(&mut p, 1, timeout_ms);
            let mut buf = [0u8; 4096];
            while libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) > 0 {}
        }
    }
}
