//! The resolver's event loop: one current-thread tokio runtime (no worker threads) serving UDP
//! and TCP on every served gateway, the control socket, and SIGHUP/SIGTERM. Local answers are
//! made inline; only forwarded queries get a task, and their number is capped so a flood cannot
//! grow memory without bound.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::AbortHandle;
use tokio::time::timeout;

use super::answer::{self, Reply};
use super::config;
use super::table::Table;

type Shared = Arc<RwLock<Arc<Table>>>;

/// Forwarded queries in flight at once; beyond this a query gets SERVFAIL at once.
const MAX_FORWARDS: usize = 64;
/// Concurrent TCP clients; beyond this new connections are closed.
const MAX_TCP: usize = 64;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Sockets bound on one gateway address, not yet attached to the runtime.
pub struct Bound {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

/// Binds port 53 on `ip`. IP_FREEBIND lets the socket outlive its bridge (a network reload may
/// recreate it); a port still held by a resolver that is just exiting is retried briefly.
pub fn bind(ip: IpAddr) -> io::Result<Bound> {
    let addr = SocketAddr::new(ip, 53);
    let domain = Domain::for_address(addr);
    let mut tries = 0;
    loop {
        let r = (|| -> io::Result<Bound> {
            let u = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            freebind(&u, ip)?;
            u.set_nonblocking(true)?;
            u.bind(&addr.into())?;
            let t = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            freebind(&t, ip)?;
            t.set_reuse_address(true)?;
            t.set_nonblocking(true)?;
            t.bind(&addr.into())?;
            t.listen(128)?;
            Ok(Bound {
                udp: u.into(),
                tcp: t.into(),
            })
        })();
        match r {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r.map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}"))),
        }
    }
}

fn freebind(s: &Socket, ip: IpAddr) -> io::Result<()> {
    if ip.is_ipv4() {
        s.set_freebind_v4(true)
    } else {
        s.set_freebind_v6(true)
    }
}

/// Binds every gateway of `table`.
pub fn bind_all(table: &Table) -> io::Result<HashMap<IpAddr, Bound>> {
    table
        .listen_addrs()
        .into_iter()
        .map(|ip| Ok((ip, bind(ip)?)))
        .collect()
}

pub struct Server {
    pub root: PathBuf,
    pub table: Table,
    pub bound: HashMap<IpAddr, Bound>,
    pub control: std::os::unix::net::UnixListener,
}

struct Listener {
    tasks: [AbortHandle; 2],
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct State {
    root: PathBuf,
    table: Shared,
    listeners: HashMap<IpAddr, Listener>,
    forwards: Arc<AtomicUsize>,
    tcp_clients: Arc<AtomicUsize>,
}

impl State {
    fn attach(&mut self, ip: IpAddr, b: Bound) -> io::Result<()> {
        let udp = Arc::new(UdpSocket::from_std(b.udp)?);
        let tcp = TcpListener::from_std(b.tcp)?;
        let u = tokio::spawn(serve_udp(
            udp,
            ip,
            self.table.clone(),
            self.forwards.clone(),
        ));
        let t = tokio::spawn(serve_tcp(
            tcp,
            ip,
            self.table.clone(),
            self.tcp_clients.clone(),
        ));
        self.listeners.insert(
            ip,
            Listener {
                tasks: [u.abort_handle(), t.abort_handle()],
            },
        );
        Ok(())
    }

