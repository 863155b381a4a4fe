//! One configured backend and its live state: health, operator state, weight, passive failure
//! streaks and counters.
//!
//! Everything the data plane touches per request is an atomic; the rest (health detail for the
//! admin API, ejection history, slow-start ramp) sits behind a mutex that only the control
//! plane and rare failure paths take.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::outlier::Ejection;
use crate::scheduler;

/// Health of a backend as the active checks see it.
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

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Up => 1,
            Health::Down => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
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

/// What an operator set through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// In rotation (when healthy).
    Enabled,
    /// No new requests or connections; those in flight finish. Still health-checked, so the
    /// admin API shows whether it would be fit to come back.
    Draining,
    /// Out of rotation for maintenance: no new traffic, and its health changes do not move it
    /// back in. In-flight work still finishes (nothing is cut off).
    Disabled,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            AdminState::Enabled => 0,
            AdminState::Draining => 1,
            AdminState::Disabled => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }
}

/// Counters updated by the data plane with relaxed atomics; read by the admin API.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// In flight: open connections (tcp) or requests (http). Shared with the same backend
    /// in the pool a reload replaced (and the one that replaces this), so work still in
    /// flight there counts for least-connections and `max_connections` here, and is
    /// released from the same counter when it ends.
    pub active: Arc<AtomicU32>,
    /// Served: connections (tcp) or requests (http) that were sent to this backend.
    pub total: AtomicU64,
    /// Connect failures, resets and invalid responses.
    pub failures: AtomicU64,
    /// Times passive detection took it out of rotation.
    pub ejections: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Peak-EWMA response time, ns; 0 = not measured yet.
    pub latency_ewma_ns: AtomicU64,
    /// Monotonic ns (caller's clock) of the last latency sample.
    pub latency_at_ns: AtomicU64,
    /// Every timed response, for the admin API's percentiles.
    pub latency: crate::latency::LatencyHistogram,
}

impl BackendStats {
    /// The totals of the same backend in the pool a reload replaced (`active` is shared
    /// instead, from construction).
    pub(crate) fn inherit(&self, old: &BackendStats) {
        let copy = |to: &AtomicU64, from: &AtomicU64| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        copy(&self.total, &old.total);
        copy(&self.failures, &old.failures);
        copy(&self.ejections, &old.ejections);
        copy(&self.bytes_in, &old.bytes_in);
        copy(&self.bytes_out, &old.bytes_out);
        copy(&self.latency_ewma_ns, &old.latency_ewma_ns);
        copy(&self.latency_at_ns, &old.latency_at_ns);
    }
}

/// What the admin API shows about a backend's health besides the state itself.
#[derive(Debug, Clone, Default)]
pub struct HealthDetail {
    pub since: Option<SystemTime>,
    pub last_check: Option<SystemTime>,
    pub reason: String,
}

/// The control plane's bookkeeping of one backend, behind [`BackendRuntime`]'s mutex.
#[derive(Debug, Default)]
pub(crate) struct Life {
    pub(crate) detail: HealthDetail,
    pub(crate) ejection: Ejection,
    /// While slow-starting: since when.
    pub(crate) ramp_since: Option<Instant>,
}

/// One configured backend and its live state.
#[derive(Debug)]
pub struct BackendRuntime {
    /// Index in the pool's backend list ([`crate::pool::SORRY_ID`] for a sorry server).
    pub id: usize,
    pub address: SocketAddr,
    pub backup: bool,
    pub max_connections: Option<u32>,
    /// The weight in the configuration file.
    pub configured_weight: u32,
    pub stats: BackendStats,
    /// The weight in force: configured, or set by an operator or an `exec` check.
    weight: AtomicU32,
    /// The weight the current selection was built with (differs while slow-starting).
    scheduled_weight: AtomicU32,
    health: AtomicU8,
    admin: AtomicU8,
    ejected: AtomicBool,
    /// Connects in a row that failed; reset by a successful connect.
    pub(crate) connect_failures: AtomicU32,
    /// 5xx responses in a row; reset by any other status.
    pub(crate) server_errors: AtomicU32,
    /// Woken when the backend is found dead (check down or ejected), so requests waiting on it
    /// can give up and go elsewhere.
    gone: Notify,
    pub(crate) life: Mutex<Life>,
}

