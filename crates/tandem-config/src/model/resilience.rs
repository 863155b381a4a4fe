//! How a pool survives a failing backend between health checks: retries on another backend,
//! passive outlier ejection from live traffic, and a slow start for a backend coming back.

use std::time::Duration;

/// `retries` and `retry_budget` on a `[[pool]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    /// `retries`: how many more backends an idempotent request that got no response (reset,
    /// empty reply, backend marked down while waiting) is offered to. Default 2, range 0..=10.
    /// A request whose connection failed before any byte was sent is always retried on
    /// another backend, regardless of this number (up to the number of backends).
    pub max: u32,
    /// `retry_budget`: retries may add at most this percentage of the pool's request rate
    /// (default 20), so retrying cannot multiply the load of an outage. A floor of
    /// [`Retries::BUDGET_FLOOR_PER_SECOND`] lets a quiet pool retry at all.
    pub budget_percent: u32,
}

impl Retries {
    /// Replays per second allowed whatever the request rate: without a floor, the first
    /// failure of a pool that just started, or of a quiet one, could never be retried.
    pub const BUDGET_FLOOR_PER_SECOND: u32 = 10;
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            max: 2,
            budget_percent: 20,
        }
    }
}

/// `outlier = { ... }` on a `[[pool]]`: passive failure detection from live traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlier {
    /// `consecutive_connect_failures`: eject after this many connects in a row failed
    /// (refused, unreachable, timed out). Default 3; 0 turns it off.
    pub consecutive_connect_failures: u32,
    /// `consecutive_5xx`: eject after this many 5xx responses in a row. Default 0 (off): a
    /// 5xx is often the application's answer for one bad request, not the backend's health.
    pub consecutive_5xx: u32,
    /// `base_ejection_time`: the n-th ejection in a row lasts n × this. Default 10s.
    pub base_ejection_time: Duration,
    /// `max_ejection_time`: cap on one ejection. Default 300s.
    pub max_ejection_time: Duration,
    /// `max_ejection_percent`: never eject more than this share of the pool's backends
    /// (rounded down, but at least one may be ejected). Default 50.
    pub max_ejection_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            consecutive_connect_failures: 3,
            consecutive_5xx: 0,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}
