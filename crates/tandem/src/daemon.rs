//! `tandem run`: wire the configuration to the data plane, health checkers and admin API, and
//! stop cleanly on SIGTERM/SIGINT.
//!
//! Everything that can fail because of the configuration or the machine (reading the file,
//! binding every listener) happens before anything starts, so an error never leaves a
//! half-started daemon behind.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tandem_admin::{AdminState, AuthPolicy, EventKind, Events, ServiceInfo};
use tandem_balance::{Health, PoolRuntime, Topology};
use tandem_config::Config;
use tandem_proxy::Dataplane;
use tokio::sync::watch;

/// What is listening once the daemon is up (ports resolved when the config asked for 0).
pub struct Started {
    pub services: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
}

pub fn run_file(path: &Path) -> anyhow::Result<()> {
    let cfg = tandem_config::load_file(path)
        .map_err(|errors| anyhow!("invalid configuration:\n{errors}"))?;
    run(cfg, |_| {})
}

pub fn run(cfg: Config, on_ready: impl FnOnce(&Started)) -> anyhow::Result<()> {
    let workers = cfg
        .runtime
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let topology = Arc::new(Topology::new(&cfg));
    // Recent state changes for the admin API and dashboard; everything below publishes here.
    let events = Events::default();

    let admin_socket = std::net::TcpListener::bind(cfg.admin.listen)
        .with_context(|| format!("admin: cannot listen on {}", cfg.admin.listen))?;
    admin_socket.set_nonblocking(true)?;
    let admin_addr = admin_socket.local_addr()?;
    let vips: Vec<std::net::IpAddr> = cfg
        .vrrp
        .iter()
        .flat_map(|v| v.virtual_ips.iter().map(|ip| ip.address))
        .collect();
    let bound = tandem_proxy::bind(&cfg.services, workers, &vips)?;
    let started = Started {
        services: bound
            .iter()
            .map(|b| (b.cfg.name.clone(), b.local_addr))
            .collect(),
        admin: admin_addr,
    };
    let services = bound
        .iter()
        .map(|b| ServiceInfo {
            name: b.cfg.name.clone(),
            listen: b.local_addr,
            mode: tandem_admin::mode_name(b.cfg.mode),
            pool: b.cfg.pool.clone(),
        })
        .collect();

    // The control plane (health checks, admin API) runs on this thread, apart from the
    // workers, so a saturated data plane cannot starve the checks that steer it.
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the control-plane runtime")?;
    // After the listeners are bound (the kernel queues connections from then on), before the
    // data plane starts: a VRRP failure (no such interface...) still leaves nothing running.
    // Scripts and quorum witnesses are checked once before the instances start, so each
    // starts with the priority and FAULT state its checks call for (vrrp_probes).
    let probes = control.block_on(crate::vrrp_probes::Probes::first_rounds(&cfg));
    let vrrp = crate::vrrp::start_all(&cfg.vrrp)?;
    let vrrp_sources = vrrp.iter().map(crate::vrrp::admin_source).collect();
    let tracking = crate::vrrp_track::Tracking::new(&vrrp, &topology, &probes);
    let notifiers = crate::vrrp::notifiers(&vrrp, &events);
    let notify_timeout = cfg
        .vrrp
        .iter()
        .map(|v| v.notify.timeout)
        .max()
        .unwrap_or_default();
    let (stop_tx, stop_rx) = watch::channel(false);
    // The cluster listener is bound before the data plane starts, so a port conflict is a
    // startup error; its checkpoint (if any) is loaded into the sticky tables first too.
    let cluster = match &cfg.cluster {
        Some(c) => Some(control.block_on(tandem_cluster::Node::start(
            c,
            Arc::clone(&topology),
            stop_rx.clone(),
        ))?),
        None => None,
    };
    let dataplane = Dataplane::start(bound, &topology, cfg.runtime.drain_timeout)?;
    for (name, addr) in &started.services {
        tracing::info!(service = %name, %addr, workers, "listening");
    }

    control.block_on(async move {
        for (pool_cfg, pool) in cfg.pools.iter().zip(&topology.pools) {
            spawn_health(pool_cfg, pool, stop_rx.clone(), &events);
        }
        tokio::spawn(tick_pools(
            Arc::clone(&topology),
            stop_rx.clone(),
            events.clone(),
        ));
        tokio::spawn(tracking.run(stop_rx.clone()));
        probes.spawn(&stop_rx);
        let notifiers: Vec<_> = notifiers
            .into_iter()
            .map(|n| tokio::spawn(n.run()))
            .collect();
        // Off loopback the token guards reads too (tandem-config insists on one there).
        let auth = match &cfg.admin.token {
            Some(token) => AuthPolicy::with_token(token.0.clone(), !admin_addr.ip().is_loopback()),
            None => AuthPolicy::open(),
        };
        let mut state = AdminState::new(Arc::clone(&topology), services, env!("CARGO_PKG_VERSION"))
            .with_vrrp(vrrp_sources)
            .with_events(events.clone())
            .with_auth(auth);
        if let Some(node) = &cluster {
            let (source, hook) = crate::cluster::admin(node);
            state = state.with_cluster(source, hook);
            tokio::spawn(crate::cluster::watch_peers(
                Arc::clone(node),
                events.clone(),
                stop_rx.clone(),
            ));
        }
        let state = Arc::new(state);
        let listener = tokio::net::TcpListener::from_std(admin_socket)?;
        let admin = tokio::spawn(tandem_admin::serve(listener, state, stop_rx.clone()));
        on_ready(&started);

        let signal = wait_for_signal().await;
        // Hand the VIPs over first (priority 0), so new connections already go to the other
        // node while this one drains what it has.
        tokio::task::spawn_blocking(move || crate::vrrp::stop_all(vrrp))
            .await
            .context("stopping the VRRP instances")?;
        // The `stop` notifications (and any still queued) run before the process exits,
        // each bounded by its timeout; past twice that, stop waiting.
        let notified = async {
            for n in notifiers {
                let _ = n.await;
            }
        };
        if tokio::time::timeout(notify_timeout * 2 + Duration::from_secs(1), notified)
            .await
            .is_err()
        {
            tracing::warn!("stopping without waiting for the remaining VRRP notify commands");
        }
        tracing::info!(signal, "shutting down: draining open connections");
        let _ = stop_tx.send(true);
        tokio::task::spawn_blocking(move || dataplane.stop())
            .await
            .context("data plane did not stop cleanly")?;
        if let Some(node) = &cluster {
            // The last changes of the drain, and a final checkpoint for the next start.
            node.collect_once();
            if let Err(e) = node.write_checkpoint() {
                tracing::warn!(error = %e, "cluster: writing the final checkpoint failed");
            }
        }
        match admin.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "admin API ended with an error"),
            Err(e) => tracing::warn!(error = %e, "admin API task failed"),
            Ok(Ok(())) => {}
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Run the pool's health checks, publishing verdicts into the live topology. Backends with
/// their own `health` table get a checker of their own; the rest share the pool's.
fn spawn_health(
    cfg: &tandem_config::Pool,
    pool: &Arc<PoolRuntime>,
    stop: watch::Receiver<bool>,
    events: &Events,
) {
    let mut groups: Vec<(tandem_config::HealthCheck, Vec<usize>)> = Vec::new();
    for (id, b) in cfg.backends.iter().enumerate() {
        let check = b.health.as_ref().unwrap_or(&cfg.health);
        match groups.iter_mut().find(|(c, _)| c == check) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((check.clone(), vec![id])),
        }
    }
    for (check, ids) in groups {
        let targets = ids.iter().map(|&id| pool.backends[id].address).collect();
        let ids = Arc::new(ids);
        let report_pool = Arc::clone(pool);
        let report_ids = Arc::clone(&ids);
        let report_events = events.clone();
        let report: tandem_health::ReportFn = Arc::new(move |i, t| {
            let Some(&id) = report_ids.get(i) else { return };
            let health = match t.to {
                tandem_health::Health::Up => Health::Up,
                tandem_health::Health::Down => Health::Down,
                tandem_health::Health::Unknown => Health::Unknown,
            };
            if report_pool.set_health(id, health, &t.reason, Instant::now()) {
                tracing::info!(
                    pool = %report_pool.name,
                    backend = %report_pool.backends[id].address,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reason = %t.reason,
                    "backend state changed"
                );
                let kind = match health {
                    Health::Up => Some(EventKind::BackendUp),
                    Health::Down => Some(EventKind::BackendDown),
                    Health::Unknown => None,
                };
                if let Some(kind) = kind {
                    let address = report_pool.backends[id].address;
                    report_events.push(
                        kind,
                        format!(
                            "{}/{address} {}: {}",
                            report_pool.name,
                            t.to.as_str(),
                            t.reason
                        ),
                        [
                            ("pool", report_pool.name.clone()),
                            ("backend", address.to_string()),
                            ("from", t.from.as_str().to_string()),
                            ("to", t.to.as_str().to_string()),
                            ("reason", t.reason.to_string()),
                        ],
                    );
                }
            }
        });
        let observe_pool = Arc::clone(pool);
        let observe_events = events.clone();
        let observe: tandem_health::ObserveFn = Arc::new(move |i, outcome, _at| {
            let Some(&id) = ids.get(i) else { return };
            let pool = &observe_pool;
            let now = Instant::now();
            if pool.check_ran(id, outcome.ok, now) {
                tracing::info!(
                    pool = %pool.name,
                    backend = %pool.backends[id].address,
                    detail = %outcome.detail,
                    "backend back in rotation: its check passed, ending its ejection"
                );
                returned(&observe_events, pool, id, "its check passed");
            }
            if let Some(weight) = outcome.weight {
                if let Some(old) = pool
                    .set_weight(id, weight, now)
                    .filter(|&old| old != weight)
                {
                    tracing::info!(
                        pool = %pool.name,
                        backend = %pool.backends[id].address,
                        from = old,
                        to = weight,
                        "backend weight set by its exec check"
                    );
                }
            }
        });
        tandem_health::spawn(check, targets, report, observe, stop.clone());
    }
}

/// The control plane's clock: ends ejections whose time is up, advances slow-start ramps and
/// refills retry budgets. A tenth of a second is far below any ejection or ramp length, and
/// costs nothing when no backend is ejected or ramping.
async fn tick_pools(topology: Arc<Topology>, mut stop: watch::Receiver<bool>, events: Events) {
    const TICK: Duration = Duration::from_millis(100);
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut ticks: u64 = 0;
    // Ejections happen on the data plane's threads; their counters are compared here each
    // tick so the event log learns of them without a hook in the hot path.
    let mut ejections: Vec<Vec<u64>> = topology
        .pools
        .iter()
        .map(|p| p.backends.iter().map(ejection_count).collect())
        .collect();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(last);
        last = now;
        ticks += 1;
        if ticks == 10 {
            ticks = 0;
            // Once a second: idle sticky entries leave even if no lookup finds them.
            for p in &topology.persistence {
                if let Some(t) = &p.sticky {
                    t.sweep(now);
                }
            }
        }
        for (pool, seen) in topology.pools.iter().zip(ejections.iter_mut()) {
            for (b, seen) in pool.backends.iter().zip(seen.iter_mut()) {
                let count = ejection_count(b);
                if count > *seen {
                    *seen = count;
                    let reason = b.detail().reason;
                    events.push(
                        EventKind::BackendEjected,
                        format!("{}/{} ejected by passive detection", pool.name, b.address),
                        [
                            ("pool", pool.name.clone()),
                            ("backend", b.address.to_string()),
                            ("ejections", count.to_string()),
                            ("reason", reason),
                        ],
                    );
                }
            }
            for id in pool.tick(now, elapsed) {
                tracing::info!(
                    pool = %pool.name,
                    backend = %pool.backends[id].address,
                    "backend back in rotation: its ejection ended"
                );
                returned(&events, pool, id, "its ejection ended");
            }
        }
    }
}

fn ejection_count(b: &Arc<tandem_balance::BackendRuntime>) -> u64 {
    b.stats.ejections.load(std::sync::atomic::Ordering::Relaxed)
}

/// Publish "back in rotation" for backend `id` of `pool`.
fn returned(events: &Events, pool: &PoolRuntime, id: usize, why: &str) {
    let Some(b) = pool.backends.get(id) else {
        return;
    };
    events.push(
        EventKind::BackendReturned,
        format!("{}/{} back in rotation: {why}", pool.name, b.address),
        [
            ("pool", pool.name.clone()),
            ("backend", b.address.to_string()),
            ("reason", why.to_string()),
        ],
    );
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
