//! rbox on a pure cgroup v1 and a pure cgroup v2 host, emulated on this hybrid host without
//! touching its mounts: each test holds a private mount namespace (`unshare --mount
//! --propagation private`) in which /sys/fs/cgroup is rearranged, and runs every rbox command
//! in it with `nsenter`. Monitors, rootfs and netns mounts live in that namespace; the test
//! removes its containers there before it lets the namespace go.
//!
//! On v2 only the controllers the host's unified hierarchy really has are usable (here just
//! hugetlb: cpu, memory and pids are bound to v1 hierarchies), so `--memory` cannot be tested
//! there; the v2 test checks Docker's answer instead: a warning and the limit dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbox_tests::{rbox_bin, Rbox, RboxCli, Run};

const NONE: &str = "--network=none";

/// How /sys/fs/cgroup is rearranged in the test's mount namespace.
#[derive(Clone, Copy)]
enum Layout {
    /// v1 controllers only: the unified (cgroup2) mount of a hybrid host is gone.
    V1,
    /// cgroup2 mounted at /sys/fs/cgroup, no v1 hierarchies.
    V2,
}

impl Layout {
    fn setup(self) -> &'static str {
        match self {
            Layout::V1 => {
                "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi"
            }
            Layout::V2 => {
                "if [ \"$(stat -fc %T /sys/fs/cgroup)\" != cgroup2fs ]; then \
                 umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup; fi"
            }
        }
    }
}

/// A test's root plus the process that holds its mount namespace.
struct InLayout {
    holder: Child,
    rbox: Rbox,
}

impl InLayout {
    fn new(test: &str, layout: Layout) -> InLayout {
        let rbox = Rbox::with_busybox(test);
        let script = format!("{} && echo ready && exec sleep 3600", layout.setup());
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("setting up the cgroup layout failed");
        }
        InLayout { holder, rbox }
    }

    /// `program args...` inside the namespace.
    fn nsenter(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--", program]);
        c.stdin(Stdio::null());
        c
    }

    /// A shell command inside the namespace (sees its /sys/fs/cgroup).
    fn sh(&self, script: &str) -> Run {
        self.nsenter("sh")
            .args(["-c", script])
            .output()
            .expect("nsenter")
            .into()
    }

    /// The container's cgroup directories in the namespace's hierarchies.
    fn cgroup_dirs(&self, id: &str) -> String {
        self.sh(&format!(
            "ls -d /sys/fs/cgroup/*/rbox/{id} /sys/fs/cgroup/rbox/{id} 2>/dev/null"
        ))
        .stdout
    }

    /// Asserts that the root holds no container and the namespace no mount under the root
    /// and none of `ids`' cgroups.
    fn assert_clean(&self, ids: &[&str]) {
        assert_eq!(self.ok(&["ps", "-aq"]), "");
        let root = self.rbox.root.to_string_lossy().into_owned();
        let mounts = self.sh("cat /proc/self/mountinfo").stdout;
        assert!(!mounts.contains(&root), "mounts left under {root}");
        for id in ids {
            assert_eq!(self.cgroup_dirs(id), "", "cgroups left for {id}");
        }
    }

    /// Runs `exec id sleep 2` and returns the container cgroup's member pids seen meanwhile.
    fn members_during_exec(&self, id: &str, procs_file: &str) -> Vec<String> {
        let mut exec = self.command(&["exec", id, "sleep", "2"]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen = self
                .sh(&format!("cat {procs_file}"))
                .stdout
                .lines()
                .map(str::to_string)
                .collect();
            if seen.len() > 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(exec.wait().unwrap().success(), "exec failed");
        seen
    }
}

impl RboxCli for InLayout {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.nsenter(rbox_bin().to_str().unwrap());
        c.arg("--root").arg(&self.rbox.root).args(args);
        c.env("RBOX_PULL", "never");
        c
    }
}

