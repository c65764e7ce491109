//! Networks against the real kernel: bridges, veths, IPAM leases and iptables rules.
//!
//! Each test has its own root, default bridge (RBOX_DEFAULT_BRIDGE, prefix rbt-), subnets in
//! 10.201.N.0/24 and cleans up in `Drop`, also when it fails. Sandboxes without containers are
//! made with the hidden `rbox network sandbox` hook; traffic only flows between namespaces the
//! test made. Tests that change FORWARD policy, br_netfilter or ip_forward do so inside their own
//! network namespace (rbox runs there via `ip netns exec`), never on the host.

use std::collections::BTreeSet;

use rbox_tests::{
    assert_test_passes_on_nftables_without_iptables, sh, Backend, NetFixture, RboxCli,
};
use serde_json::Value;

/// One test's rbox: own root, own default bridge and subnet, optionally run inside a netns.
struct Net(NetFixture);

impl std::ops::Deref for Net {
    type Target = NetFixture;
    fn deref(&self) -> &NetFixture {
        &self.0
    }
}

impl std::ops::DerefMut for Net {
    fn deref_mut(&mut self) -> &mut NetFixture {
        &mut self.0
    }
}

impl Net {
    fn new(test: &str, n: u8) -> Net {
        Net(NetFixture::new(
            test,
            format!("rbt-d{n}"),
            format!("10.201.{n}.0/24"),
        ))
    }

    /// Like `new`, but rbox runs inside a fresh network namespace of its own.
    fn in_netns(test: &str, n: u8) -> Net {
        let mut net = Net::new(test, n);
        net.enter_netns(format!("rbt-ns{n}-{}", std::process::id()));
        net
    }

    fn sandbox(&self, id: &str) {
        self.ok(&["network", "sandbox", "create", id]);
        self.sandboxes.borrow_mut().push(id.to_string());
    }

    fn connect(&self, net: &str, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["network", "sandbox", "connect", net, id])).unwrap()
    }

    fn ping(&self, id: &str, ip: &str) -> bool {
        self.exec(id, &format!("busybox ping -c1 -W1 {ip}")).code == 0
    }

    fn inspect(&self, net: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["network", "inspect", net])).unwrap();
        v[0].clone()
    }

    /// The endpoint records of every network (`networks/<id>/endpoints/<cid>.json`).
    fn endpoint_records(&self) -> Vec<Value> {
        let Ok(dir) = std::fs::read_dir(self.rbox.root.join("networks")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for net in dir.flatten().filter(|e| e.path().is_dir()) {
            let Ok(eps) = std::fs::read_dir(net.path().join("endpoints")) else {
                continue;
            };
            for e in eps.flatten() {
                if e.file_name().to_string_lossy().ends_with(".json") {
                    out.push(serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap());
                }
            }
        }
        out
    }

    /// Host veths recorded in the root's endpoints.
    fn host_veths(&self) -> Vec<String> {
        self.endpoint_records()
            .iter()
            .map(|ep| ep["host_veth"].as_str().unwrap().to_string())
            .collect()
    }

    /// The endpoints recorded in the root; their addresses' leases must match them.
    #[track_caller]
    fn leases(&self) -> usize {
        let eps = self.endpoint_records();
        let addresses = eps
            .iter()
            .map(|e| e.get("ip").is_some() as usize + e.get("ip6").is_some() as usize)
            .sum::<usize>();
        let leased = std::fs::read_dir(self.rbox.root.join("networks"))
            .map(|d| {
                d.flatten()
                    .filter_map(|n| std::fs::read_dir(n.path().join("leases")).ok())
                    .map(|l| l.count())
                    .sum::<usize>()
            })
            .unwrap_or(0);
        assert_eq!(
            leased, addresses,
            "address leases do not match the endpoints {eps:?}"
        );
        eps.len()
    }

    fn link_exists(&self, name: &str) -> bool {
        self.sh(&format!("ip link show {name}")).code == 0
    }

    fn rules_mentioning(&self, word: &str) -> Vec<String> {
        self.sh("iptables-save")
            .stdout
            .lines()
            .filter(|l| l.contains(word))
            .map(str::to_string)
            .collect()
    }

    /// Releases every sandbox, removes the kernel side of the root's networks and asserts that
    /// nothing of `bridges` and `veths` is left.
    fn clean_and_check(&self, bridges: &[&str], veths: &[String]) {
        for id in self.sandboxes.borrow_mut().drain(..) {
            self.ok(&["network", "sandbox", "release", &id]);
        }
        self.ok(&["network", "teardown"]);
        assert_eq!(self.leases(), 0, "leases left");
        for b in bridges.iter().copied().chain([self.bridge.as_str()]) {
            assert!(!self.link_exists(b), "bridge {b} left");
            assert!(
                self.rules_mentioning(b).is_empty(),
                "rules left for {b}: {:?}",
                self.rules_mentioning(b)
            );
        }
        for v in veths {
            assert!(!self.link_exists(v), "veth {v} left");
        }
        let left = std::fs::read_dir(self.rbox.root.join("netns"))
            .map(|d| d.flatten().count())
            .unwrap_or(0);
        assert_eq!(left, 0, "netns files left");
    }
}

