//! Docker's presentation of networks and ports: `network inspect` JSON, the PORTS column of
//! `ps`, `port`'s lines and inspect's `Ports`/`PortBindings` shapes. Nothing here changes state.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::network::Network;
use crate::ports::{PortBinding, PortSpec};

impl PortBinding {
    /// "80/tcp"
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    /// "0.0.0.0:8080", "[::1]:8080"
    pub fn host_addr(&self) -> String {
        SocketAddr::new(self.host_ip, self.host_port).to_string()
    }
}

impl std::fmt::Display for PortBinding {
    /// The PORTS column of `ps`: "0.0.0.0:8080->80/tcp".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.host_addr(), self.container_key())
    }
}

/// The PORTS column of `ps`: bindings joined by ", ", consecutive ones folded into ranges as
/// Docker does ("0.0.0.0:8080-8082->80-82/tcp").
pub fn ps_ports(bindings: &[PortBinding]) -> String {
    let mut sorted = bindings.to_vec();
    sorted.sort_by_key(|b| (b.proto, b.host_ip, b.container_port));
    let mut groups: Vec<(PortBinding, u16)> = Vec::new();
    for b in sorted {
        if let Some((first, n)) = groups.last_mut() {
            if first.proto == b.proto
                && first.host_ip == b.host_ip
                && u32::from(first.container_port) + u32::from(*n) == u32::from(b.container_port)
                && u32::from(first.host_port) + u32::from(*n) == u32::from(b.host_port)
            {
                *n += 1;
                continue;
            }
        }
        groups.push((b, 1));
    }
    groups
        .iter()
        .map(|(b, n)| {
            if *n == 1 {
                b.to_string()
            } else {
                let host = SocketAddr::new(b.host_ip, b.host_port).to_string();
                format!(
                    "{host}-{}->{}-{}/{}",
                    b.host_port + n - 1,
                    b.container_port,
                    b.container_port + n - 1,
                    b.proto
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `Ports` of Docker's container list (`types.Port`):
/// `[{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]`.
pub fn list_ports(bindings: &[PortBinding]) -> Value {
    Value::Array(
        bindings
            .iter()
            .map(|b| {
                json!({
                    "IP": b.host_ip.to_string(),
                    "PrivatePort": b.container_port,
                    "PublicPort": b.host_port,
                    "Type": b.proto.to_string(),
                })
            })
            .collect(),
    )
}

/// Docker's `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`,
/// with `null` for `exposed` ports ("80/tcp") that are not published.
pub fn ports(bindings: &[PortBinding], exposed: &[String]) -> Value {
    let mut map = serde_json::Map::new();
    for e in exposed {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        map.insert(key, Value::Null);
    }
    for b in bindings {
        let entry = map.entry(b.container_key()).or_insert_with(|| json!([]));
        if !entry.is_array() {
            *entry = json!([]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": b.host_ip.to_string(), "HostPort": b.host_port.to_string()}));
        }
    }
    Value::Object(map)
}

/// Docker's `HostConfig.PortBindings` for what the user asked.
pub fn port_bindings(specs: &[PortSpec]) -> Value {
    let mut map = serde_json::Map::new();
    for s in specs {
        for (key, ip, port) in s.docker_bindings() {
            let entry = map.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(json!({"HostIp": ip, "HostPort": port}));
            }
        }
    }
    Value::Object(map)
}

/// Docker's `network inspect` JSON for `net`.
pub fn network(net: &Network, endpoints: &crate::Endpoints) -> Value {
    let config: Vec<Value> = net
        .ipam
        .iter()
        .map(|c| {
            let mut v = json!({"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()});
            if let Some(r) = c.ip_range {
                v["IPRange"] = json!(r.to_string());
            }
            if !c.aux.is_empty() {
                let aux: BTreeMap<_, _> = c
                    .aux
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect();
                v["AuxiliaryAddresses"] = json!(aux);
            }
            v
        })
        .chain(
            net.ipam6
                .iter()
                .map(|c| json!({"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()})),
        )
        .collect();
    let containers: BTreeMap<_, _> = endpoints
        .iter()
        .map(|(id, e)| {
            let (v4, v6) = crate::endpoint::addressing(net, e);
            let ipv4 = match (e.ip, v4) {
                (Some(ip), Some((prefix, _))) => format!("{ip}/{prefix}"),
                _ => String::new(),
            };
            let ipv6 = match (e.ip6, v6) {
                (Some(ip), Some((prefix, _))) => format!("{ip}/{prefix}"),
                _ => String::new(),
            };
            (
                id.clone(),
                json!({"Name": e.container_name, "EndpointID": e.endpoint_id, "MacAddress": e.mac,
                       "IPv4Address": ipv4, "IPv6Address": ipv6}),
            )
        })
        .collect();
    let mut v = json!({
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": net.scope(),
        "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": net.driver_opts.ipam_driver(), "Options": {}, "Config": config},
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": net.options,
        "Labels": net.labels,
    });
    if let Some((key, extra)) = net.driver_opts.inspect() {
        v[key] = extra;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::ports::Proto;

    #[test]
    fn docker_json_shapes() {
        let b = PortBinding {
            host_ip: Ipv4Addr::UNSPECIFIED.into(),
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(b.to_string(), "0.0.0.0:8080->80/tcp");
        let range: Vec<PortBinding> = (0..3)
            .map(|i| PortBinding {
                host_port: 8082 - i,
                container_port: 82 - i,
                ..b.clone()
            })
            .chain([PortBinding {
                proto: Proto::Udp,
                host_port: 5353,
                container_port: 53,
                ..b.clone()
            }])
            .collect();
        assert_eq!(
            ps_ports(&range),
            "0.0.0.0:8080-8082->80-82/tcp, 0.0.0.0:5353->53/udp"
        );
        assert_eq!(ps_ports(std::slice::from_ref(&b)), "0.0.0.0:8080->80/tcp");
        let v = ports(
            std::slice::from_ref(&b),
            &["80/tcp".into(), "53/udp".into()],
        );
        assert_eq!(
            v,
            serde_json::json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": null})
        );
        let specs = [
            PortSpec::parse("127.0.0.1:8080:80").unwrap(),
            PortSpec::parse("90/udp").unwrap(),
        ];
        assert_eq!(
            port_bindings(&specs),
            serde_json::json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                               "90/udp": [{"HostIp": "", "HostPort": ""}]})
        );
    }
}
