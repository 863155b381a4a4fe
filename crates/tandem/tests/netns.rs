//! Backend failures on a real (virtual) network: backends run in network namespaces on a bridge
//! (see `common/netns.rs`), tandem in the root namespace, and a test pulls a host's cable,
//! blackholes it or SIGKILLs its backend while traffic flows (issue 3: lose zero requests when
//! a backend dies).
//!
//! Needs root: these tests build namespaces, and fail (never skip) when they cannot. They run
//! one at a time and alone (`.config/nextest.toml`, test group `netns`), because their latency
//! bounds mean little while other tests load the machine's two cores.
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::netns::*;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Backends listen on this port in every lab host.
const PORT: u16 = 8000;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `(address, state)` of every backend of pool `p`, from `GET /api/v1/pools/p`.
async fn states(admin: SocketAddr) -> Option<Vec<(String, String)>> {
    let out = curl(&["--max-time", "2", &format!("http://{admin}/api/v1/pools/p")]).await;
    if !out.ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let backends = if v["backends"].is_array() {
        &v["backends"]
    } else {
        &v["pools"][0]["backends"]
    };
    Some(
        backends
            .as_array()?
            .iter()
            .map(|b| {
                (
                    b["address"].as_str().unwrap_or("?").to_string(),
                    b["state"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect(),
    )
}

/// The state of backend `addr`, if the admin API answered.
async fn state_of(admin: SocketAddr, addr: SocketAddr) -> Option<String> {
    let all = states(admin).await?;
    all.into_iter()
        .find(|(a, _)| a == &addr.to_string())
        .map(|(_, s)| s)
}

/// Wait until every backend of pool `p` is `up`.
async fn all_up(admin: SocketAddr, within: Duration) {
    eventually("every backend up", within, || async move {
        let s = states(admin).await?;
        s.iter().all(|(_, st)| st == "up").then_some(())
    })
    .await;
}

/// Poll (every 25 ms, at most `within`) until backend `addr` shows `want`; returns how long it
/// took from `since`, or `None` if it never did.
async fn time_to_state(
    admin: SocketAddr,
    addr: SocketAddr,
    want: &str,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if state_of(admin, addr).await.as_deref() == Some(want) {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// The config for test `n`: pool `p` over `backends`, round robin, with `pool_extra`, two
/// retries on another backend and a connect timeout allowed to adapt down to 100 ms; admin on
/// `127.77.N.1:9900`.
fn lab_config(n: u8, backends: &[SocketAddr], pool_extra: &str) -> String {
    let pool = format!("scheduler = \"rr\"\nretries = 2\n{pool_extra}");
    config(
        n,
        "http",
        backends,
        &pool,
        "connect_timeout_min = \"100ms\"",
    )
    .replace(
        &format!("\"{}\"", addr(n, 0)),
        &format!("\"{}\"", addr(n, 9900)),
    )
}

/// Start one [`PY_BACKEND`] per lab host, named `h0`, `h1`, …
async fn start_backends(lab: &Lab, delay_ms: u32) -> Vec<Proc> {
    let mut procs = Vec::new();
    for i in 0..lab.len() {
        procs.push(start_py_backend(lab, i, PORT, &format!("h{i}"), delay_ms).await);
    }
    procs
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    Blackhole,
    Sigkill,
}

/// Steady load through tandem over a 3-host lab; at `EVENT_AT` backend 1 fails as `failure`.
/// Prints what happened, then asserts: no failed request, backend 1 `down` in time, and the
/// requests around the event no slower than `MAX_EVENT_LATENCY`.
async fn lose_no_request(n: u8, failure: Failure) {
    const CLIENTS: usize = 8;
    const LOAD: Duration = Duration::from_secs(9);
    const EVENT_AT: Duration = Duration::from_millis(2500);
    const WINDOW: Duration = Duration::from_secs(5);
    const PAUSE: Duration = Duration::from_millis(10);
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);
    // http check: interval 300ms, timeout 200ms, fall 2.
    const DOWN_WITHIN: Duration = Duration::from_millis(2 * 300 + 200 + 1000);
    // By design the slowest request is one in flight on the failed backend until it is found
    // dead: at worst fall × interval + timeout = 0.8 s, then replayed elsewhere (measured at
    // e460394: 0.25-0.42 s with the blackhole, 0.04 s with SIGKILL). HAProxy and nginx, which
    // wait out their 3 s connect timeout on a blackholed server, would fail this bound.
    const MAX_EVENT_LATENCY: Duration = Duration::from_secs(1);
    const VICTIM: usize = 1;

    let mut lab = Lab::new(3);
    let procs = start_backends(&lab, 20).await;
    let backends: Vec<SocketAddr> = (0..lab.len()).map(|i| lab.host_addr(i, PORT)).collect();
    let cfg = lab_config(
        n,
        &backends,
        "health = { kind = \"http\", path = \"/\", interval = \"300ms\", timeout = \"200ms\", rise = 2, fall = 2 }",
    );
    let listen = addr(n, 8080);
    let admin = addr(n, 9900);
    let t = Tandem::run("netns-load", &cfg, &[listen, admin]).await;
    all_up(admin, Duration::from_secs(5)).await;

    let start = Instant::now();
    let load = tokio::spawn(run_load(
        listen,
        CLIENTS,
        LOAD,
        PAUSE,
        CLIENT_TIMEOUT,
        start,
    ));
    tokio::time::sleep_until(start + EVENT_AT).await;
    let event = Instant::now();
    match failure {
        Failure::Blackhole => lab.blackhole(VICTIM),
        Failure::Sigkill => lab.signal(procs[VICTIM], libc::SIGKILL),
    }
    let event_at = event - start;
    let down_after = time_to_state(admin, backends[VICTIM], "down", event, WINDOW).await;
    let samples = within(
        "load",
        LOAD + CLIENT_TIMEOUT + Duration::from_secs(10),
        load,
    )
    .await
    .expect("load task");
    let final_states = states(admin).await;

    // ---- what happened
    let names: Vec<String> = (0..lab.len()).map(|i| format!("h{i}")).collect();
    let good = |s: &Sample| matches!(&s.result, Ok((200, b)) if names.contains(b));
    let failed: Vec<&Sample> = samples.iter().filter(|s| !good(s)).collect();
    let in_window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.end() >= event_at && s.start <= event_at + WINDOW)
        .collect();
    let before: Vec<&Sample> = samples.iter().filter(|s| s.end() < event_at).collect();
    let lw = latency(&in_window);
    let lb = latency(&before);
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for s in &failed {
        let k = match &s.result {
            Ok((st, b)) => format!("status {st} {b:?}"),
            Err(e) => e.clone(),
        };
        match kinds.iter_mut().find(|(x, _)| *x == k) {
            Some((_, c)) => *c += 1,
            None => kinds.push((k, 1)),
        }
    }
    eprintln!(
        "\n==== {failure:?} of backend {} at {event_at:?} ({} requests, {CLIENTS} clients) ====\n\
         failed requests: {} {kinds:?}\n\
         backend marked down after: {down_after:?} (bound {DOWN_WITHIN:?})\n\
         latency before the event: n={} p50={:?} p99={:?} max={:?}\n\
         latency in the event window (in flight at the event or started within {WINDOW:?}): \
         n={} p50={:?} p99={:?} max={:?} (bound {MAX_EVENT_LATENCY:?})\n\
         final states: {final_states:?}\n",
        backends[VICTIM],
        samples.len(),
        failed.len(),
        lb.count,
        lb.p50,
        lb.p99,
        lb.max,
        lw.count,
        lw.p50,
        lw.p99,
        lw.max,
    );
    for s in failed.iter().take(5) {
        eprintln!(
            "  failed: started {:?}, took {:?}: {:?}",
            s.start, s.latency, s.result
        );
    }

    // ---- what must hold
    assert!(
        samples.len() > 200,
        "too little load: {} requests",
        samples.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {kinds:?}",
        failed.len(),
        samples.len()
    );
    let down_after = down_after.unwrap_or_else(|| {
        panic!(
            "backend {} never shown down within {WINDOW:?}",
            backends[VICTIM]
        )
    });
    assert!(
        down_after <= DOWN_WITHIN,
        "backend shown down after {down_after:?}, want within {DOWN_WITHIN:?}"
    );
    assert!(
        lw.max < MAX_EVENT_LATENCY,
        "slowest request around the event took {:?} (p99 {:?}), want below {MAX_EVENT_LATENCY:?}",
        lw.max,
        lw.p99
    );
    let live_up = final_states.is_some_and(|s| {
        s.iter()
            .enumerate()
            .all(|(i, (_, st))| i == VICTIM || st == "up")
    });
    assert!(live_up, "the live backends must stay up");
    drop(t);
    drop(lab);
}

// ---------------------------------------------------------------------------------------------
// The lab itself

/// The lab's failures behave as documented: a blackholed host makes connects and requests hang
/// (no RST, no ICMP; ARP keeps working), a pulled cable ends in "no route to host", restore
/// brings the host back, and dropping the lab removes its links, namespaces and processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_blackhole_hangs_connects_and_cleans_up() {
    let mut lab = Lab::new(2);
    let tag = lab.tag().to_string();
    let procs = start_backends(&lab, 0).await;
    let pids: Vec<i32> = procs.iter().map(|&p| lab.pid(p)).collect();
    let a0 = lab.host_addr(0, PORT);
    let a1 = lab.host_addr(1, PORT);

    // A keep-alive connection opened before the fault.
    let mut open = TcpStream::connect(a0)
        .await
        .expect("connect before blackhole");
    lab.blackhole(0);

    // A new connect neither succeeds nor fails: it hangs.
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(1500), TcpStream::connect(a0)).await;
    assert!(
        r.is_err(),
        "connect to a blackholed host must hang, got {r:?} after {:?}",
        t0.elapsed()
    );
    // A request on the open connection gets no answer at all (no RST, no FIN).
    open.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        .await
        .expect("write");
    let (got, ended) = read_until_closed(&mut open, Duration::from_millis(1000)).await;
    assert!(
        got.is_empty() && !ended,
        "blackholed host answered: {:?} (ended: {ended})",
        String::from_utf8_lossy(&got)
    );
    // ARP still works: the root namespace never learns the host is unreachable.
    let neigh = ip_output(&[
        "neigh",
        "show",
        &lab.host_ip(0).to_string(),
        "dev",
        lab.bridge(),
    ]);
    assert!(!neigh.contains("FAILED"), "neighbour entry failed: {neigh}");
    // The other host is not affected.
    within(
        "connect to host 1",
        Duration::from_secs(1),
        TcpStream::connect(a1),
    )
    .await
    .expect("connect to the healthy host");

    lab.restore(0);
    eventually(
        "host 0 back after restore",
        Duration::from_secs(3),
        || async move {
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(a0))
                .await
                .ok()?
                .ok()
        },
    )
    .await;

    // A pulled cable: a connect waits while ARP is tried (~3 s), then fails with "no route to
    // host" (each new connect starts ARP again).
    lab.link_down(1);
    let t0 = Instant::now();
    let r = within(
        "connect to a host whose link is down",
        Duration::from_secs(8),
        TcpStream::connect(a1),
    )
    .await;
    let err = r.expect_err("connected to a host whose link is down");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EHOSTUNREACH),
        "want EHOSTUNREACH, got {err} after {:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "EHOSTUNREACH after {:?}: ARP was not even tried",
        t0.elapsed()
    );
    lab.restore(1);
    eventually(
        "host 1 back after restore",
        Duration::from_secs(5),
        || async move {
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(a1))
                .await
                .ok()?
                .ok()
        },
    )
    .await;

    drop(open);
    drop(lab);
    assert_eq!(
        Lab::leftovers(&tag),
        Vec::<String>::new(),
        "lab left things behind"
    );
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            !status.contains("python"),
            "backend pid {pid} still running after the lab was dropped"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// tandem against failing hosts

