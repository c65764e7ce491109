//! Content-addressed image store under `<root>/images`.
//!
//! API CONTRACT (used by `runtime` and `cli`; the images owner implements the bodies and may add
//! more, but keeps these signatures):
//! - `Store::open(root)`            the store under `<root>/images` (creates dirs)
//! - `Store::resolve(reference)`    name[:tag] (short names as Docker), full id, or unique id prefix
//! - `Store::layer_dirs(&image)`    unpacked layer dirs, lowest layer first (overlay lowerdirs)
//! - `Image`, `ImageConfig`         plain data, fields below

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The parts of an image's config a container is made from (Docker's `Config` in inspect).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// "80/tcp", "53/udp"
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Image {
    /// "sha256:<64 hex>" — the digest of the image config blob, as Docker's image id.
    pub id: String,
    /// "busybox:latest"
    pub repo_tags: Vec<String>,
    pub config: ImageConfig,
    /// diff_ids ("sha256:..."), lowest layer first.
    pub layers: Vec<String>,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        Ok(Store { dir: root.join("images") })
    }

    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let _ = &self.dir;
        Err(Error::NotFound(reference.to_string()))
    }

    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image.layers.iter().map(|l| self.dir.join("layers").join(l.trim_start_matches("sha256:"))).collect()
    }
}
