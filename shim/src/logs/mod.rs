//! Container logs as Docker's `json-file` and `local` drivers keep them, bounded by size and
//! file count: the settings (`Config`, from `--log-driver`/`--log-opt`), the record encodings
//! (`format`) and the writer that batches, rotates and compresses (`writer`). Reading them
//! back (`rbox logs`) is the runtime's, which has a JSON parser.
//!
//! Files: json-file writes `<dir>/<id>-json.log`, local `<dir>/local-logs/container.log`;
//! rotated files get `.1`, `.2`, ... (newest first), `.N.gz` when compressed.

pub mod format;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use writer::{Lost, Writer};

/// Which of a container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn from_name(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// `--log-driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    JsonFile,
    Local,
    None,
}

impl Driver {
    pub fn parse(s: &str) -> Result<Driver, String> {
        match s {
            "json-file" => Ok(Driver::JsonFile),
            "local" => Ok(Driver::Local),
            "none" => Ok(Driver::None),
            _ => Err(format!("logger: no log driver named '{s}' is registered")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Driver::JsonFile => "json-file",
            Driver::Local => "local",
            Driver::None => "none",
        }
    }
}

/// rbox's default when neither `--log-driver` nor the root's config file says otherwise:
/// json-file (what Docker users and their tools expect) but bounded, at most 3 files of 10 MB,
/// because rbox's hosts are small (Docker's json-file default never rotates).
pub const DEFAULT_DRIVER: &str = "json-file";
pub const DEFAULT_OPTS: &[(&str, &str)] = &[("max-file", "3"), ("max-size", "10m")];

/// Docker's `local` defaults (daemon/logger/local): 5 files of 20 MiB, compressed.
const LOCAL_MAX_SIZE: u64 = 20 * 1024 * 1024;
const LOCAL_MAX_FILE: u32 = 5;

/// How a container's output is kept, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub driver: Driver,
    /// Bytes one file may hold; `None`: one file that grows without bound.
    pub max_size: Option<u64>,
    /// Files kept, the one written included.
    pub max_file: u32,
    /// gzip the rotated files.
    pub compress: bool,
    /// json-file `labels=`/`env=`: the names whose values every record carries (`attrs`).
    pub label_keys: Vec<String>,
    pub env_keys: Vec<String>,
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    // Go's strconv.ParseBool.
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean value for {key}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
        )),
    }
}

/// Docker's `units.FromHumanSize`: a decimal number and an optional unit, powers of 1000
/// (`10m` = 10,000,000; `1.5g`, `512k`, `100MB`, `2048`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size: '{s}'");
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return Err(bad()),
    };
    Ok((value * mult) as u64)
}

impl Config {
    /// Checks a driver and its options as Docker's log drivers do (their wording); every
    /// problem is an error here, at create, so that nothing is made of bad input.
    pub fn parse(driver: &str, opts: &BTreeMap<String, String>) -> Result<Config, String> {
        let driver = Driver::parse(driver)?;
        let known: &[&str] = match driver {
            Driver::JsonFile | Driver::Local => {
                &["max-size", "max-file", "compress", "labels", "env"]
            }
            // Docker does not check the options of a driver that writes nothing.
            Driver::None => &[],
        };
        if driver != Driver::None {
            for k in opts.keys() {
                if ["labels-regex", "env-regex", "tag"].contains(&k.as_str()) {
                    return Err(format!("log opt '{k}' is not supported by rbox"));
                }
                if !known.contains(&k.as_str()) {
                    return Err(match driver {
                        Driver::JsonFile => {
                            format!("unknown log opt '{k}' for json-file log driver")
                        }
                        _ => format!("unknown log opt '{k}' for log driver {}", driver.name()),
                    });
                }
            }
        }
        let local = driver == Driver::Local;
        let max_size = match opts.get("max-size") {
            Some(v) => {
                let n =
                    parse_size(v).map_err(|e| format!("invalid value for max-size: {v}: {e}"))?;
                if n == 0 && !local {
                    return Err("max-size must be a positive number".into());
                }
                // local: 0 means no limit, as in Docker.
                (n > 0).then_some(n)
            }
            None if local => Some(LOCAL_MAX_SIZE),
            None => None,
        };
        let max_file = match opts.get("max-file") {
            Some(v) => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("invalid value for max-file: {v}"))?;
                if n < 1 {
                    return Err("max-file cannot be less than 1".into());
                }
                n.min(u32::MAX as i64) as u32
            }
            None if local => LOCAL_MAX_FILE,
            None => 1,
        };
        let compress = match opts.get("compress") {
            Some(v) => parse_bool("compress", v)?,
            None => local,
        };
        if compress && (max_file < 2 || max_size.is_none()) && driver != Driver::None {
            return Err(if local {
                "compression cannot be enabled when max file count is 1".into()
            } else {
                "compress cannot be true when max-file is less than 2 or max-size is not set".into()
            });
        }
        let list = |k: &str| -> Vec<String> {
            opts.get(k)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Config {
            driver,
            max_size,
            max_file: max_file.max(1),
            compress,
            label_keys: list("labels"),
            env_keys: list("env"),
        })
    }

    /// The file written now, or `None` for the `none` driver.
    pub fn path(&self, dir: &Path, id: &str) -> Option<PathBuf> {
        match self.driver {
            Driver::JsonFile => Some(dir.join(format!("{id}-json.log"))),
            Driver::Local => Some(dir.join("local-logs").join("container.log")),
            Driver::None => None,
        }
    }
}

