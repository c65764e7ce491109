//! Mounts against the real binary and kernel: `-v` and `--mount` binds (read-write, read-only,
//! a missing host directory), `--tmpfs` and tmpfs `--mount`s with Docker's options, a symlink
//! in the image that tries to point a mount outside the rootfs, bad specs, `inspect`'s
//! `Mounts`, and that no mount or host path is left behind.

use std::path::{Path, PathBuf};

use rbox_tests::{image_tar, sh, unmount_under, Rbox, RboxCli};

const NONE: &str = "--network=none";

/// A per-test host directory under /tmp, removed (after unmounting anything below it) on drop.
struct HostDir(PathBuf);

impl HostDir {
    fn new(test: &str) -> HostDir {
        let p = PathBuf::from(format!("/tmp/rbox-vol-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        HostDir(p)
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// No mount of the root or of the host directory is left, and no container remains.
#[track_caller]
fn assert_clean(r: &Rbox, h: &HostDir) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for p in [&r.root, &h.0] {
        let p = p.to_string_lossy();
        assert!(!mounts.contains(&*p), "mounts left under {p}:\n{mounts}");
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

fn run(r: &Rbox, args: &[&str]) -> rbox_tests::Run {
    let mut a = vec!["run", "--rm", NONE];
    a.extend_from_slice(args);
    r.run(&a)
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    let r = Rbox::with_busybox("vol-bind");
    let h = HostDir::new("bind");
    let (rw, ro, m) = (h.path("rw"), h.path("ro"), h.path("m"));
    for d in [&rw, &ro, &m] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(h.path("ro/host.txt"), "from host\n").unwrap();
    // Written inside, read on the host; the host's file is seen inside.
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "-v",
        &format!("{rw}:/data"),
        "-v",
        &format!("{ro}:/ro:ro"),
        "busybox",
        "sh",
        "-c",
        "echo written inside > /data/f && cat /ro/host.txt",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(h.path("rw/f")).unwrap(),
        "written inside\n"
    );
    // `:ro` and `--mount ...,readonly` refuse writes with EROFS.
    for (flag, value) in [
        ("-v", format!("{ro}:/ro:ro")),
        (
            "--mount",
            format!("type=bind,source={ro},target=/ro,readonly"),
        ),
    ] {
        let res = run(&r, &[flag, &value, "busybox", "sh", "-c", "echo x > /ro/f"]);
        assert_ne!(res.code, 0, "{flag}: write succeeded");
        assert!(
            res.stderr.contains("Read-only file system"),
            "{flag}: {}",
            res.stderr
        );
        assert!(!Path::new(&h.path("ro/f")).exists());
    }
    // `--mount` without readonly writes; a file can be bind-mounted too.
    std::fs::write(h.path("m/file"), "one\n").unwrap();
    r.ok(&[
        "run",
        "--rm",
        NONE,
        "--mount",
        &format!("type=bind,source={m},target=/m"),
        "--mount",
        &format!("type=bind,src={},dst=/etc/one", h.path("m/file")),
        "busybox",
        "sh",
        "-c",
        "test \"$(cat /etc/one)\" = one && echo two > /m/out",
    ]);
    assert_eq!(std::fs::read_to_string(h.path("m/out")).unwrap(), "two\n");
    // The same bind twice in a row (a stopped container started again) still works.
    let id = r
        .ok(&[
            "create",
            NONE,
            "-v",
            &format!("{rw}:/data"),
            "busybox",
            "sh",
            "-c",
            "echo again >> /data/again",
        ])
        .trim()
        .to_string();
    r.ok(&["start", "-a", &id]);
    r.ok(&["start", "-a", &id]);
    assert_eq!(
        std::fs::read_to_string(h.path("rw/again")).unwrap(),
        "again\nagain\n"
    );
    r.ok(&["rm", &id]);
    assert_clean(&r, &h);
}

#[test]
fn volume_flag_creates_a_missing_host_directory() {
    let r = Rbox::with_busybox("vol-mkdir");
    let h = HostDir::new("mkdir");
    let missing = h.path("a/b/c");
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "-v",
        &format!("{missing}:/x"),
        "busybox",
        "sh",
        "-c",
        "touch /x/made && ls /x",
    ]);
    assert_eq!(out, "made\n");
    assert!(Path::new(&missing).is_dir());
    assert!(Path::new(&h.path("a/b/c/made")).is_file());
    // --mount does not: Docker's error, and nothing is created.
    let gone = h.path("gone");
    let e = r.bad(&[
        "run",
        "--rm",
        NONE,
        "--mount",
        &format!("type=bind,source={gone},target=/x"),
        "busybox",
        "true",
    ]);
    assert_eq!(
        e.trim(),
        format!(
            "Error: invalid mount config for type \"bind\": bind source path does not exist: {gone}"
        )
    );
    assert!(!Path::new(&gone).exists());
    assert_clean(&r, &h);
}

/// The `/proc/mounts` line of `dir` inside a container run with `args`.
fn tmpfs_line(r: &Rbox, args: &[&str], dir: &str) -> String {
    let mut a: Vec<&str> = args.to_vec();
    let script = format!("grep ' {dir} ' /proc/mounts");
    a.extend(["busybox", "sh", "-c", &script]);
    let res = run(r, &a);
    assert_eq!(res.code, 0, "{args:?}: {}", res.stderr);
    res.stdout.trim().to_string()
}

fn options(line: &str) -> Vec<String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[0], f[2]), ("tmpfs", "tmpfs"), "not a tmpfs: {line}");
    f[3].split(',').map(str::to_string).collect()
}

