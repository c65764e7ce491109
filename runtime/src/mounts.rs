//! User mounts: `-v`, `--mount` and `--tmpfs` parsed and checked as Docker does, kept in the
//! record, and turned into OCI spec mounts and `inspect`'s `Mounts`.
//!
//! Only the host side is checked here. The destination is resolved by libcontainer inside the
//! rootfs (pathrs, RESOLVE_IN_ROOT), so a symlink in the image cannot point it outside.

use std::path::{Component, Path};

use serde_json::{json, Value};

use crate::error::{Error, Result};

pub use crate::record::{Flag, Kind, Mount};

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "slave", "rslave", "shared", "rshared",
];
const DEFAULT_PROPAGATION: &str = "rprivate";

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn config_err(kind: Kind, msg: impl std::fmt::Display) -> Error {
    invalid(format!(
        "invalid mount config for type \"{}\": {msg}",
        kind.as_str()
    ))
}

/// Lexically cleans an absolute path (Go's filepath.Clean): no `.`, `..`, `//` or trailing `/`.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn target(kind: Kind, t: &str) -> Result<String> {
    if t.is_empty() {
        return Err(config_err(kind, "field Target must not be empty"));
    }
    if !t.starts_with('/') {
        return Err(config_err(
            kind,
            format!("invalid mount path: '{t}' mount path must be absolute"),
        ));
    }
    let t = clean(t);
    if t == "/" {
        return Err(invalid("invalid specification: destination can't be '/'"));
    }
    Ok(t)
}

