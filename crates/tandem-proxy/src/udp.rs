//! The UDP service (`mode = "udp"`), for DNS, syslog and the like.
//!
//! A *flow* is one client address and port. Its first datagram picks a backend with the pool's
//! scheduler (the client's IP is the scheduler's key, so `sh` and `maglev` work, and `source_ip`
//! persistence applies) and opens a UDP socket *connected* to that backend, from an ephemeral
//! port of its own. Every later datagram of the flow goes out on that socket, so the backend
//! sees one stable peer per client, and whatever the backend sends back arrives on that socket
//! alone: a task per flow reads it and sends it to the flow's client from the service's
//! socket. That is how replies find their client without any parsing of the protocol.
//!
//! Each worker has its own `SO_REUSEPORT` service socket and its own [`FlowTable`]: the kernel
//! hashes a datagram's addresses and ports onto one of the sockets, so every datagram of a flow
//! reaches the same worker, and flows never cross threads.
//!
//! A flow ends when it has been idle (no datagram either way) for the service's
//! `idle_timeout`, after `responses` datagrams from the backend, when its backend refuses
//! (ICMP port unreachable reaches a connected socket as `ECONNREFUSED`; counted as a failed
//! connect, which can eject the backend), or when its backend is marked down or ejected (the
//! flow's next datagram then picks again).

mod flows;

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tandem_balance::persistence::Pinned;
use tandem_balance::{ActiveGuard, Avoid, BackendRuntime, Pick, RequestKey, SORRY_ID};
use tandem_config::{OnBackendDown, Service};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::slot::Balancer;
use flows::{FlowTable, Refused, Reply};

/// Receive buffer: the largest UDP payload fits, so a datagram is never truncated.
const MAX_DATAGRAM: usize = 65536;

/// On shutdown, a flow that has been idle this long (or its idle timeout, if shorter) is
/// closed: nothing new comes from clients any more, and a reply still on its way normally
/// arrives well within it.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

