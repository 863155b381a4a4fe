//! HTTP mode, the happy paths: keep-alive, pooling, h2c, header rules, streaming, upgrades,
//! IPv6. Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

// N = 1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_client_connection_and_exact_round_robin_split() {
    let n = 1;
    let a = text_backend(ip(n), "A").await;
    let b = text_backend(ip(n), "B").await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[a.addr, b.addr], "scheduler = \"rr\"", "");
    let _t = Tandem::run("keepalive", &cfg, &[listen]).await;

    let url = format!("http://{listen}/");
    let mut args = vec!["-w", "|%{http_code}|%{num_connects}\n"];
    for _ in 0..6 {
        args.push(&url);
    }
    let out = curl(&args).await;
    assert!(out.ok, "curl failed: {}", out.stderr);
    let text = out.text();
    let rows: Vec<(String, String, u32)> = text
        .lines()
        .map(|l| {
            let mut p = l.split('|');
            let body = p.next().unwrap_or_default().to_string();
            let code = p.next().unwrap_or_default().to_string();
            let conns = p.next().and_then(|c| c.parse().ok()).unwrap_or(99);
            (body, code, conns)
        })
        .collect();
    assert_eq!(rows.len(), 6, "{text:?}");
    assert!(rows.iter().all(|r| r.1 == "200"), "{text:?}");
    let connects: u32 = rows.iter().map(|r| r.2).sum();
    assert_eq!(connects, 1, "curl must reuse one connection: {text:?}");
    let bodies: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        bodies.iter().filter(|b| **b == "A").count(),
        3,
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| **b == "B").count(),
        3,
        "{bodies:?}"
    );
    for w in bodies.windows(2) {
        assert_ne!(w[0], w[1], "rr must alternate: {bodies:?}");
    }
    assert_eq!(a.stats.requests(), 3);
    assert_eq!(b.stats.requests(), 3);
}

// N = 2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_pooled() {
    let n = 2;
    let a = text_backend(ip(n), "pooled").await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[a.addr], "", "");
    let _t = Tandem::run("pooling", &cfg, &[listen]).await;
    let url = format!("http://{listen}/");

    // 50 sequential requests on one client connection.
    let mut args = vec!["-w", "%{http_code}\n", "-o", "/dev/null"];
    for _ in 0..50 {
        args.push(&url);
        args.push("-o");
        args.push("/dev/null");
    }
    let out = curl(&args).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.text().lines().filter(|l| *l == "200").count(), 50);
    assert_eq!(a.stats.requests(), 50);
    let after_keepalive = a.stats.conns();
    assert!(
        after_keepalive <= 2,
        "50 keep-alive requests opened {after_keepalive} backend connections"
    );

    // 10 more requests, each on a new client connection: still pooled (one pool per worker).
    for _ in 0..10 {
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(a.stats.requests(), 60);
    let total = a.stats.conns();
    assert!(
        total <= 4,
        "60 requests (11 client connections) opened {total} backend connections"
    );
}

/// Backend that records request headers and echoes the request body.
async fn recording_echo_backend(n: u8, seen: Seen<Vec<(String, String)>>) -> HttpBackend {
    HttpBackend::start(ip(n), move |req: Request<Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            seen.lock().expect("lock").push(headers);
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&body);
            response(200, out)
        }
    })
    .await
}

// N = 3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let n = 3;
    let seen = seen();
    let a = recording_echo_backend(n, Arc::clone(&seen)).await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[a.addr], "", "");
    let _t = Tandem::run("h2c", &cfg, &[listen]).await;
    let url = format!("http://{listen}/h2?x=1");

    let r = get(&url, &["--http2-prior-knowledge"]).await;
    assert_eq!(r.version, "HTTP/2", "{r:?}");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), "echo:");
    let via = r.header("via").expect("response Via");
    assert!(via.contains("tandem"), "Via: {via}");

    let req_headers = seen
        .lock()
        .expect("lock")
        .pop()
        .expect("backend saw request");
    let via = header_in(&req_headers, "via").expect("request Via");
    assert!(
        via.starts_with('2') && via.ends_with("tandem"),
        "request Via: {via}"
    );
    assert_eq!(
        header_in(&req_headers, "host"),
        Some(listen.to_string().as_str()),
        "Host from :authority"
    );

    // A body over h2 reaches the backend (as HTTP/1.1), and several streams share one connection.
    let r = get(&url, &["--http2-prior-knowledge", "--data-binary", "ping"]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "echo:ping");

    // Several concurrent streams on one h2c connection. (curl 7.88 cannot reuse an h2c
    // connection, curl/curl#10634, so this part uses hyper's HTTP/2 client.)
    let stream = TcpStream::connect(listen).await.expect("connect");
    let (sender, _conn) = h2_client(stream).await;
    let before = a.stats.requests();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let mut sender = sender.clone();
            let uri = format!("http://{listen}/multi/{i}");
            tokio::spawn(async move {
                let req = Request::post(uri)
                    .body(full(format!("stream-{i}")))
                    .expect("request");
                let resp = sender.send_request(req).await.expect("h2 response");
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                (status, body)
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let (status, body) = within("h2 stream", Duration::from_secs(5), c)
            .await
            .expect("task");
        assert_eq!(status, 200);
        assert_eq!(body, format!("echo:stream-{i}").as_bytes());
    }
    assert_eq!(a.stats.requests(), before + 3);

    // Bulk both ways over h2 (flow control): 8 MiB up and 8 MiB down.
    let bulk = digest_backend(ip(n)).await;
    let listen2 = addr(n, 8081);
    let cfg = config(n, "http", &[bulk.addr], "", "")
        .replace(&format!("\"{}\"", addr(n, 8080)), &format!("\"{listen2}\""));
    let _t2 = Tandem::run("h2c-bulk", &cfg, &[listen2]).await;
    bulk_round_trip(listen2, 128, &["--http2-prior-knowledge"], "2").await;
}

