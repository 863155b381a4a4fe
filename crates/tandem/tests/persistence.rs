//! Session persistence through a real tandem process with real curl: cookie insert (1000
//! requests stick, a tampered cookie is ignored and re-issued, a killed backend's clients move
//! and get a new cookie, the application's own cookie is never overwritten), cookie prefix,
//! source_ip with a mask, url_param, header hashing, `on_backend_down = "fail"`, the sticky
//! table in the admin API. Each test uses its own loopback address 127.77.N.1.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// Backends that answer with their own name, and set an application cookie `APPSESSION` when
/// asked to (`?login`).
async fn named_backends(n: u8, count: usize) -> Vec<HttpBackend> {
    let mut out = Vec::new();
    for i in 0..count {
        let name: &'static str = Box::leak(format!("b{i}").into_boxed_str());
        out.push(
            HttpBackend::start(ip(n), move |req: hyper::Request<hyper::body::Incoming>| {
                let login = req.uri().query().is_some_and(|q| q.contains("login"));
                let token = req
                    .headers()
                    .get("x-tandem-persist")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let cookie = req
                    .headers()
                    .get("cookie")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                async move {
                    let mut r = hyper::Response::builder()
                        .status(200)
                        .header("x-backend", name)
                        .header("x-token", token)
                        .header("x-cookie-seen", cookie);
                    if login {
                        r = r.header("set-cookie", format!("APPSESSION=sess-{name}; Path=/"));
                    }
                    r.body(full(name)).expect("response")
                }
            })
            .await,
        );
    }
    out
}

fn backend_addrs(b: &[HttpBackend]) -> Vec<SocketAddr> {
    b.iter().map(|b| b.addr).collect()
}

async fn start(
    n: u8,
    backends: &[SocketAddr],
    pool_extra: &str,
    service_extra: &str,
) -> (Tandem, SocketAddr, SocketAddr) {
    let admin = addr(n, 9900);
    let cfg = config(n, "http", backends, pool_extra, service_extra).replace(
        &format!("listen = \"{}\"", addr(n, 0)),
        &format!("listen = \"{admin}\""),
    );
    let listen = addr(n, 8080);
    let t = Tandem::run(&format!("persist-{n}"), &cfg, &[listen, admin]).await;
    (t, listen, admin)
}

fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("cookie value")
}

fn backend_of(r: &Resp) -> String {
    header_in(&r.headers, "x-backend").unwrap_or("").to_string()
}

async fn sticky(admin: SocketAddr, service: &str) -> serde_json::Value {
    let out = curl(&[
        "-s",
        "-m",
        "2",
        &format!("http://{admin}/api/v1/services/{service}/sticky"),
    ])
    .await;
    serde_json::from_slice(&out.stdout).expect("sticky json")
}

