//! `<root>/config.json`: a root's defaults, under the names dockerd's `daemon.json` uses. One
//! file for the whole root; each crate reads its own keys and ignores the others (`net` reads
//! the `cluster-*` keys). The runtime's:
//!
//! ```json
//! {"log-driver": "local", "log-opts": {"max-size": "5m", "max-file": "2"}}
//! ```
//!
//! - `log-driver`: the driver of containers created without `--log-driver`;
//! - `log-opts`: the options they get for that driver (a container's own `--log-opt`s win,
//!   key by key, as with dockerd). Without `log-opts`, rbox's bounded json-file default
//!   applies (`shim::logs::DEFAULT_OPTS`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
pub struct RootConfig {
    #[serde(default, rename = "log-driver")]
    pub log_driver: Option<String>,
    #[serde(default, rename = "log-opts")]
    pub log_opts: Option<BTreeMap<String, String>>,
}

pub fn path(root: &Path) -> PathBuf {
    root.join("config.json")
}

impl RootConfig {
    /// The root's file, or all defaults when there is none.
    pub fn read(root: &Path) -> Result<RootConfig> {
        let p = path(root);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Invalid(format!("invalid {}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RootConfig::default()),
            Err(e) => Err(Error::io(p.display(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_keys_and_ignores_others() {
        let d = tempfile::tempdir().unwrap();
        assert!(RootConfig::read(d.path()).unwrap().log_driver.is_none());
        std::fs::write(
            path(d.path()),
            r#"{"cluster-store": "etcd://x:2379", "log-driver": "local", "log-opts": {"max-size": "5m"}}"#,
        )
        .unwrap();
        let c = RootConfig::read(d.path()).unwrap();
        assert_eq!(c.log_driver.as_deref(), Some("local"));
        assert_eq!(c.log_opts.unwrap()["max-size"], "5m");
        std::fs::write(path(d.path()), "{").unwrap();
        assert!(RootConfig::read(d.path()).is_err());
    }
}
