//! `rbox pull`, `login`, `logout` against real registries on loopback only: Debian's
//! `docker-registry` (CNCF distribution) started per test on its own port and storage dir,
//! images pushed to it with `skopeo` from the offline busybox tarball, and tiny python3
//! servers the tests run for what the registry cannot do (drop a connection mid-blob, hang,
//! bearer-token auth). Every process is killed by PID and every dir removed on drop.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rbox_tests::{sh, Rbox, RboxCli};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        sleep(Duration::from_millis(20));
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A process killed (by its PID) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rbox-pull-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `docker-registry serve` on 127.0.0.1 with storage and log in a temp dir.
struct Registry {
    port: u16,
    _proc: Proc,
    dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        Self::start_with("")
    }

    /// `extra`: more YAML for the config (e.g. an `auth:` section).
    fn start_with(extra: &str) -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
            dir.0.join("data").display()
        );
        fs::write(dir.0.join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.0.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.0.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let proc = Proc(child);
        wait_port(port);
        Registry {
            port,
            _proc: proc,
            dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the busybox image (as `rbox save` writes it) as `name:tag`.
    fn push_busybox(&self, name_tag: &str) {
        let archive = busybox_archive();
        let r = sh(&format!(
            "skopeo copy -q --dest-tls-verify=false docker-archive:{} docker://{}/{name_tag}",
            archive.0.join("bb.tar").display(),
            self.host()
        ));
        assert_eq!(r.code, 0, "skopeo: {}{}", r.stdout, r.stderr);
    }

    /// GETs a registry path, returning the body.
    fn get(&self, path: &str, accept: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sf", "-H", &format!("Accept: {accept}")])
            .arg(format!("http://{}{path}", self.host()))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {path} failed");
        out.stdout
    }

    fn manifest(&self, name: &str, reference: &str) -> (Value, String) {
        let body = self.get(
            &format!("/v2/{name}/manifests/{reference}"),
            "application/vnd.docker.distribution.manifest.v2+json",
        );
        (serde_json::from_slice(&body).unwrap(), sha(&body))
    }

    /// Uploads a blob (monolithic POST+PUT), returning its digest.
    fn put_blob(&self, name: &str, data: &[u8]) -> String {
        let d = sha(data);
        let file = self.dir.0.join("upload");
        fs::write(&file, data).unwrap();
        let r = sh(&format!(
            "loc=$(curl -sf -X POST -D - -o /dev/null http://{h}/v2/{name}/blobs/uploads/ | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p') && \
             case $loc in http*) ;; *) loc=http://{h}$loc ;; esac && \
             curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @{f} \"$loc&digest={d}\"",
            h = self.host(),
            f = file.display()
        ));
        assert_eq!(r.code, 0, "blob upload: {}{}", r.stdout, r.stderr);
        d
    }

    fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) {
        let file = self.dir.0.join("manifest");
        fs::write(&file, body).unwrap();
        let r = sh(&format!(
            "curl -sf -X PUT -H 'Content-Type: {media_type}' --data-binary @{} http://{}/v2/{name}/manifests/{reference}",
            file.display(),
            self.host()
        ));
        assert_eq!(r.code, 0, "manifest upload: {}{}", r.stdout, r.stderr);
    }

    /// The blob's data file in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .0
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// How often the registry served GET for this blob.
    fn blob_gets(&self, digest: &str) -> usize {
        fs::read_to_string(self.dir.0.join("registry.log"))
            .unwrap()
            .lines()
            // The access-log line of a GET rbox made (not the matching debug line).
            .filter(|l| {
                l.contains("\"GET /v2/")
                    && l.contains(&format!("/blobs/{digest} "))
                    && l.contains("\"rbox/")
            })
            .count()
    }
}

/// busybox as a docker-archive (`rbox save`), in a temp dir.
fn busybox_archive() -> TempDir {
    let dir = TempDir::new("archive");
    let rb = Rbox::with_busybox("pull-archive");
    rb.ok(&[
        "save",
        "-o",
        dir.0.join("bb.tar").to_str().unwrap(),
        "busybox",
    ]);
    dir
}

