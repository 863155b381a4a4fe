//! `lc`: least connections. The acceptable candidate with the fewest active connections
//! (tcp) or in-flight requests (http) wins; weights are ignored (use `wlc` for weights).
//!
//! Ties are broken round-robin: each pick scans from just after the previously chosen candidate
//! (an atomic cursor) and keeps the first minimum it meets, so tied candidates take turns in list
//! order, evenly, whatever candidates lie between them. IPVS `lc` takes the lowest index on a
//! tie, which
//! sends every request of a light, sequential load (where `active` is always 0 when the next
//! request arrives) to the first backend; rotating the start spreads such load evenly, like
//! HAProxy's `leastconn`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidate, LoadView, RequestKey, Scheduler};

#[derive(Debug)]
pub(crate) struct LeastConn {
    cands: Box<[Candidate]>,
    cursor: AtomicUsize,
}

impl LeastConn {
    pub(crate) fn new(candidates: &[Candidate]) -> Self {
        Self {
            cands: candidates.into(),
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Scheduler for LeastConn {
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
            |c| load.active(c.id),
            |a, b| a < b,
        )
    }
}

/// Minimum over the acceptable candidates by `key` and the strict order `less`, scanning from
/// just after the previous winner, so that ties take turns. Shared by `lc`, `wlc` and `ewma`.
///
/// The cursor is a hint: concurrent picks may read the same value and choose the same tied
/// candidate, which the load counters then correct on the next pick.
pub(crate) fn least_rotating<K>(
    cands: &[Candidate],
    cursor: &AtomicUsize,
    accept: &dyn Fn(usize) -> bool,
    key: impl Fn(&Candidate) -> K,
    less: impl Fn(&K, &K) -> bool,
) -> Option<usize> {
    let start = cursor.load(Ordering::Relaxed);
    let pos = least_from(cands, start, accept, key, less)?;
    cursor.store(pos + 1, Ordering::Relaxed);
    Some(cands[pos].id)
}

/// Position (in `cands`) of the minimum over the acceptable candidates, scanning from index
/// `start % len` (ties: the first met).
pub(crate) fn least_from<K>(
    cands: &[Candidate],
    start: usize,
    accept: &dyn Fn(usize) -> bool,
    key: impl Fn(&Candidate) -> K,
    less: impl Fn(&K, &K) -> bool,
) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    let mut best: Option<(usize, K)> = None;
    let mut i = start % n;
    for _ in 0..n {
        let c = &cands[i];
        if accept(c.id) {
            let k = key(c);
            if best.as_ref().is_none_or(|(_, bk)| less(&k, bk)) {
                best = Some((i, k));
            }
        }
        i += 1;
        if i == n {
            i = 0;
        }
    }
    best.map(|(pos, _)| pos)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn picks_least_active() {
        let s = LeastConn::new(&cands(&[1, 100, 1, 1]));
        let loads = Loads::active(&[5, 3, 1, 7]);
        for _ in 0..10 {
            assert_eq!(s.pick(&no_key(), &loads, &all), Some(2));
        }
        // Weights are ignored: backend 1 (weight 100) has more connections than 2.
        let loads = Loads::active(&[5, 2, 1, 7]);
        assert_eq!(s.pick(&no_key(), &loads, &all), Some(2));
        // Accept filter: 2 is full, so the next least (1) wins.
        assert_eq!(s.pick(&no_key(), &loads, &|id| id != 2), Some(1));
        assert_eq!(s.pick(&no_key(), &loads, &|_| false), None);
    }

    #[test]
    fn ties_rotate_evenly() {
        let s = LeastConn::new(&cands(&[1, 1, 1]));
        let h = histogram(&s, 3, 3000, &Loads::idle(), |_| no_key(), &all);
        assert_eq!(h, [1000, 1000, 1000]);
        // Only the tied minimum (0 and 2) share, evenly.
        let loads = Loads::active(&[4, 9, 4]);
        let h = histogram(&s, 3, 3000, &loads, |_| no_key(), &all);
        assert_eq!(h, [1500, 0, 1500]);
    }

    #[test]
    fn converges_under_simulated_load() {
        // Every pick opens a connection that stays open: lc keeps the counts level.
        let s = LeastConn::new(&cands(&[1, 1, 1, 1]));
        let mut loads = Loads::active(&[10, 0, 3, 0]);
        for _ in 0..100 {
            let id = s.pick(&no_key(), &loads, &all).unwrap();
            loads.active[id] += 1;
        }
        let max = *loads.active.iter().max().unwrap();
        let min = *loads.active.iter().min().unwrap();
        assert!(max - min <= 1, "{:?}", loads.active);
    }

    #[test]
    fn empty() {
        assert_eq!(
            LeastConn::new(&[]).pick(&no_key(), &Loads::idle(), &all),
            None
        );
    }
}
