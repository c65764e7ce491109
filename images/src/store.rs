//! The store on disk: lookups, registering staged images under the lock, removal, tags, GC.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use oci_spec::image::ImageConfiguration;

use crate::digest::hex_part;
use crate::reference::Reference;
use crate::tarsplit;
use crate::unpack::unpack_layer;
use crate::{Error, Image, ImageConfig, Result};

const REPOSITORIES: &str = "repositories.json";

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `repositories.json`: every image (tagged or dangling) and the tags pointing at them.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Repositories {
    /// "busybox:latest" -> "sha256:<id>"
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    images: BTreeMap<String, Record>,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(default)]
    repo_digests: Vec<String>,
}

/// An image ready to be registered: its config bytes and verified, uncompressed layer tars in
/// the store's staging area.
pub(crate) struct Staged {
    pub config: Vec<u8>,
    /// (diff_id hex, uncompressed tar), lowest first.
    pub layers: Vec<(String, PathBuf)>,
    /// "busybox:latest"
    pub tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

/// What `remove` did, in Docker's output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

pub struct Store {
    root: PathBuf,
    dir: PathBuf,
}

/// A staging path removed on drop (a file or directory), unless it was renamed away.
pub(crate) struct TempPath(pub PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0).or_else(|_| fs::remove_file(&self.0));
    }
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        if let Ok(m) = fs::metadata(root) {
            if !m.is_dir() {
                return Err(Error::Other(format!(
                    "root {} is not a directory",
                    root.display()
                )));
            }
        }
        let dir = root.join("images");
        for d in [
            dir.join("blobs/sha256"),
            dir.join("layers"),
            dir.join("splits"),
            dir.join("tmp"),
        ] {
            fs::create_dir_all(&d).map_err(Error::at(&d, "creating"))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            dir,
        })
    }

    /// `name[:tag]` (short names as Docker), `name@digest`, full id or unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let repos = self.read_repos()?;
        let (id, _) = find(&repos, reference)?;
        self.image(&repos, &id)
    }

    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .map(|l| self.layer_dir(l.trim_start_matches("sha256:")))
            .collect()
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let repos = self.read_repos()?;
        let mut out = repos
            .images
            .keys()
            .map(|id| self.image(&repos, id))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Adds tag `target` to the image `source` names.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let tag = Reference::parse(target)?;
        if tag.digest.is_some() {
            return Err(Error::InvalidReference(format!(
                "{target:?}: cannot tag with a digest"
            )));
        }
        let _lock = self.lock()?;
        let mut repos = self.read_repos()?;
        let (id, _) = find(&repos, source)?;
        repos.tags.insert(tag.familiar_tagged(), id);
        self.write_repos(&repos)
    }

    /// Removes a tag or an image as `docker rmi` does. `in_use(id)` tells whether a container
    /// uses the image; such an image is only untagged, and only with `force`.
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        let _lock = self.lock()?;
        let mut repos = self.read_repos()?;
        let (id, by_tag) = find(&repos, reference)?;
        let tags: Vec<String> = repos
            .tags
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        let short = short_id(&id);
        let mut done = Vec::new();
        let used = in_use(&id);
        match by_tag {
            Some(tag) if tags.len() > 1 => {
                repos.tags.remove(&tag);
                done.push(Removed::Untagged(tag));
            }
            Some(tag) => {
                if used && !force {
                    return Err(Error::Conflict(format!(
                        "unable to remove repository reference \"{reference}\" (must force) - a container is using its referenced image {short}"
                    )));
                }
                repos.tags.remove(&tag);
                done.push(Removed::Untagged(tag));
            }
            None => {
                if tags.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                if used && !force {
                    return Err(Error::Conflict(format!(
                        "unable to delete {short} (must be forced) - image is being used by a container"
                    )));
                }
                for t in tags {
                    repos.tags.remove(&t);
                    done.push(Removed::Untagged(t));
                }
            }
        }
        let tagged = repos.tags.values().any(|v| *v == id);
        // An image a container still uses stays (dangling), so its layers stay mounted-safe.
        if !tagged && !used {
            repos.images.remove(&id);
            done.push(Removed::Deleted(id));
        }
        self.write_repos(&repos)?;
        self.gc(&repos);
        Ok(done)
    }

    /// Removes what crashed writers left: temp files and layers or blobs no image refers to
    /// (a kill -9 between unpacking a layer and registering its image). For `system prune`.
    pub fn prune(&self) -> Result<()> {
        let _lock = self.lock()?;
        let repos = self.read_repos()?;
        self.gc(&repos);
        Ok(())
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    fn layer_dir(&self, hex: &str) -> PathBuf {
        self.dir.join("layers").join(hex)
    }

    /// What rebuilds the layer's tar from its directory (`tarsplit`).
    fn split_path(&self, hex: &str) -> PathBuf {
        self.dir.join("splits").join(hex)
    }

    /// Length of layer `hex`'s uncompressed tar (the bytes its diff_id is the digest of).
    pub(crate) fn layer_tar_len(&self, hex: &str) -> Result<u64> {
        let split = self.split_path(hex);
        if split.is_file() {
            return tarsplit::tar_len(&split);
        }
        // Stores written before splits existed keep the whole tar as a blob.
        let blob = self.blob_path(hex);
        Ok(fs::metadata(&blob)
            .map_err(Error::at(&blob, "reading layer"))?
            .len())
    }

    /// Writes layer `hex`'s uncompressed tar to `out`, checked against its diff_id.
    pub(crate) fn write_layer_tar<W: std::io::Write>(&self, hex: &str, mut out: W) -> Result<()> {
        let split = self.split_path(hex);
        if split.is_file() {
            return tarsplit::write_tar(&split, &self.layer_dir(hex), hex, out);
        }
        let blob = self.blob_path(hex);
        let mut f = File::open(&blob).map_err(Error::at(&blob, "reading layer"))?;
        std::io::copy(&mut f, &mut out).map_err(Error::at(&blob, "reading layer"))?;
        Ok(())
    }

    /// The `--root` this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the layer with this diff_id is stored (unpacked, with what rebuilds its tar).
    pub(crate) fn has_layer(&self, hex: &str) -> bool {
        self.layer_dir(hex).is_dir()
            && (self.split_path(hex).is_file() || self.blob_path(hex).is_file())
    }

    /// A fresh staging path (not created) under `tmp/`, named so that a crash's leftovers are
    /// recognised and removed by the next writer.
    pub(crate) fn temp_path(&self, parent: &Path, what: &str) -> TempPath {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::SeqCst);
        TempPath(parent.join(format!(
            "{}{}-{n}-{what}",
            statefile::TEMP_PREFIX,
            std::process::id()
        )))
    }

    /// A new empty staging directory.
    pub(crate) fn staging_dir(&self) -> Result<TempPath> {
        let t = self.temp_path(&self.dir.join("tmp"), "stage");
        fs::create_dir(&t.0).map_err(Error::at(&t.0, "creating"))?;
        Ok(t)
    }

    /// Takes the store's write lock and clears what crashed writers left.
    fn lock(&self) -> Result<statefile::Lock> {
        let lock = statefile::Lock::exclusive(&self.root.join("locks/images.lock"))?;
        for d in [
            self.dir.join("tmp"),
            self.dir.join("layers"),
            self.dir.join("splits"),
            self.dir.join("blobs/sha256"),
            self.dir.clone(),
        ] {
            statefile::cleanup_temp(&d);
        }
        Ok(lock)
    }

    fn read_repos(&self) -> Result<Repositories> {
        Ok(statefile::read_json_opt(&self.dir.join(REPOSITORIES))?.unwrap_or_default())
    }

    fn write_repos(&self, repos: &Repositories) -> Result<()> {
        Ok(statefile::write_json(&self.dir.join(REPOSITORIES), repos)?)
    }

    fn image(&self, repos: &Repositories, id: &str) -> Result<Image> {
        let hex = hex_part(id)?;
        let path = self.blob_path(hex);
        let data = fs::read(&path).map_err(Error::at(&path, "reading image config"))?;
        let cfg: ImageConfiguration = serde_json::from_slice(&data)
            .map_err(|e| Error::Other(format!("image config {id}: {e}")))?;
        let layers = cfg.rootfs().diff_ids().clone();
        let size = layers
            .iter()
            .filter_map(|l| hex_part(l).ok())
            .filter_map(|h| self.layer_tar_len(h).ok())
            .sum();
        Ok(Image {
            id: id.to_string(),
            repo_tags: repos
                .tags
                .iter()
                .filter(|(_, v)| *v == id)
                .map(|(k, _)| k.clone())
                .collect(),
            config: ImageConfig {
                healthcheck: healthcheck_of(&data),
                ..config_of(&cfg)
            },
            layers,
            repo_digests: repos
                .images
                .get(id)
                .map(|r| r.repo_digests.clone())
                .unwrap_or_default(),
            created: cfg.created().clone(),
            architecture: cfg.architecture().to_string(),
            os: cfg.os().to_string(),
            size,
        })
    }

    /// Unpacks a layer tar into a temp dir beside the layer dirs and writes its split beside
    /// the splits (both renamed into place later).
    fn unpack_temp(&self, hex: &str, tar: &Path) -> Result<(TempPath, TempPath)> {
        let t = self.temp_path(&self.dir.join("layers"), hex);
        fs::create_dir(&t.0).map_err(Error::at(&t.0, "creating"))?;
        // The layer root is the container's "/": traversable by every user, whatever the umask.
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755))
            .map_err(Error::at(&t.0, "chmod"))?;
        let f = File::open(tar).map_err(Error::at(tar, "opening"))?;
        unpack_layer(BufReader::with_capacity(1 << 16, f), &t.0).map_err(|e| match e {
            Error::UnsafePath { .. } | Error::InvalidArchive(_) => e,
            other => Error::Other(format!("unpacking layer sha256:{hex}: {other}")),
        })?;
        let split = self.temp_path(&self.dir.join("splits"), hex);
        tarsplit::build(tar, &t.0, &split.0)?;
        Ok((t, split))
    }

    /// Registers a staged image: layers unpacked (outside the lock when new), then under the
    /// lock renamed into place, blobs written, tags set. On error, whatever this call added is
    /// removed again.
    pub(crate) fn commit(&self, staged: Staged) -> Result<Image> {
        let id_hex = crate::digest::sha256_hex(&staged.config);
        let id = format!("sha256:{id_hex}");
        let mut pre: HashMap<String, (TempPath, TempPath)> = HashMap::new();
        for (hex, tar) in &staged.layers {
            if !self.has_layer(hex) && !pre.contains_key(hex) {
                pre.insert(hex.clone(), self.unpack_temp(hex, tar)?);
            }
        }
        let _lock = self.lock()?;
        let mut created: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<Image> {
            for (hex, tar) in &staged.layers {
                if self.has_layer(hex) {
                    continue;
                }
                // The layer tar itself is not kept: the tree plus its split rebuild it.
                let (tmp, split) = match pre.remove(hex) {
                    Some(t) => t,
                    None => self.unpack_temp(hex, tar)?,
                };
                let dir = self.layer_dir(hex);
                if dir.exists() {
                    // A layer left without its split (a crash between the two renames).
                    fs::remove_dir_all(&dir).map_err(Error::at(&dir, "replacing layer"))?;
                }
                fs::rename(&tmp.0, &dir).map_err(Error::at(&dir, "creating layer"))?;
                created.push(dir);
                let split_path = self.split_path(hex);
                fs::rename(&split.0, &split_path)
                    .map_err(Error::at(&split_path, "storing layer"))?;
                created.push(split_path);
            }
            let cfg_path = self.blob_path(&id_hex);
            if !cfg_path.exists() {
                statefile::write_atomic(&cfg_path, &staged.config)?;
                created.push(cfg_path);
            }
            let mut repos = self.read_repos()?;
            let record = repos.images.entry(id.clone()).or_default();
            for d in &staged.repo_digests {
                if !record.repo_digests.contains(d) {
                    record.repo_digests.push(d.clone());
                }
            }
            for t in &staged.tags {
                repos.tags.insert(t.clone(), id.clone());
            }
            self.write_repos(&repos)?;
            self.image(&repos, &id)
        })();
        if result.is_err() {
            for p in created {
                let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
            }
        }
        result
    }

    /// Removes blobs and layer dirs no image refers to. Runs under the lock.
    fn gc(&self, repos: &Repositories) {
        let mut keep = BTreeSet::new();
        for id in repos.images.keys() {
            let Ok(hex) = hex_part(id) else { continue };
            keep.insert(hex.to_string());
            if let Ok(cfg) = self.read_config(hex) {
                keep.extend(
                    cfg.rootfs()
                        .diff_ids()
                        .iter()
                        .filter_map(|d| hex_part(d).ok())
                        .map(str::to_string),
                );
            }
        }
        for d in [
            self.dir.join("blobs/sha256"),
            self.dir.join("layers"),
            self.dir.join("splits"),
        ] {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || keep.contains(&name) {
                    continue;
                }
                let p = e.path();
                if let Err(err) = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p)) {
                    tracing::warn!("removing unused {}: {err}", p.display());
                }
            }
        }
    }

    pub(crate) fn read_config(&self, hex: &str) -> Result<ImageConfiguration> {
        let path = self.blob_path(hex);
        let f = File::open(&path).map_err(Error::at(&path, "reading image config"))?;
        serde_json::from_reader(BufReader::new(f))
            .map_err(|e| Error::Other(format!("image config sha256:{hex}: {e}")))
    }

    /// Reads a stored blob whole.
    pub(crate) fn read_blob(&self, hex: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(hex);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(Error::at(&path, "reading"))?;
        Ok(data)
    }
}

