//! The life of an HTTP/1 client connection, one request at a time:
//! read head → take a backend slot → send head and body → read response head → relay body →
//! keep both connections for the next request, or close.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tandem_balance::persistence::{Pinned, ServicePersistence};
use tandem_balance::{Avoid, RequestKey};
use tandem_config::{CookieMode, PersistenceKind};
use tandem_config::{Service, Timeouts};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::copy::{copy_body, CopyError};
use super::head::{
    itoa_u64, rewrite_request_with, rewrite_response_with, BodyLen, CookieOut, HeadError, Peer,
    PoolOpts, RequestInfo, Rules,
};
use super::io::{read_into, write_all, write_all2, Buf, Client, Limit, Sink};
use super::pool::{still_idle, BackendPool};
use crate::connect::connect;
use crate::h2::H2Service;
use crate::proxy_protocol::{self, Acceptor};
use crate::route::Target;
use crate::slot::{Acquired, Balancer, Slot};

/// Buffer for backend responses and bodies: starts small, grows for bulk bodies; its maximum
/// also bounds a response head.
const BACKEND_BUF_INITIAL: usize = 8 * 1024;
const BACKEND_BUF_MAX: usize = 64 * 1024;
/// Client buffer to start with; it grows up to `max_header_size` for large heads.
const CLIENT_BUF_INITIAL: usize = 4 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// What the client gets if its request cannot be replayed after its backend was found dead.
const GONE: &str = "backend went down before it answered\n";

pub(crate) struct H1Service {
    /// `access_log`.
    access_log: Option<crate::access_log::AccessLog>,
    /// The service's default pool (balancers[0]): its counters are the service's.
    balancer: Arc<Balancer>,
    /// One per pool the service can send to, indexed like the router's pools.
    balancers: Vec<Arc<Balancer>>,
    router: Option<crate::route::Router>,
    pool_opts: Vec<PoolOpts>,
    max_body: Option<u64>,
    /// `buffer_requests`: bodies up to this size are read before a backend is taken.
    request_buffer: Option<u64>,
    /// `buffer_responses`: bodies up to this size are read before they are sent.
    response_buffer: Option<u64>,
    pool: BackendPool,
    timeouts: Timeouts,
    max_header_size: usize,
    h2: Arc<H2Service>,
    measure_latency: bool,
    spare: Spare,
    /// `accept_proxy_protocol`.
    accept_proxy: Option<Acceptor>,
    /// `tls.hsts` as a response header operation (set: it replaces the backend's own), for
    /// responses to TLS clients. `None` when the service has no HSTS (or no TLS).
    hsts: Option<tandem_config::HeaderOps>,
}

/// Per-connection buffers, reused for every request on the connection.
/// A connection's buffers, kept for the next connection when it ends: a connection then costs
/// no allocation, which matters when every request comes on a new connection.
struct Buffers {
    cbuf: Buf,
    bbuf: Buf,
    req_head: Vec<u8>,
    resp_head: Vec<u8>,
}

/// Buffers of finished connections, per worker.
#[derive(Default)]
struct Spare {
    list: std::sync::Mutex<Vec<Buffers>>,
}

/// Spare buffer sets kept per worker: enough for a burst of new connections, small in memory
/// (about 14 KiB each).
const MAX_SPARE: usize = 256;

impl Spare {
    fn take(&self, max_header_size: usize) -> Buffers {
        let reused = self.list.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| Buffers {
            cbuf: Buf::new(CLIENT_BUF_INITIAL, max_header_size),
            bbuf: Buf::new(BACKEND_BUF_INITIAL, BACKEND_BUF_MAX),
            req_head: Vec::with_capacity(1024),
            resp_head: Vec::with_capacity(1024),
        })
    }

    /// Keep `b` unless a bulk transfer grew it: big buffers go back to the allocator.
    fn give(&self, mut b: Buffers) {
        if b.cbuf.capacity() > CLIENT_BUF_INITIAL || b.bbuf.capacity() > BACKEND_BUF_INITIAL {
            return;
        }
        b.cbuf.clear();
        b.bbuf.clear();
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < MAX_SPARE {
            list.push(b);
        }
    }
}

struct Conn<S> {
    client: S,
    peer: Peer,
    peer_ip: std::net::IpAddr,
    /// The client's address and port, and the address it connected to when a trusted proxy's
    /// PROXY header said so (`None`: the socket's own).
    peer_addr: SocketAddr,
    local: Option<SocketAddr>,
    /// A backend connection that began with a PROXY header describing this client: kept for
    /// this client connection's next request only, never shared with other clients.
    own: Option<(SocketAddr, TcpStream)>,
    key: RequestKey,
    cbuf: Buf,
    bbuf: Buf,
    req_head: Vec<u8>,
    resp_head: Vec<u8>,
    /// A request body read in full before a backend was taken (`buffer_requests`).
    req_body: Option<Vec<u8>>,
    /// A response body read in full before it is sent (`buffer_responses`).
    resp_body: Vec<u8>,
    /// The connection ends with part of a request body unread (an early answer): close it
    /// gracefully (see [`linger`]).
    linger: bool,
    /// The request in progress as the access log will tell it (only when the service logs).
    log: Option<Box<LogEntry>>,
}