#[test]
fn tmpfs_mounts_with_docker_defaults() {
    let r = Rbox::with_busybox("vol-tmpfs");
    let h = HostDir::new("tmpfs");
    for (args, dir) in [
        (vec!["--tmpfs", "/scratch"], "/scratch"),
        (vec!["--mount", "type=tmpfs,target=/t2"], "/t2"),
    ] {
        let o = options(&tmpfs_line(&r, &args, dir));
        for want in ["rw", "nosuid", "nodev", "noexec"] {
            assert!(
                o.iter().any(|x| x == want),
                "{args:?}: {want} missing: {o:?}"
            );
        }
    }
    // Size and mode as asked; `exec` lifts the default noexec.
    let o = options(&tmpfs_line(
        &r,
        &["--tmpfs", "/big:exec,size=64k,mode=1770"],
        "/big",
    ));
    assert!(o.contains(&"size=64k".to_string()), "{o:?}");
    assert!(o.contains(&"mode=1770".to_string()), "{o:?}");
    assert!(!o.contains(&"noexec".to_string()), "{o:?}");
    let o = options(&tmpfs_line(
        &r,
        &["--mount", "type=tmpfs,destination=/m,tmpfs-size=1m"],
        "/m",
    ));
    assert!(o.contains(&"size=1024k".to_string()), "{o:?}");
    // The size is enforced, and writes stay in the container (nothing on the host).
    let res = run(
        &r,
        &[
            "--tmpfs",
            "/small:size=64k",
            "busybox",
            "dd",
            "if=/dev/zero",
            "of=/small/f",
            "bs=1k",
            "count=200",
        ],
    );
    assert_ne!(res.code, 0);
    assert!(res.stderr.contains("No space left"), "{}", res.stderr);
    // The usual pairing: a read-only rootfs with a writable tmpfs.
    let res = run(
        &r,
        &[
            "--read-only",
            "--tmpfs",
            "/run",
            "busybox",
            "sh",
            "-c",
            "touch /run/ok && ! touch /nope 2>/dev/null",
        ],
    );
    assert_eq!(res.code, 0, "{}", res.stderr);
    // noexec really applies.
    let res = run(
        &r,
        &[
            "--tmpfs",
            "/ne",
            "busybox",
            "sh",
            "-c",
            "cp /bin/busybox /ne/bb && /ne/bb true",
        ],
    );
    assert_eq!(res.code, 126, "{}", res.stderr);
    assert_clean(&r, &h);
}

