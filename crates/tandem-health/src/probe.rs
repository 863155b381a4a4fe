//! Probes: one attempt to see whether a backend works, as far as its check kind can see.
//!
//! A probe never fails with an error: everything that can go wrong (refused, reset, timeout,
//! garbage from the peer) is a failed [`ProbeOutcome`] whose `detail` tells an operator what was
//! seen. The detail always names the address actually probed, because with `port = N` that is not
//! the address traffic goes to, and "refused by :9000" is what explains a down backend whose
//! traffic port works fine. The [`Tracker`](crate::tracker::Tracker) appends the streak count to
//! it, giving reasons like `http 503 from 127.0.0.1:8002 (3/3)`.
//!
//! The HTTP probe is a deliberately tiny HTTP/1.1 client rather than hyper: it needs only the
//! status code, must survive any bytes a broken backend sends, and must not keep pooled
//! connections around (each probe is a fresh connection, like a new client's would be).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tandem_config::{HealthKind, StatusSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Did the backend pass?
    pub ok: bool,
    /// Short, operator-readable account of what was seen, naming the probed address,
    /// e.g. `http 200 from 127.0.0.1:8001`, `connect refused by 127.0.0.1:8002`,
    /// `timeout after 500ms connecting to 10.0.0.7:80`, `bad status line from [::1]:8003`.
    pub detail: String,
}

impl ProbeOutcome {
    fn ok(detail: String) -> ProbeOutcome {
        ProbeOutcome { ok: true, detail }
    }

    fn fail(detail: String) -> ProbeOutcome {
        ProbeOutcome { ok: false, detail }
    }
}

/// How much of the response the HTTP probe reads looking for the status line. Generous for any
/// real server (the status line comes first; 1xx interim heads are skipped), and a hard cap on
/// what a misbehaving peer can make us buffer.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Probe `target` (the backend's traffic address) once, as `kind` says, within `timeout` in
/// total (connect included).
///
/// - `none`: always ok, no I/O.
/// - `tcp`: ok iff a TCP connect to `target` (or its `port` override) succeeds.
/// - `http`: sends `METHOD path HTTP/1.1` with `Host` (default: the probed address),
///   `User-Agent: tandem-health` and `Connection: close`, reads up to [`MAX_RESPONSE_HEAD`] bytes
///   until the status line is complete, and is ok iff its status code is in `expect_status`.
///   Interim `1xx` responses (other than `101`) are skipped. The connection is then dropped
///   without reading the body, as HAProxy's checks do.
pub async fn probe(kind: &HealthKind, target: SocketAddr, timeout: Duration) -> ProbeOutcome {
    // `checked_add` guards absurd timeouts (which config validation should already refuse).
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    match kind {
        HealthKind::None => ProbeOutcome::ok("not checked (kind = none)".into()),
        HealthKind::Tcp { port } => {
            let addr = with_port(target, *port);
            match connect(addr, deadline, timeout).await {
                Ok(_stream) => ProbeOutcome::ok(format!("connected to {addr}")),
                Err(outcome) => outcome,
            }
        }
        HealthKind::Http {
            method,
            path,
            host,
            expect_status,
            port,
        } => {
            let addr = with_port(target, *port);
            let req = HttpRequest {
                method,
                path,
                host: host.as_deref(),
            };
            http(addr, &req, expect_status, deadline, timeout).await
        }
    }
}

fn with_port(target: SocketAddr, port: Option<u16>) -> SocketAddr {
    let mut addr = target;
    if let Some(p) = port {
        addr.set_port(p);
    }
    addr
}

async fn connect(
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ProbeOutcome> {
    match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ProbeOutcome::fail(format!("connect refused by {addr}")))
        }
        Ok(Err(e)) => Err(ProbeOutcome::fail(format!(
            "connect to {addr}: {}",
            io_detail(&e)
        ))),
        // A connect that hangs usually means the host is gone or a firewall drops packets;
        // saying so separately from a slow answer points the operator at the right layer.
        Err(_) => Err(ProbeOutcome::fail(format!(
            "timeout after {timeout:?} connecting to {addr}"
        ))),
    }
}

