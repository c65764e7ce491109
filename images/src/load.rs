//! `rbox load`: docker-save archives (manifest.json) and OCI image layout archives
//! (oci-layout, index.json, blobs/sha256). Every blob is checked against the digest that names
//! it and every layer against the config's diff_ids before anything is registered.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::archive::{spool, Member, Members};
use crate::digest::hex_part;
use crate::store::Staged;
use crate::{Error, Image, Reference, Result, Store};

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One image an archive held, with the tags the archive gave it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub image: Image,
    pub tags: Vec<String>,
}

impl Store {
    /// Loads every image of the (optionally gzipped) archive. All images are verified before
    /// the first is registered.
    pub fn load<R: Read>(&self, input: R) -> Result<Vec<Loaded>> {
        let stage = self.staging_dir()?;
        let members = Members::extract(input, &stage.0)?;
        let staged = if members.contains("manifest.json") {
            docker_archive(&members)?
        } else if members.contains("index.json") {
            oci_layout(&members)?
        } else {
            return Err(Error::InvalidArchive(
                "neither manifest.json (docker save) nor index.json (OCI layout) in archive".into(),
            ));
        };
        let mut out = Vec::new();
        for s in staged {
            let tags = s.tags.clone();
            out.push(Loaded {
                image: self.commit(s)?,
                tags,
            });
        }
        Ok(out)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_archive(members: &Members) -> Result<Vec<Staged>> {
    let manifests: Vec<DockerManifest> = serde_json::from_slice(&members.read("manifest.json")?)
        .map_err(|e| Error::InvalidArchive(format!("manifest.json: {e}")))?;
    if manifests.is_empty() {
        return Err(Error::InvalidArchive(
            "manifest.json lists no images".into(),
        ));
    }
    let mut out = Vec::new();
    for m in manifests {
        let cfg_member = member(members, &m.config)?;
        // Docker names the config after its digest: "<hex>.json" or "blobs/sha256/<hex>".
        let stem = Path::new(&m.config)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem.len() == 64
            && stem.bytes().all(|b| b.is_ascii_hexdigit())
            && stem != cfg_member.sha256
        {
            return Err(mismatch(
                &format!("config {}", m.config),
                &stem,
                &cfg_member.sha256,
            ));
        }
        let config =
            std::fs::read(&cfg_member.path).map_err(Error::at(&cfg_member.path, "reading"))?;
        let diff_ids = diff_ids(&config, &m.config)?;
        if diff_ids.len() != m.layers.len() {
            return Err(Error::InvalidArchive(format!(
                "{} lists {} layers but its config has {} diff_ids",
                "manifest.json",
                m.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (name, want) in m.layers.iter().zip(&diff_ids) {
            let hex = uncompressed(member(members, name)?, name)?;
            check(&format!("layer {name}"), want, &hex.0)?;
            layers.push(hex);
        }
        let tags = m
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| normalize_tag(t))
            .collect::<Result<_>>()?;
        out.push(Staged {
            config,
            layers,
            tags,
            repo_digests: Vec::new(),
        });
    }
    Ok(out)
}

fn oci_layout(members: &Members) -> Result<Vec<Staged>> {
    let index: ImageIndex = serde_json::from_slice(&members.read("index.json")?)
        .map_err(|e| Error::InvalidArchive(format!("index.json: {e}")))?;
    if index.manifests().is_empty() {
        return Err(Error::InvalidArchive(
            "index.json lists no manifests".into(),
        ));
    }
    let mut out = Vec::new();
    for desc in index.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        let name = annotations
            .get(CONTAINERD_NAME)
            .or_else(|| {
                annotations
                    .get(OCI_REF_NAME)
                    .filter(|n| n.contains([':', '/']))
            })
            .map(|n| Reference::parse(n))
            .transpose()?;
        let (manifest_digest, manifest) = resolve_manifest(members, desc, 0)?;
        let config_desc = manifest.config();
        let config_member = blob(members, config_desc)?;
        let config = std::fs::read(&config_member.path)
            .map_err(Error::at(&config_member.path, "reading"))?;
        let diff_ids = diff_ids(&config, "config")?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::InvalidArchive(format!(
                "manifest {manifest_digest} lists {} layers but its config has {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, want) in manifest.layers().iter().zip(&diff_ids) {
            if matches!(
                l.media_type(),
                MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd
            ) {
                return Err(Error::InvalidArchive(format!(
                    "layer {}: zstd layers are not supported",
                    l.digest()
                )));
            }
            let m = blob(members, l)?;
            let hex = uncompressed(m, l.digest().as_ref())?;
            check(&format!("layer {}", l.digest()), want, &hex.0)?;
            layers.push(hex);
        }
        let (tags, repo_digests) = match name {
            Some(r) => (
                vec![r.familiar_tagged()],
                vec![format!("{}@{manifest_digest}", r.familiar_name())],
            ),
            None => (Vec::new(), Vec::new()),
        };
        out.push(Staged {
            config,
            layers,
            tags,
            repo_digests,
        });
    }
    Ok(out)
}

/// Follows nested indexes (multi-platform images) to this platform's manifest.
fn resolve_manifest(
    members: &Members,
    desc: &Descriptor,
    depth: u32,
) -> Result<(String, ImageManifest)> {
    let m = blob(members, desc)?;
    let data = std::fs::read(&m.path).map_err(Error::at(&m.path, "reading"))?;
    let is_index = matches!(desc.media_type(), MediaType::ImageIndex)
        || desc.media_type().to_string().contains("manifest.list");
    if !is_index {
        let manifest: ImageManifest = serde_json::from_slice(&data)
            .map_err(|e| Error::InvalidArchive(format!("manifest {}: {e}", desc.digest())))?;
        return Ok((desc.digest().to_string(), manifest));
    }
    if depth > 2 {
        return Err(Error::InvalidArchive(
            "image indexes nested too deeply".into(),
        ));
    }
    let index: ImageIndex = serde_json::from_slice(&data)
        .map_err(|e| Error::InvalidArchive(format!("index {}: {e}", desc.digest())))?;
    let chosen = crate::pull::choose_platform(&index, &crate::Platform::host())
        .or_else(|| index.manifests().first())
        .ok_or_else(|| Error::InvalidArchive(format!("index {} is empty", desc.digest())))?;
    resolve_manifest(members, chosen, depth + 1)
}

/// The archive member a descriptor names, checked against its digest and size.
fn blob<'a>(members: &'a Members, desc: &Descriptor) -> Result<&'a Member> {
    let digest = desc.digest().to_string();
    let hex = hex_part(&digest)?;
    let m = members
        .get(&format!("blobs/sha256/{hex}"))
        .ok_or_else(|| Error::InvalidArchive(format!("blob {digest} missing from archive")))?;
    if m.sha256 != hex {
        return Err(mismatch(&format!("blob {digest}"), hex, &m.sha256));
    }
    if m.size != desc.size() {
        return Err(Error::InvalidArchive(format!(
            "blob {digest}: size {} but descriptor says {}",
            m.size,
            desc.size()
        )));
    }
    Ok(m)
}

fn member<'a>(members: &'a Members, name: &str) -> Result<&'a Member> {
    members
        .get(name)
        .ok_or_else(|| Error::InvalidArchive(format!("{name} missing from archive")))
}

/// (diff_id hex, path of the uncompressed layer tar): the member itself when it is a plain
/// tar, else a gunzipped copy in the staging dir.
fn uncompressed(m: &Member, what: &str) -> Result<(String, std::path::PathBuf)> {
    let mut head = [0u8; 2];
    let n = File::open(&m.path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(Error::at(&m.path, "reading"))?;
    if n == 2 && head == [0x1f, 0x8b] {
        let dst = m.path.with_extension("tar");
        let f = File::open(&m.path).map_err(Error::at(&m.path, "reading"))?;
        let (hex, _) = spool(BufReader::new(f), &dst)
            .map_err(|e| Error::InvalidArchive(format!("layer {what}: {e}")))?;
        Ok((hex, dst))
    } else {
        Ok((m.sha256.clone(), m.path.clone()))
    }
}

pub(crate) fn diff_ids(config: &[u8], what: &str) -> Result<Vec<String>> {
    let cfg: ImageConfiguration = serde_json::from_slice(config)
        .map_err(|e| Error::InvalidArchive(format!("image config {what}: {e}")))?;
    let ids = cfg.rootfs().diff_ids().clone();
    for id in &ids {
        hex_part(id)?;
    }
    Ok(ids)
}

pub(crate) fn check(what: &str, want: &str, got_hex: &str) -> Result<()> {
    let want_hex = hex_part(want)?;
    if want_hex != got_hex {
        return Err(mismatch(what, want_hex, got_hex));
    }
    Ok(())
}

pub(crate) fn mismatch(what: &str, expected: &str, actual: &str) -> Error {
    Error::DigestMismatch {
        what: what.to_string(),
        expected: format!("sha256:{expected}"),
        actual: format!("sha256:{actual}"),
    }
}

fn normalize_tag(t: &str) -> Result<String> {
    Ok(Reference::parse(t)?.familiar_tagged())
}