thread_local! {
    /// One receive buffer per worker thread for the replies of all its flows (a buffer per
    /// flow would pin 64 KiB per open flow).
    static REPLY_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

/// What the table keeps per flow: the socket to the backend, the backend slot (counted in its
/// `active`; released when the flow closes), and the task reading the backend's replies
/// (aborted when the flow closes, which closes the socket).
struct FlowHandle {
    upstream: Arc<UdpSocket>,
    slot: ActiveGuard,
    task: Option<AbortHandle>,
}

impl FlowHandle {
    fn backend(&self) -> &Arc<BackendRuntime> {
        self.slot.backend()
    }
}

impl Drop for FlowHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One udp service on one worker.
pub(crate) struct UdpService {
    name: String,
    balancer: Arc<Balancer>,
    /// The service's socket: datagrams from clients arrive here, replies leave from here.
    socket: UdpSocket,
    flows: Mutex<FlowTable<FlowHandle>>,
    responses: Option<u32>,
    idle: Duration,
    /// How late an idle flow may be closed, so that many flows expiring close together cost
    /// one wake-up, not one each.
    slack: Duration,
    warnings: RateLimit,
}

/// At most one warning a second: a dead backend of a busy DNS service fails a flow per query,
/// and a log line each would bury everything else.
#[derive(Default)]
struct RateLimit {
    /// `crate::mono_ns()` of the last warning (0: none yet).
    last_ns: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// `Some(warnings suppressed since the last one)` when a warning may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = crate::mono_ns().max(1);
        let last = self.last_ns.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 1_000_000_000 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last_ns.store(now, Ordering::Relaxed);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// How a datagram for an open flow went.
enum Forwarded {
    /// Sent (and counted).
    Sent,
    /// The socket's send buffer is full: wait for it.
    Blocked(Arc<UdpSocket>, Arc<BackendRuntime>, u64),
    /// The backend refused (an earlier datagram drew an ICMP error) or the send failed.
    Failed(Arc<BackendRuntime>, u64, io::Error),
    /// No open flow (or its backend is gone and the flow was closed): open one.
    NoFlow,
}

/// Why no socket to a backend could be opened.
enum OpenError {
    /// A local problem (out of file descriptors or ephemeral ports): not the backend's fault.
    Local(io::Error),
    /// The backend's address cannot be reached (no route).
    Backend(io::Error),
}

impl UdpService {
    /// Serve `cfg` on `socket` (this worker's share of the service). Returns the receive loop,
    /// which ends on shutdown. The flows then drain on their own (see [`DRAIN_IDLE`]) while
    /// `guard` is held; dropping it tells the worker this service is done.
    pub(crate) fn start<G: Send + 'static>(
        cfg: &Service,
        balancer: Arc<Balancer>,
        socket: std::net::UdpSocket,
        shutdown: watch::Receiver<bool>,
        guard: G,
    ) -> io::Result<JoinHandle<()>> {
        let idle = cfg.timeouts.idle;
        let svc = Arc::new(UdpService {
            name: cfg.name.clone(),
            balancer,
            socket: UdpSocket::from_std(socket)?,
            flows: Mutex::new(FlowTable::new(idle, cfg.udp.max_flows as usize)),
            responses: cfg.udp.responses,
            idle,
            slack: (idle / 16).clamp(Duration::from_millis(1), Duration::from_millis(250)),
            warnings: RateLimit::default(),
        });
        tokio::spawn(Arc::clone(&svc).sweep(shutdown.clone(), guard));
        Ok(tokio::spawn(svc.receive(shutdown)))
    }

    fn lock(&self) -> MutexGuard<'_, FlowTable<FlowHandle>> {
        // Only this worker's tasks take it, never across an await: a poisoned lock only means
        // a panic elsewhere, and the table itself is still consistent.
        self.flows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Datagrams from clients, until shutdown.
    async fn receive(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let r = tokio::select! {
                biased;
                _ = crate::stopped(&mut shutdown) => return,
                r = self.socket.recv_from(&mut buf) => r,
            };
            match r {
                Ok((n, client)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    self.from_client(data, client).await;
                }
                Err(e) => match e.kind() {
                    // ICMP errors about earlier replies to a client, a signal: nothing to do.
                    io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock => {}
                    _ => {
                        // ENOMEM and friends: back off instead of spinning; never stop.
                        tracing::warn!(service = %self.name, error = %e, "udp receive failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    }

    /// One datagram from `client`: on its flow's socket, opening the flow if needed.
    async fn from_client(self: &Arc<Self>, data: &[u8], client: SocketAddr) {
        let now = Instant::now();
        let mut avoid = Avoid::default();
        let forwarded = self.forward(data, client, now);
        let forwarded = match forwarded {
            Forwarded::Blocked(upstream, backend, id) => match upstream.send(data).await {
                Ok(_) => {
                    let stats = &backend.stats;
                    stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    Forwarded::Sent
                }
                Err(e) => Forwarded::Failed(backend, id, e),
            },
            other => other,
        };
        match forwarded {
            Forwarded::Sent => return,
            Forwarded::Failed(backend, id, e) => {
                self.flow_failed(client, id, &backend, &e);
                avoid.insert(backend.id);
            }
            Forwarded::Blocked(..) | Forwarded::NoFlow => {}
        }
        self.open_flow(data, client, now, avoid).await;
    }

    /// Send `data` on `client`'s open flow, if it has one whose backend is not gone.
    fn forward(&self, data: &[u8], client: SocketAddr, now: Instant) -> Forwarded {
        let mut flows = self.lock();
        let Some((id, h)) = flows.touch(client, now) else {
            return Forwarded::NoFlow;
        };
        if h.backend().is_gone() {
            // Marked down or ejected: the flow picks again. (Draining and disabled backends
            // keep their open flows, as they keep open tcp connections.)
            let closed = flows.remove(client);
            drop(flows);
            drop(closed);
            return Forwarded::NoFlow;
        }
        // No clone of the backend's Arc on the hot path: its count is shared by all workers.
        match h.upstream.try_send(data) {
            Ok(_) => {
                let stats = &h.backend().stats;
                stats
                    .bytes_in
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Forwarded::Sent
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Forwarded::Blocked(Arc::clone(&h.upstream), Arc::clone(h.backend()), id)
            }
            Err(e) => Forwarded::Failed(Arc::clone(h.backend()), id, e),
        }
    }

    /// Open a flow for `client` with `data` as its first datagram: a backend (not one of
    /// `avoid`), a socket to it, the datagram sent, the reply task started.
    async fn open_flow(
        self: &Arc<Self>,
        data: &[u8],
        client: SocketAddr,
        now: Instant,
        mut avoid: Avoid,
    ) {
        let stats = &self.balancer.stats;
        if self.lock().is_full() {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(service = %self.name, %client, "udp flow table full: datagram dropped");
            return;
        }
        let key = RequestKey {
            client: Some(client.ip()),
            hash: None,
        };
        let persist = self.balancer.persist.as_ref();
        let pinned = persist.map_or(Pinned::None, |p| p.pin(None, client.ip(), now));
        while !avoid.is_full() {
            let Some(slot) = self.pick(&key, &avoid, pinned) else {
                stats.no_backend.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %self.name, %client, "no backend for udp flow");
                return;
            };
            let backend = Arc::clone(slot.backend());
            avoid.insert(backend.id);
            let upstream = match open_upstream(backend.address) {
                Ok(s) => Arc::new(s),
                Err(OpenError::Backend(e)) => {
                    self.report_failure(&backend, &e);
                    continue;
                }
                Err(OpenError::Local(e)) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = self.warnings.allow() {
                        tracing::warn!(service = %self.name, error = %e, suppressed, "cannot open a udp socket to a backend: datagram dropped");
                    }
                    return;
                }
            };
            let sent = match upstream.try_send(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => upstream.send(data).await,
                r => r,
            };
            if let Err(e) = sent {
                self.report_failure(&backend, &e);
                continue;
            }
            backend
                .stats
                .bytes_in
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Some(p) = persist {
                p.chosen(pinned, backend.id, client.ip(), now);
            }
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let handle = FlowHandle {
                upstream: Arc::clone(&upstream),
                slot,
                task: None,
            };
            let inserted = self.lock().insert(client, handle, now);
            let id = match inserted {
                Ok((id, replaced)) => {
                    drop(replaced);
                    id
                }
                Err(Refused::Full(handle)) => {
                    drop(handle);
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let task = tokio::spawn(Arc::clone(self).replies(client, id, upstream, backend));
            match self.lock().get_mut(client, id) {
                Some(h) => h.task = Some(task.abort_handle()),
                None => task.abort(),
            }
            return;
        }
        stats.no_backend.fetch_add(1, Ordering::Relaxed);
    }

    /// A backend for a new flow, with a slot taken on it. Like [`Balancer::acquire_pinned`]
    /// but never waits: a datagram cannot queue, so when every eligible backend is at
    /// `max_connections` (flows) the datagram is dropped.
    fn pick(&self, key: &RequestKey, avoid: &Avoid, pinned: Pinned) -> Option<ActiveGuard> {
        let pool = &self.balancer.pool;
        match pinned {
            Pinned::Backend(id) if !avoid.contains(id) => {
                if let Some(g) = pool.backends.get(id).and_then(|b| b.try_acquire()) {
                    return Some(g);
                }
            }
            Pinned::Down(_)
                if avoid.is_empty()
                    && self
                        .balancer
                        .persist
                        .as_ref()
                        .is_some_and(|p| p.on_backend_down() == OnBackendDown::Fail) =>
            {
                return None;
            }
            _ => {}
        }
        match pool.pick_avoiding(key, avoid) {
            Pick::Backend(g) => Some(g),
            Pick::Full => None,
            Pick::NoBackend | Pick::Exhausted => pool
                .sorry
                .as_ref()
                .filter(|s| !avoid.contains(s.id))
                .and_then(|s| s.try_acquire()),
        }
    }

    /// The backend's datagrams for flow `id` of `client`, sent on to the client, until the flow
    /// closes (this task is aborted then) or the backend refuses.
    async fn replies(
        self: Arc<Self>,
        client: SocketAddr,
        id: u64,
        upstream: Arc<UdpSocket>,
        backend: Arc<BackendRuntime>,
    ) {
        loop {
            // An ICMP error (port unreachable: nothing listens there) makes the socket report
            // EPOLLERR without EPOLLIN, so wait for errors too, not only for datagrams.
            let ready = match upstream.ready(Interest::READABLE | Interest::ERROR).await {
                Ok(r) => r,
                Err(e) => {
                    self.flow_failed(client, id, &backend, &e);
                    return;
                }
            };
            if ready.is_error() {
                match upstream.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        self.flow_failed(client, id, &backend, &e);
                        return;
                    }
                    // Nothing pending after all: clear the error readiness so as not to spin.
                    Ok(None) => {
                        let _ = upstream.try_io(Interest::ERROR, || {
                            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                        });
                    }
                }
            }
            if !ready.is_readable() && !ready.is_read_closed() {
                continue;
            }
            loop {
                let step = REPLY_BUF.with(|b| {
                    let mut buf = b.borrow_mut();
                    let n = upstream.try_recv(&mut buf)?;
                    let data = buf.get(..n).unwrap_or_default();
                    backend
                        .stats
                        .bytes_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let verdict = self
                        .lock()
                        .reply(client, id, Instant::now(), self.responses);
                    let pending = match self.socket.try_send_to(data, client) {
                        Ok(_) => None,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(data.to_vec()),
                        Err(e) => {
                            tracing::debug!(service = %self.name, %client, error = %e, "udp reply not sent");
                            None
                        }
                    };
                    Ok::<_, io::Error>((verdict, pending))
                });
                let verdict = match step {
                    Ok((verdict, pending)) => {
                        if let Some(p) = pending {
                            let _ = self.socket.send_to(&p, client).await;
                        }
                        verdict
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.flow_failed(client, id, &backend, &e);
                        return;
                    }
                };
                match verdict {
                    Reply::Open { .. } => {}
                    Reply::Last { .. } => {
                        // Dropping our own handle aborts this task: return right away.
                        let closed = self.lock().remove_flow(client, id);
                        drop(closed);
                        return;
                    }
                    Reply::Gone => return,
                }
            }
        }
    }

    /// Flow `id` of `client` failed on its backend: count it and close the flow.
    fn flow_failed(&self, client: SocketAddr, id: u64, backend: &BackendRuntime, e: &io::Error) {
        self.report_failure(backend, e);
        let closed = self.lock().remove_flow(client, id);
        drop(closed);
    }

    /// A backend refused or could not be reached: a failed connect for passive detection (it
    /// can eject the backend). A reply does not count as a successful connect: its delay is
    /// the application's, and would skew the adaptive connect timeout of tcp services sharing
    /// the pool.
    fn report_failure(&self, backend: &BackendRuntime, e: &io::Error) {
        let pool = &self.balancer.pool;
        if backend.id == SORRY_ID {
            backend.stats.failures.fetch_add(1, Ordering::Relaxed);
        } else if let Some(length) = pool.connect_failed(backend.id, Instant::now()) {
            tracing::warn!(
                pool = %pool.name,
                backend = %backend.address,
                seconds = length.as_secs(),
                "backend ejected: {} udp flows in a row were refused",
                pool.outlier.consecutive_connect_failures
            );
        }
        match self.warnings.allow() {
            Some(suppressed) => {
                tracing::warn!(service = %self.name, backend = %backend.address, error = %e, suppressed, "udp backend failed");
            }
            None => {
                tracing::debug!(service = %self.name, backend = %backend.address, error = %e, "udp backend failed");
            }
        }
    }

    /// Close idle flows on time; on shutdown, let the open flows end (idle for
    /// [`DRAIN_IDLE`]), then drop `guard`.
    async fn sweep<G>(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, guard: G) {
        let mut draining = false;
        loop {
            let (next, empty) = {
                let flows = self.lock();
                (flows.next_deadline(), flows.is_empty())
            };
            if draining && empty {
                break;
            }
            let wake = next.map_or_else(|| Instant::now() + self.idle, |d| d + self.slack);
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
                _ = crate::stopped(&mut shutdown), if !draining => {
                    draining = true;
                    self.lock().set_idle(self.idle.min(DRAIN_IDLE));
                    continue;
                }
            }
            let expired = self.lock().expire(Instant::now());
            drop(expired);
        }
        drop(guard);
    }
}

/// A UDP socket from an ephemeral port, connected to `backend`: the kernel then delivers only
/// that backend's datagrams to it, and ICMP errors about it as `ECONNREFUSED`.
fn open_upstream(backend: SocketAddr) -> Result<UdpSocket, OpenError> {
    let any = match backend.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0)).map_err(OpenError::Local)?;
    s.connect(backend).map_err(OpenError::Backend)?;
    s.set_nonblocking(true).map_err(OpenError::Local)?;
    UdpSocket::from_std(s).map_err(OpenError::Local)
}
