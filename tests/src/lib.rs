//! Harness for the integration tests: each test gets its own `--root` under /tmp, runs the real
//! `rbox` binary (RBOX_BIN, default target/debug/rbox) and removes everything on drop, also
//! when the test fails.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Host-wide isolation between test processes (two checkouts testing at once, or two test
/// binaries): `slot` numbers this process's default bridges and subnets, and the lock on the
/// binary's own name makes a second run of the same test file wait, because its tests use
/// fixed bridge names, subnets and host ports.
struct Isolation {
    slot: u32,
    _locks: [File; 2],
}

const SLOTS: u32 = 16;
const LOCK_DIR: &str = "/run/rbox-tests";

fn flock(f: &File, how: libc::c_int) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(f.as_raw_fd(), how) == 0 }
}

fn lock_file(name: &str) -> File {
    std::fs::create_dir_all(LOCK_DIR).unwrap();
    File::create(Path::new(LOCK_DIR).join(name)).unwrap()
}

fn isolation() -> &'static Isolation {
    static ISO: OnceLock<Isolation> = OnceLock::new();
    ISO.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        // Cargo names test binaries `<file>-<hash>`; the hash differs between checkouts.
        let file = stem.rsplit_once('-').map_or(stem.as_str(), |(f, _)| f);
        let binary = lock_file(&format!("binary-{file}.lock"));
        // A suite re-run inside its own namespaces (see `run_suite_in`) by a test of this very
        // binary: its parent holds the lock.
        if std::env::var_os(NESTED).is_none() {
            flock(&binary, libc::LOCK_EX);
        }
        for slot in 0..SLOTS {
            let f = lock_file(&format!("slot-{slot}.lock"));
            if flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
                return Isolation {
                    slot,
                    _locks: [binary, f],
                };
            }
        }
        panic!("more than {SLOTS} rbox test processes at once");
    })
}

/// Path of the rbox binary under test.
pub fn rbox_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RBOX_BIN") {
        return PathBuf::from(p);
    }
    workspace().join("target/debug/rbox")
}

/// The workspace directory (parent of this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where the image recipes leave their rootfs tarballs (`tests/run.sh` builds them).
pub fn image_tar(name: &str) -> PathBuf {
    let dir = std::env::var_os("RBOX_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/images"));
    let p = dir.join(format!("{name}.tar"));
    assert!(
        p.exists(),
        "{} missing: run images/recipes/{name}.sh (tests/run.sh does)",
        p.display()
    );
    p
}

/// Result of one rbox invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// One test's private rbox root.
pub struct Rbox {
    pub root: PathBuf,
    /// This root's number in its process (with the process's slot, names its default bridge
    /// and subnet).
    n: u32,
}

impl Rbox {
    /// A fresh, empty root, unique to this process and test.
    pub fn new(test: &str) -> Rbox {
        isolation();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = PathBuf::from(format!(
            "/tmp/rbox-test-{}-{}-{n}",
            test,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Rbox { root, n: n % 256 }
    }

    /// A fresh root with the busybox image imported as `busybox:latest`.
    pub fn with_busybox(test: &str) -> Rbox {
        let r = Rbox::new(test);
        r.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            image_tar("busybox").to_str().unwrap(),
            "busybox:latest",
        ]);
        r
    }
}

impl Rbox {
    /// `inspect --format F C`, trimmed.
    #[track_caller]
    pub fn inspect(&self, c: &str, f: &str) -> String {
        self.ok(&["inspect", "--format", f, c]).trim().to_string()
    }

