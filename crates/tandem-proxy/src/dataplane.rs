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
use tokio::sync::{mpsc, watch, Notify};

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
    #[error("service `{service}`: {error}")]
    AccessLog { service: String, error: String },
    #[error("service `{service}`: no listener is open on {addr}")]
    NotBound { service: String, addr: SocketAddr },
}

/// A service whose listening sockets are bound (one per worker), not yet accepting.
pub struct BoundService {
    pub cfg: Service,
    /// The address actually bound (differs from the config when it asked for port 0).
    pub local_addr: SocketAddr,
    sockets: Vec<listener::Bound>,
}

impl BoundService {
    /// A service on the sockets a previous process handed over (one per worker), instead of
    /// binding: connections waiting in their queues are never refused (`tandem run
    /// --upgrade`).
    pub fn adopt(cfg: &Service, fds: Vec<std::os::fd::OwnedFd>) -> io::Result<BoundService> {
        let udp = cfg.mode == Mode::Udp;
        let sockets = fds
            .into_iter()
            .map(|fd| listener::Bound::adopt(fd, udp))
            .collect::<io::Result<Vec<_>>>()?;
        let local_addr = sockets
            .first()
            .ok_or_else(|| io::Error::other("no socket handed over"))?
            .local_addr()?;
        Ok(BoundService {
            cfg: cfg.clone(),
            local_addr,
            sockets,
        })
    }
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
    /// HTTP over TLS: the handshake, then HTTP/1.1 (the native engine, or hyper when the
    /// pools need it) or HTTP/2 (hyper) by ALPN.
    Tls(Arc<TlsHandler>),
    /// Cleartext HTTP served by hyper: for services whose pools need TLS or HTTP/2 to the
    /// backends.
    Hyper(Arc<H2Service>, Option<Arc<crate::proxy_protocol::Acceptor>>),
}

struct TlsHandler {
    acceptor: tokio_rustls::TlsAcceptor,
    svc: Arc<H2Service>,
    /// Decrypted HTTP/1.1 (ALPN `http/1.1` or none) goes to the native engine, as cleartext
    /// does, unless the service's pools need hyper (`None`: TLS or HTTP/2 to the backends).
    h1: Option<Arc<H1Service>>,
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
    /// `shutdown`: the worker stops (idle HTTP/1 connections close at once); `retired`: the
    /// generation was replaced or stopped (HTTP/1 answers its next request with
    /// `Connection: close`, HTTP/2 and hyper close gracefully).
    async fn serve(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        retired: watch::Receiver<bool>,
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
        match &self.h1 {
            Some(h1) if !h2 => {
                Arc::clone(h1)
                    .serve_tls(tls, peer, local, shutdown, retired)
                    .await;
            }
            _ => {
                Arc::clone(&self.svc)
                    .serve_tls(tls, h2, peer, local, retired)
                    .await;
            }
        }
    }
}

/// The running data plane.
pub struct Dataplane {
    threads: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    /// Each worker's command queue (reloads).
    workers: Vec<mpsc::UnboundedSender<Command>>,
    /// The plans being served (a reload compares against these).
    running: std::sync::Mutex<Vec<Arc<Plan>>>,
    /// A second descriptor of every listening socket, by configured address and mode, for
    /// handing them to a process that takes over ([`Self::handover`]). Dropped when a reload
    /// stops the service, so a removed address really closes.
    sockets: std::sync::Mutex<Vec<(SocketAddr, Mode, Vec<std::os::fd::OwnedFd>)>>,
    /// The certificates the reloader thread watches (replaced by a reload).
    certificates: Arc<std::sync::Mutex<Vec<Arc<crate::tls::Certificates>>>>,
    /// Certificate reloading.
    reloader: Option<(JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>)>,
}

/// Everything a worker needs to serve a service except its socket: built once for all workers
/// (the balancers are shared: the `max_connections` queue must see slots released on any
/// thread).
struct Plan {
    cfg: Service,
    access_log: Option<crate::access_log::AccessLog>,
    balancers: Vec<Arc<Balancer>>,
    limit: Option<Arc<tokio::sync::Semaphore>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    certs: Option<Arc<crate::tls::Certificates>>,
}

