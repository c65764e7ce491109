//! The HTTP side of the Engine API: a parsed request (`Req`), what a handler answers
//! (`Reply`), and Docker's error shape (`ApiError`: `{"message": …}` with Docker's status
//! codes), with the mapping from rbox's typed errors.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;

/// A request as handlers see it: the path's segments after the version prefix, the query
/// (every value of each key), the whole body.
pub struct Req {
    pub method: http::Method,
    pub path: Vec<String>,
    pub query: HashMap<String, Vec<String>>,
    pub body: Bytes,
    /// The body as it arrives, for the routes that take archives (`body` is then empty): an
    /// upload is never held whole.
    pub stream: std::sync::Mutex<Option<BodyStream>>,
}

/// A request body's chunks as they arrive (an error: the client's upload broke off).
pub type BodyStream = mpsc::Receiver<Result<Bytes, String>>;

impl Req {
    pub fn take_body_stream(&self) -> Option<BodyStream> {
        self.stream.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Go's `strconv.ParseBool` as Docker's `httputils.BoolValue` reads it: "", "0", "no",
    /// "false", "none" are false.
    pub fn flag(&self, key: &str) -> bool {
        !matches!(
            self.q(key).map(str::to_ascii_lowercase).as_deref(),
            None | Some("" | "0" | "no" | "false" | "none")
        )
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.q(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("invalid value for {key}: {v:?}"))),
        }
    }

    /// The JSON body (an empty body is `{}`).
    pub fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))
    }

    /// `filters={"key":["v",...]}` (or the pre-1.22 `{"key":{"v":true}}`) as rbox's
    /// `key=value` filter arguments.
    pub fn filters(&self) -> Result<Vec<String>, ApiError> {
        let Some(raw) = self.q("filters").filter(|f| !f.is_empty()) else {
            return Ok(Vec::new());
        };
        let v: Value =
            serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("invalid filter: {e}")))?;
        let mut out = Vec::new();
        for (k, vals) in v.as_object().into_iter().flatten() {
            match vals {
                Value::Array(a) => out.extend(
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .map(|x| format!("{k}={x}")),
                ),
                Value::Object(m) => out.extend(
                    m.iter()
                        .filter(|(_, on)| on.as_bool().unwrap_or(false))
                        .map(|(x, _)| format!("{k}={x}")),
                ),
                _ => return Err(ApiError::bad(format!("invalid filter '{k}'"))),
            }
        }
        Ok(out)
    }
}

/// A hijacked connection's stream.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
/// What runs on a hijacked connection once the 101 went out.
pub type Session = Box<dyn FnOnce(Upgraded) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What a handler answers.
pub enum Reply {
    Json(StatusCode, Value),
    Empty(StatusCode),
    /// A body of one content type (`/_ping`'s "OK", a tar).
    Raw(StatusCode, &'static str, Bytes),
    /// A body written as it comes (logs -f, a wait, a pull's progress).
    Stream(&'static str, mpsc::Receiver<Bytes>),
    /// 101 UPGRADED, then `Session` owns the connection (attach, exec start).
    Hijack(&'static str, Session),
    /// Another reply with headers of its own (the archive's path stat).
    Headers(Vec<(&'static str, String)>, Box<Reply>),
}

impl Reply {
    pub fn ok(v: Value) -> Reply {
        Reply::Json(StatusCode::OK, v)
    }
}

/// Docker's error body and status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub fn not_implemented(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not supported by rbox"),
        )
    }
}

impl From<images::Error> for ApiError {
    fn from(e: images::Error) -> ApiError {
        use images::Error as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::InvalidReference(..) | E::InvalidChange(_) | E::InvalidArchive(_) => {
                StatusCode::BAD_REQUEST
            }
            E::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<net::Error> for ApiError {
    fn from(e: net::Error) -> ApiError {
        let status = match &e {
            net::Error::NetworkNotFound(_) => StatusCode::NOT_FOUND,
            net::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            net::Error::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<runtime::Error> for ApiError {
    fn from(e: runtime::Error) -> ApiError {
        use runtime::Error as E;
        let e = match e {
            E::Image(i) => return i.into(),
            E::Net(n) => return n.into(),
            e => e,
        };
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::NameInUse(..) | E::RunningRemove(_) | E::RestartingRemove(_) => StatusCode::CONFLICT,
            E::NotRunning(_) => StatusCode::CONFLICT,
            E::AlreadyRunning(_) => StatusCode::NOT_MODIFIED,
            E::Ambiguous(_) | E::InvalidName(_) | E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::CannotInvoke(_) | E::CommandNotFound(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        let e = match e.downcast::<runtime::Error>() {
            Ok(r) => return r.into(),
            Err(e) => e,
        };
        let e = match e.downcast::<images::Error>() {
            Ok(i) => return i.into(),
            Err(e) => e,
        };
        let e = match e.downcast::<net::Error>() {
            Ok(n) => return n.into(),
            Err(e) => e,
        };
        let m = e.to_string();
        // The CLI's own checks of flags (the create mapping goes through them) are bad input.
        let status = if m.starts_with("No such") {
            StatusCode::NOT_FOUND
        } else if m.contains("already in use") || m.contains("already exists") {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, m)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// Docker's stdcopy frame: stream (1 stdout, 2 stderr), three zero bytes, the big-endian
/// length, the data.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    Bytes::from(v)
}

pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str) -> Req {
        let mut q: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            q.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Req {
            method: http::Method::GET,
            path: vec![],
            query: q,
            body: Bytes::new(),
            stream: Default::default(),
        }
    }

    #[test]
    fn filters_both_shapes() {
        let r = req(
            "filters=%7B%22name%22%3A%5B%22web%22%5D%2C%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D",
        );
        let mut f = r.filters().unwrap();
        f.sort();
        assert_eq!(f, vec!["label=a=b", "name=web"]);
        assert!(req("filters=%5B1%5D").filters().unwrap().is_empty());
        assert!(req("filters=nope").filters().is_err());
    }

    #[test]
    fn bools_as_docker_reads_them() {
        assert!(req("force=1").flag("force"));
        assert!(req("force=true").flag("force"));
        assert!(!req("force=0").flag("force"));
        assert!(!req("force=").flag("force"));
        assert!(!req("").flag("force"));
    }

    #[test]
    fn frames_are_stdcopy() {
        assert_eq!(&frame(2, b"hi")[..], &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
