//! `wrr`: smooth weighted round robin, nginx's algorithm (`ngx_http_upstream_get_peer`).
//!
//! Each pick, every acceptable candidate adds its weight to its `current`; the one with the
//! highest `current` wins (the first in list order on a tie) and pays back the sum of the
//! weights that took part. Over any `total weight` consecutive picks each candidate is chosen
//! exactly `weight` times, and the picks are interleaved (weights 5,1,1 give `a a b a c a a`),
//! instead of HAProxy/IPVS-style bursts of the heavy backend.
//!
//! Candidates rejected by `accept` take no part in that pick: they neither gain nor pay, exactly
//! as nginx skips peers that are down or at `max_conns`. The sequence therefore stays a
//! deterministic function of the accept results.
//!
//! The state is a small `Vec<i64>` behind a `std::sync::Mutex`, held for one O(n) pass.

use std::sync::Mutex;

use super::{Candidate, LoadView, RequestKey, Scheduler};

#[derive(Debug)]
pub(crate) struct SmoothWeighted {
    ids: Box<[usize]>,
    weights: Box<[i64]>,
    current: Mutex<Box<[i64]>>,
}

impl SmoothWeighted {
    pub(crate) fn new(candidates: &[Candidate]) -> Self {
        Self {
            ids: candidates.iter().map(|c| c.id).collect(),
            weights: candidates.iter().map(|c| i64::from(c.weight)).collect(),
            current: Mutex::new(vec![0; candidates.len()].into_boxed_slice()),
        }
    }
}

impl Scheduler for SmoothWeighted {
    fn pick(
        &self,
        _key: &RequestKey,
        _load: &dyn LoadView,
        accept: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        // A panic in another thread's `accept` cannot leave `current` inconsistent in a way
        // that matters (it is self-correcting), so a poisoned lock is simply taken over.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, (&id, &w)) in self.ids.iter().zip(self.weights.iter()).enumerate() {
            if !accept(id) {
                continue;
            }
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(self.ids[b])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn seq(s: &SmoothWeighted, n: usize, accept: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..n)
            .map(|_| s.pick(&no_key(), &Loads::idle(), accept).unwrap())
            .collect()
    }

    #[test]
    fn nginx_sequence_5_1_1() {
        let s = SmoothWeighted::new(&cands(&[5, 1, 1]));
        // a a b a c a a, then it repeats exactly.
        assert_eq!(seq(&s, 7, &all), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(seq(&s, 7, &all), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_proportions_every_cycle() {
        let weights = [3u32, 7, 1, 4, 10];
        let total: u32 = weights.iter().sum();
        let s = SmoothWeighted::new(&cands(&weights));
        for _cycle in 0..50 {
            let h = histogram(&s, 5, total as usize, &Loads::idle(), |_| no_key(), &all);
            let expect: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
            assert_eq!(h, expect);
        }
    }

    #[test]
    fn smooth_no_long_bursts() {
        // Weights 10,1,1: a bursty weighted round robin (IPVS `wrr`) sends 10 in a row to the
        // heavy backend; the smooth one breaks the cycle into runs of 4, 3 and then 7 and 3.
        let s = SmoothWeighted::new(&cands(&[10, 1, 1]));
        let picks = seq(&s, 120, &all);
        let longest = picks
            .chunk_by(|a, b| a == b)
            .map(|run| run.len())
            .max()
            .unwrap();
        assert_eq!(longest, 7, "{picks:?}");
        // Period 12, every cycle identical.
        assert!(picks.chunks(12).all(|c| c == &picks[..12]), "{picks:?}");
        // Spread: weights 1,1,1,...: strictly alternating.
        let s = SmoothWeighted::new(&cands(&[2, 2, 2]));
        assert_eq!(seq(&s, 6, &all), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skipping_is_deterministic_and_proportional() {
        let s = SmoothWeighted::new(&cands(&[5, 1, 1]));
        // Backend 0 at max_connections: the others share by their weights, 1:1.
        let accept = |id: usize| id != 0;
        assert_eq!(seq(&s, 6, &accept), [1, 2, 1, 2, 1, 2]);
        // Two identical schedulers fed identical accept results produce identical sequences.
        let a = SmoothWeighted::new(&cands(&[4, 2, 3]));
        let b = SmoothWeighted::new(&cands(&[4, 2, 3]));
        let flaky = |k: usize| move |id: usize| (id + k) % 4 != 1;
        for k in 0..200 {
            let f = flaky(k);
            assert_eq!(
                a.pick(&no_key(), &Loads::idle(), &f),
                b.pick(&no_key(), &Loads::idle(), &f)
            );
        }
        // Once everyone is accepted again the proportions are exact over a cycle... after the
        // state settles: check long-run shares instead of a single cycle.
        let h = histogram(&a, 3, 9000, &Loads::idle(), |_| no_key(), &all);
        for (got, w) in h.iter().zip([4usize, 2, 3]) {
            assert!(got.abs_diff(w * 1000) <= 2, "{h:?}");
        }
    }

    #[test]
    fn never_picks_rejected() {
        let s = SmoothWeighted::new(&cands(&[5, 1, 1, 2]));
        for i in 0..1000usize {
            let accept = move |id: usize| (id + i) % 3 != 2;
            let id = s.pick(&no_key(), &Loads::idle(), &accept).unwrap();
            assert!(accept(id));
        }
        assert_eq!(s.pick(&no_key(), &Loads::idle(), &|_| false), None);
        assert_eq!(
            SmoothWeighted::new(&[]).pick(&no_key(), &Loads::idle(), &all),
            None
        );
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let s = SmoothWeighted::new(&cands(&[u32::MAX, u32::MAX, 1]));
        for _ in 0..10_000 {
            s.pick(&no_key(), &Loads::idle(), &all).unwrap();
        }
    }
}
