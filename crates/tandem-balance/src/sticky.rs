//! The sticky table of `source_ip` persistence: client address (masked) → backend, with an
//! idle timeout and a bounded size (least recently used entries go first).
//!
//! Pure: time is an argument. The table is sharded by key so data-plane workers rarely meet
//! on one lock; each shard is a hash map plus a recency queue with lazy deletion (a touch
//! appends the key again with a new generation, and older queue items of that key are
//! skipped when they reach the front), which keeps every operation O(1) amortized without an
//! intrusive list.
//!
//! Backends are stored by address, not by index, so an entry means the same on every node of
//! a cluster and across a reload that reorders a pool.
//!
//! Every change a peer needs to know is returned as a [`Change`] (new or moved binding, or a
//! refresh of one that was last announced more than a quarter of the timeout ago): the table
//! does not know about replication; whoever calls it forwards the changes.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards: a power of two well above the worker count of any machine we run on.
const SHARDS: usize = 16;

/// One binding as the replication stream carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub key: IpAddr,
    pub backend: SocketAddr,
    /// How long ago the client was last seen, when the change was made: the receiver's entry
    /// expires when the sender's would.
    pub idle: Duration,
}

/// A read-only view of one entry, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView {
    pub key: IpAddr,
    pub backend: SocketAddr,
    pub idle: Duration,
    /// Time left before it expires.
    pub expires_in: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StickyCounters {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries removed because the table was full.
    pub evicted: u64,
    /// Entries removed because they were idle for `timeout`.
    pub expired: u64,
}

#[derive(Debug)]
struct Slot {
    backend: SocketAddr,
    last_seen: Instant,
    /// When this binding was last handed out as a [`Change`].
    announced: Instant,
    generation: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<IpAddr, Slot>,
    /// Keys in order of last touch; an item is current only if its generation matches the
    /// slot's.
    recency: VecDeque<(IpAddr, u64)>,
    next_generation: u64,
    counters: StickyCounters,
}

