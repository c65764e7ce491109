//! Reading a container's log back, oldest record first, across its rotated files (`.N` ...
//! `.1`, plain or `.gz`) and the current one, in memory that does not grow with the log:
//!
//! - `--tail N` walks back from the end of each plain file (json-file: counting newlines in
//!   64 KiB blocks; local: following the length word each record ends with) and only reads
//!   further files when this one had fewer than N; a compressed file, which cannot be read
//!   backwards, is decompressed twice (count, then skip), never held;
//! - `--since` skips whole files whose last record is older (plain: its last record; gzip:
//!   Docker's `lastTime` header), `--until` stops at the first newer record.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use shim::logs::format;
use shim::logs::{Config, Driver, Stream};
use shim::time::Timestamp;

use super::ReadOptions;

const BLOCK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Json,
    Local,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub stream: Stream,
    pub time: Timestamp,
    /// The bytes as the container wrote them.
    pub output: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct JsonRecord<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    time: std::borrow::Cow<'a, str>,
}

/// Reads records from a stream positioned at a record boundary; stops at the end or at an
/// incomplete record (one being written). `consumed` counts the bytes of whole records.
pub(crate) struct Decoder<R> {
    r: R,
    kind: Kind,
    pub consumed: u64,
    line: Vec<u8>,
}

impl<R: BufRead> Decoder<R> {
    pub fn new(r: R, kind: Kind) -> Decoder<R> {
        Decoder {
            r,
            kind,
            consumed: 0,
            line: Vec::new(),
        }
    }

    /// The next record; `Ok(None)` at the end. Records that do not decode are skipped.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        loop {
            match self.kind {
                Kind::Json => {
                    self.line.clear();
                    let n = self.r.read_until(b'\n', &mut self.line)?;
                    if n == 0 || !self.line.ends_with(b"\n") {
                        return Ok(None);
                    }
                    self.consumed += n as u64;
                    if let Ok(rec) = serde_json::from_slice::<JsonRecord>(&self.line) {
                        return Ok(Some(Entry {
                            stream: Stream::from_name(&rec.stream).unwrap_or(Stream::Stdout),
                            time: Timestamp::parse_rfc3339(&rec.time).unwrap_or_default(),
                            output: rec.log.into_owned().into_bytes(),
                        }));
                    }
                }
                Kind::Local => {
                    let mut len = [0u8; 4];
                    if !read_full(&mut self.r, &mut len)? {
                        return Ok(None);
                    }
                    let n = u32::from_be_bytes(len) as usize;
                    self.line.resize(n + 4, 0);
                    if !read_full(&mut self.r, &mut self.line)? || self.line[n..] != len {
                        return Ok(None);
                    }
                    self.consumed += n as u64 + 8;
                    if let Some(e) = format::decode_local(&self.line[..n]) {
                        return Ok(Some(Entry {
                            stream: e.stream,
                            time: e.time,
                            output: e.output(),
                        }));
                    }
                }
            }
        }
    }
}

/// `read_exact` that tells a clean end (nothing read) from data: false at the end or when
/// the record is cut short.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// One file of the log.
#[derive(Debug, Clone)]
enum Part {
    Plain(PathBuf),
    Gz(PathBuf),
}

/// Where in a part reading starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Offset(u64),
    /// Records to skip (a gzip'd part).
    Skip(u64),
}

/// A container's log files.
#[derive(Debug, Clone)]
pub struct Log {
    pub(crate) kind: Kind,
    pub(crate) path: PathBuf,
    max_file: u32,
}

/// Where reading the current file stopped: `follow` goes on from there.
pub struct Position {
    pub(crate) file: Option<File>,
    pub(crate) offset: u64,
}

impl Position {
    /// False when there was no current file to read (not written yet, or removed with its
    /// container): following opens it by name.
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }
}

