//! Image store: import, load (docker-save and OCI layout), save, tag, rmi, unpack safety.
//! Archives are built here with the `tar` crate, writing raw header names where a hostile
//! archive needs names `tar::Builder` would refuse (`..`, absolute paths).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use flate2::write::GzEncoder;
use rbox_tests::{image_tar, Rbox, RboxCli};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tar::{Builder, EntryType, Header};

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Builds tar archives entry by entry.
struct Tar(Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(Builder::new(Vec::new()))
    }

    fn raw(
        mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) -> Tar {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Tar {
        self.raw(name, EntryType::Regular, None, data, 0o644)
    }

    fn dir(self, name: &str) -> Tar {
        self.raw(name, EntryType::Directory, None, b"", 0o755)
    }

    fn symlink(self, name: &str, target: &str) -> Tar {
        self.raw(name, EntryType::Symlink, Some(target), b"", 0o777)
    }

    fn hardlink(self, name: &str, target: &str) -> Tar {
        self.raw(name, EntryType::Link, Some(target), b"", 0o644)
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn config(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha(l)))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A `docker save` archive of `images` (tag, layer tars).
fn docker_archive(images: &[(Option<&str>, Vec<&[u8]>)]) -> Vec<u8> {
    let mut t = Tar::new();
    let mut manifest = Vec::new();
    let mut seen = Vec::new();
    for (tag, layers) in images {
        let cfg = config(layers, "sh");
        let cfg_name = format!("{}.json", sha(&cfg));
        let mut names = Vec::new();
        for l in layers {
            let name = format!("{}/layer.tar", sha(l));
            if !seen.contains(&name) {
                t = t.file(&name, l);
                seen.push(name.clone());
            }
            names.push(name);
        }
        t = t.file(&cfg_name, &cfg);
        manifest
            .push(json!({"Config": cfg_name, "RepoTags": tag.map(|t| vec![t]), "Layers": names}));
    }
    t.file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .bytes()
}

/// An OCI image layout archive with gzip layers, named by the containerd annotation.
fn oci_archive(name: &str, layers: &[&[u8]]) -> (Vec<u8>, String) {
    let cfg = config(layers, "true");
    let mut t = Tar::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .dir("blobs/")
        .dir("blobs/sha256/");
    let mut descs = Vec::new();
    for l in layers {
        let gz = gzip(l);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha(&gz)), "size": gz.len()}));
        t = t.file(&format!("blobs/sha256/{}", sha(&gz)), &gz);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha(&manifest)),
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "v1"},
        }],
    }))
    .unwrap();
    let digest = format!("sha256:{}", sha(&manifest));
    let t = t
        .file(&format!("blobs/sha256/{}", sha(&cfg)), &cfg)
        .file(&format!("blobs/sha256/{}", sha(&manifest)), &manifest)
        .file("index.json", &index);
    (t.bytes(), digest)
}

/// A scratch file or directory under /tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = PathBuf::from(format!("/tmp/rbox-imgtest-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        Scratch(p)
    }

    fn write(tag: &str, data: &[u8]) -> Scratch {
        let s = Scratch::new(tag);
        fs::write(&s.0, data).unwrap();
        s
    }

    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0).or_else(|_| fs::remove_file(&self.0));
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn layers(r: &Rbox) -> Vec<String> {
    entries(&r.root.join("images/layers"))
}

fn blobs(r: &Rbox) -> Vec<String> {
    entries(&r.root.join("images/blobs/sha256"))
}

/// What rebuilds each layer's tar for `save` (the tar itself is not kept).
fn splits(r: &Rbox) -> Vec<String> {
    entries(&r.root.join("images/splits"))
}

/// Nothing registered and nothing left in the store's directories.
#[track_caller]
fn assert_store_empty(r: &Rbox) {
    assert_eq!(layers(r), Vec::<String>::new(), "layers left");
    assert_eq!(blobs(r), Vec::<String>::new(), "blobs left");
    assert_eq!(splits(r), Vec::<String>::new(), "layer splits left");
    assert_eq!(
        entries(&r.root.join("images/tmp")),
        Vec::<String>::new(),
        "staging left"
    );
    assert_eq!(r.ok(&["images", "-q"]), "");
}

