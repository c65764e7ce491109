//! `/containers/{id}/exec`, `/exec/{id}/start|json`: a process in a running container.
//!
//! libcontainer's tenant builder forks with raw clone3, which this multi-threaded service
//! must not do (../shared/libcontainer-notes.md, pitfall 1): each exec is this binary
//! re-executed as `rbox exec` (single-threaded, as the CLI is), its stdio on pipes (or a pty
//! with `Tty`) that the hijacked connection is copied to and from, its exit status kept for
//! `/exec/{id}/json`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::http::{frame, ApiError, Reply, Req, Upgraded, MULTIPLEXED_STREAM, RAW_STREAM};
use super::Ctx;

#[derive(Clone, Debug)]
struct Exec {
    container: String,
    cmd: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    stdin: bool,
    tty: bool,
    running: bool,
    exit_code: Option<i32>,
    pid: u32,
    /// The pty's master while a `Tty` exec runs: `/exec/{id}/resize` sets its size.
    master: Option<Arc<OwnedFd>>,
}

/// The execs this service made, by id.
#[derive(Default)]
pub struct Registry(Arc<Mutex<HashMap<String, Exec>>>);

impl Registry {
    pub fn ids_of(&self, container: &str) -> Vec<String> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|(_, e)| e.container == container)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn get(&self, id: &str) -> Result<Exec, ApiError> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Exec)) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = m.get_mut(id) {
            f(e);
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .map(String::from)
        .collect()
}

pub fn create(ctx: &Ctx, r: &Req, id: &str) -> Result<Reply, ApiError> {
    let body = r.json()?;
    let rec = runtime::lifecycle::find(&ctx.root, id)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    let cmd = strings(&body["Cmd"]);
    if cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    let text = |k: &str| body[k].as_str().filter(|s| !s.is_empty()).map(String::from);
    let exec_id = random_id();
    let e = Exec {
        container: rec.id.clone(),
        cmd,
        env: strings(&body["Env"]),
        workdir: text("WorkingDir"),
        user: text("User"),
        stdin: body["AttachStdin"].as_bool() == Some(true),
        tty: body["Tty"].as_bool() == Some(true),
        running: false,
        exit_code: None,
        pid: 0,
        master: None,
    };
    ctx.execs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(exec_id.clone(), e);
    Ok(Reply::Json(StatusCode::CREATED, json!({ "Id": exec_id })))
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn inspect(ctx: &Ctx, id: &str) -> Result<Reply, ApiError> {
    let e = ctx.execs.get(id)?;
    Ok(Reply::ok(json!({
        "ID": id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": {
            "tty": e.tty,
            "entrypoint": e.cmd[0],
            "arguments": &e.cmd[1..],
            "privileged": false,
            "user": e.user.clone().unwrap_or_default(),
        },
        "OpenStdin": e.stdin,
        "OpenStderr": true,
        "OpenStdout": true,
        "CanRemove": false,
        "ContainerID": e.container,
        "DetachKeys": "",
        "Pid": e.pid,
    })))
}

/// `/exec/{id}/resize?h=&w=`: the pty's new size, and SIGWINCH to the `rbox exec` that relays
/// it (it copies its terminal's size, this pty's, to the container's pty, as for a user's
/// terminal). Without a tty there is nothing to resize, as in Docker.
pub fn resize(ctx: &Ctx, r: &Req, id: &str) -> Result<Reply, ApiError> {
    let e = ctx.execs.get(id)?;
    let dim = |k: &str| -> Result<u16, ApiError> {
        r.q(k)
            .unwrap_or("0")
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid resize {k}: {:?}", r.q(k).unwrap_or(""))))
    };
    let (h, w) = (dim("h")?, dim("w")?);
    if let Some(m) = &e.master {
        let ws = libc::winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a winsize struct on the pty master this registry holds.
        if unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(m.as_ref()),
                libc::TIOCSWINSZ,
                &ws,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error().into());
        }
        if e.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(e.pid as i32),
                nix::sys::signal::Signal::SIGWINCH,
            );
        }
    }
    Ok(Reply::Empty(StatusCode::OK))
}

