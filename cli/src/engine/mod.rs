//! `rbox system service`: Docker's Engine API on a unix socket, on demand, so that the docker
//! CLI, docker-compose and the Docker SDKs drive rbox. It is a translator, not a daemon that
//! owns anything: every request calls the same runtime/net/images functions the CLI calls,
//! containers are started through their own monitor process as `rbox start` does (so they
//! keep running when the service exits, and `rbox ps` sees the same containers), and the
//! process that runs libcontainer is never this multi-threaded one (exec goes through a
//! re-executed `rbox exec`, as a start goes through the re-executed monitor).
//!
//! One file per resource: `system` (`/_ping`, `/version`, `/info`), `containers`, `streams`
//! (logs and attach), `exec`, `archive` (cp), `resources` (stats, update), `images`,
//! `networks`, `volumes`; `http` holds the request,
//! reply and error types. The server: hyper's HTTP/1.1 with upgrades on a current-thread
//! tokio runtime; handlers are blocking code on tokio's blocking pool.

mod archive;
mod containers;
mod exec;
mod http;
mod images;
mod networks;
mod resources;
mod streams;
mod system;
mod volumes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::http::{header, Method, Response, StatusCode};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::net::UnixListener;

use http::{ApiError, Reply, Req};

/// The oldest and newest API versions served (`/v1.24/` .. `/v1.50/`).
pub const MIN_API: u32 = 24;
pub const MAX_API: u32 = 50;

/// What every handler shares: the root, and the runs and execs this service started.
pub struct Ctx {
    pub root: PathBuf,
    pub debug: bool,
    pub runs: Arc<containers::Runs>,
    pub execs: exec::Registry,
}

/// `--host unix://PATH`: the socket path.
pub fn socket_path(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("invalid --host {host:?}: only unix://PATH is supported"),
    }
}

/// Serves until `idle` passes with no connection (`None`: for ever).
pub fn serve(root: &Path, debug: bool, host: &str, idle: Option<Duration>) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the service's runtime")?;
    let ctx = Arc::new(Ctx {
        root: root.to_path_buf(),
        debug,
        runs: Arc::default(),
        execs: exec::Registry::default(),
    });
    let listener = rt.block_on(async { listen(host) })?;
    rt.block_on(accept_loop(listener, ctx, idle));
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(0)
}

/// The systemd socket (LISTEN_FDS) when activated so, else a new socket at the path (0660,
/// replacing a stale one nobody listens on).
fn listen(host: &str) -> Result<UnixListener> {
    let activated = std::env::var("LISTEN_PID").ok() == Some(std::process::id().to_string())
        && std::env::var("LISTEN_FDS").ok().as_deref() == Some("1");
    if activated {
        // SAFETY: systemd passed us fd 3, a listening socket we own from now on.
        let std = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
        std.set_nonblocking(true)?;
        return Ok(UnixListener::from_std(std)?);
    }
    let path = socket_path(host)?;
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        bail!("{}: another service is listening there", path.display());
    }
    let _ = std::fs::remove_file(&path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let l = UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

async fn accept_loop(listener: UnixListener, ctx: Arc<Ctx>, idle: Option<Duration>) {
    let active = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(tokio::sync::Notify::new());
    loop {
        let idle_now = active.load(Ordering::SeqCst) == 0;
        let timer = async {
            match idle {
                Some(d) if idle_now => tokio::time::sleep(d).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                active.fetch_add(1, Ordering::SeqCst);
                let (ctx, active, ended) = (ctx.clone(), active.clone(), ended.clone());
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper::service::service_fn(move |r| handle(ctx.clone(), r));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .with_upgrades();
                    if let Err(e) = conn.await {
                        tracing::debug!("connection: {e}");
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                    ended.notify_one();
                });
            }
            _ = ended.notified() => {}
            _ = timer => return,
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// The route's version prefix: `/v1.NN/rest` -> (NN, "/rest").
fn split_version(path: &str) -> std::result::Result<(u32, &str), ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((MAX_API, path));
    };
    let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(minor) = ver.strip_prefix("1.").and_then(|m| m.parse::<u32>().ok()) else {
        return Ok((MAX_API, path));
    };
    if minor < MIN_API {
        return Err(ApiError::bad(format!(
            "client version 1.{minor} is too old. Minimum supported API version is 1.{MIN_API}, please upgrade your client to a newer version"
        )));
    }
    if minor > MAX_API {
        return Err(ApiError::bad(format!(
            "client version 1.{minor} is too new. Maximum supported API version is 1.{MAX_API}"
        )));
    }
    Ok((minor, tail))
}

/// How much of an upload the server reads and drops after answering without it (Go's
/// net/http server: 256 KiB), so that the client gets to read the answer.
const DRAIN_LIMIT: usize = 256 << 10;

async fn handle(
    ctx: Arc<Ctx>,
    mut req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let upgrade = hyper::upgrade::on(&mut req);
    let (_, path) = match split_version(uri.path()) {
        Ok(v) => v,
        Err(e) => return Ok(error_response(e)),
    };
    // An archive upload is handed over as it arrives; other bodies are small JSON.
    let streamed = method == Method::PUT && path.trim_end_matches('/').ends_with("/archive");
    let (body, stream) = if streamed {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut incoming = req.into_body();
        tokio::spawn(async move {
            let mut discarded = 0;
            while let Some(f) = incoming.frame().await {
                let chunk = match f {
                    Ok(f) => match f.into_data() {
                        Ok(d) => Ok(d),
                        Err(_) => continue,
                    },
                    Err(e) => Err(e.to_string()),
                };
                let failed = chunk.is_err();
                if failed {
                    let _ = tx.send(chunk).await;
                    return;
                }
                if tx.is_closed() {
                    // Answered without the upload (an error before it: no such container, a
                    // missing path). Read on, as Go's server does up to 256 KiB: an upload
                    // dropped unread closes the connection under a client still writing,
                    // which then reports a broken pipe instead of the answer (docker cp of
                    // 200 KB to a missing container: 6 in 20).
                    discarded += chunk.map_or(0, |b| b.len());
                    if discarded > DRAIN_LIMIT {
                        return;
                    }
                } else if let Err(e) = tx.send(chunk).await {
                    discarded += e.0.map_or(0, |b| b.len());
                }
            }
        });
        (Bytes::new(), Some(rx))
    } else {
        match req.into_body().collect().await {
            Ok(b) => (b.to_bytes(), None),
            Err(e) => {
                return Ok(error_response(ApiError::bad(format!(
                    "reading the body: {e}"
                ))))
            }
        }
    };
    let mut query: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        query
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let r = Req {
        method: method.clone(),
        path: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query,
        body,
        stream: std::sync::Mutex::new(stream),
    };
    tracing::debug!("{method} {uri}");
    let is_head = method == Method::HEAD;
    let reply = tokio::task::spawn_blocking(move || route(&ctx, &r))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        });
    let mut resp = match reply {
        Ok(r) => reply_response(r, upgrade),
        Err(e) => error_response(e),
    };
    if is_head {
        *resp.body_mut() = full(Bytes::new());
    }
    Ok(resp)
}

