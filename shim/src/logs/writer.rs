//! Appends a container's output to its log: whole lines become records (a line longer than
//! 16 KiB is cut into pieces, as Docker does), all the records of one read are written with
//! one write(2), and the file is rotated before it would grow past `max-size`, keeping
//! `max-file` files, the rotated ones gzip'd in a forked child when `compress` is set (the
//! monitor's loop never waits for it).
//!
//! A write that fails (a full disk) never stops the container: its output is counted as lost
//! (`Lost`, which the monitor reports on its control socket) and, once writing works again,
//! the log gets a record saying how much was lost and when. A write cut short is truncated
//! away, so the file never holds half a record.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::format::{self, Attrs, Partial};
use super::{numbered, Config, Driver, Stream};
use crate::time::Timestamp;

/// Docker's limit for one record's line (daemon/logger/copier.go).
pub const LINE_MAX: usize = 16 * 1024;

/// Output that could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub since: Timestamp,
    /// Bytes of output (not of records) dropped so far.
    pub bytes: u64,
    pub error: String,
}

pub struct Writer {
    cfg: Config,
    path: PathBuf,
    attrs: Attrs,
    attr_pairs: Vec<(String, String)>,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// Encoded records not written yet, and the output bytes they hold.
    buf: Vec<u8>,
    buf_raw: u64,
    /// Unterminated output per stream.
    partial: [Vec<u8>; 2],
    /// The long line being cut into pieces, per stream: its id and the next piece's number.
    pieces: [(String, u32); 2],
    last_time: Timestamp,
    /// The child gzip'ing the newest rotated file.
    compressor: Option<libc::pid_t>,
    /// Compress in a forked child (a single-threaded monitor) or inline.
    fork: bool,
    lost: Option<Lost>,
}

impl Writer {
    /// Opens (or creates) the log at `path`, appending to what an earlier run wrote.
    pub fn open(path: &Path, cfg: Config, attrs: &[(String, String)]) -> io::Result<Writer> {
        let mut w = Writer {
            cfg,
            path: path.to_path_buf(),
            attrs: Attrs::new(attrs),
            attr_pairs: attrs.to_vec(),
            file: None,
            size: 0,
            buf: Vec::new(),
            buf_raw: 0,
            partial: [Vec::new(), Vec::new()],
            pieces: Default::default(),
            last_time: Timestamp::default(),
            compressor: None,
            fork: false,
            lost: None,
        };
        w.reopen()?;
        Ok(w)
    }

