//! macvlan and ipvlan networks against the real kernel, on a "LAN" each test makes: a veth
//! whose host end (rbt-m<N>p) is the parent and whose other end is in a namespace
//! (rbt-mlan<N>) with a bridge and a host at 10.184.<N>.100. Containers must reach that host
//! and be reached from it, with their own addresses (no NAT), and resolve names.
//!
//! Name space: links/netns rbt-m*, subnets 10.184.0.0/16 (LANs 10.184.N, default bridges
//! 10.184.(200+N)). Kernels without ipvlan or 802.1q (CONFIG_IPVLAN, CONFIG_VLAN_8021Q) skip
//! the tests that need them, saying so.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use rbox_tests::{
    assert_passes_on_nftables_without_iptables, sh, wait_for, CtrFixture, RboxCli, Run,
};
use serde_json::Value;

/// Held by the tests that make host links of no LAN (dummies, shims) and by the one that
/// checks no link is left: the tests of this file run at once.
static HOST_LINKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A LAN in a namespace of its own: bridge br0 with the host 10.184.N.100, reached from the
/// host namespace through the veth end rbt-m<N>p (the parent of the test's networks).
struct Lan {
    ns: String,
    parent: String,
    n: u8,
    servers: Vec<Child>,
}

impl Lan {
    fn new(n: u8) -> Lan {
        let (ns, parent) = (format!("rbt-mlan{n}"), format!("rbt-m{n}p"));
        // What a killed earlier run may have left.
        sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip link del {parent} 2>/dev/null"
        ));
        let r = sh(&format!(
            "set -e; ip netns add {ns}
             ip link add {parent} type veth peer name lan0 netns {ns}
             ip link set {parent} up
             ip -n {ns} link set lo up
             ip -n {ns} link add br0 type bridge
             ip -n {ns} link set lan0 master br0
             ip -n {ns} link set lan0 up
             ip -n {ns} link set br0 up
             ip -n {ns} addr add 10.184.{n}.100/24 dev br0"
        ));
        assert_eq!(r.code, 0, "making the LAN: {}", r.stderr);
        Lan {
            ns,
            parent,
            n,
            servers: Vec::new(),
        }
    }

    fn host(&self) -> String {
        format!("10.184.{}.100", self.n)
    }

    /// Runs `script` on the LAN host.
    fn sh(&self, script: &str) -> Run {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.ns,
            script.replace('\'', r"'\''")
        ))
    }

    /// An HTTP server on the LAN host's port 21080 that logs each client's address to `log`.
    fn http_server(&mut self, log: &Path) {
        let dir = log.with_extension("www");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "lan\n").unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "python3",
                "-m",
                "http.server",
                "21080",
            ])
            .arg("--bind")
            .arg(self.host())
            .arg("--directory")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        self.servers.push(child);
        let probe = format!("curl -s -m 1 http://{}:21080/", self.host());
        wait_for("the LAN's HTTP server", 60, || self.sh(&probe).code == 0);
    }

    /// Whether the kernel makes links of `kind` (`ipvlan`, `vlan`) on the LAN's parent.
    fn kernel_has(&self, kind: &str) -> bool {
        let extra = if kind == "vlan" { "id 99" } else { "" };
        let ok = sh(&format!(
            "ip link add link {} name rbt-mprobe type {kind} {extra}",
            self.parent
        ))
        .code
            == 0;
        sh("ip link del rbt-mprobe 2>/dev/null");
        if !ok {
            eprintln!("SKIPPED: this kernel cannot make {kind} links");
        }
        ok
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        sh(&format!(
            "ip netns del {} 2>/dev/null; ip link del {} 2>/dev/null",
            self.ns, self.parent
        ));
    }
}

/// One test: its rbox (own root, default bridge rbt-m<N>h on 10.184.(200+N).0/24, busybox) and
/// its LAN. Drop removes the containers and networks, then the LAN.
struct T {
    c: CtrFixture,
    lan: Lan,
}

impl std::ops::Deref for T {
    type Target = CtrFixture;
    fn deref(&self) -> &CtrFixture {
        &self.c
    }
}

impl T {
    fn new(test: &str, n: u8) -> T {
        let c = CtrFixture::new(
            test,
            format!("rbt-m{n}h"),
            format!("10.184.{}.0/24", 200 + n),
        );
        T {
            c,
            lan: Lan::new(n),
        }
    }

