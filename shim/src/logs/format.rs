//! The two record encodings.
//!
//! json-file: one JSON object per line, as Docker writes it,
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-27T21:00:00.000000000Z"}`; `log` keeps
//! the line's newline (a line cut at 16 KiB, or the output left at exit, has none).
//!
//! local: Docker's `local` driver format, a protobuf `LogEntry` (source = 1, time_nano = 2,
//! line = 3 without its newline, partial = 4, partial_log_metadata = 5 {last = 1, id = 2,
//! ordinal = 3}, attrs = 6 {key = 1, value = 2}) framed by its length as a big-endian u32
//! before and after, so the file can be read from either end. For `yes`-like output a record
//! is ~20 bytes against json-file's ~70.

use super::Stream;
use crate::time::Timestamp;

/// The extra attributes every record carries (json-file `attrs`, local `attrs`), encoded once.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    /// `,"attrs":{...}` or "".
    json: Vec<u8>,
    /// The repeated field 6, or empty.
    proto: Vec<u8>,
}

impl Attrs {
    pub fn new(pairs: &[(String, String)]) -> Attrs {
        if pairs.is_empty() {
            return Attrs::default();
        }
        let mut json = b",\"attrs\":{".to_vec();
        let mut proto = Vec::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json_string(&mut json, k.as_bytes());
            json.push(b':');
            json_string(&mut json, v.as_bytes());
            let mut attr = Vec::new();
            bytes_field(&mut attr, 1, k.as_bytes());
            bytes_field(&mut attr, 2, v.as_bytes());
            bytes_field(&mut proto, 6, &attr);
        }
        json.push(b'}');
        Attrs { json, proto }
    }
}

/// Appends `s` as a JSON string: quotes, backslashes and control characters escaped, invalid
/// UTF-8 replaced by U+FFFD.
pub fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let text = String::from_utf8_lossy(s);
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// One json-file record; `time` is the record's RFC 3339 time.
pub fn json_record(out: &mut Vec<u8>, stream: Stream, line: &[u8], time: &str, attrs: &Attrs) {
    out.extend_from_slice(b"{\"log\":");
    json_string(out, line);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b'"');
    out.extend_from_slice(&attrs.json);
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Where a piece of a long line (or of the output left at exit) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub id: String,
    /// 1 for the first piece.
    pub ordinal: u32,
    pub last: bool,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

/// One local record: `line` without its newline; `partial` for a piece of a longer line.
pub fn local_record(
    out: &mut Vec<u8>,
    stream: Stream,
    line: &[u8],
    partial: Option<&Partial>,
    time: Timestamp,
    attrs: &Attrs,
) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    bytes_field(out, 1, stream.name().as_bytes());
    if time.0 != 0 {
        // int64 as protobuf encodes it: two's complement in a varint.
        varint_field(out, 2, time.0 as u64);
    }
    if !line.is_empty() {
        bytes_field(out, 3, line);
    }
    if let Some(p) = partial {
        varint_field(out, 4, 1);
        let mut md = Vec::new();
        if p.last {
            varint_field(&mut md, 1, 1);
        }
        bytes_field(&mut md, 2, p.id.as_bytes());
        varint_field(&mut md, 3, p.ordinal as u64);
        bytes_field(out, 5, &md);
    }
    out.extend_from_slice(&attrs.proto);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

/// A decoded local record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub stream: Stream,
    pub time: Timestamp,
    pub line: Vec<u8>,
    pub partial: Option<Partial>,
}

impl LocalEntry {
    /// The bytes the container wrote: the line and its newline, unless it is a piece of a
    /// longer line other than the last (or output left unterminated at the end of a run).
    pub fn output(&self) -> Vec<u8> {
        let mut v = self.line.clone();
        if self.partial.as_ref().is_none_or(|p| p.last) {
            v.push(b'\n');
        }
        v
    }
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&[u8]> {
        let n = self.varint()? as usize;
        if n > self.0.len() {
            return None;
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }

    /// Skips a field of `wire` type; false when it cannot.
    fn skip(&mut self, wire: u64) -> Option<()> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8),
            2 => self.bytes().map(|_| ()),
            5 => self.take(4),
            _ => None,
        }
    }

    fn take(&mut self, n: usize) -> Option<()> {
        if self.0.len() < n {
            return None;
        }
        self.0 = &self.0[n..];
        Some(())
    }
}

/// Decodes the message of one local record (without its two length words).
pub fn decode_local(msg: &[u8]) -> Option<LocalEntry> {
    let mut c = Cursor(msg);
    let mut stream = Stream::Stdout;
    let (mut time, mut line, mut is_partial) = (0i64, Vec::new(), false);
    let mut partial = None;
    while !c.0.is_empty() {
        let key = c.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => stream = Stream::from_name(std::str::from_utf8(c.bytes()?).ok()?)?,
            (2, 0) => time = c.varint()? as i64,
            (3, 2) => line = c.bytes()?.to_vec(),
            (4, 0) => is_partial = c.varint()? != 0,
            (5, 2) => {
                let mut m = Cursor(c.bytes()?);
                let mut p = Partial {
                    id: String::new(),
                    ordinal: 0,
                    last: false,
                };
                while !m.0.is_empty() {
                    let k = m.varint()?;
                    match (k >> 3, k & 7) {
                        (1, 0) => p.last = m.varint()? != 0,
                        (2, 2) => p.id = String::from_utf8_lossy(m.bytes()?).into_owned(),
                        (3, 0) => p.ordinal = m.varint()? as u32,
                        (_, w) => m.skip(w)?,
                    }
                }
                partial = Some(p);
            }
            (_, w) => c.skip(w)?,
        }
    }
    if is_partial && partial.is_none() {
        partial = Some(Partial {
            id: String::new(),
            ordinal: 0,
            last: false,
        });
    }
    Some(LocalEntry {
        stream,
        time: Timestamp(time),
        line,
        partial: if is_partial { partial } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_escape_as_json() {
        let mut out = Vec::new();
        json_record(
            &mut out,
            Stream::Stderr,
            b"a\"b\\c\t\x01\xff\n",
            "2026-01-01T00:00:00.000000000Z",
            &Attrs::new(&[("k".into(), "v".into())]),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"a\\\"b\\\\c\\t\\u0001\u{fffd}\\n\",\"stream\":\"stderr\",\"attrs\":{\"k\":\"v\"},\"time\":\"2026-01-01T00:00:00.000000000Z\"}\n"
        );
    }

    #[test]
    fn local_records_round_trip_and_frame_both_ends() {
        let p = Partial {
            id: "x1".into(),
            ordinal: 2,
            last: true,
        };
        let attrs = Attrs::new(&[("a".into(), "b".into())]);
        for (line, partial) in [
            (&b"hello"[..], None),
            (&b""[..], None),
            (&b"piece"[..], Some(&p)),
        ] {
            let mut out = Vec::new();
            local_record(
                &mut out,
                Stream::Stderr,
                line,
                partial,
                Timestamp(-5),
                &attrs,
            );
            let n = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            assert_eq!(out.len(), n + 8);
            assert_eq!(out[out.len() - 4..], out[..4]);
            let e = decode_local(&out[4..4 + n]).unwrap();
            assert_eq!(e.stream, Stream::Stderr);
            assert_eq!(e.time, Timestamp(-5));
            assert_eq!(e.line, line);
            assert_eq!(e.partial.as_ref(), partial);
        }
        assert_eq!(decode_local(&[0x0a, 0x05, b'x']), None);
    }
}