#[test]
fn symlink_in_image_cannot_redirect_a_mount_outside_the_rootfs() {
    let r = Rbox::new("vol-symlink");
    let h = HostDir::new("symlink");
    let outside = h.path("outside");
    // An image whose /abs and /rel point at a host directory (absolute, and climbing with ..).
    let links = h.path("links");
    std::fs::create_dir(&links).unwrap();
    std::os::unix::fs::symlink(&outside, format!("{links}/abs")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../..{outside}"),
        format!("{links}/rel"),
    )
    .unwrap();
    let tar = h.path("evil.tar");
    std::fs::copy(image_tar("busybox"), &tar).unwrap();
    let t = sh(&format!("tar --append -f {tar} -C {links} abs rel"));
    assert_eq!(t.code, 0, "{}", t.stderr);
    r.ok(&["import", "--change", r#"CMD ["sh"]"#, &tar, "evil:latest"]);
    let data = h.path("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(format!("{data}/marker"), "m\n").unwrap();
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "-v",
        &format!("{data}:/abs/sub"),
        "--mount",
        &format!("type=bind,source={data},target=/rel/sub2"),
        "--tmpfs",
        "/abs/t",
        "evil",
        "sh",
        "-c",
        "cat /abs/sub/marker /rel/sub2/marker && echo in > /abs/t/f && cat /abs/t/f",
    ]);
    assert_eq!(out, "m\nm\nin\n");
    // The mount points were made inside the rootfs; the host path was never created.
    assert!(
        !Path::new(&outside).exists(),
        "{outside} created on the host"
    );
    assert_clean(&r, &h);
}

#[test]
fn bad_specs_fail_with_one_line_and_leave_nothing() {
    let r = Rbox::with_busybox("vol-bad");
    let h = HostDir::new("bad");
    let src = h.path("src");
    let never = h.path("never");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-v".into(), ":/x".into()],
            "empty section between colons",
        ),
        (
            vec!["-v".into(), format!("{never}:")],
            "empty section between colons",
        ),
        (
            vec!["-v".into(), format!("{never}::ro")],
            "empty section between colons",
        ),
        (
            vec!["-v".into(), format!("{never}:/x:ro:z")],
            "invalid volume specification",
        ),
        (
            vec!["-v".into(), format!("{never}:relative")],
            "mount path must be absolute",
        ),
        (
            vec!["-v".into(), format!("{never}:/x:bogus")],
            "invalid mode: bogus",
        ),
        (
            vec!["-v".into(), "./rel:/x".into()],
            "includes invalid characters for a local volume name",
        ),
        (
            vec!["-v".into(), format!("{never}:/")],
            "destination can't be '/'",
        ),
        (
            vec![
                "-v".into(),
                format!("{never}:/x"),
                "--tmpfs".into(),
                "/x".into(),
            ],
            "Duplicate mount point: /x",
        ),
        (
            vec![
                "--mount".into(),
                format!("type=bind,source={src},target=/x,color=red"),
            ],
            "unexpected key 'color'",
        ),
        (
            vec!["--mount".into(), "type=bind,target=/x".into()],
            "field Source must not be empty",
        ),
        (
            vec!["--mount".into(), format!("type=bind,source={src}")],
            "field Target must not be empty",
        ),
        (
            vec!["--mount".into(), "type=nfs,target=/x".into()],
            "invalid value for type",
        ),
        (
            vec!["--tmpfs".into(), "relative".into()],
            "mount path must be absolute",
        ),
        (
            vec!["--tmpfs".into(), "/x:size=1m,frobnicate".into()],
            "invalid tmpfs option",
        ),
    ];
    std::fs::create_dir(&src).unwrap();
    for (flags, msg) in &cases {
        for cmd in ["run", "create"] {
            let mut a: Vec<&str> = vec![cmd, NONE];
            a.extend(flags.iter().map(String::as_str));
            a.extend(["busybox", "true"]);
            let e = r.bad(&a);
            assert!(e.contains(msg), "{a:?}: {e}");
        }
    }
    // A -v that would create a host directory creates none when another flag is bad.
    r.bad(&[
        "run",
        NONE,
        "-v",
        &format!("{never}:/a"),
        "--memory",
        "lots",
        "busybox",
        "true",
    ]);
    r.bad(&[
        "run",
        NONE,
        "-v",
        &format!("{never}:/a"),
        "--mount",
        &format!("type=bind,source={never}/x,target=/b"),
        "busybox",
        "true",
    ]);
    assert!(!Path::new(&never).exists(), "{never} was created");
    let left: Vec<String> = std::fs::read_dir(r.root.join("containers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 64)
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "container state left: {left:?}");
    assert_clean(&r, &h);
}