/// The image id for `reference`, and the tag if it was found by tag.
fn find(repos: &Repositories, reference: &str) -> Result<(String, Option<String>)> {
    if let Some(hex) = reference.strip_prefix("sha256:") {
        return by_prefix(repos, hex, reference).map(|id| (id, None));
    }
    match Reference::parse(reference) {
        Ok(r) if r.digest.is_some() => {
            let want = format!(
                "{}@{}",
                r.familiar_name(),
                r.digest.as_deref().unwrap_or_default()
            );
            if let Some((id, _)) = repos
                .images
                .iter()
                .find(|(_, rec)| rec.repo_digests.contains(&want))
            {
                return Ok((id.clone(), None));
            }
        }
        Ok(r) => {
            let tag = r.familiar_tagged();
            if let Some(id) = repos.tags.get(&tag) {
                return Ok((id.clone(), Some(tag)));
            }
        }
        Err(e) if !reference.bytes().all(|b| b.is_ascii_hexdigit()) => return Err(e),
        Err(_) => {}
    }
    if !reference.is_empty()
        && reference
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        if let Ok(id) = by_prefix(repos, reference, reference) {
            return Ok((id, None));
        }
    }
    let shown = Reference::parse(reference)
        .map(|r| r.familiar_tagged())
        .unwrap_or_else(|_| reference.to_string());
    Err(Error::NotFound(shown))
}

