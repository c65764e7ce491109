//! `/containers/...`: create (Docker's Config/HostConfig/NetworkingConfig turned into the
//! command line of `rbox create`, so both go through one parser and one set of checks),
//! start/stop/kill/restart/wait/rm through the container's monitor, list, inspect, rename,
//! pause, prune; logs and attach are in `streams`.

use std::collections::HashMap;

use clap::Parser;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::http::{ApiError, Reply, Req};
use super::Ctx;
use crate::commands::containers::create::CreateArgs;
use crate::commands::containers::ps;
use runtime::lifecycle;

type R = Result<Reply, ApiError>;

/// A network to join after create, and its `EndpointSettings`.
pub type Endpoint = (String, Value);

pub fn route(ctx: &Ctx, r: &Req, m: &Method, rest: &[&str]) -> R {
    let get = *m == Method::GET || *m == Method::HEAD;
    let post = *m == Method::POST;
    match rest {
        ["create"] if post => create(ctx, r),
        ["json"] if get => list(ctx, r),
        ["prune"] if post => prune(ctx, r),
        [id, "json"] if get => inspect(ctx, r, id),
        [id, "start"] if post => start(ctx, id),
        [id, "stop"] if post => stop(ctx, r, id, false),
        [id, "restart"] if post => stop(ctx, r, id, true),
        [id, "kill"] if post => kill(ctx, r, id),
        [id, "wait"] if post => wait(ctx, r, id),
        [id, "rename"] if post => rename(ctx, r, id),
        [id, "pause"] if post => {
            runtime::pause::pause(&ctx.root, id)?;
            Ok(Reply::Empty(StatusCode::NO_CONTENT))
        }
        [id, "unpause"] if post => {
            runtime::pause::unpause(&ctx.root, id)?;
            Ok(Reply::Empty(StatusCode::NO_CONTENT))
        }
        [id, "top"] if get => top(ctx, r, id),
        [id, "stats"] if get => super::resources::stats(ctx, r, id),
        [id, "update"] if post => super::resources::update(ctx, r, id),
        [id, "archive"] if *m == Method::HEAD => super::archive::head(ctx, r, id),
        [id, "archive"] if *m == Method::GET => super::archive::get(ctx, r, id),
        [id, "archive"] if *m == Method::PUT => super::archive::put(ctx, r, id),
        [id, "changes"] if get => {
            let rec = lifecycle::find(&ctx.root, id)?;
            let v: Vec<Value> = runtime::contents::changes(&ctx.root, &rec)?
                .iter()
                .map(|c| {
                    let kind = match c.kind {
                        'C' => 0,
                        'A' => 1,
                        _ => 2,
                    };
                    json!({"Path": c.path, "Kind": kind})
                })
                .collect();
            Ok(Reply::ok(Value::Array(v)))
        }
        [id, "logs"] if get => super::streams::logs(ctx, r, id),
        [id, "attach"] if post => super::streams::attach(ctx, r, id),
        [id, "resize"] if post => resize(ctx, r, id),
        [id, "exec"] if post => super::exec::create(ctx, r, id),
        [id] if *m == Method::DELETE => remove(ctx, r, id),
        _ => Err(ApiError::not_found(format!(
            "page not found: {m} /containers/{}",
            rest.join("/")
        ))),
    }
}