    fn network(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["network", "inspect", name])).unwrap();
        v[0].clone()
    }

    /// The host links this test's networks could have made: on its parent (sub-interfaces,
    /// shims) or parentless (dummies); other tests' links are not its business.
    fn links(&self) -> Vec<String> {
        sh("ip -o link show")
            .stdout
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .filter(|n| {
                n.starts_with(&format!("{}.", self.lan.parent))
                    || ["dm-", "di-", "rbs"].iter().any(|p| n.starts_with(p))
            })
            .collect()
    }

    fn link_exists(&self, name: &str) -> bool {
        sh(&format!("ip link show {name}")).code == 0
    }
}

#[test]
fn macvlan_containers_are_hosts_of_the_lan() {
    let mut t = T::new("mv-lan", 1);
    t.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.184.1.0/24",
        "--gateway",
        "10.184.1.1",
        "--ip-range",
        "10.184.1.32/28",
        "--aux-address",
        "router=10.184.1.34",
        "-o",
        "parent=rbt-m1p",
        "lan",
    ]);
    let v = t.network("lan");
    assert_eq!(v["Driver"], "macvlan", "{v}");
    assert_eq!(v["Options"]["parent"], "rbt-m1p", "{v}");
    assert_eq!(v["Internal"], false, "{v}");
    let web = t
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "lan",
            "--ip",
            "10.184.1.40",
            "--mac-address",
            "02:42:0a:b8:01:28",
            "busybox",
            "httpd",
            "-f",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    t.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "lan",
        "busybox",
        "sleep",
        "300",
    ]);
    let app = t.ip_of("app", "lan");
    let last: u8 = app.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        (32..48).contains(&last) && last != 34 && last != 40,
        "{app}"
    );

    // The LAN host reaches the container at its own address and MAC.
    let r = t.lan.sh("curl -s -m 2 http://10.184.1.40/hostname");
    assert_eq!(r.stdout.trim(), &web[..12], "{}", r.stderr);
    let neigh = t.lan.sh("ip neigh show 10.184.1.40").stdout;
    assert!(neigh.contains("02:42:0a:b8:01:28"), "{neigh}");
    // The container reaches the LAN host, which sees the container's own address: no NAT.
    let log = t.c.fx.rbox.root.join("lan-http.log");
    t.lan.http_server(&log);
    let out = t.ok(&[
        "exec",
        "app",
        "wget",
        "-q",
        "-O-",
        "http://10.184.1.100:21080/",
    ]);
    assert_eq!(out.trim(), "lan");
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains(&format!("{app} - -")), "LAN host saw: {seen}");
    // Names resolve on a macvlan network (at 127.0.0.11 in the sandbox, as Docker).
    let out = t.ok(&[
        "exec",
        "app",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup web",
    ]);
    assert!(out.contains("nameserver 127.0.0.11\n"), "{out}");
    assert!(out.contains("Address: 10.184.1.40"), "{out}");
    t.ok(&["exec", "app", "ping", "-c1", "-W2", "web"]);
    // The kernel keeps the parent's host from its macvlan children (see rbox.host_shim).
    assert_ne!(sh("busybox ping -c1 -W1 10.184.1.40").code, 0);
    // Gone from the LAN when removed.
    t.ok(&["rm", "-f", "web"]);
    assert_ne!(t.lan.sh("busybox ping -c1 -W1 10.184.1.40").code, 0);
    t.ok(&["rm", "-f", "app"]);
    assert!(
        t.resolver_pid().is_none(),
        "the resolver outlived the last container"
    );
}

