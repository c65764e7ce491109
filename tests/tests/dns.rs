//! The embedded DNS resolver of user networks, with real queries (busybox nslookup, ping, wget)
//! from inside sandboxes (the hidden `network sandbox` hook) or containers to the resolver on
//! 127.0.0.11 in each sandbox; plus `--dns`/`--dns-search`/`--dns-option`/`--add-host` files.
//!
//! Each test has its own root, default bridge (rbt-n<N>), subnets 10.207.<N>.0/24 (default) and
//! 10.207.<100+4N+k>.0/24 (user networks, bridges rbt-n<N>u<k>). The host's resolvers are
//! replaced (RBOX_HOST_RESOLV_CONF) by a file naming the test's own upstream, a dnsmasq on
//! 127.207.<N>.53, so no query ever leaves the machine. Drop releases the sandboxes, tears the
//! networks down (which stops the resolver) and kills the upstream, also when a test fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rbox_tests::{
    assert_passes_on_nftables_without_iptables, rbox_command, sh, DnsUpstream, Rbox, RboxCli, Run,
};

/// The resolver's address inside every sandbox on a user network.
const RESOLVER: &str = "127.0.0.11";

struct Dns {
    rbox: Rbox,
    n: u8,
    resolv_conf: PathBuf,
    upstream: Option<DnsUpstream>,
    sandboxes: std::cell::RefCell<Vec<String>>,
}

impl Dns {
    fn new(test: &str, n: u8) -> Dns {
        let rbox = Rbox::new(test);
        let resolv_conf = rbox.root.join("host-resolv.conf");
        std::fs::write(&resolv_conf, format!("nameserver 127.207.{n}.53\n")).unwrap();
        Dns {
            rbox,
            n,
            resolv_conf,
            upstream: None,
            sandboxes: Default::default(),
        }
    }

    /// Starts the test's upstream (`DnsUpstream`) on 127.207.N.53.
    fn with_upstream(mut self) -> Dns {
        self.upstream = Some(DnsUpstream::start(&format!("127.207.{}.53", self.n)));
        self
    }

    /// Creates user network `k` of this test; returns where its containers ask for names
    /// (127.0.0.11, in each sandbox).
    fn network(&self, name: &str, k: u8) -> String {
        let third = 100 + 4 * self.n + k;
        self.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.207.{third}.0/24"),
            "-o",
            &format!("com.docker.network.bridge.name=rbt-n{}u{k}", self.n),
            name,
        ]);
        RESOLVER.to_string()
    }

    fn sandbox(&self, id: &str) {
        self.ok(&["network", "sandbox", "create", id]);
        self.sandboxes.borrow_mut().push(id.to_string());
    }

    fn connect(&self, net: &str, id: &str, aliases: &[&str]) {
        let mut args = vec!["network", "sandbox", "connect"];
        for a in aliases {
            args.extend(["--alias", a]);
        }
        args.extend([net, id]);
        self.ok(&args);
    }

    fn release(&self, id: &str) {
        self.ok(&["network", "sandbox", "release", id]);
        self.sandboxes.borrow_mut().retain(|s| s != id);
    }

    fn netns(&self, id: &str) -> PathBuf {
        self.rbox.root.join("netns").join(id)
    }

    /// busybox nslookup of `name` from inside sandbox `id`, asking `server`.
    fn lookup(&self, id: &str, name: &str, server: &str) -> Run {
        sh(&format!(
            "nsenter --net={} busybox nslookup {name} {server}",
            self.netns(id).display()
        ))
    }

    /// The IPv4 addresses `name` resolves to (empty when it does not).
    fn addrs(&self, id: &str, name: &str, server: &str) -> Vec<String> {
        let out = self.lookup(id, name, server).stdout;
        let mut after_name = false;
        let mut v = Vec::new();
        for l in out.lines() {
            if l.starts_with("Name:") {
                after_name = true;
            } else if let Some(a) = l.strip_prefix("Address:").filter(|_| after_name) {
                let a = a.trim().to_string();
                if a.contains('.') && !v.contains(&a) {
                    v.push(a);
                }
            }
        }
        v
    }

    fn resolver_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.rbox.root.join("dns/resolver.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl RboxCli for Dns {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = rbox_command(&self.rbox.root, None, args);
        c.env("RBOX_DEFAULT_BRIDGE", format!("rbt-n{}", self.n))
            .env("RBOX_DEFAULT_SUBNET", format!("10.207.{}.0/24", self.n))
            .env("RBOX_HOST_RESOLV_CONF", &self.resolv_conf);
        c
    }
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Waits for a process that is not our child to be gone.
fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