#[test]
fn fresh_root_lists_predefined_networks() {
    let n = Net::new("net-ls", 10);
    let out = n.ok(&["network", "ls"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("NETWORK ID")
            && lines[0].contains("NAME")
            && lines[0].contains("DRIVER")
            && lines[0].ends_with("SCOPE"),
        "{out}"
    );
    for (line, (name, driver)) in
        lines[1..]
            .iter()
            .zip([("bridge", "bridge"), ("host", "host"), ("none", "null")])
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0].len(), 12, "{line}");
        assert_eq!(&cols[1..], [name, driver, "local"], "{line}");
    }
    let ids = n.ok(&["network", "ls", "-q"]);
    assert_eq!(ids.lines().count(), 3);
    assert_eq!(
        n.ok(&[
            "network",
            "ls",
            "--filter",
            "driver=null",
            "--format",
            "{{.Name}}"
        ]),
        "none\n"
    );
    // Nothing touches the kernel until the default bridge is first used.
    assert!(!n.link_exists(&n.bridge));
    let b = n.inspect("bridge");
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "10.201.10.0/24");
    assert_eq!(b["Options"]["com.docker.network.bridge.name"], "rbt-d10");
}

#[test]
fn create_options_show_in_inspect_and_kernel_and_rm_removes_all() {
    let n = Net::new("net-create", 11);
    let id = n
        .ok(&[
            "network",
            "create",
            "--subnet",
            "10.201.111.0/24",
            "--gateway",
            "10.201.111.254",
            "--ip-range",
            "10.201.111.64/26",
            "--aux-address",
            "router=10.201.111.65",
            "--internal",
            "--attachable",
            "--ipam-driver",
            "default",
            "--label",
            "team=net",
            "-o",
            "com.docker.network.bridge.name=rbt-c11",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=false",
            "-o",
            "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "n11",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let v = n.inspect("n11");
    assert_eq!(v["Id"], id);
    assert_eq!(v["Driver"], "bridge");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Internal"], true);
    assert_eq!(v["Attachable"], true);
    assert_eq!(v["EnableIPv6"], false);
    assert_eq!(v["Labels"]["team"], "net");
    let c = &v["IPAM"]["Config"][0];
    assert_eq!(c["Subnet"], "10.201.111.0/24");
    assert_eq!(c["Gateway"], "10.201.111.254");
    assert_eq!(c["IPRange"], "10.201.111.64/26");
    assert_eq!(c["AuxiliaryAddresses"]["router"], "10.201.111.65");
    assert_eq!(v["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(
        v["Options"]["com.docker.network.bridge.host_binding_ipv4"],
        "127.0.0.1"
    );
    assert_eq!(
        n.ok(&[
            "network",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}}",
            &id[..12]
        ]),
        "n11 bridge\n"
    );
    // The kernel: bridge name, MTU, gateway address, rules.
    assert_eq!(
        std::fs::read_to_string("/sys/class/net/rbt-c11/mtu")
            .unwrap()
            .trim(),
        "1400"
    );
    assert!(sh("ip -o addr show rbt-c11")
        .stdout
        .contains("10.201.111.254/24"));
    let rules = n.rules_mentioning("rbt-c11");
    let chain = format!("RBOX-N-{}", &id[..12]);
    assert!(
        rules.contains(&format!("-A {chain} -i rbt-c11 -o rbt-c11 -j DROP")),
        "icc=false: {rules:?}"
    );
    assert!(
        rules.contains(&format!("-A {chain} -i rbt-c11 ! -o rbt-c11 -j DROP")),
        "internal: {rules:?}"
    );
    assert!(
        !rules.iter().any(|r| r.contains("MASQUERADE")),
        "masquerade off / internal: {rules:?}"
    );
    assert!(n
        .ok(&["network", "ls", "--filter", "label=team=net", "-q"])
        .starts_with(&id[..12]));
    // An address from the range, never the aux address.
    n.sandbox("a");
    let ep = n.connect("n11", "a");
    assert_eq!(ep["IPAddress"], "10.201.111.64", "{ep}");
    n.sandbox("b");
    let ep = n.connect("n11", "b");
    assert_eq!(
        ep["IPAddress"], "10.201.111.66",
        "aux address skipped: {ep}"
    );
    assert_eq!(ep["MacAddress"], "02:42:0a:c9:6f:42");
    let v = n.inspect("n11");
    assert_eq!(v["Containers"].as_object().unwrap().len(), 2);
    assert_eq!(v["Containers"]["b"]["IPv4Address"], "10.201.111.66/24");
    // Internal: no default route in the sandbox.
    assert!(!n.exec("a", "ip route").stdout.contains("default"));
    n.bad(&["network", "rm", "n11"]);
    let veths = n.host_veths();
    assert_eq!(veths.len(), 2);
    for s in ["a", "b"] {
        n.ok(&["network", "sandbox", "release", s]);
    }
    n.sandboxes.borrow_mut().clear();
    assert_eq!(n.ok(&["network", "rm", "n11"]), "n11\n");
    assert!(!n.link_exists("rbt-c11"));
    assert!(n.rules_mentioning("rbt-c11").is_empty());
    assert!(n.rules_mentioning(&chain).is_empty());
    assert_eq!(n.ok(&["network", "ls", "-q"]).lines().count(), 3);
    n.clean_and_check(&["rbt-c11"], &veths);
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_nothing() {
    // In a netns of its own: the link and rule counts below see no other test's networks.
    let n = Net::in_netns("net-bad", 12);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.112.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-b12",
        "n12",
    ]);
    let mine = |l: &&str| l.contains("rbox-") || l.contains("10.201.113.") || l.contains("rbt-b12");
    let snapshot = || {
        let links = n.sh("ip -o link show").stdout.lines().filter(mine).count();
        let rules = n.sh("iptables-save").stdout.lines().filter(mine).count();
        (n.ok(&["network", "ls", "-q"]), links, rules)
    };
    let before = snapshot();
    let cases: &[&[&str]] = &[
        &["network", "create", "--subnet", "10.201.300.0/24", "x1"],
        &[
            "network",
            "create",
            "--subnet",
            "10.201.113.0/24",
            "--gateway",
            "10.201.9.1",
            "x2",
        ],
        &[
            "network",
            "create",
            "--subnet",
            "10.201.113.0/24",
            "--ip-range",
            "10.201.9.0/25",
            "x3",
        ],
        &[
            "network",
            "create",
            "--subnet",
            "10.201.113.0/24",
            "--aux-address",
            "a=10.201.9.1",
            "x4",
        ],
        &["network", "create", "--subnet", "10.201.112.128/25", "x5"],
        &["network", "create", "--subnet", "10.201.113.0/24", "n12"],
        &["network", "create", "-d", "overlay2", "x6"],
        &[
            "network",
            "create",
            "--subnet",
            "10.201.113.0/24",
            "-o",
            "com.docker.network.bogus=1",
            "x7",
        ],
        &[
            "network",
            "create",
            "--subnet",
            "10.201.113.0/24",
            "-o",
            "com.docker.network.driver.mtu=abc",
            "x8",
        ],
        &[
            "network",
            "create",
            "--subnet",
            "10.201.113.0/24",
            "-o",
            "com.docker.network.bridge.name=rbt-b12",
            "x9",
        ],
        &["network", "rm", "bridge"],
        &["network", "rm", "host"],
        &["network", "rm", "none"],
        &["network", "rm", "nosuch"],
    ];
    for args in cases {
        n.bad(args);
        assert_eq!(snapshot(), before, "{args:?} left something behind");
    }
    n.sandbox("s");
    n.bad(&[
        "network",
        "sandbox",
        "connect",
        "--ip",
        "10.201.9.9",
        "n12",
        "s",
    ]);
    n.bad(&[
        "network",
        "sandbox",
        "connect",
        "--ip",
        "10.201.112.1",
        "n12",
        "s",
    ]);
    n.bad(&[
        "network",
        "sandbox",
        "connect",
        "--ip",
        "10.201.12.9",
        "bridge",
        "s",
    ]);
    n.bad(&["network", "sandbox", "connect", "nosuch", "s"]);
    assert_eq!(n.leases(), 0, "failed connects leave no lease");
    assert_eq!(n.connect("n12", "s")["IPAddress"], "10.201.112.2");
    n.bad(&["network", "sandbox", "connect", "n12", "s"]);
    n.sandbox("t");
    let e = n.bad(&[
        "network",
        "sandbox",
        "connect",
        "--ip",
        "10.201.112.2",
        "n12",
        "t",
    ]);
    assert!(e.contains("in use"), "{e}");
    n.bad(&["network", "sandbox", "disconnect", "bridge", "s"]);
    assert_eq!(n.leases(), 1);
    let veths = n.host_veths();
    n.ok(&["network", "sandbox", "disconnect", "n12", "s"]);
    assert!(!n.link_exists(&veths[0]), "disconnect removes the veth");
    assert!(!n.exec("s", "ip -o link").stdout.contains("eth0"));
    n.ok(&["network", "rm", "n12"]);
    n.clean_and_check(&["rbt-b12"], &veths);
}

