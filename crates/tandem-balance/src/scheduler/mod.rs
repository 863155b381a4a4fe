//! Schedulers: given the live candidates of a pool, choose one backend for a request.
//!
//! A scheduler is built once per selection snapshot (when health or weights change) over the
//! backends that are eligible right now, so it never has to skip down backends itself. The only
//! per-request filter is `accept`, which rejects backends that are at `max_connections`.
//!
//! | name     | file         | chooses                                                        |
//! |----------|--------------|----------------------------------------------------------------|
//! | `rr`     | `rr.rs`      | the next one in turn; weights ignored                          |
//! | `wrr`    | `wrr.rs`     | smooth weighted round robin (nginx), exact weight proportions  |
//! | `lc`     | `lc.rs`      | fewest active; ties take turns                                 |
//! | `wlc`    | `wlc.rs`     | smallest `(active + 1) / weight` (integer cross-multiplication) |
//! | `sh`     | `sh.rs`      | source-IP hash onto a weighted table                           |
//! | `maglev` | `maglev.rs`  | Maglev consistent hash of the source IP                        |
//! | `p2c`    | `p2c.rs`     | the less loaded of two random candidates                       |
//! | `ewma`   | `ewma.rs`    | smallest peak-EWMA latency × (active + 1)                      |
//!
//! Common rules: no candidates or none acceptable → `None`; `pick` never panics, never
//! allocates and takes no lock (except `wrr`'s short `Mutex`); hashing schedulers without a
//! client address fall back to round robin; everything random is seeded.

use std::net::IpAddr;

use tandem_config::SchedulerKind;

pub mod ewma;
mod hash;
mod lc;
pub mod maglev;
mod p2c;
mod rr;
mod sh;
#[cfg(test)]
mod testutil;
mod wlc;
mod wrr;

pub use ewma::peak_ewma;

/// A backend the scheduler may choose: `id` is its index in the pool's backend list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: usize,
    pub weight: u32,
}

/// What a request offers for hashing schedulers (`sh`, `maglev`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestKey {
    pub client: Option<IpAddr>,
    /// A hash that takes the place of the client's address (`header` persistence: the hash of
    /// a header value, [`key_hash`]).
    pub hash: Option<u64>,
}

/// The hash of a persistence key (a header value) for [`RequestKey::hash`]: fixed, unkeyed
/// and the same on every node, so every node of a cluster maps a key to the same backend.
pub fn key_hash(bytes: &[u8]) -> u64 {
    hash::mix64(hash::fnv1a64(bytes))
}

/// Live load of the backends, read by load-aware schedulers (`lc`, `wlc`, `p2c`, `ewma`).
pub trait LoadView {
    /// Connections (tcp) or requests (http) in flight to backend `id`.
    fn active(&self, id: usize) -> u32;
    /// Peak-EWMA response time of backend `id` in nanoseconds; 0 when nothing was measured yet.
    fn latency_ewma_ns(&self, id: usize) -> u64;
}

pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// Choose a backend id among the candidates this scheduler was built with, skipping those
    /// for which `accept` is false. `None` when no candidate is acceptable.
    fn pick(
        &self,
        key: &RequestKey,
        load: &dyn LoadView,
        accept: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// Build the scheduler `kind` over `candidates`. `seed` makes randomized schedulers (`p2c`)
/// deterministic in tests. Candidates with weight 0 must already have been filtered out by the
/// caller (any left are dropped here: weight 0 means "no new traffic" in every scheduler, as in
/// IPVS); an empty list yields a scheduler that always returns `None`.
///
/// Building costs O(n) for most kinds, O(n log n) for `sh` and O(M) ≈ a millisecond for
/// `maglev` (table of at least 65537 slots): do it when the candidate set changes, not per
/// request.
pub fn build(kind: SchedulerKind, candidates: &[Candidate], seed: u64) -> Box<dyn Scheduler> {
    let live: Vec<Candidate> = candidates
        .iter()
        .copied()
        .filter(|c| c.weight > 0)
        .collect();
    let c = live.as_slice();
    match kind {
        SchedulerKind::Rr => Box::new(rr::RoundRobin::new(c)),
        SchedulerKind::Wrr => Box::new(wrr::SmoothWeighted::new(c)),
        SchedulerKind::Lc => Box::new(lc::LeastConn::new(c)),
        SchedulerKind::Wlc => Box::new(wlc::WeightedLeastConn::new(c)),
        SchedulerKind::Sh => Box::new(sh::SourceHash::new(c)),
        SchedulerKind::Maglev => Box::new(maglev::Maglev::new(c)),
        SchedulerKind::P2c => Box::new(p2c::PowerOfTwo::new(c, seed)),
        SchedulerKind::Ewma => Box::new(ewma::LeastLatency::new(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn kinds() -> impl Iterator<Item = SchedulerKind> {
        SchedulerKind::ALL.iter().map(|(_, k)| *k)
    }

    fn keys() -> [RequestKey; 3] {
        [no_key(), client(1), client(2)]
    }

    #[test]
    fn empty_gives_none() {
        for kind in kinds() {
            let s = build(kind, &[], 1);
            for k in keys() {
                assert_eq!(s.pick(&k, &Loads::idle(), &all), None, "{kind:?}");
            }
            // Only weight-0 candidates: nothing to choose either.
            let s = build(kind, &cands(&[0, 0]), 1);
            assert_eq!(s.pick(&client(1), &Loads::idle(), &all), None, "{kind:?}");
        }
    }

    #[test]
    fn none_accepted_gives_none() {
        for kind in kinds() {
            for n in [1usize, 2, 3, 17] {
                let s = build(kind, &cands(&vec![2; n]), 3);
                for k in keys() {
                    assert_eq!(s.pick(&k, &Loads::idle(), &|_| false), None, "{kind:?}");
                }
            }
        }
    }

    #[test]
    fn accept_filter_respected_by_all() {
        // Deterministic pseudo-random masks over 9 backends with uneven weights and loads.
        let weights = [1u32, 3, 2, 5, 1, 1, 4, 2, 7];
        let loads = Loads::with_latency(
            &[3, 0, 7, 2, 2, 9, 1, 0, 4],
            &[0, 5_000, 9_000, 1_000, 0, 300, 2_000, 50_000, 7_000],
        );
        for kind in kinds() {
            let s = build(kind, &cands(&weights), 11);
            let mut picked = [0usize; 9];
            for i in 0..3000u64 {
                let mask = hash::mix64(i) & 0x1ff;
                let accept = move |id: usize| mask & (1 << id) != 0;
                let key = if i % 4 == 0 {
                    no_key()
                } else {
                    client(i as u32)
                };
                match s.pick(&key, &loads, &accept) {
                    Some(id) => {
                        assert!(accept(id), "{kind:?} picked rejected {id}");
                        picked[id] += 1;
                    }
                    None => assert_eq!(mask, 0, "{kind:?} gave up with mask {mask:#b}"),
                }
            }
            // Ids are the candidates' own, and nothing outside them comes back.
            assert!(picked.iter().sum::<usize>() > 2900, "{kind:?}");
        }
    }

    #[test]
    fn ids_are_not_positions() {
        // Candidates are a subset of the pool's backends (e.g. 0 and 3 are down).
        let c = [
            Candidate { id: 1, weight: 1 },
            Candidate { id: 2, weight: 2 },
            Candidate { id: 4, weight: 1 },
        ];
        for kind in kinds() {
            let s = build(kind, &c, 5);
            for i in 0..300 {
                let key = if i % 2 == 0 { no_key() } else { client(i) };
                let id = s.pick(&key, &Loads::idle(), &all).unwrap();
                assert!([1, 2, 4].contains(&id), "{kind:?} {id}");
            }
        }
    }

    #[test]
    fn weight_zero_is_dropped() {
        for kind in kinds() {
            let s = build(kind, &cands(&[0, 1, 0]), 2);
            for i in 0..100 {
                let key = if i % 2 == 0 { no_key() } else { client(i) };
                assert_eq!(s.pick(&key, &Loads::idle(), &all), Some(1), "{kind:?}");
            }
        }
    }

    #[test]
    fn pick_does_not_allocate() {
        let weights: Vec<u32> = (1..=20).collect();
        let loads = Loads::with_latency(&[1; 20], &[1_000; 20]);
        for kind in kinds() {
            let s = build(kind, &cands(&weights), 9);
            let allocs = allocations_in(|| {
                for i in 0..2000u32 {
                    let key = if i % 3 == 0 { no_key() } else { client(i) };
                    let accept = move |id: usize| (id as u32 + i) % 4 != 3;
                    std::hint::black_box(s.pick(&key, &loads, &accept));
                    std::hint::black_box(s.pick(&key, &loads, &|_| false));
                }
            });
            assert_eq!(allocs, 0, "{kind:?} allocated in pick");
        }
    }

    #[test]
    fn usable_across_threads() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Scheduler>();
        for kind in kinds() {
            let s = build(kind, &cands(&[1, 2, 3]), 4);
            std::thread::scope(|scope| {
                for t in 0..2 {
                    let s = &s;
                    scope.spawn(move || {
                        for i in 0..5000 {
                            let key = if i % 2 == 0 { no_key() } else { client(i + t) };
                            let id = s.pick(&key, &Loads::idle(), &all).unwrap();
                            assert!(id < 3);
                        }
                    });
                }
            });
        }
    }

    #[test]
    fn debug_is_short() {
        for kind in kinds() {
            let s = build(kind, &cands(&[1; 10]), 0);
            let d = format!("{s:?}");
            assert!(d.len() < 1000, "{kind:?}: {} bytes", d.len());
        }
    }
}
