//! Logs against the real binary: rotation bounds (files and sizes never exceed the limits) for
//! json-file and local, plain and compressed; `logs --tail`/`--since`/`--until`/`-f` across
//! the rotated files; `--tail` of a large log in constant memory; a full disk reported, not
//! silently dropped; the root's config file; Docker's inspect keys; bad input.
//!
//! Name space of this file: roots only (`--network none` everywhere), no bridges or ports.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rbox_tests::{sh, wait_for, Rbox, RboxCli};

const NONE: &str = "--network=none";

fn dir_of(r: &Rbox, c: &str) -> PathBuf {
    let id = r.inspect(c, "{{.Id}}");
    r.root.join("containers").join(id)
}

/// The log files in `dir` (name, size), sorted.
fn log_files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.contains(".log")
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The numbers of the `line N` lines of some output.
fn numbers(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("line "))
        .map(|n| n.trim().parse().unwrap())
        .collect()
}

fn contiguous(nums: &[u64]) -> bool {
    nums.windows(2).all(|w| w[1] == w[0] + 1)
}

#[test]
fn rotation_stays_within_its_limits_and_tail_reads_across_files() {
    let r = Rbox::with_busybox("logrotate");
    for (name, driver, opts, gz) in [
        (
            "json",
            "json-file",
            vec!["max-size=50k", "max-file=3"],
            false,
        ),
        (
            "jsongz",
            "json-file",
            vec!["max-size=50k", "max-file=3", "compress=true"],
            true,
        ),
        (
            "local",
            "local",
            vec!["max-size=30k", "max-file=3", "compress=false"],
            false,
        ),
        ("localgz", "local", vec!["max-size=30k", "max-file=3"], true),
    ] {
        let mut args = vec!["run", "--name", name, NONE, "--log-driver", driver];
        for o in &opts {
            args.extend(["--log-opt", o]);
        }
        args.extend([
            "busybox",
            "sh",
            "-c",
            "i=1; while [ $i -le 8000 ]; do echo line $i; i=$((i+1)); done",
        ]);
        let cmd = r.command(&args).stdout(Stdio::null()).status().unwrap();
        assert!(cmd.success());
        let dir = if driver == "local" {
            dir_of(&r, name).join("local-logs")
        } else {
            dir_of(&r, name)
        };
        let files = log_files(&dir);
        let limit = if driver == "local" { 30_000 } else { 50_000 };
        assert_eq!(files.len(), 3, "{name}: {files:?}");
        for (f, size) in &files {
            assert!(*size <= limit, "{name}: {f} has {size} bytes");
            assert_eq!(
                f.ends_with(".gz"),
                gz && !f.ends_with(".log"),
                "{name}: {files:?}"
            );
        }
        let tail = r.ok(&["logs", "--tail", "5", name]);
        assert_eq!(numbers(&tail), [7996, 7997, 7998, 7999, 8000], "{name}");
        // More lines than the current file holds: the tail reaches into the rotated ones.
        let current = files.iter().find(|(f, _)| f.ends_with(".log")).unwrap().1;
        let per_line = if driver == "local" { 30 } else { 75 };
        let n = (current / per_line + 200) as usize;
        let tail = numbers(&r.ok(&["logs", "--tail", &n.to_string(), name]));
        assert_eq!(tail.len(), n, "{name}");
        assert!(contiguous(&tail) && tail.last() == Some(&8000), "{name}");
        let all = numbers(&r.ok(&["logs", name]));
        assert!(contiguous(&all) && all.last() == Some(&8000), "{name}");
        assert!(
            all.len() > n && all.len() < 8000,
            "{name}: {} kept",
            all.len()
        );
    }
}

