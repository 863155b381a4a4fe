//! The live state of one pool: its backends and the selection snapshot the data plane picks
//! from, plus the pool-wide resilience state (retry budget, connect timer, ejection policy).
//!
//! Health, operator state, weights and ejections all feed ONE snapshot (the private
//! `Selection`), swapped atomically with `arc-swap`: a request never sees a scheduler built
//! for one state combined with another (pingora keeps health and selection apart and races).
//! Every change goes through [`PoolRuntime::rebuild`] under one mutex, so two concurrent
//! changes cannot publish out of order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tandem_config::{Outlier, Pool as PoolConfig, Retries, SchedulerKind};

use crate::backend::{lock, ActiveGuard, AdminState, BackendRuntime, Health};
use crate::connect_timer::ConnectTimer;
use crate::outlier::may_eject;
use crate::retry_budget::RetryBudget;
use crate::scheduler::{self, Candidate, LoadView, RequestKey, Scheduler};
use crate::slow_start::ramp_weight;

/// The id of a pool's sorry server in [`Avoid`] (it is not one of `backends`).
pub const SORRY_ID: usize = usize::MAX;

/// The scheduler inputs for one state of a pool, immutable once built.
#[derive(Debug)]
struct Selection {
    primary: Box<dyn Scheduler>,
    primary_len: usize,
    backup: Box<dyn Scheduler>,
    backup_len: usize,
}

/// The outcome of asking a pool for a backend.
#[derive(Debug)]
pub enum Pick {
    /// A backend with a slot taken for this request/connection.
    Backend(ActiveGuard),
    /// Every eligible backend is at `max_connections`: the caller may queue and retry.
    Full,
    /// No primary and no backup backend is eligible.
    NoBackend,
    /// Retrying: every eligible backend not tried yet is full, or all were tried.
    Exhausted,
}

/// Backends a request already tried, so a retry goes somewhere else. A request tries a
/// handful of backends at most, so a small inline array beats any set type.
#[derive(Debug, Clone, Default)]
pub struct Avoid {
    ids: [usize; Avoid::CAPACITY],
    len: usize,
}

impl Avoid {
    /// More tries than this per request would be a retry storm of its own.
    pub const CAPACITY: usize = 8;

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_full(&self) -> bool {
        self.len == Self::CAPACITY
    }

    pub fn contains(&self, id: usize) -> bool {
        self.ids[..self.len].contains(&id)
    }

    /// Remember `id`; ignored when full (callers stop before that).
    pub fn insert(&mut self, id: usize) {
        if self.len < Self::CAPACITY && !self.contains(id) {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }
}

/// The live state of one pool.
#[derive(Debug)]
pub struct PoolRuntime {
    pub name: String,
    /// The configuration it was built from: a reload keeps the pool (its health, counters and
    /// open connections) when the new file says exactly the same.
    pub config: PoolConfig,
    pub scheduler: SchedulerKind,
    pub backends: Vec<Arc<BackendRuntime>>,
    /// The sorry server, used only when no primary and no backup backend is eligible.
    pub sorry: Option<Arc<BackendRuntime>>,
    pub queue_timeout: Duration,
    pub retries: Retries,
    pub outlier: Outlier,
    pub slow_start: Option<Duration>,
    /// `host`: the Host header requests to this pool carry (http).
    pub host: Option<String>,
    /// `keepalive`: backend connections are reused (http).
    pub keepalive: bool,
    /// `tls` and `protocol` to the backends (http).
    pub tls: Option<tandem_config::BackendTls>,
    pub protocol: tandem_config::BackendProtocol,
    /// `proxy_protocol`: the PROXY header version new backend connections start with.
    pub proxy_protocol: Option<tandem_config::ProxyProtocol>,
    /// Replays of failed requests may not exceed a share of the request rate.
    pub budget: RetryBudget,
    /// Observed connect times, for the adaptive connect timeout.
    pub connect_timer: ConnectTimer,
    /// Observed load against the backends' `capacity`: survives losing the largest one?
    pub load: crate::load::LoadMonitor,
    selection: ArcSwap<Selection>,
    /// Serialises rebuilds so two concurrent changes cannot publish out of order.
    rebuild: Mutex<()>,
    seed: u64,
}

struct Load<'a>(&'a [Arc<BackendRuntime>]);

