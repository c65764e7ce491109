//! `/networks/...`: list (filters), inspect (the `network inspect` JSON), create, connect,
//! disconnect, delete, prune, through the same functions as `rbox network`.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::http::{ApiError, Reply, Req};
use super::Ctx;

type R = Result<Reply, ApiError>;

pub fn route(ctx: &Ctx, r: &Req, m: &Method, rest: &[&str]) -> R {
    let get = *m == Method::GET || *m == Method::HEAD;
    let post = *m == Method::POST;
    let root = &ctx.root;
    match rest {
        [] if get => list(ctx, r),
        ["create"] if post => create(ctx, r),
        ["prune"] if post => {
            let f = runtime::filter::Filters::parse(&r.filters()?, runtime::filter::PRUNE_KEYS)?;
            let gone = crate::commands::networks::prune_networks(root, &f)?;
            Ok(Reply::ok(json!({ "NetworksDeleted": gone })))
        }
        [id] if get => {
            let store = net::Store::new(root);
            let n = store.find(id)?;
            Ok(Reply::ok(net::docker::network(
                &n,
                &store.endpoints(&n.id)?,
            )))
        }
        [id, "connect"] if post => {
            let body = r.json()?;
            let ctr = body["Container"].as_str().unwrap_or("");
            let ep = &body["EndpointConfig"];
            fn text(v: &Value) -> Option<&str> {
                v.as_str().filter(|s| !s.is_empty())
            }
            let aliases: Vec<String> = ep["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            let store = net::Store::new(root);
            let netw = store.find(id)?;
            // docker-compose connects a created container to the network it was created on
            // (with the aliases it was created with): Docker's inspect lists that network for a
            // container that never ran and compose disconnects it first; rbox's lists the
            // networks of a run, so the request is taken as already done.
            let rec = runtime::lifecycle::find(root, ctr)?;
            if !rec.active()
                && store
                    .find(&rec.settings.network_mode)
                    .is_ok_and(|p| p.id == netw.id)
            {
                return Ok(Reply::Empty(StatusCode::OK));
            }
            crate::commands::networks::connect(
                root,
                id,
                ctr,
                text(&ep["IPAMConfig"]["IPv4Address"]),
                text(&ep["IPAMConfig"]["IPv6Address"]),
                &aliases,
            )?;
            Ok(Reply::Empty(StatusCode::OK))
        }
        [id, "disconnect"] if post => {
            let body = r.json()?;
            let ctr = body["Container"].as_str().unwrap_or("");
            let force = body["Force"].as_bool() == Some(true);
            crate::commands::networks::disconnect(root, id, ctr, force)?;
            Ok(Reply::Empty(StatusCode::OK))
        }
        [id] if *m == Method::DELETE => {
            let n = net::manage::remove(root, id)?;
            runtime::events::object(root, "network", "destroy", &n.id, &n.name);
            Ok(Reply::Empty(StatusCode::NO_CONTENT))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {m} /networks/{}",
            rest.join("/")
        ))),
    }
}

fn list(ctx: &Ctx, r: &Req) -> R {
    let filters = runtime::filter::Filters::parse(
        &r.filters()?,
        &["name", "driver", "id", "label", "type", "scope", "dangling"],
    )?;
    let mut out = Vec::new();
    let store = net::Store::new(&ctx.root);
    for n in store.list()? {
        if crate::commands::networks::matches(&store, &n, &filters)? {
            out.push(net::docker::network(&n, &store.endpoints(&n.id)?));
        }
    }
    Ok(Reply::ok(Value::Array(out)))
}

/// Docker's `NetworkCreateRequest` as `network create`'s options.
pub fn create_options(body: &Value) -> Result<net::CreateOptions, ApiError> {
    let name = body["Name"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::bad("network name is required"));
    }
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    let kv = |v: &Value| -> Vec<String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect()
    };
    let mut o = net::CreateOptions {
        name,
        driver: text(&body["Driver"]),
        internal: body["Internal"].as_bool() == Some(true),
        ipv6: body["EnableIPv6"].as_bool() == Some(true),
        attachable: body["Attachable"].as_bool() == Some(true),
        ipam_driver: text(&body["IPAM"]["Driver"]).filter(|d| d != "default"),
        labels: kv(&body["Labels"]),
        options: kv(&body["Options"]),
        ..Default::default()
    };
    for c in body["IPAM"]["Config"].as_array().into_iter().flatten() {
        let subnet = text(&c["Subnet"]);
        let v6 = subnet.as_deref().is_some_and(|s| s.contains(':'));
        if v6 {
            o.subnet6 = subnet;
            o.gateway6 = text(&c["Gateway"]);
        } else {
            o.subnet = subnet;
            o.gateway = text(&c["Gateway"]);
            o.ip_range = text(&c["IPRange"]);
        }
        o.aux_addresses.extend(kv(&c["AuxiliaryAddresses"]));
    }
    Ok(o)
}

fn create(ctx: &Ctx, r: &Req) -> R {
    let body = r.json()?;
    let opts = create_options(&body)?;
    let (n, warnings) = crate::commands::networks::create(&ctx.root, &opts)?;
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({"Id": n.id, "Warning": warnings.join("\n")}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_as_options() {
        let o = create_options(&json!({
            "Name": "app",
            "Driver": "bridge",
            "Labels": {"com.docker.compose.project": "x"},
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.188.5.0/24", "Gateway": "10.188.5.1"}, {"Subnet": "fd00::/64"}]},
        }))
        .unwrap();
        assert_eq!(o.name, "app");
        assert_eq!(o.subnet.as_deref(), Some("10.188.5.0/24"));
        assert_eq!(o.gateway.as_deref(), Some("10.188.5.1"));
        assert_eq!(o.subnet6.as_deref(), Some("fd00::/64"));
        assert_eq!(o.ipam_driver, None);
        assert_eq!(o.labels, vec!["com.docker.compose.project=x"]);
        assert!(create_options(&json!({})).is_err());
    }
}
