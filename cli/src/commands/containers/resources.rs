//! `update` and `stats` (Docker 20.10's flags and table).

use std::io::Write;

use anyhow::{anyhow, Result};
use clap::Args;
use runtime::units::parse_bytes;

use crate::format::{bytes_size, human_size, ListFormat, Row};
use crate::Cli;

#[derive(Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

fn bytes(v: &Option<String>, flag: &str) -> Result<Option<i64>> {
    v.as_deref()
        .map(|x| match x {
            "-1" => Ok(-1),
            x => parse_bytes(x).map_err(|_| {
                anyhow!("invalid argument \"{x}\" for \"{flag}\" flag: invalid size: '{x}'")
            }),
        })
        .transpose()
}

pub fn update(cli: &Cli, a: &UpdateArgs) -> Result<i32> {
    let u = runtime::update::Update {
        memory: bytes(&a.memory, "-m, --memory")?,
        memory_swap: bytes(&a.memory_swap, "--memory-swap")?,
        memory_reservation: bytes(&a.memory_reservation, "--memory-reservation")?,
        nano_cpus: a.cpus.map(|c| (c * 1e9) as i64),
        cpu_shares: a.cpu_shares,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        pids_limit: a.pids_limit,
        restart: a
            .restart
            .as_deref()
            .map(runtime::policy::RestartPolicy::parse)
            .transpose()?,
    };
    let mut failed = Vec::new();
    for c in &a.containers {
        match runtime::update::update(&cli.root, c, &u) {
            Ok((_, warnings)) => {
                for w in warnings {
                    eprintln!("WARNING: {w}");
                }
                println!("{c}");
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed.push(c.as_str());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    Err(anyhow!(
        "failed to update containers: {}",
        failed.join(", ")
    ))
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Format output using a custom template ("table", "table TEMPLATE", "json" or TEMPLATE)
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

/// `formatter.statsContext`'s column names.
const HEADER: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const TABLE: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

pub fn stats(cli: &Cli, a: &StatsArgs) -> Result<i32> {
    let f = ListFormat::parse(a.format.as_deref(), TABLE)?;
    let pick = || -> Result<Vec<(String, runtime::Record)>> {
        if a.containers.is_empty() {
            return Ok(runtime::lifecycle::list(&cli.root)
                .into_iter()
                .filter(|r| a.all || r.running())
                .map(|r| (r.id[..12].to_string(), r))
                .collect());
        }
        a.containers
            .iter()
            .map(|c| Ok((c.clone(), runtime::lifecycle::find(&cli.root, c)?)))
            .collect()
    };
    let mut prev: Vec<(String, runtime::stats::Sample)> = pick()?
        .iter()
        .map(|(_, r)| (r.id.clone(), runtime::stats::sample(r)))
        .collect();
    loop {
        // Docker's CPU % needs two readings: one second apart, as its daemon samples.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let recs = pick()?;
        let mut rows = Vec::new();
        let mut now_samples = Vec::new();
        for (shown, r) in &recs {
            let now = if r.running() {
                runtime::stats::sample(r)
            } else {
                Default::default()
            };
            let before = prev
                .iter()
                .find(|(id, _)| *id == r.id)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            rows.push(row(shown, r, &before, &now, !a.no_trunc));
            now_samples.push((r.id.clone(), now));
        }
        let text = f.render(&rows, HEADER)?;
        let mut out = std::io::stdout().lock();
        if a.no_stream {
            out.write_all(text.as_bytes())?;
            return Ok(0);
        }
        // Docker redraws the table in place.
        out.write_all(b"\x1b[2J\x1b[H")?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
        prev = now_samples;
    }
}

fn row(
    shown: &str,
    r: &runtime::Record,
    before: &runtime::stats::Sample,
    now: &runtime::stats::Sample,
    trunc: bool,
) -> Row {
    let running = r.running();
    let pct = |v: f64| format!("{v:.2}%");
    let mem_pct = if now.mem_limit > 0 {
        now.mem_usage as f64 / now.mem_limit as f64 * 100.0
    } else {
        0.0
    };
    let pair =
        |a: u64, b: u64| format!("{} / {}", human_size(a as f64, 3), human_size(b as f64, 3));
    let fields = serde_json::json!({
        "BlockIO": if running { pair(now.blk_read, now.blk_write) } else { "--".to_string() },
        "CPUPerc": if running { pct(runtime::stats::cpu_percent(before, now)) } else { "--".to_string() },
        "Container": shown,
        "ID": if trunc { r.id[..12].to_string() } else { r.id.clone() },
        "MemPerc": if running { pct(mem_pct) } else { "--".to_string() },
        "MemUsage": if running { format!("{} / {}", bytes_size(now.mem_usage), bytes_size(now.mem_limit)) } else { "-- / --".to_string() },
        "Name": r.name,
        "NetIO": if running { pair(now.net_rx, now.net_tx) } else { "--".to_string() },
        "PIDs": if running { now.pids.to_string() } else { "--".to_string() },
    });
    let serde_json::Value::Object(fields) = fields else {
        unreachable!("a JSON object literal")
    };
    Row::new("formatter.statsContext", fields, &Default::default())
}
