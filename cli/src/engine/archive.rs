//! `/containers/{id}/archive`: HEAD (Docker's path stat, in the `X-Docker-Container-Path-Stat`
//! header), GET (a tar of the path) and PUT (a tar unpacked into a directory): `docker cp`
//! both ways. Paths resolve inside the container (`runtime::copy::resolve`), as for `rbox
//! cp`. Archives are streamed both ways, never held whole: GET packs into the response as it
//! goes (`copy::from_container`, which does not fork); PUT feeds the request body to a
//! re-executed `rbox cp - CTR:DIR`, because unpacking forks a child chrooted into the
//! container, which this multi-threaded process must not do (the child of a fork may not
//! allocate), and `rbox cp` is that same code in a single-threaded process.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;

use super::http::{ApiError, Reply, Req};
use super::Ctx;
use runtime::copy::{self, Local};
use runtime::{lifecycle, Record};

type R = Result<Reply, ApiError>;

pub const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Go's `os.FileMode` of a file (the type bits are Go's, not the kernel's), as Docker's
/// `PathStat.Mode` carries it.
fn go_mode(m: &std::fs::Metadata) -> u32 {
    let ft = m.file_type();
    let unix = m.mode();
    let mut mode = unix & 0o777;
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        mode |= 1 << 31;
    } else if ft.is_symlink() {
        mode |= 1 << 27;
    } else if ft.is_block_device() {
        mode |= 1 << 26;
    } else if ft.is_char_device() {
        mode |= (1 << 26) | (1 << 21);
    } else if ft.is_fifo() {
        mode |= 1 << 25;
    } else if ft.is_socket() {
        mode |= 1 << 24;
    }
    if unix & 0o4000 != 0 {
        mode |= 1 << 23;
    }
    if unix & 0o2000 != 0 {
        mode |= 1 << 22;
    }
    if unix & 0o1000 != 0 {
        mode |= 1 << 20;
    }
    mode
}

fn path_of(r: &Req) -> Result<String, ApiError> {
    match r.q("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad("Bad parameter: path cannot be empty")),
    }
}

fn not_found(path: &str, rec: &Record) -> ApiError {
    ApiError::not_found(format!(
        "Could not find the file {path} in container {}",
        rec.name
    ))
}

/// Docker's `container.PathStat` of `path` (the last component not followed; a symlink's
/// `linkTarget` is where it leads inside the container), base64'd JSON for the header.
fn stat_header(root: &Path, rec: &Record, path: &str) -> Result<String, ApiError> {
    let stat = copy::with_container_root(root, rec, |croot| {
        let p = Path::new(path);
        let follow_last = path.ends_with('/') || path.ends_with("/.") || p.file_name().is_none();
        let host = match (follow_last, p.parent(), p.file_name()) {
            (false, Some(parent), Some(name)) => {
                copy::resolve(croot, &parent.to_string_lossy())?.join(name)
            }
            _ => copy::resolve(croot, path)?,
        };
        let Ok(m) = std::fs::symlink_metadata(&host) else {
            return Ok(None);
        };
        let link_target = match m.file_type().is_symlink() {
            true => {
                let to = copy::resolve(croot, path)?;
                let rel = to.strip_prefix(croot).unwrap_or(&to);
                format!("/{}", rel.display())
            }
            false => String::new(),
        };
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let mtime =
            chrono::DateTime::<chrono::Utc>::from(m.modified().unwrap_or(std::time::UNIX_EPOCH));
        Ok(Some(json!({
            "name": name,
            "size": m.len(),
            "mode": go_mode(&m),
            "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "linkTarget": link_target,
        })))
    })?;
    let stat = stat.ok_or_else(|| not_found(path, rec))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(stat.to_string()))
}

pub fn head(ctx: &Ctx, r: &Req, id: &str) -> R {
    let path = path_of(r)?;
    let rec = lifecycle::find(&ctx.root, id)?;
    let stat = stat_header(&ctx.root, &rec, &path)?;
    Ok(Reply::Headers(
        vec![(STAT_HEADER, stat)],
        Box::new(Reply::Empty(StatusCode::OK)),
    ))
}

