//! The resolver's event loop: one current-thread tokio runtime (no worker threads) with one task
//! per served sandbox, the control socket, and SIGHUP/SIGTERM. A sandbox's task owns its UDP
//! socket, its TCP listener and everything in flight for it (forwarded queries, TCP clients),
//! so closing the sandbox (abort, then await the task) closes every socket that keeps its
//! namespace alive before the reload that asked for it is answered. Local answers are made
//! inline; forwarded queries and TCP clients are capped so a flood cannot grow memory without
//! bound.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::answer::{self, Reply, Turns};
use super::config;
use super::listen::{self, Bound, Home};
use super::table::Table;
use crate::network::Store;
use crate::sandbox::netns_path;

type Shared = Arc<RwLock<Arc<Table>>>;

/// Forwarded queries in flight at once; beyond this a query gets SERVFAIL at once.
const MAX_FORWARDS: usize = 64;
/// Concurrent TCP clients; beyond this new connections are closed.
const MAX_TCP: usize = 64;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Binds in every sandbox of `table` (before the resolver reports ready).
pub fn bind_all(root: &Path, table: &Table, home: &Home) -> io::Result<HashMap<String, Bound>> {
    let mut out = HashMap::new();
    for cid in table.sandboxes() {
        let path = netns_path(root, cid);
        if let Some(b) = listen::bind_in(&path, home)
            .map_err(|e| io::Error::new(e.kind(), format!("answering in sandbox {cid}: {e}")))?
        {
            out.insert(cid.to_string(), b);
        }
    }
    Ok(out)
}

pub struct Server {
    pub root: PathBuf,
    pub table: Table,
    pub bound: HashMap<String, Bound>,
    pub control: std::os::unix::net::UnixListener,
    pub home: Home,
}

/// What all sandboxes share: the caps and the rotation of shared names.
#[derive(Default)]
struct Limits {
    forwards: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    turns: Turns,
}

/// One unit of a capped count, given back when dropped (also when its work is aborted).
struct Permit(Arc<AtomicUsize>);

