//! Docker-shaped `inspect` JSON for a container record: every key of Docker 28's
//! `ContainerJSON`, in its order, so templates that walk into any of them work; values Docker
//! fills from features rbox does not have are Docker's defaults.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::record::{Record, Settings, Status};
use crate::store::Paths;

fn time(t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Nanos, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// `[]` or null as Docker's CLI sends the list it was given (`--dns` and others are never nil).
fn list_or_null<T: serde::Serialize>(v: &[T]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

/// Docker's predefined networks: on them an endpoint has no aliases or DNS names.
fn predefined(network: &str) -> bool {
    matches!(network, "bridge" | "host" | "none")
}

/// `NetworkSettings.Networks[name]`: Docker 28's `EndpointSettings`, with the container's
/// short id in `Aliases` on user networks as Docker 20.10 put it there (and in `DNSNames`,
/// as Docker 25+ does).
fn endpoint(r: &Record, name: &str, ep: &net::EndpointSettings) -> Value {
    let s = &r.settings;
    let short = &r.id[..12];
    let (aliases, dns_names) = if predefined(name) {
        (Value::Null, Value::Null)
    } else {
        let mut aliases = ep.aliases.clone();
        if !aliases.iter().any(|a| a == short) {
            aliases.push(short.to_string());
        }
        if s.hostname != r.name && !aliases.contains(&s.hostname) {
            aliases.push(s.hostname.clone());
        }
        let mut names = vec![r.name.clone()];
        names.extend(aliases.iter().filter(|a| **a != r.name).cloned());
        (json!(aliases), json!(names))
    };
    // --ip/--ip6 belong to the network the container was created on.
    let ipam = match (name == s.network_mode, &s.ip, &s.ip6) {
        (true, ip, ip6) if ip.is_some() || ip6.is_some() => json!({
            "IPv4Address": ip.clone().unwrap_or_default(),
            "IPv6Address": ip6.clone().unwrap_or_default(),
        }),
        _ => Value::Null,
    };
    let links: Vec<String> = s
        .links
        .iter()
        .filter(|_| !predefined(name))
        .map(|l| legacy_link(l).0)
        .collect();
    json!({
        "IPAMConfig": ipam,
        "Links": list_or_null(&links),
        "Aliases": aliases,
        "MacAddress": ep.mac_address,
        "DriverOpts": null,
        "GwPriority": 0,
        "NetworkID": ep.network_id,
        "EndpointID": ep.endpoint_id,
        "Gateway": ep.gateway,
        "IPAddress": ep.ip_address,
        "IPPrefixLen": ep.ip_prefix_len,
        "IPv6Gateway": ep.ipv6_gateway,
        "GlobalIPv6Address": ep.global_ipv6_address,
        "GlobalIPv6PrefixLen": ep.global_ipv6_prefix_len,
        "DNSNames": dns_names,
    })
}

/// A recorded link `/NAME:/THIS/ALIAS` as `NAME:ALIAS` and its alias.
fn legacy_link(l: &str) -> (String, String) {
    let (target, alias) = l.split_once(':').unwrap_or((l, l));
    let target = target.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    (format!("{target}:{alias}"), alias.to_string())
}

/// Docker's `HostConfig`, in its order.
fn host_config(r: &Record, specs: &[net::PortSpec]) -> Value {
    let s = &r.settings;
    let (binds, mounts, tmpfs) = crate::mounts::host_config(&s.mounts);
    let caps = |v: &[String]| list_or_null(v);
    let omit_empty = |v: Value| if v.is_null() { None } else { Some(v) };
    let (masked, readonly) = if s.privileged {
        (Value::Null, Value::Null)
    } else {
        (json!(crate::spec::MASKED), json!(crate::spec::READONLY))
    };
    let hc = json!({
        "Binds": binds,
        "ContainerIDFile": s.container_id_file,
        "LogConfig": {"Type": s.log_config.driver(), "Config": s.log_config.opts},
        "NetworkMode": s.network_mode,
        "PortBindings": net::docker::port_bindings(specs),
        "RestartPolicy": {
            "Name": s.restart_policy.mode.as_str(),
            "MaximumRetryCount": s.restart_policy.maximum_retry_count,
        },
        "AutoRemove": s.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": null,
        "ConsoleSize": [0, 0],
        "CapAdd": caps(&s.cap_add),
        "CapDrop": caps(&s.cap_drop),
        "CgroupnsMode": if s.cgroupns_mode.is_empty() { "private" } else { &s.cgroupns_mode },
        "Dns": s.dns,
        "DnsOptions": s.dns_options,
        "DnsSearch": s.dns_search,
        "ExtraHosts": list_or_null(&s.extra_hosts),
        "GroupAdd": list_or_null(&s.group_add),
        "IpcMode": if s.ipc_mode.is_empty() { "private" } else { &s.ipc_mode },
        "Cgroup": "",
        "Links": list_or_null(&s.links),
        "OomScoreAdj": s.oom_score_adj,
        "PidMode": s.pid_mode,
        "Privileged": s.privileged,
        "PublishAllPorts": s.publish_all,
        "ReadonlyRootfs": s.read_only,
        "SecurityOpt": list_or_null(&s.security_opt),
        "UTSMode": s.uts_mode,
        "UsernsMode": "",
        "ShmSize": if s.shm_size > 0 { s.shm_size } else { crate::spec::DEFAULT_SHM_SIZE },
        "Runtime": "youki",
        "Isolation": "",
    });
    // Docker's embedded `Resources`, then the rest (one json! would be too deep a macro).
    let resources = json!({
        "CpuShares": s.cpu_shares,
        "Memory": s.memory,
        "NanoCpus": s.nano_cpus,
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": s.cpu_period,
        "CpuQuota": s.cpu_quota,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": s.cpuset_cpus,
        "CpusetMems": s.cpuset_mems,
        "Devices": s.devices,
        "DeviceCgroupRules": list_or_null(&s.device_cgroup_rules),
        "DeviceRequests": null,
        "MemoryReservation": s.memory_reservation,
        "MemorySwap": s.memory_swap,
        "MemorySwappiness": null,
        "OomKillDisable": s.oom_kill_disable,
        "PidsLimit": if s.pids_limit > 0 { Value::from(s.pids_limit) } else { Value::Null },
        "Ulimits": s.ulimits,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": masked,
        "ReadonlyPaths": readonly,
    });
    let (Value::Object(mut hc_map), Value::Object(r)) = (hc, resources) else {
        unreachable!("JSON object literals")
    };
    hc_map.extend(r);
    let hc = Value::Object(hc_map);
    // Keys Docker omits when empty, at their places.
    let sysctls = (!s.sysctls.is_empty()).then(|| json!(s.sysctls));
    let mut out = Map::new();
    if let Value::Object(m) = hc {
        for (k, v) in m {
            match k.as_str() {
                "UTSMode" => {
                    if let Some(t) = omit_empty(tmpfs.clone()) {
                        out.insert("Tmpfs".into(), t);
                    }
                }
                "Isolation" => {
                    if let Some(x) = sysctls.clone() {
                        out.insert("Sysctls".into(), x);
                    }
                }
                "MaskedPaths" => {
                    if let Some(m) = omit_empty(mounts.clone()) {
                        out.insert("Mounts".into(), m);
                    }
                }
                _ => {}
            }
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// Docker's `Config`, in its order (optional keys only when set, as Docker omits them).
fn config(r: &Record) -> Value {
    let s = &r.settings;
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
    let volumes: Map<String, Value> = s
        .mounts
        .iter()
        .filter(|m| m.anonymous)
        .map(|m| (m.target.clone(), json!({})))
        .collect();
    let mut c = json!({
        "Hostname": s.hostname,
        "Domainname": "",
        "User": s.user,
        "AttachStdin": s.attach_stdin,
        "AttachStdout": s.attach_stdout,
        "AttachStderr": s.attach_stderr,
    });
    if !exposed.is_empty() {
        c["ExposedPorts"] = Value::Object(exposed);
    }
    let rest = json!({
        "Tty": s.tty,
        "OpenStdin": s.open_stdin,
        "StdinOnce": s.open_stdin && s.attach_stdin,
        "Env": s.env,
        "Cmd": s.cmd,
    });
    if let (Value::Object(c), Value::Object(rest)) = (&mut c, rest) {
        c.extend(rest);
    }
    if let Some(h) = &s.healthcheck {
        c["Healthcheck"] = json!(h);
    }
    let rest = json!({
        "Image": r.image,
        "Volumes": if volumes.is_empty() { Value::Null } else { Value::Object(volumes) },
        "WorkingDir": s.working_dir,
        "Entrypoint": list_or_null(&s.entrypoint),
        "OnBuild": null,
        "Labels": s.labels,
    });
    if let (Value::Object(c), Value::Object(rest)) = (&mut c, rest) {
        c.extend(rest);
    }
    c
}

/// Docker's `NetworkSettings`: the default network's addresses at the top (empty on user
/// networks, as Docker), then every network's endpoint.
fn network_settings(r: &Record) -> Value {
    let s = &r.settings;
    let networks: Map<String, Value> = r
        .networks
        .iter()
        .map(|(name, ep)| (name.clone(), endpoint(r, name, ep)))
        .collect();
    let default = r.networks.get("bridge").cloned().unwrap_or_default();
    // Docker lists exposed-but-unpublished ports as null while running, nothing when stopped.
    let ports = if r.active() {
        net::docker::ports(&r.ports, &s.exposed_ports)
    } else {
        json!({})
    };
    json!({
        "Bridge": "",
        "SandboxID": if r.sandbox_key.is_empty() { String::new() } else { r.id.clone() },
        "SandboxKey": r.sandbox_key,
        "Ports": ports,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": default.endpoint_id,
        "Gateway": default.gateway,
        "GlobalIPv6Address": default.global_ipv6_address,
        "GlobalIPv6PrefixLen": default.global_ipv6_prefix_len,
        "IPAddress": default.ip_address,
        "IPPrefixLen": default.ip_prefix_len,
        "IPv6Gateway": default.ipv6_gateway,
        "MacAddress": default.mac_address,
        "Networks": networks,
    })
}

pub fn to_json(root: &std::path::Path, r: &Record) -> Value {
    let s: &Settings = &r.settings;
    let paths = Paths::new(root, &r.id);
    let argv = r.argv();
    let specs: Vec<net::PortSpec> = s
        .publish
        .iter()
        .filter_map(|p| net::PortSpec::parse(p).ok())
        .collect();
    let mut v = json!({
        "Id": r.id,
        "Created": r.created.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": r.state_name(),
            // Docker counts a container waiting to restart as running.
            "Running": r.active(),
            "Paused": r.state_name() == "paused",
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
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config(r, &specs),
        "GraphDriver": {
            "Data": {
                "MergedDir": paths.rootfs(),
                "UpperDir": paths.upper(),
                "WorkDir": paths.work(),
            },
            "Name": "overlay",
        },
        "Mounts": crate::mounts::inspect_mounts(root, &s.mounts),
        "Config": config(r),
        "NetworkSettings": network_settings(r),
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
    // Docker's State.Health: once a container with a probe has started.
    if let Some(h) = &r.health {
        v["State"]["Health"] = json!(h);
    }
    if !matches!(s.health_on_failure.as_str(), "" | "none") {
        // podman's key for its option.
        v["Config"]["HealthcheckOnFailureAction"] = json!(s.health_on_failure);
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn legacy_links_as_docker_records_them() {
        assert_eq!(
            super::legacy_link("/db:/web/database"),
            ("db:database".to_string(), "database".to_string())
        );
    }
}
