//! `ewma`: least expected response time, after Finagle's and Linkerd's peak-EWMA balancers.
//!
//! Score of a candidate: `latency × (active + 1) / weight`, lowest wins, where `latency` is the
//! backend's peak-EWMA response time ([`peak_ewma`], kept by the data plane) and `active` its
//! requests in flight. With equal weights (the usual case) this is exactly the issue's
//! `peak-EWMA latency × (in-flight + 1)`; a weight divides the score so that `weight = 2` means
//! "worth twice the load", as in every other scheduler. Scores are compared exactly by
//! cross-multiplication in `u128` (no floats, no overflow).
//!
//! **Unmeasured backends** (latency 0: new, or never answered yet) are probed first: an
//! unmeasured backend with nothing in flight scores 0 and wins. While its first request is
//! still in flight it is scored with [`UNMEASURED_RTT_NS`] (30 ms, Linkerd's default RTT)
//! instead of 0. Without that, a new backend that accepts connections but answers slowly, or
//! never, would keep a score of 0 and draw every request of the pool until its first response.
//! At start-up, when nothing is measured, this makes `ewma` behave like `lc` until responses
//! arrive.
//!
//! Ties (e.g. everything idle and unmeasured) take turns, as in `lc`.

use std::sync::atomic::AtomicUsize;

use super::lc::least_rotating;
use super::{Candidate, LoadView, RequestKey, Scheduler};

/// Latency assumed for a backend that has requests in flight but no measurement yet.
pub const UNMEASURED_RTT_NS: u64 = 30_000_000;
/// Samples below this are raised to it: a measured backend never reads as unmeasured (0), and
/// sub-microsecond noise on loopback does not make one backend look 100× better than another.
pub const RTT_FLOOR_NS: u64 = 1_000;
/// A good default `decay_ns` for [`peak_ewma`]: 10 s, Linkerd's default. After a latency peak,
/// the estimate falls 63% of the way back to the new samples in one `decay`, so a backend that
/// had a slow moment recovers its share within seconds while one slow response is still felt.
pub const DEFAULT_DECAY_NS: u64 = 10_000_000_000;

#[derive(Debug)]
pub(crate) struct LeastLatency {
    cands: Box<[Candidate]>,
    cursor: AtomicUsize,
}

impl LeastLatency {
    pub(crate) fn new(candidates: &[Candidate]) -> Self {
        Self {
            cands: candidates.into(),
            cursor: AtomicUsize::new(0),
        }
    }
}

/// `(latency × (active + 1), weight)`.
fn score(load: &dyn LoadView, c: &Candidate) -> (u128, u128) {
    let active = load.active(c.id);
    let latency = match load.latency_ewma_ns(c.id) {
        0 if active == 0 => 0,
        0 => UNMEASURED_RTT_NS,
        l => l,
    };
    (
        u128::from(latency) * (u128::from(active) + 1),
        u128::from(c.weight),
    )
}

/// `a < b` by cross-multiplication: `a.0 < 2^96` and weights `< 2^32`, so products fit.
fn score_less(a: &(u128, u128), b: &(u128, u128)) -> bool {
    a.0 * b.1 < b.0 * a.1
}

impl Scheduler for LeastLatency {
    fn pick(
        &self,
        _key: &RequestKey,
        load: &dyn LoadView,
        accept: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        least_rotating(
            &self.cands,
            &self.cursor,
            accept,
            |c| score(load, c),
            score_less,
        )
    }
}

