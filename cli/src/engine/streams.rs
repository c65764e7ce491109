//! Container output for clients: `logs` (tail, timestamps, since/until, follow) and `attach`
//! (hijacked, with the client's input passed on to the container's), both read from the
//! container's json-file log, which the monitor writes whoever is attached. Without a tty each record is one stdcopy frame (stream 1 or 2);
//! with a tty the bytes go raw, as dockerd sends them.

use std::cell::RefCell;
use std::io::{self, Write};

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
    fn wants(&self, stderr: bool) -> bool {
        if stderr {
            self.stderr
        } else {
            self.stdout
        }
    }

    fn bytes(&self, stderr: bool, data: &[u8]) -> Bytes {
        match self.tty {
            true => Bytes::copy_from_slice(data),
            false => frame(if stderr { 2 } else { 1 }, data),
        }
    }

    fn content_type(&self) -> &'static str {
        if self.tty {
            RAW_STREAM
        } else {
            MULTIPLEXED_STREAM
        }
    }
}

/// The log reader's two outputs turned into the client's stream. The reader writes a record's
/// timestamp and its text separately; they are kept until the record's newline (or a flush, or
/// the other stream) so that a record is one frame, as dockerd sends it. A client that went
/// away is a write error, which ends the reader.
struct Client {
    streams: Streams,
    tx: mpsc::Sender<Bytes>,
    pending: Option<(bool, Vec<u8>)>,
}

/// Records above this are sent in pieces rather than held whole.
const FRAME_MAX: usize = 64 * 1024;

impl Client {
    fn new(streams: Streams, tx: mpsc::Sender<Bytes>) -> RefCell<Client> {
        RefCell::new(Client {
            streams,
            tx,
            pending: None,
        })
    }

    fn send(&mut self) -> io::Result<()> {
        let Some((stderr, data)) = self.pending.take() else {
            return Ok(());
        };
        self.tx
            .blocking_send(self.streams.bytes(stderr, &data))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    fn write(&mut self, stderr: bool, buf: &[u8]) -> io::Result<()> {
        if !self.streams.wants(stderr) {
            return Ok(());
        }
        if self.pending.as_ref().is_some_and(|(s, _)| *s != stderr) {
            self.send()?;
        }
        let (_, data) = self.pending.get_or_insert_with(|| (stderr, Vec::new()));
        data.extend_from_slice(buf);
        if data.ends_with(b"\n") || data.len() >= FRAME_MAX {
            self.send()?;
        }
        Ok(())
    }
}

/// One of the two outputs `logs::Log::print` and `logs::follow` write to.
struct Half<'a> {
    client: &'a RefCell<Client>,
    stderr: bool,
}

impl Write for Half<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.client.borrow_mut().write(self.stderr, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.client.borrow_mut().send()
    }
}

/// The log from `pos` as the monitor appends it, into `client`, until the monitor ends or
/// the client goes away.
fn follow(
    paths: &runtime::Paths,
    log: &logs::Log,
    pos: logs::Position,
    opts: &logs::ReadOptions,
    client: &RefCell<Client>,
) {
    let (mut out, mut err) = (
        Half {
            client,
            stderr: false,
        },
        Half {
            client,
            stderr: true,
        },
    );
    let _ = logs::follow(paths, log, pos, opts, &mut out, &mut err);
}

/// Reads with `opts` into `client`; where the current file ends, for following.
fn print(
    log: &logs::Log,
    opts: &logs::ReadOptions,
    client: &RefCell<Client>,
) -> io::Result<logs::Position> {
    let (mut out, mut err) = (
        Half {
            client,
            stderr: false,
        },
        Half {
            client,
            stderr: true,
        },
    );
    let pos = log.print(opts, &mut out, &mut err)?;
    out.flush()?;
    Ok(pos)
}

fn time(r: &Req, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    match r.q(key).filter(|v| !v.is_empty() && *v != "0") {
        None => Ok(None),
        Some(v) => runtime::timestamp::parse(v, chrono::Utc::now())
            .map(Some)
            .map_err(ApiError::bad),
    }
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
    let log = logs::reader(&paths, &rec)?;
    let follows = r.flag("follow") && rec.active();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    std::thread::spawn(move || {
        let client = Client::new(streams, tx);
        let Ok(pos) = print(&log, &opts, &client) else {
            return;
        };
        if follows {
            follow(&paths, &log, pos, &opts, &client);
        }
    });
    Ok(Reply::Stream(streams.content_type(), rx))
}