impl LoadView for Load<'_> {
    fn active(&self, id: usize) -> u32 {
        self.0
            .get(id)
            .map_or(0, |b| b.stats.active.load(Ordering::Relaxed))
    }

    fn latency_ewma_ns(&self, id: usize) -> u64 {
        self.0
            .get(id)
            .map_or(0, |b| b.stats.latency_ewma_ns.load(Ordering::Relaxed))
    }
}

impl PoolRuntime {
    pub fn new(cfg: &PoolConfig) -> Self {
        Self::build(cfg, None)
    }

    /// The pool `cfg` replacing `old` on a reload: each backend it keeps (same address)
    /// shares its in-flight counter with the old one and inherits its state ([`Self::inherit`]).
    pub fn succeeding(cfg: &PoolConfig, old: &PoolRuntime, now: Instant) -> Self {
        let new = Self::build(cfg, Some(old));
        new.inherit(old, now);
        new
    }

    fn build(cfg: &PoolConfig, old: Option<&PoolRuntime>) -> Self {
        let backends: Vec<_> = cfg
            .backends
            .iter()
            .enumerate()
            .map(|(id, b)| {
                let active = old
                    .and_then(|o| o.find(b.address))
                    .map(|o| Arc::clone(&o.stats.active));
                Arc::new(BackendRuntime::sharing_active(id, b, active))
            })
            .collect();
        let seed = cfg.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let selection = build_selection(cfg.scheduler, &backends, seed);
        PoolRuntime {
            name: cfg.name.clone(),
            config: cfg.clone(),
            scheduler: cfg.scheduler,
            sorry: cfg
                .sorry_server
                .map(|a| Arc::new(BackendRuntime::standalone(SORRY_ID, a))),
            queue_timeout: cfg.queue_timeout,
            retries: cfg.retries.clone(),
            outlier: cfg.outlier.clone(),
            slow_start: cfg.slow_start,
            host: cfg.host.clone(),
            keepalive: cfg.keepalive,
            tls: cfg.tls.clone(),
            protocol: cfg.protocol,
            proxy_protocol: cfg.proxy_protocol,
            budget: RetryBudget::new(cfg.retries.budget_percent, Retries::BUDGET_FLOOR_PER_SECOND),
            connect_timer: ConnectTimer::new(),
            load: crate::load::LoadMonitor::new(cfg),
            backends,
            selection: ArcSwap::from_pointee(selection),
            rebuild: Mutex::new(()),
            seed,
        }
    }

    /// Choose a backend for a request: primaries first, then backups, skipping backends at
    /// `max_connections`. The sorry server is the caller's business (see [`Self::sorry`]).
    pub fn pick(&self, key: &RequestKey) -> Pick {
        self.pick_avoiding(key, &Avoid::default())
    }

    /// [`Self::pick`] for a retry: never one of `avoid`. When every untried primary is full or
    /// tried, the backups are offered before giving up ([`Pick::Exhausted`]).
    pub fn pick_avoiding(&self, key: &RequestKey, avoid: &Avoid) -> Pick {
        let sel = self.selection.load();
        let load = Load(&self.backends);
        let accept = |id: usize| {
            !avoid.contains(id) && self.backends.get(id).is_some_and(|b| b.has_capacity())
        };
        let groups = [
            (&sel.primary, sel.primary_len),
            (&sel.backup, sel.backup_len),
        ];
        let mut any = false;
        for (sched, len) in groups {
            if len == 0 {
                continue;
            }
            any = true;
            // A picked backend can fill up between `accept` and `try_acquire` when another
            // worker races us; retry a bounded number of times.
            for _ in 0..len.min(4) {
                let Some(id) = sched.pick(key, &load, &accept) else {
                    break;
                };
                if let Some(guard) = self.backends.get(id).and_then(|b| b.try_acquire()) {
                    return Pick::Backend(guard);
                }
            }
            if avoid.is_empty() {
                return Pick::Full;
            }
        }
        match (any, avoid.is_empty()) {
            (false, _) => Pick::NoBackend,
            (true, true) => Pick::Full,
            (true, false) => Pick::Exhausted,
        }
    }