#[test]
fn the_host_shim_lets_the_host_reach_its_macvlan_containers() {
    let _links = HOST_LINKS.lock().unwrap_or_else(|e| e.into_inner());
    let t = T::new("mv-shim", 2);
    let id = t
        .ok(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "10.184.2.0/24",
            "-o",
            "parent=rbt-m2p",
            "-o",
            "rbox.host_shim=10.184.2.250",
            "shimmed",
        ])
        .trim()
        .to_string();
    let shim = format!("rbs{}", &id[..12]);
    let addr = sh(&format!("ip -4 -o addr show {shim}")).stdout;
    assert!(addr.contains("10.184.2.250/32"), "{addr}");
    let web = t
        .ok(&[
            "run",
            "-d",
            "--network",
            "shimmed",
            "busybox",
            "httpd",
            "-f",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    let ip = t.ip_of(&web, "shimmed");
    let route = sh(&format!("ip route show {ip}")).stdout;
    assert!(route.contains(&format!("dev {shim}")), "{route}");
    let r = sh(&format!("curl -s -m 2 http://{ip}/hostname"));
    assert_eq!(
        r.stdout.trim(),
        &web[..12],
        "the host reaches its container: {}",
        r.stderr
    );
    // The LAN still reaches it too.
    assert_eq!(t.lan.sh(&format!("busybox ping -c1 -W2 {ip}")).code, 0);
    t.ok(&["rm", "-f", &web]);
    assert_eq!(
        sh(&format!("ip route show {ip}")).stdout.trim(),
        "",
        "route left"
    );
    // The networks' kernel side goes (what `system prune` does with nothing running, or a
    // reboot), the shim with it; the next container brings it back.
    t.ok(&["network", "teardown"]);
    assert!(!t.link_exists(&shim), "teardown left the shim");
    let web = t
        .ok(&[
            "run",
            "-d",
            "--network",
            "shimmed",
            "busybox",
            "httpd",
            "-f",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    let ip = t.ip_of(&web, "shimmed");
    let r = sh(&format!("curl -s -m 2 http://{ip}/hostname"));
    assert_eq!(r.stdout.trim(), &web[..12], "shim not back: {}", r.stderr);
    t.ok(&["rm", "-f", &web]);
    t.ok(&["network", "rm", "shimmed"]);
    assert!(!t.link_exists(&shim), "shim left");
}

#[test]
fn a_parentless_macvlan_network_is_internal_on_a_link_of_its_own() {
    let _links = HOST_LINKS.lock().unwrap_or_else(|e| e.into_inner());
    let t = T::new("mv-dummy", 3);
    let id = t
        .ok(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "10.184.3.0/24",
            "alone",
        ])
        .trim()
        .to_string();
    let v = t.network("alone");
    assert_eq!(v["Internal"], true, "no parent: internal, as Docker: {v}");
    let link = format!("dm-{}", &id[..12]);
    assert!(t.link_exists(&link), "{link} missing");
    t.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "alone",
        "busybox",
        "sleep",
        "300",
    ]);
    t.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "alone",
        "busybox",
        "sleep",
        "300",
    ]);
    t.ok(&["exec", "c1", "ping", "-c1", "-W2", "c2"]);
    let routes = t.ok(&["exec", "c1", "ip", "route"]);
    assert!(
        !routes.contains("default"),
        "an internal network has no way out: {routes}"
    );
    t.ok(&["rm", "-f", "c1", "c2"]);
    t.ok(&["network", "rm", "alone"]);
    assert!(!t.link_exists(&link), "{link} left");
}

#[test]
fn an_802_1q_parent_is_made_and_goes_with_the_last_network() {
    let t = T::new("mv-vlan", 4);
    if !t.lan.kernel_has("vlan") {
        return;
    }
    // The LAN's VLAN 10: tagged frames pass its bridge up to br0.10.
    let r = t.lan.sh(
        "ip link add link br0 name br0.10 type vlan id 10 && ip link set br0.10 up && \
         ip addr add 10.184.40.100/24 dev br0.10",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    t.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.184.40.0/24",
        "-o",
        "parent=rbt-m4p.10",
        "v10",
    ]);
    let d = sh("ip -d link show rbt-m4p.10").stdout;
    assert!(d.contains("vlan protocol 802.1Q id 10"), "{d}");
    assert!(
        sh("ip link show rbt-m4p.10")
            .stdout
            .contains("alias rbox vlan"),
        "not marked"
    );
    t.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.184.41.0/24",
        "-o",
        "parent=rbt-m4p.10",
        "v10b",
    ]);
    t.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "v10",
        "busybox",
        "sleep",
        "300",
    ]);
    t.ok(&["exec", "c1", "ping", "-c1", "-W2", "10.184.40.100"]);
    t.ok(&["rm", "-f", "c1"]);
    t.ok(&["network", "rm", "v10"]);
    assert!(t.link_exists("rbt-m4p.10"), "deleted while v10b uses it");
    t.ok(&["network", "rm", "v10b"]);
    assert!(!t.link_exists("rbt-m4p.10"), "left after its last network");
    // A sub-interface rbox did not make is never deleted.
    sh("ip link add link rbt-m4p name rbt-m4p.20 type vlan id 20");
    t.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.184.42.0/24",
        "-o",
        "parent=rbt-m4p.20",
        "v20",
    ]);
    t.ok(&["network", "rm", "v20"]);
    assert!(
        t.link_exists("rbt-m4p.20"),
        "deleted a link rbox did not make"
    );
    sh("ip link del rbt-m4p.20");
}