/// The rotated files of `path` that may exist, newest first: `.1` (or `.1.gz`) up to
/// `.{max_file - 1}`; each as the plain and the compressed name.
pub fn rotated(path: &Path, max_file: u32) -> Vec<(PathBuf, PathBuf)> {
    (1..max_file.max(1))
        .map(|i| (numbered(path, i, false), numbered(path, i, true)))
        .collect()
}

pub(crate) fn numbered(path: &Path, i: u32, gz: bool) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{i}"));
    if gz {
        s.push(".gz");
    }
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(parse_size("10m"), Ok(10_000_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_size("512k"), Ok(512_000));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert_eq!(parse_size("10 kb"), Ok(10_000));
        assert_eq!(parse_size("10Mi"), Ok(10_000_000));
        for bad in ["", "m", "10x", "-1", "1..2m", "10mm", ".5m"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked_per_driver() {
        let c =
            Config::parse("json-file", &opts(&[("max-size", "1m"), ("max-file", "4")])).unwrap();
        assert_eq!(
            (c.max_size, c.max_file, c.compress),
            (Some(1_000_000), 4, false)
        );
        let c = Config::parse("json-file", &opts(&[])).unwrap();
        assert_eq!((c.max_size, c.max_file), (None, 1));
        let c = Config::parse("local", &opts(&[])).unwrap();
        assert_eq!(
            (c.max_size, c.max_file, c.compress),
            (Some(20 << 20), 5, true)
        );
        assert!(Config::parse("local", &opts(&[("max-file", "1")])).is_err());
        assert!(Config::parse("local", &opts(&[("max-file", "1"), ("compress", "false")])).is_ok());
        let err = |d: &str, kv: &[(&str, &str)]| Config::parse(d, &opts(kv)).unwrap_err();
        assert_eq!(
            err("syslog", &[]),
            "logger: no log driver named 'syslog' is registered"
        );
        assert_eq!(
            err("json-file", &[("max-sise", "1m")]),
            "unknown log opt 'max-sise' for json-file log driver"
        );
        assert_eq!(
            err("local", &[("foo", "1")]),
            "unknown log opt 'foo' for log driver local"
        );
        assert_eq!(
            err("json-file", &[("max-size", "10x")]),
            "invalid value for max-size: 10x: invalid size: '10x'"
        );
        assert_eq!(
            err("json-file", &[("max-size", "1m"), ("compress", "true")]),
            "compress cannot be true when max-file is less than 2 or max-size is not set"
        );
        assert!(err("json-file", &[("max-file", "0")]).contains("less than 1"));
        assert!(err("json-file", &[("compress", "yes")]).contains("invalid boolean"));
        assert!(Config::parse("none", &opts(&[("whatever", "1")])).is_ok());
    }

    #[test]
    fn files_are_named_as_dockers() {
        let c = Config::parse("json-file", &opts(&[])).unwrap();
        assert_eq!(
            c.path(Path::new("/d"), "abc"),
            Some(PathBuf::from("/d/abc-json.log"))
        );
        let r = rotated(Path::new("/d/x.log"), 3);
        assert_eq!(
            r,
            [
                (PathBuf::from("/d/x.log.1"), PathBuf::from("/d/x.log.1.gz")),
                (PathBuf::from("/d/x.log.2"), PathBuf::from("/d/x.log.2.gz")),
            ]
        );
    }
}
