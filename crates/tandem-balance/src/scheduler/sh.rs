//! `sh`: source-IP hash, as IPVS `sh`: the client address is hashed onto a fixed table whose
//! entries are handed out to the candidates in proportion to their weights.
//!
//! - **Table**: `max(1024, 64 × candidates)` entries, split by largest remainder so each
//!   candidate's share is its weight share within one entry (a candidate always gets at least
//!   one). The table is then shuffled with a fixed seed, so the entry after any entry belongs
//!   to a random other candidate.
//! - **Stable**: the table depends only on the set of `(id, weight)` (candidates are sorted by
//!   id first), and the hash is FNV-1a + SplitMix64 of the address bytes: the same client maps
//!   to the same backend on every node with the same configuration, across restarts. IPv4-mapped
//!   IPv6 addresses hash as IPv4.
//! - **Not consistent**: when the candidate set changes, most clients move. Use `maglev` when
//!   that matters.
//! - **Rejected** (`accept` false, i.e. at `max_connections`): walk the table forward to the
//!   next entry of another candidate (which, thanks to the shuffle, spreads a full backend's
//!   clients evenly over the others); if that finds nothing within `4 × candidates` entries,
//!   try every candidate once in list order. At most `2 × candidates` calls to `accept`.
//! - **No client address** (e.g. a Unix socket listener): round robin.

use std::fmt;
use std::sync::atomic::AtomicUsize;

use super::hash::{ip_hash, mix64, reduce, GOLDEN_GAMMA};
use super::{rr, Candidate, LoadView, RequestKey, Scheduler};

const MIN_TABLE: usize = 1024;
const ENTRIES_PER_CANDIDATE: usize = 64;

pub(crate) struct SourceHash {
    ids: Box<[usize]>,
    table: Box<[u32]>,
    cursor: AtomicUsize,
}

impl fmt::Debug for SourceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceHash")
            .field("ids", &self.ids)
            .field("table_len", &self.table.len())
            .finish()
    }
}