/// The response body as a `Write`: chunks go to the client as they are packed; a client
/// that went away is a write error, which ends the packing.
struct ToClient(mpsc::Sender<Bytes>);

impl Write for ToClient {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn get(ctx: &Ctx, r: &Req, id: &str) -> R {
    let path = path_of(r)?;
    let rec = lifecycle::find(&ctx.root, id)?;
    // Checked before the 200: a missing path is Docker's 404, not an empty archive.
    let stat = stat_header(&ctx.root, &rec, &path)?;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let root = ctx.root.clone();
    std::thread::spawn(move || {
        let out = io::BufWriter::with_capacity(64 * 1024, ToClient(tx));
        if let Err(e) = copy::from_container(&root, &rec, &path, &Local::Stream, false, out) {
            // The status went out already: the client sees a cut archive.
            tracing::debug!("archive of {path}: {e}");
        }
    });
    Ok(Reply::Headers(
        vec![(STAT_HEADER, stat)],
        Box::new(Reply::Stream("application/x-tar", rx)),
    ))
}

/// `PUT ?path=DIR[&copyUIDGID=1]`: the body (a tar) unpacked into directory `DIR` by `rbox
/// cp [-a] - CTR:DIR`, fed as it arrives; answered once it is unpacked.
pub fn put(ctx: &Ctx, r: &Req, id: &str) -> R {
    let path = path_of(r)?;
    let rec = lifecycle::find(&ctx.root, id)?;
    if rec.settings.read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "container rootfs is marked read-only",
        ));
    }
    let kind = copy::with_container_root(&ctx.root, &rec, |croot| {
        Ok(copy::kind_of(&copy::resolve(croot, &path)?))
    })?;
    match kind {
        copy::Kind::Missing => return Err(not_found(&path, &rec)),
        copy::Kind::File => return Err(ApiError::bad("extraction point is not a directory")),
        copy::Kind::Dir => {}
    }
    let Some(mut body) = r.take_body_stream() else {
        return Err(ApiError::bad("no archive in the request"));
    };
    let mut c = Command::new("/proc/self/exe");
    c.arg("--root").arg(&ctx.root).arg("cp");
    if r.flag("copyUIDGID") {
        c.arg("-a");
    }
    c.arg("-")
        .arg(format!("{}:{path}", rec.id))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn()?;
    let mut stdin = child.stdin.take();
    let mut fed: Result<(), String> = Ok(());
    while let Some(chunk) = body.blocking_recv() {
        match chunk {
            Ok(b) => {
                if let Some(w) = stdin.as_mut() {
                    // A child that stopped reading failed: its message says why.
                    if w.write_all(&b).is_err() {
                        stdin = None;
                    }
                }
            }
            Err(e) => {
                fed = Err(e);
                break;
            }
        }
    }
    if let Err(e) = fed {
        // Killed before its input closes: at an entry boundary an EOF would read as the end of
        // a whole archive, and the cut upload would pass for a complete one.
        let _ = child.kill();
        let _ = child.wait();
        return Err(ApiError::bad(format!("reading the archive: {e}")));
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(Reply::Empty(StatusCode::OK));
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg = msg.trim().trim_start_matches("Error: ").to_string();
    Err(ApiError::bad(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_go_file_modes() {
        let d = std::env::temp_dir().join(format!("rbox-go-mode-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let dir = std::fs::metadata(&d).unwrap();
        assert_eq!(go_mode(&dir) & (1 << 31), 1 << 31);
        std::fs::write(d.join("f"), "").unwrap();
        let _ = std::fs::remove_file(d.join("l"));
        std::os::unix::fs::symlink("f", d.join("l")).unwrap();
        let f = std::fs::metadata(d.join("f")).unwrap();
        assert_eq!(go_mode(&f) >> 9, 0, "a regular file has no type bits");
        let l = std::fs::symlink_metadata(d.join("l")).unwrap();
        assert_eq!(go_mode(&l) & (1 << 27), 1 << 27);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
