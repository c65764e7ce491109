//! `/images/...`: list, inspect (the `rbox image inspect` JSON), tag, delete, create (pull),
//! load (a `docker save` tar in the body), get (save), history.
//!
//! Image names carry slashes the docker CLI does not escape (`/images/team/app:1/json`), so
//! the name is every segment but the action.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::http::{ApiError, Reply, Req};
use super::Ctx;
use images::{Removed, Store};

type R = Result<Reply, ApiError>;

pub fn route(ctx: &Ctx, r: &Req, m: &Method, rest: &[&str]) -> R {
    let get = *m == Method::GET || *m == Method::HEAD;
    let post = *m == Method::POST;
    let store = Store::open(&ctx.root)?;
    match rest {
        ["json"] if get => list(&store, r),
        ["create"] if post => create(ctx, &store, r),
        ["load"] if post => load(&store, r),
        ["prune"] if post => {
            // dangling=false: every unused image (`image prune -a`).
            let (dangling, rest): (Vec<String>, Vec<String>) = r
                .filters()?
                .into_iter()
                .partition(|f| f.starts_with("dangling="));
            let all = dangling
                .iter()
                .any(|d| d == "dangling=false" || d == "dangling=0");
            let f = runtime::filter::Filters::parse(&rest, runtime::filter::PRUNE_KEYS)?;
            let (lines, bytes) = crate::commands::images::prune_images_in(&ctx.root, all, &f)?;
            let deleted: Vec<Value> = lines
                .iter()
                .map(|l| match l.split_once(": ") {
                    Some(("untagged", t)) | Some(("Untagged", t)) => json!({"Untagged": t}),
                    Some((_, id)) => json!({"Deleted": id}),
                    None => json!({"Deleted": l}),
                })
                .collect();
            Ok(Reply::ok(
                json!({"ImagesDeleted": deleted, "SpaceReclaimed": bytes}),
            ))
        }
        ["get"] if get => save(&store, r.query.get("names").cloned().unwrap_or_default()),
        [name @ .., "json"] if get && !name.is_empty() => {
            let img = store.resolve(&name.join("/"))?;
            Ok(Reply::ok(crate::commands::images::inspect_json(
                &store, &img,
            )))
        }
        [name @ .., "history"] if get && !name.is_empty() => history(&store, &name.join("/")),
        [name @ .., "tag"] if post && !name.is_empty() => tag(ctx, &store, r, &name.join("/")),
        [name @ .., "get"] if get && !name.is_empty() => save(&store, vec![name.join("/")]),
        name if *m == Method::DELETE && !name.is_empty() => {
            remove(ctx, &store, &name.join("/"), r.flag("force"))
        }
        _ => Err(ApiError::not_found(format!(
            "page not found: {m} /images/{}",
            rest.join("/")
        ))),
    }
}

/// Docker's `image.HistoryResponseItem`s, newest first, from the entries `rbox history`
/// prints.
fn history(store: &Store, name: &str) -> R {
    let img = store.resolve(name)?;
    let all = store.list()?;
    let entries = crate::commands::containers::commit::history_entries(store, &img)?;
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let tags = all
                .iter()
                .find(|i| i.id == e.id)
                .map(|i| i.repo_tags.clone())
                .filter(|t| !t.is_empty());
            let created = e
                .history
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |c| c.timestamp());
            json!({
                "Id": e.id,
                "Created": created,
                "CreatedBy": e.history.created_by,
                "Tags": tags,
                "Size": e.history.layer.as_ref().map_or(0, |l| l.1),
                "Comment": e.history.comment,
            })
        })
        .collect();
    Ok(Reply::ok(Value::Array(items)))
}