// N = 90
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_insert_pins_tampering_is_ignored_and_a_dead_backend_repins() {
    let n = 90;
    let b = named_backends(n, 3).await;
    let (t, listen, admin) = start(
        n,
        &backend_addrs(&b),
        "scheduler = \"rr\"",
        "persistence = { kind = \"cookie\", name = \"SRV\", ttl = \"1h\" }",
    )
    .await;
    let url = format!("http://{listen}/");

    // Without the cookie, round robin spreads the requests (and each gets a cookie).
    let mut spread: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
        let sc = set_cookie(&r, "SRV").expect("a cookie is issued");
        assert!(
            sc.contains("Path=/")
                && sc.contains("Max-Age=3600")
                && sc.contains("HttpOnly")
                && sc.contains("SameSite=Lax"),
            "{sc}"
        );
        *spread.entry(backend_of(&r)).or_default() += 1;
    }
    assert_eq!(spread.len(), 3, "{spread:?}");

    // With it, 1000 requests all hit the backend it names, and no new cookie is set.
    let first = get(&url, &[]).await;
    let pinned_to = backend_of(&first);
    let count = |r: &Resp, name: &str| {
        r.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    };
    assert_eq!(count(&first, "x-backend"), 1, "{:?}", first.headers);
    assert_eq!(count(&first, "set-cookie"), 1, "{:?}", first.headers);
    let token = cookie_value(&set_cookie(&first, "SRV").expect("cookie"));
    let header = format!("Cookie: other=1; SRV={token}");
    let mut hits = 0;
    for _ in 0..10 {
        // 100 requests per curl run, over one keep-alive connection.
        let urls: Vec<String> = (0..100).map(|_| url.clone()).collect();
        // Every response head on stdout, bodies discarded.
        let mut args = vec!["-s", "-H", &header, "-D", "-", "-o", "/dev/null"];
        let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
        args.extend(url_refs);
        let out = curl(&args).await;
        assert!(out.ok);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        for head in text.split("HTTP/1.1 ").filter(|h| !h.trim().is_empty()) {
            let lower = head.to_ascii_lowercase();
            assert!(head.starts_with("200"), "{head}");
            assert!(
                lower.contains(&format!("x-backend: {pinned_to}\r\n")),
                "{head}"
            );
            assert!(
                !lower.contains("set-cookie"),
                "no re-issue while valid: {head}"
            );
            hits += 1;
        }
    }
    assert_eq!(hits, 1000);

    // A tampered cookie (another backend's id with this tag, or a flipped digit) is ignored:
    // balanced normally and re-issued, never an error.
    let mut flipped = token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    for bad in [
        flipped.as_str(),
        "garbage",
        "0000000000000000.000000000000000000000000",
    ] {
        let r = get(&url, &["-H", &format!("Cookie: SRV={bad}")]).await;
        assert_eq!(r.status, 200, "{bad}");
        let sc = set_cookie(&r, "SRV").expect("re-issued");
        assert_ne!(cookie_value(&sc), bad);
    }
    let s = sticky(admin, "www").await;
    assert_eq!(s["kind"], "cookie");
    assert!(s["invalid_tokens"].as_u64() >= Some(3), "{s}");
    assert!(s["pinned"].as_u64() >= Some(1000), "{s}");

    // The pinned backend dies: the next request goes elsewhere and gets a new cookie, which
    // then sticks.
    let dead: usize = pinned_to.trim_start_matches('b').parse().expect("index");
    b[dead].stop_and_wait().await;
    let r = get(&url, &["-H", &format!("Cookie: SRV={token}")]).await;
    assert_eq!(r.status, 200);
    assert_ne!(backend_of(&r), pinned_to);
    let new_token = cookie_value(&set_cookie(&r, "SRV").expect("new cookie"));
    assert_ne!(new_token, token);
    let moved_to = backend_of(&r);
    for _ in 0..20 {
        let r = get(&url, &["-H", &format!("Cookie: SRV={new_token}")]).await;
        assert_eq!(backend_of(&r), moved_to);
    }
    drop(t);
}

// N = 91
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_insert_never_overwrites_the_applications_cookie_and_prefix_mode() {
    let n = 91;
    let b = named_backends(n, 2).await;
    // The application sets a cookie of the same name: tandem's is not added.
    let (t, listen, _) = start(
        n,
        &backend_addrs(&b),
        "",
        "persistence = { kind = \"cookie\", name = \"APPSESSION\" }",
    )
    .await;
    let r = get(&format!("http://{listen}/?login"), &[]).await;
    let sc: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .collect();
    assert_eq!(sc.len(), 1, "{sc:?}");
    assert!(sc[0].1.starts_with("APPSESSION=sess-"), "{sc:?}");
    drop(t);

    // Prefix mode: the application's session cookie carries tandem's token as a prefix; the
    // application never sees the prefix.
    let (t, listen, _) = start(
        n,
        &backend_addrs(&b),
        "",
        "persistence = { kind = \"cookie\", name = \"APPSESSION\", mode = \"prefix\" }",
    )
    .await;
    let r = get(&format!("http://{listen}/?login"), &[]).await;
    let backend = backend_of(&r);
    let sc = set_cookie(&r, "APPSESSION").expect("app cookie");
    let value = cookie_value(&sc);
    let (token, app) = value.split_once('~').expect("prefixed");
    assert_eq!(token.len(), 41);
    assert_eq!(app, format!("sess-{backend}"));
    for _ in 0..20 {
        let r = get(
            &format!("http://{listen}/"),
            &["-H", &format!("Cookie: APPSESSION={value}")],
        )
        .await;
        assert_eq!(backend_of(&r), backend);
        assert_eq!(
            header_in(&r.headers, "x-cookie-seen"),
            Some(format!("APPSESSION=sess-{backend}").as_str())
        );
    }
    drop(t);
}