    /// The container's own record (`containers/<id>/container.json`), for what `inspect`
    /// does not show (the monitor's pid).
    pub fn record(&self, id: &str) -> serde_json::Value {
        let p = self.root.join("containers").join(id).join("container.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    /// The pid of the process that owns container `id` now.
    pub fn monitor_pid(&self, id: &str) -> i32 {
        self.record(id)["state"]["monitor_pid"].as_i64().unwrap() as i32
    }

    /// Kills, by pid, every process of this root as a power cut would: the monitors and helper
    /// processes (their command line names the root) first, so none reacts to its
    /// container's death, then the containers' processes (their cgroups). Nothing of rbox runs
    /// in between.
    pub fn kill_everything(&self) {
        let root = self.root.to_string_lossy().to_string();
        let me = std::process::id().to_string();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = e.file_name().to_string_lossy().to_string();
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.contains(&root.as_bytes()) {
                kill9(pid.parse().unwrap());
            }
        }
        let ids = std::fs::read_dir(self.root.join("containers")).unwrap();
        for id in ids.flatten() {
            let id = id.file_name().to_string_lossy().to_string();
            let procs = sh(&format!(
                "cat /sys/fs/cgroup/pids/rbox/{id}/cgroup.procs /sys/fs/cgroup/rbox/{id}/cgroup.procs 2>/dev/null"
            ))
            .stdout;
            for p in procs.split_whitespace() {
                kill9(p.parse().unwrap());
            }
        }
    }
}

/// SIGKILL to a process a test started (by pid).
pub fn kill9(pid: i32) {
    // SAFETY: kill(2) on a pid the test found for its own root.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Whether `pid` exists (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Waits up to `secs` for `f` to hold (an asynchronous outcome: a restart, an exit).
#[track_caller]
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

impl RboxCli for Rbox {
    /// Each root gets its own default bridge and subnet, so that tests running at once never
    /// share `rbox0` (one root's cleanup would take it from under another's containers).
    fn command(&self, args: &[&str]) -> Command {
        let slot = isolation().slot;
        let mut c = rbox_command(&self.root, None, args);
        c.env("RBOX_DEFAULT_BRIDGE", format!("rbt-h{slot}-{}", self.n))
            .env(
                "RBOX_DEFAULT_SUBNET",
                format!("10.{}.{}.0/24", 160 + slot, self.n),
            );
        c
    }
}

/// How a test runs rbox: a test's own wrapper (with its bridge, subnet or namespace) only says
/// how to build the command; running and the assertions on the outcome are shared.
pub trait RboxCli {
    /// A `Command` for rbox with the test's root and settings.
    fn command(&self, args: &[&str]) -> Command;

    /// Runs rbox and returns its exit code and output.
    fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("running rbox").into()
    }

    /// Runs rbox, asserts success, returns stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "rbox {args:?} failed ({}): {}{}",
            r.code, r.stderr, r.stdout
        );
        r.stdout
    }

    /// Runs rbox, asserts failure with `code`, returns stderr.
    #[track_caller]
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, code,
            "rbox {args:?}: expected exit {code}, got {}: {}{}",
            r.code, r.stderr, r.stdout
        );
        r.stderr
    }

    /// Docker's bad-input contract: exactly one `Error: ` line on stderr and Docker's exit
    /// code: 125 for `run`/`create`, 1 for the other commands (their errors are the daemon's
    /// in Docker).
    #[track_caller]
    fn bad(&self, args: &[&str]) -> String {
        let stderr = self.fails(error_exit_code(args), args);
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one line expected: {stderr:?}"
        );
        assert!(stderr.starts_with("Error: "), "{stderr:?}");
        stderr
    }
}

/// The exit code Docker's CLI gives an error of the command `args` (see `RboxCli::bad`).
pub fn error_exit_code(args: &[&str]) -> i32 {
    // The global flags that take a value: their value is not the command (`--root X run`).
    const VALUED: [&str; 5] = [
        "--root",
        "--firewall",
        "--cluster-store",
        "--cluster-advertise",
        "--cni-conf-dir",
    ];
    let mut words = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !(a.starts_with('-') || *i > 0 && VALUED.contains(&args[i - 1])))
        .map(|(_, a)| a);
    let first = words.next().copied();
    let cmd = match first {
        Some("container") => words.next().copied(),
        c => c,
    };
    match cmd {
        Some("run" | "create") => 125,
        _ => 1,
    }
}