// N = 4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stripped_and_forwarding_headers_added() {
    let n = 4;
    let heads: Seen<String> = seen();
    let rec = Arc::clone(&heads);
    // A raw backend, so we see exactly the bytes tandem sends and send exactly what we want.
    let backend = RawBackend::start(ip(n), move |mut s| {
        let rec = Arc::clone(&rec);
        async move {
            while let Some((head, _)) = read_head(&mut s).await {
                rec.lock().expect("lock").push(head);
                let resp = "HTTP/1.1 200 OK\r\n\
                            Connection: X-Resp-Hop\r\n\
                            X-Resp-Hop: secret\r\n\
                            Keep-Alive: timeout=5\r\n\
                            Proxy-Connection: keep-alive\r\n\
                            X-Kept: yes\r\n\
                            Content-Length: 2\r\n\r\nok";
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("headers", &cfg, &[listen]).await;

    let client_ip = "127.77.4.9";
    let r = get(
        &format!("http://{listen}/h"),
        &[
            "--interface",
            client_ip,
            "-H",
            "Connection: X-Foo",
            "-H",
            "X-Foo: bar",
            "-H",
            "Keep-Alive: 300",
            "-H",
            "TE: trailers",
            "-H",
            "Proxy-Connection: keep-alive",
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "X-Forwarded-Proto: https",
            "-H",
            "X-Keep: 1",
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), "ok");

    let head = heads
        .lock()
        .expect("lock")
        .pop()
        .expect("backend saw a request");
    let h = head_headers(&head);
    for gone in ["x-foo", "keep-alive", "te", "proxy-connection"] {
        assert!(
            header_in(&h, gone).is_none(),
            "backend must not see `{gone}`:\n{head}"
        );
    }
    if let Some(c) = header_in(&h, "connection") {
        assert!(!c.to_ascii_lowercase().contains("x-foo"), "{head}");
    }
    assert_eq!(header_in(&h, "x-keep"), Some("1"), "{head}");
    assert_eq!(
        header_in(&h, "x-forwarded-for"),
        Some(format!("203.0.113.9, {client_ip}").as_str()),
        "{head}"
    );
    assert_eq!(header_in(&h, "x-forwarded-proto"), Some("http"), "{head}");
    let fwd = header_in(&h, "forwarded").expect("Forwarded");
    assert!(
        fwd.contains(&format!("for={client_ip}")) && fwd.contains("proto=http"),
        "Forwarded: {fwd}"
    );
    assert_eq!(header_in(&h, "via"), Some("1.1 tandem"), "{head}");

    for gone in ["x-resp-hop", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(gone).is_none(),
            "client must not see `{gone}`: {r:?}"
        );
    }
    if let Some(c) = r.header("connection") {
        assert!(!c.to_ascii_lowercase().contains("x-resp-hop"), "{r:?}");
    }
    assert_eq!(r.header("x-kept"), Some("yes"));
    assert!(
        r.header("via").is_some_and(|v| v.contains("tandem")),
        "{r:?}"
    );
}

/// 50 MiB.
const BIG_CHUNKS: u64 = 800;

// N = 5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_50_mib_up_and_down_intact() {
    let n = 5;
    let backend = digest_backend(ip(n)).await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("stream50", &cfg, &[listen]).await;
    bulk_round_trip(listen, BIG_CHUNKS, &[], "1.1").await;
}

// N = 6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_streams_before_backend_finishes() {
    let n = 6;
    let release = Arc::new(Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let (rel, fin) = (Arc::clone(&release), Arc::clone(&finished));
    let backend = HttpBackend::start(ip(n), move |_req| {
        let (rel, fin) = (Arc::clone(&rel), Arc::clone(&fin));
        async move {
            let (tx, body) = chan_body(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first-chunk\n")).await;
                // Bounded: a stuck test still ends.
                let _ = tokio::time::timeout(Duration::from_secs(10), rel.notified()).await;
                let _ = tx.send(Bytes::from_static(b"last-chunk\n")).await;
                fin.store(true, Ordering::SeqCst);
            });
            Response::new(body)
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("stream-first", &cfg, &[listen]).await;

    // curl -N prints bytes as they arrive; read its stdout as it goes.
    let mut child = ChildGuard(
        std::process::Command::new("curl")
            .args(["-sS", "-N", "--noproxy", "*", "--max-time", "20"])
            .arg(format!("http://{listen}/"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn curl"),
    );
    let mut stdout = child.0.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(k) = stdout.read(&mut buf) {
            if k == 0 || tx.send(buf[..k].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    within(
        "first chunk to reach the client while the backend holds the rest",
        Duration::from_secs(5),
        async {
            while find(&got, b"first-chunk").is_none() {
                got.extend(rx.recv().await.expect("curl output ended early"));
            }
        },
    )
    .await;
    assert!(!finished.load(Ordering::SeqCst), "backend finished early");
    release.notify_one();
    within("rest of the body", Duration::from_secs(5), async {
        while let Some(part) = rx.recv().await {
            got.extend(part);
        }
    })
    .await;
    assert_eq!(String::from_utf8_lossy(&got), "first-chunk\nlast-chunk\n");
    let status = child.0.wait().expect("curl wait");
    assert!(status.success());
    reader.join().expect("reader");
}

// N = 7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_streams_before_client_finishes() {
    let n = 7;
    let got_first = Arc::new(Notify::new());
    let g = Arc::clone(&got_first);
    let backend = HttpBackend::start(ip(n), move |req: Request<Incoming>| {
        let g = Arc::clone(&g);
        async move {
            let mut body = req.into_body();
            let mut all = Vec::new();
            while let Some(Ok(f)) = body.frame().await {
                if let Some(d) = f.data_ref() {
                    if all.is_empty() && !d.is_empty() {
                        g.notify_one();
                    }
                    all.extend_from_slice(d);
                }
            }
            response(200, all)
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("stream-up", &cfg, &[listen]).await;

    let mut s = TcpStream::connect(listen).await.expect("connect");
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello,\r\n",
    )
    .await
    .expect("write");
    within(
        "the first body chunk to reach the backend while the client holds the rest",
        Duration::from_secs(5),
        got_first.notified(),
    )
    .await;
    s.write_all(b"6\r\n world\r\n0\r\n\r\n")
        .await
        .expect("write");
    let (head, rest) = within("response", Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = rest;
    within("response body", Duration::from_secs(5), async {
        while find(&body, b"hello, world").is_none() {
            let mut buf = [0u8; 1024];
            let k = s.read(&mut buf).await.expect("read");
            assert!(k > 0, "closed early: {:?}", String::from_utf8_lossy(&body));
            body.extend_from_slice(&buf[..k]);
        }
    })
    .await;
}

// N = 8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let n = 8;
    let heads: Seen<Vec<(String, String)>> = seen();
    let rec = Arc::clone(&heads);
    let backend = HttpBackend::start(ip(n), move |mut req: Request<Incoming>| {
        let rec = Arc::clone(&rec);
        async move {
            rec.lock().expect("lock").push(
                req.headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                    .collect(),
            );
            if !req.headers().contains_key("upgrade") {
                return response(400, "expected an upgrade");
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                if io.write_all(b"server-hello\n").await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            if io.write_all(&buf[..k]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = io.shutdown().await;
            });
            Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                .body(full(Bytes::new()))
                .expect("101")
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("websocket", &cfg, &[listen]).await;

    let mut s = TcpStream::connect(listen).await.expect("connect");
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let (head, pending) = within("101 head", Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("101 head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let h = head_headers(&head);
    assert_eq!(
        header_in(&h, "upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket"),
        "{head}"
    );
    assert!(
        header_in(&h, "connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade")),
        "{head}"
    );
    assert_eq!(
        header_in(&h, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let seen_by_backend = heads.lock().expect("lock").pop().expect("backend request");
    assert_eq!(
        header_in(&seen_by_backend, "sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    // Server → client without a prompt, then client → server → client echoes.
    let mut hello = pending;
    within("server hello", Duration::from_secs(5), async {
        while hello.len() < 13 {
            let mut chunk = [0u8; 256];
            let k = s.read(&mut chunk).await.expect("read");
            assert!(k > 0, "tunnel closed before the server hello");
            hello.extend_from_slice(&chunk[..k]);
        }
    })
    .await;
    assert_eq!(&hello, b"server-hello\n");

    s.write_all(b"ping-1\n").await.expect("write");
    let mut got = Vec::new();
    within("echo", Duration::from_secs(5), async {
        while got.len() < 7 {
            let mut c = [0u8; 64];
            let k = s.read(&mut c).await.expect("read");
            assert!(k > 0);
            got.extend_from_slice(&c[..k]);
        }
    })
    .await;
    assert_eq!(&got, b"ping-1\n");

    // 1 MiB through the tunnel and back.
    let blob: Vec<u8> = (0..16).flat_map(|i| pattern_chunk(i).to_vec()).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&blob).await.expect("write blob");
        w.shutdown().await.expect("shutdown");
    };
    let recv = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.expect("read back");
        back
    };
    let ((), back) = within("1 MiB echo and close", Duration::from_secs(10), async {
        tokio::join!(send, recv)
    })
    .await;
    assert_eq!(back.len(), blob.len());
    assert!(back == blob, "echoed bytes differ");
}

fn has_ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("00000000000000000000000000000001"))
        })
        .unwrap_or(false)
}

/// A free port on `ip` right now (bind, read, release).
async fn free_port(ip: &str) -> u16 {
    let l = TcpListener::bind(format!("{ip}:0")).await.expect("bind");
    l.local_addr().expect("addr").port()
}

// N = 9 (for the IPv4 backend); IPv6 on [::1] with a probed free port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_and_backends() {
    if !has_ipv6_loopback() {
        eprintln!(
            "!!!! SKIPPING ipv6_listener_and_backends: ::1 is not configured on this machine"
        );
        return;
    }
    let n = 9;
    let seen6: Seen<Vec<(String, String)>> = seen();
    let v6 = recording_echo_backend_at("[::1]:0".parse().expect("addr"), Arc::clone(&seen6)).await;
    let v4 = text_backend(ip(n), "v4").await;
    let port = free_port("[::1]").await;
    let listen: SocketAddr = format!("[::1]:{port}").parse().expect("addr");
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"
[[pool]]
name = "p"
scheduler = "rr"
health = {{ kind = "tcp", interval = "200ms", rise = 1, fall = 1 }}
backends = [{{ address = "{a}" }}, {{ address = "{b}" }}]
[[service]]
name = "www6"
listen = "{listen}"
pool = "p"
"#,
        a = v6.addr,
        b = v4.addr,
        admin = addr(n, 9900),
    );
    let _t = Tandem::run("ipv6", &cfg, &[listen, addr(n, 9900)]).await;
    // Both backends pass their (IPv6 and IPv4) health checks.
    let pools = format!("http://{}/api/v1/pools", addr(n, 9900));
    eventually("both backends up", Duration::from_secs(5), || {
        let pools = pools.clone();
        async move {
            let out = curl(&[&pools]).await;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let bs = v["pools"][0]["backends"].as_array()?.clone();
            bs.iter().all(|b| b["state"] == "up").then_some(())
        }
    })
    .await;
    let url = format!("http://[::1]:{port}/six");
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let r = get(&url, &["-g"]).await;
        assert_eq!(r.status, 200, "{r:?}");
        bodies.push(r.body_text());
    }
    assert_eq!(
        bodies.iter().filter(|b| *b == "v4").count(),
        2,
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| *b == "echo:").count(),
        2,
        "{bodies:?}"
    );
    let h = seen6
        .lock()
        .expect("lock")
        .pop()
        .expect("v6 backend saw a request");
    assert_eq!(header_in(&h, "x-forwarded-for"), Some("::1"));
    let fwd = header_in(&h, "forwarded").expect("Forwarded");
    assert!(fwd.contains("for=\"[::1]\""), "Forwarded: {fwd}");
}

async fn recording_echo_backend_at(
    at: SocketAddr,
    seen: Seen<Vec<(String, String)>>,
) -> HttpBackend {
    HttpBackend::start_at(at, move |req: Request<Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().expect("lock").push(
                req.headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                    .collect(),
            );
            response(200, "echo:")
        }
    })
    .await
}

// N = 10
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_head_responses_keep_the_pool_healthy() {
    let n = 10;
    let a = text_backend(ip(n), "pipelined").await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[a.addr], "", "");
    let _t = Tandem::run("pipelining", &cfg, &[listen]).await;

    let mut s = TcpStream::connect(listen).await.expect("connect");
    s.write_all(
        b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /2 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    within("three pipelined responses", Duration::from_secs(5), async {
        loop {
            let text = String::from_utf8_lossy(&got);
            if text.matches("HTTP/1.1 200").count() == 3 && text.matches("pipelined").count() == 2 {
                break;
            }
            let mut buf = [0u8; 4096];
            let k = s.read(&mut buf).await.expect("read");
            assert!(k > 0, "closed after {text:?}");
            got.extend_from_slice(&buf[..k]);
        }
    })
    .await;
    // HEAD and GET interleaved, then 20 more requests: the pooled connection stays in sync.
    for i in 0..20 {
        let head = i % 2 == 0;
        let r = get(
            &format!("http://{listen}/x"),
            if head { &["-I"] } else { &[] },
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body_text(), if head { "" } else { "pipelined" }, "{r:?}");
    }
    assert_eq!(a.stats.requests(), 23);
    assert!(
        a.stats.conns() <= 4,
        "{} backend connections",
        a.stats.conns()
    );
}

// N = 11
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connection_closed_by_backend_is_replaced() {
    let n = 11;
    // Answers one request per connection (keep-alive by default in HTTP/1.1, no
    // `Connection: close`), then closes the connection: at once, or after 100 ms idle as
    // backends with a short keep-alive timeout do.
    let linger = Arc::new(AtomicBool::new(true));
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (l, c) = (Arc::clone(&linger), Arc::clone(&closed));
    let backend = RawBackend::start(ip(n), move |mut s| {
        let (l, c) = (Arc::clone(&l), Arc::clone(&c));
        async move {
            if read_head(&mut s).await.is_some() {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
                    .await;
                if l.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            drop(s);
            c.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("stale-pool", &cfg, &[listen]).await;
    let url = format!("http://{listen}/");
    for _ in 0..5 {
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body_text(), "fresh");
        // The next request goes out only once the backend has closed the pooled connection.
        let want = backend.conns();
        eventually("the backend to close", Duration::from_secs(5), || {
            let c = Arc::clone(&closed);
            async move { (c.load(Ordering::SeqCst) >= want).then_some(()) }
        })
        .await;
    }
    // The harsh race: back-to-back requests, the backend closing right after each response.
    linger.store(false, Ordering::SeqCst);
    let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}\n"];
    for _ in 0..100 {
        args.push(&url);
        args.push("-o");
        args.push("/dev/null");
    }
    let out = curl(&args).await;
    assert!(out.ok, "{}", out.stderr);
    let text = out.text();
    let bad: Vec<&str> = text.lines().filter(|l| *l != "200").collect();
    assert!(
        bad.is_empty(),
        "{} of 100 requests failed: {bad:?}",
        bad.len()
    );
}

// N = 12
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_abort_mid_download_does_not_poison_the_pool() {
    let n = 12;
    let backend = HttpBackend::start(ip(n), |req: Request<Incoming>| async move {
        if req.uri().path() != "/big" {
            return response(200, "small");
        }
        let (tx, body) = chan_body(2);
        tokio::spawn(async move {
            for i in 0..128 {
                if tx.send(pattern_chunk(i)).await.is_err() {
                    return;
                }
            }
        });
        Response::new(body)
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "").replace("workers = 2", "workers = 1");
    let _t = Tandem::run("abort", &cfg, &[listen]).await;

    for _ in 0..3 {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 64 * 1024];
        let k = within(
            "first bytes of /big",
            Duration::from_secs(5),
            s.read(&mut buf),
        )
        .await
        .expect("read");
        assert!(k > 0);
        drop(s);
        for _ in 0..3 {
            let r = get(&format!("http://{listen}/small"), &[]).await;
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(
                r.body_text(),
                "small",
                "a response from an aborted stream leaked"
            );
        }
    }
}

// N = 13
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_timeout_closes_idle_keepalive_not_slow_requests() {
    let n = 13;
    let backend = HttpBackend::start(ip(n), |req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(2000)).await;
        }
        response(200, "done")
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "idle_timeout = \"1s\"");
    let _t = Tandem::run("http-idle", &cfg, &[listen]).await;

    let idle = async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let (head, _) = read_head(&mut s).await.expect("head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let quiet = Instant::now();
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        (closed, quiet.elapsed())
    };
    let slow = async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let (head, _) = within("slow response", Duration::from_secs(5), read_head(&mut s))
            .await
            .expect("the slow request was cut off by the idle timeout");
        head
    };
    let ((closed, after), head) = tokio::join!(idle, slow);
    assert!(
        closed,
        "idle keep-alive connection still open after {after:?}"
    );
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "idle connection closed after {after:?}, want about 1s"
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

// N = 14
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_length_and_chunked_never_reach_the_backend_together() {
    let n = 14;
    let heads: Seen<String> = seen();
    let rec = Arc::clone(&heads);
    let backend = RawBackend::start(ip(n), move |mut s| {
        let rec = Arc::clone(&rec);
        async move {
            let Some((head, mut rest)) = read_head(&mut s).await else {
                return;
            };
            // Read what framing the head announces, bounded.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                let mut buf = [0u8; 1024];
                while find(&rest, b"0\r\n\r\n").is_none() && rest.len() < 4 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => rest.extend_from_slice(&buf[..k]),
                    }
                }
            })
            .await;
            rec.lock().expect("lock").push(head);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("smuggle", &cfg, &[listen]).await;

    let mut s = TcpStream::connect(listen).await.expect("connect");
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await
    .expect("write");
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 200"),
        "{text:?}"
    );
    let last = heads.lock().expect("lock").pop();
    if let Some(head) = last {
        let h = head_headers(&head);
        assert!(
            !(header_in(&h, "content-length").is_some()
                && header_in(&h, "transfer-encoding").is_some()),
            "backend got both framings:\n{head}"
        );
    }
}

// N = 16
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_and_source_hash_schedulers_end_to_end() {
    let n = 16;
    let heavy = text_backend(ip(n), "heavy").await;
    let light = text_backend(ip(n), "light").await;
    let admin = addr(n, 9900);
    let cfg = format!(
        r#"
[runtime]
workers = 2
[admin]
listen = "{admin}"
[[pool]]
name = "weighted"
scheduler = "wrr"
health = {{ kind = "none" }}
backends = [{{ address = "{h}", weight = 3 }}, {{ address = "{l}", weight = 1 }}]
[[pool]]
name = "hashed"
scheduler = "sh"
health = {{ kind = "none" }}
backends = [{{ address = "{h}" }}, {{ address = "{l}" }}]
[[service]]
name = "wrr"
listen = "{w}"
pool = "weighted"
[[service]]
name = "sh"
listen = "{s}"
pool = "hashed"
"#,
        h = heavy.addr,
        l = light.addr,
        w = addr(n, 8080),
        s = addr(n, 8081),
    );
    let _t = Tandem::run("schedulers", &cfg, &[addr(n, 8080), addr(n, 8081), admin]).await;

    let url = format!("http://{}/", addr(n, 8080));
    let mut args = vec!["-w", "\n"];
    for _ in 0..12 {
        args.push(&url);
    }
    let out = curl(&args).await;
    assert!(out.ok, "{}", out.stderr);
    let text = out.text();
    assert_eq!(
        text.lines().filter(|l| *l == "heavy").count(),
        9,
        "{text:?}"
    );
    assert_eq!(
        text.lines().filter(|l| *l == "light").count(),
        3,
        "{text:?}"
    );
    let out = curl(&[&format!("http://{admin}/api/v1/pools/weighted")]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pool JSON");
    assert_eq!(v["backends"][0]["total"], 9, "{v}");
    assert_eq!(v["backends"][1]["total"], 3, "{v}");

    // Source hash: each client address sticks to one backend; different clients spread.
    let url = format!("http://{}/", addr(n, 8081));
    let mut used = std::collections::HashSet::new();
    for c in 10..26u8 {
        let client = format!("127.77.16.{c}");
        let mut args = vec!["--interface", client.as_str(), "-w", "\n"];
        for _ in 0..4 {
            args.push(&url);
        }
        let out = curl(&args).await;
        assert!(out.ok, "{}", out.stderr);
        let text = out.text();
        let picks: std::collections::HashSet<&str> = text.lines().collect();
        assert_eq!(
            picks.len(),
            1,
            "client {client} moved between backends: {text:?}"
        );
        used.extend(picks.into_iter().map(str::to_string));
    }
    assert_eq!(used.len(), 2, "16 clients all hashed to {used:?}");
}

// N = 17
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_client_input_never_kills_the_daemon() {
    let n = 17;
    let heads: Seen<String> = seen();
    let rec = Arc::clone(&heads);
    let backend = RawBackend::start(ip(n), move |mut s| {
        let rec = Arc::clone(&rec);
        async move {
            while let Some((head, _)) = read_head(&mut s).await {
                rec.lock().expect("lock").push(head);
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "header_timeout = \"1s\"");
    let mut t = Tandem::run("hostile", &cfg, &[listen]).await;

    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
    let mut inputs: Vec<Vec<u8>> = vec![
        b"GET http://elsewhere.example/abs?q=1 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example:443\r\n\r\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: t\r\nX: \xff\xfe\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: t\r\n Folded: header\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(),
        b"\r\n\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x01\x00\x00\x00\x00\x01garbage-frames".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x05\x01\x05\x00\x00\x00\x01\x82\x84\x86\x41".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".to_vec(),
        b"PRI".to_vec(),
        long_uri.into_bytes(),
    ];
    // Some bytes that are no protocol at all.
    inputs.push(
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    );
    for input in &inputs {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        let _ = s.write_all(input).await;
        // Either an answer, or the connection closed (at the latest after header_timeout).
        let mut buf = [0u8; 1024];
        let answered = match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => true, // bytes, EOF or reset
            Err(_) => false,
        };
        assert!(
            answered,
            "neither an answer nor a close after {:?}",
            String::from_utf8_lossy(&input[..input.len().min(60)])
        );
        assert!(t.try_wait().is_none(), "tandem died; log:\n{}", t.log());
    }
    // The absolute-form request reached the backend in origin form with the client's Host.
    let first = heads
        .lock()
        .expect("lock")
        .iter()
        .find(|h| h.contains("q=1"))
        .cloned()
        .expect("absolute-form request forwarded");
    assert!(first.starts_with("GET /abs?q=1 HTTP/1.1\r\n"), "{first}");
    let r = get(&format!("http://{listen}/"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(!t.log().contains("panicked"), "{}", t.log());
}

// N = 18
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_http_client_still_gets_its_response() {
    let n = 18;
    let backend = text_backend(ip(n), "answered").await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("half-closed-client", &cfg, &[listen]).await;
    let mut s = TcpStream::connect(listen).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    s.shutdown().await.expect("shutdown write side");
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "connection should close after the response");
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("answered"),
        "got {text:?}; backend saw {} request(s)",
        backend.stats.requests()
    );
}

/// A raw HTTP/1.1 backend that answers each request on a connection with `answer(method, path)`
/// (exact bytes), until the client closes or `answer` returns `None` (then it closes).
async fn scripted_backend(n: u8, answer: fn(&str, &str) -> Option<Vec<u8>>) -> RawBackend {
    RawBackend::start(ip(n), move |mut s| async move {
        while let Some((head, _)) = read_head(&mut s).await {
            let mut first = head.split_whitespace();
            let method = first.next().unwrap_or_default().to_string();
            let path = first.next().unwrap_or_default().to_string();
            let Some(bytes) = answer(&method, &path) else {
                return;
            };
            if s.write_all(&bytes).await.is_err() {
                return;
            }
        }
    })
    .await
}

// N = 19
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_with_extensions_and_trailers_both_ways() {
    let n = 19;
    let echo = recording_echo_backend(n, seen()).await;
    let chunky = scripted_backend(n, |_, _| {
        Some(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              005;name=value\r\nhello\r\n00A\r\n0123456789\r\n1C\r\n and twenty-eight more b\
              ytes\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let cfg = format!(
        r#"
[runtime]
workers = 1
[admin]
listen = "{admin}"
[[pool]]
name = "echo"
health = {{ kind = "none" }}
backends = [{{ address = "{e}" }}]
[[pool]]
name = "chunky"
health = {{ kind = "none" }}
backends = [{{ address = "{c}" }}]
[[service]]
name = "echo"
listen = "{l1}"
pool = "echo"
[[service]]
name = "chunky"
listen = "{l2}"
pool = "chunky"
"#,
        admin = addr(n, 0),
        e = echo.addr,
        c = chunky.addr,
        l1 = addr(n, 8080),
        l2 = addr(n, 8081),
    );
    let _t = Tandem::run("chunked", &cfg, &[addr(n, 8080), addr(n, 8081)]).await;

    // Client → backend: extensions, upper-case hex, a trailer; twice on one connection.
    let mut s = TcpStream::connect(addr(n, 8080)).await.expect("connect");
    for round in 0..2 {
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .await
        .expect("write");
        let (head, mut body) = within("echo response", Duration::from_secs(5), read_head(&mut s))
            .await
            .unwrap_or_else(|| panic!("round {round}: connection closed"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = header_in(&head_headers(&head), "content-length")
            .and_then(|v| v.parse().ok())
            .expect("echo response has a Content-Length");
        within("echo body", Duration::from_secs(5), async {
            while body.len() < len {
                let mut buf = [0u8; 1024];
                let k = s.read(&mut buf).await.expect("read");
                assert!(k > 0);
                body.extend_from_slice(&buf[..k]);
            }
        })
        .await;
        assert_eq!(String::from_utf8_lossy(&body), "echo:hello0123456789");
    }

    // Backend → client: the same oddities in the response; the pooled connection stays usable.
    // (Not `curl -i`: it prints trailers after the body.)
    for _ in 0..3 {
        let url = format!("http://{}/", addr(n, 8081));
        let out = curl(&["-w", "|%{http_code}", &url]).await;
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(
            out.text(),
            "hello0123456789 and twenty-eight more bytes|200"
        );
    }
    assert_eq!(
        chunky.conns(),
        1,
        "the chunked response desynchronised the pool"
    );
}

// N = 20
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_responses_and_http10_clients() {
    let n = 20;
    // An HTTP/1.0-style backend: no Content-Length, the body ends when the connection does.
    let old = RawBackend::start(ip(n), |mut s| async move {
        if read_head(&mut s).await.is_none() {
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
            .await;
        for i in 0..16 {
            if s.write_all(&pattern_chunk(i)).await.is_err() {
                return;
            }
        }
    })
    .await;
    let bulk = digest_backend(ip(n)).await;
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"
[[pool]]
name = "old"
health = {{ kind = "none" }}
backends = [{{ address = "{o}" }}]
[[pool]]
name = "bulk"
health = {{ kind = "none" }}
backends = [{{ address = "{b}" }}]
[[service]]
name = "old"
listen = "{l1}"
pool = "old"
[[service]]
name = "bulk"
listen = "{l2}"
pool = "bulk"
"#,
        admin = addr(n, 0),
        o = old.addr,
        b = bulk.addr,
        l1 = addr(n, 8080),
        l2 = addr(n, 8081),
    );
    let _t = Tandem::run("http10", &cfg, &[addr(n, 8080), addr(n, 8081)]).await;
    let dir = TempDir::new("http10");
    let (len, h) = pattern_digest(16);

    // A close-delimited 1 MiB body reaches an HTTP/1.1 client intact (twice).
    for _ in 0..2 {
        let file = dir.path().join("old.bin");
        let out = curl(&[
            "-o",
            file.to_str().expect("path"),
            "-w",
            "%{http_code}",
            &format!("http://{}/", addr(n, 8080)),
        ])
        .await;
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(out.text(), "200");
        assert_eq!(file_digest(&file), (len, h));
    }

    // An HTTP/1.0 client gets a streamed (chunked at the backend) body without chunked
    // encoding, delimited by the close.
    let mut s = TcpStream::connect(addr(n, 8081)).await.expect("connect");
    s.write_all(b"GET /download?chunks=16 HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "HTTP/1.0 response not ended by a close");
    let end = find(&out, b"\r\n\r\n").expect("a head");
    let head = String::from_utf8_lossy(&out[..end + 4]).into_owned();
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert!(head.contains(" 200 "), "{head}");
    let hs = head_headers(&head);
    assert!(
        header_in(&hs, "transfer-encoding").is_none(),
        "chunked sent to an HTTP/1.0 client:\n{head}"
    );
    let mut d = Digest::default();
    d.update(&out[end + 4..]);
    assert_eq!(d.finish(), (len, h), "HTTP/1.0 body differs");
}

// N = 21
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_from_the_client_is_honoured() {
    let n = 21;
    let a = text_backend(ip(n), "bye").await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[a.addr], "", "");
    let _t = Tandem::run("conn-close", &cfg, &[listen]).await;
    for req in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nCONNECTION: Close\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: t\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        s.write_all(req).await.expect("write");
        let (out, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            closed,
            "still open after {:?}; got {text:?}",
            String::from_utf8_lossy(req)
        );
        assert!(
            text.starts_with("HTTP/1.") && text.ends_with("bye"),
            "{text:?}"
        );
    }
}

// N = 22
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_and_bodyless_responses_keep_the_pool_in_sync() {
    let n = 22;
    let backend = scripted_backend(n, |method, path| {
        let r: &[u8] = match (method, path) {
            (_, "/hints") => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints"
            }
            (_, "/204") => b"HTTP/1.1 204 No Content\r\nX-R: 204\r\n\r\n",
            (_, "/304") => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1000\r\n\r\n"
            }
            ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain",
        };
        Some(r.to_vec())
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "").replace("workers = 2", "workers = 1");
    let _t = Tandem::run("bodyless", &cfg, &[listen]).await;
    let url = |p: &str| format!("http://{listen}{p}");
    for _ in 0..2 {
        let r = get(&url("/hints"), &[]).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, "hints"), "{r:?}");
        let r = get(&url("/204"), &[]).await;
        assert_eq!((r.status, r.body_text().as_str()), (204, ""), "{r:?}");
        let r = get(&url("/304"), &["-H", "If-None-Match: \"v1\""]).await;
        assert_eq!((r.status, r.body_text().as_str()), (304, ""), "{r:?}");
        let r = get(&url("/head"), &["-I"]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-length"), Some("1000"), "{r:?}");
        let r = get(&url("/plain"), &[]).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, "plain"), "{r:?}");
    }
    assert_eq!(
        backend.conns(),
        1,
        "bodyless responses cost extra backend connections (pool out of sync?)"
    );
}

// N = 23
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_large_headers_pass_intact_both_ways() {
    let n = 23;
    let heads: Seen<String> = seen();
    let rec = Arc::clone(&heads);
    let backend = RawBackend::start(ip(n), move |mut s| {
        let rec = Arc::clone(&rec);
        async move {
            while let Some((head, _)) = read_head(&mut s).await {
                rec.lock().expect("lock").push(head);
                // 8 cookies of ~2 KB: a 16 KB response head, as some applications send.
                let mut resp = String::from("HTTP/1.1 200 OK\r\n");
                for i in 0..8 {
                    resp.push_str(&format!("Set-Cookie: c{i}={}\r\n", "v".repeat(2000)));
                }
                resp.push_str("Content-Length: 2\r\n\r\nok");
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let _t = Tandem::run("big-heads", &cfg, &[listen]).await;
    let mut args: Vec<String> = Vec::new();
    for i in 0..40 {
        args.push("-H".into());
        args.push(format!("X-Many-{i}: value-{i}"));
    }
    args.push("-H".into());
    args.push("X-Dup: one".into());
    args.push("-H".into());
    args.push("X-Dup: two".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = get(&format!("http://{listen}/"), &args).await;
    assert_eq!(r.status, 200, "{r:?}");
    let cookies: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies.len(), 8, "Set-Cookie lines lost");
    for (i, c) in cookies.iter().enumerate() {
        assert_eq!(
            *c,
            format!("c{i}={}", "v".repeat(2000)),
            "cookie {i} altered or reordered"
        );
    }
    let head = heads
        .lock()
        .expect("lock")
        .pop()
        .expect("backend saw the request");
    let h = head_headers(&head);
    for i in 0..40 {
        assert_eq!(
            header_in(&h, &format!("x-many-{i}")),
            Some(format!("value-{i}").as_str()),
            "{head}"
        );
    }
    let dups: Vec<&str> = h
        .iter()
        .filter(|(k, _)| k == "x-dup")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        dups == ["one", "two"] || dups == ["one, two"],
        "repeated request header mangled: {dups:?}"
    );
}

/// A request body of unknown length (no size hint), sent as two DATA frames.
struct UnsizedBody(Vec<Bytes>);

impl hyper::body::Body for UnsizedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| Ok(hyper::body::Frame::data(self.0.remove(0))));
        std::task::Poll::Ready(next)
    }
}

// N = 131
/// HTTP/2 clients reach HTTP/1.1 backends through tandem's own client (not hyper's): every
/// framing a backend may answer with arrives intact over h2, and none of it desynchronises the
/// pooled connection; a request body of unknown length goes to the backend chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_get_every_http1_framing_through_the_native_client() {
    let n = 131;
    let backend = scripted_backend(n, |method, path| {
        let r: &[u8] = match (method, path) {
            (_, "/chunked") => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n\
                  005;name=value\r\nhello\r\n00A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
            }
            (_, "/hints") => {
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints"
            }
            (_, "/204") => b"HTTP/1.1 204 No Content\r\nX-R: 204\r\n\r\n",
            (_, "/304") => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1000\r\n\r\n"
            }
            ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nplain",
        };
        Some(r.to_vec())
    })
    .await;
    // An HTTP/1.0-style backend: no length, the body ends when the connection does.
    let old = RawBackend::start(ip(n), |mut s| async move {
        if read_head(&mut s).await.is_none() {
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
            .await;
    })
    .await;
    let seen = seen();
    let echo = recording_echo_backend(n, Arc::clone(&seen)).await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "").replace("workers = 2", "workers = 1");
    let _t = Tandem::run("h2-native", &cfg, &[listen]).await;
    let h2 = ["--http2-prior-knowledge"];
    let url = |p: &str| format!("http://{listen}{p}");
    for round in 0..2 {
        let r = get(&url("/chunked"), &h2).await;
        assert_eq!(r.version, "HTTP/2", "{r:?}");
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "hello0123456789"),
            "round {round}: {r:?}"
        );
        assert_eq!(
            r.header("x-hop"),
            None,
            "a header named by Connection was forwarded"
        );
        let r = get(&url("/hints"), &h2).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, "hints"), "{r:?}");
        let r = get(&url("/204"), &h2).await;
        assert_eq!((r.status, r.body_text().as_str()), (204, ""), "{r:?}");
        assert_eq!(r.header("x-r"), Some("204"), "{r:?}");
        let r = get(
            &url("/304"),
            &[&h2[..], &["-H", "If-None-Match: \"v1\""]].concat(),
        )
        .await;
        assert_eq!((r.status, r.body_text().as_str()), (304, ""), "{r:?}");
        let r = get(&url("/head"), &[&h2[..], &["-I"]].concat()).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-length"), Some("1000"), "{r:?}");
        let r = get(&url("/plain"), &h2).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, "plain"), "{r:?}");
        assert_eq!(
            r.headers.iter().filter(|(k, _)| k == "set-cookie").count(),
            2,
            "{r:?}"
        );
    }
    assert_eq!(
        backend.conns(),
        1,
        "a response desynchronised the pooled backend connection"
    );

    let listen2 = addr(n, 8081);
    let cfg = config(n, "http", &[old.addr], "", "")
        .replace(&format!("\"{listen}\""), &format!("\"{listen2}\""));
    let _t2 = Tandem::run("h2-native-old", &cfg, &[listen2]).await;
    for _ in 0..2 {
        let r = get(&format!("http://{listen2}/"), &h2).await;
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "until close"),
            "{r:?}"
        );
    }
    assert_eq!(old.conns(), 2, "a close-delimited connection was reused");

    // `keepalive = false`: the request says `Connection: close`, so the connection is not
    // reused even though this backend would keep it open.
    let listen4 = addr(n, 8083);
    // (One worker, so a reused connection would show as one.)
    let cfg = config(n, "http", &[backend.addr], "keepalive = false", "")
        .replace("workers = 2", "workers = 1")
        .replace(&format!("\"{listen}\""), &format!("\"{listen4}\""));
    let _t4 = Tandem::run("h2-native-close", &cfg, &[listen4]).await;
    let before = backend.conns();
    for _ in 0..2 {
        let r = get(&format!("http://{listen4}/plain"), &h2).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, "plain"), "{r:?}");
    }
    assert_eq!(
        backend.conns() - before,
        2,
        "a connection whose request said `Connection: close` was reused"
    );

    let listen3 = addr(n, 8082);
    // (The pool's `host` applies without any routes too.)
    let cfg = config(n, "http", &[echo.addr], "host = \"app.internal\"", "")
        .replace(&format!("\"{listen}\""), &format!("\"{listen3}\""));
    let _t3 = Tandem::run("h2-native-echo", &cfg, &[listen3]).await;
    let stream = TcpStream::connect(listen3).await.expect("connect");
    let (mut sender, _conn) = h2_client(stream).await;
    let req = Request::post(format!("http://{listen3}/up"))
        .body(UnsizedBody(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"def"),
        ]))
        .expect("request");
    let resp = within(
        "h2 upload",
        Duration::from_secs(5),
        sender.send_request(req),
    )
    .await
    .expect("h2 response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"echo:abcdef");
    let headers = seen
        .lock()
        .expect("lock")
        .pop()
        .expect("backend saw the upload");
    assert_eq!(
        header_in(&headers, "transfer-encoding"),
        Some("chunked"),
        "{headers:?}"
    );
    assert_eq!(header_in(&headers, "content-length"), None, "{headers:?}");
    assert_eq!(
        header_in(&headers, "host"),
        Some("app.internal"),
        "{headers:?}"
    );
}