impl Plan {
    fn new(cfg: &Service, topology: &Topology) -> Result<Plan, DataplaneError> {
        let unknown = |pool: &str| DataplaneError::UnknownPool {
            service: cfg.name.clone(),
            pool: pool.to_string(),
        };
        let pool = topology.pool(&cfg.pool).ok_or_else(|| unknown(&cfg.pool))?;
        let stats = topology
            .service_stats(&cfg.name)
            .cloned()
            .unwrap_or_default();
        let persist = topology.persistence(&cfg.name).cloned();
        // Balancer 0 serves the service's pool (with its persistence and counters); one more
        // per other pool its routes name, in the router's order.
        let mut balancers = vec![Arc::new(Balancer::new(
            Arc::clone(pool),
            Arc::clone(&stats),
            persist,
        ))];
        if !cfg.routes.is_empty() {
            let router = crate::route::Router::new(
                &cfg.routes,
                &cfg.pool,
                &cfg.request_headers,
                &cfg.response_headers,
            );
            for name in router.pools.iter().skip(1) {
                let p = topology.pool(name).ok_or_else(|| unknown(name))?;
                balancers.push(Arc::new(Balancer::new(
                    Arc::clone(p),
                    Arc::clone(&stats),
                    None,
                )));
            }
        }
        // max_connections: one limit for the service across all workers.
        let limit = cfg
            .max_connections
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize)));
        let (tls, certs) = match &cfg.tls {
            Some(t) => {
                let certs = crate::tls::Certificates::load(t).map_err(|e| DataplaneError::Tls {
                    service: cfg.name.clone(),
                    error: e,
                })?;
                (Some(crate::tls::server_config(t, &certs)), Some(certs))
            }
            None => (None, None),
        };
        let access_log = match &cfg.access_log {
            Some(a) => Some(
                crate::access_log::AccessLog::open(&cfg.name, a).map_err(|e| {
                    DataplaneError::AccessLog {
                        service: cfg.name.clone(),
                        error: e.to_string(),
                    }
                })?,
            ),
            None => None,
        };
        Ok(Plan {
            cfg: cfg.clone(),
            access_log,
            balancers,
            limit,
            tls,
            certs,
        })
    }

    /// Whether serving `new` (with `topology`) needs a new plan: its configuration changed,
    /// or one of its pools was rebuilt by the reload.
    fn outdated(&self, new: &Service, topology: &Topology) -> bool {
        self.cfg != *new
            || self.balancers.iter().any(|b| {
                topology
                    .pool(&b.pool.name)
                    .is_none_or(|p| !Arc::ptr_eq(p, &b.pool))
            })
            || topology
                .service_stats(&new.name)
                .is_none_or(|s| !Arc::ptr_eq(s, &self.balancers[0].stats))
            || match (topology.persistence(&new.name), &self.balancers[0].persist) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                (None, None) => false,
                _ => true,
            }
    }
}

/// The service's address and mode with a second descriptor of each of its sockets.
fn dups(b: &BoundService) -> Result<(SocketAddr, Mode, Vec<std::os::fd::OwnedFd>), DataplaneError> {
    let fds = b
        .sockets
        .iter()
        .map(listener::Bound::dup)
        .collect::<io::Result<Vec<_>>>()
        .map_err(|source| DataplaneError::Bind {
            service: b.cfg.name.clone(),
            addr: b.cfg.listen,
            source,
        })?;
    Ok((b.cfg.listen, b.cfg.mode, fds))
}

/// What a reload asks of each worker.
enum Command {
    /// Serve a service: a new one (with its socket), or a new plan for one already served on
    /// the same address (`socket` is `None`): new connections use the new plan, open ones
    /// finish their current request on the old one and close.
    Serve {
        plan: Arc<Plan>,
        socket: Option<listener::Bound>,
    },
    /// Stop accepting on this address; open connections finish (the worker's drain).
    Stop(SocketAddr),
    /// Stop accepting everywhere, let every open connection finish (HTTP/1 keep-alive
    /// connections answer their next request with `Connection: close`), then end.
    Drain,
}

