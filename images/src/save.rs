//! `rbox save`: a docker-archive (manifest.json, `<id>.json` configs, `<diff_id>/layer.tar`,
//! repositories) that `docker load` and `rbox load` accept.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde_json::json;
use tar::{Builder, EntryType, Header};

use crate::digest::hex_part;
use crate::{Error, Reference, Result, Store};

impl Store {
    /// Writes the images `references` name to `out`. An image named by tag carries that tag.
    pub fn save<W: Write>(&self, references: &[String], out: W) -> Result<()> {
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut written = BTreeSet::new();
        let mut tar = Builder::new(out);
        let werr = |e: std::io::Error| Error::io("writing archive", e);
        for r in references {
            let image = self.resolve(r)?;
            let id_hex = hex_part(&image.id)?.to_string();
            let tag = Reference::parse(r)
                .ok()
                .filter(|_| !r.starts_with("sha256:"))
                .map(|p| p.familiar_tagged());
            let tag = tag.filter(|t| image.repo_tags.contains(t));
            let config_name = format!("{id_hex}.json");
            if written.insert(config_name.clone()) {
                append_bytes(&mut tar, &config_name, &self.read_blob(&id_hex)?).map_err(werr)?;
            }
            let mut layer_names = Vec::new();
            for l in &image.layers {
                let hex = hex_part(l)?;
                let name = format!("{hex}/layer.tar");
                if written.insert(name.clone()) {
                    append_dir(&mut tar, hex).map_err(werr)?;
                    append_bytes(&mut tar, &format!("{hex}/VERSION"), b"1.0").map_err(werr)?;
                    let len = self.layer_tar_len(hex)?;
                    let mut h = header(EntryType::Regular, len, 0o644);
                    h.set_path(&name).map_err(werr)?;
                    h.set_cksum();
                    let out = tar.get_mut();
                    out.write_all(h.as_bytes()).map_err(werr)?;
                    self.write_layer_tar(hex, &mut *out)?;
                    let pad = (512 - len % 512) % 512;
                    out.write_all(&vec![0u8; pad as usize]).map_err(werr)?;
                }
                layer_names.push(name);
            }
            if let (Some(t), Some(top)) = (&tag, image.layers.last()) {
                let (repo, tg) = t.rsplit_once(':').unwrap_or((t, "latest"));
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tg.to_string(), hex_part(top)?.to_string());
            }
            manifest.push(json!({
                "Config": config_name,
                "RepoTags": tag.map(|t| vec![t]),
                "Layers": layer_names,
            }));
        }
        let m = serde_json::to_vec(&manifest).map_err(|e| Error::Other(e.to_string()))?;
        append_bytes(&mut tar, "manifest.json", &m).map_err(werr)?;
        if !repositories.is_empty() {
            let r = serde_json::to_vec(&repositories).map_err(|e| Error::Other(e.to_string()))?;
            append_bytes(&mut tar, "repositories", &r).map_err(werr)?;
        }
        tar.into_inner().map_err(werr)?.flush().map_err(werr)
    }
}

fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(tar: &mut Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = header(EntryType::Regular, data.len() as u64, 0o644);
    tar.append_data(&mut h, name, data)
}

fn append_dir<W: Write>(tar: &mut Builder<W>, name: &str) -> std::io::Result<()> {
    let mut h = header(EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, format!("{name}/"), std::io::empty())
}
