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

/// Prints one log record to stdout/stderr as `docker logs` does.
fn emit(line: &str, opts: &ReadOptions, out: &mut dyn Write, err: &mut dyn Write) {
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
    let target: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
    if opts.timestamps {
        let _ = write!(target, "{} ", v["time"].as_str().unwrap_or(""));
    }
    let _ = target.write_all(text.as_bytes());
}

/// Prints the log; returns the byte offset reached, for following.
pub fn print(path: &Path, opts: &ReadOptions) -> io::Result<u64> {
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
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    for l in &lines[start..] {
        emit(l, opts, &mut out, &mut err);
    }
    out.flush()?;
    Ok(text.len() as u64)
}

/// Prints records appended after `offset` (whole lines only); returns the new offset.
pub fn print_from(path: &Path, offset: u64, opts: &ReadOptions) -> io::Result<u64> {
    let Ok(mut f) = File::open(path) else {
        return Ok(offset);
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(f);
    let mut pos = offset;
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        emit(line.trim_end(), opts, &mut out, &mut err);
    }
    out.flush()?;
    Ok(pos)
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
