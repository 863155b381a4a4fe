//! Routing, rewriting, header operations and limits through a real tandem process with real
//! curl: the issue's routing table (first match wins, overlapping rules, no match), path
//! rewrites, local answers (respond, redirect), header add/set/remove both ways, the pool's
//! Host override and keepalive = false, max_request_body (413) and max_connections. h2c goes
//! through the same table. Each test uses its own loopback address 127.77.N.1.

mod common;

use std::net::SocketAddr;

use common::*;

/// A backend that reports what it received: its name, the path and query, the Host, the
/// Connection header, and selected request headers, as response headers.
async fn mirror(n: u8, name: &'static str) -> HttpBackend {
    HttpBackend::start(ip(n), move |req: hyper::Request<hyper::body::Incoming>| {
        let h = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        let uri = req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |pq| pq.to_string());
        let (host, connection, xa, xb, xc) =
            (h("host"), h("connection"), h("x-a"), h("x-b"), h("x-c"));
        async move {
            hyper::Response::builder()
                .status(200)
                .header("x-pool", name)
                .header("x-uri", uri)
                .header("x-host", host)
                .header("x-connection", connection)
                .header("x-got-a", xa)
                .header("x-got-b", xb)
                .header("x-got-c", xc)
                .header("x-internal", "secret")
                .body(full(name))
                .expect("response")
        }
    })
    .await
}

fn pools(app: SocketAddr, stat: SocketAddr, legacy: SocketAddr) -> String {
    format!(
        r#"
[[pool]]
name = "app"
health = {{ kind = "none" }}
backends = [{{ address = "{app}" }}]

[[pool]]
name = "static"
health = {{ kind = "none" }}
host = "static.internal"
keepalive = false
backends = [{{ address = "{stat}" }}]

[[pool]]
name = "legacy"
health = {{ kind = "none" }}
backends = [{{ address = "{legacy}" }}]
"#
    )
}

const ROUTES: &str = r#"
routes = [
  { match = { path_prefix = "/static/" }, pool = "static", rewrite = { strip_prefix = "/static" } },
  { match = { path_prefix = "/static/img/" }, pool = "legacy" },
  { match = { host = "legacy.example.com" }, pool = "legacy", rewrite = { path_regex = "^/old/(.*)$", replace = "/app/$1" } },
  { match = { user_agent = "/bot/i" }, respond = { status = 403, body = "no bots" } },
  { match = { path_prefix = "/moved" }, redirect = { status = 301, location = "https://{host}/new{query}" } },
  { match = { header = { name = "X-Canary", value = "1" }, method = ["GET", "HEAD"] }, pool = "legacy", request_headers = { set = { "X-C" = "canary" } } },
  { match = { query = { name = "beta" } }, pool = "static" },
  { match = { client_cidr = "127.77.61.0/24", path_prefix = "/cidr" }, respond = { status = 200, body = "from the cidr" } },
]
request_headers = { set = { "X-A" = "set-by-tandem" }, add = { "X-B" = "added" }, remove = ["X-Drop"] }
response_headers = { set = { "X-Frame-Options" = "DENY" }, remove = ["X-Internal"] }
max_request_body = "1KiB"
"#;

fn hdr<'a>(r: &'a Resp, name: &str) -> &'a str {
    header_in(&r.headers, name).unwrap_or("")
}