// N = 60
/// ICMP health checks notice a host whose link is down, leave the other alone, and bring it
/// back when the link returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_check_marks_a_gone_host_down() {
    let n = 60;
    // interval 300ms, timeout 200ms, rise 1, fall 2.
    const DOWN_WITHIN: Duration = Duration::from_millis(2 * 300 + 200 + 1000);
    const UP_WITHIN: Duration = Duration::from_millis(300 + 200 + 1000);
    let mut lab = Lab::new(2);
    let _procs = start_backends(&lab, 0).await;
    let backends = [lab.host_addr(0, PORT), lab.host_addr(1, PORT)];
    let cfg = config(
        n,
        "http",
        &backends,
        "health = { kind = \"icmp\", interval = \"300ms\", timeout = \"200ms\", rise = 1, fall = 2 }",
        "",
    )
    .replace(&format!("\"{}\"", addr(n, 0)), &format!("\"{}\"", addr(n, 9900)));
    let admin = addr(n, 9900);
    let _t = Tandem::run("netns-icmp", &cfg, &[addr(n, 8080), admin]).await;
    all_up(admin, Duration::from_secs(5)).await;

    lab.link_down(0);
    let event = Instant::now();
    let deadline = event + DOWN_WITHIN + Duration::from_secs(2);
    let mut down_after = None;
    while Instant::now() < deadline {
        let s = states(admin).await.expect("admin API answers");
        assert_eq!(s[1].1, "up", "the other host must stay up: {s:?}");
        if s[0].1 == "down" {
            down_after = Some(event.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!("host with link down shown down after {down_after:?} (bound {DOWN_WITHIN:?})");
    let down_after = down_after.expect("host with link down never shown down");
    assert!(
        down_after <= DOWN_WITHIN,
        "shown down after {down_after:?}, want within {DOWN_WITHIN:?}"
    );

    lab.restore(0);
    let back = Instant::now();
    let up_after = time_to_state(
        admin,
        backends[0],
        "up",
        back,
        UP_WITHIN + Duration::from_secs(2),
    )
    .await
    .expect("host never back up after restore");
    eprintln!("restored host shown up after {up_after:?} (bound {UP_WITHIN:?})");
    assert!(
        up_after <= UP_WITHIN,
        "up after {up_after:?}, want within {UP_WITHIN:?}"
    );
    assert_eq!(state_of(admin, backends[1]).await.as_deref(), Some("up"));
}

// N = 61
/// A backend host that vanishes (blackholed: no RST, connects hang) under steady load costs no
/// request and stalls none for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_backend_under_load_loses_no_request() {
    lose_no_request(61, Failure::Blackhole).await;
}

// N = 62
/// A backend process SIGKILLed under steady load costs no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_under_load_loses_no_request() {
    lose_no_request(62, Failure::Sigkill).await;
}
