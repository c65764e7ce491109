//! Reading archives: transparent gzip, and an outer archive (docker-save or OCI layout)
//! spooled into the staging dir entry by entry, each file hashed on the way.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tar::{Archive, EntryType};

use crate::digest::copy_hashed;
use crate::{Error, Result};

/// `reader`, gunzipped if it starts with the gzip magic.
pub(crate) fn maybe_gunzip<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Copies `reader` (gunzipped if needed) to `dst`, returning (sha256 hex, bytes).
pub(crate) fn spool<R: Read>(reader: R, dst: &Path) -> Result<(String, u64)> {
    let input = maybe_gunzip(BufReader::with_capacity(1 << 16, reader))
        .map_err(|e| Error::InvalidArchive(format!("reading input: {e}")))?;
    let f = File::create(dst).map_err(Error::at(dst, "creating"))?;
    let mut out = BufWriter::with_capacity(1 << 16, f);
    let (hex, n) = copy_hashed(input, &mut out)
        .map_err(|e| Error::InvalidArchive(format!("reading input: {e}")))?;
    out.flush().map_err(Error::at(dst, "writing"))?;
    Ok((hex, n))
}

/// One regular file of an outer archive, spooled to disk.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// The files of an outer archive by their (normalized) names; symlinks resolved to the files
/// they name (docker save links repeated layers).
pub(crate) struct Members {
    files: HashMap<String, Member>,
    links: HashMap<String, String>,
}

impl Members {
    /// Spools every regular file of the (optionally gzipped) tar `reader` into `dir`.
    pub(crate) fn extract<R: Read>(reader: R, dir: &Path) -> Result<Members> {
        let bad = |e: io::Error| Error::InvalidArchive(format!("reading archive: {e}"));
        let input = maybe_gunzip(BufReader::with_capacity(1 << 16, reader)).map_err(bad)?;
        let mut archive = Archive::new(input);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let mut count = 0usize;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let Some(name) = normalize(&entry.path().map_err(bad)?) else {
                continue;
            };
            match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => {
                    count += 1;
                    let dst = dir.join(format!("m{count}"));
                    let f = File::create(&dst).map_err(Error::at(&dst, "creating"))?;
                    let mut out = BufWriter::with_capacity(1 << 16, f);
                    let (sha256, size) = copy_hashed(&mut entry, &mut out).map_err(bad)?;
                    out.flush().map_err(Error::at(&dst, "writing"))?;
                    files.insert(
                        name,
                        Member {
                            path: dst,
                            sha256,
                            size,
                        },
                    );
                }
                EntryType::Symlink | EntryType::Link => {
                    if let Some(target) = entry.link_name().map_err(bad)? {
                        let base = if entry.header().entry_type() == EntryType::Symlink {
                            Path::new(&name)
                                .parent()
                                .unwrap_or(Path::new(""))
                                .join(&target)
                        } else {
                            target.into_owned()
                        };
                        if let Some(t) = normalize(&base) {
                            links.insert(name, t);
                        }
                    }
                }
                _ => {}
            }
        }
        if files.is_empty() {
            return Err(Error::InvalidArchive(
                "not an image archive: no files in it".into(),
            ));
        }
        Ok(Members { files, links })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Member> {
        let mut name = normalize(Path::new(name))?;
        for _ in 0..8 {
            if let Some(m) = self.files.get(&name) {
                return Some(m);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// A member's content (small JSON files).
    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>> {
        let m = self
            .get(name)
            .ok_or_else(|| Error::InvalidArchive(format!("{name} missing from archive")))?;
        std::fs::read(&m.path).map_err(Error::at(&m.path, "reading"))
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// "./a/../b" -> "b"; names that climb out of the archive are dropped.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