/// What the access log records of one request, filled in as it goes (atomics: the answer
/// may be written where only a shared borrow of the connection is at hand, across awaits;
/// nobody else ever touches them, so they cost what plain fields do).
struct LogEntry {
    started: std::time::Instant,
    /// `METHOD target` as received.
    request: String,
    minor: u8,
    status: std::sync::atomic::AtomicU16,
    bytes: std::sync::atomic::AtomicU64,
    backend: std::sync::Mutex<Option<(SocketAddr, Duration)>>,
}

impl LogEntry {
    fn new(request: String, minor: u8) -> Self {
        LogEntry {
            started: std::time::Instant::now(),
            request,
            minor,
            status: Default::default(),
            bytes: Default::default(),
            backend: std::sync::Mutex::new(None),
        }
    }

    fn answered(&self, status: u16, bytes: u64) {
        self.status.store(status, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    fn backend_answered(&self, status: u16, backend: SocketAddr) {
        self.status.store(status, Ordering::Relaxed);
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((backend, self.started.elapsed()));
    }
}

/// Closing a socket with unread input makes the kernel send a reset, which can destroy the
/// answer the client has not read yet (an early 413 during an upload). Like nginx's
/// lingering close: send FIN, then read and discard what the client still sends, for a
/// bounded time and amount, before closing.
///
/// Over TLS the shutdown sends `close_notify` first; what follows is decrypted and discarded.
async fn linger<S: Client>(client: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LINGER_TIME: Duration = Duration::from_secs(5);
    const LINGER_READ: Duration = Duration::from_secs(1);
    const LINGER_BYTES: usize = 64 << 20;
    let mut client = client;
    let _ = client.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    while total < LINGER_BYTES && Instant::now() < deadline {
        match tokio::time::timeout(LINGER_READ, client.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// What persistence adds for backend index `id`: the cookie work on the response, and in
/// url_param mode a request header naming the token, so the application can put it in its
/// links (`X-Tandem-Persist: <param>=<token>`; the head is cut back to `head_len` first, so a
/// retry on another backend names that backend's token).
fn persist_out<'p>(
    p: &'p ServicePersistence,
    id: usize,
    issue: bool,
    req_head: &mut Vec<u8>,
    head_len: usize,
) -> Option<CookieOut<'p>> {
    match &p.cfg.kind {
        PersistenceKind::Cookie(c) if c.mode == CookieMode::Prefix => Some(CookieOut::Prefix {
            name: &c.name,
            token: p.token(id)?,
        }),
        PersistenceKind::Cookie(c) if issue => Some(CookieOut::Insert {
            name: &c.name,
            line: p.set_cookie_line(id)?,
        }),
        PersistenceKind::UrlParam { name } if head_len >= 2 => {
            req_head.truncate(head_len - 2);
            if let Some(token) = p.token(id) {
                req_head.extend_from_slice(b"X-Tandem-Persist: ");
                req_head.extend_from_slice(name.as_bytes());
                req_head.push(b'=');
                req_head.extend_from_slice(token.as_bytes());
                req_head.extend_from_slice(b"\r\n");
            }
            req_head.extend_from_slice(b"\r\n");
            None
        }
        _ => None,
    }
}

/// What became of one request.
enum Next {
    KeepAlive,
    Close,
    /// The whole response is in `resp_head` + `resp_body` and the backend is released: send
    /// it, then keep the connection alive or not.
    Buffered {
        keep_alive: bool,
    },
    /// The connection switched protocols; the tunnel is done.
    Upgraded,
}

/// Why an exchange with a backend failed, and whether the request may go elsewhere.
enum Failure {
    /// A reused connection was found closed before it answered an idempotent, body-less
    /// request (the backend closed it while idle): try again on a fresh connection.
    Stale,
    /// The backend gave no response at all (reset, closed, or found dead while we waited):
    /// the client gets this status unless the request can safely go to another backend.
    NoResponse(u16, &'static str),
    /// The client must get this status (nothing was sent to it yet).
    Respond(u16, &'static str),
    /// The client connection is unusable or already got part of a response: just close.
    Abort,
}

impl H1Service {
    /// `balancers[0]` serves the service's `pool`; the others the pools its routes name, in
    /// the router's order (see [`crate::route::Router::pools`]).
    pub(crate) fn new(
        cfg: &Service,
        balancers: Vec<Arc<Balancer>>,
        router: Option<crate::route::Router>,
        h2: Arc<H2Service>,
        access_log: Option<crate::access_log::AccessLog>,
    ) -> Self {
        let addrs = balancers.iter().flat_map(|b| {
            b.pool
                .backends
                .iter()
                .map(|x| x.address)
                .chain(b.pool.sorry.as_ref().map(|s| s.address))
                .collect::<Vec<_>>()
        });
        let pool_opts = balancers
            .iter()
            .map(|b| PoolOpts {
                host: b.pool.host.clone(),
                close: !b.pool.keepalive,
            })
            .collect();
        let accept_proxy = Acceptor::new(cfg, Arc::clone(&balancers[0].stats));
        H1Service {
            access_log,
            pool: BackendPool::new(addrs),
            // Every pool, not just `ewma` ones: the admin API's p50/p99 and the dashboard
            // read the histogram this feeds (one clock read per response).
            measure_latency: true,
            timeouts: cfg.timeouts.clone(),
            max_header_size: cfg.max_header_size,
            balancer: Arc::clone(&balancers[0]),
            balancers,
            router,
            pool_opts,
            max_body: cfg.max_request_body,
            request_buffer: cfg.buffer_requests.then(|| {
                cfg.max_request_body
                    .unwrap_or(Service::DEFAULT_REQUEST_BUFFER)
            }),
            response_buffer: cfg.buffer_responses,
            h2,
            spare: Spare::default(),
            accept_proxy,
            hsts: cfg
                .tls
                .as_ref()
                .and_then(|t| t.hsts.as_deref())
                // The same check the hyper path applies: nothing that could end the line.
                .filter(|h| http::HeaderValue::from_str(h).is_ok())
                .map(|h| tandem_config::HeaderOps {
                    set: vec![("Strict-Transport-Security".to_string(), h.to_string())],
                    ..Default::default()
                }),
        }
    }

    /// The response header operation TLS clients get (`tls.hsts`).
    fn hsts<S: Client>(&self) -> Option<&tandem_config::HeaderOps> {
        if S::TLS {
            self.hsts.as_ref()
        } else {
            None
        }
    }

    pub(crate) async fn serve_connection(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        retired: watch::Receiver<bool>,
    ) {
        // From a trusted proxy: its PROXY header says who the client is, for everything below.
        let (peer, local) = match &self.accept_proxy {
            None => (peer, None),
            Some(a) => match a.accept(&client, peer).await {
                Ok(Some(x)) => (x.source, Some(x.destination)),
                Ok(None) => (peer, None),
                Err(proxy_protocol::Refused::Malformed(_)) => {
                    // Not counted as a rejected request: proxy_protocol_rejected has it.
                    let mut client = client;
                    write_local(
                        &mut client,
                        400,
                        "bad PROXY protocol header\n",
                        true,
                        false,
                        None,
                    )
                    .await;
                    return;
                }
                Err(_) => return,
            },
        };
        self.serve_stream(client, peer, local, shutdown, retired)
            .await;
    }

    /// Serve a decrypted TLS connection (ALPN `http/1.1` or none): the TLS handler already
    /// read the PROXY header, if any, before the handshake; `local` is the address the client
    /// connected to.
    pub(crate) async fn serve_tls(
        self: Arc<Self>,
        client: tokio_rustls::server::TlsStream<TcpStream>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        shutdown: watch::Receiver<bool>,
        retired: watch::Receiver<bool>,
    ) {
        self.serve_stream(client, peer, local, shutdown, retired)
            .await;
    }

    async fn serve_stream<S: Client>(
        self: Arc<Self>,
        client: S,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        mut shutdown: watch::Receiver<bool>,
        retired: watch::Receiver<bool>,
    ) {
        let b = self.spare.take(self.max_header_size);
        let mut c = Conn {
            client,
            peer: Peer::new(peer),
            peer_ip: peer.ip(),
            peer_addr: peer,
            local,
            own: None,
            key: RequestKey {
                client: Some(peer.ip()),
                hash: None,
            },
            cbuf: b.cbuf,
            bbuf: b.bbuf,
            req_head: b.req_head,
            resp_head: b.resp_head,
            req_body: None,
            resp_body: Vec::new(),
            linger: false,
            log: None,
        };
        let handoff = self.serve_requests(&mut c, &mut shutdown, &retired).await;
        let Conn {
            client,
            cbuf,
            bbuf,
            req_head,
            resp_head,
            linger: unread,
            ..
        } = c;
        let prefix = handoff.then(|| cbuf.filled().to_vec());
        self.spare.give(Buffers {
            cbuf,
            bbuf,
            req_head,
            resp_head,
        });
        if let Some(prefix) = prefix {
            // A reload ends an HTTP/2 connection gracefully (GOAWAY).
            client
                .into_h2(Arc::clone(&self.h2), prefix, peer, local, retired)
                .await;
        } else if unread {
            linger(client).await;
        } else {
            client.close().await;
        }
    }

    /// Serve HTTP/1 requests until the connection is done; `true` when it turned out to be
    /// HTTP/2 and must be handed over.
    ///
    /// `shutdown` closes an idle connection at once; `retired` (a reload replaced the
    /// configuration this connection is served with) lets the next request through and
    /// answers it with `Connection: close`, so the client never races a close it was not told
    /// about.
    async fn serve_requests<S: Client>(
        &self,
        c: &mut Conn<S>,
        shutdown: &mut watch::Receiver<bool>,
        retired: &watch::Receiver<bool>,
    ) -> bool {
        let mut first = true;
        loop {
            let mut info = match self.read_request(c, first, shutdown).await {
                Ok(Some(info)) => info,
                Ok(None) => return false,
                Err(HandOff::H2) => return true,
            };
            if *retired.borrow() {
                info.keep_alive = false;
            }
            let next = self.proxy_request(c, info).await;
            self.log_request(c);
            match next {
                Next::KeepAlive if !*shutdown.borrow() => {}
                _ => return false,
            }
            if first {
                // Only a second response on the same connection can be held back by Nagle
                // (the first finds nothing unacknowledged): a one-request connection skips
                // the syscall.
                c.client.nodelay();
                first = false;
            }
        }
    }

    /// The access log line of the request just served (nothing when it got no answer at
    /// all: the client went away first).
    fn log_request<S>(&self, c: &mut Conn<S>) {
        let (Some(log), Some(e)) = (&self.access_log, c.log.take()) else {
            return;
        };
        let status = e.status.load(Ordering::Relaxed);
        if status == 0 {
            return;
        }
        let backend = *e.backend.lock().unwrap_or_else(|p| p.into_inner());
        log.log(crate::access_log::Record {
            at: std::time::SystemTime::now(),
            client: c.peer_ip,
            protocol: if e.minor == 0 { "HTTP/1.0" } else { "HTTP/1.1" },
            status,
            bytes: e.bytes.load(Ordering::Relaxed),
            bytes_in: 0,
            backend: backend.map(|b| b.0),
            duration: e.started.elapsed(),
            backend_time: backend.map(|b| b.1),
            request: e.request,
        });
    }

    /// What the request rewriter looks for, from the service's persistence.
    fn persist_spec(&self) -> Option<crate::persist::Spec<'_>> {
        let p = self.balancer.persist.as_deref()?;
        Some(match &p.cfg.kind {
            PersistenceKind::Cookie(c) => crate::persist::Spec::Cookie {
                name: &c.name,
                prefix: c.mode == CookieMode::Prefix,
            },
            PersistenceKind::UrlParam { name } => crate::persist::Spec::UrlParam { name },
            PersistenceKind::Header { name } => crate::persist::Spec::Header { name },
            PersistenceKind::SourceIp { .. } => return None,
        })
    }

    /// Read and rewrite the next request head. `None`: the connection is done (closed by the
    /// client, idle, draining, or answered with an error).
    async fn read_request<S: Client>(
        &self,
        c: &mut Conn<S>,
        first: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<RequestInfo>, HandOff> {
        // A new connection must deliver its first request head within header_timeout of being
        // accepted (a silent socket is a slowloris too); between keep-alive requests the idle
        // timeout applies until the next head starts.
        let mut head_deadline = first.then(|| Instant::now() + self.timeouts.header);
        if first && c.cbuf.is_empty() {
            match c.client.read_now(&mut c.cbuf) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(None),
            }
        }
        loop {
            if !c.cbuf.is_empty() {
                if first && c.cbuf.filled()[0] == b'P' {
                    let n = c.cbuf.len().min(H2_PREFACE.len());
                    if c.cbuf.filled()[..n] == H2_PREFACE[..n] {
                        if n == H2_PREFACE.len() {
                            return Err(HandOff::H2);
                        }
                        // A prefix of the preface: read on.
                    } else if let Some(info) = self.parse_request(c).await {
                        return Ok(info);
                    }
                } else if let Some(info) = self.parse_request(c).await {
                    return Ok(info);
                }
            }
            let limit = if c.cbuf.is_empty() && head_deadline.is_none() {
                Limit::For(self.timeouts.idle)
            } else {
                // Slowloris: the whole head must arrive within header_timeout.
                Limit::Until(
                    *head_deadline.get_or_insert_with(|| Instant::now() + self.timeouts.header),
                )
            };
            let read = tokio::select! {
                biased;
                r = read_into(&mut c.client, &mut c.cbuf, limit) => r,
                _ = crate::stopped(shutdown), if c.cbuf.is_empty() => return Ok(None),
            };
            match read {
                Ok(0) => return Ok(None),
                // A head begun but not finished in time: say so, as HAProxy and nginx do.
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !c.cbuf.is_empty() => {
                    self.local(c, 408, "request timeout\n", true, false).await;
                    return Ok(None);
                }
                Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// `Some(x)`: a decision (a request, or `None` after an error reply). `None`: need more.
    async fn parse_request<S: Client>(&self, c: &mut Conn<S>) -> Option<Option<RequestInfo>> {
        let client = c.client.tcp();
        let announced = c.local;
        let mut local = || announced.or_else(|| client.local_addr().ok());
        let rules = Rules {
            persist: self.persist_spec(),
            router: self.router.as_ref(),
            pools: &self.pool_opts,
            client: Some(c.peer_ip),
            max_body: self.max_body,
            https: S::TLS,
        };
        match rewrite_request_with(
            c.cbuf.filled(),
            &c.peer,
            &mut local,
            &mut c.req_head,
            &rules,
        ) {
            Ok(Some(info)) => {
                if self.access_log.is_some() {
                    c.log = Some(Box::new(LogEntry::new(
                        request_line(&c.cbuf.filled()[..info.head_len]),
                        info.minor,
                    )));
                }
                c.cbuf.consume(info.head_len);
                Some(Some(info))
            }
            Ok(None) if c.cbuf.is_full() => {
                self.local(c, 431, "request header fields too large\n", true, false)
                    .await;
                Some(None)
            }
            Ok(None) => None,
            Err(e) => {
                let (status, msg) = match e {
                    HeadError::TooLarge => (431, "request header fields too large\n"),
                    // The declared body stays unread: close gracefully (see [`linger`]).
                    HeadError::BodyTooLarge => {
                        c.linger = true;
                        (413, "request body too large\n")
                    }
                    HeadError::Method(_) => (405, "method not allowed\n"),
                    HeadError::Bad(_) => (400, "bad request\n"),
                };
                tracing::debug!(peer = %c.key.client.map_or_else(String::new, |ip| ip.to_string()), error = %e, "rejected request");
                if self.access_log.is_some() {
                    // Refused requests are logged too (with whatever request line came).
                    c.log = Some(Box::new(LogEntry::new(request_line(c.cbuf.filled()), 1)));
                }
                self.local(c, status, msg, true, false).await;
                self.log_request(c);
                Some(None)
            }
        }
    }

    /// Offer the request to backends until one answers it.
    ///
    /// A connect that fails is always retried on another backend (the backend never saw the
    /// request). A request that got no response at all (reset, empty reply, or its backend
    /// was found dead while it waited) is replayed on another backend only when that is safe
    /// (idempotent method, no body) and only up to the pool's `retries` and within its retry
    /// budget. A request is never sent twice to the same backend, except on a fresh connection
    /// after a pooled one turned out to be closed unread.
    async fn proxy_request<S: Client>(&self, c: &mut Conn<S>, info: RequestInfo) -> Next {
        // A local answer leaves an unread request body behind: then the connection must close.
        let close_after_local = !info.keep_alive || info.body != BodyLen::None;
        // A local answer leaves the body unread: close gracefully.
        c.linger = info.body != BodyLen::None;
        let replayable = info.body == BodyLen::None && info.idempotent;
        let balancer = match info.target {
            Target::Balancer(i) => match self.balancers.get(i) {
                Some(b) => b,
                None => &self.balancer,
            },
            Target::Local(route) => {
                self.answer(c, route, close_after_local).await;
                return next_after_local(close_after_local);
            }
        };
        c.req_body = None;
        if let (Some(limit), BodyLen::Length(n)) = (self.request_buffer, info.body) {
            if n <= limit && !info.expect_continue {
                match self.read_request_body(c, n).await {
                    Some(body) => c.req_body = Some(body),
                    None => return Next::Close,
                }
            }
        }
        let pool = &balancer.pool;
        let mut avoid = Avoid::default();
        let mut replays = 0;
        let mut last = (502, "no backend accepted the connection\n");
        let persist = balancer.persist.as_deref();
        let now = std::time::Instant::now();
        let client_ip = c.peer_ip;
        let pinned = persist.map_or(Pinned::None, |p| {
            p.pin(info.persist_token.as_ref().map(|t| &t[..]), client_ip, now)
        });
        let key = RequestKey {
            hash: info.persist_hash,
            ..c.key
        };
        // The request head as rewritten, before a url_param token line is added per backend.
        let head_len = c.req_head.len();
        'backends: loop {
            let slot = match balancer.acquire_pinned(&key, &avoid, pinned).await {
                Acquired::Slot(s) => s,
                Acquired::PinnedDown => {
                    self.local(
                        c,
                        503,
                        "the backend of this session is down\n",
                        close_after_local,
                        true,
                    )
                    .await;
                    return next_after_local(close_after_local);
                }
                Acquired::Busy => {
                    self.local(c, 503, "all backends are busy\n", close_after_local, false)
                        .await;
                    return next_after_local(close_after_local);
                }
                Acquired::NoBackend => {
                    self.local(c, 503, "no backend available\n", close_after_local, true)
                        .await;
                    return next_after_local(close_after_local);
                }
                Acquired::Exhausted => break 'backends,
            };
            avoid.insert(slot.backend().id);
            let cookie = persist.and_then(|p| {
                let id = slot.backend().id;
                let issue = p.chosen(pinned, id, client_ip, now);
                persist_out(p, id, issue, &mut c.req_head, head_len)
            });
            let address = slot.backend().address;
            // A pool that sends PROXY headers: only this client's own connection is reused.
            let mut pooled = if pool.proxy_protocol.is_some() {
                c.own
                    .take()
                    .filter(|(a, s)| *a == address && still_idle(s))
                    .map(|(_, s)| s)
            } else {
                self.pool.checkout(address)
            };
            // At most twice: a pooled connection, then a fresh one if that was found closed.
            loop {
                let (backend, reused) = match pooled.take() {
                    Some(s) => (s, true),
                    None => match connect(
                        pool,
                        slot.backend(),
                        &self.timeouts,
                        proxy_protocol::endpoints(pool, c.peer_addr, c.local, c.client.tcp()),
                    )
                    .await
                    {
                        Ok(s) => (s, false),
                        Err(_) if avoid.is_full() => break 'backends,
                        Err(_) => continue 'backends,
                    },
                };
                match self
                    .exchange(c, &info, balancer, &slot, (backend, reused), cookie)
                    .await
                {
                    Ok(Next::Buffered { keep_alive }) => {
                        // The backend is done: release its slot before a slow client reads.
                        drop(slot);
                        let idle = Limit::For(self.timeouts.idle);
                        if c.client
                            .write_all2(&c.resp_head, &c.resp_body, idle)
                            .await
                            .is_err()
                        {
                            return Next::Close;
                        }
                        c.resp_body.clear();
                        return if keep_alive {
                            Next::KeepAlive
                        } else {
                            Next::Close
                        };
                    }
                    Ok(next) => return next,
                    Err(Failure::Stale) => continue,
                    Err(Failure::NoResponse(status, msg)) if replayable => {
                        last = (status, msg);
                        if replays < pool.retries.max && !avoid.is_full() && pool.budget.try_spend()
                        {
                            replays += 1;
                            balancer.stats.retries.fetch_add(1, Ordering::Relaxed);
                            continue 'backends;
                        }
                        break 'backends;
                    }
                    Err(Failure::NoResponse(status, msg) | Failure::Respond(status, msg)) => {
                        self.local(c, status, msg, true, false).await;
                        return Next::Close;
                    }
                    Err(Failure::Abort) => return Next::Close,
                }
            }
        }
        self.local(c, last.0, last.1, true, false).await;
        Next::Close
    }

    /// One request/response exchange on `backend`.
    async fn exchange<S: Client>(
        &self,
        c: &mut Conn<S>,
        info: &RequestInfo,
        balancer: &Balancer,
        slot: &Slot,
        (mut backend, reused): (TcpStream, bool),
        cookie: Option<CookieOut<'_>>,
    ) -> Result<Next, Failure> {
        let ops = [
            self.router
                .as_ref()
                .map(|r| &r.response_headers)
                .filter(|o| !o.is_empty()),
            self.router
                .as_ref()
                .zip(info.route)
                .and_then(|(r, i)| r.route_response_headers(i)),
            self.hsts::<S>(),
        ];
        let ops: &[Option<&tandem_config::HeaderOps>] = if ops.iter().any(Option::is_some) {
            &ops
        } else {
            &[]
        };
        let stats = &slot.backend().stats;
        let idle = Limit::For(self.timeouts.idle);
        let started = self.measure_latency.then(std::time::Instant::now);
        // Nobody else will answer `Expect: 100-continue` (we do not forward it).
        if info.expect_continue && info.minor == 1 && info.body != BodyLen::None {
            c.client
                .write_all2(b"HTTP/1.1 100 Continue\r\n\r\n", &[], idle)
                .await
                .map_err(|_| Failure::Abort)?;
        }
        // Request head and body. A backend may answer before it has read the whole body (413,
        // 401, a redirect): watch for that, stop sending, relay its answer and close both
        // connections afterwards, since the rest of the body was never read.
        let replayable = info.body == BodyLen::None && info.idempotent;
        let mut body_incomplete = false;
        let upload = async {
            match &c.req_body {
                Some(body) => write_all2(&backend, &c.req_head, body, idle)
                    .await
                    .map(|()| body.len() as u64)
                    .map_err(CopyError::Write),
                None => {
                    copy_body(
                        &mut c.client,
                        &mut c.cbuf,
                        &mut &backend,
                        info.body,
                        false,
                        &c.req_head,
                        idle,
                        self.max_body,
                    )
                    .await
                }
            }
        };
        let sent = if info.body == BodyLen::None || c.req_body.is_some() {
            upload.await
        } else {
            tokio::select! {
                r = upload => r,
                _ = backend.readable() => {
                    body_incomplete = true;
                    Ok(0)
                }
            }
        };
        match sent {
            Ok(n) => {
                stats.bytes_in.fetch_add(n, Ordering::Relaxed);
                // The whole body went to the backend: nothing left unread.
                c.linger = body_incomplete;
            }
            Err(CopyError::Write(_)) if reused && replayable => return Err(Failure::Stale),
            // A chunked body grew past max_request_body: the backend got part of it, so its
            // connection is dropped; the client gets 413 (and a lingering close).
            Err(CopyError::TooLarge) => {
                c.linger = true;
                return Err(Failure::Respond(413, "request body too large\n"));
            }
            // The backend stopped reading (and probably answered already): read its answer.
            Err(CopyError::Write(_)) if info.body != BodyLen::None => body_incomplete = true,
            Err(CopyError::Write(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(backend = %slot.backend().address, error = %e, "sending request failed");
                return Err(Failure::NoResponse(
                    502,
                    "backend failed to accept the request\n",
                ));
            }
            // The client vanished or sent a broken body: nothing to answer.
            Err(_) => return Err(Failure::Abort),
        }
        // Response head (skipping interim 1xx).
        let deadline = Instant::now() + self.timeouts.response;
        c.bbuf.consume(c.bbuf.len());
        let mut got_any = false;
        // A replayable request waiting on a backend that is found dead (its check failed or
        // live traffic ejected it) goes elsewhere at once instead of waiting out
        // response_timeout: that is what a blackholed backend would otherwise cost.
        let gone = slot.backend().gone();
        tokio::pin!(gone);
        if replayable && slot.backend().is_gone() {
            return Err(Failure::NoResponse(502, GONE));
        }
        let (resp, client_keep_alive) = loop {
            if !c.bbuf.is_empty() {
                match rewrite_response_with(
                    c.bbuf.filled(),
                    info,
                    info.keep_alive && !body_incomplete,
                    &mut c.resp_head,
                    cookie,
                    ops,
                ) {
                    Ok(Some((r, _))) if (100..200).contains(&r.status) && r.status != 101 => {
                        c.bbuf.consume(r.head_len);
                        continue;
                    }
                    Ok(Some(x)) => break x,
                    Ok(None) if c.bbuf.is_full() => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        return Err(Failure::Respond(502, "backend response head too large\n"));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(backend = %slot.backend().address, error = %e, "invalid response");
                        return Err(Failure::Respond(502, "backend sent an invalid response\n"));
                    }
                }
            }
            let read = read_into(&mut backend, &mut c.bbuf, Limit::Until(deadline));
            let read = if replayable && !got_any {
                tokio::select! {
                    biased;
                    r = read => r,
                    () = &mut gone => {
                        tracing::info!(backend = %slot.backend().address, "backend found dead while a request waited; sending it elsewhere");
                        return Err(Failure::NoResponse(502, GONE));
                    }
                }
            } else {
                read.await
            };
            match read {
                Ok(0) if reused && !got_any && replayable => return Err(Failure::Stale),
                Ok(0) if !got_any => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, "backend closed without a response");
                    return Err(Failure::NoResponse(502, "backend closed the connection\n"));
                }
                Ok(0) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, "backend closed without a complete response");
                    return Err(Failure::Respond(502, "backend closed the connection\n"));
                }
                Ok(_) => got_any = true,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, "no response within response_timeout");
                    return Err(Failure::Respond(504, "backend did not answer in time\n"));
                }
                Err(_) if reused && !got_any && replayable => return Err(Failure::Stale),
                Err(e) if !got_any => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, error = %e, "reading response failed");
                    return Err(Failure::NoResponse(502, "backend failed to answer\n"));
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, error = %e, "reading response failed");
                    return Err(Failure::Respond(502, "backend failed to answer\n"));
                }
            }
        };
        if let Some(t) = started {
            slot.backend()
                .record_latency(crate::mono_ns(), t.elapsed().as_nanos() as u64);
        }
        if let Some(length) =
            balancer
                .pool
                .response_status(slot.backend().id, resp.status, std::time::Instant::now())
        {
            tracing::warn!(
                pool = %balancer.pool.name,
                backend = %slot.backend().address,
                seconds = length.as_secs(),
                "backend ejected: {} responses in a row were 5xx",
                balancer.pool.outlier.consecutive_5xx
            );
        }
        c.bbuf.consume(resp.head_len);
        if let Some(e) = &c.log {
            e.backend_answered(resp.status, slot.backend().address);
        }

        if resp.status == 101 {
            if !info.upgrade {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::Respond(
                    502,
                    "backend switched protocols unasked\n",
                ));
            }
            return Ok(self.tunnel(c, backend, stats).await);
        }
        let dechunk = info.minor == 0 && resp.body == BodyLen::Chunked;
        if let (Some(limit), BodyLen::Length(n), false) =
            (self.response_buffer, resp.body, body_incomplete)
        {
            if n <= limit {
                return self
                    .buffer_response(
                        c,
                        slot,
                        backend,
                        n,
                        resp.backend_keep_alive,
                        client_keep_alive,
                    )
                    .await;
            }
        }
        match copy_body(
            &mut backend,
            &mut c.bbuf,
            &mut c.client,
            resp.body,
            dechunk,
            &c.resp_head,
            idle,
            None,
        )
        .await
        {
            Ok(n) => {
                stats.bytes_out.fetch_add(n, Ordering::Relaxed);
                if let Some(e) = &c.log {
                    e.bytes.store(n, Ordering::Relaxed);
                }
            }
            Err(e) => {
                if matches!(
                    e,
                    CopyError::Read(_) | CopyError::Truncated | CopyError::Chunked(_)
                ) {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, error = %e, "response body failed");
                }
                return Err(Failure::Abort);
            }
        }
        if body_incomplete {
            c.linger = true;
            return Ok(Next::Close);
        }
        if resp.backend_keep_alive && c.bbuf.is_empty() {
            if balancer.pool.proxy_protocol.is_some() {
                c.own = Some((slot.backend().address, backend));
            } else {
                self.pool.checkin(slot.backend().address, backend);
            }
        }
        Ok(if client_keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// `buffer_responses`: reads the whole body (`n` bytes) from the backend into
    /// `c.resp_body` and gives the backend connection back, so the caller can release the
    /// slot before writing to the client.
    async fn buffer_response<S>(
        &self,
        c: &mut Conn<S>,
        slot: &Slot,
        mut backend: TcpStream,
        n: u64,
        backend_keep_alive: bool,
        client_keep_alive: bool,
    ) -> Result<Next, Failure> {
        let stats = &slot.backend().stats;
        let want = usize::try_from(n).map_err(|_| Failure::Abort)?;
        c.resp_body.clear();
        c.resp_body.reserve(want);
        let idle = Limit::For(self.timeouts.idle);
        loop {
            let take = c.bbuf.len().min(want - c.resp_body.len());
            c.resp_body.extend_from_slice(&c.bbuf.filled()[..take]);
            c.bbuf.consume(take);
            if c.resp_body.len() == want {
                break;
            }
            match read_into(&mut backend, &mut c.bbuf, idle).await {
                Ok(0) | Err(_) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %slot.backend().address, "backend closed inside a buffered response body");
                    // Nothing was sent to the client yet: it gets a clean error.
                    return Err(Failure::Respond(502, "backend closed the connection\n"));
                }
                Ok(_) => {}
            }
        }
        stats.bytes_out.fetch_add(n, Ordering::Relaxed);
        if let Some(e) = &c.log {
            e.bytes.store(n, Ordering::Relaxed);
        }
        if backend_keep_alive && c.bbuf.is_empty() {
            self.pool.checkin(slot.backend().address, backend);
        }
        Ok(Next::Buffered {
            keep_alive: client_keep_alive,
        })
    }

    /// `buffer_requests`: reads a request body of `n` bytes (part may be in `c.cbuf`) before
    /// any backend is involved. `None` when the client went away or stalled (idle timeout).
    async fn read_request_body<S: Client>(&self, c: &mut Conn<S>, n: u64) -> Option<Vec<u8>> {
        let want = usize::try_from(n).ok()?;
        let mut body = Vec::with_capacity(want);
        let idle = Limit::For(self.timeouts.idle);
        loop {
            let take = c.cbuf.len().min(want - body.len());
            body.extend_from_slice(&c.cbuf.filled()[..take]);
            c.cbuf.consume(take);
            if body.len() == want {
                return Some(body);
            }
            match read_into(&mut c.client, &mut c.cbuf, idle).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// After `101 Switching Protocols`: relay bytes both ways until either side closes.
    async fn tunnel<S: Client>(
        &self,
        c: &mut Conn<S>,
        mut backend: TcpStream,
        stats: &tandem_balance::BackendStats,
    ) -> Next {
        let idle = Limit::For(self.timeouts.idle);
        let to_client = c.bbuf.filled();
        if c.client
            .write_all2(&c.resp_head, to_client, idle)
            .await
            .is_err()
        {
            return Next::Upgraded;
        }
        if !c.cbuf.is_empty() && write_all(&backend, c.cbuf.filled(), idle).await.is_err() {
            return Next::Upgraded;
        }
        let idle_for = self.timeouts.idle;
        let copy = tokio::io::copy_bidirectional(&mut c.client, &mut backend);
        match tokio::time::timeout(tunnel_cap(idle_for), copy).await {
            Ok(Ok((up, down))) => {
                stats.bytes_in.fetch_add(up, Ordering::Relaxed);
                stats.bytes_out.fetch_add(down, Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "tunnel ended"),
            Err(_) => tracing::debug!("tunnel closed at its time limit"),
        }
        Next::Upgraded
    }
}

/// An upgraded connection (WebSocket) is long-lived by design; it is bounded only so a
/// forgotten tunnel cannot live forever: a day, or the idle timeout if that is longer.
fn tunnel_cap(idle: Duration) -> Duration {
    idle.max(Duration::from_secs(24 * 3600))
}

pub(crate) enum HandOff {
    H2,
}

fn next_after_local(close: bool) -> Next {
    if close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

impl H1Service {
    /// A route's own answer: a redirect (its Location was expanded into `c.req_head` by the
    /// head rewriter) or a fixed response.
    async fn answer<S: Client>(&self, c: &mut Conn<S>, route: usize, close: bool) {
        let Some(action) = self.router.as_ref().and_then(|r| r.action(route)) else {
            return;
        };
        let mut head = Vec::with_capacity(256);
        let (status, body, content_type): (u16, &[u8], &str) = match action {
            tandem_config::RouteAction::Redirect { status, .. } => {
                (*status, b"", "text/plain; charset=utf-8")
            }
            tandem_config::RouteAction::Respond {
                status,
                body,
                content_type,
            } => (*status, body.as_bytes(), content_type.as_str()),
            tandem_config::RouteAction::Pool(_) => return,
        };
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(itoa_u64(u64::from(status), &mut [0; 20]));
        head.push(b' ');
        head.extend_from_slice(reason(status).as_bytes());
        head.extend_from_slice(b"\r\n");
        if let tandem_config::RouteAction::Redirect { .. } = action {
            head.extend_from_slice(b"Location: ");
            head.extend_from_slice(&c.req_head);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Content-Type: ");
        head.extend_from_slice(content_type.as_bytes());
        head.extend_from_slice(b"\r\nContent-Length: ");
        head.extend_from_slice(itoa_u64(body.len() as u64, &mut [0; 20]));
        head.extend_from_slice(b"\r\n");
        if let Some(r) = &self.router {
            crate::route::push_ops(
                &mut head,
                &[
                    Some(&r.response_headers).filter(|o| !o.is_empty()),
                    r.route_response_headers(route),
                ],
            );
        }
        crate::route::push_ops(&mut head, &[self.hsts::<S>()]);
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        if let Some(e) = &c.log {
            e.answered(status, body.len() as u64);
        }
        let _ = c
            .client
            .write_all2(&head, body, Limit::For(Duration::from_secs(5)))
            .await;
    }

    /// A short plain-text answer of tandem's own, counted in the service's stats (503s are
    /// counted where the balancer turns the request away).
    async fn local<S: Client>(
        &self,
        c: &mut Conn<S>,
        status: u16,
        body: &str,
        close: bool,
        retry_after: bool,
    ) {
        if let Some(e) = &c.log {
            e.answered(status, body.len() as u64);
        }
        let hsts = self.hsts::<S>();
        let client = &mut c.client;
        let stats = &self.balancer.stats;
        match status {
            400 | 405 | 408 | 413 | 431 => stats.rejected.fetch_add(1, Ordering::Relaxed),
            502 | 504 => stats.backend_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        write_local(client, status, body, close, retry_after, hsts).await;
    }
}

/// `METHOD target` of a request head (its first line without the version), for the log.
fn request_line(head: &[u8]) -> String {
    let end = head
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(head.len());
    let line = &head[..end.min(8192)];
    let line = match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => &line[..sp],
        None => line,
    };
    String::from_utf8_lossy(line).into_owned()
}

/// A short plain-text answer; `extra`: header operations to apply (HSTS over TLS).
async fn write_local<W: Sink>(
    client: &mut W,
    status: u16,
    body: &str,
    close: bool,
    retry_after: bool,
    extra: Option<&tandem_config::HeaderOps>,
) {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(itoa_u64(u64::from(status), &mut [0; 20]));
    head.push(b' ');
    head.extend_from_slice(reason(status).as_bytes());
    head.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: ");
    head.extend_from_slice(itoa_u64(body.len() as u64, &mut [0; 20]));
    head.extend_from_slice(b"\r\n");
    if retry_after {
        head.extend_from_slice(b"Retry-After: 5\r\n");
    }
    crate::route::push_ops(&mut head, &[extra]);
    if close {
        head.extend_from_slice(b"Connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let _ = client
        .write_all2(&head, body.as_bytes(), Limit::For(Duration::from_secs(5)))
        .await;
}