fn percent_decode(s: &str) -> String {
    let bytes: Vec<u8> = form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Headers every answer carries, as dockerd's.
fn base(status: StatusCode) -> ::http::response::Builder {
    Response::builder()
        .status(status)
        .header("Api-Version", format!("1.{MAX_API}"))
        .header("Docker-Experimental", "false")
        .header("Ostype", "linux")
        .header(
            header::SERVER,
            format!("rbox/{} (linux)", env!("CARGO_PKG_VERSION")),
        )
}

fn error_response(e: ApiError) -> Response<Body> {
    tracing::debug!("error {}: {}", e.status, e.message);
    let body = serde_json::json!({ "message": e.message }).to_string();
    base(e.status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body + "\n"))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn reply_response(r: Reply, upgrade: hyper::upgrade::OnUpgrade) -> Response<Body> {
    let built = match r {
        Reply::Headers(headers, inner) => {
            let mut resp = reply_response(*inner, upgrade);
            for (k, v) in headers {
                if let Ok(v) = ::http::HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(k, v);
                }
            }
            return resp;
        }
        Reply::Json(status, v) => base(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(v.to_string() + "\n")),
        Reply::Empty(status) => base(status).body(full(Bytes::new())),
        Reply::Raw(status, ctype, b) => base(status)
            .header(header::CONTENT_TYPE, ctype)
            .body(full(b)),
        Reply::Stream(ctype, rx) => {
            let s = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            base(StatusCode::OK)
                .header(header::CONTENT_TYPE, ctype)
                .body(BodyExt::boxed(StreamBody::new(s)))
        }
        Reply::Hijack(ctype, session) => {
            tokio::spawn(async move {
                match upgrade.await {
                    Ok(up) => session(hyper_util::rt::TokioIo::new(up)).await,
                    Err(e) => tracing::debug!("upgrade: {e}"),
                }
            });
            base(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONTENT_TYPE, ctype)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "tcp")
                .body(full(Bytes::new()))
        }
    };
    built.unwrap_or_else(|e| {
        error_response(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })
}

/// Method and path to handler.
fn route(ctx: &Ctx, r: &Req) -> std::result::Result<Reply, ApiError> {
    let p: Vec<&str> = r.path.iter().map(String::as_str).collect();
    let m = &r.method;
    let get = *m == Method::GET || *m == Method::HEAD;
    let post = *m == Method::POST;
    let delete = *m == Method::DELETE;
    match p.as_slice() {
        ["_ping"] if get => Ok(system::ping()),
        ["version"] if get => Ok(system::version()),
        ["info"] if get => Ok(system::info(ctx)),
        ["events"] if get => system::events(ctx, r),
        ["containers", rest @ ..] => containers::route(ctx, r, m, rest),
        ["exec", id, "start"] if post => exec::start(ctx, r, id),
        ["exec", id, "resize"] if post => exec::resize(ctx, r, id),
        ["exec", id, "json"] if get => exec::inspect(ctx, id),
        ["images", rest @ ..] => images::route(ctx, r, m, rest),
        ["networks", rest @ ..] => networks::route(ctx, r, m, rest),
        ["volumes", rest @ ..] => volumes::route(ctx, r, m, rest),
        ["swarm", ..] | ["nodes", ..] | ["services", ..] | ["tasks", ..] | ["secrets", ..]
        | ["configs", ..] => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        )),
        ["build", ..] | ["plugins", ..] | ["session"] | ["grpc"] | ["distribution", ..] => {
            Err(ApiError::not_implemented(&format!("/{}", p.join("/"))))
        }
        _ if !(get || post || delete || *m == Method::PUT) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} not allowed"),
        )),
        _ => Err(ApiError::not_found(format!(
            "page not found: {} /{}",
            m,
            p.join("/")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert_eq!(split_version("/v1.24/info").unwrap(), (24, "/info"));
        assert_eq!(
            split_version("/v1.50/containers/json").unwrap(),
            (50, "/containers/json")
        );
        assert_eq!(split_version("/_ping").unwrap(), (MAX_API, "/_ping"));
        assert_eq!(split_version("/volumes").unwrap(), (MAX_API, "/volumes"));
        assert!(split_version("/v1.23/info").is_err());
        assert!(split_version("/v1.51/info").is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(
            socket_path("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:2375").is_err());
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a+b"), "a+b");
    }
}
