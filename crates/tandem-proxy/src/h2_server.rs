//! HTTP/2 from clients (over TLS with ALPN `h2`, or cleartext with prior knowledge), served on
//! the `h2` crate directly rather than through hyper's server.
//!
//! hyper spawns a task for every stream, so each request crossed tasks twice more (connection
//! → stream → connection) and its service future was moved into a task cell of its own. Here
//! the connection's task drives the connection and all of its streams (a `FuturesUnordered`):
//! a backend's answer wakes this one task, which queues the response and writes it in the same
//! turn. The per-request work itself is [`H2Service::handle`], shared with the hyper path.
//!
//! What hyper did and this keeps: its window and buffer settings, `Content-Length` from a
//! body of known size, a `Date` on every response, cancelling a request whose stream the
//! client resets, back-pressure on the response body (data is only taken from the backend
//! while the stream has send capacity), and a graceful shutdown (GOAWAY, then the streams in
//! flight finish).

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::activity::Activity;
use crate::body::{BoxError, ClientBody, ProxyBody};
use crate::h2::H2Service;
use crate::proxy_protocol::Addresses;

/// hyper's defaults, which tandem served with before (see `hyper::proto::h2::server`).
const CONN_WINDOW: u32 = 1024 * 1024;
const STREAM_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 200;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// How one connection reached the service.
#[derive(Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) https: bool,
    /// For PROXY headers to backends.
    pub(crate) client: Option<Addresses>,
}

/// Serve one HTTP/2 connection until the client closes it, it stays idle past the idle
/// timeout, or the service shuts down (then gracefully).
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
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(svc.max_header_list_size())
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let mut conn =
        match tokio::time::timeout(timeouts.header, builder.handshake::<_, Bytes>(io)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(client = %peer.addr, error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => return,
        };
    let mut streams = FuturesUnordered::new();
    let idle = activity.idle_expired(timeouts.idle);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            // Streams first: a response they queue goes out when the connection is polled
            // next, in this same turn.
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {}
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    streams.push(stream(&svc, &activity, req, respond, peer));
                }
                Some(Err(e)) => {
                    tracing::debug!(client = %peer.addr, error = %e, "HTTP/2 connection failed");
                    break;
                }
                None => break,
            },
            () = &mut idle, if !closing => break,
            () = crate::stopped(&mut shutdown), if !closing => {
                conn.graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// One stream: the request through [`H2Service::handle`], then the response out.
async fn stream(
    svc: &H2Service,
    activity: &Arc<Activity>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: Peer,
) {
    let inflight = activity.begin();
    let resp = if req.method() == http::Method::CONNECT {
        // No tunnels over HTTP/2 (extended CONNECT is not enabled).
        crate::h2::local(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n")
    } else {
        let length = content_length(req.headers());
        let req = req.map(|recv| ClientBody::H2(RecvBody::new(recv, length)));
        // Boxed: the connection's set of streams then moves a small future, not this one.
        let mut handle = Box::pin(svc.handle(req, peer.addr, peer.https, peer.client));
        // A client that resets the stream cancels the request (and frees its backend).
        let answered = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = handle.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match answered {
            Some(r) => r,
            None => return,
        }
    };
    let (mut parts, body) = svc.finish_response(resp, peer.https).into_parts();
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
    let sent = respond.send_response(Response::from_parts(parts, ()), end);
    drop(inflight);
    match sent {
        Ok(send) if !end => pipe(send, body).await,
        Ok(_) => {}
        Err(e) => tracing::debug!(client = %peer.addr, error = %e, "HTTP/2 response not sent"),
    }
}

/// Send the response body, taking frames from it only while the stream can send.
async fn pipe(mut send: h2::SendStream<Bytes>, mut body: ProxyBody) {
    loop {
        send.reserve_capacity(1);
        while send.capacity() == 0 {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                // The stream or the connection is gone.
                _ => return,
            }
        }
        let next = std::future::poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let frame = match next {
            // Reset by the client.
            None => return,
            Some(None) => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Some(Ok(frame))) => frame,
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed; resetting the stream");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                if send.send_data(data, end).is_err() || end {
                    return;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = send.send_trailers(trailers);
                    return;
                }
            }
        }
    }
}

/// The declared `Content-Length` of a request, if it is one valid number.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?.to_str().ok()?.trim().parse().ok()?;
    values.next().is_none().then_some(first)
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

/// A request body received over HTTP/2: data is handed on as it comes, and the flow-control
/// window it used is given back at once (so the client keeps sending as fast as the backend
/// takes it, up to the window hyper also used).
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    /// What `Content-Length` announced and has not come yet.
    remaining: Option<u64>,
    data_done: bool,
    /// The request ended with its headers (END_STREAM), or its body has been read. Kept here
    /// because asking the stream takes the connection's lock, and the request side asks often.
    ended: bool,
}

impl RecvBody {
    fn new(recv: h2::RecvStream, length: Option<u64>) -> Self {
        RecvBody {
            ended: recv.is_end_stream(),
            recv,
            remaining: length,
            data_done: false,
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
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(n) = &mut this.remaining {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Ok(None)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => Poll::Pending,
        }
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
    fn content_length_must_be_one_number() {
        let mut h = http::HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&h), Some(12));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(content_length(&h), None);
    }

    #[test]
    fn date_is_an_http_date() {
        let d = date();
        let text = d.to_str().expect("ascii");
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