/// rbox with `--root root`, run inside network namespace `netns` (a name under /run/netns) if
/// given, with stdin closed.
pub fn rbox_command(root: &Path, netns: Option<&str>, args: &[&str]) -> Command {
    let mut c = match netns {
        Some(ns) => {
            // nsenter, not `ip netns exec`: that also makes a private mount namespace, which
            // would swallow rbox's sandbox bind mounts when the command exits.
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(rbox_bin());
            c
        }
        None => Command::new(rbox_bin()),
    };
    c.arg("--root").arg(root).args(args);
    c.stdin(Stdio::null());
    // A test never reaches an outside registry: an unknown image fails instead of being
    // pulled. Tests of auto-pull pass `--pull missing` with their own loopback registry.
    c.env("RBOX_PULL", "never");
    c
}

/// Set in a test binary re-run by `run_suite_in`: its parent holds the binary's lock.
const NESTED: &str = "RBOX_TESTS_NESTED";

/// The firewall backend whose rules the tests inspect: RBOX_TEST_FIREWALL (`iptables`, the
/// default, or `nftables`). rbox itself picks its backend as it always does (RBOX_FIREWALL,
/// else auto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    pub fn current() -> Backend {
        match std::env::var("RBOX_TEST_FIREWALL").as_deref() {
            Ok("nftables") => Backend::Nftables,
            _ => Backend::Iptables,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }

    /// A shell command printing all of rbox's rules, both families.
    pub fn dump_cmd(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables-save; ip6tables-save",
            Backend::Nftables => "nft list table inet rbox 2>/dev/null",
        }
    }

    /// How this backend's rules name interface `name`.
    pub fn names_interface(self, name: &str) -> String {
        match self {
            Backend::Iptables => format!("{name} "),
            Backend::Nftables => format!("\"{name}\""),
        }
    }

    /// The golden file of `scenario` (tests/golden/<backend>/).
    pub fn golden(self, scenario: &str) -> String {
        let ext = match self {
            Backend::Iptables => "rules",
            Backend::Nftables => "nft",
        };
        let p = workspace().join(format!("tests/golden/{}/{scenario}.{ext}", self.name()));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// `dump` (what `dump_cmd` printed) in the golden files' canonical form, with real ids and
    /// names replaced by their placeholders.
    pub fn normalize(self, dump: &str, names: &[(String, &str)]) -> String {
        match self {
            Backend::Iptables => normalize_rules(dump, names),
            Backend::Nftables => normalize_nft(dump, names),
        }
    }
}

/// A golden iptables file under tests/golden/iptables/.
pub fn golden(name: &str) -> String {
    Backend::Iptables.golden(name)
}

/// rbox's table in `nft list` form, canonical: real ids and names replaced by placeholders,
/// sets, maps and chains sorted by name, each set's elements sorted (nft lists them in hash
/// order and wraps long lists); rules keep their order.
pub fn normalize_nft(listing: &str, names: &[(String, &str)]) -> String {
    let mut text = listing.to_string();
    for (real, placeholder) in names {
        text = text.replace(real.as_str(), placeholder);
    }
    // Join wrapped element lists back onto one line.
    let mut lines: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        match lines.last_mut() {
            Some(last) if last.starts_with("elements = {") && !last.ends_with('}') => {
                last.push(' ');
                last.push_str(line);
            }
            _ => lines.push(line.to_string()),
        }
    }
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for line in lines {
        if line.is_empty() || line.starts_with("table ") || line == "}" {
            continue;
        }
        if let Some(head) = line
            .strip_suffix(" {")
            .filter(|h| h.starts_with("set ") || h.starts_with("map ") || h.starts_with("chain "))
        {
            blocks.push((head.to_string(), Vec::new()));
        } else if let Some(b) = blocks.last_mut() {
            let line = match line
                .strip_prefix("elements = { ")
                .and_then(|l| l.strip_suffix(" }"))
            {
                Some(list) => {
                    let mut elems: Vec<&str> = list.split(", ").collect();
                    elems.sort();
                    format!("elements = {{ {} }}", elems.join(", "))
                }
                None => line,
            };
            b.1.push(line);
        }
    }
    blocks.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (head, body) in blocks {
        out += &head;
        out.push('\n');
        for l in &body {
            out += "  ";
            out += l;
            out.push('\n');
        }
    }
    out
}

