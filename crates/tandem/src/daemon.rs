//! `tandem run`: wire the configuration to the data plane, health checkers and admin API, and
//! stop cleanly on SIGTERM/SIGINT.
//!
//! Everything that can fail because of the configuration or the machine (reading the file,
//! binding every listener) happens before anything starts, so an error never leaves a
//! half-started daemon behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use arc_swap::ArcSwap;
use tandem_admin::{AdminState, ServiceInfo};
use tandem_balance::{Health, PoolRuntime, SharedTopology, Topology};
use tandem_config::Config;
use tandem_proxy::Dataplane;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// What is listening once the daemon is up (ports resolved when the config asked for 0).
pub struct Started {
    pub services: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
}

pub fn run_file(path: &Path) -> anyhow::Result<()> {
    let cfg = tandem_config::load_file(path)
        .map_err(|errors| anyhow!("invalid configuration:\n{errors}"))?;
    run(cfg, Some(path.to_path_buf()), |_| {})
}

/// Run `cfg` until SIGTERM/SIGINT. With `file`, SIGHUP and `POST /api/v1/reload` re-read it.
pub fn run(
    cfg: Config,
    file: Option<PathBuf>,
    on_ready: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    let workers = cfg
        .runtime
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let topology: SharedTopology = Arc::new(ArcSwap::from_pointee(Topology::new(&cfg)));

    let admin_socket = std::net::TcpListener::bind(cfg.admin.listen)
        .with_context(|| format!("admin: cannot listen on {}", cfg.admin.listen))?;
    admin_socket.set_nonblocking(true)?;
    let admin_addr = admin_socket.local_addr()?;
    let vips = crate::reload::vips(&cfg);
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
    let notifiers = crate::vrrp::notifiers(&vrrp);
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
    let dataplane = Dataplane::start(bound, &topology.load(), cfg.runtime.drain_timeout)?;
    for (name, addr) in &started.services {
        tracing::info!(service = %name, %addr, workers, "listening");
    }

    control.block_on(async move {
        tokio::spawn(tick_pools(Arc::clone(&topology), stop_rx.clone()));
        tokio::spawn(tracking.run(stop_rx.clone()));
        probes.spawn(&stop_rx);
        let notifiers: Vec<_> = notifiers
            .into_iter()
            .map(|n| tokio::spawn(n.run()))
            .collect();
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadReply>(4);
        let mut state = AdminState::new(topology.load_full(), services, env!("CARGO_PKG_VERSION"))
            .with_vrrp(vrrp_sources);
        if file.is_some() {
            state = state.with_reload(tandem_admin::ReloadHook(Arc::new(move || {
                let (tx, rx) = tokio::sync::oneshot::channel();
                // A full queue (reloads already waiting) answers "busy" by dropping `tx`.
                let _ = reload_tx.try_send(tx);
                rx
            })));
        }
        if let Some(node) = &cluster {
            let (source, hook) = crate::cluster::admin(node);
            state = state.with_cluster(source, hook);
        }
        let admin_state: tandem_admin::SharedAdmin = Arc::new(ArcSwap::from_pointee(state));
        let mut reloader = crate::reload::Reloader::start(
            file,
            cfg,
            Arc::clone(&topology),
            Arc::clone(&admin_state),
            workers,
            stop_rx.clone(),
        );
        let listener = tokio::net::TcpListener::from_std(admin_socket)?;
        let admin = tokio::spawn(tandem_admin::serve(listener, admin_state, stop_rx.clone()));
        on_ready(&started);
        crate::sd_notify::ready();

        // Watched from here on, so no signal between two reloads is missed.
        let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let signal = loop {
            let reply = tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = interrupt.recv() => break "SIGINT",
                _ = hangup.recv() => None,
                r = reload_rx.recv() => r,
            };
            crate::sd_notify::reloading();
            let outcome = reloader.reload(&dataplane);
            crate::sd_notify::ready();
            let answer = match outcome {
                Ok(report) => {
                    tracing::info!(?report, "configuration reloaded");
                    Ok(serde_json::to_value(&report).unwrap_or_default())
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; the previous configuration keeps running");
                    Err(e.to_string())
                }
            };
            if let Some(reply) = reply {
                let _ = reply.send(answer);
            }
        };
        crate::sd_notify::stopping();
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

/// What a reload request waits on.
type ReloadReply = tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>;

/// Run the pool's health checks, publishing verdicts into the live topology. Backends with
/// their own `health` table get a checker of their own; the rest share the pool's.
pub(crate) fn spawn_health(
    cfg: &tandem_config::Pool,
    pool: &Arc<PoolRuntime>,
    stop: watch::Receiver<bool>,
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
            }
        });
        let observe_pool = Arc::clone(pool);
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
async fn tick_pools(topology: SharedTopology, mut stop: watch::Receiver<bool>) {
    const TICK: Duration = Duration::from_millis(100);
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(last);
        last = now;
        ticks += 1;
        let topology = topology.load();
        if ticks == 10 {
            ticks = 0;
            // Once a second: idle sticky entries leave even if no lookup finds them.
            for p in &topology.persistence {
                if let Some(t) = &p.sticky {
                    t.sweep(now);
                }
            }
        }
        for pool in &topology.pools {
            for id in pool.tick(now, elapsed) {
                tracing::info!(
                    pool = %pool.name,
                    backend = %pool.backends[id].address,
                    "backend back in rotation: its ejection ended"
                );
            }
        }
    }
}
