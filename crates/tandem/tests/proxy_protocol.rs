//! The PROXY protocol both ways: `[[pool]] proxy_protocol` (tandem sends a header to its
//! backends) and `[[service]] accept_proxy_protocol` (tandem reads one from trusted proxies).
//!
//! The backends here read the header with their own few lines of code, not tandem's parser, and
//! the expected v2 bytes are written out by hand. Clients bind to chosen loopback addresses
//! (127.77.N.9, .10, ...) so that the address tandem must announce is known, port included.
//! The last test puts a real HAProxy in front of and behind tandem.
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it) and its own ports.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn ip_n(n: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, n, host))
}

/// A connection to `to` from the loopback address `from`, so tandem sees that source.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(from, 0)).expect("bind client");
    within("connect", Duration::from_secs(5), sock.connect(to))
        .await
        .expect("connect")
}

/// `[runtime]` and `[admin]`, then `body`.
fn config(n: u8, admin_port: u16, body: &str) -> String {
    format!(
        "[runtime]\nworkers = 2\n\n[admin]\nlisten = \"{}\"\n\n{body}",
        addr(n, admin_port)
    )
}

/// Read a PROXY header off `s` by hand: v1 to its CRLF, v2 by its length. `None` when the
/// connection closes first or starts with anything else (a TCP health check sends nothing).
async fn read_proxy_header<R: AsyncRead + Unpin>(s: &mut R) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 1];
    s.read_exact(&mut out).await.ok()?;
    match out[0] {
        b'P' => {
            while !out.ends_with(b"\r\n") && out.len() < 107 {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.ok()?;
                out.push(b[0]);
            }
            out.ends_with(b"\r\n").then_some(out)
        }
        b'\r' => {
            out.resize(16, 0);
            s.read_exact(&mut out[1..]).await.ok()?;
            let len = usize::from(u16::from_be_bytes([out[14], out[15]]));
            let start = out.len();
            out.resize(start + len, 0);
            s.read_exact(&mut out[start..]).await.ok()?;
            Some(out)
        }
        _ => None,
    }
}

/// The source `ip:port` a header announces (v1 TCP4/TCP6, v2 PROXY over TCP), or `LOCAL`.
fn announced_source(h: &[u8]) -> String {
    if h.starts_with(b"PROXY ") {
        let line = std::str::from_utf8(&h[6..h.len() - 2]).expect("ascii");
        let f: Vec<&str> = line.split(' ').collect();
        return match f[0] {
            "TCP4" => format!("{}:{}", f[1], f[3]),
            "TCP6" => format!("[{}]:{}", f[1], f[3]),
            _ => "UNKNOWN".into(),
        };
    }
    assert_eq!(&h[..12], V2_SIG, "not a PROXY header: {h:?}");
    let b = &h[16..];
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    match (h[12], h[13]) {
        (0x20, _) => "LOCAL".into(),
        (0x21, 0x11) => format!("{}:{}", Ipv4Addr::new(b[0], b[1], b[2], b[3]), port(8)),
        (0x21, 0x21) => {
            let a: [u8; 16] = b[..16].try_into().expect("16 bytes");
            format!("[{}]:{}", Ipv6Addr::from(a), port(32))
        }
        other => panic!("unexpected v2 command/family {other:?}"),
    }
}

/// The v2 header for TCP over IPv4, written out byte by byte.
fn v2_tcp4(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only");
    };
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

fn v2_tcp6(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv6 only");
    };
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&d.octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