    /// Rotated files are compressed by a forked child. Only for a single-threaded process
    /// (a fork of a threaded one may not allocate).
    pub fn compress_in_background(&mut self, yes: bool) {
        self.fork = yes;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Its state for the monitor's next program (which reopens the file); what is buffered
    /// is written first.
    pub fn state(&mut self) -> crate::handoff::LogState {
        self.write_buf();
        crate::handoff::LogState {
            path: self.path.clone(),
            driver: self.cfg.driver,
            max_size: self.cfg.max_size,
            max_file: self.cfg.max_file,
            compress: self.cfg.compress,
            attrs: self.attr_pairs.clone(),
            partial: self.partial.clone(),
            pieces: self.pieces.clone(),
            lost: self.lost.clone(),
            compressor: self.compressor,
        }
    }

    /// The writer a previous program of this monitor had.
    pub fn resume(s: crate::handoff::LogState) -> io::Result<Writer> {
        let cfg = Config {
            driver: s.driver,
            max_size: s.max_size,
            max_file: s.max_file,
            compress: s.compress,
            label_keys: Vec::new(),
            env_keys: Vec::new(),
        };
        let mut w = Writer::open(&s.path, cfg, &s.attrs)?;
        w.partial = s.partial;
        w.pieces = s.pieces;
        w.lost = s.lost;
        w.compressor = s.compressor;
        Ok(w)
    }

    /// Output being lost now (writing fails), if any.
    pub fn lost(&self) -> Option<&Lost> {
        self.lost.as_ref()
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    /// Copies a read of `stream`'s output, stamped now.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        self.write_at(stream, data, Timestamp::now());
    }

    pub fn write_at(&mut self, stream: Stream, mut data: &[u8], now: Timestamp) {
        self.reap();
        let time = now.rfc3339();
        let s = stream as usize;
        while !data.is_empty() {
            let room = LINE_MAX - self.partial[s].len();
            let window = &data[..data.len().min(room)];
            if let Some(nl) = window.iter().position(|b| *b == b'\n') {
                let line = &data[..=nl];
                if self.partial[s].is_empty() {
                    self.record(stream, line, true, now, &time);
                } else {
                    let mut whole = std::mem::take(&mut self.partial[s]);
                    whole.extend_from_slice(line);
                    self.record(stream, &whole, true, now, &time);
                }
                data = &data[nl + 1..];
            } else if data.len() >= room {
                let mut piece = std::mem::take(&mut self.partial[s]);
                piece.extend_from_slice(&data[..room]);
                self.record(stream, &piece, false, now, &time);
                data = &data[room..];
            } else {
                self.partial[s].extend_from_slice(data);
                data = &[];
            }
        }
        self.write_buf();
    }

    /// A line of rbox's own (adoption, a failed restart), as a record of `stream`.
    pub fn note(&mut self, stream: Stream, text: &str) {
        let now = Timestamp::now();
        let mut line = text.as_bytes().to_vec();
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        self.record(stream, &line, true, now, &now.rfc3339());
        self.write_buf();
    }

    /// Writes out unterminated output (the run ended) and what is buffered.
    pub fn flush(&mut self) {
        let now = Timestamp::now();
        let time = now.rfc3339();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, &rest, false, now, &time);
            }
            // The next run's first line starts a new record sequence.
            self.pieces[stream as usize] = Default::default();
        }
        self.write_buf();
    }

    /// `flush`, then waits for a compression in progress: the files are complete after it.
    pub fn finish(&mut self) {
        self.flush();
        self.wait_compressor();
    }

    /// Encodes one record into the buffer, rotating first if it would not fit the file.
    /// `complete`: `line` ends with its newline; otherwise it is a piece of a longer line
    /// (or what was left unterminated at the end of a run).
    fn record(&mut self, stream: Stream, line: &[u8], complete: bool, now: Timestamp, time: &str) {
        let s = stream as usize;
        let start = self.buf.len();
        match self.cfg.driver {
            Driver::None => return,
            Driver::JsonFile => format::json_record(&mut self.buf, stream, line, time, &self.attrs),
            Driver::Local => {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                let piece = &mut self.pieces[s];
                let partial = if !complete || piece.1 > 0 {
                    if piece.1 == 0 {
                        piece.0 = format!("{:x}{s}", now.0);
                    }
                    piece.1 += 1;
                    Some(Partial {
                        id: piece.0.clone(),
                        ordinal: piece.1,
                        last: complete,
                    })
                } else {
                    None
                };
                if complete {
                    *piece = Default::default();
                }
                format::local_record(
                    &mut self.buf,
                    stream,
                    text,
                    partial.as_ref(),
                    now,
                    &self.attrs,
                );
            }
        }
        self.last_time = now;
        let raw = line.len() as u64;
        if let Some(max) = self.cfg.max_size {
            if self.size + self.buf.len() as u64 > max && self.size + start as u64 > 0 {
                let rec = self.buf.split_off(start);
                self.write_buf();
                self.rotate();
                self.buf = rec;
            }
        }
        self.buf_raw += raw;
    }

    /// Writes the buffered records; on failure they are counted as lost.
    fn write_buf(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let (buf, raw) = (
            std::mem::take(&mut self.buf),
            std::mem::replace(&mut self.buf_raw, 0),
        );
        if self.lost.is_some() && !self.report_lost() {
            self.lose(raw, None);
            self.buf = reuse(buf);
            return;
        }
        if let Err(e) = self.append(&buf) {
            self.lose(raw, Some(e));
        }
        self.buf = reuse(buf);
    }

    /// Appends whole records, or nothing: a short write is cut off again.
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("log not open"));
        };
        match f.write_all(data) {
            Ok(()) => {
                self.size += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Truncating needs no space; the file keeps only whole records.
                let _ = f.set_len(self.size);
                Err(e)
            }
        }
    }

    fn lose(&mut self, bytes: u64, err: Option<io::Error>) {
        let lost = self.lost.get_or_insert_with(|| Lost {
            since: Timestamp::now(),
            bytes: 0,
            error: String::new(),
        });
        lost.bytes += bytes;
        if let Some(e) = err {
            lost.error = format!("writing {}: {e}", self.path.display());
        }
    }

    /// Writing works again: the log says what was lost first. False if it still fails.
    fn report_lost(&mut self) -> bool {
        let Some(lost) = self.lost.clone() else {
            return true;
        };
        let now = Timestamp::now();
        let text = format!(
            "rbox: {} bytes of output were lost from {} to {}: {}\n",
            lost.bytes,
            lost.since.rfc3339(),
            now.rfc3339(),
            lost.error
        );
        let mut rec = Vec::new();
        match self.cfg.driver {
            Driver::JsonFile => format::json_record(
                &mut rec,
                Stream::Stderr,
                text.as_bytes(),
                &now.rfc3339(),
                &self.attrs,
            ),
            Driver::Local => format::local_record(
                &mut rec,
                Stream::Stderr,
                text.trim_end().as_bytes(),
                None,
                now,
                &self.attrs,
            ),
            Driver::None => return true,
        }
        if self.append(&rec).is_err() {
            return false;
        }
        self.lost = None;
        true
    }

    /// Moves the current file out of the way: `.1`, `.2`, ... shift by one, the oldest goes.
    fn rotate(&mut self) {
        self.file = None;
        if self.cfg.max_file <= 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            // It works on `.1`, which is about to move.
            self.wait_compressor();
            let last = self.cfg.max_file - 1;
            for gz in [false, true] {
                let _ = std::fs::remove_file(numbered(&self.path, last, gz));
            }
            for i in (2..=last).rev() {
                for gz in [false, true] {
                    let _ = std::fs::rename(
                        numbered(&self.path, i - 1, gz),
                        numbered(&self.path, i, gz),
                    );
                }
            }
            if std::fs::rename(&self.path, numbered(&self.path, 1, false)).is_err() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        self.size = 0;
        if let Err(e) = self.reopen() {
            self.lose(0, Some(e));
        }
        if self.cfg.compress && self.cfg.max_file > 1 {
            self.start_compressor();
        }
    }

    fn start_compressor(&mut self) {
        let src = numbered(&self.path, 1, false);
        let last = self.last_time;
        if !self.fork {
            let _ = compress_file(&src, last);
            return;
        }
        // SAFETY: the owner is single-threaded (`compress_in_background`); the child only
        // compresses and leaves with _exit, running no destructor of ours.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: lowering our own priority; then only file work and _exit.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
                let code = if compress_file(&src, last).is_ok() {
                    0
                } else {
                    1
                };
                // SAFETY: ends the child without unwinding into the parent's code.
                unsafe { libc::_exit(code) }
            }
            -1 => {
                let _ = compress_file(&src, last);
            }
            pid => self.compressor = Some(pid),
        }
    }

    /// Reaps a compressor that finished, without waiting.
    fn reap(&mut self) {
        if let Some(pid) = self.compressor {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != 0 {
                self.compressor = None;
            }
        }
    }

    fn wait_compressor(&mut self) {
        if let Some(pid) = self.compressor.take() {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.write_buf();
        self.wait_compressor();
    }
}