impl BackendRuntime {
    pub(crate) fn new(id: usize, cfg: &tandem_config::Backend) -> Self {
        Self::sharing_active(id, cfg, None)
    }

    /// [`Self::new`], counting in-flight work on `active` (the counter of the same backend in
    /// the pool a reload replaces) when given.
    pub(crate) fn sharing_active(
        id: usize,
        cfg: &tandem_config::Backend,
        active: Option<Arc<AtomicU32>>,
    ) -> Self {
        BackendRuntime {
            id,
            address: cfg.address,
            backup: cfg.backup,
            max_connections: cfg.max_connections,
            configured_weight: cfg.weight,
            stats: BackendStats {
                active: active.unwrap_or_default(),
                ..BackendStats::default()
            },
            weight: AtomicU32::new(cfg.weight),
            scheduled_weight: AtomicU32::new(cfg.weight),
            health: AtomicU8::new(Health::Unknown.to_u8()),
            admin: AtomicU8::new(AdminState::Enabled.to_u8()),
            ejected: AtomicBool::new(false),
            connect_failures: AtomicU32::new(0),
            server_errors: AtomicU32::new(0),
            gone: Notify::new(),
            life: Mutex::new(Life::default()),
        }
    }

    /// A standalone backend (sorry servers) that is always considered up.
    pub(crate) fn standalone(id: usize, address: SocketAddr) -> Self {
        let b = BackendRuntime::new(
            id,
            &tandem_config::Backend {
                address,
                weight: 1,
                backup: false,
                max_connections: None,
                health: None,
                capacity: None,
            },
        );
        b.health.store(Health::Up.to_u8(), Ordering::Relaxed);
        b
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub(crate) fn swap_health(&self, h: Health) -> Health {
        Health::from_u8(self.health.swap(h.to_u8(), Ordering::AcqRel))
    }

    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    pub(crate) fn set_admin_state(&self, s: AdminState) -> AdminState {
        AdminState::from_u8(self.admin.swap(s.to_u8(), Ordering::AcqRel))
    }

    /// The weight in force (before any slow-start ramp).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn store_weight(&self, w: u32) -> u32 {
        self.weight.swap(w, Ordering::AcqRel)
    }

    /// The weight the scheduler currently uses (lower than [`Self::weight`] while ramping up).
    pub fn scheduled_weight(&self) -> u32 {
        self.scheduled_weight.load(Ordering::Relaxed)
    }

    pub(crate) fn store_scheduled_weight(&self, w: u32) {
        self.scheduled_weight.store(w, Ordering::Relaxed);
    }

    /// Whether passive detection has taken it out of rotation.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ejected(&self, e: bool) {
        self.ejected.store(e, Ordering::Release);
    }

    /// Known dead: its check says down or live traffic ejected it. Requests waiting on it
    /// should go elsewhere (see [`Self::gone`]).
    pub fn is_gone(&self) -> bool {
        self.health() == Health::Down || self.is_ejected()
    }

    /// A future that completes the next time the backend is found dead. Create it, then check
    /// [`Self::is_gone`]: a death between the two is then never missed.
    pub fn gone(&self) -> Notified<'_> {
        self.gone.notified()
    }

    pub(crate) fn announce_gone(&self) {
        self.gone.notify_waiters();
    }

    /// Whether the scheduler may give it new traffic.
    pub fn in_rotation(&self) -> bool {
        self.health().eligible()
            && !self.is_ejected()
            && self.admin_state() == AdminState::Enabled
            && self.weight() > 0
    }

    pub fn detail(&self) -> HealthDetail {
        lock(&self.life).detail.clone()
    }

    /// When the current ejection ends, if ejected.
    pub fn ejected_until(&self) -> Option<Instant> {
        lock(&self.life).ejection.until()
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
        s.latency.record(sample_ns);
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

/// A poisoned mutex only means another thread panicked while holding it; the data it guards
/// (health detail, ejection history) stays usable, so recover it instead of propagating.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
