//! Docker-shaped `inspect` JSON for a container record.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::record::{Record, Status};
use crate::store::Paths;

fn time(t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Nanos, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

pub fn to_json(root: &std::path::Path, r: &Record) -> Value {
    let s = &r.settings;
    let paths = Paths::new(root, &r.id);
    let argv = r.argv();
    let mut networks = Map::new();
    for (name, ep) in &r.networks {
        networks.insert(
            name.clone(),
            serde_json::to_value(ep).unwrap_or(Value::Null),
        );
    }
    let default = r.networks.get("bridge").cloned().unwrap_or_default();
    let specs: Vec<net::PortSpec> = s
        .publish
        .iter()
        .filter_map(|p| net::PortSpec::parse(p).ok())
        .collect();
    let exposed: Map<String, Value> = s
        .exposed_ports
        .iter()
        .map(|e| {
            let key = if e.contains('/') {
                e.clone()
            } else {
                format!("{e}/tcp")
            };
            (key, json!({}))
        })
        .collect();
    // Docker lists exposed-but-unpublished ports as null while running, nothing when stopped.
    let ports = if r.active() {
        net::docker::ports(&r.ports, &s.exposed_ports)
    } else {
        json!({})
    };
    let (binds, mounts, tmpfs) = crate::mounts::host_config(&s.mounts);
    let mut v = json!({
        "Id": r.id,
        "Created": r.created.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": r.state.status.as_str(),
            // Docker counts a container waiting to restart as running.
            "Running": r.active(),
            "Paused": false,
            "Restarting": r.state.status == Status::Restarting,
            "OOMKilled": r.state.oom_killed,
            "Dead": false,
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": time(&r.state.started_at),
            "FinishedAt": time(&r.state.finished_at),
        },
        "Image": r.image_id,
        "ResolvConfPath": paths.dir.join("resolv.conf"),
        "HostnamePath": paths.dir.join("hostname"),
        "HostsPath": paths.dir.join("hosts"),
        // Docker shows the file of json-file only: local's format is not an interface.
        "LogPath": match s.log_config.driver() {
            "json-file" => crate::logs::path(&paths, r).map(|p| p.display().to_string()).unwrap_or_default(),
            _ => String::new(),
        },
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": binds,
            "Mounts": mounts,
            "Tmpfs": tmpfs,
            "NetworkMode": s.network_mode,
            "Dns": s.dns,
            "DnsSearch": s.dns_search,
            "DnsOptions": s.dns_options,
            "ExtraHosts": if s.extra_hosts.is_empty() { Value::Null } else { json!(s.extra_hosts) },
            "AutoRemove": s.auto_remove,
            "RestartPolicy": {
                "Name": s.restart_policy.mode.as_str(),
                "MaximumRetryCount": s.restart_policy.maximum_retry_count,
            },
            "ReadonlyRootfs": s.read_only,
            "Memory": s.memory,
            "NanoCpus": s.nano_cpus,
            "PidsLimit": if s.pids_limit > 0 { Value::from(s.pids_limit) } else { Value::Null },
            "PortBindings": net::docker::port_bindings(&specs),
            "PublishAllPorts": s.publish_all,
            "LogConfig": {"Type": s.log_config.driver(), "Config": s.log_config.opts},
            "SecurityOpt": if s.security_opt.is_empty() { Value::Null } else { json!(s.security_opt) },
            "Privileged": false,
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": { "UpperDir": paths.upper(), "WorkDir": paths.work(), "MergedDir": paths.rootfs() },
        },
        "Mounts": crate::mounts::inspect_mounts(root, &s.mounts),
        "Config": {
            "Hostname": s.hostname,
            "User": s.user,
            "Tty": s.tty,
            "OpenStdin": s.open_stdin,
            "Env": s.env,
            "Cmd": s.cmd,
            "Entrypoint": if s.entrypoint.is_empty() { Value::Null } else { json!(s.entrypoint) },
            "Image": r.image,
            "WorkingDir": s.working_dir,
            "Labels": s.labels,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
        },
        "NetworkSettings": {
            "SandboxID": if r.sandbox_key.is_empty() { String::new() } else { r.id.clone() },
            "SandboxKey": r.sandbox_key,
            "Gateway": default.gateway,
            "IPAddress": default.ip_address,
            "IPPrefixLen": default.ip_prefix_len,
            "GlobalIPv6Address": default.global_ipv6_address,
            "GlobalIPv6PrefixLen": default.global_ipv6_prefix_len,
            "IPv6Gateway": default.ipv6_gateway,
            "MacAddress": default.mac_address,
            "Ports": ports,
            "Networks": networks,
        },
    });
    // Docker leaves these out unless set (omitempty).
    if s.init {
        v["HostConfig"]["Init"] = json!(true);
    }
    if !s.stop_signal.is_empty() {
        v["Config"]["StopSignal"] = json!(s.stop_signal);
    }
    if let Some(t) = s.stop_timeout {
        v["Config"]["StopTimeout"] = json!(t);
    }
    v
}