/// `rbox create`'s flags, parsed as the CLI parses them.
#[derive(Parser)]
#[command(no_binary_name = true, disable_help_flag = true)]
struct CreateLine {
    #[command(flatten)]
    args: CreateArgs,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .map(String::from)
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Docker's create body as `rbox create` arguments (before the image and command), and the
/// networks beyond the first that the container joins after create (API 1.44+).
pub fn create_args(
    name: Option<&str>,
    body: &Value,
) -> Result<(Vec<String>, Vec<Endpoint>), ApiError> {
    let c = body;
    let h = &body["HostConfig"];
    let mut a: Vec<String> = Vec::new();
    let mut flag = |f: &str, v: String| {
        a.push(format!("--{f}={v}"));
    };
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        flag("name", n.to_string());
    }
    for e in strings(&c["Env"]) {
        flag("env", e);
    }
    for (k, v) in c["Labels"].as_object().into_iter().flatten() {
        flag("label", format!("{k}={}", v.as_str().unwrap_or("")));
    }
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    if let Some(w) = text(&c["WorkingDir"]) {
        flag("workdir", w);
    }
    if let Some(u) = text(&c["User"]) {
        flag("user", u);
    }
    if let Some(n) = text(&c["Hostname"]) {
        flag("hostname", n);
    }
    if let Some(s) = text(&c["StopSignal"]) {
        flag("stop-signal", s);
    }
    if let Some(t) = c["StopTimeout"].as_i64() {
        flag("stop-timeout", t.to_string());
    }
    for p in c["ExposedPorts"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        flag("expose", p.clone());
    }
    // HostConfig
    for b in strings(&h["Binds"]) {
        flag("volume", b);
    }
    for m in h["Mounts"].as_array().into_iter().flatten() {
        let mut parts = vec![format!("type={}", m["Type"].as_str().unwrap_or("volume"))];
        if let Some(s) = text(&m["Source"]) {
            parts.push(format!("source={s}"));
        }
        if let Some(t) = text(&m["Target"]) {
            parts.push(format!("target={t}"));
        }
        if m["ReadOnly"].as_bool() == Some(true) {
            parts.push("readonly".into());
        }
        flag("mount", parts.join(","));
    }
    for (path, opts) in h["Tmpfs"].as_object().into_iter().flatten() {
        match opts.as_str().filter(|o| !o.is_empty()) {
            Some(o) => flag("tmpfs", format!("{path}:{o}")),
            None => flag("tmpfs", path.clone()),
        }
    }
    for (port, binds) in h["PortBindings"].as_object().into_iter().flatten() {
        let binds = binds.as_array().cloned().unwrap_or_default();
        if binds.is_empty() {
            flag("publish", port.clone());
        }
        for b in binds {
            let ip = b["HostIp"].as_str().unwrap_or("");
            let hp = b["HostPort"].as_str().unwrap_or("");
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            match (ip.is_empty(), hp.is_empty()) {
                (true, true) => flag("publish", port.clone()),
                (true, false) => flag("publish", format!("{hp}:{port}")),
                (false, _) => flag("publish", format!("{ip}:{hp}:{port}")),
            }
        }
    }
    if h["PublishAllPorts"].as_bool() == Some(true) {
        a.push("--publish-all".into());
    }
    let mode = h["NetworkMode"].as_str().unwrap_or("");
    let mode = if mode.is_empty() || mode == "default" {
        "bridge"
    } else {
        mode
    };
    a.push(format!("--network={mode}"));
    let restart = h["RestartPolicy"]["Name"].as_str().unwrap_or("");
    if !restart.is_empty() && restart != "no" {
        match h["RestartPolicy"]["MaximumRetryCount"].as_i64() {
            Some(n) if n > 0 && restart == "on-failure" => {
                a.push(format!("--restart={restart}:{n}"))
            }
            _ => a.push(format!("--restart={restart}")),
        }
    }
    let mut flag = |f: &str, v: String| a.push(format!("--{f}={v}"));
    if let Some(m) = h["Memory"].as_i64().filter(|m| *m > 0) {
        flag("memory", m.to_string());
    }
    if let Some(n) = h["NanoCpus"].as_i64().filter(|n| *n > 0) {
        flag("cpus", (n as f64 / 1e9).to_string());
    }
    if let Some(p) = h["PidsLimit"].as_i64().filter(|p| *p != 0) {
        flag("pids-limit", p.to_string());
    }
    for (key, f) in [
        ("CapAdd", "cap-add"),
        ("CapDrop", "cap-drop"),
        ("Dns", "dns"),
        ("DnsSearch", "dns-search"),
        ("DnsOptions", "dns-option"),
        ("ExtraHosts", "add-host"),
        ("SecurityOpt", "security-opt"),
        ("Links", "link"),
        ("GroupAdd", "group-add"),
    ] {
        for v in strings(&h[key]) {
            flag(f, v);
        }
    }
    for (key, f) in [
        ("Privileged", "privileged"),
        ("ReadonlyRootfs", "read-only"),
        ("Init", "init"),
    ] {
        if h[key].as_bool() == Some(true) {
            a.push(format!("--{f}"));
        }
    }
    if c["Tty"].as_bool() == Some(true) {
        a.push("--tty".into());
    }
    if c["OpenStdin"].as_bool() == Some(true) {
        a.push("--interactive".into());
    }
    // The endpoint of the container's own network, and the others to join after create.
    let mut more = Vec::new();
    for (net, ep) in body["NetworkingConfig"]["EndpointsConfig"]
        .as_object()
        .into_iter()
        .flatten()
    {
        // The CLI names the default network "default" (its NetworkMode).
        if net != mode && !(net == "default" && mode == "bridge") {
            more.push((net.clone(), ep.clone()));
            continue;
        }
        for al in strings(&ep["Aliases"]) {
            a.push(format!("--network-alias={al}"));
        }
        if let Some(ip) = text(&ep["IPAMConfig"]["IPv4Address"]) {
            a.push(format!("--ip={ip}"));
        }
        if let Some(ip) = text(&ep["IPAMConfig"]["IPv6Address"]) {
            a.push(format!("--ip6={ip}"));
        }
    }
    // Entrypoint: its first word is --entrypoint, the rest goes before Cmd (Docker's CLI
    // splits `--entrypoint` the other way).
    let entry = strings(&c["Entrypoint"]);
    if let Some(first) = entry.first() {
        a.push(format!("--entrypoint={first}"));
    }
    let image = c["Image"].as_str().unwrap_or("");
    if image.is_empty() {
        return Err(ApiError::bad(
            "config cannot be empty in order to create a container",
        ));
    }
    a.push("--".into());
    a.push(image.to_string());
    a.extend(entry.iter().skip(1).cloned());
    a.extend(strings(&c["Cmd"]));
    Ok((a, more))
}

