//! Names on user networks, as containers see them (busybox nslookup/wget at 127.0.0.11 in
//! their sandbox): shared aliases rotate, `rename` takes effect at once, any command brings a
//! killed resolver back, a removed container's namespace and veth go at once although the
//! resolver had sockets in it, a container may serve DNS on port 53 itself, and one only on
//! internal networks is relayed nowhere.
//!
//! Name space: bridges rbt-mn*, subnets 10.184.70-99.0/24, an upstream DNS on 127.184.80.53;
//! the host's resolvers are replaced by a loopback address (RBOX_HOST_RESOLV_CONF) so no query
//! leaves the machine.

use std::process::Command;

use rbox_tests::{
    alive, assert_passes_on_nftables_without_iptables, kill9, sh, wait_for, CtrFixture,
    DnsUpstream, RboxCli,
};

/// A root whose default bridge is rbt-mn<N>d on 10.184.<N>.0/24, with busybox and the user
/// network `app` (bridge rbt-mn<N>, 10.184.<N+1>.0/24).
struct T(CtrFixture);

impl std::ops::Deref for T {
    type Target = CtrFixture;
    fn deref(&self) -> &CtrFixture {
        &self.0
    }
}

impl T {
    fn new(test: &str, n: u8) -> T {
        let t = T(CtrFixture::new(
            test,
            format!("rbt-mn{n}d"),
            format!("10.184.{n}.0/24"),
        ));
        t.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.184.{}.0/24", n + 1),
            "-o",
            &format!("com.docker.network.bridge.name=rbt-mn{n}"),
            "app",
        ]);
        t
    }

    fn run_d(&self, args: &[&str]) -> String {
        let mut a = vec!["run", "-d", "--network", "app"];
        a.extend(args);
        self.ok(&a).trim().to_string()
    }

    /// The IPv4 addresses `name` resolves to from container `from`, in answer order.
    fn addrs(&self, from: &str, name: &str) -> Vec<String> {
        let out = self
            .run(&["exec", from, "nslookup", "-type=a", name])
            .stdout;
        out.split("Name:")
            .skip(1)
            .flat_map(|s| s.lines().filter_map(|l| l.strip_prefix("Address: ")))
            .map(|a| a.trim().to_string())
            .collect()
    }
}

#[test]
fn a_shared_alias_answers_every_container_in_rotating_order() {
    let t = T::new("names-rotate", 70);
    let mut ips = Vec::new();
    for i in 1..=3 {
        let name = format!("web{i}");
        let id = t.run_d(&[
            "--name",
            &name,
            "--network-alias",
            "www",
            "busybox",
            "sleep",
            "300",
        ]);
        ips.push(t.ip_of(&id, "app"));
    }
    t.run_d(&["--name", "cli", "busybox", "sleep", "300"]);
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let got = t.addrs("cli", "www");
        let mut sorted = got.clone();
        sorted.sort();
        let mut want = ips.clone();
        want.sort();
        assert_eq!(sorted, want, "every container, every time");
        firsts.push(got[0].clone());
    }
    // Each one comes first in turn (one step per lookup), not always the same.
    for ip in &ips {
        assert_eq!(firsts.iter().filter(|f| *f == ip).count(), 2, "{firsts:?}");
    }
}

#[test]
fn rename_changes_the_name_at_once() {
    let t = T::new("names-rename", 72);
    let id = t.run_d(&["--name", "old", "busybox", "sleep", "300"]);
    t.run_d(&["--name", "cli", "busybox", "sleep", "300"]);
    let ip = t.ip_of(&id, "app");
    assert_eq!(t.addrs("cli", "old"), std::slice::from_ref(&ip));
    t.ok(&["rename", "old", "new"]);
    assert_eq!(
        t.addrs("cli", "new"),
        std::slice::from_ref(&ip),
        "the new name right away"
    );
    assert!(
        t.addrs("cli", "old").is_empty(),
        "the old name still answers"
    );
    assert_eq!(t.addrs("cli", &id[..12]), [ip], "the short id stays");
}