/// The time `logs -t` shows for the first line of `out` that ends with `what`.
fn time_of(out: &str, what: &str) -> String {
    out.lines()
        .find(|l| l.ends_with(what))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn since_and_until_select_across_rotated_files() {
    let r = Rbox::with_busybox("logsince");
    let script = "i=1; while [ $i -le 1500 ]; do echo A $i; i=$((i+1)); done; sleep 1.2; \
                  i=1; while [ $i -le 1500 ]; do echo B $i; i=$((i+1)); done";
    let status = r
        .command(&[
            "run",
            "--name",
            "ss",
            NONE,
            "--log-opt",
            "max-size=20k",
            "--log-opt",
            "max-file=9",
            "--log-opt",
            "compress=true",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let with_times = r.ok(&["logs", "-t", "ss"]);
    let first_b = time_of(&with_times, " B 1");
    let last_a = with_times
        .lines()
        .rfind(|l| l.contains(" A "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(last_a < first_b);
    let since = r.ok(&["logs", "--since", &first_b, "ss"]);
    assert_eq!(since.lines().count(), 1500);
    assert!(since.lines().all(|l| l.starts_with("B ")));
    let until = r.ok(&["logs", "--until", &last_a, "ss"]);
    assert!(until.lines().all(|l| l.starts_with("A ")));
    assert!(until.ends_with("A 1500\n"));
    // tail first, then since (Docker's order).
    let both = r.ok(&["logs", "--tail", "3", "--since", &first_b, "ss"]);
    assert_eq!(both, "B 1498\nB 1499\nB 1500\n");
    r.fails(1, &["logs", "--since", "yesterday", "ss"]);
}

#[test]
fn follow_reads_every_line_while_the_log_rotates() {
    let r = Rbox::with_busybox("logfollow");
    let ctl = tempfile_dir("follow");
    let vol = format!("{}:/ctl", ctl.display());
    // Waits for the go file, so that the follower sees every line from the first; then 15
    // batches of 200 lines (~15 KB, more than a file holds), so the log rotates once or twice
    // per batch, as fast as a follower must keep up with (it may lag two files behind).
    let script = "until [ -e /ctl/go ]; do sleep 0.05; done; i=1; \
                  while [ $i -le 3000 ]; do echo line $i; \
                  if [ $((i % 200)) = 0 ]; then sleep 0.2; fi; i=$((i+1)); done";
    r.ok(&[
        "run",
        "-d",
        "--name",
        "ff",
        NONE,
        "-v",
        &vol,
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let follower = r
        .command(&["logs", "-f", "ff"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(ctl.join("go"), "").unwrap();
    let out = follower.wait_with_output().unwrap();
    let got = numbers(&String::from_utf8_lossy(&out.stdout));
    let missing = (1..=3000).filter(|n| !got.contains(n)).count();
    let gaps: Vec<_> = got.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(
        got.len() == 3000 && contiguous(&got) && missing == 0,
        "{} lines, {missing} missing, first {:?}, last {:?}, gaps {gaps:?}",
        got.len(),
        got.first(),
        got.last()
    );
    let _ = std::fs::remove_dir_all(&ctl);
}

fn tempfile_dir(what: &str) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/rbt-g-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Peak RSS in kB of a command, from wait4's rusage (which also reaps it).
#[allow(clippy::zombie_processes)]
fn max_rss_kb(mut cmd: std::process::Command) -> (i64, String) {
    let child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as i32;
    let out = child.stdout.unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { out }, &mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage filled by wait4 for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child we just spawned.
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    (ru.ru_maxrss, reader.join().unwrap())
}

#[test]
fn tail_of_a_large_log_reads_from_the_end_in_constant_memory() {
    let r = Rbox::with_busybox("logbig");
    // ~300 MB of json-file records: 280,000 lines of 1,000 characters.
    let script = "awk 'BEGIN { s = sprintf(\"%1000s\", \"\"); gsub(/ /, \"x\", s); \
                  for (i = 1; i <= 280000; i++) print i, s }'";
    let status = r
        .command(&[
            "run",
            "--name",
            "big",
            NONE,
            "--log-opt",
            "max-size=1g",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let files = log_files(&dir_of(&r, "big"));
    assert_eq!(files.len(), 1);
    assert!(files[0].1 > 280_000_000, "{files:?}");
    r.ok(&["run", "--name", "tiny", NONE, "busybox", "echo", "hi"]);
    let (small, _) = max_rss_kb(r.command(&["logs", "--tail", "5", "tiny"]));
    let (rss, out) = max_rss_kb(r.command(&["logs", "--tail", "5", "big"]));
    let firsts: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(firsts, ["279996", "279997", "279998", "279999", "280000"]);
    // What `rbox logs` of a missing container needs, plus a few blocks: never the file.
    assert!(
        rss < small + 8 * 1024,
        "logs --tail 5 of a 300 MB log: {rss} kB (baseline {small} kB)"
    );
}

#[test]
fn a_full_disk_is_reported_not_silently_dropped() {
    let r = Rbox::new("logfull");
    let root = r.root.to_string_lossy().to_string();
    assert!(sh(&format!("mount -t tmpfs -o size=40m rbt-g-full {root}")).code == 0);
    r.ok(&[
        "import",
        "--change",
        r#"CMD ["sh"]"#,
        rbox_tests::image_tar("busybox").to_str().unwrap(),
        "busybox:latest",
    ]);
    // Room the test gives back later, so the monitor can write again.
    assert!(
        sh(&format!(
            "dd if=/dev/zero of={root}/filler bs=1M count=6 2>/dev/null"
        ))
        .code
            == 0
    );
    let ctl = tempfile_dir("full");
    let vol = format!("{}:/ctl", ctl.display());
    // 60 MB of output for the ~30 MB left.
    let script =
        "awk 'BEGIN { s = sprintf(\"%1000s\", \"\"); for (i = 0; i < 60000; i++) print s }'; \
                  touch /ctl/written; until [ -e /ctl/go ]; do sleep 0.05; done; echo done";
    r.ok(&[
        "run",
        "-d",
        "--name",
        "spew",
        NONE,
        "-v",
        &vol,
        "--log-opt",
        "max-size=1g",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    wait_for("the output to be written", 60, || {
        ctl.join("written").exists()
    });
    // The last of it still in the pipe (64 KiB at most) reaches the monitor.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let report = r.run(&["logs", "--tail", "1", "spew"]);
    assert_eq!(report.code, 0);
    assert!(
        report.stderr.contains("No space left on device"),
        "{}",
        report.stderr
    );
    assert!(
        report.stderr.contains("bytes of output lost since"),
        "{}",
        report.stderr
    );
    std::fs::remove_file(r.root.join("filler")).unwrap();
    std::fs::write(ctl.join("go"), "").unwrap();
    assert_eq!(r.ok(&["wait", "spew"]).trim(), "0");
    let all = r.run(&["logs", "--tail", "2", "spew"]);
    assert!(
        all.stderr.contains("bytes of output were lost from"),
        "{}",
        all.stderr
    );
    assert!(all.stdout.ends_with("done\n"), "{}", all.stdout);
    let _ = std::fs::remove_dir_all(&ctl);
}

#[test]
fn docker_keys_and_the_roots_defaults() {
    let r = Rbox::with_busybox("logkeys");
    r.ok(&["create", "--name", "dd", NONE, "busybox", "true"]);
    assert_eq!(
        r.inspect("dd", "{{json .HostConfig.LogConfig}}"),
        r#"{"Type":"json-file","Config":{"max-file":"3","max-size":"10m"}}"#
    );
    let id = r.inspect("dd", "{{.Id}}");
    assert!(r
        .inspect("dd", "{{.LogPath}}")
        .ends_with(&format!("{id}/{id}-json.log")));
    r.ok(&[
        "create",
        "--name",
        "ll",
        NONE,
        "--log-driver",
        "local",
        "busybox",
        "true",
    ]);
    assert_eq!(
        r.inspect("ll", "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}"),
        "local|"
    );
    r.ok(&[
        "run",
        "--name",
        "nn",
        NONE,
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "hi",
    ]);
    let e = r.run(&["logs", "nn"]);
    assert_ne!(e.code, 0);
    let e = e.stderr;
    assert!(
        e.contains("configured logging driver does not support reading"),
        "{e}"
    );
    std::fs::write(
        r.root.join("config.json"),
        r#"{"log-driver": "local", "log-opts": {"max-size": "1m", "max-file": "2", "compress": "false"}}"#,
    )
    .unwrap();
    r.ok(&[
        "run",
        "--name",
        "rooted",
        NONE,
        "--log-opt",
        "max-file=4",
        "busybox",
        "echo",
        "from the root",
    ]);
    assert_eq!(
        r.inspect("rooted", "{{json .HostConfig.LogConfig}}"),
        r#"{"Type":"local","Config":{"compress":"false","max-file":"4","max-size":"1m"}}"#
    );
    assert_eq!(r.ok(&["logs", "rooted"]), "from the root\n");
    r.ok(&[
        "create",
        "--name",
        "own",
        NONE,
        "--log-driver",
        "json-file",
        "busybox",
        "true",
    ]);
    assert_eq!(
        r.inspect("own", "{{json .HostConfig.LogConfig}}"),
        r#"{"Type":"json-file","Config":{}}"#
    );
}

#[test]
fn bad_log_settings_make_nothing() {
    let r = Rbox::with_busybox("logbad");
    for (args, says) in [
        (&["--log-opt", "max-size=10x"][..], "invalid size: '10x'"),
        (&["--log-opt", "max-size=-1"][..], "invalid size"),
        (
            &["--log-driver", "syslog"][..],
            "no log driver named 'syslog'",
        ),
        (
            &["--log-opt", "color=blue"][..],
            "unknown log opt 'color' for json-file log driver",
        ),
        (
            &["--log-driver", "local", "--log-opt", "rotate=1"][..],
            "unknown log opt 'rotate' for log driver local",
        ),
        (
            &["--log-opt", "max-file=0"][..],
            "max-file cannot be less than 1",
        ),
        (
            &["--log-opt", "max-file=two"][..],
            "invalid value for max-file",
        ),
        (
            &["--log-opt", "compress=maybe"][..],
            "invalid boolean value for compress",
        ),
        (
            &["--log-opt", "compress=true", "--log-opt", "max-file=1"][..],
            "compress cannot be true",
        ),
        (
            &["--log-driver", "none", "--log-opt", "max-size=1m"][..],
            "invalid logging opts for driver none",
        ),
    ] {
        for cmd in ["run", "create"] {
            let mut a = vec![cmd, NONE];
            a.extend_from_slice(args);
            a.extend(["busybox", "true"]);
            let e = r.bad(&a);
            assert!(e.contains(says), "{a:?}: {e}");
        }
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let left: Vec<_> = std::fs::read_dir(r.root.join("containers"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