/// Peak-EWMA update of a latency estimate (all values in nanoseconds).
///
/// - `prev_ns`: the current estimate, 0 if none.
/// - `elapsed_ns`: time since the estimate was last updated.
/// - `sample_ns`: the response time just observed; raised to [`RTT_FLOOR_NS`].
/// - `decay_ns`: the time constant ([`DEFAULT_DECAY_NS`] is a good default).
///
/// A sample above the estimate replaces it at once (the "peak": a backend that slows down is
/// avoided immediately). Otherwise the estimate decays toward the sample:
/// `prev × w + sample × (1 − w)` with `w = exp(−elapsed / decay)`, so the weight of the past
/// depends on how long ago it was, not on how many samples arrived (a burst of fast responses at
/// one instant does not erase a peak). `decay_ns = 0` means no memory: the result is the sample.
/// The result always lies between the (floored) sample and `prev`; never panics.
///
/// Pure, so the data plane can keep `(estimate, last update)` per backend and update it with a
/// compare-and-swap loop.
pub fn peak_ewma(prev_ns: u64, elapsed_ns: u64, sample_ns: u64, decay_ns: u64) -> u64 {
    let sample = sample_ns.max(RTT_FLOOR_NS);
    if sample >= prev_ns || decay_ns == 0 {
        return sample;
    }
    let w = (-(elapsed_ns as f64) / decay_ns as f64).exp();
    let next = prev_ns as f64 * w + sample as f64 * (1.0 - w);
    // `as` saturates (NaN → 0); the clamp keeps float rounding from leaving the interval.
    (next.round() as u64).clamp(sample, prev_ns)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn prefers_lower_latency() {
        let s = LeastLatency::new(&cands(&[1, 1, 1]));
        let loads = Loads::with_latency(&[0, 0, 0], &[3 * MS, MS, 2 * MS]);
        for _ in 0..10 {
            assert_eq!(s.pick(&no_key(), &loads, &all), Some(1));
        }
        assert_eq!(s.pick(&no_key(), &loads, &|id| id != 1), Some(2));
        assert_eq!(s.pick(&no_key(), &loads, &|_| false), None);
    }

    #[test]
    fn penalizes_in_flight() {
        let s = LeastLatency::new(&cands(&[1, 1]));
        // 10 ms × 3 = 30 > 25 ms × 1.
        let loads = Loads::with_latency(&[2, 0], &[10 * MS, 25 * MS]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(1));
        // 10 ms × 2 = 20 < 25.
        let loads = Loads::with_latency(&[1, 0], &[10 * MS, 25 * MS]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(0));
        // Simulated: requests stay in flight; the fast one takes load in inverse proportion.
        let mut loads = Loads::with_latency(&[0, 0], &[10 * MS, 30 * MS]);
        for _ in 0..400 {
            let id = s.pick(&no_key(), &loads, &all).unwrap();
            loads.active[id] += 1;
        }
        assert_eq!(loads.active, [300, 100]);
    }

    #[test]
    fn unmeasured_is_probed_but_not_flooded() {
        let s = LeastLatency::new(&cands(&[1, 1]));
        // New backend 1, idle: it gets the next request.
        let loads = Loads::with_latency(&[5, 0], &[MS, 0]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(1));
        // Its probe is in flight: now 1 ms × 6 = 6 ms < 30 ms × 2.
        let loads = Loads::with_latency(&[5, 1], &[MS, 0]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(0));
        // All unmeasured at start-up: like lc, ties take turns.
        let s = LeastLatency::new(&cands(&[1, 1, 1]));
        let h = histogram(&s, 3, 300, &Loads::idle(), |_| no_key(), &all);
        assert_eq!(h, [100, 100, 100]);
        let loads = Loads::with_latency(&[1, 0, 1], &[0, 0, 0]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(1));
    }

    #[test]
    fn ties_take_turns_and_weights_divide() {
        let s = LeastLatency::new(&cands(&[1, 1]));
        let loads = Loads::with_latency(&[1, 1], &[MS, MS]);
        let h = histogram(&s, 2, 100, &loads, |_| no_key(), &all);
        assert_eq!(h, [50, 50]);
        // 1 ms × 2 / 3 < 1 ms × 1 / 1.
        let s = LeastLatency::new(&cands(&[3, 1]));
        let loads = Loads::with_latency(&[1, 0], &[MS, MS]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(0));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let s = LeastLatency::new(&cands(&[u32::MAX, 1]));
        let loads = Loads::with_latency(&[u32::MAX, u32::MAX], &[u64::MAX, u64::MAX]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(0));
        assert_eq!(LeastLatency::new(&[]).pick(&no_key(), &loads, &all), None);
    }

    #[test]
    fn peak_ewma_rises_at_once_and_decays_with_time() {
        let d = DEFAULT_DECAY_NS;
        // Peak: a slower sample replaces the estimate whatever the elapsed time.
        assert_eq!(peak_ewma(5 * MS, 0, 9 * MS, d), 9 * MS);
        assert_eq!(peak_ewma(0, 0, 9 * MS, d), 9 * MS);
        // No time passed: a faster sample changes nothing.
        assert_eq!(peak_ewma(10 * MS, 0, MS, d), 10 * MS);
        // One decay constant: 1/e of the way left.
        let one = peak_ewma(10 * MS, d, MS, d);
        let want = MS as f64 + 9.0 * MS as f64 * (-1.0f64).exp();
        assert!((one as f64 - want).abs() <= 1.0, "{one} vs {want}");
        // Long ago: the sample.
        assert_eq!(peak_ewma(10 * MS, 100 * d, MS, d), MS);
        // Monotone in elapsed time, always within [sample, prev].
        let mut last = u64::MAX;
        for e in (0..=20).map(|k| k * d / 4) {
            let v = peak_ewma(10 * MS, e, MS, d);
            assert!((MS..=10 * MS).contains(&v));
            assert!(v <= last);
            last = v;
        }
    }

    #[test]
    fn peak_ewma_floor_and_edges() {
        // A 0 ns sample is floored, so a measured backend never reads as unmeasured.
        assert_eq!(peak_ewma(0, 0, 0, DEFAULT_DECAY_NS), RTT_FLOOR_NS);
        assert_eq!(peak_ewma(5 * MS, u64::MAX, 0, 1), RTT_FLOOR_NS);
        // decay 0: no memory.
        assert_eq!(peak_ewma(5 * MS, 0, MS, 0), MS);
        // Extremes do not panic and stay in range.
        assert_eq!(peak_ewma(u64::MAX, 0, 0, u64::MAX), u64::MAX);
        let v = peak_ewma(u64::MAX, u64::MAX, 1, 1);
        assert_eq!(v, RTT_FLOOR_NS);
        let v = peak_ewma(u64::MAX, 1, RTT_FLOOR_NS, u64::MAX);
        assert!(v >= RTT_FLOOR_NS);
    }
}