#[test]
fn inspect_shows_docker_mounts() {
    let r = Rbox::with_busybox("vol-inspect");
    let h = HostDir::new("inspect");
    let (a, b) = (h.path("a"), h.path("b"));
    std::fs::create_dir(&b).unwrap();
    let id = r
        .ok(&[
            "create",
            NONE,
            "-v",
            &format!("{a}:/a:ro"),
            "-v",
            &format!("{a}/../a//:/dup/"),
            "--mount",
            &format!("type=bind,source={b},target=/b,bind-propagation=rslave"),
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--tmpfs",
            "/run:size=64k",
            "busybox",
            "true",
        ])
        .trim()
        .to_string();
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["inspect", "--format", "{{json .}}", &id])).unwrap();
    let mounts = v["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 4, "{mounts:?}");
    let find = |dst: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dst)
            .unwrap_or_else(|| panic!("{dst} missing: {mounts:?}"))
    };
    assert_eq!(
        find("/a"),
        &serde_json::json!({"Type": "bind", "Source": a, "Destination": "/a", "Mode": "ro",
                            "RW": false, "Propagation": "rprivate"})
    );
    assert_eq!(find("/dup")["Source"], a.as_str());
    assert_eq!(find("/dup")["Mode"], "");
    assert_eq!(find("/dup")["RW"], true);
    assert_eq!(
        find("/b"),
        &serde_json::json!({"Type": "bind", "Source": b, "Destination": "/b", "Mode": "",
                            "RW": true, "Propagation": "rslave"})
    );
    assert_eq!(find("/t")["Type"], "tmpfs");
    assert_eq!(find("/t")["Source"], "");
    let hc = &v["HostConfig"];
    assert_eq!(
        hc["Binds"],
        serde_json::json!([format!("{a}:/a:ro"), format!("{a}/../a//:/dup/")])
    );
    assert_eq!(hc["Tmpfs"], serde_json::json!({"/run": "size=64k"}));
    assert_eq!(hc["Mounts"].as_array().unwrap().len(), 2);
    assert_eq!(hc["Mounts"][0]["Type"], "bind");
    assert_eq!(hc["Mounts"][0]["Source"], b.as_str());
    assert_eq!(hc["Mounts"][0]["Target"], "/b");
    // Templates reach into them, as with Docker.
    assert_eq!(
        r.ok(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}",
            &id
        ])
        .trim(),
        "/a=false /dup=true /b=true /t=true"
    );
    // The directory -v names was created at create; the container runs with all of it.
    assert!(Path::new(&a).is_dir());
    r.ok(&["start", "-a", &id]);
    r.ok(&["rm", &id]);
    // A container without mounts shows Docker's empty values.
    let id = r
        .ok(&["create", NONE, "busybox", "true"])
        .trim()
        .to_string();
    assert_eq!(
        r.ok(&[
            "inspect",
            "--format",
            "{{json .Mounts}} {{json .HostConfig.Binds}}",
            &id
        ])
        .trim(),
        "[] null"
    );
    r.ok(&["rm", &id]);
    assert_clean(&r, &h);
}

fn volume_names(r: &Rbox) -> Vec<String> {
    r.ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn named_volumes_persist_and_are_filled_from_the_image() {
    let r = Rbox::with_busybox("vol-named");
    let h = HostDir::new("named");
    assert_eq!(r.ok(&["volume", "create", "data"]), "data\n");
    r.ok(&[
        "run",
        "--rm",
        NONE,
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    // Another container sees it, through --mount too; the content lives under the root.
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "--mount",
        "type=volume,source=data,target=/v,readonly",
        "busybox",
        "sh",
        "-c",
        "cat /v/f && ! (echo x > /v/g) 2>/dev/null",
    ]);
    assert_eq!(out, "kept\n");
    let data = r.root.join("volumes/data/_data");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "kept\n");
    assert!(!data.join("g").exists(), "a readonly volume was written");
    // `-v NAME:` creates the volume on first use and fills it with the image's files there.
    r.ok(&["run", "--rm", NONE, "-v", "etc:/etc", "busybox", "true"]);
    let passwd = r.root.join("volumes/etc/_data/passwd");
    assert!(
        std::fs::read_to_string(&passwd)
            .unwrap()
            .starts_with("root:"),
        "{} not copied from the image",
        passwd.display()
    );
    // Not with nocopy; and /etc/hosts is still mounted over a volume on /etc.
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "-v",
        "bare:/etc:nocopy",
        "busybox",
        "ls",
        "/etc",
    ]);
    assert_eq!(out, "hostname\nhosts\nresolv.conf\n");
    let mut names = volume_names(&r);
    names.sort();
    assert_eq!(names, ["bare", "data", "etc"]);
    assert_clean(&r, &h);
}