#[test]
fn a_resolver_killed_with_sigkill_is_restarted_by_any_command() {
    let t = T::new("names-kill", 74);
    t.run_d(&["--name", "web", "busybox", "sleep", "300"]);
    t.run_d(&["--name", "cli", "busybox", "sleep", "300"]);
    let pid = t.resolver_pid().expect("resolver running");
    kill9(pid);
    wait_for("the resolver to die", 5, || !alive(pid));
    // `ps` changes nothing, yet brings it back: names work again without a new container.
    t.ok(&["ps"]);
    let new = t.resolver_pid().expect("resolver restarted by ps");
    assert_ne!(new, pid);
    assert!(alive(new));
    assert_eq!(t.addrs("cli", "web").len(), 1);
    // And `exec` itself (the lookup below runs only after its rbox probed the resolver).
    kill9(new);
    wait_for("the resolver to die", 5, || !alive(new));
    assert_eq!(t.addrs("cli", "web").len(), 1, "exec did not restart it");
    let third = t.resolver_pid().unwrap();
    assert!(third != new && alive(third));
    // While it lives, commands do not touch it.
    t.ok(&["ps"]);
    t.ok(&["inspect", "web"]);
    assert_eq!(t.resolver_pid(), Some(third));
}

#[test]
fn rm_frees_the_namespace_and_its_veth_while_the_resolver_lives_on() {
    let t = T::new("names-free", 76);
    t.run_d(&["--name", "stay", "busybox", "sleep", "300"]);
    let id = t.run_d(&["--name", "go", "busybox", "sleep", "300"]);
    let pid = t.resolver_pid().unwrap();
    let sockets = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    };
    let before = sockets(pid);
    let veth = t.host_veth(&id).expect("go's veth");
    assert_eq!(sh(&format!("ip link show {veth}")).code, 0);
    t.ok(&["rm", "-f", "go"]);
    assert_eq!(
        sockets(pid),
        before - 2,
        "the resolver still holds go's sockets"
    );
    // Its veth is gone when rm returns (the kernel frees the namespace only a moment later).
    assert_ne!(sh(&format!("ip link show {veth}")).code, 0, "veth left");
    assert!(alive(pid), "one resolver throughout");
    assert_eq!(t.addrs("stay", "stay").len(), 1);
}

#[test]
fn a_container_may_serve_dns_on_port_53_itself() {
    let t = T::new("names-port53", 78);
    t.run_d(&["--name", "web", "busybox", "sleep", "300"]);
    let id = t.run_d(&["--name", "dnsd", "busybox", "sleep", "300"]);
    // A DNS server of its own in the container's namespace (python3 from the host, as the
    // image has none): wildcard port 53, UDP and TCP, is free although names are served there.
    let key = t.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", &id]);
    let mut server = Command::new("nsenter")
        .arg(format!("--net={}", key.trim()))
        .args(["python3", "-c"])
        .arg(
            "import socket, sys, time\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 53))\n\
             t = socket.socket(); t.bind(('0.0.0.0', 53)); t.listen()\n\
             print('bound', flush=True); time.sleep(30)",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let names = t.addrs("dnsd", "web");
    let _ = server.kill();
    let out = server.wait_with_output().unwrap();
    assert_eq!(
        line.trim(),
        "bound",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names.len(), 1, "names in the same sandbox");
}

/// As Docker since CVE-2024-29018: a container only on internal networks gets its networks'
/// names, but nothing is relayed for it from the host's namespace (here to a DNS server on the
/// host's loopback, which its packets could never reach); connected to a network with a way
/// out, it is.
#[test]
fn a_container_only_on_internal_networks_gets_names_but_no_upstream() {
    let t = T::new("names-internal", 80);
    let upstream = "127.184.80.53";
    std::fs::write(
        t.fx.rbox.root.join("host-resolv.conf"),
        format!("nameserver {upstream}\n"),
    )
    .unwrap();
    let _up = DnsUpstream::start(upstream);
    t.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.184.82.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-mn80i",
        "inner",
    ]);
    let inside = |args: &[&str]| {
        let mut a = vec!["run", "-d", "--network", "inner"];
        a.extend(args);
        t.ok(&a).trim().to_string()
    };
    inside(&["--name", "db", "busybox", "sleep", "300"]);
    inside(&["--name", "worker", "busybox", "sleep", "300"]);
    t.run_d(&["--name", "web", "busybox", "sleep", "300"]);
    assert_eq!(t.addrs("worker", "db"), [t.ip_of("db", "inner")]);
    let out = t.run(&["exec", "worker", "nslookup", "www.upstream.test"]);
    assert!(
        !out.stdout.contains("192.0.2.77") && out.stdout.contains("REFUSED"),
        "an internal-only container was relayed: {}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(t.addrs("web", "www.upstream.test"), ["192.0.2.77"]);
    // Connected to a network with a way out, it is relayed at once.
    t.ok(&["network", "connect", "app", "worker"]);
    assert_eq!(t.addrs("worker", "www.upstream.test"), ["192.0.2.77"]);
    t.ok(&["network", "disconnect", "app", "worker"]);
    let out = t.run(&["exec", "worker", "nslookup", "www.upstream.test"]);
    assert!(out.stdout.contains("REFUSED"), "{}", out.stdout);
}

