//! `/containers/{id}/stats` (Docker's `StatsResponse` from `runtime::stats`, the samples
//! `rbox stats` reads) and `/containers/{id}/update` (`runtime::update`, what `rbox update`
//! calls).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::http::{ApiError, Reply, Req};
use super::Ctx;
use runtime::{lifecycle, stats::Sample};

type R = Result<Reply, ApiError>;

/// Docker samples once a second, and a non-streaming answer spans one interval so that the
/// client can compute a CPU %.
const INTERVAL: Duration = Duration::from_secs(1);

/// Go's zero `time.Time`, what dockerd sends as `preread` before a first sample.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn cpu_json(s: &Sample) -> Value {
    json!({
        "cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": s.system_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// One `StatsResponse`: `now` with `pre` as its previous sample (zero when there is none).
/// Memory usage is already less the inactive file cache, so `memory_stats.stats` stays empty
/// and the docker CLI shows it as it is.
fn stats_json(
    rec: &runtime::Record,
    pre: Option<(&Sample, &str)>,
    now: &Sample,
    read: &str,
) -> Value {
    let zero = Sample::default();
    let (pre_s, pre_t) = pre.unwrap_or((&zero, ZERO_TIME));
    let pids_limit = (rec.settings.pids_limit > 0).then_some(rec.settings.pids_limit);
    json!({
        "read": read,
        "preread": pre_t,
        "id": rec.id,
        "name": format!("/{}", rec.name),
        "num_procs": 0,
        "pids_stats": {"current": now.pids, "limit": pids_limit},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": now.blk_read},
            {"major": 0, "minor": 0, "op": "write", "value": now.blk_write},
        ]},
        "storage_stats": {},
        "cpu_stats": cpu_json(now),
        "precpu_stats": cpu_json(pre_s),
        "memory_stats": {"usage": now.mem_usage, "limit": now.mem_limit, "stats": {}},
        // Docker names the container's interfaces; rbox sums them (lo excluded).
        "networks": {"eth0": {
            "rx_bytes": now.net_rx, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
            "tx_bytes": now.net_tx, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0,
        }},
    })
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `stats?stream=1|0&one-shot=1|0`: streamed, a sample a second until the client goes away
/// or the container stops; else one answer (spanning one interval, unless `one-shot`).
pub fn stats(ctx: &Ctx, r: &Req, id: &str) -> R {
    let rec = lifecycle::find(&ctx.root, id)?;
    // Docker's default is to stream.
    let stream = r.q("stream").is_none() || r.flag("stream");
    let one_shot = r.flag("one-shot");
    if one_shot && stream {
        return Err(ApiError::bad("cannot have stream=true and one-shot=true"));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let root = ctx.root.clone();
    std::thread::spawn(move || {
        let send = |v: Value| tx.blocking_send(Bytes::from(v.to_string() + "\n")).is_ok();
        let mut pre: Option<(Sample, String)> = None;
        let mut rec = rec;
        if !stream && !one_shot && rec.running() {
            pre = Some((runtime::stats::sample(&rec), now_text()));
            std::thread::sleep(INTERVAL);
        }
        loop {
            let (now, read) = (runtime::stats::sample(&rec), now_text());
            let v = stats_json(
                &rec,
                pre.as_ref().map(|(s, t)| (s, t.as_str())),
                &now,
                &read,
            );
            if !send(v) || !stream {
                return;
            }
            pre = Some((now, read));
            std::thread::sleep(INTERVAL);
            match lifecycle::find(&root, &rec.id) {
                Ok(r) if r.running() => rec = r,
                _ => return,
            }
        }
    });
    Ok(Reply::Stream("application/json", rx))
}

/// Fields of Docker's `UpdateConfig` that rbox cannot change: refused when set (the docker
/// CLI sends every field, zero when not given), so nothing is half-applied.
const NOT_UPDATABLE: &[&str] = &[
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "KernelMemoryTCP",
    "DeviceRequests",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
];

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Docker's `UpdateConfig` as `runtime::update::Update`: zero or absent leaves a setting as
/// it is (dockerd's rule), except `PidsLimit`, whose null is "unchanged".
fn update_of(body: &Value) -> Result<runtime::update::Update, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad("invalid JSON: the body must be an object"));
    };
    if let Some(k) = NOT_UPDATABLE
        .iter()
        .find(|k| obj.get(**k).is_some_and(|v| !is_unset(v)))
    {
        return Err(ApiError::bad(format!(
            "updating {k} is not supported by rbox"
        )));
    }
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("invalid value for {k}: {v}"))),
        }
    };
    let nonzero = |k: &str| int(k).map(|v| v.filter(|n| *n != 0));
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let restart = match obj.get("RestartPolicy") {
        Some(p) if !p["Name"].as_str().unwrap_or("").is_empty() => {
            let name = p["Name"].as_str().unwrap_or("");
            let spec = match p["MaximumRetryCount"].as_i64().unwrap_or(0) {
                n if n > 0 => format!("{name}:{n}"),
                _ => name.to_string(),
            };
            Some(runtime::policy::RestartPolicy::parse(&spec)?)
        }
        _ => None,
    };
    Ok(runtime::update::Update {
        memory: nonzero("Memory")?,
        memory_swap: nonzero("MemorySwap")?,
        memory_reservation: nonzero("MemoryReservation")?,
        nano_cpus: nonzero("NanoCpus")?,
        cpu_shares: nonzero("CpuShares")?,
        cpu_period: nonzero("CpuPeriod")?,
        cpu_quota: nonzero("CpuQuota")?,
        cpuset_cpus: text("CpusetCpus"),
        cpuset_mems: text("CpusetMems"),
        pids_limit: int("PidsLimit")?,
        restart,
    })
}

/// `update`: checked as at create and applied by `runtime::update` (the running cgroup,
/// then the record), or refused whole.
pub fn update(ctx: &Ctx, r: &Req, id: &str) -> R {
    let u = update_of(&r.json()?)?;
    let (_, warnings) = runtime::update::update(&ctx.root, id, &u)?;
    Ok(Reply::ok(json!({ "Warnings": warnings })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_body_as_docker_cli_sends_it() {
        // `docker update --memory 64m --restart on-failure:3`: every field, zero when not given.
        let u = update_of(&json!({
            "BlkioWeight": 0, "CpuShares": 0, "Memory": 67108864, "NanoCpus": 0,
            "CpusetCpus": "", "PidsLimit": null, "MemorySwappiness": null,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        }))
        .unwrap();
        assert_eq!(u.memory, Some(64 << 20));
        assert_eq!(u.cpu_shares, None);
        assert_eq!(u.nano_cpus, None);
        assert_eq!(u.cpuset_cpus, None);
        assert_eq!(u.pids_limit, None);
        assert!(u.restart.is_some());
        let u = update_of(&json!({"RestartPolicy": {"Name": "", "MaximumRetryCount": 0}})).unwrap();
        assert!(u.restart.is_none());
        assert!(update_of(&json!({"BlkioWeight": 300})).is_err());
        assert!(update_of(&json!({"Memory": "lots"})).is_err());
        assert!(update_of(&json!([])).is_err());
        assert!(update_of(&json!({"RestartPolicy": {"Name": "sometimes"}})).is_err());
    }
}
