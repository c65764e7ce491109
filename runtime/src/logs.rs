//! Docker's json-file log driver: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-27T21:00:00.000000000Z"}`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use chrono::{SecondsFormat, Utc};

/// Appends a container's output to its log, one record per line of each stream.
pub struct Writer {
    file: File,
    partial: [Vec<u8>; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl Writer {
    pub fn open(path: &Path) -> io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Writer {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            let buf = &mut self.partial[stream as usize];
            buf.extend_from_slice(&data[..=nl]);
            let line = std::mem::take(buf);
            self.record(stream, &line);
            data = &data[nl + 1..];
        }
        let buf = &mut self.partial[stream as usize];
        buf.extend_from_slice(data);
        // Docker splits lines longer than 16 KiB as well.
        if buf.len() >= 16 * 1024 {
            let line = std::mem::take(buf);
            self.record(stream, &line);
        }
    }

    /// Writes out unterminated output at the end.
    pub fn flush(&mut self) {
        for s in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[s as usize]);
            if !line.is_empty() {
                self.record(s, &line);
            }
        }
    }

    fn record(&mut self, stream: Stream, line: &[u8]) {
        let rec = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": stream.name(),
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        });
        let mut out = rec.to_string();
        out.push('\n');
        // A full disk must not kill the container; output is then lost like Docker's.
        let _ = self.file.write_all(out.as_bytes());
    }
}

/// Options of `rbox logs`.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// `--since` / `--until`: only records written from / up to then (after `tail`, as
    /// Docker's json-file reader applies them).
    pub since: Option<chrono::DateTime<Utc>>,
    pub until: Option<chrono::DateTime<Utc>>,
}

/// Where log records go: `(stderr, bytes)` per record, as `docker logs` shows it (with the
/// timestamp first when asked). `print` writes to our stdout/stderr; the Engine API service
/// frames them for its clients.
pub type Sink<'a> = dyn FnMut(bool, &[u8]) + 'a;

/// Hands one log record to `sink`.
fn emit(line: &str, opts: &ReadOptions, sink: &mut Sink) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    if opts.since.is_some() || opts.until.is_some() {
        let t = v["time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let Some(t) = t else { return };
        if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t > u) {
            return;
        }
    }
    let text = v["log"].as_str().unwrap_or("");
    let stderr = v["stream"] == "stderr";
    if opts.timestamps {
        let line = format!("{} {text}", v["time"].as_str().unwrap_or(""));
        sink(stderr, line.as_bytes());
    } else {
        sink(stderr, text.as_bytes());
    }
}

/// A sink to this process's stdout and stderr.
fn stdio_sink<'a>(out: &'a mut dyn Write, err: &'a mut dyn Write) -> impl FnMut(bool, &[u8]) + 'a {
    move |stderr, bytes| {
        let _ = if stderr {
            err.write_all(bytes)
        } else {
            out.write_all(bytes)
        };
    }
}

/// Prints the log; returns the byte offset reached, for following.
pub fn print(path: &Path, opts: &ReadOptions) -> io::Result<u64> {
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let n = read(path, opts, &mut stdio_sink(&mut out, &mut err))?;
    out.flush()?;
    Ok(n)
}

/// `print` into `sink`.
pub fn read(path: &Path, opts: &ReadOptions, sink: &mut Sink) -> io::Result<u64> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    let start = opts
        .tail
        .map(|n| lines.len().saturating_sub(n))
        .unwrap_or(0);
    for l in &lines[start..] {
        emit(l, opts, sink);
    }
    Ok(text.len() as u64)
}

/// Prints records appended after `offset` (whole lines only); returns the new offset.
pub fn print_from(path: &Path, offset: u64, opts: &ReadOptions) -> io::Result<u64> {
    let Ok(f) = File::open(path) else {
        return Ok(offset);
    };
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let n = read_from(&f, offset, opts, &mut stdio_sink(&mut out, &mut err))?;
    out.flush()?;
    Ok(n)
}

/// The records of an open log after `offset` (whole lines only) into `sink`; the new offset.
/// An open file goes on being readable after `--rm` removed its container.
pub fn read_from(f: &File, offset: u64, opts: &ReadOptions, sink: &mut Sink) -> io::Result<u64> {
    let mut f = f.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(f);
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        emit(line.trim_end(), opts, sink);
    }
    Ok(pos)
}

/// Follows an open log from `offset` until the container's monitor ends (`logs -f`,
/// attach): records go to `sink` as the monitor appends them, woken by inotify on the file
/// (no polling); a thread blocks on the monitor's lock and closes a pipe when it ends.
/// `alive` is asked after each batch: false (the reader went away) ends the follow.
pub fn follow(
    paths: &crate::Paths,
    f: &File,
    mut offset: u64,
    opts: &ReadOptions,
    sink: &mut Sink,
    alive: &dyn Fn() -> bool,
) -> io::Result<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (done_rx, done_tx) = nix::unistd::pipe().map_err(io::Error::from)?;
    let watched = paths.clone();
    std::thread::spawn(move || {
        crate::store::wait_monitor(&watched);
        drop(done_tx);
    });
    // SAFETY: inotify_init1 returns a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let ino = unsafe { OwnedFd::from_raw_fd(fd) };
    // The open file itself (through /proc), so that a log whose container --rm removed is
    // still watched.
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = [
        libc::pollfd {
            fd: ino.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: done_rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut events = [0u8; 4096];
    loop {
        offset = read_from(f, offset, opts, sink)?;
        if fds[1].revents != 0 || !alive() {
            return Ok(offset);
        }
        // SAFETY: poll on two descriptors we own; EINTR comes back as -1 and loops.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        // SAFETY: a non-blocking read of pending events into our buffer.
        while unsafe { libc::read(fd, events.as_mut_ptr().cast(), events.len()) } > 0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_per_stream() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut w = Writer::open(&p).unwrap();
        w.write(Stream::Stdout, b"hel");
        w.write(Stream::Stderr, b"oops\n");
        w.write(Stream::Stdout, b"lo\nwor");
        w.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let recs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0]["log"], "oops\n");
        assert_eq!(recs[0]["stream"], "stderr");
        assert_eq!(recs[1]["log"], "hello\n");
        assert_eq!(recs[2]["log"], "wor");
        assert!(recs[1]["time"].as_str().unwrap().ends_with('Z'));
    }
}
