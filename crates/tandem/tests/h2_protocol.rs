//! HTTP/2 from clients that break the protocol: each mistake gets the answer RFC 9113 gives
//! it (a reset stream, 431, or GOAWAY), is counted, and leaves tandem serving everyone else.
//!
//! No real client sends malformed frames, so those come from a raw socket built with
//! tandem-h2's frame writer; the oversized request comes from real curl.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use common::*;
use http::{HeaderName, HeaderValue};
use tandem_h2::frame::{self, Frame, Head, Reason};
use tandem_h2::hpack::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the raw client saw.
#[derive(Debug, PartialEq)]
enum Seen {
    Status(u32, String),
    Data(u32, Vec<u8>, bool),
    Rst(u32, Reason),
    GoAway(Reason),
}

struct RawClient {
    s: TcpStream,
    enc: Encoder,
    dec: Decoder,
    buf: BytesMut,
}

impl RawClient {
    async fn connect(to: SocketAddr) -> RawClient {
        let mut s = TcpStream::connect(to).await.expect("connect");
        let mut hello = frame::PREFACE.to_vec();
        frame::write_settings(&[], &mut hello);
        s.write_all(&hello).await.expect("preface");
        RawClient {
            s,
            enc: Encoder::new(),
            dec: Decoder::new(4096),
            buf: BytesMut::new(),
        }
    }

    /// A GET with extra regular fields.
    fn get(&mut self, stream: u32, extra: &[(&'static str, &'static str)], out: &mut Vec<u8>) {
        let mut blk = Vec::new();
        self.enc.begin(&mut blk);
        self.enc.pseudo(2, b"GET", &mut blk);
        self.enc.pseudo(6, b"http", &mut blk);
        self.enc.pseudo(4, b"/", &mut blk);
        self.enc.pseudo(1, b"t", &mut blk);
        for (n, v) in extra {
            self.enc.header(
                &HeaderName::from_static(n),
                &HeaderValue::from_static(v),
                &mut blk,
            );
        }
        frame::write_headers(stream, &blk, true, 16_384, out);
    }

    /// A plain CONNECT (no :scheme or :path).
    fn connect_to(&mut self, stream: u32, authority: &[u8], out: &mut Vec<u8>) {
        let mut blk = Vec::new();
        self.enc.begin(&mut blk);
        self.enc.pseudo(2, b"CONNECT", &mut blk);
        self.enc.pseudo(1, authority, &mut blk);
        frame::write_headers(stream, &blk, false, 16_384, out);
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// Frames until `done` says so, the connection closes, or 5 s pass.
    async fn read_until(&mut self, done: impl Fn(&[Seen]) -> bool) -> (Vec<Seen>, bool) {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while self.buf.len() >= frame::HEAD_LEN {
                let head = Head::parse(self.buf[..frame::HEAD_LEN].try_into().expect("9 bytes"));
                if self.buf.len() < frame::HEAD_LEN + head.len {
                    break;
                }
                self.buf.advance(frame::HEAD_LEN);
                let payload = self.buf.split_to(head.len).freeze();
                match frame::parse(head, payload).expect("tandem sent a valid frame") {
                    Frame::Headers { stream, block, .. } => {
                        let mut status = String::new();
                        self.dec
                            .decode(&block, usize::MAX, |f| {
                                if f.name.as_bytes() == b":status" {
                                    status = String::from_utf8_lossy(&f.value).into_owned();
                                }
                            })
                            .expect("tandem's header block decodes");
                        seen.push(Seen::Status(stream, status));
                    }
                    Frame::Data {
                        stream,
                        data,
                        end_stream,
                        ..
                    } => seen.push(Seen::Data(stream, data.to_vec(), end_stream)),
                    Frame::RstStream { stream, reason } => seen.push(Seen::Rst(stream, reason)),
                    Frame::GoAway { reason, .. } => seen.push(Seen::GoAway(reason)),
                    _ => {}
                }
            }
            if done(&seen) {
                return (seen, false);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16_384];
            match tokio::time::timeout(left, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return (seen, false),
            }
        }
    }
}

async fn rejected(admin: SocketAddr) -> u64 {
    let metrics = get(&format!("http://{admin}/metrics"), &[])
        .await
        .body_text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tandem_service_rejected_requests_total{service=\"www\"} "))
        .and_then(|v| v.parse().ok())
        .expect("rejected counter")
}

