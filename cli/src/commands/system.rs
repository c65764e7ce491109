//! `version`, `info` and `system info|prune`: Docker-shaped reports of this rbox and host
//! (Docker 28's fields, so that `--format '{{.Server.Version}}'` or `{{.CgroupVersion}}`
//! probes in scripts work), printed with Docker's own text templates.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::format::{self, schema};
use crate::Cli;

#[derive(Subcommand)]
pub enum Cmd {
    /// Show the rbox version information
    Version(FormatArg),
    /// Display system-wide information
    Info(FormatArg),
    /// Get real time events from the server
    Events(super::events::EventsArgs),
    /// Manage rbox
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Display system-wide information
    Info(FormatArg),
    /// Remove unused data (and repair what crashed rbox processes left behind)
    Prune(PruneArgs),
    /// Start the containers their restart policies bring back after a reboot or crash
    Boot,
    /// Stop every running container before the host goes down (restart policies still apply
    /// at the next boot)
    Shutdown(ShutdownArgs),
    /// Show rbox disk usage
    Df(FormatArg),
    /// Get real time events from the server
    Events(super::events::EventsArgs),
    /// Serve Docker's Engine API on a unix socket (for the docker CLI, docker-compose and the
    /// Docker SDKs); containers do not depend on it
    Service(ServiceArgs),
}

#[derive(Args)]
pub struct ServiceArgs {
    /// The socket to listen on (unix://PATH); a systemd-activated socket is used instead
    #[arg(long = "host", short = 'H', default_value = "unix:///run/rbox.sock")]
    host: String,
    /// Exit after this many seconds without a connection (0: never)
    #[arg(short = 't', long, default_value = "0")]
    timeout: u64,
}

#[derive(Args)]
pub struct ShutdownArgs {
    /// Seconds to wait for each container to stop before killing it (default: its own stop
    /// timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<i64>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct FormatArg {
    /// Format output using a custom template ("json" for JSON)
    #[arg(short = 'f', long)]
    format: Option<String>,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    match cmd {
        Cmd::Version(f) => version(f),
        Cmd::Info(f)
        | Cmd::System {
            cmd: SystemCmd::Info(f),
        } => info(cli, f),
        Cmd::System {
            cmd: SystemCmd::Boot,
        } => super::containers::boot(cli),
        Cmd::System {
            cmd: SystemCmd::Shutdown(a),
        } => super::containers::shutdown(cli, a.time),
        Cmd::System {
            cmd: SystemCmd::Df(f),
        } => df(cli, f),
        Cmd::System {
            cmd: SystemCmd::Service(a),
        } => crate::engine::serve(
            &cli.root,
            cli.debug,
            &a.host,
            (a.timeout > 0).then(|| std::time::Duration::from_secs(a.timeout)),
        ),
        Cmd::Events(a)
        | Cmd::System {
            cmd: SystemCmd::Events(a),
        } => super::events::run(cli, a),
        Cmd::System {
            cmd: SystemCmd::Prune(a),
        } => {
            let f = runtime::filter::Filters::parse(&a.filter, runtime::filter::PRUNE_KEYS)?;
            if !a.force && !crate::prompt::confirm(&system_prune_warning(a))? {
                return Ok(0);
            }
            super::containers::system_prune(cli, a.all, a.volumes, &f)
        }
    }
}

/// Docker's warning before `system prune`.
fn system_prune_warning(a: &PruneArgs) -> String {
    let mut w = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container",
    );
    if a.volumes {
        w.push_str("\n  - all anonymous volumes not used by at least one container");
    }
    w.push_str(if a.all {
        "\n  - all images without at least one container associated to them"
    } else {
        "\n  - all dangling images"
    });
    w.push_str("\n  - unused build cache\n");
    w
}

