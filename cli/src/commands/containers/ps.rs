//! `ps`: Docker's container rows (`formatter.ContainerContext`, Docker 28): relative times,
//! the ellipsized command, ports, mounts, sizes, and the table's column names.

use chrono::{DateTime, Utc};
use runtime::{Record, Status};
use serde_json::json;

use crate::format::{human_duration, human_size, Row};

/// `docker ps`'s default table, and with `-s`.
pub const TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
pub const TABLE_SIZE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}";

/// The column names of the context's fields.
pub const HEADER: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Networks", "NETWORKS"),
];

fn since(t: DateTime<Utc>) -> i64 {
    (Utc::now() - t).num_seconds()
}

pub fn status(r: &Record) -> String {
    match r.state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = format!(
                "Up {}",
                human_duration(r.state.started_at.map(since).unwrap_or(0))
            );
            // Docker's State.String(): a paused container says so, else its health.
            match (r.state_name(), r.health_status()) {
                ("paused", _) => format!("{up} (Paused)"),
                (_, "none") => up,
                (_, "starting") => format!("{up} (health: starting)"),
                (_, h) => format!("{up} ({h})"),
            }
        }
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

/// Docker's `formatter.Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A mount's name in `ps`: the volume's name, else its source.
fn mount_names(r: &Record, trunc: bool) -> String {
    let names: Vec<String> = r
        .settings
        .mounts
        .iter()
        .filter(|m| m.flag != runtime::mounts::Flag::Tmpfs)
        .map(|m| match trunc {
            true => ellipsis(&m.source, 15),
            false => m.source.clone(),
        })
        .collect();
    names.join(",")
}

/// The `ps` row of a container. `sizes` is (writable layer, image) in bytes when asked for.
pub fn row(r: &Record, trunc: bool, sizes: Option<(u64, u64)>) -> Row {
    let cmd = r.argv().join(" ");
    let cmd = if trunc { ellipsis(&cmd, 20) } else { cmd };
    let local_volumes = r
        .settings
        .mounts
        .iter()
        .filter(|m| m.kind == runtime::mounts::Kind::Volume)
        .count();
    let size = match sizes {
        None => "0B".to_string(),
        Some((rw, image)) => format!(
            "{} (virtual {})",
            human_size(rw as f64, 3),
            human_size((rw + image) as f64, 3)
        ),
    };
    let fields = json!({
        "ID": if trunc { r.id[..12].to_string() } else { r.id.clone() },
        "Image": r.image,
        "Command": gotemplate::quote(&cmd),
        "CreatedAt": r.created.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        "RunningFor": format!("{} ago", human_duration(since(r.created))),
        "Ports": net::docker::ps_ports(&r.ports),
        "Status": status(r),
        "State": r.state_name(),
        "Names": r.name,
        "Networks": r.networks.keys().cloned().collect::<Vec<_>>().join(","),
        "Labels": r.settings.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": mount_names(r, trunc),
        "LocalVolumes": local_volumes.to_string(),
        "Size": size,
    });
    let serde_json::Value::Object(fields) = fields else {
        unreachable!("a JSON object literal")
    };
    Row::new("*formatter.ContainerContext", fields, &r.settings.labels)
}

/// Docker's container list entry (`types.Container`, `GET /containers/json`), from the same
/// record and inspect JSON as `ps` and `inspect`.
pub fn summary(root: &std::path::Path, r: &Record, sizes: Option<(u64, u64)>) -> serde_json::Value {
    let inspect = runtime::inspect::to_json(root, r);
    let mut v = json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": r.argv().join(" "),
        "Created": r.created.timestamp(),
        "Ports": net::docker::list_ports(&r.ports),
        "Labels": r.settings.labels,
        "State": r.state_name(),
        "Status": status(r),
        "HostConfig": {"NetworkMode": inspect["HostConfig"]["NetworkMode"]},
        "NetworkSettings": {"Networks": inspect["NetworkSettings"]["Networks"]},
        "Mounts": inspect["Mounts"],
    });
    if let Some((rw, image)) = sizes {
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(rw + image);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsis_as_docker() {
        assert_eq!(ellipsis("sleep 1000", 20), "sleep 1000");
        assert_eq!(
            ellipsis("nginx -g 'daemon off;'", 20),
            "nginx -g 'daemon of…"
        );
    }
}
