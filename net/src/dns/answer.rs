//! DNS messages in and out, with hickory-proto: decode a query, turn the table's `Answer` into
//! a response, and cap it to what the client can take.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::table::{Answer, Kind, Table};

/// Seconds a client may cache our answers: containers come and go.
pub const TTL: u32 = 5;

/// The largest UDP answer without EDNS (RFC 1035).
const PLAIN_UDP: usize = 512;

/// The rotation of shared names, one count per record type: a client that asks A and AAAA for
/// every lookup (glibc, busybox) still sees each list turn one step per lookup.
#[derive(Debug, Default)]
pub struct Turns([std::sync::atomic::AtomicUsize; 3]);

impl Turns {
    fn next(&self, kind: Kind) -> usize {
        let i = match kind {
            Kind::A => 0,
            Kind::Aaaa => 1,
            _ => 2,
        };
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// What to do with one datagram or TCP message.
pub enum Reply {
    /// Send these bytes back.
    Now(Vec<u8>),
    /// Relay the query to these upstreams; answer SERVFAIL (`fail`) if none answers.
    Forward {
        upstreams: Vec<IpAddr>,
        fail: Vec<u8>,
    },
    /// Not a query we answer at all (garbage, a response): stay silent.
    Drop,
}

fn kind(t: RecordType) -> Kind {
    match t {
        RecordType::A => Kind::A,
        RecordType::AAAA => Kind::Aaaa,
        RecordType::ANY => Kind::Any,
        RecordType::PTR => Kind::Ptr,
        _ => Kind::Other,
    }
}

fn respond(q: &Message, code: ResponseCode) -> Message {
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.response_code = code;
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_queries(q.queries.iter().cloned());
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        r.set_edns(e);
    }
    r
}

/// Encodes `r`, truncated (TC set, answers dropped) if it does not fit `limit` bytes.
fn encode(r: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = r.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    r.truncate().to_vec().ok()
}

/// Handles one message that arrived in the sandbox of `asker`. `tcp` lifts the UDP size limit;
/// `turns` rotate shared names (`Table::lookup`).
pub fn handle(table: &Table, asker: &str, bytes: &[u8], tcp: bool, turns: &Turns) -> Reply {
    let Ok(q) = Message::from_vec(bytes) else {
        return Reply::Drop;
    };
    if q.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let limit = if tcp {
        u16::MAX as usize
    } else {
        q.edns
            .as_ref()
            .map(|e| (e.max_payload() as usize).clamp(PLAIN_UDP, 4096))
            .unwrap_or(PLAIN_UDP)
    };
    let now = |m: Message| encode(&m, limit).map_or(Reply::Drop, Reply::Now);
    if q.metadata.op_code != OpCode::Query {
        return now(respond(&q, ResponseCode::NotImp));
    }
    if q.queries.len() != 1 {
        return now(respond(&q, ResponseCode::FormErr));
    }
    let query = &q.queries[0];
    let qname = query.name().to_lowercase().to_ascii();
    let qname = qname.trim_end_matches('.');
    let k = kind(query.query_type());
    let answer = table.lookup(asker, qname, k, turns.next(k));
    let mut r = respond(&q, ResponseCode::NoError);
    match answer {
        Answer::Refused => {
            // As Docker's: nothing will be relayed for this asker, so no recursion either.
            r.metadata.response_code = ResponseCode::Refused;
            r.metadata.recursion_available = false;
        }
        Answer::NxDomain => {
            r.metadata.authoritative = true;
            r.metadata.response_code = ResponseCode::NXDomain;
        }
        Answer::Addrs(addrs) => {
            r.metadata.authoritative = true;
            for a in addrs {
                let data = match a {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                r.add_answer(Record::from_rdata(query.name().clone(), TTL, data));
            }
        }
        Answer::Ptr(target) => {
            r.metadata.authoritative = true;
            let Ok(mut t) = Name::from_ascii(&target) else {
                return Reply::Drop;
            };
            t.set_fqdn(true);
            r.add_answer(Record::from_rdata(
                query.name().clone(),
                TTL,
                RData::PTR(PTR(t)),
            ));
        }
        Answer::Forward(upstreams) => {
            r.metadata.response_code = ResponseCode::ServFail;
            return match encode(&r, limit) {
                Some(fail) => Reply::Forward { upstreams, fail },
                None => Reply::Drop,
            };
        }
    }
    now(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::table::{Entry, Segment};
    use hickory_proto::op::Query;

    fn table() -> Table {
        Table {
            segments: vec![Segment {
                name: "net".into(),
                subnet4: "10.3.0.0/24".parse().unwrap(),
                subnet6: None,
                entries: vec![Entry {
                    container_id: "0123456789abcdef".into(),
                    names: vec!["web".into(), "0123456789ab".into()],
                    ip4: Some("10.3.0.2".parse().unwrap()),
                    ip6: None,
                    upstreams: vec![],
                    interface: "eth0".into(),
                }],
            }],
            host_upstreams: vec!["127.0.0.1".parse().unwrap()],
            connected: ["0123456789abcdef".to_string()].into(),
        }
    }

    fn ask(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn run(bytes: &[u8]) -> Reply {
        handle(
            &table(),
            "0123456789abcdef",
            bytes,
            false,
            &Turns::default(),
        )
    }

    fn decoded(r: Reply) -> Message {
        match r {
            Reply::Now(b) => Message::from_vec(&b).unwrap(),
            _ => panic!("expected an answer"),
        }
    }

    #[test]
    fn a_nxdomain_and_forward() {
        let m = decoded(run(&ask("WEB.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, TTL);
        let m = decoded(run(&ask("nope.", RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = decoded(run(&ask("2.0.3.10.in-addr.arpa.", RecordType::PTR)));
        assert_eq!(m.answers[0].data.to_string(), "web.net.");
        match run(&ask("example.org.", RecordType::A)) {
            Reply::Forward { upstreams, fail } => {
                assert_eq!(upstreams, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
                let f = Message::from_vec(&fail).unwrap();
                assert_eq!(f.metadata.response_code, ResponseCode::ServFail);
            }
            _ => panic!("expected forward"),
        }
    }

    #[test]
    fn garbage_and_responses_are_dropped() {
        assert!(matches!(run(b""), Reply::Drop));
        assert!(matches!(run(&[0xff; 700]), Reply::Drop));
        let mut resp = Message::from_vec(&ask("web.", RecordType::A)).unwrap();
        resp.metadata.message_type = MessageType::Response;
        assert!(matches!(run(&resp.to_vec().unwrap()), Reply::Drop));
        let mut two = Message::from_vec(&ask("web.", RecordType::A)).unwrap();
        two.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
        let m = decoded(run(&two.to_vec().unwrap()));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
}
