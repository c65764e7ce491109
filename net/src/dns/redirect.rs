//! Inside one sandbox, sends 127.0.0.11:53 to the resolver's sockets there, which are bound to
//! ephemeral ports so that a container may run a DNS server of its own on port 53 (Docker does
//! the same with iptables DNAT in each sandbox). The rules are one nf_tables transaction over
//! netlink in the sandbox's own namespace, written by hand (a table `ip rbox_dns` with a nat
//! output chain and one DNAT rule per protocol): no `nft`/`iptables` process per container, no
//! dependency on the host's firewall tools, and nothing to remove (the namespace takes its
//! tables with it). Equivalent nft text:
//!
//! ```text
//! table ip rbox_dns {
//!   chain out {
//!     type nat hook output priority -100;
//!     ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:UDP_PORT
//!     ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:TCP_PORT
//!   }
//! }
//! ```
//!
//! Installing replaces the table (add, delete, add in one batch), so a restarted resolver with
//! new ports takes over a sandbox at once.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The resolver's address in every sandbox.
pub const ADDR: [u8; 4] = super::ADDRESS.octets();

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const TABLE: &str = "rbox_dns";
const CHAIN: &str = "out";

// Attribute numbers from linux/netfilter/nf_tables.h.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;

/// Netlink attributes being built: type-length-value, each padded to 4 bytes.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v)
    }

    /// nf_tables' integers are big-endian.
    fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    fn nest(&mut self, kind: u16, inner: &Attrs) -> &mut Self {
        self.put(kind | NLA_F_NESTED, &inner.0)
    }
}

/// One expression of a rule: its name and its attributes.
fn expr(name: &str, data: Attrs) -> Attrs {
    let mut e = Attrs::default();
    e.str(NFTA_EXPR_NAME, name).nest(NFTA_EXPR_DATA, &data);
    e
}

fn value(bytes: &[u8]) -> Attrs {
    let mut v = Attrs::default();
    v.put(NFTA_DATA_VALUE, bytes);
    v
}

/// `payload load LEN @ BASE + OFFSET => reg 1`.
fn payload(base: u32, offset: u32, len: u32) -> Attrs {
    let mut a = Attrs::default();
    a.u32(1, NFT_REG_1).u32(2, base).u32(3, offset).u32(4, len);
    expr("payload", a)
}

/// `cmp eq reg 1 BYTES`.
fn cmp_eq(bytes: &[u8]) -> Attrs {
    let mut a = Attrs::default();
    a.u32(1, NFT_REG_1).u32(2, 0).nest(3, &value(bytes));
    expr("cmp", a)
}

/// `immediate reg REG BYTES`.
fn immediate(reg: u32, bytes: &[u8]) -> Attrs {
    let mut a = Attrs::default();
    a.u32(1, reg).nest(2, &value(bytes));
    expr("immediate", a)
}

/// `ip daddr 127.0.0.11 <proto> dport 53 dnat to 127.0.0.11:<port>`.
fn dnat_rule(proto: u8, port: u16) -> Attrs {
    const NETWORK: u32 = 1;
    const TRANSPORT: u32 = 2;
    const NFT_META_L4PROTO: u32 = 16;
    let mut meta = Attrs::default();
    meta.u32(1, NFT_REG_1).u32(2, NFT_META_L4PROTO);
    let mut nat = Attrs::default();
    // type dnat, family ipv4, address from reg 1, port from reg 2, "proto specified".
    nat.u32(1, 1)
        .u32(2, NFPROTO_IPV4 as u32)
        .u32(3, NFT_REG_1)
        .u32(5, NFT_REG_2)
        .u32(7, 2);
    let mut exprs = Attrs::default();
    for e in [
        payload(NETWORK, 16, 4),
        cmp_eq(&ADDR),
        expr("meta", meta),
        cmp_eq(&[proto]),
        payload(TRANSPORT, 2, 2),
        cmp_eq(&53u16.to_be_bytes()),
        immediate(NFT_REG_1, &ADDR),
        immediate(NFT_REG_2, &port.to_be_bytes()),
        expr("nat", nat),
    ] {
        exprs.nest(NFTA_LIST_ELEM, &e);
    }
    let mut rule = Attrs::default();
    rule.str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, CHAIN)
        .nest(NFTA_RULE_EXPRESSIONS, &exprs);
    rule
}

/// A netlink message: header, nfgenmsg, attributes.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &Attrs,
) {
    let len = 16 + 4 + attrs.0.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(&attrs.0);
}

