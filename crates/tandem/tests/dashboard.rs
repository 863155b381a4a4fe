//! The dashboard in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol. tandem runs with two backend processes; the page must list them, show one as down
//! after it is killed, ask for the admin token when an action needs it, and drain the other
//! through its button. A screenshot is left in `<target>/test-artifacts/dashboard.png`.
//!
//! Chromium missing or failing to start fails the test: it is installed by scripts/test.sh.
//!
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::time::Duration;

use common::cdp::{artifact_dir, Cdp, Chromium};
use common::process_backend::ProcessBackend;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "dashboard-token-0123456789";

/// Requests through the service now and then, so the page has rates and latencies to draw.
fn traffic(service: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(Ok(mut s)) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(service),
            )
            .await
            {
                let _ = s
                    .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .await;
                let mut sink = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    })
}

// N = 104
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_backends_failures_and_drains_in_a_real_browser() {
    // Boxed: the whole test is one large future.
    Box::pin(dashboard_test()).await;
}

async fn dashboard_test() {
    let n = 104;
    let mut a = ProcessBackend::start(ip(n), "a");
    let b = ProcessBackend::start(ip(n), "b");
    let dir = TempDir::new("dashboard");
    let token = dir.write("admin.token", TOKEN);
    let admin = addr(n, 9900);
    let cfg = common::config(
        n,
        "http",
        &[a.addr, b.addr],
        "health = { kind = \"http\", path = \"/\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1 }",
        "",
    )
    .replace(
        &format!("listen = \"{}\"\n\n[[pool]]", addr(n, 0)),
        &format!(
            "listen = \"{admin}\"\ntoken_file = \"{}\"\n\n[[pool]]",
            token.display()
        ),
    );
    let _t = Tandem::run("dashboard", &cfg, &[admin, addr(n, 8080)]).await;
    let load = traffic(addr(n, 8080));

    // The page itself: right types and a strict CSP.
    let r = get(&format!("http://{admin}/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").expect("CSP header");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let r = get(&format!("http://{admin}/dashboard.js"), &[]).await;
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );

    let chromium = Chromium::start(1366, 768).await;
    let mut page = Cdp::connect(&chromium.page_ws().await).await;
    page.call("Runtime.enable", json!({})).await;
    page.call("Log.enable", json!({})).await;
    page.call("Page.enable", json!({})).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.call("Page.navigate", json!({"url": format!("http://{admin}/")}))
        .await;

    let row = |addr: std::net::SocketAddr| {
        format!("document.querySelector('tr[data-backend=\"{addr}\"]')")
    };
    page.wait_for(
        "both backend rows",
        "document.querySelectorAll('tr[data-backend]').length === 2",
        Duration::from_secs(15),
    )
    .await;
    page.wait_for(
        "both backends up",
        &format!(
            "{ra} !== null && {ra}.dataset.state === 'up' && {rb}.dataset.state === 'up'",
            ra = row(a.addr),
            rb = row(b.addr)
        ),
        Duration::from_secs(15),
    )
    .await;
    page.wait_for(
        "the event stream connected",
        "document.getElementById('live').textContent === 'live'",
        Duration::from_secs(15),
    )
    .await;

    // Traffic for a few seconds: rates, latencies and sparklines appear.
    page.wait_for(
        "a request rate for the first backend",
        &format!(
            "{r} !== null && parseFloat({r}.children[6].textContent) > 0",
            r = row(a.addr)
        ),
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    page.screenshot(&artifact_dir().join("dashboard-healthy.png"))
        .await;

    // Kill one backend: the page must show it down (from the overview), and the event list
    // must show why (from the event stream).
    let a_addr = a.addr;
    a.kill();
    page.wait_for(
        "the killed backend as down",
        &format!(
            "{r} !== null && {r}.dataset.state === 'down'",
            r = row(a_addr)
        ),
        Duration::from_secs(15),
    )
    .await;
    page.wait_for(
        "a down event in the list",
        "[...document.querySelectorAll('#events li')].some(li => li.dataset.kind === 'backend_down')",
        Duration::from_secs(15),
    )
    .await;

    // Drain the neighbour with its button. The node has a token, so the first click is
    // refused and the page asks for it; after it is given, the click goes through.
    let button = format!(
        "document.querySelector('button[data-action=\"drain\"][data-backend=\"{}\"]')",
        b.addr
    );
    page.eval(&format!("{button}.click(); true")).await;
    page.wait_for(
        "the token prompt",
        "document.getElementById('token-form').hidden === false",
        Duration::from_secs(10),
    )
    .await;
    page.eval(&format!(
        "document.getElementById('token-input').value = {TOKEN:?}; \
         document.getElementById('token-form').requestSubmit(); true"
    ))
    .await;
    assert_eq!(
        page.eval("sessionStorage.getItem('tandem.token')").await,
        json!(TOKEN),
        "the token is kept for the tab"
    );
    page.eval(&format!("{button}.click(); true")).await;

    // The API agrees: draining.
    let b_addr = b.addr;
    eventually(
        "the API to show the neighbour draining",
        Duration::from_secs(10),
        || async move {
            let bs = pool_backends(admin, "p").await?;
            bs.iter()
                .any(|x| x["address"] == b_addr.to_string() && x["admin_state"] == "draining")
                .then_some(())
        },
    )
    .await;
    page.wait_for(
        "the neighbour as draining",
        &format!("{r}.dataset.admin === 'draining'", r = row(b_addr)),
        Duration::from_secs(10),
    )
    .await;
    page.wait_for(
        "the operator event",
        "[...document.querySelectorAll('#events li')].some(li => li.dataset.kind === 'operator')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        page.eval("document.getElementById('error').hidden").await,
        json!(true),
        "no error banner once the token is given"
    );

    // Let a few snapshots accumulate so rates and sparklines have something to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shot = artifact_dir().join("dashboard.png");
    page.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "a real picture, not a blank page");
    eprintln!("dashboard screenshot: {}", shot.display());

    // No script errors and no Content-Security-Policy violations on the way.
    let problems: Vec<&serde_json::Value> = page
        .events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["source"] == "security")
        })
        .collect();
    assert!(problems.is_empty(), "page problems: {problems:#?}");
    load.abort();
    drop(page);
    drop(chromium);
}