fn by_prefix(repos: &Repositories, hex: &str, reference: &str) -> Result<String> {
    let matches: Vec<&String> = repos
        .images
        .keys()
        .filter(|id| id["sha256:".len()..].starts_with(hex))
        .collect();
    match matches.as_slice() {
        [one] if !hex.is_empty() => Ok((*one).clone()),
        [_, _, ..] if !hex.is_empty() => Err(Error::Other(format!(
            "multiple IDs found with provided prefix: {hex}"
        ))),
        _ => Err(Error::NotFound(reference.to_string())),
    }
}

/// "sha256:abc..." -> the 12 hex characters Docker shows.
pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `config.Healthcheck` of a config blob: a Docker extension the OCI types do not carry.
fn healthcheck_of(blob: &[u8]) -> Option<crate::Healthcheck> {
    #[derive(serde::Deserialize)]
    struct Blob {
        config: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "Healthcheck")]
        healthcheck: Option<crate::Healthcheck>,
    }
    serde_json::from_slice::<Blob>(blob)
        .ok()?
        .config?
        .healthcheck
}

fn config_of(cfg: &ImageConfiguration) -> ImageConfig {
    let Some(c) = cfg.config() else {
        return ImageConfig::default();
    };
    let mut ports = c.exposed_ports().clone().unwrap_or_default();
    ports.sort();
    ImageConfig {
        cmd: c.cmd().clone(),
        entrypoint: c.entrypoint().clone(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        exposed_ports: ports,
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        stop_signal: c.stop_signal().clone().unwrap_or_default(),
        healthcheck: None,
    }
}
