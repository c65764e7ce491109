//! Content-addressed image store under `<root>/images`.
//!
//! API CONTRACT (used by `runtime` and `cli`; the images owner implements the bodies and may add
//! more, but keeps these signatures):
//! - `Store::open(root)`            the store under `<root>/images` (creates dirs)
//! - `Store::resolve(reference)`    name[:tag] (short names as Docker), full id, or unique id prefix
//! - `Store::layer_dirs(&image)`    unpacked layer dirs, lowest layer first (overlay lowerdirs)
//! - `Image`, `ImageConfig`         plain data, fields below
//!
//! Layout: `blobs/sha256/<hex>` (config blobs by digest; stores from before splits also hold
//! layer tars there), `layers/<diff_id hex>/` (each layer unpacked once, whiteouts in overlayfs
//! form), `splits/<diff_id hex>` (what rebuilds the exact layer tar from its directory for
//! `save`: the layer is stored once, see `tarsplit`),
//! `repositories.json` (tags and the set of images), `tmp/` (staging). Writers hold
//! `<root>/locks/images.lock`; every file and directory appears by rename, so a crash leaves
//! only `.tmp-<pid>-*` entries, which the next writer removes.
//!
//! `Store::pull` (module `pull`) fetches images from registries and registers them through the
//! same verified `commit` as `load`; `PullPolicy` is the `run --pull` setting.

mod archive;
mod change;
mod commit;
mod digest;
mod error;
mod healthcheck;
mod import;
mod load;
mod pull;
mod reference;
mod save;
mod store;
mod tarsplit;
mod unpack;

use std::collections::BTreeMap;

pub use change::Change;
pub use commit::{CommitInfo, History};
pub use error::{Error, Result};
pub use healthcheck::{parse_go_duration, Healthcheck};
pub use load::Loaded;
pub use pull::{registry_key, LayerInfo, Platform, Progress, PullOptions, PullPolicy, Pulled};
pub use reference::Reference;
pub use store::{short_id, Removed, Store};

/// The parts of an image's config a container is made from (Docker's `Config` in inspect).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// "80/tcp", "53/udp"
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// STOPSIGNAL ("SIGQUIT"); "" when the image names none.
    pub stop_signal: String,
    /// HEALTHCHECK (Docker's `config.Healthcheck`, not part of the OCI image spec).
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
}

#[derive(Debug, Clone, Default)]
pub struct Image {
    /// "sha256:<64 hex>" — the digest of the image config blob, as Docker's image id.
    pub id: String,
    /// "busybox:latest"
    pub repo_tags: Vec<String>,
    pub config: ImageConfig,
    /// diff_ids ("sha256:..."), lowest layer first.
    pub layers: Vec<String>,
    /// "name@sha256:..." of the manifests this image was loaded from (OCI layouts only).
    pub repo_digests: Vec<String>,
    /// RFC 3339 creation time from the config, if it has one.
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    /// Bytes of all layers, uncompressed.
    pub size: u64,
}
