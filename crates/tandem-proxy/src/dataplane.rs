//! Starting and stopping the data plane: bind every listener first (so a bad address fails
//! before anything runs), then one thread per worker, each with its own runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tandem_balance::{ServiceStats, Topology};
use tandem_config::{Mode, Service};
use tokio::sync::{watch, Notify};

use crate::h1::H1Service;
use crate::h2::H2Service;
use crate::listener;
use crate::slot::Balancer;
use crate::tcp::TcpService;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("service `{service}`: cannot listen on {addr}: {source}")]
    Bind {
        service: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("service `{service}`: pool `{pool}` does not exist")]
    UnknownPool { service: String, pool: String },
    #[error("cannot start worker thread: {0}")]
    Thread(io::Error),
    #[error("service `{service}`: {error}")]
    Tls { service: String, error: String },
}

/// A service whose listening sockets are bound (one per worker), not yet accepting.
pub struct BoundService {
    pub cfg: Service,
    /// The address actually bound (differs from the config when it asked for port 0).
    pub local_addr: SocketAddr,
    sockets: Vec<listener::Bound>,
}

/// Bind every service's listeners for `workers` workers. Nothing is left bound on error.
///
/// `vips` are the addresses VRRP may move here: a service may listen on one before this node
/// holds it (see [`listener`]).
pub fn bind(
    services: &[Service],
    workers: usize,
    vips: &[std::net::IpAddr],
) -> Result<Vec<BoundService>, DataplaneError> {
    let workers = workers.max(1);
    let mut out = Vec::with_capacity(services.len());
    for svc in services {
        let err = |source| DataplaneError::Bind {
            service: svc.name.clone(),
            addr: svc.listen,
            source,
        };
        let freebind = vips.contains(&svc.listen.ip());
        let udp = svc.mode == Mode::Udp;
        let first = listener::Bound::bind(svc.listen, udp, workers > 1, freebind).map_err(err)?;
        let local_addr = first.local_addr().map_err(err)?;
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(listener::Bound::bind(local_addr, udp, true, freebind).map_err(err)?);
        }
        out.push(BoundService {
            cfg: svc.clone(),
            local_addr,
            sockets,
        });
    }
    Ok(out)
}

/// Open client connections of one worker, so shutdown can wait for them to finish.
#[derive(Default)]
struct OpenConnections {
    count: AtomicUsize,
    zero: Notify,
}

struct ConnectionGuard(Arc<OpenConnections>);