// N = 61
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table_rewrites_and_local_answers() {
    let n = 61;
    let app = mirror(n, "app").await;
    let stat = mirror(n, "static").await;
    let legacy = mirror(n, "legacy").await;
    let listen = addr(n, 8080);
    let cfg = format!(
        "[admin]\nlisten = \"{}\"\n{}\n[[service]]\nname = \"www\"\nlisten = \"{listen}\"\npool = \"app\"\n{ROUTES}",
        addr(n, 9900),
        pools(app.addr, stat.addr, legacy.addr)
    );
    let _t = Tandem::run("routing", &cfg, &[listen]).await;
    let url = |p: &str| format!("http://{listen}{p}");

    // No match: the default pool, path untouched; service header operations both ways.
    let r = get(
        &url("/index.html?x=1"),
        &["-H", "X-Drop: 1", "-H", "X-A: from-client"],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "x-pool"), "app");
    assert_eq!(hdr(&r, "x-uri"), "/index.html?x=1");
    assert_eq!(
        hdr(&r, "x-got-a"),
        "set-by-tandem",
        "set replaces the client's value"
    );
    assert_eq!(hdr(&r, "x-got-b"), "added");
    assert_eq!(hdr(&r, "x-frame-options"), "DENY");
    assert_eq!(hdr(&r, "x-internal"), "", "removed from the response");

    // path_prefix + strip_prefix, the pool's Host override and keepalive = false.
    let r = get(&url("/static/css/a.css?v=3"), &[]).await;
    assert_eq!(hdr(&r, "x-pool"), "static");
    assert_eq!(hdr(&r, "x-uri"), "/css/a.css?v=3");
    assert_eq!(hdr(&r, "x-host"), "static.internal");
    assert_eq!(hdr(&r, "x-connection"), "close");
    // Overlapping rules: the earlier /static/ wins over /static/img/.
    let r = get(&url("/static/img/logo.png"), &[]).await;
    assert_eq!(hdr(&r, "x-pool"), "static");
    assert_eq!(hdr(&r, "x-uri"), "/img/logo.png");

    // host + regex rewrite with a capture; the client's Host is kept for this pool.
    let r = get(&url("/old/orders/7"), &["-H", "Host: legacy.example.com"]).await;
    assert_eq!(hdr(&r, "x-pool"), "legacy");
    assert_eq!(hdr(&r, "x-uri"), "/app/orders/7");
    assert_eq!(hdr(&r, "x-host"), "legacy.example.com");
    let r = get(&url("/new/x"), &["-H", "Host: legacy.example.com"]).await;
    assert_eq!(
        hdr(&r, "x-uri"),
        "/new/x",
        "no match of the regex: path unchanged"
    );

    // user_agent regex with the i flag: a local answer, no backend involved.
    let before = app.stats.requests.load(std::sync::atomic::Ordering::SeqCst);
    let r = get(
        &url("/"),
        &["-A", "Mozilla/5.0 (compatible; Googlebot/2.1)"],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(String::from_utf8_lossy(&r.body), "no bots");
    assert_eq!(hdr(&r, "x-frame-options"), "DENY");
    assert_eq!(
        app.stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );

    // redirect with a template.
    let r = get(&url("/moved/x?y=2"), &["-H", "Host: shop.example.com"]).await;
    assert_eq!(r.status, 301);
    assert_eq!(hdr(&r, "location"), "https://shop.example.com/new?y=2");

    // header equals + method list, with the route's own request header.
    let r = get(&url("/"), &["-H", "X-Canary: 1"]).await;
    assert_eq!(hdr(&r, "x-pool"), "legacy");
    assert_eq!(hdr(&r, "x-got-c"), "canary");
    let r = get(&url("/"), &["-H", "X-Canary: 2"]).await;
    assert_eq!(hdr(&r, "x-pool"), "app");
    let r = get(&url("/"), &["-X", "DELETE", "-H", "X-Canary: 1"]).await;
    assert_eq!(hdr(&r, "x-pool"), "app", "DELETE is not in the method list");

    // query parameter present.
    let r = get(&url("/page?a=1&beta"), &[]).await;
    assert_eq!(hdr(&r, "x-pool"), "static");
    let r = get(&url("/page?alpha"), &[]).await;
    assert_eq!(hdr(&r, "x-pool"), "app");

    // client_cidr: curl comes from 127.77.61.x.
    let r = get(&url("/cidr"), &["--interface", "127.77.61.9"]).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "from the cidr");

    // max_request_body: a declared body over 1 KiB is refused before any backend sees it.
    let big = "x".repeat(2000);
    let r = get(&url("/upload"), &["-X", "POST", "--data-binary", &big]).await;
    assert_eq!(r.status, 413);
    let r = get(&url("/upload"), &["-X", "POST", "--data-binary", "small"]).await;
    assert_eq!(r.status, 200);
    // A chunked body has no declared length: it is cut off once it crosses the limit.
    let chunked = [
        "-X",
        "POST",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
    ];
    let r = get(&url("/upload"), &[&chunked[..], &[big.as_str()]].concat()).await;
    assert_eq!(r.status, 413, "chunked body over the limit");
    let r = get(&url("/upload"), &[&chunked[..], &["small"]].concat()).await;
    assert_eq!(r.status, 200, "chunked body under the limit");
    // h2c, with a declared length and without one.
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let out = curl(
            &[
                &[
                    "-s",
                    "--http2-prior-knowledge",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ][..],
                &["-X", "POST", "--data-binary", &big],
                extra,
                &[url("/upload").as_str()],
            ]
            .concat(),
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "413",
            "h2c {extra:?}: {}",
            out.stderr
        );
    }
    // Every 413 is counted with the service's rejected requests (2 HTTP/1 + 2 h2c).
    let m = get(&format!("http://{}/metrics", addr(n, 9900)), &[]).await;
    let m = String::from_utf8_lossy(&m.body);
    let line = m
        .lines()
        .find(|l| l.starts_with("tandem_service_rejected_requests") && l.contains("\"www\""))
        .unwrap_or_default();
    assert!(line.ends_with(" 4"), "{line}");

    // h2c takes the same routes.
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Host: legacy.example.com",
        &url("/old/a"),
    ])
    .await;
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("x-uri: /app/a"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-A",
        "a BOT",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url("/"),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
}

// N = 62
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_new_connections_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = 62;
    let app = mirror(n, "app").await;
    let listen = addr(n, 8080);
    let cfg = format!(
        "[admin]\nlisten = \"{}\"\n[[pool]]\nname = \"app\"\nhealth = {{ kind = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n[[service]]\nname = \"www\"\nlisten = \"{listen}\"\npool = \"app\"\nmax_connections = 2\n\n[runtime]\nworkers = 1\n",
        addr(n, 9900),
        app.addr
    );
    let _t = Tandem::run("maxconn", &cfg, &[listen]).await;
    // Two keep-alive connections, each served once and then held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(listen)
            .await
            .expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third is not served while both are open...
    let r = curl(&[
        "-s",
        "-m",
        "1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{listen}/"),
    ])
    .await;
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "000",
        "the third connection must wait"
    );
    // ...and is as soon as one closes.
    drop(held.pop());
    let r = curl(&[
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{listen}/"),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), "200");
}
