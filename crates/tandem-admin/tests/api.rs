//! The admin API over a real socket: a server on 127.0.0.1:0, raw HTTP/1.1 requests, and
//! assertions on status, headers, JSON fields and metric lines.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem_admin::{serve, AdminState, ServiceInfo};
use tandem_balance::{Health, PoolRuntime, Topology};
use tandem_config::{Backend, HealthCheck, HealthKind, Pool, SchedulerKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn backend(addr: &str, weight: u32, backup: bool, max: Option<u32>) -> Backend {
    Backend {
        address: addr.parse().expect("test address"),
        weight,
        backup,
        max_connections: max,
        health: None,
        capacity: None,
    }
}

fn pool(name: &str, scheduler: SchedulerKind, sorry: Option<&str>, backends: Vec<Backend>) -> Pool {
    Pool {
        name: name.into(),
        scheduler,
        sorry_server: sorry.map(|s| s.parse().expect("test address")),
        health: HealthCheck {
            kind: HealthKind::None,
            ..HealthCheck::default()
        },
        backends,
        queue_timeout: Duration::from_secs(1),
        retries: tandem_config::Retries::default(),
        outlier: tandem_config::Outlier::default(),
        slow_start: None,
        host: None,
        keepalive: true,
        tls: None,
        protocol: tandem_config::BackendProtocol::Http1,
        proxy_protocol: None,
        expected_load: None,
    }
}

/// Pool "web": two primaries (one IPv6) and a backup, with a sorry server.
/// Pool "db": one backend, nothing checked yet. Pool "a.b-c": no backends.
fn topology() -> Arc<Topology> {
    let mut t = Topology::default();
    t.pools = vec![
        Arc::new(PoolRuntime::new(&pool(
            "web",
            SchedulerKind::Wlc,
            Some("127.0.0.1:8099"),
            vec![
                backend("127.0.0.1:8001", 3, false, None),
                backend("[::1]:8002", 1, false, Some(10)),
                backend("127.0.0.1:8003", 1, true, None),
            ],
        ))),
        Arc::new(PoolRuntime::new(&pool(
            "db",
            SchedulerKind::Rr,
            None,
            vec![backend("127.0.0.1:5432", 1, false, None)],
        ))),
        Arc::new(PoolRuntime::new(&pool(
            "a.b-c",
            SchedulerKind::Maglev,
            None,
            vec![],
        ))),
    ];
    Arc::new(t)
}

struct Server {
    addr: SocketAddr,
    topology: Arc<Topology>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let topology = topology();
    let services = vec![
        ServiceInfo {
            name: "www".into(),
            listen: "127.0.0.1:8080".parse().expect("test address"),
            mode: "http",
            pool: "web".into(),
        },
        ServiceInfo {
            name: "pg".into(),
            listen: "[::]:5433".parse().expect("test address"),
            mode: "tcp",
            pool: "db".into(),
        },
    ];
    let state = Arc::new(arc_swap::ArcSwap::from_pointee(AdminState::new(
        Arc::clone(&topology),
        services,
        "9.8.7",
    )));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(listener, state, stopped));
    Server {
        addr,
        topology,
        stop,
        task,
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Read one response (head, then a Content-Length body) from a keep-alive connection.
async fn read_response(s: &mut TcpStream, head_only: bool) -> Resp {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "EOF before the response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("content-length"));
    let want = if head_only { 0 } else { len };
    let mut body = buf[head_end..].to_vec();
    while body.len() < want {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "EOF inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

async fn send(s: &mut TcpStream, method: &str, path: &str) {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    send(&mut s, method, path).await;
    read_response(&mut s, method == "HEAD").await
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path).await
}

/// Health and counters as the data plane and health checkers would leave them.
fn exercise(t: &Topology) {
    let web = t.pool("web").expect("web");
    assert!(web.set_health(0, Health::Up, "HTTP 200 in 3ms", Instant::now()));
    assert!(web.set_health(1, Health::Down, "connection refused", Instant::now()));
    let s = &web.backends[0].stats;
    s.active.store(3, Ordering::Relaxed);
    s.total.store(5, Ordering::Relaxed);
    s.failures.store(2, Ordering::Relaxed);
    s.bytes_in.store(100, Ordering::Relaxed);
    s.bytes_out.store(2000, Ordering::Relaxed);
    s.latency_ewma_ns.store(1_500_000, Ordering::Relaxed);
    // Two timed responses: 1.5 ms and 3 ms.
    s.latency.record(1_500_000);
    s.latency.record(3_000_000);
    let sorry = web.sorry.as_ref().expect("sorry server");
    sorry.stats.total.store(7, Ordering::Relaxed);
}

fn is_rfc3339_utc_ms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.starts_with("20")
}

#[tokio::test]
async fn healthz() {
    let srv = start().await;
    let r = get(srv.addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn head_has_headers_but_no_body() {
    let srv = start().await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    send(&mut s, "HEAD", "/healthz").await;
    let r = read_response(&mut s, true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("3"));
    assert_eq!(r.body, "");
    // The connection is still in sync: the next response starts right here.
    send(&mut s, "GET", "/healthz").await;
    assert_eq!(read_response(&mut s, false).await.body, "ok\n");
}

#[tokio::test]
async fn pools_json() {
    let srv = start().await;
    exercise(&srv.topology);
    let r = get(srv.addr, "/api/v1/pools").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    let pools = v["pools"].as_array().expect("pools array");
    assert_eq!(pools.len(), 3);

    let web = &pools[0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["scheduler"], "wlc");
    assert_eq!(web["sorry_server"], "127.0.0.1:8099");
    // 8001 up, 8002 down, 8003 (backup) unknown: two may be picked.
    assert_eq!(web["backends_eligible"], 2);

    let b = &web["backends"];
    assert_eq!(b[0]["address"], "127.0.0.1:8001");
    assert_eq!(b[0]["weight"], 3);
    assert_eq!(b[0]["backup"], false);
    assert_eq!(b[0]["max_connections"], Value::Null);
    assert_eq!(b[0]["state"], "up");
    assert_eq!(b[0]["reason"], "HTTP 200 in 3ms");
    assert_eq!(b[0]["active"], 3);
    assert_eq!(b[0]["total"], 5);
    assert_eq!(b[0]["failures"], 2);
    assert_eq!(b[0]["bytes_in"], 100);
    assert_eq!(b[0]["bytes_out"], 2000);
    assert_eq!(b[0]["latency_ewma_ms"], 1.5);
    for key in ["since", "last_check"] {
        let t = b[0][key].as_str().expect("timestamp");
        assert!(is_rfc3339_utc_ms(t), "{key}: {t}");
    }

    assert_eq!(b[1]["address"], "[::1]:8002");
    assert_eq!(b[1]["max_connections"], 10);
    assert_eq!(b[1]["state"], "down");
    assert_eq!(b[1]["reason"], "connection refused");
    assert_eq!(b[1]["total"], 0);
    assert_eq!(b[1]["latency_ewma_ms"], Value::Null);

    assert_eq!(b[2]["backup"], true);
    assert_eq!(b[2]["state"], "unknown");
    assert_eq!(b[2]["since"], Value::Null);
    assert_eq!(b[2]["last_check"], Value::Null);
    assert_eq!(b[2]["reason"], "");

    let db = &pools[1];
    assert_eq!(db["scheduler"], "rr");
    assert_eq!(db["sorry_server"], Value::Null);
    assert_eq!(db["backends"][0]["state"], "unknown");
    assert_eq!(pools[2]["backends"], Value::Array(vec![]));
}

#[tokio::test]
async fn one_pool_and_missing_pool() {
    let srv = start().await;
    exercise(&srv.topology);
    let r = get(srv.addr, "/api/v1/pools/web").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["name"], "web");
    assert_eq!(v["backends"][1]["state"], "down");

    // Clients may percent-encode any character of the name.
    let r = get(srv.addr, "/api/v1/pools/a.b%2Dc").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["scheduler"], "maglev");

    let r = get(srv.addr, "/api/v1/pools/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"], "no pool named \"nope\"");

    for path in [
        "/api/v1/pools/",
        "/api/v1/pools/web/backends",
        "/api/v1/pools/%zz",
    ] {
        let r = get(srv.addr, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn services_json() {
    let srv = start().await;
    let v = get(srv.addr, "/api/v1/services").await.json();
    assert_eq!(
        v,
        serde_json::json!({"services": [
            {"name": "www", "listen": "127.0.0.1:8080", "mode": "http", "pool": "web"},
            {"name": "pg", "listen": "[::]:5433", "mode": "tcp", "pool": "db"},
        ]})
    );
}

#[tokio::test]
async fn metrics_exposition() {
    let srv = start().await;
    exercise(&srv.topology);
    let r = get(srv.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.body;
    let has = |line: &str| text.lines().any(|l| l == line);
    let web1 = r#"pool="web",backend="127.0.0.1:8001",role="primary""#;
    let web2 = r#"pool="web",backend="[::1]:8002",role="primary""#;
    let web3 = r#"pool="web",backend="127.0.0.1:8003",role="backup""#;
    let sorry = r#"pool="web",backend="127.0.0.1:8099",role="sorry""#;
    let db = r#"pool="db",backend="127.0.0.1:5432",role="primary""#;
    for line in [
        "# TYPE tandem_build info".to_string(),
        r#"tandem_build_info{version="9.8.7"} 1"#.to_string(),
        "# TYPE tandem_start_time_seconds gauge".to_string(),
        "# UNIT tandem_start_time_seconds seconds".to_string(),
        "# TYPE tandem_backend_up gauge".to_string(),
        format!("tandem_backend_up{{{web1}}} 1"),
        format!("tandem_backend_up{{{web2}}} 0"),
        format!("tandem_backend_up{{{web3}}} 0"),
        format!("tandem_backend_up{{{sorry}}} 1"),
        format!("tandem_backend_up{{{db}}} 0"),
        format!(r#"tandem_backend_state{{{web2},state="down"}} 1"#),
        format!(r#"tandem_backend_state{{{web2},state="up"}} 0"#),
        format!(r#"tandem_backend_state{{{web3},state="unknown"}} 1"#),
        format!("tandem_backend_active{{{web1}}} 3"),
        "# TYPE tandem_backend_requests counter".to_string(),
        format!("tandem_backend_requests_total{{{web1}}} 5"),
        format!("tandem_backend_requests_total{{{sorry}}} 7"),
        format!("tandem_backend_failures_total{{{web1}}} 2"),
        format!("tandem_backend_bytes_in_total{{{web1}}} 100"),
        format!("tandem_backend_bytes_out_total{{{web1}}} 2000"),
        format!("tandem_backend_weight{{{web1}}} 3"),
        format!("tandem_backend_weight{{{web2}}} 1"),
        format!("tandem_backend_latency_ewma_seconds{{{web1}}} 0.0015"),
        "# TYPE tandem_backend_response_seconds histogram".to_string(),
        format!(r#"tandem_backend_response_seconds_bucket{{le="0.001024",{web1}}} 0"#),
        format!(r#"tandem_backend_response_seconds_bucket{{le="0.002048",{web1}}} 1"#),
        format!(r#"tandem_backend_response_seconds_bucket{{le="0.004096",{web1}}} 2"#),
        format!(r#"tandem_backend_response_seconds_bucket{{le="+Inf",{web1}}} 2"#),
        format!("tandem_backend_response_seconds_count{{{web1}}} 2"),
        format!("tandem_backend_response_seconds_sum{{{web1}}} 0.0045"),
        format!("tandem_backend_response_seconds_count{{{web2}}} 0"),
        r#"tandem_pool_backends_eligible{pool="web"} 2"#.to_string(),
        r#"tandem_pool_backends_eligible{pool="db"} 1"#.to_string(),
        r#"tandem_pool_backends_eligible{pool="a.b-c"} 0"#.to_string(),
    ] {
        assert!(has(&line), "missing {line:?} in\n{text}");
    }
    // Not measured yet: absent, not 0.
    assert!(!text.contains(&format!("tandem_backend_latency_ewma_seconds{{{web2}}}")));
    let start = text
        .lines()
        .find_map(|l| l.strip_prefix("tandem_start_time_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("start time sample");
    assert!(start > 1.6e9, "{start}");
    assert!(text.ends_with("# EOF\n"));

    // Read at scrape time: a change shows on the next scrape with no other call.
    srv.topology.pools[0].backends[0]
        .stats
        .total
        .fetch_add(1, Ordering::Relaxed);
    let again = get(srv.addr, "/metrics").await.body;
    assert!(again.contains(&format!("tandem_backend_requests_total{{{web1}}} 6\n")));
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let srv = start().await;
    let r = get(srv.addr, "/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = get(srv.addr, "/api/v1/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());

    for (method, path) in [
        ("POST", "/healthz"),
        ("DELETE", "/metrics"),
        ("PUT", "/api/v1/pools/web"),
        ("POST", "/api/v1/pools"),
    ] {
        let r = request(srv.addr, method, path).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
    }
    let r = request(srv.addr, "POST", "/api/v1/pools").await;
    assert!(r.json()["error"].is_string());

    // Query strings do not change the route.
    assert_eq!(get(srv.addr, "/healthz?x=1").await.status, 200);
}

#[tokio::test]
async fn garbage_gets_400_and_the_server_carries_on() {
    let srv = start().await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(b"\x00\x01 not http at all\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(get(srv.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let srv = start().await;
    // An idle keep-alive connection must not hold shutdown up.
    let mut idle = TcpStream::connect(srv.addr).await.expect("connect");
    send(&mut idle, "GET", "/healthz").await;
    assert_eq!(read_response(&mut idle, false).await.status, 200);

    srv.stop.send(true).expect("server listening");
    let res = tokio::time::timeout(Duration::from_secs(3), srv.task)
        .await
        .expect("serve returns promptly")
        .expect("no panic");
    assert!(res.is_ok());

    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(1), idle.read_to_end(&mut rest))
        .await
        .expect("idle connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing more after shutdown");
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn dropped_shutdown_sender_stops_the_server() {
    let srv = start().await;
    assert_eq!(get(srv.addr, "/healthz").await.status, 200);
    drop(srv.stop);
    let res = tokio::time::timeout(Duration::from_secs(3), srv.task)
        .await
        .expect("serve returns")
        .expect("no panic");
    assert!(res.is_ok());
}

#[tokio::test]
async fn already_shut_down_returns_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let state = Arc::new(arc_swap::ArcSwap::from_pointee(AdminState::new(
        Arc::new(Topology::default()),
        vec![],
        "0",
    )));
    let (_stop, stopped) = watch::channel(true);
    let res = tokio::time::timeout(Duration::from_secs(1), serve(listener, state, stopped))
        .await
        .expect("returns at once");
    assert!(res.is_ok());
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    read_response(&mut s, false).await
}

#[tokio::test]
async fn backend_actions_change_rotation_and_weight() {
    let srv = start().await;
    let base = "/api/v1/pools/web/backends/127.0.0.1:8001";
    let r = post(srv.addr, &format!("{base}/drain"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["admin_state"], "draining");
    assert_eq!(v["effective_weight"], 0);
    let web = srv.topology.pool("web").expect("web");
    assert!(!web.backends[0].in_rotation());

    let r = post(srv.addr, &format!("{base}/disable"), "").await;
    assert_eq!(r.json()["admin_state"], "disabled");
    let r = post(srv.addr, &format!("{base}/enable"), "").await;
    assert_eq!(r.json()["admin_state"], "enabled");
    assert!(web.backends[0].in_rotation());

    let r = post(srv.addr, &format!("{base}/weight"), r#"{"weight": 9}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["weight"], 9);
    assert_eq!(v["configured_weight"], 3);
    assert_eq!(web.backends[0].weight(), 9);

    // IPv6 addresses percent-encoded or not.
    let r = post(
        srv.addr,
        "/api/v1/pools/web/backends/%5B::1%5D:8002/drain",
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["address"], "[::1]:8002");
}

#[tokio::test]
async fn backend_action_errors_are_clear() {
    let srv = start().await;
    let base = "/api/v1/pools/web/backends/127.0.0.1:8001";
    let r = get(srv.addr, &format!("{base}/drain")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = post(srv.addr, &format!("{base}/weight"), r#"{"weight": 70000}"#).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().expect("error").contains("65535"));
    let r = post(srv.addr, &format!("{base}/weight"), "five").await;
    assert_eq!(r.status, 400);
    let r = post(srv.addr, "/api/v1/pools/web/backends/127.0.0.1:9/drain", "").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .expect("error")
        .contains("no backend 127.0.0.1:9"));
    let r = post(
        srv.addr,
        "/api/v1/pools/nope/backends/127.0.0.1:8001/drain",
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = post(
        srv.addr,
        "/api/v1/pools/web/backends/not-an-address/drain",
        "",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(srv.addr, "/api/v1/pools", "").await;
    assert_eq!(r.status, 405);
    // Nothing changed.
    let web = srv.topology.pool("web").expect("web");
    assert!(web.backends[0].in_rotation());
    assert_eq!(web.backends[0].weight(), 3);
}

#[test]
fn vrrp_metrics_follow_the_instance_view() {
    use tandem_admin::view::{TrackedView, VrrpView};
    let view = VrrpView {
        name: "web".into(),
        interface: "eth0".into(),
        vrid: 51,
        version: 3,
        state: "master",
        since: "2026-11-22T04:31:07.412Z".into(),
        priority: 90,
        configured_priority: 150,
        master_address: "198.51.100.11".parse().ok(),
        virtual_ips: vec!["198.51.100.10/24".into()],
        became_master: 2,
        became_backup: 1,
        adverts_sent: 1204,
        adverts_received: 3,
        discarded: [("bad_ttl", 4)].into_iter().collect(),
        last_error: None,
        fault: false,
        tracked: vec![TrackedView {
            kind: "pool",
            name: "web".into(),
            weight: Some(-60),
            ok: false,
            reason: Some("no backend is eligible".into()),
        }],
        events: Vec::new(),
    };
    let state = AdminState::new(topology(), Vec::new(), "0.0.0-test").with_vrrp(vec![
        tandem_admin::VrrpSource(Arc::new(move || view.clone())),
    ]);
    let text = state.render_metrics().expect("metrics");
    for line in [
        "tandem_vrrp_state{vrrp=\"web\",state=\"master\"} 1",
        "tandem_vrrp_state{vrrp=\"web\",state=\"backup\"} 0",
        "tandem_vrrp_priority{vrrp=\"web\"} 90",
        "tandem_vrrp_configured_priority{vrrp=\"web\"} 150",
        "tandem_vrrp_became_master_total{vrrp=\"web\"} 2",
        "tandem_vrrp_adverts_sent_total{vrrp=\"web\"} 1204",
        "tandem_vrrp_discarded_total{vrrp=\"web\",reason=\"bad_ttl\"} 4",
        "tandem_vrrp_tracked_ok{vrrp=\"web\",kind=\"pool\",name=\"web\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    // Without instances, no VRRP family at all.
    let plain = AdminState::new(topology(), Vec::new(), "0.0.0-test")
        .render_metrics()
        .expect("metrics");
    assert!(!plain.contains("tandem_vrrp_"), "{plain}");
}
