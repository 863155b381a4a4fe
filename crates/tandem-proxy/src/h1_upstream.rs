//! HTTP/1.1 to cleartext backends for requests that hyper received (HTTP/2 clients, and
//! HTTP/1.1 on services whose other pools need hyper), without hyper's client.
//!
//! hyper's client runs each backend connection in a task of its own and hands every request
//! to it over a channel, so one proxied request woke three tasks (the client's stream, the
//! backend connection, the stream again) and built the response head twice. Here the request
//! head is written and the response head parsed (httparse, with the HTTP/1 engine's framing
//! rules) by the task that serves the client's stream, and the body is read from the socket
//! as the client's side asks for it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::body::{BoxError, RequestBody};
use crate::h1::chunked::Chunked;
use crate::h1::head::{backend_response, BodyLen, MAX_HEADERS};

/// A backend connection with its buffers, which stay with it in the pool: allocations of a
/// kilobyte and more are slow in glibc's malloc (they consolidate its fast bins), and the read
/// buffer's memory comes back once the client has been sent the body frames cut from it.
pub(crate) struct NativeConn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

impl NativeConn {
    /// Boxed: it moves between the pool, the exchange and the response body, and a pointer
    /// is cheaper to move (and keeps the body type small) for one allocation per connection.
    pub(crate) fn new(stream: TcpStream) -> Box<Self> {
        Box::new(NativeConn {
            stream,
            read: BytesMut::new(),
            write: Vec::new(),
        })
    }

    /// Whether the idle connection can carry a request (see [`crate::h1::pool::still_idle`]).
    pub(crate) fn still_idle(&self) -> bool {
        crate::h1::pool::still_idle(&self.stream)
    }
}

/// The largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;
/// How much is read from the backend at a time.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("backend connection: {0}")]
    Io(#[from] io::Error),
    #[error("backend closed the connection without answering")]
    Closed,
    #[error("request body: {0}")]
    RequestBody(BoxError),
    #[error("invalid response from backend: {0}")]
    Malformed(&'static str),
}

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// No body.
    Nothing,
    /// As it comes: the head carries its length.
    Raw,
    /// Chunked: the length is not known in advance.
    Chunked,
}

