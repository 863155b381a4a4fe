//! The response body handed to hyper: either a short local message (errors) or a backend's
//! body streamed through frame by frame, never buffered whole.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::slot::Slot;
use crate::upstream::{Conn, Upstreams};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body sent to a backend: the client's, or none at all for the replay of a body-less
/// request (the client's `Incoming` was consumed by the first attempt, and cannot be made up).
pub(crate) enum RequestBody {
    Client(ClientBody),
    /// A body read in full before a backend was chosen (a body of unknown length under
    /// `max_request_body`).
    Buffered(Option<Bytes>),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Buffered(d) => Poll::Ready(d.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) => b.is_end_stream(),
            RequestBody::Buffered(d) => d.is_none(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(b) => b.size_hint(),
            RequestBody::Buffered(Some(d)) => SizeHint::with_exact(d.len() as u64),
            RequestBody::Buffered(None) | RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// `Body` for an enum of two bodies whose data is `Bytes` (hyper's `Incoming` and one of ours):
/// every method goes to the variant, errors boxed.
macro_rules! either_body {
    ($name:ident: $a:ident, $b:ident) => {
        impl Body for $name {
            type Data = Bytes;
            type Error = BoxError;

            fn poll_frame(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                match self.get_mut() {
                    $name::$a(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
                    $name::$b(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
                }
            }

            fn is_end_stream(&self) -> bool {
                match self {
                    $name::$a(b) => b.is_end_stream(),
                    $name::$b(b) => b.is_end_stream(),
                }
            }

            fn size_hint(&self) -> SizeHint {
                match self {
                    $name::$a(b) => b.size_hint(),
                    $name::$b(b) => b.size_hint(),
                }
            }
        }
    };
}

/// A client's request body: from hyper's HTTP/1 server, or from tandem's HTTP/2 server
/// ([`crate::h2_server`]).
pub(crate) enum ClientBody {
    Hyper(Incoming),
    H2(crate::h2_server::RecvBody),
}

either_body!(ClientBody: Hyper, H2);

pub(crate) enum ProxyBody {
    Local(Option<Bytes>),
    /// A local answer to a request whose body is refused unread: the body is held until the
    /// answer is sent, so HTTP/2 ends the stream after the response (not with a reset before
    /// it, which clients report as an error instead of the status).
    Refused(Option<Bytes>, #[allow(dead_code)] ClientBody),
    Upstream(UpstreamBody),
    /// Any of the above, with the access log line written once the body is sent (or dropped
    /// half-way): its `bytes` and `duration` are then what the client really got.
    Logged(Box<Logged>),
}

pub(crate) struct Logged {
    pub(crate) inner: ProxyBody,
    pub(crate) log: crate::access_log::AccessLog,
    /// Complete but for `bytes` and `duration`, set when the line is written.
    pub(crate) record: Option<crate::access_log::Record>,
    pub(crate) started: std::time::Instant,
    pub(crate) bytes: u64,
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.bytes = self.bytes;
            record.duration = self.started.elapsed();
            self.log.log(record);
        }
    }
}

/// What a finished backend response gives back: the connection to its pool and the slot to
/// the scheduler. Held by the body so `active` counts a request until its last byte.
pub(crate) struct Finish {
    /// hyper's connection handle; `None` for a native one, which the body holds.
    pub(crate) sender: Option<Conn>,
    pub(crate) upstreams: Arc<Upstreams>,
    /// The pool the connection was made for (its idle connections are kept per pool).
    pub(crate) pool: Arc<tandem_balance::PoolRuntime>,
    pub(crate) addr: SocketAddr,
    pub(crate) slot: Slot,
}

/// A backend's response body: read by hyper's client (TLS or HTTP/2 pools) or by
/// [`crate::h1_upstream`] (cleartext HTTP/1.1).
pub(crate) enum BackendBody {
    Hyper(Incoming),
    Native(crate::h1_upstream::NativeBody),
}

either_body!(BackendBody: Hyper, Native);

pub(crate) struct UpstreamBody {
    inner: BackendBody,
    finish: Option<Finish>,
    bytes: u64,
}

impl UpstreamBody {
    pub(crate) fn new(inner: BackendBody, finish: Finish) -> Self {
        let mut body = UpstreamBody {
            inner,
            finish: Some(finish),
            bytes: 0,
        };
        // Empty bodies (204, 304, HEAD, Content-Length: 0) may never be polled by hyper.
        if body.inner.is_end_stream() {
            body.complete();
        }
        body
    }

    /// The body was read to its end: the connection may carry another request.
    fn complete(&mut self) {
        if let Some(f) = self.finish.take() {
            f.slot
                .backend()
                .stats
                .bytes_out
                .fetch_add(self.bytes, Ordering::Relaxed);
            let sender = match (f.sender, &mut self.inner) {
                (Some(s), _) => Some(s),
                (None, BackendBody::Native(b)) => b.take_reusable().map(Conn::Native),
                (None, BackendBody::Hyper(_)) => None,
            };
            if let Some(sender) = sender {
                f.upstreams.checkin(&f.pool.name, f.addr, sender);
            }
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.complete();
        }
        // Dropped before the end (client went away): the connection is mid-message and is
        // closed with the sender; only the byte count is kept.
        if let Some(f) = self.finish.take() {
            f.slot
                .backend()
                .stats
                .bytes_out
                .fetch_add(self.bytes, Ordering::Relaxed);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Local(data) | ProxyBody::Refused(data, _) => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            ProxyBody::Upstream(up) => {
                let r = Pin::new(&mut up.inner).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            up.bytes += d.len() as u64;
                        }
                        if up.inner.is_end_stream() {
                            up.complete();
                        }
                    }
                    Poll::Ready(None) => up.complete(),
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(f) = up.finish.take() {
                            f.slot
                                .backend()
                                .stats
                                .failures
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Poll::Pending => {}
                }
                r
            }
            ProxyBody::Logged(l) => {
                let r = Pin::new(&mut l.inner).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &r {
                    if let Some(d) = frame.data_ref() {
                        l.bytes += d.len() as u64;
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(d) | ProxyBody::Refused(d, _) => d.is_none(),
            ProxyBody::Upstream(up) => up.inner.is_end_stream(),
            ProxyBody::Logged(l) => l.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(Some(d)) | ProxyBody::Refused(Some(d), _) => {
                SizeHint::with_exact(d.len() as u64)
            }
            ProxyBody::Local(None) | ProxyBody::Refused(None, _) => SizeHint::with_exact(0),
            ProxyBody::Upstream(up) => up.inner.size_hint(),
            ProxyBody::Logged(l) => l.inner.size_hint(),
        }
    }
}
