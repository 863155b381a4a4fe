//! HTTP mode when things go wrong: dead, rude and slow backends, health-driven failover to
//! backups and the sorry server, slow and malformed clients, connection limits.
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn assert_short_text_body(r: &Resp) {
    assert!(
        !r.body.is_empty() && r.body.len() < 200,
        "want a short body, got {:?}",
        r.body_text()
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{r:?}"
    );
}

// N = 30
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_backend_gives_fast_502() {
    let n = 30;
    let dead = closed_addr(n, 4000);
    let admin = addr(n, 9900);
    let cfg = config(n, "http", &[dead], "", "")
        .replace(&format!("\"{}\"", addr(n, 0)), &format!("\"{admin}\""));
    let listen = addr(n, 8080);
    let _t = Tandem::run("refused", &cfg, &[listen, admin]).await;
    for _ in 0..2 {
        let r = get(&format!("http://{listen}/"), &[]).await;
        assert_eq!(r.status, 502, "{r:?}");
        assert_short_text_body(&r);
        assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
    }
    // The failures are counted where an operator looks.
    let out = curl(&[&format!("http://{admin}/api/v1/pools")]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pools JSON");
    let failures = v["pools"][0]["backends"][0]["failures"].as_u64();
    assert!(
        failures.is_some_and(|f| f >= 2),
        "failures = {failures:?} in {v}"
    );
}

// N = 31
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_or_resetting_without_answer_gives_502() {
    let n = 31;
    // Reads the request, then closes (FIN) without a word.
    let closer = RawBackend::start(ip(n), |mut s| async move {
        let _ = read_head(&mut s).await;
        drop(s);
    })
    .await;
    // Reads the request, then resets the connection (RST).
    let resetter = RawBackend::start(ip(n), |mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s.set_zero_linger();
        drop(s);
    })
    .await;
    // Answers with something that is not HTTP.
    let garbage = RawBackend::start(ip(n), |mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    for (what, backend) in [
        ("close", &closer),
        ("reset", &resetter),
        ("garbage", &garbage),
    ] {
        let cfg = config(n, "http", &[backend.addr], "", "");
        let listen = addr(n, 8080);
        let t = Tandem::run(what, &cfg, &[listen]).await;
        let r = get(&format!("http://{listen}/"), &[]).await;
        assert_eq!(r.status, 502, "{what}: {r:?}");
        assert_short_text_body(&r);
        assert!(
            r.elapsed < Duration::from_secs(2),
            "{what}: took {:?}",
            r.elapsed
        );
        assert!(backend.conns() >= 1, "{what}: backend never reached");
        drop(t);
    }
}

// N = 32
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_gives_504_after_response_timeout() {
    let n = 32;
    let silent = RawBackend::start(ip(n), |mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let cfg = config(n, "http", &[silent.addr], "", "response_timeout = \"1s\"");
    let listen = addr(n, 8080);
    let _t = Tandem::run("silent", &cfg, &[listen]).await;
    let r = get(&format!("http://{listen}/"), &[]).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_short_text_body(&r);
    assert!(
        r.elapsed >= Duration::from_millis(900) && r.elapsed < Duration::from_secs(3),
        "504 after {:?}, want about 1s",
        r.elapsed
    );
}

/// GET the admin API's `/api/v1/pools` and return the `state` of every backend of the first pool.
async fn backend_states(admin: SocketAddr) -> Option<Vec<String>> {
    let out = curl(&[&format!("http://{admin}/api/v1/pools")]).await;
    if !out.ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let backends = v["pools"][0]["backends"].as_array()?;
    Some(
        backends
            .iter()
            .map(|b| b["state"].as_str().unwrap_or("?").to_string())
            .collect(),
    )
}

// N = 33
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_gives_503_with_retry_after() {
    let n = 33;
    let cfg = config(
        n,
        "http",
        &[closed_addr(n, 4000), closed_addr(n, 4001)],
        "health = { kind = \"tcp\", interval = \"200ms\", timeout = \"100ms\", rise = 1, fall = 1 }",
        "",
    )
    .replace(&format!("\"{}\"", addr(n, 0)), &format!("\"{}\"", addr(n, 9900)));
    let listen = addr(n, 8080);
    let admin = addr(n, 9900);
    let _t = Tandem::run("all-down", &cfg, &[listen, admin]).await;
    eventually(
        "both backends down in the admin API",
        Duration::from_secs(5),
        || async {
            backend_states(admin)
                .await
                .filter(|s| s.iter().all(|x| x == "down"))
        },
    )
    .await;
    let r = get(&format!("http://{listen}/"), &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_short_text_body(&r);
    let retry = r.header("retry-after").expect("Retry-After on 503");
    assert!(retry.parse::<u32>().is_ok(), "Retry-After: {retry}");
    assert!(r.elapsed < Duration::from_secs(1), "took {:?}", r.elapsed);
}

// N = 34
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_only_when_primaries_down_and_sorry_server_last() {
    let n = 34;
    let primary = text_backend(ip(n), "primary").await;
    let backup = text_backend(ip(n), "backup").await;
    let sorry = text_backend(ip(n), "sorry").await;
    let (p_addr, b_addr) = (primary.addr, backup.addr);
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"
[[pool]]
name = "p"
scheduler = "rr"
sorry_server = "{s}"
health = {{ kind = "tcp", interval = "200ms", timeout = "100ms", rise = 1, fall = 1 }}
backends = [{{ address = "{p_addr}" }}, {{ address = "{b_addr}", backup = true }}]
[[service]]
name = "www"
listen = "{listen}"
pool = "p"
"#,
        admin = addr(n, 0),
        s = sorry.addr,
        listen = addr(n, 8080),
    );
    let listen = addr(n, 8080);
    let _t = Tandem::run("backup", &cfg, &[listen]).await;
    let url = format!("http://{listen}/");
    let body_of = |url: String| async move {
        let r = get(&url, &[]).await;
        (r.status == 200).then(|| r.body_text())
    };

    for _ in 0..6 {
        assert_eq!(body_of(url.clone()).await.as_deref(), Some("primary"));
    }
    assert_eq!(backup.stats.requests(), 0);
    assert_eq!(sorry.stats.requests(), 0);

    primary.stop_and_wait().await;
    eventually(
        "traffic to move to the backup",
        Duration::from_secs(5),
        || {
            let url = url.clone();
            async move { (body_of(url).await.as_deref() == Some("backup")).then_some(()) }
        },
    )
    .await;
    for _ in 0..4 {
        assert_eq!(body_of(url.clone()).await.as_deref(), Some("backup"));
    }
    assert_eq!(
        sorry.stats.requests(),
        0,
        "sorry server used while the backup is up"
    );

    backup.stop_and_wait().await;
    eventually(
        "traffic to move to the sorry server",
        Duration::from_secs(5),
        || {
            let url = url.clone();
            async move { (body_of(url).await.as_deref() == Some("sorry")).then_some(()) }
        },
    )
    .await;

    // The primary comes back on the same address: traffic returns to it.
    let _primary2 = text_backend_at(p_addr, "primary again").await;
    eventually(
        "traffic to return to the primary",
        Duration::from_secs(5),
        || {
            let url = url.clone();
            async move { (body_of(url).await.as_deref() == Some("primary again")).then_some(()) }
        },
    )
    .await;
}

async fn text_backend_at(at: SocketAddr, text: &'static str) -> HttpBackend {
    HttpBackend::start_at(at, move |_req| async move { response(200, text) }).await
}

// N = 35
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_after_header_timeout() {
    let n = 35;
    let backend = text_backend(ip(n), "ok").await;
    let cfg = config(n, "http", &[backend.addr], "", "header_timeout = \"1s\"");
    let listen = addr(n, 8080);
    let _t = Tandem::run("slowloris", &cfg, &[listen]).await;

    // (a) a partial head, then nothing.
    let partial = async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
            .await
            .expect("write");
        let (out, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 408 "),
            "partial head answered {text:?}"
        );
        (closed, start.elapsed())
    };
    // (b) a head dribbled one byte every 150 ms, never finished.
    let dribble = async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        let mut closed = false;
        while start.elapsed() < Duration::from_secs(5) {
            let (_, ended) = read_until_closed(&mut s, Duration::from_millis(150)).await;
            if ended || s.write_all(b"X").await.is_err() {
                closed = true;
                break;
            }
        }
        (closed, start.elapsed())
    };
    let (a, b) = tokio::join!(partial, dribble);
    for (what, (closed, after)) in [("partial head", a), ("dribbled head", b)] {
        assert!(closed, "{what}: connection still open after {after:?}");
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_secs(3),
            "{what}: closed after {after:?}, want about 1s"
        );
    }
    assert_eq!(backend.stats.requests(), 0);
    // Still serving.
    assert_eq!(get(&format!("http://{listen}/"), &[]).await.status, 200);
}