/// Write the request head for `req` into `out`: request line, the headers as they are (the
/// caller removed hop-by-hop ones and added forwarding), and the body's framing.
fn write_head(req: &Request<RequestBody>, out: &mut Vec<u8>) -> Sending {
    let body = req.body();
    let sending = if body.is_end_stream() {
        Sending::Nothing
    } else if req.headers().contains_key(http::header::CONTENT_LENGTH)
        || body.size_hint().exact().is_some()
    {
        Sending::Raw
    } else {
        Sending::Chunked
    };
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match (sending, body.size_hint().exact()) {
        (Sending::Raw, Some(n)) if !req.headers().contains_key(http::header::CONTENT_LENGTH) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(crate::h1::head::itoa_u64(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        (Sending::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    sending
}

/// Send the request head; a body read in full already goes in the same write.
///
/// `Err` here means the backend saw nothing of the request (the caller may try another
/// connection with it), except that a partial write cannot be told apart: it is reported the
/// same way, and only ever happens on a connection that is failing anyway.
/// Returns what is left to send of the body: nothing when it went with the head.
async fn send_head(
    conn: &mut NativeConn,
    req: &Request<RequestBody>,
) -> Result<Sending, io::Error> {
    let head = &mut conn.write;
    head.clear();
    let mut sending = write_head(req, head);
    if let (Sending::Raw, RequestBody::Buffered(Some(data))) = (sending, req.body()) {
        head.extend_from_slice(data);
        sending = Sending::Nothing;
    }
    conn.stream.write_all(head).await?;
    Ok(sending)
}

/// One request and its response head on `stream`. On failure, whether the backend saw
/// nothing of the request (so it can go to another connection as it is).
pub(crate) async fn exchange(
    mut conn: Box<NativeConn>,
    req: &mut Request<RequestBody>,
) -> Result<Response<NativeBody>, (ExchangeError, bool)> {
    let sending = send_head(&mut conn, req)
        .await
        .map_err(|e| (ExchangeError::Io(e), true))?;
    send_body(&mut conn.stream, req.body_mut(), sending)
        .await
        .map_err(|e| (e, false))?;
    let is_head = req.method() == http::Method::HEAD;
    let mut resp = read_response(conn, is_head).await.map_err(|e| (e, false))?;
    // A request that said `Connection: close` (a pool with `keepalive = false`) ends its
    // connection, whatever the backend answers (RFC 9112 §9.6).
    if req
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        resp.body_mut().keep_alive = false;
    }
    Ok(resp)
}

/// Stream the client's request body to the backend (after [`send_head`]).
async fn send_body(
    stream: &mut TcpStream,
    body: &mut RequestBody,
    sending: Sending,
) -> Result<(), ExchangeError> {
    use http_body_util::BodyExt as _;
    if sending == Sending::Nothing {
        return Ok(());
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ExchangeError::RequestBody)?;
        let Ok(data) = frame.into_data() else {
            // Trailers: HTTP/1.1 would need chunked trailers the backend may not read; dropped.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if sending == Sending::Chunked {
            let mut size = [0u8; 18];
            let n = hex(data.len(), &mut size);
            // Size line, data and CRLF in one vectored write, not three.
            let mut chunk = (&size[..n]).chain(data).chain(&b"\r\n"[..]);
            stream.write_all_buf(&mut chunk).await?;
        } else {
            stream.write_all(&data).await?;
        }
    }
    if sending == Sending::Chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// `n` in hex followed by CRLF, into `out`; returns the length.
fn hex(mut n: usize, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    out[len] = b'\r';
    out[len + 1] = b'\n';
    len + 2
}

/// Read the response head (skipping interim 1xx answers) and return the response, whose body
/// reads the rest from `stream`. `Closed` when the backend closed before sending a byte.
async fn read_response(
    mut conn: Box<NativeConn>,
    is_head: bool,
) -> Result<Response<NativeBody>, ExchangeError> {
    // Nothing may be left from the previous response (see `take_reusable`).
    conn.read.clear();
    loop {
        let buf = &mut conn.read;
        if !buf.is_empty() {
            match parse_head(buf, is_head)? {
                Parsed::Partial => {}
                Parsed::Interim(len) => {
                    buf.advance(len);
                    continue;
                }
                Parsed::Final {
                    status,
                    headers,
                    body,
                    keep_alive,
                } => {
                    let body = NativeBody::new(conn, body, keep_alive);
                    let mut resp = Response::new(body);
                    *resp.status_mut() = status;
                    *resp.version_mut() = Version::HTTP_11;
                    *resp.headers_mut() = headers;
                    return Ok(resp);
                }
            }
            if buf.len() >= MAX_HEAD {
                return Err(ExchangeError::Malformed("response head too large"));
            }
        }
        buf.reserve(READ_CHUNK);
        let n = tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.read).await?;
        if n == 0 {
            return Err(if conn.read.is_empty() {
                ExchangeError::Closed
            } else {
                ExchangeError::Malformed("response head cut short")
            });
        }
    }
}

enum Parsed {
    Partial,
    /// A 1xx answer other than 101, `len` bytes long: skipped.
    Interim(usize),
    /// The head has been taken off the buffer.
    Final {
        status: StatusCode,
        headers: HeaderMap,
        body: BodyLen,
        keep_alive: bool,
    },
}

/// Parse a response head from the start of `buf`: its status, the message's own headers (no
/// hop-by-hop ones, which belong to the backend connection) and the body's framing. The
/// header values share the head's bytes (no copy, no allocation per value).
fn parse_head(buf: &mut BytesMut, is_head: bool) -> Result<Parsed, ExchangeError> {
    // Where the kept headers' names and values are in the head: (name at, name length, value
    // at, value length).
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let mut kept = 0;
    // Uninitialised: httparse writes what it parses (4 KiB not cleared per response).
    let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::Malformed("too many header lines"))
        }
        Err(_) => return Err(ExchangeError::Malformed("malformed response head")),
    };
    let code = resp.code.unwrap_or(0);
    if code == 101 {
        // Nothing was asked to upgrade (HTTP/2 clients cannot); a backend switching protocols
        // anyway cannot be relayed.
        return Err(ExchangeError::Malformed(
            "unexpected 101 Switching Protocols",
        ));
    }
    if (100..200).contains(&code) {
        return Ok(Parsed::Interim(len));
    }
    let status =
        StatusCode::from_u16(code).map_err(|_| ExchangeError::Malformed("invalid status code"))?;
    let framing = backend_response(code, resp.version.unwrap_or(1), is_head, resp.headers)
        .map_err(|_| ExchangeError::Malformed("invalid Content-Length"))?;
    // httparse's names and values are slices of the head.
    let start = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        (s.as_ptr() as usize)
            .checked_sub(start)
            .filter(|at| at + s.len() <= len)
            .and_then(|at| Some((u32::try_from(at).ok()?, u32::try_from(s.len()).ok()?)))
            .ok_or(ExchangeError::Malformed("header outside the head"))
    };
    for h in resp.headers.iter() {
        if !framing.forwards(h.name) {
            continue;
        }
        let (name_at, name_len) = span(h.name.as_bytes())?;
        let (value_at, value_len) = span(h.value)?;
        spans[kept] = (name_at, name_len, value_at, value_len);
        kept += 1;
    }
    let (body, keep_alive) = (framing.body, framing.keep_alive);
    let head = buf.split_to(len).freeze();
    let mut headers = crate::header_pool::take(kept);
    for &(name_at, name_len, value_at, value_len) in &spans[..kept] {
        let range = |at: u32, n: u32| at as usize..(at + n) as usize;
        let name = HeaderName::from_bytes(&head[range(name_at, name_len)])
            .map_err(|_| ExchangeError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(range(value_at, value_len)))
            .map_err(|_| ExchangeError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Parsed::Final {
        status,
        headers,
        body,
        keep_alive,
    })
}