/// What a reload did to the data plane, for the log and the API.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The addresses a reload must bind (services on an address not served yet), and which
/// running services it stops. Pure, so the daemon can bind before changing anything.
pub fn reload_plan(running: &[Service], new: &[Service]) -> (Vec<Service>, Vec<Service>) {
    let same = |a: &Service, b: &Service| a.listen == b.listen && a.mode == b.mode;
    let to_bind = new
        .iter()
        .filter(|n| !running.iter().any(|r| same(r, n)))
        .cloned()
        .collect();
    let to_stop = running
        .iter()
        .filter(|r| !new.iter().any(|n| same(r, n)))
        .cloned()
        .collect();
    (to_bind, to_stop)
}

impl Dataplane {
    /// Start `bound.sockets.len()` workers serving every bound service.
    pub fn start(
        bound: Vec<BoundService>,
        topology: &Topology,
        drain_timeout: Duration,
    ) -> Result<Self, DataplaneError> {
        let workers = bound.first().map_or(1, |b| b.sockets.len()).max(1);
        let mut plans = Vec::with_capacity(bound.len());
        let mut kept = Vec::with_capacity(bound.len());
        for b in bound {
            kept.push(dups(&b)?);
            plans.push((Arc::new(Plan::new(&b.cfg, topology)?), b.sockets));
        }
        let certificates = Arc::new(std::sync::Mutex::new(
            plans.iter().filter_map(|(p, _)| p.certs.clone()).collect(),
        ));
        let running = plans.iter().map(|(p, _)| Arc::clone(p)).collect();
        let mut queues = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push(tx);
            receivers.push(rx);
        }
        for (plan, sockets) in plans {
            for (w, socket) in sockets.into_iter().enumerate() {
                if let Some(q) = queues.get(w) {
                    let _ = q.send(Command::Serve {
                        plan: Arc::clone(&plan),
                        socket: Some(socket),
                    });
                }
            }
        }
        let stop_reload = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reloader =
            crate::tls::spawn_reloader(Arc::clone(&certificates), Arc::clone(&stop_reload))
                .map_err(DataplaneError::Thread)?;
        let (tx, rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        for (i, commands) in receivers.into_iter().enumerate() {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("tandem-worker-{i}"))
                .spawn(move || run_worker(commands, rx, drain_timeout))
                .map_err(DataplaneError::Thread)?;
            threads.push(t);
        }
        Ok(Dataplane {
            threads,
            shutdown: tx,
            workers: queues,
            running: std::sync::Mutex::new(running),
            sockets: std::sync::Mutex::new(kept),
            certificates,
            reloader: Some((reloader, stop_reload)),
        })
    }

    /// The services being served, as configured.
    pub fn services(&self) -> Vec<Service> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|p| p.cfg.clone())
            .collect()
    }

    /// Apply a new set of services. `bound` are the listeners [`reload_plan`] said to bind
    /// (bound by the caller, for as many workers as run); every other new service is served on
    /// the listener already open for its address, with a new plan when its configuration or
    /// one of its pools changed. Listeners whose address is gone stop accepting and drain.
    /// Plans are built before anything changes, so an error (a certificate that no longer
    /// loads) leaves the running services as they were.
    pub fn reload(
        &self,
        services: &[Service],
        bound: Vec<BoundService>,
        topology: &Topology,
    ) -> Result<ReloadReport, DataplaneError> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Log rotation: every access log file is opened again.
        crate::access_log::reopen_all();
        let mut report = ReloadReport::default();
        let mut kept = Vec::with_capacity(bound.len());
        for b in &bound {
            kept.push(dups(b)?);
        }
        let mut bound = bound;
        // (plan, sockets when the address is new, whether the workers must be told)
        let mut next: Vec<(Arc<Plan>, Option<Vec<listener::Bound>>, bool)> = Vec::new();
        for svc in services {
            if let Some(i) = bound.iter().position(|b| b.cfg.listen == svc.listen) {
                let b = bound.swap_remove(i);
                next.push((Arc::new(Plan::new(svc, topology)?), Some(b.sockets), true));
                report.added.push(svc.name.clone());
                continue;
            }
            let old = running
                .iter()
                .find(|r| r.cfg.listen == svc.listen && r.cfg.mode == svc.mode)
                .ok_or_else(|| DataplaneError::NotBound {
                    service: svc.name.clone(),
                    addr: svc.listen,
                })?;
            if old.outdated(svc, topology) {
                next.push((Arc::new(Plan::new(svc, topology)?), None, true));
                report.changed.push(svc.name.clone());
            } else {
                next.push((Arc::clone(old), None, false));
                report.unchanged.push(svc.name.clone());
            }
        }
        let (_, to_stop) = reload_plan(
            &running.iter().map(|p| p.cfg.clone()).collect::<Vec<_>>(),
            services,
        );
        {
            let mut sockets = self
                .sockets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sockets.retain(|(addr, mode, _)| {
                !to_stop.iter().any(|s| s.listen == *addr && s.mode == *mode)
            });
            sockets.extend(kept);
        }
        for stop in &to_stop {
            for q in &self.workers {
                let _ = q.send(Command::Stop(stop.listen));
            }
            report.removed.push(stop.name.clone());
        }
        let mut plans = Vec::with_capacity(next.len());
        for (plan, sockets, tell) in next {
            match sockets {
                Some(sockets) => {
                    for (q, socket) in self.workers.iter().zip(sockets) {
                        let _ = q.send(Command::Serve {
                            plan: Arc::clone(&plan),
                            socket: Some(socket),
                        });
                    }
                }
                None if tell => {
                    for q in &self.workers {
                        let _ = q.send(Command::Serve {
                            plan: Arc::clone(&plan),
                            socket: None,
                        });
                    }
                }
                None => {}
            }
            plans.push(plan);
        }
        *self
            .certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            plans.iter().filter_map(|p| p.certs.clone()).collect();
        *running = plans;
        Ok(report)
    }

    fn close_spare_sockets(&self) {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// New descriptors of every listening socket, by configured address and mode, for the
    /// process that takes over (`tandem run --upgrade`): the sockets stay open (and keep
    /// queueing connections) in both processes until this one has drained.
    pub fn handover(&self) -> io::Result<Vec<(SocketAddr, Mode, Vec<std::os::fd::OwnedFd>)>> {
        use std::os::fd::AsFd;
        let sockets = self
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sockets
            .iter()
            .map(|(addr, mode, fds)| {
                let fds = fds
                    .iter()
                    .map(|fd| fd.as_fd().try_clone_to_owned())
                    .collect::<io::Result<Vec<_>>>()?;
                Ok((*addr, *mode, fds))
            })
            .collect()
    }

    /// For a successor that took the sockets over: stop accepting, let open connections
    /// finish (keep-alive clients are told to reconnect, which reaches the successor) for up
    /// to the drain timeout, then stop. Blocks until every worker thread has exited.
    pub fn hand_over(self) {
        self.close_spare_sockets();
        for q in &self.workers {
            let _ = q.send(Command::Drain);
        }
        // No shutdown signal: that would close idle keep-alive connections at once.
        for t in self.threads {
            let _ = t.join();
        }
        if let Some((t, stop)) = self.reloader {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = t.join();
        }
    }

    /// Stop accepting, let open connections finish for up to the drain timeout, then stop.
    /// Blocks until every worker thread has exited.
    pub fn stop(self) {
        // The listeners close as soon as the workers stop accepting: new connections are
        // refused at once rather than queued for a process that is going away.
        self.close_spare_sockets();
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
    mut commands: mpsc::UnboundedReceiver<Command>,
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
        let mut served: Vec<Served> = Vec::new();
        loop {
            let command = tokio::select! {
                biased;
                _ = crate::stopped(&mut shutdown) => break,
                c = commands.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
            };
            match command {
                Command::Serve { plan, socket: None } => {
                    let addr = plan.cfg.listen;
                    match served.iter_mut().find(|s| s.addr == addr) {
                        Some(s) => s.update(plan, &open),
                        None => {
                            tracing::error!(service = %plan.cfg.name, "reload: no listener to serve on")
                        }
                    }
                }
                Command::Serve {
                    plan,
                    socket: Some(socket),
                } => {
                    if let Some(s) = Served::start(plan, socket, &open, &shutdown) {
                        served.push(s);
                    }
                }
                Command::Drain => break,
                Command::Stop(addr) => {
                    served.retain_mut(|s| {
                        if s.addr == addr {
                            s.stop();
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        }
        for s in &mut served {
            s.stop();
        }
        for s in served {
            for t in s.tasks {
                let _ = t.await;
            }
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

/// One service on one worker: its accept loop (or UDP receive loop) and how to reach it.
struct Served {
    /// The configured address: a reload keeps the listener of an address it still serves.
    addr: SocketAddr,
    /// TCP: the plan new connections are served with.
    plan: Option<watch::Sender<Arc<Plan>>>,
    /// Stops accepting (and, for UDP, the service).
    stop: watch::Sender<bool>,
    /// UDP: a second handle on the socket, for the service that replaces this one.
    udp: Option<std::net::UdpSocket>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    fn start(
        plan: Arc<Plan>,
        socket: listener::Bound,
        open: &Arc<OpenConnections>,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Self> {
        let addr = plan.cfg.listen;
        let (stop, stop_rx) = watch::channel(false);
        match socket {
            listener::Bound::Udp(s) => {
                let spare = s.try_clone().ok();
                let task = start_udp(&plan, s, stop_rx, open)?;
                Some(Served {
                    addr,
                    plan: None,
                    stop,
                    udp: spare,
                    tasks: vec![task],
                })
            }
            listener::Bound::Tcp(s) => {
                let listener = match tokio::net::TcpListener::from_std(s) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(service = %plan.cfg.name, error = %e, "cannot register listener");
                        return None;
                    }
                };
                let (plan_tx, plan_rx) = watch::channel(plan);
                let task = tokio::spawn(accept_loop(
                    listener,
                    plan_rx,
                    Arc::clone(open),
                    stop_rx,
                    shutdown.clone(),
                ));
                Some(Served {
                    addr,
                    plan: Some(plan_tx),
                    stop,
                    udp: None,
                    tasks: vec![task],
                })
            }
        }
    }

    /// A reload changed the service: TCP switches plans in its accept loop; UDP stops the old
    /// service (its flows drain) and starts a new one on the same socket.
    fn update(&mut self, plan: Arc<Plan>, open: &Arc<OpenConnections>) {
        if let Some(tx) = &self.plan {
            let _ = tx.send(plan);
            return;
        }
        let Some(socket) = self.udp.as_ref().and_then(|s| s.try_clone().ok()) else {
            tracing::error!(service = %plan.cfg.name, "reload: cannot reuse the udp socket");
            return;
        };
        let _ = self.stop.send(true);
        let (stop, stop_rx) = watch::channel(false);
        self.stop = stop;
        if let Some(task) = start_udp(&plan, socket, stop_rx, open) {
            self.tasks.push(task);
        }
    }

    fn stop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn start_udp(
    plan: &Plan,
    socket: std::net::UdpSocket,
    stop: watch::Receiver<bool>,
    open: &Arc<OpenConnections>,
) -> Option<tokio::task::JoinHandle<()>> {
    // The service holds one "connection" until its flows have drained.
    let guard = open.enter();
    match crate::udp::UdpService::start(
        &plan.cfg,
        Arc::clone(&plan.balancers[0]),
        socket,
        stop,
        guard,
    ) {
        Ok(task) => Some(task),
        Err(e) => {
            tracing::error!(service = %plan.cfg.name, error = %e, "cannot register udp socket");
            None
        }
    }
}

/// How connections of one plan are served on one worker. Its `retire` signal tells the
/// connections it served to finish what they are doing and close (shutdown, or a reload
/// replaced the plan); new connections are then served by the next generation.
struct Generation {
    handler: Handler,
    limit: Option<Arc<tokio::sync::Semaphore>>,
    stats: Arc<ServiceStats>,
    retire: watch::Sender<bool>,
}

impl Generation {
    fn new(plan: &Plan) -> Option<Generation> {
        let cfg = &plan.cfg;
        let balancers = &plan.balancers;
        let balancer = Arc::clone(&balancers[0]);
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
                let h2 = Arc::new(H2Service::new(
                    cfg,
                    balancers.clone(),
                    router(),
                    plan.access_log.clone(),
                ));
                // The native HTTP/1 engine speaks cleartext HTTP/1.1 to backends only: a
                // service with a pool that wants TLS or HTTP/2 is served by hyper throughout.
                let needs_hyper = balancers.iter().any(|b| {
                    b.pool.tls.is_some() || b.pool.protocol != tandem_config::BackendProtocol::Http1
                });
                let h1 = || {
                    Arc::new(H1Service::new(
                        cfg,
                        balancers.clone(),
                        router(),
                        Arc::clone(&h2),
                        plan.access_log.clone(),
                    ))
                };
                match &plan.tls {
                    Some(config) => Handler::Tls(Arc::new(TlsHandler {
                        acceptor: tokio_rustls::TlsAcceptor::from(Arc::clone(config)),
                        h1: (!needs_hyper).then(h1),
                        svc: Arc::clone(&h2),
                        handshake_timeout: cfg.timeouts.header,
                        stats: Arc::clone(&stats),
                        proxy: crate::proxy_protocol::Acceptor::new(cfg, Arc::clone(&stats)),
                    })),
                    None if needs_hyper => Handler::Hyper(
                        h2,
                        crate::proxy_protocol::Acceptor::new(cfg, Arc::clone(&stats)).map(Arc::new),
                    ),
                    None => Handler::Http(h1()),
                }
            }
            Mode::Tcp => Handler::Tcp(Arc::new(TcpService::new(
                cfg,
                balancer,
                plan.access_log.clone(),
            ))),
            // Served by `start_udp`.
            Mode::Udp => return None,
        };
        Some(Generation {
            handler,
            limit: plan.limit.clone(),
            stats,
            retire: watch::channel(false).0,
        })
    }
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

async fn accept_loop(
    listener: tokio::net::TcpListener,
    mut plans: watch::Receiver<Arc<Plan>>,
    open: Arc<OpenConnections>,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    let mut plan = Arc::clone(&plans.borrow_and_update());
    let Some(mut current) = Generation::new(&plan) else {
        return;
    };
    loop {
        // At max_connections, stop accepting: new connections wait in the kernel's queue
        // (and time out there if it lasts) instead of being accepted and starved.
        let mut reloaded = false;
        let permit = match &current.limit {
            Some(sem) => tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                _ = plans.changed() => {
                    reloaded = true;
                    None
                }
                p = Arc::clone(sem).acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
            },
            None => None,
        };
        let accepted = if reloaded {
            None
        } else {
            tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                _ = plans.changed() => None,
                r = listener.accept() => Some(r),
            }
        };
        let Some(accepted) = accepted else {
            // A reload: new connections get the new plan; the old generation's connections
            // finish their current request and close.
            let next = Arc::clone(&plans.borrow_and_update());
            match Generation::new(&next) {
                Some(g) => {
                    let _ = current.retire.send(true);
                    current = g;
                    plan = next;
                    tracing::debug!(service = %plan.cfg.name, "serving the reloaded configuration");
                }
                None => {
                    tracing::error!(service = %next.cfg.name, "reload: cannot serve this mode here")
                }
            }
            continue;
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; never stop listening.
                tracing::warn!(service = %plan.cfg.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        current.stats.connections.fetch_add(1, Ordering::Relaxed);
        let guard = open.enter();
        let sd = current.retire.subscribe();
        match &current.handler {
            Handler::Http(svc) => {
                let svc = Arc::clone(svc);
                // Idle HTTP/1 connections close at once only when the worker shuts down; a
                // service that stops accepting (a reload removed it, an upgrade) lets each
                // answer its next request with `Connection: close`.
                let stopped = shutdown.clone();
                tokio::spawn(async move {
                    svc.serve_connection(stream, peer, stopped, sd).await;
                    drop(guard);
                    drop(permit);
                });
            }
            Handler::Hyper(h, proxy) => {
                let h = Arc::clone(h);
                let proxy = proxy.clone();
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
                let stopped = shutdown.clone();
                tokio::spawn(async move {
                    h.serve(stream, peer, stopped, sd).await;
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
    // Stopped: this listener's connections finish what they are doing, then close.
    let _ = current.retire.send(true);
}