// N = 42
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_sends_a_byte_is_cut_off_after_header_timeout() {
    let n = 42;
    let backend = text_backend(ip(n), "ok").await;
    let cfg = config(n, "http", &[backend.addr], "", "header_timeout = \"1s\"");
    let listen = addr(n, 8080);
    let _t = Tandem::run("mute-client", &cfg, &[listen]).await;
    // Connected, sends nothing at all: the cheapest way to hold a connection slot. It must not
    // be kept for idle_timeout (60 s by default), or a few thousand of them exhaust tandem.
    let mut s = TcpStream::connect(listen).await.expect("connect");
    let start = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let after = start.elapsed();
    assert!(closed, "silent connection still open after {after:?}");
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "silent connection closed after {after:?}, want about 1s"
    );
}

// N = 36
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_close() {
    let n = 36;
    let backend = text_backend(ip(n), "ok").await;
    let admin = addr(n, 9900);
    let cfg = config(n, "http", &[backend.addr], "", "")
        .replace(&addr(n, 0).to_string(), &admin.to_string());
    let listen = addr(n, 8080);
    let _t = Tandem::run("malformed", &cfg, &[listen, admin]).await;
    for raw in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Without Colon\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        s.write_all(raw).await.expect("write");
        let (out, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{:?} got {text:?}",
            String::from_utf8_lossy(raw)
        );
        assert!(closed, "connection left open after 400 for {raw:?}");
    }
    assert_eq!(backend.stats.requests(), 0);
    // Counted, so an operator sees them: three rejected requests, no backend errors (the
    // connection count also includes the harness's readiness probe).
    let metrics = get(&format!("http://{admin}/metrics"), &[])
        .await
        .body_text();
    for line in [
        "tandem_service_rejected_requests_total{service=\"www\"} 3",
        "tandem_service_backend_errors_total{service=\"www\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in:\n{metrics}"
        );
    }
    let connections: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tandem_service_connections_total{service=\"www\"} "))
        .and_then(|v| v.parse().ok())
        .expect("connections counter");
    assert!(connections >= 3, "{connections} connections counted");
}