/// How much of the response body is still to come.
enum Remaining {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// A backend's response body, read from its connection as the client takes it. Once read to
/// its end, a connection that may carry another request is handed back by [`take_reusable`].
///
/// [`take_reusable`]: NativeBody::take_reusable
pub(crate) struct NativeBody {
    conn: Option<Box<NativeConn>>,
    remaining: Remaining,
    keep_alive: bool,
}

impl NativeBody {
    fn new(conn: Box<NativeConn>, body: BodyLen, keep_alive: bool) -> Self {
        let remaining = match body {
            BodyLen::None | BodyLen::Length(0) => Remaining::Done,
            BodyLen::Length(n) => Remaining::Length(n),
            BodyLen::Chunked => Remaining::Chunked(Chunked::default()),
            BodyLen::UntilClose => Remaining::UntilClose,
        };
        NativeBody {
            conn: Some(conn),
            remaining,
            keep_alive,
        }
    }

    /// The connection, if the body was read to its end, nothing followed it and the backend
    /// keeps it open.
    pub(crate) fn take_reusable(&mut self) -> Option<Box<NativeConn>> {
        let done = matches!(self.remaining, Remaining::Done);
        match &self.conn {
            Some(c) if done && self.keep_alive && c.read.is_empty() => self.conn.take(),
            _ => None,
        }
    }

