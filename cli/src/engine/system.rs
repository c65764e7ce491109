//! `/_ping`, `/version`, `/info`: the same reports as `rbox version` and `rbox info`;
//! `/events`: `rbox events`' stream, as Docker's JSON messages.

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::mpsc;

use super::http::{ApiError, Reply, Req};
use super::Ctx;

pub fn ping() -> Reply {
    // The headers the docker CLI negotiates with (Api-Version, Ostype) are on every answer.
    Reply::Raw(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"OK"),
    )
}

pub fn version() -> Reply {
    let mut v = crate::commands::system::version_json()["Server"].take();
    v["ApiVersion"] = v["APIVersion"].take();
    if let Some(o) = v.as_object_mut() {
        o.remove("APIVersion");
    }
    v["ApiVersion"] = format!("1.{}", super::MAX_API).into();
    v["MinAPIVersion"] = format!("1.{}", super::MIN_API).into();
    let api = v["ApiVersion"].clone();
    if let Some(c) = v["Components"].get_mut(0) {
        c["Details"]["ApiVersion"] = api;
    }
    Reply::ok(v)
}

pub fn info(ctx: &Ctx) -> Reply {
    let mut v = crate::commands::system::info_json(&ctx.root, ctx.debug);
    if let Some(o) = v.as_object_mut() {
        // The client's half; the CLI adds its own.
        o.remove("ClientInfo");
    }
    Reply::ok(v)
}

pub fn events(ctx: &Ctx, r: &Req) -> Result<Reply, ApiError> {
    let now = chrono::Utc::now();
    let time = |key: &str| -> Result<Option<i64>, ApiError> {
        match r.q(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => runtime::timestamp::parse(v, now)
                .map(|t| t.timestamp_nanos_opt())
                .map_err(ApiError::bad),
        }
    };
    let (since, until) = (time("since")?, time("until")?);
    let filters = runtime::filter::Filters::parse(&r.filters()?, runtime::events::FILTER_KEYS)?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let root = ctx.root.clone();
    std::thread::spawn(move || {
        let _ = crate::commands::events::follow(&root, since, until, &mut |e| {
            if !runtime::events::matches(e, &filters) {
                return Ok(true);
            }
            let line = crate::commands::events::message(e).to_string() + "\n";
            Ok(tx.blocking_send(Bytes::from(line)).is_ok())
        });
    });
    Ok(Reply::Stream("application/json", rx))
}