// N = 37
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_head_gets_431() {
    let n = 37;
    let backend = text_backend(ip(n), "ok").await;
    let cfg = config(n, "http", &[backend.addr], "", "max_header_size = 1024");
    let listen = addr(n, 8080);
    let _t = Tandem::run("431", &cfg, &[listen]).await;
    let url = format!("http://{listen}/");
    let small = format!("X-Big: {}", "a".repeat(500));
    assert_eq!(get(&url, &["-H", &small]).await.status, 200);
    for size in [2_000, 40_000] {
        let big = format!("X-Big: {}", "a".repeat(size));
        let r = get(&url, &["-H", &big]).await;
        assert_eq!(r.status, 431, "{size}-byte header: {r:?}");
    }
    assert_eq!(backend.stats.requests(), 1);
}

// N = 38
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_queues_then_503_after_queue_timeout() {
    let n = 38;
    let slow = |delay_ms: u64| async move {
        HttpBackend::start(ip(n), move |_req| async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            response(200, "slow")
        })
        .await
    };
    let (l1, l2) = (slow(400).await, slow(400).await);
    let (s1, s2) = (slow(1500).await, slow(1500).await);
    let cfg = format!(
        r#"
[runtime]
workers = 2
[admin]
listen = "{admin}"
[[pool]]
name = "long"
scheduler = "rr"
queue_timeout = "5s"
health = {{ kind = "none" }}
backends = [{{ address = "{l1}", max_connections = 1 }}, {{ address = "{l2}", max_connections = 1 }}]
[[pool]]
name = "short"
scheduler = "rr"
queue_timeout = "300ms"
health = {{ kind = "none" }}
backends = [{{ address = "{s1}", max_connections = 1 }}, {{ address = "{s2}", max_connections = 1 }}]
[[service]]
name = "queued"
listen = "{q}"
pool = "long"
[[service]]
name = "rejected"
listen = "{r}"
pool = "short"
"#,
        admin = addr(n, 0),
        l1 = l1.addr,
        l2 = l2.addr,
        s1 = s1.addr,
        s2 = s2.addr,
        q = addr(n, 8080),
        r = addr(n, 8081),
    );
    let _t = Tandem::run("maxconn", &cfg, &[addr(n, 8080), addr(n, 8081)]).await;

    // 6 concurrent requests, 2 slots of 400 ms, a long queue: all succeed, 3 waves.
    let url = format!("http://{}/", addr(n, 8080));
    let start = Instant::now();
    let reqs: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await.status })
        })
        .collect();
    for r in reqs {
        assert_eq!(r.await.expect("task"), 200);
    }
    let took = start.elapsed();
    assert_eq!(l1.stats.max_inflight(), 1, "max_connections exceeded on l1");
    assert_eq!(l2.stats.max_inflight(), 1, "max_connections exceeded on l2");
    assert_eq!(l1.stats.requests() + l2.stats.requests(), 6);
    assert!(
        took >= Duration::from_millis(1100),
        "6 requests over 2 slots took only {took:?}"
    );

    // 5 concurrent requests, 2 slots busy for 1.5 s, a 300 ms queue: 2 succeed, 3 get 503 early.
    let url = format!("http://{}/", addr(n, 8081));
    let reqs: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = get(&url, &[]).await;
                (r.status, r.elapsed, r.header("retry-after").is_some())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in reqs {
        let (status, elapsed, _) = r.await.expect("task");
        if status == 503 {
            assert!(
                elapsed < Duration::from_millis(1300),
                "503 only after {elapsed:?}; queue_timeout is 300ms"
            );
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 503, 503, 503]);
    assert_eq!(s1.stats.max_inflight(), 1);
    assert_eq!(s2.stats.max_inflight(), 1);
}