/// Runs this test binary's other tests again (`cargo test` arguments `args`) inside a private
/// mount and network namespace where the iptables tools are hidden (a host without iptables
/// at all), with `env` set; returns its output. /sys is remounted for the new network
/// namespace, with the cgroup hierarchies carried over, and /run/netns is a tmpfs of its own:
/// the namespaces `ip netns` names there are per run (the tests of the outer run, going on
/// meanwhile, use the same names).
pub fn run_suite_in(args: &[&str], env: &[(&str, &str)]) -> Run {
    let exe = std::env::current_exe().unwrap();
    let cg = format!("/tmp/rbt-fcg-{}", std::process::id());
    let setup = format!(
        "set -e; ip link set lo up; mkdir -p {cg}; mount --rbind /sys/fs/cgroup {cg}; \
         mount -t sysfs sysfs /sys; mount --move {cg} /sys/fs/cgroup; rmdir {cg}; \
         mkdir -p /run/netns; mount -t tmpfs -o mode=0755 rbt-netns /run/netns; \
         for d in /usr/sbin /usr/bin; do for f in $d/*tables*; do \
           [ -e \"$f\" ] && mount --bind /dev/null \"$f\"; done; done; \
         exec \"$0\" \"$@\""
    );
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--net",
        "--propagation",
        "private",
        "sh",
        "-c",
        &setup,
    ])
    .arg(&exe)
    .args(args)
    .env(NESTED, "1")
    .env_remove("RBOX_FIREWALL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("unshare").into()
}

/// The body of a test named `name` that re-runs the rest of its binary on the nftables backend
/// on a "host" without any iptables tool (`run_suite_in`, rbox left to choose: auto must pick
/// nftables; tests inspecting rules read nft's); asserts it passed at least `at_least` tests.
#[track_caller]
pub fn assert_passes_on_nftables_without_iptables(name: &str, at_least: u32) {
    rerun_on_nftables(&["--skip", name], at_least);
}

/// The body of a test that runs the test `test` of its binary once more on the nftables
/// backend, as `assert_passes_on_nftables_without_iptables` does the rest.
#[track_caller]
pub fn assert_test_passes_on_nftables_without_iptables(test: &str) {
    rerun_on_nftables(&["--exact", test], 1);
}

#[track_caller]
fn rerun_on_nftables(args: &[&str], at_least: u32) {
    let r = run_suite_in(args, &[("RBOX_TEST_FIREWALL", "nftables")]);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, 0, "the nftables run failed:\n{out}");
    let passed = out
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(passed.is_some_and(|n| n >= at_least), "{out}");
}

/// rbox's part of `iptables-save`, with real ids and bridge names replaced by the golden files'
/// placeholders, chains sorted and rules grouped per chain (keeping their kernel order).
pub fn normalize_rules(save: &str, names: &[(String, &str)]) -> String {
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let mut inside = false;
        let mut chains = Vec::new();
        let mut rules: Vec<(String, String)> = Vec::new();
        for line in save.lines() {
            let mut line = line.to_string();
            for (real, placeholder) in names {
                line = line.replace(real.as_str(), placeholder);
            }
            if let Some(t) = line.strip_prefix('*') {
                inside = t == table;
            } else if inside && line.starts_with(":RBOX") {
                chains.push(line.split(' ').next().unwrap().to_string());
            } else if inside && line.starts_with("-A ") && line.contains("RBOX") {
                let chain = line.split(' ').nth(1).unwrap().to_string();
                let key = if chain.starts_with("RBOX") {
                    chain
                } else {
                    String::new()
                };
                rules.push((key, line));
            }
        }
        chains.sort();
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        out += &format!("*{table}\n{}\n", chains.join("\n"));
        for (_, r) in rules {
            out += &r;
            out.push('\n');
        }
    }
    out
}