impl OpenConnections {
    fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    async fn drained(&self) {
        loop {
            let zero = self.zero.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            zero.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

enum Handler {
    Http(Arc<H1Service>),
    Tcp(Arc<TcpService>),
    /// HTTP over TLS: the handshake, then hyper (HTTP/1.1 or HTTP/2 by ALPN).
    Tls(Arc<TlsHandler>),
    /// Cleartext HTTP served by hyper: for services whose pools need TLS or HTTP/2 to the
    /// backends.
    Hyper(Arc<H2Service>, Option<Arc<crate::proxy_protocol::Acceptor>>),
}

struct TlsHandler {
    acceptor: tokio_rustls::TlsAcceptor,
    svc: Arc<H2Service>,
    handshake_timeout: Duration,
    stats: Arc<ServiceStats>,
    /// `accept_proxy_protocol`: the header comes before the TLS handshake.
    proxy: Option<crate::proxy_protocol::Acceptor>,
}

/// A trusted proxy's PROXY header, read before anything else on the connection: the client
/// and the address it connected to, or `Err` when the connection must be closed (the
/// refusal is counted).
async fn proxied(
    acceptor: Option<&crate::proxy_protocol::Acceptor>,
    stream: &tokio::net::TcpStream,
    peer: SocketAddr,
) -> Result<(SocketAddr, Option<SocketAddr>), ()> {
    match acceptor {
        None => Ok((peer, stream.local_addr().ok())),
        Some(a) => match a.accept(stream, peer).await {
            Ok(Some(x)) => Ok((x.source, Some(x.destination))),
            Ok(None) => Ok((peer, stream.local_addr().ok())),
            Err(_) => Err(()),
        },
    }
}

impl TlsHandler {
    async fn serve(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let Ok((peer, local)) = proxied(self.proxy.as_ref(), &stream, peer).await else {
            return;
        };
        let accepted =
            tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await;
        let tls = match accepted {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                self.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Arc::clone(&self.svc)
            .serve_tls(tls, h2, peer, local, shutdown)
            .await;
    }
}

/// The running data plane.
pub struct Dataplane {
    threads: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    /// Certificate reloading (services with `tls`).
    reloader: Option<(JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>)>,
}

impl Dataplane {
    /// Start `bound.sockets.len()` workers serving every bound service.
    pub fn start(
        bound: Vec<BoundService>,
        topology: &Topology,
        drain_timeout: Duration,
    ) -> Result<Self, DataplaneError> {
        let workers = bound.first().map_or(1, |b| b.sockets.len());
        // Balancers are shared by all workers: the `max_connections` queue must see slots
        // released on any thread.
        let mut plans = Vec::with_capacity(bound.len());
        let mut all_certs = Vec::new();
        for b in bound {
            let pool = topology
                .pool(&b.cfg.pool)
                .ok_or_else(|| DataplaneError::UnknownPool {
                    service: b.cfg.name.clone(),
                    pool: b.cfg.pool.clone(),
                })?;
            let stats = topology
                .service_stats(&b.cfg.name)
                .cloned()
                .unwrap_or_default();
            let persist = topology.persistence(&b.cfg.name).cloned();
            // Balancer 0 serves the service's pool (with its persistence and counters); one
            // more per other pool its routes name, in the router's order.
            let mut balancers = vec![Arc::new(Balancer::new(
                Arc::clone(pool),
                Arc::clone(&stats),
                persist,
            ))];
            if !b.cfg.routes.is_empty() {
                let router = crate::route::Router::new(
                    &b.cfg.routes,
                    &b.cfg.pool,
                    &b.cfg.request_headers,
                    &b.cfg.response_headers,
                );
                for name in router.pools.iter().skip(1) {
                    let p = topology
                        .pool(name)
                        .ok_or_else(|| DataplaneError::UnknownPool {
                            service: b.cfg.name.clone(),
                            pool: name.clone(),
                        })?;
                    balancers.push(Arc::new(Balancer::new(
                        Arc::clone(p),
                        Arc::clone(&stats),
                        None,
                    )));
                }
            }
            // max_connections: one limit for the service across all workers.
            let limit = b
                .cfg
                .max_connections
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize)));
            let tls = match &b.cfg.tls {
                Some(t) => {
                    let certs =
                        crate::tls::Certificates::load(t).map_err(|e| DataplaneError::Tls {
                            service: b.cfg.name.clone(),
                            error: e,
                        })?;
                    let config = crate::tls::server_config(t, &certs);
                    all_certs.push(certs);
                    Some(config)
                }
                None => None,
            };
            plans.push((b.cfg, balancers, limit, tls, b.sockets));
        }
        let mut per_worker: Vec<Vec<WorkerService>> = (0..workers).map(|_| Vec::new()).collect();
        for (cfg, balancers, limit, tls, sockets) in plans {
            for (w, s) in sockets.into_iter().enumerate() {
                per_worker[w].push((
                    cfg.clone(),
                    balancers.clone(),
                    limit.clone(),
                    tls.clone(),
                    s,
                ));
            }
        }
        let stop_reload = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reloader = crate::tls::spawn_reloader(all_certs, Arc::clone(&stop_reload))
            .map_err(DataplaneError::Thread)?
            .map(|t| (t, stop_reload));
        let (tx, rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        for (i, services) in per_worker.into_iter().enumerate() {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("tandem-worker-{i}"))
                .spawn(move || run_worker(services, rx, drain_timeout))
                .map_err(DataplaneError::Thread)?;
            threads.push(t);
        }
        Ok(Dataplane {
            threads,
            shutdown: tx,
            reloader,
        })
    }

    /// Stop accepting, let open connections finish for up to the drain timeout, then stop.
    /// Blocks until every worker thread has exited.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
        }
        if let Some((t, stop)) = self.reloader {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = t.join();
        }
    }
}

