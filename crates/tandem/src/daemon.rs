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
use tandem_admin::{AdminState, AuthPolicy, EventKind, Events, ServiceInfo};
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

/// `tandem run`'s upgrade options.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// Where this process waits for a successor (and, with `take_over`, where it finds the
    /// process it replaces).
    pub socket: PathBuf,
    /// `--upgrade`: take the listening sockets over from the running process.
    pub take_over: bool,
}

pub fn run_file(path: &Path, upgrade: Upgrade) -> anyhow::Result<()> {
    let cfg = tandem_config::load_file(path)
        .map_err(|errors| anyhow!("invalid configuration:\n{errors}"))?;
    run(cfg, Some(path.to_path_buf()), Some(upgrade), |_| {})
}

/// Run `cfg` until SIGTERM/SIGINT. With `file`, SIGHUP and `POST /api/v1/reload` re-read it.
pub fn run(
    cfg: Config,
    file: Option<PathBuf>,
    upgrade: Option<Upgrade>,
    on_ready: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    let workers = cfg
        .runtime
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The binary's path now: a package upgrade replaces the file, and SIGUSR2 starts what is
    // there then (/proc/self/exe would still name the deleted old one).
    let exe = std::env::current_exe().ok();
    let taking_over = upgrade.as_ref().is_some_and(|u| u.take_over);
    let topology: SharedTopology = Arc::new(ArcSwap::from_pointee(Topology::new(&cfg)));
    // Recent state changes for the admin API and dashboard; everything below publishes here.
    let events = Events::default();

    // `--upgrade`: the running process's sockets, used instead of binding.
    let mut taken = match &upgrade {
        Some(u) if u.take_over => Some(crate::upgrade::take_over(&u.socket)?),
        _ => None,
    };
    let admin_socket = match taken
        .as_mut()
        .and_then(|t| t.admin())
        .map(std::net::TcpListener::from)
        .filter(|l| same_address(l, cfg.admin.listen))
    {
        Some(l) => l,
        None => std::net::TcpListener::bind(cfg.admin.listen)
            .with_context(|| format!("admin: cannot listen on {}", cfg.admin.listen))?,
    };
    admin_socket.set_nonblocking(true)?;
    let admin_addr = admin_socket.local_addr()?;
    let vips = crate::reload::vips(&cfg);
    let bound = match taken.as_mut() {
        None => tandem_proxy::bind(&cfg.services, workers, &vips)?,
        Some(t) => adopt(t, &cfg, workers, &vips)?,
    };
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
    // The cluster listener handed over, if any (the rest of `taken` is done with).
    let cluster_socket = taken
        .as_mut()
        .and_then(|t| t.cluster())
        .map(std::net::TcpListener::from)
        .filter(|l| {
            cfg.cluster
                .as_ref()
                .is_some_and(|c| same_address(l, c.listen))
        });
    // Taking over: the old process stops its VRRP instances now (without resigning) and says
    // which were master; this one starts those as master. From here on it serves.
    let resume = match taken {
        Some(t) => {
            let vrrp = t.ready()?;
            tracing::info!(resume_master = ?vrrp.master, "took over from the previous process");
            vrrp.master
        }
        None => Vec::new(),
    };
    let vrrp = crate::vrrp::start_all(&cfg.vrrp, &resume)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // The cluster listener is bound before the data plane starts, so a port conflict is a
    // startup error; its checkpoint (if any) is loaded into the sticky tables first too.
    let cluster = match (&cfg.cluster, cluster_socket) {
        (Some(c), Some(listener)) => Some(control.block_on(async {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tandem_cluster::Node::start_on(c, listener, Arc::clone(&topology), stop_rx.clone())
                .await
        })?),
        (Some(c), None) => Some(control.block_on(tandem_cluster::Node::start(
            c,
            Arc::clone(&topology),
            stop_rx.clone(),
        ))?),
        (None, _) => None,
    };
    let dataplane = Dataplane::start(bound, &topology.load(), cfg.runtime.drain_timeout)?;
    for (name, addr) in &started.services {
        tracing::info!(service = %name, %addr, workers, "listening");
    }

    control.block_on(async move {
        tokio::spawn(tick_pools(
            Arc::clone(&topology),
            stop_rx.clone(),
            events.clone(),
        ));
        // Tracking, scripts, quorum witnesses and notifications of the VRRP instances.
        let plane =
            crate::vrrp_plane::VrrpPlane::spawn(vrrp, probes, &topology, &events, &stop_rx);
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadReply>(4);
        // Off loopback the token guards reads too (the configuration requires one there).
        let auth = match &cfg.admin.token {
            Some(token) => AuthPolicy::with_token(token.0.clone(), !admin_addr.ip().is_loopback()),
            None => AuthPolicy::open(),
        };
        let mut state = AdminState::new(topology.load_full(), services, env!("CARGO_PKG_VERSION"))
            .with_vrrp(plane.sources())
            .with_events(events.clone())
            .with_auth(auth);
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
            tokio::spawn(crate::cluster::watch_peers(
                Arc::clone(node),
                events.clone(),
                stop_rx.clone(),
            ));
        }
        let admin_state: tandem_admin::SharedAdmin = Arc::new(ArcSwap::from_pointee(state));
        let mut reloader = crate::reload::Reloader::start(
            file.clone(),
            cfg,
            Arc::clone(&topology),
            Arc::clone(&admin_state),
            workers,
            stop_rx.clone(),
        );
        let admin_fd = {
            use std::os::fd::AsFd;
            admin_socket.as_fd().try_clone_to_owned()?
        };
        let listener = tokio::net::TcpListener::from_std(admin_socket)?;
        let admin = tokio::spawn(tandem_admin::serve(listener, admin_state, stop_rx.clone()));
        let (upgrade_tx, mut upgrade_rx) = tokio::sync::mpsc::channel::<UpgradeEvent>(1);
        if let Some(u) = &upgrade {
            spawn_handover(&u.socket, u.take_over, upgrade_tx);
        }
        on_ready(&started);
        if taking_over {
            // systemd follows the service's new main process.
            crate::sd_notify::main_pid();
        }
        crate::sd_notify::ready();
        let mut vrrp = Some(plane);
        // Notification tasks of instances already stopped (handed over), awaited on exit.
        let mut notifiers = Vec::new();
        let mut notify_timeout = Duration::ZERO;

        // Watched from here on, so no signal between two reloads is missed.
        let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut usr2 = signal(SignalKind::user_defined2()).context("cannot watch SIGUSR2")?;
        let signal = loop {
            let reply = tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = interrupt.recv() => break "SIGINT",
                _ = hangup.recv() => None,
                r = reload_rx.recv() => r,
                _ = usr2.recv() => {
                    spawn_successor(file.as_deref(), upgrade.as_ref(), &exe);
                    continue;
                }
                Some(event) = upgrade_rx.recv() => match event {
                    UpgradeEvent::Offer(reply) => {
                        let _ = reply.send(offer(&dataplane, &admin_fd, cluster.as_deref()));
                        continue;
                    }
                    UpgradeEvent::Ready(reply) => {
                        let running = match vrrp.take() {
                            Some(plane) => {
                                notify_timeout = plane.notify_timeout();
                                let (running, handles) = plane.finish();
                                notifiers.extend(handles);
                                running
                            }
                            None => Vec::new(),
                        };
                        let master = tokio::task::spawn_blocking(move || crate::vrrp::hand_over(running))
                            .await
                            .unwrap_or_default();
                        let _ = reply.send(crate::upgrade::Vrrp { master });
                        break "upgrade";
                    }
                },
            };
            crate::sd_notify::reloading();
            let outcome = reloader.reload(&dataplane, vrrp.as_mut()).await;
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
        // (A successor holds its own descriptor of the admin socket.)
        drop(admin_fd);
        // Hand the VIPs over first (priority 0), so new connections already go to the other
        // node while this one drains what it has. (After an upgrade the successor has them.)
        if let Some(plane) = vrrp.take() {
            notify_timeout = plane.notify_timeout();
            let (running, handles) = plane.finish();
            notifiers.extend(handles);
            tokio::task::spawn_blocking(move || crate::vrrp::stop_all(running))
                .await
                .context("stopping the VRRP instances")?;
        }
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
        let upgraded = signal == "upgrade";
        tokio::task::spawn_blocking(move || {
            if upgraded {
                dataplane.hand_over();
            } else {
                dataplane.stop();
            }
        })
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

/// A successor's requests, from the handover thread to the main loop.
enum UpgradeEvent {
    /// It asks for the sockets.
    Offer(tokio::sync::oneshot::Sender<anyhow::Result<OfferFds>>),
    /// It is ready: stop the VRRP instances and say which were master.
    Ready(tokio::sync::oneshot::Sender<crate::upgrade::Vrrp>),
}

type OfferFds = (crate::upgrade::Offer, Vec<Vec<std::os::fd::OwnedFd>>);

/// Listen for a successor (`tandem run --upgrade`) on a thread of its own; its requests
/// reach the main loop as [`UpgradeEvent`]s. A successor that fails half-way changes
/// nothing here, and the next one may try again.
fn spawn_handover(path: &Path, replace: bool, events: tokio::sync::mpsc::Sender<UpgradeEvent>) {
    let Some(handover) = crate::upgrade::Handover::listen(path, replace) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("upgrade".into())
        .spawn(move || loop {
            let offer = || {
                let (tx, rx) = tokio::sync::oneshot::channel();
                events
                    .blocking_send(UpgradeEvent::Offer(tx))
                    .map_err(|_| anyhow!("shutting down"))?;
                rx.blocking_recv().map_err(|_| anyhow!("shutting down"))?
            };
            let ready = || {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if events.blocking_send(UpgradeEvent::Ready(tx)).is_err() {
                    return crate::upgrade::Vrrp::default();
                }
                rx.blocking_recv().unwrap_or_default()
            };
            match handover.serve_one(&offer, &ready) {
                Ok(pid) => {
                    tracing::info!(successor = pid, "handed over to the new process; draining");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "upgrade attempt failed; carrying on"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the upgrade listener");
    }
}

/// SIGUSR2: start the binary found at this process's path with the same configuration and
/// `--upgrade`, as a child in the same service (cgroup); it takes over, and this process
/// drains and exits. The way to upgrade under systemd:
/// `systemctl kill --kill-whom=main -s USR2 tandem`.
fn spawn_successor(file: Option<&Path>, upgrade: Option<&Upgrade>, exe: &Option<PathBuf>) {
    let (Some(file), Some(upgrade), Some(exe)) = (file, upgrade, exe) else {
        tracing::warn!("SIGUSR2: this process cannot start a successor (no configuration file)");
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run")
        .arg("--config")
        .arg(file)
        .arg("--upgrade")
        .arg("--upgrade-socket")
        .arg(&upgrade.socket)
        .stdin(std::process::Stdio::null());
    match cmd.spawn() {
        Ok(child) => {
            tracing::info!(pid = child.id(), exe = %exe.display(), "SIGUSR2: started the successor");
            // It outlives this process (reparented to init or the subreaper); waiting for it
            // here would only keep a zombie away that init reaps anyway.
            std::mem::forget(child);
        }
        Err(e) => {
            tracing::error!(error = %e, exe = %exe.display(), "SIGUSR2: cannot start the successor")
        }
    }
}

/// Everything a successor takes over: every service's sockets, the admin and the cluster
/// listener.
fn offer(
    dataplane: &Dataplane,
    admin: &std::os::fd::OwnedFd,
    cluster: Option<&tandem_cluster::Node>,
) -> anyhow::Result<OfferFds> {
    use crate::upgrade::Socket;
    use std::os::fd::AsFd;
    let mut sockets = Vec::new();
    let mut fds = Vec::new();
    for (listen, mode, f) in dataplane.handover()? {
        sockets.push(Socket::Service {
            listen,
            udp: mode == tandem_config::Mode::Udp,
            count: f.len(),
        });
        fds.push(f);
    }
    sockets.push(Socket::Admin);
    fds.push(vec![admin.as_fd().try_clone_to_owned()?]);
    if let Some(fd) = cluster.and_then(tandem_cluster::Node::listener_fd) {
        sockets.push(Socket::Cluster);
        fds.push(vec![fd]);
    }
    Ok((
        crate::upgrade::Offer {
            pid: std::process::id(),
            sockets,
        },
        fds,
    ))
}

/// Whether a handed-over listener is the one `want` asks for (port 0: any port on that
/// address). A different address is bound anew rather than served from the old socket.
fn same_address(l: &std::net::TcpListener, want: SocketAddr) -> bool {
    l.local_addr().is_ok_and(|have| {
        have.ip() == want.ip() && (want.port() == 0 || have.port() == want.port())
    })
}

/// The services of `cfg` on the sockets handed over (binding those the old process did not
/// have). Each must come with one socket per worker: a different worker count needs a
/// restart.
fn adopt(
    taken: &mut crate::upgrade::Received,
    cfg: &Config,
    workers: usize,
    vips: &[std::net::IpAddr],
) -> anyhow::Result<Vec<tandem_proxy::BoundService>> {
    let mut out = Vec::with_capacity(cfg.services.len());
    for svc in &cfg.services {
        let udp = svc.mode == tandem_config::Mode::Udp;
        match taken.service(svc.listen, udp) {
            Some(fds) if fds.len() == workers => {
                out.push(
                    tandem_proxy::BoundService::adopt(svc, fds)
                        .with_context(|| format!("service `{}`: the handed-over socket", svc.name))?,
                );
            }
            Some(fds) => {
                return Err(anyhow!(
                    "--upgrade: the running process serves `{}` with {} workers, this                      configuration asks for {workers}; change [runtime] workers with a restart",
                    svc.name,
                    fds.len()
                ))
            }
            None => out.extend(tandem_proxy::bind(std::slice::from_ref(svc), workers, vips)?),
        }
    }
    Ok(out)
}

/// What a reload request waits on.
type ReloadReply = tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>;

/// Run the pool's health checks, publishing verdicts into the live topology. Backends with
/// their own `health` table get a checker of their own; the rest share the pool's.
pub(crate) fn spawn_health(
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
async fn tick_pools(topology: SharedTopology, mut stop: watch::Receiver<bool>, events: Events) {
    const TICK: Duration = Duration::from_millis(100);
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut ticks: u64 = 0;
    // Ejections happen on the data plane's threads; their counters are compared here each
    // tick so the event log learns of them without a hook in the hot path. Keyed by pool and
    // address, so a reload that rebuilds a pool (whose backends inherit their counters) does
    // not confuse it.
    let mut ejections: std::collections::HashMap<(String, SocketAddr), u64> = topology
        .load()
        .pools
        .iter()
        .flat_map(|p| {
            p.backends
                .iter()
                .map(|b| ((p.name.clone(), b.address), ejection_count(b)))
                .collect::<Vec<_>>()
        })
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
            for b in &pool.backends {
                let count = ejection_count(b);
                let seen = ejections
                    .entry((pool.name.clone(), b.address))
                    .or_insert(count);
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
