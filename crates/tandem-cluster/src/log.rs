//! The ordered log of this node's changes, with sequence numbers: what peers stream from and
//! resume in (the binlog of the database analogy).
//!
//! Kept in memory, bounded: the oldest records go first once `capacity` is reached, and a peer
//! that asks for a position older than the log's start gets a snapshot instead. The log's
//! `epoch` (random, per process) tells a peer that positions it holds from a previous run of
//! this node mean nothing now.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::record::Record;

pub struct ChangeLog {
    epoch: u64,
    capacity: usize,
    inner: Mutex<Inner>,
    appended: Notify,
}

struct Inner {
    /// Sequence number of `entries[0]`.
    start: u64,
    entries: VecDeque<Record>,
}

/// Asked for a position the log no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl ChangeLog {
    /// An empty log whose first record will have sequence number 1 (0 is never used, so a
    /// fresh peer can say "nothing yet").
    pub fn new(epoch: u64, capacity: usize) -> Self {
        Self {
            epoch,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                start: 1,
                entries: VecDeque::new(),
            }),
            appended: Notify::new(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sequence number the next record will get.
    pub fn head(&self) -> u64 {
        let i = self.lock();
        i.start + i.entries.len() as u64
    }

    /// The oldest sequence number still held.
    pub fn start(&self) -> u64 {
        self.lock().start
    }

    /// Appends records in order and wakes the streams.
    pub fn append(&self, records: impl IntoIterator<Item = Record>) {
        let mut any = false;
        {
            let mut i = self.lock();
            for r in records {
                if i.entries.len() == self.capacity {
                    i.entries.pop_front();
                    i.start += 1;
                }
                i.entries.push_back(r);
                any = true;
            }
        }
        if any {
            self.appended.notify_waiters();
        }
    }

    /// Whether a stream can resume at `seq` (it is held, or is the head).
    pub fn holds(&self, seq: u64) -> bool {
        let i = self.lock();
        seq >= i.start && seq <= i.start + i.entries.len() as u64
    }

    /// Up to `max` records from `seq` on, appended to `out` with their sequence numbers.
    pub fn read(&self, seq: u64, max: usize, out: &mut Vec<(u64, Record)>) -> Result<(), Gone> {
        let i = self.lock();
        if seq < i.start {
            return Err(Gone);
        }
        let skip = usize::try_from(seq - i.start).unwrap_or(usize::MAX);
        for (k, r) in i.entries.iter().enumerate().skip(skip).take(max) {
            out.push((i.start + k as u64, r.clone()));
        }
        Ok(())
    }

    /// Waits until the head is beyond `seq` (or is already).
    pub async fn wait_beyond(&self, seq: u64) {
        loop {
            let notified = self.appended.notified();
            if self.head() > seq {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u64) -> Record {
        Record::Sticky {
            service: "s".into(),
            key: std::net::IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
            backend: "127.0.0.1:1".parse().unwrap(),
            last_seen_ms: n,
        }
    }

    #[test]
    fn sequence_numbers_bounds_and_resume_positions() {
        let log = ChangeLog::new(7, 4);
        assert_eq!((log.head(), log.start()), (1, 1));
        assert!(log.holds(1));
        log.append((1..=3).map(r));
        assert_eq!(log.head(), 4);
        let mut out = Vec::new();
        log.read(2, 10, &mut out).unwrap();
        assert_eq!(out, vec![(2, r(2)), (3, r(3))]);
        // Over capacity: the oldest go, and resuming before the start is refused.
        log.append((4..=6).map(r));
        assert_eq!((log.start(), log.head()), (3, 7));
        assert!(!log.holds(2) && log.holds(3) && log.holds(7) && !log.holds(8));
        assert_eq!(log.read(2, 10, &mut Vec::new()), Err(Gone));
        let mut out = Vec::new();
        log.read(5, 1, &mut out).unwrap();
        assert_eq!(out, vec![(5, r(5))]);
        let mut out = Vec::new();
        log.read(7, 10, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
