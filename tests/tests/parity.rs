//! Docker parity: what a Docker user types, answered as Docker answers it. Each table states
//! Docker's expected exit code and output for a command line, with the Docker version the
//! answer comes from (no Docker engine runs here: the answers are Docker's documented and
//! source-level behaviour, docker/cli and moby at the tags named).

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use rbox_tests::{Rbox, RboxCli};

const NONE: &str = "--network=none";

/// One command line and Docker's answer to it. `{id}` in an expectation stands for the full id
/// of the test's created container.
struct Case {
    args: &'static [&'static str],
    code: i32,
    /// The whole stdout, when the case pins it.
    stdout: Option<&'static str>,
    /// A part of stderr ("" when stderr must be empty).
    stderr: &'static str,
}

const fn case(
    args: &'static [&'static str],
    code: i32,
    stdout: Option<&'static str>,
    stderr: &'static str,
) -> Case {
    Case {
        args,
        code,
        stdout,
        stderr,
    }
}

#[track_caller]
fn check(r: &impl RboxCli, cases: &[Case], id: &str) {
    let mut wrong = Vec::new();
    for c in cases {
        let out = r.run(c.args);
        let want_err = c.stderr.replace("{id}", id);
        let stdout_ok = c.stdout.is_none_or(|s| out.stdout == s.replace("{id}", id));
        let stderr_ok = match want_err.as_str() {
            "" => out.stderr.is_empty(),
            w => out.stderr.contains(w),
        };
        if out.code != c.code || !stdout_ok || !stderr_ok {
            wrong.push(format!(
                "rbox {:?}: want exit {} stdout {:?} stderr ~{:?}\n   got exit {} stdout {:?} stderr {:?}",
                c.args, c.code, c.stdout, want_err, out.code, out.stdout, out.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Docker's CLI exits 1 for an error of any command but `run`/`create` (the daemon's error,
/// printed as the 20.10 client prints a 404: "Error: No such container: x"), 125 for a bad
/// flag, and keeps 125/126/127 for `run`. The idempotent forms cleanup scripts use succeed.
#[test]
fn exit_codes_and_idempotent_forms() {
    let r = Rbox::with_busybox("parity-exit");
    r.ok(&[
        "run", "-d", "--name", "up", NONE, "busybox", "sleep", "1000",
    ]);
    let made = r.ok(&["create", "--name", "made", NONE, "busybox", "true"]);
    let made = made.trim();
    // Docker 20.10.24 (docker/cli v20.10.24, moby v20.10.24).
    let cases = [
        case(
            &["rm", "nosuch"],
            1,
            Some(""),
            "Error: No such container: nosuch",
        ),
        // `rm -f`: not-found errors go to stderr, the command succeeds.
        case(
            &["rm", "-f", "nosuch"],
            0,
            Some(""),
            "No such container: nosuch",
        ),
        case(&["rm", "up"], 1, Some(""), "container is running"),
        case(
            &["stop", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(&["stop", "made"], 0, Some("made\n"), ""),
        case(
            &["start", "nosuch"],
            1,
            Some(""),
            "Error: failed to start containers: nosuch",
        ),
        // Starting a running container is a no-op that prints its name.
        case(&["start", "up"], 0, Some("up\n"), ""),
        case(
            &["kill", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["kill", "made"],
            1,
            Some(""),
            "Cannot kill container: made: Container {id} is not running",
        ),
        case(
            &["restart", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["exec", "nosuch", "true"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["exec", "made", "true"],
            1,
            Some(""),
            "Container {id} is not running",
        ),
        case(
            &["logs", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["wait", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["port", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["port", "up", "80"],
            1,
            Some(""),
            "Error: No public port '80/tcp' published for up",
        ),
        case(
            &["rename", "nosuch", "x1"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(&["top", "nosuch"], 1, Some(""), "No such container: nosuch"),
        case(
            &["container", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "No such container: nosuch",
        ),
        case(
            &["network", "rm", "nosuch"],
            1,
            Some(""),
            "Error: No such network: nosuch",
        ),
        case(
            &["network", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "No such network: nosuch",
        ),
        case(
            &["network", "create", "--subnet", "bad", "x"],
            1,
            Some(""),
            "Error: ",
        ),
        case(
            &["network", "connect", "nosuch", "up"],
            1,
            Some(""),
            "Error: ",
        ),
        case(
            &["network", "disconnect", "nosuch", "up"],
            1,
            Some(""),
            "Error: ",
        ),
        case(
            &["rmi", "nosuch"],
            1,
            Some(""),
            "Error: No such image: nosuch",
        ),
        case(
            &["image", "rm", "nosuch"],
            1,
            Some(""),
            "Error: No such image: nosuch",
        ),
        // `rmi -f`: as `rm -f`, images that are not there are reported, not fatal.
        case(
            &["rmi", "-f", "nosuch"],
            0,
            Some(""),
            "No such image: nosuch",
        ),
        case(
            &["image", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "Error: No such image: nosuch",
        ),
        case(
            &["tag", "nosuch", "x:1"],
            1,
            Some(""),
            "No such image: nosuch",
        ),
        // Docker 28's daemon words (20.10's client said "No such volume: nosuch").
        case(
            &["volume", "rm", "nosuch"],
            1,
            Some(""),
            "get nosuch: no such volume",
        ),
        case(&["volume", "rm", "-f", "nosuch"], 0, Some("nosuch\n"), ""),
        case(
            &["volume", "inspect", "nosuch"],
            1,
            Some("[]\n"),
            "No such volume: nosuch",
        ),
        case(&["volume", "create", "bad/name"], 1, Some(""), "Error: "),
        // Argument checks are plain errors (exit 1), flag errors exit 125 (cobra's flag
        // error func), in every command.
        case(&["stop"], 1, Some(""), "required"),
        case(&["ps", "--no-such-flag"], 125, Some(""), "--no-such-flag"),
        case(
            &["rm", "--no-such-flag", "up"],
            125,
            Some(""),
            "--no-such-flag",
        ),
        // run keeps Docker's 125/126/127.
        case(
            &["run", "--rm", NONE, "nosuchimage"],
            125,
            Some(""),
            "No such image",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "nosuchcmd"],
            127,
            Some(""),
            "executable file not found",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "/"],
            126,
            Some(""),
            "exec: \"/\": permission denied",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "/etc"],
            126,
            Some(""),
            "permission denied",
        ),
        case(
            &["run", "--rm", NONE, "busybox", "sh", "-c", "exit 7"],
            7,
            Some(""),
            "",
        ),
    ];
    check(&r, &cases, made);
    // The failures changed nothing (`stop` of a created container is a no-op).
    let ps = r.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps, "made created\nup running\n");
}

/// A reader that went away ends the command silently, as Docker's Go CLI dies of SIGPIPE
/// (`docker ps -q | head -1` prints no "Broken pipe"): rbox's stdout here is a pipe whose
/// reading end is already closed, so its first write fails.
#[test]
fn closed_stdout_is_silent() {
    let r = Rbox::with_busybox("parity-pipe");
    r.ok(&["create", NONE, "busybox"]);
    for args in [
        &["ps", "-a"][..],
        &["ps", "-aq"],
        &["images"],
        &["network", "ls"],
        &["volume", "ls"],
        &["image", "inspect", "busybox"],
        &["inspect", "--format", "{{.Id}}", "busybox"],
    ] {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two descriptors we pass.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just made and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let out = r
            .command(args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "rbox {args:?}: {stderr}");
        // Killed by SIGPIPE as the Go CLI is (not aborted, no core).
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "rbox {args:?}: {:?}",
            out.status
        );
    }
}

/// Containers start with SIGPIPE at its default, as under Docker, although rbox itself (the
/// container's monitor) ignores it: `yes | head -1` in a container ends.
#[test]
fn containers_get_default_sigpipe() {
    let r = Rbox::with_busybox("parity-sigpipe");
    let ignored = |out: &str| {
        let line = out
            .lines()
            .find(|l| l.starts_with("SigIgn:"))
            .unwrap()
            .to_string();
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        mask & (1 << (libc::SIGPIPE - 1)) != 0
    };
    let out = r.ok(&["run", "--rm", NONE, "busybox", "cat", "/proc/self/status"]);
    assert!(!ignored(&out), "{out}");
    assert_eq!(
        r.ok(&["run", "--rm", NONE, "busybox", "sh", "-c", "yes | head -1"]),
        "y\n"
    );
    let id = r.ok(&["run", "-d", NONE, "busybox", "sleep", "1000"]);
    let out = r.ok(&["exec", id.trim(), "cat", "/proc/self/status"]);
    assert!(!ignored(&out), "{out}");
}

/// A `--root` that is a regular file is refused by every command (one line, exit 1, 125 for
/// `run`/`create`), and the file is left as it was.
#[test]
fn root_that_is_a_file_is_refused() {
    let file = std::env::temp_dir().join(format!("rbt-q-rootfile-{}", std::process::id()));
    std::fs::write(&file, "not a root\n").unwrap();
    let root = file.to_str().unwrap();
    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["images"],
        &["network", "ls"],
        &["volume", "ls"],
        &["inspect", "x"],
        &["rm", "-f", "x"],
        &["system", "prune", "-f"],
        &["run", "busybox"],
        &["create", "busybox"],
    ] {
        let out = rbox_tests::rbox_command(&file, None, args)
            .output()
            .unwrap();
        let code = rbox_tests::error_exit_code(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "--root {root} {args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a directory"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a root\n");
    std::fs::remove_file(&file).unwrap();
}

/// Imports the nginx tarball as Docker's nginx image (its CMD and EXPOSE) with two labels.
fn with_nginx(r: &Rbox) {
    r.ok(&[
        "import",
        "--change",
        r#"CMD ["nginx", "-g", "daemon off;"]"#,
        "--change",
        "EXPOSE 80",
        "--change",
        "LABEL z=last",
        "--change",
        "LABEL a=first",
        rbox_tests::image_tar("nginx").to_str().unwrap(),
        "nginx:latest",
    ]);
}

/// `inspect --format` prints values as Go's text/template does over Docker's types
/// (Docker 20.10.24 and 28.0: `[a b]`, `map[k:v]` in key order, structs `{...}`, nil
/// pointers `<nil>`, nil slices `[]`), ranges over maps in key order, and fails as Docker's
/// CLI does (exit 1 for an execution error, 64 for a template that does not parse).
#[test]
fn inspect_templates_print_as_go() {
    let r = Rbox::with_busybox("parity-tmpl");
    with_nginx(&r);
    r.ok(&["create", "--name", "web", NONE, "nginx"]);
    let f = |t: &'static str| -> &'static [&'static str] {
        Box::leak(vec!["inspect", "--format", t, "web"].into_boxed_slice())
    };
    let cases = [
        case(
            f("{{.Config.Cmd}}"),
            0,
            Some("[nginx -g daemon off;]\n"),
            "",
        ),
        case(f("{{.Config.Entrypoint}}"), 0, Some("[]\n"), ""),
        case(f("{{json .Config.Entrypoint}}"), 0, Some("null\n"), ""),
        case(
            f("{{.Config.Labels}}"),
            0,
            Some("map[a:first z:last]\n"),
            "",
        ),
        case(
            f("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}"),
            0,
            Some("a=first;z=last;\n"),
            "",
        ),
        case(
            f("{{.Config.ExposedPorts}}"),
            0,
            Some("map[80/tcp:{}]\n"),
            "",
        ),
        case(f("{{.HostConfig.RestartPolicy}}"), 0, Some("{no 0}\n"), ""),
        case(
            f("{{.HostConfig.LogConfig}}"),
            0,
            Some("{json-file map[max-file:3 max-size:10m]}\n"),
            "",
        ),
        case(f("{{.HostConfig.PidsLimit}}"), 0, Some("<nil>\n"), ""),
        case(f("{{.HostConfig.CapAdd}}"), 0, Some("[]\n"), ""),
        case(f("{{.HostConfig.ShmSize}}"), 0, Some("67108864\n"), ""),
        case(f("{{.HostConfig.IpcMode}}"), 0, Some("private\n"), ""),
        case(
            f("{{.State.Status}} {{.State.Running}}"),
            0,
            Some("created false\n"),
            "",
        ),
        case(f("{{json .State.Status}}"), 0, Some("\"created\"\n"), ""),
        case(f("{{len .Mounts}} {{.Name}}"), 0, Some("0 /web\n"), ""),
        case(f("{{index .Config.Labels \"z\"}}"), 0, Some("last\n"), ""),
        case(f("{{printf \"%.5s\" .Image}}"), 0, Some("sha25\n"), ""),
        case(
            f("{{.Nope}}"),
            1,
            Some("\n"),
            "template: :1:2: executing \"\" at <.Nope>: map has no entry for key \"Nope\"",
        ),
        case(
            f("{{.Id"),
            64,
            Some(""),
            "template parsing error: template: :1: unclosed action",
        ),
    ];
    check(&r, &cases, "");
    // `json` prints the array on one line, the default indents by four, Docker's key order.
    let one = r.ok(&["inspect", "--format", "json", "web"]);
    assert!(
        one.starts_with("[{\"Id\":\"") && one.ends_with("}]\n"),
        "{one}"
    );
    assert_eq!(one.lines().count(), 1);
    let pretty = r.ok(&["inspect", "web"]);
    assert!(
        pretty.starts_with("[\n    {\n        \"Id\": \""),
        "{pretty}"
    );
    let v: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    let keys: Vec<&str> = v[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    // Docker 28's ContainerJSON, in order.
    assert_eq!(
        keys,
        [
            "Id",
            "Created",
            "Path",
            "Args",
            "State",
            "Image",
            "ResolvConfPath",
            "HostnamePath",
            "HostsPath",
            "LogPath",
            "Name",
            "RestartCount",
            "Driver",
            "Platform",
            "MountLabel",
            "ProcessLabel",
            "AppArmorProfile",
            "ExecIDs",
            "HostConfig",
            "GraphDriver",
            "Mounts",
            "Config",
            "NetworkSettings"
        ]
    );
    for path in [
        "/HostConfig/CapAdd",
        "/HostConfig/CapDrop",
        "/HostConfig/Ulimits",
        "/HostConfig/Devices",
        "/HostConfig/PidMode",
        "/HostConfig/UTSMode",
        "/HostConfig/CgroupnsMode",
        "/HostConfig/OomScoreAdj",
        "/HostConfig/CpuShares",
        "/HostConfig/MemorySwap",
        "/HostConfig/OomKillDisable",
        "/NetworkSettings/EndpointID",
        "/NetworkSettings/Bridge",
        "/NetworkSettings/HairpinMode",
        "/Config/AttachStdin",
        "/Config/StdinOnce",
    ] {
        assert!(v[0].pointer(path).is_some(), "{path} missing");
    }
}

/// Plain `inspect` finds any object, in Docker's order (container, image, network, volume),
/// or the kind `--type` names.
#[test]
fn inspect_any_object() {
    let r = Rbox::with_busybox("parity-inspect");
    r.ok(&["volume", "create", "data"]);
    r.ok(&["create", "--name", "box", NONE, "busybox"]);
    // Docker 20.10.24.
    let cases = [
        case(
            &["inspect", "--format", "{{.Name}}", "box"],
            0,
            Some("/box\n"),
            "",
        ),
        case(
            &["inspect", "--format", "{{.RepoTags}}", "busybox"],
            0,
            Some("[busybox:latest]\n"),
            "",
        ),
        case(
            &["inspect", "--format", "{{.Driver}} {{.Scope}}", "bridge"],
            0,
            Some("bridge local\n"),
            "",
        ),
        case(
            &["inspect", "--format", "{{.Name}} {{.Driver}}", "data"],
            0,
            Some("data local\n"),
            "",
        ),
        case(
            &[
                "inspect",
                "--type",
                "volume",
                "--format",
                "{{.Name}}",
                "data",
            ],
            0,
            Some("data\n"),
            "",
        ),
        case(
            &["inspect", "--type", "image", "box"],
            1,
            Some("[]\n"),
            "Error: No such image: box",
        ),
        case(
            &["inspect", "nosuch"],
            1,
            Some("[]\n"),
            "Error: No such object: nosuch",
        ),
        case(
            &["inspect", "--type", "nope", "box"],
            1,
            Some(""),
            "\"nope\" is not a valid value for --type",
        ),
        case(
            &["network", "inspect", "--format", "{{.Name}}", "bridge"],
            0,
            Some("bridge\n"),
            "",
        ),
        case(
            &["volume", "inspect", "--format", "{{.Mountpoint}}", "data"],
            0,
            None,
            "",
        ),
        case(
            &["image", "inspect", "--format", "{{.Config.Cmd}}", "busybox"],
            0,
            Some("[sh]\n"),
            "",
        ),
    ];
    check(&r, &cases, "");
    let two = r.ok(&["inspect", "--format", "{{.Name}}", "box", "data"]);
    assert_eq!(two, "/box\ndata\n");
}

/// List commands as Docker's formatter prints them (Docker 28.0): `table` padded by Go's
/// tabwriter (minimum width 10, padding 3) with Docker's column names, `json` one object per
/// line with the context's fields, a template one line per row.
#[test]
fn list_tables_and_json() {
    let r = Rbox::with_busybox("parity-tables");
    with_nginx(&r);
    // An empty `ps` is Docker's header alone.
    assert_eq!(
        r.ok(&["ps"]),
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
    );
    assert_eq!(r.ok(&["volume", "ls"]), "DRIVER    VOLUME NAME\n");
    r.ok(&["create", "--name", "web", NONE, "nginx"]);
    r.ok(&[
        "run", "-d", "--name", "up", NONE, "busybox", "sleep", "1000",
    ]);
    r.ok(&["volume", "create", "data"]);
    let cases = [
        case(
            &["ps", "-a", "--format", "table {{.Names}}\\t{{.Image}}\\t{{.State}}"],
            0,
            Some("NAMES     IMAGE     STATE\nup        busybox   running\nweb       nginx     created\n"),
            "",
        ),
        case(&["ps", "--format", "{{.Names}}\\t{{.Command}}"], 0, Some("up\t\"sleep 1000\"\n"), ""),
        case(
            &["ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.Command}}"],
            0,
            Some("up \"sleep 1000\"\nweb \"nginx -g daemon off;\"\n"),
            "",
        ),
        case(&["ps", "-a", "--format", "{{.Command}}", "-n", "1"], 0, Some("\"sleep 1000\"\n"), ""),
        case(&["ps", "--format", "{{.Names}}", "-l"], 0, Some("up\n"), ""),
        case(&["ps", "--format", "{{.Names}}", "-n", "2"], 0, Some("up\nweb\n"), ""),
        case(&["ps", "--format", "{{.Nope}}"], 1, Some(""), "can't evaluate field Nope in type *formatter.ContainerContext"),
        case(
            &["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "--filter", "reference=busy*"],
            0,
            Some("REPOSITORY   TAG\nbusybox      latest\n"),
            "",
        ),
        case(&["images", "--format", "{{.Repository}}", "--filter", "label=a=first"], 0, Some("nginx\n"), ""),
        case(&["images", "--format", "{{.Repository}}", "--filter", "dangling=true"], 0, Some(""), ""),
        case(&["images", "--filter", "nope=1"], 1, Some(""), "invalid filter 'nope'"),
        case(
            &["network", "ls", "--format", "table {{.Name}}\\t{{.Driver}}"],
            0,
            Some("NAME      DRIVER\nbridge    bridge\nhost      host\nnone      null\n"),
            "",
        ),
        case(
            &["volume", "ls", "--format", "table {{.Name}}\\t{{.Driver}}\\t{{.Scope}}"],
            0,
            Some("VOLUME NAME   DRIVER    SCOPE\ndata          local     local\n"),
            "",
        ),
        case(&["volume", "ls", "--filter", "dangling=true", "-q"], 0, Some("data\n"), ""),
        case(&["volume", "ls", "--filter", "name=^da", "-q"], 0, Some("data\n"), ""),
        case(&["volume", "ls", "--filter", "name=^x", "-q"], 0, Some(""), ""),
    ];
    check(&r, &cases, "");
    let head = r.ok(&["images", "--digests"]);
    assert!(
        head.starts_with("REPOSITORY   TAG       DIGEST    IMAGE ID"),
        "{head}"
    );
    let sized = r.ok(&["ps", "-s"]);
    let first = sized.lines().next().unwrap();
    assert!(first.ends_with("NAMES     SIZE"), "{sized}");
    assert!(
        sized.lines().nth(1).unwrap().contains("B (virtual "),
        "{sized}"
    );
    // `--format json`: the context's fields, sorted as Go marshals a map.
    let keys = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object().unwrap().keys().cloned().collect()
            })
            .collect()
    };
    let ps = keys(&r.ok(&["ps", "--format", "json"]));
    assert_eq!(
        ps,
        [[
            "Command",
            "CreatedAt",
            "ID",
            "Image",
            "Labels",
            "LocalVolumes",
            "Mounts",
            "Names",
            "Networks",
            "Ports",
            "RunningFor",
            "Size",
            "State",
            "Status"
        ]]
    );
    let images = keys(&r.ok(&["images", "--format", "json"]));
    assert_eq!(images.len(), 2);
    assert_eq!(
        images[0],
        [
            "Containers",
            "CreatedAt",
            "CreatedSince",
            "Digest",
            "ID",
            "Repository",
            "SharedSize",
            "Size",
            "Tag",
            "UniqueSize",
            "VirtualSize"
        ]
    );
    let nets = keys(&r.ok(&["network", "ls", "--format", "json"]));
    assert_eq!(
        nets[0],
        [
            "CreatedAt",
            "Driver",
            "ID",
            "IPv6",
            "Internal",
            "Labels",
            "Name",
            "Scope"
        ]
    );
    let vols = keys(&r.ok(&["volume", "ls", "--format", "json"]));
    assert_eq!(
        vols[0],
        [
            "Driver",
            "Labels",
            "Links",
            "Mountpoint",
            "Name",
            "Scope",
            "Size"
        ]
    );
    // network ls {{.CreatedAt}}: Go's time.Time.String().
    let created = r.ok(&[
        "network",
        "ls",
        "--format",
        "{{.CreatedAt}}",
        "--filter",
        "name=bridge",
    ]);
    let created = created.trim();
    assert!(created.ends_with(" +0000 UTC"), "{created}");
    let stamp = created.trim_end_matches(" +0000 UTC");
    let (date, time) = stamp.split_once(' ').unwrap();
    assert_eq!(date.len(), 10, "{created}");
    assert!(time.len() >= 8 && time.as_bytes()[2] == b':', "{created}");
}

/// `logs --since/--until` keep the records written from / up to a time given as Docker
/// takes it (RFC 3339, Unix seconds, or a duration before now), after `--tail`.
#[test]
fn logs_since_and_until() {
    let r = Rbox::with_busybox("parity-logs");
    r.ok(&[
        "run",
        "--name",
        "lg",
        NONE,
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 1.2; echo two",
    ]);
    let stamped = r.ok(&["logs", "-t", "lg"]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(times.len(), 2, "{stamped}");
    assert_eq!(r.ok(&["logs", "--since", times[1], "lg"]), "two\n");
    assert_eq!(r.ok(&["logs", "--until", times[0], "lg"]), "one\n");
    assert_eq!(r.ok(&["logs", "--since", "1h", "lg"]), "one\ntwo\n");
    assert_eq!(r.ok(&["logs", "--since", "1h", "--until", "30m", "lg"]), "");
    assert_eq!(
        r.ok(&["logs", "--since", "0", "--tail", "1", "lg"]),
        "two\n"
    );
    let e = r.fails(1, &["logs", "--since", "soon", "lg"]);
    assert!(e.contains("invalid value for \"since\""), "{e}");
}

/// `version` and `info` answer the probes CI scripts use.
#[test]
fn version_and_info() {
    let r = Rbox::with_busybox("parity-version");
    let v = r.ok(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(v.trim(), env!("CARGO_PKG_VERSION"));
    let text = r.ok(&["version"]);
    assert!(
        text.starts_with("Client: rbox\n Version:           "),
        "{text}"
    );
    assert!(
        text.contains("\nServer: rbox\n Engine:\n  Version:          "),
        "{text}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&r.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(j["Client"]["Os"], "linux");
    r.ok(&["create", NONE, "busybox"]);
    let info = r.ok(&[
        "info",
        "--format",
        "{{.Containers}} {{.Images}} {{.Driver}} {{.DockerRootDir}}",
    ]);
    assert_eq!(info.trim(), format!("1 1 overlay {}", r.root.display()));
    let cg = r.ok(&["system", "info", "--format", "{{.CgroupVersion}}"]);
    assert!(cg.trim() == "1" || cg.trim() == "2", "{cg}");
    let text = r.ok(&["info"]);
    assert!(text.contains("\n Containers: 1\n  Running: 0\n"), "{text}");
}

/// `ps --filter` as moby's `includeContainerInList` (Docker 20.10-28): values of one key are
/// alternatives, different keys all apply, labels all apply; `status=` lists stopped
/// containers without `-a`; before=/since= cut by creation order.
#[test]
fn ps_filters() {
    let r = Rbox::with_busybox("parity-psf");
    with_nginx(&r);
    let c1 = r.ok(&[
        "create", "--name", "c1", "-l", "tier=db", NONE, "busybox", "true",
    ]);
    r.fails(
        3,
        &[
            "run", "--name", "c2", "-l", "tier=web", NONE, "busybox", "sh", "-c", "exit 3",
        ],
    );
    r.ok(&[
        "run",
        "-d",
        "--name",
        "c3",
        "-l",
        "tier=web",
        "-v",
        "vol1:/data",
        "-p",
        "20101:80",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&["run", "-d", "--name", "c4", NONE, "nginx"]);
    let ps = |f: &'static [&'static str]| -> &'static [&'static str] {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(f);
        Box::leak(a.into_boxed_slice())
    };
    let id_prefix: &'static str = Box::leak(format!("id={}", &c1.trim()[..10]).into_boxed_str());
    let cases = [
        case(ps(&["--filter", "status=exited"]), 0, Some("c2\n"), ""),
        case(ps(&["--filter", "status=created"]), 0, Some("c1\n"), ""),
        case(ps(&["--filter", "status=running"]), 0, Some("c4\nc3\n"), ""),
        case(
            ps(&["-f", "status=running", "-f", "status=exited"]),
            0,
            Some("c4\nc3\nc2\n"),
            "",
        ),
        case(ps(&["-a", "--filter", "exited=3"]), 0, Some("c2\n"), ""),
        case(ps(&["-a", "--filter", "exited=0"]), 0, Some(""), ""),
        case(ps(&["-a", "--filter", "name=^c2$"]), 0, Some("c2\n"), ""),
        case(ps(&["-a", "--filter", "name=/c1"]), 0, Some("c1\n"), ""),
        case(
            ps(Box::leak(Box::new(["-a", "--filter", id_prefix]))),
            0,
            Some("c1\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "label=tier=web"]),
            0,
            Some("c3\nc2\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "label=tier"]),
            0,
            Some("c3\nc2\nc1\n"),
            "",
        ),
        case(
            ps(&["-a", "-f", "label=tier=web", "-f", "status=running"]),
            0,
            Some("c3\n"),
            "",
        ),
        case(
            ps(&["-a", "-f", "label=tier=web", "-f", "label=z"]),
            0,
            Some(""),
            "",
        ),
        case(
            ps(&["-a", "--filter", "label=a=first"]),
            0,
            Some("c4\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "ancestor=nginx"]),
            0,
            Some("c4\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "ancestor=busybox:latest"]),
            0,
            Some("c3\nc2\nc1\n"),
            "",
        ),
        case(ps(&["-a", "--filter", "ancestor=nosuch"]), 0, Some(""), ""),
        case(ps(&["-a", "--filter", "volume=vol1"]), 0, Some("c3\n"), ""),
        case(ps(&["-a", "--filter", "volume=/data"]), 0, Some("c3\n"), ""),
        case(ps(&["--filter", "publish=20101"]), 0, Some("c3\n"), ""),
        case(ps(&["--filter", "publish=20101/udp"]), 0, Some(""), ""),
        case(ps(&["--filter", "expose=80"]), 0, Some("c4\nc3\n"), ""),
        case(
            ps(&["--filter", "expose=79-81/tcp"]),
            0,
            Some("c4\nc3\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "network=none"]),
            0,
            Some("c4\nc2\nc1\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "network=bridge"]),
            0,
            Some("c3\n"),
            "",
        ),
        case(
            ps(&["-a", "--filter", "before=c3"]),
            0,
            Some("c2\nc1\n"),
            "",
        ),
        case(ps(&["-a", "--filter", "since=c2"]), 0, Some("c4\nc3\n"), ""),
        case(
            ps(&["-a", "-f", "since=c1", "-f", "before=c4"]),
            0,
            Some("c3\nc2\n"),
            "",
        ),
        case(ps(&["--filter", "health=none"]), 0, Some("c4\nc3\n"), ""),
        case(
            ps(&["-a", "-n", "2", "--filter", "label=tier"]),
            0,
            Some("c3\nc2\n"),
            "",
        ),
        case(
            ps(&["--filter", "health=bogus"]),
            1,
            Some(""),
            "Unrecognised filter value for health: bogus",
        ),
        case(
            ps(&["--filter", "nope=1"]),
            1,
            Some(""),
            "invalid filter 'nope'",
        ),
        case(
            ps(&["--filter", "status=bogus"]),
            1,
            Some(""),
            "invalid filter 'status=bogus'",
        ),
        case(
            ps(&["--filter", "publish=1:2"]),
            1,
            Some(""),
            "filter for 'publish' should not contain ':': 1:2",
        ),
        case(
            ps(&["--filter", "before=nosuch"]),
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            ps(&["--filter", "nofilter"]),
            1,
            Some(""),
            "bad format of filter (expected name=value)",
        ),
    ];
    check(&r, &cases, "");
}

/// `images` and `volume ls` filters (Docker 20.10-28).
#[test]
fn image_and_volume_filters() {
    let r = Rbox::with_busybox("parity-imgf");
    with_nginx(&r);
    r.ok(&["volume", "create", "--label", "keep=1", "kept"]);
    r.ok(&["volume", "create", "loose"]);
    r.ok(&["create", "--name", "user", NONE, "-v", "kept:/k", "busybox"]);
    let img = |f: &'static [&'static str]| -> &'static [&'static str] {
        let mut a = vec!["images", "--format", "{{.Repository}}"];
        a.extend_from_slice(f);
        Box::leak(a.into_boxed_slice())
    };
    let cases = [
        case(
            img(&["--filter", "reference=nginx"]),
            0,
            Some("nginx\n"),
            "",
        ),
        case(
            img(&["-f", "reference=nginx", "-f", "reference=busybox"]),
            0,
            None,
            "",
        ),
        case(
            img(&["--filter", "reference=*:latest", "--filter", "label=z"]),
            0,
            Some("nginx\n"),
            "",
        ),
        case(img(&["--filter", "since=busybox"]), 0, Some("nginx\n"), ""),
        case(img(&["--filter", "before=nginx"]), 0, Some("busybox\n"), ""),
        case(
            img(&["--filter", "dangling=maybe"]),
            1,
            Some(""),
            "invalid filter 'dangling=maybe'",
        ),
        case(
            &["volume", "ls", "-q", "--filter", "dangling=false"],
            0,
            Some("kept\n"),
            "",
        ),
        case(
            &["volume", "ls", "-q", "--filter", "dangling=true"],
            0,
            Some("loose\n"),
            "",
        ),
        case(
            &["volume", "ls", "-q", "--filter", "label=keep"],
            0,
            Some("kept\n"),
            "",
        ),
        case(
            &[
                "volume",
                "ls",
                "-q",
                "--filter",
                "driver=local",
                "--filter",
                "name=oo",
            ],
            0,
            Some("loose\n"),
            "",
        ),
        case(
            &["volume", "ls", "--filter", "nope=1"],
            1,
            Some(""),
            "invalid filter 'nope'",
        ),
    ];
    check(&r, &cases, "");
    let both = r.ok(&[
        "images",
        "--format",
        "{{.Repository}}",
        "-f",
        "reference=nginx",
        "-f",
        "reference=busybox",
    ]);
    let mut both: Vec<&str> = both.lines().collect();
    both.sort();
    assert_eq!(both, ["busybox", "nginx"]);
}

/// Prune filters (`until`, `label`, `label!`) of container, image, network and volume prune,
/// with Docker's output (20.10-28).
#[test]
fn prune_filters() {
    let r = Rbox::with_busybox("parity-prune");
    with_nginx(&r);
    let web = r.ok(&["create", "--name", "ww", "-l", "tier=web", NONE, "busybox"]);
    let db = r.ok(&["create", "--name", "dd", "-l", "tier=db", NONE, "busybox"]);
    r.ok(&["create", "--name", "nn", NONE, "busybox"]);
    // Declined (stdin closed): nothing removed.
    let out = r.ok(&["container", "prune"]);
    assert!(out.starts_with("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "), "{out}");
    assert_eq!(r.ok(&["ps", "-aq"]).lines().count(), 3);
    let out = r.ok(&["container", "prune", "-f", "--filter", "label=tier=web"]);
    assert_eq!(
        out,
        format!("Deleted Containers:\n{web}\nTotal reclaimed space: 0B\n")
    );
    // Created within the last hour: not before `until=1h`.
    assert_eq!(
        r.ok(&["container", "prune", "-f", "--filter", "until=1h"]),
        "Total reclaimed space: 0B\n"
    );
    let out = r.ok(&["container", "prune", "-f", "--filter", "label!=tier"]);
    assert!(
        out.starts_with("Deleted Containers:\n") && !out.contains(db.trim()),
        "{out}"
    );
    assert_eq!(r.ok(&["ps", "-a", "--format", "{{.Names}}"]), "dd\n");
    r.fails(1, &["container", "prune", "-f", "--filter", "name=dd"]);

    for (name, subnet, label) in [
        ("keepnet", "10.182.1.0/24", "keep=1"),
        ("tempnet", "10.182.2.0/24", "temp=1"),
    ] {
        let bridge = format!("com.docker.network.bridge.name=rbt-q{}", &subnet[7..8]);
        r.ok(&[
            "network", "create", "--subnet", subnet, "-o", &bridge, "--label", label, name,
        ]);
    }
    assert_eq!(
        r.ok(&["network", "prune", "-f", "--filter", "label=temp"]),
        "Deleted Networks:\ntempnet\n\n"
    );
    assert_eq!(
        r.ok(&["network", "prune", "-f", "--filter", "label!=keep"]),
        ""
    );
    assert_eq!(
        r.ok(&["network", "ls", "-q", "--filter", "name=keepnet"])
            .lines()
            .count(),
        1
    );

    r.ok(&["volume", "create", "--label", "temp=1", "v1"]);
    r.ok(&["volume", "create", "v2"]);
    assert_eq!(
        r.ok(&["volume", "prune", "-af", "--filter", "label=temp"]),
        "Deleted Volumes:\nv1\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(r.ok(&["volume", "ls", "-q"]), "v2\n");

    // An untagged import is dangling; `image prune` takes it, -a with a label the nginx one.
    let dangling = r.ok(&["import", rbox_tests::image_tar("busybox").to_str().unwrap()]);
    let out = r.ok(&["image", "prune", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Images:\ndeleted: {}\n\nTotal reclaimed space: ",
            dangling.trim()
        )),
        "{out}"
    );
    let out = r.ok(&["image", "prune", "-af", "--filter", "label=a=first"]);
    assert!(
        out.starts_with("Deleted Images:\nuntagged: nginx:latest\ndeleted: sha256:"),
        "{out}"
    );
    // busybox is still used by `dd`.
    assert_eq!(
        r.ok(&["images", "--format", "{{.Repository}}"]),
        "busybox\n"
    );
    assert_eq!(
        r.ok(&["image", "prune", "-af"]),
        "Total reclaimed space: 0B\n"
    );
}

/// Runs `busybox sh -c SCRIPT` with `flags` on no network; returns stdout (asserting exit 0).
#[track_caller]
fn sh_in(r: &Rbox, flags: &[&str], script: &str) -> String {
    let mut a = vec!["run", "--rm", NONE];
    a.extend_from_slice(flags);
    a.extend_from_slice(&["busybox", "sh", "-c", script]);
    r.ok(&a)
}

/// The `CapEff` mask of a `/proc/self/status`.
fn cap_eff(status: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// `--cap-add`/`--cap-drop` (names in any case, with or without CAP_, ALL) and
/// `--privileged`, checked by what the container can do.
#[test]
fn capabilities_and_privileged() {
    let r = Rbox::with_busybox("parity-caps");
    let veth = "ip link add rbtq0 type veth peer name rbtq1 && echo made || echo denied";
    assert_eq!(sh_in(&r, &[], veth).trim(), "denied");
    assert_eq!(sh_in(&r, &["--cap-add", "NET_ADMIN"], veth).trim(), "made");
    assert_eq!(
        sh_in(&r, &["--cap-add", "cap_net_admin"], veth).trim(),
        "made"
    );
    assert_eq!(sh_in(&r, &["--cap-add", "ALL"], veth).trim(), "made");
    assert_eq!(
        cap_eff(&sh_in(&r, &["--cap-drop", "ALL"], "cat /proc/self/status")),
        0
    );
    let chown = "touch /f && chown 1:1 /f && echo chowned || echo denied";
    assert_eq!(sh_in(&r, &["--cap-drop", "chown"], chown).trim(), "denied");
    assert_eq!(
        sh_in(&r, &["--cap-drop", "ALL", "--cap-add", "CHOWN"], chown).trim(),
        "chowned"
    );
    // Privileged: every capability rbox may pass on, no seccomp, no masked /proc, devices.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    let status = sh_in(&r, &["--privileged"], "cat /proc/self/status");
    assert_eq!(
        cap_eff(&status),
        u64::from_str_radix(&bnd, 16).unwrap(),
        "{status}"
    );
    assert!(status.contains("Seccomp:\t0"), "{status}");
    let normal = sh_in(&r, &[], "cat /proc/self/status");
    assert!(normal.contains("Seccomp:\t2"), "{normal}");
    assert_eq!(
        sh_in(&r, &["--privileged"], "test -c /dev/kmsg && echo dev").trim(),
        "dev"
    );
    assert_eq!(
        sh_in(&r, &[], "test -e /dev/kmsg && echo dev || echo none").trim(),
        "none"
    );
    // /proc/timer_list is masked (an empty file) unless privileged.
    let timers = "head -c 16 /proc/timer_list | wc -c";
    assert_eq!(sh_in(&r, &["--privileged"], timers).trim(), "16");
    assert_eq!(sh_in(&r, &[], timers).trim(), "0");
    let v = r.ok(&[
        "create",
        "--privileged",
        "--cap-add",
        "net_admin",
        NONE,
        "busybox",
    ]);
    let f = r.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Privileged}} {{.HostConfig.CapAdd}} {{.HostConfig.MaskedPaths}}",
        v.trim(),
    ]);
    assert_eq!(f, "true [net_admin] []\n");
}

/// `--device` (with permissions) and `--device-cgroup-rule`, enforced by the device cgroup.
#[test]
fn devices_and_cgroup_rules() {
    let r = Rbox::with_busybox("parity-dev");
    let write = "echo x > /dev/kmsg && echo written || echo denied";
    assert_eq!(
        sh_in(&r, &["--device", "/dev/kmsg"], write).trim(),
        "written"
    );
    assert_eq!(
        sh_in(&r, &["--device", "/dev/kmsg:/dev/kmsg:r"], write).trim(),
        "denied"
    );
    assert_eq!(
        sh_in(
            &r,
            &["--device", "/dev/null:/dev/other"],
            "test -c /dev/other && echo node"
        )
        .trim(),
        "node"
    );
    let node = "mknod /tmp/k c 1 11 && (echo x > /tmp/k && echo written || echo denied)";
    assert_eq!(sh_in(&r, &[], node).trim(), "denied");
    assert_eq!(
        sh_in(&r, &["--device-cgroup-rule", "c 1:11 rwm"], node).trim(),
        "written"
    );
    let id = r.ok(&["create", NONE, "--device", "/dev/kmsg:/dev/k:rw", "busybox"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{json .HostConfig.Devices}}", id.trim()]),
        "[{\"PathOnHost\":\"/dev/kmsg\",\"PathInContainer\":\"/dev/k\",\"CgroupPermissions\":\"rw\"}]\n"
    );
}

/// Limits, namespaces and process settings, each checked by the container or its cgroup.
#[test]
fn limits_namespaces_and_process_settings() {
    let r = Rbox::with_busybox("parity-limits");
    assert_eq!(
        sh_in(
            &r,
            &["--ulimit", "nofile=1024:2048"],
            "ulimit -n; ulimit -Hn"
        ),
        "1024\n2048\n"
    );
    assert_eq!(sh_in(&r, &["--ulimit", "nproc=99"], "ulimit -u"), "99\n");
    let df = sh_in(&r, &["--shm-size", "128m"], "df -k /dev/shm | tail -1");
    assert_eq!(df.split_whitespace().nth(1), Some("131072"), "{df}");
    let df = sh_in(&r, &[], "df -k /dev/shm | tail -1");
    assert_eq!(df.split_whitespace().nth(1), Some("65536"), "{df}");
    assert_eq!(
        sh_in(
            &r,
            &["--ipc", "none"],
            "test -d /dev/shm && mountpoint -q /dev/shm && echo shm || echo none"
        )
        .trim(),
        "none"
    );
    assert_eq!(
        sh_in(
            &r,
            &["--sysctl", "net.ipv4.ip_forward=1"],
            "cat /proc/sys/net/ipv4/ip_forward"
        ),
        "1\n"
    );
    assert_eq!(
        sh_in(
            &r,
            &["--sysctl", "kernel.shmmax=12345678"],
            "cat /proc/sys/kernel/shmmax"
        ),
        "12345678\n"
    );
    assert!(
        sh_in(&r, &["--group-add", "1234", "--group-add", "root"], "id -G")
            .split_whitespace()
            .any(|g| g == "1234")
    );
    assert_eq!(
        sh_in(
            &r,
            &["--oom-score-adj", "500"],
            "cat /proc/self/oom_score_adj"
        ),
        "500\n"
    );
    // Namespaces: the host's, or another container's.
    let host_ns = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(
        sh_in(&r, &["--ipc", "host"], "readlink /proc/self/ns/ipc").trim(),
        host_ns("ipc")
    );
    assert_eq!(
        sh_in(&r, &["--pid", "host"], "readlink /proc/self/ns/pid").trim(),
        host_ns("pid")
    );
    assert_ne!(
        sh_in(&r, &[], "readlink /proc/self/ns/pid").trim(),
        host_ns("pid")
    );
    assert_eq!(
        sh_in(&r, &["--uts", "host"], "readlink /proc/self/ns/uts").trim(),
        host_ns("uts")
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(sh_in(&r, &["--uts", "host"], "hostname"), host_name);
    assert_eq!(
        sh_in(&r, &["--cgroupns", "host"], "readlink /proc/self/ns/cgroup").trim(),
        host_ns("cgroup")
    );
    assert_ne!(
        sh_in(&r, &[], "readlink /proc/self/ns/cgroup").trim(),
        host_ns("cgroup")
    );
    r.ok(&[
        "run", "-d", "--name", "tgt", NONE, "busybox", "sleep", "1000",
    ]);
    let pid = r.ok(&["inspect", "-f", "{{.State.Pid}}", "tgt"]);
    let target_ns = |ns: &str| {
        std::fs::read_link(format!("/proc/{}/ns/{ns}", pid.trim()))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(
        sh_in(
            &r,
            &["--ipc", "container:tgt"],
            "readlink /proc/self/ns/ipc"
        )
        .trim(),
        target_ns("ipc")
    );
    assert_eq!(
        sh_in(
            &r,
            &["--pid", "container:tgt"],
            "readlink /proc/self/ns/pid"
        )
        .trim(),
        target_ns("pid")
    );
    assert!(sh_in(&r, &["--pid", "container:tgt"], "ps").contains("sleep 1000"));
    // CPU and memory settings, as the container's cgroup holds them (v1 here).
    let id = r.ok(&[
        "run",
        "-d",
        NONE,
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "32m",
        "--oom-kill-disable",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "busybox",
        "sleep",
        "1000",
    ]);
    let id = id.trim();
    let cg = |c: &str, f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/rbox/{id}/{f}"))
            .map(|t| t.lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        assert_eq!(cg("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(cg("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(cg("memory", "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(cg("memory", "memory.oom_control"), "oom_kill_disable 1");
        assert_eq!(cg("cpu", "cpu.shares"), "512");
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(cg("cpuset", "cpuset.cpus"), "0");
    }
    let f = r.ok(&[
        "inspect", "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.MemoryReservation}} {{.HostConfig.OomKillDisable}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}",
        id,
    ]);
    assert_eq!(f, "67108864 134217728 33554432 true 512 0 50000 100000\n");
    // Docker's default swap: as much as memory on top of it.
    let m = r.ok(&["create", NONE, "-m", "64m", "busybox"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.MemorySwap}}", m.trim()]),
        "134217728\n"
    );
}

/// `--cidfile`, `--expose`, `--link`, `-a` and `--detach-keys`.
#[test]
fn cidfile_expose_link_attach() {
    let r = Rbox::with_busybox("parity-misc");
    let cid = std::env::temp_dir().join(format!("rbt-q-cid-{}", std::process::id()));
    let _ = std::fs::remove_file(&cid);
    let c = cid.to_str().unwrap();
    let id = r.ok(&["run", "-d", NONE, "--cidfile", c, "busybox", "true"]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
    let before = r.ok(&["ps", "-aq"]);
    let e = r.bad(&["run", "-d", NONE, "--cidfile", c, "busybox", "true"]);
    assert!(
        e.contains(
            "Container ID file found, make sure the other container isn't running or delete"
        ),
        "{e}"
    );
    assert_eq!(r.ok(&["ps", "-aq"]), before, "nothing created");
    std::fs::remove_file(&cid).unwrap();
    // A run that fails leaves no cidfile.
    r.fails(127, &["run", NONE, "--cidfile", c, "busybox", "nosuchcmd"]);
    assert!(!cid.exists());

    let web = r.ok(&[
        "create",
        NONE,
        "--expose",
        "9000",
        "--expose",
        "7000-7001/udp",
        "busybox",
    ]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.Config.ExposedPorts}}", web.trim()]),
        "map[7000/udp:{} 7001/udp:{} 9000/tcp:{}]\n"
    );
    // --link on the default bridge: /etc/hosts and Docker's environment.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-e",
        "SECRET=s3",
        "--expose",
        "5432",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ip = r.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    let ip = ip.trim();
    let dbid = r.ok(&["inspect", "-f", "{{.Id}}", "db"]);
    let out = r.ok(&[
        "run", "--rm", "--name", "web", "--link", "db:database", "busybox", "sh", "-c",
        "grep database /etc/hosts; env | grep ^DATABASE_ | sort; ping -c1 -W2 database >/dev/null && echo reached",
    ]);
    assert_eq!(
        out,
        format!(
            "{ip}\tdatabase {} db\nDATABASE_ENV_SECRET=s3\nDATABASE_NAME=/web/database\nDATABASE_PORT=tcp://{ip}:5432\nDATABASE_PORT_5432_TCP=tcp://{ip}:5432\nDATABASE_PORT_5432_TCP_ADDR={ip}\nDATABASE_PORT_5432_TCP_PORT=5432\nDATABASE_PORT_5432_TCP_PROTO=tcp\nreached\n",
            &dbid.trim()[..12]
        )
    );
    let linked = r.ok(&["create", "--name", "w2", "--link", "db", "busybox"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.Links}}", linked.trim()]),
        "[/db:/w2/db]\n"
    );
    // -a: only the streams named reach the terminal; the log has both.
    let o = r.run(&[
        "run",
        "--name",
        "att",
        NONE,
        "-a",
        "stdout",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "out\n", "")
    );
    let logs = r.run(&["logs", "att"]);
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("out\n", "err\n")
    );
    let o = r.run(&[
        "run",
        "--rm",
        NONE,
        "-a",
        "stderr",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", "err\n"));
    let f = r.ok(&[
        "inspect",
        "-f",
        "{{.Config.AttachStdin}} {{.Config.AttachStdout}} {{.Config.AttachStderr}}",
        "att",
    ]);
    assert_eq!(f, "false true false\n");
    let d = r.ok(&["run", "-d", NONE, "busybox", "true"]);
    let f = r.ok(&["inspect", "-f", "{{.Config.AttachStdout}}", d.trim()]);
    assert_eq!(f, "false\n");
    r.ok(&["create", NONE, "--detach-keys", "ctrl-x,x", "busybox"]);
}

/// Bad values of the run/create flags: one line in Docker's words, exit 125, and nothing
/// left behind (Docker 20.10.24: docker/cli opts.go, moby verifyPlatformContainerSettings).
#[test]
fn bad_run_flags_are_refused() {
    let r = Rbox::with_busybox("parity-badflags");
    let cases: &[(&[&str], &str)] = &[
        (&["--cap-add", "NOPE"], "unknown capability: \"CAP_NOPE\""),
        (&["--cap-drop", "bogus"], "unknown capability: \"CAP_BOGUS\""),
        (&["--device", "/nonexistent"], "error gathering device information while adding custom device \"/nonexistent\": no such file or directory"),
        (&["--device", "/etc/passwd"], "not a device node"),
        (&["--device", "/dev/null:/dev/x:q"], "bad mode specified: q"),
        (&["--device", "/dev/null:relative"], "relative is not an absolute path"),
        (&["--device-cgroup-rule", "c 1:3"], "invalid argument \"c 1:3\" for \"--device-cgroup-rule\" flag: invalid device cgroup format 'c 1:3'"),
        (&["--ulimit", "nofile=x"], "invalid argument \"nofile=x\" for \"--ulimit\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"),
        (&["--ulimit", "nope=1"], "invalid ulimit type: nope"),
        (&["--ulimit", "nofile=10:5"], "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
        (&["--shm-size", "lots"], "invalid argument \"lots\" for \"--shm-size\" flag: invalid size: 'lots'"),
        (&["--sysctl", "kernel.foo=1"], "invalid argument \"kernel.foo=1\" for \"--sysctl\" flag: sysctl 'kernel.foo=1' is not whitelisted"),
        (&["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "is not allowed in the hosts network namespace"),
        (&["--pid", "bogus"], "--pid: invalid PID mode"),
        (&["--uts", "container:x"], "--uts: invalid UTS mode"),
        (&["--cgroupns", "bogus"], "--cgroupns: invalid CGROUP mode"),
        (&["--ipc", "bogus"], "invalid IPC mode: bogus"),
        (&["--uts", "host", "-h", "name"], "Conflicting options: hostname and the UTS mode"),
        (&["--cpus", "1", "--cpu-quota", "50000"], "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
        (&["--cpu-period", "10"], "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
        (&["--cpu-quota", "10"], "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
        (&["--cpuset-cpus", "999"], "Requested CPUs are not available - requested 999"),
        (&["--cpuset-cpus", "x-y"], "Invalid value x-y for cpuset cpus"),
        (&["-m", "64m", "--memory-swap", "32m"], "Minimum memoryswap limit should be larger than memory limit, see usage"),
        (&["--memory-swap", "128m"], "You should always set the Memory limit when using Memoryswap limit, see usage"),
        (&["-m", "64m", "--memory-reservation", "128m"], "Minimum memory limit can not be less than memory reservation limit, see usage"),
        (&["--memory-reservation", "lots"], "invalid size: 'lots'"),
        (&["--oom-score-adj", "1001"], "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
        (&["--expose", "1:2"], "invalid port format for --expose: 1:2"),
        (&["--expose", "x"], "invalid range format for --expose: x"),
        (&["--link", "nosuch:alias"], "could not get container for nosuch"),
        (&["-a", "stdnope"], "valid streams are STDIN, STDOUT and STDERR"),
        (&["-d", "-a", "stdout"], "Conflicting options: -a and -d"),
        (&["--detach-keys", "ctrl-"], "Invalid detach keys (ctrl-) provided"),
        (&["--label", "=x"], "invalid label '=x': empty name"),
    ];
    for (flags, msg) in cases {
        for cmd in ["run", "create"] {
            if cmd == "create" && flags.contains(&"-d") {
                continue;
            }
            let mut a = vec![cmd];
            if !flags.contains(&"--network") {
                a.push(NONE);
            }
            a.extend_from_slice(flags);
            a.extend(["busybox", "true"]);
            let e = r.bad(&a);
            assert!(e.contains(msg), "{a:?}: {e}");
        }
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "", "nothing was created");
    let left: Vec<_> = std::fs::read_dir(r.root.join("containers"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| n.len() != 64), "{left:?}");
}

/// A host directory under /tmp for `cp` tests, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("rbt-q-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cp` both ways (Docker 20.10's layout rules, owners root's in the container and ours on
/// the host unless `-a`, symlinks kept, `-` archives), into a stopped container too, and a
/// symlink the container made never redirects a write to the host.
#[test]
fn cp_both_ways() {
    use std::os::unix::fs::MetadataExt;
    let r = Rbox::with_busybox("parity-cp");
    let h = Scratch::new("cp");
    std::fs::create_dir_all(h.path("src/sub")).unwrap();
    std::fs::write(h.path("src/a.txt"), "hello\n").unwrap();
    std::os::unix::fs::symlink("a.txt", h.path("src/link")).unwrap();
    std::os::unix::fs::chown(h.path("src/a.txt"), Some(1234), Some(5678)).unwrap();
    r.ok(&[
        "run", "-d", "--name", "box", NONE, "busybox", "sleep", "1000",
    ]);
    let ls = |p: &str| r.ok(&["exec", "box", "ls", "-lnd", p]);
    // A directory becomes the destination when that does not exist; owners root's.
    r.ok(&["cp", &h.path("src"), "box:/data"]);
    assert!(
        ls("/data/a.txt").contains(" 0        0 "),
        "{}",
        ls("/data/a.txt")
    );
    assert!(ls("/data/link").contains("link -> a.txt"));
    assert!(ls("/data/sub").starts_with("d"));
    // Into an existing directory it lands inside; -a keeps the owners.
    r.ok(&["cp", "-a", &h.path("src/a.txt"), "box:/tmp"]);
    assert!(
        ls("/tmp/a.txt").contains(" 1234     5678 "),
        "{}",
        ls("/tmp/a.txt")
    );
    r.ok(&["cp", &h.path("src/."), "box:/tmp"]);
    assert!(ls("/tmp/link").contains("link -> a.txt"));
    // Out of the container: into a directory, or as a new name; owners ours.
    r.ok(&["cp", "box:/data/a.txt", &h.path("")]);
    assert_eq!(std::fs::read_to_string(h.path("a.txt")).unwrap(), "hello\n");
    assert_eq!(std::fs::metadata(h.path("a.txt")).unwrap().uid(), 0);
    r.ok(&["cp", "box:/data", &h.path("back")]);
    assert_eq!(
        std::fs::read_link(h.path("back/link")).unwrap().to_str(),
        Some("a.txt")
    );
    // `-`: a tar archive on stdout, and from stdin into a directory.
    let tar = r.command(&["cp", "box:/data", "-"]).output().unwrap();
    assert!(tar.status.success());
    let mut names: Vec<String> = tar::Archive::new(&tar.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["data", "data/a.txt", "data/link", "data/sub"]);
    let mut child = r
        .command(&["cp", "-", "box:/opt"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It refuses before it reads the archive: the write may find the pipe closed.
    let _ = std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout);
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "/opt does not exist in busybox");
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be a directory"));
    let mut child = r
        .command(&["cp", "-", "box:/tmp"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The archive's last zero block comes late, as from a slow writer: the copy still reads
    // it (was: the extractor had stopped at the first one, and the late write failed, EPIPE).
    let (body, end) = tar.stdout.split_at(tar.stdout.len() - 512);
    assert!(end.iter().all(|b| *b == 0));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), end).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ls("/tmp/data/a.txt").contains("a.txt"));
    // A big file streams both ways: the copy's memory does not grow with it.
    let big = vec![7u8; 64 << 20];
    std::fs::write(h.path("big"), &big).unwrap();
    let peak_kib = |args: &[&str]| {
        let cmd = r.command(args);
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        err.lines().last().unwrap().trim().parse::<u64>().unwrap()
    };
    let into = peak_kib(&["cp", &h.path("big"), "box:/tmp/big"]);
    let back = peak_kib(&["cp", "box:/tmp/big", &h.path("big.back")]);
    assert!(std::fs::read(h.path("big.back")).unwrap() == big);
    assert!(
        into < 32 << 10 && back < 32 << 10,
        "peak RSS {into} / {back} KiB for 64 MiB"
    );
    // A symlink the container made points inside it, whatever it says.
    r.ok(&["exec", "box", "ln", "-s", "/etc", "/escape"]);
    let marker = format!("rbt-q-cp-marker-{}", std::process::id());
    std::fs::write(h.path(&marker), "x").unwrap();
    r.ok(&["cp", &h.path(&marker), "box:/escape/"]);
    assert!(r.ok(&["exec", "box", "ls", "/etc"]).contains(&marker));
    assert!(
        !std::path::Path::new("/etc").join(&marker).exists(),
        "wrote to the host's /etc"
    );
    // A stopped container: its files, and nothing left mounted.
    r.ok(&["stop", "-t", "0", "box"]);
    r.ok(&["cp", "box:/tmp/a.txt", &h.path("stopped.txt")]);
    assert_eq!(
        std::fs::read_to_string(h.path("stopped.txt")).unwrap(),
        "hello\n"
    );
    r.ok(&["cp", &h.path("src/a.txt"), "box:/offline.txt"]);
    r.ok(&["start", "box"]);
    assert!(ls("/offline.txt").contains(" 0        0 "));
    // One overlay for the running container: the cp's own mount of it is gone.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs = mounts
        .lines()
        .filter(|l| l.contains(r.root.to_str().unwrap()) && l.contains("/rootfs "))
        .count();
    assert_eq!(rootfs, 1, "{mounts}");
    // Docker 20.10's errors.
    let cases = [
        case(
            Box::leak(Box::new(["cp", "box:/nope", "/tmp/x"])),
            1,
            Some(""),
            "No such container:path: box:/nope",
        ),
        case(
            &["cp", "/etc/hostname", "/tmp/x"],
            1,
            Some(""),
            "must specify at least one container source",
        ),
        case(
            &["cp", "box:/a", "box:/b"],
            1,
            Some(""),
            "copying between containers is not supported",
        ),
        case(
            &["cp", "nosuch:/a", "/tmp"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["cp", "/nonexistent-rbt-q", "box:/tmp"],
            1,
            Some(""),
            "stat /nonexistent-rbt-q: no such file or directory",
        ),
        case(
            &["cp", "box:/etc", "/etc/hostname"],
            1,
            Some(""),
            "cannot copy directory",
        ),
        case(
            &["cp", "/etc/hostname", "box:/nodir/x"],
            1,
            Some(""),
            "Could not find the file /nodir/x in container box",
        ),
    ];
    check(&r, &cases, "");
}

/// `exec -d`, `pause`/`unpause` (the freezer), `diff`, `export` and `system df`.
#[test]
fn exec_detached_pause_diff_export_df() {
    let r = Rbox::with_busybox("parity-cmds");
    let id = r.ok(&[
        "run",
        "-d",
        "--name",
        "pz",
        NONE,
        "busybox",
        "sh",
        "-c",
        "while true; do date +%s%N > /tmp/tick; usleep 100000; done",
    ]);
    let id = id.trim();
    assert_eq!(
        r.ok(&["exec", "-d", "pz", "sh", "-c", "echo detached > /tmp/d"]),
        ""
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(r.ok(&["exec", "pz", "cat", "/tmp/d"]), "detached\n");
    assert_eq!(r.ok(&["pause", "pz"]), "pz\n");
    let freezer = [
        format!("/sys/fs/cgroup/freezer/rbox/{id}/freezer.state"),
        format!("/sys/fs/cgroup/rbox/{id}/cgroup.freeze"),
        format!("/sys/fs/cgroup/unified/rbox/{id}/cgroup.freeze"),
    ];
    let state = freezer
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .unwrap();
    assert!(state.trim() == "FROZEN" || state.trim() == "1", "{state}");
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pz"]),
        "paused true\n"
    );
    assert!(r
        .ok(&["ps", "--format", "{{.Status}}"])
        .trim()
        .ends_with("(Paused)"));
    assert_eq!(
        r.ok(&["ps", "-q", "--filter", "status=paused"]).trim(),
        &id[..12]
    );
    let cases = [
        case(&["pause", "pz"], 1, Some(""), "is already paused"),
        case(
            &["exec", "pz", "true"],
            1,
            Some(""),
            "is paused, unpause the container before exec",
        ),
        case(
            &["unpause", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
    ];
    check(&r, &cases, "");
    // Frozen: the loop writes nothing.
    let before = r.run(&["cp", "pz:/tmp/tick", "-"]).stdout;
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(r.run(&["cp", "pz:/tmp/tick", "-"]).stdout, before);
    assert_eq!(r.ok(&["unpause", "pz"]), "pz\n");
    r.fails(1, &["unpause", "pz"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "pz"]),
        "running\n"
    );
    // A paused container still stops.
    r.ok(&["pause", "pz"]);
    r.ok(&["stop", "-t", "1", "pz"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "pz"]),
        "exited\n"
    );

    r.ok(&[
        "run",
        "--name",
        "ch",
        NONE,
        "busybox",
        "sh",
        "-c",
        "echo a > /etc/new; rm /bin/ls; mkdir -p /x/y; touch /x/y/z",
    ]);
    // Docker 20.10: the changes against the image, sorted, rbox's own files not among them.
    assert_eq!(
        r.ok(&["diff", "ch"]),
        "C /bin\nD /bin/ls\nC /etc\nA /etc/new\nA /x\nA /x/y\nA /x/y/z\n"
    );
    r.fails(1, &["diff", "nosuch"]);
    let tar = r.command(&["export", "ch"]).output().unwrap();
    assert!(tar.status.success());
    let names: Vec<String> = tar::Archive::new(&tar.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "etc/new") && !names.iter().any(|n| n == "bin/ls"),
        "{names:?}"
    );
    let h = Scratch::new("export");
    r.ok(&["export", "-o", &h.path("ch.tar"), "ch"]);
    assert_eq!(
        std::fs::read(h.path("ch.tar")).unwrap().len(),
        tar.stdout.len()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(r.root.to_str().unwrap()),
        "export left a mount"
    );

    let df = r.ok(&["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(
        lines[0], "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE",
        "{df}"
    );
    assert!(
        lines[1].starts_with("Images          1         1         "),
        "{df}"
    );
    assert!(
        lines[2].starts_with("Containers      2         0         "),
        "{df}"
    );
    assert!(
        lines[3].starts_with("Local Volumes   0         0         0B        0B"),
        "{df}"
    );
    assert_eq!(lines[4], "Build Cache     0         0         0B        0B");
    assert_eq!(
        r.ok(&["system", "df", "--format", "{{.Type}}:{{.TotalCount}}"]),
        "Images:1\nContainers:2\nLocal Volumes:0\nBuild Cache:0\n"
    );
}

/// `update` changes a running container's cgroup at once and its record; `stats` reads the
/// cgroup as Docker does (Docker 20.10's table and fields).
#[test]
fn update_and_stats() {
    let r = Rbox::with_busybox("parity-update");
    let id = r.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        NONE,
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    let id = id.trim();
    assert_eq!(
        r.ok(&[
            "update",
            "--memory",
            "128m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "busy"
        ]),
        "busy\n"
    );
    let cg = |c: &str, f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/rbox/{id}/{f}"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        assert_eq!(cg("memory", "memory.limit_in_bytes"), "134217728");
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg("pids", "pids.max"), "50");
    }
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}", "busy"]),
        "134217728 268435456 500000000 50\n"
    );
    r.ok(&["update", "--restart", "on-failure:3", "busy"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.RestartPolicy}}", "busy"]),
        "{on-failure 3}\n"
    );
    let e = r.fails(1, &["update", "--memory", "1k", "busy"]);
    assert!(e.contains("Minimum memory limit allowed is 6MB"), "{e}");
    r.fails(1, &["update", "--memory", "64m", "nosuch"]);
    // stats: the table, and the fields as Docker's stats context has them.
    let t = r.ok(&["stats", "--no-stream"]);
    let mut lines = t.lines();
    assert_eq!(
        lines.next().unwrap(),
        "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!("{}   busy      ", &id[..12])),
        "{t}"
    );
    let f = r.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "busy",
    ]);
    let parts: Vec<&str> = f.trim().split('|').collect();
    assert_eq!(parts[0], "busy");
    let cpu: f64 = parts[1].trim_end_matches('%').parse().unwrap();
    assert!(
        cpu > 1.0 && cpu <= 60.0,
        "a busy loop held to half a CPU: {cpu}"
    );
    assert!(parts[2].ends_with(" / 128MiB"), "{}", parts[2]);
    assert_eq!(parts[3], "1");
    let j = r.ok(&["stats", "--no-stream", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "BlockIO",
            "CPUPerc",
            "Container",
            "ID",
            "MemPerc",
            "MemUsage",
            "Name",
            "NetIO",
            "PIDs"
        ]
    );
}

/// `commit` (-m, -a, --change) then `run` of the new image; `history` of it (Docker 20.10's
/// table); the parent's files, the container's changes and its deletions all in it.
#[test]
fn commit_then_run_and_history() {
    let r = Rbox::with_busybox("parity-commit");
    r.ok(&[
        "run",
        "--name",
        "cm",
        NONE,
        "-e",
        "FOO=bar",
        "busybox",
        "sh",
        "-c",
        "echo committed > /etc/new; rm /bin/ls; mkdir /d; echo x > /d/f",
    ]);
    let id = r.ok(&[
        "commit",
        "-m",
        "my change",
        "-a",
        "me <me@example.com>",
        "-c",
        r#"CMD ["cat", "/etc/new"]"#,
        "-c",
        "LABEL made=here",
        "cm",
        "mine:v1",
    ]);
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    assert_eq!(r.ok(&["run", "--rm", NONE, "mine:v1"]), "committed\n");
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            NONE,
            "mine:v1",
            "sh",
            "-c",
            "test -e /bin/ls || echo gone; echo $FOO; cat /d/f; ls /bin/sh"
        ]),
        "gone\nbar\nx\n/bin/sh\n"
    );
    assert_eq!(
        r.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Author}}|{{.Comment}}|{{.Config.Cmd}}|{{.Config.Labels}}|{{len .RootFS.Layers}}",
            "mine:v1"
        ]),
        "me <me@example.com>|my change|[cat /etc/new]|map[made:here]|2\n"
    );
    let h = r.ok(&["history", "mine:v1"]);
    let lines: Vec<&str> = h.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE          CREATED   ")
            && lines[0].contains("CREATED BY")
            && lines[0].ends_with("COMMENT"),
        "{h}"
    );
    assert!(lines[1].starts_with(&id.trim()[7..19]), "{h}");
    assert!(
        lines[1].contains("sh -c echo committed > /etc/new; rm /bin/ls;…")
            && lines[1].ends_with("my change"),
        "{h}"
    );
    let bb = r.ok(&["images", "-q", "busybox"]);
    assert!(lines[2].starts_with(bb.trim()), "the parent's own id: {h}");
    assert_eq!(r.ok(&["history", "-q", "mine:v1"]).lines().count(), 2);
    r.ok(&["commit", "cm"]);
    let cases = [
        case(
            &["commit", "nosuch"],
            1,
            Some(""),
            "No such container: nosuch",
        ),
        case(
            &["commit", "-c", "RUN x", "cm"],
            1,
            Some(""),
            "RUN is not a valid change command",
        ),
        case(&["history", "nosuch"], 1, Some(""), "No such image: nosuch"),
    ];
    check(&r, &cases, "");
}

/// `events`: the root's own state changes, printed as Docker prints events (20.10), with
/// `--since`/`--until`, `--filter` and `--format`, and followed as they happen.
#[test]
fn events_of_the_root() {
    let r = Rbox::with_busybox("parity-events");
    r.fails(
        3,
        &[
            "run", "--name", "ev", "-l", "tier=web", NONE, "busybox", "sh", "-c", "exit 3",
        ],
    );
    r.fails(3, &["start", "-a", "ev"]);
    r.ok(&["rename", "ev", "ev2"]);
    r.ok(&["rm", "ev2"]);
    r.ok(&["volume", "create", "vv"]);
    let all = r.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(all, "create\nstart\ndie\nstart\ndie\nrename\ndestroy\n");
    let line = r.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]);
    let first = line.lines().next().unwrap();
    // 2006-01-02T15:04:05.000000000Z container die ID (exitCode=3, image=busybox, name=ev, tier=web)
    let (time, rest) = first.split_once(' ').unwrap();
    assert_eq!(time.len(), 30, "{first}");
    assert!(
        rest.starts_with("container die ")
            && rest.ends_with(" (exitCode=3, image=busybox, name=ev, tier=web)"),
        "{first}"
    );
    let j = r.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "type=volume",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    assert_eq!(
        (
            v["Type"].as_str(),
            v["Action"].as_str(),
            v["Actor"]["ID"].as_str()
        ),
        (Some("volume"), Some("create"), Some("vv"))
    );
    assert_eq!(
        r.ok(&[
            "events",
            "--since",
            "1h",
            "--until",
            "0s",
            "--filter",
            "container=nosuch"
        ]),
        ""
    );
    assert_eq!(
        r.ok(&["events", "--until", "0s"]),
        "",
        "without --since only new events"
    );
    r.fails(1, &["events", "--filter", "nope=1"]);
    // Followed: a run while `events` waits is printed as it happens (until a Unix time 5 s
    // ahead: a duration would be 5 s ago, as for Docker).
    let until = (std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let child = r
        .command(&[
            "events",
            "--filter",
            "type=container",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
            "--until",
            &until,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    r.ok(&["run", "--rm", "--name", "later", NONE, "busybox", "true"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "create later\nstart later\ndie later\ndestroy later\n"
    );
}