/// An emptied buffer keeps its capacity unless it grew large (a burst of long lines).
fn reuse(mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    if buf.capacity() > 1 << 20 {
        buf.shrink_to(256 * 1024);
    }
    buf
}

/// gzip's `src` into `src.gz` (through a temporary name, so a reader finds one complete copy
/// at any time), with Docker's header extra `{"lastTime": ...}` that lets `--since` skip it,
/// then removes `src`.
pub fn compress_file(src: &Path, last: Timestamp) -> io::Result<()> {
    let mut dst = src.as_os_str().to_os_string();
    dst.push(".gz");
    let dst = PathBuf::from(dst);
    let mut tmp = dst.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut input = File::open(src)?;
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        let extra = format!("{{\"lastTime\":\"{}\"}}", last.rfc3339());
        let mut gz = flate2::GzBuilder::new()
            .extra(extra.into_bytes())
            .write(out, flate2::Compression::default());
        io::copy(&mut input, &mut gz)?;
        gz.finish()?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::remove_file(src)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(driver: &str, kv: &[(&str, &str)]) -> Config {
        let opts: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(driver, &opts).unwrap()
    }

    #[test]
    fn lines_are_split_per_stream_and_written_per_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut w = Writer::open(&p, cfg("json-file", &[]), &[]).unwrap();
        w.write(Stream::Stdout, b"hel");
        w.write(Stream::Stderr, b"oops\n");
        w.write(Stream::Stdout, b"lo\nwor");
        w.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("{\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\""));
        assert!(lines[1].starts_with("{\"log\":\"hello\\n\",\"stream\":\"stdout\""));
        assert!(lines[2].starts_with("{\"log\":\"wor\",\"stream\":\"stdout\""));
        assert!(lines[2].ends_with("Z\"}"));
    }

    #[test]
    fn long_lines_become_pieces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut w = Writer::open(&p, cfg("local", &[("compress", "false")]), &[]).unwrap();
        let mut long = vec![b'a'; LINE_MAX + 10];
        long.push(b'\n');
        w.write(Stream::Stdout, &long);
        w.write(Stream::Stdout, b"short\n");
        drop(w);
        let data = std::fs::read(&p).unwrap();
        let mut entries = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            entries.push(format::decode_local(&rest[4..4 + n]).unwrap());
            rest = &rest[n + 8..];
        }
        assert_eq!(entries.len(), 3);
        let p0 = entries[0].partial.clone().unwrap();
        let p1 = entries[1].partial.clone().unwrap();
        assert_eq!(
            (p0.ordinal, p0.last, p1.ordinal, p1.last),
            (1, false, 2, true)
        );
        assert_eq!(p0.id, p1.id);
        let whole: Vec<u8> = [entries[0].output(), entries[1].output()].concat();
        assert_eq!(whole, long);
        assert_eq!(entries[2].output(), b"short\n");
    }

    #[test]
    fn rotation_keeps_files_and_sizes_within_the_limits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut w = Writer::open(
            &p,
            cfg("json-file", &[("max-size", "2k"), ("max-file", "3")]),
            &[],
        )
        .unwrap();
        for i in 0..500 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        drop(w);
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["x.log", "x.log.1", "x.log.2"]);
        for n in &names {
            let len = std::fs::metadata(d.path().join(n)).unwrap().len();
            assert!(len <= 2000, "{n}: {len}");
        }
        let newest = std::fs::read_to_string(&p).unwrap();
        assert!(newest.contains("line 499"));
        let older = std::fs::read_to_string(d.path().join("x.log.1")).unwrap();
        let last_older = older.lines().last().unwrap();
        let first_newest = newest.lines().next().unwrap();
        // No record lost or repeated between the files.
        let num = |l: &str| -> u32 {
            l.split("line ")
                .nth(1)
                .unwrap()
                .split('\\')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(num(last_older) + 1, num(first_newest));
    }

    #[test]
    fn rotated_files_are_compressed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let c = cfg(
            "json-file",
            &[("max-size", "1k"), ("max-file", "3"), ("compress", "true")],
        );
        let mut w = Writer::open(&p, c, &[]).unwrap();
        for i in 0..100 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        w.finish();
        assert!(d.path().join("x.log.1.gz").exists());
        assert!(d.path().join("x.log.2.gz").exists());
        assert!(!d.path().join("x.log.1").exists());
        let mut text = String::new();
        let f = File::open(d.path().join("x.log.1.gz")).unwrap();
        let mut gz = flate2::read::GzDecoder::new(f);
        std::io::Read::read_to_string(&mut gz, &mut text).unwrap();
        assert!(text.starts_with("{\"log\":\"line "));
        let extra = gz.header().unwrap().extra().unwrap().to_vec();
        assert!(String::from_utf8(extra)
            .unwrap()
            .starts_with("{\"lastTime\":\""));
    }

    #[test]
    fn a_failing_write_is_counted_and_reported_once_it_works() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        let mut w = Writer::open(&p, cfg("json-file", &[]), &[]).unwrap();
        w.write(Stream::Stdout, b"before\n");
        // /dev/full fails every write with ENOSPC.
        w.file = Some(OpenOptions::new().append(true).open("/dev/full").unwrap());
        w.write(Stream::Stdout, b"dropped\n");
        w.write(Stream::Stdout, b"dropped too\n");
        let lost = w.lost().unwrap().clone();
        assert_eq!(lost.bytes, 8 + 12);
        assert!(lost.error.contains("No space left"), "{}", lost.error);
        w.file = None;
        w.write(Stream::Stdout, b"after\n");
        assert!(w.lost().is_none());
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].contains("rbox: 20 bytes of output were lost from "),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("after"));
    }
}