/// `-v SRC:DST[:MODE]` or `-v DST` (an anonymous volume).
pub fn parse_volume(raw: &str) -> Result<Mount> {
    let parts: Vec<&str> = raw.split(':').collect();
    if parts.len() > 3 {
        return Err(invalid(format!("invalid volume specification: '{raw}'")));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(format!(
            "invalid spec: {raw}: empty section between colons"
        )));
    }
    let (src, dst, mode) = match parts[..] {
        [dst] => ("", dst, ""),
        [src, dst] => (src, dst, ""),
        [src, dst, mode] => (src, dst, mode),
        _ => unreachable!("split yields 1..=3 parts here"),
    };
    let kind = match src {
        "" => Kind::Volume,
        s if s.starts_with('/') => Kind::Bind,
        s if crate::volume::valid_name(s) => Kind::Volume,
        s => {
            return Err(invalid(format!(
                "create {s}: \"{s}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )))
        }
    };
    let mut m = Mount {
        kind,
        flag: Flag::Volume,
        source: if kind == Kind::Bind {
            clean(src)
        } else {
            src.to_string()
        },
        target: target(kind, dst)?,
        read_only: false,
        propagation: if kind == Kind::Bind {
            DEFAULT_PROPAGATION.into()
        } else {
            String::new()
        },
        mode: mode.to_string(),
        tmpfs_options: Vec::new(),
        raw: raw.to_string(),
        anonymous: src.is_empty(),
        nocopy: false,
    };
    let (mut rw_seen, mut prop_seen) = (false, false);
    for opt in mode.split(',').filter(|_| !mode.is_empty()) {
        match opt {
            "ro" | "rw" if !rw_seen => {
                rw_seen = true;
                m.read_only = opt == "ro";
            }
            // SELinux relabelling: nothing to do without SELinux.
            "z" | "Z" => {}
            "nocopy" if kind == Kind::Volume => m.nocopy = true,
            p if PROPAGATIONS.contains(&p) && !prop_seen && kind == Kind::Bind => {
                prop_seen = true;
                m.propagation = p.to_string();
            }
            _ => return Err(invalid(format!("invalid mode: {mode}"))),
        }
    }
    Ok(m)
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        Some(o) => Err(invalid(format!("invalid value for {key}: {o}"))),
    }
}

/// `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,bind-propagation=..]
/// [,tmpfs-size=..][,tmpfs-mode=..]` (type defaults to volume, as in Docker).
pub fn parse_mount(raw: &str) -> Result<Mount> {
    let flag_err = |msg: String| {
        invalid(format!(
            "invalid argument \"{raw}\" for \"--mount\" flag: {msg}"
        ))
    };
    let (mut kind, mut source, mut dst) = (Kind::Volume, None, String::new());
    let (mut read_only, mut propagation, mut tmpfs_options) = (false, None, Vec::new());
    let mut nocopy = false;
    for field in raw.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = || {
            value.ok_or_else(|| {
                flag_err(format!("invalid field '{field}' must be a key=value pair"))
            })
        };
        match key.as_str() {
            "type" => {
                kind = match need()? {
                    "bind" => Kind::Bind,
                    "volume" => Kind::Volume,
                    "tmpfs" => Kind::Tmpfs,
                    t => return Err(flag_err(format!("invalid value for type: {t}"))),
                }
            }
            "source" | "src" => source = Some(need()?.to_string()),
            "target" | "destination" | "dst" => dst = need()?.to_string(),
            "readonly" | "ro" => read_only = parse_bool(&key, value)?,
            "bind-propagation" => {
                let p = need()?;
                if !PROPAGATIONS.contains(&p) {
                    return Err(flag_err(format!("invalid value for bind-propagation: {p}")));
                }
                propagation = Some(p.to_string());
            }
            "tmpfs-size" => {
                let v = need()?;
                let n = crate::units::parse_bytes(v)
                    .map_err(|_| flag_err(format!("invalid value for tmpfs-size: {v}")))?;
                tmpfs_options.push(format!("size={n}"));
            }
            "tmpfs-mode" => {
                let v = need()?;
                let n = u32::from_str_radix(v, 8)
                    .map_err(|_| flag_err(format!("invalid value for tmpfs-mode: {v}")))?;
                tmpfs_options.push(format!("mode={n:o}"));
            }
            "volume-nocopy" => nocopy = parse_bool(&key, value)?,
            _ => return Err(flag_err(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let source = source.unwrap_or_default();
    match kind {
        Kind::Bind if source.is_empty() => {
            return Err(config_err(kind, "field Source must not be empty"))
        }
        Kind::Bind if !source.starts_with('/') => {
            return Err(config_err(
                kind,
                format!("invalid mount path: '{source}' mount path must be absolute"),
            ))
        }
        Kind::Tmpfs if !source.is_empty() => {
            return Err(config_err(kind, "field Source must not be specified"))
        }
        Kind::Volume if !source.is_empty() && !crate::volume::valid_name(&source) => {
            return Err(config_err(kind, format!("invalid volume name: {source:?}")))
        }
        _ => {}
    }
    if kind != Kind::Bind && propagation.is_some() {
        return Err(config_err(kind, "field BindOptions must not be specified"));
    }
    if kind != Kind::Tmpfs && !tmpfs_options.is_empty() {
        return Err(config_err(kind, "field TmpfsOptions must not be specified"));
    }
    Ok(Mount {
        kind,
        flag: Flag::Mount,
        anonymous: kind == Kind::Volume && source.is_empty(),
        nocopy,
        source: if kind == Kind::Bind {
            clean(&source)
        } else {
            source
        },
        target: target(kind, &dst)?,
        read_only,
        propagation: match kind {
            Kind::Bind => propagation.unwrap_or_else(|| DEFAULT_PROPAGATION.into()),
            _ => String::new(),
        },
        mode: String::new(),
        tmpfs_options,
        raw: raw.to_string(),
    })
}

const TMPFS_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "sync",
    "async",
    "dirsync",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
];
const TMPFS_KEYS: &[&str] = &["size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"];

/// `--tmpfs /path[:opts]`.
pub fn parse_tmpfs(raw: &str) -> Result<Mount> {
    let (dst, opts) = raw.split_once(':').unwrap_or((raw, ""));
    let mut options = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let ok = match o.split_once('=') {
            Some((k, v)) => TMPFS_KEYS.contains(&k) && !v.is_empty(),
            None => TMPFS_FLAGS.contains(&o),
        };
        if !ok {
            return Err(invalid(format!("invalid tmpfs option: {o:?}")));
        }
        options.push(o.to_string());
    }
    Ok(Mount {
        kind: Kind::Tmpfs,
        flag: Flag::Tmpfs,
        source: String::new(),
        target: target(Kind::Tmpfs, dst)?,
        read_only: options.iter().any(|o| o == "ro"),
        propagation: String::new(),
        mode: String::new(),
        tmpfs_options: options,
        raw: raw.to_string(),
        anonymous: false,
        nocopy: false,
    })
}

/// Docker's tmpfs options: noexec,nosuid,nodev unless the user's own options say otherwise
/// (a later option wins over an earlier opposite, as Docker's MergeTmpfsOptions).
pub fn tmpfs_options(m: &Mount) -> Vec<String> {
    let mut out: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    for o in &m.tmpfs_options {
        let key = o.split('=').next().unwrap_or(o);
        let opposite = match key.strip_prefix("no") {
            Some(base) if TMPFS_FLAGS.contains(&base) => base.to_string(),
            _ => format!("no{key}"),
        };
        out.retain(|x| {
            let k = x.split('=').next().unwrap_or(x);
            k != key && *x != opposite && !(matches!(key, "ro" | "rw") && matches!(k, "ro" | "rw"))
        });
        out.push(o.clone());
    }
    out
}

/// Checks a container's mounts as a whole: unique destinations and `--mount` bind sources that
/// must exist. Touches nothing.
pub fn check(mounts: &[Mount]) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.target == m.target) {
            return Err(invalid(format!("Duplicate mount point: {}", m.target)));
        }
        if m.kind == Kind::Bind && m.flag == Flag::Mount && !Path::new(&m.source).exists() {
            return Err(config_err(
                m.kind,
                format!("bind source path does not exist: {}", m.source),
            ));
        }
    }
    Ok(())
}

