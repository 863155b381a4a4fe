//! A lock-free response-time histogram per backend, for the admin API's p50/p99.
//!
//! The peak-EWMA the `ewma` scheduler uses is one number tuned for steering, not for telling an
//! operator how slow the tail is. Percentiles need a distribution; a fixed set of buckets, each
//! a relaxed `AtomicU64`, costs the data plane one `fetch_add` per timed response and never
//! allocates. Buckets grow by √2 from 1 µs, so a percentile read from them is within ~41% of
//! the truth: plenty to see "p99 went from 4 ms to 300 ms", at 48 × 8 bytes per backend.
//!
//! Counts only ever grow, so a reader can diff two snapshots to get the distribution of just
//! the time between them (the dashboard does, for "the last few seconds").

use std::sync::atomic::{AtomicU64, Ordering};

/// Number of buckets: bucket 0 is < 1 µs, the last one holds everything ≥ 2^23 µs (~8.4 s).
pub const BUCKETS: usize = 48;

/// Response-time counts in √2-spaced buckets (see the module docs).
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
    /// The sum of all samples, for Prometheus' `_sum` (mean response time).
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// The bucket a sample of `ns` nanoseconds falls in: 0 below 1 µs, then two buckets per
/// doubling (`[2^k, 1.5·2^k)` and `[1.5·2^k, 2^(k+1))` µs), clamped to the last.
pub fn bucket_of(ns: u64) -> usize {
    let us = ns / 1000;
    if us == 0 {
        return 0;
    }
    let k = 63 - us.leading_zeros() as usize;
    let half = if k == 0 {
        0
    } else {
        ((us >> (k - 1)) & 1) as usize
    };
    (1 + 2 * k + half).min(BUCKETS - 1)
}

/// The upper edge of bucket `i` in milliseconds (what a percentile in that bucket is reported
/// as: an honest "at most"). The last bucket is open; its lower edge is returned.
pub fn upper_ms(i: usize) -> f64 {
    let lower_us = |i: usize| -> f64 {
        if i == 0 {
            return 0.0;
        }
        let k = (i - 1) / 2;
        let base = (1u64 << k) as f64;
        if (i - 1) % 2 == 1 && k > 0 {
            base * 1.5
        } else {
            base
        }
    };
    let i = i.min(BUCKETS - 1);
    if i == BUCKETS - 1 {
        return lower_us(i) / 1000.0;
    }
    // Bucket 1 (k = 0) has no half step: it is exactly 1 µs wide.
    let next = if i == 1 { 2.0 } else { lower_us(i + 1) };
    next / 1000.0
}

impl LatencyHistogram {
    /// Count one sample. One relaxed `fetch_add`: safe from any data-plane thread.
    pub fn record(&self, ns: u64) {
        self.counts[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The sum of every sample so far, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Prometheus buckets: per-bucket (not cumulative) counts with their upper bounds in
    /// seconds, two of ours merged into one (edges at 2^k µs, 2 µs … 8.4 s, then +Inf), so a
    /// backend costs 24 series rather than 48.
    pub fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        let counts = self.snapshot();
        let mut out = Vec::with_capacity(BUCKETS / 2 + 1);
        // Buckets 0 (< 1 µs), 1 ([1, 2) µs) and 2 (never used: 1 µs has no half step) end at
        // 2 µs; then each pair (odd, even) spans one doubling.
        out.push((upper_ms(2) / 1000.0, counts[0] + counts[1] + counts[2]));
        let mut i = 3;
        while i + 1 < BUCKETS - 1 {
            out.push((upper_ms(i + 1) / 1000.0, counts[i] + counts[i + 1]));
            i += 2;
        }
        let rest: u64 = counts[i..].iter().sum();
        out.push((f64::INFINITY, rest));
        out
    }

    /// The counts now. Not an atomic snapshot across buckets (a sample may land between two
    /// loads), which is invisible at the precision percentiles are shown with.
    pub fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod prometheus_tests {
    use super::*;

    #[test]
    fn prometheus_buckets_double_and_add_up() {
        let h = LatencyHistogram::default();
        for ns in [500, 1_500, 3_000_000, 3_000_000, 20_000_000_000] {
            h.record(ns);
        }
        let b = h.prometheus_buckets();
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 5);
        assert_eq!(b[0], (0.000_002, 2), "< 2 µs");
        assert!(b.windows(2).all(|w| w[1].0 > w[0].0), "{b:?}");
        for w in b.windows(2).take(b.len() - 2) {
            assert!((w[1].0 / w[0].0 - 2.0).abs() < 1e-9, "{b:?}");
        }
        let three_ms = b.iter().find(|x| x.0 >= 0.003).expect("bucket");
        assert_eq!(three_ms.1, 2, "{b:?}");
        assert_eq!(b.last().map(|x| x.1), Some(1), "20 s lands in +Inf");
        assert!((h.sum_seconds() - 20.006_002).abs() < 1e-6);
    }
}

/// The `q`-quantile (0.0..=1.0) of bucket counts in milliseconds, as the upper edge of the
/// bucket it falls in; `None` when there are no samples.
pub fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the sample we want, 1-based: ceil(q * total), at least 1.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper_ms(i));
        }
    }
    Some(upper_ms(counts.len().saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounded() {
        let mut last = 0;
        for ns in (0..20_000_000_000u64).step_by(997_001) {
            let b = bucket_of(ns);
            assert!(b >= last, "{ns}");
            assert!(b < BUCKETS);
            last = b;
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(999), 0);
        assert_eq!(bucket_of(1_000), 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_sample_is_at_most_its_bucket_upper_edge() {
        for ns in [
            1_000u64,
            1_999,
            2_000,
            2_999,
            3_000,
            750_000,
            4_000_000,
            999_000_000,
        ] {
            let b = bucket_of(ns);
            let ms = ns as f64 / 1e6;
            assert!(
                ms < upper_ms(b),
                "{ns} ns in bucket {b} (< {} ms)",
                upper_ms(b)
            );
            if b > 1 {
                assert!(
                    ms >= upper_ms(b - 1),
                    "{ns} ns vs lower edge {}",
                    upper_ms(b - 1)
                );
            }
        }
    }

    #[test]
    fn quantiles() {
        let h = LatencyHistogram::default();
        assert_eq!(quantile_ms(&h.snapshot(), 0.5), None);
        for _ in 0..99 {
            h.record(2_000_000); // 2 ms
        }
        h.record(500_000_000); // 500 ms
        let c = h.snapshot();
        let p50 = quantile_ms(&c, 0.5).expect("samples");
        assert!((2.0..3.0).contains(&p50), "{p50}");
        let p99 = quantile_ms(&c, 0.99).expect("samples");
        assert!((2.0..3.0).contains(&p99), "{p99}");
        let max = quantile_ms(&c, 1.0).expect("samples");
        assert!((500.0..720.0).contains(&max), "{max}");
    }
}
