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
}

/// The running data plane.
pub struct Dataplane {
    threads: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
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
            plans.push((b.cfg, balancers, limit, b.sockets));
        }
        let mut per_worker: Vec<Vec<WorkerService>> = (0..workers).map(|_| Vec::new()).collect();
        for (cfg, balancers, limit, sockets) in plans {
            for (w, s) in sockets.into_iter().enumerate() {
                per_worker[w].push((cfg.clone(), balancers.clone(), limit.clone(), s));
            }
        }
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
        })
    }

    /// Stop accepting, let open connections finish for up to the drain timeout, then stop.
    /// Blocks until every worker thread has exited.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.threads {
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
        for (cfg, balancers, limit, socket) in services {
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
                    Handler::Http(Arc::new(H1Service::new(&cfg, balancers, router(), h2)))
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

/// A worker's share of a service: its config, balancers, connection limit and socket.
type WorkerService = (
    Service,
    Vec<Arc<Balancer>>,
    Option<Arc<tokio::sync::Semaphore>>,
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
