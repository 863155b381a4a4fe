//! `wlc`: weighted least connections. The acceptable candidate with the smallest
//! `(active + 1) / weight` wins.
//!
//! The `+ 1` counts the connection about to be made (IPVS calls this form "shortest expected
//! delay"): with every backend idle the heaviest one wins instead of a tie, and a light backend
//! with no connection is not preferred over a heavy one that has plenty of room. Ratios are compared by integer cross-multiplication, as IPVS does
//! (`(a_active+1) * b_weight < (b_active+1) * a_weight`), in `u64`: no floats, no rounding, no
//! overflow for any `u32` inputs. Ties take turns (see [`super::lc`]).

use std::sync::atomic::AtomicUsize;

use super::lc::least_rotating;
use super::{Candidate, LoadView, RequestKey, Scheduler};

#[derive(Debug)]
pub(crate) struct WeightedLeastConn {
    cands: Box<[Candidate]>,
    cursor: AtomicUsize,
}

impl WeightedLeastConn {
    pub(crate) fn new(candidates: &[Candidate]) -> Self {
        Self {
            cands: candidates.into(),
            cursor: AtomicUsize::new(0),
        }
    }
}

/// `(active + 1, weight)`: the load ratio as a fraction.
pub(crate) fn load_ratio(load: &dyn LoadView, c: &Candidate) -> (u64, u64) {
    (u64::from(load.active(c.id)) + 1, u64::from(c.weight))
}

/// `a < b` for fractions `num/den` with non-negative parts, by cross-multiplication. A zero
/// denominator reads as +infinity (never less than anything).
pub(crate) fn ratio_less(a: &(u64, u64), b: &(u64, u64)) -> bool {
    u128::from(a.0) * u128::from(b.1) < u128::from(b.0) * u128::from(a.1)
}

impl Scheduler for WeightedLeastConn {
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
            |c| load_ratio(load, c),
            ratio_less,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn picks_minimum_ratio() {
        let s = WeightedLeastConn::new(&cands(&[3, 1, 2]));
        // (a+1)/w: 0 → 5/3=1.67, 1 → 1/1=1.0, 2 → 3/2=1.5
        let loads = Loads::active(&[4, 0, 2]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(1));
        // 0 → 3/3=1.0, 1 → 2/1=2, 2 → 3/2=1.5
        let loads = Loads::active(&[2, 1, 2]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(0));
        assert_eq!(s.pick(&no_key(), &loads, &|id| id != 0), Some(2));
        assert_eq!(s.pick(&no_key(), &loads, &|_| false), None);
        // All idle: the heaviest wins (1/3 < 1/2 < 1/1).
        assert_eq!(s.pick(&no_key(), &Loads::idle(), &all), Some(0));
    }

    #[test]
    fn exact_ratio_ties_are_not_float_noise() {
        // 3/3 vs 1/1 are exactly equal: ties alternate instead of one winning by rounding.
        let s = WeightedLeastConn::new(&cands(&[3, 1]));
        let loads = Loads::active(&[2, 0]);
        let h = histogram(&s, 2, 100, &loads, |_| no_key(), &all);
        assert_eq!(h, [50, 50]);
        // Values where f32 division would round to equal: 16777217/16777216 vs 1/1.
        let s = WeightedLeastConn::new(&cands(&[16_777_216, 1]));
        let loads = Loads::active(&[16_777_216, 0]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(1));
    }

    #[test]
    fn connections_settle_in_weight_proportion() {
        // Every pick opens a connection that stays open.
        let weights = [5u32, 1, 3, 1];
        let s = WeightedLeastConn::new(&cands(&weights));
        let mut loads = Loads::active(&[0, 0, 0, 0]);
        for _ in 0..1000 {
            let id = s.pick(&no_key(), &loads, &all).unwrap();
            loads.active[id] += 1;
        }
        assert_eq!(loads.active, [500, 100, 300, 100]);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let s = WeightedLeastConn::new(&cands(&[u32::MAX, 1]));
        let loads = Loads::active(&[u32::MAX, u32::MAX]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(0));
    }
}
