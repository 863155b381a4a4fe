//! HTTP/2 from clients (over TLS with ALPN `h2`, or cleartext with prior knowledge), served on
//! tandem's own HTTP/2 state machine (`tandem-h2`).
//!
//! Why not the `h2` crate, which served here before: in the HTTP/2-over-TLS benchmark it took
//! 14.5 % of tandem's CPU (HPACK encoding alone 4.7 %, then its shared stream store behind a
//! lock, consulted by every stream handle) where HAProxy's multiplexer and HPACK take 2.2 %
//! of HAProxy's. The state machine here has no locks and no per-stream handles; its encoder
//! copies fields without table searches.
//!
//! One task per connection drives everything: it reads, feeds the state machine, runs each
//! request's [`H2Service::handle`] in a `FuturesUnordered`, writes responses as the client's
//! flow-control windows allow, and reads response bodies from backends only while the stream's
//! queue is short (so a slow client holds back its backend rather than filling memory).
//! A client that resets a stream cancels its request at once, freeing the backend slot.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::task::AtomicWaker;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use tandem_h2::frame::Reason;
use tandem_h2::server::{Config, Connection, Event};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::activity::Activity;
use crate::body::{BoxError, ClientBody, ProxyBody};
use crate::h2::H2Service;
use crate::proxy_protocol::Addresses;

/// The window and stream settings tandem served with on hyper and then on the `h2` crate.
const CONN_WINDOW: u32 = 1024 * 1024;
const STREAM_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 200;
/// Resets beyond completed requests before a connection is closed (rapid reset).
const MAX_EXCESS_RESETS: u32 = 1024;
/// Output is produced up to about this much before it is written.
const OUT_LIMIT: usize = 64 * 1024;
/// Response bytes queued per stream before its backend is read again.
const BODY_AHEAD: usize = 64 * 1024;
/// Read buffer growth step; a full frame is reserved when one is incomplete.
const READ_CHUNK: usize = 16 * 1024;

/// How one connection reached the service.
#[derive(Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) https: bool,
    /// For PROXY headers to backends.
    pub(crate) client: Option<Addresses>,
}

/// What the connection task shares with one stream's request body and its futures.
#[derive(Default)]
struct Shared {
    /// The stream is gone (reset by either side): its futures end.
    cancelled: AtomicBool,
    /// The future that currently stands for the stream (the handler, then its body).
    waker: AtomicWaker,
    inbound: Mutex<Inbound>,
}

#[derive(Default)]
struct Inbound {
    chunks: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    ended: bool,
    /// Bytes the request body handed on; the connection gives the window back.
    consumed: usize,
    body_waker: Option<Waker>,
    /// Woken when data is consumed, so WINDOW_UPDATEs go out even when the body is read by
    /// another task (hyper's client, for TLS or HTTP/2 pools).
    conn_waker: Option<Waker>,
}