#[test]
fn concurrent_connects_get_distinct_addresses() {
    let n = Net::new("net-conc", 13);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.113.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-c13",
        "n13",
    ]);
    let ids: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    for id in &ids {
        n.sandbox(id);
    }
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            n.command(&["network", "sandbox", "connect", "n13", id])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ips.insert(v["IPAddress"].as_str().unwrap().to_string());
    }
    assert_eq!(ips.len(), 24, "duplicate addresses: {ips:?}");
    assert_eq!(
        n.inspect("n13")["Containers"].as_object().unwrap().len(),
        24
    );
    let veths = n.host_veths();
    assert_eq!(veths.iter().collect::<BTreeSet<_>>().len(), 24);
    // The first and last sandbox reach each other over the bridge.
    let last = n.inspect("n13")["Containers"]["c23"]["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(n.ping("c0", &last));
    for id in &ids {
        n.ok(&["network", "sandbox", "release", id]);
    }
    n.sandboxes.borrow_mut().clear();
    // Releasing the namespaces takes the veths with them (asynchronously in the kernel).
    for _ in 0..50 {
        if veths.iter().all(|v| !n.link_exists(v)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    n.ok(&["network", "rm", "n13"]);
    n.clean_and_check(&["rbt-c13"], &veths);
}

#[test]
fn isolation_icc_connect_disconnect() {
    let n = Net::new("net-iso", 14);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.114.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-a14",
        "a14",
    ]);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.115.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-b14",
        "b14",
    ]);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.116.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-i14",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "i14",
    ]);
    for s in ["a1", "a2", "b1", "i1", "i2"] {
        n.sandbox(s);
    }
    let a2 = n.connect("a14", "a1");
    let a2ip = n.connect("a14", "a2")["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let b1ip = n.connect("b14", "b1")["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    n.connect("i14", "i1");
    let i2ip = n.connect("i14", "i2")["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a2["IPAddress"], "10.201.114.2");
    assert!(n.ping("a1", &a2ip), "same bridge");
    assert!(n.ping("a1", "10.201.114.1"), "gateway");
    assert!(!n.ping("a1", &b1ip), "across networks must be dropped");
    assert!(!n.ping("i1", &i2ip), "icc=false must block");
    assert!(n
        .exec("a1", "ip route")
        .stdout
        .contains("default via 10.201.114.1"));
    // connect: a new interface appears and b14 becomes reachable; disconnect: gone again.
    let e = n.connect("b14", "a1");
    assert_eq!(e["Interface"], "eth1");
    assert!(n
        .exec("a1", "ip -o addr show eth1")
        .stdout
        .contains(e["IPAddress"].as_str().unwrap()));
    assert!(n.ping("a1", &b1ip), "after connect");
    n.ok(&["network", "sandbox", "disconnect", "b14", "a1"]);
    assert!(!n.exec("a1", "ip -o link").stdout.contains("eth1"));
    assert!(!n.ping("a1", &b1ip), "after disconnect");
    // When the network with the default route leaves, the next one takes it over.
    n.connect("b14", "a1");
    n.ok(&["network", "sandbox", "disconnect", "a14", "a1"]);
    let routes = n.exec("a1", "ip route").stdout;
    assert!(
        routes.contains("default via 10.201.115.1 dev eth1"),
        "{routes}"
    );
    assert!(n.ping("a1", &b1ip));
    let veths = n.host_veths();
    for s in n.sandboxes.borrow_mut().drain(..) {
        n.ok(&["network", "sandbox", "release", &s]);
    }
    for net in ["a14", "b14", "i14"] {
        n.ok(&["network", "rm", net]);
    }
    n.clean_and_check(&["rbt-a14", "rbt-b14", "rbt-i14"], &veths);
}

/// The same isolation and icc checks on the nftables backend, on a host without iptables.
#[test]
fn isolation_icc_connect_disconnect_on_nftables() {
    assert_test_passes_on_nftables_without_iptables("isolation_icc_connect_disconnect");
}

/// Inside a namespace of its own: Docker's FORWARD DROP policy with br_netfilter, outbound NAT
/// to an upstream host the test builds, and `network reload` after the rules were flushed.
#[test]
fn forward_drop_nat_internal_and_reload_in_private_netns() {
    let n = Net::in_netns("net-fw", 15);
    let ns = n.netns.clone().unwrap();
    let up = format!("rbt-up15-{}", std::process::id());
    // Upstream host: its own netns behind a veth, with no route back to the container subnets,
    // so replies only arrive when rbox masquerades.
    let setup = format!(
        "ip netns add {up} && ip link add rbt-up15 netns {ns} type veth peer name uplink netns {up} && \
         ip -n {ns} addr add 10.201.150.1/30 dev rbt-up15 && ip -n {ns} link set rbt-up15 up && \
         ip -n {up} addr add 10.201.150.2/30 dev uplink && ip -n {up} link set uplink up && ip -n {up} link set lo up"
    );
    let r = sh(&setup);
    struct Up(String);
    impl Drop for Up {
        fn drop(&mut self) {
            sh(&format!("ip netns del {}", self.0));
        }
    }
    let _up = Up(up.clone());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = n.sh("iptables -P FORWARD DROP && sysctl -qw net.bridge.bridge-nf-call-iptables=1");
    assert_eq!(r.code, 0, "{}", r.stderr);
    for s in ["d1", "d2", "m1", "x1"] {
        n.sandbox(s);
    }
    n.connect("bridge", "d1");
    let d2 = n.connect("bridge", "d2")["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.151.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-m15",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "m15",
    ]);
    n.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.201.152.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-x15",
        "x15",
    ]);
    n.connect("m15", "m1");
    n.connect("x15", "x1");
    assert_eq!(n.sh("cat /proc/sys/net/ipv4/ip_forward").stdout.trim(), "1");
    assert!(
        n.ping("d1", &d2),
        "bridged traffic under FORWARD DROP + br_netfilter"
    );
    assert!(
        n.ping("d1", "10.201.150.2"),
        "outbound NAT to the upstream host"
    );
    assert!(
        !n.ping("m1", "10.201.150.2"),
        "masquerade off: the upstream has no route back"
    );
    assert!(!n.ping("x1", "10.201.150.2"), "internal: no way out");
    assert!(!n.exec("x1", "ip route").stdout.contains("default"));
    // Flushing rbox's chains breaks it; `network reload` restores it from state.
    let chain = format!(
        "RBOX-N-{}",
        &n.inspect("bridge")["Id"].as_str().unwrap()[..12]
    );
    let r = n.sh(&format!(
        "iptables -F {chain} && iptables -F RBOX-FORWARD && iptables -t nat -F RBOX-POSTROUTING"
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !n.ping("d1", &d2),
        "the test must be able to fail without rbox's rules"
    );
    n.ok(&["network", "reload"]);
    assert!(n.ping("d1", &d2), "after reload");
    assert!(n.ping("d1", "10.201.150.2"), "NAT after reload");
    let veths = n.host_veths();
    for s in n.sandboxes.borrow_mut().drain(..) {
        n.ok(&["network", "sandbox", "release", &s]);
    }
    n.ok(&["network", "rm", "m15", "x15"]);
    n.clean_and_check(&["rbt-m15", "rbt-x15"], &veths);
}