/// The whole transaction; returns it and how many acknowledgements it asks for.
fn batch(udp_port: u16, tcp_port: u16) -> (Vec<u8>, usize) {
    let nft = |m: u16| (NFNL_SUBSYS_NFTABLES << 8) | m;
    let mut table = Attrs::default();
    table.str(NFTA_TABLE_NAME, TABLE);
    let mut hook = Attrs::default();
    hook.u32(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT)
        .u32(NFTA_HOOK_PRIORITY, (-100i32) as u32);
    let mut chain = Attrs::default();
    chain
        .str(NFTA_CHAIN_TABLE, TABLE)
        .str(NFTA_CHAIN_NAME, CHAIN)
        .nest(NFTA_CHAIN_HOOK, &hook)
        .str(NFTA_CHAIN_TYPE, "nat");
    let create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
    let steps: [(u16, u16, Attrs); 6] = [
        (nft(NFT_MSG_NEWTABLE), create, Attrs(table.0.clone())),
        (
            nft(NFT_MSG_DELTABLE),
            NLM_F_REQUEST | NLM_F_ACK,
            Attrs(table.0.clone()),
        ),
        (nft(NFT_MSG_NEWTABLE), create, table),
        (nft(NFT_MSG_NEWCHAIN), create, chain),
        (
            nft(NFT_MSG_NEWRULE),
            create | NLM_F_APPEND,
            dnat_rule(libc::IPPROTO_UDP as u8, udp_port),
        ),
        (
            nft(NFT_MSG_NEWRULE),
            create | NLM_F_APPEND,
            dnat_rule(libc::IPPROTO_TCP as u8, tcp_port),
        ),
    ];
    let mut out = Vec::new();
    let none = Attrs::default();
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        0,
        0,
        NFNL_SUBSYS_NFTABLES,
        &none,
    );
    let n = steps.len();
    for (i, (kind, flags, attrs)) in steps.into_iter().enumerate() {
        message(&mut out, kind, flags, i as u32 + 1, NFPROTO_IPV4, 0, &attrs);
    }
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        n as u32 + 1,
        0,
        NFNL_SUBSYS_NFTABLES,
        &none,
    );
    (out, n)
}

/// Installs the redirect in the calling thread's network namespace: queries to 127.0.0.11:53
/// go to `udp_port` and `tcp_port` on 127.0.0.11.
pub fn install(udp_port: u16, tcp_port: u16) -> io::Result<()> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: Duration::from_secs(2).as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval we own.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let (msg, mut acks) = batch(udp_port, tcp_port);
    // SAFETY: sockaddr_nl is plain data; all zero is the kernel's address.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto from our buffer to the kernel's address.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    while acks > 0 {
        // SAFETY: recv into our buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = 0;
        let n = n as usize;
        while at + 20 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                acks -= 1;
            }
            if len < 16 {
                break;
            }
            at += len.next_multiple_of(4);
        }
    }
    // The rules are in (every batch message acked). Closing an nftables socket waits for the
    // kernel's pending transaction cleanup (an RCU grace period, 6-9 ms here), which every
    // `run -d` on a network with names waited for in the resolver's answer: closed aside.
    std::thread::spawn(move || drop(sock));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn the_batch_is_well_formed() {
        let (b, acks) = batch(40053, 40054);
        assert_eq!(acks, 6);
        // Walk the messages: lengths add up, types in order, attributes 4-aligned.
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            kinds.push(u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap()) & 0xff);
            at += len;
        }
        assert_eq!(at, b.len());
        assert_eq!(kinds, [16, 0, 2, 0, 3, 6, 6, 17]);
    }

    /// In a namespace of its own (a thread that unshared), a datagram to 127.0.0.11:53 reaches
    /// a socket on another port, and its reply comes back from port 53.
    #[test]
    fn queries_to_port_53_reach_the_ephemeral_socket() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            crate::netlink::block_on(async {
                let h = crate::netlink::host_handle().unwrap();
                crate::netlink::set_up(&h, 1, "lo").await.unwrap();
            })
            .unwrap();
            let server = UdpSocket::bind("127.0.0.11:0").unwrap();
            let tcp = std::net::TcpListener::bind("127.0.0.11:0").unwrap();
            let port = server.local_addr().unwrap().port();
            install(port, tcp.local_addr().unwrap().port()).unwrap();
            // A second install (a restarted resolver) replaces the rules.
            install(port, tcp.local_addr().unwrap().port()).unwrap();
            // Port 53 itself stays free for a container's own server.
            let own = UdpSocket::bind("0.0.0.0:53").unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            client.send_to(b"q", "127.0.0.11:53").unwrap();
            let mut buf = [0u8; 8];
            server
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"q");
            server.send_to(b"a", from).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from.to_string().as_str()),
                (&b"a"[..], "127.0.0.11:53")
            );
            let mut c = std::net::TcpStream::connect("127.0.0.11:53").unwrap();
            let (mut s, _) = tcp.accept().unwrap();
            std::io::Write::write_all(&mut s, b"t").unwrap();
            let mut one = [0u8; 1];
            std::io::Read::read_exact(&mut c, &mut one).unwrap();
            assert_eq!(&one, b"t");
            drop(own);
        })
        .join()
        .unwrap();
    }
}