impl Log {
    pub(crate) fn new(path: PathBuf, cfg: &Config) -> Log {
        Log {
            kind: if cfg.driver == Driver::Local {
                Kind::Local
            } else {
                Kind::Json
            },
            path,
            max_file: cfg.max_file,
        }
    }

    /// The files that exist, oldest first; a rotated file that is being compressed is read
    /// as the plain one (Docker's order).
    fn parts(&self) -> Vec<Part> {
        let mut v: Vec<Part> = shim::logs::rotated(&self.path, self.max_file)
            .into_iter()
            .rev()
            .filter_map(|(plain, gz)| {
                if plain.exists() {
                    Some(Part::Plain(plain))
                } else if gz.exists() {
                    Some(Part::Gz(gz))
                } else {
                    None
                }
            })
            .collect();
        v.push(Part::Plain(self.path.clone()));
        v
    }

    /// Prints the records `opts` selects to `out`/`err`; returns where the current file ends.
    pub fn print(
        &self,
        opts: &ReadOptions,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<Position> {
        let since = opts.since.map(to_ts);
        let until = opts.until.map(to_ts);
        let mut parts = self.parts();
        if let Some(s) = since {
            // Whole files before `since` are not even opened again.
            let keep_from = parts
                .iter()
                .position(|p| self.last_time(p).is_none_or(|t| t >= s))
                .unwrap_or(parts.len() - 1);
            parts.drain(..keep_from);
        }
        let starts = match opts.tail {
            Some(n) => self.tail_starts(&parts, n)?,
            None => parts.iter().map(|_| Some(Start::Offset(0))).collect(),
        };
        let mut pos = Position {
            file: None,
            offset: 0,
        };
        let last = parts.len() - 1;
        for (i, (part, start)) in parts.iter().zip(starts).enumerate() {
            let Some(start) = start else {
                if i == last {
                    // Nothing of the current file is printed: following starts at its end.
                    if let Ok(f) = File::open(self.path()) {
                        pos.offset = f.metadata().map(|m| m.len()).unwrap_or(0);
                        pos.offset = self.end_of_records(&f, pos.offset)?;
                        pos.file = Some(f);
                    }
                }
                continue;
            };
            let done = match part {
                Part::Plain(p) => {
                    let Ok(f) = File::open(p) else { continue };
                    let Start::Offset(off) = start else { continue };
                    let mut dec = Decoder::new(
                        BufReader::with_capacity(BLOCK, ReadAt::new(&f, off)),
                        self.kind,
                    );
                    let stop = emit_all(&mut dec, opts, since, until, out, err)?;
                    if i == last {
                        pos.offset = off + dec.consumed;
                        pos.file = Some(f);
                    }
                    stop
                }
                Part::Gz(p) => {
                    let Ok(f) = File::open(p) else { continue };
                    let mut dec = Decoder::new(
                        BufReader::with_capacity(BLOCK, flate2::read::GzDecoder::new(f)),
                        self.kind,
                    );
                    if let Start::Skip(n) = start {
                        for _ in 0..n {
                            if dec.next_entry()?.is_none() {
                                break;
                            }
                        }
                    }
                    emit_all(&mut dec, opts, since, until, out, err)?
                }
            };
            if done {
                break;
            }
        }
        out.flush()?;
        err.flush()?;
        Ok(pos)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The current file opened now, at the end of its whole records, made first if the
    /// container never wrote it (as the writer makes it): a reader that holds it from before
    /// the start reads a `run --rm`'s output after the container's directory is gone.
    pub fn hold(&self) -> io::Result<Position> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o640)
            .open(&self.path)?;
        let offset = self.end_of_records(&f, f.metadata()?.len())?;
        Ok(Position {
            file: Some(f),
            offset,
        })
    }

