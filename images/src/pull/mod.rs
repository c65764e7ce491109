//! `rbox pull`: images from OCI / Docker registries through `oci-client` (which speaks the
//! distribution API: bearer-token challenges, basic auth, redirects, manifest digests).
//!
//! Every blob is hashed here with `sha2` as it streams to disk (layers gunzipped on the way, see
//! `sink`) and checked against the manifest's digest and the config's diff_ids before the image
//! is handed to `Store::commit`, the same registration `load` and `import` use. Layers already
//! in the store are not downloaded. Everything is staged in a temp dir that vanishes with the
//! call, or with a later writer after a kill -9, so an interrupted pull registers nothing.
//!
//! The async client runs on a current-thread tokio runtime created and dropped inside each call:
//! `rbox run` pulls and then forks with clone3, which needs a single-threaded process, so
//! `block_on` checks that no thread (e.g. a DNS `spawn_blocking` worker) outlives the call.

mod auth;
mod platform;
mod sink;

use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

pub use auth::registry_key;
pub(crate) use platform::choose as choose_platform;
pub use platform::Platform;

use crate::digest::{hex_part, sha256_hex};
use crate::load::{check, diff_ids, mismatch};
use crate::store::Staged;
use crate::{Error, Image, Reference, Result, Store};

/// Docker Hub's API lives on another host than its name.
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
const MAX_JSON_BLOB: u64 = 16 << 20;
/// Layers downloaded at once (interleaved on the one runtime thread).
const PARALLEL_LAYERS: usize = 3;
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// `run --pull`: when to pull the image of a new container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the image is not stored (Docker's default).
    #[default]
    Missing,
    Always,
    Never,
}