fn run_worker(
    services: Vec<WorkerService>,
    mut shutdown: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        tokio::spawn(timer_floor());
        let open = Arc::new(OpenConnections::default());
        let mut accept_loops = Vec::new();
        for (cfg, balancers, limit, tls, socket) in services {
            let balancer = Arc::clone(&balancers[0]);
            let socket = match socket {
                listener::Bound::Tcp(s) => s,
                listener::Bound::Udp(s) => {
                    // The service holds one "connection" until its flows have drained.
                    let guard = open.enter();
                    match crate::udp::UdpService::start(
                        &cfg,
                        balancer,
                        s,
                        shutdown.clone(),
                        guard,
                    ) {
                        Ok(receive) => accept_loops.push(receive),
                        Err(e) => {
                            tracing::error!(service = %cfg.name, error = %e, "cannot register udp socket");
                        }
                    }
                    continue;
                }
            };
            let listener = match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(service = %cfg.name, error = %e, "cannot register listener");
                    continue;
                }
            };
            let stats = Arc::clone(&balancer.stats);
            let handler = match cfg.mode {
                Mode::Http => {
                    let router = || {
                        (!cfg.routes.is_empty()).then(|| {
                            crate::route::Router::new(
                                &cfg.routes,
                                &cfg.pool,
                                &cfg.request_headers,
                                &cfg.response_headers,
                            )
                        })
                    };
                    let h2 = Arc::new(H2Service::new(&cfg, balancers.clone(), router()));
                    match tls {
                        Some(config) => Handler::Tls(Arc::new(TlsHandler {
                            acceptor: tokio_rustls::TlsAcceptor::from(config),
                            svc: h2,
                            handshake_timeout: cfg.timeouts.header,
                            stats: Arc::clone(&stats),
                            proxy: crate::proxy_protocol::Acceptor::new(&cfg, Arc::clone(&stats)),
                        })),
                        None if balancers.iter().any(|b| {
                            b.pool.tls.is_some()
                                || b.pool.protocol != tandem_config::BackendProtocol::Http1
                        }) =>
                        {
                            Handler::Hyper(
                                h2,
                                crate::proxy_protocol::Acceptor::new(&cfg, Arc::clone(&stats))
                                    .map(Arc::new),
                            )
                        }
                        None => {
                            Handler::Http(Arc::new(H1Service::new(&cfg, balancers, router(), h2)))
                        }
                    }
                }
                Mode::Tcp => Handler::Tcp(Arc::new(TcpService::new(&cfg, balancer))),
                // Bound as a UDP socket, served above.
                Mode::Udp => continue,
            };
            accept_loops.push(tokio::spawn(accept_loop(
                cfg.name.clone(),
                listener,
                limit,
                handler,
                stats,
                Arc::clone(&open),
                shutdown.clone(),
            )));
        }
        crate::stopped(&mut shutdown).await;
        for l in accept_loops {
            let _ = l.await;
        }
        if tokio::time::timeout(drain_timeout, open.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                open = open.count.load(Ordering::Relaxed),
                "drain timeout: closing remaining connections"
            );
        }
    });
}

/// Keeps the worker's timer driver waking at least every `FLOOR`.
///
/// Every connection arms timers (header, idle, response deadlines). When a new timer is due
/// earlier than the driver's next planned wake-up, tokio writes to an eventfd to re-arm it: one
/// extra syscall per new connection. With this ticker the planned wake-up is never more than
/// `FLOOR` away, so timers of a second or more never need that, for the price of four idle
/// wake-ups a second.
async fn timer_floor() {
    const FLOOR: Duration = Duration::from_millis(250);
    let mut tick = tokio::time::interval(FLOOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// A worker's share of a service: its config, balancers, connection limit, TLS
/// configuration and socket.
type WorkerService = (
    Service,
    Vec<Arc<Balancer>>,
    Option<Arc<tokio::sync::Semaphore>>,
    Option<Arc<rustls::ServerConfig>>,
    listener::Bound,
);

async fn accept_loop(
    name: String,
    listener: tokio::net::TcpListener,
    limit: Option<Arc<tokio::sync::Semaphore>>,
    handler: Handler,
    stats: Arc<ServiceStats>,
    open: Arc<OpenConnections>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // At max_connections, stop accepting: new connections wait in the kernel's queue
        // (and time out there if it lasts) instead of being accepted and starved.
        let permit = match &limit {
            Some(sem) => tokio::select! {
                biased;
                _ = crate::stopped(&mut shutdown) => return,
                p = Arc::clone(sem).acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
            },
            None => None,
        };
        let accepted = tokio::select! {
            biased;
            _ = crate::stopped(&mut shutdown) => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; never stop listening.
                tracing::warn!(service = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let guard = open.enter();
        match &handler {
            Handler::Http(svc) => {
                let svc = Arc::clone(svc);
                let sd = shutdown.clone();
                tokio::spawn(async move {
                    svc.serve_connection(stream, peer, sd).await;
                    drop(guard);
                    drop(permit);
                });
            }
            Handler::Hyper(h, proxy) => {
                let h = Arc::clone(h);
                let proxy = proxy.clone();
                let sd = shutdown.clone();
                tokio::spawn(async move {
                    if let Ok((peer, local)) = proxied(proxy.as_deref(), &stream, peer).await {
                        h.serve_plain(stream, peer, local, sd).await;
                    }
                    drop(guard);
                    drop(permit);
                });
            }
            Handler::Tls(h) => {
                let h = Arc::clone(h);
                let sd = shutdown.clone();
                tokio::spawn(async move {
                    h.serve(stream, peer, sd).await;
                    drop(guard);
                    drop(permit);
                });
            }
            Handler::Tcp(svc) => {
                // Interactive protocols (SMTP, databases) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let svc = Arc::clone(svc);
                tokio::spawn(async move {
                    svc.serve_connection(stream, peer).await;
                    drop(guard);
                    drop(permit);
                });
            }
        }
    }
}
