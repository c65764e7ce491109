//! A container's log: which driver and limits it gets (`resolve`, at create: flags, else the
//! root's `config.json`, else rbox's bounded json-file default), the writer its monitor opens
//! (`shim::logs::Writer`, shared with the monitor's small mode), and `rbox logs`: reading
//! across the rotated and compressed files (`read`) and following the file as it is written
//! and rotated (`follow`).

mod follow;
mod read;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use follow::follow;
pub use read::{Log, Position};
pub use shim::logs::{Lost, Stream, Writer};

use crate::error::{Error, Result};
use crate::record::{LogConfig, Record};
use crate::rootconfig::RootConfig;
use crate::store::Paths;

/// The log settings `create` records, merged as dockerd merges them: the driver from
/// `--log-driver`, else the root's `log-driver`, else json-file; the options from `--log-opt`,
/// plus, for the root's default driver, the root's `log-opts` (rbox's 10m x 3 when the file
/// has none) for every key the flags leave out. Checked here: bad input makes nothing.
pub fn resolve(root: &std::path::Path, driver: Option<&str>, opts: &[String]) -> Result<LogConfig> {
    let file = RootConfig::read(root)?;
    let default_driver = file
        .log_driver
        .clone()
        .unwrap_or_else(|| shim::logs::DEFAULT_DRIVER.to_string());
    let default_opts: BTreeMap<String, String> = match &file.log_opts {
        Some(o) => o.clone(),
        None if default_driver == shim::logs::DEFAULT_DRIVER => shim::logs::DEFAULT_OPTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        None => BTreeMap::new(),
    };
    let driver = driver
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| default_driver.clone());
    let mut given = BTreeMap::new();
    for o in opts {
        // Docker's ConvertKVStringsToMap: "key" alone is the key with an empty value.
        let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
        given.insert(k.to_string(), v.to_string());
    }
    if driver == "none" && !given.is_empty() {
        return Err(Error::Invalid(format!(
            "invalid logging opts for driver {driver}"
        )));
    }
    let mut merged = given;
    if driver == default_driver && driver != "none" {
        for (k, v) in default_opts {
            merged.entry(k).or_insert(v);
        }
    }
    let cfg = LogConfig {
        driver,
        opts: merged,
    };
    checked(&cfg)?;
    Ok(cfg)
}

/// The recorded settings as the writer and reader take them.
pub fn checked(cfg: &LogConfig) -> Result<shim::logs::Config> {
    shim::logs::Config::parse(cfg.driver(), &cfg.opts).map_err(Error::Invalid)
}

/// The file the container's output goes to now (`LogPath` for json-file), `None` for `none`.
pub fn path(paths: &Paths, rec: &Record) -> Option<PathBuf> {
    checked(&rec.settings.log_config)
        .ok()?
        .path(&paths.dir, &paths.id)
}

/// json-file/local `labels=` and `env=`: the container's values of those names, which every
/// record carries.
fn attrs(rec: &Record, cfg: &shim::logs::Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in &cfg.label_keys {
        if let Some(v) = rec.settings.labels.get(k) {
            out.push((k.clone(), v.clone()));
        }
    }
    for k in &cfg.env_keys {
        let prefix = format!("{k}=");
        if let Some(v) = rec
            .settings
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(&prefix))
        {
            out.push((k.clone(), v.to_string()));
        }
    }
    out
}

/// The writer a monitor copies the container's output into; `None` for the `none` driver.
pub fn open_writer(paths: &Paths, rec: &Record) -> Result<Option<Writer>> {
    let cfg = checked(&rec.settings.log_config)?;
    let Some(p) = cfg.path(&paths.dir, &paths.id) else {
        return Ok(None);
    };
    let attrs = attrs(rec, &cfg);
    Writer::open(&p, cfg, &attrs)
        .map(Some)
        .map_err(|e| Error::io(p.display(), e))
}

/// Options of `rbox logs`.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The last N records only.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// `--since` / `--until`: only records written from / up to then (after `tail`, as
    /// Docker's json-file reader applies them).
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The log of `rec` as `rbox logs` reads it: an error for the `none` driver, as Docker's.
pub fn reader(paths: &Paths, rec: &Record) -> Result<read::Log> {
    let cfg = checked(&rec.settings.log_config)?;
    match cfg.path(&paths.dir, &paths.id) {
        Some(p) => Ok(read::Log::new(p, &cfg)),
        None => Err(Error::Invalid(
            "configured logging driver does not support reading".into(),
        )),
    }
}

/// Output the container's monitor could not write, asked of the monitor itself: a full disk
/// may keep it from writing anything else.
pub fn lost_now(paths: &Paths, rec: &Record) -> Option<String> {
    if !rec.active() {
        return None;
    }
    match crate::monitor::control::request(
        paths,
        rec.state.monitor_pid,
        crate::monitor::control::Request::Status,
    ) {
        Ok(Some(crate::monitor::control::Reply::Status(s))) => s.lost,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_in(file: Option<&str>, driver: Option<&str>, opts: &[&str]) -> Result<LogConfig> {
        let d = tempfile::tempdir().unwrap();
        if let Some(f) = file {
            std::fs::write(crate::rootconfig::path(d.path()), f).unwrap();
        }
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        resolve(d.path(), driver, &opts)
    }

    fn opts(c: &LogConfig) -> Vec<(&str, &str)> {
        c.opts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn defaults_are_bounded_and_merged_as_dockerd_does() {
        let c = resolve_in(None, None, &[]).unwrap();
        assert_eq!(c.driver, "json-file");
        assert_eq!(opts(&c), [("max-file", "3"), ("max-size", "10m")]);
        let c = resolve_in(None, None, &["max-size=1m"]).unwrap();
        assert_eq!(opts(&c), [("max-file", "3"), ("max-size", "1m")]);
        // Another driver than the default gets none of the default's options.
        let c = resolve_in(None, Some("local"), &[]).unwrap();
        assert!(c.opts.is_empty());
        let file = r#"{"log-driver": "local", "log-opts": {"max-size": "5m", "max-file": "2"}}"#;
        let c = resolve_in(Some(file), None, &["max-file=4"]).unwrap();
        assert_eq!(c.driver, "local");
        assert_eq!(opts(&c), [("max-file", "4"), ("max-size", "5m")]);
        let c = resolve_in(Some(file), Some("json-file"), &[]).unwrap();
        assert!(c.opts.is_empty());
        let c = resolve_in(Some(r#"{"log-driver": "none"}"#), None, &[]).unwrap();
        assert_eq!(c.driver, "none");
    }

    #[test]
    fn bad_input_is_refused() {
        let e = |f: Option<&str>, d: Option<&str>, o: &[&str]| {
            resolve_in(f, d, o).unwrap_err().to_string()
        };
        assert_eq!(
            e(None, Some("syslog"), &[]),
            "logger: no log driver named 'syslog' is registered"
        );
        assert!(e(None, None, &["max-size=3q"]).contains("invalid size: '3q'"));
        assert!(e(None, None, &["nope=1"]).contains("unknown log opt 'nope'"));
        assert!(e(None, Some("none"), &["max-size=1m"]).contains("invalid logging opts"));
        assert!(e(Some(r#"{"log-driver": "journald"}"#), None, &[]).contains("journald"));
        assert!(e(Some("[1"), None, &[]).contains("config.json"));
    }
}