impl FromStr for PullPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<PullPolicy> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(Error::Other(format!(
                "invalid pull option: '{s}': must be one of \"always\", \"missing\" or \"never\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `--platform`; the host's when `None`.
    pub platform: Option<Platform>,
    /// Registries spoken to over plain http besides localhost and 127.0.0.0/8 (as Docker's
    /// `insecure-registries`); also taken from `RBOX_INSECURE_REGISTRIES` (comma separated).
    pub insecure_registries: Vec<String>,
}

impl PullOptions {
    fn is_insecure(&self, registry: &str) -> bool {
        let host = registry
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(registry);
        let env = std::env::var("RBOX_INSECURE_REGISTRIES").unwrap_or_default();
        host == "localhost"
            || host == "[::1]"
            || host.starts_with("127.")
            || self
                .insecure_registries
                .iter()
                .map(String::as_str)
                .chain(env.split(',').map(str::trim))
                .any(|r| !r.is_empty() && (r == registry || r == host))
    }
}

/// A layer of the image being pulled, lowest first.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// The blob digest as the registry names it ("sha256:...").
    pub digest: String,
    /// Bytes to download.
    pub size: u64,
    /// Already in the store: not downloaded.
    pub present: bool,
}

/// What a pull is doing, for progress output.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Manifest and config fetched and verified; the layers follow.
    Layers(&'a [LayerInfo]),
    /// Bytes of layer `index` received so far.
    Bytes { index: usize, done: u64 },
    /// Layer `index` fully downloaded and verified.
    Downloaded { index: usize },
    /// All blobs verified; layers are being unpacked and the image registered.
    Extracting,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The digest of what the reference named (the index, for a multi-platform image).
    pub digest: String,
    /// False when the reference already named this image ("Image is up to date").
    pub updated: bool,
}

impl Store {
    /// Pulls `reference` from its registry, verifies every blob and registers the image with
    /// its tag (pulled by tag) and `name@digest`.
    pub fn pull(
        &self,
        reference: &Reference,
        opts: &PullOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Pulled> {
        let lookup = match &reference.digest {
            Some(d) => format!("{}@{d}", reference.familiar_name()),
            None => reference.familiar_tagged(),
        };
        let previous = self.resolve(&lookup).ok().map(|i| i.id);
        let auth = self.credentials(&reference.domain)?;
        let stage = self.staging_dir()?;
        let fetched = block_on(fetch(self, reference, opts, auth, &stage.0, progress))??;
        progress(Progress::Extracting);
        let image = self.commit(Staged {
            config: fetched.config,
            layers: fetched.layers,
            tags: match reference.digest {
                Some(_) => Vec::new(),
                None => vec![reference.familiar_tagged()],
            },
            repo_digests: vec![format!("{}@{}", reference.familiar_name(), fetched.digest)],
        })?;
        Ok(Pulled {
            updated: previous.as_deref() != Some(image.id.as_str()),
            image,
            digest: fetched.digest,
        })
    }
}

struct Fetched {
    config: Vec<u8>,
    layers: Vec<(String, std::path::PathBuf)>,
    digest: String,
}

/// Runs `f` on a current-thread runtime that is gone, with all its threads, on return.
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let before = thread_count();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the registry client", e))?;
    let out = rt.block_on(f);
    // Joins the blocking pool (DNS lookups) too.
    drop(rt);
    let after = thread_count();
    tracing::debug!("registry client done: threads before {before:?}, after {after:?}");
    if before == Some(1) && after != Some(1) {
        return Err(Error::Other(format!(
            "registry client left {} threads running; the process must be single-threaded",
            after.unwrap_or(0)
        )));
    }
    Ok(out)
}

fn thread_count() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// host[:port] the registry's API is served on.
fn endpoint(registry: &str) -> String {
    match registry {
        "docker.io" => DOCKER_HUB_ENDPOINT.to_string(),
        r => r.to_string(),
    }
}

/// rustls needs its crypto chosen once per process before any client is built.
fn tls_provider() {
    // An error only says a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client(opts: &PullOptions, registry: &str) -> Result<oci_client::Client> {
    tls_provider();
    let protocol = if opts.is_insecure(registry) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    Ok(oci_client::Client::new(ClientConfig {
        protocol,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("rbox/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    }))
}

fn oci_reference(r: &Reference) -> oci_client::Reference {
    let host = endpoint(&r.domain);
    match &r.digest {
        Some(d) => oci_client::Reference::with_digest(host, r.path.clone(), d.clone()),
        None => oci_client::Reference::with_tag(host, r.path.clone(), r.tag_or_latest().into()),
    }
}

enum Parsed {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

fn parse_manifest(body: &[u8], digest: &str) -> Result<Parsed> {
    let bad = |e: String| Error::Other(format!("manifest {digest}: {e}"));
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err(bad("Docker schema 1 manifests are not supported".into()));
    }
    if v.get("manifests").is_some() {
        serde_json::from_value(v)
            .map(|i| Parsed::Index(Box::new(i)))
            .map_err(|e| bad(e.to_string()))
    } else if v.get("layers").is_some() {
        serde_json::from_value(v)
            .map(|m| Parsed::Manifest(Box::new(m)))
            .map_err(|e| bad(e.to_string()))
    } else {
        Err(bad("neither an image manifest nor an index".into()))
    }
}

/// Fetches and verifies a manifest by tag or digest; returns it with its sha256 digest.
async fn manifest(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    auth: &RegistryAuth,
    shown: &str,
) -> Result<(Vec<u8>, String)> {
    let (body, _) = client
        .pull_manifest_raw(oref, auth, ACCEPT)
        .await
        .map_err(|e| match e {
            e if is_not_found(&e) => Error::Other(format!(
                "manifest for {shown} not found: manifest unknown: manifest unknown"
            )),
            e @ OciDistributionError::UnauthorizedError { .. } => oci_error(e, repo_of(shown)),
            e => oci_error(e, shown),
        })?;
    let digest = format!("sha256:{}", sha256_hex(&body));
    if let Some(want) = oref.digest() {
        if want != digest {
            return Err(mismatch(
                &format!("manifest {shown}"),
                hex_part(want)?,
                hex_part(&digest)?,
            ));
        }
    }
    Ok((body.to_vec(), digest))
}

async fn fetch(
    store: &Store,
    r: &Reference,
    opts: &PullOptions,
    auth: RegistryAuth,
    stage: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fetched> {
    let client = client(opts, &r.domain)?;
    let oref = oci_reference(r);
    let shown = match &r.digest {
        Some(d) => format!("{}@{d}", r.familiar_name()),
        None => r.familiar_tagged(),
    };
    let (body, digest) = manifest(&client, &oref, &auth, &shown).await?;
    let (manifest, from_index) = match parse_manifest(&body, &digest)? {
        Parsed::Manifest(m) => (*m, false),
        Parsed::Index(index) => {
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let chosen = choose_platform(&index, &want).ok_or_else(|| {
                Error::Other(format!(
                    "no matching manifest for {want} in the manifest list entries"
                ))
            })?;
            let one = oref.clone_with_digest(chosen.digest().to_string());
            let (body, d) = manifest(&client, &one, &auth, &shown).await?;
            match parse_manifest(&body, &d)? {
                Parsed::Manifest(m) => (*m, true),
                Parsed::Index(_) => {
                    return Err(Error::Other(format!(
                        "manifest {d}: an index inside an index is not supported"
                    )))
                }
            }
        }
    };
    let config = small_blob(&client, &oref, manifest.config(), "image config").await?;
    let diff_ids = diff_ids(&config, manifest.config().digest().as_ref())?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Other(format!(
            "manifest {digest} lists {} layers but its config has {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    if let (Some(want), false) = (&opts.platform, from_index) {
        check_platform(&config, want, &shown)?;
    }
    let infos: Vec<LayerInfo> = manifest
        .layers()
        .iter()
        .zip(&diff_ids)
        .map(|(l, d)| {
            Ok(LayerInfo {
                digest: l.digest().to_string(),
                size: l.size(),
                present: store.has_layer(hex_part(d)?),
            })
        })
        .collect::<Result<_>>()?;
    progress(Progress::Layers(&infos));
    let progress = RefCell::new(progress);
    let mut layers: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut todo = Vec::new();
    for (i, (desc, diff)) in manifest.layers().iter().zip(&diff_ids).enumerate() {
        let hex = hex_part(diff)?.to_string();
        if infos[i].present {
            layers.push((hex.clone(), store.blob_path(&hex)));
        } else {
            let path = stage.join(format!("{i}.tar"));
            layers.push((hex, path.clone()));
            todo.push((i, desc, diff.as_str(), path));
        }
    }
    futures_util::stream::iter(todo.into_iter().map(|(i, desc, diff, path)| {
        let (client, oref, progress) = (&client, &oref, &progress);
        async move {
            download(client, oref, desc, diff, &path, &mut |done| {
                (progress.borrow_mut())(Progress::Bytes { index: i, done })
            })
            .await?;
            (progress.borrow_mut())(Progress::Downloaded { index: i });
            Ok::<(), Error>(())
        }
    }))
    .buffer_unordered(PARALLEL_LAYERS)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(Fetched {
        config,
        layers,
        digest,
    })
}

/// A config blob, whole, verified.
async fn small_blob(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    desc: &Descriptor,
    what: &str,
) -> Result<Vec<u8>> {
    let digest = desc.digest().to_string();
    if desc.size() > MAX_JSON_BLOB {
        return Err(Error::Other(format!(
            "{what} {digest} is too large ({} bytes)",
            desc.size()
        )));
    }
    let mut stream = client
        .pull_blob_stream(oref, digest.as_str())
        .await
        .map_err(|e| oci_error(e, &format!("{what} {digest}")))?;
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| cut(what, &digest, &e))?;
        if (data.len() + chunk.len()) as u64 > MAX_JSON_BLOB {
            return Err(Error::Other(format!("{what} {digest} is too large")));
        }
        data.extend_from_slice(&chunk);
    }
    let got = sha256_hex(&data);
    if got != hex_part(&digest)? {
        return Err(mismatch(
            &format!("{what} {digest}"),
            hex_part(&digest)?,
            &got,
        ));
    }
    Ok(data)
}

/// Streams one layer into `path` (uncompressed), checking its digest, size and diff_id.
async fn download(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    desc: &Descriptor,
    diff_id: &str,
    path: &Path,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<()> {
    let digest = desc.digest().to_string();
    let want = hex_part(&digest)?;
    if desc.media_type().to_string().contains("zstd") {
        return Err(Error::Other(format!(
            "layer {digest}: zstd layers are not supported"
        )));
    }
    let mut stream = client
        .pull_blob_stream(oref, digest.as_str())
        .await
        .map_err(|e| oci_error(e, &format!("layer {digest}")))?;
    let mut sink = sink::LayerSink::create(path)?;
    let mut done = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| cut("layer", &digest, &e))?;
        sink.write(&chunk)
            .map_err(|e| Error::InvalidArchive(format!("layer {digest}: {e}")))?;
        done += chunk.len() as u64;
        on_bytes(done);
    }
    let written = sink
        .finish()
        .map_err(|e| Error::InvalidArchive(format!("layer {digest}: {e}")))?;
    if written.digest != want {
        return Err(mismatch(&format!("layer {digest}"), want, &written.digest));
    }
    if written.size != desc.size() {
        return Err(Error::Other(format!(
            "layer {digest}: {} bytes but the manifest says {}",
            written.size,
            desc.size()
        )));
    }
    check(&format!("layer {digest}"), diff_id, &written.diff_id)
}

/// An explicit `--platform` must match a single-platform image.
fn check_platform(config: &[u8], want: &Platform, shown: &str) -> Result<()> {
    let cfg: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(config).map_err(|e| Error::Other(format!("image config: {e}")))?;
    let got = Platform {
        os: cfg.os().to_string(),
        architecture: cfg.architecture().to_string(),
        variant: cfg.variant().clone(),
    };
    if got.os != want.os || got.architecture != want.architecture {
        return Err(Error::Other(format!(
            "image with reference {shown} was found but its platform ({got}) does not match the specified platform ({want})"
        )));
    }
    Ok(())
}

/// A stream error mid-blob: the registry cut the connection, or the data did not verify.
fn cut(what: &str, digest: &str, e: &std::io::Error) -> Error {
    Error::Other(format!("downloading {what} {digest}: {}", root_cause(e)))
}

/// "host/name" of "host/name:tag" or "host/name@digest".
fn repo_of(shown: &str) -> &str {
    let end = shown.find('@').unwrap_or(shown.len());
    let name = &shown[..end];
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => &name[..slash + i],
        None => name,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// One line for a client error, as Docker words them where it can.
fn oci_error(e: OciDistributionError, what: &str) -> Error {
    let msg = match &e {
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|x| {
                let code = serde_json::to_value(&x.code)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s.to_lowercase().replace('_', " ")))
                    .unwrap_or_default();
                format!("{code}: {}", x.message)
            })
            .collect::<Vec<_>>()
            .join("; "),
        OciDistributionError::UnauthorizedError { .. } => return access_denied(what),
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("unauthorized: {}", reason.trim())
        }
        OciDistributionError::RequestError(re) => root_cause(re),
        other => root_cause(other),
    };
    Error::Other(format!("{what}: {msg}"))
}

fn access_denied(repo: &str) -> Error {
    Error::Other(format!(
        "pull access denied for {repo}, repository does not exist or may require 'rbox login'"
    ))
}

/// "outer: innermost" of an error chain (reqwest's top line names the URL, the innermost the
/// real reason, e.g. "Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let (top, deep) = (e.to_string(), inner.to_string());
    if std::ptr::eq(
        inner as *const dyn std::error::Error as *const u8,
        e as *const dyn std::error::Error as *const u8,
    ) || top.contains(&deep)
    {
        top
    } else {
        format!("{top}: {deep}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies() {
        assert_eq!(
            "missing".parse::<PullPolicy>().unwrap(),
            PullPolicy::Missing
        );
        assert_eq!("always".parse::<PullPolicy>().unwrap(), PullPolicy::Always);
        assert_eq!("never".parse::<PullPolicy>().unwrap(), PullPolicy::Never);
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn insecure_registries() {
        let o = PullOptions {
            insecure_registries: vec!["reg.lan:5000".into(), "other.lan".into()],
            ..Default::default()
        };
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "reg.lan:5000",
            "other.lan:443",
        ] {
            assert!(o.is_insecure(r), "{r}");
        }
        for r in ["docker.io", "reg.lan:5001", "quay.io", "localhost.evil.com"] {
            assert!(!o.is_insecure(r), "{r}");
        }
    }

    #[test]
    fn docker_hub_endpoint_and_references() {
        let r = oci_reference(&Reference::parse("busybox").unwrap());
        assert_eq!(r.resolve_registry(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = oci_reference(&Reference::parse(&format!("localhost:5000/a/b@{d}")).unwrap());
        assert_eq!(r.resolve_registry(), "localhost:5000");
        assert_eq!(r.digest(), Some(d.as_str()));
    }

    #[test]
    fn repository_of_a_shown_reference() {
        assert_eq!(repo_of("localhost:5000/a/b:t"), "localhost:5000/a/b");
        assert_eq!(repo_of("busybox@sha256:abc"), "busybox");
        assert_eq!(repo_of("busybox"), "busybox");
    }

    #[test]
    fn thread_count_reads_proc() {
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn schema1_and_garbage_manifests_are_refused() {
        assert!(parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, "d").is_err());
        assert!(parse_manifest(b"not json", "d").is_err());
        assert!(parse_manifest(br#"{"schemaVersion":2}"#, "d").is_err());
    }
}