impl Drop for InLayout {
    fn drop(&mut self) {
        // Inside the namespace: its monitors, rootfs and netns mounts live there.
        let ids = self.run(&["ps", "-aq", "--no-trunc"]).stdout;
        for id in ids.split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        let _ = self.run(&["system", "prune", "-f"]);
        let root = self.rbox.root.to_string_lossy().into_owned();
        let _ = self.sh(&format!(
            "grep -o ' {root}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l"
        ));
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn pid_of(l: &InLayout, id: &str) -> String {
    l.ok(&["inspect", "--format", "{{.State.Pid}}", id])
        .trim()
        .to_string()
}

#[test]
fn pure_v2_run_exec_stop_rm() {
    let l = InLayout::new("cg-v2", Layout::V2);
    assert_eq!(l.sh("stat -fc %T /sys/fs/cgroup").stdout, "cgroup2fs\n");

    assert_eq!(
        l.ok(&["run", "--rm", NONE, "busybox", "echo", "hello"]),
        "hello\n"
    );
    let id = l.ok(&["run", "-d", NONE, "busybox", "sleep", "100"]);
    let id = id.trim();
    let pid = pid_of(&l, id);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().any(|c| c == format!("0::/rbox/{id}")), "{own}");
    let procs = format!("/sys/fs/cgroup/rbox/{id}/cgroup.procs");
    assert_eq!(l.sh(&format!("cat {procs}")).stdout.trim(), pid);
    // The exec'd process joins the container's cgroup too.
    let members = l.members_during_exec(id, &procs);
    assert_eq!(members.len(), 2, "{members:?}");
    assert_eq!(l.ok(&["exec", id, "sh", "-c", "echo in"]), "in\n");

    l.ok(&["stop", "-t", "1", id]);
    let status = l.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (137)"), "{status}");
    l.ok(&["rm", id]);
    l.assert_clean(&[id]);

    // No memory, pids or cpu controller in this v2 hierarchy: as Docker, memory and pids
    // limits are dropped with a warning, a CPU limit is refused (one line, exit 125) and leaves
    // nothing behind.
    let run = l.run(&[
        "run",
        "-d",
        NONE,
        "--memory",
        "32m",
        "--pids-limit",
        "20",
        "busybox",
        "sleep",
        "30",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("WARNING: Your kernel does not support memory limit")
            && run.stderr.contains("PIDs limit discarded"),
        "{}",
        run.stderr
    );
    let id = run.stdout.trim();
    assert_eq!(
        l.ok(&[
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{json .HostConfig.PidsLimit}}",
            id
        ]),
        "0 null\n"
    );
    l.ok(&["rm", "-f", id]);
    let cgroups = || l.sh("ls -d /sys/fs/cgroup/rbox/*/ 2>/dev/null").stdout;
    let before = cgroups();
    let err = l.bad(&["run", "--rm", NONE, "--cpus", "0.5", "busybox", "true"]);
    assert!(err.contains("NanoCPUs can not be set"), "{err}");
    l.assert_clean(&[id]);
    assert_eq!(cgroups(), before, "a cgroup of the failed run is left");
}

#[test]
fn pure_v1_run_exec_stop_rm_and_limits() {
    let l = InLayout::new("cg-v1", Layout::V1);
    let mounts = l.sh("cat /proc/self/mountinfo").stdout;
    assert!(!mounts.contains(" - cgroup2 "), "{mounts}");
    assert!(mounts.contains(" - cgroup "), "{mounts}");

    assert_eq!(
        l.ok(&["run", "--rm", NONE, "busybox", "echo", "hello"]),
        "hello\n"
    );
    let id = l.ok(&[
        "run",
        "-d",
        NONE,
        "--memory",
        "32m",
        "--pids-limit",
        "50",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    let pid = pid_of(&l, id);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for controller in ["memory", "pids", "cpu"] {
        assert!(
            own.lines()
                .any(|c| c.ends_with(&format!(":{controller}:/rbox/{id}"))),
            "{controller}: {own}"
        );
    }
    let cg = |f: &str| l.sh(&format!("cat /sys/fs/cgroup/{f}")).stdout;
    assert_eq!(
        cg(&format!("memory/rbox/{id}/memory.limit_in_bytes")),
        "33554432\n"
    );
    assert_eq!(cg(&format!("pids/rbox/{id}/pids.max")), "50\n");
    let members =
        l.members_during_exec(id, &format!("/sys/fs/cgroup/memory/rbox/{id}/cgroup.procs"));
    assert_eq!(members.len(), 2, "{members:?}");

    l.ok(&["stop", "-t", "1", id]);
    l.ok(&["rm", id]);
    l.assert_clean(&[id]);

    // The limit is real: a process that allocates past it is OOM-killed.
    let run = l.run(&[
        "run",
        "--name",
        "hog",
        NONE,
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(run.code, 137, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        l.ok(&["inspect", "--format", "{{.State.OOMKilled}}", "hog"]),
        "true\n"
    );
    l.ok(&["rm", "hog"]);
    l.assert_clean(&[]);
}

/// Inside a container with memory, pids and CPU limits, every cgroup filesystem is read-only
/// as in Docker: root in the container can neither raise its limits nor make cgroups (a hole
/// up to session 2: libcontainer mounted the v1 hierarchies read-write).
fn assert_cgroupfs_read_only(rbox: &dyn RboxCli, limits: &[&str]) {
    // Values each file would accept were it writable.
    let script = "for fv in memory/memory.limit_in_bytes=268435456 pids/pids.max=1000 \
                  cpu/cpu.cfs_quota_us=100000 memory.max=268435456 pids.max=1000 \
                  'cpu.max=max 100000'; do \
                    f=${fv%%=*}; v=${fv#*=}; \
                    [ -e /sys/fs/cgroup/$f ] || continue; \
                    if echo \"$v\" > /sys/fs/cgroup/$f; then echo wrote $f; \
                    else echo refused $f; fi; \
                  done 2>/dev/null; \
                  for d in /sys/fs/cgroup /sys/fs/cgroup/memory; do \
                    [ -d $d ] && { mkdir $d/evil 2>/dev/null && echo made $d/evil; }; \
                  done; \
                  grep cgroup /proc/mounts";
    let mut args = vec!["run", "--rm", NONE];
    args.extend_from_slice(limits);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let out = rbox.ok(&args);
    assert!(!out.contains("wrote") && !out.contains("made"), "{out}");
    if !limits.is_empty() {
        assert!(out.contains("refused"), "no limit file was tried: {out}");
    }
    // The read-only bind lies over the mount libcontainer made, as runc's readonly paths
    // (/proc/sys) do: what the container sees is the last entry of each mount point.
    let mut visible = std::collections::BTreeMap::new();
    for m in out.lines().filter(|l| l.contains(" /sys/fs/cgroup")) {
        let f: Vec<&str> = m.split(' ').collect();
        visible.insert(f[1].to_string(), m.to_string());
    }
    assert!(!visible.is_empty(), "{out}");
    for m in visible.values() {
        let opts = m.split(' ').nth(3).unwrap_or("");
        assert!(opts.split(',').any(|o| o == "ro"), "mounted rw: {m}");
    }
}

#[test]
fn cgroupfs_is_read_only_on_hybrid_v1_and_v2() {
    let limits = ["--memory", "32m", "--pids-limit", "50", "--cpus", "0.5"];
    // This host: hybrid (v1 controllers plus cgroup2 at /sys/fs/cgroup/unified).
    let hybrid = Rbox::with_busybox("cg-ro-hybrid");
    assert_cgroupfs_read_only(&hybrid, &limits);
    let v1 = InLayout::new("cg-ro-v1", Layout::V1);
    assert_cgroupfs_read_only(&v1, &limits);
    // This host's v2 hierarchy has no memory/pids/cpu controller: limits are dropped there,
    // and the container's own cgroup2 root is what must not be writable.
    let v2 = InLayout::new("cg-ro-v2", Layout::V2);
    assert_cgroupfs_read_only(&v2, &[]);
}
