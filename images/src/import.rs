//! `rbox import`: a rootfs tarball becomes a one-layer image, as `docker import` does.

use std::io::Read;

use serde_json::{json, Map, Value};

use crate::archive::spool;
use crate::store::Staged;
use crate::{Change, Error, Image, ImageConfig, Reference, Result, Store};

impl Store {
    /// Imports the (plain or gzipped) tar `input`; `comment` goes into the history, as
    /// Docker's "Imported from -" or the `--message`.
    pub fn import<R: Read>(
        &self,
        input: R,
        changes: &[Change],
        tag: Option<&str>,
        comment: &str,
    ) -> Result<Image> {
        let tags = match tag {
            Some(t) => vec![Reference::parse(t)?.familiar_tagged()],
            None => Vec::new(),
        };
        let stage = self.staging_dir()?;
        let tar = stage.0.join("layer.tar");
        let (diff_hex, size) = spool(input, &tar)?;
        if size == 0 {
            return Err(Error::InvalidArchive(
                "empty input is not a tar archive".into(),
            ));
        }
        let mut config = ImageConfig::default();
        for c in changes {
            c.apply(&mut config);
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let doc = json!({
            "architecture": go_arch(),
            "os": "linux",
            "created": now,
            "config": config_json(&config),
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_hex}")]},
            "history": [{"created": now, "comment": comment}],
        });
        let staged = Staged {
            config: serde_json::to_vec(&doc).map_err(|e| Error::Other(e.to_string()))?,
            layers: vec![(diff_hex, tar)],
            tags,
            repo_digests: Vec::new(),
        };
        self.commit(staged)
    }
}

/// Docker's `Config` object for an image config blob.
pub(crate) fn config_json(c: &ImageConfig) -> Value {
    let mut m = Map::new();
    if !c.user.is_empty() {
        m.insert("User".into(), json!(c.user));
    }
    if !c.exposed_ports.is_empty() {
        let ports: Map<String, Value> = c
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        m.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if !c.env.is_empty() {
        m.insert("Env".into(), json!(c.env));
    }
    if let Some(e) = &c.entrypoint {
        m.insert("Entrypoint".into(), json!(e));
    }
    if let Some(cmd) = &c.cmd {
        m.insert("Cmd".into(), json!(cmd));
    }
    if !c.working_dir.is_empty() {
        m.insert("WorkingDir".into(), json!(c.working_dir));
    }
    if !c.labels.is_empty() {
        m.insert("Labels".into(), json!(c.labels));
    }
    if !c.stop_signal.is_empty() {
        m.insert("StopSignal".into(), json!(c.stop_signal));
    }
    if let Some(h) = &c.healthcheck {
        m.insert("Healthcheck".into(), json!(h));
    }
    Value::Object(m)
}

/// The host architecture in Go's naming, as image configs use.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}