    /// The plain rotated files newer than the one with inode `ino` and older than the one with
    /// inode `next` (the live file the follower opened before asking; `None`: all), oldest
    /// first: what a follower holding `ino` missed when the log rotated more than once. Each
    /// path is opened once and known by its descriptor's inode, so a rotation meanwhile (every
    /// file renamed one step) shows as a file seen twice, not as one read in place of another.
    /// A follower holding a file that was deleted since has no lines of it lost: it holds it.
    pub(crate) fn newer_than(&self, ino: u64, next: Option<u64>) -> Vec<File> {
        use std::os::unix::fs::MetadataExt;
        let mut seen = std::collections::HashSet::new();
        let opened: Vec<(u64, File)> = shim::logs::rotated(&self.path, self.max_file)
            .into_iter()
            .filter_map(|(p, _)| File::open(p).ok())
            .filter_map(|f| Some((f.metadata().ok()?.ino(), f)))
            .filter(|(i, _)| seen.insert(*i))
            .collect();
        // Gone (rotated out, or compressed): every plain file left is newer than it, as files
        // leave oldest first. (Was: none, and a file rotated past while the follower lagged
        // two behind was skipped whole.)
        let k = opened
            .iter()
            .position(|(i, _)| *i == ino)
            .unwrap_or(opened.len());
        let j = next
            .and_then(|n| opened.iter().position(|(i, _)| *i == n))
            .map_or(0, |j| j + 1);
        opened
            .into_iter()
            .take(k)
            .skip(j)
            .rev()
            .map(|(_, f)| f)
            .collect()
    }

    /// For each part, where `--tail n` starts reading it (`None`: not at all).
    fn tail_starts(&self, parts: &[Part], n: usize) -> io::Result<Vec<Option<Start>>> {
        let mut starts = vec![None; parts.len()];
        let mut need = n;
        for (i, part) in parts.iter().enumerate().rev() {
            if need == 0 {
                break;
            }
            match part {
                Part::Plain(p) => {
                    let Ok(f) = File::open(p) else { continue };
                    let (start, found) = self.tail_plain(&f, need)?;
                    starts[i] = Some(Start::Offset(start));
                    need -= found;
                }
                Part::Gz(p) => {
                    let Ok(f) = File::open(p) else { continue };
                    let mut dec = Decoder::new(
                        BufReader::with_capacity(BLOCK, flate2::read::GzDecoder::new(f)),
                        self.kind,
                    );
                    let mut count = 0u64;
                    while dec.next_entry()?.is_some() {
                        count += 1;
                    }
                    let take = count.min(need as u64);
                    starts[i] = Some(Start::Skip(count - take));
                    need -= take as usize;
                }
            }
        }
        Ok(starts)
    }

    /// The offset where the last `want` whole records of a plain file begin, and how many
    /// there are (fewer when the file holds fewer).
    fn tail_plain(&self, f: &File, want: usize) -> io::Result<(u64, usize)> {
        let len = f.metadata()?.len();
        let end = self.end_of_records(f, len)?;
        if want == 0 {
            return Ok((end, 0));
        }
        match self.kind {
            Kind::Json => {
                let mut buf = vec![0u8; BLOCK];
                let mut pos = end;
                let mut count = 0;
                // Each newline before the last one ends an earlier record.
                let mut first = true;
                while pos > 0 {
                    let n = (pos as usize).min(BLOCK);
                    pos -= n as u64;
                    f.read_exact_at(&mut buf[..n], pos)?;
                    for i in (0..n).rev() {
                        if buf[i] != b'\n' {
                            continue;
                        }
                        if first {
                            first = false;
                            continue;
                        }
                        count += 1;
                        if count == want {
                            return Ok((pos + i as u64 + 1, count));
                        }
                    }
                }
                Ok((0, if end > 0 { count + 1 } else { 0 }))
            }
            Kind::Local => {
                let mut pos = end;
                let mut count = 0;
                while pos >= 8 && count < want {
                    let mut len = [0u8; 4];
                    f.read_exact_at(&mut len, pos - 4)?;
                    let n = u32::from_be_bytes(len) as u64;
                    if n + 8 > pos {
                        break;
                    }
                    pos -= n + 8;
                    count += 1;
                }
                Ok((pos, count))
            }
        }
    }