    /// Whether any primary or backup backend is eligible.
    pub fn any_eligible(&self) -> bool {
        let sel = self.selection.load();
        sel.primary_len + sel.backup_len > 0
    }

    /// The connect timeout to use now, between `floor` and `ceiling`.
    pub fn connect_timeout(&self, floor: Duration, ceiling: Duration) -> Duration {
        self.connect_timer.timeout(floor, ceiling)
    }

    // -----------------------------------------------------------------------------------------
    // Active checks

    /// Publish an active check's verdict. Returns true when the state actually changed.
    /// A backend coming back from Down starts its slow-start ramp; one going Down wakes the
    /// requests waiting on it so they can go elsewhere.
    pub fn set_health(&self, id: usize, health: Health, reason: &str, now: Instant) -> bool {
        let Some(b) = self.backends.get(id) else {
            return false;
        };
        let _serial = lock(&self.rebuild);
        let wall = SystemTime::now();
        let old = b.health();
        {
            let mut life = lock(&b.life);
            life.detail.last_check = Some(wall);
            life.detail.reason = reason.to_string();
            if old != health {
                life.detail.since = Some(wall);
            }
            if old == Health::Down && health == Health::Up && self.slow_start.is_some() {
                life.ramp_since = Some(now);
            }
        }
        if b.swap_health(health) == health {
            return false;
        }
        if health == Health::Down {
            b.announce_gone();
        }
        self.rebuild_locked(now);
        true
    }

    /// Record that a check ran, for the admin API's `last_check`; a passing check also ends an
    /// ejection (the active check is the authority on whether the backend works). Returns true
    /// when that put an ejected backend back in rotation.
    pub fn check_ran(&self, id: usize, passed: bool, now: Instant) -> bool {
        let Some(b) = self.backends.get(id) else {
            return false;
        };
        let released = {
            let mut life = lock(&b.life);
            life.detail.last_check = Some(SystemTime::now());
            passed && life.ejection.is_ejected()
        };
        released && self.release(id, now)
    }

    // -----------------------------------------------------------------------------------------
    // Passive detection: reported by the data plane

    /// A connect to backend `id` succeeded after `took`.
    #[inline]
    pub fn connect_succeeded(&self, id: usize, took: Duration) {
        self.connect_timer.sample(took);
        if let Some(b) = self.backends.get(id) {
            if b.connect_failures.load(Ordering::Relaxed) != 0 {
                b.connect_failures.store(0, Ordering::Relaxed);
            }
        }
    }

    /// A connect to backend `id` failed. Returns the ejection's length when this failure
    /// ejected it.
    pub fn connect_failed(&self, id: usize, now: Instant) -> Option<Duration> {
        let b = self.backends.get(id)?;
        b.stats.failures.fetch_add(1, Ordering::Relaxed);
        let limit = self.outlier.consecutive_connect_failures;
        let streak = b.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if limit == 0 || streak < limit {
            return None;
        }
        self.eject(id, now)
    }

    /// Backend `id` answered with `status`. Returns the ejection's length when a 5xx streak
    /// ejected it (only with `consecutive_5xx` set).
    #[inline]
    pub fn response_status(&self, id: usize, status: u16, now: Instant) -> Option<Duration> {
        let limit = self.outlier.consecutive_5xx;
        if limit == 0 {
            return None;
        }
        let b = self.backends.get(id)?;
        if status >= 500 {
            let streak = b.server_errors.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= limit {
                return self.eject(id, now);
            }
        } else if b.server_errors.load(Ordering::Relaxed) != 0 {
            b.server_errors.store(0, Ordering::Relaxed);
        }
        None
    }

