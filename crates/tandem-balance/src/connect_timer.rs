//! How long to wait for a backend's TCP connect: derived from the connect times the pool
//! actually sees, within the operator's floor and ceiling.
//!
//! A fixed connect timeout is wrong both ways: 3 s (the usual setting) means every request
//! sent to a blackholed host waits 3 s before going elsewhere, and a short fixed value breaks
//! backends across a WAN. Connect time is one round trip, so we estimate it as TCP estimates
//! its retransmission timeout (RFC 6298: smoothed RTT plus four deviations) and allow
//! [`MARGIN`] times that. On a LAN the estimate is far below the floor, so the floor
//! (`connect_timeout_min`, default 100 ms) is what applies: still 30 times less than the usual
//! fixed setting, and no healthy LAN connect comes close.
//!
//! Samples come from successful connects only: a failure says nothing about how long a
//! working connect takes. Shared by all workers through relaxed atomics; a lost update under
//! a race only drops one sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The timeout is this many estimated round-trip timeouts.
pub const MARGIN: u64 = 3;

#[derive(Debug, Default)]
pub struct ConnectTimer {
    /// Smoothed connect time, µs; 0 = no sample yet.
    srtt_us: AtomicU64,
    /// Smoothed mean deviation, µs.
    rttvar_us: AtomicU64,
}

impl ConnectTimer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold in the duration of one successful connect (RFC 6298 section 2 gains: 1/8, 1/4).
    pub fn sample(&self, took: Duration) {
        let r = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        if srtt == 0 {
            self.srtt_us.store(r, Ordering::Relaxed);
            self.rttvar_us.store(r / 2, Ordering::Relaxed);
            return;
        }
        let var = self.rttvar_us.load(Ordering::Relaxed);
        let dev = srtt.abs_diff(r);
        self.rttvar_us
            .store(var - var / 4 + dev / 4, Ordering::Relaxed);
        self.srtt_us
            .store(srtt - srtt / 8 + r / 8, Ordering::Relaxed);
    }

    /// The timeout for the next connect. Before any sample, the ceiling: with nothing known,
    /// a slow backend must not be mistaken for a dead one.
    pub fn timeout(&self, floor: Duration, ceiling: Duration) -> Duration {
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        if srtt == 0 {
            return ceiling;
        }
        let rto = srtt.saturating_add(self.rttvar_us.load(Ordering::Relaxed).saturating_mul(4));
        Duration::from_micros(rto.saturating_mul(MARGIN)).clamp(floor.min(ceiling), ceiling)
    }

    /// Smoothed connect time, for the admin API; `None` before the first sample.
    pub fn smoothed(&self) -> Option<Duration> {
        match self.srtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: Duration = Duration::from_millis(100);
    const CEIL: Duration = Duration::from_secs(3);

    #[test]
    fn ceiling_until_measured_then_floor_on_a_lan() {
        let t = ConnectTimer::new();
        assert_eq!(t.timeout(FLOOR, CEIL), CEIL);
        for _ in 0..20 {
            t.sample(Duration::from_micros(300));
        }
        assert_eq!(t.timeout(FLOOR, CEIL), FLOOR);
    }

    #[test]
    fn follows_a_wan_round_trip() {
        let t = ConnectTimer::new();
        for _ in 0..50 {
            t.sample(Duration::from_millis(80));
        }
        let timeout = t.timeout(FLOOR, CEIL);
        // ~80 ms RTT with little variance: a few hundred ms, well under the ceiling.
        assert!(timeout >= Duration::from_millis(240), "{timeout:?}");
        assert!(timeout < Duration::from_millis(600), "{timeout:?}");
        assert_eq!(t.smoothed().map(|d| d.as_millis()), Some(80));
    }

    #[test]
    fn jitter_widens_it_and_the_ceiling_caps_it() {
        let t = ConnectTimer::new();
        for i in 0..50 {
            let ms = if i % 2 == 0 { 50 } else { 400 };
            t.sample(Duration::from_millis(ms));
        }
        let jittery = t.timeout(FLOOR, CEIL);
        assert!(jittery > Duration::from_millis(1000), "{jittery:?}");
        for _ in 0..50 {
            t.sample(Duration::from_secs(5));
        }
        assert_eq!(t.timeout(FLOOR, CEIL), CEIL);
    }
}
