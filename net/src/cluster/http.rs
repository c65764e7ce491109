//! The smallest HTTP/1.1 client etcd's JSON gateway needs: one POST per connection
//! (`Connection: close`), a body delimited by Content-Length, chunked encoding or the end of the
//! stream, and a streaming reader for `/v3/watch` whose chunks carry newline-delimited JSON.
//! Plain blocking `std::net` sockets with timeouts: no runtime, no thread, so `rbox run` may call
//! it before libcontainer forks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a connection attempt to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may wait for its answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest body rbox accepts from the store (a range over all of its keys is far smaller).
const MAX_BODY: usize = 64 << 20;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `e` in a few words for a one-line error ("os error 11" says nothing to a user).
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no answer within {} s", IO_TIMEOUT.as_secs())
        }
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// Connects to `endpoint` ("host:port"), trying each address it resolves to.
pub fn connect(endpoint: &str) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = endpoint.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends `POST path` with a JSON `body` on `s`.
fn send(s: &mut TcpStream, host: &str, path: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    s.write_all(&msg)
}

/// A response's status and how its body is delimited.
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
}

fn read_head<R: BufRead>(r: &mut R) -> io::Result<Head> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("not an HTTP response: {:?}", line.trim())))?;
    let mut head = Head {
        status,
        length: None,
        chunked: false,
    };
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("response headers cut short"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(head);
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            head.length = Some(v.parse().map_err(|_| bad("bad Content-Length"))?);
        } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            head.chunked = true;
        }
    }
}

/// Reads one chunk of a chunked body into `out`; false at the last (empty) chunk.
fn read_chunk<R: BufRead>(r: &mut R, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("chunked body cut short"));
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| bad(format!("bad chunk size {:?}", line.trim())))?;
    if size == 0 {
        return Ok(false);
    }
    if out.len() + size > MAX_BODY {
        return Err(bad("response too large"));
    }
    let start = out.len();
    out.resize(start + size, 0);
    r.read_exact(&mut out[start..])?;
    let mut crlf = [0u8; 2];
    r.read_exact(&mut crlf)?;
    Ok(true)
}

fn read_body<R: BufRead>(r: &mut R, head: &Head) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.chunked {
        while read_chunk(r, &mut body)? {}
    } else if let Some(n) = head.length {
        if n > MAX_BODY {
            return Err(bad("response too large"));
        }
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.take(MAX_BODY as u64).read_to_end(&mut body)?;
    }
    Ok(body)
}

/// POSTs `body` to `http://endpoint/path` and returns the status and the whole body.
pub fn post(endpoint: &str, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut s = connect(endpoint)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    send(&mut s, endpoint, path, body)?;
    let mut r = BufReader::new(s);
    let head = read_head(&mut r)?;
    let body = read_body(&mut r, &head)?;
    Ok((head.status, body))
}

/// A streamed response: newline-delimited messages, each returned whole by `next`.
pub struct Stream {
    reader: BufReader<TcpStream>,
    chunked: bool,
    pending: Vec<u8>,
    done: bool,
}

impl Stream {
    /// POSTs `body` and returns the response as a stream, once its headers arrived. `idle` bounds
    /// how long `next` waits for data (`None`: forever).
    pub fn open(
        endpoint: &str,
        path: &str,
        body: &[u8],
        idle: Option<Duration>,
    ) -> io::Result<(u16, Stream)> {
        let mut s = connect(endpoint)?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        send(&mut s, endpoint, path, body)?;
        let mut reader = BufReader::new(s);
        let head = read_head(&mut reader)?;
        reader.get_ref().set_read_timeout(idle)?;
        Ok((
            head.status,
            Stream {
                reader,
                chunked: head.chunked,
                pending: Vec::new(),
                done: false,
            },
        ))
    }

    /// A clone of the socket, to shut the stream down from another thread.
    pub fn socket(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().try_clone()
    }

    /// The next whole line of the body (without its newline); `None` at the end of the body.
    pub fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).take(i).collect();
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.done {
                let rest = std::mem::take(&mut self.pending);
                return Ok((!rest.iter().all(|b| b.is_ascii_whitespace())).then_some(rest));
            }
            if self.chunked {
                self.done = !read_chunk(&mut self.reader, &mut self.pending)?;
            } else {
                let mut buf = [0u8; 8192];
                let n = self.reader.read(&mut buf)?;
                self.done = n == 0;
                self.pending.extend_from_slice(&buf[..n]);
            }
            if self.pending.len() > MAX_BODY {
                return Err(bad("streamed message too large"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `reply` (raw bytes) and returns what the client sent.
    fn serve_once(reply: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = vec![0u8; 4096];
            let n = c.read(&mut got).unwrap();
            got.truncate(n);
            c.write_all(reply).unwrap();
            got
        });
        (addr, h)
    }

    #[test]
    fn content_length_and_chunked_bodies() {
        let (addr, h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        let (status, body) = post(&addr, "/v3/kv/range", b"{}").unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{\"a\":1}"[..]));
        let sent = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(sent.starts_with("POST /v3/kv/range HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Content-Length: 2\r\n") && sent.ends_with("\r\n\r\n{}"));

        let (addr, h) = serve_once(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"b\r\n4\r\n\":2}\r\n0\r\n\r\n",
        );
        let (status, body) = post(&addr, "/x", b"{}").unwrap();
        assert_eq!((status, body.as_slice()), (404, &b"{\"b\":2}"[..]));
        h.join().unwrap();
    }

    #[test]
    fn streams_split_messages_at_newlines_across_chunks() {
        let (addr, h) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\n{\"n\":1\r\n4\r\n}\n{\"\r\n5\r\nn\":2}\r\n1\r\n\n\r\n0\r\n\r\n",
        );
        let (status, mut s) = Stream::open(&addr, "/v3/watch", b"{}", None).unwrap();
        assert_eq!(status, 200);
        assert_eq!(s.next_line().unwrap().unwrap(), b"{\"n\":1}");
        assert_eq!(s.next_line().unwrap().unwrap(), b"{\"n\":2}");
        assert_eq!(s.next_line().unwrap(), None);
        h.join().unwrap();
    }

    #[test]
    fn garbage_and_refused_connections_are_errors() {
        let (addr, h) = serve_once(b"SSH-2.0-OpenSSH\r\n");
        assert!(post(&addr, "/", b"{}").is_err());
        h.join().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = post(&addr, "/", b"{}").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
