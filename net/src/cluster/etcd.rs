//! etcd v3 through its JSON gateway (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`), as served by 3.4
//! and every later release: POST JSON, keys and values base64, int64 fields as strings, false
//! and zero fields left out. Each call tries the store's endpoints in order.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::http;

/// Why a request to the store failed.
#[derive(Debug, Clone, PartialEq)]
pub enum EtcdError {
    /// No endpoint answered (refused, timed out, not HTTP).
    Unreachable(String),
    /// The lease named in the request does not exist (expired or revoked).
    LeaseNotFound,
    /// The watch's start revision was compacted away: list again, then watch from there.
    Compacted,
    /// etcd answered with an error.
    Refused(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unreachable(m) => write!(f, "unreachable: {m}"),
            EtcdError::LeaseNotFound => f.write_str("lease not found"),
            EtcdError::Compacted => f.write_str("watch revision compacted"),
            EtcdError::Refused(m) => write!(f, "refused the request: {m}"),
        }
    }
}

pub type EtcdResult<T> = std::result::Result<T, EtcdError>;

/// One key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A range's keys and the store's revision when it was read.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub kvs: Vec<Kv>,
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub deleted: bool,
    pub kv: Kv,
}

/// A condition of a transaction.
pub enum Cmp<'a> {
    /// The key does not exist (a range: no key in it exists).
    Absent(&'a str, bool),
    /// The key exists.
    Exists(&'a str),
    /// No key under the prefix was created or changed after `revision`.
    UnchangedSince(&'a str, i64),
    /// The key holds exactly this value.
    Value(&'a str, &'a [u8]),
}

/// An operation of a transaction.
pub enum Op<'a> {
    Put(&'a str, &'a [u8], i64),
    Delete(&'a str),
    DeletePrefix(&'a str),
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return b64(&b);
        }
    }
    // Every byte 0xff: to the end of the key space.
    b64(&[0])
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv(v: &Value) -> Kv {
    let dec = |f: &str| {
        v[f].as_str()
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default()
    };
    Kv {
        key: String::from_utf8_lossy(&dec("key")).into_owned(),
        value: dec("value"),
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    }
}

fn kvs(v: &Value) -> Vec<Kv> {
    v["kvs"]
        .as_array()
        .map(|a| a.iter().map(kv).collect())
        .unwrap_or_default()
}

fn range_req(key: &str, prefix: bool) -> Value {
    let mut r = json!({"key": b64(key.as_bytes())});
    if prefix {
        r["range_end"] = json!(prefix_end(key));
    }
    r
}

/// Turns an error body of the gateway into an `EtcdError`.
fn refusal(v: &Value) -> Option<EtcdError> {
    let msg = v["error"].as_str().or(v["message"].as_str())?;
    if msg.contains("lease not found") {
        return Some(EtcdError::LeaseNotFound);
    }
    Some(EtcdError::Refused(
        msg.strip_prefix("etcdserver: ").unwrap_or(msg).to_string(),
    ))
}

/// A client of one etcd cluster: its client URLs as "host:port".
#[derive(Debug, Clone, PartialEq)]
pub struct Etcd {
    pub endpoints: Vec<String>,
}

impl Etcd {
    pub fn new(endpoints: Vec<String>) -> Etcd {
        Etcd { endpoints }
    }

    /// POSTs `body` to each endpoint in turn until one answers.
    fn call(&self, path: &str, body: &Value) -> EtcdResult<Value> {
        let body = body.to_string();
        let mut last = String::from("no endpoint");
        for ep in &self.endpoints {
            match http::post(ep, path, body.as_bytes()) {
                Ok((status, reply)) => {
                    let v: Value = serde_json::from_slice(&reply).map_err(|_| {
                        EtcdError::Unreachable(format!(
                            "{ep}: HTTP {status} with a body that is not JSON (not etcd?)"
                        ))
                    })?;
                    if let Some(e) = refusal(&v) {
                        return Err(e);
                    }
                    if status != 200 {
                        return Err(EtcdError::Refused(format!("HTTP {status}")));
                    }
                    return Ok(v);
                }
                Err(e) => last = format!("{ep}: {}", http::describe(&e)),
            }
        }
        Err(EtcdError::Unreachable(last))
    }

    /// The key `key`, or every key under `key` with `prefix`.
    pub fn range(&self, key: &str, prefix: bool) -> EtcdResult<Range> {
        let v = self.call("/v3/kv/range", &range_req(key, prefix))?;
        Ok(Range {
            kvs: kvs(&v),
            revision: int(&v["header"]["revision"]),
        })
    }

    pub fn get(&self, key: &str) -> EtcdResult<Option<Kv>> {
        Ok(self.range(key, false)?.kvs.into_iter().next())
    }

    /// Stores `value` at `key`, attached to `lease` (0: none). Returns the new revision.
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> EtcdResult<i64> {
        let mut req = json!({"key": b64(key.as_bytes()), "value": b64(value)});
        if lease != 0 {
            req["lease"] = json!(lease.to_string());
        }
        let v = self.call("/v3/kv/put", &req)?;
        Ok(int(&v["header"]["revision"]))
    }

    /// Deletes `key` (with `prefix`, every key under it).
    pub fn delete(&self, key: &str, prefix: bool) -> EtcdResult<()> {
        self.call("/v3/kv/deleterange", &range_req(key, prefix))
            .map(|_| ())
    }

    /// Runs `ops` if every condition holds. Returns whether it did and the revision after it.
    pub fn txn(&self, cmps: &[Cmp], ops: &[Op]) -> EtcdResult<(bool, i64)> {
        let compare: Vec<Value> = cmps
            .iter()
            .map(|c| match c {
                Cmp::Absent(k, prefix) => {
                    let mut v = range_req(k, *prefix);
                    v["target"] = json!("VERSION");
                    v["result"] = json!("EQUAL");
                    v["version"] = json!("0");
                    v
                }
                Cmp::Exists(k) => json!({"key": b64(k.as_bytes()), "target": "VERSION",
                                        "result": "GREATER", "version": "0"}),
                Cmp::UnchangedSince(k, rev) => {
                    let mut v = range_req(k, true);
                    v["target"] = json!("MOD");
                    v["result"] = json!("LESS");
                    v["mod_revision"] = json!((rev + 1).to_string());
                    v
                }
                Cmp::Value(k, val) => json!({"key": b64(k.as_bytes()), "target": "VALUE",
                                            "result": "EQUAL", "value": b64(val)}),
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|o| match o {
                Op::Put(k, v, lease) => {
                    let mut p = json!({"key": b64(k.as_bytes()), "value": b64(v)});
                    if *lease != 0 {
                        p["lease"] = json!(lease.to_string());
                    }
                    json!({"request_put": p})
                }
                Op::Delete(k) => json!({"request_delete_range": range_req(k, false)}),
                Op::DeletePrefix(k) => json!({"request_delete_range": range_req(k, true)}),
            })
            .collect();
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": success}),
        )?;
        Ok((
            v["succeeded"].as_bool().unwrap_or(false),
            int(&v["header"]["revision"]),
        ))
    }

    /// A new lease of `ttl` seconds.
    pub fn grant(&self, ttl: u64) -> EtcdResult<i64> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        match int(&v["ID"]) {
            0 => Err(EtcdError::Refused("lease grant returned no ID".into())),
            id => Ok(id),
        }
    }

    /// Renews `lease`; `LeaseNotFound` when it expired or was revoked.
    pub fn keepalive(&self, lease: i64) -> EtcdResult<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
        match int(&v["result"]["TTL"]) {
            0 => Err(EtcdError::LeaseNotFound),
            ttl => Ok(ttl),
        }
    }

    /// Revokes `lease`, deleting every key attached to it; a lease already gone is fine.
    pub fn revoke(&self, lease: i64) -> EtcdResult<()> {
        match self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()})) {
            Ok(_) | Err(EtcdError::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watches every key under `prefix` from `start` (a revision) on. The first endpoint that
    /// answers serves the stream; `idle` bounds a wait for the next message.
    pub fn watch(&self, prefix: &str, start: i64, idle: Option<Duration>) -> EtcdResult<Watch> {
        let mut req = range_req(prefix, true);
        req["start_revision"] = json!(start.to_string());
        req["progress_notify"] = json!(true);
        let body = json!({"create_request": req}).to_string();
        let mut last = String::from("no endpoint");
        for ep in &self.endpoints {
            match http::Stream::open(ep, "/v3/watch", body.as_bytes(), idle) {
                Ok((200, stream)) => return Ok(Watch { stream }),
                Ok((status, _)) => last = format!("{ep}: HTTP {status}"),
                Err(e) => last = format!("{ep}: {}", http::describe(&e)),
            }
        }
        Err(EtcdError::Unreachable(last))
    }
}

/// A watch stream.
pub struct Watch {
    stream: http::Stream,
}

impl Watch {
    /// The socket, to end the watch from another thread (shutdown).
    pub fn socket(&self) -> std::io::Result<std::net::TcpStream> {
        self.stream.socket()
    }

    /// The next batch of events and the revision they bring the watcher to (progress
    /// notifications give an empty batch). An error ends the watch.
    pub fn next_batch(&mut self) -> EtcdResult<(Vec<Event>, i64)> {
        loop {
            let line = self
                .stream
                .next_line()
                .map_err(|e| EtcdError::Unreachable(e.to_string()))?
                .ok_or_else(|| EtcdError::Unreachable("watch stream ended".into()))?;
            let v: Value = serde_json::from_slice(&line).map_err(|_| {
                EtcdError::Unreachable("watch sent a message that is not JSON".into())
            })?;
            if let Some(e) = refusal(&v) {
                return Err(e);
            }
            let r = &v["result"];
            if int(&r["compact_revision"]) != 0 {
                return Err(EtcdError::Compacted);
            }
            if r["canceled"].as_bool() == Some(true) {
                return Err(EtcdError::Refused(format!(
                    "watch canceled: {}",
                    r["cancel_reason"].as_str().unwrap_or("")
                )));
            }
            let rev = int(&r["header"]["revision"]);
            if r["created"].as_bool() == Some(true) {
                continue;
            }
            let events = r["events"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| Event {
                            deleted: e["type"].as_str() == Some("DELETE"),
                            kv: kv(&e["kv"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok((events, rev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_json_shapes() {
        assert_eq!(prefix_end("/rbox/"), b64(b"/rbox0"));
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&json!(7)), 7);
        assert_eq!(int(&Value::Null), 0);
        let k = kv(
            &json!({"key": b64(b"/a"), "value": b64(b"{}"), "mod_revision": "9",
                           "create_revision": "3", "lease": "77"}),
        );
        assert_eq!(
            k,
            Kv {
                key: "/a".into(),
                value: b"{}".to_vec(),
                create_revision: 3,
                mod_revision: 9,
                lease: 77
            }
        );
        assert_eq!(
            refusal(&json!({"error": "etcdserver: requested lease not found", "code": 5})),
            Some(EtcdError::LeaseNotFound)
        );
        assert_eq!(
            refusal(&json!({"error": "etcdserver: too many operations", "code": 3})),
            Some(EtcdError::Refused("too many operations".into()))
        );
        assert_eq!(refusal(&json!({"header": {}})), None);
    }
}