impl Shard {
    fn touch(&mut self, key: IpAddr) -> u64 {
        self.next_generation += 1;
        let g = self.next_generation;
        self.recency.push_back((key, g));
        // Stale queue items pile up when the same keys are touched over and over; rebuild
        // once they outnumber the live ones, so memory stays proportional to the entries.
        if self.recency.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.recency
                .retain(|(k, g)| map.get(k).is_some_and(|s| s.generation == *g));
        }
        g
    }

    /// Removes stale queue items at the front and, while `pred` holds for the live front
    /// entry, that entry; returns how many entries were removed.
    fn pop_front_while(&mut self, mut pred: impl FnMut(&Slot) -> bool) -> u64 {
        let mut removed = 0;
        while let Some(&(key, g)) = self.recency.front() {
            match self.map.get(&key) {
                Some(slot) if slot.generation == g => {
                    if !pred(slot) {
                        break;
                    }
                    self.map.remove(&key);
                    removed += 1;
                }
                _ => {}
            }
            self.recency.pop_front();
        }
        removed
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct StickyTable {
    timeout: Duration,
    max_per_shard: usize,
    shards: Box<[Mutex<Shard>]>,
}

impl StickyTable {
    /// A table whose entries expire after `timeout` without a touch and which holds at most
    /// about `max_entries` (rounded up to a multiple of the shard count).
    pub fn new(timeout: Duration, max_entries: usize) -> Self {
        Self {
            timeout,
            max_per_shard: max_entries.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn shard(&self, key: &IpAddr) -> std::sync::MutexGuard<'_, Shard> {
        let h = match key {
            IpAddr::V4(a) => u64::from(u32::from(*a)),
            IpAddr::V6(a) => {
                let n = u128::from(*a);
                (n as u64) ^ ((n >> 64) as u64)
            }
        };
        // Fibonacci hashing: neighbouring addresses land on different shards.
        let i = (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend `key` is bound to, if the binding is live; a hit refreshes it. The second
    /// value is a refresh to announce to peers (see the module docs).
    pub fn lookup(&self, key: IpAddr, now: Instant) -> (Option<SocketAddr>, Option<Change>) {
        let timeout = self.timeout;
        let mut shard = self.shard(&key);
        let live = shard
            .map
            .get(&key)
            .map(|s| now.saturating_duration_since(s.last_seen) < timeout);
        match live {
            Some(true) => {
                shard.counters.hits += 1;
                let g = shard.touch(key);
                let Some(slot) = shard.map.get_mut(&key) else {
                    return (None, None);
                };
                slot.last_seen = now;
                slot.generation = g;
                let backend = slot.backend;
                let announce = now.saturating_duration_since(slot.announced) >= timeout / 4;
                if announce {
                    slot.announced = now;
                }
                let change = announce.then_some(Change {
                    key,
                    backend,
                    idle: Duration::ZERO,
                });
                (Some(backend), change)
            }
            Some(false) => {
                shard.map.remove(&key);
                shard.counters.expired += 1;
                shard.counters.misses += 1;
                (None, None)
            }
            None => {
                shard.counters.misses += 1;
                (None, None)
            }
        }
    }

    /// Binds `key` to `backend` (new, or moved because the old backend is gone) and returns
    /// the change to announce.
    pub fn bind(&self, key: IpAddr, backend: SocketAddr, now: Instant) -> Change {
        self.insert(key, backend, now, now);
        Change {
            key,
            backend,
            idle: Duration::ZERO,
        }
    }

    /// Applies a peer's change: the entry is as fresh as it was on the peer.
    pub fn apply(&self, change: &Change, now: Instant) {
        if change.idle >= self.timeout {
            return;
        }
        let last_seen = now.checked_sub(change.idle).unwrap_or(now);
        // Announced "now" from our point of view: we never re-announce what a peer sent.
        self.insert(change.key, change.backend, last_seen, now);
    }

    fn insert(&self, key: IpAddr, backend: SocketAddr, last_seen: Instant, announced: Instant) {
        let max = self.max_per_shard;
        let mut shard = self.shard(&key);
        let g = shard.touch(key);
        shard.map.insert(
            key,
            Slot {
                backend,
                last_seen,
                announced,
                generation: g,
            },
        );
        if shard.map.len() > max {
            let mut excess = shard.map.len() - max;
            let evicted = shard.pop_front_while(|_| {
                let go = excess > 0;
                excess = excess.saturating_sub(1);
                go
            });
            shard.counters.evicted += evicted;
        }
    }

    /// Removes the binding of `key` (its backend was removed from the pool).
    pub fn remove(&self, key: IpAddr) -> bool {
        self.shard(&key).map.remove(&key).is_some()
    }

    /// Removes every entry idle for `timeout`; returns how many. Entries leave in recency
    /// order, so this stops at the first live one of each shard.
    pub fn sweep(&self, now: Instant) -> usize {
        let timeout = self.timeout;
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let removed =
                shard.pop_front_while(|s| now.saturating_duration_since(s.last_seen) >= timeout);
            shard.counters.expired += removed;
            n += removed as usize;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn counters(&self) -> StickyCounters {
        let mut c = StickyCounters::default();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            c.hits += s.counters.hits;
            c.misses += s.counters.misses;
            c.evicted += s.counters.evicted;
            c.expired += s.counters.expired;
        }
        c
    }

    /// Every live entry as a [`Change`] (a snapshot for a peer that needs a full resync).
    pub fn snapshot(&self, now: Instant) -> Vec<Change> {
        self.entries(now, usize::MAX)
            .into_iter()
            .map(|e| Change {
                key: e.key,
                backend: e.backend,
                idle: e.idle,
            })
            .collect()
    }

    /// Up to `limit` live entries, most recently seen first within each shard.
    pub fn entries(&self, now: Instant, limit: usize) -> Vec<EntryView> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            for (key, slot) in &s.map {
                if out.len() >= limit {
                    return out;
                }
                let idle = now.saturating_duration_since(slot.last_seen);
                if idle < self.timeout {
                    out.push(EntryView {
                        key: *key,
                        backend: slot.backend,
                        idle,
                        expires_in: self.timeout - idle,
                    });
                }
            }
        }
        out
    }
}

/// `addr` with only its first `bits` bits kept (IPv4 `v4_bits`, IPv6 `v6_bits`), so clients
/// of one network share an entry.
pub fn mask(addr: IpAddr, v4_bits: u8, v6_bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(v4_bits.min(32));
            let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            // An IPv4 client on a dual-stack socket is an IPv4 client.
            if let Some(v4) = a.to_ipv4_mapped() {
                return mask(IpAddr::V4(v4), v4_bits, v6_bits);
            }
            let bits = u32::from(v6_bits.min(128));
            let m = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn be(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bind_lookup_refresh_and_idle_expiry() {
        let t0 = Instant::now();
        let t = StickyTable::new(Duration::from_secs(360), 1000);
        assert_eq!(t.lookup(ip("198.51.100.7"), t0), (None, None));
        t.bind(ip("198.51.100.7"), be("127.0.0.1:8001"), t0);
        // A hit within the timeout refreshes the entry...
        let (hit, change) = t.lookup(ip("198.51.100.7"), t0 + Duration::from_secs(300));
        assert_eq!(hit, Some(be("127.0.0.1:8001")));
        // ...and, last announced 300 s ago (> timeout / 4), is announced again.
        assert_eq!(
            change,
            Some(Change {
                key: ip("198.51.100.7"),
                backend: be("127.0.0.1:8001"),
                idle: Duration::ZERO
            })
        );
        // Announced 30 s ago (< 90 s): a hit, not announced again.
        let (hit, change) = t.lookup(ip("198.51.100.7"), t0 + Duration::from_secs(330));
        assert_eq!(hit, Some(be("127.0.0.1:8001")));
        assert_eq!(change, None);
        // Idle for the whole timeout: gone.
        let (hit, _) = t.lookup(ip("198.51.100.7"), t0 + Duration::from_secs(690));
        assert_eq!(hit, None);
        assert!(t.is_empty());
        let c = t.counters();
        assert_eq!((c.hits, c.misses, c.expired), (2, 2, 1));
    }

    #[test]
    fn least_recently_used_entries_go_first_when_full() {
        let t0 = Instant::now();
        // 4 entries per shard; many keys go in while one is used throughout.
        let t = StickyTable::new(Duration::from_secs(3600), 4 * SHARDS);
        let keep = ip("203.0.113.1");
        t.bind(keep, be("127.0.0.1:1"), t0);
        for i in 0..2000u32 {
            let now = t0 + Duration::from_millis(u64::from(i) + 1);
            let key = IpAddr::V4((0xC633_6400 + i).into()); // 198.51.100.0 + i
            t.bind(key, be("127.0.0.1:2"), now);
            assert!(t.lookup(keep, now).0.is_some(), "the key in use survives");
            assert!(t.len() <= 4 * SHARDS);
        }
        assert_eq!(t.counters().evicted, 2001 - t.len() as u64);
    }

    #[test]
    fn sweep_removes_only_idle_entries() {
        let t0 = Instant::now();
        let t = StickyTable::new(Duration::from_secs(10), 1000);
        for i in 0..100u32 {
            t.bind(IpAddr::V4(i.into()), be("127.0.0.1:1"), t0);
        }
        for i in 0..10u32 {
            t.lookup(IpAddr::V4(i.into()), t0 + Duration::from_secs(8));
        }
        assert_eq!(t.sweep(t0 + Duration::from_secs(9)), 0);
        assert_eq!(t.sweep(t0 + Duration::from_secs(10)), 90);
        assert_eq!(t.len(), 10);
        assert_eq!(t.sweep(t0 + Duration::from_secs(18)), 10);
        assert!(t.is_empty());
    }

    #[test]
    fn applied_changes_keep_the_senders_age() {
        let t0 = Instant::now() + Duration::from_secs(1000);
        let t = StickyTable::new(Duration::from_secs(60), 1000);
        let c = Change {
            key: ip("198.51.100.0"),
            backend: be("127.0.0.1:8002"),
            idle: Duration::from_secs(50),
        };
        t.apply(&c, t0);
        assert_eq!(
            t.lookup(c.key, t0 + Duration::from_secs(9)).0,
            Some(c.backend)
        );
        let t2 = StickyTable::new(Duration::from_secs(60), 1000);
        t2.apply(&c, t0);
        assert_eq!(t2.lookup(c.key, t0 + Duration::from_secs(10)).0, None);
        // Already expired at the sender: ignored.
        t2.apply(
            &Change {
                idle: Duration::from_secs(60),
                ..c
            },
            t0,
        );
        assert!(t2.is_empty());
        assert_eq!(t.snapshot(t0).len(), 1);
    }

    #[test]
    fn masks() {
        assert_eq!(mask(ip("198.51.100.77"), 24, 64), ip("198.51.100.0"));
        assert_eq!(mask(ip("198.51.100.77"), 32, 64), ip("198.51.100.77"));
        assert_eq!(mask(ip("198.51.100.77"), 0, 64), ip("0.0.0.0"));
        assert_eq!(mask(ip("2001:db8:1:2:3::9"), 24, 48), ip("2001:db8:1::"));
        assert_eq!(mask(ip("2001:db8::9"), 24, 128), ip("2001:db8::9"));
        assert_eq!(mask(ip("::ffff:198.51.100.77"), 24, 64), ip("198.51.100.0"));
    }
}
