//! Socket helpers for the HTTP/1 engine: try the non-blocking operation first and arm a timer
//! only when the socket is not ready, so the common case costs one syscall and no timer.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::activity::Prefixed;
use crate::h2::H2Service;

/// How long a blocked read or write may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Inactivity: this long from when the operation blocks.
    For(Duration),
    /// An absolute deadline (response and header timeouts).
    Until(Instant),
}

impl Limit {
    fn deadline(self) -> Instant {
        match self {
            Limit::For(d) => Instant::now() + d,
            Limit::Until(t) => t,
        }
    }
}

fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

/// A read buffer with a consumed prefix, so a head can be parsed in place and the bytes that
/// follow it (body, a pipelined request) stay where they are.
///
/// It starts small and doubles up to `max` when reads fill it, so a connection that only
/// exchanges small messages costs a few KiB, while a bulk transfer gets large reads.
pub(crate) struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl Buf {
    pub(crate) fn new(initial: usize, max: usize) -> Self {
        Buf {
            data: vec![0; initial.min(max)],
            start: 0,
            end: 0,
            max,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Forget the contents (the memory stays).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Holds `max` unconsumed bytes: a head that has not ended by now is too large.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.max
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < self.max {
                self.grow();
            }
        }
        &mut self.data[self.end..]
    }

    fn grow(&mut self) {
        let len = (self.data.len() * 2).clamp(1024, self.max);
        self.data.resize(len, 0);
    }
}

/// Read once into `buf`'s free space. `Ok(0)` is end of stream. The buffer must not be full.
///
/// Goes through `AsyncRead::poll_read` rather than `try_read`: tokio then knows that a short
/// read drained the socket and skips the `EAGAIN` syscall the next read would cost.
pub(crate) async fn read_into<R: AsyncRead + Unpin>(
    s: &mut R,
    buf: &mut Buf,
    limit: Limit,
) -> io::Result<usize> {
    let spare = buf.spare();
    let mut rb = ReadBuf::new(spare);
    let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut *s).poll_read(cx, &mut rb))).await;
    match first {
        Poll::Ready(r) => r?,
        Poll::Pending => {
            let read = poll_fn(|cx| Pin::new(&mut *s).poll_read(cx, &mut rb));
            tokio::time::timeout_at(limit.deadline(), read)
                .await
                .map_err(|_| timed_out())??
        }
    }
    let n = rb.filled().len();
    let was_full_read = n == rb.capacity();
    buf.end += n;
    // The socket had at least as much as we asked for: read bigger next time.
    if was_full_read && buf.data.len() < buf.max && buf.start == 0 {
        buf.grow();
    }
    Ok(n)
}

/// Read whatever has already arrived on a freshly accepted socket, without waiting.
///
/// tokio registers a new socket as "not ready" and only reads it after the next pass through
/// `epoll_wait`, although a client's request usually arrives together with the handshake. This
/// reads it at once (HAProxy does the same); `WouldBlock` means: wait as usual.
pub(crate) fn read_now(s: &TcpStream, buf: &mut Buf) -> io::Result<usize> {
    use std::io::Read;
    let sock = socket2::SockRef::from(s);
    let n = (&*sock).read(buf.spare())?;
    buf.end += n;
    Ok(n)
}