fn inspect(r: &Rbox, image: &str) -> Value {
    let out = r.ok(&["image", "inspect", image]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn layer_dir(r: &Rbox, diff_id: &str) -> PathBuf {
    r.root
        .join("images/layers")
        .join(diff_id.trim_start_matches("sha256:"))
}

/// Runs rbox with `input` on stdin.
fn run_stdin(r: &Rbox, args: &[&str], input: &[u8]) -> rbox_tests::Run {
    let mut c = r.command(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.into()
}

#[track_caller]
fn one_error_line(stderr: &str, contains: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr:?}");
    assert!(lines[0].starts_with("Error: "), "{stderr:?}");
    assert!(
        lines[0].contains(contains),
        "{stderr:?} should mention {contains:?}"
    );
}

#[test]
fn import_busybox_with_changes_then_list_inspect_and_layer_contents() {
    let r = Rbox::new("img-import");
    let tar = image_tar("busybox");
    let id = r.ok(&[
        "import",
        "--change",
        r#"CMD ["sh"]"#,
        "--change",
        "ENV A=1 B=\"two words\"",
        "--change",
        "EXPOSE 80",
        "-c",
        "WORKDIR /tmp",
        "-c",
        "USER nobody",
        "-c",
        "LABEL k=v",
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let list = r.ok(&["images"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("busybox ")
            && lines[1].contains(" latest ")
            && lines[1].contains(&id[7..19]),
        "{list}"
    );
    assert_eq!(r.ok(&["images", "-q"]).trim(), &id[7..19]);
    assert_eq!(
        r.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .trim(),
        "busybox:latest"
    );

    // Short name, full name and id prefix resolve alike.
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        &id[7..15],
        id,
    ] {
        assert_eq!(inspect(&r, name)["Id"], id, "{name}");
    }
    let v = inspect(&r, "busybox");
    assert_eq!(v["RepoTags"], json!(["busybox:latest"]));
    assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
    assert_eq!(v["Config"]["Env"], json!(["A=1", "B=two words"]));
    assert_eq!(v["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
    assert_eq!(v["Config"]["WorkingDir"], "/tmp");
    assert_eq!(v["Config"]["User"], "nobody");
    assert_eq!(v["Config"]["Labels"], json!({"k": "v"}));
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["RootFS"]["Type"], "layers");
    let diff_id = v["RootFS"]["Layers"][0].as_str().unwrap().to_string();
    assert_eq!(diff_id, format!("sha256:{}", sha(&fs::read(&tar).unwrap())));
    assert!(v["Size"].as_u64().unwrap() > 1_000_000);
    assert_eq!(
        r.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"])
            .trim(),
        id
    );

    let dir = layer_dir(&r, &diff_id);
    assert!(
        fs::metadata(dir.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    assert_eq!(
        fs::read_link(dir.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::symlink_metadata(dir.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert!(fs::read_to_string(dir.join("etc/passwd"))
        .unwrap()
        .contains("nobody:x:65534"));
    assert_eq!(entries(&r.root.join("images/tmp")), Vec::<String>::new());
}

#[test]
fn import_gzip_from_stdin_untagged_then_tag_and_rmi() {
    let r = Rbox::new("img-gzip");
    let plain = Tar::new().dir("etc/").file("etc/hello", b"hi\n").bytes();
    let out = run_stdin(&r, &["import", "-"], &gzip(&plain));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    let v = inspect(&r, &id);
    assert_eq!(v["RepoTags"], json!([]));
    assert_eq!(
        v["RootFS"]["Layers"],
        json!([format!("sha256:{}", sha(&plain))])
    );
    assert!(r.ok(&["images"]).contains("<none>"));

    r.ok(&["tag", &id[7..19], "mine/hello:v2"]);
    r.ok(&["image", "tag", "mine/hello:v2", "other"]);
    assert_eq!(
        inspect(&r, "mine/hello:v2")["RepoTags"],
        json!(["mine/hello:v2", "other:latest"])
    );
    // By id with two tags: refused unless forced; by tag: only untags.
    let err = r.fails(1, &["rmi", &id]);
    one_error_line(&err, "must be forced");
    assert_eq!(r.ok(&["rmi", "other"]), "Untagged: other:latest\n");
    assert_eq!(
        r.ok(&["image", "rm", "mine/hello:v2"]),
        format!("Untagged: mine/hello:v2\nDeleted: {id}\n")
    );
    assert_store_empty(&r);
}

#[test]
fn save_then_load_into_another_root_from_file_and_stdin() {
    let a = Rbox::with_busybox("img-save-a");
    let b = Rbox::new("img-save-b");
    let archive = Scratch::new("save.tar");
    a.ok(&["tag", "busybox", "copy:v1"]);
    a.ok(&["save", "-o", archive.s(), "busybox"]);
    let id = inspect(&a, "busybox")["Id"].as_str().unwrap().to_string();

    assert_eq!(
        b.ok(&["load", "-i", archive.s()]),
        "Loaded image: busybox:latest\n"
    );
    let v = inspect(&b, "busybox");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
    let dir = layer_dir(&b, v["RootFS"]["Layers"][0].as_str().unwrap());
    assert!(dir.join("bin/busybox").is_file());

    // Two images in one archive, streamed on stdin and gzipped; the known layer is kept once.
    let mut save = a.command(&["save", "busybox", "copy:v1"]);
    let data = save.stdout(Stdio::piped()).output().unwrap();
    assert!(data.status.success());
    let out = run_stdin(&b, &["load"], &gzip(&data.stdout));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Loaded image: busybox:latest\nLoaded image: copy:v1\n"
    );
    assert_eq!(inspect(&b, "copy:v1")["Id"], id.as_str());
    assert_eq!(layers(&b).len(), 1);
    assert_eq!(blobs(&b).len(), 1, "one config");
    assert_eq!(splits(&b), layers(&b), "each layer once, with its split");
}

#[test]
fn saved_archive_has_docker_layout() {
    let a = Rbox::with_busybox("img-save-layout");
    let archive = Scratch::new("layout.tar");
    a.ok(&["save", "-o", archive.s(), "busybox:latest"]);
    let mut names = Vec::new();
    let mut manifest = Value::Null;
    let mut layer_tars = Vec::new();
    let mut tar = tar::Archive::new(fs::File::open(&archive.0).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            manifest = serde_json::from_reader(&mut e).unwrap();
        }
        if let Some(hex) = name.strip_suffix("/layer.tar") {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            layer_tars.push((hex.to_string(), sha(&data)));
        }
        names.push(name);
    }
    // The store keeps each layer once (unpacked, plus a small split), yet `save` gives the
    // exact layer tar back: its digest is the diff_id.
    for (hex, digest) in &layer_tars {
        assert_eq!(hex, digest, "rebuilt layer.tar differs from its diff_id");
    }
    let split_bytes: u64 = splits(&a)
        .iter()
        .map(|s| {
            fs::metadata(a.root.join("images/splits").join(s))
                .unwrap()
                .len()
        })
        .sum();
    let tar_bytes = fs::metadata(image_tar("busybox")).unwrap().len();
    assert!(
        split_bytes * 20 < tar_bytes,
        "splits hold {split_bytes} bytes for a {tar_bytes}-byte layer"
    );
    let v = inspect(&a, "busybox");
    let id_hex = &v["Id"].as_str().unwrap()[7..];
    let layer_hex = &v["RootFS"]["Layers"][0].as_str().unwrap()[7..];
    assert_eq!(manifest[0]["Config"], format!("{id_hex}.json"));
    assert_eq!(manifest[0]["RepoTags"], json!(["busybox:latest"]));
    assert_eq!(
        manifest[0]["Layers"],
        json!([format!("{layer_hex}/layer.tar")])
    );
    assert!(names.contains(&"repositories".to_string()), "{names:?}");
    assert!(names.contains(&format!("{id_hex}.json")), "{names:?}");
}

#[test]
fn oci_layout_archive_loads_with_verified_blobs() {
    let r = Rbox::new("img-oci");
    let l1 = Tar::new().dir("etc/").file("etc/os", b"oci\n").bytes();
    let l2 = Tar::new().dir("srv/").file("srv/data", b"second\n").bytes();
    let (archive, manifest_digest) = oci_archive("example.com/team/app:v1", &[&l1, &l2]);
    let f = Scratch::write("oci.tar", &archive);
    assert_eq!(
        r.ok(&["load", "-i", f.s()]),
        "Loaded image: example.com/team/app:v1\n"
    );
    let v = inspect(&r, "example.com/team/app:v1");
    assert_eq!(
        v["RepoDigests"],
        json!([format!("example.com/team/app@{manifest_digest}")])
    );
    assert_eq!(
        v["RootFS"]["Layers"],
        json!([
            format!("sha256:{}", sha(&l1)),
            format!("sha256:{}", sha(&l2))
        ])
    );
    assert_eq!(v["Config"]["Cmd"], json!(["true"]));
    assert_eq!(
        fs::read_to_string(layer_dir(&r, &sha(&l2)).join("srv/data")).unwrap(),
        "second\n"
    );
    // The digest reference resolves too.
    assert_eq!(
        inspect(&r, &format!("example.com/team/app@{manifest_digest}"))["Id"],
        v["Id"]
    );
}

#[test]
fn whiteouts_apply_across_two_layers_in_overlayfs() {
    let r = Rbox::new("img-whiteout");
    let l1 = Tar::new()
        .dir("a/")
        .file("a/gone", b"1")
        .file("a/kept", b"2")
        .dir("b/")
        .file("b/old", b"3")
        .bytes();
    let l2 = Tar::new()
        .file("a/.wh.gone", b"")
        .dir("b/")
        .file("b/.wh..wh..opq", b"")
        .file("b/new", b"4")
        .bytes();
    let f = Scratch::write(
        "wh.tar",
        &docker_archive(&[(Some("wh:latest"), vec![&l1, &l2])]),
    );
    r.ok(&["load", "-i", f.s()]);

    let upper = layer_dir(&r, &sha(&l2));
    let lower = layer_dir(&r, &sha(&l1));
    let wh = fs::symlink_metadata(upper.join("a/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    assert!(!upper.join("b/.wh..wh..opq").exists() && !upper.join("a/.wh.gone").exists());
    assert_eq!(
        getxattr(&upper.join("b"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );

    let mnt = r.root.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let opts = format!("lowerdir={}:{}", upper.display(), lower.display());
    mount_overlay(&mnt, &opts);
    let seen = (entries(&mnt.join("a")), entries(&mnt.join("b")));
    unmount(&mnt);
    assert_eq!(seen, (vec!["kept".to_string()], vec!["new".to_string()]));
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn mount_overlay(target: &Path, opts: &str) {
    let t = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
    let o = std::ffi::CString::new(opts).unwrap();
    let ty = std::ffi::CString::new("overlay").unwrap();
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            ty.as_ptr(),
            t.as_ptr(),
            ty.as_ptr(),
            libc::MS_RDONLY,
            o.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount overlay: {}", std::io::Error::last_os_error());
}

fn unmount(target: &Path) {
    let t = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
}

#[test]
fn shared_layers_are_stored_once_and_freed_with_the_last_image() {
    let r = Rbox::new("img-shared");
    let base = Tar::new().dir("etc/").file("etc/base", b"base").bytes();
    let top = Tar::new().file("etc/top", b"top").bytes();
    let f = Scratch::write(
        "shared.tar",
        &docker_archive(&[(Some("one"), vec![&base]), (Some("two"), vec![&base, &top])]),
    );
    assert_eq!(
        r.ok(&["load", "-i", f.s()]),
        "Loaded image: one:latest\nLoaded image: two:latest\n"
    );
    assert_eq!(layers(&r), {
        let mut v = vec![sha(&base), sha(&top)];
        v.sort();
        v
    });
    assert_eq!(blobs(&r).len(), 2, "two configs");
    assert_eq!(splits(&r), layers(&r), "each layer once, with its split");

    r.ok(&["rmi", "two"]);
    assert_eq!(
        layers(&r),
        vec![sha(&base)],
        "the shared layer stays for image one"
    );
    assert!(layer_dir(&r, &sha(&base)).join("etc/base").exists());
    r.ok(&["rmi", "one"]);
    assert_store_empty(&r);
}

/// Imports a hostile archive; returns the result.
fn import_bytes(r: &Rbox, tag: &str, data: &[u8]) -> rbox_tests::Run {
    let f = Scratch::write(tag, data);
    r.run(&["import", f.s(), "evil:latest"])
}

#[test]
fn dotdot_entry_is_refused_and_host_untouched() {
    let r = Rbox::new("img-esc-dotdot");
    let target = Scratch::new("dotdot-target");
    // From <layers>/<tmp>/ three levels up is <root>; the name climbs to the target in /tmp.
    let depth = r.root.join("images/layers/x").components().count();
    let name = format!("{}{}", "../".repeat(depth), &target.s()[1..]);
    assert!(name.len() < 100);
    let out = import_bytes(
        &r,
        "dotdot.tar",
        &Tar::new().file("ok", b"1").file(&name, b"evil").bytes(),
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    one_error_line(&out.stderr, "..");
    assert!(!target.0.exists(), "{} written", target.s());
    assert_store_empty(&r);
}

#[test]
fn absolute_entry_stays_inside_the_layer() {
    let r = Rbox::new("img-esc-abs");
    let target = Scratch::new("abs-target");
    let layer = Tar::new().file(target.s(), b"evil").bytes();
    let out = import_bytes(&r, "abs.tar", &layer);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!target.0.exists(), "{} written on the host", target.s());
    let inside = layer_dir(&r, &sha(&layer)).join(&target.s()[1..]);
    assert_eq!(fs::read(inside).unwrap(), b"evil");
}

#[test]
fn write_through_symlink_is_refused_and_host_untouched() {
    let r = Rbox::new("img-esc-symlink");
    let target = Scratch::new("symlink-target");
    fs::create_dir(&target.0).unwrap();
    let layer = Tar::new()
        .symlink("lnk", target.s())
        .file("lnk/file", b"evil")
        .bytes();
    let out = import_bytes(&r, "symlink.tar", &layer);
    assert_eq!(out.code, 1);
    one_error_line(&out.stderr, "symlink");
    assert_eq!(entries(&target.0), Vec::<String>::new());
    // The same through a relative symlink that climbs out.
    let layer = Tar::new()
        .symlink("up", "../../../../../../../../../../tmp")
        .file(&format!("up/{}", &target.s()[5..]), b"x")
        .bytes();
    assert_eq!(import_bytes(&r, "symlink2.tar", &layer).code, 1);
    assert_eq!(entries(&target.0), Vec::<String>::new());
    assert_store_empty(&r);
}

#[test]
fn replacing_a_symlink_never_follows_it() {
    let r = Rbox::new("img-esc-replace");
    let file = Scratch::write("replace-file", b"orig");
    let dir = Scratch::new("replace-dir");
    fs::create_dir(&dir.0).unwrap();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o700)).unwrap();
    let layer = Tar::new()
        .symlink("f", file.s())
        .file("f", b"evil")
        .symlink("d", dir.s())
        .raw("d/", EntryType::Directory, None, b"", 0o777)
        .bytes();
    let out = import_bytes(&r, "replace.tar", &layer);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs::read(&file.0).unwrap(), b"orig");
    assert_eq!(
        fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let l = layer_dir(&r, &sha(&layer));
    assert_eq!(fs::read(l.join("f")).unwrap(), b"evil");
    assert!(fs::symlink_metadata(l.join("d")).unwrap().is_dir());
}

#[test]
fn hardlinks_outside_the_layer_are_refused_and_host_untouched() {
    let r = Rbox::new("img-esc-hardlink");
    let secret = Scratch::write("hardlink-secret", b"secret");
    let dir = Scratch::new("hardlink-dir");
    fs::create_dir(&dir.0).unwrap();
    fs::write(dir.0.join("s"), b"secret").unwrap();
    let cases = [
        Tar::new().hardlink("hl", secret.s()).bytes(),
        Tar::new()
            .hardlink("hl", &format!("../../../../../../../..{}", secret.s()))
            .bytes(),
        Tar::new()
            .symlink("lnk", dir.s())
            .hardlink("hl", "lnk/s")
            .bytes(),
    ];
    for (i, layer) in cases.iter().enumerate() {
        let out = import_bytes(&r, &format!("hardlink{i}.tar"), layer);
        assert_eq!(out.code, 1, "case {i}: {}", out.stdout);
        one_error_line(&out.stderr, "hard link");
    }
    assert_eq!(fs::metadata(&secret.0).unwrap().nlink(), 1);
    assert_eq!(fs::metadata(dir.0.join("s")).unwrap().nlink(), 1);
    assert_store_empty(&r);

    // A hard link inside the layer works.
    let ok = Tar::new().file("a", b"x").hardlink("b", "a").bytes();
    assert_eq!(import_bytes(&r, "hardlink-ok.tar", &ok).code, 0);
    let l = layer_dir(&r, &sha(&ok));
    assert_eq!(
        fs::metadata(l.join("a")).unwrap().ino(),
        fs::metadata(l.join("b")).unwrap().ino()
    );
}

#[test]
fn digest_mismatches_are_refused_and_nothing_registered() {
    let r = Rbox::new("img-digest");
    let real = Tar::new().file("x", b"real").bytes();
    let other = Tar::new().file("x", b"other").bytes();
    // Docker archive whose config names another layer than the one shipped.
    let cfg = config(&[&other], "sh");
    let archive = Tar::new()
        .file("layer/layer.tar", &real)
        .file(&format!("{}.json", sha(&cfg)), &cfg)
        .file(
            "manifest.json",
            &serde_json::to_vec(&json!([{"Config": format!("{}.json", sha(&cfg)), "RepoTags": ["bad:1"], "Layers": ["layer/layer.tar"]}])).unwrap(),
        )
        .bytes();
    let f = Scratch::write("mismatch.tar", &archive);
    one_error_line(&r.fails(1, &["load", "-i", f.s()]), "digest mismatch");
    assert_store_empty(&r);

    // Config stored under a name that is not its digest.
    let cfg = config(&[&real], "sh");
    let wrong = "0".repeat(64);
    let archive = Tar::new()
        .file("l/layer.tar", &real)
        .file(&format!("{wrong}.json"), &cfg)
        .file(
            "manifest.json",
            &serde_json::to_vec(
                &json!([{"Config": format!("{wrong}.json"), "Layers": ["l/layer.tar"]}]),
            )
            .unwrap(),
        )
        .bytes();
    let f = Scratch::write("mismatch2.tar", &archive);
    one_error_line(&r.fails(1, &["load", "-i", f.s()]), "digest mismatch");

    // OCI blob whose content does not match its name.
    let (archive, _) = oci_archive("tampered:1", &[&real]);
    let mut tampered = Vec::new();
    let mut t = Tar::new();
    let mut a = tar::Archive::new(&archive[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if name.starts_with("blobs/sha256/") && data.starts_with(&[0x1f, 0x8b]) {
            data = gzip(&other);
        }
        t = if e.header().entry_type().is_dir() {
            t.dir(&name)
        } else {
            t.file(&name, &data)
        };
    }
    tampered.extend(t.bytes());
    let f = Scratch::write("mismatch3.tar", &tampered);
    one_error_line(&r.fails(1, &["load", "-i", f.s()]), "digest mismatch");
    assert_store_empty(&r);
}

#[test]
fn bad_input_is_one_error_line_and_leaves_nothing() {
    let r = Rbox::new("img-bad");
    let busybox = fs::read(image_tar("busybox")).unwrap();
    let truncated = Scratch::write("truncated.tar", &busybox[..busybox.len() / 2 + 100]);
    one_error_line(&r.fails(1, &["import", truncated.s(), "t:1"]), "");
    let gz = gzip(&busybox);
    let truncated_gz = Scratch::write("truncated.tar.gz", &gz[..gz.len() / 2]);
    one_error_line(&r.fails(1, &["import", truncated_gz.s(), "t:2"]), "");
    one_error_line(&r.fails(1, &["load", "-i", truncated.s()]), "");

    let text = Scratch::write("text.txt", b"this is not an archive, just some words\n");
    one_error_line(&r.fails(1, &["import", text.s()]), "");
    one_error_line(&r.fails(1, &["load", "-i", text.s()]), "");
    let empty = Scratch::write("empty", b"");
    one_error_line(&r.fails(1, &["import", empty.s()]), "");

    let layer = Tar::new().file("x", b"1").bytes();
    let cfg = config(&[&layer], "sh");
    let missing = Tar::new()
        .file(&format!("{}.json", sha(&cfg)), &cfg)
        .file(
            "manifest.json",
            &serde_json::to_vec(
                &json!([{"Config": format!("{}.json", sha(&cfg)), "Layers": ["nope/layer.tar"]}]),
            )
            .unwrap(),
        )
        .bytes();
    let missing = Scratch::write("missing.tar", &missing);
    one_error_line(
        &r.fails(1, &["load", "-i", missing.s()]),
        "nope/layer.tar missing",
    );

    let tar = image_tar("busybox");
    one_error_line(
        &r.fails(
            1,
            &["import", "--change", "RUN rm -rf /", tar.to_str().unwrap()],
        ),
        "RUN is not a valid change command",
    );
    one_error_line(
        &r.fails(1, &["import", tar.to_str().unwrap(), "Bad:Name"]),
        "invalid reference format",
    );
    one_error_line(
        &r.fails(1, &["rmi", "no-such-image"]),
        "No such image: no-such-image:latest",
    );
    one_error_line(
        &r.fails(1, &["image", "inspect", "no-such-image"]),
        "No such image",
    );
    assert_store_empty(&r);

    let file_root = Scratch::write("root-is-a-file", b"x");
    let out = std::process::Command::new(rbox_tests::rbox_bin())
        .args(["--root", file_root.s(), "import", tar.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&String::from_utf8_lossy(&out.stderr), "not a directory");
    assert_eq!(fs::read(&file_root.0).unwrap(), b"x");
}

#[test]
fn concurrent_loads_of_one_image_all_succeed_and_store_it_once() {
    let a = Rbox::with_busybox("img-conc-a");
    let archive = Scratch::new("conc.tar");
    a.ok(&["save", "-o", archive.s(), "busybox"]);
    let b = Rbox::new("img-conc-b");
    let children: Vec<_> = (0..4)
        .map(|_| {
            b.command(&["load", "-i", archive.s()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Loaded image: busybox:latest\n"
        );
    }
    assert_eq!(layers(&b).len(), 1);
    assert_eq!(blobs(&b).len(), 1);
    assert_eq!(splits(&b), layers(&b));
    assert_eq!(entries(&b.root.join("images/tmp")), Vec::<String>::new());
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn leftovers_of_a_killed_writer_are_removed_by_the_next_command() {
    let r = Rbox::with_busybox("img-leftovers");
    // What a kill -9 mid-load leaves: staging and half-unpacked layer dirs of a dead pid.
    let dead = "999999999";
    let stage = r.root.join(format!("images/tmp/.tmp-{dead}-0-stage"));
    let layer = r.root.join(format!("images/layers/.tmp-{dead}-1-abc"));
    fs::create_dir_all(stage.join("x")).unwrap();
    fs::create_dir_all(layer.join("bin")).unwrap();
    r.ok(&["tag", "busybox", "again"]);
    assert!(!stage.exists() && !layer.exists());
    assert_eq!(layers(&r).len(), 1);
}

#[test]
fn kill_9_during_load_leaves_whole_image_or_nothing() {
    let a = Rbox::with_busybox("img-kill-a");
    let archive = Scratch::new("kill.tar");
    a.ok(&["save", "-o", archive.s(), "busybox"]);
    let b = Rbox::new("img-kill-b");
    for delay_ms in [0u64, 5, 15, 30] {
        let mut child = b
            .command(&["load", "-i", archive.s()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SAFETY: signalling the child we spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Readers see either no image or a complete one.
        match b.ok(&["images", "-q"]).lines().count() {
            0 => {}
            1 => {
                let v = inspect(&b, "busybox");
                assert!(layer_dir(&b, v["RootFS"]["Layers"][0].as_str().unwrap())
                    .join("bin/busybox")
                    .is_file());
            }
            n => panic!("{n} images after one load"),
        }
        // The next writer finishes the job and clears the leftovers.
        b.ok(&["load", "-i", archive.s()]);
        assert_eq!(layers(&b).len(), 1, "delay {delay_ms}");
        assert_eq!(blobs(&b).len(), 1, "delay {delay_ms}");
        assert_eq!(splits(&b), layers(&b), "delay {delay_ms}");
        assert_eq!(entries(&b.root.join("images/tmp")), Vec::<String>::new());
        b.ok(&["rmi", "busybox"]);
        assert_store_empty(&b);
    }
}

#[test]
fn rmi_refuses_an_image_a_container_uses_unless_forced() {
    let r = Rbox::with_busybox("img-inuse");
    let id = inspect(&r, "busybox")["Id"].as_str().unwrap().to_string();
    let c = r.ok(&["create", "--network", "none", "busybox", "true"]);
    one_error_line(&r.fails(1, &["rmi", "busybox"]), "must force");
    one_error_line(&r.fails(1, &["image", "rm", &id]), "must be forced");
    // Forced: untagged, but the image and its layer stay while the container needs them.
    assert_eq!(
        r.ok(&["rmi", "-f", "busybox"]),
        "Untagged: busybox:latest\n"
    );
    assert_eq!(r.ok(&["images", "-q"]).trim(), &id[7..19]);
    assert_eq!(layers(&r).len(), 1);
    r.ok(&["rm", c.trim()]);
    assert_eq!(r.ok(&["rmi", &id]), format!("Deleted: {id}\n"));
    assert_store_empty(&r);
}

/// Runs an image recipe with RBOX set, so it imports into this root; the tarball goes to `out`.
fn recipe(r: &Rbox, name: &str, out: &Path) {
    let script = rbox_tests::workspace().join(format!("images/recipes/{name}.sh"));
    let o = std::process::Command::new(script)
        .current_dir("/")
        .env("RBOX", rbox_tests::rbox_bin())
        .env("RBOX_ROOT", &r.root)
        .env("OUT", out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{name}.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn recipes_build_reproducible_tarballs_and_import_runnable_images() {
    let r = Rbox::new("img-recipes");
    let out = Scratch::new("recipes");
    recipe(&r, "busybox", &out.0);
    recipe(&r, "nginx", &out.0);

    let bb = inspect(&r, "busybox");
    assert_eq!(bb["Config"]["Cmd"], json!(["sh"]));
    // Same inputs, same tarball: the layer is shared with the one the test harness imports.
    let shipped = fs::read(image_tar("busybox")).unwrap();
    assert_eq!(
        bb["RootFS"]["Layers"],
        json!([format!("sha256:{}", sha(&shipped))])
    );
    let dir = layer_dir(&r, bb["RootFS"]["Layers"][0].as_str().unwrap());
    for applet in ["bin/sh", "bin/ls", "usr/bin/wget", "sbin/ifconfig"] {
        assert!(
            fs::symlink_metadata(dir.join(applet)).is_ok(),
            "{applet} missing"
        );
    }
    assert!(fs::read_to_string(dir.join("etc/group"))
        .unwrap()
        .contains("root:x:0:"));

    let ng = inspect(&r, "nginx");
    assert_eq!(ng["Config"]["Cmd"], json!(["nginx", "-g", "daemon off;"]));
    assert_eq!(ng["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
    let run = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "nginx",
        "nginx",
        "-t",
        "-g",
        "daemon off;",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("test is successful"), "{}", run.stderr);
}

#[test]
fn store_from_before_splits_still_saves_its_layers() {
    // Session 2 stores kept each layer tar as a blob and had no splits.
    let a = Rbox::with_busybox("img-old-store");
    let v = inspect(&a, "busybox");
    let hex = v["RootFS"]["Layers"][0].as_str().unwrap()[7..].to_string();
    let size = v["Size"].clone();
    fs::remove_file(a.root.join("images/splits").join(&hex)).unwrap();
    fs::copy(
        image_tar("busybox"),
        a.root.join("images/blobs/sha256").join(&hex),
    )
    .unwrap();
    assert_eq!(inspect(&a, "busybox")["Size"], size);
    let out = a.command(&["save", "busybox"]).output().unwrap();
    assert!(out.status.success());
    let mut tar = tar::Archive::new(&out.stdout[..]);
    let mut found = false;
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == format!("{hex}/layer.tar") {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert_eq!(sha(&data), hex);
            found = true;
        }
    }
    assert!(found, "no layer in the archive");
}
