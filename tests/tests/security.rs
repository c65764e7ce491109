//! Seccomp as Docker applies it: the default profile (deny by default, EPERM; clone3 ENOSYS;
//! argument filters), `--security-opt seccomp=unconfined` and `seccomp=PROFILE.json`, also for
//! `exec`. Real syscalls from inside containers: busybox applets, and a small static C probe
//! built with gcc at test time and imported as a one-file image.

use std::process::Command;

use rbox_tests::{Rbox, RboxCli};

const NONE: &str = "--network=none";

/// Each line: `<check> ok` or `<check> <ERRNO>`.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *what, long r) {
    printf("%s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}
static void *thread(void *a) { return a; }

int main(void) {
    report("getpid", syscall(SYS_getpid));
    report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("clone3", syscall(SYS_clone3, NULL, 0));
    report("socket_inet", socket(AF_INET, SOCK_DGRAM, 0));
    report("socket_vsock", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    report("socket_alg", socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0));
    report("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    report("personality_query", personality(0xffffffff));
    report("personality_bsd", personality(0x0006 /* PER_BSD */));
    pthread_t t;
    int e = pthread_create(&t, NULL, thread, NULL);
    if (e == 0) pthread_join(t, NULL);
    errno = e;
    report("pthread_create", e ? -1 : 0);
    fflush(stdout);
    return 0;
}
"#;

/// A root with busybox and the probe image (`probe:latest`, entrypoint `/probe`).
fn with_probe(test: &str) -> Rbox {
    let r = Rbox::with_busybox(test);
    let dir = r.root.join("probe-build");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.c"), PROBE_C).unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(dir.join("probe"))
        .arg(dir.join("probe.c"))
        .output()
        .expect("running gcc");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tar_path = dir.join("probe.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let bin = std::fs::read(dir.join("probe")).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(bin.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append_data(&mut h, "probe", bin.as_slice()).unwrap();
    tar.finish().unwrap();
    drop(tar);
    r.ok(&[
        "import",
        "--change",
        r#"ENTRYPOINT ["/probe"]"#,
        tar_path.to_str().unwrap(),
        "probe:latest",
    ]);
    r
}

/// The probe's results as (check, outcome) pairs.
fn probe(r: &Rbox, opts: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["run", "--rm", NONE];
    args.extend_from_slice(opts);
    args.push("probe");
    let out = r.ok(&args);
    out.lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

fn outcome<'a>(results: &'a [(String, String)], check: &str) -> &'a str {
    &results
        .iter()
        .find(|(c, _)| c == check)
        .unwrap_or_else(|| panic!("{check} missing in {results:?}"))
        .1
}

/// No container, mount or libcontainer state left in the root.
fn assert_clean(r: &Rbox) {
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(r.root.to_str().unwrap()), "mounts left");
}

#[test]
fn default_profile_denies_with_eperm_and_allows_the_rest() {
    let r = with_probe("sec-default");
    let res = probe(&r, &[]);
    assert_eq!(outcome(&res, "getpid"), "ok");
    assert_eq!(outcome(&res, "socket_inet"), "ok");
    assert_eq!(outcome(&res, "personality_query"), "ok");
    // Not in Docker's allow list: the default action, EPERM.
    assert_eq!(outcome(&res, "keyctl"), "EPERM");
    // Allowed only with CAP_SYS_ADMIN (a user namespace needs no capability: seccomp denies it).
    assert_eq!(outcome(&res, "unshare_user"), "EPERM");
    assert_eq!(outcome(&res, "socket_netlink"), "ok");
    // Argument filters: AF_VSOCK and AF_ALG sockets and unusual personalities are refused.
    assert_eq!(outcome(&res, "socket_vsock"), "EPERM");
    assert_eq!(outcome(&res, "socket_alg"), "EPERM");
    // Docker's profile no longer allows io_uring.
    assert_eq!(outcome(&res, "io_uring_setup"), "EPERM");
    assert_eq!(outcome(&res, "personality_bsd"), "EPERM");
    // clone3 fails with ENOSYS, so glibc falls back to clone and threads still work.
    assert_eq!(outcome(&res, "clone3"), "ENOSYS");
    assert_eq!(outcome(&res, "pthread_create"), "ok");

    // Busybox: ordinary commands work, `unshare -U` is refused by the filter.
    let out = r.run(&[
        "run",
        "--rm",
        NONE,
        "busybox",
        "sh",
        "-c",
        "grep '^Seccomp:' /proc/self/status; mkdir /tmp/d && ls /tmp; unshare -U true",
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "Seccomp:\t2\nd\n");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    assert_clean(&r);
}

#[test]
fn unconfined_lifts_the_filter() {
    let r = with_probe("sec-unconfined");
    let res = probe(&r, &["--security-opt", "seccomp=unconfined"]);
    assert_eq!(outcome(&res, "unshare_user"), "ok");
    assert_ne!(outcome(&res, "keyctl"), "EPERM");
    assert_ne!(outcome(&res, "socket_vsock"), "EPERM");
    assert_ne!(outcome(&res, "socket_alg"), "EPERM");
    // A NULL params pointer: the kernel's EFAULT, not the filter's EPERM (unless the host
    // turned io_uring off).
    let io_uring = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled");
    if io_uring.map(|v| v.trim() == "0").unwrap_or(false) {
        assert_eq!(outcome(&res, "io_uring_setup"), "EFAULT");
    }
    assert_eq!(outcome(&res, "personality_bsd"), "ok");
    // An empty clone3 argument struct is invalid; the kernel, not a filter, says so.
    assert_eq!(outcome(&res, "clone3"), "EINVAL");
    let out = r.ok(&[
        "run",
        "--rm",
        NONE,
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true && echo unshared",
    ]);
    assert_eq!(out, "NoNewPrivs:\t1\nSeccomp:\t0\nunshared\n");
    assert_clean(&r);
}

#[test]
fn exec_gets_the_containers_profile() {
    let r = Rbox::with_busybox("sec-exec");
    let id = r.ok(&["run", "-d", NONE, "busybox", "sleep", "100"]);
    let id = id.trim();
    let out = r.run(&["exec", id, "unshare", "-U", "true"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    let id2 = r.ok(&[
        "run",
        "-d",
        NONE,
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sleep",
        "100",
    ]);
    let id2 = id2.trim();
    assert_eq!(
        r.ok(&["exec", id2, "grep", "^Seccomp:", "/proc/self/status"]),
        "Seccomp:\t0\n"
    );
    r.ok(&["exec", id2, "unshare", "-U", "true"]);
    // Docker's inspect shows the options (null when none were given).
    let opts = |c: &str| r.ok(&["inspect", "--format", "{{json .HostConfig.SecurityOpt}}", c]);
    assert_eq!(opts(id), "null\n");
    assert_eq!(opts(id2), "[\"seccomp=unconfined\"]\n");
    r.ok(&["rm", "-f", id, id2]);
    assert_clean(&r);
}

#[test]
fn custom_profile_file_applies_to_run_and_exec() {
    let r = Rbox::with_busybox("sec-custom");
    let profile = r.root.join("profile.json");
    // Allow everything but mkdir/mkdirat, which fail with EACCES.
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
            "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_syscall"],
                          "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        }"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = r.run(&[
        "run",
        "--rm",
        NONE,
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "unshare -U true && echo unshared; mkdir /tmp/d",
    ]);
    assert_eq!(out.stdout, "unshared\n", "{}", out.stderr);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert_eq!(out.code, 1);

    // The profile is stored with the container: it applies after the file is gone, to exec too.
    let id = r.ok(&[
        "run",
        "-d",
        NONE,
        "--security-opt",
        &opt,
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    std::fs::remove_file(&profile).unwrap();
    let ex = r.run(&["exec", id, "mkdir", "/tmp/e"]);
    assert!(
        ex.code != 0 && ex.stderr.contains("Permission denied"),
        "{}",
        ex.stderr
    );
    r.ok(&["restart", "-t", "0", id]);
    let ex = r.run(&["exec", id, "mkdir", "/tmp/f"]);
    assert!(
        ex.code != 0 && ex.stderr.contains("Permission denied"),
        "{}",
        ex.stderr
    );
    r.ok(&["rm", "-f", id]);
    assert_clean(&r);
}

#[test]
fn bad_security_opts_fail_cleanly() {
    let r = Rbox::with_busybox("sec-bad");
    let missing = r.root.join("missing.json");
    let bad_json = r.root.join("bad.json");
    let bad_action = r.root.join("bad-action.json");
    std::fs::write(&bad_json, "{not json").unwrap();
    std::fs::write(&bad_action, r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            format!("seccomp={}", missing.display()),
            "opening seccomp profile (",
        ),
        (
            format!("seccomp={}", bad_json.display()),
            "decoding seccomp profile failed",
        ),
        (
            format!("seccomp={}", bad_action.display()),
            "invalid seccomp profile",
        ),
        ("apparmor".into(), "invalid --security-opt 1: \"apparmor\""),
        ("no-new-privileges=false".into(), "invalid --security-opt 1"),
    ];
    for (opt, msg) in &cases {
        for cmd in ["run", "create"] {
            let err = r.bad(&[cmd, NONE, "--security-opt", opt, "busybox", "true"]);
            assert!(err.contains(msg), "{opt}: {err}");
        }
    }
    assert_clean(&r);
}

#[test]
fn compiled_filter_is_cached_per_root() {
    let r = Rbox::with_busybox("sec-cache");
    let denied = || {
        let out = r.run(&["run", "--rm", NONE, "busybox", "unshare", "-U", "true"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("Operation not permitted"),
            "{}",
            out.stderr
        );
    };
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(r.root.join("seccomp"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    denied();
    let files = entries();
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = std::fs::read(&files[0]).unwrap();
    denied();
    assert_eq!(entries(), files);
    // A damaged entry is never loaded: it is compiled again and replaced.
    std::fs::write(&files[0], b"garbage").unwrap();
    denied();
    assert_eq!(std::fs::read(&files[0]).unwrap(), stored);
    // Unconfined needs no filter; another profile gets its own entry.
    r.ok(&[
        "run",
        "--rm",
        NONE,
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "true",
    ]);
    assert_eq!(entries().len(), 1);
    let profile = r.root.join("allow.json");
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let opt = format!("seccomp={}", profile.display());
    r.ok(&[
        "run",
        "--rm",
        NONE,
        "--security-opt",
        &opt,
        "busybox",
        "unshare",
        "-U",
        "true",
    ]);
    assert_eq!(entries().len(), 2);
    assert_clean(&r);
}
