//! Taking a backend for one request or connection: primaries, then backups, then the sorry
//! server; when every eligible backend is at `max_connections`, wait briefly for a slot. A
//! retry names the backends already tried, and gets another one or none.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tandem_balance::persistence::{Pinned, ServicePersistence};
use tandem_balance::{
    ActiveGuard, Avoid, BackendRuntime, Pick, PoolRuntime, RequestKey, ServiceStats,
};
use tandem_config::OnBackendDown;
use tokio::sync::Notify;

/// A backend slot held for the lifetime of a request (http) or connection (tcp).
pub(crate) struct Slot {
    guard: Option<ActiveGuard>,
    /// Woken when the slot is released, so queued requests retry; only set when the pool has
    /// a `max_connections` limit, so unlimited pools pay nothing.
    released: Option<Arc<Notify>>,
}

impl Slot {
    pub(crate) fn backend(&self) -> &Arc<BackendRuntime> {
        // `guard` is only taken in Drop.
        match &self.guard {
            Some(g) => g.backend(),
            None => unreachable!("slot used after release"),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(n) = &self.released {
            n.notify_one();
        }
    }
}

pub(crate) enum Acquired {
    Slot(Slot),
    /// Every eligible backend stayed full for the whole queue timeout.
    Busy,
    /// Nothing eligible and no sorry server.
    NoBackend,
    /// A retry found no backend it had not tried yet (and no sorry server to fall back on).
    Exhausted,
    /// The request is pinned to a backend that is down and persistence says
    /// `on_backend_down = "fail"`.
    PinnedDown,
}

/// The per-service view of a pool used by the data plane.
pub(crate) struct Balancer {
    pub(crate) pool: Arc<PoolRuntime>,
    /// The counters of the service this balancer serves.
    pub(crate) stats: Arc<ServiceStats>,
    /// The service's session persistence, if configured.
    pub(crate) persist: Option<Arc<ServicePersistence>>,
    released: Option<Arc<Notify>>,
}

impl Balancer {
    pub(crate) fn new(
        pool: Arc<PoolRuntime>,
        stats: Arc<ServiceStats>,
        persist: Option<Arc<ServicePersistence>>,
    ) -> Self {
        let limited = pool.backends.iter().any(|b| b.max_connections.is_some());
        Balancer {
            pool,
            stats,
            persist,
            released: limited.then(|| Arc::new(Notify::new())),
        }
    }

    /// [`Self::acquire`] for a request persistence pinned: its backend if it is eligible, not
    /// tried yet and not full; if it is down, a 503 with `on_backend_down = "fail"`, else (and
    /// when it is full) whatever the scheduler picks.
    pub(crate) async fn acquire_pinned(
        &self,
        key: &RequestKey,
        avoid: &Avoid,
        pinned: Pinned,
    ) -> Acquired {
        match pinned {
            Pinned::Backend(id) if !avoid.contains(id) => {
                if let Some(guard) = self.pool.backends.get(id).and_then(|b| b.try_acquire()) {
                    if avoid.is_empty() {
                        self.pool.budget.on_request();
                    }
                    return Acquired::Slot(self.slot(guard));
                }
            }
            Pinned::Down(_)
                if avoid.is_empty()
                    && self
                        .persist
                        .as_ref()
                        .is_some_and(|p| p.on_backend_down() == OnBackendDown::Fail) =>
            {
                self.stats.no_backend.fetch_add(1, Ordering::Relaxed);
                return Acquired::PinnedDown;
            }
            _ => {}
        }
        self.acquire(key, avoid).await
    }

    /// A backend for a request or connection, never one in `avoid` (those a retry already
    /// tried). A first attempt (empty `avoid`) counts towards the pool's retry budget.
    pub(crate) async fn acquire(&self, key: &RequestKey, avoid: &Avoid) -> Acquired {
        if avoid.is_empty() {
            self.pool.budget.on_request();
        }
        let deadline = tokio::time::Instant::now() + self.pool.queue_timeout;
        loop {
            match self.pool.pick_avoiding(key, avoid) {
                Pick::Backend(guard) => return Acquired::Slot(self.slot(guard)),
                Pick::NoBackend => return self.sorry(avoid, Acquired::NoBackend),
                Pick::Exhausted => return self.sorry(avoid, Acquired::Exhausted),
                Pick::Full => {
                    let Some(released) = &self.released else {
                        self.stats.no_backend.fetch_add(1, Ordering::Relaxed);
                        return Acquired::Busy;
                    };
                    let wait = released.notified();
                    if tokio::time::timeout_at(deadline, wait).await.is_err() {
                        self.stats.no_backend.fetch_add(1, Ordering::Relaxed);
                        return Acquired::Busy;
                    }
                }
            }
        }
    }

    /// The sorry server if there is one and it was not tried already, else `otherwise`.
    fn sorry(&self, avoid: &Avoid, otherwise: Acquired) -> Acquired {
        let sorry = self.pool.sorry.as_ref().filter(|s| !avoid.contains(s.id));
        match sorry.and_then(|s| s.try_acquire()) {
            Some(guard) => Acquired::Slot(self.slot(guard)),
            None => {
                self.stats.no_backend.fetch_add(1, Ordering::Relaxed);
                otherwise
            }
        }
    }

    fn slot(&self, guard: ActiveGuard) -> Slot {
        Slot {
            guard: Some(guard),
            released: self.released.clone(),
        }
    }
}
