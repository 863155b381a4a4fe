//! `rr`: round robin. Weights are ignored; every candidate gets the same share.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidate, LoadView, RequestKey, Scheduler};

#[derive(Debug)]
pub(crate) struct RoundRobin {
    ids: Box<[usize]>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub(crate) fn new(candidates: &[Candidate]) -> Self {
        Self {
            ids: candidates.iter().map(|c| c.id).collect(),
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Scheduler for RoundRobin {
    fn pick(
        &self,
        _key: &RequestKey,
        _load: &dyn LoadView,
        accept: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        scan(&self.ids, &self.cursor, accept)
    }
}

/// One round-robin step over `ids`: the first acceptable id at or after the cursor.
///
/// When candidates are skipped, the cursor is moved past the chosen one (like IPVS `rr`), so a
/// rejected backend's turns are spread over the others instead of all going to its successor.
/// Under concurrency the cursor is a hint, not a lock: two threads may start at the same place,
/// which costs a little evenness, never correctness. Also used by `sh` and `maglev` for requests
/// without a client address.
pub(crate) fn scan(
    ids: &[usize],
    cursor: &AtomicUsize,
    accept: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let n = ids.len();
    if n == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed) % n;
    let mut i = start;
    for skipped in 0..n {
        let id = ids[i];
        if accept(id) {
            if skipped > 0 {
                cursor.fetch_add(skipped, Ordering::Relaxed);
            }
            return Some(id);
        }
        i += 1;
        if i == n {
            i = 0;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn exactly_even_and_in_order() {
        let s = RoundRobin::new(&cands(&[5, 1, 1, 9]));
        let seq: Vec<usize> = (0..8)
            .map(|_| s.pick(&no_key(), &Loads::idle(), &all).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2, 3, 0, 1, 2, 3]);
        let h = histogram(&s, 4, 4000, &Loads::idle(), |_| no_key(), &all);
        assert_eq!(h, [1000, 1000, 1000, 1000]);
    }

    #[test]
    fn skipped_turns_are_spread() {
        let s = RoundRobin::new(&cands(&[1, 1, 1, 1]));
        let accept = |id: usize| id != 1;
        let seq: Vec<usize> = (0..6)
            .map(|_| s.pick(&no_key(), &Loads::idle(), &accept).unwrap())
            .collect();
        assert_eq!(seq, [0, 2, 3, 0, 2, 3]);
        let h = histogram(&s, 4, 3000, &Loads::idle(), |_| no_key(), &accept);
        assert_eq!(h, [1000, 0, 1000, 1000]);
    }

    #[test]
    fn empty_and_none_accepted() {
        let s = RoundRobin::new(&[]);
        assert_eq!(s.pick(&no_key(), &Loads::idle(), &all), None);
        let s = RoundRobin::new(&cands(&[1, 1]));
        assert_eq!(s.pick(&no_key(), &Loads::idle(), &|_| false), None);
    }

    #[test]
    fn cursor_wraparound_is_harmless() {
        let s = RoundRobin::new(&cands(&[1, 1, 1]));
        s.cursor.store(usize::MAX - 1, Ordering::Relaxed);
        for _ in 0..6 {
            assert!(s.pick(&no_key(), &Loads::idle(), &all).is_some());
        }
    }
}