// N = 133
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_get_their_answers_and_tandem_keeps_serving() {
    let n = 133;
    let backend = text_backend(ip(n), "ok").await;
    let admin = addr(n, 9900);
    let cfg = config(n, "http", &[backend.addr], "", "max_header_size = 1024")
        .replace(&addr(n, 0).to_string(), &admin.to_string());
    let listen = addr(n, 8080);
    let _t = Tandem::run("h2-protocol", &cfg, &[listen, admin]).await;
    let h2 = ["--http2-prior-knowledge"];
    let url = format!("http://{listen}/");
    let before = rejected(admin).await;

    // A malformed request (a connection-specific field) resets its own stream only; the next
    // request on the same connection is served.
    let mut c = RawClient::connect(listen).await;
    let mut out = Vec::new();
    c.get(1, &[("connection", "close")], &mut out);
    c.get(3, &[("accept", "*/*")], &mut out);
    c.send(&out).await;
    let (seen, closed) = c
        .read_until(|s| s.iter().any(|x| matches!(x, Seen::Data(3, _, true))))
        .await;
    assert!(!closed, "{seen:?}");
    assert!(
        seen.contains(&Seen::Rst(1, Reason::PROTOCOL_ERROR)),
        "{seen:?}"
    );
    assert!(seen.contains(&Seen::Status(3, "200".into())), "{seen:?}");
    assert!(
        seen.contains(&Seen::Data(3, b"ok".to_vec(), true)),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|x| matches!(x, Seen::Status(1, _))),
        "{seen:?}"
    );

    // CONNECT: no tunnels over HTTP/2, 405.
    let mut out = Vec::new();
    c.connect_to(5, b"elsewhere.example:443", &mut out);
    c.send(&out).await;
    let (seen, _) = c
        .read_until(|s| s.iter().any(|x| matches!(x, Seen::Data(5, _, true))))
        .await;
    assert!(seen.contains(&Seen::Status(5, "405".into())), "{seen:?}");
    assert_eq!(
        backend.stats.requests(),
        1,
        "only stream 3 reached the backend"
    );

    // A request head larger than max_header_size: 431 from real curl.
    let big = format!("X-Big: {}", "a".repeat(2_000));
    let r = get(&url, &[h2[0], "-H", &big]).await;
    assert_eq!((r.version.as_str(), r.status), ("HTTP/2", 431), "{r:?}");
    assert_eq!(get(&url, &h2).await.status, 200);
    assert_eq!(
        rejected(admin).await - before,
        2,
        "malformed request and 431 counted"
    );

    // Rapid reset: streams opened and cancelled at once, far beyond any that complete.
    let mut c = RawClient::connect(listen).await;
    let mut out = Vec::new();
    for i in 0..1_500u32 {
        let id = 2 * i + 1;
        c.get(id, &[], &mut out);
        frame::write_rst_stream(id, Reason::CANCEL, &mut out);
    }
    // tandem may close before it has read everything.
    let _ = c.s.write_all(&out).await;
    let (seen, closed) = c
        .read_until(|s| s.iter().any(|x| matches!(x, Seen::GoAway(_))))
        .await;
    assert!(
        seen.contains(&Seen::GoAway(Reason::ENHANCE_YOUR_CALM)),
        "{:?}",
        &seen[seen.len().saturating_sub(3)..]
    );
    let (_, closed_after) = c.read_until(|_| false).await;
    assert!(closed || closed_after, "connection left open after GOAWAY");

    // Garbage after the preface: GOAWAY and close.
    let mut c = RawClient::connect(listen).await;
    c.send(&[0xff; 64]).await;
    let (seen, _) = c
        .read_until(|s| s.iter().any(|x| matches!(x, Seen::GoAway(_))))
        .await;
    assert!(
        seen.iter().any(|x| matches!(
            x,
            Seen::GoAway(Reason::FRAME_SIZE_ERROR | Reason::PROTOCOL_ERROR)
        )),
        "{seen:?}"
    );

    // Through all of it, tandem serves.
    for _ in 0..3 {
        assert_eq!(get(&url, &h2).await.status, 200);
    }
}
