//! The live backend set: per pool, the configured backends, their health, and lock-free
//! counters, plus a selection snapshot that the data plane reads without locks.
//!
//! Health and the scheduler built over the healthy backends live in ONE snapshot
//! (the private `Selection`), swapped atomically with `arc-swap`: a request never sees a scheduler built
//! for one health state combined with another (pingora keeps the two apart and races).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tandem_config::{Config, Pool as PoolConfig, SchedulerKind};

use crate::scheduler::{self, Candidate, LoadView, RequestKey, Scheduler};

/// Health of a backend as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet. Eligible for traffic, so a restart of tandem does not black-hole the
    /// pool while the first checks run (HAProxy does the same).
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Up => 1,
            Health::Down => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// Whether the scheduler may send new traffic to a backend in this state.
    pub fn eligible(self) -> bool {
        !matches!(self, Health::Down)
    }
}

/// Counters updated by the data plane with relaxed atomics; read by the admin API.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// In flight: open connections (tcp) or requests (http).
    pub active: AtomicU32,
    /// Served: connections (tcp) or requests (http) that were sent to this backend.
    pub total: AtomicU64,
    /// Connect failures, resets and invalid responses.
    pub failures: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Peak-EWMA response time, ns; 0 = not measured yet.
    pub latency_ewma_ns: AtomicU64,
    /// Monotonic ns (caller's clock) of the last latency sample.
    pub latency_at_ns: AtomicU64,
}

/// What the admin API shows about a backend's health besides the state itself.
#[derive(Debug, Clone, Default)]
pub struct HealthDetail {
    pub since: Option<SystemTime>,
    pub last_check: Option<SystemTime>,
    pub reason: String,
}

/// One configured backend and its live state.
#[derive(Debug)]
pub struct BackendRuntime {
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub max_connections: Option<u32>,
    pub stats: BackendStats,
    health: AtomicU8,
    detail: Mutex<HealthDetail>,
}

impl BackendRuntime {
    fn new(cfg: &tandem_config::Backend) -> Self {
        BackendRuntime {
            address: cfg.address,
            weight: cfg.weight,
            backup: cfg.backup,
            max_connections: cfg.max_connections,
            stats: BackendStats::default(),
            health: AtomicU8::new(Health::Unknown.to_u8()),
            detail: Mutex::new(HealthDetail::default()),
        }
    }

    /// A standalone backend (sorry servers) that is always considered up.
    fn standalone(address: SocketAddr) -> Self {
        let b = BackendRuntime::new(&tandem_config::Backend {
            address,
            weight: 1,
            backup: false,
            max_connections: None,
            health: None,
        });
        b.health.store(Health::Up.to_u8(), Ordering::Relaxed);
        b
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub fn detail(&self) -> HealthDetail {
        lock(&self.detail).clone()
    }

    /// Whether another connection fits under `max_connections`.
    pub fn has_capacity(&self) -> bool {
        match self.max_connections {
            None => true,
            Some(max) => self.stats.active.load(Ordering::Relaxed) < max,
        }
    }

    /// Take an in-flight slot if one is free; the guard gives it back and counts the request.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ActiveGuard> {
        let active = &self.stats.active;
        match self.max_connections {
            None => {
                active.fetch_add(1, Ordering::Relaxed);
            }
            Some(max) => {
                active
                    .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |a| {
                        (a < max).then_some(a + 1)
                    })
                    .ok()?;
            }
        }
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        Some(ActiveGuard {
            backend: Arc::clone(self),
        })
    }

    /// Fold one response-time sample into the peak-EWMA estimate read by the `ewma` scheduler.
    pub fn record_latency(&self, now_ns: u64, sample_ns: u64) {
        let s = &self.stats;
        let prev = s.latency_ewma_ns.load(Ordering::Relaxed);
        let at = s.latency_at_ns.swap(now_ns, Ordering::Relaxed);
        let next = scheduler::peak_ewma(
            prev,
            now_ns.saturating_sub(at),
            sample_ns,
            scheduler::ewma::DEFAULT_DECAY_NS,
        );
        s.latency_ewma_ns.store(next, Ordering::Relaxed);
    }
}

/// An in-flight slot on a backend; released on drop, even if the request task panics.
#[derive(Debug)]
pub struct ActiveGuard {
    backend: Arc<BackendRuntime>,
}

impl ActiveGuard {
    pub fn backend(&self) -> &Arc<BackendRuntime> {
        &self.backend
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.backend.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The scheduler inputs for one health state of a pool, immutable once built.
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
}

/// The live state of one pool.
#[derive(Debug)]
pub struct PoolRuntime {
    pub name: String,
    pub scheduler: SchedulerKind,
    pub backends: Vec<Arc<BackendRuntime>>,
    /// The sorry server, used only when no primary and no backup backend is eligible.
    pub sorry: Option<Arc<BackendRuntime>>,
    pub queue_timeout: std::time::Duration,
    selection: ArcSwap<Selection>,
    /// Serialises rebuilds so two concurrent health changes cannot publish out of order.
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
        let backends: Vec<_> = cfg
            .backends
            .iter()
            .map(|b| Arc::new(BackendRuntime::new(b)))
            .collect();
        let seed = cfg.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let selection = build_selection(cfg.scheduler, &backends, seed);
        PoolRuntime {
            name: cfg.name.clone(),
            scheduler: cfg.scheduler,
            sorry: cfg
                .sorry_server
                .map(|a| Arc::new(BackendRuntime::standalone(a))),
            queue_timeout: cfg.queue_timeout,
            backends,
            selection: ArcSwap::from_pointee(selection),
            rebuild: Mutex::new(()),
            seed,
        }
    }

