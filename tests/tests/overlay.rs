//! Overlay networks across hosts (issue 13): each test builds a lab of network namespaces — an
//! underlay bridge `rbo<tag>ul` with etcd (Debian's etcd-server) on 10.186.<k>.10:23790 in
//! `rbt-o<tag>-lab`, and hosts `rbt-o<tag>-h<N>` (10.186.<k>.1<N>, eth0 on the underlay), each
//! running rbox under `nsenter --net` with its own `--root` and `RBOX_CLUSTER_STORE`. Overlays
//! use 10.185.0.0/16 inside the lab; host ports 21500-21999; nothing leaves the machine. Drop
//! removes the containers and networks through rbox, checks nothing of the overlay is left in
//! the hosts' kernels, kills etcd and deletes the namespaces, also when a test fails.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbox_tests::{image_tar, rbox_command, remove_all, sh, unmount_under, RboxCli, Run};

const STORE_PORT: u16 = 23790;

struct Host {
    ns: String,
    root: PathBuf,
    store: String,
    /// Extra environment (a short lease TTL).
    env: Vec<(String, String)>,
}

impl RboxCli for Host {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = rbox_command(&self.root, Some(&self.ns), args);
        c.env("RBOX_CLUSTER_STORE", &self.store)
            .env("RBOX_DEFAULT_BRIDGE", "rbo-dflt")
            .env("RBOX_DEFAULT_SUBNET", "10.186.250.0/24");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

impl Host {
    /// A shell command in the host's namespace.
    fn sh(&self, script: &str) -> Run {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.ns,
            script.replace('\'', r"'\''")
        ))
    }

    /// `cmd` (busybox) inside container `id`'s network namespace, without running rbox.
    fn inside(&self, id: &str, cmd: &str) -> Run {
        sh(&format!(
            "nsenter --net={} busybox {cmd}",
            self.root.join("netns").join(id).display()
        ))
    }

    fn ip(&self, id: &str, network: &str) -> String {
        self.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            id,
        ])
        .trim()
        .to_string()
    }

    fn agent_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.join("cluster/agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// What of the overlay the host's kernel still holds.
    fn leftovers(&self) -> String {
        leftovers(&self.ns)
    }
}

/// What of the overlay the kernel of host namespace `ns` still holds.
fn leftovers(ns: &str) -> String {
    sh(&format!(
        "ip netns exec {ns} sh -c 'ip -o link show type vxlan; ip -o link | grep rbox-ov; \
         ip route | grep rbox; ip neigh | grep PERMANENT; bridge fdb show | grep 02:52; \
         iptables-save 2>/dev/null | grep -E \"rbox-ov|rbox-vx\"; \
         nft list ruleset 2>/dev/null | grep -E \"rbox-ov|rbox-vx\"; true'"
    ))
    .stdout
}

