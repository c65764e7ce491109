//! The per-container state file (`<root>/containers/<id>/container.json`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// What the process is doing now (Docker's `State`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub status: Status,
    /// Init pid (host namespace) while running, else 0.
    pub pid: i32,
    /// Pid of the process that owns the container while it runs (the monitor or the CLI of a
    /// foreground run); 0 when none claimed it. Liveness is judged by its lock, not this pid.
    pub monitor_pid: i32,
    pub exit_code: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub oom_killed: bool,
    pub error: String,
}

/// A `--device` (Docker's `DeviceMapping`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Device {
    pub path_on_host: String,
    pub path_in_container: String,
    /// "rwm" or a subset.
    pub cgroup_permissions: String,
}

/// A `--ulimit` (Docker's `Ulimit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// The user's choices, as Docker's `Config` + `HostConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub hostname: String,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub labels: BTreeMap<String, String>,
    pub read_only: bool,
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    pub nano_cpus: i64,
    /// 0 = unlimited.
    pub pids_limit: i64,
    pub auto_remove: bool,
    /// "bridge" (default), "host", "none" or a network name.
    pub network_mode: String,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub mac_address: Option<String>,
    pub aliases: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`, `--add-host` (HostConfig.Dns, DnsSearch,
    /// DnsOptions, ExtraHosts).
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `-p` values as given (validated by `create`).
    #[serde(default)]
    pub publish: Vec<String>,
    /// `-P`: publish every exposed port on an ephemeral host port.
    #[serde(default)]
    pub publish_all: bool,
    /// The image's `EXPOSE` entries ("80/tcp").
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// `--security-opt` (HostConfig.SecurityOpt); a `seccomp=` profile file is kept inline.
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// `-v`, `--mount` and `--tmpfs`, parsed and checked (see `mounts`).
    #[serde(default)]
    pub mounts: Vec<crate::mounts::Mount>,
    /// `--cap-add` / `--cap-drop`: `CAP_`-prefixed upper-case names, or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub devices: Vec<Device>,
    pub device_cgroup_rules: Vec<String>,
    pub ulimits: Vec<Ulimit>,
    /// Bytes of /dev/shm; 0 is Docker's 64 MiB.
    pub shm_size: i64,
    pub sysctls: BTreeMap<String, String>,
    pub group_add: Vec<String>,
    /// `--pid`, `--ipc`, `--uts`, `--cgroupns`: "" (Docker's default), "host",
    /// "container:ID" (pid, ipc), "private"/"shareable" (ipc, cgroupns).
    pub pid_mode: String,
    pub ipc_mode: String,
    pub uts_mode: String,
    pub cgroupns_mode: String,
    pub cpu_shares: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// Bytes; -1 unlimited, 0 Docker's default (twice `memory`).
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub oom_kill_disable: bool,
    pub oom_score_adj: i64,
    /// `--cidfile`.
    pub container_id_file: String,
    /// `--link NAME:ALIAS` as Docker records them: `/NAME:/THIS/ALIAS`.
    pub links: Vec<String>,
    /// `-a`: the streams a foreground run attaches (Config.AttachStdin/out/err).
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// `--detach-keys`.
    pub detach_keys: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The reference the user gave ("busybox").
    pub image: String,
    /// "sha256:..."
    pub image_id: String,
    pub settings: Settings,
    pub state: RunState,
    /// Network name -> what joining it configured.
    #[serde(default)]
    pub networks: BTreeMap<String, net::EndpointSettings>,
    #[serde(default)]
    pub sandbox_key: String,
    /// Host ports published while running (held by the owner's reservation).
    #[serde(default)]
    pub ports: Vec<net::PortBinding>,
    #[serde(default)]
    pub restart_count: u32,
}

impl Record {
    /// Entrypoint + Cmd: what the container runs.
    pub fn argv(&self) -> Vec<String> {
        let mut v = self.settings.entrypoint.clone();
        v.extend(self.settings.cmd.iter().cloned());
        v
    }

    pub fn running(&self) -> bool {
        self.state.status == Status::Running
    }
}