struct HttpRequest<'a> {
    method: &'a str,
    path: &'a str,
    host: Option<&'a str>,
}

impl HttpRequest<'_> {
    /// The request bytes, or what is wrong with the configured values. Config validation should
    /// already have refused these, but a CR/LF here would let a config value inject headers, so
    /// the probe checks again rather than send a malformed request.
    fn encode(&self, addr: SocketAddr) -> Result<Vec<u8>, String> {
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if self.method.is_empty() || !self.method.bytes().all(is_tchar) {
            return Err(format!("invalid http check method {:?}", self.method));
        }
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80);
        if !(self.path.starts_with('/') || self.path == "*") || !visible(self.path) {
            return Err(format!("invalid http check path {:?}", self.path));
        }
        let host = match self.host {
            Some(h) if h.is_empty() || !visible(h) => {
                return Err(format!("invalid http check host {h:?}"))
            }
            Some(h) => h.to_string(),
            None => authority(addr),
        };
        Ok(format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n",
            self.method, self.path
        )
        .into_bytes())
    }
}

/// `ip:port` as a Host header wants it: IPv6 in brackets, without a zone id (not valid there).
fn authority(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

async fn http(
    addr: SocketAddr,
    req: &HttpRequest<'_>,
    expect: &StatusSet,
    deadline: Instant,
    timeout: Duration,
) -> ProbeOutcome {
    let bytes = match req.encode(addr) {
        Ok(b) => b,
        Err(why) => return ProbeOutcome::fail(why),
    };
    let mut stream = match connect(addr, deadline, timeout).await {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    match timeout_at(deadline, exchange(&mut stream, addr, &bytes)).await {
        Ok(Ok(code)) => ProbeOutcome {
            ok: expect.contains(code),
            detail: format!("http {code} from {addr}"),
        },
        Ok(Err(detail)) => ProbeOutcome::fail(detail),
        Err(_) => ProbeOutcome::fail(format!(
            "timeout after {timeout:?} waiting for {addr} to answer"
        )),
    }
}

/// Write the request and read until a final status code is known. `Err` is the outcome detail.
async fn exchange(stream: &mut TcpStream, addr: SocketAddr, req: &[u8]) -> Result<u16, String> {
    stream
        .write_all(req)
        .await
        .map_err(|e| format!("write to {addr}: {}", io_detail(&e)))?;
    let mut buf = vec![0u8; MAX_RESPONSE_HEAD];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(format!(
                "no status line in the first {MAX_RESPONSE_HEAD} bytes from {addr}"
            ));
        }
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| format!("read from {addr}: {}", io_detail(&e)))?;
        if n == 0 {
            return Err(if len == 0 {
                format!("connection closed by {addr} before any response")
            } else {
                format!("connection closed by {addr} in the middle of the status line")
            });
        }
        len += n;
        match parse_status(&buf[..len]) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => continue,
            Err(BadStatusLine) => return Err(format!("bad status line from {addr}")),
        }
    }
}

/// The response does not start like HTTP/1.x.
#[derive(Debug, PartialEq, Eq)]
struct BadStatusLine;