fn create(ctx: &Ctx, r: &Req) -> R {
    let body = r.json()?;
    if !body.is_object() {
        return Err(ApiError::bad("invalid JSON: the body is no object"));
    }
    let (args, more) = create_args(r.q("name"), &body)?;
    tracing::debug!(?args, "create");
    let line = CreateLine::try_parse_from(&args).map_err(|e| {
        ApiError::bad(
            e.to_string()
                .lines()
                .next()
                .unwrap_or("invalid")
                .trim_start_matches("error: ")
                .to_string(),
        )
    })?;
    let auto_remove = body["HostConfig"]["AutoRemove"].as_bool() == Some(true);
    let mut opts = line.args.options(auto_remove, true)?;
    // The streams the client will attach, as its body says (the flags above are those of a
    // detached run): with stdin, inspect's StdinOnce, which ends an attached stdin with the
    // client's (the docker CLI's `run -i`, not its `run -di`).
    let s = &mut opts.settings;
    s.attach_stdin = body["AttachStdin"].as_bool() == Some(true);
    s.attach_stdout = body["AttachStdout"].as_bool() == Some(true);
    s.attach_stderr = body["AttachStderr"].as_bool() == Some(true);
    let rec = lifecycle::create(&ctx.root, &opts)?;
    for (net, ep) in more {
        let c = runtime::Connect {
            ip: ep["IPAMConfig"]["IPv4Address"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from),
            ip6: ep["IPAMConfig"]["IPv6Address"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from),
            aliases: strings(&ep["Aliases"]),
        };
        let joined = runtime::Container::find(&ctx.root, &rec.id).and_then(|k| k.connect(&net, &c));
        if let Err(e) = joined {
            let _ = lifecycle::remove(&ctx.root, &rec.id, true);
            return Err(e.into());
        }
    }
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({"Id": rec.id, "Warnings": []}),
    ))
}

/// `resize?h=&w=`: the container's pty size (the docker CLI sends it at `run -it`/`attach`
/// and on each SIGWINCH).
fn resize(ctx: &Ctx, r: &Req, id: &str) -> R {
    let dim = |k: &str| -> Result<u16, ApiError> {
        r.q(k)
            .unwrap_or("0")
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid resize {k}: {:?}", r.q(k).unwrap_or(""))))
    };
    runtime::attach::resize(&ctx.root, id, dim("h")?, dim("w")?)?;
    Ok(Reply::Empty(StatusCode::OK))
}