/// A TCP backend that logs the PROXY header of every connection and echoes what follows.
/// Connections without one (health checks) are counted in `bare` and dropped.
async fn logging_echo_backend(
    ip: IpAddr,
    log: Seen<Vec<u8>>,
    bare: Arc<AtomicUsize>,
) -> RawBackend {
    RawBackend::start(ip, move |mut s| {
        let log = Arc::clone(&log);
        let bare = Arc::clone(&bare);
        async move {
            let Some(h) = read_proxy_header(&mut s).await else {
                bare.fetch_add(1, Ordering::SeqCst);
                return;
            };
            log.lock().expect("log").push(h);
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    })
    .await
}

/// An HTTP/1.1 keep-alive backend behind a PROXY header: answers every request with the
/// source the connection's header announced. Counts connections in `RawBackend::conns`.
async fn logging_http_backend(ip: IpAddr, log: Seen<Vec<u8>>) -> RawBackend {
    RawBackend::start(ip, move |mut s| {
        let log = Arc::clone(&log);
        async move {
            let Some(h) = read_proxy_header(&mut s).await else {
                return;
            };
            let source = announced_source(&h);
            log.lock().expect("log").push(h);
            let mut pending = Vec::new();
            loop {
                let head = match find(&pending, b"\r\n\r\n") {
                    Some(end) => {
                        let head = pending[..end + 4].to_vec();
                        pending.drain(..end + 4);
                        head
                    }
                    None => {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => pending.extend_from_slice(&chunk[..k]),
                        }
                        continue;
                    }
                };
                assert!(
                    head.starts_with(b"GET "),
                    "{:?}",
                    String::from_utf8_lossy(&head)
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{source}",
                    source.len()
                );
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// One request on an open connection; returns (status, headers, body). Content-Length only.
async fn exchange(s: &mut TcpStream, request: &[u8]) -> (u16, Vec<(String, String)>, String) {
    s.write_all(request).await.expect("write request");
    let (head, mut body) = within("response head", Duration::from_secs(5), read_head(s))
        .await
        .expect("a response head");
    let status: u16 = head[9..12].parse().expect("status");
    let headers = head_headers(&head);
    let len: usize = header_in(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let k = within("response body", Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("read body");
        assert!(k > 0, "closed within the body");
        body.extend_from_slice(&chunk[..k]);
    }
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// The headers a backend logged, less those of the harness's readiness probe (a connection
/// from 127.0.0.1, which in tcp mode reaches the backend too).
fn logged(log: &Seen<Vec<u8>>) -> Vec<Vec<u8>> {
    log.lock()
        .expect("log")
        .iter()
        .filter(|h| !announced_source(h).starts_with("127.0.0.1:"))
        .cloned()
        .collect()
}

/// A metric's value on the admin API's /metrics.
async fn metric(admin: SocketAddr, line_prefix: &str) -> u64 {
    let text = get(&format!("http://{admin}/metrics"), &[])
        .await
        .body_text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line_prefix} missing in:\n{text}"))
}

// N = 65
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_sends_v1_and_v2_headers_with_the_client_address() {
    let n = 65;
    let log1 = seen();
    let log2 = seen();
    let bare = Arc::new(AtomicUsize::new(0));
    let b1 = logging_echo_backend(ip(n), Arc::clone(&log1), Arc::clone(&bare)).await;
    let b2 = logging_echo_backend(ip(n), Arc::clone(&log2), Arc::clone(&bare)).await;
    let (l1, l2) = (addr(n, 8080), addr(n, 8081));
    // TCP health checks (a connect, no bytes) must not disturb such a backend.
    let cfg = config(
        n,
        9900,
        &format!(
            r#"
[[pool]]
name = "v1"
proxy_protocol = "v1"
health = {{ kind = "tcp", interval = "100ms", rise = 1, fall = 1 }}
backends = [{{ address = "{}" }}]

[[pool]]
name = "v2"
proxy_protocol = "v2"
health = {{ kind = "tcp", interval = "100ms", rise = 1, fall = 1 }}
backends = [{{ address = "{}" }}]

[[service]]
name = "t1"
listen = "{l1}"
mode = "tcp"
pool = "v1"

[[service]]
name = "t2"
listen = "{l2}"
mode = "tcp"
pool = "v2"
"#,
            b1.addr, b2.addr
        ),
    );
    let _t = Tandem::run("pp-tcp-send", &cfg, &[l1, l2]).await;
    let client_ip = ip_n(n, 9);
    for (listen, log) in [(l1, &log1), (l2, &log2)] {
        let mut c = connect_from(client_ip, listen).await;
        let me = c.local_addr().expect("client addr");
        c.write_all(b"hello through a PROXY header\n")
            .await
            .expect("write");
        let mut back = vec![0u8; 29];
        within("echo", Duration::from_secs(5), c.read_exact(&mut back))
            .await
            .expect("echo");
        assert_eq!(back, b"hello through a PROXY header\n");
        let got = logged(log);
        assert_eq!(got.len(), 1, "one connection, one header: {got:?}");
        let want = if listen == l1 {
            format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                me.ip(),
                listen.ip(),
                me.port(),
                listen.port()
            )
            .into_bytes()
        } else {
            v2_tcp4(me, listen)
        };
        assert_eq!(
            got[0],
            want,
            "backend of {listen} logged {:?}",
            String::from_utf8_lossy(&got[0])
        );
        assert_eq!(announced_source(&got[0]), me.to_string());
    }
    // The checks kept running against both backends, which stayed up.
    eventually("health checks", Duration::from_secs(5), || {
        let bare = Arc::clone(&bare);
        async move { (bare.load(Ordering::SeqCst) >= 4).then_some(()) }
    })
    .await;
    for pool in ["v1", "v2"] {
        let backends = pool_backends(addr(n, 9900), pool).await.expect("pool");
        assert_eq!(backends[0]["state"], "up", "{pool}: {backends:?}");
    }
    let mut c = connect_from(client_ip, l2).await;
    c.write_all(b"x").await.expect("write");
    let mut one = [0u8; 1];
    within("echo", Duration::from_secs(5), c.read_exact(&mut one))
        .await
        .expect("echo");
}

// N = 65
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_sends_v2_and_keeps_each_backend_connection_to_its_client() {
    let n = 65;
    let log = seen();
    let backend = logging_http_backend(ip(n), Arc::clone(&log)).await;
    let listen = addr(n, 8082);
    let cfg = config(
        n,
        9901,
        &format!(
            r#"
[[pool]]
name = "web"
proxy_protocol = "v2"
health = {{ kind = "none" }}
backends = [{{ address = "{}" }}]

[[service]]
name = "www"
listen = "{listen}"
pool = "web"
"#,
            backend.addr
        ),
    );
    let _t = Tandem::run("pp-http-send", &cfg, &[listen]).await;

    // Client A: two requests on one connection, one backend connection for both.
    let mut a = connect_from(ip_n(n, 9), listen).await;
    let a_addr = a.local_addr().expect("addr");
    for _ in 0..2 {
        let (status, _, body) = exchange(&mut a, GET).await;
        assert_eq!((status, body.as_str()), (200, a_addr.to_string().as_str()));
    }
    assert_eq!(backend.conns(), 1);
    assert_eq!(log.lock().expect("log")[0], v2_tcp4(a_addr, listen));

    // Client B while A is still connected and its backend connection idle: B must not get it.
    let mut b = connect_from(ip_n(n, 10), listen).await;
    let b_addr = b.local_addr().expect("addr");
    let (status, _, body) = exchange(&mut b, GET).await;
    assert_eq!((status, body), (200, b_addr.to_string()));
    assert_eq!(backend.conns(), 2);

    // A closes; its backend connection went with it, not into a pool for the next client.
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect_from(ip_n(n, 11), listen).await;
    let c_addr = c.local_addr().expect("addr");
    let (status, _, body) = exchange(&mut c, GET).await;
    assert_eq!((status, body), (200, c_addr.to_string()));
    assert_eq!(backend.conns(), 3);
    // B's connection is still its own.
    let (_, _, body) = exchange(&mut b, GET).await;
    assert_eq!(body, b_addr.to_string());
    assert_eq!(backend.conns(), 3);

    // HTTP/2 clients too (curl with prior knowledge, from its own address).
    let r = get(
        &format!("http://{listen}/"),
        &["--http2-prior-knowledge", "--interface", "127.77.65.12"],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "HTTP/2");
    assert!(
        r.body_text().starts_with("127.77.65.12:"),
        "{}",
        r.body_text()
    );
    let headers = log.lock().expect("log").clone();
    assert!(headers.iter().all(|h| h.starts_with(V2_SIG)), "{headers:?}");
}

/// A hyper backend that answers `name|X-Forwarded-For|Forwarded`.
async fn forwarded_backend(ip: IpAddr, name: &'static str) -> HttpBackend {
    HttpBackend::start(ip, move |req| async move {
        let h = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        response(
            200,
            format!("{name}|{}|{}", h("x-forwarded-for"), h("forwarded")),
        )
    })
    .await
}

// N = 66
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_service_takes_the_client_from_a_trusted_proxys_header() {
    let n = 66;
    let one = forwarded_backend(ip(n), "one").await;
    let two = forwarded_backend(ip(n), "two").await;
    let listen = addr(n, 8080);
    let admin = addr(n, 9900);
    let cfg = config(
        n,
        9900,
        &format!(
            r#"
[[pool]]
name = "web"
scheduler = "rr"
health = {{ kind = "none" }}
backends = [{{ address = "{}" }}, {{ address = "{}" }}]

[[service]]
name = "www"
listen = "{listen}"
pool = "web"
accept_proxy_protocol = ["127.77.66.9/32", "192.0.2.0/24"]
persistence = {{ kind = "source_ip" }}
"#,
            one.addr, two.addr
        ),
    );
    let _t = Tandem::run("pp-http-accept", &cfg, &[listen, admin]).await;
    let proxy = ip_n(n, 9);

    // v1, in the same write as the request, and a second request on the same connection.
    let mut s = connect_from(proxy, listen).await;
    let mut req = format!(
        "PROXY TCP4 203.0.113.7 {} 51000 {}\r\n",
        listen.ip(),
        listen.port()
    )
    .into_bytes();
    req.extend_from_slice(GET);
    let (status, _, body) = exchange(&mut s, &req).await;
    assert_eq!(status, 200);
    let first_backend = body.split('|').next().expect("name").to_string();
    assert!(
        body.ends_with("|203.0.113.7|for=203.0.113.7;proto=http;host=\"t\""),
        "{body}"
    );
    let (_, _, again) = exchange(&mut s, GET).await;
    assert_eq!(again, body, "keep-alive requests are the same client");

    // source_ip persistence pins the announced client, not the proxy: new connections all go
    // to the same backend although rr alternates.
    for _ in 0..4 {
        let mut s = connect_from(proxy, listen).await;
        let (_, _, b) = exchange(&mut s, &req).await;
        assert!(b.starts_with(&format!("{first_backend}|")), "{b}");
    }

    // v2 with an IPv6 client, header and request in separate writes.
    let mut s = connect_from(proxy, listen).await;
    let v6: SocketAddr = "[2001:db8::7]:40000".parse().expect("addr");
    s.write_all(&v2_tcp6(v6, "[2001:db8::1]:443".parse().expect("addr")))
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, body) = exchange(&mut s, GET).await;
    assert_eq!(status, 200);
    assert!(
        body.ends_with("|2001:db8::7|for=\"[2001:db8::7]\";proto=http;host=\"t\""),
        "{body}"
    );

    // v2 LOCAL (an upstream's health check): the proxy itself is the client.
    let mut s = connect_from(proxy, listen).await;
    let mut req = V2_LOCAL.to_vec();
    req.extend_from_slice(GET);
    let (status, _, body) = exchange(&mut s, &req).await;
    assert_eq!(status, 200);
    assert!(body.contains("|127.77.66.9|"), "{body}");

    // HTTP/2 with prior knowledge after the header: the handover keeps the announced client.
    let mut s = connect_from(proxy, listen).await;
    s.write_all(b"PROXY TCP4 198.51.100.77 127.77.66.1 2000 8080\r\n")
        .await
        .expect("write");
    let (mut sender, _conn) = h2_client(s).await;
    let req = hyper::Request::get("http://t/")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = within(
        "h2 response",
        Duration::from_secs(5),
        sender.send_request(req),
    )
    .await
    .expect("h2 response");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("|198.51.100.77|for=198.51.100.77;"), "{body}");

    let sticky = get(&format!("http://{admin}/api/v1/services/www/sticky"), &[])
        .await
        .body_text();
    for client in ["\"203.0.113.7\"", "\"2001:db8::7\"", "\"127.77.66.9\""] {
        assert!(sticky.contains(client), "{client} not pinned: {sticky}");
    }
    assert_eq!(
        metric(
            admin,
            "tandem_service_proxy_protocol_rejected_total{service=\"www\"} "
        )
        .await,
        0
    );
}

// N = 66
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_headers_from_trusted_proxies_are_refused_and_counted() {
    let n = 66;
    let backend = forwarded_backend(ip(n), "b").await;
    let listen = addr(n, 8081);
    let admin = addr(n, 9901);
    let cfg = config(
        n,
        9901,
        &format!(
            r#"
[[pool]]
name = "web"
health = {{ kind = "none" }}
backends = [{{ address = "{}" }}]

[[service]]
name = "www"
listen = "{listen}"
pool = "web"
header_timeout = "1s"
accept_proxy_protocol = ["127.77.66.9"]
"#,
            backend.addr
        ),
    );
    let _t = Tandem::run("pp-http-refuse", &cfg, &[listen, admin]).await;
    let proxy = ip_n(n, 9);
    let counter = "tandem_service_proxy_protocol_rejected_total{service=\"www\"} ";

    // Malformed: a plain request, a v1 line missing a port, a v2 header of version 1.
    let mut bad_v2 = v2_tcp4("192.0.2.1:1".parse().expect("a"), listen);
    bad_v2[12] = 0x11;
    for raw in [
        GET.to_vec(),
        b"PROXY TCP4 203.0.113.7 127.77.66.1 51000\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        [bad_v2, GET.to_vec()].concat(),
    ] {
        let mut s = connect_from(proxy, listen).await;
        s.write_all(&raw).await.expect("write");
        let (out, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{raw:?}: {text:?}");
        assert!(text.contains("PROXY"), "{text}");
        assert!(closed, "left open after {raw:?}");
    }
    // Half a header, then nothing: closed at header_timeout, without an answer.
    let mut s = connect_from(proxy, listen).await;
    s.write_all(b"PROXY TCP4 203.0.113.7 ")
        .await
        .expect("write");
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed && out.is_empty(), "{out:?}");
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    // Connected and closed without a byte (an upstream's TCP check): not counted.
    drop(connect_from(proxy, listen).await);

    eventually("the counter", Duration::from_secs(5), || async {
        (metric(admin, counter).await == 4).then_some(())
    })
    .await;
    assert_eq!(backend.stats.requests(), 0);
    assert_eq!(
        metric(
            admin,
            "tandem_service_rejected_requests_total{service=\"www\"} "
        )
        .await,
        0
    );

    // From an untrusted address a PROXY header is not honoured: it is a bad request.
    let stranger = ip_n(n, 10);
    for raw in [
        b"PROXY TCP4 203.0.113.7 127.77.66.1 51000 8081\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
            .to_vec(),
        [
            v2_tcp4("203.0.113.7:51000".parse().expect("a"), listen),
            GET.to_vec(),
        ]
        .concat(),
    ] {
        let mut s = connect_from(stranger, listen).await;
        s.write_all(&raw).await.expect("write");
        let (out, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{raw:?}: {text:?}");
        assert!(closed);
    }
    assert_eq!(backend.stats.requests(), 0);
    assert_eq!(
        metric(
            admin,
            "tandem_service_rejected_requests_total{service=\"www\"} "
        )
        .await,
        2
    );
    assert_eq!(metric(admin, counter).await, 4);

    // tandem keeps serving both kinds of client.
    let mut s = connect_from(stranger, listen).await;
    let (status, _, body) = exchange(&mut s, GET).await;
    assert_eq!(
        (status, body.split('|').nth(1)),
        (200, Some("127.77.66.10"))
    );
    let mut s = connect_from(proxy, listen).await;
    let mut req = b"PROXY TCP4 203.0.113.9 127.77.66.1 1 8081\r\n".to_vec();
    req.extend_from_slice(GET);
    let (status, _, body) = exchange(&mut s, &req).await;
    assert_eq!((status, body.split('|').nth(1)), (200, Some("203.0.113.9")));
}

// N = 66
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_service_passes_an_accepted_header_on() {
    let n = 66;
    let log = seen();
    let bare = Arc::new(AtomicUsize::new(0));
    let backend = logging_echo_backend(ip(n), Arc::clone(&log), Arc::clone(&bare)).await;
    let listen = addr(n, 8082);
    let admin = addr(n, 9902);
    let cfg = config(
        n,
        9902,
        &format!(
            r#"
[[pool]]
name = "db"
proxy_protocol = "v1"
health = {{ kind = "none" }}
backends = [{{ address = "{}" }}]

[[service]]
name = "db"
listen = "{listen}"
mode = "tcp"
pool = "db"
header_timeout = "1s"
accept_proxy_protocol = ["127.77.66.9/32"]
"#,
            backend.addr
        ),
    );
    let _t = Tandem::run("pp-tcp-accept", &cfg, &[listen, admin]).await;

    // A v2 header in, the same endpoints out as v1, then the bytes both ways.
    let mut s = connect_from(ip_n(n, 9), listen).await;
    let mut first = v2_tcp4(
        "203.0.113.7:51000".parse().expect("a"),
        "198.51.100.1:443".parse().expect("a"),
    );
    first.extend_from_slice(b"hello");
    s.write_all(&first).await.expect("write");
    let mut back = [0u8; 5];
    within("echo", Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo");
    assert_eq!(&back, b"hello");
    assert_eq!(
        logged(&log),
        [b"PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n".to_vec()]
    );

    // A bad header from the trusted proxy: closed, the backend never hears of it.
    let conns = backend.conns();
    let mut s = connect_from(ip_n(n, 9), listen).await;
    s.write_all(b"PROXY TCP5 1 2 3 4\r\nhello")
        .await
        .expect("write");
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(closed && out.is_empty(), "{out:?}");
    assert_eq!(backend.conns(), conns);
    assert_eq!(
        metric(
            admin,
            "tandem_service_proxy_protocol_rejected_total{service=\"db\"} "
        )
        .await,
        1
    );

    // From elsewhere the header is data: the backend is told the real client, and gets the
    // bytes it sent, PROXY line included.
    let mut s = connect_from(ip_n(n, 10), listen).await;
    let me = s.local_addr().expect("addr");
    let spoof = b"PROXY TCP4 203.0.113.66 127.77.66.1 1 2\r\n";
    s.write_all(spoof).await.expect("write");
    let mut back = vec![0u8; spoof.len()];
    within("echo", Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo");
    assert_eq!(back, spoof);
    let got = logged(&log);
    assert_eq!(
        got[1],
        format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            me.ip(),
            listen.ip(),
            me.port(),
            listen.port()
        )
        .into_bytes()
    );
}

/// HAProxy (Debian's package; `scripts/test.sh` installs it) on `config`, killed on drop.
async fn haproxy(dir: &TempDir, config: &str, ready: &[SocketAddr]) -> ChildGuard {
    let path = dir.write("haproxy.cfg", config);
    // Debian installs it in /usr/sbin, which is not on every user's PATH.
    let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    };
    let child = std::process::Command::new(bin)
        .args(["-db", "-f", path.to_str().expect("utf-8 path")])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("haproxy.out")).expect("out"))
        .stderr(std::fs::File::create(dir.path().join("haproxy.err")).expect("err"))
        .spawn()
        .expect("run haproxy (apt-get install haproxy)");
    let mut guard = ChildGuard(child);
    for &a in ready {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(a).await.is_err() {
            if let Ok(Some(status)) = guard.0.try_wait() {
                panic!(
                    "haproxy exited with {status}: {}",
                    std::fs::read_to_string(dir.path().join("haproxy.err")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "haproxy is not listening on {a}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    guard
}

// N = 66
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_and_behind() {
    // curl → HAProxy (send-proxy-v2) → tandem (accepts it, sends v1) → HAProxy (accept-proxy),
    // which answers with the client it was told about: curl's own address and port.
    let n = 66;
    let (front, tandem_listen, behind) = (addr(n, 8083), addr(n, 8084), addr(n, 8085));
    let dir = TempDir::new("pp-haproxy");
    let _h = haproxy(
        &dir,
        &format!(
            r#"
global
    maxconn 200

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend front
    bind {front}
    default_backend to_tandem

backend to_tandem
    server tandem {tandem_listen} send-proxy-v2 source {proxy}

frontend behind
    bind {behind} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port] %[dst]:%[dst_port] xff=%[req.hdr(x-forwarded-for)]"
"#,
            proxy = ip_n(n, 9),
        ),
        &[front, behind],
    )
    .await;
    let cfg = config(
        n,
        9903,
        &format!(
            r#"
[[pool]]
name = "haproxy"
proxy_protocol = "v1"
health = {{ kind = "none" }}
backends = [{{ address = "{behind}" }}]

[[service]]
name = "www"
listen = "{tandem_listen}"
pool = "haproxy"
accept_proxy_protocol = ["{proxy}"]
"#,
            proxy = ip_n(n, 9),
        ),
    );
    let _t = Tandem::run("pp-haproxy", &cfg, &[tandem_listen]).await;
    for _ in 0..3 {
        let out = curl(&[
            "--interface",
            "127.77.66.12",
            "-w",
            "\n%{local_port}",
            &format!("http://{front}/"),
        ])
        .await;
        assert!(out.ok, "{}", out.stderr);
        let text = out.text();
        let (body, port) = text.rsplit_once('\n').expect("two lines");
        assert_eq!(
            body,
            format!("127.77.66.12:{port} {front} xff=127.77.66.12"),
            "what HAProxy behind tandem was told"
        );
    }
}
