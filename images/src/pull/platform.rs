//! Which image of a multi-platform index to use: the host's platform or the one `--platform`
//! names, as `os/arch[/variant]` (Go's names, as image configs and indexes use).

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: crate::import::go_arch().into(),
            variant: None,
        }
    }

    /// "linux/arm64/v8", "linux/amd64", or just "arm64" (os linux).
    pub fn parse(s: &str) -> Result<Platform> {
        let bad = || {
            Error::Other(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ))
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(variant.to_string())),
            _ => return Err(bad()),
        };
        Ok(Platform {
            os: os.to_lowercase(),
            architecture: normalize_arch(&arch.to_lowercase()).to_string(),
            variant,
        })
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != self.os || normalize_arch(arch) != self.architecture {
            return false;
        }
        match (self.variant.as_deref(), variant) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            // arm64 images usually leave out their (only) variant v8.
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The index entry for `want`, if the index has one.
pub(crate) fn choose<'a>(index: &'a ImageIndex, want: &Platform) -> Option<&'a Descriptor> {
    index.manifests().iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| {
            want.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                    "size": 1,
                    "platform": p,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn chosen(idx: &ImageIndex, want: &str) -> Option<char> {
        let d = choose(idx, &Platform::parse(want).unwrap())?;
        d.digest().to_string().chars().last()
    }

    #[test]
    fn parses_platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chooses_by_os_arch_and_variant() {
        let idx = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "amd64", None),
            ("linux", "arm64", None),
            ("windows", "amd64", None),
        ]);
        assert_eq!(chosen(&idx, "linux/arm/v7"), Some('1'));
        assert_eq!(chosen(&idx, "linux/arm"), Some('0'));
        assert_eq!(chosen(&idx, "linux/amd64"), Some('2'));
        assert_eq!(chosen(&idx, "linux/arm64/v8"), Some('3'));
        assert_eq!(chosen(&idx, "windows/amd64"), Some('4'));
        assert_eq!(chosen(&idx, "linux/s390x"), None);
    }
}