fn list(ctx: &Ctx, r: &Req) -> R {
    let filters = runtime::filter::Filters::parse(&r.filters()?, runtime::filter::PS_KEYS)?;
    let store = images::Store::open(&ctx.root).ok();
    let nets = net::Store::new(&ctx.root);
    let image_id = |i: &str| store.as_ref()?.resolve(i).ok().map(|i| i.id);
    let network_id = |n: &str| nets.find(n).ok().map(|n| n.id);
    let lookup = runtime::filter::Lookup {
        image_id: &image_id,
        network_id: &network_id,
    };
    let last = r.int("limit")?.filter(|n| *n > 0).map(|n| n as usize);
    let recs = runtime::filter::containers(
        lifecycle::list(&ctx.root),
        &filters,
        r.flag("all"),
        last,
        &lookup,
    )?;
    let size = r.flag("size");
    let out: Vec<Value> = recs
        .iter()
        .map(|c| {
            let sizes = size.then(|| crate::commands::containers::sizes_in(&ctx.root, c));
            ps::summary(&ctx.root, c, sizes)
        })
        .collect();
    Ok(Reply::ok(Value::Array(out)))
}

fn inspect(ctx: &Ctx, r: &Req, id: &str) -> R {
    let rec = lifecycle::find(&ctx.root, id)?;
    let mut v = runtime::inspect::to_json(&ctx.root, &rec);
    if r.flag("size") {
        let (rw, image) = crate::commands::containers::sizes_in(&ctx.root, &rec);
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(rw + image);
    }
    let execs = ctx.execs.ids_of(&rec.id);
    if !execs.is_empty() {
        v["ExecIDs"] = json!(execs);
    }
    Ok(Reply::ok(v))
}

/// `top?ps_args=`: the host's `ps` rows of the container's processes (as `rbox top`), split
/// into Docker's `Titles` and `Processes` (the last column keeps its spaces).
fn top(ctx: &Ctx, r: &Req, id: &str) -> R {
    let rec = lifecycle::find(&ctx.root, id)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            rec.id
        )));
    }
    let args: Vec<String> = match r.q("ps_args").filter(|a| !a.is_empty()) {
        Some(a) => a.split_whitespace().map(String::from).collect(),
        None => vec!["-ef".into()],
    };
    let out = std::process::Command::new("ps").args(&args).output()?;
    if !out.status.success() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ps: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    let pids = runtime::cgroup::pids(&rec.id);
    let text = crate::commands::containers::ps_rows(&String::from_utf8_lossy(&out.stdout), &pids)?;
    let mut lines = text.lines();
    let titles: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            let mut cols: Vec<String> = Vec::new();
            let mut rest = l.trim_start();
            while cols.len() + 1 < titles.len() {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                cols.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            cols.push(rest.to_string());
            cols
        })
        .collect();
    Ok(Reply::ok(json!({"Titles": titles, "Processes": rows})))
}

fn start(ctx: &Ctx, id: &str) -> R {
    match lifecycle::start(&ctx.root, id) {
        Ok(rec) => {
            ctx.runs.started(&ctx.root, &rec.id);
            Ok(Reply::Empty(StatusCode::NO_CONTENT))
        }
        Err(runtime::Error::AlreadyRunning(_)) => Ok(Reply::Empty(StatusCode::NOT_MODIFIED)),
        Err(e) => {
            // As dockerd: a container to remove on exit that could not start is removed, and
            // who waits for (or is attached to) it is told.
            if let Ok(rec) = lifecycle::find(&ctx.root, id) {
                if rec.settings.auto_remove {
                    let _ = lifecycle::remove(&ctx.root, &rec.id, true);
                }
                ctx.runs.failed(&rec.id, e.exit_code());
            }
            Err(e.into())
        }
    }
}

fn stop_options(r: &Req) -> Result<lifecycle::StopOptions, ApiError> {
    let signal = match r.q("signal").filter(|s| !s.is_empty()) {
        Some(s) => Some(runtime::signal::parse(s).map_err(ApiError::from)?),
        None => None,
    };
    Ok(lifecycle::StopOptions {
        signal,
        timeout: r.int("t")?.or(r.int("timeout")?),
    })
}

