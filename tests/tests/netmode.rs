//! `--network container:NAME|ID`: a container in another's sandbox, as Docker's.
//!
//! Name space: bridges rbt-mc*, subnets 10.184.100-149.0/24; the host's resolvers are
//! replaced by a loopback address (RBOX_HOST_RESOLV_CONF).

use rbox_tests::{sh, CtrFixture, RboxCli};

/// A root with busybox, default bridge rbt-mc<N>d on 10.184.<N>.0/24 and the user network
/// `app` (bridge rbt-mc<N>, 10.184.<N+1>.0/24).
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
            format!("rbt-mc{n}d"),
            format!("10.184.{n}.0/24"),
        ));
        t.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.184.{}.0/24", n + 1),
            "-o",
            &format!("com.docker.network.bridge.name=rbt-mc{n}"),
            "app",
        ]);
        t
    }

    fn containers(&self) -> usize {
        self.ok(&["ps", "-aq"]).lines().count()
    }
}

#[test]
fn a_joined_container_shares_addresses_localhost_names_and_files() {
    let t = T::new("mode-share", 100);
    let web = t
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
            "127.0.0.1:80",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    t.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = t.ip_of("web", "app");
    // Its addresses, its localhost (httpd listens on 127.0.0.1 only), its names and files.
    let out = t.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; wget -q -O- http://127.0.0.1/hostname; hostname; \
         cat /etc/resolv.conf; nslookup peer; ping -c1 -W2 www",
    ]);
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    assert_eq!(
        out.matches(&web[..12]).count(),
        2,
        "web's hostname, over localhost and own: {out}"
    );
    assert!(out.contains("nameserver 127.0.0.11\n"), "{out}");
    assert!(
        out.contains(&format!("Address: {}", t.ip_of("peer", "app"))),
        "{out}"
    );
    // inspect as Docker: the full id, no networks of its own.
    let j = t.ok(&[
        "create",
        "--name",
        "joined",
        "--network",
        "container:web",
        "busybox",
        "sleep",
        "300",
    ]);
    let f = "{{.HostConfig.NetworkMode}} {{json .NetworkSettings.Networks}} {{.Config.Hostname}}";
    assert_eq!(
        t.ok(&["inspect", "-f", f, j.trim()]).trim(),
        format!("container:{web} {{}} {}", &web[..12])
    );
    t.ok(&["start", "joined"]);
    assert_eq!(t.ok(&["exec", "joined", "hostname"]).trim(), &web[..12]);
    // It has no sandbox of its own: network connect is refused as Docker refuses it.
    let e = t.bad(&["network", "connect", "app", "joined"]);
    assert!(
        e.contains("container sharing network namespace with another container"),
        "{e}"
    );
}

#[test]
fn what_cannot_go_with_container_mode_is_refused_as_docker_refuses_it() {
    let t = T::new("mode-bad", 102);
    t.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]);
    t.ok(&["create", "--name", "idle", "busybox", "true"]);
    for (args, want) in [
        (
            &["-p", "80"][..],
            "conflicting options: port publishing and the container type network mode",
        ),
        (
            &["-P"],
            "conflicting options: port publishing and the container type network mode",
        ),
        (
            &["--expose", "80"],
            "conflicting options: port exposing and the container type network mode",
        ),
        (
            &["--ip", "10.184.103.9"],
            "user specified IP address is supported on user defined networks only",
        ),
        (
            &["--network-alias", "x"],
            "network-scoped alias is supported only for containers in user defined networks",
        ),
        (
            &["--mac-address", "02:42:00:00:00:01"],
            "conflicting options: mac-address and the network mode",
        ),
        (
            &["--dns", "192.0.2.1"],
            "conflicting options: dns and the network mode",
        ),
        (
            &["-h", "other"],
            "conflicting options: hostname and the network mode",
        ),
        (
            &["--add-host", "a:192.0.2.1"],
            "conflicting options: custom host-to-IP mapping and the network mode",
        ),
        (
            &["--link", "web"],
            "conflicting options: container type network can't be used with links",
        ),
    ] {
        for cmd in ["run", "create"] {
            let mut a = vec![cmd, "--network", "container:web"];
            a.extend(args);
            a.extend(["busybox", "true"]);
            let e = t.bad(&a);
            assert!(e.contains(want), "{cmd} {args:?}: {e}");
        }
    }
    for (net, want) in [
        ("container:nosuch", "No such container: nosuch"),
        (
            "container:",
            "Invalid network mode: invalid container format container:<name|id>",
        ),
    ] {
        for cmd in ["run", "create"] {
            let e = t.bad(&[cmd, "--network", net, "busybox", "true"]);
            assert!(e.contains(want), "{cmd} {net}: {e}");
        }
    }
    // run refuses a container that does not run, before anything is made; create accepts it
    // (it may be started first) and start refuses while it does not run.
    let e = t.bad(&["run", "--network", "container:idle", "busybox", "true"]);
    assert!(
        e.contains("cannot join network of a non running container: idle"),
        "{e}"
    );
    assert_eq!(t.containers(), 2, "a refused run left a container");
    t.ok(&[
        "create",
        "--name",
        "later",
        "--network",
        "container:idle",
        "busybox",
        "sleep",
        "300",
    ]);
    let r = t.run(&["start", "later"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("cannot join network of a non running container"),
        "{}",
        r.stderr
    );
    assert_eq!(t.ok(&["ps", "-q"]).lines().count(), 1, "only web runs");
}

#[test]
fn stopping_the_joined_container_leaves_the_joiner_with_lo_and_frees_its_address() {
    let t = T::new("mode-stop", 104);
    t.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = t.ip_of("web", "app");
    let id = t
        .ok(&["inspect", "-f", "{{.Id}}", "web"])
        .trim()
        .to_string();
    t.ok(&[
        "run",
        "-d",
        "--name",
        "joiner",
        "--network",
        "container:web",
        "busybox",
        "sleep",
        "300",
    ]);
    let addrs = t.ok(&["exec", "joiner", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains(&ip), "{addrs}");
    let veth = t.host_veth(&id).expect("web's veth");
    t.ok(&["stop", "-t", "1", "web"]);
    // As in Docker: the joiner runs on with lo only; nothing of web's endpoint is left.
    let addrs = t.ok(&["exec", "joiner", "ip", "-4", "-o", "addr"]);
    assert!(
        !addrs.contains(&ip) && addrs.contains("127.0.0.1"),
        "{addrs}"
    );
    assert_ne!(
        sh(&format!("ip link show {veth}")).code,
        0,
        "web's veth left"
    );
    t.ok(&[
        "run",
        "-d",
        "--name",
        "next",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(t.ip_of("next", "app"), ip, "the address was given back");
    t.ok(&["exec", "next", "ping", "-c1", "-W1", "10.184.105.1"]);
    // rm of the stopped one works too; the joiner cannot start again without it.
    t.ok(&["rm", "web"]);
    t.ok(&["stop", "-t", "1", "joiner"]);
    let r = t.run(&["start", "joiner"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
}
