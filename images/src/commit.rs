//! `rbox commit`: an image made of a parent image's layers plus one more (a container's
//! changes, as an OCI layer tar), with its config and a history entry, as `docker commit`
//! does; and `history`, the layers and history entries of an image.

use std::io::Read;

use serde_json::{json, Value};

use crate::archive::spool;
use crate::digest::hex_part;
use crate::import::config_json;
use crate::store::Staged;
use crate::{Error, Image, ImageConfig, Reference, Result, Store};

/// What `commit` records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    pub config: ImageConfig,
    /// `-m`.
    pub comment: String,
    /// `-a`.
    pub author: String,
    /// The container's command (Docker's `created_by`).
    pub created_by: String,
    /// The container's id (Docker's `container`).
    pub container: String,
}

/// One history entry of an image, with the layer it made (`None` for an empty layer).
#[derive(Debug, Clone)]
pub struct History {
    pub created: Option<String>,
    pub created_by: String,
    pub comment: String,
    pub author: String,
    /// "sha256:..." diff id of its layer, and that layer's size.
    pub layer: Option<(String, u64)>,
}

impl Store {
    /// Makes an image of `parent`'s layers and the layer tar `layer`.
    pub fn commit_layer<R: Read>(
        &self,
        parent: &Image,
        layer: R,
        info: &CommitInfo,
        tag: Option<&str>,
    ) -> Result<Image> {
        let tags = match tag {
            Some(t) => vec![Reference::parse(t)?.familiar_tagged()],
            None => Vec::new(),
        };
        let parent_hex = hex_part(&parent.id)?;
        let mut doc: Value = serde_json::from_slice(&self.read_blob(parent_hex)?)
            .map_err(|e| Error::Other(format!("image config {}: {e}", parent.id)))?;
        let stage = self.staging_dir()?;
        let tar = stage.0.join("layer.tar");
        let (diff_hex, _) = spool(layer, &tar)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        doc["created"] = json!(now);
        doc["config"] = config_json(&info.config);
        doc["container"] = json!(info.container);
        if info.author.is_empty() {
            if let Some(o) = doc.as_object_mut() {
                o.remove("author");
            }
        } else {
            doc["author"] = json!(info.author);
        }
        let mut diff_ids = doc["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        diff_ids.push(json!(format!("sha256:{diff_hex}")));
        doc["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let mut history = doc["history"].as_array().cloned().unwrap_or_default();
        let mut entry = json!({"created": now, "created_by": info.created_by});
        if !info.author.is_empty() {
            entry["author"] = json!(info.author);
        }
        if !info.comment.is_empty() {
            entry["comment"] = json!(info.comment);
        }
        history.push(entry);
        doc["history"] = json!(history);
        let mut layers: Vec<(String, std::path::PathBuf)> = parent
            .layers
            .iter()
            .filter_map(|l| hex_part(l).ok())
            .map(|h| (h.to_string(), std::path::PathBuf::new()))
            .collect();
        layers.push((diff_hex, tar));
        let staged = Staged {
            config: serde_json::to_vec(&doc).map_err(|e| Error::Other(e.to_string()))?,
            layers,
            tags,
            repo_digests: Vec::new(),
        };
        self.commit(staged)
    }

    /// The image's history, oldest first, each non-empty entry with its layer (`docker
    /// history` lists them newest first).
    pub fn history(&self, image: &Image) -> Result<Vec<History>> {
        let doc: Value = serde_json::from_slice(&self.read_blob(hex_part(&image.id)?)?)
            .map_err(|e| Error::Other(format!("image config {}: {e}", image.id)))?;
        let entries = doc["history"].as_array().cloned().unwrap_or_default();
        let mut layers = image.layers.iter();
        let mut out = Vec::new();
        for h in &entries {
            let s = |k: &str| h[k].as_str().unwrap_or_default().to_string();
            let layer = match h["empty_layer"].as_bool().unwrap_or(false) {
                true => None,
                false => layers.next().map(|l| {
                    let size = hex_part(l)
                        .ok()
                        .and_then(|x| self.layer_tar_len(x).ok())
                        .unwrap_or(0);
                    (l.clone(), size)
                }),
            };
            out.push(History {
                created: h["created"].as_str().map(str::to_string),
                created_by: s("created_by"),
                comment: s("comment"),
                author: s("author"),
                layer,
            });
        }
        // Layers no history entry describes (images made without one).
        for l in layers {
            out.push(History {
                created: image.created.clone(),
                created_by: String::new(),
                comment: String::new(),
                author: String::new(),
                layer: Some((l.clone(), 0)),
            });
        }
        Ok(out)
    }
}
