//! The per-container state file (`<root>/containers/<id>/container.json`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    /// Waiting, under its restart policy, to run again (Docker's `restarting`).
    Restarting,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }
}

/// What the process is doing now (Docker's `State`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// Field 22 of the init's /proc/PID/stat and the kernel's boot id: tell the init from a
    /// later process given the same pid, so a new monitor can adopt it (`lifecycle::repair`).
    #[serde(default)]
    pub start_time: u64,
    #[serde(default)]
    pub boot_id: String,
    /// Stopped by `stop`/`kill`/`rm -f` rather than on its own (Docker's
    /// HasBeenManuallyStopped): `unless-stopped` then stays down, also at boot. Cleared by
    /// `start`.
    #[serde(default)]
    pub manually_stopped: bool,
    /// Started at least once (Docker's HasBeenStartedBefore): `system boot` starts no
    /// container that never ran.
    #[serde(default)]
    pub has_been_started: bool,
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
    pub mounts: Vec<Mount>,
    /// `--restart` (HostConfig.RestartPolicy).
    #[serde(default)]
    pub restart_policy: crate::policy::RestartPolicy,
    /// `--init`: rbox's own reaper runs as the container's PID 1 (HostConfig.Init).
    #[serde(default)]
    pub init: bool,
    /// `--stop-signal`, else the image's STOPSIGNAL (Config.StopSignal); "" = SIGTERM.
    #[serde(default)]
    pub stop_signal: String,
    /// `--stop-timeout` in seconds (Config.StopTimeout); `None` = 10, -1 = wait for ever.
    #[serde(default)]
    pub stop_timeout: Option<i64>,
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
    /// `--log-driver`/`--log-opt` merged with the root's defaults (HostConfig.LogConfig).
    #[serde(default)]
    pub log_config: LogConfig,
    /// The image's HEALTHCHECK with the `--health-*` flags over it (Config.Healthcheck);
    /// `Test: ["NONE"]` for `--no-healthcheck`.
    #[serde(default)]
    pub healthcheck: Option<crate::health::Healthcheck>,
    /// `--health-on-failure`: none (default), kill, restart, stop.
    #[serde(default)]
    pub health_on_failure: String,
}

/// How a container's output is kept, as recorded: the effective driver and options, checked
/// at create (`logs::resolve`). Records of older rbox versions have none: json-file without
/// limits, what they were written with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// "json-file", "local", "none"; "" = json-file.
    pub driver: String,
    pub opts: BTreeMap<String, String>,
}

impl LogConfig {
    pub fn driver(&self) -> &str {
        if self.driver.is_empty() {
            "json-file"
        } else {
            &self.driver
        }
    }
}

/// A network joined with `network connect`: joined again at every start, as Docker keeps it
/// in the container's EndpointsConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub aliases: Vec<String>,
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
    /// Networks joined with `network connect`, besides `settings.network_mode`.
    #[serde(default)]
    pub connected: Vec<Attachment>,
    /// The healthcheck's state as its monitor published it (`<dir>/health.json`), filled in
    /// when the record is read.
    #[serde(skip)]
    pub health: Option<crate::health::Health>,
}

impl Record {
    /// A container just created: nothing run, joined or published yet.
    pub fn new(
        id: String,
        name: String,
        image: String,
        image_id: String,
        settings: Settings,
    ) -> Record {
        Record {
            id,
            name,
            created: Utc::now(),
            image,
            image_id,
            settings,
            state: RunState::default(),
            networks: Default::default(),
            sandbox_key: String::new(),
            ports: Vec::new(),
            restart_count: 0,
            connected: Vec::new(),
            health: None,
        }
    }

    /// Entrypoint + Cmd: what the container runs.
    pub fn argv(&self) -> Vec<String> {
        let mut v = self.settings.entrypoint.clone();
        v.extend(self.settings.cmd.iter().cloned());
        v
    }

    /// Docker's health filter value: starting, healthy, unhealthy, or none without a probe
    /// that ever started.
    pub fn health_status(&self) -> &str {
        match &self.health {
            Some(h) => &h.status,
            None => "none",
        }
    }

    /// Its process runs now.
    pub fn running(&self) -> bool {
        self.state.status == Status::Running
    }

    /// Docker's state name: `paused` while its cgroup is frozen, else its status.
    pub fn state_name(&self) -> &'static str {
        if self.running() && crate::pause::is_paused(&self.id) {
            return "paused";
        }
        self.state.status.as_str()
    }

    /// Owned by a monitor that runs it or will run it again (running or restarting): what
    /// Docker calls running for `rm`, `start` and `ps`.
    pub fn active(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Restarting)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bind,
    Volume,
    Tmpfs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bind => "bind",
            Kind::Volume => "volume",
            Kind::Tmpfs => "tmpfs",
        }
    }
}

/// Which flag a mount came from: Docker reports each in a different `HostConfig` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flag {
    /// `-v` (HostConfig.Binds)
    Volume,
    /// `--mount` (HostConfig.Mounts)
    Mount,
    /// `--tmpfs` (HostConfig.Tmpfs)
    Tmpfs,
}

/// One user mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: Kind,
    pub flag: Flag,
    /// Host path (bind), volume name (volume, "" = anonymous) or "" (tmpfs).
    pub source: String,
    /// Absolute, cleaned path inside the container.
    pub target: String,
    pub read_only: bool,
    /// Bind propagation ("rprivate" unless asked otherwise); "" for tmpfs.
    pub propagation: String,
    /// The mode field of `-v` as given (Docker's `Mode`); "" otherwise.
    pub mode: String,
    /// tmpfs options as the user gave them (`size=65536k,mode=1777`).
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
    /// The flag's value as given.
    pub raw: String,
    /// A volume named by rbox (`-v /path`): `rm -v` and `--rm` remove it.
    #[serde(default)]
    pub anonymous: bool,
    /// A volume that is not filled from the image (`nocopy`, `volume-nocopy`).
    #[serde(default)]
    pub nocopy: bool,
}