/// `rbox exec` for `e`, re-executed.
fn command(ctx: &Ctx, e: &Exec, detach: bool) -> Command {
    let mut c = Command::new("/proc/self/exe");
    c.arg("--root").arg(&ctx.root).arg("exec");
    if detach {
        c.arg("-d");
    }
    if e.stdin && !detach {
        c.arg("-i");
    }
    if e.tty && !detach {
        c.arg("-t");
    }
    for v in &e.env {
        c.arg(format!("--env={v}"));
    }
    if let Some(w) = &e.workdir {
        c.arg(format!("--workdir={w}"));
    }
    if let Some(u) = &e.user {
        c.arg(format!("--user={u}"));
    }
    c.arg("--").arg(&e.container).args(&e.cmd);
    c
}

pub fn start(ctx: &Ctx, r: &Req, id: &str) -> Result<Reply, ApiError> {
    let body = r.json()?;
    let e = ctx.execs.get(id)?;
    if e.running || e.exit_code.is_some() {
        return Err(ApiError::conflict(format!("Exec {id} has already started")));
    }
    let rec = runtime::lifecycle::find(&ctx.root, &e.container)?;
    if !rec.running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    let registry = Registry(ctx.execs.0.clone());
    if body["Detach"].as_bool() == Some(true) {
        let mut c = command(ctx, &e, true);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = c.status()?;
        registry.update(id, |x| {
            x.exit_code = Some(status.code().unwrap_or(0));
        });
        return Ok(Reply::Empty(StatusCode::OK));
    }
    let mut cmd = command(ctx, &e, false);
    let tty = e.tty;
    // The pty's master side, or the pipes.
    let mut master: Option<std::fs::File> = None;
    if tty {
        let pty =
            nix::pty::openpty(None, None).map_err(|e| ApiError::from(std::io::Error::from(e)))?;
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        master = Some(std::fs::File::from(pty.master));
    } else {
        cmd.stdin(if e.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let sizer = match &master {
        Some(m) => Some(Arc::new(OwnedFd::from(m.try_clone()?))),
        None => None,
    };
    registry.update(id, |x| {
        x.running = true;
        x.pid = pid;
        x.master = sizer;
    });
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut input: Option<Box<dyn Write + Send>> = None;
    match master {
        Some(m) => {
            input = Some(Box::new(m.try_clone()?));
            spawn_copy(Box::new(m), tx.clone(), None);
        }
        None => {
            if let Some(i) = child.stdin.take() {
                input = Some(Box::new(i));
            }
            if let Some(o) = child.stdout.take() {
                spawn_copy(Box::new(o), tx.clone(), Some(1));
            }
            if let Some(o) = child.stderr.take() {
                spawn_copy(Box::new(o), tx.clone(), Some(2));
            }
        }
    }
    let exec_id = id.to_string();
    // The exit is recorded before the last sender goes, so the client that sees the stream
    // end reads the exit code from /exec/{id}/json.
    std::thread::spawn(move || {
        let code = match child.wait() {
            Ok(s) => s
                .code()
                .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)),
            Err(_) => 126,
        };
        registry.update(&exec_id, |x| {
            x.running = false;
            x.exit_code = Some(code);
            x.master = None;
        });
        drop(tx);
    });
    let ctype = if tty { RAW_STREAM } else { MULTIPLEXED_STREAM };
    Ok(Reply::Hijack(
        ctype,
        Box::new(move |io| Box::pin(session(io, rx, input))),
    ))
}

/// Copies one output of the exec into the connection's queue (a stdcopy frame per read
/// without a tty).
fn spawn_copy(mut from: Box<dyn Read + Send>, tx: mpsc::Sender<Bytes>, stream: Option<u8>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let b = match stream {
                Some(s) => frame(s, &buf[..n]),
                None => Bytes::copy_from_slice(&buf[..n]),
            };
            if tx.blocking_send(b).is_err() {
                return;
            }
        }
    });
}

/// The hijacked connection: the client's bytes to the exec's stdin (its half-close closes
/// stdin), the exec's output to the client until the exec ends.
async fn session(
    io: Upgraded,
    mut rx: mpsc::Receiver<Bytes>,
    input: Option<Box<dyn Write + Send>>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    if let Some(mut w) = input {
        std::thread::spawn(move || {
            while let Ok(b) = in_rx.recv() {
                if w.write_all(&b).and_then(|_| w.flush()).is_err() {
                    return;
                }
            }
            // Dropping `w` closes the exec's stdin.
        });
    }
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some(b) = rx.recv().await {
        if wr.write_all(&b).await.is_err() {
            break;
        }
        let _ = wr.flush().await;
    }
    let _ = wr.shutdown().await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_64_hex() {
        let id = super::random_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
