//! The `http` probe against real sockets on 127.0.0.1: status checks, body checks
//! (`expect_body`, `digest`) with every body framing, and what a broken server can send.
//!
//! Each server is a one-connection task on an ephemeral port that answers with scripted bytes;
//! every probe has a timeout, so no test can hang.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use md5::{Digest, Md5};
use tandem_config::{BodyMatch, HealthKind, Md5Digest, StatusSet};
use tandem_health::probe::{MAX_BODY, MAX_RESPONSE_HEAD};
use tandem_health::{probe, ProbeOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const T: Duration = Duration::from_secs(5);

fn http_kind(expect: &[(u16, u16)]) -> HealthKind {
    HealthKind::Http {
        method: "GET".into(),
        path: "/healthz".into(),
        host: None,
        expect_status: StatusSet {
            ranges: expect.to_vec(),
        },
        port: None,
        expect_body: None,
        digest: None,
    }
}

/// An `http` check of `/healthz` expecting 2xx, with body checks.
fn body_kind(expect_body: Option<&str>, digest: Option<&str>) -> HealthKind {
    HealthKind::Http {
        method: "GET".into(),
        path: "/healthz".into(),
        host: None,
        expect_status: StatusSet {
            ranges: vec![(200, 299)],
        },
        port: None,
        expect_body: expect_body.map(|s| BodyMatch::parse(s).expect("valid expect_body")),
        digest: digest.map(|s| Md5Digest::parse(s).expect("valid digest")),
    }
}

fn md5_hex(body: &[u8]) -> String {
    Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A one-connection server: reads the request head, sends it back through the channel,
/// then writes `response` and closes.
fn serve_once(listener: TcpListener, response: Vec<u8>) -> oneshot::Receiver<String> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        let _ = s.write_all(&response).await;
    });
    rx
}

async fn server(response: impl Into<Vec<u8>>) -> (SocketAddr, oneshot::Receiver<String>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    (addr, serve_once(l, response.into()))
}

/// A port that refuses: bound once, then released.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

/// Probe a server that answers `response` with `kind`.
async fn probe_response(
    kind: &HealthKind,
    response: impl Into<Vec<u8>>,
) -> (SocketAddr, ProbeOutcome) {
    let (addr, _) = server(response).await;
    (addr, probe(kind, addr, T).await)
}

// ---------------------------------------------------------------------------------------------
// Status line only (no body checks)

#[tokio::test]
async fn http_200_sends_a_well_formed_request() {
    let (addr, head) = server(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
    let o = probe(&http_kind(&[(200, 299)]), addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));
    let head = head.await.expect("request seen");
    assert_eq!(
        head,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tandem-health\r\n\
             Connection: close\r\n\r\n"
        )
    );
}

#[tokio::test]
async fn http_503_is_down_with_status_in_detail() {
    let (addr, o) = probe_response(
        &http_kind(&[(200, 399)]),
        &b"HTTP/1.1 503 Service Unavailable\r\n\r\n"[..],
    )
    .await;
    assert_eq!(o, ProbeOutcome::fail(format!("http 503 from {addr}")));
}

#[tokio::test]
async fn http_expect_status_ranges_and_lists() {
    // "200-299,301,404"
    let kind = http_kind(&[(200, 299), (301, 301), (404, 404)]);
    for (resp, ok) in [
        (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], true),
        (b"HTTP/1.1 301 Moved\r\n\r\n", true),
        (b"HTTP/1.1 302 Found\r\n\r\n", false),
        (b"HTTP/1.0 404 Not Found\r\n\r\n", true),
        (b"HTTP/1.1 500 Oops\r\n\r\n", false),
    ] {
        let (_, o) = probe_response(&kind, resp).await;
        assert_eq!(o.ok, ok, "{:?} -> {o:?}", String::from_utf8_lossy(resp));
    }
}

#[tokio::test]
async fn http_garbage_and_early_close_fail_cleanly() {
    for (resp, want) in [
        (&b"SSH-2.0-OpenSSH_9.2\r\n"[..], "bad status line from"),
        (b"\x00\xff\xfe binary", "bad status line from"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line from"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "bad status line from"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "bad status line from"),
        (b"HTTP/1.1 099 Low\r\n\r\n", "bad status line from"),
        (b"", "connection closed by"),
        (b"HTTP/1.1 20", "connection closed by"),
    ] {
        let (addr, o) = probe_response(&http_kind(&[(200, 399)]), resp).await;
        assert!(!o.ok);
        assert!(o.detail.starts_with(want), "{resp:?} -> {o:?}");
        assert!(o.detail.contains(&addr.to_string()), "{o:?}");
    }
}

#[tokio::test]
async fn http_endless_header_is_bounded() {
    // A status line that never ends: the probe gives up after MAX_RESPONSE_HEAD bytes,
    // long before the timeout.
    let mut long = vec![b'x'; 3 * MAX_RESPONSE_HEAD];
    long[..13].copy_from_slice(b"HTTP/1.1 200 ");
    let (_, o) = probe_response(&http_kind(&[(200, 399)]), long).await;
    assert!(!o.ok);
    assert!(
        o.detail
            .starts_with("no status line in the first 8192 bytes"),
        "{o:?}"
    );
}

#[tokio::test]
async fn http_slow_server_times_out() {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    // Accepts (the kernel completes the handshake) and never answers.
    let keep = tokio::spawn(async move {
        let conn = l.accept().await;
        std::future::pending::<()>().await;
        drop(conn);
    });
    let timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let o = probe(&http_kind(&[(200, 399)]), addr, timeout).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("timeout after 200ms waiting for {addr} to answer"))
    );
    let took = started.elapsed();
    assert!(took >= timeout && took < Duration::from_secs(3), "{took:?}");
    keep.abort();
}

