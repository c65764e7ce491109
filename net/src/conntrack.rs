//! Deleting conntrack entries of a published UDP port over ctnetlink (NETLINK_NETFILTER), with
//! no `conntrack` tool forked.
//!
//! A UDP "connection" lives in conntrack for as long as its client keeps sending (30 s after the
//! last datagram, 120 s once both sides talked), and NAT is decided only on its first packet. So
//! a client that keeps sending to a host port keeps reaching whatever that port meant when its
//! entry was made: the DNAT to a removed container, or no DNAT at all when it sent while
//! nothing was published. A new container published on the port would never see it
//! (podman#27516, netavark#1129). Docker deletes the entries of a UDP port when it publishes
//! it; rbox does that and also deletes them when it unpublishes.
//!
//! No maintained crate speaks ctnetlink (netlink-packet-netfilter 0.4 has nflog and nftables
//! only), so the two messages needed are built here: a dump of the family's entries
//! (IPCTNL_MSG_CT_GET with NLM_F_DUMP) and one IPCTNL_MSG_CT_DELETE per match, sent with the
//! entry's original tuple (and zone) exactly as the kernel reported it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;

const IPPROTO_UDP: u8 = 17;

/// The attributes (type, payload) of a netlink attribute stream.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let (whole, payload) = (&buf[..len], &buf[4..len]);
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
        Some((ty, payload, whole))
    })
}

fn find(buf: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(buf).find(|(t, _, _)| *t == ty).map(|(_, p, _)| p)
}

/// The original direction of one entry: what the client sent to.
#[derive(Debug, PartialEq)]
struct Orig {
    dst: Option<IpAddr>,
    proto: u8,
    dport: u16,
}

fn parse_orig(tuple: &[u8]) -> Orig {
    let ip = find(tuple, CTA_TUPLE_IP);
    let dst = ip.and_then(|ip| {
        find(ip, CTA_IP_V4_DST)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| IpAddr::from(Ipv4Addr::from(b)))
            .or_else(|| {
                find(ip, CTA_IP_V6_DST)
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .map(|b| IpAddr::from(Ipv6Addr::from(b)))
            })
    });
    let proto = find(tuple, CTA_TUPLE_PROTO);
    Orig {
        dst,
        proto: proto
            .and_then(|p| find(p, CTA_PROTO_NUM))
            .and_then(|b| b.first().copied())
            .unwrap_or(0),
        dport: proto
            .and_then(|p| find(p, CTA_PROTO_DST_PORT))
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_be_bytes)
            .unwrap_or(0),
    }
}

/// A netlink message: header, nfgenmsg for `family`, then `payload` (attributes).
fn message(ty: u16, flags: u16, seq: u32, family: u8, payload: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + payload.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | ty).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(payload);
    m
}

/// The netlink messages (type, body after the nlmsghdr) in one datagram.
fn messages(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        out.push((u16::from_ne_bytes([buf[4], buf[5]]), &buf[16..len]));
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
    }
    out
}

/// The errno of an NLMSG_ERROR body (0: an ACK).
fn error_code(body: &[u8]) -> i32 {
    body.get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_ne_bytes)
        .map(|e| -e)
        .unwrap_or(0)
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new, valid descriptor nobody else owns.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid (pid 0: the kernel).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and `to` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(&buf[..n as usize])
    }
}

/// Deletes the conntrack entries of UDP datagrams sent to any of `targets` (`host_ip:port`, any
/// local address when `host_ip` is unspecified), all of one family (`v6`): one dump, then one
/// delete per match. Returns how many went.
pub fn delete_udp(v6: bool, targets: &[(IpAddr, u16)]) -> io::Result<usize> {
    if targets.is_empty() {
        return Ok(0);
    }
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    let sock = Socket::open()?;
    sock.send(&message(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        family,
        &[],
    ))?;
    // The original tuple (and zone) attributes of each match, as the kernel sent them.
    let mut matches: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    'dump: loop {
        let data = sock.recv(&mut buf)?;
        for (ty, body) in messages(data) {
            match ty {
                NLMSG_DONE => break 'dump,
                NLMSG_ERROR => match error_code(body) {
                    0 => break 'dump,
                    e => return Err(io::Error::from_raw_os_error(e)),
                },
                _ => {}
            }
            let Some(nla) = body.get(4..) else { continue };
            let mut keep = Vec::new();
            let mut hit = false;
            for (t, payload, whole) in attrs(nla) {
                if t == CTA_TUPLE_ORIG {
                    let o = parse_orig(payload);
                    hit = o.proto == IPPROTO_UDP
                        && targets.iter().any(|(ip, port)| {
                            o.dport == *port && (ip.is_unspecified() || o.dst == Some(*ip))
                        });
                    keep.extend_from_slice(whole);
                    keep.resize((keep.len() + 3) & !3, 0);
                } else if t == CTA_ZONE {
                    keep.extend_from_slice(whole);
                    keep.resize((keep.len() + 3) & !3, 0);
                }
            }
            if hit {
                matches.push(keep);
            }
        }
    }
    let mut deleted = 0;
    for (seq, m) in matches.iter().enumerate() {
        let seq = seq as u32 + 2;
        sock.send(&message(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            m,
        ))?;
        let data = sock.recv(&mut buf)?;
        for (ty, body) in messages(data) {
            if ty == NLMSG_ERROR {
                match error_code(body) {
                    0 => deleted += 1,
                    // Gone meanwhile (expired, or deleted by another rbox).
                    libc::ENOENT => {}
                    e => return Err(io::Error::from_raw_os_error(e)),
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize((v.len() + 3) & !3, 0);
        v
    }

    #[test]
    fn parses_the_original_tuple_of_a_udp_entry() {
        let ip = [nla(1, &[127, 0, 0, 1]), nla(CTA_IP_V4_DST, &[127, 0, 0, 1])].concat();
        let proto = [
            nla(CTA_PROTO_NUM, &[IPPROTO_UDP]),
            nla(2, &40000u16.to_be_bytes()),
            nla(CTA_PROTO_DST_PORT, &38953u16.to_be_bytes()),
        ]
        .concat();
        // The kernel sets NLA_F_NESTED on nested attributes.
        let tuple = [
            nla(CTA_TUPLE_IP | 0x8000, &ip),
            nla(CTA_TUPLE_PROTO | 0x8000, &proto),
        ]
        .concat();
        assert_eq!(
            parse_orig(&tuple),
            Orig {
                dst: Some(Ipv4Addr::LOCALHOST.into()),
                proto: IPPROTO_UDP,
                dport: 38953
            }
        );
        let msg = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, 7, 2, &nla(1, &tuple));
        let parsed = messages(&msg);
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].0,
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
        );
        let (t, p, _) = attrs(&parsed[0].1[4..]).next().unwrap();
        assert_eq!((t, parse_orig(p).dport), (CTA_TUPLE_ORIG, 38953));
    }
}