impl Drop for Rbox {
    fn drop(&mut self) {
        remove_root(self, &self.root);
    }
}

/// Removes everything of a test's root through `rbox` itself (`remove_all`), then the directory.
pub fn remove_root(rbox: &dyn RboxCli, root: &Path) {
    remove_all(rbox);
    unmount_under(root);
    let _ = std::fs::remove_dir_all(root);
}

/// `rm -f` of every container, then `system prune`: rbox's own repair path (networks released,
/// mounts gone).
pub fn remove_all(rbox: &dyn RboxCli) {
    let ids = rbox.run(&["ps", "-aq", "--no-trunc"]).stdout;
    for id in ids.split_whitespace() {
        let _ = rbox
            .command(&["rm", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = rbox
        .command(&["system", "prune", "-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Lazily unmounts every mount below `dir` (deepest first), so a failed test cannot leave
/// overlay or nsfs mounts behind.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: umount2 with a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Runs a host command and returns its output (for checks with iproute2, iptables, curl).
pub fn sh(script: &str) -> Run {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh")
        .into()
}

/// A network test's rbox: its own root, default bridge and subnet (RBOX_DEFAULT_BRIDGE /
/// RBOX_DEFAULT_SUBNET), optionally run inside a network namespace of its own (for tests that
/// change FORWARD policy or sysctls, which must never happen on the host). Drop releases the
/// sandboxes it made, tears the root's networks down and deletes the namespace.
pub struct NetFixture {
    pub rbox: Rbox,
    pub bridge: String,
    pub subnet: String,
    pub netns: Option<String>,
    pub sandboxes: std::cell::RefCell<Vec<String>>,
    /// RBOX_FIREWALL for rbox (`None`: what rbox picks by itself).
    pub firewall: Option<&'static str>,
}

impl NetFixture {
    pub fn new(test: &str, bridge: String, subnet: String) -> NetFixture {
        NetFixture {
            rbox: Rbox::new(test),
            bridge,
            subnet,
            netns: None,
            sandboxes: Default::default(),
            firewall: None,
        }
    }

    /// Makes rbox run inside a fresh network namespace `ns` (with `lo` up).
    pub fn enter_netns(&mut self, ns: String) {
        let r = sh(&format!(
            "ip netns add {ns} && ip netns exec {ns} ip link set lo up"
        ));
        assert_eq!(r.code, 0, "{}", r.stderr);
        self.netns = Some(ns);
    }

    /// Runs a shell command in this test's namespace (or on the host).
    /// `ip netns exec` is right here: its fresh /sys shows the namespace's links.
    pub fn sh(&self, script: &str) -> Run {
        match &self.netns {
            Some(ns) => sh(&format!(
                "ip netns exec {ns} sh -c '{}'",
                script.replace('\'', r"'\''")
            )),
            None => sh(script),
        }
    }

    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.rbox.root.join("netns").join(id)
    }

    /// Runs `cmd` inside sandbox `id`.
    pub fn exec(&self, id: &str, cmd: &str) -> Run {
        sh(&format!(
            "nsenter --net={} {cmd}",
            self.netns_path(id).display()
        ))
    }
}

impl RboxCli for NetFixture {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = rbox_command(&self.rbox.root, self.netns.as_deref(), args);
        c.env("RBOX_DEFAULT_BRIDGE", &self.bridge)
            .env("RBOX_DEFAULT_SUBNET", &self.subnet);
        if let Some(fw) = self.firewall {
            c.env("RBOX_FIREWALL", fw);
        }
        c
    }
}

impl Drop for NetFixture {
    fn drop(&mut self) {
        for id in self.sandboxes.borrow().iter() {
            let _ = self.run(&["network", "sandbox", "release", id]);
        }
        let _ = self.run(&["network", "teardown"]);
        if let Some(ns) = &self.netns {
            sh(&format!("ip netns del {ns}"));
        }
    }
}

/// A container test's rbox: a `NetFixture` with busybox imported and the host's resolvers
/// replaced by a loopback address (RBOX_HOST_RESOLV_CONF), so that no name query leaves the
/// machine. Drop removes its containers and user networks, then the fixture the rest.
pub struct CtrFixture {
    pub fx: NetFixture,
    resolv_conf: PathBuf,
}

impl CtrFixture {
    pub fn new(test: &str, bridge: String, subnet: String) -> CtrFixture {
        let fx = NetFixture::new(test, bridge, subnet);
        let resolv_conf = fx.rbox.root.join("host-resolv.conf");
        std::fs::write(&resolv_conf, "nameserver 127.0.0.1\n").unwrap();
        let c = CtrFixture { fx, resolv_conf };
        let tar = image_tar("busybox");
        c.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            "busybox",
        ]);
        c
    }

    /// The container's address on network `net`.
    #[track_caller]
    pub fn ip_of(&self, ctr: &str, net: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.ok(&["inspect", "--format", &f, ctr])
            .trim()
            .to_string()
    }

    /// The host end of the container's veth (bridge networks), from its endpoint records
    /// (`networks/<id>/endpoints/<container id>.json`).
    pub fn host_veth(&self, container_id: &str) -> Option<String> {
        std::fs::read_dir(self.fx.rbox.root.join("networks"))
            .ok()?
            .flatten()
            .filter_map(|e| {
                let f = e.path().join(format!("endpoints/{container_id}.json"));
                std::fs::read_to_string(f).ok()
            })
            .find_map(|s| {
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                Some(v["host_veth"].as_str()?.to_string())
            })
    }

    /// The pid the root's DNS resolver recorded, while it runs.
    pub fn resolver_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.fx.rbox.root.join("dns/resolver.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl RboxCli for CtrFixture {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.fx.command(args);
        c.env("RBOX_HOST_RESOLV_CONF", &self.resolv_conf);
        c
    }
}

impl Drop for CtrFixture {
    fn drop(&mut self) {
        for id in self.run(&["ps", "-aq"]).stdout.split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        for n in self.run(&["network", "ls", "-q"]).stdout.split_whitespace() {
            let _ = self.run(&["network", "rm", n]);
        }
    }
}

/// A DNS server on the host's loopback standing in for the host's resolvers: dnsmasq on `addr`
/// port 53, answering `*.upstream.test` with 192.0.2.77 and NXDOMAIN for everything else
/// (nothing is forwarded further). Started and answering when `start` returns; killed on drop.
pub struct DnsUpstream(Child);

impl DnsUpstream {
    pub fn start(addr: &str) -> DnsUpstream {
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--pid-file=",
                "--address=/upstream.test/192.0.2.77",
                "--address=/#/",
            ])
            .arg(format!("--listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (scripts/deps.sh installs dnsmasq-base)");
        let up = DnsUpstream(child);
        wait_for("the upstream DNS server", 5, || {
            sh(&format!("busybox nslookup x.upstream.test. {addr}"))
                .stdout
                .contains("192.0.2.77")
        });
        up
    }
}

impl Drop for DnsUpstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::error_exit_code;

    #[test]
    fn exit_codes_follow_the_command_not_a_global_flags_value() {
        assert_eq!(error_exit_code(&["run", "busybox"]), 125);
        assert_eq!(error_exit_code(&["--root", "/r", "run", "busybox"]), 125);
        assert_eq!(
            error_exit_code(&["--firewall", "none", "container", "create", "x"]),
            125
        );
        assert_eq!(
            error_exit_code(&["--root", "/r", "network", "create", "x"]),
            1
        );
        assert_eq!(error_exit_code(&["-D", "rm", "run"]), 1);
    }
}
