//! sha256 digests in the "sha256:<hex>" form, computed while data streams through.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The 64-hex part of a "sha256:<hex>" digest, validated, so it is safe in a file name.
pub(crate) fn hex_part(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::InvalidArchive(format!("unsupported digest {digest:?}")))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(Error::InvalidArchive(format!("invalid digest {digest:?}")));
    }
    Ok(hex)
}

/// Passes reads through, hashing and counting every byte.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads to the end (tar leaves trailing padding unread) and returns (hex digest, bytes).
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Copies `reader` into `out`, returning (hex digest, bytes).
pub(crate) fn copy_hashed<R: Read, W: Write>(reader: R, out: &mut W) -> io::Result<(String, u64)> {
    let mut h = HashingReader::new(reader);
    io::copy(&mut h, out)?;
    h.finish()
}