    /// Where the whole records of a file end (a record being written is not one yet). Only
    /// the last bytes are looked at; a local file whose framing does not hold there is read
    /// from the start.
    fn end_of_records(&self, f: &File, len: u64) -> io::Result<u64> {
        match self.kind {
            Kind::Json => {
                let mut buf = vec![0u8; BLOCK];
                let mut pos = len;
                while pos > 0 {
                    let n = (pos as usize).min(BLOCK);
                    pos -= n as u64;
                    f.read_exact_at(&mut buf[..n], pos)?;
                    if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
                        return Ok(pos + i as u64 + 1);
                    }
                }
                Ok(0)
            }
            Kind::Local => {
                if len >= 8 {
                    let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
                    f.read_exact_at(&mut tail, len - 4)?;
                    let n = u32::from_be_bytes(tail) as u64;
                    if n + 8 <= len {
                        f.read_exact_at(&mut head, len - 8 - n)?;
                        if head == tail {
                            return Ok(len);
                        }
                    }
                } else if len == 0 {
                    return Ok(0);
                }
                let mut dec = Decoder::new(
                    BufReader::with_capacity(BLOCK, ReadAt::new(f, 0)),
                    Kind::Local,
                );
                while dec.next_entry()?.is_some() {}
                Ok(dec.consumed)
            }
        }
    }

    /// The time of a part's last record, if it can be told cheaply.
    fn last_time(&self, part: &Part) -> Option<Timestamp> {
        match part {
            Part::Plain(p) => {
                let f = File::open(p).ok()?;
                let (start, found) = self.tail_plain(&f, 1).ok()?;
                if found == 0 {
                    return None;
                }
                let mut dec = Decoder::new(BufReader::new(ReadAt::new(&f, start)), self.kind);
                dec.next_entry().ok()?.map(|e| e.time)
            }
            Part::Gz(p) => {
                let f = File::open(p).ok()?;
                let gz = flate2::read::GzDecoder::new(f);
                let extra = gz.header()?.extra()?;
                #[derive(serde::Deserialize)]
                struct Meta {
                    #[serde(rename = "lastTime")]
                    last_time: String,
                }
                let m: Meta = serde_json::from_slice(extra).ok()?;
                Timestamp::parse_rfc3339(&m.last_time)
            }
        }
    }
}

pub(crate) fn to_ts(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp(t.timestamp_nanos_opt().unwrap_or(i64::MAX))
}

/// Prints the records of `dec`; true when `until` was passed (stop reading).
fn emit_all<R: BufRead>(
    dec: &mut Decoder<R>,
    opts: &ReadOptions,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    while let Some(e) = dec.next_entry()? {
        if since.is_some_and(|s| e.time < s) {
            continue;
        }
        if until.is_some_and(|u| e.time > u) {
            return Ok(true);
        }
        emit(&e, opts.timestamps, out, err)?;
    }
    Ok(false)
}

/// One record as `docker logs` prints it.
pub(crate) fn emit(
    e: &Entry,
    timestamps: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    let target: &mut dyn Write = match e.stream {
        Stream::Stdout => out,
        Stream::Stderr => {
            // stdout is buffered: what came before goes out first.
            out.flush()?;
            err
        }
    };
    if timestamps {
        target.write_all(e.time.rfc3339().as_bytes())?;
        target.write_all(b" ")?;
    }
    target.write_all(&e.output)
}

/// A `Read` over a file from an offset, with pread (the file's own offset is not touched).
pub(crate) struct ReadAt<'a> {
    f: &'a File,
    pub pos: u64,
}