#[test]
fn lease_of_a_killed_holder_is_repaired() {
    let n = Net::new("net-stale", 16);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.160.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-s16",
        "s16",
    ]);
    n.sandbox("k");
    n.connect("s16", "k");
    // What a kill -9 between wiring and release leaves: the lease, but no sandbox.
    let p = n.netns_path("k");
    assert_eq!(sh(&format!("umount -l {0} && rm {0}", p.display())).code, 0);
    n.sandboxes.borrow_mut().clear();
    assert_eq!(n.leases(), 1);
    n.sandbox("k2");
    assert_eq!(
        n.connect("s16", "k2")["IPAddress"],
        "10.201.160.2",
        "the stale address is free again"
    );
    n.ok(&["network", "sandbox", "release", "k2"]);
    n.sandboxes.borrow_mut().clear();
    n.ok(&["network", "rm", "s16"]);
    n.clean_and_check(&["rbt-s16"], &[]);
}

/// Two roots given one default bridge name: the bridge carries its owner (the alias), so the
/// second root can neither hand out the first one's addresses on it nor delete it; a leftover
/// with nothing attached is taken over.
#[test]
fn roots_sharing_a_bridge_name_never_take_each_others() {
    let a = Net::new("net-share-a", 41);
    let b = Net(NetFixture::new(
        "net-share-b",
        a.bridge.clone(),
        a.subnet.clone(),
    ));
    a.sandbox("sa");
    a.connect("bridge", "sa");
    let alias = a.sh(&format!("cat /sys/class/net/{}/ifalias", a.bridge));
    assert!(
        alias.stdout.starts_with("rbox network "),
        "{}",
        alias.stdout
    );
    b.sandbox("sb");
    let err = b.bad(&["network", "sandbox", "connect", "bridge", "sb"]);
    assert!(err.contains("in use by another rbox network"), "{err}");
    assert_eq!(b.leases(), 0, "the refused connect left a lease");
    // b's teardown leaves a's bridge and rules alone.
    b.ok(&["network", "teardown"]);
    assert!(a.link_exists(&a.bridge));
    assert!(a.ping("sa", "10.201.41.1"), "a lost its gateway");
    // With nothing attached, a's bridge is a leftover for b, which makes it its own.
    a.ok(&["network", "sandbox", "release", "sa"]);
    a.sandboxes.borrow_mut().clear();
    // The kernel removes the veth of a released netns asynchronously.
    let brif = format!("/sys/class/net/{}/brif", a.bridge);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&brif).unwrap().next().is_some() {
        assert!(std::time::Instant::now() < deadline, "a's veth stayed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(b.connect("bridge", "sb")["IPAddress"], "10.201.41.2");
    a.ok(&["network", "teardown"]);
    assert!(b.link_exists(&b.bridge), "a deleted b's bridge");
    assert!(b.ping("sb", "10.201.41.1"));
    b.clean_and_check(&[], &[]);
}

/// A bridge left by a crash between its creation and naming its owner (down, nothing attached,
/// the network's own MAC, no alias) is made anew; a bridge someone else made is refused.
#[test]
fn bridge_left_unnamed_by_a_crash_is_made_anew_a_foreign_one_refused() {
    let n = Net::new("net-crashbr", 42);
    let b = n.bridge.clone();
    // The test's own bridges go also when it fails (rbox never deletes a foreign one).
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            sh(&format!("ip link del {} 2>/dev/null", self.0));
        }
    }
    let _cleanup = DelLink(b.clone());
    let add = |mac: &str| {
        let r = n.sh(&format!("ip link add {b} address {mac} type bridge"));
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    // Someone else's bridge of that name: refused, and left alone.
    add("02:00:00:00:00:42");
    n.sandbox("f");
    let err = n.bad(&["network", "sandbox", "connect", "bridge", "f"]);
    assert!(err.contains("was not created by rbox"), "{err}");
    assert!(n.link_exists(&b));
    assert_eq!(n.leases(), 0);
    n.sh(&format!("ip link del {b}"));
    // rbox's own, unnamed: the gateway's MAC (02:42 + 10.201.42.1).
    add("02:42:0a:c9:2a:01");
    assert_eq!(n.connect("bridge", "f")["IPAddress"], "10.201.42.2");
    let alias = n.sh(&format!("cat /sys/class/net/{b}/ifalias"));
    assert!(
        alias.stdout.starts_with("rbox network "),
        "{}",
        alias.stdout
    );
    assert!(n.ping("f", "10.201.42.1"));
    n.clean_and_check(&[], &[]);
}

