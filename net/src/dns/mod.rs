//! Names on user networks: the embedded DNS resolver (libnetwork's local service discovery).
//!
//! Design, and why:
//! - **One resolver process per root, serving all of its user networks.** rbox has no daemon, so
//!   the resolver is the `rbox` binary itself in a hidden mode (`rbox dns serve`), started by the
//!   first join of a user network and stopped by the last leave. One process per root rather
//!   than per network: a single small process (one current-thread tokio runtime, < 5 MB) sees
//!   every network, which it needs anyway to answer a container on several networks, and there
//!   is one pid and one control socket to manage. Separate roots are separate worlds (their own
//!   networks and gateways), so each gets its own resolver.
//! - **Answering on 127.0.0.11 inside each sandbox (as Docker)**, so names resolve on every
//!   network type, including those whose containers cannot reach the host (macvlan, ipvlan,
//!   overlay), and configurations that name 127.0.0.11 (nginx's `resolver`) work unchanged.
//!   The resolver keeps one UDP socket and one TCP listener *in each served sandbox*, made by
//!   entering its namespace on the resolver's only thread for a few syscalls (`listen`): the
//!   socket a query arrives on names the asking container, so no source address is trusted and
//!   one container cannot ask as another. The sockets sit on ephemeral ports and an nf_tables
//!   DNAT rule in the sandbox (one netlink transaction, `redirect`) maps 127.0.0.11:53 to them,
//!   so a container can still run its own DNS server on port 53, as in Docker. Why not the
//!   sandbox's gateway, as before: a macvlan/ipvlan sandbox cannot reach the host at all. Why
//!   not sockets made by `rbox run` and passed over: the resolver has to make them anyway after
//!   a restart, so it is the only one that does.
//! - **A socket keeps its namespace alive**, so a sandbox's sockets (and every TCP client and
//!   forwarded query of it) are closed before the reload that follows its release is answered:
//!   when `rm`/`disconnect` return, the namespace and its links are being freed.
//! - **What it serves** (`table`): on user networks of drivers with names (`Caps::dns`: not
//!   the default bridge, as Docker), each endpoint's container name, 12-hex short id and
//!   aliases, as `name` or `name.<network>`, A/AAAA on the first of the asker's networks where
//!   the name is found, PTR for container addresses (`name.<network>.`), NXDOMAIN for other
//!   single-label names and other names in a shared network's domain, TTL 5 s. A name several
//!   containers share (`--network-alias`) lists all of them, rotated one step per query, so
//!   clients that take the first address spread their load. Everything else is relayed
//!   unchanged, from the host's namespace, to the asking container's `--dns` servers, else to
//!   the host's resolvers (`config::host_upstreams`); but not for a container only on
//!   `--internal` networks (REFUSED, as Docker since CVE-2024-29018: relayed from the host, its
//!   queries would leave where its packets cannot), unless its `--dns` server is on them.
//! - **Current records without polling**: commands that change endpoints call [`sync`], which
//!   talks to the resolver over `<root>/dns/resolver.sock` and returns only after it reloaded
//!   the networks' state files, so a name is there when `run -d`/`connect` return and gone when
//!   `rm`/`disconnect` return. SIGHUP also reloads (without the acknowledgement).
//! - **Crashes**: `<root>/dns/resolver.pid` holds its pid and, for the resolver's whole life, a
//!   lock. Every rbox command calls [`ensure`] (a lock probe, no fork while it lives); after a
//!   kill -9 the probe succeeds and `sync` starts a new resolver, which makes new sockets in
//!   every sandbox and replaces their redirects.
//! - **Threads**: the resolver is its own process with one thread (which is why it may enter a
//!   sandbox's namespace and come back); what `rbox run` runs of this module is plain blocking
//!   socket I/O and a fork/exec whose child daemonises, so no thread is left there.
//! - **Robustness**: garbage, responses and oversized datagrams are dropped without a reply;
//!   forwarded queries in flight and TCP clients are capped; all answers come from
//!   hickory-proto's encoder, never hand-made bytes.

mod answer;
pub mod config;
mod control;
mod listen;
mod redirect;
mod server;
mod table;

pub use config::{
    check_alias, check_dns_option, check_dns_search, parse_add_host, parse_dns_server, resolv_conf,
    valid_name, DnsSettings, HOST_GATEWAY,
};
pub use control::{ensure, joined, pid, pid_file, serve_main, stop, sync};
pub use table::{serves, serves_with};

/// Where containers on user networks find the resolver (their resolv.conf), as in Docker.
pub const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);
pub(crate) use table::{Entry, Table};
