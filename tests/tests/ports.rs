//! Published ports against the real kernel: DNAT from loopback, the host's own address (the
//! bridge gateway), a "remote" host in a netns of the test's own, sibling and hairpin paths,
//! UDP, ranges, ephemeral ports, reservations, stale rules of a killed holder, and many
//! publishers at once.
//!
//! Each test has its own root, default bridge (rbt-pN), subnet 10.205.N.0/24 and host ports
//! 18N1-18N9 (N = 11..22; 18160-18179 and 18300-18319 for the two parallel tests), or for the
//! port-path tests of issue 11 (cross-network, IPv6 of IPv4 containers, mixed local sources,
//! bridge takeover, refused runs) rbt-fN, 10.180.N.0/24 and 19001-19099, and checks that no
//! rule, record or reservation is left. Sandbox-level tests use the hidden
//! `rbox network sandbox publish`, which plays the monitor (it holds the reservation until its
//! stdin closes), with busybox httpd or a UDP responder inside the sandbox; container tests use
//! `run -p/-P`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbox_tests::{assert_passes_on_nftables_without_iptables, sh, Backend, NetFixture, RboxCli};
use serde_json::Value;

struct Net {
    fx: NetFixture,
    n: u8,
    /// The first two octets of its subnets: 10.205 (rbt-pN), or 10.180 (rbt-fN, section 5's).
    net16: &'static str,
    children: std::cell::RefCell<Vec<Child>>,
}

impl std::ops::Deref for Net {
    type Target = NetFixture;
    fn deref(&self) -> &NetFixture {
        &self.fx
    }
}

impl std::ops::DerefMut for Net {
    fn deref_mut(&mut self) -> &mut NetFixture {
        &mut self.fx
    }
}

impl Net {
    fn new(test: &str, n: u8) -> Net {
        Net {
            fx: NetFixture::new(test, format!("rbt-p{n}"), format!("10.205.{n}.0/24")),
            n,
            net16: "10.205",
            children: Default::default(),
        }
    }

