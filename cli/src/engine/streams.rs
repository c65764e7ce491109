//! Container output for clients: `logs` (tail, timestamps, since/until, follow) and `attach`
//! (hijacked), both read from the container's json-file log, which the monitor writes
//! whoever is attached. Without a tty each record is one stdcopy frame (stream 1 or 2);
//! with a tty the bytes go raw, as dockerd sends them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::http::{frame, ApiError, Reply, Req, Upgraded, MULTIPLEXED_STREAM, RAW_STREAM};
use super::Ctx;
use runtime::{lifecycle, logs};

/// Which streams a client asked for, and how records are sent.
#[derive(Clone, Copy)]
struct Streams {
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Streams {
    fn bytes(&self, stderr: bool, data: &[u8]) -> Option<Bytes> {
        if (stderr && !self.stderr) || (!stderr && !self.stdout) {
            return None;
        }
        Some(match self.tty {
            true => Bytes::copy_from_slice(data),
            false => frame(if stderr { 2 } else { 1 }, data),
        })
    }

    fn content_type(&self) -> &'static str {
        if self.tty {
            RAW_STREAM
        } else {
            MULTIPLEXED_STREAM
        }
    }
}

fn time(r: &Req, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    match r.q(key).filter(|v| !v.is_empty() && *v != "0") {
        None => Ok(None),
        Some(v) => runtime::timestamp::parse(v, chrono::Utc::now())
            .map(Some)
            .map_err(ApiError::bad),
    }
}

/// The log, opened (created if the container never ran: the monitor appends to it).
fn open_log(paths: &runtime::Paths) -> Result<std::fs::File, ApiError> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(paths.log())?)
}

pub fn logs(ctx: &Ctx, r: &Req, id: &str) -> Result<Reply, ApiError> {
    let rec = lifecycle::find(&ctx.root, id)?;
    let streams = Streams {
        stdout: r.flag("stdout"),
        stderr: r.flag("stderr"),
        tty: rec.settings.tty,
    };
    if !streams.stdout && !streams.stderr {
        return Err(ApiError::bad(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match r.q("tail").unwrap_or("all") {
        "all" | "" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("invalid tail: {n}")))?,
        ),
    };
    let opts = logs::ReadOptions {
        tail,
        timestamps: r.flag("timestamps"),
        since: time(r, "since")?,
        until: time(r, "until")?,
    };
    let paths = runtime::Paths::new(&ctx.root, &rec.id);
    let follow = r.flag("follow") && rec.active();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    std::thread::spawn(move || {
        let gone = AtomicBool::new(false);
        let mut sink = |stderr: bool, data: &[u8]| {
            if let Some(b) = streams.bytes(stderr, data) {
                if tx.blocking_send(b).is_err() {
                    gone.store(true, Ordering::Relaxed);
                }
            }
        };
        let Ok(offset) = logs::read(&paths.log(), &opts, &mut sink) else {
            return;
        };
        if follow {
            if let Ok(f) = std::fs::File::open(paths.log()) {
                let _ = logs::follow(&paths, &f, offset, &opts, &mut sink, &|| {
                    !gone.load(Ordering::Relaxed)
                });
            }
        }
    });
    Ok(Reply::Stream(streams.content_type(), rx))
}

/// `attach`: hijacked; output from the moment of the attach (with `logs=1`, from the
/// start) until the container's monitor ends. A container that has not started yet (the
/// docker CLI attaches before it starts) is followed from its start by this service.
/// Input is not forwarded: the detached monitor owns the container's stdin.
pub fn attach(ctx: &Ctx, r: &Req, id: &str) -> Result<Reply, ApiError> {
    let rec = lifecycle::find(&ctx.root, id)?;
    if r.flag("stdin") {
        // Refused rather than silently dropped (a `run -i` would wait for ever).
        return Err(ApiError::not_implemented(
            "attaching to a container's stdin (the container's monitor owns it; use exec -i)",
        ));
    }
    let streams = Streams {
        stdout: r.flag("stdout"),
        stderr: r.flag("stderr"),
        tty: rec.settings.tty,
    };
    let paths = runtime::Paths::new(&ctx.root, &rec.id);
    let f = open_log(&paths)?;
    let offset = match r.flag("logs") {
        true => 0,
        false => f.metadata()?.len(),
    };
    let wait_start = (!rec.active()).then(|| (ctx.runs.clone(), ctx.runs.started_count(&rec.id)));
    let stream = r.flag("stream");
    let id = rec.id.clone();
    let session: super::http::Session = Box::new(move |io: Upgraded| {
        Box::pin(async move {
            let (tx, mut rx) = mpsc::channel::<Bytes>(64);
            let gone = Arc::new(AtomicBool::new(false));
            let g = gone.clone();
            std::thread::spawn(move || {
                let mut sink = |stderr: bool, data: &[u8]| {
                    if let Some(b) = streams.bytes(stderr, data) {
                        if tx.blocking_send(b).is_err() {
                            g.store(true, Ordering::Relaxed);
                        }
                    }
                };
                let opts = logs::ReadOptions::default();
                let Ok(offset) = logs::read_from(&f, offset, &opts, &mut sink) else {
                    return;
                };
                if !stream {
                    return;
                }
                if let Some((runs, seen)) = wait_start {
                    runs.wait_started(&id, seen);
                }
                let _ = logs::follow(&paths, &f, offset, &opts, &mut sink, &|| {
                    !g.load(Ordering::Relaxed)
                });
            });
            let (mut rd, mut wr) = tokio::io::split(io);
            // The client's input is read (and dropped) so that its close is seen.
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
            });
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
                let _ = wr.flush().await;
            }
            gone.store(true, Ordering::Relaxed);
            let _ = wr.shutdown().await;
            reader.abort();
        })
    });
    Ok(Reply::Hijack(streams.content_type(), session))
}