impl Drop for Dns {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]).stdout;
        for id in ids.split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        for id in self.sandboxes.borrow_mut().drain(..) {
            let _ = self.run(&["network", "sandbox", "release", &id]);
        }
        let pid = self.resolver_pid();
        let _ = self.run(&["network", "teardown"]);
        if let Some(pid) = pid.filter(|p| alive(*p)) {
            // Only when teardown failed to stop it: the pid it recorded itself.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        drop(self.upstream.take());
    }
}

#[test]
fn names_short_ids_aliases_and_ptr_resolve_on_a_user_network() {
    let t = Dns::new("dns-names", 1);
    let gw = t.network("front", 0);
    let (web, cli) = (
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "f9e8d7c6b5a4938271605f4e3d2c1b0a",
    );
    t.sandbox(web);
    t.sandbox(cli);
    t.connect("front", web, &["www", "site.local"]);
    t.connect("front", cli, &[]);
    let ip = "10.207.104.2";
    for name in [web, &web[..12], "www", "site.local", "www.front", "WWW"] {
        assert_eq!(t.addrs(cli, &format!("{name}."), &gw), vec![ip], "{name}");
    }
    let r = t.lookup(cli, "nope.", &gw);
    assert!(r.stdout.contains("NXDOMAIN"), "{}{}", r.stdout, r.stderr);
    let r = t.lookup(cli, "nope.front.", &gw);
    assert!(r.stdout.contains("NXDOMAIN"), "{}", r.stdout);
    let r = t.lookup(cli, ip, &gw);
    assert!(
        r.stdout.contains(&format!("name = {web}.front")),
        "{}",
        r.stdout
    );
    // Resolver files in the root, one process, single-threaded.
    let pid = t.resolver_pid().expect("resolver pid file");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Threads:\t1\n"), "{status}");
}

#[test]
fn names_do_not_cross_networks_and_multi_network_containers_see_both() {
    let t = Dns::new("dns-isolation", 2);
    let gw_a = t.network("alpha", 0);
    let gw_b = t.network("beta", 1);
    let (a, b, both) = ("aaaa00000000aaaa", "bbbb00000000bbbb", "cccc00000000cccc");
    for id in [a, b, both] {
        t.sandbox(id);
    }
    t.connect("alpha", a, &[]);
    t.connect("beta", b, &[]);
    t.connect("alpha", both, &[]);
    t.connect("beta", both, &[]);
    let (a_ip, b_ip) = ("10.207.108.2", "10.207.109.2");
    assert!(t.addrs(a, &format!("{b}."), &gw_a).is_empty());
    assert!(t.addrs(b, &format!("{a}."), &gw_b).is_empty());
    assert!(t.addrs(a, &format!("{b}.beta."), &gw_a).is_empty());
    // The sandbox a query arrives in is the asker: a's resolver knows nothing of beta, and
    // nothing answers on beta's gateway any more.
    let r = t.lookup(a, &format!("{b}."), &gw_b);
    assert!(r.stdout.contains("NXDOMAIN"), "{}", r.stdout);
    let r = t.lookup(a, &format!("-timeout=1 -retry=0 {b}."), "10.207.109.1");
    assert!(!r.stdout.contains("10.207.109.2"), "{}", r.stdout);
    // On both networks: each name at its address on the network where it lives.
    assert_eq!(t.addrs(both, &format!("{a}."), &gw_a), vec![a_ip]);
    assert_eq!(t.addrs(both, &format!("{b}."), &gw_a), vec![b_ip]);
    assert_eq!(t.addrs(a, &format!("{both}."), &gw_a), vec!["10.207.108.3"]);
    assert_eq!(t.addrs(b, &format!("{both}."), &gw_b), vec!["10.207.109.3"]);
    // Not on the default bridge: nothing answers in its sandbox.
    let d = "dddd00000000dddd";
    t.sandbox(d);
    t.connect("bridge", d, &[]);
    let r = sh(&format!(
        "nsenter --net={} busybox nslookup -timeout=1 -retry=0 {a}. 127.0.0.11",
        t.netns(d).display()
    ));
    assert!(!r.stdout.contains(a_ip), "{}", r.stdout);
}