    fn eject(&self, id: usize, now: Instant) -> Option<Duration> {
        let b = self.backends.get(id)?;
        let _serial = lock(&self.rebuild);
        if b.is_ejected() {
            return None;
        }
        let ejected = self.backends.iter().filter(|b| b.is_ejected()).count();
        if !may_eject(
            self.backends.len(),
            ejected,
            self.outlier.max_ejection_percent,
        ) {
            return None;
        }
        let length = lock(&b.life).ejection.eject(now, &self.outlier);
        b.set_ejected(true);
        b.connect_failures.store(0, Ordering::Relaxed);
        b.server_errors.store(0, Ordering::Relaxed);
        b.stats.ejections.fetch_add(1, Ordering::Relaxed);
        b.announce_gone();
        self.rebuild_locked(now);
        Some(length)
    }

    fn release(&self, id: usize, now: Instant) -> bool {
        let Some(b) = self.backends.get(id) else {
            return false;
        };
        let _serial = lock(&self.rebuild);
        if !self.release_locked(b, now) {
            return false;
        }
        self.rebuild_locked(now);
        true
    }

    fn release_locked(&self, b: &BackendRuntime, now: Instant) -> bool {
        let mut life = lock(&b.life);
        if !life.ejection.release(now) {
            return false;
        }
        if self.slow_start.is_some() {
            life.ramp_since = Some(now);
        }
        b.set_ejected(false);
        true
    }

    // -----------------------------------------------------------------------------------------
    // Time and operators

    /// The control plane's periodic step: refill the retry budget for `elapsed`, end
    /// ejections whose time is up, advance slow-start ramps and sample the load (once a
    /// second, see [`crate::load::LoadMonitor`]). Returns the ids of backends
    /// whose ejection ended.
    pub fn tick(&self, now: Instant, elapsed: Duration) -> Vec<usize> {
        self.budget.refill(elapsed);
        let _serial = lock(&self.rebuild);
        let mut returned = Vec::new();
        let mut ramping = false;
        for b in &self.backends {
            let mut life = lock(&b.life);
            if life.ejection.expire(now) {
                b.set_ejected(false);
                if self.slow_start.is_some() {
                    life.ramp_since = Some(now);
                }
                returned.push(b.id);
            }
            ramping |= life.ramp_since.is_some();
        }
        if ramping || !returned.is_empty() {
            self.rebuild_locked(now);
        }
        self.load.sample(now, &self.backends);
        returned
    }

    /// Set the operator state of backend `id`; returns the previous one. Enabling also ends
    /// an ejection: the operator vouches for the backend.
    pub fn set_admin_state(
        &self,
        id: usize,
        state: AdminState,
        now: Instant,
    ) -> Option<AdminState> {
        let b = self.backends.get(id)?;
        let _serial = lock(&self.rebuild);
        let old = b.set_admin_state(state);
        if state == AdminState::Enabled {
            self.release_locked(b, now);
            if old != AdminState::Enabled && self.slow_start.is_some() {
                lock(&b.life).ramp_since = Some(now);
            }
        }
        if old != state {
            self.rebuild_locked(now);
        }
        Some(old)
    }

    /// Set the weight in force of backend `id` (operator or `exec` check); returns the
    /// previous one.
    pub fn set_weight(&self, id: usize, weight: u32, now: Instant) -> Option<u32> {
        let b = self.backends.get(id)?;
        let _serial = lock(&self.rebuild);
        let old = b.store_weight(weight);
        if old != weight {
            self.rebuild_locked(now);
        }
        Some(old)
    }