#[tokio::test]
async fn http_skips_interim_responses() {
    let (addr, o) = probe_response(
        &http_kind(&[(100, 299)]),
        &b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n"[..],
    )
    .await;
    assert_eq!(o, ProbeOutcome::fail(format!("http 503 from {addr}")));
}

#[tokio::test]
async fn http_custom_method_host_and_port_override() {
    let (check_addr, head) = server(&b"HTTP/1.1 200 OK\r\n\r\n"[..]).await;
    let traffic = closed_port().await;
    let kind = HealthKind::Http {
        method: "HEAD".into(),
        path: "/status?full=1".into(),
        host: Some("www.example.com".into()),
        expect_status: StatusSet {
            ranges: vec![(200, 200)],
        },
        port: Some(check_addr.port()),
        expect_body: None,
        digest: None,
    };
    let o = probe(&kind, traffic, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {check_addr}")));
    let head = head.await.expect("request seen");
    assert!(
        head.starts_with("HEAD /status?full=1 HTTP/1.1\r\nHost: www.example.com\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn http_refuses_to_send_injected_headers() {
    let (addr, _) = server(&b"HTTP/1.1 200 OK\r\n\r\n"[..]).await;
    for (method, path, host) in [
        ("GET", "/a\r\nX-Evil: 1", None),
        ("GET /x", "/", None),
        ("GET", "/", Some("a\r\nb")),
        ("", "/", None),
        ("GET", "relative", None),
    ] {
        let kind = HealthKind::Http {
            method: method.into(),
            path: path.into(),
            host: host.map(Into::into),
            expect_status: StatusSet {
                ranges: vec![(200, 200)],
            },
            port: None,
            expect_body: None,
            digest: None,
        };
        let o = probe(&kind, addr, T).await;
        assert!(!o.ok && o.detail.starts_with("invalid http check"), "{o:?}");
    }
}

#[tokio::test]
async fn ipv6_http_with_bracketed_host() {
    let l = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
        .await
        .expect("IPv6 loopback (::1) is required by this test");
    let addr = l.local_addr().expect("addr");
    let head = serve_once(l, b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
    let o = probe(&http_kind(&[(200, 200)]), addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));
    let head = head.await.expect("request seen");
    assert!(
        head.contains(&format!("\r\nHost: [::1]:{}\r\n", addr.port())),
        "{head}"
    );
}

// ---------------------------------------------------------------------------------------------
// expect_body and digest

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn expect_body_substring() {
    let kind = body_kind(Some("\"status\": \"ok\""), None);
    let (addr, o) = probe_response(&kind, with_length(br#"{"status": "ok", "db": "up"}"#)).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));

    let (addr, o) = probe_response(&kind, with_length(br#"{"status": "degraded"}"#)).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            r#"http 200 from {addr}, body does not contain "\"status\": \"ok\"""#
        ))
    );
}

#[tokio::test]
async fn expect_body_regex() {
    // Flags are written inline: `(?m)` makes `^` and `$` match at line ends.
    let kind = body_kind(Some(r"/(?m)^db=(up|degraded)$/"), None);
    let (addr, o) = probe_response(&kind, with_length(b"web=up\ndb=degraded\n")).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));
    let (addr, o) = probe_response(&kind, with_length(b"web=up\ndb=down\n")).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            r#"http 200 from {addr}, body does not match "/(?m)^db=(up|degraded)$/""#
        ))
    );
}

#[tokio::test]
async fn digest_match_and_mismatch() {
    let page = b"<html><body>It works!</body></html>\n";
    let want = md5_hex(page);
    let kind = body_kind(None, Some(&want.to_uppercase()));
    let (addr, o) = probe_response(&kind, with_length(page)).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));

    let changed = b"<html><body>It works?</body></html>\n";
    let (addr, o) = probe_response(&kind, with_length(changed)).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "http 200 from {addr}, body digest {} is not the expected {want}",
            md5_hex(changed)
        ))
    );
}