/// `system df`: Docker's disk usage summary (formatter.DiskUsageContext): images, containers'
/// writable layers, local volumes; reclaimable is what no container uses (running ones, for
/// containers).
fn df(cli: &Cli, f: &FormatArg) -> Result<i32> {
    let root = &cli.root;
    let recs = runtime::lifecycle::list(root);
    let store = images::Store::open(root)?;
    let imgs = store.list()?;
    let used_images: std::collections::HashSet<&str> =
        recs.iter().map(|r| r.image_id.as_str()).collect();
    let image_size: u64 = imgs.iter().map(|i| i.size).sum();
    let image_free: u64 = imgs
        .iter()
        .filter(|i| !used_images.contains(i.id.as_str()))
        .map(|i| i.size)
        .sum();
    let sizes: Vec<(bool, u64)> = recs
        .iter()
        .map(|r| (r.active(), super::containers::sizes(cli, r).0))
        .collect();
    let ctr_size: u64 = sizes.iter().map(|s| s.1).sum();
    let ctr_free: u64 = sizes.iter().filter(|s| !s.0).map(|s| s.1).sum();
    let vols = runtime::volume::list(root);
    let used_vols = runtime::volume::used(root);
    let vol_sizes: Vec<(bool, u64)> = vols
        .iter()
        .map(|v| {
            let dir = runtime::volume::data_dir(root, &v.name);
            (
                used_vols.contains(&v.name),
                runtime::usage::disk_usage(&dir),
            )
        })
        .collect();
    let vol_size: u64 = vol_sizes.iter().map(|s| s.1).sum();
    let vol_free: u64 = vol_sizes.iter().filter(|s| !s.0).map(|s| s.1).sum();
    let human = runtime::volume::human_size;
    let reclaim = |free: u64, total: u64| match total {
        0 => human(free),
        t => format!("{} ({}%)", human(free), free * 100 / t),
    };
    let row = |t: &str, total: usize, active: usize, size: u64, free: String| {
        let fields = json!({
            "Type": t, "TotalCount": total.to_string(), "Active": active.to_string(),
            "Size": human(size), "Reclaimable": free,
        });
        let Value::Object(fields) = fields else {
            unreachable!("a JSON object literal")
        };
        format::Row::new(
            "*formatter.diskUsageImagesContext",
            fields,
            &Default::default(),
        )
    };
    let rows = [
        row(
            "Images",
            imgs.len(),
            used_images.len().min(imgs.len()),
            image_size,
            reclaim(image_free, image_size),
        ),
        row(
            "Containers",
            recs.len(),
            recs.iter().filter(|r| r.active()).count(),
            ctr_size,
            reclaim(ctr_free, ctr_size),
        ),
        row(
            "Local Volumes",
            vols.len(),
            used_vols.len().min(vols.len()),
            vol_size,
            reclaim(vol_free, vol_size),
        ),
        row("Build Cache", 0, 0, 0, "0B".into()),
    ];
    let header = [
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ];
    let lf = format::ListFormat::parse(
        f.format.as_deref(),
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    )?;
    print!("{}", lf.render(&rows, &header)?);
    Ok(0)
}

/// Go's GOARCH for this machine, as Docker reports it.
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The API version of the Docker release whose CLI rbox answers as (Docker 28.0).
const API_VERSION: &str = "1.48";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Docker's `version` text template (docker/cli `cli/command/system/version.go`).
const VERSION_TEMPLATE: &str = r#"{{with .Client -}}
Client:{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}
 Version:	{{.Version}}
 API version:	{{.APIVersion}}
 Go version:	{{.GoVersion}}
 Git commit:	{{.GitCommit}}
 Built:	{{.BuildTime}}
 OS/Arch:	{{.Os}}/{{.Arch}}
 Context:	{{.Context}}
{{- end}}
{{- with .Server}}

Server:{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}
 {{- range $component := .Components}}
 {{$component.Name}}:
  {{- if eq $component.Name "Engine" }}
  Version:	{{.Version}}
  API version:	{{index .Details "ApiVersion"}} (minimum version {{index .Details "MinAPIVersion"}})
  Go version:	{{index .Details "GoVersion"}}
  Git commit:	{{index .Details "GitCommit"}}
  Built:	{{index .Details "BuildTime"}}
  OS/Arch:	{{index .Details "Os"}}/{{index .Details "Arch"}}
  Experimental:	{{index .Details "Experimental"}}
  {{- else }}
  Version:	{{$component.Version}}
  {{- end}}
 {{- end}}
{{- end}}
"#;

pub fn version_json() -> Value {
    json!({
        "Client": {
            "Platform": {"Name": "rbox"},
            "Version": VERSION,
            "APIVersion": API_VERSION,
            "DefaultAPIVersion": API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": goarch(),
            "BuildTime": "",
            "Context": "default",
        },
        "Server": {
            "Platform": {"Name": "rbox"},
            "Components": [
                {"Name": "Engine", "Version": VERSION, "Details": {
                    "ApiVersion": API_VERSION,
                    "Arch": goarch(),
                    "BuildTime": "",
                    "Experimental": "false",
                    "GitCommit": "",
                    "GoVersion": "",
                    "KernelVersion": kernel(),
                    "MinAPIVersion": "1.24",
                    "Os": "linux",
                }},
                {"Name": "libcontainer", "Version": "0.7.0", "Details": {}},
            ],
            "Version": VERSION,
            "APIVersion": API_VERSION,
            "MinAPIVersion": "1.24",
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": goarch(),
            "KernelVersion": kernel(),
            "BuildTime": "",
        },
    })
}

fn version(f: &FormatArg) -> Result<i32> {
    let v = version_json();
    let text = match f.format.as_deref() {
        Some("json") => serde_json::to_string(&v)? + "\n",
        Some(t) => format::render_one(t, &v, &schema::VERSION)? + "\n",
        // Docker aligns its text with a tabwriter (min width 20, padding 1).
        None => gotemplate::align(
            &format::render_one(VERSION_TEMPLATE, &v, &schema::VERSION)?,
            20,
            1,
        ),
    };
    print!("{text}");
    Ok(0)
}

fn os_release() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 1 on v1 and hybrid hosts, 2 on unified ones (Docker's `CgroupVersion`).
fn cgroup_version() -> &'static str {
    match std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        true => "2",
        false => "1",
    }
}