impl Drop for Host {
    fn drop(&mut self) {
        remove_all(self);
        // A helper still there after everything went would be a bug the tests check
        // elsewhere; it must not outlive its root.
        if let Some(pid) = self.agent_pid() {
            // SAFETY: kill of the helper this test's rbox started (its own pid file).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_under(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

struct Lab {
    hosts: Vec<Host>,
    tag: String,
    k: u8,
    dir: PathBuf,
    etcd: Option<Child>,
    /// Other processes the test started in the lab (an upstream server).
    servers: Vec<Child>,
    /// RBOX_FIREWALL of every host.
    firewall: &'static str,
}

impl Lab {
    /// A lab `tag` (2 characters) on underlay 10.186.`k`.0/24 with `hosts` hosts.
    fn new(tag: &str, k: u8, hosts: usize) -> Lab {
        Lab::with_firewall(tag, k, hosts, "iptables")
    }

    /// The same, with rbox on every host using firewall backend `firewall`.
    fn with_firewall(tag: &str, k: u8, hosts: usize, firewall: &'static str) -> Lab {
        assert!(tag.len() <= 3);
        let dir = PathBuf::from(format!("/tmp/rbt-o{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            hosts: Vec::new(),
            tag: tag.into(),
            k,
            dir,
            etcd: None,
            servers: Vec::new(),
            firewall,
        };
        let (l, br) = (lab.lab_ns(), format!("rbo{tag}ul"));
        let r = sh(&format!(
            "ip netns del {l} 2>/dev/null; ip netns add {l} && ip netns exec {l} ip link set lo up && \
             ip netns exec {l} ip link add {br} type bridge && \
             ip netns exec {l} ip addr add 10.186.{k}.1/24 dev {br} && \
             ip netns exec {l} ip addr add 10.186.{k}.10/24 dev {br} && \
             ip netns exec {l} ip link set {br} up"
        ));
        assert_eq!(r.code, 0, "{}", r.stderr);
        lab.start_etcd();
        for _ in 0..hosts {
            lab.add_host();
        }
        lab
    }

    fn lab_ns(&self) -> String {
        format!("rbt-o{}-lab", self.tag)
    }

    fn store_addr(&self) -> String {
        format!("10.186.{}.10:{STORE_PORT}", self.k)
    }

    fn start_etcd(&mut self) {
        let addr = self.store_addr();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lab_ns(), "etcd"])
            .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://{addr}"))
            .arg(format!("--advertise-client-urls=http://{addr}"))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                STORE_PORT + 1
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                STORE_PORT + 1
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{}",
                STORE_PORT + 1
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (scripts/deps.sh installs etcd-server)");
        self.etcd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.etcdctl("endpoint health").code != 0 {
            assert!(Instant::now() < deadline, "etcd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn etcdctl(&self, args: &str) -> Run {
        sh(&format!(
            "ip netns exec {} env ETCDCTL_API=3 etcdctl --endpoints=http://{} {args}",
            self.lab_ns(),
            self.store_addr()
        ))
    }

    /// Every key rbox has in the store.
    fn keys(&self) -> Vec<String> {
        let r = self.etcdctl("get --prefix /rbox/ --keys-only");
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// One more host, with busybox imported.
    fn add_host(&mut self) -> &Host {
        let n = self.hosts.len() + 1;
        let (tag, k) = (self.tag.clone(), self.k);
        let ns = format!("rbt-o{tag}-h{n}");
        let r = sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip netns add {ns} && ip netns exec {ns} ip link set lo up && \
             ip link add rbo{tag}{n} netns {l} type veth peer name eth0 netns {ns} && \
             ip netns exec {l} ip link set rbo{tag}{n} master rbo{tag}ul up && \
             ip netns exec {ns} ip addr add 10.186.{k}.1{n}/24 dev eth0 && \
             ip netns exec {ns} ip link set eth0 up && \
             ip netns exec {ns} ip route add default via 10.186.{k}.1",
            l = self.lab_ns()
        ));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let root = self.dir.join(format!("root{n}"));
        std::fs::create_dir_all(&root).unwrap();
        let h = Host {
            ns,
            root,
            store: format!("etcd://{}", self.store_addr()),
            env: vec![("RBOX_FIREWALL".into(), self.firewall.into())],
        };
        h.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            image_tar("busybox").to_str().unwrap(),
            "busybox:latest",
        ]);
        self.hosts.push(h);
        self.hosts.last().unwrap()
    }

    fn h(&self, n: usize) -> &Host {
        &self.hosts[n - 1]
    }

    /// A shell command in the lab's namespace (the underlay, "outside" of every host).
    fn sh(&self, script: &str) -> Run {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.lab_ns(),
            script.replace('\'', r"'\''")
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let spaces: Vec<String> = self.hosts.iter().map(|h| h.ns.clone()).collect();
        // Removing every container and network through rbox must leave nothing behind.
        self.hosts.clear();
        let left: Vec<String> = spaces
            .iter()
            .map(|ns| leftovers(ns))
            .filter(|l| !l.trim().is_empty())
            .collect();
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.stop_etcd();
        let mut del = format!("ip netns del {}", self.lab_ns());
        for n in 1..=9 {
            del += &format!("; ip netns del rbt-o{}-h{n} 2>/dev/null", self.tag);
        }
        sh(&del);
        let _ = std::fs::remove_dir_all(&self.dir);
        // Checked only when the test itself passed, so its own failure is what is reported.
        if !std::thread::panicking() {
            assert!(left.is_empty(), "overlay left in the kernel: {left:?}");
        }
    }
}

/// Runs `f` until it returns true or `secs` pass; for what crosses hosts through the store's
/// watch (milliseconds normally), so a slow machine does not fail the test.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create(h: &Host, name: &str, subnet: &str, extra: &[&str]) -> String {
    let mut args = vec!["network", "create", "-d", "overlay", "--subnet", subnet];
    args.extend_from_slice(extra);
    args.push(name);
    h.ok(&args).trim().to_string()
}