    /// The next frame out of what was read already, if there is one.
    fn buffered(&mut self) -> Result<Option<Bytes>, BoxError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let buf = &mut conn.read;
        if buf.is_empty() {
            return Ok(None);
        }
        match &mut self.remaining {
            Remaining::Done => Ok(None),
            Remaining::UntilClose => Ok(Some(buf.split().freeze())),
            Remaining::Length(n) => {
                let take = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                *n -= take as u64;
                if *n == 0 {
                    self.remaining = Remaining::Done;
                }
                Ok(Some(buf.split_to(take).freeze()))
            }
            Remaining::Chunked(c) => {
                let mut data = BytesMut::new();
                let read = &*buf;
                let used = c.scan(read, |r| data.extend_from_slice(&read[r]))?;
                if c.is_done() {
                    self.remaining = Remaining::Done;
                }
                buf.advance(used);
                Ok((!data.is_empty()).then(|| data.freeze()))
            }
        }
    }
}

impl Body for NativeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match this.buffered() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            if matches!(this.remaining, Remaining::Done) {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if conn.read.capacity() - conn.read.len() < READ_CHUNK / 4 {
                conn.read.reserve(READ_CHUNK);
            }
            match conn.stream.try_read_buf(&mut conn.read) {
                Ok(0) => {
                    if matches!(this.remaining, Remaining::UntilClose) {
                        this.remaining = Remaining::Done;
                        this.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err("backend closed the connection mid-body".into())));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match conn.stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.remaining, Remaining::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Remaining::Done => SizeHint::with_exact(0),
            Remaining::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], is_head: bool) -> Result<Parsed, ExchangeError> {
        parse_head(&mut BytesMut::from(buf), is_head)
    }

    fn parsed(buf: &[u8], is_head: bool) -> (StatusCode, HeaderMap, BodyLen, bool) {
        match parse(buf, is_head) {
            Ok(Parsed::Final {
                status,
                headers,
                body,
                keep_alive,
                ..
            }) => (status, headers, body, keep_alive),
            Ok(Parsed::Partial) => panic!("partial"),
            Ok(Parsed::Interim(_)) => panic!("interim"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn response_head_keeps_the_message_headers_and_drops_the_connection_ones() {
        let (status, h, body, ka) = parsed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello",
            false,
        );
        assert_eq!(status, 200);
        assert_eq!(body, BodyLen::Length(5));
        assert!(ka);
        assert!(h.get("connection").is_none());
        assert!(h.get("x-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
        assert_eq!(
            h.get("content-length").map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (_, h, body, ka) = parsed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(body, BodyLen::Chunked);
        assert!(ka);
        assert!(h.get("transfer-encoding").is_none());
        // No length: until close, and the connection is spent.
        let (_, _, body, ka) = parsed(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((body, ka), (BodyLen::UntilClose, false));
        // HEAD and 304 have no body whatever the headers say.
        let (_, _, body, _) = parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(body, BodyLen::None);
        let (_, _, body, _) = parsed(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(body, BodyLen::None);
        // HTTP/1.0 without keep-alive, or Connection: close: not reusable.
        let (_, _, _, ka) = parsed(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!ka);
        let (_, _, _, ka) = parsed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!ka);
    }

    #[test]
    fn interim_answers_are_skipped_and_bad_heads_refused() {
        assert!(matches!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", false),
            Ok(Parsed::Interim(25))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(Parsed::Partial)
        ));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad, false), Err(ExchangeError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn request_head_framing() {
        let mut out = Vec::new();
        let req = Request::builder()
            .method("GET")
            .uri("/a?b=1")
            .header("host", "x")
            .body(RequestBody::Empty)
            .unwrap();
        assert_eq!(write_head(&req, &mut out), Sending::Nothing);
        assert_eq!(out, b"GET /a?b=1 HTTP/1.1\r\nhost: x\r\n\r\n");
        out.clear();
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .body(RequestBody::Buffered(Some(Bytes::from_static(b"abc"))))
            .unwrap();
        assert_eq!(write_head(&req, &mut out), Sending::Raw);
        assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n");
        let mut size = [0u8; 18];
        let n = hex(0x1f0a, &mut size);
        assert_eq!(&size[..n], b"1f0a\r\n");
        let n = hex(0, &mut size);
        assert_eq!(&size[..n], b"0\r\n");
    }
}
