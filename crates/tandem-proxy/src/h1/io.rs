//! Socket helpers for the HTTP/1 engine: try the non-blocking operation first and arm a timer
//! only when the socket is not ready, so the common case costs one syscall and no timer.

use std::io::{self, IoSlice};
use std::time::Duration;

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

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
pub(crate) async fn read_into(s: &mut TcpStream, buf: &mut Buf, limit: Limit) -> io::Result<usize> {
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