    /// After a reload changed this pool's configuration: take over what the previous pool
    /// knew of every backend that is still here (same address), so a weight change or a new
    /// backend does not send the others back to "unknown" or forget an operator's drain.
    /// Health and its detail, the operator state, an ejection, the weight in force (unless the
    /// file changed that backend's weight) and the totals carry over (the in-flight counter
    /// is shared instead, see [`Self::succeeding`]).
    fn inherit(&self, old: &PoolRuntime, now: Instant) {
        let _serial = lock(&self.rebuild);
        for b in &self.backends {
            let Some(o) = old.find(b.address) else {
                continue;
            };
            b.swap_health(o.health());
            b.set_admin_state(o.admin_state());
            b.set_ejected(o.is_ejected());
            if o.configured_weight == b.configured_weight {
                b.store_weight(o.weight());
            }
            {
                let from = lock(&o.life);
                let mut to = lock(&b.life);
                to.detail = from.detail.clone();
                to.ejection = from.ejection.clone();
                to.ramp_since = from.ramp_since;
            }
            b.stats.inherit(&o.stats);
        }
        self.rebuild_locked(now);
    }

    /// The backend at `address`, with its id.
    pub fn find(&self, address: std::net::SocketAddr) -> Option<&Arc<BackendRuntime>> {
        self.backends.iter().find(|b| b.address == address)
    }

    /// Recompute scheduled weights (slow start) and publish a new selection. Caller holds
    /// `rebuild`.
    fn rebuild_locked(&self, now: Instant) {
        for b in &self.backends {
            let weight = b.weight();
            let mut life = lock(&b.life);
            let scheduled = match (life.ramp_since, self.slow_start) {
                (Some(since), Some(ramp)) => match ramp_weight(weight, since, now, ramp) {
                    Some(w) => w,
                    None => {
                        life.ramp_since = None;
                        weight
                    }
                },
                _ => {
                    life.ramp_since = None;
                    weight
                }
            };
            b.store_scheduled_weight(scheduled);
        }
        let selection = build_selection(self.scheduler, &self.backends, self.seed);
        self.selection.store(Arc::new(selection));
    }
}