// N = 39
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_that_never_completes_the_handshake_hits_connect_timeout() {
    let n = 39;
    // A listener with a backlog of 1 that never accepts: once its queue is full the kernel
    // drops further SYNs, so a connect hangs, as to a black-holed host.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(ip(n), 0)).expect("bind");
    let full = sock.listen(1).expect("listen");
    let hole = full.local_addr().expect("addr");
    let mut fillers = Vec::new();
    let mut hangs = false;
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(hole)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filling the backlog: {e}"),
            Err(_) => {
                hangs = true;
                break;
            }
        }
    }
    assert!(hangs, "could not fill the accept queue of {hole}");
    let cfg = config(n, "http", &[hole], "", "connect_timeout = \"300ms\"");
    let listen = addr(n, 8080);
    let _t = Tandem::run("connect-timeout", &cfg, &[listen]).await;
    let r = get(&format!("http://{listen}/"), &[]).await;
    // docs/configuration.md, connect_timeout: "the client gets 502 if no other backend can be
    // tried".
    assert_eq!(r.status, 502, "{r:?}");
    eprintln!("connect timeout answered after {:?}", r.elapsed);
    assert_short_text_body(&r);
    assert!(
        r.elapsed >= Duration::from_millis(250) && r.elapsed < Duration::from_secs(2),
        "answered after {:?} with connect_timeout = 300ms",
        r.elapsed
    );
    drop(full);
}

// N = 40
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_backend_body_is_an_error_for_the_client_not_a_hang() {
    let n = 40;
    let truncating = RawBackend::start(ip(n), |mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            .await;
    })
    .await;
    let cfg = config(n, "http", &[truncating.addr], "", "");
    let listen = addr(n, 8080);
    let _t = Tandem::run("truncated", &cfg, &[listen]).await;
    let out = curl(&["--max-time", "5", &format!("http://{listen}/")]).await;
    assert!(
        !out.ok && out.code != Some(28),
        "curl exit {:?} after {:?} ({}): want a transfer error, not success or a timeout",
        out.code,
        out.elapsed,
        out.stderr
    );
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?}",
        out.elapsed
    );
}

// N = 41
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_backend_answer_to_an_upload_is_relayed_not_hung() {
    let n = 41;
    // Refuses uploads at once, without reading the body.
    let refuser =
        HttpBackend::start(ip(n), |_req| async move { response(413, "too large\n") }).await;
    let cfg = config(n, "http", &[refuser.addr], "", "");
    let listen = addr(n, 8080);
    let _t = Tandem::run("early-413", &cfg, &[listen]).await;
    let dir = TempDir::new("early-413");
    let file = dir.path().join("up.bin");
    write_pattern_file(&file, 160); // 10 MiB
    let file = file.to_str().expect("path").to_string();
    // With `Expect: 100-continue` (curl's default for large bodies) and without.
    let mut failures = Vec::new();
    for extra in [
        &["-T", file.as_str()][..],
        &["-H", "Expect:", "-T", file.as_str()][..],
    ] {
        let url = format!("http://{listen}/upload");
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = curl(&args).await;
        if out.text() != "413" || out.elapsed >= Duration::from_secs(5) {
            failures.push(format!(
                "{extra:?}: status {:?}, curl exit {:?} after {:?} {}",
                out.text(),
                out.code,
                out.elapsed,
                out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the backend's 413 was not relayed:\n{}",
        failures.join("\n")
    );
}