impl Net {
    fn with_busybox(test: &str, n: u8) -> Net {
        let net = Net::new(test, n);
        let tar = rbox_tests::image_tar("busybox");
        net.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        net
    }

    fn ip_of(&self, ctr: &str, net: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.ok(&["inspect", "--format", &f, ctr])
            .trim()
            .to_string()
    }

    fn ctr_ping(&self, ctr: &str, ip: &str) -> bool {
        self.run(&["exec", ctr, "ping", "-c1", "-W1", ip]).code == 0
    }

    fn remove_containers(&self) {
        let ids = self.ok(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            self.ok(&["rm", "-f", id]);
        }
    }
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        if let Ok(out) = self.0.command(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.0.run(&["rm", "-f", id]);
            }
        }
    }
}

/// Removes the test's containers before `Net` tears the networks down, also on failure.
struct Containers<'a>(&'a Net);

/// Docker's classic networking walkthrough with rbox in place of docker.
#[test]
fn docker_walkthrough_with_containers() {
    let n = Net::with_busybox("net-walk", 17);
    let _c = Containers(&n);
    n.ok(&["run", "-d", "--name", "box1", "busybox", "sleep", "300"]);
    n.ok(&["run", "-d", "--name", "box2", "busybox", "sleep", "300"]);
    let v = n.inspect("bridge");
    assert_eq!(v["Containers"].as_object().unwrap().len(), 2, "{v}");
    let ip2 = n
        .ok(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            "box2",
        ])
        .trim()
        .to_string();
    assert_eq!(ip2, "10.201.17.3");
    assert!(
        n.ctr_ping("box1", &ip2),
        "box1 -> box2 on the default bridge"
    );
    assert!(n
        .ok(&["exec", "box1", "ip", "route"])
        .contains("default via 10.201.17.1 dev eth0"));
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.170.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-m17",
        "mybridge",
    ]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "box3",
        "--network",
        "mybridge",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(n.ip_of("box3", "mybridge"), "10.201.170.2");
    let ip1 = n.ip_of("box1", "bridge");
    assert!(!n.ctr_ping("box3", &ip1), "isolated across networks");
    n.ok(&["network", "connect", "bridge", "box3"]);
    assert!(n
        .ok(&["exec", "box3", "ip", "addr", "show", "eth1"])
        .contains("10.201.17."));
    assert!(n.ctr_ping("box3", &ip1), "after connect");
    assert!(!n.ip_of("box3", "bridge").is_empty());
    n.bad(&["network", "connect", "bridge", "box3"]);
    n.ok(&["network", "disconnect", "bridge", "box3"]);
    assert_ne!(
        n.run(&["exec", "box3", "ip", "addr", "show", "eth1"]).code,
        0,
        "eth1 gone"
    );
    assert!(!n.ctr_ping("box3", &ip1), "after disconnect");
    n.bad(&["network", "disconnect", "bridge", "box3"]);
    n.bad(&["network", "rm", "mybridge"]);
    n.bad(&["run", "-d", "--network", "nosuch", "busybox", "true"]);
    n.bad(&["run", "-d", "--ip", "10.201.17.50", "busybox", "true"]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "box4",
        "--network",
        "mybridge",
        "--ip",
        "10.201.170.77",
        "--mac-address",
        "02:42:0a:c9:aa:bb",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        n.ok(&["exec", "box4", "cat", "/sys/class/net/eth0/address"])
            .trim(),
        "02:42:0a:c9:aa:bb"
    );
    assert!(n
        .ok(&["exec", "box4", "ip", "addr", "show", "eth0"])
        .contains("10.201.170.77/24"));
    let veths = n.host_veths();
    n.remove_containers();
    assert_eq!(n.leases(), 0, "rm -f releases every lease");
    n.ok(&["network", "rm", "mybridge"]);
    n.clean_and_check(&["rbt-m17"], &veths);
}

