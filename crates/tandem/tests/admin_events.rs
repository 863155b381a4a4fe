//! The admin API's bearer token and its event log, against the real daemon: a token guards
//! state changes (401 without or with a wrong one, 200 with it) while reads on loopback stay
//! open; a killed backend shows up on the server-sent event stream, and a stream resumes after
//! `Last-Event-ID`.
//!
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::process_backend::ProcessBackend;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A node with pool `p` over `backends` (checked every 200 ms, down after one failure), a
/// token in `dir`, admin on 127.77.N.1:9900.
fn config(n: u8, backends: &[SocketAddr], dir: &TempDir) -> String {
    let token = dir.write("admin.token", &format!("{TOKEN}\n"));
    let base = common::config(
        n,
        "http",
        backends,
        "health = { kind = \"http\", path = \"/\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1 }",
        "",
    );
    base.replace(
        &format!("listen = \"{}\"\n\n[[pool]]", addr(n, 0)),
        &format!(
            "listen = \"{}\"\ntoken_file = \"{}\"\n\n[[pool]]",
            addr(n, 9900),
            token.display()
        ),
    )
}

async fn post(url: &str, auth: Option<&str>) -> Resp {
    let header;
    let mut args = vec!["-X", "POST"];
    if let Some(a) = auth {
        header = format!("Authorization: {a}");
        args.extend(["-H", header.as_str()]);
    }
    get(url, &args).await
}

// N = 100
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_state_changes_and_reads_stay_open_on_loopback() {
    let n = 100;
    let a = ProcessBackend::start(ip(n), "a");
    let dir = TempDir::new("admin-token");
    let admin = addr(n, 9900);
    let cfg = config(n, &[a.addr], &dir);
    let _t = Tandem::run("admin-token", &cfg, &[admin]).await;
    let drain = format!("http://{admin}/api/v1/pools/p/backends/{}/drain", a.addr);

    let r = post(&drain, None).await;
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tandem\"")
    );
    assert!(r.body_text().contains("Bearer"), "{}", r.body_text());

    let r = post(&drain, Some("Bearer not-the-token-at-all")).await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer") && h.contains("invalid_token")));
    let r = post(&drain, Some(&format!("Basic {TOKEN}"))).await;
    assert_eq!(r.status, 401, "another scheme is no token");

    // Nothing changed so far.
    let b = &pool_backends(admin, "p").await.expect("pools")[0];
    assert_eq!(b["admin_state"], "enabled");

    let r = post(&drain, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["admin_state"], "draining");

    // Reload is a state change too: refused without the token before anything else.
    let r = post(&format!("http://{admin}/api/v1/reload"), None).await;
    assert_eq!(r.status, 401);

    // Reads need no token on loopback.
    for path in [
        "/api/v1/pools",
        "/api/v1/events",
        "/api/v1/overview",
        "/metrics",
        "/healthz",
        "/",
    ] {
        let r = get(&format!("http://{admin}{path}"), &[]).await;
        assert_eq!(r.status, 200, "GET {path}");
    }
    // The operator action is in the event log.
    let r = get(&format!("http://{admin}/api/v1/events"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let events = v["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["kind"] == "operator"
            && e["fields"]["action"] == "drain"
            && e["fields"]["backend"] == a.addr.to_string()),
        "{events:?}"
    );
}

/// An open event stream on a raw socket (so the test sees every byte as it arrives).
struct Stream {
    s: TcpStream,
    seen: String,
}

impl Stream {
    async fn open(admin: SocketAddr, last_event_id: Option<u64>) -> Stream {
        let mut s = TcpStream::connect(admin).await.expect("connect admin");
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /api/v1/events/stream HTTP/1.1\r\nHost: {admin}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("send");
        let mut st = Stream {
            s,
            seen: String::new(),
        };
        st.until("the response head", |t| t.contains("\r\n\r\n"))
            .await;
        let head = st
            .seen
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        st
    }

    /// Read until `done(all text so far)`, bounded by 15 s.
    async fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 8192];
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => panic!("stream ended before {what}: {}", self.seen),
                Ok(Ok(n)) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => panic!("no {what} on the stream within 15 s; got:\n{}", self.seen),
            }
        }
    }

    /// `(id, data)` of every event frame seen so far, in order.
    fn events(&self) -> Vec<(u64, serde_json::Value)> {
        let mut out = Vec::new();
        let mut id = None;
        for line in self.seen.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.trim().parse().ok();
            } else if let Some(d) = line.strip_prefix("data: ") {
                if let (Some(i), Ok(v)) = (id.take(), serde_json::from_str(d)) {
                    out.push((i, v));
                }
            }
        }
        out
    }
}

fn is_down(e: &serde_json::Value, backend: SocketAddr) -> bool {
    e["kind"] == "backend_down" && e["fields"]["backend"] == backend.to_string()
}

// N = 102
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_appears_on_the_event_stream_which_resumes_after_last_event_id() {
    let n = 102;
    let mut a = ProcessBackend::start(ip(n), "a");
    let b = ProcessBackend::start(ip(n), "b");
    let dir = TempDir::new("admin-sse");
    let admin = addr(n, 9900);
    let cfg = config(n, &[a.addr, b.addr], &dir);
    let _t = Tandem::run("admin-sse", &cfg, &[admin]).await;
    // Both up first (rise = 1), so the down event is the one we cause.
    eventually("both backends up", Duration::from_secs(10), || async {
        let bs = pool_backends(admin, "p").await?;
        bs.iter().all(|b| b["state"] == "up").then_some(())
    })
    .await;

    let mut live = Stream::open(admin, None).await;
    let a_addr = a.addr;
    a.kill();
    live.until("a backend_down event for the killed backend", |t| {
        t.lines().any(|l| {
            l.starts_with("data: ")
                && l.contains("\"backend_down\"")
                && l.contains(&format!("\"{a_addr}\""))
        })
    })
    .await;
    let (down_id, down) = live
        .events()
        .into_iter()
        .find(|(_, e)| is_down(e, a_addr))
        .expect("the down event parses");
    assert_eq!(down["fields"]["pool"], "p");
    assert!(
        !down["fields"]["reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "a down event says why: {down}"
    );
    assert_eq!(down["seq"], down_id, "the SSE id is the event's seq");

    // Resume just before it: the down event comes again, first, with the same id.
    let mut resumed = Stream::open(admin, Some(down_id - 1)).await;
    resumed
        .until("the replayed down event", |t| {
            t.contains(&format!("id: {down_id}\n"))
        })
        .await;
    let replay = resumed.events();
    assert_eq!(replay[0].0, down_id, "{replay:?}");
    assert!(is_down(&replay[0].1, a_addr));

    // Resume after it: not replayed; the next change (an operator action) is the first event.
    let mut after = Stream::open(admin, Some(down_id)).await;
    let drain = format!("http://{admin}/api/v1/pools/p/backends/{}/drain", b.addr);
    let r = post(&drain, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200);
    after
        .until("the drain event", |t| t.contains("\"operator\""))
        .await;
    let next = after.events();
    assert!(next.iter().all(|(id, _)| *id > down_id), "{next:?}");
    assert_eq!(
        next.last().map(|(_, e)| e["fields"]["action"].clone()),
        Some("drain".into())
    );
    // The live stream got it too, in order.
    live.until("the drain event on the first stream", |t| {
        t.contains("\"operator\"")
    })
    .await;
    let ids: Vec<u64> = live.events().iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}