fn stop(ctx: &Ctx, r: &Req, id: &str, restart: bool) -> R {
    let opts = stop_options(r)?;
    runtime::pause::thaw(&ctx.root, id);
    if restart {
        lifecycle::restart(&ctx.root, id, opts)?;
        return Ok(Reply::Empty(StatusCode::NO_CONTENT));
    }
    let rec = lifecycle::find(&ctx.root, id)?;
    if !rec.active() {
        return Ok(Reply::Empty(StatusCode::NOT_MODIFIED));
    }
    lifecycle::stop(&ctx.root, id, opts)?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

fn kill(ctx: &Ctx, r: &Req, id: &str) -> R {
    let sig = runtime::signal::parse(r.q("signal").filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
    let rec = lifecycle::find(&ctx.root, id)?;
    if !rec.active() {
        return Err(ApiError::conflict(format!(
            "Cannot kill container: {id}: Container {} is not running",
            rec.id
        )));
    }
    runtime::pause::thaw(&ctx.root, id);
    lifecycle::kill(&ctx.root, id, sig)?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

/// `wait?condition=not-running|next-exit|removed`. The docker CLI sends it before the start
/// and waits for the answer's headers (so that the wait is in place), so they go at once and
/// the body when the run ended. A short container may have ended (and with --rm be gone)
/// before the wait comes: what this service started is tracked by `Runs`.
fn wait(ctx: &Ctx, r: &Req, id: &str) -> R {
    let condition = r.q("condition").unwrap_or("not-running").to_string();
    if !matches!(
        condition.as_str(),
        "not-running" | "next-exit" | "removed" | ""
    ) {
        return Err(ApiError::bad(format!("invalid condition: {condition:?}")));
    }
    let found = lifecycle::find(&ctx.root, id);
    let (full_id, active, code) = match &found {
        Ok(rec) => (rec.id.clone(), rec.active(), rec.state.exit_code),
        Err(_) => match ctx.runs.known(id) {
            Some(full) => (full, false, 0),
            None => {
                return Err(found
                    .err()
                    .map(ApiError::from)
                    .unwrap_or_else(|| ApiError::not_found(id)))
            }
        },
    };
    // Taken before the headers go (after which the docker CLI starts the container), so an
    // exit or removal from now on is seen however soon it comes.
    let cursor = runtime::events::now(&ctx.root);
    let auto_remove = found.as_ref().is_ok_and(|r| r.settings.auto_remove);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (runs, root) = (ctx.runs.clone(), ctx.root.clone());
    let not_running = condition == "not-running" || condition.is_empty();
    let removed = condition == "removed";
    std::thread::spawn(move || {
        let tracked = runs.tracks(&full_id);
        let code = if !active && not_running && found.is_ok() {
            code
        } else if found.is_ok() && !auto_remove && (removed || (!active && !tracked)) {
            // Whoever ends or removes it (`rbox`, another client): its events say so. (A --rm
            // one's removal is its run's end, followed below, which also knows a failed start.)
            until_event(&root, &full_id, cursor, removed, code)
        } else if active && !tracked {
            lifecycle::wait(&root, &full_id).unwrap_or(code)
        } else {
            // What this service started (a --rm one's end is its removal): also a run that
            // ended before the wait came.
            runs.wait_exit(&full_id)
        };
        let body = json!({"StatusCode": code, "Error": null}).to_string() + "\n";
        let _ = tx.blocking_send(bytes::Bytes::from(body));
    });
    Ok(Reply::Stream("application/json", rx))
}

/// The exit code of the container's next `die` event after `cursor` (with `removed`: of the
/// last one before its `destroy`, as dockerd answers a wait for removal).
fn until_event(
    root: &std::path::Path,
    id: &str,
    cursor: runtime::events::Cursor,
    removed: bool,
    mut code: i32,
) -> i32 {
    let _ = crate::commands::events::follow_from(root, cursor, None, &mut |e| {
        if e.kind != "container" || e.actor.id != id {
            return Ok(true);
        }
        match e.action.as_str() {
            "die" => {
                code = e
                    .actor
                    .attributes
                    .get("exitCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(code);
                Ok(removed)
            }
            "destroy" => Ok(false),
            _ => Ok(true),
        }
    });
    code
}

fn rename(ctx: &Ctx, r: &Req, id: &str) -> R {
    let name = r
        .q("name")
        .ok_or_else(|| ApiError::bad("name is required"))?;
    lifecycle::rename(&ctx.root, id, name)?;
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}

fn remove(ctx: &Ctx, r: &Req, id: &str) -> R {
    let force = r.flag("force");
    if force {
        runtime::pause::thaw(&ctx.root, id);
    }
    let rec = match r.flag("v") {
        true => lifecycle::remove_with_volumes(&ctx.root, id, force),
        false => lifecycle::remove(&ctx.root, id, force),
    };
    match rec {
        Err(runtime::Error::RunningRemove(n)) => Err(ApiError::conflict(format!(
            "cannot remove container \"/{n}\": container is running: stop the container before removing or force remove"
        ))),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(Reply::Empty(StatusCode::NO_CONTENT)),
    }
}

fn prune(ctx: &Ctx, r: &Req) -> R {
    let f = runtime::filter::Filters::parse(&r.filters()?, runtime::filter::PRUNE_KEYS)?;
    let (ids, bytes) = crate::commands::containers::prune_containers_in(&ctx.root, &f)?;
    Ok(Reply::ok(
        json!({"ContainersDeleted": ids, "SpaceReclaimed": bytes}),
    ))
}

/// What this service started: per container, how many runs started and ended, and the last
/// exit code (a watcher thread per run blocks on the monitor's lock).
#[derive(Default)]
pub struct Runs {
    state: std::sync::Mutex<HashMap<String, RunCount>>,
    changed: std::sync::Condvar,
}

#[derive(Default, Clone, Copy)]
struct RunCount {
    started: u64,
    ended: u64,
    code: i32,
}

impl Runs {
    /// Records a start of `id` and watches for its end.
    pub fn started(self: &std::sync::Arc<Self>, root: &std::path::Path, id: &str) {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.entry(id.to_string()).or_default().started += 1;
        }
        self.changed.notify_all();
        let (me, paths, id) = (self.clone(), runtime::Paths::new(root, id), id.to_string());
        std::thread::spawn(move || {
            let code = runtime::store::wait_monitor(&paths)
                .or_else(|| runtime::store::load(&paths).ok().map(|r| r.state.exit_code))
                .unwrap_or(0);
            let mut s = me.state.lock().unwrap_or_else(|e| e.into_inner());
            let c = s.entry(id).or_default();
            c.ended += 1;
            c.code = code;
            drop(s);
            me.changed.notify_all();
        });
    }

    /// A start that failed: waiters get `code`, attached clients their end.
    pub fn failed(&self, id: &str, code: i32) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let c = s.entry(id.to_string()).or_default();
        c.started += 1;
        c.ended += 1;
        c.code = code;
        drop(s);
        self.changed.notify_all();
    }

    pub fn started_count(&self, id: &str) -> u64 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.get(id).map_or(0, |c| c.started)
    }

    /// Blocks until this service started `id` more than `seen` times.
    pub fn wait_started(&self, id: &str, seen: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.get(id).map_or(0, |c| c.started) <= seen {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn known(&self, key: &str) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.keys().find(|k| k.starts_with(key)).cloned()
    }

    fn tracks(&self, id: &str) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.contains_key(id)
    }

    /// The exit code of the current run, or of the first one when none started yet. A run
    /// that started and ended before the wait came (a short `run --rm`) is the one waited for.
    fn wait_exit(&self, id: &str) -> i32 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let want = s.get(id).map_or(1, |c| c.started.max(1));
        loop {
            let c = s.get(id).copied().unwrap_or_default();
            if c.ended >= want {
                return c.code;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_as_flags() {
        let body = json!({
            "Image": "nginx",
            "Cmd": ["-g", "daemon off;"],
            "Entrypoint": ["nginx", "-c", "/etc/n.conf"],
            "Env": ["A=1"],
            "Labels": {"x": "y"},
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {
                "Binds": ["/tmp:/data:ro"],
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "NetworkMode": "app",
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "AutoRemove": true,
            },
            "NetworkingConfig": {"EndpointsConfig": {"app": {"Aliases": ["web"]}, "other": {}}},
        });
        let (a, more) = create_args(Some("w"), &body).unwrap();
        for want in [
            "--name=w",
            "--env=A=1",
            "--label=x=y",
            "--expose=80/tcp",
            "--volume=/tmp:/data:ro",
            "--publish=8080:80/tcp",
            "--publish=127.0.0.1::53/udp",
            "--network=app",
            "--restart=on-failure:3",
            "--network-alias=web",
            "--entrypoint=nginx",
        ] {
            assert!(a.contains(&want.to_string()), "{want} in {a:?}");
        }
        let tail: Vec<&str> = a
            .iter()
            .skip_while(|x| *x != "--")
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            ["--", "nginx", "-c", "/etc/n.conf", "-g", "daemon off;"]
        );
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].0, "other");
        let line = CreateLine::try_parse_from(&a).unwrap();
        assert_eq!(line.args.image, "nginx");
        assert!(create_args(None, &json!({})).is_err());
    }
}