// N = 92
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_with_mask_url_param_and_header() {
    let n = 92;
    let b = named_backends(n, 4).await;
    // source_ip /24: clients 127.77.92.x all share one entry.
    let (t, listen, admin) = start(
        n,
        &backend_addrs(&b),
        "scheduler = \"rr\"",
        "persistence = { kind = \"source_ip\", mask = 24, timeout = \"1m\" }",
    )
    .await;
    let url = format!("http://{listen}/");
    let mut seen = std::collections::HashSet::new();
    for host in 2..12u8 {
        let src = format!("127.77.{n}.{host}");
        let r = get(&url, &["--interface", &src]).await;
        assert_eq!(r.status, 200);
        seen.insert(backend_of(&r));
    }
    assert_eq!(seen.len(), 1, "one /24, one backend: {seen:?}");
    let s = sticky(admin, "www").await;
    assert_eq!(s["kind"], "source_ip");
    assert_eq!(s["size"], 1, "{s}");
    assert_eq!(s["entries"][0]["client"], format!("127.77.{n}.0"), "{s}");
    assert!(
        s["entries"][0]["expires_in_ms"].as_u64() > Some(50_000),
        "{s}"
    );
    drop(t);

    // url_param: the backend learns its token from X-Tandem-Persist; a request carrying it
    // goes back there.
    let (t, listen, _) = start(
        n,
        &backend_addrs(&b),
        "scheduler = \"rr\"",
        "persistence = { kind = \"url_param\", name = \"srv\" }",
    )
    .await;
    let r = get(&format!("http://{listen}/"), &[]).await;
    let backend = backend_of(&r);
    let told = header_in(&r.headers, "x-token")
        .expect("token header")
        .to_string();
    let (param, token) = told.split_once('=').expect("name=token");
    assert_eq!(param, "srv");
    for _ in 0..20 {
        let r = get(&format!("http://{listen}/page?a=1&srv={token}"), &[]).await;
        assert_eq!(backend_of(&r), backend);
    }
    drop(t);

    // header: one tenant, one backend (maglev), across clients and connections.
    let (t, listen, _) = start(
        n,
        &backend_addrs(&b),
        "scheduler = \"maglev\"",
        "persistence = { kind = \"header\", name = \"X-Tenant\" }",
    )
    .await;
    let mut tenants: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for tenant in 0..16 {
            let src = format!("127.77.{n}.{}", 2 + (tenant + round) % 8);
            let r = get(
                &format!("http://{listen}/"),
                &["--interface", &src, "-H", &format!("X-Tenant: t{tenant}")],
            )
            .await;
            let b = backend_of(&r);
            let first = tenants
                .entry(format!("t{tenant}"))
                .or_insert_with(|| b.clone());
            assert_eq!(*first, b, "tenant t{tenant}");
        }
    }
    let used: std::collections::HashSet<_> = tenants.values().collect();
    assert!(used.len() >= 3, "16 tenants spread over the pool: {used:?}");
    drop(t);
}

// N = 93
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_backend_down_fail_answers_503() {
    let n = 93;
    let b = named_backends(n, 2).await;
    let (t, listen, _) = start(
        n,
        &backend_addrs(&b),
        "health = { kind = \"tcp\", interval = \"100ms\", fall = 1, rise = 1 }",
        "persistence = { kind = \"cookie\", on_backend_down = \"fail\" }",
    )
    .await;
    let url = format!("http://{listen}/");
    let r = get(&url, &[]).await;
    let backend = backend_of(&r);
    let token = cookie_value(&set_cookie(&r, "TANDEMSRV").expect("cookie"));
    let idx: usize = backend.trim_start_matches('b').parse().expect("index");
    b[idx].stop_and_wait().await;
    let r = eventually(
        "503 once the pinned backend is down",
        Duration::from_secs(5),
        || {
            let url = url.clone();
            let token = token.clone();
            async move {
                let r = get(&url, &["-H", &format!("Cookie: TANDEMSRV={token}")]).await;
                (r.status == 503).then_some(r)
            }
        },
    )
    .await;
    assert!(
        String::from_utf8_lossy(&r.body).contains("session"),
        "{:?}",
        r.body
    );
    // A client without a session is served by the other backend.
    let r = get(&url, &[]).await;
    assert_eq!(r.status, 200);
    assert_ne!(backend_of(&r), backend);
    drop(t);
}