/// Docker's image list entry (`image.Summary`).
fn list(store: &Store, r: &Req) -> R {
    let filters = runtime::filter::Filters::parse(
        &r.filters()?,
        &["dangling", "label", "reference", "before", "since"],
    )?;
    let refs = filters.values("reference");
    let mut out = Vec::new();
    for img in store.list()? {
        let dangling = img.repo_tags.is_empty();
        if !filters.bool_matches("dangling", dangling)?
            || !filters.labels_match("label", &img.config.labels)
            || (!refs.is_empty()
                && !img.repo_tags.iter().any(|t| {
                    refs.iter().any(|p| {
                        runtime::filter::glob(p, t)
                            || runtime::filter::glob(
                                p,
                                t.rsplit_once(':').map_or(t.as_str(), |x| x.0),
                            )
                    })
                }))
        {
            continue;
        }
        let created = img
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map_or(0, |c| c.timestamp());
        out.push(json!({
            "Id": img.id,
            "ParentId": "",
            "RepoTags": img.repo_tags,
            "RepoDigests": img.repo_digests,
            "Created": created,
            "Size": img.size,
            "SharedSize": -1,
            "VirtualSize": img.size,
            "Labels": img.config.labels,
            "Containers": -1,
        }));
    }
    Ok(Reply::ok(Value::Array(out)))
}

fn tag(ctx: &Ctx, store: &Store, r: &Req, source: &str) -> R {
    let repo = r.q("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::bad(
            "repository name must have at least one component",
        ));
    }
    let target = match r.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    store.tag(source, &target)?;
    let id = store.resolve(&target).map(|i| i.id).unwrap_or_default();
    runtime::events::object(&ctx.root, "image", "tag", &id, &target);
    Ok(Reply::Empty(StatusCode::CREATED))
}

fn remove(ctx: &Ctx, store: &Store, name: &str, force: bool) -> R {
    let done = crate::commands::images::remove_image(&ctx.root, store, name, force)?;
    let v: Vec<Value> = done
        .into_iter()
        .map(|d| match d {
            Removed::Untagged(t) => json!({"Untagged": t}),
            Removed::Deleted(id) => json!({"Deleted": id}),
        })
        .collect();
    Ok(Reply::ok(Value::Array(v)))
}

/// `images/create?fromImage=X&tag=T`: a pull, its progress as Docker's JSON messages (one
/// status line per step; an error as `{"errorDetail": …}` in the stream, as dockerd does).
fn create(ctx: &Ctx, store: &Store, r: &Req) -> R {
    let from = r.q("fromImage").unwrap_or("");
    if from.is_empty() {
        return Err(ApiError::not_implemented("import (fromSrc)"));
    }
    let reference = match r.q("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let parsed = images::Reference::parse(&reference)?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let root = ctx.root.clone();
    let _ = store;
    std::thread::spawn(move || {
        let send = |v: Value| {
            let _ = tx.blocking_send(Bytes::from(v.to_string() + "\r\n"));
        };
        let Ok(store) = Store::open(&root) else {
            return;
        };
        if let Ok(img) = store.resolve(&reference) {
            send(
                json!({"status": format!("Status: Image is up to date for {reference}"), "id": img.id}),
            );
            return;
        }
        send(
            json!({"status": format!("Pulling from {}", parsed.path), "id": parsed.tag_or_latest()}),
        );
        let opts = images::PullOptions {
            platform: None,
            insecure_registries: Vec::new(),
        };
        match store.pull(&parsed, &opts, &mut |_| {}) {
            Ok(p) => {
                send(json!({"status": format!("Digest: {}", p.digest)}));
                send(json!({"status": format!("Status: Downloaded newer image for {reference}")}));
                runtime::events::object(&root, "image", "pull", &p.image.id, &reference);
            }
            Err(e) => {
                send(json!({"errorDetail": {"message": e.to_string()}, "error": e.to_string()}))
            }
        }
    });
    Ok(Reply::Stream("application/json", rx))
}

fn load(store: &Store, r: &Req) -> R {
    let loaded = store.load(std::io::Cursor::new(r.body.clone()))?;
    let mut text = String::new();
    for l in loaded {
        if l.tags.is_empty() {
            text += &json!({"stream": format!("Loaded image ID: {}\n", l.image.id)}).to_string();
            text += "\n";
        }
        for t in l.tags {
            text += &json!({"stream": format!("Loaded image: {t}\n")}).to_string();
            text += "\n";
        }
    }
    Ok(Reply::Raw(
        StatusCode::OK,
        "application/json",
        Bytes::from(text),
    ))
}

fn save(store: &Store, names: Vec<String>) -> R {
    let mut out = Vec::new();
    store.save(&names, &mut out)?;
    Ok(Reply::Raw(
        StatusCode::OK,
        "application/x-tar",
        Bytes::from(out),
    ))
}
