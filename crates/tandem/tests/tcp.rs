//! TCP mode: bytes both ways, half-close, idle timeout, retry past a dead backend.
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    within("echo", Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("read echo");
    assert!(back == msg, "echo differs");
}

// N = 50
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_through_tandem() {
    let n = 50;
    let echo = echo_backend(ip(n)).await;
    let cfg = config(n, "tcp", &[echo.addr], "", "");
    let listen = addr(n, 8080);
    let _t = Tandem::run("tcp-echo", &cfg, &[listen]).await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(TcpStream::connect(listen).await.expect("connect"));
    }
    for (i, s) in conns.iter_mut().enumerate() {
        roundtrip(s, format!("hello {i}\n").as_bytes()).await;
        roundtrip(s, &pattern_chunk(i as u64)).await;
    }
    // All three are open at once and stay independent.
    for (i, s) in conns.iter_mut().enumerate() {
        roundtrip(s, format!("again {i}\n").as_bytes()).await;
    }
    assert!(
        echo.conns() >= 3,
        "backend saw {} connections",
        echo.conns()
    );
}

// N = 51
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_half_close_passes_through() {
    let n = 51;
    // Reads until the client's FIN, then answers with the digest and 256 KiB, then closes.
    let backend = RawBackend::start(ip(n), |mut s| async move {
        let mut d = Digest::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(k) => d.update(&buf[..k]),
                Err(_) => return,
            }
        }
        let (len, h) = d.finish();
        let mut reply = format!("got {len} {h:x}\n").into_bytes();
        for i in 0..4 {
            reply.extend_from_slice(&pattern_chunk(100 + i));
        }
        let _ = s.write_all(&reply).await;
        let _ = s.shutdown().await;
    })
    .await;
    let cfg = config(n, "tcp", &[backend.addr], "", "");
    let listen = addr(n, 8080);
    let _t = Tandem::run("half-close", &cfg, &[listen]).await;

    let mut s = TcpStream::connect(listen).await.expect("connect");
    for i in 0..16 {
        s.write_all(&pattern_chunk(i)).await.expect("write");
    }
    s.shutdown().await.expect("shutdown write side");
    let mut reply = Vec::new();
    within(
        "the backend's reply after our FIN",
        Duration::from_secs(10),
        s.read_to_end(&mut reply),
    )
    .await
    .expect("read reply");
    let (len, h) = pattern_digest(16);
    let line = format!("got {len} {h:x}\n");
    assert!(
        reply.starts_with(line.as_bytes()),
        "reply starts {:?}, want {line:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
    let mut tail = Vec::new();
    for i in 0..4 {
        tail.extend_from_slice(&pattern_chunk(100 + i));
    }
    assert_eq!(reply.len(), line.len() + tail.len(), "reply truncated");
    assert!(reply[line.len()..] == tail[..], "reply bytes differ");
}

// N = 52
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_closes_silent_connections_only() {
    let n = 52;
    let echo = echo_backend(ip(n)).await;
    let cfg = config(n, "tcp", &[echo.addr], "", "idle_timeout = \"1s\"");
    let listen = addr(n, 8080);
    let _t = Tandem::run("tcp-idle", &cfg, &[listen]).await;

    let busy = async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        let start = Instant::now();
        // 2.4 s of traffic every 300 ms: never idle for 1 s.
        while start.elapsed() < Duration::from_millis(2400) {
            roundtrip(&mut s, b"tick").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        roundtrip(&mut s, b"still open").await;
    };
    let silent = async {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        roundtrip(&mut s, b"once").await;
        let quiet_since = Instant::now();
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        (closed, quiet_since.elapsed())
    };
    let ((), (closed, after)) = tokio::join!(busy, silent);
    assert!(closed, "silent connection still open after {after:?}");
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "closed after {after:?} of silence, want about 1s"
    );
}

// N = 53
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_dead_backend_is_skipped() {
    let n = 53;
    let echo = echo_backend(ip(n)).await;
    let dead = closed_addr(n, 4000);
    let cfg = config(n, "tcp", &[dead, echo.addr], "scheduler = \"rr\"", "");
    let listen = addr(n, 8080);
    let _t = Tandem::run("tcp-retry", &cfg, &[listen]).await;
    for i in 0..6 {
        let mut s = TcpStream::connect(listen).await.expect("connect");
        roundtrip(&mut s, format!("conn {i}\n").as_bytes()).await;
    }
    // Every connection reached the live backend (plus the harness's readiness probe).
    assert!(
        echo.conns() >= 6,
        "live backend saw {} connections",
        echo.conns()
    );
}

// N = 54
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_with_no_backend_closes_the_client_promptly() {
    let n = 54;
    let cfg = config(
        n,
        "tcp",
        &[closed_addr(n, 4000), closed_addr(n, 4001)],
        "",
        "",
    );
    let listen = addr(n, 8080);
    let _t = Tandem::run("tcp-none", &cfg, &[listen]).await;
    let mut s = TcpStream::connect(listen).await.expect("connect");
    let start = Instant::now();
    let _ = s.write_all(b"anyone there?").await;
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "client left hanging");
    assert!(got.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

// N = 55
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_backend_half_close_passes_through() {
    let n = 55;
    // The backend speaks first and shuts its write side; then it keeps reading what the client
    // sends until the client's FIN, and reports the digest through `report`.
    let report: Seen<(u64, u64)> = seen();
    let rep = std::sync::Arc::clone(&report);
    let backend = RawBackend::start(ip(n), move |mut s| {
        let rep = std::sync::Arc::clone(&rep);
        async move {
            if s.write_all(b"banner then FIN\n").await.is_err() {
                return;
            }
            let _ = s.shutdown().await;
            let mut d = Digest::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(k) => d.update(&buf[..k]),
                    Err(_) => return,
                }
            }
            rep.lock().expect("lock").push(d.finish());
        }
    })
    .await;
    let cfg = config(n, "tcp", &[backend.addr], "", "");
    let listen = addr(n, 8080);
    let _t = Tandem::run("tcp-backend-fin", &cfg, &[listen]).await;
    let mut s = TcpStream::connect(listen).await.expect("connect");
    let mut banner = Vec::new();
    within(
        "banner and EOF",
        Duration::from_secs(5),
        s.read_to_end(&mut banner),
    )
    .await
    .expect("read");
    assert_eq!(banner, b"banner then FIN\n");
    // Our direction still works after the backend's FIN.
    for i in 0..8 {
        s.write_all(&pattern_chunk(i))
            .await
            .expect("write after backend FIN");
    }
    s.shutdown().await.expect("shutdown");
    let want = pattern_digest(8);
    eventually(
        "the backend to receive everything",
        Duration::from_secs(5),
        || {
            let got = report.lock().expect("lock").clone();
            async move { got.into_iter().find(|d| *d == want) }
        },
    )
    .await;
}