#[test]
fn concurrent_runs_get_distinct_addresses_and_host_none_work() {
    let n = Net::with_busybox("net-runs", 18);
    let _c = Containers(&n);
    n.ok(&[
        "network",
        "create",
        "--subnet",
        "10.201.180.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-r18",
        "r18",
    ]);
    let children: Vec<_> = (0..24)
        .map(|_| {
            n.command(&["run", "-d", "--network", "r18", "busybox", "sleep", "300"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v = n.inspect("r18");
    let ips: BTreeSet<_> = v["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["IPv4Address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 24, "{ips:?}");
    let none = n.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(none.lines().count(), 1, "only lo: {none}");
    assert!(none.contains("lo:"));
    let host = n.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    assert!(
        host.contains("rbt-r18"),
        "host network sees the host's links: {host}"
    );
    let veths = n.host_veths();
    n.remove_containers();
    assert_eq!(n.leases(), 0);
    n.ok(&["network", "rm", "r18"]);
    n.clean_and_check(&["rbt-r18"], &veths);
}

/// The golden rule files are what the kernel really shows: each scenario is built by rbox in a
/// private namespace (so rbox's are the only rules) and compared with its file.
#[test]
fn golden_files_match_the_kernels_iptables_save() {
    golden_scenarios("net-golden", 19, Backend::Iptables);
}

/// The nftables golden files are what the kernel lists for rbox's table (`nft list table inet
/// rbox`), scenario by scenario, in a namespace of the test's own.
#[test]
fn golden_files_match_the_kernels_nft_listing() {
    golden_scenarios("net-golden-nft", 69, Backend::Nftables);
}

fn golden_scenarios(test: &str, k: u8, backend: Backend) {
    let mut n = Net::new(test, k);
    n.enter_netns(format!("rbt-fns{k}-{}", std::process::id()));
    n.bridge = "rbox0".into();
    n.subnet = "172.17.0.0/16".into();
    n.0.firewall = Some(backend.name());
    let id12 = |net: &str| n.inspect(net)["Id"].as_str().unwrap()[..12].to_string();
    let check = |scenario: &str, names: &[(String, &str)]| {
        let save = n.sh(backend.dump_cmd()).stdout;
        assert_eq!(
            backend.normalize(&save, names),
            backend.normalize(&backend.golden(scenario), &[]),
            "scenario {scenario}:\n{save}"
        );
    };
    n.sandbox("g");
    n.connect("bridge", "g");
    let d = (id12("bridge"), "aaaaaaaaaaaa");
    check("default-bridge", std::slice::from_ref(&d));
    let user = |name: &str, subnet: &str, extra: &[&str]| {
        let mut args = vec!["network", "create", "--subnet", subnet];
        args.extend_from_slice(extra);
        args.push(name);
        let id = n.ok(&args).trim().to_string();
        (id[..12].to_string(), format!("rbox-{}", &id[..10]))
    };
    let (b, bb) = user("u", "172.18.0.0/16", &[]);
    check(
        "two-networks",
        &[
            d,
            (b.clone(), "bbbbbbbbbbbb"),
            (bb.clone(), "rbox-bbbbbbbbbb"),
        ],
    );
    assert!(n.link_exists(&bb), "user bridge named rbox-<10 hex of id>");
    n.ok(&["network", "sandbox", "release", "g"]);
    n.sandboxes.borrow_mut().clear();
    n.ok(&["network", "rm", "u"]);
    n.ok(&["network", "teardown"]);
    check("empty", &[]);
    let (b, bb) = user("u2", "172.18.0.0/16", &[]);
    check(
        "user-bridge",
        &[(b, "bbbbbbbbbbbb"), (bb, "rbox-bbbbbbbbbb")],
    );
    n.ok(&["network", "rm", "u2"]);
    let (c, cb) = user("i", "172.19.0.0/16", &["--internal"]);
    check("internal", &[(c, "cccccccccccc"), (cb, "rbox-cccccccccc")]);
    n.ok(&["network", "rm", "i"]);
    let (e, eb) = user(
        "x",
        "172.20.0.0/16",
        &["-o", "com.docker.network.bridge.enable_icc=false"],
    );
    check("icc-false", &[(e, "dddddddddddd"), (eb, "rbox-dddddddddd")]);
    n.ok(&["network", "rm", "x"]);
    n.clean_and_check(&[], &[]);
}

#[test]
fn ipv6_dual_stack_between_containers() {
    let n = Net::with_busybox("net-v6", 20);
    let _c = Containers(&n);
    let id = n
        .ok(&[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "10.201.200.0/24",
            "--subnet",
            "fd00:201:200::/64",
            "-o",
            "com.docker.network.bridge.name=rbt-v20",
            "v20",
        ])
        .trim()
        .to_string();
    let v = n.inspect("v20");
    assert_eq!(v["EnableIPv6"], true);
    assert_eq!(v["IPAM"]["Config"][1]["Subnet"], "fd00:201:200::/64");
    assert_eq!(v["IPAM"]["Config"][1]["Gateway"], "fd00:201:200::1");
    assert!(sh("ip -6 -o addr show rbt-v20")
        .stdout
        .contains("fd00:201:200::1/64"));
    let chain = format!("RBOX-N-{}", &id[..12]);
    let v6rules = sh("ip6tables-save").stdout;
    assert!(
        v6rules.contains(&format!("-A {chain} -i rbt-v20 -o rbt-v20 -j ACCEPT")),
        "{v6rules}"
    );
    assert!(v6rules.contains("-A RBOX-POSTROUTING -s fd00:201:200::/64 ! -o rbt-v20 -j MASQUERADE"));
    n.ok(&[
        "run",
        "-d",
        "--name",
        "v6a",
        "--network",
        "v20",
        "busybox",
        "sleep",
        "300",
    ]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "v6b",
        "--network",
        "v20",
        "--ip6",
        "fd00:201:200::99",
        "busybox",
        "sleep",
        "300",
    ]);
    let f = "{{(index .NetworkSettings.Networks \"v20\").GlobalIPv6Address}}";
    assert_eq!(
        n.ok(&["inspect", "--format", f, "v6a"]).trim(),
        "fd00:201:200::2"
    );
    assert_eq!(
        n.ok(&["inspect", "--format", f, "v6b"]).trim(),
        "fd00:201:200::99"
    );
    assert!(n
        .ok(&["exec", "v6a", "ip", "-6", "route"])
        .contains("default via fd00:201:200::1"));
    let r = n.run(&[
        "exec",
        "v6a",
        "ping",
        "-6",
        "-c1",
        "-W2",
        "fd00:201:200::99",
    ]);
    assert_eq!(
        r.code, 0,
        "IPv6 ping between containers: {}{}",
        r.stdout, r.stderr
    );
    assert!(
        n.ctr_ping("v6a", "10.201.200.3"),
        "and IPv4 on the same network"
    );
    // A ULA /64 when no IPv6 subnet is given; IPv6 flags without --ipv6 are refused.
    n.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.201.201.0/24",
        "-o",
        "com.docker.network.bridge.name=rbt-u20",
        "u20",
    ]);
    let ula = n.inspect("u20")["IPAM"]["Config"][1]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ula.starts_with("fd") && ula.ends_with("::/64"), "{ula}");
    n.bad(&["network", "create", "--subnet", "fd00:201:202::/64", "x"]);
    n.bad(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:201:200:0:1::/80",
        "--subnet",
        "10.201.203.0/24",
        "y",
    ]);
    let veths = n.host_veths();
    n.remove_containers();
    n.ok(&["network", "rm", "v20", "u20"]);
    let v6rules = sh("ip6tables-save").stdout;
    assert!(
        !v6rules.contains("rbt-v20") && !v6rules.contains("rbt-u20"),
        "{v6rules}"
    );
    n.clean_and_check(&["rbt-v20", "rbt-u20"], &veths);
}