/// The firewall's part of `--internal` (on either backend, see below): what another network's
/// container sends into an internal network is dropped on the way, even to a container with a
/// route back; its own members still reach each other.
#[test]
fn nothing_from_another_network_gets_into_an_internal_one() {
    let t = T::new("names-inbound", 84);
    t.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.184.86.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-mn84i",
        "inner",
    ]);
    let db = t
        .ok(&[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "inner",
            "busybox",
            "sleep",
            "300",
        ])
        .trim()
        .to_string();
    t.ok(&[
        "run",
        "-d",
        "--name",
        "worker",
        "--network",
        "inner",
        "busybox",
        "sleep",
        "300",
    ]);
    t.run_d(&["--name", "web", "busybox", "sleep", "300"]);
    let ip = t.ip_of("db", "inner");
    let key = t.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", &db]);
    let ns = format!("--net={}", key.trim());
    // A route back to web's network, so that only the firewall can keep web's datagram out.
    let r = sh(&format!(
        "nsenter {ns} ip route add 10.184.85.0/24 via 10.184.86.1"
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A receiver in db's namespace (python3 from the host): prints every datagram, and stops
    // a second after the one from inside.
    let mut rx = Command::new("nsenter")
        .arg(&ns)
        .args(["python3", "-c"])
        .arg(
            "import socket, time\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 21001))\n\
             u.settimeout(0.2); print('bound', flush=True); end = time.time() + 15\n\
             while time.time() < end:\n\
             \x20   try: m = u.recv(100).decode().strip()\n\
             \x20   except socket.timeout: continue\n\
             \x20   print(m, flush=True)\n\
             \x20   if m == 'inside': end = min(end, time.time() + 1)\n",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(rx.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "bound");
    // Sent from each container's namespace (busybox's nc has no UDP).
    for (from, word) in [("web", "outside"), ("worker", "inside")] {
        let key = t.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", from]);
        let send = format!(
            "nsenter --net={} python3 -c \"import socket; \
             socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'{word}', ('{ip}', 21001))\"",
            key.trim()
        );
        assert_eq!(sh(&send).code, 0, "sending from {from}");
    }
    let mut got = String::new();
    std::io::Read::read_to_string(&mut out, &mut got).unwrap();
    let _ = rx.wait();
    assert!(
        got.contains("inside"),
        "a member did not get through: {got:?}"
    );
    assert!(!got.contains("outside"), "another network got in: {got:?}");
}

/// The tests above once more on the nftables backend, on a "host" without any iptables tool
/// (a private mount and network namespace): names, internal networks and their isolation must
/// not depend on the host's firewall backend.
#[test]
fn the_file_passes_on_nftables_without_iptables() {
    assert_passes_on_nftables_without_iptables("the_file_passes_on_nftables_without_iptables", 7);
}