impl Permit {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Permit> {
        if count.fetch_add(1, Ordering::Relaxed) >= max {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Permit(count.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct State {
    root: PathBuf,
    pid_file: PathBuf,
    sock_path: PathBuf,
    table: Shared,
    sandboxes: HashMap<String, JoinHandle<()>>,
    limits: Arc<Limits>,
    home: Home,
}

impl State {
    /// Removes the pid file and control socket if they are still this process's (a resolver
    /// started right after a stop has its own by now).
    fn forget(&self) {
        let mine = std::fs::read_to_string(&self.pid_file)
            .is_ok_and(|p| p.trim() == std::process::id().to_string());
        if mine {
            let _ = std::fs::remove_file(&self.sock_path);
            let _ = std::fs::remove_file(&self.pid_file);
        }
    }

    fn attach(&mut self, cid: String, b: Bound) -> io::Result<()> {
        let udp = UdpSocket::from_std(b.udp)?;
        let tcp = TcpListener::from_std(b.tcp)?;
        let task = tokio::spawn(serve_sandbox(
            Arc::from(cid.as_str()),
            udp,
            tcp,
            self.table.clone(),
            self.limits.clone(),
        ));
        self.sandboxes.insert(cid, task);
        Ok(())
    }

    /// Stops answering in `cid`'s sandbox; returns once its sockets are closed.
    async fn close(&mut self, cid: &str) {
        if let Some(task) = self.sandboxes.remove(cid) {
            task.abort();
            let _ = task.await;
        }
    }

    async fn close_all(&mut self) {
        let all: Vec<String> = self.sandboxes.keys().cloned().collect();
        for cid in all {
            self.close(&cid).await;
        }
    }

    /// Re-reads the state and answers in exactly the sandboxes of served containers. Returns
    /// whether nothing is left to serve.
    async fn reload(&mut self) -> Result<bool, String> {
        let table = Table::load(&self.root, config::host_upstreams()).map_err(|e| e.to_string())?;
        let want: std::collections::BTreeSet<String> =
            table.sandboxes().into_iter().map(str::to_string).collect();
        let gone: Vec<String> = self
            .sandboxes
            .keys()
            .filter(|c| !want.contains(*c))
            .cloned()
            .collect();
        for cid in gone {
            self.close(&cid).await;
        }
        let empty = table.is_empty();
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        let errors: Vec<String> = want
            .into_iter()
            .filter_map(|cid| self.answer_in(cid).err())
            .collect();
        if errors.is_empty() {
            Ok(empty)
        } else {
            Err(errors.join("; "))
        }
    }

    /// Answers in the sandbox of `cid` if it does not yet.
    fn answer_in(&mut self, cid: String) -> Result<(), String> {
        if self.sandboxes.contains_key(&cid) {
            return Ok(());
        }
        let path = netns_path(&self.root, &cid);
        match listen::bind_in(&path, &self.home) {
            Ok(Some(b)) => self
                .attach(cid.clone(), b)
                .map_err(|e| format!("answering in sandbox {cid}: {e}")),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("answering in sandbox {cid}: {e}")),
        }
    }

    /// What `container_id` joining network `network_id` changes: its entry added to the
    /// table and answers in its sandbox, reading its endpoint only (a full `reload` when the
    /// network has no names yet, or the endpoint is gone).
    async fn joined(&mut self, network_id: &str, container_id: &str) -> Result<bool, String> {
        let store = Store::new(&self.root);
        // As `Table::load` has it: on some network with a way out (this one or an earlier).
        let connected = |nets: Vec<crate::Network>| {
            nets.iter().any(|n| {
                !n.internal
                    && store
                        .endpoint(&n.id, container_id)
                        .is_ok_and(|e| e.is_some())
            })
        };
        let added = match (
            store.load(network_id),
            store.endpoint(network_id, container_id),
            store.list(),
        ) {
            (Ok(net), Ok(Some(ep)), Ok(nets)) => {
                snapshot(&self.table).with_endpoint(&net, container_id, &ep, connected(nets))
            }
            _ => None,
        };
        let Some(table) = added else {
            return self.reload().await;
        };
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        self.answer_in(container_id.to_string()).map(|()| false)
    }
}

fn snapshot(t: &Shared) -> Arc<Table> {
    t.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What a piece of a sandbox's work in flight ends with.
enum Done {
    /// A forwarded answer to send back over UDP.
    Reply(Vec<u8>, SocketAddr),
    /// A TCP client is gone.
    Closed,
}

type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Answers in one sandbox until aborted: its UDP socket, its TCP listener, and the forwarded
/// queries and TCP clients in flight, all owned here.
async fn serve_sandbox(
    cid: Arc<str>,
    udp: UdpSocket,
    tcp: TcpListener,
    table: Shared,
    limits: Arc<Limits>,
) {
    // Queries above 4 KiB are not DNS over UDP; a longer datagram is cut and then fails to parse.
    let mut buf = vec![0u8; 4096];
    let mut work: FuturesUnordered<Work> = FuturesUnordered::new();
    loop {
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let Ok((n, src)) = r else {
                    // An ICMP error for an earlier reply surfaces here; nothing to do but go on.
                    tokio::task::yield_now().await;
                    continue;
                };
                match answer::handle(&snapshot(&table), &cid, &buf[..n], false, &limits.turns) {
                    Reply::Now(b) => {
                        let _ = udp.send_to(&b, src).await;
                    }
                    Reply::Forward { upstreams, fail } => {
                        let permit = Permit::take(&limits.forwards, MAX_FORWARDS)
                            .filter(|_| !upstreams.is_empty());
                        let Some(permit) = permit else {
                            let _ = udp.send_to(&fail, src).await;
                            continue;
                        };
                        let query = buf[..n].to_vec();
                        work.push(Box::pin(async move {
                            let _permit = permit;
                            let reply = forward_udp(&query, &upstreams).await.unwrap_or(fail);
                            Done::Reply(reply, src)
                        }));
                    }
                    Reply::Drop => {}
                }
            }
            c = tcp.accept() => {
                let Ok((conn, _)) = c else {
                    // Out of descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if let Some(permit) = Permit::take(&limits.tcp, MAX_TCP) {
                    let (cid, table, limits) = (cid.clone(), table.clone(), limits.clone());
                    work.push(Box::pin(async move {
                        let _permit = permit;
                        serve_tcp_client(conn, &cid, &table, &limits).await;
                        Done::Closed
                    }));
                }
            }
            Some(done) = work.next(), if !work.is_empty() => {
                if let Done::Reply(b, src) = done {
                    let _ = udp.send_to(&b, src).await;
                }
            }
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

async fn serve_tcp_client(mut conn: TcpStream, cid: &str, table: &Shared, limits: &Limits) {
    let _ = timeout(Duration::from_secs(60), async {
        loop {
            let Ok(Ok(len)) = timeout(TCP_IDLE, conn.read_u16()).await else {
                break;
            };
            let mut msg = vec![0u8; len as usize];
            if timeout(TCP_IDLE, conn.read_exact(&mut msg)).await.is_err() {
                break;
            }
            let reply = match answer::handle(&snapshot(table), cid, &msg, true, &limits.turns) {
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
}

/// Serves until told to stop (control "stop", SIGTERM/SIGINT) or a reload finds nothing left
/// to serve. Removes its pid file and control socket on the way out (before answering a stop).
pub fn run(server: Server, pid_file: &Path, sock_path: &Path) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut state = State {
            root: server.root.clone(),
            pid_file: pid_file.to_path_buf(),
            sock_path: sock_path.to_path_buf(),
            table: Arc::new(RwLock::new(Arc::new(server.table))),
            sandboxes: HashMap::new(),
            limits: Arc::default(),
            home: server.home,
        };
        for (cid, b) in server.bound {
            state.attach(cid, b)?;
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
                    match state.reload().await {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => tracing::warn!("reload: {e}"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        state.close_all().await;
        state.forget();
        Ok::<_, io::Error>(())
    });
    result
}

/// One control exchange: a line ("reload", "joined NETWORK CONTAINER" or "stop"), answered
/// "ok" once done or "error ...".
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
    let done = match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["stop"] => Ok(true),
        ["reload"] => state.reload().await,
        ["joined", network, container] => state.joined(network, container).await,
        _ => Err(format!("unknown request {:?}", line.trim())),
    };
    let (reply, exit) = match done {
        Ok(exit) => ("ok\n".to_string(), exit),
        Err(e) => (format!("error {e}\n"), false),
    };
    if exit {
        // Close every sandbox's sockets before answering (the sandboxes are being released),
        // and forget this resolver, so that one started right after is not mistaken for it.
        state.close_all().await;
        state.forget();
    }
    let _ = w.write_all(reply.as_bytes()).await;
    exit
}