pub fn info_json(root: &std::path::Path, debug: bool) -> Value {
    let recs = runtime::lifecycle::list(root);
    let running = recs.iter().filter(|r| r.running()).count();
    let images = images::Store::open(root)
        .and_then(|s| s.list())
        .map_or(0, |l| l.len());
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = engine_id(root);
    let controllers = |c: &str| runtime::cgroup::controller_available(c);
    let forwarding =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1");
    let first = json!({
        "ID": id,
        "Containers": recs.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": recs.len() - running,
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        "MemoryLimit": controllers("memory"),
        "SwapLimit": controllers("memory"),
        "CpuCfsPeriod": controllers("cpu"),
        "CpuCfsQuota": controllers("cpu"),
        "CPUShares": controllers("cpu"),
        "CPUSet": controllers("cpuset"),
        "PidsLimit": controllers("pids"),
        "IPv4Forwarding": forwarding,
        "Debug": debug,
        "NFd": 0,
        "OomKillDisable": cgroup_version() == "1",
        "NGoroutines": 0,
        "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
    });
    // Two halves: one json! of all would be too deep a macro.
    let rest = json!({
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os_release(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "NCPU": ncpu,
        "MemTotal": mem_total(),
        "DockerRootDir": root,
        "HttpProxy": std::env::var("HTTP_PROXY").unwrap_or_default(),
        "HttpsProxy": std::env::var("HTTPS_PROXY").unwrap_or_default(),
        "NoProxy": std::env::var("NO_PROXY").unwrap_or_default(),
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": {"youki": {"path": "libcontainer"}},
        "DefaultRuntime": "youki",
        "Swarm": {"LocalNodeState": "inactive"},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
        "Warnings": null,
        "ClientInfo": {"Debug": debug, "Version": VERSION, "Context": "default", "Plugins": []},
    });
    let (Value::Object(mut a), Value::Object(b)) = (first, rest) else {
        unreachable!("JSON object literals")
    };
    a.extend(b);
    Value::Object(a)
}

/// A stable id of this root in Docker's engine ID style (groups of four hex digits).
fn engine_id(root: &std::path::Path) -> String {
    // FNV-1a, twice with different offsets, for 128 bits.
    let fnv = |seed: u64| {
        root.to_string_lossy().bytes().fold(seed, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let h = format!(
        "{:016X}{:016X}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    );
    h.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Docker's `info` text, for the fields rbox has.
const INFO_TEMPLATE: &str = r#"Client:
 Version:    {{.ClientInfo.Version}}
 Context:    {{.ClientInfo.Context}}
 Debug Mode: {{.ClientInfo.Debug}}

Server:
 Containers: {{.Containers}}
  Running: {{.ContainersRunning}}
  Paused: {{.ContainersPaused}}
  Stopped: {{.ContainersStopped}}
 Images: {{.Images}}
 Server Version: {{.ServerVersion}}
 Storage Driver: {{.Driver}}
{{- range .DriverStatus}}
  {{index . 0}}: {{index . 1}}
{{- end}}
 Logging Driver: {{.LoggingDriver}}
 Cgroup Driver: {{.CgroupDriver}}
 Cgroup Version: {{.CgroupVersion}}
 Plugins:
  Volume: {{join .Plugins.Volume " "}}
  Network: {{join .Plugins.Network " "}}
  Log: {{join .Plugins.Log " "}}
 Swarm: {{.Swarm.LocalNodeState}}
 Runtimes:{{range $k, $v := .Runtimes}} {{$k}}{{end}}
 Default Runtime: {{.DefaultRuntime}}
 Security Options:
{{- range .SecurityOptions}}
  {{.}}
{{- end}}
 Kernel Version: {{.KernelVersion}}
 Operating System: {{.OperatingSystem}}
 OSType: {{.OSType}}
 Architecture: {{.Architecture}}
 CPUs: {{.NCPU}}
 Total Memory: {{.MemTotalHuman}}
 Name: {{.Name}}
 ID: {{.ID}}
 Docker Root Dir: {{.DockerRootDir}}
 Debug Mode: {{.Debug}}
 Experimental: {{.ExperimentalBuild}}
 Live Restore Enabled: {{.LiveRestoreEnabled}}
"#;

fn info(cli: &Cli, f: &FormatArg) -> Result<i32> {
    let v = info_json(&cli.root, cli.debug);
    let text = match f.format.as_deref() {
        Some("json") => serde_json::to_string(&v)? + "\n",
        Some(t) => format::render_one(t, &v, &schema::INFO)? + "\n",
        None => {
            let mut with_human = v.clone();
            with_human["MemTotalHuman"] =
                json!(format::bytes_size(v["MemTotal"].as_u64().unwrap_or(0)));
            format::render_one(INFO_TEMPLATE, &with_human, &schema::INFO)?
        }
    };
    print!("{text}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_sizes_as_docker() {
        use crate::format::bytes_size;
        assert_eq!(bytes_size(4_110_000_000), "3.828GiB");
        assert_eq!(bytes_size(1024), "1KiB");
        assert_eq!(bytes_size(512), "512B");
    }
}
