//! CNI networks (driver `cni`) with Debian's real plugins (/usr/lib/cni: bridge, host-local,
//! portmap, firewall), plus small shell plugins that fail or hang where a test needs one.
//!
//! Each test runs rbox inside a network namespace of its own (the bridge plugin turns on
//! ip_forward, portmap and firewall add iptables chains: none of it may touch the host), with
//! its own configuration directory (RBOX_CNI_CONF_DIR) and host-local `dataDir`, both in a
//! temp dir. Names: netns `rbt-k*`, bridges `rbt-k*`, subnets 10.187.x.0/24, ports 22000-22499.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rbox_tests::{kill9, sh, wait_for, NetFixture, RboxCli};
use serde_json::Value;

/// One test's rbox in its own netns, with its own CNI directories.
struct Cni {
    net: NetFixture,
    /// Holds `conf/` (the configuration directory), `ipam/` (host-local's dataDir) and `bin/`
    /// (the test's own plugins, looked up before /usr/lib/cni).
    dir: PathBuf,
    timeout: &'static str,
}

const PLUGINS: &str = "/usr/lib/cni";

impl Cni {
    fn new(test: &str, n: u8) -> Cni {
        assert!(
            Path::new(PLUGINS).join("bridge").exists(),
            "CNI plugins missing: apt-get install -y containernetworking-plugins"
        );
        let mut net = NetFixture::new(
            test,
            format!("rbt-kd{n}"),
            format!("10.187.{}.0/24", 100 + n),
        );
        net.enter_netns(format!("rbt-k{n}-{}", std::process::id()));
        let dir = PathBuf::from(format!("/tmp/rbt-k-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["conf", "ipam", "bin"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let c = Cni {
            net,
            dir,
            timeout: "20",
        };
        let tar = rbox_tests::image_tar("busybox");
        c.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        c
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// Writes configuration file `file` of the directory.
    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.conf().join(file), text).unwrap();
    }

    /// A bridge + host-local list named `name` on bridge `bridge` and `subnet`, with the
    /// plugins `extra` after them (JSON objects).
    fn bridge_list(&self, name: &str, bridge: &str, subnet: &str, extra: &[&str]) -> String {
        let mut plugins = vec![format!(
            r#"{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,
               "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]],
               "routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
            self.dir.join("ipam").display()
        )];
        plugins.extend(extra.iter().map(|s| s.to_string()));
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{}]}}"#,
            plugins.join(",")
        )
    }

    /// A shell plugin of the test's own, `body` run for ADD (VERSION and DEL are answered).
    fn plugin(&self, name: &str, add: &str) {
        let p = self.dir.join("bin").join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n\
                 VERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}';;\n\
                 ADD) cat >/dev/null; {add};;\n\
                 *) cat >/dev/null;;\nesac\n"
            ),
        )
        .unwrap();
        sh(&format!("chmod +x {}", p.display()));
    }

    /// host-local's leases on network `name`: the files of its store named by an address.
    fn leases(&self, name: &str) -> BTreeSet<String> {
        let Ok(d) = std::fs::read_dir(self.dir.join("ipam").join(name)) else {
            return BTreeSet::new();
        };
        d.flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// The attachments rbox has recorded (`<root>/cni/<network>/<container>-<ifname>.json`).
    fn records(&self) -> Vec<String> {
        let Ok(d) = std::fs::read_dir(self.net.rbox.root.join("cni")) else {
            return Vec::new();
        };
        d.flatten()
            .filter(|e| e.path().is_dir())
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    }

    fn sandboxes(&self) -> usize {
        std::fs::read_dir(self.net.rbox.root.join("netns")).map_or(0, |d| d.count())
    }

    /// The host ends of veths the bridge plugin made (`veth*`) in the netns.
    fn veths(&self) -> usize {
        self.net
            .sh("ip -o link show type veth")
            .stdout
            .lines()
            .filter(|l| l.split(": ").nth(1).is_some_and(|n| n.starts_with("veth")))
            .count()
    }

    fn inspect(&self, what: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, what])
            .trim()
            .to_string()
    }

    fn ip_of(&self, ctr: &str, net: &str) -> String {
        self.inspect(
            ctr,
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        )
    }

    /// Nothing is left of a failed run on network `name`: no container, lease, record,
    /// sandbox or veth.
    #[track_caller]
    fn nothing_left(&self, name: &str) {
        assert_eq!(self.ok(&["ps", "-aq"]).trim(), "", "a container is left");
        // A directory's network keeps no state file without endpoints.
        let id = cni_id(name);
        assert!(
            !self
                .net
                .rbox
                .root
                .join(format!("networks/{id}.json"))
                .exists(),
            "state file of {name} left"
        );
        assert!(
            !self.net.rbox.root.join(format!("networks/{id}")).exists(),
            "endpoint records of {name} left"
        );
        assert!(self.leases(name).is_empty(), "{:?}", self.leases(name));
        assert!(self.records().is_empty(), "{:?}", self.records());
        assert_eq!(self.sandboxes(), 0, "a sandbox is left");
        assert_eq!(self.veths(), 0, "a veth is left");
    }

    fn remove_containers(&self) {
        if let Ok(out) = self.command(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.run(&["rm", "-f", id]);
            }
        }
    }
}

