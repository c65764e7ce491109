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
//! - **Listening on each served network's gateway, port 53 (as aardvark-dns)**, not 127.0.0.11
//!   with DNAT in each sandbox (Docker): a socket inside a sandbox would keep that network
//!   namespace alive after rbox releases it (teardown relies on the kernel freeing it), and a
//!   DNAT rule per sandbox would cost an iptables-restore per container. The gateway is the
//!   host's own address on the bridge, so queries arrive in the host namespace without rules.
//!   The socket a query arrives on names the network; the source address names the asking
//!   container, whose other networks are searched too. A source outside the network is refused
//!   (a container of another network can route to this gateway, isolation must still hold).
//! - **What it serves** (`table`): on user bridge networks only (not the default bridge, as
//!   Docker), each endpoint's container name, 12-hex short id and aliases, as `name` or
//!   `name.<network>`, A/AAAA on the network where the name was found, PTR for container
//!   addresses (`name.<network>.`), NXDOMAIN for other single-label names and other names in a
//!   shared network's domain, TTL 5 s. Everything else is relayed unchanged to the asking
//!   container's `--dns` servers, else to the host's resolvers (`config::host_upstreams`).
//! - **Current records without polling**: commands that change endpoints call [`sync`], which
//!   talks to the resolver over `<root>/dns/resolver.sock` and returns only after it reloaded
//!   the networks' state files, so a name is there when `run -d`/`connect` return and gone when
//!   `rm`/`disconnect` return. SIGHUP also reloads (without the acknowledgement).
//! - **Crashes**: `<root>/dns/resolver.pid` holds its pid; after a kill -9 the control socket is
//!   dead, the next `sync` sees that and starts a new resolver (port 53 is taken over at once).
//! - **Threads**: the resolver is its own process; what `rbox run` runs of this module is plain
//!   blocking socket I/O and a fork/exec whose child daemonises, so no thread is left there.
//! - **Robustness**: garbage, responses and oversized datagrams are dropped without a reply;
//!   forwarded queries in flight and TCP clients are capped; all answers come from
//!   hickory-proto's encoder, never hand-made bytes.

mod answer;
pub mod config;
mod control;
mod server;
mod table;

pub use config::{
    check_alias, check_dns_option, check_dns_search, parse_add_host, parse_dns_server, resolv_conf,
    valid_name, DnsSettings, HOST_GATEWAY,
};
pub use control::{pid, pid_file, serve_main, stop, sync};
pub use table::{serves, serves_with};
pub(crate) use table::{Entry, Table};