#[test]
fn records_change_when_commands_return_and_the_resolver_leaves_with_the_last() {
    let t = Dns::new("dns-live", 3);
    let gw = t.network("live", 0);
    let (a, b) = ("a0a0a0a0a0a0a0a0", "b0b0b0b0b0b0b0b0");
    t.sandbox(a);
    t.sandbox(b);
    t.connect("live", a, &[]);
    let pid = t
        .resolver_pid()
        .expect("resolver started by the first join");
    // No sleeps: each lookup runs right after the command returned.
    t.connect("live", b, &["late"]);
    assert_eq!(t.addrs(a, "late.", &gw), vec!["10.207.112.3"]);
    t.ok(&["network", "sandbox", "disconnect", "live", b]);
    assert!(t.addrs(a, "late.", &gw).is_empty());
    t.connect("live", b, &["again"]);
    assert_eq!(t.addrs(a, "again.", &gw), vec!["10.207.112.3"]);
    t.release(b);
    assert!(t.addrs(a, "again.", &gw).is_empty());
    assert_eq!(t.resolver_pid(), Some(pid), "one resolver throughout");
    t.release(a);
    assert!(
        wait_gone(pid),
        "resolver {pid} still running after the last endpoint left"
    );
    assert!(t.resolver_pid().is_none(), "pid file left");
    assert!(
        !t.rbox.root.join("dns/resolver.sock").exists(),
        "control socket left"
    );
}

#[test]
fn other_names_go_to_the_upstream() {
    let t = Dns::new("dns-forward", 4).with_upstream();
    let gw = t.network("fwd", 0);
    let a = "a4a4a4a4a4a4a4a4";
    t.sandbox(a);
    t.connect("fwd", a, &[]);
    assert_eq!(t.addrs(a, "www.upstream.test.", &gw), vec!["192.0.2.77"]);
    let r = t.lookup(a, "missing.example.", &gw);
    assert!(r.stdout.contains("NXDOMAIN"), "{}", r.stdout);
}

#[test]
fn resolver_killed_with_sigkill_is_restarted_by_the_next_command() {
    let t = Dns::new("dns-kill", 5);
    let gw = t.network("k", 0);
    let (a, b) = ("a5a5a5a5a5a5a5a5", "b5b5b5b5b5b5b5b5");
    t.sandbox(a);
    t.sandbox(b);
    t.connect("k", a, &[]);
    let pid = t.resolver_pid().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_gone(pid));
    t.connect("k", b, &[]);
    let new = t.resolver_pid().unwrap();
    assert_ne!(new, pid);
    assert!(alive(new));
    assert_eq!(t.addrs(b, &format!("{a}."), &gw), vec!["10.207.120.2"]);
    assert_eq!(t.addrs(a, &format!("{b}."), &gw), vec!["10.207.120.3"]);
    // `network reload` also brings it back.
    unsafe { libc::kill(new, libc::SIGKILL) };
    assert!(wait_gone(new));
    t.ok(&["network", "reload"]);
    assert_eq!(t.addrs(b, &format!("{a}."), &gw), vec!["10.207.120.2"]);
}

