//! Recent state changes: a bounded ring for `GET /api/v1/events` and a broadcast for the
//! server-sent event stream.
//!
//! Emitters (health reports, the pool tick, VRRP notifiers, operator actions, a reload) call
//! [`Events::push`] from wherever they run. Publishing takes one short mutex (to append to the
//! ring and assign the sequence number, so ring order and sequence order agree) and a
//! non-blocking `broadcast::send`: it never waits for a reader. A stream client that falls
//! more than [`STREAM_BUFFER`] events behind loses the oldest ones; the loss is counted and
//! the client told (an SSE `lagged` event), never made to slow the emitter down.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for `GET /api/v1/events` and for resuming a stream (`Last-Event-ID`).
pub const DEFAULT_CAPACITY: usize = 512;

/// Events a stream client may be behind before it starts losing them.
pub const STREAM_BUFFER: usize = 256;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A backend's active checks reached a verdict: up.
    BackendUp,
    /// A backend's active checks reached a verdict: down.
    BackendDown,
    /// Passive detection took a backend out of rotation.
    BackendEjected,
    /// An ejection ended (its time ran out or a check passed).
    BackendReturned,
    /// An operator drained, disabled or enabled a backend, or set its weight.
    Operator,
    /// A VRRP instance changed state.
    Vrrp,
    /// A cluster peer's stream connected or dropped.
    PeerUp,
    PeerDown,
    /// The configuration was reloaded (or a reload failed).
    Reload,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BackendUp => "backend_up",
            EventKind::BackendDown => "backend_down",
            EventKind::BackendEjected => "backend_ejected",
            EventKind::BackendReturned => "backend_returned",
            EventKind::Operator => "operator",
            EventKind::Vrrp => "vrrp",
            EventKind::PeerUp => "peer_up",
            EventKind::PeerDown => "peer_down",
            EventKind::Reload => "reload",
        }
    }
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increases by one per event from 1, for the life of the process: the SSE `id`.
    pub seq: u64,
    /// RFC 3339 time of the change.
    pub at: String,
    pub kind: EventKind,
    /// One line for people, e.g. `p/127.0.0.1:8001 down: connect refused`.
    pub message: String,
    /// The facts, for programs: `pool`, `backend`, `reason`, `instance`, `from`, `to`...
    /// Keys and values are strings so every event has the same shape.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The shared event log. Cheap to clone (an `Arc`); every clone publishes to the same ring.
#[derive(Debug, Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Events stream clients missed because they read too slowly.
    lagged: AtomicU64,
}

#[derive(Debug)]
struct Ring {
    capacity: usize,
    next_seq: u64,
    events: VecDeque<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new(DEFAULT_CAPACITY)
    }
}

impl Events {
    /// A log keeping the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(STREAM_BUFFER);
        Events {
            inner: Arc::new(Inner {
                ring: Mutex::new(Ring {
                    capacity,
                    next_seq: 1,
                    events: VecDeque::with_capacity(capacity),
                }),
                tx,
                lagged: AtomicU64::new(0),
            }),
        }
    }

    /// Record an event now and publish it to every stream; returns its sequence number.
    ///
    /// `fields` are `(name, value)` pairs, e.g. `[("pool", "web"), ("backend", addr)]`.
    /// Never blocks on a reader and never fails.
    pub fn push<K, V>(
        &self,
        kind: EventKind,
        message: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> u64
    where
        K: Into<String>,
        V: ToString,
    {
        let fields = fields
            .into_iter()
            .map(|(k, v)| (k.into(), serde_json::Value::String(v.to_string())))
            .collect();
        let at = crate::time::rfc3339(SystemTime::now());
        let mut ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let event = Arc::new(Event {
            seq,
            at,
            kind,
            message: message.into(),
            fields,
        });
        if ring.events.len() == ring.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::clone(&event));
        // Sent under the lock so that streams see events in sequence order. `send` only fails
        // when nobody is subscribed, which is fine.
        let _ = self.inner.tx.send(event);
        seq
    }

    /// The kept events with a sequence number above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Arc<Event>> {
        let ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner
            .ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq
    }

    /// Subscribe to new events *and* get the kept ones after `after`, with no gap or
    /// duplicate between the two: the subscription is taken under the ring's lock.
    pub fn subscribe_after(
        &self,
        after: u64,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.inner.tx.subscribe();
        let backlog = ring
            .events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        (backlog, rx)
    }

    /// Count events a slow stream client missed.
    pub(crate) fn add_lagged(&self, n: u64) {
        self.inner.lagged.fetch_add(n, Ordering::Relaxed);
    }

    /// Events stream clients missed because they read too slowly, since start.
    pub fn lagged(&self) -> u64 {
        self.inner.lagged.load(Ordering::Relaxed)
    }

    /// Stream clients connected now.
    pub fn subscribers(&self) -> usize {
        self.inner.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_with_increasing_sequence() {
        let ev = Events::new(3);
        for i in 0..5 {
            let seq = ev.push(EventKind::Operator, format!("n{i}"), [("i", i)]);
            assert_eq!(seq, i + 1);
        }
        let kept = ev.since(0);
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(kept[0].fields["i"], "2");
        assert_eq!(ev.since(4).len(), 1);
        assert_eq!(ev.next_seq(), 6);
    }

    #[tokio::test]
    async fn subscribers_get_new_events_after_the_backlog() {
        let ev = Events::new(10);
        ev.push(EventKind::BackendDown, "a", [("pool", "p")]);
        ev.push(EventKind::BackendUp, "b", [("pool", "p")]);
        let (backlog, mut rx) = ev.subscribe_after(1);
        assert_eq!(backlog.len(), 1);
        assert_eq!(backlog[0].seq, 2);
        ev.push(EventKind::Reload, "c", Vec::<(String, String)>::new());
        let e = rx.recv().await.expect("event");
        assert_eq!((e.seq, e.kind), (3, EventKind::Reload));
    }

    #[test]
    fn a_slow_subscriber_never_blocks_the_emitter() {
        let ev = Events::new(10);
        let (_, mut rx) = ev.subscribe_after(0);
        for _ in 0..(STREAM_BUFFER * 3) {
            ev.push(EventKind::Operator, "x", [("k", "v")]);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn serialises_kind_in_snake_case() {
        let ev = Events::new(2);
        ev.push(EventKind::BackendEjected, "m", [("backend", "127.0.0.1:1")]);
        let v = serde_json::to_value(&*ev.since(0)[0]).expect("json");
        assert_eq!(v["kind"], "backend_ejected");
        assert_eq!(v["fields"]["backend"], "127.0.0.1:1");
        assert_eq!(v["seq"], 1);
    }
}