impl SourceHash {
    pub(crate) fn new(candidates: &[Candidate]) -> Self {
        let mut sorted = candidates.to_vec();
        sorted.sort_by_key(|c| c.id);
        let target = MIN_TABLE.max(ENTRIES_PER_CANDIDATE.saturating_mul(sorted.len()));
        let counts = apportion(&sorted, target);
        Self {
            ids: sorted.iter().map(|c| c.id).collect(),
            table: scatter(&counts),
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Scheduler for SourceHash {
    fn pick(
        &self,
        key: &RequestKey,
        _load: &dyn LoadView,
        accept: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match key.hash.or(key.client.map(ip_hash)) {
            Some(h) if !self.table.is_empty() => {
                let bucket = reduce(h, self.table.len());
                table_pick(&self.table, &self.ids, bucket, accept)
            }
            _ => rr::scan(&self.ids, &self.cursor, accept),
        }
    }
}

/// Split `target` entries among the candidates in proportion to their weights (largest
/// remainder), each getting at least one. Returns one count per candidate.
fn apportion(cands: &[Candidate], target: usize) -> Vec<usize> {
    let total: u128 = cands.iter().map(|c| u128::from(c.weight)).sum();
    if total == 0 {
        return vec![1; cands.len()];
    }
    let t = target as u128;
    let mut counts: Vec<usize> = Vec::with_capacity(cands.len());
    let mut rems: Vec<(u128, usize)> = Vec::with_capacity(cands.len());
    for (i, c) in cands.iter().enumerate() {
        let exact = t * u128::from(c.weight);
        counts.push((exact / total) as usize);
        rems.push((exact % total, i));
    }
    let assigned: usize = counts.iter().sum();
    // Largest remainders first; ties by position, so the result is deterministic.
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rems.iter().take(target.saturating_sub(assigned)) {
        counts[i] += 1;
    }
    for c in &mut counts {
        *c = (*c).max(1);
    }
    counts
}

/// Lay out `counts[i]` entries of each candidate `i` (as `u32` positions) over a table of
/// `sum(counts)` slots, shuffled (Fisher-Yates) with a fixed-seed SplitMix64 stream: the layout
/// is a pure function of `counts`, and the entry after any slot belongs to a uniformly random
/// other candidate, so walking forward from a full backend spreads its clients over all others.
/// (A regular interleave would not: with a stride or a round-robin fill, the successors of one
/// candidate's slots all belong to the same one or two candidates.)
fn scatter(counts: &[usize]) -> Box<[u32]> {
    let mut table: Vec<u32> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &count)| std::iter::repeat_n(i as u32, count))
        .collect();
    let mut state: u64 = SHUFFLE_SEED;
    for i in (1..table.len()).rev() {
        state = state.wrapping_add(GOLDEN_GAMMA);
        let j = reduce(mix64(state), i + 1);
        table.swap(i, j);
    }
    table.into_boxed_slice()
}

/// Fixed: part of the client-to-backend mapping (see `hash.rs`).
const SHUFFLE_SEED: u64 = 0x7368_5f74_6162_6c65; // "sh_table"

/// Look up `bucket` in a table of candidate positions; if that candidate is not acceptable,
/// walk the table forward (skipping entries of the hashed candidate and of the one just
/// rejected) for at most `4 × n` entries and `n − 1` calls to `accept`; then try every
/// candidate once in list order after the hashed one, so an acceptable one is always found.
/// Deterministic; O(n) whatever the table size; at most `2 × n` calls to `accept`. Shared by
/// `sh` and `maglev`.
pub(crate) fn table_pick(
    table: &[u32],
    ids: &[usize],
    bucket: usize,
    accept: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let n = ids.len();
    let len = table.len();
    if n == 0 || len == 0 {
        return None;
    }
    let first = table[bucket % len] as usize % n;
    if accept(ids[first]) {
        return Some(ids[first]);
    }
    let mut rejected = first;
    let mut b = bucket % len;
    let mut tries = 0;
    for _ in 0..(len - 1).min(n.saturating_mul(4)) {
        if tries + 1 >= n {
            break;
        }
        b += 1;
        if b == len {
            b = 0;
        }
        let i = table[b] as usize % n;
        if i == rejected || i == first {
            continue;
        }
        tries += 1;
        if accept(ids[i]) {
            return Some(ids[i]);
        }
        rejected = i;
    }
    (1..n).map(|k| ids[(first + k) % n]).find(|&id| accept(id))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::cell::Cell;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn stable_per_ip_and_independent_of_order() {
        let a = SourceHash::new(&cands(&[1, 2, 3, 1]));
        let mut shuffled = cands(&[1, 2, 3, 1]);
        shuffled.reverse();
        let b = SourceHash::new(&shuffled);
        for i in 0..2000 {
            let k = client(i);
            let first = a.pick(&k, &Loads::idle(), &all).unwrap();
            assert_eq!(a.pick(&k, &Loads::idle(), &all), Some(first));
            assert_eq!(b.pick(&k, &Loads::idle(), &all), Some(first));
        }
        // Pinned examples: the mapping is part of the product (see hash.rs).
        let s = SourceHash::new(&cands(&[1, 1, 1]));
        let got: Vec<usize> = (0..8)
            .map(|i| s.pick(&client(i), &Loads::idle(), &all).unwrap())
            .collect();
        let again: Vec<usize> = (0..8)
            .map(|i| {
                SourceHash::new(&cands(&[1, 1, 1]))
                    .pick(&client(i), &Loads::idle(), &all)
                    .unwrap()
            })
            .collect();
        assert_eq!(got, again);
    }

    #[test]
    fn spreads_clients_evenly() {
        // Chi-square against the weight shares; the 0.1% critical values are 13.8 (2 degrees of
        // freedom) and 16.3 (3). The inputs are fixed, so this either always passes or never.
        let s = SourceHash::new(&cands(&[1, 1, 1]));
        let h = histogram(&s, 3, 30_000, &Loads::idle(), |i| client(i as u32), &all);
        let chi = chi_square(&h, &[1, 1, 1]);
        assert!(chi < 13.8, "chi²={chi:.2} {h:?}");

        let s = SourceHash::new(&cands(&[1, 2, 3, 4]));
        let h = histogram(&s, 4, 40_000, &Loads::idle(), |i| client(i as u32), &all);
        let chi = chi_square(&h, &[1, 2, 3, 4]);
        assert!(chi < 16.3, "chi²={chi:.2} {h:?}");
    }

    #[test]
    fn table_shares_follow_weights() {
        let weights = [1u32, 2, 3, 4, 1000];
        let s = SourceHash::new(&cands(&weights));
        let len = s.table.len();
        assert!(len >= MIN_TABLE);
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let got = s.table.iter().filter(|&&e| e as usize == i).count();
            let want = len as f64 * f64::from(w) / f64::from(total);
            assert!((got as f64 - want).abs() <= 1.0, "{i}: {got} vs {want:.1}");
        }
        // A tiny weight still gets an entry.
        let s = SourceHash::new(&cands(&[1, 1_000_000]));
        assert_eq!(s.table.iter().filter(|&&e| e == 0).count(), 1);
    }

