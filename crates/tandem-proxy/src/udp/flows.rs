//! The flow table of one udp service on one worker: which client address:port is talking to
//! which backend, when each flow was last active, how many replies it got, and which flows
//! have been idle long enough to close.
//!
//! Pure: no sockets and no clock; every call that needs the time takes it as an argument. The
//! value stored per flow (`T`) is the shell's business (its upstream socket, backend slot and
//! reply task); the table only decides when a flow ends and hands the value back.
//!
//! Expiry uses a min-heap of deadlines with one entry per live flow. An entry may be early (the
//! flow was active since it was pushed): when it comes due it is checked against the flow's
//! real deadline and pushed again if the flow is still live. Flows removed before their
//! deadline (`responses` reached, backend failed) leave a stale entry behind, which is skipped
//! when it comes due; the heap is rebuilt when stale entries outnumber live ones, so its size
//! stays proportional to the open flows, however many flows a busy DNS service opens and
//! closes within one idle timeout.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One open flow.
#[derive(Debug)]
struct Flow<T> {
    /// Tells this flow apart from an earlier or later flow of the same client address.
    id: u64,
    /// The last datagram either way.
    last: Instant,
    /// Datagrams from the backend so far.
    replies: u32,
    value: T,
}

/// What a reply from the backend means for its flow (see [`FlowTable::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The flow is not (or no longer) in the table: it was closed meanwhile.
    Gone,
    /// Counted; the flow stays open. `first` is true for the flow's first reply.
    Open { first: bool },
    /// This reply reached the service's `responses`: forward it, then close the flow.
    Last { first: bool },
}

/// Why a new flow was not added.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused<T> {
    /// The table holds `max` flows already.
    Full(T),
}

#[derive(Debug)]
pub(crate) struct FlowTable<T> {
    flows: HashMap<SocketAddr, Flow<T>>,
    /// `(deadline, flow id, client)`, earliest first; see the module documentation.
    deadlines: BinaryHeap<Reverse<(Instant, u64, SocketAddr)>>,
    idle: Duration,
    max: usize,
    next_id: u64,
}

