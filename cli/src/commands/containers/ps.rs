//! `ps`: Docker's table, its relative times and its `--format` fields.

use chrono::{DateTime, Utc};
use runtime::{Record, Status};
use serde_json::{json, Value};

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86400 => format!("{} days", s / 86400),
        s if s < 60 * 86400 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 86400 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

fn since(t: DateTime<Utc>) -> i64 {
    (Utc::now() - t).num_seconds()
}

pub fn status(r: &Record) -> String {
    match r.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            human_duration(r.state.started_at.map(since).unwrap_or(0))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            human_duration(r.state.finished_at.map(since).unwrap_or(0))
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            human_duration(r.state.finished_at.map(since).unwrap_or(0))
        ),
    }
}

fn command(r: &Record, trunc: bool) -> String {
    let c = r.argv().join(" ");
    if trunc && c.chars().count() > 20 {
        let s: String = c.chars().take(19).collect();
        format!("\"{s}…\"")
    } else {
        format!("\"{c}\"")
    }
}

/// The fields `docker ps --format` offers.
pub fn fields(r: &Record, trunc: bool) -> Value {
    json!({
        "ID": if trunc { r.id[..12].to_string() } else { r.id.clone() },
        "Image": r.image,
        "Command": command(r, trunc),
        "CreatedAt": r.created.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        "RunningFor": format!("{} ago", human_duration(since(r.created))),
        "Ports": net::docker::ps_ports(&r.ports),
        "Status": status(r),
        "State": r.state.status.as_str(),
        "Names": r.name,
        "Networks": r.networks.keys().cloned().collect::<Vec<_>>().join(","),
        "Labels": r.settings.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": "",
        "Size": "0B",
    })
}

/// Aligns rows as Go's tabwriter with Docker's padding of 3.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(width[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn rows(recs: &[Record], trunc: bool) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for r in recs {
        let f = fields(r, trunc);
        rows.push(
            [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ]
            .iter()
            .map(|k| f[*k].as_str().unwrap_or("").to_string())
            .collect(),
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(5000), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn columns_are_padded_by_three() {
        let t = table(&[
            vec!["A".into(), "B".into()],
            vec!["long".into(), "x".into()],
        ]);
        assert_eq!(t, "A      B\nlong   x\n");
    }
}
