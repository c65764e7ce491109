//! `/volumes/...`: list (filters), inspect (the `volume inspect` JSON), create, delete,
//! prune, through runtime::volume as `rbox volume` does.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::http::{ApiError, Reply, Req};
use super::Ctx;
use runtime::volume;

type R = Result<Reply, ApiError>;

/// The runtime words a missing volume "get NAME: no such volume"; Docker answers 404.
fn not_found(e: runtime::Error) -> ApiError {
    match e {
        runtime::Error::Invalid(m) if m.ends_with("no such volume") => ApiError::not_found(m),
        e => e.into(),
    }
}

pub fn route(ctx: &Ctx, r: &Req, m: &Method, rest: &[&str]) -> R {
    let get = *m == Method::GET || *m == Method::HEAD;
    let post = *m == Method::POST;
    let root = &ctx.root;
    match rest {
        [] if get => {
            let f = runtime::filter::Filters::parse(
                &r.filters()?,
                &["dangling", "driver", "label", "name"],
            )?;
            let vols: Vec<Value> = volume::list_filtered(root, &f)?
                .iter()
                .map(|v| v.to_json(root))
                .collect();
            Ok(Reply::ok(json!({"Volumes": vols, "Warnings": []})))
        }
        ["create"] if post => {
            let body = r.json()?;
            let driver = body["Driver"].as_str().unwrap_or("local");
            if !driver.is_empty() && driver != "local" {
                return Err(ApiError::not_found(format!(
                    "plugin \"{driver}\" not found"
                )));
            }
            let labels: BTreeMap<String, String> = body["Labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let name = body["Name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(String::from)
                .unwrap_or_else(runtime::store::new_id);
            let v = volume::create(root, &name, labels)?;
            runtime::events::object(root, "volume", "create", &v.name, &v.name);
            Ok(Reply::Json(StatusCode::CREATED, v.to_json(root)))
        }
        ["prune"] if post => {
            let (all, rest): (Vec<String>, Vec<String>) = r
                .filters()?
                .into_iter()
                .partition(|f| f.starts_with("all="));
            let all = all.iter().any(|a| a == "all=true" || a == "all=1");
            let f = runtime::filter::Filters::parse(&rest, runtime::filter::PRUNE_KEYS)?;
            let (names, bytes) = volume::prune(root, all, &f)?;
            Ok(Reply::ok(
                json!({"VolumesDeleted": names, "SpaceReclaimed": bytes}),
            ))
        }
        [name] if get => {
            let v = volume::get(root, name).map_err(not_found)?;
            Ok(Reply::ok(v.to_json(root)))
        }
        [name] if *m == Method::DELETE => {
            volume::get(root, name).map_err(not_found)?;
            volume::remove(root, name, r.flag("force")).map_err(|e| match e {
                runtime::Error::Invalid(m) if m.contains("in use") => ApiError::conflict(m),
                e => e.into(),
            })?;
            runtime::events::object(root, "volume", "destroy", name, name);
            Ok(Reply::Empty(StatusCode::NO_CONTENT))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {m} /volumes/{}",
            rest.join("/")
        ))),
    }
}