/// Names the anonymous volumes (64 hex, as Docker).
pub fn name_anonymous(mounts: &mut [Mount]) {
    for m in mounts
        .iter_mut()
        .filter(|m| m.anonymous && m.source.is_empty())
    {
        m.source = crate::store::new_id();
    }
}

/// Creates the missing host directories of `-v` binds, as Docker does.
pub fn create_sources(mounts: &[Mount]) -> Result<()> {
    for m in mounts {
        if m.kind == Kind::Bind && m.flag == Flag::Volume && !Path::new(&m.source).exists() {
            std::fs::create_dir_all(&m.source)
                .map_err(|e| Error::io(format!("creating bind source {}", m.source), e))?;
        }
    }
    Ok(())
}

/// What a start needs on the host before the spec is used: the `-v` host directories (Docker
/// makes them again at every start, in case they were removed since create) and empty volumes
/// filled with what the image has at their destination, as Docker does on first use.
pub fn prepare_start(root: &Path, rootfs: &Path, mounts: &[Mount]) -> Result<()> {
    create_sources(mounts)?;
    for m in mounts
        .iter()
        .filter(|m| m.kind == Kind::Volume && !m.nocopy)
    {
        let data = crate::volume::data_dir(root, &m.source);
        let empty = std::fs::read_dir(&data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        // Too many links is an error; the check below also refuses anything that is not,
        // once the host resolves it, exactly that path inside the rootfs.
        let Ok(from) = crate::rootfs::resolve_in(rootfs, &m.target) else {
            continue;
        };
        let inside = from
            .canonicalize()
            .is_ok_and(|c| c.starts_with(rootfs) && c == from);
        if empty && inside && from.is_dir() {
            crate::volume::copy_up(&from, &data).map_err(|e| {
                Error::io(format!("copying {} into volume {}", m.target, m.source), e)
            })?;
        }
    }
    Ok(())
}

/// The OCI spec mounts, parents before children (Docker sorts by depth). `in_root` resolves a
/// destination's symlinks inside the rootfs (Docker's FollowSymlinkInScope): libcontainer's
/// own scoped lookup refuses a dangling symlink, where Docker creates the directories it names
/// inside the rootfs.
pub fn spec_mounts(root: &Path, mounts: &[Mount], in_root: impl Fn(&str) -> String) -> Vec<Value> {
    let mut resolved: Vec<(String, &Mount)> =
        mounts.iter().map(|m| (in_root(&m.target), m)).collect();
    resolved.sort_by_key(|(t, _)| t.matches('/').count());
    resolved
        .into_iter()
        .map(|(dst, m)| match m.kind {
            Kind::Bind | Kind::Volume => {
                let propagation = match m.propagation.as_str() {
                    "" => DEFAULT_PROPAGATION,
                    p => p,
                };
                let mut options = vec!["rbind", propagation];
                if m.read_only {
                    options.push("ro");
                }
                let source = match m.kind {
                    Kind::Volume => crate::volume::data_dir(root, &m.source),
                    _ => m.source.clone().into(),
                };
                json!({
                    "destination": dst, "type": "bind", "source": source, "options": options,
                })
            }
            Kind::Tmpfs => {
                let mut options = tmpfs_options(m);
                options.push(DEFAULT_PROPAGATION.into());
                json!({
                    "destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options,
                })
            }
        })
        .collect()
}

/// `inspect`'s `Mounts`: binds and `--mount` tmpfs (Docker leaves `--tmpfs` out).
pub fn inspect_mounts(root: &Path, mounts: &[Mount]) -> Vec<Value> {
    mounts
        .iter()
        .filter(|m| m.flag != Flag::Tmpfs)
        .map(|m| {
            if m.kind == Kind::Volume {
                return json!({
                    "Type": "volume",
                    "Name": m.source,
                    "Source": crate::volume::data_dir(root, &m.source),
                    "Destination": m.target,
                    "Driver": "local",
                    // Docker's default mode of a volume mount.
                    "Mode": if m.mode.is_empty() { "z" } else { &m.mode },
                    "RW": !m.read_only,
                    "Propagation": "",
                });
            }
            json!({
                "Type": m.kind.as_str(),
                "Source": m.source,
                "Destination": m.target,
                "Mode": m.mode,
                "RW": !m.read_only,
                "Propagation": m.propagation,
            })
        })
        .collect()
}

/// `HostConfig.Binds`, `HostConfig.Mounts` and `HostConfig.Tmpfs`.
pub fn host_config(mounts: &[Mount]) -> (Value, Value, Value) {
    let binds: Vec<&str> = mounts
        .iter()
        .filter(|m| m.flag == Flag::Volume)
        .map(|m| m.raw.as_str())
        .collect();
    let mount_list: Vec<Value> = mounts
        .iter()
        .filter(|m| m.flag == Flag::Mount)
        .map(|m| {
            let mut v = json!({"Type": m.kind.as_str(), "Target": m.target});
            if !m.source.is_empty() {
                v["Source"] = json!(m.source);
            }
            if m.read_only {
                v["ReadOnly"] = json!(true);
            }
            v
        })
        .collect();
    let tmpfs: serde_json::Map<String, Value> = mounts
        .iter()
        .filter(|m| m.flag == Flag::Tmpfs)
        .map(|m| (m.target.clone(), json!(m.tmpfs_options.join(","))))
        .collect();
    let or_null = |empty: bool, v: Value| if empty { Value::Null } else { v };
    (
        or_null(binds.is_empty(), json!(binds)),
        or_null(mount_list.is_empty(), json!(mount_list)),
        or_null(tmpfs.is_empty(), Value::Object(tmpfs)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<Mount>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn volume_flag() {
        let m = parse_volume("/host//a/../b/:/data/").unwrap();
        assert_eq!((m.kind, m.flag), (Kind::Bind, Flag::Volume));
        assert_eq!((m.source.as_str(), m.target.as_str()), ("/host/b", "/data"));
        assert!(!m.read_only);
        assert_eq!((m.mode.as_str(), m.propagation.as_str()), ("", "rprivate"));
        let m = parse_volume("/h:/c:ro").unwrap();
        assert!(m.read_only);
        assert_eq!(m.mode, "ro");
        let m = parse_volume("/h:/c:rw,rslave").unwrap();
        assert!(!m.read_only);
        assert_eq!(m.propagation, "rslave");
        let m = parse_volume("data:/c").unwrap();
        assert_eq!((m.kind, m.source.as_str()), (Kind::Volume, "data"));
        let m = parse_volume("/anon").unwrap();
        assert_eq!((m.kind, m.source.as_str()), (Kind::Volume, ""));
    }

    #[test]
    fn bad_volume_flags() {
        assert_eq!(
            err(parse_volume(":/c")),
            "invalid spec: :/c: empty section between colons"
        );
        assert!(err(parse_volume("/h:")).contains("empty section"));
        assert!(err(parse_volume("/h::ro")).contains("empty section"));
        assert_eq!(
            err(parse_volume("/a:/b:ro:x")),
            "invalid volume specification: '/a:/b:ro:x'"
        );
        assert_eq!(err(parse_volume("/a:/b:rx")), "invalid mode: rx");
        assert_eq!(err(parse_volume("/a:/b:ro,rw")), "invalid mode: ro,rw");
        assert!(err(parse_volume("/a:rel")).contains("mount path must be absolute"));
        assert!(err(parse_volume("./rel:/b"))
            .contains("includes invalid characters for a local volume name"));
        assert!(err(parse_volume("/a:/")).contains("destination can't be '/'"));
        assert!(err(parse_volume("/a:/b/..")).contains("destination can't be '/'"));
    }

    #[test]
    fn mount_flag() {
        let m = parse_mount("type=bind,source=/h,target=/c,readonly").unwrap();
        assert_eq!((m.kind, m.flag), (Kind::Bind, Flag::Mount));
        assert!(m.read_only);
        assert_eq!((m.source.as_str(), m.target.as_str()), ("/h", "/c"));
        let m = parse_mount("type=bind,src=/h,dst=/c,ro=false,bind-propagation=rslave").unwrap();
        assert!(!m.read_only);
        assert_eq!(m.propagation, "rslave");
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.tmpfs_options, ["size=1048576", "mode=1770"]);
        assert_eq!(
            parse_mount("target=/v,source=vol").unwrap().kind,
            Kind::Volume
        );
        assert!(err(parse_mount("type=bind,target=/c")).contains("Source must not be empty"));
        assert!(err(parse_mount("type=bind,source=/h")).contains("Target must not be empty"));
        assert!(err(parse_mount("type=bind,source=rel,target=/c")).contains("must be absolute"));
        assert!(err(parse_mount("type=bind,source=/h,target=/c,foo=1"))
            .contains("unexpected key 'foo' in 'foo=1'"));
        assert!(err(parse_mount("type=nfs,target=/c")).contains("invalid value for type"));
        assert!(
            err(parse_mount("type=tmpfs,source=/h,target=/c")).contains("must not be specified")
        );
        assert!(
            err(parse_mount("type=bind,source=/h,target=/c,readonly=maybe"))
                .contains("invalid value for readonly")
        );
        assert!(
            err(parse_mount("type=bind,source=/h,target=/c,tmpfs-size=1m"))
                .contains("TmpfsOptions")
        );
    }

    #[test]
    fn tmpfs_flag_and_options() {
        let m = parse_tmpfs("/run").unwrap();
        assert_eq!(tmpfs_options(&m), ["noexec", "nosuid", "nodev"]);
        let m = parse_tmpfs("/run:exec,size=64k,mode=1777").unwrap();
        assert_eq!(
            tmpfs_options(&m),
            ["nosuid", "nodev", "exec", "size=64k", "mode=1777"]
        );
        assert!(parse_tmpfs("/run:ro").unwrap().read_only);
        assert!(err(parse_tmpfs("run")).contains("must be absolute"));
        assert!(err(parse_tmpfs("/run:bogus")).contains("invalid tmpfs option"));
        assert!(err(parse_tmpfs("/run:size=")).contains("invalid tmpfs option"));
    }

    #[test]
    fn whole_set_checks() {
        let a = parse_volume("/tmp:/c").unwrap();
        let b = parse_tmpfs("/c/").unwrap();
        assert_eq!(
            check(&[a.clone(), b]).unwrap_err().to_string(),
            "Duplicate mount point: /c"
        );
        let missing = parse_mount("type=bind,source=/nonexistent-rbox-x,target=/c").unwrap();
        assert_eq!(
            check(&[missing]).unwrap_err().to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-rbox-x"
        );
        assert!(check(&[a]).is_ok());
    }

    #[test]
    fn spec_and_inspect() {
        let ms = vec![
            parse_volume("/h/x:/a/b:ro").unwrap(),
            parse_mount("type=bind,source=/h,target=/a").unwrap(),
            parse_tmpfs("/t:size=1m").unwrap(),
        ];
        let spec = spec_mounts(Path::new("/r"), &ms, |t| t.replace("/a", "/z/y"));
        // Sorted by the depth of the resolved destination.
        assert_eq!(spec[0]["destination"], "/t");
        assert_eq!(spec[1]["destination"], "/z/y");
        assert_eq!(spec[2]["destination"], "/z/y/b");
        assert_eq!(spec[2]["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(
            spec[0]["options"],
            json!(["noexec", "nosuid", "nodev", "size=1m", "rprivate"])
        );
        let ins = inspect_mounts(Path::new("/r"), &ms);
        assert_eq!(ins.len(), 2);
        assert_eq!(
            ins[0],
            json!({"Type": "bind", "Source": "/h/x", "Destination": "/a/b", "Mode": "ro",
                   "RW": false, "Propagation": "rprivate"})
        );
        let (binds, mounts, tmpfs) = host_config(&ms);
        assert_eq!(binds, json!(["/h/x:/a/b:ro"]));
        assert_eq!(
            mounts,
            json!([{"Type": "bind", "Source": "/h", "Target": "/a"}])
        );
        assert_eq!(tmpfs, json!({"/t": "size=1m"}));
    }

    #[test]
    fn copy_up_never_reads_outside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let (root, rootfs, host) = (
            d.path().join("root"),
            d.path().join("rootfs"),
            d.path().join("host"),
        );
        for p in [&root, &rootfs, &host] {
            std::fs::create_dir(p).unwrap();
        }
        std::fs::write(host.join("secret"), "s").unwrap();
        std::fs::create_dir(rootfs.join("img")).unwrap();
        std::fs::write(rootfs.join("img/file"), "i").unwrap();
        // More links than resolve_in follows, the last one naming a host directory.
        for i in 0..45 {
            std::os::unix::fs::symlink(format!("l{}", i + 1), rootfs.join(format!("l{i}")))
                .unwrap();
        }
        std::os::unix::fs::symlink(&host, rootfs.join("l45")).unwrap();
        let ms = vec![
            parse_volume("deep:/l0").unwrap(),
            parse_volume("img:/img").unwrap(),
        ];
        for m in &ms {
            crate::volume::create(&root, &m.source, Default::default()).unwrap();
        }
        prepare_start(&root, &rootfs, &ms).unwrap();
        assert!(crate::volume::data_dir(&root, "img").join("file").exists());
        let deep = crate::volume::data_dir(&root, "deep");
        assert_eq!(
            std::fs::read_dir(&deep).unwrap().count(),
            0,
            "copied from the host"
        );
    }
}