    /// Choose a backend for a request: primaries first, then backups, skipping backends at
    /// `max_connections`. The sorry server is the caller's business (see [`Self::sorry`]).
    pub fn pick(&self, key: &RequestKey) -> Pick {
        let sel = self.selection.load();
        let load = Load(&self.backends);
        let accept = |id: usize| self.backends.get(id).is_some_and(|b| b.has_capacity());
        let groups = [
            (&sel.primary, sel.primary_len),
            (&sel.backup, sel.backup_len),
        ];
        for (sched, len) in groups {
            if len == 0 {
                continue;
            }
            // A picked backend can fill up between `accept` and `try_acquire` when another
            // worker races us; retry a bounded number of times before reporting Full.
            for _ in 0..len.min(4) {
                let Some(id) = sched.pick(key, &load, &accept) else {
                    return Pick::Full;
                };
                if let Some(guard) = self.backends.get(id).and_then(|b| b.try_acquire()) {
                    return Pick::Backend(guard);
                }
            }
            return Pick::Full;
        }
        Pick::NoBackend
    }

    /// Publish a health change. Returns true when the state actually changed.
    pub fn set_health(&self, id: usize, health: Health, reason: &str) -> bool {
        let Some(b) = self.backends.get(id) else {
            return false;
        };
        let _serial = lock(&self.rebuild);
        let now = SystemTime::now();
        {
            let mut d = lock(&b.detail);
            d.last_check = Some(now);
            d.reason = reason.to_string();
            if b.health() != health {
                d.since = Some(now);
            }
        }
        let old = Health::from_u8(b.health.swap(health.to_u8(), Ordering::AcqRel));
        if old == health {
            return false;
        }
        let selection = build_selection(self.scheduler, &self.backends, self.seed);
        self.selection.store(Arc::new(selection));
        true
    }

    /// Record that a check ran without changing the state, for the admin API's `last_check`.
    pub fn note_check(&self, id: usize) {
        if let Some(b) = self.backends.get(id) {
            lock(&b.detail).last_check = Some(SystemTime::now());
        }
    }

    /// Whether any primary or backup backend is eligible.
    pub fn any_eligible(&self) -> bool {
        let sel = self.selection.load();
        sel.primary_len + sel.backup_len > 0
    }
}

fn build_selection(kind: SchedulerKind, backends: &[Arc<BackendRuntime>], seed: u64) -> Selection {
    let group = |backup: bool| -> Vec<Candidate> {
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.backup == backup && b.weight > 0 && b.health().eligible())
            .map(|(id, b)| Candidate {
                id,
                weight: b.weight,
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

/// What a service's listener saw that is not any one backend's doing, so an operator can tell
/// "clients send garbage" and "no backend to send to" from backend trouble.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Requests refused before any backend was involved: malformed (400), head too large
    /// (431), method not allowed (405), head not finished within header_timeout (408).
    pub rejected: AtomicU64,
    /// Requests or connections turned away because no backend was available or all were full.
    pub no_backend: AtomicU64,
    /// Error answers tandem gave on a backend's behalf (502, 504).
    pub backend_errors: AtomicU64,
}

/// All pools of a configuration, by name, and the counters of every service.
#[derive(Debug, Default)]
pub struct Topology {
    pub pools: Vec<Arc<PoolRuntime>>,
    /// `(service name, counters)` in configuration order.
    pub services: Vec<(String, Arc<ServiceStats>)>,
}

impl Topology {
    pub fn new(cfg: &Config) -> Self {
        Topology {
            pools: cfg
                .pools
                .iter()
                .map(|p| Arc::new(PoolRuntime::new(p)))
                .collect(),
            services: cfg
                .services
                .iter()
                .map(|s| (s.name.clone(), Arc::new(ServiceStats::default())))
                .collect(),
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolRuntime>> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn service_stats(&self, name: &str) -> Option<&Arc<ServiceStats>> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}

/// A poisoned mutex only means another thread panicked while holding it; the data it guards
/// (health detail strings, a unit) stays usable, so recover it instead of propagating.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tandem_config::{Backend, HealthCheck, HealthKind};

    fn pool(backends: Vec<Backend>) -> PoolRuntime {
        PoolRuntime::new(&PoolConfig {
            name: "p".into(),
            scheduler: SchedulerKind::Rr,
            sorry_server: None,
            health: HealthCheck {
                kind: HealthKind::None,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                rise: 1,
                fall: 1,
            },
            backends,
            queue_timeout: Duration::from_secs(1),
        })
    }

    fn be(port: u16, backup: bool, max: Option<u32>) -> Backend {
        Backend {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            backup,
            max_connections: max,
            health: None,
        }
    }

    fn picked(p: &PoolRuntime) -> Option<u16> {
        match p.pick(&RequestKey::default()) {
            Pick::Backend(g) => Some(g.backend().address.port()),
            _ => None,
        }
    }

    #[test]
    fn backups_only_when_no_primary_is_eligible() {
        let p = pool(vec![be(1, false, None), be(2, true, None)]);
        for _ in 0..10 {
            assert_eq!(picked(&p), Some(1));
        }
        assert!(p.set_health(0, Health::Down, "test"));
        assert_eq!(picked(&p), Some(2));
        p.set_health(1, Health::Down, "test");
        assert!(matches!(p.pick(&RequestKey::default()), Pick::NoBackend));
        assert!(!p.any_eligible());
        p.set_health(0, Health::Up, "test");
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
        let p = pool(vec![be(1, false, None)]);
        assert!(p.set_health(0, Health::Up, "ok"));
        assert!(!p.set_health(0, Health::Up, "ok"));
        assert_eq!(p.backends[0].detail().reason, "ok");
        assert!(p.backends[0].detail().since.is_some());
    }
}