#[test]
fn volume_commands_as_docker() {
    let r = Rbox::with_busybox("vol-cmds");
    let h = HostDir::new("cmds");
    r.ok(&["volume", "create", "--label", "team=a", "named"]);
    assert_eq!(
        r.ok(&["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     named\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["volume", "inspect", "named"])).unwrap();
    let v = &v[0];
    assert_eq!(v["Name"], "named");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"], serde_json::json!({"team": "a"}));
    assert_eq!(
        v["Mountpoint"],
        r.root
            .join("volumes/named/_data")
            .to_string_lossy()
            .as_ref()
    );
    assert_eq!(
        r.ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}}",
            "named"
        ]),
        "named local\n"
    );
    // A container with a named and two anonymous volumes.
    let id = r
        .ok(&[
            "create",
            NONE,
            "-v",
            "named:/n",
            "-v",
            "/anon",
            "--mount",
            "type=volume,target=/anon2",
            "busybox",
            "true",
        ])
        .trim()
        .to_string();
    let anon: Vec<String> = volume_names(&r)
        .into_iter()
        .filter(|n| n != "named")
        .collect();
    assert_eq!(anon.len(), 2, "{anon:?}");
    assert!(anon.iter().all(|n| n.len() == 64));
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["inspect", "--format", "{{json .Mounts}}", &id])).unwrap();
    let n = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/n")
        .unwrap();
    assert_eq!(n["Type"], "volume");
    assert_eq!(n["Name"], "named");
    assert_eq!(n["Driver"], "local");
    assert_eq!(n["RW"], true);
    // In use: refused, also with -f, and nothing is removed.
    let e = r.bad(&["volume", "rm", "named"]);
    assert_eq!(
        e.trim(),
        format!("Error: remove named: volume is in use - [{id}]")
    );
    r.bad(&["volume", "rm", "-f", &anon[0]]);
    let e = r.bad(&["volume", "rm", "nosuch"]);
    assert_eq!(e.trim(), "Error: get nosuch: no such volume");
    assert_eq!(volume_names(&r).len(), 3);
    // rm -v drops the anonymous volumes, not the named one.
    r.ok(&["rm", "-v", &id]);
    assert_eq!(volume_names(&r), ["named"]);
    // rm without -v keeps them; prune removes unused anonymous ones, -a the rest.
    let id = r
        .ok(&["create", NONE, "-v", "/keep", "busybox", "true"])
        .trim()
        .to_string();
    r.ok(&["rm", &id]);
    assert_eq!(volume_names(&r).len(), 2);
    // --rm removes its anonymous volumes with the container.
    r.ok(&["run", "--rm", NONE, "-v", "/gone", "busybox", "true"]);
    assert_eq!(volume_names(&r).len(), 2);
    let keep: Vec<String> = volume_names(&r)
        .into_iter()
        .filter(|n| n != "named")
        .collect();
    assert_eq!(
        r.ok(&["volume", "prune", "-f"]),
        format!(
            "Deleted Volumes:\n{}\n\nTotal reclaimed space: 0B\n",
            keep[0]
        )
    );
    std::fs::write(r.root.join("volumes/named/_data/f"), "12345").unwrap();
    assert_eq!(
        r.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(
        r.ok(&["volume", "prune", "-af"]),
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 5B\n"
    );
    assert!(volume_names(&r).is_empty());
    let left: Vec<_> = std::fs::read_dir(r.root.join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Bad volume names.
    r.bad(&["volume", "create", "bad/name"]);
    let e = r.bad(&[
        "run",
        NONE,
        "--mount",
        "type=volume,source=bad/name,target=/x",
        "busybox",
        "true",
    ]);
    assert!(e.contains("invalid volume name"), "{e}");
    assert!(volume_names(&r).is_empty());
    assert_clean(&r, &h);
}