fn run_d(h: &Host, name: &str, args: &[&str]) -> String {
    let mut a = vec!["run", "-d", "--name", name];
    a.extend_from_slice(args);
    h.ok(&a).trim().to_string()
}

#[test]
fn created_on_one_host_listed_and_inspected_on_all_removed_from_any() {
    let lab = Lab::new("cr", 1, 3);
    let id = create(lab.h(1), "ov1", "10.185.0.0/16", &[]);
    for n in 1..=3 {
        let ls = lab.h(n).ok(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ]);
        assert!(ls.contains("ov1 overlay global"), "host {n}: {ls}");
        let ls = lab.h(n).ok(&[
            "network",
            "ls",
            "--filter",
            "scope=global",
            "-q",
            "--no-trunc",
        ]);
        assert_eq!(ls.trim(), id, "host {n}");
        let v = lab.h(n).ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Scope}} {{.Driver}} {{(index .IPAM.Config 0).Subnet}}",
            "ov1",
        ]);
        assert_eq!(v.trim(), "global overlay 10.185.0.0/16");
    }
    // Names are unique and subnets disjoint cluster-wide; refusals are one line.
    let e = lab.h(2).bad(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.185.99.0/24",
        "ov1",
    ]);
    assert!(e.contains("network with name ov1 already exists"), "{e}");
    let e = lab.h(3).bad(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.185.128.0/17",
        "ov2",
    ]);
    assert!(e.contains("overlaps"), "{e}");
    let e = lab.h(2).bad(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--ipv6",
        "--subnet",
        "10.186.128.0/18",
        "ov6",
    ]);
    assert!(e.contains("IPv4 only"), "{e}");
    let e = lab.h(2).bad(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.186.128.0/18",
        "--gateway",
        "10.186.128.9",
        "ovg",
    ]);
    assert!(e.contains("--gateway is not supported"), "{e}");
    let e = lab.h(2).bad(&[
        "network",
        "create",
        "-d",
        "overlay",
        "-o",
        "bogus=1",
        "--subnet",
        "10.186.128.0/18",
        "ovo",
    ]);
    assert!(e.contains("unknown overlay driver option bogus"), "{e}");
    // Without a store: refused with one line, on any command form.
    let bare = rbox_command(
        &lab.h(1).root,
        Some(&lab.h(1).ns),
        &["network", "create", "-d", "overlay", "ovn"],
    )
    .env_remove("RBOX_CLUSTER_STORE")
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("overlay networks need a cluster store"),
        "{err}"
    );
    // The same settings from <root>/config.json.
    std::fs::write(
        lab.h(1).root.join("config.json"),
        format!(r#"{{"cluster-store": "etcd://{}"}}"#, lab.store_addr()),
    )
    .unwrap();
    let ls = rbox_command(&lab.h(1).root, Some(&lab.h(1).ns), &["network", "ls"])
        .env_remove("RBOX_CLUSTER_STORE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains("ov1"));
    // An advertised address no interface has: `run` refused with one line, nothing left.
    for bad in ["10.9.9.9", "rbonosuch0"] {
        let r = lab.h(3).run(&[
            "--cluster-advertise",
            bad,
            "run",
            "--rm",
            "--network",
            "ov1",
            "busybox",
            "true",
        ]);
        assert_eq!(r.code, 125, "{}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("--cluster-advertise {bad}")),
            "{}",
            r.stderr
        );
        assert_eq!(lab.h(3).ok(&["ps", "-aq"]), "");
        assert_eq!(lab.h(3).leftovers().trim(), "");
        let keys = lab.keys();
        assert!(!keys.iter().any(|k| k.contains("10.9.9.9")), "{keys:?}");
    }
    // A container on host 2 keeps the network from being removed on host 3.
    let c = run_d(
        lab.h(2),
        "c1",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let e = lab.h(3).fails(1, &["network", "rm", "ov1"]);
    assert!(e.contains("has active endpoints"), "{e}");
    lab.h(2).ok(&["rm", "-f", &c]);
    lab.h(3).ok(&["network", "rm", "ov1"]);
    for n in 1..=3 {
        let ls = lab.h(n).ok(&["network", "ls"]);
        assert!(!ls.contains("ov1"), "host {n}: {ls}");
    }
    assert_eq!(lab.keys(), Vec::<String>::new());
}

#[test]
fn containers_reach_each_other_across_hosts_by_ip_name_and_alias() {
    let mut lab = Lab::new("rt", 2, 2);
    create(lab.h(1), "ov1", "10.185.0.0/16", &[]);
    let web = run_d(
        lab.h(1),
        "web",
        &[
            "--network",
            "ov1",
            "--network-alias",
            "www",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    let web_ip = lab.h(1).ip(&web, "ov1");
    // The VXLAN header's 50 bytes come off the underlay's 1500.
    let link = lab.h(1).inside(&web, "ip -o link show eth0").stdout;
    assert!(link.contains(" mtu 1450 "), "{link}");
    // Right after `run -d` returned on host 1: by address, name and alias from host 2.
    let out = lab.h(2).ok(&[
        "run", "--rm", "--network", "ov1", "busybox", "sh", "-c",
        &format!("ping -c1 -W2 {web_ip} >/dev/null && ping -c1 -W2 web >/dev/null && wget -q -O- http://www/hostname && wget -q -O- http://web.ov1/hostname"),
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [&web[..12], &web[..12]],
        "{out}"
    );
    let cli = run_d(
        lab.h(2),
        "cli",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let cli_ip = lab.h(2).ip(&cli, "ov1");
    assert_ne!(
        web_ip.rsplit_once('.').map(|x| x.0),
        cli_ip.rsplit_once('.').map(|x| x.0),
        "each host leases from its own share"
    );
    // Both directions, the other host's container by name.
    let r = lab.h(1).ok(&["exec", "web", "ping", "-c1", "-W2", "cli"]);
    assert!(r.contains("1 packets received"), "{r}");
    // Inspect on either host: both containers, each with its host.
    for n in [1, 2] {
        let v: serde_json::Value =
            serde_json::from_str(&lab.h(n).ok(&["network", "inspect", "ov1"])).unwrap();
        let c = &v[0]["Containers"];
        assert_eq!(c[&web]["Name"], "web", "{v}");
        assert_eq!(c[&web]["Host"], "10.186.2.11");
        assert_eq!(c[&cli]["Host"], "10.186.2.12");
        assert_eq!(c[&cli]["IPv4Address"], format!("{cli_ip}/16"));
        assert_eq!(v[0]["Peers"].as_array().unwrap().len(), 2, "{v}");
    }
    // A host that joins later is reached from both, with no rbox command run on them: their
    // containers' own namespaces are entered directly.
    let late = {
        let h3 = lab.add_host();
        // Its VTEP chosen by interface (`--cluster-advertise IFACE`).
        let id = h3
            .ok(&[
                "--cluster-advertise",
                "eth0",
                "run",
                "-d",
                "--name",
                "late",
                "--network",
                "ov1",
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
        (h3.ip(&id, "ov1"), id)
    };
    let v: serde_json::Value =
        serde_json::from_str(&lab.h(1).ok(&["network", "inspect", "ov1"])).unwrap();
    assert_eq!(v[0]["Containers"][&late.1]["Host"], "10.186.2.13", "{v}");
    for (n, id) in [(1, &web), (2, &cli)] {
        // At once: the late host's run returned only after their helpers programmed it.
        let got = lab
            .h(n)
            .inside(id, &format!("wget -q -O- http://{}/hostname", late.0));
        assert_eq!(got.stdout.trim(), &late.1[..12], "host {n}: {}", got.stderr);
    }
    // The names of a container removed on one host go on the others.
    lab.h(1).ok(&["rm", "-f", "web"]);
    let gone = eventually(3, || {
        let r = lab.h(2).run(&["exec", "cli", "nslookup", "web"]);
        r.code != 0 && format!("{}{}", r.stdout, r.stderr).contains("NXDOMAIN")
    });
    assert!(gone, "web still resolves on host 2");
    // Disconnect and connect on a running container.
    lab.h(2).ok(&["network", "disconnect", "ov1", "cli"]);
    let r = lab
        .h(2)
        .run(&["exec", "cli", "ping", "-c1", "-W1", &late.0]);
    assert_ne!(r.code, 0, "still reaches the overlay after disconnect");
    // Connected to a second overlay, with an alias that the other hosts resolve.
    create(
        lab.h(3),
        "ov2",
        "10.186.128.0/18",
        &["-o", "com.docker.network.driver.mtu=1400"],
    );
    lab.h(2)
        .ok(&["network", "connect", "--alias", "back", "ov2", "cli"]);
    let links = lab.h(2).inside(&cli, "ip -o link").stdout;
    assert!(links.contains(" mtu 1400 "), "-o mtu: {links}");
    let r = lab.h(3).ok(&[
        "run",
        "--rm",
        "--network",
        "ov2",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "back",
    ]);
    assert!(r.contains("1 packets received"), "{r}");
}

#[test]
fn parallel_runs_on_two_hosts_get_distinct_addresses() {
    let lab = Lab::new("pa", 3, 2);
    create(
        lab.h(1),
        "ov1",
        "10.185.0.0/16",
        &["-o", "rbox.overlay.host_prefix=26"],
    );
    let mut children = Vec::new();
    for n in [1, 2] {
        for i in 0..10 {
            let mut c = lab.h(n).command(&[
                "run",
                "-d",
                "--name",
                &format!("p{n}-{i}"),
                "--network",
                "ov1",
                "busybox",
                "sleep",
                "600",
            ]);
            // Host 2 names its VTEP by address, in the environment's form.
            if n == 2 {
                c.env("RBOX_CLUSTER_ADVERTISE", "10.186.3.12");
            }
            let c = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push(c);
        }
    }
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut ips = BTreeSet::new();
    for n in [1, 2] {
        for i in 0..10 {
            ips.insert(lab.h(n).ip(&format!("p{n}-{i}"), "ov1"));
        }
    }
    assert_eq!(ips.len(), 20, "{ips:?}");
    let v: serde_json::Value =
        serde_json::from_str(&lab.h(1).ok(&["network", "inspect", "ov1"])).unwrap();
    let c = v[0]["Containers"].as_object().unwrap();
    assert_eq!(c.len(), 20, "{v}");
    assert_eq!(
        c.values().filter(|e| e["Host"] == "10.186.3.12").count(),
        10,
        "{v}"
    );
    // Each host's share: two /26 of the /16, one per host.
    let shares: Vec<_> = lab
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("/rbox/subnet/"))
        .collect();
    assert_eq!(shares.len(), 2, "{shares:?}");
    assert_eq!(
        lab.keys()
            .iter()
            .filter(|k| k.starts_with("/rbox/endpoint/"))
            .count(),
        20
    );
}

#[test]
fn overlays_are_isolated_and_nat_ports_and_internal_behave_as_on_a_bridge() {
    isolation_nat_ports_internal(Lab::with_firewall("is", 4, 2, "iptables"));
}

#[test]
fn overlays_are_isolated_and_nat_ports_and_internal_behave_as_on_a_bridge_nftables() {
    isolation_nat_ports_internal(Lab::with_firewall("in", 9, 2, "nftables"));
}

/// Isolation between overlays and from bridges, `-p`, outbound NAT and `--internal`, on the
/// lab's firewall backend.
fn isolation_nat_ports_internal(mut lab: Lab) {
    let k = lab.k;
    create(lab.h(1), "ova", "10.185.0.0/20", &[]);
    create(lab.h(1), "ovb", "10.185.16.0/20", &[]);
    create(lab.h(1), "ovi", "10.185.32.0/20", &["--internal"]);
    let a1 = run_d(
        lab.h(1),
        "a1",
        &[
            "--network",
            "ova",
            "-p",
            "21500:80",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    let b1 = run_d(
        lab.h(1),
        "b1",
        &[
            "--network",
            "ovb",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    let b2 = run_d(
        lab.h(2),
        "b2",
        &["--network", "ovb", "busybox", "sleep", "600"],
    );
    let a2 = run_d(
        lab.h(2),
        "a2",
        &["--network", "ova", "busybox", "sleep", "600"],
    );
    let br = run_d(lab.h(2), "br", &["busybox", "sleep", "600"]);
    let (a1_ip, b1_ip) = (lab.h(1).ip(&a1, "ova"), lab.h(1).ip(&b1, "ovb"));
    // Same overlay across hosts: yes; the other overlay, on another host or the same: no.
    assert!(lab
        .h(2)
        .inside(&a2, &format!("wget -q -O- http://{a1_ip}/hostname"))
        .stdout
        .contains(&a1[..12]));
    assert!(lab
        .h(2)
        .inside(&b2, &format!("wget -q -O- http://{b1_ip}/hostname"))
        .stdout
        .contains(&b1[..12]));
    assert_ne!(
        lab.h(2).inside(&b2, &format!("ping -c1 -W1 {a1_ip}")).code,
        0,
        "ovb reaches ova across hosts"
    );
    assert_ne!(
        lab.h(1).inside(&b1, &format!("ping -c1 -W1 {a1_ip}")).code,
        0,
        "ovb reaches ova on one host"
    );
    assert_ne!(
        lab.h(2).inside(&br, &format!("ping -c1 -W1 {a1_ip}")).code,
        0,
        "a bridge reaches an overlay"
    );
    let br_ip = lab.h(2).ip(&br, "bridge");
    assert_ne!(
        lab.h(2).inside(&a2, &format!("ping -c1 -W1 {br_ip}")).code,
        0,
        "an overlay reaches a bridge"
    );
    // Published port on the container's host, from the underlay.
    let r = lab.sh(&format!(
        "curl -s --max-time 5 http://10.186.{k}.11:21500/hostname"
    ));
    assert_eq!(r.stdout.trim(), &a1[..12], "{}{}", r.stdout, r.stderr);
    // A flushed firewall comes back whole with `network reload`, the tunnel's rules included.
    let (flush, dump) = match lab.firewall {
        "iptables" => (
            "for t in filter nat; do iptables -t $t -F && iptables -t $t -X; done",
            "iptables-save",
        ),
        _ => ("nft flush ruleset", "nft list ruleset"),
    };
    assert_eq!(lab.h(1).sh(flush).code, 0);
    let port = format!("curl -s --max-time 3 http://10.186.{k}.11:21500/hostname");
    assert_ne!(lab.sh(&port).code, 0, "the flush left the port");
    lab.h(1).ok(&["network", "reload"]);
    assert_eq!(lab.sh(&port).stdout.trim(), &a1[..12], "port after reload");
    assert!(
        lab.h(1).sh(dump).stdout.contains("rbox-vx"),
        "tunnel after reload"
    );
    assert_ne!(
        lab.h(1).inside(&b1, &format!("ping -c1 -W1 {a1_ip}")).code,
        0,
        "ovb reaches ova after reload"
    );
    assert!(lab
        .h(2)
        .inside(&a2, &format!("wget -q -O- http://{a1_ip}/hostname"))
        .stdout
        .contains(&a1[..12]));
    // Outbound NAT: an upstream server in the lab sees the host's underlay address.
    let server = Command::new("ip")
        .args(["netns", "exec", &lab.lab_ns(), "python3", "-c",
            &format!("import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(s):\n  s.send_response(200);s.end_headers();s.wfile.write(s.client_address[0].encode())\n def log_message(s,*a): pass\nh.HTTPServer(('10.186.{k}.1',21501),H).serve_forever()")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.servers.push(server);
    let seen = eventually(5, || {
        lab.h(2)
            .inside(&a2, &format!("wget -q -O- http://10.186.{k}.1:21501/"))
            .stdout
            .trim()
            == format!("10.186.{k}.12")
    });
    assert!(
        seen,
        "outbound traffic not masqueraded to the host's address"
    );
    // --internal: no outbound, no published ports, but its containers reach each other.
    let i1 = run_d(
        lab.h(1),
        "i1",
        &[
            "--network",
            "ovi",
            "-p",
            "21502:80",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    let i2 = run_d(
        lab.h(2),
        "i2",
        &["--network", "ovi", "busybox", "sleep", "600"],
    );
    let i1_ip = lab.h(1).ip(&i1, "ovi");
    assert!(lab
        .h(2)
        .inside(&i2, &format!("wget -q -O- http://{i1_ip}/hostname"))
        .stdout
        .contains(&i1[..12]));
    assert_ne!(
        lab.h(2)
            .inside(
                &i2,
                &format!("timeout 3 wget -q -O- http://10.186.{k}.1:21501/")
            )
            .code,
        0,
        "internal reaches outside"
    );
    let r = lab.sh(&format!(
        "curl -s --max-time 3 http://10.186.{k}.11:21502/hostname"
    ));
    assert_ne!(r.code, 0, "internal publishes a port: {}", r.stdout);
    // The rules are the backend's own: the other tool shows nothing of rbox's.
    let (ipt, nft) = (
        lab.h(1).sh("iptables-save").stdout,
        lab.h(1).sh("nft list table inet rbox").stdout,
    );
    match lab.firewall {
        "iptables" => {
            assert!(ipt.contains("-o rbox-vx"), "{ipt}");
            assert!(!nft.contains("rbox-vx"), "{nft}");
            assert!(
                !ipt.contains("-s 10.185.32.0/20 ! -d 10.185.32.0/20 -j MASQUERADE"),
                "internal is masqueraded"
            );
        }
        _ => {
            assert!(nft.contains("\"rbox-vx"), "{nft}");
            assert!(!ipt.contains("rbox-vx"), "{ipt}");
            let masq = nft
                .split("set masquerade4")
                .nth(1)
                .and_then(|m| m.split('}').next())
                .unwrap_or_default();
            assert!(masq.contains("10.185.0.0/20"), "{nft}");
            assert!(
                !masq.contains("10.185.32.0/20"),
                "internal is masqueraded: {nft}"
            );
        }
    }
}

#[test]
fn store_unreachable_fails_cleanly_and_running_containers_keep_working() {
    let mut lab = Lab::new("et", 5, 2);
    create(lab.h(1), "ov1", "10.185.0.0/16", &[]);
    let c1 = run_d(
        lab.h(1),
        "c1",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let c2 = run_d(
        lab.h(2),
        "c2",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let c2_ip = lab.h(2).ip(&c2, "ov1");
    lab.stop_etcd();
    // One line, exit 125, nothing left: no container, sandbox, veth, lease.
    let before = lab.h(1).sh("ip -o link | wc -l").stdout;
    for n in [1, 2] {
        let e = lab.h(n).bad(&[
            "run",
            "-d",
            "--name",
            "xx",
            "--network",
            "ov1",
            "busybox",
            "sleep",
            "9",
        ]);
        assert!(
            e.contains("cluster store") && e.contains("unreachable"),
            "{e}"
        );
        assert!(
            lab.h(n).run(&["inspect", "xx"]).code != 0,
            "container left on host {n}"
        );
    }
    let e = lab.h(1).fails(
        1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.186.128.0/18",
            "ov2",
        ],
    );
    assert!(e.contains("unreachable"), "{e}");
    assert_eq!(
        lab.h(1).sh("ip -o link | wc -l").stdout,
        before,
        "links left"
    );
    assert_eq!(
        std::fs::read_dir(lab.h(1).root.join("netns"))
            .unwrap()
            .count(),
        1,
        "sandbox left"
    );
    // Running containers keep their kernel state; bridges never wait on the store.
    assert_eq!(
        lab.h(1).inside(&c1, &format!("ping -c1 -W2 {c2_ip}")).code,
        0
    );
    let out = lab.h(1).ok(&["run", "--rm", "busybox", "echo", "bridge"]);
    assert_eq!(out.trim(), "bridge");
    // Back: a run works again and the keys owed while it was away are gone.
    lab.start_etcd();
    run_d(
        lab.h(1),
        "c3",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let clean = eventually(10, || {
        lab.keys()
            .iter()
            .filter(|k| k.starts_with("/rbox/endpoint/"))
            .count()
            == 3
    });
    assert!(clean, "{:?}", lab.keys());
}

#[test]
fn a_killed_helper_is_restarted_by_the_next_command_and_catches_up() {
    let lab = Lab::new("kl", 6, 2);
    create(lab.h(1), "ov1", "10.185.0.0/16", &[]);
    let c1 = run_d(
        lab.h(1),
        "c1",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let pid = lab.h(1).agent_pid().expect("helper running");
    // SAFETY: the helper of this test's root.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // A host joins while host 1's helper is dead: host 2 reaches host 1 (it programs its own
    // peers), host 1 learns of host 2 once any rbox command ran there.
    let c2 = run_d(
        lab.h(2),
        "c2",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let c2_ip = lab.h(2).ip(&c2, "ov1");
    lab.h(1).ok(&["ps"]);
    let new_pid = lab.h(1).agent_pid().expect("helper restarted");
    assert_ne!(new_pid, pid);
    assert!(eventually(3, || lab
        .h(1)
        .inside(&c1, &format!("ping -c1 -W1 {c2_ip}"))
        .code
        == 0));
    // Killed again, then the last container goes: the next command's helper has nothing to do
    // and leaves, with nothing of the network left on the host.
    // SAFETY: as above.
    unsafe { libc::kill(new_pid, libc::SIGKILL) };
    lab.h(1).ok(&["rm", "-f", "c1"]);
    lab.h(1).ok(&["ps"]);
    assert!(
        eventually(3, || lab.h(1).agent_pid().is_none()),
        "helper lingers"
    );
    assert_eq!(lab.h(1).leftovers().trim(), "");
}

#[test]
fn a_dead_hosts_share_expires_after_the_ttl_and_a_returning_host_reclaims_it() {
    let mut lab = Lab::new("tt", 7, 2);
    for h in &mut lab.hosts {
        h.env.push(("RBOX_CLUSTER_LEASE_TTL".into(), "6".into()));
    }
    create(lab.h(1), "ov1", "10.185.0.0/16", &[]);
    let c1 = run_d(
        lab.h(1),
        "c1",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let c2 = run_d(
        lab.h(2),
        "c2",
        &["--network", "ov1", "busybox", "sleep", "600"],
    );
    let c2_ip = lab.h(2).ip(&c2, "ov1");
    let held = |lab: &Lab| {
        lab.keys()
            .iter()
            .filter(|k| k.starts_with("/rbox/subnet/"))
            .count()
    };
    assert_eq!(held(&lab), 2);
    // Host 2 "dies": its helper stops renewing and no command runs there.
    let pid = lab.h(2).agent_pid().unwrap();
    // SAFETY: the helper of this test's root.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(
        eventually(15, || held(&lab) == 1),
        "the dead host's share outlived its TTL"
    );
    assert!(
        eventually(3, || lab
            .h(1)
            .inside(&c1, &format!("ping -c1 -W1 {c2_ip}"))
            .code
            != 0),
        "host 1 still routes to the dead host"
    );
    // It comes back: the next command restarts its helper, which puts its share and its
    // container back; host 1 reaches it again, at the same address.
    lab.h(2).ok(&["ps"]);
    assert!(eventually(5, || held(&lab) == 2), "{:?}", lab.keys());
    assert_eq!(lab.h(2).ip(&c2, "ov1"), c2_ip);
    assert!(eventually(5, || lab
        .h(1)
        .inside(&c1, &format!("ping -c1 -W1 {c2_ip}"))
        .code
        == 0));
    assert!(eventually(5, || lab
        .h(1)
        .run(&["exec", "c1", "nslookup", "c2"])
        .stdout
        .contains(&c2_ip)));
}

#[test]
fn teardown_leaves_no_link_entry_route_rule_or_key() {
    teardown(Lab::with_firewall("td", 8, 2, "iptables"));
}

#[test]
fn teardown_leaves_no_link_entry_route_rule_or_key_nftables() {
    teardown(Lab::with_firewall("tn", 10, 2, "nftables"));
}

fn teardown(lab: Lab) {
    create(lab.h(1), "ov1", "10.185.0.0/16", &[]);
    create(lab.h(2), "ov2", "10.186.128.0/18", &[]);
    for n in [1, 2] {
        run_d(
            lab.h(n),
            &format!("a{n}"),
            &[
                "--network",
                "ov1",
                "-p",
                "21600:80",
                "busybox",
                "sleep",
                "600",
            ],
        );
        run_d(
            lab.h(n),
            &format!("b{n}"),
            &["--network", "ov2", "busybox", "sleep", "600"],
        );
    }
    assert!(
        lab.h(1).leftovers().contains("rbox-vx"),
        "nothing was made?"
    );
    for n in [1, 2] {
        lab.h(n)
            .ok(&["rm", "-f", &format!("a{n}"), &format!("b{n}")]);
        assert_eq!(lab.h(n).leftovers().trim(), "", "host {n}");
    }
    lab.h(2).ok(&["network", "rm", "ov1", "ov2"]);
    assert_eq!(lab.keys(), Vec::<String>::new());
    for n in [1, 2] {
        assert!(
            eventually(3, || lab.h(n).agent_pid().is_none()),
            "helper of host {n} lingers"
        );
    }
}