/// Find the final status code at the start of `buf`, skipping interim `1xx` heads.
/// `Ok(None)`: need more bytes. Rejects as soon as the bytes cannot be HTTP/1.x, so a peer
/// speaking another protocol fails fast instead of running into the timeout.
fn parse_status(buf: &[u8]) -> Result<Option<u16>, BadStatusLine> {
    let mut rest = buf;
    loop {
        let prefix = &rest[..rest.len().min(5)];
        if !b"HTTP/".starts_with(prefix) {
            return Err(BadStatusLine);
        }
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let code = parse_status_line(&rest[..nl])?;
        if !(100..200).contains(&code) || code == 101 {
            return Ok(Some(code));
        }
        // Interim response: skip its header lines up to the empty line, then parse again.
        let mut pos = nl + 1;
        loop {
            let Some(len) = rest[pos..].iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let line = &rest[pos..pos + len];
            pos += len + 1;
            if line.is_empty() || line == b"\r" {
                break;
            }
        }
        rest = &rest[pos..];
    }
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`, with the `\n` removed (a trailing `\r` is tolerated, a bare
/// `\n` line end too, as RFC 9112 §2.2 allows). Codes outside 100..=599 are rejected.
fn parse_status_line(line: &[u8]) -> Result<u16, BadStatusLine> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(BadStatusLine)?;
    let (minor, rest) = rest.split_first().ok_or(BadStatusLine)?;
    let rest = rest.strip_prefix(b" ").ok_or(BadStatusLine)?;
    if !minor.is_ascii_digit() || rest.len() < 3 {
        return Err(BadStatusLine);
    }
    let (digits, reason) = rest.split_at(3);
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(BadStatusLine);
    }
    // Strictly a space before the reason; some servers omit an empty reason and its space.
    if !(reason.is_empty() || reason[0] == b' ') || reason.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(BadStatusLine);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if (100..=599).contains(&code) {
        Ok(code)
    } else {
        Err(BadStatusLine)
    }
}

/// An I/O error as a short lower-case phrase: "connection reset by peer", not
/// "Connection reset by peer (os error 104)".
fn io_detail(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => &s[..i],
        None => &s[..],
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "i/o error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    fn http_kind(expect: &[(u16, u16)]) -> HealthKind {
        HealthKind::Http {
            method: "GET".into(),
            path: "/healthz".into(),
            host: None,
            expect_status: StatusSet {
                ranges: expect.to_vec(),
            },
            port: None,
        }
    }

    const T: Duration = Duration::from_secs(5);

    /// A one-connection server: reads the request head, sends it back through the channel,
    /// then writes `response` and closes.
    async fn serve_once(
        listener: TcpListener,
        response: &'static [u8],
    ) -> oneshot::Receiver<String> {
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
            let _ = s.write_all(response).await;
        });
        rx
    }

    async fn server(response: &'static [u8]) -> (SocketAddr, oneshot::Receiver<String>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        (addr, serve_once(l, response).await)
    }

    /// A port that refuses: bound once, then released.
    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    }

    #[tokio::test]
    async fn none_is_ok_without_io() {
        let o = probe(&HealthKind::None, closed_port().await, T).await;
        assert!(o.ok);
    }

    #[tokio::test]
    async fn tcp_open_and_closed_port() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let open = l.local_addr().expect("addr");
        let o = probe(&HealthKind::Tcp { port: None }, open, T).await;
        assert_eq!(o, ProbeOutcome::ok(format!("connected to {open}")));

        let closed = closed_port().await;
        let o = probe(&HealthKind::Tcp { port: None }, closed, T).await;
        assert_eq!(
            o,
            ProbeOutcome::fail(format!("connect refused by {closed}"))
        );
    }

    #[tokio::test]
    async fn tcp_port_override_probes_the_other_port() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let open = l.local_addr().expect("addr");
        let closed = closed_port().await;
        // Traffic address refuses, check port accepts: up.
        let o = probe(
            &HealthKind::Tcp {
                port: Some(open.port()),
            },
            closed,
            T,
        )
        .await;
        assert!(o.ok, "{o:?}");
        // And the other way round: down, and the detail names the port that was probed.
        let o = probe(
            &HealthKind::Tcp {
                port: Some(closed.port()),
            },
            open,
            T,
        )
        .await;
        assert_eq!(o.detail, format!("connect refused by {closed}"));
    }

    #[tokio::test]
    async fn http_200_sends_a_well_formed_request() {
        let (addr, head) = server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
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
        let (addr, _) = server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let o = probe(&http_kind(&[(200, 399)]), addr, T).await;
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
            let (addr, _) = server(resp).await;
            let o = probe(&kind, addr, T).await;
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
            let (addr, _) = server(resp).await;
            let o = probe(&http_kind(&[(200, 399)]), addr, T).await;
            assert!(!o.ok);
            assert!(o.detail.starts_with(want), "{resp:?} -> {o:?}");
            assert!(o.detail.contains(&addr.to_string()), "{o:?}");
        }
    }

    #[tokio::test]
    async fn http_endless_header_is_bounded() {
        // A status line that never ends: the probe gives up after MAX_RESPONSE_HEAD bytes,
        // long before the timeout.
        static LONG: [u8; 3 * MAX_RESPONSE_HEAD] = {
            let mut b = [b'x'; 3 * MAX_RESPONSE_HEAD];
            let p = b"HTTP/1.1 200 ";
            let mut i = 0;
            while i < p.len() {
                b[i] = p[i];
                i += 1;
            }
            b
        };
        let (addr, _) = server(&LONG).await;
        let o = probe(&http_kind(&[(200, 399)]), addr, T).await;
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
        let _keep = tokio::spawn(async move {
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
        _keep.abort();
    }

    #[tokio::test]
    async fn http_skips_interim_responses() {
        let (addr, _) = server(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n",
        )
        .await;
        let o = probe(&http_kind(&[(100, 299)]), addr, T).await;
        assert_eq!(o, ProbeOutcome::fail(format!("http 503 from {addr}")));
    }

    #[tokio::test]
    async fn http_custom_method_host_and_port_override() {
        let (check_addr, head) = server(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let traffic = closed_port().await;
        let kind = HealthKind::Http {
            method: "HEAD".into(),
            path: "/status?full=1".into(),
            host: Some("www.example.com".into()),
            expect_status: StatusSet {
                ranges: vec![(200, 200)],
            },
            port: Some(check_addr.port()),
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
        let (addr, _) = server(b"HTTP/1.1 200 OK\r\n\r\n").await;
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
            };
            let o = probe(&kind, addr, T).await;
            assert!(!o.ok && o.detail.starts_with("invalid http check"), "{o:?}");
        }
    }

    #[tokio::test]
    async fn ipv6_tcp_and_http_with_bracketed_host() {
        let Ok(l) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await else {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        };
        let addr = l.local_addr().expect("addr");
        let head = serve_once(l, b"HTTP/1.1 200 OK\r\n\r\n").await;
        let o = probe(&http_kind(&[(200, 200)]), addr, T).await;
        assert_eq!(o, ProbeOutcome::ok(format!("http 200 from {addr}")));
        let head = head.await.expect("request seen");
        assert!(
            head.contains(&format!("\r\nHost: [::1]:{}\r\n", addr.port())),
            "{head}"
        );

        let l = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let closed = l.local_addr().expect("addr");
        drop(l);
        let o = probe(&HealthKind::Tcp { port: None }, closed, T).await;
        assert_eq!(o.detail, format!("connect refused by {closed}"));
    }

    #[test]
    fn status_line_parser() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(parse_status(b"HTTP/1.0 404\r\n"), Ok(Some(404)));
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\n"), Ok(Some(200)));
        assert_eq!(parse_status(b"HTTP/1.1 101 Switching\r\n"), Ok(Some(101)));
        assert_eq!(parse_status(b"HTT"), Ok(None));
        assert_eq!(parse_status(b"HTTP/1.1 200 O"), Ok(None));
        assert_eq!(parse_status(b"HTTP/1.1 100 Continue\r\n"), Ok(None));
        assert_eq!(parse_status(b"HTTP/1.1 100 Continue\r\nX: y\r\n"), Ok(None));
        assert_eq!(
            parse_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 \r\n"),
            Ok(Some(204))
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 100 Continue\r\n\r\nGARBAGE"),
            Err(BadStatusLine)
        );
        for bad in [
            &b"http/1.1 200 OK\r\n"[..],
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 200OK\r\n",
            b"HTTP/1.1 2x0 OK\r\n",
            b"HTTP/1.x 200 OK\r\n",
            b"HTTP/1.1 600 Nope\r\n",
            b"HTTP/1.1 200 OK\r\r\n",
            b"HTTP/1.1\r\n",
            b"\r\n",
            b"X",
        ] {
            assert_eq!(
                parse_status(bad),
                Err(BadStatusLine),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn io_errors_read_like_phrases() {
        let e = io::Error::from_raw_os_error(104);
        assert_eq!(io_detail(&e), "connection reset by peer");
        assert_eq!(io_detail(&io::Error::other("")), "i/o error");
    }
}