#[tokio::test]
async fn both_checks_must_pass() {
    let page = b"ready";
    let kind = body_kind(Some("ready"), Some(&md5_hex(page)));
    let (_, o) = probe_response(&kind, with_length(page)).await;
    assert!(o.ok, "{o:?}");
    let kind = body_kind(Some("ready"), Some(&md5_hex(b"other")));
    let (_, o) = probe_response(&kind, with_length(page)).await;
    assert!(!o.ok && o.detail.contains("body digest"), "{o:?}");
}

#[tokio::test]
async fn chunked_body_is_decoded_before_checking() {
    // "ready" split across chunks, an extension and a trailer: the check sees the decoded body.
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                 4;note=1\r\nall \r\n3\r\nrea\r\n2\r\ndy\r\n0\r\nX-Checksum: 1\r\n\r\n";
    let decoded = b"all ready";
    let kind = body_kind(Some("/all ready$/"), Some(&md5_hex(decoded)));
    let (addr, o) = probe_response(&kind, &wire[..]).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));

    let (addr, o) = probe_response(
        &kind,
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx"[..],
    )
    .await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("bad chunked body from {addr}: bad chunk size"))
    );
}

#[tokio::test]
async fn body_until_close() {
    let kind = body_kind(Some("ready"), None);
    let (addr, o) = probe_response(&kind, &b"HTTP/1.0 200 OK\r\n\r\nall ready"[..]).await;
    assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));
}

#[tokio::test]
async fn body_over_the_cap_fails_with_a_clear_detail() {
    let kind = body_kind(Some("ready"), None);
    let limit = "is larger than the 1 MiB limit of checked bodies";

    // Announced: refused before reading a byte of it.
    let (addr, o) = probe_response(
        &kind,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            2 * MAX_BODY
        ),
    )
    .await;
    assert_eq!(
        o.detail,
        format!("body from {addr} {limit} (content-length {})", 2 * MAX_BODY)
    );

    // Until close: refused once it grows past the cap.
    let mut resp = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    resp.resize(resp.len() + MAX_BODY + 1, b'r');
    let (addr, o) = probe_response(&kind, resp).await;
    assert_eq!(o, ProbeOutcome::fail(format!("body from {addr} {limit}")));

    // Chunked: refused when a chunk would pass the cap.
    let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n".to_vec();
    resp.resize(resp.len() + 0x80000, b'r');
    resp.extend_from_slice(b"\r\n80001\r\n");
    let (addr, o) = probe_response(&kind, resp).await;
    assert_eq!(o, ProbeOutcome::fail(format!("body from {addr} {limit}")));

    // Exactly the cap is fine.
    let mut body = vec![b'.'; MAX_BODY - 5];
    body.extend_from_slice(b"ready");
    let (_, o) = probe_response(&kind, with_length(&body)).await;
    assert!(o.ok, "{o:?}");
}

#[tokio::test]
async fn body_checks_fail_cleanly_on_broken_responses() {
    let kind = body_kind(Some("ready"), None);
    for (resp, want) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nread"[..],
            "connection closed by {addr} after 4 of 10 body bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Len",
            "connection closed by {addr} in the middle of the end of the response headers",
        ),
        (
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\nready",
            "bad response head from {addr}: invalid header name",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nready",
            "bad content-length `x` from {addr}",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nready",
            "conflicting content-length headers from {addr}",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nready",
            "unsupported transfer-encoding `gzip` from {addr}",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nrea",
            "connection closed by {addr} in the middle of a chunked body",
        ),
    ] {
        let (addr, o) = probe_response(&kind, resp).await;
        assert_eq!(
            o,
            ProbeOutcome::fail(want.replace("{addr}", &addr.to_string())),
            "{:?}",
            String::from_utf8_lossy(resp)
        );
    }
    // Headers that never end are bounded like the status line.
    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    while resp.len() < 2 * MAX_RESPONSE_HEAD {
        resp.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (addr, o) = probe_response(&kind, resp).await;
    assert!(!o.ok, "{o:?}");
    assert!(
        o.detail == format!("more than 64 response headers from {addr}")
            || o.detail
                == format!("no end of the response headers in the first 8192 bytes from {addr}"),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_failed_status_does_not_read_the_body() {
    // The body would pass, and is never finished: the status alone decides, at once.
    let kind = body_kind(Some("ready"), None);
    let (addr, o) = probe_response(
        &kind,
        &b"HTTP/1.1 503 Unavailable\r\nContent-Length: 1000000\r\n\r\nready"[..],
    )
    .await;
    assert_eq!(o, ProbeOutcome::fail(format!("http 503 from {addr}")));
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let keep = tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nrea")
            .await;
        std::future::pending::<()>().await;
    });
    let o = probe(
        &body_kind(Some("ready"), None),
        addr,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("timeout after 300ms waiting for {addr} to answer"))
    );
    keep.abort();
}