#[test]
fn ipvlan_l2_containers_are_hosts_of_the_lan_and_l3_ones_route() {
    let t = T::new("iv-lan", 5);
    if !t.lan.kernel_has("ipvlan") {
        return;
    }
    t.ok(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "--subnet",
        "10.184.50.0/24",
        "--gateway",
        "10.184.50.1",
        "-o",
        "parent=rbt-m5p",
        "l2",
    ]);
    let web = t
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "l2",
            "busybox",
            "httpd",
            "-f",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    t.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "l2",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = t.ip_of("web", "l2");
    // ipvlan children share the parent's MAC; inspect shows the real one.
    let parent_mac = std::fs::read_to_string("/sys/class/net/rbt-m5p/address").unwrap();
    let f = "{{(index .NetworkSettings.Networks \"l2\").MacAddress}}";
    assert_eq!(t.ok(&["inspect", "-f", f, "web"]).trim(), parent_mac.trim());
    // The LAN host takes an address in the network's subnet as well.
    t.lan.sh("ip addr add 10.184.50.100/24 dev br0");
    let r = t.lan.sh(&format!("curl -s -m 2 http://{ip}/hostname"));
    assert_eq!(r.stdout.trim(), &web[..12], "{}", r.stderr);
    t.ok(&["exec", "app", "ping", "-c1", "-W2", "10.184.50.100"]);
    let out = t.ok(&["exec", "app", "nslookup", "web"]);
    assert!(
        out.contains(&format!("Address: {ip}")),
        "names on ipvlan: {out}"
    );
    // --mac-address is refused (Docker's words), nothing is left.
    let e = t.bad(&[
        "run",
        "-d",
        "--network",
        "l2",
        "--mac-address",
        "02:42:00:00:00:09",
        "busybox",
        "true",
    ]);
    assert!(
        e.contains("ipvlan interfaces do not support custom mac address assignment"),
        "{e}"
    );
    assert_eq!(t.ok(&["ps", "-aq"]).lines().count(), 2);
    // A macvlan network cannot take the parent of an ipvlan one.
    let e = t.bad(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=rbt-m5p",
        "mv",
    ]);
    assert!(
        e.contains("ipvlan network l2 is already using parent interface rbt-m5p"),
        "{e}"
    );
    t.ok(&["rm", "-f", "web", "app"]);
    t.ok(&["network", "rm", "l2"]);
    // L3: the default route leaves through the device; containers route to each other.
    t.ok(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "--subnet",
        "10.184.51.0/24",
        "-o",
        "ipvlan_mode=l3",
        "-o",
        "parent=rbt-m5p",
        "l3",
    ]);
    t.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "l3",
        "busybox",
        "sleep",
        "300",
    ]);
    t.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "l3",
        "busybox",
        "sleep",
        "300",
    ]);
    let routes = t.ok(&["exec", "c1", "ip", "route"]);
    assert!(routes.contains("default dev eth0"), "{routes}");
    t.ok(&["exec", "c1", "ping", "-c1", "-W2", "c2"]);
}