impl<T> FlowTable<T> {
    /// A table closing flows idle for `idle`, holding at most `max` (at least 1).
    pub(crate) fn new(idle: Duration, max: usize) -> Self {
        FlowTable {
            flows: HashMap::new(),
            deadlines: BinaryHeap::new(),
            idle,
            max: max.max(1),
            next_id: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.flows.len() >= self.max
    }

    /// The flow of `client`, counted as active at `now` (a datagram from the client): its id
    /// and value.
    pub(crate) fn touch(&mut self, client: SocketAddr, now: Instant) -> Option<(u64, &mut T)> {
        let f = self.flows.get_mut(&client)?;
        f.last = f.last.max(now);
        Some((f.id, &mut f.value))
    }

    /// The value of flow `id` of `client`, if that flow is still open.
    pub(crate) fn get_mut(&mut self, client: SocketAddr, id: u64) -> Option<&mut T> {
        self.flows
            .get_mut(&client)
            .filter(|f| f.id == id)
            .map(|f| &mut f.value)
    }

    /// Open a flow for `client` at `now`; returns its id. A flow `client` already had is
    /// replaced, and its value returned with the id, for the caller to close. Refused when the
    /// table is full (and `client` had no flow), handing `value` back.
    pub(crate) fn insert(
        &mut self,
        client: SocketAddr,
        value: T,
        now: Instant,
    ) -> Result<(u64, Option<T>), Refused<T>> {
        let old = self.remove(client);
        if old.is_none() && self.is_full() {
            return Err(Refused::Full(value));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.flows.insert(
            client,
            Flow {
                id,
                last: now,
                replies: 0,
                value,
            },
        );
        self.deadlines.push(Reverse((now + self.idle, id, client)));
        Ok((id, old))
    }

    /// A datagram from the backend of flow `id` of `client` at `now`: counts as activity and
    /// as one of the flow's `responses` (none: unlimited).
    pub(crate) fn reply(
        &mut self,
        client: SocketAddr,
        id: u64,
        now: Instant,
        responses: Option<u32>,
    ) -> Reply {
        let Some(f) = self.flows.get_mut(&client).filter(|f| f.id == id) else {
            return Reply::Gone;
        };
        f.last = f.last.max(now);
        f.replies = f.replies.saturating_add(1);
        let first = f.replies == 1;
        match responses {
            Some(n) if f.replies >= n => Reply::Last { first },
            _ => Reply::Open { first },
        }
    }

    /// Close the flow of `client`, whatever its id.
    pub(crate) fn remove(&mut self, client: SocketAddr) -> Option<T> {
        let f = self.flows.remove(&client)?;
        self.compact();
        Some(f.value)
    }

    /// Close flow `id` of `client` if it is still the open one (a reply task closing its own
    /// flow must not close a newer flow of the same client).
    pub(crate) fn remove_flow(&mut self, client: SocketAddr, id: u64) -> Option<T> {
        if self.flows.get(&client)?.id != id {
            return None;
        }
        self.remove(client)
    }

    /// When the next flow may be due to expire: not before this.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Close every flow idle for the idle timeout at `now`; their values, oldest first.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(&Reverse((at, id, client))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(f) = self.flows.get(&client).filter(|f| f.id == id) else {
                continue; // stale: that flow is closed already
            };
            let due = f.last + self.idle;
            if due <= now {
                if let Some(f) = self.flows.remove(&client) {
                    out.push(f.value);
                }
            } else {
                self.deadlines.push(Reverse((due, id, client)));
            }
        }
        self.compact();
        out
    }

    /// Change the idle timeout (shutdown shortens it); flows already idle that long expire at
    /// the next [`Self::expire`].
    pub(crate) fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
        self.rebuild();
    }

    /// Rebuild the heap when stale entries outnumber live flows.
    fn compact(&mut self) {
        if self.deadlines.len() > 2 * self.flows.len() + 64 {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let idle = self.idle;
        self.deadlines = self
            .flows
            .iter()
            .map(|(c, f)| Reverse((f.last + idle, f.id, *c)))
            .collect();
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn flows_are_per_client_address_and_port() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(1000), 10);
        let (a, _) = t.insert(client(1), "a", t0).unwrap();
        let (b, _) = t.insert(client(2), "b", t0).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.touch(client(1), t0).map(|(id, v)| (id, *v)),
            Some((a, "a"))
        );
        assert_eq!(t.get_mut(client(2), b).map(|v| *v), Some("b"));
        assert!(t.get_mut(client(2), a).is_none(), "another flow's id");
        assert!(t.touch(client(3), t0).is_none());
        // Same IP, another port: another flow.
        assert!(t.touch(SocketAddr::from(([192, 0, 2, 2], 1)), t0).is_none());
    }

    #[test]
    fn idle_flows_expire_and_active_ones_do_not() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(300), 10);
        t.insert(client(1), 1, t0).unwrap();
        t.insert(client(2), 2, t0).unwrap();
        assert_eq!(t.next_deadline(), Some(t0 + ms(300)));
        assert!(t.expire(t0 + ms(299)).is_empty());
        // Client 2 speaks at 200 ms: its deadline moves to 500 ms.
        t.touch(client(2), t0 + ms(200)).unwrap();
        assert_eq!(t.expire(t0 + ms(300)), vec![1]);
        assert_eq!(t.len(), 1);
        // The early entry was pushed again at the real deadline.
        assert_eq!(t.next_deadline(), Some(t0 + ms(500)));
        assert!(t.expire(t0 + ms(499)).is_empty());
        assert_eq!(t.expire(t0 + ms(500)), vec![2]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn replies_count_as_activity() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(300), 10);
        let (id, _) = t.insert(client(1), (), t0).unwrap();
        assert_eq!(
            t.reply(client(1), id, t0 + ms(250), None),
            Reply::Open { first: true }
        );
        assert_eq!(
            t.reply(client(1), id, t0 + ms(260), None),
            Reply::Open { first: false }
        );
        assert!(t.expire(t0 + ms(400)).is_empty());
        assert_eq!(t.expire(t0 + ms(560)).len(), 1);
    }

    #[test]
    fn responses_limit_ends_the_flow_on_the_nth_reply() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(1000), 10);
        let (id, _) = t.insert(client(1), (), t0).unwrap();
        assert_eq!(
            t.reply(client(1), id, t0, Some(1)),
            Reply::Last { first: true }
        );
        let (id2, _) = t.insert(client(2), (), t0).unwrap();
        assert_eq!(
            t.reply(client(2), id2, t0, Some(3)),
            Reply::Open { first: true }
        );
        assert_eq!(
            t.reply(client(2), id2, t0, Some(3)),
            Reply::Open { first: false }
        );
        assert_eq!(
            t.reply(client(2), id2, t0, Some(3)),
            Reply::Last { first: false }
        );
        // The caller closes it; a late reply then finds it gone.
        assert_eq!(t.remove_flow(client(2), id2), Some(()));
        assert_eq!(t.reply(client(2), id2, t0, Some(3)), Reply::Gone);
    }

    #[test]
    fn a_reply_task_never_touches_a_newer_flow_of_the_same_client() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(1000), 10);
        let (old, _) = t.insert(client(1), "old", t0).unwrap();
        // Replaced (its backend went down): the old value comes back to be closed.
        let (new, replaced) = t.insert(client(1), "new", t0).unwrap();
        assert_eq!(replaced, Some("old"));
        assert_eq!(t.reply(client(1), old, t0, Some(1)), Reply::Gone);
        assert_eq!(t.remove_flow(client(1), old), None);
        assert!(t.get_mut(client(1), old).is_none());
        assert_eq!(t.get_mut(client(1), new).map(|v| *v), Some("new"));
        assert_eq!(t.len(), 1);
        // The old flow's heap entry is stale and skipped.
        assert!(t.expire(t0 + ms(999)).is_empty());
        assert_eq!(t.expire(t0 + ms(1000)), vec!["new"]);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(1000), 2);
        t.insert(client(1), 1, t0).unwrap();
        t.insert(client(2), 2, t0).unwrap();
        assert!(t.is_full());
        assert_eq!(t.insert(client(3), 3, t0), Err(Refused::Full(3)));
        // Replacing an existing client's flow is not growth.
        assert!(t.insert(client(2), 22, t0).is_ok());
        t.remove(client(1));
        assert!(!t.is_full());
        assert!(t.insert(client(3), 3, t0).is_ok());
        // A table of 0 holds one.
        let mut z = FlowTable::new(ms(1), 0);
        assert!(z.insert(client(1), (), t0).is_ok());
        assert!(z.is_full());
    }

    #[test]
    fn stale_heap_entries_do_not_pile_up() {
        // A DNS-like load: many short flows closed by `responses` long before the idle timeout.
        let t0 = Instant::now();
        let mut t = FlowTable::new(Duration::from_secs(30), 100);
        for i in 0..10_000u16 {
            let now = t0 + ms(u64::from(i));
            let (id, _) = t.insert(client(i), i, now).unwrap();
            if t.reply(client(i), id, now, Some(1)) == (Reply::Last { first: true }) {
                t.remove_flow(client(i), id);
            }
        }
        assert!(t.is_empty());
        assert!(t.heap_len() <= 64 + 1, "heap holds {}", t.heap_len());
    }

    #[test]
    fn shortening_the_idle_timeout_for_shutdown() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(Duration::from_secs(30), 10);
        t.insert(client(1), 1, t0).unwrap();
        t.insert(client(2), 2, t0 + ms(900)).unwrap();
        t.set_idle(Duration::from_secs(1));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.expire(t0 + ms(1000)), vec![1]);
        assert_eq!(t.expire(t0 + ms(1900)), vec![2]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn touch_never_moves_time_backwards() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(ms(100), 10);
        t.insert(client(1), (), t0 + ms(50)).unwrap();
        t.touch(client(1), t0).unwrap();
        assert!(t.expire(t0 + ms(149)).is_empty());
        assert_eq!(t.expire(t0 + ms(150)).len(), 1);
    }
}