    /// Re-reads the state and listens on exactly the gateways of served networks.
    fn reload(&mut self) -> Result<bool, String> {
        let table = Table::load(&self.root, config::host_upstreams()).map_err(|e| e.to_string())?;
        let want = table.listen_addrs();
        self.listeners.retain(|ip, _| want.contains(ip));
        let mut errors = Vec::new();
        for ip in want {
            if !self.listeners.contains_key(&ip) {
                if let Err(e) = bind(ip).and_then(|b| self.attach(ip, b)) {
                    errors.push(e.to_string());
                }
            }
        }
        let empty = table.is_empty();
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        if errors.is_empty() {
            Ok(empty)
        } else {
            Err(errors.join("; "))
        }
    }
}

fn snapshot(t: &Shared) -> Arc<Table> {
    t.read().unwrap_or_else(|e| e.into_inner()).clone()
}

async fn serve_udp(sock: Arc<UdpSocket>, gw: IpAddr, table: Shared, forwards: Arc<AtomicUsize>) {
    // Queries above 4 KiB are not DNS over UDP; a longer datagram is cut and then fails to parse.
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            // An ICMP error for an earlier reply surfaces here; nothing to do but go on.
            tokio::task::yield_now().await;
            continue;
        };
        let t = snapshot(&table);
        match answer::handle(&t, gw, src.ip(), &buf[..n], false) {
            Reply::Now(b) => {
                let _ = sock.send_to(&b, src).await;
            }
            Reply::Forward { upstreams, fail } => {
                if forwards.fetch_add(1, Ordering::Relaxed) >= MAX_FORWARDS || upstreams.is_empty()
                {
                    forwards.fetch_sub(1, Ordering::Relaxed);
                    let _ = sock.send_to(&fail, src).await;
                    continue;
                }
                let (sock, query, forwards) = (sock.clone(), buf[..n].to_vec(), forwards.clone());
                tokio::spawn(async move {
                    let reply = forward_udp(&query, &upstreams).await.unwrap_or(fail);
                    let _ = sock.send_to(&reply, src).await;
                    forwards.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Reply::Drop => {}
        }
    }
}

/// A reply is taken only if it carries the query's id: anything else on the socket is noise.
fn same_id(query: &[u8], reply: &[u8]) -> bool {
    use hickory_proto::op::Message;
    match (Message::from_vec(query), Message::from_vec(reply)) {
        (Ok(q), Ok(r)) => q.metadata.id == r.metadata.id,
        _ => false,
    }
}

async fn forward_udp(query: &[u8], upstreams: &[IpAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .ok()?;
        let Ok(s) = UdpSocket::bind(local).await else {
            continue;
        };
        if s.connect((*up, 53)).await.is_err() || s.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let got = timeout(UPSTREAM_TIMEOUT, async {
            loop {
                match s.recv(&mut buf).await {
                    Ok(n) if same_id(query, &buf[..n]) => return Some(n),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await;
        if let Ok(Some(n)) = got {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

async fn forward_tcp(query: &[u8], upstreams: &[IpAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let r = timeout(UPSTREAM_TIMEOUT, async {
            let mut s = TcpStream::connect((*up, 53)).await.ok()?;
            s.write_all(&(query.len() as u16).to_be_bytes())
                .await
                .ok()?;
            s.write_all(query).await.ok()?;
            let len = s.read_u16().await.ok()? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        })
        .await;
        if let Ok(Some(b)) = r {
            return Some(b);
        }
    }
    None
}

async fn serve_tcp(l: TcpListener, gw: IpAddr, table: Shared, clients: Arc<AtomicUsize>) {
    loop {
        let Ok((mut conn, src)) = l.accept().await else {
            // Out of descriptors: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if clients.fetch_add(1, Ordering::Relaxed) >= MAX_TCP {
            clients.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let (table, clients) = (table.clone(), clients.clone());
        tokio::spawn(async move {
            let _ = timeout(Duration::from_secs(60), async {
                loop {
                    let Ok(Ok(len)) = timeout(TCP_IDLE, conn.read_u16()).await else {
                        break;
                    };
                    let mut msg = vec![0u8; len as usize];
                    if timeout(TCP_IDLE, conn.read_exact(&mut msg)).await.is_err() {
                        break;
                    }
                    let t = snapshot(&table);
                    let reply = match answer::handle(&t, gw, src.ip(), &msg, true) {
                        Reply::Now(b) => b,
                        Reply::Forward { upstreams, fail } => {
                            forward_tcp(&msg, &upstreams).await.unwrap_or(fail)
                        }
                        Reply::Drop => break,
                    };
                    let framed = [&(reply.len() as u16).to_be_bytes()[..], &reply].concat();
                    if conn.write_all(&framed).await.is_err() {
                        break;
                    }
                }
            })
            .await;
            clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Serves until told to stop (control "stop", SIGTERM/SIGINT) or a reload finds nothing left
/// to serve. Removes its pid file and control socket on the way out.
pub fn run(server: Server, pid_file: &Path, sock_path: &Path) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut state = State {
            root: server.root.clone(),
            table: Arc::new(RwLock::new(Arc::new(server.table))),
            listeners: HashMap::new(),
            forwards: Arc::new(AtomicUsize::new(0)),
            tcp_clients: Arc::new(AtomicUsize::new(0)),
        };
        for (ip, b) in server.bound {
            state.attach(ip, b)?;
        }
        server.control.set_nonblocking(true)?;
        let control = UnixListener::from_std(server.control)?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                c = control.accept() => {
                    let Ok((conn, _)) = c else { continue };
                    if control_request(&mut state, conn).await {
                        break;
                    }
                }
                _ = hup.recv() => {
                    match state.reload() {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => tracing::warn!("reload: {e}"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        Ok::<_, io::Error>(())
    });
    let _ = std::fs::remove_file(pid_file);
    let _ = std::fs::remove_file(sock_path);
    result
}

/// One control exchange: a line ("reload" or "stop"), answered "ok" once done or "error ...".
/// Returns true when the resolver should exit.
async fn control_request(state: &mut State, conn: tokio::net::UnixStream) -> bool {
    let (r, mut w) = conn.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r);
    if timeout(Duration::from_secs(2), r.read_line(&mut line))
        .await
        .is_err()
    {
        return false;
    }
    let (reply, exit) = match line.trim() {
        "stop" => ("ok\n".to_string(), true),
        "reload" => match state.reload() {
            Ok(empty) => ("ok\n".to_string(), empty),
            Err(e) => (format!("error {e}\n"), false),
        },
        other => (format!("error unknown request {other:?}\n"), false),
    };
    if exit {
        // Stop listening before answering, so a resolver started right after can bind.
        state.listeners.clear();
        tokio::task::yield_now().await;
    }
    let _ = w.write_all(reply.as_bytes()).await;
    exit
}
