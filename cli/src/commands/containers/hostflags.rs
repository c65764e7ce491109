//! The `run`/`create` flags for capabilities, devices, limits, namespaces, links and
//! attaching, parsed and checked as Docker's CLI does (docker/cli `opts.go`, Docker 20.10):
//! a bad value is `invalid argument "V" for "--flag" flag: ...`, exit 125.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use runtime::record::{Device, Settings, Ulimit};
use runtime::units::parse_bytes;

#[derive(Args, Debug, Default)]
pub struct HostFlags {
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS])
    #[arg(long)]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ('c 1:3 rwm')
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options (KEY=VALUE)
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// PID namespace to use (host, container:NAME)
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC mode to use (none, private, shareable, host, container:NAME)
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    pub uts: Option<String>,
    /// Cgroup namespace to use (host, private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", allow_negative_numbers = true)]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", allow_negative_numbers = true)]
    pub cpu_period: Option<i64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_negative_numbers = true)]
    pub oom_score_adj: Option<i64>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Add link to another container (NAME[:ALIAS])
    #[arg(long)]
    pub link: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long)]
    pub attach: Vec<String>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
}

/// pflag's message for a value a flag refuses.
fn bad(value: &str, flag: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("invalid argument \"{value}\" for \"{flag}\" flag: {why}")
}

