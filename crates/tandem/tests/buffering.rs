//! Request and response buffering through a real tandem process: a slow client with
//! `buffer_responses` releases the backend while it has not read the response yet (without it
//! the backend stays busy), and a slow upload with `buffer_requests` reaches the backend only
//! once complete, so the backend spends no time waiting on the client. N = 67.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIG: usize = 8 << 20;

fn config(backend: SocketAddr, listen: SocketAddr, admin: SocketAddr, extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\n[admin]\nlisten = \"{admin}\"\n[[pool]]\nname = \"p\"\nhealth = {{ kind = \"none\" }}\nbackends = [{{ address = \"{backend}\" }}]\n[[service]]\nname = \"www\"\nlisten = \"{listen}\"\npool = \"p\"\n{extra}\n"
    )
}

async fn active(admin: SocketAddr) -> u64 {
    pool_backends(admin, "p")
        .await
        .and_then(|b| b[0]["active"].as_u64())
        .unwrap_or(u64::MAX)
}

/// Connects with a tiny receive buffer, sends a GET and does not read: the response can only
/// leave tandem as fast as this client reads (not at all, for now).
async fn stalled_client(listen: SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut s = sock.connect(listen).await.expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    s
}

async fn read_response_len(mut s: tokio::net::TcpStream) -> usize {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(h) = head_end {
            if all.len() - (h + 4) >= BIG {
                return all.len() - (h + 4);
            }
        }
        assert!(Instant::now() < deadline, "response not complete");
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        if n == 0 {
            let h = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
            return all.len().saturating_sub(h + 4);
        }
        all.extend_from_slice(&buf[..n]);
    }
}

// N = 67
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_response_releases_the_backend_before_a_slow_client_reads() {
    let n = 67;
    let backend = HttpBackend::start(ip(n), |_req| async { response(200, vec![b'x'; BIG]) }).await;
    let admin = addr(n, 9900);
    let listen = addr(n, 8080);
    for (buffered, extra) in [(true, "buffer_responses = \"16MiB\""), (false, "")] {
        let t = Tandem::run(
            "buffering",
            &config(backend.addr, listen, admin, extra),
            &[listen, admin],
        )
        .await;
        let client = stalled_client(listen).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let busy = active(admin).await;
        if buffered {
            assert_eq!(
                busy, 0,
                "buffered: the backend is free while the client stalls"
            );
        } else {
            assert_eq!(busy, 1, "unbuffered: the backend waits for the slow client");
        }
        assert_eq!(
            read_response_len(client).await,
            BIG,
            "the client gets the whole body"
        );
        eventually("backend idle", Duration::from_secs(5), || async {
            (active(admin).await == 0).then_some(())
        })
        .await;
        drop(t);
    }
}

// N = 68
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_request_reaches_the_backend_complete() {
    let n = 68;
    // The backend records how long reading each body took once its handler started.
    let waits: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let w = Arc::clone(&waits);
    let backend = HttpBackend::start(ip(n), move |req: hyper::Request<hyper::body::Incoming>| {
        let w = Arc::clone(&w);
        async move {
            use http_body_util::BodyExt;
            let started = Instant::now();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            w.lock().expect("lock").push(started.elapsed());
            response(200, format!("{body}"))
        }
    })
    .await;
    let admin = addr(n, 9900);
    let listen = addr(n, 8080);
    for (buffered, extra) in [(true, "buffer_requests = true"), (false, "")] {
        let t = Tandem::run(
            "buffering-req",
            &config(backend.addr, listen, admin, extra),
            &[listen, admin],
        )
        .await;
        // A 64 KiB upload in 8 pieces over about 0.8 s.
        let mut s = tokio::net::TcpStream::connect(listen)
            .await
            .expect("connect");
        s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n")
            .await
            .expect("head");
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.write_all(&[b'y'; 8192]).await.expect("piece");
        }
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("65536"),
            "{text}"
        );
        let waited = waits.lock().expect("lock").pop().expect("one request");
        eprintln!("buffered={buffered}: the backend spent {waited:?} reading the body");
        if buffered {
            assert!(waited < Duration::from_millis(100), "{waited:?}");
        } else {
            assert!(waited > Duration::from_millis(500), "{waited:?}");
        }
        drop(t);
    }
}