impl<'a> ReadAt<'a> {
    pub fn new(f: &'a File, pos: u64) -> ReadAt<'a> {
        ReadAt { f, pos }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.f.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(driver: &str, kv: &[(&str, &str)]) -> Config {
        let opts: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(driver, &opts).unwrap()
    }

    /// Writes `n` lines ("line i\n", stdout; every 10th on stderr) one second apart.
    fn write_lines(path: &Path, cfg: &Config, n: i64) {
        let mut w = shim::logs::Writer::open(path, cfg.clone(), &[]).unwrap();
        for i in 0..n {
            let stream = if i % 10 == 9 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            w.write_at(
                stream,
                format!("line {i}\n").as_bytes(),
                Timestamp::from_secs(1_000 + i),
            );
        }
        w.finish();
    }

    fn read(log: &Log, opts: ReadOptions) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        log.print(&opts, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn ts(secs: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn tail_and_since_across_rotated_and_compressed_files() {
        for (driver, kv) in [
            ("json-file", &[("max-size", "2k"), ("max-file", "4")][..]),
            (
                "json-file",
                &[("max-size", "2k"), ("max-file", "4"), ("compress", "true")][..],
            ),
            ("local", &[("max-size", "1k"), ("max-file", "4")][..]),
            (
                "local",
                &[("max-size", "1k"), ("max-file", "4"), ("compress", "false")][..],
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("c.log");
            let cfg = config(driver, kv);
            write_lines(&p, &cfg, 200);
            let log = Log::new(p.clone(), &cfg);
            assert!(log.parts().len() == 4, "{driver} {kv:?}: {:?}", log.parts());
            let (out, err) = read(&log, ReadOptions::default());
            let first: i64 = out.lines().next().unwrap()[5..].parse().unwrap();
            assert!(
                out.ends_with("line 198\n") && err.ends_with("line 199\n"),
                "{driver}"
            );
            // Everything from the oldest kept record on, in order, nothing twice.
            let all: Vec<i64> = out
                .lines()
                .chain(err.lines())
                .map(|l| l[5..].parse().unwrap())
                .collect();
            let mut sorted = all.clone();
            sorted.sort();
            assert_eq!(sorted, (first..200).collect::<Vec<_>>(), "{driver} {kv:?}");
            for n in [0usize, 1, 5, 37, 150, 100_000] {
                let (o, e) = read(
                    &log,
                    ReadOptions {
                        tail: Some(n),
                        ..Default::default()
                    },
                );
                let got = o.lines().count() + e.lines().count();
                assert_eq!(got, n.min(200 - first as usize), "{driver} {kv:?} tail {n}");
                if n == 5 {
                    assert_eq!(o, "line 195\nline 196\nline 197\nline 198\n");
                    assert_eq!(e, "line 199\n");
                }
            }
            let (o, _) = read(
                &log,
                ReadOptions {
                    since: Some(ts(1_190)),
                    until: Some(ts(1_192)),
                    ..Default::default()
                },
            );
            assert_eq!(o, "line 190\nline 191\nline 192\n", "{driver}");
            let (o, _) = read(
                &log,
                ReadOptions {
                    tail: Some(3),
                    timestamps: true,
                    ..Default::default()
                },
            );
            assert_eq!(
                o,
                "1970-01-01T00:19:57.000000000Z line 197\n1970-01-01T00:19:58.000000000Z line 198\n"
            );
        }
    }

    #[test]
    fn a_record_being_written_is_not_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let cfg = config("json-file", &[]);
        write_lines(&p, &cfg, 3);
        let whole = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"log\":\"half")
            .unwrap();
        let log = Log::new(p, &cfg);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let pos = log
            .print(
                &ReadOptions {
                    tail: Some(2),
                    ..Default::default()
                },
                &mut out,
                &mut err,
            )
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "line 1\nline 2\n");
        assert_eq!(pos.offset, whole);
    }

    #[test]
    fn old_records_without_limits_still_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(
            &p,
            "{\"log\":\"old\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T21:00:00.123456789Z\"}\n",
        )
        .unwrap();
        let log = Log::new(p, &config("json-file", &[]));
        assert_eq!(read(&log, ReadOptions::default()).0, "old\n");
    }
}