    #[test]
    fn full_backend_spills_over_others_and_others_stay() {
        let s = SourceHash::new(&cands(&[1, 1, 1, 1, 1]));
        let full = 2usize;
        let accept = |id: usize| id != full;
        let mut spill = [0usize; 5];
        for i in 0..20_000 {
            let k = client(i);
            let home = s.pick(&k, &Loads::idle(), &all).unwrap();
            let now = s.pick(&k, &Loads::idle(), &accept).unwrap();
            assert_ne!(now, full);
            if home == full {
                spill[now] += 1;
            } else {
                assert_eq!(now, home, "a client of an accepting backend moved");
            }
        }
        let moved: usize = spill.iter().sum();
        for (id, &c) in spill.iter().enumerate() {
            if id != full {
                let share = c as f64 / moved as f64;
                assert!((0.15..0.35).contains(&share), "spill {spill:?}");
            }
        }
    }

    #[test]
    fn walk_is_bounded_and_exhaustive() {
        let s = SourceHash::new(&cands(&[1; 50]));
        let calls = Cell::new(0);
        let none = |_: usize| {
            calls.set(calls.get() + 1);
            false
        };
        assert_eq!(s.pick(&client(7), &Loads::idle(), &none), None);
        assert!(calls.get() <= 100, "{} accept calls", calls.get());
        // The walk stops after 4 × n entries (not a walk over a 65537-slot table when a few
        // candidates are full): a table [0, 1, 1, ..., 1, 3] with 1 full walks past 16 entries
        // of 1, gives up, and the scan in list order finds 2 before 3.
        let mut table = vec![1u32; 1000];
        table[0] = 0;
        table[999] = 3;
        let ids = [10, 11, 12, 13];
        let accept = |id: usize| id == 12 || id == 13;
        assert_eq!(table_pick(&table, &ids, 0, &accept), Some(12));
        // Within reach, the walk finds 3 first.
        table[10] = 3;
        assert_eq!(table_pick(&table, &ids, 0, &accept), Some(13));
        // Only the last candidate in list order is acceptable: it is still found.
        for i in 0..200 {
            assert_eq!(s.pick(&client(i), &Loads::idle(), &|id| id == 49), Some(49));
        }
    }

    #[test]
    fn a_key_hash_replaces_the_client_address() {
        let s = SourceHash::new(&cands(&[1, 1, 1, 1]));
        let with = |client: u32, hash: u64| RequestKey {
            client: Some(IpAddr::V4(client.into())),
            hash: Some(hash),
        };
        // Same hash, different clients: same backend; different hashes spread.
        let a = s.pick(
            &with(1, crate::scheduler::key_hash(b"tenant-a")),
            &Loads::idle(),
            &all,
        );
        for c in 2..50 {
            assert_eq!(
                s.pick(
                    &with(c, crate::scheduler::key_hash(b"tenant-a")),
                    &Loads::idle(),
                    &all
                ),
                a
            );
        }
        let picks: std::collections::HashSet<_> = (0..64u32)
            .filter_map(|t| {
                s.pick(
                    &with(
                        1,
                        crate::scheduler::key_hash(format!("tenant-{t}").as_bytes()),
                    ),
                    &Loads::idle(),
                    &all,
                )
            })
            .collect();
        assert_eq!(picks.len(), 4);
    }

    #[test]
    fn no_address_is_round_robin_and_ipv6_works() {
        let s = SourceHash::new(&cands(&[1, 1, 1]));
        let h = histogram(&s, 3, 300, &Loads::idle(), |_| no_key(), &all);
        assert_eq!(h, [100, 100, 100]);
        let v6 = RequestKey {
            client: Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            hash: None,
        };
        let id = s.pick(&v6, &Loads::idle(), &all).unwrap();
        assert_eq!(s.pick(&v6, &Loads::idle(), &all), Some(id));
        assert_eq!(SourceHash::new(&[]).pick(&v6, &Loads::idle(), &all), None);
        assert_eq!(
            SourceHash::new(&[]).pick(&no_key(), &Loads::idle(), &all),
            None
        );
    }
}
