//! `rbox system service`: the real docker CLI (and docker-compose when installed) against the
//! Engine API on a test socket, asserting what happened for real: the published port
//! answers, `rbox ps` sees the same containers, the containers outlive the service.
//!
//! Names of this file: roots of the harness, default bridges `rbt-e<N>`, subnets
//! 10.188.N.0/24, host ports 22500-22999, sockets /run/rbox-tests/engine-<test>.sock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rbox_tests::{rbox_command, sh, wait_for, Rbox, Run};

const DOCKER: &str = "/usr/local/bin/docker";

/// A root with busybox and nginx imported and a service on its own socket.
struct Engine {
    rbox: Rbox,
    n: u32,
    sock: PathBuf,
    service: Option<Child>,
}

impl Engine {
    fn new(test: &str, n: u32) -> Engine {
        let rbox = Rbox::new(test);
        let sock = PathBuf::from(format!("/run/rbox-tests/engine-{test}.sock"));
        let mut e = Engine {
            rbox,
            n,
            sock,
            service: None,
        };
        let busybox = rbox_tests::image_tar("busybox");
        let nginx = rbox_tests::image_tar("nginx");
        e.rbox_ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            busybox.to_str().unwrap(),
            "busybox:latest",
        ]);
        e.rbox_ok(&[
            "import",
            "--change",
            r#"CMD ["nginx", "-g", "daemon off;"]"#,
            "--change",
            "EXPOSE 80",
            nginx.to_str().unwrap(),
            "nginx:latest",
        ]);
        e.start_service(&[]);
        e
    }

    fn rbox(&self, args: &[&str]) -> Command {
        let mut c = rbox_command(&self.rbox.root, None, args);
        c.env("RBOX_DEFAULT_BRIDGE", format!("rbt-e{}", self.n))
            .env("RBOX_DEFAULT_SUBNET", format!("10.188.{}.0/24", self.n));
        c
    }

    #[track_caller]
    fn rbox_ok(&self, args: &[&str]) -> String {
        let r: Run = self.rbox(args).output().unwrap().into();
        assert_eq!(r.code, 0, "rbox {args:?}: {}{}", r.stderr, r.stdout);
        r.stdout
    }

    fn start_service(&mut self, extra: &[&str]) {
        std::fs::create_dir_all(self.sock.parent().unwrap()).unwrap();
        let host = format!("unix://{}", self.sock.display());
        let mut args = vec!["system", "service", "--host", &host];
        args.extend_from_slice(extra);
        let child = self
            .rbox(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.service = Some(child);
        let sock = self.sock.clone();
        wait_for("the service's socket", 10, || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    fn stop_service(&mut self) {
        if let Some(mut c) = self.service.take() {
            rbox_tests::kill9(c.id() as i32);
            let _ = c.wait();
        }
    }

    fn docker(&self, args: &[&str]) -> Run {
        Command::new(DOCKER)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.rbox.root.join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        let r = self.docker(args);
        assert_eq!(r.code, 0, "docker {args:?}: {}{}", r.stderr, r.stdout);
        r.stdout
    }

    /// `curl` on the API socket: (status, body).
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--unix-socket")
            .arg(&self.sock)
            .arg(format!("http://rbox{path}"));
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_service();
        let ids = self.rbox_ok(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            let _ = self.rbox(&["rm", "-f", id]).output();
        }
        let nets = self.rbox_ok(&["network", "ls", "-q", "--filter", "type=custom"]);
        for n in nets.split_whitespace() {
            let _ = self.rbox(&["network", "rm", n]).output();
        }
        let _ = self.rbox(&["network", "teardown"]).output();
        let _ = std::fs::remove_file(&self.sock);
        rbox_tests::unmount_under(&self.rbox.root);
        let _ = std::fs::remove_dir_all(&self.rbox.root);
    }
}

fn curl(url: &str) -> Run {
    sh(&format!("curl -s -m 5 {url}"))
}

fn have(tool: &str) -> bool {
    Path::new(tool).exists()
}

#[test]
fn version_info_ping_and_errors() {
    if !have(DOCKER) {
        eprintln!("skipped: no {DOCKER}");
        return;
    }
    let e = Engine::new("eapi-version", 10);
    assert_eq!(
        e.docker_ok(&["version", "--format", "{{.Server.APIVersion}}"])
            .trim(),
        "1.50"
    );
    let info = e.docker_ok(&["info", "--format", "{{.Driver}} {{.OSType}} {{.Images}}"]);
    assert_eq!(info.trim(), "overlay linux 2");
    let head = sh(&format!(
        "curl -s -I --unix-socket {} http://rbox/_ping",
        e.sock.display()
    ));
    assert!(head.stdout.contains("200 OK"), "{}", head.stdout);
    assert!(
        head.stdout.to_lowercase().contains("api-version: 1.50"),
        "{}",
        head.stdout
    );
    assert!(head.stdout.to_lowercase().contains("ostype: linux"));
    assert_eq!(e.api("GET", "/_ping", None), (200, "OK".into()));
    // Every version prefix from 1.24 (compose 1.29 sends old ones) through 1.50.
    assert_eq!(e.api("GET", "/v1.24/version", None).0, 200);
    let (code, body) = e.api("GET", "/v1.23/info", None);
    assert_eq!(code, 400);
    assert!(
        body.contains("\"message\":\"client version 1.23 is too old"),
        "{body}"
    );
    // Docker's error shape and codes; the service keeps serving after each.
    let (code, body) = e.api("GET", "/containers/nosuch/json", None);
    assert_eq!(
        (code, body.trim()),
        (404, r#"{"message":"No such container: nosuch"}"#)
    );
    let (code, body) = e.api("POST", "/containers/create", Some("{not json"));
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with("{\"message\":\"invalid JSON"), "{body}");
    let (code, _) = e.api("POST", "/containers/create", Some(r#"{"Image":"nosuch"}"#));
    assert_eq!(code, 404);
    let (code, body) = e.api("POST", "/containers/create", Some(r#"{"Image":"busybox","HostConfig":{"Memory":-5,"PortBindings":{"80/tcp":[{"HostPort":"notaport"}]}}}"#));
    assert_eq!(code, 400, "{body}");
    let (code, _) = e.api("GET", "/swarm", None);
    assert_eq!(code, 503);
    let (code, _) = e.api("GET", "/networks/nosuch", None);
    assert_eq!(code, 404);
    let (code, _) = e.api("GET", "/volumes/nosuch", None);
    assert_eq!(code, 404);
    // Nothing half-made by the refused creates.
    assert_eq!(e.rbox_ok(&["ps", "-aq"]), "");
    assert_eq!(e.docker_ok(&["ps", "-aq"]), "");
    let r = e.docker(&["rm", "nosuch"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
}

#[test]
fn run_ps_logs_inspect_stop_rm_and_the_service_is_not_needed() {
    if !have(DOCKER) {
        eprintln!("skipped: no {DOCKER}");
        return;
    }
    let mut e = Engine::new("eapi-run", 11);
    let id = e.docker_ok(&["run", "-d", "-p", "22511:80", "--name", "web", "nginx"]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    wait_for("nginx", 10, || {
        curl("http://127.0.0.1:22511/")
            .stdout
            .contains("Welcome to nginx")
    });
    // One set of containers: docker ps and rbox ps.
    let ps = e.docker_ok(&["ps", "--format", "{{.Names}} {{.Ports}} {{.State}}"]);
    assert_eq!(
        ps.trim(),
        "web 0.0.0.0:22511->80/tcp, [::]:22511->80/tcp running"
    );
    let rps = e.rbox_ok(&["ps", "--format", "{{.ID}} {{.Names}}"]);
    assert_eq!(rps.trim(), format!("{} web", &id[..12]));
    assert_eq!(
        e.docker_ok(&["ps", "-q", "--filter", "name=web", "--no-trunc"])
            .trim(),
        id
    );
    assert_eq!(e.docker_ok(&["ps", "-q", "--filter", "name=nomatch"]), "");
    // inspect is rbox's own inspect JSON.
    let state = e.docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.Name}} {{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
        "web",
    ]);
    assert_eq!(state.trim(), "true /web 22511");
    assert_eq!(
        e.docker_ok(&["inspect", "--format", "{{json .Config}}", "web"]),
        e.rbox_ok(&["inspect", "--format", "{{json .Config}}", "web"])
    );
    // Logs: nginx logged the request above.
    let logs = e.docker_ok(&["logs", "web"]);
    assert!(logs.contains("\"GET / HTTP/1.1\" 200"), "{logs}");
    let tail = e.docker_ok(&["logs", "--tail", "1", "-t", "web"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("20"), "timestamped: {tail}");
    // The container does not depend on the service.
    e.stop_service();
    let page = curl("http://127.0.0.1:22511/");
    assert!(page.stdout.contains("Welcome to nginx"), "{}", page.stdout);
    e.start_service(&[]);
    // logs -f ends when the container stops.
    let follow = Command::new(DOCKER)
        .args(["logs", "-f", "--tail", "0", "web"])
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    curl("http://127.0.0.1:22511/follow-me");
    e.docker_ok(&["stop", "web"]);
    let out = follow.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/follow-me"),
        "{out:?}"
    );
    assert_eq!(
        e.rbox_ok(&["inspect", "--format", "{{.State.Status}}", "web"])
            .trim(),
        "exited"
    );
    assert!(curl("http://127.0.0.1:22511/").stdout.is_empty());
    // (start returns once the container runs, which may be before nginx listens)
    let serving = || curl("http://127.0.0.1:22511/").stdout.contains("nginx");
    e.docker_ok(&["start", "web"]);
    wait_for("nginx after start", 10, serving);
    e.docker_ok(&["restart", "-t", "1", "web"]);
    wait_for("nginx after restart", 10, serving);
    let r = e.docker(&["rm", "web"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("container is running"), "{}", r.stderr);
    e.docker_ok(&["rm", "-f", "web"]);
    assert_eq!(e.rbox_ok(&["ps", "-aq"]), "");
    assert!(curl("http://127.0.0.1:22511/").stdout.is_empty());
}

#[test]
fn run_rm_attach_exec_and_exit_codes() {
    if !have(DOCKER) {
        eprintln!("skipped: no {DOCKER}");
        return;
    }
    let e = Engine::new("eapi-exec", 12);
    // Foreground run: attach before start, wait for the removal, output in frames.
    let r = e.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hi\n"), "{}", r.stderr);
    let r = e.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");
    assert_eq!(e.rbox_ok(&["ps", "-aq"]), "", "--rm left nothing");
    let r = e.docker(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert_eq!(e.rbox_ok(&["ps", "-aq"]), "");
    // exec: output, stdin, exit codes, tty, detached.
    e.docker_ok(&["run", "-d", "--name", "bb", "busybox", "sleep", "1000"]);
    let id = e.docker_ok(&["inspect", "--format", "{{.Id}}", "bb"]);
    assert_eq!(
        e.docker_ok(&["exec", "bb", "cat", "/etc/hostname"]).trim(),
        &id.trim()[..12]
    );
    let r = sh(&format!(
        "echo piped | DOCKER_HOST=unix://{} {DOCKER} exec -i bb cat",
        e.sock.display()
    ));
    assert_eq!(r.stdout, "piped\n");
    let r = e.docker(&["exec", "bb", "sh", "-c", "echo e >&2; exit 4"]);
    assert_eq!((r.code, r.stderr.as_str()), (4, "e\n"));
    let r = e.docker(&["exec", "-t", "bb", "tty"]);
    assert_eq!(r.stdout.trim(), "/dev/pts/0");
    e.docker_ok(&["exec", "-d", "bb", "touch", "/tmp/detached"]);
    wait_for("the detached exec", 5, || {
        e.docker(&["exec", "bb", "test", "-e", "/tmp/detached"])
            .code
            == 0
    });
    let r = e.docker(&["exec", "bb", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    // top, diff, events.
    let top = e.docker_ok(&["top", "bb"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    e.docker_ok(&["exec", "bb", "touch", "/newfile"]);
    assert!(e
        .docker_ok(&["diff", "bb"])
        .lines()
        .any(|l| l == "A /newfile"));
    // (the docker CLI sends --until in whole seconds)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ev = e.docker_ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "container=bb",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert!(
        ev.contains("container create\n") && ev.contains("container start\n"),
        "{ev}"
    );
    // A client that drops its hijacked connection: the service goes on serving.
    let mut dropped = Command::new(DOCKER)
        .args(["exec", "-i", "bb", "sleep", "3"])
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    rbox_tests::kill9(dropped.id() as i32);
    let _ = dropped.wait();
    assert_eq!(e.docker_ok(&["exec", "bb", "echo", "still"]), "still\n");
    // stdin reaches the container through its monitor (StdinOnce: cat sees the end of it).
    let mut run_i = Command::new(DOCKER)
        .args(["run", "-i", "--name", "in", "busybox", "cat"])
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    run_i
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed-in\n")
        .unwrap();
    // A stdin that does not end would keep cat (and the docker CLI) waiting: bounded.
    let code = wait_exit(&mut run_i, 30);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut run_i.stdout.take().unwrap(), &mut out).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run_i.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "typed-in\n"), "{err}");
    e.docker_ok(&["rm", "-f", "in"]);
    // A tty container's resize reaches its pty (the monitor hands the master over).
    e.rbox_ok(&[
        "run",
        "-dit",
        "--network",
        "none",
        "--name",
        "rz",
        "busybox",
        "sh",
    ]);
    let (code, body) = e.api("POST", "/containers/rz/resize?h=33&w=91", None);
    assert_eq!(code, 200, "{body}");
    let size = e.rbox_ok(&["exec", "rz", "sh", "-c", "stty size </proc/1/fd/0"]);
    assert_eq!(size, "33 91\n");
    e.docker_ok(&["rm", "-f", "rz"]);
    // kill, wait.
    e.docker_ok(&["kill", "bb"]);
    assert_eq!(e.docker_ok(&["wait", "bb"]).trim(), "137");
    let r = e.docker(&["exec", "bb", "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("is not running"), "{}", r.stderr);
}

#[test]
fn networks_volumes_images() {
    if !have(DOCKER) {
        eprintln!("skipped: no {DOCKER}");
        return;
    }
    let e = Engine::new("eapi-objects", 13);
    let net = e.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.188.113.0/24",
        "rbt-e-app",
    ]);
    assert_eq!(net.trim().len(), 64);
    assert_eq!(
        e.rbox_ok(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "rbt-e-app"
        ])
        .trim(),
        "10.188.113.0/24"
    );
    let ls = e.docker_ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        "name=rbt-e",
    ]);
    assert_eq!(ls.trim(), "rbt-e-app");
    let r = e.docker(&["network", "create", "rbt-e-app"]);
    assert_eq!(r.code, 1, "a second network of that name");
    e.docker_ok(&["volume", "create", "data"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "rbt-e-app",
        "--network-alias",
        "database",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo stored > /data/f; sleep 1000",
    ]);
    // A second container finds the first by alias on the user network, and the volume.
    let r = e.docker(&[
        "run",
        "--rm",
        "--network",
        "rbt-e-app",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; ping -c1 -W2 database >/dev/null && echo reached",
    ]);
    assert_eq!(r.stdout, "stored\nreached\n", "{}", r.stderr);
    // connect / disconnect on a running container.
    e.docker_ok(&["run", "-d", "--name", "other", "busybox", "sleep", "1000"]);
    e.docker_ok(&["network", "connect", "--alias", "o2", "rbt-e-app", "other"]);
    let addrs = e.docker_ok(&["exec", "other", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains("10.188.113."), "{addrs}");
    e.docker_ok(&["network", "disconnect", "rbt-e-app", "other"]);
    let addrs = e.docker_ok(&["exec", "other", "ip", "-4", "-o", "addr"]);
    assert!(!addrs.contains("10.188.113."), "{addrs}");
    let r = e.docker(&["network", "rm", "rbt-e-app"]);
    assert_eq!(r.code, 1, "in use by db");
    let r = e.docker(&["volume", "rm", "data"]);
    assert_eq!(r.code, 1, "in use by db: {}", r.stderr);
    e.docker_ok(&["rm", "-f", "db", "other"]);
    e.docker_ok(&["network", "rm", "rbt-e-app"]);
    assert!(
        e.rbox(&["network", "inspect", "rbt-e-app"])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
    assert_eq!(
        e.docker_ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}}",
            "data"
        ])
        .trim(),
        "data local"
    );
    e.docker_ok(&["volume", "rm", "data"]);
    assert_eq!(e.docker_ok(&["volume", "ls", "-q"]), "");
    // Images: list, tag, inspect, rmi.
    e.docker_ok(&["tag", "busybox", "mybox:1"]);
    let imgs = e.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut imgs: Vec<&str> = imgs.lines().collect();
    imgs.sort();
    assert_eq!(imgs, ["busybox:latest", "mybox:1", "nginx:latest"]);
    assert_eq!(
        e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "mybox:1"]),
        e.rbox_ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"])
    );
    assert_eq!(e.docker_ok(&["rmi", "mybox:1"]).trim(), "Untagged: mybox:1");
    assert!(
        e.rbox(&["image", "inspect", "mybox:1"])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
}

/// docker-compose 1.29 (Debian's, API versions from the old ones up): a two-service app with a
/// user network, a published port and names, up and down.
#[test]
fn compose_up_and_down() {
    const COMPOSE: &str = "/usr/bin/docker-compose";
    // scripts/deps.sh installs it: missing is a broken setup, not a skip.
    assert!(have(COMPOSE), "no {COMPOSE}: run scripts/deps.sh");
    let e = Engine::new("eapi-compose", 15);
    let dir = e.rbox.root.join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "3.7"
services:
  web:
    image: nginx
    ports: ["22515:80"]
    networks: [appnet]
  client:
    image: busybox
    command: ["sleep", "1000"]
    networks: [appnet]
    depends_on: [web]
networks:
  appnet:
    ipam:
      config:
        - subnet: 10.188.115.0/24
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| -> Run {
        Command::new(COMPOSE)
            .args(["-p", "rbteapi"])
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    let up = compose(&["up", "-d"]);
    assert_eq!(up.code, 0, "{}{}", up.stderr, up.stdout);
    assert!(curl("http://127.0.0.1:22515/")
        .stdout
        .contains("Welcome to nginx"));
    let names = e.rbox_ok(&["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["rbteapi_client_1", "rbteapi_web_1"]);
    // The client reaches the web service by its name on the project's network.
    let r = compose(&["exec", "-T", "client", "wget", "-qO-", "http://web/"]);
    assert!(
        r.stdout.contains("Welcome to nginx"),
        "{}{}",
        r.stderr,
        r.stdout
    );
    let sub = e.rbox_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        "rbteapi_appnet",
    ]);
    assert_eq!(sub.trim(), "10.188.115.0/24");
    let down = compose(&["down"]);
    assert_eq!(down.code, 0, "{}{}", down.stderr, down.stdout);
    assert_eq!(e.rbox_ok(&["ps", "-aq"]), "");
    assert!(!e.rbox_ok(&["network", "ls"]).contains("rbteapi_appnet"));
    assert!(curl("http://127.0.0.1:22515/").stdout.is_empty());
}

/// docker-py (Debian's python3-docker, or PyPI's 7): the SDK's high-level models.
#[test]
fn docker_py_sdk() {
    // PyPI's docker-py 7 on python3's path when there is one, else Debian's (scripts/deps.sh).
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| sh(&format!("{p} -c 'import docker'")).code == 0)
        .expect("no docker-py for python3: run scripts/deps.sh");
    eprintln!(
        "docker-py {}",
        sh(&format!(
            "{python} -c 'import docker; print(docker.__version__)'"
        ))
        .stdout
        .trim()
    );
    let e = Engine::new("eapi-py", 16);
    let script = e.rbox.root.join("sdk.py");
    std::fs::write(&script, SDK_SCRIPT).unwrap();
    let r = sh(&format!(
        "timeout 120 {python} {} unix://{}",
        script.display(),
        e.sock.display()
    ));
    assert_eq!(r.code, 0, "{}{}", r.stderr, r.stdout);
    assert_eq!(
        r.stdout,
        "ping True\nversion 1.50\nrun b'sdk\\n'\nlist ['pyc']\nexec 5 b'e\\n'\nresize b'33 111'\nstats /pyc 1\nupdate 67108864\nput True\n\
         get a.txt 12 b'sdk-archive\\n'\nhistory True\n\
         nets ['bridge', 'rbt-e-pynet']\nvol pyvol ['pyvol']\nnotfound No such container: nosuch\n\
         conflict 409\nstatus 137\nlogs b''\nimgs ['busybox:latest', 'nginx:latest']\n"
    );
    assert_eq!(e.rbox_ok(&["ps", "-aq"]), "");
    assert_eq!(e.rbox_ok(&["volume", "ls", "-q"]), "");
}

/// What `docker_py_sdk` runs: containers (run, list by label, exec, stop, wait, logs, remove),
/// networks (create with IPAM, connect, disconnect, remove), volumes, images, errors.
const SDK_SCRIPT: &str = r#"import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
print("ping", c.ping())
print("version", c.version()["ApiVersion"])
out = c.containers.run("busybox", ["echo", "sdk"], remove=True)
print("run", out)
ct = c.containers.run("busybox", ["sleep", "1000"], detach=True, name="pyc", labels={"k": "v"})
print("list", [x.name for x in c.containers.list(filters={"label": "k=v"})])
r = ct.exec_run(["sh", "-c", "echo e; exit 5"])
print("exec", r.exit_code, r.output)
x = c.api.exec_create(ct.id, ["sh", "-c", "sleep 1; stty size"], tty=True)
sk = c.api.exec_start(x["Id"], socket=True, tty=True)
c.api.exec_resize(x["Id"], height=33, width=111)
sk = getattr(sk, "_sock", sk); got = b""
while True:
    b = sk.recv(4096)
    if not b: break
    got += b
print("resize", got.strip())
s = ct.stats(stream=False)
print("stats", s["name"], s["pids_stats"]["current"])
ct.update(mem_limit="64m"); ct.reload()
print("update", ct.attrs["HostConfig"]["Memory"])
import io, tarfile
buf = io.BytesIO(); t = tarfile.open(fileobj=buf, mode="w"); data = b"sdk-archive\n"
ti = tarfile.TarInfo("a.txt"); ti.size = len(data); t.addfile(ti, io.BytesIO(data)); t.close()
print("put", ct.put_archive("/tmp", buf.getvalue()))
bits, st = ct.get_archive("/tmp/a.txt")
got = tarfile.open(fileobj=io.BytesIO(b"".join(bits))).extractfile("a.txt").read()
print("get", st["name"], st["size"], got)
print("history", c.images.get("busybox").history()[0]["Id"] == c.images.get("busybox").id)
n = c.networks.create("rbt-e-pynet", driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.188.116.0/24")]))
n.connect(ct)
ct.reload()
print("nets", sorted(ct.attrs["NetworkSettings"]["Networks"]))
n.disconnect(ct)
v = c.volumes.create("pyvol")
print("vol", v.name, [x.name for x in c.volumes.list()])
try:
    c.containers.get("nosuch")
except docker.errors.NotFound as e:
    print("notfound", e.explanation)
try:
    c.containers.run("busybox", "true", name="pyc")
except docker.errors.APIError as e:
    print("conflict", e.status_code)
ct.stop(timeout=1); print("status", ct.wait()["StatusCode"])
print("logs", ct.logs())
ct.remove(); n.remove(); v.remove()
print("imgs", sorted(t for i in c.images.list() for t in i.tags))
"#;

#[test]
fn idle_timeout_ends_the_service() {
    let mut e = Engine::new("eapi-idle", 14);
    e.stop_service();
    e.start_service(&["--timeout", "1"]);
    let mut child = e.service.take().unwrap();
    let status = wait_exit(&mut child, 10);
    assert_eq!(status, Some(0), "the service exits after 1 s idle");
}

fn wait_exit(c: &mut Child, secs: u64) -> Option<i32> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if let Ok(Some(s)) = c.try_wait() {
            return s.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rbox_tests::kill9(c.id() as i32);
    None
}

/// A `curl` on the API socket started in the background (a wait that must not answer yet).
fn api_background(e: &Engine, method: &str, path: &str) -> Child {
    Command::new("curl")
        .args(["-s", "-m", "30", "-X", method, "--unix-socket"])
        .arg(&e.sock)
        .arg(format!("http://rbox{path}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn answer(c: Child) -> serde_json::Value {
    let out = c.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

/// The highest resident memory the process ever had, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `docker stats`, `docker update`, `docker history`, `docker cp` both ways (a running and a
/// stopped container; a big file streamed, never held whole by the service), and the wait
/// conditions with the container ended or removed by someone else than the service.
#[test]
fn stats_update_history_cp_and_waits() {
    if !have(DOCKER) {
        eprintln!("skipped: no {DOCKER}");
        return;
    }
    let e = Engine::new("eapi-more", 17);
    e.docker_ok(&["run", "-d", "--name", "st", "busybox", "sleep", "1000"]);
    let id = e
        .docker_ok(&["inspect", "--format", "{{.Id}}", "st"])
        .trim()
        .to_string();

    // stats: the CLI's one-shot table, a non-streaming answer over one interval, a stream.
    let row = e.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "st",
    ]);
    assert!(row.starts_with("st 1 "), "{row}");
    assert!(row.contains(" / "), "{row}");
    let (code, body) = e.api("GET", "/containers/st/stats?stream=false", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], "/st");
    assert!(
        v["precpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(v["memory_stats"]["limit"].as_u64().unwrap() > 0, "{v}");
    let streamed = Command::new("curl")
        .args(["-s", "-N", "-m", "2.5", "--unix-socket"])
        .arg(&e.sock)
        .arg("http://rbox/containers/st/stats")
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&streamed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert_eq!(lines[1]["preread"], lines[0]["read"]);
    // The CLI's own stream: a table per sample until it is stopped.
    let cli_stream = Command::new(DOCKER)
        .args(["stats", "--format", "{{.Name}} {{.PIDs}}", "st"])
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .env("DOCKER_CONFIG", e.rbox.root.join("docker-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    rbox_tests::kill9(cli_stream.id() as i32);
    let shown = cli_stream.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.matches("st 1").count() >= 2, "{shown:?}");
    let (code, body) = e.api("GET", "/containers/nosuch/stats?stream=false", None);
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains(r#""message":"No such container: nosuch""#),
        "{body}"
    );

    // update: the cgroup and the record change; bad values change nothing.
    e.docker_ok(&[
        "update",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--restart",
        "on-failure:3",
        "st",
    ]);
    let hc = e.docker_ok(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        "st",
    ]);
    assert_eq!(hc.trim(), "67108864 500000000 on-failure:3");
    let limit = sh(&format!(
        "cat /sys/fs/cgroup/rbox/{id}/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/rbox/{id}/memory.limit_in_bytes"
    ));
    assert_eq!(limit.stdout.trim(), "67108864");
    let r = e.docker(&["update", "--memory", "1k", "st"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("Minimum memory limit allowed is 6MB"),
        "{}",
        r.stderr
    );
    let r = e.docker(&["update", "--restart", "sometimes", "st"]);
    assert_ne!(r.code, 0);
    let r = e.docker(&["update", "--memory", "64m", "nosuch"]);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
    assert_eq!(
        e.docker_ok(&["inspect", "--format", "{{.HostConfig.Memory}}", "st"])
            .trim(),
        "67108864"
    );
    let (code, body) = e.api("POST", "/containers/st/update", Some("{"));
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with(r#"{"message":"#), "{body}");
    let (code, body) = e.api(
        "POST",
        "/containers/st/update",
        Some(r#"{"BlkioWeight": 300}"#),
    );
    assert_eq!(code, 400, "{body}");

    // history: the rows `rbox history` prints.
    let table = e.docker_ok(&["history", "busybox"]);
    assert!(table.starts_with("IMAGE "), "{table}");
    assert_eq!(
        e.docker_ok(&["history", "-q", "--no-trunc", "busybox"]),
        e.rbox_ok(&["history", "-q", "--no-trunc", "busybox"])
    );
    let r = e.docker(&["history", "nosuch:1"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("No such image"), "{}", r.stderr);

    // cp into and out of a running container: a file, a directory, a big file streamed.
    let host = e.rbox.root.join("cp");
    std::fs::create_dir_all(host.join("dir/sub")).unwrap();
    std::fs::write(host.join("f.txt"), "file\n").unwrap();
    std::fs::write(host.join("dir/sub/g"), "deep\n").unwrap();
    let p = |rel: &str| host.join(rel).display().to_string();
    e.docker_ok(&["cp", &p("f.txt"), "st:/tmp/"]);
    assert_eq!(e.docker_ok(&["exec", "st", "cat", "/tmp/f.txt"]), "file\n");
    e.docker_ok(&["cp", &p("dir"), "st:/tmp/newdir"]);
    assert_eq!(
        e.docker_ok(&["exec", "st", "cat", "/tmp/newdir/sub/g"]),
        "deep\n"
    );
    std::fs::create_dir_all(host.join("out")).unwrap();
    e.docker_ok(&["cp", "st:/etc/hostname", &p("out/")]);
    assert_eq!(
        std::fs::read_to_string(host.join("out/hostname"))
            .unwrap()
            .trim(),
        &id[..12]
    );
    e.docker_ok(&["cp", "st:/tmp/newdir", &p("out/got")]);
    assert_eq!(
        std::fs::read_to_string(host.join("out/got/sub/g")).unwrap(),
        "deep\n"
    );
    let big_mib = 96;
    assert_eq!(
        sh(&format!("head -c {}M /dev/urandom > {}", big_mib, p("big"))).code,
        0
    );
    e.docker_ok(&["cp", &p("big"), "st:/tmp/big"]);
    e.docker_ok(&["cp", "st:/tmp/big", &p("out/big")]);
    assert_eq!(sh(&format!("cmp {} {}", p("big"), p("out/big"))).code, 0);
    let service_pid = e.service.as_ref().unwrap().id();
    let peak = peak_rss_kib(service_pid);
    assert!(
        peak < (big_mib / 2) * 1024,
        "the service's peak RSS {peak} KiB"
    );
    std::fs::remove_file(host.join("big")).unwrap();
    std::fs::remove_file(host.join("out/big")).unwrap();
    // A stopped container (its overlay mounted for the call).
    e.docker_ok(&["create", "--name", "cc", "busybox", "true"]);
    e.docker_ok(&["cp", &p("f.txt"), "cc:/f.txt"]);
    e.docker_ok(&["cp", "cc:/f.txt", &p("out/from-stopped")]);
    assert_eq!(
        std::fs::read_to_string(host.join("out/from-stopped")).unwrap(),
        "file\n"
    );
    // Errors: Docker's messages and statuses, nothing made.
    let r = e.docker(&["cp", "st:/nope", &p("out/")]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("Could not find the file /nope in container st"),
        "{}",
        r.stderr
    );
    // (no trailing slash: the CLI takes the 404 of its stat for a missing directory)
    let r = e.docker(&["cp", &p("f.txt"), "nosuch:/tmp/x"]);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
    // The answer comes before the upload is read; the server reads on (up to 256 KiB, as
    // Go's) so that the client, still writing, gets it: unread, 6 in 20 uploads of 200
    // KB to a fresh root's service ended in "write: broken pipe".
    assert_eq!(
        sh(&format!("head -c 240000 /dev/urandom > {}", p("mid"))).code,
        0
    );
    for _ in 0..10 {
        let r = e.docker(&["cp", &p("mid"), "nosuch:/tmp/x"]);
        assert!(
            r.stderr.contains("No such container: nosuch"),
            "{}",
            r.stderr
        );
    }
    std::fs::remove_file(host.join("mid")).unwrap();
    e.docker_ok(&[
        "run",
        "-d",
        "--read-only",
        "--name",
        "ro",
        "busybox",
        "sleep",
        "1000",
    ]);
    let r = e.docker(&["cp", &p("f.txt"), "ro:/"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("container rootfs is marked read-only"),
        "{}",
        r.stderr
    );
    assert_ne!(e.docker(&["exec", "ro", "test", "-e", "/f.txt"]).code, 0);
    let head = |path: &str| {
        sh(&format!(
            "curl -s -m 5 -I --unix-socket {} 'http://rbox/containers/st/archive?path={path}'",
            e.sock.display()
        ))
        .stdout
    };
    assert!(
        head("/nope").starts_with("HTTP/1.1 404"),
        "{}",
        head("/nope")
    );
    let found = head("/etc/hostname");
    assert!(found.starts_with("HTTP/1.1 200"), "{found}");
    assert!(
        found
            .to_ascii_lowercase()
            .contains("x-docker-container-path-stat: "),
        "{found}"
    );
    let (code, body) = e.api(
        "PUT",
        "/containers/st/archive?path=/etc/hostname",
        Some("x"),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("extraction point is not a directory"),
        "{body}"
    );
    let (code, body) = e.api("PUT", "/containers/st/archive?path=/tmp", Some("not a tar"));
    assert_ne!(code, 200, "{body}");
    assert!(body.starts_with(r#"{"message":"#), "{body}");

    // Waits, the container ended or removed by rbox itself (not this service).
    e.docker_ok(&[
        "create",
        "--name",
        "ww",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 5",
    ]);
    let next = api_background(&e, "POST", "/containers/ww/wait?condition=next-exit");
    let gone = api_background(&e, "POST", "/containers/ww/wait?condition=removed");
    let now = api_background(&e, "POST", "/containers/ww/wait?condition=not-running");
    assert_eq!(
        answer(now)["StatusCode"],
        0,
        "a created container is not running"
    );
    e.rbox_ok(&["start", "ww"]);
    assert_eq!(answer(next)["StatusCode"], 5);
    let mut gone = gone;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(gone.try_wait().unwrap().is_none(), "removed: not yet");
    e.rbox_ok(&["rm", "ww"]);
    assert_eq!(answer(gone)["StatusCode"], 5);
    let stop = api_background(&e, "POST", "/containers/st/wait?condition=not-running");
    e.rbox_ok(&["kill", "st"]);
    assert_eq!(answer(stop)["StatusCode"], 137);
    let (code, body) = e.api("POST", "/containers/st/wait?condition=sometime", None);
    assert_eq!(code, 400, "{body}");
}