impl Shared {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.waker.wake();
        if let Ok(mut i) = self.inbound.lock() {
            if let Some(w) = i.body_waker.take() {
                w.wake();
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

type Answer = (u32, Option<Response<ProxyBody>>);
type Handler<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// Serve one HTTP/2 connection until the client closes it, it stays idle past the idle
/// timeout, or the service shuts down (then gracefully: GOAWAY, and the streams in flight
/// finish).
pub(crate) async fn serve<I>(
    svc: Arc<H2Service>,
    io: I,
    activity: Arc<Activity>,
    peer: Peer,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let timeouts = svc.timeouts();
    let handshake = tokio::time::sleep(timeouts.header);
    tokio::pin!(handshake);
    let idle = activity.idle_expired(timeouts.idle);
    tokio::pin!(idle);
    let stopped = crate::stopped(&mut shutdown);
    tokio::pin!(stopped);
    let mut d = Driver {
        svc: &svc,
        activity: &activity,
        peer,
        io,
        conn: Connection::new(Config {
            conn_window: CONN_WINDOW,
            stream_window: STREAM_WINDOW,
            max_frame_size: MAX_FRAME_SIZE,
            max_concurrent_streams: MAX_CONCURRENT_STREAMS,
            max_header_list_size: svc.max_header_list_size(),
            max_excess_resets: MAX_EXCESS_RESETS,
        }),
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        written: 0,
        live: HashMap::new(),
        handlers: FuturesUnordered::new(),
        bodies: FuturesUnordered::new(),
        parked: Vec::new(),
        read_closed: false,
        failed: false,
        rejected_seen: 0,
        with_body: 0,
    };
    let mut closing = false;
    std::future::poll_fn(|cx| {
        if !closing {
            if !d.conn.handshaken() && handshake.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if stopped.as_mut().poll(cx).is_ready() {
                d.conn.go_away();
                closing = true;
            }
        }
        d.poll(cx)
    })
    .await;
    // Streams still in flight (connection lost): their requests are cancelled.
    for l in d.live.values() {
        l.shared.cancel();
    }
    let _ = std::future::poll_fn(|cx| Pin::new(&mut d.io).poll_shutdown(cx)).await;
}

/// A stream the application is working on.
struct Live {
    shared: Arc<Shared>,
    /// The request body is still coming: its consumption gives the window back.
    has_body: bool,
    /// The response is complete (or abandoned).
    responded: bool,
}

struct Driver<'a, I> {
    svc: &'a H2Service,
    activity: &'a Arc<Activity>,
    peer: Peer,
    io: I,
    conn: Connection,
    rbuf: BytesMut,
    /// How much of the output buffer is already written.
    written: usize,
    live: HashMap<u32, Live>,
    handlers: FuturesUnordered<Handler<'a>>,
    bodies: FuturesUnordered<NextFrame>,
    /// Response bodies waiting for their stream's queue to drain.
    parked: Vec<(u32, ProxyBody, Arc<Shared>)>,
    read_closed: bool,
    failed: bool,
    rejected_seen: u64,
    /// Live streams whose request body is still coming (most requests have none, and then
    /// the window bookkeeping is skipped).
    with_body: usize,
}

impl<'a, I: AsyncRead + AsyncWrite + Unpin> Driver<'a, I> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..32 {
            let mut progress = false;
            match self.read(cx) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(())) => return Poll::Ready(()),
                Poll::Pending => {}
            }
            self.give_back_windows();
            while let Poll::Ready(Some((id, resp))) = self.handlers.poll_next_unpin(cx) {
                progress = true;
                if let Some(resp) = resp {
                    self.respond(id, resp, cx);
                }
            }
            while let Poll::Ready(Some(next)) = self.bodies.poll_next_unpin(cx) {
                progress = true;
                let (id, body, shared, frame) = next;
                if let Some(body) = self.take_frame(id, body, frame) {
                    self.pump_body(id, body, shared, cx);
                }
            }
            let drained = match self.write(cx) {
                Ok((drained, wrote)) => {
                    // Reading may have waited for the output to go down (no waker then).
                    progress |= wrote;
                    drained
                }
                Err(()) => return Poll::Ready(()),
            };
            if self.unpark(cx) {
                progress = true;
            }
            let finished =
                self.handlers.is_empty() && self.bodies.is_empty() && self.parked.is_empty();
            if drained && (self.failed || self.conn.is_closed() || (self.read_closed && finished)) {
                return Poll::Ready(());
            }
            if !progress {
                self.release_idle_buffers();
                return Poll::Pending;
            }
        }
        // Busy: let the worker's other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Read once and feed the state machine. `Ready(Ok)` when something was read.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        // A client that does not read its answers gets no more requests read.
        if self.read_closed || self.failed || self.conn.pending_output() >= OUT_LIMIT {
            return Poll::Pending;
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(0)) => {
                self.read_closed = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(_)) => {
                if let Err(e) = self.conn.recv(&mut self.rbuf) {
                    tracing::debug!(client = %self.peer.addr, error = %e, "HTTP/2 connection error");
                    self.failed = true;
                }
                let rejected = self.conn.counters().malformed_requests;
                if rejected > self.rejected_seen {
                    self.svc.count_rejected(rejected - self.rejected_seen);
                    self.rejected_seen = rejected;
                }
                while let Some(ev) = self.conn.poll_event() {
                    self.event(ev, cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(client = %self.peer.addr, error = %e, "HTTP/2 read failed");
                Poll::Ready(Err(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn event(&mut self, ev: Event, cx: &mut Context<'_>) {
        match ev {
            Event::Request {
                stream,
                head,
                end_stream,
            } => {
                let shared = Arc::new(Shared::default());
                if head.method == http::Method::CONNECT {
                    // No tunnels over HTTP/2 (extended CONNECT is not offered).
                    self.live.insert(
                        stream,
                        Live {
                            shared,
                            has_body: false,
                            responded: false,
                        },
                    );
                    let resp = crate::h2::local(
                        http::StatusCode::METHOD_NOT_ALLOWED,
                        "CONNECT is not supported\n",
                    );
                    // (Were the client still sending, the state machine resets its side once
                    // the answer is out, §8.1.)
                    self.respond(stream, resp, cx);
                    return;
                }
                let body = if end_stream {
                    RecvBody::ended()
                } else {
                    if let Ok(mut i) = shared.inbound.lock() {
                        i.conn_waker = Some(cx.waker().clone());
                    }
                    RecvBody::new(Arc::clone(&shared), head.content_length)
                };
                let mut req = Request::new(ClientBody::H2(body));
                *req.method_mut() = head.method;
                *req.uri_mut() = head.uri;
                *req.version_mut() = Version::HTTP_2;
                *req.headers_mut() = head.headers;
                self.with_body += usize::from(!end_stream);
                self.live.insert(
                    stream,
                    Live {
                        shared: Arc::clone(&shared),
                        has_body: !end_stream,
                        responded: false,
                    },
                );
                self.handlers.push(handler(
                    self.svc,
                    self.activity,
                    stream,
                    req,
                    self.peer,
                    shared,
                ));
            }
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let Some(l) = self.live.get(&stream) else {
                    // Nobody will read it: the window comes back at once.
                    self.conn.release(stream, data.len());
                    return;
                };
                if let Ok(mut i) = l.shared.inbound.lock() {
                    i.chunks.push_back(data);
                    i.ended = end_stream;
                    if let Some(w) = i.body_waker.take() {
                        w.wake();
                    }
                }
            }
            Event::Trailers { stream, trailers } => {
                if let Some(l) = self.live.get(&stream) {
                    if let Ok(mut i) = l.shared.inbound.lock() {
                        i.trailers = Some(trailers);
                        i.ended = true;
                        if let Some(w) = i.body_waker.take() {
                            w.wake();
                        }
                    }
                }
            }
            Event::Reset { stream, reason } => {
                tracing::debug!(client = %self.peer.addr, stream, %reason, "HTTP/2 stream reset");
                if let Some(l) = self.live.remove(&stream) {
                    self.with_body -= usize::from(l.has_body);
                    l.shared.cancel();
                }
            }
        }
    }

    /// Request body bytes the application took since: the window opens again.
    fn give_back_windows(&mut self) {
        if self.with_body == 0 {
            return;
        }
        let conn = &mut self.conn;
        let with_body = &mut self.with_body;
        self.live.retain(|&id, l| {
            if !l.has_body {
                return true;
            }
            if let Ok(mut i) = l.shared.inbound.lock() {
                if i.consumed > 0 {
                    conn.release(id, std::mem::take(&mut i.consumed));
                }
                if i.ended && i.chunks.is_empty() {
                    l.has_body = false;
                    *with_body -= 1;
                }
            }
            !l.responded || l.has_body
        });
    }

    /// The response head goes out; the body follows as it comes.
    fn respond(&mut self, id: u32, resp: Response<ProxyBody>, cx: &mut Context<'_>) {
        let Some(shared) = self.live.get(&id).map(|l| Arc::clone(&l.shared)) else {
            return;
        };
        let (mut parts, body) = self.svc.finish_response(resp, self.peer.https).into_parts();
        if !parts.headers.contains_key(header::DATE) {
            parts.headers.insert(header::DATE, date());
        }
        let end = body.is_end_stream();
        if !end {
            if let Some(n) = body.size_hint().exact() {
                if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
            }
        }
        self.conn
            .send_response(id, parts.status, &parts.headers, end);
        crate::header_pool::give(parts.headers);
        if end {
            self.finished(id);
        } else {
            self.pump_body(id, body, shared, cx);
        }
    }

    /// Take frames from a response body while they are ready and the stream's queue is short;
    /// then leave it waiting for data (in `bodies`) or for the queue to drain (`parked`).
    fn pump_body(
        &mut self,
        id: u32,
        mut body: ProxyBody,
        shared: Arc<Shared>,
        cx: &mut Context<'_>,
    ) {
        loop {
            match self.conn.queued(id) {
                None => {
                    self.finished(id);
                    return;
                }
                Some(q) if q >= BODY_AHEAD => {
                    self.parked.push((id, body, shared));
                    return;
                }
                Some(_) => {}
            }
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Pending => {
                    self.bodies.push(NextFrame {
                        item: Some((id, body, shared)),
                    });
                    return;
                }
                Poll::Ready(frame) => match self.take_frame(id, body, frame) {
                    Some(b) => body = b,
                    None => return,
                },
            }
        }
    }

    /// Hand one body frame to the state machine; the body comes back if there is more.
    fn take_frame(
        &mut self,
        id: u32,
        body: ProxyBody,
        frame: Option<Result<Frame<Bytes>, BoxError>>,
    ) -> Option<ProxyBody> {
        match frame {
            None => {
                self.conn.send_data(id, Bytes::new(), true);
                self.finished(id);
                None
            }
            Some(Err(e)) => {
                tracing::debug!(client = %self.peer.addr, error = %e, "response body failed; resetting the stream");
                self.conn.reset(id, Reason::INTERNAL_ERROR);
                self.finished(id);
                None
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    self.conn.send_data(id, data, end);
                    if end {
                        self.finished(id);
                        None
                    } else {
                        Some(body)
                    }
                }
                Err(frame) => {
                    match frame.into_trailers() {
                        Ok(t) => self.conn.send_trailers(id, t),
                        Err(_) => self.conn.send_data(id, Bytes::new(), true),
                    }
                    self.finished(id);
                    None
                }
            },
        }
    }

    /// tandem's side of a stream is complete (or abandoned).
    fn finished(&mut self, id: u32) {
        if let Some(l) = self.live.get_mut(&id) {
            l.responded = true;
            // A request body still being read keeps its entry, for its window.
            if !l.has_body {
                self.live.remove(&id);
            }
        }
    }

    /// Write what the state machine produced. `Ok(true)` once everything is written.
    /// `Ok((drained, wrote))`: whether everything is written, and whether anything was.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<(bool, bool), ()> {
        let mut wrote = false;
        loop {
            let out = self.conn.output(OUT_LIMIT);
            if self.written == out.len() {
                break;
            }
            match Pin::new(&mut self.io).poll_write(cx, &out[self.written..]) {
                Poll::Ready(Ok(0)) => return Err(()),
                Poll::Ready(Ok(n)) => {
                    wrote = true;
                    self.written += n;
                    if self.written == out.len() {
                        out.clear();
                        self.written = 0;
                    }
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(client = %self.peer.addr, error = %e, "HTTP/2 write failed");
                    return Err(());
                }
                Poll::Pending => return Ok((false, wrote)),
            }
        }
        // TLS keeps records until flushed.
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => Ok((true, wrote)),
            Poll::Ready(Err(_)) => Err(()),
            Poll::Pending => Ok((false, wrote)),
        }
    }

    /// A connection with nothing in flight gives its buffers back: thousands of idle
    /// keep-alive connections then cost no buffer memory (HAProxy frees its buffers the same
    /// way); the next request allocates again.
    fn release_idle_buffers(&mut self) {
        if self.conn.active_streams() > 0 || !self.rbuf.is_empty() || self.written != 0 {
            return;
        }
        let out = self.conn.output(0);
        if out.is_empty() && out.capacity() > 0 {
            *out = Vec::new();
        }
        if self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
    }

    /// Bodies whose stream's queue went down read their backend again. True if any did.
    fn unpark(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.parked.len() {
            match self.conn.queued(self.parked[i].0) {
                Some(q) if q >= BODY_AHEAD / 2 => i += 1,
                _ => {
                    let (id, body, shared) = self.parked.swap_remove(i);
                    any = true;
                    self.pump_body(id, body, shared, cx);
                }
            }
        }
        any
    }
}