fn build_selection(kind: SchedulerKind, backends: &[Arc<BackendRuntime>], seed: u64) -> Selection {
    let group = |backup: bool| -> Vec<Candidate> {
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.backup == backup && b.in_rotation() && b.scheduled_weight() > 0)
            .map(|(id, b)| Candidate {
                id,
                weight: b.scheduled_weight(),
            })
            .collect()
    };
    let primary = group(false);
    let backup = group(true);
    Selection {
        primary: scheduler::build(kind, &primary, seed),
        primary_len: primary.len(),
        backup: scheduler::build(kind, &backup, seed ^ 0x9e37_79b9_7f4a_7c15),
        backup_len: backup.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::net::SocketAddr;
    use tandem_config::{Backend, HealthCheck, HealthKind};

    fn pool_with(backends: Vec<Backend>, f: impl FnOnce(&mut PoolConfig)) -> PoolRuntime {
        let mut cfg = PoolConfig {
            name: "p".into(),
            scheduler: SchedulerKind::Rr,
            sorry_server: None,
            health: HealthCheck {
                kind: HealthKind::None,
                ..HealthCheck::default()
            },
            backends,
            queue_timeout: Duration::from_secs(1),
            retries: Retries::default(),
            outlier: Outlier::default(),
            slow_start: None,
            host: None,
            keepalive: true,
            tls: None,
            protocol: tandem_config::BackendProtocol::Http1,
            proxy_protocol: None,
            expected_load: None,
        };
        f(&mut cfg);
        PoolRuntime::new(&cfg)
    }

    fn pool(backends: Vec<Backend>) -> PoolRuntime {
        pool_with(backends, |_| {})
    }

    fn be(port: u16, backup: bool, max: Option<u32>) -> Backend {
        Backend {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            backup,
            max_connections: max,
            health: None,
            capacity: None,
        }
    }

    fn picked(p: &PoolRuntime) -> Option<u16> {
        match p.pick(&RequestKey::default()) {
            Pick::Backend(g) => Some(g.backend().address.port()),
            _ => None,
        }
    }

    fn picked_avoiding(p: &PoolRuntime, avoid: &Avoid) -> Result<u16, String> {
        match p.pick_avoiding(&RequestKey::default(), avoid) {
            Pick::Backend(g) => Ok(g.backend().address.port()),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn backups_only_when_no_primary_is_eligible() {
        let now = Instant::now();
        let p = pool(vec![be(1, false, None), be(2, true, None)]);
        for _ in 0..10 {
            assert_eq!(picked(&p), Some(1));
        }
        assert!(p.set_health(0, Health::Down, "test", now));
        assert_eq!(picked(&p), Some(2));
        p.set_health(1, Health::Down, "test", now);
        assert!(matches!(p.pick(&RequestKey::default()), Pick::NoBackend));
        assert!(!p.any_eligible());
        p.set_health(0, Health::Up, "test", now);
        assert_eq!(picked(&p), Some(1));
    }

    #[test]
    fn max_connections_is_honoured_and_released_on_drop() {
        let p = pool(vec![be(1, false, Some(1)), be(2, false, Some(1))]);
        let a = p.pick(&RequestKey::default());
        let b = p.pick(&RequestKey::default());
        let (Pick::Backend(a), Pick::Backend(b)) = (a, b) else {
            panic!("two slots expected");
        };
        assert_ne!(a.backend().address, b.backend().address);
        assert!(matches!(p.pick(&RequestKey::default()), Pick::Full));
        drop(a);
        assert!(matches!(p.pick(&RequestKey::default()), Pick::Backend(_)));
        drop(b);
        assert_eq!(p.backends[0].stats.active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn set_health_reports_only_changes() {
        let now = Instant::now();
        let p = pool(vec![be(1, false, None)]);
        assert!(p.set_health(0, Health::Up, "ok", now));
        assert!(!p.set_health(0, Health::Up, "ok", now));
        assert_eq!(p.backends[0].detail().reason, "ok");
        assert!(p.backends[0].detail().since.is_some());
    }

    #[test]
    fn a_retry_avoids_tried_backends_then_tries_backups_then_gives_up() {
        let p = pool(vec![
            be(1, false, None),
            be(2, false, None),
            be(3, true, None),
        ]);
        let mut avoid = Avoid::default();
        avoid.insert(0);
        for _ in 0..5 {
            assert_eq!(picked_avoiding(&p, &avoid), Ok(2));
        }
        avoid.insert(1);
        assert_eq!(
            picked_avoiding(&p, &avoid),
            Ok(3),
            "backup after all primaries"
        );
        avoid.insert(2);
        assert_eq!(picked_avoiding(&p, &avoid), Err("Exhausted".into()));
    }

    #[test]
    fn consecutive_connect_failures_eject_and_a_passing_check_restores() {
        let t0 = Instant::now();
        let p = pool(vec![
            be(1, false, None),
            be(2, false, None),
            be(3, false, None),
        ]);
        assert_eq!(p.connect_failed(0, t0), None);
        p.connect_succeeded(0, Duration::from_micros(50));
        assert_eq!(p.connect_failed(0, t0), None, "a success resets the streak");
        assert_eq!(p.connect_failed(0, t0), None);
        assert_eq!(p.connect_failed(0, t0), Some(Duration::from_secs(10)));
        assert!(p.backends[0].is_ejected() && p.backends[0].is_gone());
        for _ in 0..20 {
            assert_ne!(picked(&p), Some(1));
        }
        assert!(!p.check_ran(0, false, t0), "a failing check keeps it out");
        assert!(p.check_ran(0, true, t0));
        assert!(!p.backends[0].is_ejected());
        assert!((0..6).any(|_| picked(&p) == Some(1)));
    }

    #[test]
    fn ejections_expire_on_tick_and_respect_the_pool_share() {
        let t0 = Instant::now();
        let p = pool(vec![
            be(1, false, None),
            be(2, false, None),
            be(3, false, None),
        ]);
        for _ in 0..3 {
            p.connect_failed(0, t0);
        }
        assert!(p.backends[0].is_ejected());
        // 50% of 3 rounds down to 1: the second backend stays in however bad it looks.
        for _ in 0..10 {
            assert_eq!(p.connect_failed(1, t0), None);
        }
        assert!(!p.backends[1].is_ejected());
        assert!(p
            .tick(t0 + Duration::from_secs(9), Duration::ZERO)
            .is_empty());
        assert_eq!(
            p.tick(t0 + Duration::from_secs(10), Duration::ZERO),
            vec![0]
        );
        assert!(!p.backends[0].is_ejected());
        assert_eq!(p.backends[0].stats.ejections.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn server_errors_eject_only_when_configured() {
        let t0 = Instant::now();
        let off = pool(vec![be(1, false, None), be(2, false, None)]);
        for _ in 0..10 {
            assert_eq!(off.response_status(0, 503, t0), None);
        }
        let on = pool_with(vec![be(1, false, None), be(2, false, None)], |c| {
            c.outlier.consecutive_5xx = 2
        });
        assert_eq!(on.response_status(0, 503, t0), None);
        assert_eq!(on.response_status(0, 200, t0), None, "a success resets it");
        assert_eq!(on.response_status(0, 500, t0), None);
        assert!(on.response_status(0, 502, t0).is_some());
    }

    #[test]
    fn going_down_wakes_waiters() {
        let t0 = Instant::now();
        let p = pool(vec![be(1, false, None), be(2, false, None)]);
        let b = Arc::clone(&p.backends[0]);
        let waiter = b.gone();
        let mut waiter = std::pin::pin!(waiter);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        p.set_health(0, Health::Down, "down", t0);
        assert!(waiter.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn slow_start_ramps_a_returning_backend() {
        let t0 = Instant::now();
        let p = pool_with(
            vec![
                Backend {
                    weight: 100,
                    ..be(1, false, None)
                },
                Backend {
                    weight: 100,
                    ..be(2, false, None)
                },
            ],
            |c| c.slow_start = Some(Duration::from_secs(10)),
        );
        p.set_health(0, Health::Up, "up", t0);
        assert_eq!(
            p.backends[0].scheduled_weight(),
            100,
            "no ramp from unknown"
        );
        p.set_health(0, Health::Down, "down", t0);
        p.set_health(0, Health::Up, "up", t0);
        assert_eq!(p.backends[0].scheduled_weight(), 1);
        p.tick(t0 + Duration::from_secs(5), Duration::ZERO);
        assert_eq!(p.backends[0].scheduled_weight(), 50);
        p.tick(t0 + Duration::from_secs(11), Duration::ZERO);
        assert_eq!(p.backends[0].scheduled_weight(), 100);
        assert_eq!(p.backends[1].scheduled_weight(), 100);
    }

    #[test]
    fn drain_and_disable_take_a_backend_out_and_enable_brings_it_back() {
        let t0 = Instant::now();
        let p = pool(vec![be(1, false, None), be(2, false, None)]);
        assert_eq!(
            p.set_admin_state(0, AdminState::Draining, t0),
            Some(AdminState::Enabled)
        );
        for _ in 0..6 {
            assert_eq!(picked(&p), Some(2));
        }
        p.set_admin_state(0, AdminState::Disabled, t0);
        p.set_health(0, Health::Up, "up", t0);
        assert_eq!(picked(&p), Some(2), "health does not undo disable");
        p.set_admin_state(0, AdminState::Enabled, t0);
        assert!((0..4).any(|_| picked(&p) == Some(1)));
        assert_eq!(p.set_weight(1, 0, t0), Some(1));
        for _ in 0..6 {
            assert_eq!(picked(&p), Some(1), "weight 0 takes no new traffic");
        }
    }
}