// N = 132
/// SIGTERM with HTTP/2 streams in flight: the client is told to go away (GOAWAY) and opens no
/// new stream, the streams in flight are answered in full, then the connection closes and
/// tandem exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_in_flight_finish_on_shutdown() {
    let n = 132;
    let backend = HttpBackend::start(ip(n), |req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        response(200, format!("done {}", req.uri().path()))
    })
    .await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "");
    let mut t = Tandem::run("h2-drain", &cfg, &[listen]).await;
    let stream = TcpStream::connect(listen).await.expect("connect");
    let (sender, conn) = h2_client(stream).await;
    let send = |path: &'static str| {
        let mut sender = sender.clone();
        tokio::spawn(async move {
            let req = Request::get(format!("http://{listen}{path}"))
                .body(full(""))
                .expect("request");
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        })
    };
    let slow: Vec<_> = (0..3).map(|_| send("/slow")).collect();
    eventually(
        "the slow requests reach the backend",
        Duration::from_secs(5),
        || async { (backend.stats.requests() == 3).then_some(()) },
    )
    .await;
    t.signal(libc::SIGTERM);
    for (i, s) in slow.into_iter().enumerate() {
        let answer = within("slow stream", Duration::from_secs(5), s)
            .await
            .expect("task");
        assert_eq!(
            answer,
            Ok((200, Bytes::from_static(b"done /slow"))),
            "stream {i} in flight at SIGTERM"
        );
    }
    within(
        "connection closed after GOAWAY",
        Duration::from_secs(5),
        conn,
    )
    .await
    .expect("connection task")
    .expect("the connection ended cleanly (GOAWAY, not an error)");
    let status = t.wait_exit(Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "tandem did not exit cleanly: {status:?}\n{}",
        t.log()
    );
    assert_eq!(backend.stats.requests(), 3);
}