/// `attach`: hijacked; output from the moment of the attach (with `logs=1`, from the
/// start) until the container's monitor ends. A container that has not started yet (the
/// docker CLI attaches before it starts) is followed from its start by this service.
/// With `stdin=1` the client's input goes to the container's (a `-i` container's stdin pipe or
/// its pty master), which the monitor hands over once the container runs (`attach::input`):
/// a thread of this session writes it there, so a full pipe blocks only this session. A
/// StdinOnce container's stdin ends when the client closes its side, as with dockerd.
pub fn attach(ctx: &Ctx, r: &Req, id: &str) -> Result<Reply, ApiError> {
    let rec = lifecycle::find(&ctx.root, id)?;
    let streams = Streams {
        stdout: r.flag("stdout"),
        stderr: r.flag("stderr"),
        tty: rec.settings.tty,
    };
    let paths = runtime::Paths::new(&ctx.root, &rec.id);
    // Read through the log, which the monitor writes whoever is attached: a container without
    // one cannot be attached to.
    let log = logs::reader(&paths, &rec)?;
    // Opened here, before the 101 (after which the docker CLI sends the start).
    let held = log.hold()?;
    let from_start = r.flag("logs");
    let wait_start = (!rec.active()).then(|| (ctx.runs.clone(), ctx.runs.started_count(&rec.id)));
    let stream = r.flag("stream");
    let id = rec.id.clone();
    // inspect's StdinOnce (the settings of `run -i`, not those of `run -di`).
    let once = rec.settings.open_stdin && rec.settings.attach_stdin;
    let input =
        (r.flag("stdin") && rec.settings.open_stdin).then(std::sync::mpsc::channel::<Vec<u8>>);
    let root = ctx.root.clone();
    let session: super::http::Session = Box::new(move |io: Upgraded| {
        Box::pin(async move {
            let (tx, mut rx) = mpsc::channel::<Bytes>(64);
            let (in_tx, in_rx) = match input {
                Some((t, r)) => (Some(t), Some(r)),
                None => (None, None),
            };
            std::thread::spawn(move || {
                let client = Client::new(streams, tx);
                let pos = match from_start {
                    true => match print(&log, &logs::ReadOptions::default(), &client) {
                        Ok(p) if p.has_file() => p,
                        Ok(_) => held,
                        Err(_) => return,
                    },
                    false => held,
                };
                if !stream && in_rx.is_none() {
                    return;
                }
                if let Some((runs, seen)) = wait_start {
                    runs.wait_started(&id, seen);
                }
                if let Some(chunks) = in_rx {
                    if let Ok(Some(fd)) = runtime::attach::input(&root, &id, once) {
                        std::thread::spawn(move || {
                            // Ends when the client closes its input (the sender goes).
                            for chunk in chunks {
                                runtime::attach::write_input(std::os::fd::AsFd::as_fd(&fd), &chunk);
                            }
                        });
                    }
                }
                if !stream {
                    return;
                }
                follow(&paths, &log, pos, &logs::ReadOptions::default(), &client);
            });
            let (mut rd, mut wr) = tokio::io::split(io);
            // The client's input goes to the container's (with stdin=1), else it is read and
            // dropped so that its close is seen.
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = rd.read(&mut buf).await {
                    if let Some(t) = &in_tx {
                        let _ = t.send(buf[..n].to_vec());
                    }
                }
            });
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
                let _ = wr.flush().await;
            }
            // Dropping `rx` makes the reader's next write fail, which ends it.
            drop(rx);
            let _ = wr.shutdown().await;
            reader.abort();
        })
    });
    Ok(Reply::Hijack(streams.content_type(), session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_frame_and_streams_keep_their_order() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let streams = Streams {
            stdout: true,
            stderr: true,
            tty: false,
        };
        let client = Client::new(streams, tx);
        let (mut out, mut err) = (
            Half {
                client: &client,
                stderr: false,
            },
            Half {
                client: &client,
                stderr: true,
            },
        );
        // As the log reader writes a record with its timestamp: two writes.
        out.write_all(b"2026-01-01T00:00:00Z ").unwrap();
        out.write_all(b"one\n").unwrap();
        err.write_all(b"partial").unwrap();
        out.write_all(b"two\n").unwrap();
        err.flush().unwrap();
        let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            got,
            vec![
                frame(1, b"2026-01-01T00:00:00Z one\n"),
                frame(2, b"partial"),
                frame(1, b"two\n"),
            ]
        );
        // A client that went away ends the reader with an error.
        drop(rx);
        assert!(out.write_all(b"three\n").is_err());
    }

    #[test]
    fn unwanted_streams_are_dropped() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let streams = Streams {
            stdout: false,
            stderr: true,
            tty: true,
        };
        let client = Client::new(streams, tx);
        let mut out = Half {
            client: &client,
            stderr: false,
        };
        let mut err = Half {
            client: &client,
            stderr: true,
        };
        out.write_all(b"no\n").unwrap();
        err.write_all(b"raw\n").unwrap();
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"raw\n"));
        assert!(rx.try_recv().is_err());
    }
}