/// Write `a` then `b` completely, with one vectored write in the common case.
pub(crate) async fn write_all2(
    s: &TcpStream,
    mut a: &[u8],
    mut b: &[u8],
    limit: Limit,
) -> io::Result<()> {
    let mut deadline = None;
    while !a.is_empty() || !b.is_empty() {
        let r = if a.is_empty() {
            s.try_write(b)
        } else if b.is_empty() {
            s.try_write(a)
        } else {
            s.try_write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                deadline = None;
                let from_a = n.min(a.len());
                a = &a[from_a..];
                n -= from_a;
                b = &b[n.min(b.len())..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let until = *deadline.get_or_insert_with(|| limit.deadline());
                tokio::time::timeout_at(until, s.writable())
                    .await
                    .map_err(|_| timed_out())??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) async fn write_all(s: &TcpStream, a: &[u8], limit: Limit) -> io::Result<()> {
    write_all2(s, a, &[], limit).await
}

/// Where the engine writes whole messages: a backend socket, or a client connection.
pub(crate) trait Sink {
    /// Write `a` then `b` completely (see [`write_all2`]).
    fn write_all2(
        &mut self,
        a: &[u8],
        b: &[u8],
        limit: Limit,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

impl Sink for &TcpStream {
    fn write_all2(
        &mut self,
        a: &[u8],
        b: &[u8],
        limit: Limit,
    ) -> impl Future<Output = io::Result<()>> + Send {
        write_all2(self, a, b, limit)
    }
}

impl Sink for TcpStream {
    fn write_all2(
        &mut self,
        a: &[u8],
        b: &[u8],
        limit: Limit,
    ) -> impl Future<Output = io::Result<()>> + Send {
        write_all2(self, a, b, limit)
    }
}

/// A client connection the engine serves: a TCP socket, or a TLS session over one (decrypted
/// HTTP/1.1, ALPN `http/1.1` or none).
///
/// Generic rather than an enum: the cleartext path is compiled for `TcpStream` alone, exactly
/// as it was before TLS existed here, with no branch per read or write; TLS gets its own copy.
pub(crate) trait Client: AsyncRead + AsyncWrite + Sink + Unpin + Send + 'static {
    /// Requests arrived over TLS: `X-Forwarded-Proto: https`, and `tls.hsts` on responses.
    const TLS: bool;

    /// The TCP socket underneath (addresses for PROXY headers and the Host fallback).
    fn tcp(&self) -> &TcpStream;

    /// Whatever already arrived, without waiting (see [`read_now`]); `WouldBlock`: wait as
    /// usual.
    fn read_now(&mut self, buf: &mut Buf) -> io::Result<usize>;

    /// Turn Nagle off once a connection proves to be keep-alive.
    fn nodelay(&self);

    /// Close after the last response. TLS sends `close_notify` first, so the client can tell
    /// a complete close from a truncation.
    fn close(self) -> impl Future<Output = ()> + Send;

    /// The connection turned out to speak HTTP/2 (its first bytes, `prefix`, are the
    /// preface): hyper serves it from here.
    fn into_h2(
        self,
        h2: Arc<H2Service>,
        prefix: Vec<u8>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        retired: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send;
}

impl Client for TcpStream {
    const TLS: bool = false;

    fn tcp(&self) -> &TcpStream {
        self
    }

    fn read_now(&mut self, buf: &mut Buf) -> io::Result<usize> {
        read_now(self, buf)
    }

    fn nodelay(&self) {
        let _ = self.set_nodelay(true);
    }

    /// Dropping the socket closes it (FIN): nothing to wait for.
    async fn close(self) {}

    async fn into_h2(
        self,
        h2: Arc<H2Service>,
        prefix: Vec<u8>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        retired: watch::Receiver<bool>,
    ) {
        h2.serve(self, prefix, peer, local, retired).await;
    }
}

/// How long a TLS connection may take to send its `close_notify` before it is just closed.
const CLOSE_NOTIFY_TIME: Duration = Duration::from_secs(1);

impl Sink for TlsStream<TcpStream> {
    /// Hands the plaintext to rustls in one vectored call (head and body become one record
    /// when they fit), then writes the records with `try_write` straight to the socket, so
    /// the common case is one syscall and no timer, as for cleartext.
    fn write_all2(
        &mut self,
        a: &[u8],
        b: &[u8],
        limit: Limit,
    ) -> impl Future<Output = io::Result<()>> + Send {
        tls_write_all2(self, a, b, limit)
    }
}

async fn tls_write_all2(
    s: &mut TlsStream<TcpStream>,
    mut a: &[u8],
    mut b: &[u8],
    limit: Limit,
) -> io::Result<()> {
    use std::io::Write;
    let (tcp, tls) = s.get_mut();
    let mut deadline = None;
    loop {
        while !a.is_empty() || !b.is_empty() {
            let mut w = tls.writer();
            let n = if a.is_empty() {
                w.write(b)?
            } else if b.is_empty() {
                w.write(a)?
            } else {
                w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?
            };
            if n == 0 {
                // rustls's outgoing buffer is full: send some first.
                break;
            }
            let mut n = n;
            let from_a = n.min(a.len());
            a = &a[from_a..];
            n -= from_a;
            b = &b[n.min(b.len())..];
        }
        if !tls.wants_write() {
            if a.is_empty() && b.is_empty() {
                return Ok(());
            }
            // Took nothing and has nothing to send: cannot make progress.
            return Err(io::ErrorKind::WriteZero.into());
        }
        while tls.wants_write() {
            match tls.write_tls(&mut TryWrite(tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => deadline = None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let until = *deadline.get_or_insert_with(|| limit.deadline());
                    tokio::time::timeout_at(until, tcp.writable())
                        .await
                        .map_err(|_| timed_out())??;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// `std::io::Write` over a tokio socket's non-blocking writes (what rustls writes its records
/// to); `WouldBlock` clears the socket's readiness, so `writable()` then waits for epoll.
struct TryWrite<'a>(&'a TcpStream);

impl std::io::Write for TryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Client for TlsStream<TcpStream> {
    const TLS: bool = true;

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }

    /// The handshake just ran through the runtime, which knows the socket's readiness, and a
    /// request that came with the client's last handshake flight is already decrypted inside
    /// rustls: the first ordinary read finds either at once.
    fn read_now(&mut self, _buf: &mut Buf) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Set before the handshake (see the TLS handler).
    fn nodelay(&self) {}

    async fn close(mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(CLOSE_NOTIFY_TIME, self.shutdown()).await;
    }

    /// HTTP/2 with prior knowledge inside TLS that negotiated no ALPN: served as ALPN `h2`
    /// would be.
    async fn into_h2(
        self,
        h2: Arc<H2Service>,
        prefix: Vec<u8>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        retired: watch::Receiver<bool>,
    ) {
        let local = local.or_else(|| self.get_ref().0.local_addr().ok());
        h2.serve_tls(Prefixed::new(prefix, self), true, peer, local, retired)
            .await;
    }
}