impl RboxCli for Cni {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.net.command(args);
        c.env("RBOX_CNI_CONF_DIR", self.conf())
            .env(
                "RBOX_CNI_PATH",
                format!("{}:{PLUGINS}", self.dir.join("bin").display()),
            )
            .env("RBOX_CNI_TIMEOUT", self.timeout);
        c
    }
}

impl Drop for Cni {
    fn drop(&mut self) {
        self.remove_containers();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The id rbox gives the directory's network `name` (`driver::cni::discovered_id`).
fn cni_id(name: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("rbox cni network\0{name}")))
}

const PORTMAP: &str = r#"{"type":"portmap","capabilities":{"portMappings":true}}"#;
const FIREWALL: &str = r#"{"type":"firewall"}"#;

/// The directory's lists are networks; containers on one ping each other by name, publish a
/// port through portmap, and give their leases back on rm (host-local's store is checked).
#[test]
fn cni_lists_are_networks_with_names_ports_and_leases() {
    let c = Cni::new("cni-basic", 1);
    c.write(
        "10-k1.conflist",
        &c.bridge_list("k1", "rbt-k1", "10.187.1.0/24", &[PORTMAP, FIREWALL]),
    );
    c.write("20-bad.conflist", "{not json");
    let ls = c.run(&["network", "ls"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let row = ls
        .stdout
        .lines()
        .find(|l| l.contains(" k1 "))
        .unwrap_or_default();
    assert!(row.contains(" cni "), "{}", ls.stdout);
    assert!(
        ls.stderr.contains("20-bad.conflist: not JSON"),
        "{}",
        ls.stderr
    );
    let elsewhere = c.dir.join("ipam").display().to_string();
    let other = c.ok(&["--cni-conf-dir", &elsewhere, "network", "ls"]);
    assert!(
        !other.contains(" k1 "),
        "--cni-conf-dir wins over the env: {other}"
    );
    let v: Value = serde_json::from_str(&c.ok(&["network", "inspect", "k1"])).unwrap();
    let v = &v[0];
    assert_eq!(v["Driver"], "cni");
    assert_eq!(v["Id"], cni_id("k1"), "the same id in every root");
    assert_eq!(v["IPAM"]["Driver"], "host-local");
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.187.1.0/24");
    assert_eq!(v["CNI"]["Config"]["plugins"][1]["type"], "portmap");
    assert!(v["CNI"]["Conflist"]
        .as_str()
        .unwrap()
        .ends_with("10-k1.conflist"));

    c.ok(&[
        "run",
        "-d",
        "--name",
        "ka",
        "--network",
        "k1",
        "busybox",
        "sleep",
        "300",
    ]);
    c.ok(&[
        "run",
        "-d",
        "--name",
        "kb",
        "--network",
        "k1",
        "-p",
        "22010:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let (ipa, ipb) = (c.ip_of("ka", "k1"), c.ip_of("kb", "k1"));
    assert!(
        ipa.starts_with("10.187.1.") && ipb.starts_with("10.187.1."),
        "{ipa} {ipb}"
    );
    assert_ne!(ipa, ipb);
    assert_eq!(c.leases("k1"), BTreeSet::from([ipa.clone(), ipb.clone()]));
    assert_eq!(c.records().len(), 2);
    let state = c
        .net
        .rbox
        .root
        .join(format!("networks/{}.json", cni_id("k1")));
    assert!(
        state.exists(),
        "endpoints are recorded in the network's state file"
    );
    // Names from rbox's resolver, traffic over the plugin's bridge.
    let r = c.run(&["exec", "ka", "ping", "-c1", "-W2", "kb"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&ipb), "{}", r.stdout);
    let v: Value = serde_json::from_str(&c.ok(&["network", "inspect", "k1"])).unwrap();
    assert_eq!(v[0]["Containers"].as_object().unwrap().len(), 2, "{v}");
    assert!(c.ok(&["port", "kb"]).contains("80/tcp -> 0.0.0.0:22010"));
    // -p answers on an address of the namespace (on lo: the kernel has no dummy links here),
    // through portmap's DNAT.
    assert_eq!(c.net.sh("ip addr add 10.187.201.1/32 dev lo").code, 0);
    let hostname = c.inspect("kb", "{{.Config.Hostname}}");
    // httpd listens a moment after `run -d` returns.
    wait_for("httpd through portmap", 10, || {
        c.net
            .sh("curl -s -m 2 http://10.187.201.1:22010/hostname")
            .stdout
            .trim()
            == hostname
    });
    // IPv6 to this IPv4-only container: portmap cannot, rbox's relay serves it.
    let v6 = c.net.sh("curl -s -m 2 'http://[::1]:22010/hostname'");
    assert_eq!(v6.stdout.trim(), hostname, "{}", v6.stderr);
    let dnat = c.net.sh("iptables-save -t nat | grep -c 'dport 22010'");
    assert!(
        dnat.stdout.trim().parse::<u32>().unwrap_or(0) > 0,
        "no DNAT of 22010"
    );
    assert!(c.bad(&["network", "rm", "k1"]).contains("10-k1.conflist"));

    c.ok(&["rm", "-f", "kb"]);
    assert_eq!(c.leases("k1"), BTreeSet::from([ipa.clone()]));
    assert_eq!(
        c.net
            .sh("iptables-save -t nat | grep -c 'dport 22010'")
            .stdout
            .trim(),
        "0"
    );
    c.ok(&["rm", "-f", "ka"]);
    c.nothing_left("k1");
}

/// `-p` on a list without portmap is refused; a missing plugin, a list naming one twice, a
/// plugin that fails and one that hangs fail with one line and leave nothing (the leases the
/// earlier plugins took are given back).
#[test]
fn cni_bad_input_fails_with_one_line_and_leaves_nothing() {
    let mut c = Cni::new("cni-bad", 2);
    c.timeout = "1";
    c.write(
        "10-k2.conflist",
        &c.bridge_list("k2", "rbt-k2", "10.187.2.0/24", &[]),
    );
    let e = c.bad(&[
        "run",
        "-d",
        "--network",
        "k2",
        "-p",
        "22020:80",
        "busybox",
        "sleep",
        "9",
    ]);
    assert!(e.contains("portMappings"), "{e}");
    c.nothing_left("k2");
    c.ok(&[
        "run",
        "-d",
        "--name",
        "kp",
        "--network",
        "k2",
        "busybox",
        "sleep",
        "300",
    ]);
    c.ok(&["rm", "-f", "kp"]);
    c.nothing_left("k2");

    c.write(
        "20-miss.conflist",
        &c.bridge_list(
            "k2miss",
            "rbt-k2m",
            "10.187.3.0/24",
            &[r#"{"type":"rbt-nosuch"}"#],
        ),
    );
    let e = c.bad(&["run", "--network", "k2miss", "busybox", "true"]);
    assert!(e.contains(r#"failed to find plugin "rbt-nosuch""#), "{e}");
    c.nothing_left("k2miss");

    c.write("30-twice.conflist", r#"{"cniVersion":"1.0.0","name":"k2twice","plugins":[{"type":"bridge"},{"type":"bridge"}]}"#);
    let e = c.bad(&["run", "--network", "k2twice", "busybox", "true"]);
    assert!(e.contains("plugin bridge is listed twice"), "{e}");
    c.write("40-notjson.conflist", "{\"name\": ");
    let e = c.bad(&["run", "--network", "k2bad", "busybox", "true"]);
    assert!(e.contains("k2bad"), "{e}");

    c.plugin(
        "rbt-kfail",
        r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"refused","details":"on purpose"}'; exit 1"#,
    );
    c.write(
        "50-fail.conflist",
        &c.bridge_list(
            "k2fail",
            "rbt-k2f",
            "10.187.4.0/24",
            &[r#"{"type":"rbt-kfail"}"#],
        ),
    );
    let e = c.bad(&["run", "--network", "k2fail", "busybox", "true"]);
    assert!(
        e.contains(r#"plugin type="rbt-kfail" name="k2fail" failed (add): refused: on purpose"#),
        "{e}"
    );
    c.nothing_left("k2fail");

    let marker = c.dir.join("hang.pid");
    c.plugin(
        "rbt-khang",
        &format!("sleep 300 & echo $! > {}; wait", marker.display()),
    );
    c.write(
        "60-hang.conflist",
        &c.bridge_list(
            "k2hang",
            "rbt-k2h",
            "10.187.5.0/24",
            &[r#"{"type":"rbt-khang"}"#],
        ),
    );
    let t = std::time::Instant::now();
    let e = c.bad(&["run", "--network", "k2hang", "busybox", "true"]);
    assert!(e.contains("no answer within 1s, killed"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(15));
    let sleeper: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Its group was killed before rbox returned; SIGKILL takes effect a moment later.
    wait_for("the hung plugin's child to die", 5, || {
        !rbox_tests::alive(sleeper)
    });
    c.nothing_left("k2hang");
}

/// `network connect` with `--ip`, `disconnect` giving the lease back, `run --ip
/// --mac-address` through CNI_ARGS, and an address the plugin cannot give refused cleanly.
#[test]
fn cni_connect_disconnect_and_requested_addresses() {
    let c = Cni::new("cni-conn", 3);
    c.write(
        "10-k3.conflist",
        &c.bridge_list("k3", "rbt-k3", "10.187.6.0/24", &[]),
    );
    c.ok(&["run", "-d", "--name", "kc", "busybox", "sleep", "300"]);
    c.ok(&["network", "connect", "--ip", "10.187.6.40", "k3", "kc"]);
    assert_eq!(c.ip_of("kc", "k3"), "10.187.6.40");
    let addrs = c.ok(&["exec", "kc", "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.187.6.40/24"),
        "{addrs}"
    );
    assert_eq!(c.leases("k3"), BTreeSet::from(["10.187.6.40".to_string()]));
    c.ok(&[
        "run",
        "-d",
        "--name",
        "kd",
        "--network",
        "k3",
        "--ip",
        "10.187.6.41",
        "--mac-address",
        "02:42:0a:bb:06:29",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        c.inspect(
            "kd",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.MacAddress}}{{end}}"
        ),
        "10.187.6.41 02:42:0a:bb:06:29"
    );
    let r = c.run(&["exec", "kc", "ping", "-c1", "-W2", "10.187.6.41"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    c.ok(&["network", "disconnect", "k3", "kc"]);
    assert!(!c.ok(&["exec", "kc", "ip", "-o", "link"]).contains("eth1"));
    assert_eq!(c.leases("k3"), BTreeSet::from(["10.187.6.41".to_string()]));
    assert_eq!(c.records().len(), 1);
    // Outside the plugin's range: host-local refuses, nothing stays.
    let e = c.bad(&["network", "connect", "--ip", "10.187.9.9", "k3", "kc"]);
    assert!(e.contains("host-local") || e.contains("10.187.9.9"), "{e}");
    assert_eq!(c.records().len(), 1);
    c.ok(&["rm", "-f", "kd", "kc"]);
    c.nothing_left("k3");
}

/// `network create -d cni -o cni.conflist=PATH` copies a list into the root under its own
/// name; it goes with `network rm` once no container uses it.
#[test]
fn cni_network_created_from_a_file() {
    let c = Cni::new("cni-create", 4);
    let file = c.dir.join("k4.conflist");
    std::fs::write(
        &file,
        c.bridge_list("ignored", "rbt-k4", "10.187.7.0/24", &[]),
    )
    .unwrap();
    let path = format!("cni.conflist={}", file.display());
    c.ok(&["network", "create", "-d", "cni", "-o", &path, "k4"]);
    // A directory's list of the same name is hidden by the root's own network, with a warning.
    c.write(
        "10-k4.conflist",
        &c.bridge_list("k4", "rbt-k4x", "10.187.9.0/24", &[]),
    );
    let ls = c.run(&["network", "ls", "--filter", "name=k4"]);
    assert_eq!(
        ls.stdout.lines().filter(|l| l.contains(" k4 ")).count(),
        1,
        "{}",
        ls.stdout
    );
    assert!(
        ls.stderr.contains("hidden by this root's own network"),
        "{}",
        ls.stderr
    );
    let v: Value = serde_json::from_str(&c.ok(&["network", "inspect", "k4"])).unwrap();
    assert_eq!(v[0]["CNI"]["Discovered"], false, "{v}");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.187.7.0/24", "{v}");
    assert!(c
        .ok(&["network", "ls"])
        .lines()
        .any(|l| l.contains(" k4 ") && l.contains(" cni ")));
    let e = c.bad(&[
        "network",
        "create",
        "-d",
        "cni",
        "-o",
        &path,
        "--subnet",
        "10.187.8.0/24",
        "k4b",
    ]);
    assert!(e.contains("--subnet"), "{e}");
    let e = c.bad(&["network", "create", "-d", "cni", "k4c"]);
    assert!(e.contains("cni.conflist"), "{e}");
    c.ok(&[
        "run",
        "-d",
        "--name",
        "ke",
        "--network",
        "k4",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(c.leases("k4").contains(&c.ip_of("ke", "k4")));
    c.bad(&["network", "rm", "k4"]);
    c.ok(&["rm", "-f", "ke"]);
    c.ok(&["network", "rm", "k4"]);
    c.nothing_left("k4");
}

/// A kill -9 of the monitor while a plugin is in its ADD: the next command kills what is left
/// of the call and DELs (the lease goes); a kill -9 of a running container's monitor: the
/// container is adopted and keeps its address.
#[test]
fn cni_kill9_mid_add_and_of_a_monitor_is_repaired() {
    let c = Cni::new("cni-kill", 5);
    let marker = c.dir.join("hang.pid");
    c.plugin(
        "rbt-khang",
        &format!("sleep 300 & echo $! > {}; wait", marker.display()),
    );
    c.write(
        "10-k5.conflist",
        &c.bridge_list(
            "k5",
            "rbt-k5",
            "10.187.10.0/24",
            &[r#"{"type":"rbt-khang"}"#],
        ),
    );
    let mut cli = c
        .command(&[
            "run",
            "-d",
            "--name",
            "kh",
            "--network",
            "k5",
            "busybox",
            "sleep",
            "300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the plugin's ADD", 20, || marker.exists());
    assert_eq!(c.leases("k5").len(), 1, "bridge's host-local took a lease");
    let id = c.inspect("kh", "{{.Id}}");
    let monitor = c.net.rbox.monitor_pid(&id);
    kill9(monitor);
    kill9(cli.id() as i32);
    let _ = cli.wait();
    let sleeper: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The next command repairs.
    c.ok(&["ps", "-a"]);
    assert!(c.leases("k5").is_empty(), "{:?}", c.leases("k5"));
    assert!(c.records().is_empty(), "{:?}", c.records());
    assert!(
        !rbox_tests::alive(sleeper),
        "the interrupted call's plugin lives on"
    );
    assert_eq!(c.sandboxes(), 0);
    c.ok(&["rm", "-f", "kh"]);

    c.write(
        "10-k5.conflist",
        &c.bridge_list("k5", "rbt-k5", "10.187.10.0/24", &[]),
    );
    c.ok(&[
        "run",
        "-d",
        "--name",
        "km",
        "--network",
        "k5",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = c.ip_of("km", "k5");
    let id = c.inspect("km", "{{.Id}}");
    kill9(c.net.rbox.monitor_pid(&id));
    assert_eq!(c.inspect("km", "{{.State.Running}}"), "true");
    assert_eq!(c.ip_of("km", "k5"), ip);
    assert_eq!(c.leases("k5"), BTreeSet::from([ip]));
    c.ok(&["rm", "-f", "km"]);
    c.nothing_left("k5");
}

/// 12 runs at once on one CNI network get 12 distinct addresses (the plugins are run one at a
/// time per root), and give all of them back.
#[test]
fn cni_parallel_runs_get_distinct_addresses() {
    let c = Cni::new("cni-par", 6);
    c.write(
        "10-k6.conflist",
        &c.bridge_list("k6", "rbt-k6", "10.187.11.0/24", &[PORTMAP]),
    );
    let children: Vec<_> = (0..12)
        .map(|_| {
            c.command(&["run", "-d", "--network", "k6", "busybox", "sleep", "300"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_str(&c.ok(&["network", "inspect", "k6"])).unwrap();
    let ips: BTreeSet<String> = v[0]["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| {
            e["IPv4Address"]
                .as_str()
                .unwrap()
                .trim_end_matches("/24")
                .to_string()
        })
        .collect();
    assert_eq!(ips.len(), 12, "{ips:?}");
    assert_eq!(c.leases("k6"), ips);
    c.remove_containers();
    c.nothing_left("k6");
}

/// A netns with one end of a veth pair: the far side of a LAN the test makes.
struct Lan(String);

impl Drop for Lan {
    fn drop(&mut self) {
        sh(&format!("ip netns del {}", self.0));
    }
}

/// A single-plugin `.conf` (macvlan on a LAN the test made): the container reaches a peer of
/// that LAN, and its lease goes with it.
#[test]
fn cni_macvlan_on_a_test_made_lan() {
    let c = Cni::new("cni-macvlan", 7);
    let lan = Lan(format!("rbt-k7lan-{}", std::process::id()));
    let ns = c.net.netns.clone().unwrap();
    let r = sh(&format!(
        "ip netns add {l} && ip -n {ns} link add rbt-k7l type veth peer name rbt-k7p && \
         ip -n {ns} link set rbt-k7p netns {l} && ip -n {ns} link set rbt-k7l up && \
         ip -n {l} addr add 10.187.12.1/24 dev rbt-k7p && ip -n {l} link set rbt-k7p up",
        l = lan.0
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.write(
        "10-k7.conf",
        &format!(
            r#"{{"cniVersion":"1.1.0","name":"k7","type":"macvlan","master":"rbt-k7l","mode":"bridge",
               "ipam":{{"type":"host-local","dataDir":"{}",
               "ranges":[[{{"subnet":"10.187.12.0/24","rangeStart":"10.187.12.10"}}]]}}}}"#,
            c.dir.join("ipam").display()
        ),
    );
    c.ok(&[
        "run",
        "-d",
        "--name",
        "kv",
        "--network",
        "k7",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = c.ip_of("kv", "k7");
    assert_eq!(ip, "10.187.12.10");
    let id = c.inspect("kv", "{{.Id}}");
    let link = c.net.exec(&id, "ip -d link show eth0").stdout;
    assert!(link.contains("macvlan"), "{link}");
    // The LAN's gateway is not the host's: no resolver of rbox's there.
    let resolv = c.ok(&["exec", "kv", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("10.187.12.1"), "{resolv}");
    let r = c.run(&["exec", "kv", "ping", "-c1", "-W2", "10.187.12.1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(c.leases("k7"), BTreeSet::from([ip]));
    // The list's 1.1.0 ran as the highest version Debian 12's plugins speak.
    let net_id = c.inspect("k7", "{{.Id}}");
    let rec: Value = serde_json::from_slice(
        &std::fs::read(c.net.rbox.root.join(format!("cni/{net_id}/{id}-eth0.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["version"], "1.0.0", "{rec}");
    assert_eq!(rec["result"]["cniVersion"], "1.0.0", "{rec}");
    c.ok(&["rm", "-f", "kv"]);
    c.nothing_left("k7");
}

/// A DEL that fails leaves the attachment's record (the lease may still be held); `network
/// prune` DELs it again and it goes.
#[test]
fn cni_failed_del_is_retried_by_network_prune() {
    let c = Cni::new("cni-delfail", 8);
    let flag = c.dir.join("fail-del");
    let p = c.dir.join("bin/rbt-kdel");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n\
             VERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}}';;\n\
             ADD) python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[\"prevResult\"]))';;\n\
             DEL) cat >/dev/null; [ ! -e {f} ] || {{ echo '{{\"code\":11,\"msg\":\"not now\"}}'; exit 1; }};;\n\
             esac\n",
            f = flag.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {}", p.display()));
    c.write(
        "10-k8.conflist",
        &c.bridge_list(
            "k8",
            "rbt-k8",
            "10.187.13.0/24",
            &[r#"{"type":"rbt-kdel"}"#],
        ),
    );
    c.ok(&[
        "run",
        "-d",
        "--name",
        "kx",
        "--network",
        "k8",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        c.ip_of("kx", "k8").split('.').take(3).collect::<Vec<_>>(),
        ["10", "187", "13"]
    );
    std::fs::write(&flag, "").unwrap();
    // rm goes through (as Docker's does when the network side fails); the record stays.
    c.ok(&["rm", "-f", "kx"]);
    assert_eq!(c.records().len(), 1, "the record stays for another DEL");
    std::fs::remove_file(&flag).unwrap();
    c.ok(&["network", "prune", "-f"]);
    assert!(c.records().is_empty(), "{:?}", c.records());
    c.remove_containers();
    c.nothing_left("k8");
}