/// Asserts the store holds no image, layer, blob or staging leftover.
fn assert_store_empty(rb: &Rbox) {
    assert_eq!(rb.ok(&["images", "-q"]), "", "an image was registered");
    for d in ["images/layers", "images/blobs/sha256", "images/tmp"] {
        let p = rb.root.join(d);
        let left: Vec<_> = fs::read_dir(&p)
            .map(|e| e.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} not empty: {left:?}", p.display());
    }
}

fn layer_digest(reg: &Registry, name: &str) -> String {
    let (m, _) = reg.manifest(name, "latest");
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn pull_by_tag_and_digest() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let (_, digest) = reg.manifest("busybox", "latest");
    let rb = Rbox::new("pull-tag");
    let name = format!("{}/busybox", reg.host());
    let out = rb.ok(&["pull", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Using default tag: latest");
    assert_eq!(lines[1], "latest: Pulling from busybox");
    assert!(lines[2].ends_with(": Pull complete"), "{out}");
    assert_eq!(lines[3], format!("Digest: {digest}"));
    assert_eq!(
        lines[4],
        format!("Status: Downloaded newer image for {name}:latest")
    );
    assert_eq!(lines[5], format!("{name}:latest"));
    assert!(rb.ok(&["images"]).contains(&name));
    let inspect: Value = serde_json::from_str(&rb.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(inspect[0]["RepoDigests"][0], format!("{name}@{digest}"));
    assert_eq!(inspect[0]["Config"]["Cmd"], json!(["sh"]));
    let lower = inspect[0]["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        Path::new(&lower).join("bin/busybox").is_file(),
        "layer not unpacked"
    );
    // Pulled again: nothing downloaded, same image.
    let layer = layer_digest(&reg, "busybox");
    assert_eq!(reg.blob_gets(&layer), 1);
    let again = rb.ok(&["pull", "-q", &format!("{name}:latest")]);
    assert_eq!(again, format!("{name}:latest\n"));
    let out = rb.ok(&["pull", &name]);
    assert!(out.contains("Status: Image is up to date"), "{out}");
    assert!(out.contains(": Already exists"), "{out}");
    assert_eq!(reg.blob_gets(&layer), 1, "present layer downloaded again");

    // By digest, through the name localhost (a DNS lookup in the client: its thread must be
    // gone after the pull, which rbox checks itself and fails on).
    let rb2 = Rbox::new("pull-digest");
    let by_digest = format!("localhost:{}/busybox@{digest}", reg.port);
    let r = rb2.run(&["-D", "pull", &by_digest]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("threads before Some(1), after Some(1)"),
        "threads left after the pull: {}",
        r.stderr
            .lines()
            .filter(|l| l.contains("threads"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let out = r.stdout;
    assert!(
        out.contains(&format!("{digest}: Pulling from busybox")),
        "{out}"
    );
    assert!(out.ends_with(&format!("{by_digest}\n")), "{out}");
    let id = rb2.ok(&["image", "inspect", "--format", "{{.Id}}", &by_digest]);
    assert_eq!(
        id,
        rb.ok(&["image", "inspect", "--format", "{{.Id}}", &name])
    );
}

#[test]
fn layers_already_stored_are_not_downloaded() {
    let reg = Registry::start();
    reg.push_busybox("team/bb:v1");
    // The same (reproducible) busybox layer, imported locally.
    let rb = Rbox::with_busybox("pull-present");
    let out = rb.ok(&["pull", &format!("{}/team/bb:v1", reg.host())]);
    assert!(out.contains("v1: Pulling from team/bb"), "{out}");
    assert!(out.contains(": Already exists"), "{out}");
    let (m, _) = reg.manifest("team/bb", "v1");
    assert_eq!(reg.blob_gets(m["layers"][0]["digest"].as_str().unwrap()), 0);
    assert_eq!(reg.blob_gets(m["config"]["digest"].as_str().unwrap()), 1);
    assert_eq!(
        fs::read_dir(rb.root.join("images/layers")).unwrap().count(),
        1
    );
}

#[test]
fn unknown_tag_and_bad_references_fail_cleanly() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let rb = Rbox::new("pull-unknown");
    let err = rb.fails(1, &["pull", &format!("{}/busybox:nope", reg.host())]);
    assert_eq!(
        err.trim(),
        format!(
            "Error: manifest for {}/busybox:nope not found: manifest unknown: manifest unknown",
            reg.host()
        )
    );
    let err = rb.fails(1, &["pull", &format!("{}/nosuchrepo", reg.host())]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    let err = rb.fails(1, &["pull", "Bad/Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = rb.fails(
        1,
        &[
            "pull",
            "--platform",
            "linux/",
            &format!("{}/busybox", reg.host()),
        ],
    );
    assert!(err.contains("invalid platform"), "{err}");
    // Nothing listens on this port.
    let err = rb.fails(1, &["pull", &format!("127.0.0.1:{}/busybox", free_port())]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("onnection refused"), "{err}");
    assert_store_empty(&rb);
}

#[test]
fn corrupted_layer_on_the_registry_is_refused() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let layer = layer_digest(&reg, "busybox");
    let file = reg.blob_file(&layer);
    let mut data = fs::read(&file).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0x5a;
    }
    fs::write(&file, &data).unwrap();
    let rb = Rbox::new("pull-corrupt");
    let err = rb.fails(1, &["pull", &format!("{}/busybox", reg.host())]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&layer), "{err}");
    assert_store_empty(&rb);
}

/// Serves a registry's manifest and blobs from files, cutting (or hanging in) the one blob
/// named by argv[3] after half its bytes, with the full Content-Length announced.
const CUTTING_SERVER: &str = r#"
import http.server, os, sys, time
root, port, victim, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/v2/":
            body, ctype = b"{}", "application/json"
        elif "/manifests/" in p:
            body, ctype = open(os.path.join(root, "manifest"), "rb").read(), "application/vnd.docker.distribution.manifest.v2+json"
        elif "/blobs/" in p:
            d = p.rsplit("/", 1)[1]
            f = os.path.join(root, d.replace(":", "_"))
            if not os.path.exists(f):
                self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
            body, ctype = open(f, "rb").read(), "application/octet-stream"
            if d == victim:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2]); self.wfile.flush()
                if mode == "hang":
                    time.sleep(120)
                self.close_connection = True
                return
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// Copies busybox's manifest and blobs out of `reg` and serves them with the layer cut.
fn cutting_server(reg: &Registry, mode: &str) -> (Proc, TempDir, u16) {
    let dir = TempDir::new("cut");
    let (m, _) = reg.manifest("busybox", "latest");
    fs::write(
        dir.0.join("manifest"),
        reg.get(
            "/v2/busybox/manifests/latest",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    )
    .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    for d in [m["config"]["digest"].as_str().unwrap(), &layer] {
        fs::write(
            dir.0.join(d.replace(':', "_")),
            fs::read(reg.blob_file(d)).unwrap(),
        )
        .unwrap();
    }
    fs::write(dir.0.join("server.py"), CUTTING_SERVER).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .arg(dir.0.join("server.py"))
        .arg(&dir.0)
        .arg(port.to_string())
        .arg(&layer)
        .arg(mode)
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_port(port);
    (p, dir, port)
}

#[test]
fn connection_dropped_mid_blob_registers_nothing() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let (_server, _dir, port) = cutting_server(&reg, "close");
    let rb = Rbox::new("pull-cut");
    let err = rb.fails(1, &["pull", &format!("127.0.0.1:{port}/busybox")]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("downloading layer sha256:"), "{err}");
    assert_store_empty(&rb);
    // The next pull (from a registry that behaves) works.
    rb.ok(&["pull", &format!("{}/busybox", reg.host())]);
}

#[test]
fn kill_9_mid_pull_leaves_nothing_and_next_pull_works() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let (_server, _dir, port) = cutting_server(&reg, "hang");
    let rb = Rbox::new("pull-kill");
    let mut child = rb
        .command(&["pull", &format!("127.0.0.1:{port}/busybox")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the layer is being written into the staging dir, then kill -9.
    let tmp = rb.root.join("images/tmp");
    let start = Instant::now();
    loop {
        let staged = fs::read_dir(&tmp)
            .map(|d| {
                d.flatten().any(|e| {
                    fs::read_dir(e.path())
                        .map(|mut x| x.next().is_some())
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if staged {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pull never staged a layer"
        );
        sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(rb.ok(&["images", "-q"]), "");
    let out = rb.ok(&["pull", &format!("{}/busybox", reg.host())]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging leftovers not removed: {left:?}");
}

#[test]
fn concurrent_pulls_of_one_image() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let rb = Rbox::new("pull-concurrent");
    let name = format!("{}/busybox", reg.host());
    let children: Vec<_> = (0..4)
        .map(|_| {
            rb.command(&["pull", "-q", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(rb.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(
        fs::read_dir(rb.root.join("images/layers")).unwrap().count(),
        1
    );
}

/// Builds a two-platform index in `reg` as `multi:latest`: linux/amd64 is busybox, linux/arm64
/// a manifest over the same layer whose config says arm64 and has another CMD.
fn push_index(reg: &Registry) -> (String, String, String) {
    reg.push_busybox("multi:amd64");
    let (amd, amd_digest) = reg.manifest("multi", "amd64");
    let amd_cfg: Value = serde_json::from_slice(&reg.get(
        &format!(
            "/v2/multi/blobs/{}",
            amd["config"]["digest"].as_str().unwrap()
        ),
        "*/*",
    ))
    .unwrap();
    let mut arm_cfg = amd_cfg.clone();
    arm_cfg["architecture"] = json!("arm64");
    arm_cfg["config"]["Cmd"] = json!(["echo", "arm"]);
    let cfg_bytes = serde_json::to_vec(&arm_cfg).unwrap();
    let cfg_digest = reg.put_blob("multi", &cfg_bytes);
    let mut arm = amd.clone();
    arm["config"]["digest"] = json!(cfg_digest);
    arm["config"]["size"] = json!(cfg_bytes.len());
    let arm_bytes = serde_json::to_vec(&arm).unwrap();
    let v2 = "application/vnd.docker.distribution.manifest.v2+json";
    reg.put_manifest("multi", "arm64", v2, &arm_bytes);
    let amd_bytes = reg.get("/v2/multi/manifests/amd64", v2);
    let list = "application/vnd.docker.distribution.manifest.list.v2+json";
    let index = json!({
        "schemaVersion": 2,
        "mediaType": list,
        "manifests": [
            {"mediaType": v2, "digest": sha(&arm_bytes), "size": arm_bytes.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": v2, "digest": amd_digest, "size": amd_bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    reg.put_manifest("multi", "latest", list, &index_bytes);
    (sha(&index_bytes), amd_digest, sha(&arm_bytes))
}

#[test]
fn multi_platform_index_chooses_host_or_platform() {
    let reg = Registry::start();
    let (index_digest, _, _) = push_index(&reg);
    let name = format!("{}/multi", reg.host());
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let rb = Rbox::new("pull-index");
    if host_arch == "amd64" {
        let out = rb.ok(&["pull", &name]);
        assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
        let cmd = rb.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Architecture}} {{json .Config.Cmd}}",
            &name,
        ]);
        assert_eq!(cmd.trim(), r#"amd64 ["sh"]"#);
    }
    let rb2 = Rbox::new("pull-index-arm");
    rb2.ok(&["pull", "--platform", "linux/arm64", &name]);
    let cmd = rb2.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Architecture}} {{json .Config.Cmd}} {{index .RepoDigests 0}}",
        &name,
    ]);
    assert_eq!(
        cmd.trim(),
        format!(r#"arm64 ["echo","arm"] {name}@{index_digest}"#)
    );
    let err = rb2.fails(1, &["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x in the manifest list entries"),
        "{err}"
    );
    // A single-platform image does not match another --platform.
    let err = rb2.fails(
        1,
        &[
            "pull",
            "--platform",
            "linux/arm64",
            &format!("{name}:amd64"),
        ],
    );
    assert!(
        err.contains("does not match the specified platform"),
        "{err}"
    );
}

#[test]
fn progress_on_a_terminal() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let rb = Rbox::new("pull-tty");
    // util-linux `script` gives rbox a pty for stdout.
    let r = sh(&format!(
        "script -qec '{} --root {} pull {}/busybox' /dev/null",
        rbox_tests::rbox_bin().display(),
        rb.root.display(),
        reg.host()
    ));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(": Pulling fs layer"), "{}", r.stdout);
    assert!(
        r.stdout.contains("\x1b[2K"),
        "no in-place redraw: {}",
        r.stdout
    );
    assert!(r.stdout.contains(": Pull complete"), "{}", r.stdout);
    // Not a terminal: no redraw codes, no byte counts.
    let out = Rbox::new("pull-notty").ok(&["pull", &format!("{}/busybox", reg.host())]);
    assert!(
        !out.contains('\x1b') && !out.contains("Downloading"),
        "{out}"
    );
}

/// A registry front that wants bearer tokens: `/token` hands one out (only for `user:secret`
/// when argv[3] is "basic", to anyone otherwise), and with a valid token the request is
/// proxied to the real registry at argv[2].
const TOKEN_SERVER: &str = r#"
import base64, http.server, sys, urllib.request, urllib.error
port, upstream, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
TOKEN = "tok-" + mode
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/token"):
            ok = mode != "basic" or auth == "Basic " + base64.b64encode(b"user:secret").decode()
            if ok: self.reply(200, b'{"token": "%s"}' % TOKEN.encode(), [("Content-Type", "application/json")])
            else: self.reply(401, b'{"details": "incorrect username or password"}')
            return
        if auth != "Bearer " + TOKEN:
            chal = 'Bearer realm="http://127.0.0.1:%d/token",service="test-registry"' % port
            self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                       [("WWW-Authenticate", chal), ("Content-Type", "application/json")])
            return
        req = urllib.request.Request(upstream + self.path, headers={"Accept": self.headers.get("Accept", "*/*")})
        try:
            r = urllib.request.urlopen(req)
            code, body, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            code, body, hdrs = e.code, e.read(), e.headers
        keep = [(k, v) for k, v in hdrs.items() if k.lower() in ("content-type", "docker-content-digest")]
        self.reply(code, body, keep)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn token_server(reg: &Registry, mode: &str) -> (Proc, TempDir, u16) {
    let dir = TempDir::new("token");
    fs::write(dir.0.join("token.py"), TOKEN_SERVER).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .arg(dir.0.join("token.py"))
        .arg(port.to_string())
        .arg(format!("http://{}", reg.host()))
        .arg(mode)
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_port(port);
    (p, dir, port)
}

#[test]
fn anonymous_bearer_token() {
    let reg = Registry::start();
    reg.push_busybox("library/busybox:latest");
    let (_srv, _dir, port) = token_server(&reg, "anonymous");
    let rb = Rbox::new("pull-token");
    let out = rb.ok(&["pull", &format!("127.0.0.1:{port}/library/busybox")]);
    assert!(out.contains("Downloaded newer image"), "{out}");
}

#[test]
fn login_with_token_auth_then_logout() {
    let reg = Registry::start();
    reg.push_busybox("private/bb:latest");
    let (_srv, _dir, port) = token_server(&reg, "basic");
    let server = format!("127.0.0.1:{port}");
    let name = format!("{server}/private/bb");
    let rb = Rbox::new("pull-login");
    let err = rb.fails(1, &["pull", &name]);
    assert_eq!(
        err.trim(),
        format!("Error: pull access denied for {name}, repository does not exist or may require 'rbox login'")
    );
    let r = sh(&format!(
        "echo nope | {:?} --root {} login -u user --password-stdin {server}",
        rbox_tests::rbox_bin(),
        rb.root.display()
    ));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("incorrect username or password"),
        "{}",
        r.stderr
    );
    assert!(!rb.root.join("auth/auth.json").exists());
    let r = sh(&format!(
        "echo secret | {:?} --root {} login -u user --password-stdin {server}",
        rbox_tests::rbox_bin(),
        rb.root.display()
    ));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "Login Succeeded\n");
    let mode = fs::metadata(rb.root.join("auth/auth.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    rb.ok(&["pull", &name]);
    assert_eq!(
        rb.ok(&["logout", &server]),
        format!("Removing login credentials for {server}\n")
    );
    assert_eq!(
        rb.ok(&["logout", &server]),
        format!("Not logged in to {server}\n")
    );
    rb.ok(&["rmi", &name]);
    rb.fails(1, &["pull", &name]);
}

#[test]
fn login_with_registry_htpasswd_basic_auth() {
    let dir = TempDir::new("htpasswd");
    let hash = sh("python3 -W ignore -c \"import crypt; print(crypt.crypt('secret', crypt.mksalt(crypt.METHOD_BLOWFISH)))\"");
    assert_eq!(hash.code, 0, "{}", hash.stderr);
    let htpasswd = dir.0.join("htpasswd");
    fs::write(&htpasswd, format!("user:{}\n", hash.stdout.trim())).unwrap();
    let reg = Registry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
        htpasswd.display()
    ));
    let rb = Rbox::new("pull-basic");
    let server = reg.host();
    let login = |pw: &str| {
        sh(&format!(
            "echo {pw} | {:?} --root {} login -u user --password-stdin {server}",
            rbox_tests::rbox_bin(),
            rb.root.display()
        ))
    };
    let r = login("wrong");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("incorrect username or password"),
        "{}",
        r.stderr
    );
    let r = login("secret");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // skopeo pushes with the same credentials; rbox pulls with the stored ones.
    let archive = busybox_archive();
    let r = sh(&format!(
        "skopeo copy -q --dest-tls-verify=false --dest-creds user:secret docker-archive:{} docker://{server}/busybox:latest",
        archive.0.join("bb.tar").display()
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    rb.ok(&["pull", &format!("{server}/busybox")]);
    rb.ok(&["logout", &server]);
    rb.ok(&["rmi", &format!("{server}/busybox")]);
    let err = rb.fails(1, &["pull", &format!("{server}/busybox")]);
    assert!(
        err.contains("pull access denied") || err.contains("unauthorized"),
        "{err}"
    );
}

#[test]
fn pulled_image_runs() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let rb = Rbox::new("pull-run");
    let name = format!("{}/busybox", reg.host());
    rb.ok(&["pull", "-q", &name]);
    let out = rb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &name,
        "echo",
        "hello from a pulled image",
    ]);
    assert_eq!(out, "hello from a pulled image\n");
}

#[test]
fn run_pulls_a_missing_image_unless_told_never() {
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let rb = Rbox::new("pull-auto");
    let name = format!("{}/busybox", reg.host());
    let err = rb.fails(
        125,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            &name,
            "true",
        ],
    );
    assert!(err.contains("No such image"), "{err}");
    let r = rb.run(&[
        "run",
        "--rm",
        "--pull",
        "missing",
        "--network",
        "none",
        &name,
        "echo",
        "auto",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "auto\n");
    assert!(r.stderr.contains("Unable to find image"), "{}", r.stderr);
    assert!(
        rb.ok(&["images", "-q"]).trim().len() == 12,
        "the pulled image is stored"
    );
    // Present now: `missing` does not pull again, `create` uses it too.
    let r = rb.run(&["create", "--pull", "missing", "--network", "none", &name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("Unable to find image"), "{}", r.stderr);
    rb.ok(&["rm", r.stdout.trim()]);
}

#[test]
fn pulled_image_can_be_saved_and_loaded() {
    // A pulled image is a first-class store image: save + load round-trip keeps its id.
    let reg = Registry::start();
    reg.push_busybox("busybox:latest");
    let rb = Rbox::new("pull-save");
    let name = format!("{}/busybox", reg.host());
    rb.ok(&["pull", "-q", &name]);
    let dir = TempDir::new("save");
    let file = dir.0.join("x.tar");
    rb.ok(&["save", "-o", file.to_str().unwrap(), &name]);
    let rb2 = Rbox::new("pull-load");
    rb2.ok(&["load", "-i", file.to_str().unwrap()]);
    assert_eq!(rb.ok(&["images", "-q"]), rb2.ok(&["images", "-q"]));
}

#[test]
fn registries_elsewhere_use_verified_tls() {
    // A TLS server with a self-signed certificate on this machine's own (non-loopback) address:
    // rbox must speak TLS to it (only localhost and 127.0.0.0/8 get plain http) and refuse the
    // certificate it cannot verify.
    let ip = sh("hostname -I | tr ' ' '\\n' | grep -v : | grep -v '^127\\.' | head -1");
    let ip = ip.stdout.trim().to_string();
    assert!(
        !ip.is_empty(),
        "this machine has no non-loopback IPv4 address"
    );
    let dir = TempDir::new("tls");
    let (key, cert) = (dir.0.join("key.pem"), dir.0.join("cert.pem"));
    let r = sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=registry.test -days 1 -keyout {} -out {}",
        key.display(),
        cert.display()
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("{ip}:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Proc(child);
    let start = Instant::now();
    while TcpStream::connect((ip.as_str(), port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "openssl s_server did not start"
        );
        sleep(Duration::from_millis(20));
    }
    let rb = Rbox::new("pull-tls");
    let err = rb.fails(1, &["pull", &format!("{ip}:{port}/busybox")]);
    assert!(err.contains(&format!("https://{ip}:{port}/v2/")), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert_store_empty(&rb);
}