#[test]
fn garbage_oversized_and_floods_do_not_crash_it() {
    let t = Dns::new("dns-garbage", 6);
    let gw = t.network("g", 0);
    let (a, b) = ("a6a6a6a6a6a6a6a6", "b6b6b6b6b6b6b6b6");
    t.sandbox(a);
    t.sandbox(b);
    t.connect("g", a, &[]);
    t.connect("g", b, &[]);
    let pid = t.resolver_pid().unwrap();
    // 3000 random datagrams (0..1500 bytes), 20 of 60 KiB, a burst of valid-looking queries
    // for names it forwards (to an upstream that is not there), and TCP junk.
    let script = format!(
        r#"
import os, random, socket, struct
random.seed(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3000):
    s.sendto(os.urandom(random.randint(0, 1500)), ("{gw}", 53))
for _ in range(20):
    s.sendto(os.urandom(60000), ("{gw}", 53))
q = lambda i: struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\x01x\x07example\x00\x00\x01\x00\x01"
for i in range(2000):
    s.sendto(q(i), ("{gw}", 53))
for _ in range(20):
    c = socket.create_connection(("{gw}", 53), timeout=2)
    c.sendall(struct.pack(">H", 300) + os.urandom(300))
    c.close()
"#
    );
    let r = sh(&format!(
        "nsenter --net={} python3 -c '{}'",
        t.netns(a).display(),
        script.replace('\'', r"'\''")
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(alive(pid), "resolver died");
    assert_eq!(t.addrs(b, &format!("{a}."), &gw), vec!["10.207.124.2"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(rss_kb < 32 * 1024, "resolver RSS grew to {rss_kb} kB");
}

#[test]
fn bad_aliases_are_refused_with_one_line_and_leave_nothing() {
    let t = Dns::new("dns-bad", 7);
    t.network("bad", 0);
    let a = "a7a7a7a7a7a7a7a7";
    t.sandbox(a);
    for alias in ["bad name", "-web", "a..b", "wé"] {
        let flag = format!("--alias={alias}");
        let r = t.run(&["network", "sandbox", "connect", &flag, "bad", a]);
        assert_eq!(r.code, 1, "{alias}: {}{}", r.stderr, r.stdout);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{:?}", r.stderr);
        assert!(r.stderr.contains("not a valid DNS name"), "{}", r.stderr);
    }
    let inspect = t.ok(&["network", "inspect", "-f", "{{len .Containers}}", "bad"]);
    assert_eq!(inspect.trim(), "0");
    assert!(t.resolver_pid().is_none());
}

impl Dns {
    fn with_busybox(self) -> Dns {
        let tar = rbox_tests::image_tar("busybox");
        self.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        self
    }
}

#[test]
fn containers_resolve_names_ids_and_aliases_from_run_to_rm() {
    let t = Dns::new("dns-ctr", 8).with_busybox();
    let gw = t.network("app", 0);
    t.network("other", 1);
    let id = t
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "app",
            "--network-alias",
            "www",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    // Right after `run -d` returned: name, short id, alias; ping and wget by name.
    let script = format!(
        "nslookup web && nslookup {} && nslookup www && ping -c1 -W2 www && wget -q -O- http://web/hostname && cat /etc/resolv.conf",
        &id[..12]
    );
    let out = t.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.matches("Address: 10.207.132.2").count(), 3, "{out}");
    assert!(out.contains(&id[..12]), "hostname over http by name: {out}");
    assert!(out.contains(&format!("nameserver {gw}\n")), "{out}");
    assert!(out.contains("options ndots:0"), "{out}");
    // Another network does not see it.
    let r = t.run(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "nslookup",
        "web",
    ]);
    assert!(!r.stdout.contains("10.207.132.2"), "{}", r.stdout);
    // connect/disconnect: visible from `other` under its new alias, then not.
    t.ok(&["network", "connect", "--alias", "web2", "other", "web"]);
    let out = t.ok(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "nslookup",
        "web2",
    ]);
    assert!(out.contains("Address: 10.207.133.2"), "{out}");
    t.ok(&["network", "disconnect", "other", "web"]);
    let r = t.run(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "nslookup",
        "web2",
    ]);
    assert!(!r.stdout.contains("10.207.133.2"), "{}", r.stdout);
    // Gone as soon as rm returns, and the resolver leaves with the last container.
    let pid = t.resolver_pid().expect("resolver running");
    t.ok(&["rm", "-f", "web"]);
    assert!(
        wait_gone(pid),
        "resolver left running after the last container"
    );
    let r = t.run(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "nslookup",
        "web",
    ]);
    assert!(!r.stdout.contains("10.207.132.2"), "{}", r.stdout);
    assert!(
        r.stdout.contains("NXDOMAIN") || r.stdout.contains("can't find"),
        "{}",
        r.stdout
    );
}