/// go-units `ParseUlimit`.
fn ulimit(v: &str) -> Result<Ulimit> {
    const NAMES: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let flag = "--ulimit";
    let Some((name, limits)) = v.split_once('=') else {
        return Err(bad(v, flag, format!("invalid ulimit argument: {v}")));
    };
    if !NAMES.contains(&name) {
        return Err(bad(v, flag, format!("invalid ulimit type: {name}")));
    }
    let int = |s: &str| {
        s.parse::<i64>().map_err(|_| {
            bad(
                v,
                flag,
                format!("strconv.ParseInt: parsing {s:?}: invalid syntax"),
            )
        })
    };
    let (soft, hard) = match limits.split(':').collect::<Vec<_>>().as_slice() {
        [s] => (int(s)?, int(s)?),
        [s, h] => (int(s)?, int(h)?),
        _ => {
            return Err(bad(
                v,
                flag,
                format!(
                "too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
            ),
            ))
        }
    };
    if hard != -1 && soft > hard {
        return Err(bad(
            v,
            flag,
            format!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"),
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

fn device_mode(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 3
        && m.chars().all(|c| "rwm".contains(c))
        && m.chars().collect::<std::collections::HashSet<_>>().len() == m.len()
}

/// docker/cli `validateLinuxPath` + `parseLinuxDevice`.
fn device(v: &str) -> Result<Device> {
    let flag = "--device";
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() > 3 || parts[0].is_empty() {
        return Err(bad(v, flag, format!("bad format for path: {v}")));
    }
    let (host, mut target, mut perms) = (parts[0], parts[0], "rwm");
    match parts.as_slice() {
        [_, x] if device_mode(x) => perms = x,
        [_, x] => target = x,
        [_, t, m] => {
            if !device_mode(m) {
                return Err(bad(v, flag, format!("bad mode specified: {m}")));
            }
            target = t;
            perms = m;
        }
        _ => {}
    }
    if !target.starts_with('/') {
        return Err(bad(v, flag, format!("{target} is not an absolute path")));
    }
    Ok(Device {
        path_on_host: host.to_string(),
        path_in_container: target.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// `--expose 80`, `80/udp`, `8000-8010/tcp` as "port/proto" entries.
fn expose(v: &str) -> Result<Vec<String>> {
    if v.contains(':') {
        bail!("invalid port format for --expose: {v}");
    }
    let (ports, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let range_err = |e: &str| anyhow!("invalid range format for --expose: {v}, error: {e}");
    let num = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| range_err(&format!("strconv.ParseUint: parsing {s:?}: invalid syntax")))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(ports)?, num(ports)?),
    };
    if hi < lo {
        return Err(range_err(&format!(
            "invalid range specified for port: {ports}"
        )));
    }
    Ok((lo..=hi)
        .map(|p| format!("{p}/{}", proto.to_ascii_lowercase()))
        .collect())
}

impl HostFlags {
    /// Sets these flags' parts of `s` (`detach`: `run -d`, which attaches nothing).
    pub fn apply(&self, s: &mut Settings, detach: bool, interactive: bool) -> Result<()> {
        s.cap_add = self.cap_add.clone();
        s.cap_drop = self.cap_drop.clone();
        s.privileged = self.privileged;
        s.devices = self
            .device
            .iter()
            .map(|d| device(d))
            .collect::<Result<_>>()?;
        for r in &self.device_cgroup_rule {
            if runtime::devices::cgroup_rule(r).is_none() {
                return Err(bad(
                    r,
                    "--device-cgroup-rule",
                    format!("invalid device cgroup format '{r}'"),
                ));
            }
        }
        s.device_cgroup_rules = self.device_cgroup_rule.clone();
        s.ulimits = self
            .ulimit
            .iter()
            .map(|u| ulimit(u))
            .collect::<Result<_>>()?;
        let bytes = |v: &Option<String>, flag: &str| -> Result<i64> {
            match v {
                Some(x) => parse_bytes(x).map_err(|_| bad(x, flag, format!("invalid size: '{x}'"))),
                None => Ok(0),
            }
        };
        s.shm_size = bytes(&self.shm_size, "--shm-size")?;
        s.memory_reservation = bytes(&self.memory_reservation, "--memory-reservation")?;
        s.memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => -1,
            _ => bytes(&self.memory_swap, "--memory-swap")?,
        };
        for kv in &self.sysctl {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(bad(
                    kv,
                    "--sysctl",
                    format!("sysctl '{kv}' is not whitelisted"),
                ));
            };
            if !runtime::hostconfig::sysctl_allowed(k) {
                return Err(bad(
                    kv,
                    "--sysctl",
                    format!("sysctl '{kv}' is not whitelisted"),
                ));
            }
            s.sysctls.insert(k.to_string(), v.to_string());
        }
        s.group_add = self.group_add.clone();
        let mode = |v: &Option<String>, ok: &[&str], container: bool, flag: &str, what: &str| {
            let m = v.clone().unwrap_or_default();
            let valid = ok.contains(&m.as_str())
                || (container && m.strip_prefix("container:").is_some_and(|c| !c.is_empty()));
            if valid {
                Ok(m)
            } else {
                Err(anyhow!("--{flag}: invalid {what} mode"))
            }
        };
        s.pid_mode = mode(&self.pid, &["", "host"], true, "pid", "PID")?;
        s.uts_mode = mode(&self.uts, &["", "host"], false, "uts", "UTS")?;
        s.cgroupns_mode = mode(
            &self.cgroupns,
            &["", "host", "private"],
            false,
            "cgroupns",
            "CGROUP",
        )?;
        s.ipc_mode = self.ipc.clone().unwrap_or_default();
        s.cpu_shares = self.cpu_shares.unwrap_or(0);
        s.cpuset_cpus = self.cpuset_cpus.clone().unwrap_or_default();
        s.cpuset_mems = self.cpuset_mems.clone().unwrap_or_default();
        s.cpu_quota = self.cpu_quota.unwrap_or(0);
        s.cpu_period = self.cpu_period.unwrap_or(0);
        s.oom_kill_disable = self.oom_kill_disable;
        s.oom_score_adj = self.oom_score_adj.unwrap_or(0);
        s.container_id_file = self.cidfile.clone().unwrap_or_default();
        for e in &self.expose {
            for p in expose(e)? {
                if !s.exposed_ports.contains(&p) {
                    s.exposed_ports.push(p);
                }
            }
        }
        for l in &self.link {
            if l.split(':').count() > 2 || l.starts_with(':') || l.ends_with(':') {
                bail!("bad format for links: {l}");
            }
        }
        s.links = self.link.clone();
        let mut streams = Vec::new();
        for a in &self.attach {
            let a = a.to_ascii_lowercase();
            if !matches!(a.as_str(), "stdin" | "stdout" | "stderr") {
                return Err(bad(
                    &a,
                    "-a, --attach",
                    "valid streams are STDIN, STDOUT and STDERR",
                ));
            }
            streams.push(a);
        }
        if detach && !streams.is_empty() {
            bail!("Conflicting options: -a and -d");
        }
        // Docker's Config.Attach*: stdout and stderr unless -a says otherwise, stdin with -i;
        // nothing for `run -d`.
        let none = streams.is_empty();
        s.attach_stdin = !detach && (interactive || streams.iter().any(|a| a == "stdin"));
        s.attach_stdout = !detach && (none || streams.iter().any(|a| a == "stdout"));
        s.attach_stderr = !detach && (none || streams.iter().any(|a| a == "stderr"));
        if let Some(k) = &self.detach_keys {
            runtime::attach::detach_keys(Some(k))?;
            s.detach_keys = k.clone();
        }
        Ok(())
    }

    /// `--cidfile`: refused when the file exists, as Docker's CLI does, before anything is
    /// created.
    pub fn check_cidfile(&self) -> Result<()> {
        if let Some(f) = &self.cidfile {
            if std::path::Path::new(f).exists() {
                bail!("Container ID file found, make sure the other container isn't running or delete {f}");
            }
        }
        Ok(())
    }

    /// Writes the id to `--cidfile` once the container exists.
    pub fn write_cidfile(&self, id: &str) -> Result<()> {
        if let Some(f) = &self.cidfile {
            std::fs::write(f, id)
                .map_err(|e| anyhow!("failed to create the container ID file: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_as_go_units() {
        assert_eq!(
            ulimit("nofile=1024:2048").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(ulimit("nproc=10").unwrap().hard, 10);
        assert_eq!(
            ulimit("nofile=x").unwrap_err().to_string(),
            "invalid argument \"nofile=x\" for \"--ulimit\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert!(ulimit("nope=1")
            .unwrap_err()
            .to_string()
            .ends_with("invalid ulimit type: nope"));
        assert!(ulimit("nofile=3:2")
            .unwrap_err()
            .to_string()
            .ends_with("3 > 2"));
    }

    #[test]
    fn devices_and_ports_as_docker() {
        assert_eq!(
            device("/dev/null:/dev/n:r").unwrap().cgroup_permissions,
            "r"
        );
        assert_eq!(
            device("/dev/null:rw").unwrap().path_in_container,
            "/dev/null"
        );
        assert!(device("/dev/null:/dev/n:x")
            .unwrap_err()
            .to_string()
            .ends_with("bad mode specified: x"));
        assert!(device("/dev/null:rel")
            .unwrap_err()
            .to_string()
            .ends_with("rel is not an absolute path"));
        assert_eq!(
            expose("8000-8002/UDP").unwrap(),
            ["8000/udp", "8001/udp", "8002/udp"]
        );
        assert!(expose("1:2").is_err());
    }
}