    /// With the busybox image imported as `busybox:latest`.
    fn with_busybox(self) -> Net {
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

    /// Like `new`, with bridge rbt-fN and subnet 10.180.N.0/24 (N = 60..79).
    fn ours(test: &str, n: u8) -> Net {
        Net {
            fx: NetFixture::new(test, format!("rbt-f{n}"), format!("10.180.{n}.0/24")),
            n,
            net16: "10.180",
            children: Default::default(),
        }
    }

    /// Like `new`, but rbox runs inside a fresh network namespace of its own.
    fn in_netns(test: &str, n: u8) -> Net {
        let mut net = Net::new(test, n);
        net.enter_netns(format!("rbt-pns{n}-{}", std::process::id()));
        net
    }

    /// A 12-character sandbox id unique to this test, process and `k`.
    fn sid(&self, k: u32) -> String {
        format!("{:02}{:02}{:08x}", self.n, k, std::process::id())
    }

    fn gateway(&self) -> String {
        format!("{}.{}.1", self.net16, self.n)
    }

    /// A sandbox on `net`; returns its IP.
    fn sandbox(&self, id: &str, net: &str) -> String {
        self.ok(&["network", "sandbox", "create", id]);
        self.sandboxes.borrow_mut().push(id.to_string());
        let v: Value =
            serde_json::from_str(&self.ok(&["network", "sandbox", "connect", net, id])).unwrap();
        v["IPAddress"].as_str().unwrap().to_string()
    }

    fn spawn(&self, mut c: Command) -> u32 {
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        self.children.borrow_mut().push(child);
        pid
    }

    /// busybox httpd on `port` inside sandbox `id`, serving `body`; returns once it answers.
    fn httpd(&self, id: &str, port: u16, body: &str) {
        let dir = self.rbox.root.join(format!("www-{id}-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), body).unwrap();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path(id).display()))
            .args(["busybox", "httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(&dir);
        self.spawn(c);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .exec(
                id,
                &format!("curl -s --max-time 1 http://127.0.0.1:{port}/"),
            )
            .code
            != 0
        {
            assert!(Instant::now() < deadline, "httpd in {id} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A UDP server inside sandbox `id` answering every datagram with `reply`, on a thread of
    /// this test that entered the sandbox; it ends once the sandbox is released.
    fn udp_responder(&self, id: &str, port: u16, reply: &'static str) {
        use std::os::fd::AsRawFd;
        let path = self.netns_path(id);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: setns changes only this thread's network namespace.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            drop(f);
            let s = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 512];
            while path.exists() {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(reply.as_bytes(), from);
                }
            }
        });
        rx.recv().unwrap();
    }

    /// Publishes for sandbox `id` and holds the reservation (the monitor's part) until
    /// `release_hold`; returns the holder and the bindings.
    fn publish(&self, id: &str, args: &[&str]) -> (Child, Value) {
        let mut all = vec!["network", "sandbox", "publish"];
        all.extend_from_slice(args);
        all.push(id);
        let mut child = self
            .command(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "publish {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (child, serde_json::from_str(&line).unwrap())
    }

    /// The lines of rbox's rules (both families) that mention `word` (empty when none do).
    fn rules_of(&self, word: &str) -> Vec<String> {
        self.rules()
            .lines()
            .filter(|l| l.contains(word))
            .map(str::to_string)
            .collect()
    }

    /// Asserts that nothing of sandbox `id`'s ports is left: rules, record, reservation.
    fn assert_unpublished(&self, id: &str, host_ports: &[u16]) {
        let left = self.rules_of(&id[..12]);
        assert!(left.is_empty(), "rules left for {id}: {left:?}");
        assert!(
            !self.rbox.root.join(format!("ports/{id}.json")).exists(),
            "ports record left for {id}"
        );
        for p in host_ports {
            // Bindable again: no reservation remains (rbox's sockets do not share ports).
            let free = std::net::TcpListener::bind(("0.0.0.0", *p));
            assert!(free.is_ok(), "port {p} still reserved: {free:?}");
        }
    }

    /// Releases every sandbox, tears the networks down and checks nothing port-related is left.
    fn clean_and_check(&self) {
        // Servers inside a sandbox keep its namespace, and so its veth on the bridge, alive.
        for c in self.children.borrow_mut().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for id in self.sandboxes.borrow_mut().drain(..) {
            self.ok(&["network", "sandbox", "release", &id]);
            self.assert_unpublished(&id, &[]);
        }
        // `network teardown` leaves a bridge that still has ports (another root may use it);
        // a UDP responder thread lets go of its sandbox within 200 ms.
        let brif = format!("/sys/class/net/{}/brif", self.bridge);
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::fs::read_dir(&brif).is_ok_and(|mut d| d.next().is_some())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ok(&["network", "teardown"]);
        assert!(
            self.sh(&format!("ip link show {}", self.bridge)).code != 0,
            "bridge {} left",
            self.bridge
        );
        let rules = self.rules();
        let (fw, subnet) = (Backend::current(), self.subnet.as_str());
        assert!(
            !(rules.contains(&fw.names_interface(&self.bridge))
                || fw == Backend::Iptables && rules.contains(subnet)),
            "rules of {} left:\n{rules}",
            self.bridge
        );
        let left = std::fs::read_dir(self.rbox.root.join("ports"))
            .map(|d| d.flatten().count())
            .unwrap_or(0);
        assert_eq!(left, 0, "ports records left");
    }
}

/// The whole suite once more on the nftables backend, on a "host" without any iptables tool:
/// this binary re-run in a private mount and network namespace where every `*tables*` binary is
/// hidden, with rbox left to choose (auto must pick nftables) and the tests inspecting nft's
/// rules. Skipped inside that run.
#[test]
fn whole_suite_on_nftables_without_iptables() {
    assert_passes_on_nftables_without_iptables("whole_suite_on_nftables_without_iptables", 19);
}

/// Inside the nftables run: the host offers no iptables, and rbox's rules are nft's.
#[test]
fn the_backend_is_what_the_host_offers() {
    match Backend::current() {
        Backend::Iptables => {
            assert_eq!(
                sh("iptables-save -t nat").code,
                0,
                "no iptables on this host"
            );
        }
        Backend::Nftables => {
            assert_ne!(sh("iptables-save").code, 0, "iptables not hidden");
            let n = Net::ours("ports-which", 70);
            let a = n.sid(1);
            n.sandbox(&a, "bridge");
            assert!(n.rules().contains("table inet rbox"), "{}", n.rules());
            n.clean_and_check();
        }
    }
}

// ---- Section 5 of issue 11: the published-port path (bridges rbt-f6N, 10.180.6N.0/24 and
// 10.180.16N.0/24, host ports 19001-19099).

impl Net {
    /// Waits (5 s at most) until the proxies container `id`'s record names have exited: they
    /// die with their holder, but a moment after it (what holds `[::]` of its ports).
    fn wait_proxies_gone(&self, id: &str) {
        let rec = self.rbox.root.join(format!("ports/{id}.json"));
        let Ok(bytes) = std::fs::read(rec) else {
            return;
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        for p in v["proxies"].as_array().into_iter().flatten() {
            let pid = p["pid"].as_i64().unwrap();
            while proc_state(pid).is_some_and(|s| s != 'Z') {
                assert!(Instant::now() < deadline, "proxy {pid} outlived its holder");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Every rule rbox's backend shows in this test's namespace (both families).
    fn rules(&self) -> String {
        self.sh(Backend::current().dump_cmd()).stdout
    }

    /// Whether rbox has IPv6 port rules for container `short`.
    fn v6_rules_of(&self, short: &str) -> bool {
        match Backend::current() {
            Backend::Iptables => self.sh("ip6tables-save").stdout.contains(short),
            // Only dnat6 and published6 list IPv6 keys, and only elements name chains.
            Backend::Nftables => self.rules().lines().any(|l| {
                l.contains("elements = ")
                    && l.contains("::")
                    && (l.contains(&format!("jump dnat-{short}"))
                        || l.contains(&format!("jump fwd-{short}")))
            }),
        }
    }

    /// A TCP server inside sandbox `id` that answers "ok" and closes first (so the container,
    /// not the client, holds each connection's TIME_WAIT), recording its clients' addresses;
    /// it ends once the sandbox is released.
    fn closer(
        &self,
        id: &str,
        port: u16,
    ) -> std::sync::Arc<std::sync::Mutex<Vec<std::net::IpAddr>>> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let seen: std::sync::Arc<std::sync::Mutex<Vec<std::net::IpAddr>>> = Default::default();
        let (path, out) = (self.netns_path(id), seen.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: setns changes only this thread's network namespace.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            drop(f);
            let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: SO_RCVTIMEO (accept's timeout) on a socket we own, properly sized.
            unsafe {
                libc::setsockopt(
                    l.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            tx.send(()).unwrap();
            while path.exists() {
                if let Ok((mut c, from)) = l.accept() {
                    let _ = c.write_all(b"ok");
                    let mut seen = out.lock().unwrap();
                    if !seen.contains(&from.ip()) {
                        seen.push(from.ip());
                    }
                }
            }
        });
        rx.recv().unwrap();
        seen
    }
}

/// Runs `f` on a thread inside network namespace `ns` (a name under /run/netns).
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns changes only this thread's network namespace.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
}

/// A container reaches a port that a container on another network publishes through the host's
/// address, in both directions, as with Docker; direct traffic between the networks stays
/// blocked, and a container on an internal network reaches no published port.
#[test]
fn published_ports_are_reached_from_other_networks_through_the_host() {
    let n = Net::ours("ports-xnet", 60);
    for (name, k, internal) in [("xa60", 61, false), ("xb60", 62, false), ("xi60", 63, true)] {
        let (subnet, bridge) = (
            format!("10.180.{k}.0/24"),
            format!("com.docker.network.bridge.name=rbt-f{k}"),
        );
        let mut args = vec!["network", "create", "--subnet", &subnet, "-o", &bridge];
        if internal {
            args.push("--internal");
        }
        args.push(name);
        n.ok(&args);
    }
    let (a, b, i) = (n.sid(1), n.sid(2), n.sid(3));
    let ip_a = n.sandbox(&a, "xa60");
    n.sandbox(&b, "xb60");
    n.sandbox(&i, "xi60");
    n.httpd(&a, 80, "from-a");
    n.httpd(&b, 80, "from-b");
    let get = |id: &str, url: &str, wait: u32| {
        let r = n.exec(id, &format!("curl -sS --max-time {wait} {url}"));
        (r.code == 0).then_some(r.stdout)
    };
    assert_eq!(
        get(&b, "http://10.180.62.1:19001/", 1),
        None,
        "must be able to fail"
    );
    let (ha, _) = n.publish(&a, &["-p", "19001:80"]);
    let (hb, _) = n.publish(&b, &["-p", "19002:80"]);
    for (from, url, want) in [
        (&b, "http://10.180.62.1:19001/", "from-a"),
        (&b, "http://10.180.61.1:19001/", "from-a"),
        (&a, "http://10.180.61.1:19002/", "from-b"),
        (&a, "http://10.180.62.1:19002/", "from-b"),
    ] {
        assert_eq!(get(from, url, 3).as_deref(), Some(want), "{from} -> {url}");
    }
    assert_eq!(
        get(&b, &format!("http://{ip_a}:80/"), 1),
        None,
        "direct traffic between networks"
    );
    assert_eq!(
        get(&i, "http://10.180.63.1:19001/", 1),
        None,
        "from an internal network"
    );
    release_hold(ha);
    release_hold(hb);
    for id in n.sandboxes.borrow_mut().drain(..) {
        n.ok(&["network", "sandbox", "release", &id]);
        n.assert_unpublished(&id, &[19001, 19002]);
    }
    for net in ["xa60", "xb60", "xi60"] {
        n.ok(&["network", "rm", net]);
    }
    let rules = n.rules();
    for k in 61..=63 {
        assert!(
            !rules.contains(&format!("rbt-f{k} ")),
            "rules of rbt-f{k} left:\n{rules}"
        );
    }
    n.clean_and_check();
}

/// An upstream host for a test running in its own namespace `ns`: a netns behind a veth whose
/// host end has 10.180.N.1/24 (N = 100 + `k`), answering TCP on 8000 with the client's address.
struct Upstream {
    ns: String,
}

impl Upstream {
    fn new(host_ns: &str, k: u8) -> Upstream {
        let ns = format!("rbt-fup{k}-{}", std::process::id());
        let n = 100 + k;
        let r = sh(&format!(
            "ip netns add {ns} && ip -n {host_ns} link add rbt-fup{k} type veth peer name eth0 netns {ns} && \
             ip -n {host_ns} addr add 10.180.{n}.1/24 dev rbt-fup{k} && ip -n {host_ns} link set rbt-fup{k} up && \
             ip -n {ns} link set lo up && ip -n {ns} addr add 10.180.{n}.2/24 dev eth0 && \
             ip -n {ns} link set eth0 up && ip -n {ns} route add default via 10.180.{n}.1"
        ));
        let up = Upstream { ns };
        assert_eq!(r.code, 0, "{}", r.stderr);
        // A server that writes the peer's address and closes. (socat's SYSTEM:echo lost its
        // output now and then under load: socat may end on the child's exit before it copies
        // what the child wrote, an empty reply.) Ready once it listens, not after a sleep.
        let r = sh(&format!(
            "ip netns exec {} python3 -c '{UPSTREAM_PY}' >/dev/null 2>&1 & \
             for i in $(seq 50); do ip netns exec {} ss -Hltn sport = :8000 | grep -q . && exit 0; \
             sleep 0.1; done; exit 1",
            up.ns, up.ns
        ));
        assert_eq!(r.code, 0, "{}", r.stderr);
        up
    }
}

/// The upstream's server: answers every request with the address it came from (it reads the
/// request first: a close with unread data would be a reset, not the answer).
const UPSTREAM_PY: &str = "import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"0.0.0.0\", 8000))
s.listen(64)
while True:
    c, a = s.accept()
    c.recv(4096)
    c.sendall((a[0] + \"\\n\").encode())
    c.close()
";

impl Drop for Upstream {
    fn drop(&mut self) {
        // Its socat goes with the namespace's last process: kill them by the namespace.
        sh(&format!(
            "for p in $(ip netns pids {0}); do kill $p; done; ip netns del {0}",
            self.ns
        ));
    }
}

/// An admin's flush of every rule (`nft flush ruleset`; for iptables every chain of filter and
/// nat) breaks published ports and the network's rules; `network reload` brings all of rbox's
/// rules back from its state. Outbound traffic is masqueraded before and after. In a namespace
/// of the test's own.
#[test]
fn reload_restores_everything_after_the_whole_ruleset_is_flushed() {
    let mut n = Net::ours("ports-flush", 71);
    let ns = format!("rbt-fns71-{}", std::process::id());
    n.enter_netns(ns.clone());
    let up = Upstream::new(&ns, 71);
    let (a, b) = (n.sid(1), n.sid(2));
    n.sandbox(&a, "bridge");
    let ip_b = n.sandbox(&b, "bridge");
    n.httpd(&a, 80, "flushed");
    let (holder, _) = n.publish(&a, &["-p", "19061:80"]);
    let get = || n.sh("curl -sS --max-time 2 http://127.0.0.1:19061/").stdout;
    // The address the upstream sees b's connection come from.
    let outbound = || {
        let r = n.exec(
            &b,
            "curl -sS --http0.9 --max-time 8 http://10.180.171.2:8000/",
        );
        format!("{}{}", r.stdout.trim(), r.stderr.trim())
    };
    assert_eq!(get(), "flushed");
    assert_eq!(
        outbound(),
        "10.180.171.1",
        "masqueraded to the host's address"
    );
    let flush = match Backend::current() {
        Backend::Iptables => "for t in filter nat; do iptables -t $t -F && iptables -t $t -X; done",
        Backend::Nftables => "nft flush ruleset",
    };
    assert_eq!(n.sh(flush).code, 0);
    assert_eq!(get(), "", "flushed rules must break the port");
    assert_eq!(outbound(), ip_b, "the flush must undo masquerade");
    n.ok(&["network", "reload"]);
    assert_eq!(get(), "flushed", "after reload");
    assert_eq!(outbound(), "10.180.171.1", "masqueraded after reload");
    // The network's rules are back too: b reaches a's port through the gateway (hairpin
    // masquerade on the bridge).
    let sib = n.exec(&b, "curl -sS --max-time 2 http://10.180.71.1:19061/");
    assert_eq!(sib.stdout, "flushed", "{}", sib.stderr);
    let hair = n.exec(&a, "curl -sS --max-time 2 http://10.180.71.1:19061/");
    assert_eq!(hair.stdout, "flushed", "{}", hair.stderr);
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    n.clean_and_check();
    drop(up);
}

/// `-p H:C` of a container with only IPv4 is also served on `[::]` (so on ::1) by the
/// container's one proxy, as Docker's docker-proxy does; `[::1]:H:C` reaches it too; UDP keeps
/// to IPv4. Everything goes with the container.
#[test]
fn ipv4_only_container_is_served_on_ipv6_loopback_too() {
    let n = Net::ours("ports-v4on6", 64).with_busybox();
    let c = Ctrs(&n);
    let id = n
        .ok(&[
            "run",
            "-d",
            "-p",
            "19011:80",
            "-p",
            "[::1]:19012:80",
            "-p",
            "19013:53/udp",
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
    let short = &id[..12];
    assert_eq!(
        curl_wait("http://127.0.0.1:19011/hostname")
            .as_deref()
            .map(str::trim),
        Some(short)
    );
    for url in [
        "-g http://[::1]:19011/hostname",
        "-g http://[::1]:19012/hostname",
    ] {
        assert_eq!(curl(url).as_deref().map(str::trim), Some(short), "{url}");
    }
    assert_eq!(
        n.ok(&["ps", "--format", "{{.Ports}}"]).trim(),
        "0.0.0.0:19011->80/tcp, [::]:19011->80/tcp, [::1]:19012->80/tcp, 0.0.0.0:19013->53/udp"
    );
    assert_eq!(
        n.inspect_ctr(&id)["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": "19011"},
                           {"HostIp": "::", "HostPort": "19011"},
                           {"HostIp": "::1", "HostPort": "19012"}])
    );
    // One proxy serves both IPv6 listeners; the kernel has no IPv6 rule for the container.
    let rec: Value = serde_json::from_slice(
        &std::fs::read(n.rbox.root.join(format!("ports/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["proxies"].as_array().map(Vec::len), Some(1), "{rec}");
    let pid = proxy_pid(&n, &id);
    assert!(!n.v6_rules_of(short), "IPv6 rules for an IPv4 container");
    assert!(
        std::net::TcpListener::bind("[::]:19011").is_err(),
        "[::]:19011 not held"
    );
    let udp = sh("ss -Hlun 'sport = :19013'").stdout;
    assert!(
        udp.contains("0.0.0.0:19013") && !udp.contains("]:19013"),
        "UDP is held on IPv4 only: {udp}"
    );
    n.ok(&["rm", "-f", &id]);
    assert!(
        matches!(proc_state(pid), None | Some('Z')),
        "proxy {pid} left"
    );
    n.assert_ctr_unpublished(&id, &[19011, 19012]);
    for p in ["[::]:19011", "[::1]:19012"] {
        assert!(std::net::TcpListener::bind(p).is_ok(), "{p} still held");
    }
    drop(c);
    n.clean_and_check();
}

/// Many short connections at once from 127.0.0.1 and from another address of the host: only
/// loopback is masqueraded, so the container sees the host's address as the client's, and the
/// two kinds never share one masqueraded address whose reused ports meet the container's
/// TIME_WAITs (each such meeting costs a 1 s SYN retransmit: ~7000 req/s fell to ~580).
#[test]
fn mixed_local_sources_keep_their_address_and_never_stall() {
    let mut n = Net::ours("ports-mixed", 65);
    let ns = format!("rbt-fns65-{}", std::process::id());
    n.enter_netns(ns.clone());
    // The host's own non-loopback address (eth0's role), in the test's namespace.
    // conntrack forgets closed flows after 1 s instead of 120 (what a busy table's early drop
    // of closing entries does), while the container keeps its TIME_WAITs for 60 s: a source
    // port a masqueraded flow used comes back into use at once.
    let r = n.sh("ip addr add 10.180.165.1/32 dev lo && \
         sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = n.sid(1);
    n.sandbox(&a, "bridge");
    let seen = n.closer(&a, 80);
    let (holder, _) = n.publish(&a, &["-p", "19021:80"]);
    let clients: Vec<_> = (0..8)
        .map(|t| {
            in_netns(&ns, move || {
                use std::io::Read;
                let dst: std::net::IpAddr = if t % 2 == 0 {
                    "127.0.0.1".parse().unwrap()
                } else {
                    "10.180.165.1".parse().unwrap()
                };
                let mut worst = Duration::ZERO;
                for _ in 0..4000 {
                    let t0 = Instant::now();
                    let mut s = std::net::TcpStream::connect_timeout(
                        &(dst, 19021).into(),
                        Duration::from_secs(5),
                    )
                    .unwrap();
                    let mut body = String::new();
                    s.read_to_string(&mut body).unwrap();
                    assert_eq!(body, "ok");
                    worst = worst.max(t0.elapsed());
                }
                worst
            })
        })
        .collect();
    let worst = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .max()
        .unwrap();
    assert!(
        worst < Duration::from_millis(500),
        "a connection took {worst:?}: SYN retransmits"
    );
    let mut peers = seen.lock().unwrap().clone();
    peers.sort();
    assert_eq!(
        peers,
        [
            "10.180.65.1".parse::<std::net::IpAddr>().unwrap(),
            "10.180.165.1".parse().unwrap()
        ],
        "loopback masqueraded to the gateway, the host's address kept"
    );
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    n.clean_and_check();
}

/// A root whose directory went away without `system prune` leaves its bridge and its rules; the
/// next root to use that bridge name takes the idle bridge over and removes those rules — its
/// network's and its containers' ports — along with it.
#[test]
fn taking_over_an_idle_bridge_removes_the_old_roots_rules() {
    let a = Net::ours("ports-takeover-a", 66);
    let mut b = Net::ours("ports-takeover-b", 67);
    b.fx.bridge = a.bridge.clone();
    let sa = a.sid(1);
    a.sandbox(&sa, "bridge");
    let v: Value = serde_json::from_str(&a.ok(&["network", "inspect", "bridge"])).unwrap();
    let a_net = v[0]["Id"].as_str().unwrap()[..12].to_string();
    let (mut holder, _) = a.publish(&sa, &["-p", "19031:80"]);
    // Its monitor killed, then its root deleted: nobody is left to remove a's rules.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let path = std::ffi::CString::new(a.netns_path(&sa).to_str().unwrap()).unwrap();
    // SAFETY: umount2 with a valid C string.
    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    a.sandboxes.borrow_mut().clear();
    std::fs::remove_dir_all(&a.rbox.root).unwrap();
    let brif = format!("/sys/class/net/{}/brif", a.bridge);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&brif).unwrap().next().is_some() {
        assert!(Instant::now() < deadline, "a's veth stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = a.rules();
    for word in [a_net.as_str(), &sa[..12], "10.180.66.0/"] {
        assert!(
            before.contains(word),
            "{word} not in the rules to begin with:\n{before}"
        );
    }
    let sb = b.sid(1);
    assert_eq!(b.sandbox(&sb, "bridge"), "10.180.67.2");
    let after = b.rules();
    for word in [a_net.as_str(), &sa[..12], "10.180.66.0/"] {
        assert!(
            !after.contains(word),
            "{word} left after the takeover:\n{after}"
        );
    }
    assert!(
        after.contains("10.180.67.0/"),
        "b's rules missing:\n{after}"
    );
    b.clean_and_check();
}

/// `run -p` of a port already allocated fails before any link exists: at the moment the
/// command returns there is no veth of it (the kernel frees a released namespace's veths only
/// later), no sandbox and no lease.
#[test]
fn refused_run_leaves_no_link_even_for_a_moment() {
    let n = Net::ours("ports-refused", 68).with_busybox();
    let c = Ctrs(&n);
    n.ok(&[
        "run", "-d", "--name", "holder", "-p", "19041:80", "busybox", "sleep", "60",
    ]);
    let brif = format!("/sys/class/net/{}/brif", n.bridge);
    let ports = || std::fs::read_dir(&brif).unwrap().count();
    // A veth is made on its bridge (IFLA_MASTER at creation), so the bridge's ports show any.
    let p0 = ports();
    assert_eq!(p0, 1);
    for _ in 0..5 {
        let err = n.bad(&["run", "-d", "-p", "19041:80", "busybox", "sleep", "60"]);
        assert!(err.contains("port is already allocated"), "{err}");
        assert_eq!(ports(), p0, "a veth of the refused run is on the bridge");
        let netns = std::fs::read_dir(n.rbox.root.join("netns"))
            .unwrap()
            .count();
        assert_eq!(netns, 1, "a sandbox of the refused run is left");
    }
    assert_eq!(n.all_ids().len(), 1);
    drop(c);
    n.clean_and_check();
}

impl Drop for Net {
    fn drop(&mut self) {
        // Servers first, so the fixture's teardown finds the bridges free.
        for c in self.children.borrow_mut().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stops a holder cleanly (its stdin closes, it exits, the ports are free again).
fn release_hold(mut child: Child) {
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "holder failed: {status:?}");
}

fn curl(url: &str) -> Option<String> {
    let r = sh(&format!("curl -sS --max-time 3 {url}"));
    (r.code == 0).then_some(r.stdout)
}

/// A "remote" host: its own netns behind a veth pair, routed to the host without giving the
/// host any address (it reaches the host through the bridge gateway's address, which the host
/// answers ARP for on every interface).
struct Remote {
    ns: String,
    veth: String,
}

impl Remote {
    fn new(n: u8, gateway: &str) -> Remote {
        let ns = format!("rbt-prm{n}-{}", std::process::id());
        let veth = format!("rbt-prv{n}");
        let me = format!("10.205.{}.2", 200 + n);
        let r = sh(&format!(
            "ip netns add {ns} && ip link add {veth} type veth peer name uplink netns {ns} && \
             ip link set {veth} up && ip route add {me}/32 dev {veth} && \
             ip -n {ns} link set lo up && ip -n {ns} link set uplink up && \
             ip -n {ns} addr add {me}/32 dev uplink && ip -n {ns} route add {gateway}/32 dev uplink && \
             ip -n {ns} route add default via {gateway} dev uplink"
        ));
        let remote = Remote { ns, veth };
        assert_eq!(r.code, 0, "{}", r.stderr);
        remote
    }

    fn curl(&self, url: &str) -> Option<String> {
        let r = sh(&format!(
            "ip netns exec {} curl -sS --max-time 3 {url}",
            self.ns
        ));
        (r.code == 0).then_some(r.stdout)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        sh(&format!(
            "ip link del {} 2>/dev/null; ip netns del {}",
            self.veth, self.ns
        ));
    }
}

#[test]
fn tcp_port_from_loopback_host_address_remote_sibling_and_hairpin() {
    let n = Net::new("ports-paths", 11);
    let (a, b) = (n.sid(1), n.sid(2));
    let ip_a = n.sandbox(&a, "bridge");
    n.sandbox(&b, "bridge");
    n.httpd(&a, 80, "hello-from-a");
    assert!(
        curl("http://127.0.0.1:18111/").is_none(),
        "the test must be able to fail"
    );
    let (holder, bindings) = n.publish(&a, &["-p", "18111:80"]);
    assert_eq!(
        bindings,
        serde_json::json!([{"host_ip": "0.0.0.0", "host_port": 18111, "container_port": 80, "proto": "tcp"},
                           {"host_ip": "::", "host_port": 18111, "container_port": 80, "proto": "tcp"}])
    );
    let gw = n.gateway();
    assert_eq!(
        curl("http://127.0.0.1:18111/").as_deref(),
        Some("hello-from-a"),
        "via 127.0.0.1"
    );
    assert_eq!(
        curl("http://127.0.0.5:18111/").as_deref(),
        Some("hello-from-a"),
        "via 127.0.0.5"
    );
    assert_eq!(
        curl(&format!("http://{gw}:18111/")).as_deref(),
        Some("hello-from-a"),
        "via the host's address"
    );
    let remote = Remote::new(11, &gw);
    assert_eq!(
        remote.curl(&format!("http://{gw}:18111/")).as_deref(),
        Some("hello-from-a"),
        "from a remote host"
    );
    let sib = n.exec(&b, &format!("curl -sS --max-time 3 http://{gw}:18111/"));
    assert_eq!(sib.stdout, "hello-from-a", "from a sibling: {}", sib.stderr);
    let hair = n.exec(&a, &format!("curl -sS --max-time 3 http://{gw}:18111/"));
    assert_eq!(hair.stdout, "hello-from-a", "hairpin: {}", hair.stderr);
    // The kernel does it all: nothing listens on the host port, the reservation only binds.
    let listening = n.sh("cat /proc/net/tcp").stdout;
    assert!(
        !listening.contains(&format!(":{:04X} 00000000:0000 0A", 18111)),
        "a listener on the host port"
    );
    // A second publisher of the port is refused while the first holds it.
    let err = n.bad(&["network", "sandbox", "publish", "-p", "18111:80", &b]);
    assert!(
        err.contains("Bind for 0.0.0.0:18111 failed: port is already allocated"),
        "{err}"
    );
    // Flushed rules come back with `network reload`, from the networks' and ports' records.
    // Its DNAT chain only: other tests' rules share the namespace (a whole flush is tested in
    // reload_restores_everything_after_the_whole_ruleset_is_flushed).
    let flush = match Backend::current() {
        Backend::Iptables => format!("iptables -t nat -F RBOX-P-{}", &a[..12]),
        Backend::Nftables => format!("nft flush chain inet rbox dnat-{}", &a[..12]),
    };
    assert_eq!(n.sh(&flush).code, 0);
    assert!(
        curl("http://127.0.0.1:18111/").is_none(),
        "flushed DNAT must break it"
    );
    n.ok(&["network", "reload"]);
    assert_eq!(
        curl("http://127.0.0.1:18111/").as_deref(),
        Some("hello-from-a"),
        "after reload"
    );
    assert!(!n.rules_of(&a[..12]).is_empty());
    let _ = ip_a;
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    n.assert_unpublished(&a, &[18111]);
    assert!(curl("http://127.0.0.1:18111/").is_none(), "unpublished");
    drop(remote);
    n.clean_and_check();
}

#[test]
fn icc_false_network_and_host_binding_option() {
    let n = Net::new("ports-icc", 12);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.205.112.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-pi12",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "i12",
    ]);
    let (a, b) = (n.sid(1), n.sid(2));
    let ip_a = n.sandbox(&a, "i12");
    n.sandbox(&b, "i12");
    n.httpd(&a, 80, "icc-off");
    let (holder, bindings) = n.publish(&a, &["-p", "18121:80"]);
    assert_eq!(
        bindings[0]["host_ip"], "127.0.0.1",
        "host_binding_ipv4 is the default host IP"
    );
    assert_eq!(curl("http://127.0.0.1:18121/").as_deref(), Some("icc-off"));
    assert!(
        curl("http://10.205.112.1:18121/").is_none(),
        "bound to 127.0.0.1 only"
    );
    let direct = n.exec(&b, &format!("curl -sS --max-time 2 http://{ip_a}:80/"));
    assert_ne!(
        direct.code, 0,
        "icc=false still blocks direct container-to-container traffic"
    );
    // Leaving the network takes the port rules along: the address may go to someone else.
    n.ok(&["network", "sandbox", "disconnect", "i12", &a]);
    n.assert_unpublished(&a, &[]);
    assert!(curl("http://127.0.0.1:18121/").is_none());
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    n.assert_unpublished(&a, &[18121]);
    for id in n.sandboxes.borrow_mut().drain(..) {
        n.ok(&["network", "sandbox", "release", &id]);
    }
    n.ok(&["network", "rm", "i12"]);
    n.clean_and_check();
}

#[test]
fn udp_ranges_ephemeral_and_expose() {
    let n = Net::new("ports-udp", 13);
    let a = n.sid(1);
    n.sandbox(&a, "bridge");
    n.udp_responder(&a, 53, "udp-pong");
    for p in [80u16, 81, 82] {
        n.httpd(&a, p, &format!("port-{p}"));
    }
    let (holder, b) = n.publish(
        &a,
        &[
            "-p",
            "18131:53/udp",
            "-p",
            "18132-18134:80-82",
            "-p",
            "127.0.0.1::80",
            "--expose",
            "81/tcp",
        ],
    );
    let b = b.as_array().unwrap().clone();
    // TCP also on [::] (through the proxy: the network has no IPv6), UDP on IPv4 only.
    assert_eq!(b.len(), 10, "{b:?}");
    let udp = sh("echo ping | socat -T2 - UDP4:127.0.0.1:18131");
    assert_eq!(
        udp.stdout.trim(),
        "udp-pong",
        "udp via 127.0.0.1: {}",
        udp.stderr
    );
    let udp = sh(&format!(
        "echo ping | socat -T2 - UDP4:{}:18131",
        n.gateway()
    ));
    assert_eq!(
        udp.stdout.trim(),
        "udp-pong",
        "udp via the host address: {}",
        udp.stderr
    );
    for (i, p) in [80, 81, 82].iter().enumerate() {
        assert_eq!(
            curl(&format!("http://127.0.0.1:{}/", 18132 + i)).unwrap(),
            format!("port-{p}")
        );
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let r: Vec<u64> = range
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    for (want_ip, ctr, body) in [("127.0.0.1", 80, "port-80"), ("0.0.0.0", 81, "port-81")] {
        let e = b
            .iter()
            .find(|x| {
                x["host_ip"] == want_ip
                    && x["container_port"] == ctr
                    && !(18131..=18134).contains(&x["host_port"].as_u64().unwrap())
            })
            .unwrap_or_else(|| panic!("{want_ip} {ctr} in {b:?}"));
        let hp = e["host_port"].as_u64().unwrap();
        assert!((r[0]..=r[1]).contains(&hp), "ephemeral {hp} not in {range}");
        assert_eq!(
            curl(&format!("http://127.0.0.1:{hp}/")).as_deref(),
            Some(body)
        );
    }
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    n.assert_unpublished(&a, &[18132, 18133, 18134]);
    n.clean_and_check();
}

#[test]
fn ipv6_host_address_of_a_dual_stack_network() {
    let n = Net::new("ports-v6", 20);
    n.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.205.120.0/24",
        "--subnet",
        "fd00:205:120::/64",
        "-o",
        "com.docker.network.bridge.name=rbt-pv20",
        "v20",
    ]);
    let a = n.sid(1);
    n.sandbox(&a, "v20");
    n.httpd(&a, 80, "over-v6");
    // [::1] has a userland proxy for TCP only (see run_p_on_ipv6_loopback_goes_through_a_proxy).
    let err = n.bad(&[
        "network",
        "sandbox",
        "publish",
        "-p",
        "[::1]:18201:80/udp",
        &a,
    ]);
    assert!(err.contains("only TCP is supported on ::1"), "{err}");
    n.assert_unpublished(&a, &[]);
    let (holder, b) = n.publish(&a, &["-p", "[fd00:205:120::1]:18201:80", "-p", "18202:80"]);
    assert_eq!(b[0]["host_ip"], "fd00:205:120::1");
    // No host IP on a network with IPv6: both families, as Docker does.
    let hosts: Vec<(&str, u64)> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["host_ip"].as_str().unwrap(),
                x["host_port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("fd00:205:120::1", 18201),
            ("0.0.0.0", 18202),
            ("::", 18202)
        ]
    );
    assert_eq!(
        curl("http://[fd00:205:120::1]:18201/").as_deref(),
        Some("over-v6")
    );
    assert_eq!(curl("http://127.0.0.1:18202/").as_deref(), Some("over-v6"));
    assert_eq!(
        curl("-g http://[fd00:205:120::1]:18202/").as_deref(),
        Some("over-v6")
    );
    // [::]'s DNAT leaves [::1] alone (the kernel cannot forward it): the container's proxy,
    // which holds [::]:18202, serves it.
    assert_eq!(
        curl("-g http://[::1]:18202/").as_deref(),
        Some("over-v6"),
        "[::1]:18202"
    );
    assert!(
        std::net::TcpListener::bind("[::1]:18202").is_err(),
        "[::]:18202 is not reserved"
    );
    let v6 = n.rules();
    let want = match Backend::current() {
        Backend::Iptables => [
            format!("-A RBOX-P-{} -d fd00:205:120::1/128 -p tcp -m tcp --dport 18201 -j DNAT --to-destination [fd00:205:120::2]:80", &a[..12]),
            format!("-A RBOX-P-{} ! -d ::1/128 -p tcp -m tcp --dport 18202 -j DNAT --to-destination [fd00:205:120::2]:80", &a[..12]),
        ],
        Backend::Nftables => [
            "ip6 daddr fd00:205:120::1 tcp dport 18201 dnat ip6 to [fd00:205:120::2]:80".to_string(),
            "ip6 daddr != ::1 tcp dport 18202 dnat ip6 to [fd00:205:120::2]:80".to_string(),
        ],
    };
    for w in want {
        assert!(v6.contains(&w), "{w} missing:\n{v6}");
    }
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    n.assert_unpublished(&a, &[18202]);
    assert!(std::net::TcpListener::bind("[::1]:18202").is_ok());
    assert!(!n.v6_rules_of(&a[..12]), "IPv6 rules left");
    for id in n.sandboxes.borrow_mut().drain(..) {
        n.ok(&["network", "sandbox", "release", &id]);
    }
    n.ok(&["network", "rm", "v20"]);
    n.clean_and_check();
}

#[test]
fn bad_specs_and_taken_ports_leave_nothing() {
    let n = Net::new("ports-bad", 14);
    let (a, b) = (n.sid(1), n.sid(2));
    n.sandbox(&a, "bridge");
    n.sandbox(&b, "bridge");
    for (spec, want) in [
        ("garbage", "invalid containerPort: garbage"),
        ("70000:80", "invalid hostPort: 70000"),
        ("127.0.0.1:0:80", "invalid hostPort: 0"),
        ("18141:0", "invalid containerPort: 0"),
        ("18141:80/sctpx", "invalid proto: sctpx"),
        ("18141-18142:80-82", "invalid ranges specified"),
        (
            "192.0.2.1:18141:80",
            "192.0.2.1 is not an address of this host",
        ),
        ("[::1]:18141:80/udp", "only TCP is supported on ::1"),
        ("[fd00::1]:18141:80/udp", "has no IPv6"),
    ] {
        let err = n.bad(&["network", "sandbox", "publish", "-p", spec, &a]);
        assert!(err.contains(want), "{spec}: {err}");
        n.assert_unpublished(&a, &[]);
    }
    // Another program listening on the port.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 18143)).unwrap();
    let err = n.bad(&["network", "sandbox", "publish", "-p", "18143:80", &a]);
    assert!(
        err.contains("Bind for 0.0.0.0:18143 failed: port is already allocated"),
        "{err}"
    );
    drop(listener);
    // The second of two ports taken: the first one's reservation is given back too.
    let (holder, _) = n.publish(&b, &["-p", "18145:80"]);
    let err = n.bad(&[
        "network", "sandbox", "publish", "-p", "18144:80", "-p", "18145:80", &a,
    ]);
    assert!(
        err.contains("Bind for 0.0.0.0:18145 failed: port is already allocated"),
        "{err}"
    );
    n.assert_unpublished(&a, &[18144]);
    let (h2, _) = n.publish(&a, &["-p", "18144:80"]);
    release_hold(h2);
    release_hold(holder);
    for id in [&a, &b] {
        n.ok(&["network", "sandbox", "unpublish", id]);
        n.assert_unpublished(id, &[18144, 18145]);
    }
    n.clean_and_check();
}

#[test]
fn stale_rules_of_a_killed_holder_never_black_hole_the_port() {
    let n = Net::new("ports-stale", 15);
    let (a, b) = (n.sid(1), n.sid(2));
    n.sandbox(&a, "bridge");
    n.sandbox(&b, "bridge");
    n.httpd(&a, 80, "old");
    n.httpd(&b, 80, "new");
    let (mut holder, _) = n.publish(&a, &["-p", "18151:80"]);
    assert_eq!(curl("http://127.0.0.1:18151/").as_deref(), Some("old"));
    // kill -9 of the monitor: the rules and the record stay, the reservation goes.
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!n.rules_of(&a[..12]).is_empty());
    // Its proxy (of [::]:18151) dies with it, a moment later.
    n.wait_proxies_gone(&a);
    let (h2, _) = n.publish(&b, &["-p", "18151:80"]);
    assert_eq!(
        curl("http://127.0.0.1:18151/").as_deref(),
        Some("new"),
        "the new publisher gets the port"
    );
    match Backend::current() {
        // Publishing does not read the kernel's rules (that would cost an iptables-save): the
        // stale chain stays until its owner is repaired, but the new jump comes first.
        Backend::Iptables => {
            let dnat: Vec<String> = n
                .rules_of("-A RBOX-DNAT ")
                .into_iter()
                .filter(|r| r.contains(&a[..12]) || r.contains(&b[..12]))
                .collect();
            assert_eq!(
                dnat,
                [
                    format!("-A RBOX-DNAT -j RBOX-P-{}", &b[..12]),
                    format!("-A RBOX-DNAT -j RBOX-P-{}", &a[..12])
                ],
                "the new publisher's jump comes first"
            );
        }
        // The kernel refuses a dispatch key another container holds: the repair that follows
        // removes all of the dead one (its elements and chains), and keeps its record for its
        // own repair, which then finds nothing left and leaves the new one alone.
        Backend::Nftables => {
            assert!(n.rules_of(&a[..12]).is_empty(), "stale rules kept");
            assert!(!n.rules_of(&b[..12]).is_empty(), "new rules missing");
        }
    }
    // Repair of the dead one (what the next command does) removes its record.
    n.ok(&["network", "sandbox", "release", &a]);
    n.sandboxes.borrow_mut().retain(|s| s != &a);
    n.assert_unpublished(&a, &[]);
    assert_eq!(
        curl("http://127.0.0.1:18151/").as_deref(),
        Some("new"),
        "the repair leaves the new one alone"
    );
    release_hold(h2);
    n.ok(&["network", "sandbox", "release", &b]);
    n.sandboxes.borrow_mut().retain(|s| s != &b);
    n.assert_unpublished(&b, &[18151]);
    n.clean_and_check();
}

#[test]
fn twenty_publishers_in_parallel() {
    let n = Net::new("ports-many", 16);
    let ids: Vec<String> = (0..20).map(|k| n.sid(k)).collect();
    for id in &ids {
        n.sandbox(id, "bridge");
        n.httpd(id, 80, &format!("body-{id}"));
    }
    // All publishers run at once; each reports its bindings when done.
    let children: Vec<(String, Child)> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let spec = format!("{}:80", 18160 + k);
            let child = n
                .command(&["network", "sandbox", "publish", "-p", &spec, id])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (spec, child)
        })
        .collect();
    let mut holders = Vec::new();
    for (spec, mut child) in children {
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.is_empty(), "publish {spec} failed");
        holders.push(child);
    }
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(
            curl(&format!("http://127.0.0.1:{}/", 18160 + k)),
            Some(format!("body-{id}"))
        );
    }
    for h in holders {
        release_hold(h);
    }
    for id in &ids {
        n.ok(&["network", "sandbox", "unpublish", id]);
        n.assert_unpublished(id, &[]);
    }
    n.clean_and_check();
}

/// `run -p 18221:80` on a network with IPv6 publishes on both families, as Docker does; `ps`,
/// `port` and `inspect` show both; reservations of both go with the container.
#[test]
fn run_p_on_an_ipv6_network_publishes_both_families() {
    let n = Net::new("ports-dual", 22);
    let tar = rbox_tests::image_tar("busybox");
    n.ok(&[
        "import",
        "--change",
        r#"CMD ["sh"]"#,
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    n.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.205.122.0/24",
        "--subnet",
        "fd00:205:122::/64",
        "-o",
        "com.docker.network.bridge.name=rbt-pv22",
        "v22",
    ]);
    let c = Ctrs(&n);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "dual",
        "--network",
        "v22",
        "-p",
        "18221:80",
        "busybox",
        "sh",
        "-c",
        "echo dual > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ]);
    assert_eq!(
        curl_wait("http://127.0.0.1:18221/").as_deref(),
        Some("dual\n")
    );
    assert_eq!(
        curl("-g http://[fd00:205:122::1]:18221/").as_deref(),
        Some("dual\n"),
        "via the host's IPv6 address"
    );
    assert_eq!(
        n.ok(&["ps", "--format", "{{.Ports}}"]).trim(),
        "0.0.0.0:18221->80/tcp, [::]:18221->80/tcp"
    );
    assert_eq!(
        n.ok(&["port", "dual"]),
        "80/tcp -> 0.0.0.0:18221\n80/tcp -> [::]:18221\n"
    );
    assert_eq!(n.ok(&["port", "dual", "80"]), "0.0.0.0:18221\n[::]:18221\n");
    assert_eq!(
        n.inspect_ctr("dual")["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": "18221"},
                           {"HostIp": "::", "HostPort": "18221"}])
    );
    assert!(std::net::TcpListener::bind("[::1]:18221").is_err());
    let id = n.all_ids().pop().unwrap();
    n.ok(&["rm", "-f", "dual"]);
    n.assert_ctr_unpublished(&id, &[18221]);
    assert!(std::net::TcpListener::bind("[::1]:18221").is_ok());
    assert!(!n.v6_rules_of(&id[..12]));
    drop(c);
    n.ok(&["network", "rm", "v22"]);
    n.clean_and_check();
}

/// A UDP client that keeps its source port across a change of publisher: conntrack must not
/// keep it on the old container after unpublish, nor on "no DNAT" once a new container publishes
/// the port (podman#27516, netavark#1129).
#[test]
fn udp_flow_follows_the_port_to_a_new_publisher() {
    let n = Net::new("ports-udp-ct", 21);
    let (a, b) = (n.sid(1), n.sid(2));
    n.sandbox(&a, "bridge");
    n.sandbox(&b, "bridge");
    n.udp_responder(&a, 53, "from-a");
    n.udp_responder(&b, 53, "from-b");
    let client = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    client.connect(("127.0.0.1", 18211)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let ask = || {
        client.send(b"ping").unwrap();
        let mut buf = [0u8; 64];
        client
            .recv(&mut buf)
            .ok()
            .map(|k| String::from_utf8_lossy(&buf[..k]).into_owned())
    };
    let (holder, _) = n.publish(&a, &["-p", "18211:53/udp"]);
    assert_eq!(ask().as_deref(), Some("from-a"));
    let entries = || n.sh("cat /proc/net/nf_conntrack 2>/dev/null | grep -c 'dport=18211 '");
    release_hold(holder);
    n.ok(&["network", "sandbox", "unpublish", &a]);
    // a's responder still runs: only a surviving conntrack entry could reach it now.
    assert_eq!(
        ask(),
        None,
        "unpublished port still led to the old container"
    );
    let (holder, _) = n.publish(&b, &["-p", "18211:53/udp"]);
    assert_eq!(
        ask().as_deref(),
        Some("from-b"),
        "the same client source port reaches the new publisher ({} entries)",
        entries().stdout.trim()
    );
    release_hold(holder);
    for id in [&a, &b] {
        n.ok(&["network", "sandbox", "unpublish", id]);
        n.assert_unpublished(id, &[]);
    }
    n.clean_and_check();
}

/// The golden port documents are what the kernel really shows: each scenario is published by
/// rbox in a private namespace (so rbox's are the only rules) and compared with its file
/// (tests/golden/<backend>/).
#[test]
fn golden_port_files_match_the_kernels_rules() {
    let mut n = Net::in_netns("ports-golden", 17);
    n.bridge = "rbox0".into();
    n.subnet = "172.17.0.0/16".into();
    let fw = Backend::current();
    let id = "eeeeeeeeeeee";
    n.ok(&["network", "sandbox", "create", id]);
    n.sandboxes.borrow_mut().push(id.to_string());
    n.ok(&["network", "sandbox", "connect", "bridge", id]);
    let v: Value = serde_json::from_str(&n.ok(&["network", "inspect", "bridge"])).unwrap();
    let net_id = v[0]["Id"].as_str().unwrap()[..12].to_string();
    for (scenario, args) in [
        ("ports-published", &["-p", "8080:80"][..]),
        ("ports-range", &["-p", "127.0.0.1:8080-8082:80-82"][..]),
        ("ports-udp", &["-p", "5353:53/udp"][..]),
    ] {
        let (holder, _) = n.publish(id, args);
        let save = n.rules();
        assert_eq!(
            fw.normalize(&save, &[(net_id.clone(), "aaaaaaaaaaaa")]),
            fw.normalize(&fw.golden(scenario), &[]),
            "scenario {scenario}:\n{save}"
        );
        release_hold(holder);
        n.ok(&["network", "sandbox", "unpublish", id]);
        assert!(!n.rules().contains(id), "rules left after {scenario}");
    }
    // With the shared part in place, publishing and unpublishing are one batch each, written
    // from rbox's own record: the kernel's rules are not read on the hot path.
    let (batch, read) = match fw {
        Backend::Iptables => ("iptables-restore what=", "iptables-save"),
        Backend::Nftables => ("nft -f what=", "nft -j list"),
    };
    for args in [
        &["-D", "network", "sandbox", "publish", "-p", "8080:80", id][..],
        &["-D", "network", "sandbox", "unpublish", id][..],
    ] {
        let out = n.command(args).stdin(Stdio::null()).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {log}");
        assert_eq!(log.matches(batch).count(), 1, "{args:?}: {log}");
        assert!(!log.contains(read), "{args:?}: {log}");
    }
    assert!(!n.rules().contains(id), "rules left");
    let route_localnet = n
        .sh("cat /proc/sys/net/ipv4/conf/rbox0/route_localnet")
        .stdout;
    assert_eq!(route_localnet.trim(), "1");
    n.clean_and_check();
}

// ---- Containers: `run -p/-P`, `port`, `ps`, `inspect`, lifecycle (needs the runtime wiring).

impl Net {
    fn with_images(test: &str, n: u8) -> Net {
        let net = Net::new(test, n);
        let tar = rbox_tests::image_tar("busybox");
        net.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            "EXPOSE 80",
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        let tar = rbox_tests::image_tar("nginx");
        net.ok(&[
            "import",
            "--change",
            r#"CMD ["nginx","-g","daemon off;"]"#,
            "--change",
            "EXPOSE 80",
            tar.to_str().unwrap(),
            "nginx:latest",
        ]);
        net
    }

    fn inspect_ctr(&self, ctr: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", ctr])).unwrap();
        v[0].clone()
    }

    fn all_ids(&self) -> Vec<String> {
        self.ok(&["ps", "-aq", "--no-trunc"])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Nothing of container `id`'s ports is left: rules, record, reservation of `host_ports`.
    fn assert_ctr_unpublished(&self, id: &str, host_ports: &[u16]) {
        self.assert_unpublished(id, host_ports);
    }

    fn monitor_pid(&self, id: &str) -> i32 {
        let p = self
            .rbox
            .root
            .join(format!("containers/{id}/container.json"));
        let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["state"]["monitor_pid"].as_i64().unwrap() as i32
    }
}

/// `ps -aq` removal before the networks go, also on failure.
struct Ctrs<'a>(&'a Net);

impl Drop for Ctrs<'_> {
    fn drop(&mut self) {
        for id in self.0.all_ids() {
            let _ = self.0.run(&["rm", "-f", &id]);
        }
    }
}

/// Polls `url` until it answers (a container's server needs a moment after `run -d`).
fn curl_wait(url: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(body) = curl(url) {
            return Some(body);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_p_port_ps_inspect_stop_start_rm() {
    let n = Net::with_images("ports-run", 18);
    let _c = Ctrs(&n);
    // busybox httpd serving /etc: /hostname is the container's short id.
    let id = n
        .ok(&[
            "run", "-d", "--name", "web", "-p", "18181:80", "busybox", "httpd", "-f", "-p", "80",
            "-h", "/etc",
        ])
        .trim()
        .to_string();
    let short = &id[..12];
    assert_eq!(
        curl_wait("http://127.0.0.1:18181/hostname")
            .as_deref()
            .map(str::trim),
        Some(short)
    );
    assert_eq!(
        curl(&format!("http://{}:18181/hostname", n.gateway()))
            .as_deref()
            .map(str::trim),
        Some(short),
        "via the host's address"
    );
    let hair = n.ok(&[
        "exec",
        "web",
        "wget",
        "-qO-",
        &format!("http://{}:18181/hostname", n.gateway()),
    ]);
    assert_eq!(hair.trim(), short, "hairpin from the container itself");
    assert!(
        n.ok(&["ps"])
            .contains("0.0.0.0:18181->80/tcp, [::]:18181->80/tcp"),
        "{}",
        n.ok(&["ps"])
    );
    assert_eq!(
        n.ok(&["ps", "--format", "{{.Ports}}"]).trim(),
        "0.0.0.0:18181->80/tcp, [::]:18181->80/tcp"
    );
    assert_eq!(
        n.ok(&["port", "web"]),
        "80/tcp -> 0.0.0.0:18181\n80/tcp -> [::]:18181\n"
    );
    assert_eq!(n.ok(&["port", "web", "80"]), "0.0.0.0:18181\n[::]:18181\n");
    n.bad(&["port", "web", "81/udp"]);
    let v = n.inspect_ctr("web");
    assert_eq!(
        v["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": "18181"},
                           {"HostIp": "::", "HostPort": "18181"}])
    );
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"],
        serde_json::json!([{"HostIp": "", "HostPort": "18181"}])
    );
    assert_eq!(
        v["Config"]["ExposedPorts"],
        serde_json::json!({"80/tcp": {}})
    );
    // Taken by rbox: one line, exit 125, nothing created (with --rm too).
    let before = n.all_ids();
    for extra in [&[][..], &["--rm"][..]] {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-p", "18181:80", "busybox", "sleep", "30"]);
        let err = n.bad(&args);
        assert!(
            err.contains("Bind for 0.0.0.0:18181 failed: port is already allocated"),
            "{err}"
        );
        assert_eq!(n.all_ids(), before, "the failed container was left behind");
    }
    // stop: rules and reservation go; start: they come back.
    n.ok(&["stop", "-t", "1", "web"]);
    n.assert_ctr_unpublished(&id, &[18181]);
    assert!(n
        .ok(&["ps", "-a"])
        .lines()
        .nth(1)
        .is_some_and(|l| !l.contains("18181")));
    n.ok(&["start", "web"]);
    assert_eq!(
        curl_wait("http://127.0.0.1:18181/hostname")
            .as_deref()
            .map(str::trim),
        Some(short),
        "after start"
    );
    n.ok(&["rm", "-f", "web"]);
    n.assert_ctr_unpublished(&id, &[18181]);
    assert!(curl("http://127.0.0.1:18181/hostname").is_none());
    // A range: one PORTS entry as Docker folds it, one `port` line per port.
    let rng = n
        .ok(&[
            "run",
            "-d",
            "-p",
            "127.0.0.1:18185-18186:80-81",
            "busybox",
            "sleep",
            "30",
        ])
        .trim()
        .to_string();
    assert_eq!(
        n.ok(&["ps", "--format", "{{.Ports}}"]).trim(),
        "127.0.0.1:18185-18186->80-81/tcp"
    );
    assert_eq!(
        n.ok(&["port", &rng]),
        "80/tcp -> 127.0.0.1:18185\n81/tcp -> 127.0.0.1:18186\n"
    );
    n.ok(&["rm", "-f", &rng]);
    n.assert_ctr_unpublished(&rng, &[18185, 18186]);
    // Bad specs: one line, exit 125, nothing created.
    for spec in [
        "garbage",
        "70000:80",
        "18182:80/sctpx",
        "18182-18183:80-82",
        "192.0.2.1:18182:80",
        "127.0.0.1:0:80",
    ] {
        n.bad(&["run", "-d", "--rm", "-p", spec, "busybox", "sleep", "30"]);
        // Docker checks the host address only when the port is bound, at start.
        if !spec.starts_with("192.0.2.1") {
            n.bad(&["create", "-p", spec, "busybox"]);
        }
        assert!(n.all_ids().is_empty(), "{spec} left a container");
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 18184)).unwrap();
    let err = n.bad(&["run", "-d", "-p", "18184:80", "busybox", "sleep", "30"]);
    assert!(
        err.contains("Bind for 0.0.0.0:18184 failed: port is already allocated"),
        "another program: {err}"
    );
    drop(listener);
    assert!(n.all_ids().is_empty());
    let left = std::fs::read_dir(n.rbox.root.join("ports"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(left, 0, "ports records left");
}

#[test]
fn nginx_on_a_user_network_publish_all_rm_exit_and_monitor_kill() {
    let n = Net::with_images("ports-nginx", 19);
    let _c = Ctrs(&n);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.205.119.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-pn19",
        "mybridge19",
    ]);
    let id = n
        .ok(&[
            "run",
            "-d",
            "--network",
            "mybridge19",
            "-p",
            "18191:80",
            "nginx",
        ])
        .trim()
        .to_string();
    let page = curl_wait("http://127.0.0.1:18191/").unwrap_or_default();
    assert!(page.contains("Welcome to nginx!"), "{page}");
    let remote = Remote::new(19, "10.205.119.1");
    let page = remote
        .curl("http://10.205.119.1:18191/")
        .unwrap_or_default();
    assert!(
        page.contains("Welcome to nginx!"),
        "from a remote host: {page}"
    );
    // A sibling on the same network through the host's address.
    let sib = n.ok(&[
        "run",
        "--rm",
        "--network",
        "mybridge19",
        "busybox",
        "wget",
        "-qO-",
        "http://10.205.119.1:18191/",
    ]);
    assert!(sib.contains("Welcome to nginx!"), "{sib}");
    // -P: EXPOSE 80 on an ephemeral port.
    let all = n.ok(&["run", "-d", "-P", "nginx"]).trim().to_string();
    let hp = n
        .ok(&["port", &all, "80/tcp"])
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let r: Vec<u16> = range
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert!((r[0]..=r[1]).contains(&hp), "{hp} outside {range}");
    assert!(curl_wait(&format!("http://127.0.0.1:{hp}/"))
        .unwrap_or_default()
        .contains("Welcome to nginx!"));
    n.ok(&["rm", "-f", &all]);
    n.assert_ctr_unpublished(&all, &[hp]);
    // --rm exit: published while it runs, gone when it ends.
    let short = n
        .ok(&[
            "run",
            "-d",
            "--rm",
            "-p",
            "18192:80",
            "busybox",
            "sh",
            "-c",
            "httpd -p 80 -h /etc; sleep 2",
        ])
        .trim()
        .to_string();
    assert!(curl_wait("http://127.0.0.1:18192/hostname").is_some());
    n.ok(&["wait", &short]);
    n.assert_ctr_unpublished(&short, &[18192]);
    // kill -9 of the monitor: the port is reusable at once and never black-holed; the next
    // command adopts the container, which still runs but has lost the port it did not hold.
    let pid = n.monitor_pid(&id);
    assert!(pid > 0);
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    n.wait_proxies_gone(&id);
    let new = n
        .ok(&[
            "run",
            "-d",
            "--network",
            "mybridge19",
            "-p",
            "18191:80",
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
    assert_eq!(
        curl_wait("http://127.0.0.1:18191/hostname")
            .as_deref()
            .map(str::trim),
        Some(&new[..12]),
        "the new container owns the port"
    );
    n.ok(&["ps", "-a"]);
    assert_eq!(
        n.ok(&["inspect", "--format", "{{.State.Status}}", &id])
            .trim(),
        "running"
    );
    assert_eq!(
        n.ok(&["port", &id]),
        "",
        "the adopted container kept a lost port"
    );
    n.assert_ctr_unpublished(&id, &[]);
    assert_eq!(
        curl_wait("http://127.0.0.1:18191/hostname")
            .as_deref()
            .map(str::trim),
        Some(&new[..12]),
        "the new container keeps the port"
    );
    n.ok(&["rm", "-f", &id, &new]);
    n.assert_ctr_unpublished(&new, &[18191]);
    drop(remote);
    n.ok(&["network", "rm", "mybridge19"]);
    n.clean_and_check();
}

#[test]
fn twenty_containers_published_in_parallel() {
    let n = Net::with_images("ports-par", 10);
    let _c = Ctrs(&n);
    let children: Vec<(u16, Child)> = (0..20u16)
        .map(|k| {
            let spec = format!("{}:80", 18300 + k);
            let child = n
                .command(&[
                    "run", "-d", "-p", &spec, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (18300 + k, child)
        })
        .collect();
    let mut ids = Vec::new();
    for (port, c) in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push((
            port,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ));
    }
    for (port, id) in &ids {
        let got = curl_wait(&format!("http://127.0.0.1:{port}/hostname"));
        assert_eq!(
            got.as_deref().map(str::trim),
            Some(&id[..12]),
            "port {port}"
        );
    }
    let all: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(all.iter().copied());
    n.ok(&args);
    for (port, id) in &ids {
        n.assert_ctr_unpublished(id, &[*port]);
    }
    n.clean_and_check();
}

/// The state letter of /proc/PID/stat, `None` once the process is gone.
fn proc_state(pid: i64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The proxy that serves container `id`'s `[::1]` port, from its ports record.
fn proxy_pid(n: &Net, id: &str) -> i64 {
    let rec: Value = serde_json::from_slice(
        &std::fs::read(n.rbox.root.join(format!("ports/{id}.json"))).unwrap(),
    )
    .unwrap();
    let pid = rec["proxies"][0]["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "rbox-proxy"
    );
    pid
}

/// Gone, or a zombie its parent has not reaped yet: either way it holds nothing.
fn assert_proxy_gone(pid: i64) {
    let state = proc_state(pid);
    assert!(
        matches!(state, None | Some('Z')),
        "proxy {pid} still running: {state:?}"
    );
    let lis = sh("ss -Hltn 'sport = :38411'").stdout;
    assert!(lis.trim().is_empty(), "still listening: {lis}");
}

/// `-p [::1]:H:C` on an IPv6 network: the kernel cannot forward ::1 to a container, so a proxy
/// process serves it (as docker-proxy does), with no rule; it goes with `rm -f`, `stop` and a
/// kill -9 of the monitor, and the port is reusable at once (TIME_WAIT of its connections
/// included). UDP on ::1 is refused.
#[test]
fn run_p_on_ipv6_loopback_goes_through_a_proxy() {
    let n = Net::new("ports-lo6", 24);
    let tar = rbox_tests::image_tar("busybox");
    n.ok(&[
        "import",
        "--change",
        r#"CMD ["sh"]"#,
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    n.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.205.124.0/24",
        "--subnet",
        "fd00:205:124::/64",
        "-o",
        "com.docker.network.bridge.name=rbt-pv24",
        "v24",
    ]);
    let c = Ctrs(&n);
    let httpd = |name: &str, body: &str| {
        n.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "v24",
            "-p",
            "[::1]:38411:80",
            "busybox",
            "sh",
            "-c",
            &format!("echo {body} > /tmp/index.html && head -c 1048576 /dev/zero > /tmp/big && exec httpd -f -p 80 -h /tmp"),
        ])
        .trim()
        .to_string()
    };
    let id = httpd("lo6", "over-lo6");
    assert_eq!(
        curl_wait("-g http://[::1]:38411/").as_deref(),
        Some("over-lo6\n")
    );
    // A megabyte through splice (upstream volume and half-closes: proxy.rs's unit test).
    let big =
        sh("curl -sS --max-time 5 -g -o /dev/null -w '%{size_download}' http://[::1]:38411/big");
    assert_eq!(big.stdout, "1048576", "{}", big.stderr);
    // Clients that reset mid-download (the proxy then writes into a dead socket) cost it
    // nothing: it goes on serving.
    for _ in 0..5 {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let mut s = std::net::TcpStream::connect("[::1]:38411").unwrap();
        s.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        let lin = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own with a properly sized linger.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&lin as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }
    assert_eq!(
        n.ok(&["ps", "--format", "{{.Ports}}"]).trim(),
        "[::1]:38411->80/tcp"
    );
    assert_eq!(n.ok(&["port", "lo6"]), "80/tcp -> [::1]:38411\n");
    assert_eq!(
        n.inspect_ctr("lo6")["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "::1", "HostPort": "38411"}])
    );
    assert!(!n.v6_rules_of(&id[..12]), "a [::1] binding has no rule");
    let pid = proxy_pid(&n, &id);
    // Its own session, away from the monitor's terminal signals.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(f[3], pid.to_string(), "session of {pid}: {stat}");
    // Unprivileged: nobody, no capabilities, no_new_privs.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for want in [
        "Uid:\t65534\t65534\t65534\t65534",
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(status.contains(want), "{want:?} in {status}");
    }
    // Taken: Docker's wording, nothing of the failed container left.
    let before = n.all_ids();
    let err = n.bad(&[
        "run",
        "-d",
        "--network",
        "v24",
        "-p",
        "[::1]:38411:80",
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(
        err.contains("Bind for [::1]:38411 failed: port is already allocated"),
        "{err}"
    );
    let err = n.bad(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "v24",
        "-p",
        "[::1]:38412:80/udp",
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(err.contains("only TCP is supported on ::1"), "{err}");
    assert_eq!(n.all_ids(), before, "a failed container was left behind");
    assert!(
        proc_state(pid).is_some_and(|s| s != 'Z'),
        "proxy {pid} died"
    );
    assert_eq!(
        curl("-g http://[::1]:38411/").as_deref(),
        Some("over-lo6\n"),
        "after the resets"
    );

    n.ok(&["rm", "-f", "lo6"]);
    assert_proxy_gone(pid);
    n.assert_ctr_unpublished(&id, &[38411]);
    assert!(std::net::TcpListener::bind("[::1]:38411").is_ok());
    assert!(curl("-g http://[::1]:38411/").is_none());

    // Reused at once, although the last connections left TIME_WAITs on the port.
    let id = httpd("again", "again");
    assert_eq!(
        curl_wait("-g http://[::1]:38411/").as_deref(),
        Some("again\n")
    );
    let pid = proxy_pid(&n, &id);
    n.ok(&["stop", "-t", "1", "again"]);
    assert_proxy_gone(pid);
    n.assert_ctr_unpublished(&id, &[38411]);
    n.ok(&["start", "again"]);
    assert_eq!(
        curl_wait("-g http://[::1]:38411/").as_deref(),
        Some("again\n"),
        "after start"
    );
    let pid = proxy_pid(&n, &id);

    // kill -9 of the monitor: the proxy dies with it; the next command adopts the container
    // and starts a new proxy for it.
    let mon = n.monitor_pid(&id);
    assert!(mon > 0);
    assert_eq!(unsafe { libc::kill(mon, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc_state(mon.into()).is_some_and(|s| s != 'Z') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Before any repair: it died with its holder (its credentials changed after the fork, which
    // disarms PR_SET_PDEATHSIG unless set again).
    while proc_state(pid).is_some_and(|s| s != 'Z') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_proxy_gone(pid);
    n.ok(&["ps", "-a"]);
    assert_eq!(
        curl_wait("-g http://[::1]:38411/").as_deref(),
        Some("again\n"),
        "after adoption"
    );
    let adopted = proxy_pid(&n, &id);
    assert_ne!(adopted, pid);
    n.ok(&["rm", "-f", "again"]);
    assert_proxy_gone(adopted);
    n.assert_ctr_unpublished(&id, &[38411]);
    let id = httpd("third", "third");
    assert_eq!(
        curl_wait("-g http://[::1]:38411/").as_deref(),
        Some("third\n")
    );
    let pid = proxy_pid(&n, &id);
    drop(c);
    assert_proxy_gone(pid);
    n.ok(&["network", "rm", "v24"]);
    n.clean_and_check();
}