/// One request through [`H2Service::handle`], cancelled when its stream goes away.
fn handler<'a>(
    svc: &'a H2Service,
    activity: &Arc<Activity>,
    id: u32,
    req: Request<ClientBody>,
    peer: Peer,
    shared: Arc<Shared>,
) -> Handler<'a> {
    let inflight = activity.begin();
    Box::pin(async move {
        let mut handle = std::pin::pin!(svc.handle(req, peer.addr, peer.https, peer.client));
        let answer = std::future::poll_fn(|cx| {
            if shared.is_cancelled() {
                return Poll::Ready(None);
            }
            shared.waker.register(cx.waker());
            handle.as_mut().poll(cx).map(Some)
        })
        .await;
        drop(inflight);
        (id, answer)
    })
}

/// The next frame of a response body, or the end of a stream that went away meanwhile.
struct NextFrame {
    item: Option<(u32, ProxyBody, Arc<Shared>)>,
}

type Next = (
    u32,
    ProxyBody,
    Arc<Shared>,
    Option<Result<Frame<Bytes>, BoxError>>,
);

impl Future for NextFrame {
    type Output = Next;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Next> {
        let Some((id, body, shared)) = self.item.as_mut() else {
            return Poll::Pending;
        };
        let frame = if shared.is_cancelled() {
            Some(Err(BoxError::from("stream reset")))
        } else {
            shared.waker.register(cx.waker());
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(f) => f,
                Poll::Pending => return Poll::Pending,
            }
        };
        let _ = id;
        match self.item.take() {
            Some((id, body, shared)) => Poll::Ready((id, body, shared, frame)),
            None => Poll::Pending,
        }
    }
}

