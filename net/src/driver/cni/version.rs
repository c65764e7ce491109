//! `cniVersion` negotiation: the version a list is run with is the one it names if rbox and
//! every plugin speak it, else the highest below it that all of them speak (a 1.1.0 list on
//! Debian 12's 1.0.0 plugins runs as 1.0.0). Plugins are asked with VERSION once per binary:
//! the answer is kept in `<root>/cni/versions.json` under the file's identity (device, inode,
//! size, mtime), so a run costs no extra exec.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::exec::{self, Call};

/// The spec versions whose configurations and results rbox reads.
pub const SPOKEN: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// "1.0.0" -> (1, 0, 0); `None` for what is no version.
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next().unwrap_or(Some(0))?;
    let patch = it.next().unwrap_or(Some(0))?;
    it.next().is_none().then_some((major, minor, patch))
}

/// The version to run a list with: `wanted` (the list's `cniVersion`; none: the highest) if
/// all of `supported` (each plugin's answer) and rbox speak it, else the highest of those
/// below it; the error says who speaks what.
pub fn negotiate(
    wanted: Option<&str>,
    supported: &[(String, Vec<String>)],
) -> Result<String, String> {
    let limit = match wanted {
        Some(w) => Some(parse(w).ok_or_else(|| format!("invalid cniVersion {w:?}"))?),
        None => None,
    };
    let common = SPOKEN
        .iter()
        .filter(|v| supported.iter().all(|(_, s)| s.iter().any(|x| x == *v)))
        .filter(|v| limit.is_none_or(|l| parse(v).is_some_and(|p| p <= l)))
        .max_by_key(|v| parse(v));
    common.map(|v| v.to_string()).ok_or_else(|| {
        let who: Vec<String> = supported
            .iter()
            .map(|(p, s)| format!("{p}: {}", s.join(" ")))
            .collect();
        format!(
            "no CNI version up to {} that rbox ({}) and every plugin speak ({})",
            wanted.unwrap_or("any"),
            SPOKEN.join(" "),
            who.join("; ")
        )
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    #[serde(default)]
    plugins: BTreeMap<PathBuf, Known>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    identity: String,
    versions: Vec<String>,
}

fn identity(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{}:{}:{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The versions `plugin` (at `path`) supports, from the cache or by asking it; the caller
/// holds the root's CNI lock.
/// Runs one VERSION call (`ask`, or a fake in tests).
pub type Ask<'a> = dyn FnMut(&Path, &Call, &[u8]) -> Result<Vec<u8>, String> + 'a;

pub fn supported(
    root: &Path,
    kind: &str,
    path: &Path,
    run: &mut Ask,
) -> Result<Vec<String>, String> {
    let file = root.join("cni/versions.json");
    let mut cache: Cache = statefile::read_json_opt(&file)
        .ok()
        .flatten()
        .unwrap_or_default();
    let id = identity(path);
    if let (Some(id), Some(k)) = (&id, cache.plugins.get(path)) {
        if &k.identity == id {
            return Ok(k.versions.clone());
        }
    }
    let call = Call {
        command: "VERSION",
        ..Default::default()
    };
    let out = run(path, &call, br#"{"cniVersion":"0.4.0"}"#)?;
    let v: Value = serde_json::from_slice(&out)
        .map_err(|e| format!("plugin {kind}: invalid VERSION answer: {e}"))?;
    let versions: Vec<String> = v
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(id) = id {
        cache.plugins.insert(
            path.to_path_buf(),
            Known {
                identity: id,
                versions: versions.clone(),
            },
        );
        // A lost cache costs one VERSION call per plugin next time: no fsync.
        let _ = std::fs::create_dir_all(root.join("cni"));
        let _ = statefile::write_json_unsynced(&file, &cache);
    }
    Ok(versions)
}

/// `exec::run` as `supported` needs it.
pub fn ask(path: &Path, call: &Call, stdin: &[u8]) -> Result<Vec<u8>, String> {
    exec::run(path, call, stdin, exec::timeout(), None, &mut |_| {}).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn negotiation_picks_the_highest_common_version_not_above_the_lists() {
        let debian = s(&["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]);
        let two = [
            ("bridge".to_string(), debian.clone()),
            ("portmap".to_string(), debian.clone()),
        ];
        assert_eq!(negotiate(Some("1.0.0"), &two).unwrap(), "1.0.0");
        assert_eq!(negotiate(Some("1.1.0"), &two).unwrap(), "1.0.0");
        assert_eq!(negotiate(Some("0.4.0"), &two).unwrap(), "0.4.0");
        assert_eq!(negotiate(None, &two).unwrap(), "1.0.0");
        let old = [("old".to_string(), s(&["0.1.0", "0.2.0"]))];
        let e = negotiate(Some("1.0.0"), &old).unwrap_err();
        assert!(e.contains("old: 0.1.0 0.2.0"), "{e}");
        assert!(
            negotiate(Some("0.2.0"), &two).is_err(),
            "rbox reads no 0.2.0 results"
        );
        assert!(negotiate(Some("x"), &two)
            .unwrap_err()
            .contains("invalid cniVersion"));
        assert_eq!(parse("1.0"), Some((1, 0, 0)));
    }

    #[test]
    fn versions_are_asked_once_per_binary() {
        let root = tempfile::tempdir().unwrap();
        let plugin = root.path().join("p");
        std::fs::write(&plugin, "x").unwrap();
        let asked = std::cell::Cell::new(0);
        let mut run = |_: &Path, c: &Call, _: &[u8]| {
            assert_eq!(c.command, "VERSION");
            asked.set(asked.get() + 1);
            Ok(br#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#.to_vec())
        };
        for _ in 0..3 {
            let v = supported(root.path(), "p", &plugin, &mut run).unwrap();
            assert_eq!(v, ["0.4.0", "1.0.0"]);
        }
        assert_eq!(asked.get(), 1);
        // A new binary (another size) is asked again.
        std::fs::write(&plugin, "xy").unwrap();
        supported(root.path(), "p", &plugin, &mut run).unwrap();
        assert_eq!(asked.get(), 2);
    }
}