/// `--internal` with a parent, as Docker: the containers are on the LAN (on-link) but get no
/// default route; with `--ipv6` they have an address of the IPv6 subnet too, reach the LAN
/// host over it and find each other by AAAA.
#[test]
fn an_internal_dual_stack_macvlan_network_stays_on_its_lan() {
    let t = T::new("mv-int6", 7);
    let r = t.lan.sh("ip addr add fd00:184:7::100/64 dev br0 nodad");
    assert_eq!(r.code, 0, "{}", r.stderr);
    t.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--internal",
        "--ipv6",
        "--subnet",
        "10.184.7.0/24",
        "--subnet",
        "fd00:184:7::/64",
        "-o",
        "parent=rbt-m7p",
        "inner",
    ]);
    let v = t.network("inner");
    assert_eq!(
        (&v["Internal"], &v["EnableIPv6"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{v}"
    );
    for c in ["c1", "c2"] {
        t.ok(&[
            "run",
            "-d",
            "--name",
            c,
            "--network",
            "inner",
            "busybox",
            "sleep",
            "300",
        ]);
    }
    let routes = t.ok(&["exec", "c1", "sh", "-c", "ip route; ip -6 route"]);
    assert!(
        !routes.contains("default"),
        "internal: no way out: {routes}"
    );
    let f = "{{(index .NetworkSettings.Networks \"inner\").GlobalIPv6Address}}";
    let ip6 = t.ok(&["inspect", "-f", f, "c2"]).trim().to_string();
    assert!(ip6.starts_with("fd00:184:7::"), "{ip6}");
    let addrs = t.ok(&["exec", "c2", "ip", "-6", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip6}/64")), "{addrs}");
    // On-link, both families; IPv6 once duplicate address detection let the address go.
    t.ok(&["exec", "c1", "ping", "-c1", "-W2", &t.lan.host()]);
    wait_for("c1 to reach the LAN host over IPv6", 10, || {
        t.run(&["exec", "c1", "ping", "-6", "-c1", "-W1", "fd00:184:7::100"])
            .code
            == 0
    });
    wait_for("the LAN host to reach c2 over IPv6", 10, || {
        t.lan.sh(&format!("busybox ping -6 -c1 -W1 {ip6}")).code == 0
    });
    let out = t.ok(&["exec", "c1", "nslookup", "-type=aaaa", "c2"]);
    assert!(out.contains(&ip6), "{out}");
    t.ok(&["rm", "-f", "c1", "c2"]);
    t.ok(&["network", "rm", "inner"]);
}

#[test]
fn bad_macvlan_and_ipvlan_input_is_one_line_and_leaves_nothing() {
    let _links = HOST_LINKS.lock().unwrap_or_else(|e| e.into_inner());
    let t = T::new("mv-bad", 6);
    t.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.184.60.0/24",
        "-o",
        "parent=rbt-m6p",
        "mv",
    ]);
    let links = t.links();
    let nets = t.ok(&["network", "ls", "-q"]);
    for (args, want) in [
        (
            &["-d", "macvlan", "-o", "parent=rbt-m6p", "-o", "foo=1"][..],
            "unknown macvlan driver option foo",
        ),
        (
            &["-d", "ipvlan", "-o", "macvlan_mode=bridge"],
            "unknown ipvlan driver option macvlan_mode",
        ),
        (
            &["-d", "macvlan", "-o", "parent=rbt-mnope"],
            "-o parent interface was not found on the host: rbt-mnope",
        ),
        (
            &["-d", "macvlan", "-o", "parent=rbt-mnope.5"],
            "-o parent interface was not found on the host: rbt-mnope",
        ),
        (
            &["-d", "macvlan", "-o", "parent=rbt-m6p", "-o", "parent=lo"],
            "option parent given twice",
        ),
        (
            &["-d", "macvlan", "-o", "parent=rbt-m6p.0"],
            "vlan id must be between 1-4094, received: 0",
        ),
        (
            &["-d", "ipvlan", "-o", "parent=rbt-m6p.4095"],
            "vlan id must be between 1-4094, received: 4095",
        ),
        (
            &["-d", "macvlan", "-o", "parent=lo"],
            "loopback interface is not a valid macvlan parent link",
        ),
        (
            &["-d", "macvlan", "-o", "macvlan_mode=l2"],
            "requested macvlan mode 'l2' is not valid",
        ),
        (
            &["-d", "ipvlan", "-o", "ipvlan_mode=bridge"],
            "requested ipvlan mode 'bridge' is not valid",
        ),
        (
            &["-d", "ipvlan", "-o", "ipvlan_flag=l3"],
            "requested ipvlan flag 'l3' is not valid",
        ),
        (
            &["-d", "ipvlan", "-o", "parent=rbt-m6p"],
            "macvlan network mv is already using parent interface rbt-m6p",
        ),
        (
            &[
                "-d",
                "macvlan",
                "-o",
                "parent=rbt-m6p",
                "-o",
                "macvlan_mode=passthru",
            ],
            "cannot use mode passthru",
        ),
        (
            &["-d", "macvlan", "-o", "rbox.host_shim=nope"],
            "invalid rbox.host_shim address",
        ),
    ] {
        let mut a = vec!["network", "create", "--subnet", "10.184.61.0/24"];
        a.extend(args);
        a.push("x");
        let e = t.bad(&a);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(t.links(), links, "a refused network left a link");
    assert_eq!(
        t.ok(&["network", "ls", "-q"]),
        nets,
        "a refused network was recorded"
    );
    // A container refused on the network leaves no container, sandbox or lease.
    for args in [&["--ip", "10.184.99.5"][..], &["--mac-address", "zz"]] {
        let mut a = vec!["run", "-d", "--network", "mv"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        t.bad(&a);
    }
    assert_eq!(t.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(
        t.network("mv")["Containers"]
            .as_object()
            .map_or(0, |c| c.len()),
        0
    );
    let netns = t.c.fx.rbox.root.join("netns");
    let left = std::fs::read_dir(&netns).map_or(0, |d| d.count());
    assert_eq!(left, 0, "sandbox left");
    assert_eq!(t.links(), links, "a refused container left a link");
    assert!(t.resolver_pid().is_none());
}

/// The tests above once more on the nftables backend, on a "host" without any iptables tool
/// (a private mount and network namespace): names, internal networks and their isolation must
/// not depend on the host's firewall backend.
#[test]
fn the_file_passes_on_nftables_without_iptables() {
    assert_passes_on_nftables_without_iptables("the_file_passes_on_nftables_without_iptables", 7);
}
