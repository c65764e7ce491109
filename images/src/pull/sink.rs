//! Where a downloaded layer goes: hashed as it arrives (the registry digest), gunzipped on the
//! fly when compressed and hashed again (the diff_id), so only the uncompressed tar the store
//! keeps ever reaches the disk, in one pass.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Passes writes through, hashing and counting them.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Out {
    /// Fewer than two bytes seen: compression not known yet.
    Undecided(Vec<u8>, BufWriter<File>),
    Plain(HashingWriter<BufWriter<File>>),
    Gzip(Box<MultiGzDecoder<HashingWriter<BufWriter<File>>>>),
    Taken,
}

/// What a finished download was.
pub(crate) struct Written {
    /// sha256 hex of the bytes as the registry sent them.
    pub digest: String,
    /// Bytes received.
    pub size: u64,
    /// sha256 hex of the uncompressed tar written to disk.
    pub diff_id: String,
}

pub(crate) struct LayerSink {
    received: Sha256,
    size: u64,
    out: Out,
}

impl LayerSink {
    pub(crate) fn create(path: &Path) -> Result<LayerSink> {
        let f = File::create(path).map_err(Error::at(path, "creating"))?;
        Ok(LayerSink {
            received: Sha256::new(),
            size: 0,
            out: Out::Undecided(Vec::new(), BufWriter::with_capacity(1 << 17, f)),
        })
    }

    pub(crate) fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.received.update(chunk);
        self.size += chunk.len() as u64;
        if let Out::Undecided(head, _) = &mut self.out {
            head.extend_from_slice(chunk);
            if head.len() >= GZIP_MAGIC.len() {
                self.decide()?;
            }
            return Ok(());
        }
        self.write_out(chunk)
    }

    /// Picks plain or gzip from the bytes seen so far and writes them.
    fn decide(&mut self) -> io::Result<()> {
        if !matches!(self.out, Out::Undecided(..)) {
            return Ok(());
        }
        let Out::Undecided(head, file) = std::mem::replace(&mut self.out, Out::Taken) else {
            unreachable!("checked above")
        };
        let w = HashingWriter {
            inner: file,
            hasher: Sha256::new(),
            count: 0,
        };
        self.out = if head.starts_with(&GZIP_MAGIC) {
            Out::Gzip(Box::new(MultiGzDecoder::new(w)))
        } else {
            Out::Plain(w)
        };
        self.write_out(&head)
    }

    fn write_out(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Out::Plain(w) => w.write_all(data),
            Out::Gzip(w) => w.write_all(data),
            Out::Undecided(..) | Out::Taken => unreachable!("decided before writing"),
        }
    }

    /// Flushes everything to disk and returns the digests.
    pub(crate) fn finish(mut self) -> io::Result<Written> {
        self.decide()?;
        let inner = match std::mem::replace(&mut self.out, Out::Taken) {
            Out::Plain(w) => w,
            Out::Gzip(w) => w.finish()?,
            Out::Undecided(..) | Out::Taken => unreachable!(),
        };
        let HashingWriter {
            inner,
            hasher,
            count: _,
        } = inner;
        inner.into_inner().map_err(|e| e.into_error())?;
        Ok(Written {
            digest: hex::encode(self.received.finalize()),
            size: self.size,
            diff_id: hex::encode(hasher.finalize()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn sha(d: &[u8]) -> String {
        hex::encode(Sha256::digest(d))
    }

    fn sink_all(data: &[u8], chunk: usize) -> (Written, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let mut s = LayerSink::create(&p).unwrap();
        for c in data.chunks(chunk) {
            s.write(c).unwrap();
        }
        let w = s.finish().unwrap();
        (w, std::fs::read(&p).unwrap())
    }

    #[test]
    fn gzip_is_unpacked_and_both_digests_kept() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&plain).unwrap();
        let gz = e.finish().unwrap();
        for chunk in [1, 7, 4096] {
            let (w, disk) = sink_all(&gz, chunk);
            assert_eq!(w.digest, sha(&gz));
            assert_eq!(w.size, gz.len() as u64);
            assert_eq!(w.diff_id, sha(&plain));
            assert_eq!(disk, plain);
        }
    }

    #[test]
    fn plain_and_tiny_blobs_pass_through() {
        for data in [&b""[..], b"x", b"plain tar bytes"] {
            let (w, disk) = sink_all(data, 1);
            assert_eq!(w.digest, sha(data));
            assert_eq!(w.diff_id, sha(data));
            assert_eq!(disk, data);
        }
    }

    #[test]
    fn truncated_gzip_fails() {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&[7u8; 50_000]).unwrap();
        let gz = e.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut s = LayerSink::create(&dir.path().join("l")).unwrap();
        s.write(&gz[..gz.len() / 2]).unwrap();
        assert!(s.finish().is_err());
    }
}