/// A root whose network state an older rbox wrote (every endpoint inside the network's one
/// file) is split into a file per endpoint and a lease per address on the next command: the
/// running container keeps its address (the next one does not get it), its `rm` gives it
/// back, and IPv6 stays off the bridge ports and the IPv4-only containers' interfaces.
#[test]
fn old_one_file_network_state_is_split_and_keeps_its_leases() {
    let n = Net::with_busybox("net-split", 43);
    let _c = Containers(&n);
    let ip_of = |name: &str| {
        n.ok(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            name,
        ])
        .trim()
        .to_string()
    };
    n.ok(&["run", "-d", "--name", "old", "busybox", "sleep", "300"]);
    assert_eq!(ip_of("old"), "10.201.43.2");
    assert_eq!(n.leases(), 1);
    // IPv6 is off on the bridge port and on the container's end of this IPv4-only network
    // (no link-local address, no DAD or MLD flooded to every port); lo keeps ::1.
    let veth = n.host_veths().pop().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6"))
            .unwrap()
            .trim(),
        "1",
        "IPv6 on bridge port {veth}"
    );
    assert_eq!(
        n.ok(&["exec", "old", "ip", "-6", "addr", "show", "dev", "eth0"])
            .trim(),
        "",
        "an IPv6 address on an IPv4-only network's interface"
    );
    assert!(n
        .ok(&["exec", "old", "ip", "-6", "addr", "show", "dev", "lo"])
        .contains("::1/128"));
    assert!(n.ctr_ping("old", "10.201.43.1"), "IPv4 to the gateway");

    // Rewrite the state as an older rbox kept it.
    let nets = n.rbox.root.join("networks");
    let id = n.inspect("bridge")["Id"].as_str().unwrap().to_string();
    let file = nets.join(format!("{id}.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut eps = serde_json::Map::new();
    for e in std::fs::read_dir(nets.join(&id).join("endpoints"))
        .unwrap()
        .flatten()
    {
        let ep: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        eps.insert(ep["container_id"].as_str().unwrap().to_string(), ep);
    }
    assert_eq!(eps.len(), 1);
    v["endpoints"] = Value::Object(eps);
    std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    std::fs::remove_dir_all(nets.join(&id)).unwrap();
    std::fs::remove_file(nets.join(".endpoint-files")).unwrap();
    assert_eq!(n.leases(), 0, "the old form has no endpoint files");

    n.ok(&["run", "-d", "--name", "new", "busybox", "sleep", "300"]);
    assert_eq!(
        ip_of("new"),
        "10.201.43.3",
        "the old container's address was handed out"
    );
    assert_eq!(n.leases(), 2, "both endpoints have files and leases");
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        v.get("endpoints").is_none(),
        "endpoints left in the network file: {v}"
    );
    assert_eq!(
        n.inspect("bridge")["Containers"].as_object().unwrap().len(),
        2
    );
    n.ok(&["rm", "-f", "old"]);
    assert_eq!(n.leases(), 1);
    n.ok(&["run", "-d", "--name", "third", "busybox", "sleep", "300"]);
    assert_eq!(
        ip_of("third"),
        "10.201.43.2",
        "the removed container's address is free"
    );
    assert!(n.ctr_ping("third", "10.201.43.3"), "between containers");
    // A lease a crash left to nobody (killed between the lease and the endpoint's file) is
    // given back by `network prune`; the running containers keep theirs.
    let ghost = nets.join(&id).join("leases/10.201.43.9");
    std::os::unix::fs::symlink("ghost", &ghost).unwrap();
    n.ok(&["network", "prune", "-f"]);
    assert!(
        ghost.symlink_metadata().is_err(),
        "the orphan lease is left"
    );
    assert_eq!(n.leases(), 2);
    assert!(n.ctr_ping("third", "10.201.43.3"), "after the prune");
}