#[test]
fn dns_flags_and_extra_hosts_are_written_and_dns_is_the_upstream() {
    let t = Dns::new("dns-flags", 9).with_upstream().with_busybox();
    // The host's resolver is somewhere nothing listens: only --dns can reach the upstream.
    std::fs::write(&t.resolv_conf, "nameserver 127.207.9.54\n").unwrap();
    let out = t.ok(&[
        "run",
        "--rm",
        "--dns",
        "192.0.2.1",
        "--dns",
        "2001:db8::1",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:3",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--add-host",
        "v6=fd00::5",
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
    ]);
    assert!(
        out.contains(
            "nameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch example.test\noptions ndots:3\n"
        ),
        "{out}"
    );
    for line in ["10.1.2.3\tdb\n", "10.207.9.1\tgw\n", "fd00::5\tv6\n"] {
        assert!(out.contains(line), "{line:?} missing: {out}");
    }
    let gw = t.network("fwd", 0);
    let out = t.ok(&[
        "run",
        "--rm",
        "--network",
        "fwd",
        "--dns",
        "127.207.9.53",
        "--dns-search",
        "upstream.test",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup -type=a www.upstream.test",
    ]);
    assert!(
        out.contains(&format!(
            "nameserver {gw}\nsearch upstream.test\noptions ndots:0\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("Address: 192.0.2.77"),
        "forwarded to --dns: {out}"
    );
    let id = t.ok(&[
        "create",
        "--dns",
        "192.0.2.9",
        "--add-host",
        "a:1.2.3.4",
        "busybox",
    ]);
    let v = t.ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Dns}} {{json .HostConfig.ExtraHosts}}",
        id.trim(),
    ]);
    assert_eq!(v.trim(), r#"["192.0.2.9"] ["a:1.2.3.4"]"#);
}

#[test]
fn bad_dns_flags_are_one_line_and_leave_no_container() {
    let t = Dns::new("dns-badflags", 10).with_busybox();
    t.network("b", 0);
    for bad in [
        &["--dns", "nope"][..],
        &["--dns", "1.2.3"],
        &["--add-host", "db"],
        &["--add-host", "db:1.2.3"],
        &["--add-host", "bad name:1.2.3.4"],
        &["--network", "b", "--network-alias", "bad name"],
        &["--dns-search", "bad domain!"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(bad);
        args.extend(["busybox", "true"]);
        let r = t.run(&args);
        assert_eq!(r.code, 125, "{bad:?}: {}{}", r.stderr, r.stdout);
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{bad:?}: {:?}",
            r.stderr
        );
        assert!(r.stderr.starts_with("Error: "), "{:?}", r.stderr);
    }
    assert_eq!(t.ok(&["ps", "-aq"]).trim(), "");
    assert!(t.resolver_pid().is_none());
}

#[test]
fn aaaa_answers_and_the_ipv6_gateway_on_ipv6_networks() {
    let t = Dns::new("dns-v6", 11);
    t.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.207.144.0/24",
        "--subnet",
        "fd07:207:11::/64",
        "-o",
        "com.docker.network.bridge.name=rbt-n11u0",
        "six",
    ]);
    let (a, b) = ("a1a1a1a1a1a1a1a1", "b1b1b1b1b1b1b1b1");
    for id in [a, b] {
        t.sandbox(id);
        t.connect("six", id, &[]);
    }
    let r = t.lookup(a, &format!("-type=aaaa {b}."), RESOLVER);
    assert!(r.stdout.contains("Address: fd07:207:11::3"), "{}", r.stdout);
    assert_eq!(t.addrs(a, &format!("{b}."), RESOLVER), vec!["10.207.144.3"]);
}

/// The tests above once more on the nftables backend, on a "host" without any iptables tool
/// (a private mount and network namespace): names, internal networks and their isolation must
/// not depend on the host's firewall backend.
#[test]
fn the_file_passes_on_nftables_without_iptables() {
    assert_passes_on_nftables_without_iptables("the_file_passes_on_nftables_without_iptables", 11);
}
