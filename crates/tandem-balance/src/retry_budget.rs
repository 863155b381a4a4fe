//! The retry budget: replays of failed requests may add at most a fixed share of a pool's
//! request rate, so that retrying cannot multiply the load of an outage (a retry storm).
//!
//! A token bucket shared by all workers. Every request a pool receives earns `percent`
//! hundredths of a retry; every replay spends a whole one; the control plane's tick adds a
//! floor rate so a quiet pool can retry at all. The bucket holds at most [`CAPACITY`] retries
//! and starts full, so a backend dying under load (all of its in-flight requests failing at
//! once) can be absorbed, while a sustained failure of everything settles at `percent`.
//!
//! The hot path is one relaxed load per request while the bucket is full, which it is unless
//! retries are happening: no shared write, so no cache-line bouncing between workers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Retries the bucket can hold, in whole retries.
pub const CAPACITY: i64 = 100;
/// Hundredths per whole retry.
const UNIT: i64 = 100;

#[derive(Debug)]
pub struct RetryBudget {
    /// Hundredths of a retry earned per request; 0 = retries off.
    percent: i64,
    /// Whole retries per second granted by [`RetryBudget::refill`] whatever the traffic.
    floor_per_second: i64,
    /// Hundredths of a retry available.
    balance: AtomicI64,
}

impl RetryBudget {
    pub fn new(percent: u32, floor_per_second: u32) -> Self {
        RetryBudget {
            percent: i64::from(percent.min(100)),
            floor_per_second: i64::from(floor_per_second),
            balance: AtomicI64::new(CAPACITY * UNIT),
        }
    }

    /// Count one request (a first attempt, not a replay).
    #[inline]
    pub fn on_request(&self) {
        if self.percent == 0 || self.balance.load(Ordering::Relaxed) >= CAPACITY * UNIT {
            return;
        }
        self.deposit(self.percent);
    }

    /// Take one retry if the budget has it.
    pub fn try_spend(&self) -> bool {
        if self.percent == 0 {
            return false;
        }
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok()
    }

    /// Grant the floor rate for `elapsed`; called by the control plane's periodic tick.
    pub fn refill(&self, elapsed: Duration) {
        if self.percent == 0 {
            return;
        }
        let earned = (self.floor_per_second * UNIT) as f64 * elapsed.as_secs_f64();
        self.deposit(earned as i64);
    }

    /// Whole retries available now (for the admin API and tests).
    pub fn available(&self) -> i64 {
        self.balance.load(Ordering::Relaxed) / UNIT
    }

    fn deposit(&self, amount: i64) {
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                Some((b + amount).min(CAPACITY * UNIT))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(b: &RetryBudget) -> i64 {
        let mut n = 0;
        while b.try_spend() {
            n += 1;
            assert!(n <= CAPACITY, "bucket larger than its capacity");
        }
        n
    }

    #[test]
    fn starts_full_and_earns_percent_of_requests() {
        let b = RetryBudget::new(20, 10);
        assert_eq!(drain(&b), CAPACITY);
        for _ in 0..400 {
            b.on_request();
        }
        assert_eq!(drain(&b), 80, "20% of 400 requests");
    }

    #[test]
    fn floor_refills_a_quiet_pool_and_the_cap_holds() {
        let b = RetryBudget::new(20, 10);
        drain(&b);
        b.refill(Duration::from_millis(500));
        assert_eq!(drain(&b), 5);
        b.refill(Duration::from_secs(3600));
        assert_eq!(b.available(), CAPACITY);
        for _ in 0..100_000 {
            b.on_request();
        }
        assert_eq!(b.available(), CAPACITY);
    }

    #[test]
    fn zero_percent_never_retries() {
        let b = RetryBudget::new(0, 10);
        assert!(!b.try_spend());
        b.refill(Duration::from_secs(10));
        assert!(!b.try_spend());
    }
}