/// `Date` for responses, formatted once a second per worker thread.
fn date() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match &c.1 {
            Some(v) if c.0 == secs => v.clone(),
            _ => {
                let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                *c = (secs, Some(v.clone()));
                v
            }
        }
    })
}

/// A request body received over HTTP/2, handed on as it comes; the connection gives the
/// flow-control window back as it is read (so the client sends as fast as the backend takes
/// it, up to the stream window).
pub(crate) struct RecvBody {
    shared: Option<Arc<Shared>>,
    /// What `content-length` announced and has not come yet.
    remaining: Option<u64>,
    ended: bool,
}

impl RecvBody {
    fn ended() -> RecvBody {
        RecvBody {
            shared: None,
            remaining: Some(0),
            ended: true,
        }
    }

    fn new(shared: Arc<Shared>, length: Option<u64>) -> RecvBody {
        RecvBody {
            shared: Some(shared),
            remaining: length,
            ended: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let Some(shared) = &this.shared else {
            return Poll::Ready(None);
        };
        if shared.is_cancelled() {
            this.ended = true;
            return Poll::Ready(Some(Err("client reset the stream".into())));
        }
        let Ok(mut i) = shared.inbound.lock() else {
            return Poll::Ready(Some(Err("request body state poisoned".into())));
        };
        if let Some(data) = i.chunks.pop_front() {
            i.consumed += data.len();
            if let Some(w) = &i.conn_waker {
                w.wake_by_ref();
            }
            if let Some(n) = &mut this.remaining {
                *n = n.saturating_sub(data.len() as u64);
            }
            if i.ended && i.chunks.is_empty() && i.trailers.is_none() {
                this.ended = true;
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if i.ended {
            this.ended = true;
            return Poll::Ready(i.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        i.body_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_an_http_date() {
        let d = date();
        let text = d.to_str().expect("ascii");
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
