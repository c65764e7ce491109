//! `/_ping`, `/version`, `/info`: the same reports as `rbox version` and `rbox info`.

use bytes::Bytes;
use http::StatusCode;

use super::http::Reply;
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
