//! Flags of `run` and `create`, turned into `runtime::lifecycle::CreateOptions`.

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args};
use runtime::lifecycle::CreateOptions;
use runtime::record::Settings;
use runtime::units::parse_bytes;

use super::healthflags::HealthFlags;
use super::hostflags::HostFlags;

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    pub label_file: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Connect a container to a network (bridge, host, none or a network name)
    #[arg(long, alias = "net", default_value = "bridge")]
    pub network: String,
    /// IPv4 address
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container MAC address
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Bind mount a volume (/host/path:/ctr/path[:ro|:rw])
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|tmpfs,source=..,target=..)
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Restart policy to apply when a container exits (no, on-failure[:max-retries], always,
    /// unless-stopped)
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Logging driver for the container (json-file, local, none)
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options (max-size, max-file, compress, labels, env)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, env = "RBOX_PULL", default_value = "missing")]
    pub pull: images::PullPolicy,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub host: HostFlags,
    #[command(flatten)]
    pub health: HealthFlags,
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `-e KEY` without a value takes KEY from our environment, as Docker does (dropped if unset).
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

impl CreateArgs {
    /// `detach`: `run -d` (nothing attached).
    pub fn options(&self, auto_remove: bool, detach: bool) -> Result<CreateOptions> {
        self.host.check_cidfile()?;
        // The rest of `container:`'s conflicts are the runtime's (runtime::network); these two
        // are flags it does not see.
        if self.network.starts_with("container:") {
            if !self.host.link.is_empty() {
                bail!(
                    "conflicting options: container type network can't be used with links. \
                     This would result in undefined behavior"
                );
            }
            if !self.host.expose.is_empty() {
                bail!("conflicting options: port exposing and the container type network mode");
            }
        }
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
            for line in text.lines() {
                let line = line.trim_start();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                env.extend(env_entry(line));
            }
        }
        for e in &self.env {
            if e.starts_with('=') || e.is_empty() {
                bail!("invalid environment variable: {e}");
            }
            env.extend(env_entry(e));
        }
        // Docker reads label files first, then --label, later ones winning.
        let mut labels = std::collections::BTreeMap::new();
        let mut label_lines = Vec::new();
        for f in &self.label_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
            label_lines.extend(
                text.lines()
                    .map(str::trim_start)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        label_lines.extend(self.label.iter().cloned());
        for l in label_lines {
            let (k, v) = l.split_once('=').unwrap_or((&l, ""));
            if k.is_empty() {
                bail!("invalid label '{l}': empty name");
            }
            labels.insert(k.to_string(), v.to_string());
        }
        let memory = match &self.memory {
            Some(m) => parse_bytes(m).map_err(|_| {
                anyhow::anyhow!(
                    "invalid argument \"{m}\" for \"-m, --memory\" flag: invalid size: '{m}'"
                )
            })?,
            None => 0,
        };
        for d in &self.dns {
            net::dns::parse_dns_server(d)
                .map_err(|e| anyhow::anyhow!("invalid argument \"{d}\" for \"--dns\" flag: {e}"))?;
        }
        for s in &self.dns_search {
            net::dns::check_dns_search(s)?;
        }
        for o in &self.dns_option {
            net::dns::check_dns_option(o)?;
        }
        for h in &self.add_host {
            net::dns::parse_add_host(h)?;
        }
        for a in &self.network_alias {
            net::dns::check_alias(a)?;
        }
        let mut mounts = Vec::new();
        for v in &self.volume {
            mounts.push(runtime::mounts::parse_volume(v)?);
        }
        for m in &self.mount {
            mounts.push(runtime::mounts::parse_mount(m)?);
        }
        for t in &self.tmpfs {
            mounts.push(runtime::mounts::parse_tmpfs(t)?);
        }
        let nano_cpus = match self.cpus {
            Some(c) if c < 0.0 || !c.is_finite() => {
                bail!("invalid argument \"{c}\" for \"--cpus\" flag")
            }
            Some(c) => (c * 1e9) as i64,
            None => 0,
        };
        let mut opts = CreateOptions {
            name: self.name.clone(),
            image: self.image.clone(),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            log_driver: self.log_driver.clone(),
            log_opts: self.log_opt.clone(),
            healthcheck: self.health.healthcheck()?,
            settings: Settings {
                health_on_failure: self.health.health_on_failure.clone(),
                labels,
                hostname: self.hostname.clone().unwrap_or_default(),
                env,
                working_dir: self.workdir.clone().unwrap_or_default(),
                user: self.user.clone().unwrap_or_default(),
                tty: self.tty,
                open_stdin: self.interactive,
                read_only: self.read_only,
                memory,
                nano_cpus,
                pids_limit: self.pids_limit.filter(|p| *p > 0).unwrap_or(0),
                auto_remove,
                network_mode: self.network.clone(),
                ip: self.ip.clone(),
                ip6: self.ip6.clone(),
                mac_address: self.mac_address.clone(),
                aliases: self.network_alias.clone(),
                dns: self.dns.iter().map(|d| d.trim().to_string()).collect(),
                dns_search: self.dns_search.clone(),
                dns_options: self.dns_option.clone(),
                extra_hosts: self.add_host.clone(),
                publish: self.publish.clone(),
                publish_all: self.publish_all,
                security_opt: runtime::seccomp::security_opts(&self.security_opt)?,
                mounts,
                restart_policy: runtime::policy::RestartPolicy::parse(&self.restart)?,
                init: self.init,
                stop_signal: self.stop_signal.clone().unwrap_or_default(),
                stop_timeout: self.stop_timeout,
                ..Default::default()
            },
        };
        self.host
            .apply(&mut opts.settings, detach, self.interactive)?;
        for w in runtime::hostconfig::check(&mut opts.settings)? {
            eprintln!("WARNING: {w}");
        }
        Ok(opts)
    }
}
