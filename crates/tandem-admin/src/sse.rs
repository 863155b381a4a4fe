//! `GET /api/v1/events/stream`: the event log as server-sent events.
//!
//! Each connection gets a small task that turns events into SSE frames and hands them to the
//! response body through a bounded channel. When the client reads slowly the channel fills,
//! the task waits, and the broadcast behind it overflows: the client loses the oldest events
//! (counted, and announced with a `lagged` event), the emitter is never held up. The task ends
//! when the client goes away (the body, and so the receiver, is dropped) or on shutdown (the
//! sender is dropped, the body ends, and hyper's graceful shutdown can finish).
//!
//! Frames: `id: <seq>` and `data: <event JSON>` per event (the default `message` type, so an
//! `EventSource`'s `onmessage` sees them all), `event: lagged` with `{"missed": n}` after a
//! loss, and a `: keepalive` comment every 15 s so proxies and clients can tell a quiet stream
//! from a dead one. A client resumes with `Last-Event-ID`: every kept event after that id is
//! sent first.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{broadcast, mpsc, watch};

use crate::events::{Event, Events};

/// How often a quiet stream sends a comment.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Frames buffered between the stream task and the socket.
const FRAMES: usize = 16;

/// The body of an event-stream response.
pub struct SseBody(mpsc::Receiver<Bytes>);

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Start streaming: events after `after` that are still kept, then new ones (`None`: only new
/// ones). The task stops with the client or when `shutdown` becomes true.
pub fn start(events: &Events, after: Option<u64>, shutdown: watch::Receiver<bool>) -> SseBody {
    let (tx, rx) = mpsc::channel(FRAMES);
    let (backlog, sub) = match after {
        Some(a) => events.subscribe_after(a),
        // Subscribing after everything there is: `u64::MAX` keeps nothing of the backlog.
        None => events.subscribe_after(u64::MAX),
    };
    // A resume point older than the oldest kept event: say how much is gone.
    let missed = match (after, backlog.first()) {
        (Some(a), Some(first)) => first.seq.saturating_sub(a + 1),
        _ => 0,
    };
    tokio::spawn(run(events.clone(), backlog, missed, sub, tx, shutdown));
    SseBody(rx)
}

async fn run(
    events: Events,
    backlog: Vec<Arc<Event>>,
    missed: u64,
    mut sub: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Reconnect after 2 s if the connection drops (EventSource's default is 3).
    if tx
        .send(Bytes::from_static(b"retry: 2000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    if missed > 0 && tx.send(lagged(missed)).await.is_err() {
        return;
    }
    let mut last = 0;
    for e in backlog {
        last = e.seq;
        if tx.send(frame(&e)).await.is_err() {
            return;
        }
    }
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        let out = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
            got = sub.recv() => match got {
                // The backlog and the subscription may overlap by the events pushed while we
                // were subscribing: skip what was already sent.
                Ok(e) if e.seq <= last => continue,
                Ok(e) => {
                    last = e.seq;
                    frame(&e)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    events.add_lagged(n);
                    lagged(n)
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}

fn frame(e: &Event) -> Bytes {
    // JSON never contains a raw newline (they are escaped in strings), so one `data:` line.
    let json = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\ndata: {json}\n\n", e.seq))
}

fn lagged(n: u64) -> Bytes {
    Bytes::from(format!("event: lagged\ndata: {{\"missed\": {n}}}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use http_body_util::BodyExt;

    async fn next_text(body: &mut SseBody) -> String {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("infallible");
        String::from_utf8(frame.into_data().expect("data").to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn resumes_after_last_event_id_and_streams_new_events() {
        let ev = Events::new(10);
        for i in 0..3 {
            ev.push(EventKind::Operator, format!("e{i}"), [("i", i)]);
        }
        let (_stop, stopped) = watch::channel(false);
        let mut body = start(&ev, Some(1), stopped);
        assert_eq!(next_text(&mut body).await, "retry: 2000\n\n");
        assert!(next_text(&mut body).await.starts_with("id: 2\ndata: {"));
        assert!(next_text(&mut body).await.starts_with("id: 3\n"));
        ev.push(EventKind::BackendDown, "down", [("pool", "p")]);
        let t = next_text(&mut body).await;
        assert!(
            t.starts_with("id: 4\n") && t.contains("\"backend_down\""),
            "{t}"
        );
    }

    #[tokio::test]
    async fn a_resume_point_that_fell_out_of_the_ring_is_announced() {
        let ev = Events::new(2);
        for _ in 0..5 {
            ev.push(EventKind::Operator, "x", [("k", "v")]);
        }
        let (_stop, stopped) = watch::channel(false);
        let mut body = start(&ev, Some(1), stopped);
        next_text(&mut body).await;
        assert_eq!(
            next_text(&mut body).await,
            "event: lagged\ndata: {\"missed\": 2}\n\n"
        );
        assert!(next_text(&mut body).await.starts_with("id: 4\n"));
    }

    #[tokio::test]
    async fn shutdown_ends_the_body() {
        let ev = Events::new(2);
        let (stop, stopped) = watch::channel(false);
        let mut body = start(&ev, None, stopped);
        next_text(&mut body).await;
        stop.send(true).expect("receiver alive");
        let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("ends in time");
        assert!(end.is_none());
    }
}
