//! UDP mode: per-flow backends and reply routing, `responses`, the idle timeout, a backend
//! that stops (ICMP port unreachable), and the counters in the admin API.
//!
//! The tests share the loopback addresses 127.77.63.1 and 127.77.64.1; each uses its own fixed
//! ports for tandem (service 81xx, admin 91xx), and backends bind ephemeral ports.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A UDP backend that answers every datagram with `NAME|PAYLOAD` and records who sent it.
struct UdpBackend {
    name: &'static str,
    addr: SocketAddr,
    /// The source address of every datagram received, in order.
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl UdpBackend {
    async fn start(n: u8, name: &'static str) -> UdpBackend {
        Self::start_at(SocketAddr::new(ip(n), 0), name, Duration::ZERO).await
    }

    /// A backend on `at` that answers each datagram after `delay`.
    async fn start_at(at: SocketAddr, name: &'static str, delay: Duration) -> UdpBackend {
        let sock = Arc::new(UdpSocket::bind(at).await.expect("bind udp backend"));
        let addr = sock.local_addr().expect("addr");
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&peers);
        let task = tokio::spawn(async move {
            let mut answers = tokio::task::JoinSet::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((k, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                seen.lock().expect("peers").push(peer);
                let mut reply = format!("{name}|").into_bytes();
                reply.extend_from_slice(&buf[..k]);
                if delay.is_zero() {
                    // Inline, so replies leave in the order the datagrams came.
                    let _ = sock.send_to(&reply, peer).await;
                    continue;
                }
                let sock = Arc::clone(&sock);
                while answers.try_join_next().is_some() {}
                answers.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = sock.send_to(&reply, peer).await;
                });
            }
        });
        UdpBackend {
            name,
            addr,
            peers,
            task,
        }
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("peers").clone()
    }

    /// Close the socket: datagrams to it now draw ICMP port unreachable.
    async fn stop(&self) {
        self.task.abort();
        // The socket closes when the aborted task is dropped; wait until the port is free.
        let addr = self.addr;
        eventually(
            "backend socket to close",
            Duration::from_secs(5),
            || async move { (!udp_bound(addr)).then_some(()) },
        )
        .await;
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A udp service `dns` on `listen` over pool `p` of `backends` (rr, no health checks), admin on
/// `admin`, two workers.
fn udp_config(
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[&UdpBackend],
    service_extra: &str,
) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{}\" }}", b.addr))
        .collect();
    format!(
        r#"
[runtime]
workers = 2
drain_timeout = "2s"

[admin]
listen = "{admin}"

[[pool]]
name = "p"
scheduler = "rr"
health = {{ kind = "none" }}
backends = [{list}]

[[service]]
name = "dns"
listen = "{listen}"
mode = "udp"
pool = "p"
{service_extra}
"#,
        list = list.join(", "),
    )
}

/// A client socket on test `n`'s address.
async fn client(n: u8) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(ip(n), 0))
        .await
        .expect("bind client")
}

/// The next datagram from `from` within `within` (others are ignored), as text.
async fn recv_from(sock: &UdpSocket, from: SocketAddr, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Err(_) => return None,
            Ok(Err(_)) => continue,
            Ok(Ok((k, peer))) if peer == from => {
                return Some(String::from_utf8_lossy(&buf[..k]).into_owned())
            }
            Ok(Ok(_)) => continue,
        }
    }
}

/// Send `msg` to `to` once and wait (up to 5 s) for the reply.
async fn ask(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).await.expect("send");
    recv_from(sock, to, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no reply to {msg:?} within 5s"))
}

/// Send `msg` to `to` until a reply comes (at most 5 s): for datagrams that may hit a backend
/// that just stopped.
async fn ask_until_answered(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        sock.send_to(msg.as_bytes(), to).await.expect("send");
        if let Some(r) = recv_from(sock, to, Duration::from_millis(300)).await {
            return r;
        }
        assert!(Instant::now() < deadline, "no reply to {msg:?} within 5s");
    }
}

/// Start tandem and wait until its admin API shows every backend up (a state change rebuilds
/// the scheduler, which restarts `rr` at the first backend) and the udp service's socket is
/// bound (from then on, datagrams wait in the socket until a worker reads them; none is lost).
async fn run(tag: &str, cfg: &str, listen: SocketAddr, admin: SocketAddr) -> Tandem {
    let t = Tandem::run(tag, cfg, &[admin]).await;
    eventually("every backend up", Duration::from_secs(10), || async move {
        let backends = pool_backends(admin, "p").await?;
        backends.iter().all(|b| b["state"] == "up").then_some(())
    })
    .await;
    eventually(
        "the udp socket to be bound",
        Duration::from_secs(10),
        || async move { udp_bound(listen).then_some(()) },
    )
    .await;
    t
}

/// Whether a UDP socket is bound to `at`, from /proc/net/udp(6): looking does not take the
/// port, as a test bind would.
fn udp_bound(at: SocketAddr) -> bool {
    // The kernel prints the address as 32-bit words in host order, then the port.
    let (octets, table): (Vec<u8>, _) = match at {
        SocketAddr::V4(a) => (a.ip().octets().to_vec(), "/proc/net/udp"),
        SocketAddr::V6(a) => (a.ip().octets().to_vec(), "/proc/net/udp6"),
    };
    let mut want: String = octets
        .chunks(4)
        .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .collect();
    want.push_str(&format!(":{:04X}", at.port()));
    let table = std::fs::read_to_string(table).expect("/proc/net/udp");
    table
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// A backend as the admin API shows it: `(active, total, failures, bytes_in, bytes_out)`.
async fn backend_counters(admin: SocketAddr, address: SocketAddr) -> (u64, u64, u64, u64, u64) {
    let backends = pool_backends(admin, "p").await.expect("admin API");
    let b = backends
        .iter()
        .find(|b| b["address"] == address.to_string())
        .unwrap_or_else(|| panic!("backend {address} not in {backends:?}"));
    let n = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("{k} in {b}"));
    (
        n("active"),
        n("total"),
        n("failures"),
        n("bytes_in"),
        n("bytes_out"),
    )
}

/// `metric{service="dns"}` from /metrics.
async fn service_metric(admin: SocketAddr, metric: &str) -> u64 {
    let out = curl(&[&format!("http://{admin}/metrics")]).await;
    assert!(out.ok, "{}", out.stderr);
    let prefix = format!("{metric}{{service=\"dns\"}} ");
    out.text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

/// Wait until `address`'s `active` is `want`.
async fn active_becomes(admin: SocketAddr, address: SocketAddr, want: u64, within: Duration) {
    eventually(
        &format!("{address} active = {want}"),
        within,
        || async move { (backend_counters(admin, address).await.0 == want).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_two_clients_each_get_only_their_own_replies() {
    let n = 63;
    let a = UdpBackend::start(n, "a").await;
    let b = UdpBackend::start(n, "b").await;
    let listen = addr(n, 8101);
    let admin = addr(n, 9101);
    let cfg = udp_config(listen, admin, &[&a, &b], "");
    let _t = run("udp-two-clients", &cfg, listen, admin).await;

    let c1 = client(n).await;
    let c2 = client(n).await;
    // Open both flows (one datagram each, answered), then interleave bursts.
    let first1 = ask(&c1, listen, "c1-0").await;
    let first2 = ask(&c2, listen, "c2-0").await;
    let backend_of = |r: &str| r.split('|').next().unwrap_or_default().to_string();
    let (b1, b2) = (backend_of(&first1), backend_of(&first2));
    assert_eq!(first1, format!("{b1}|c1-0"));
    assert_eq!(first2, format!("{b2}|c2-0"));
    assert_ne!(b1, b2, "rr puts the two flows on the two backends");

    for i in 1..=5 {
        c1.send_to(format!("c1-{i}").as_bytes(), listen)
            .await
            .expect("send");
        c2.send_to(format!("c2-{i}").as_bytes(), listen)
            .await
            .expect("send");
    }
    for (c, name, backend) in [(&c1, "c1", &b1), (&c2, "c2", &b2)] {
        for i in 1..=5 {
            let r = recv_from(c, listen, Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{name}: reply {i} missing"));
            assert_eq!(r, format!("{backend}|{name}-{i}"), "{name}'s reply {i}");
        }
        // Nothing else arrives for this client.
        assert_eq!(recv_from(c, listen, Duration::from_millis(200)).await, None);
    }

    // Each backend saw one peer, six datagrams: tandem's per-flow socket, not the client.
    let clients = [
        c1.local_addr().expect("addr"),
        c2.local_addr().expect("addr"),
    ];
    for be in [&a, &b] {
        let peers = be.peers();
        assert_eq!(peers.len(), 6, "backend {} saw {peers:?}", be.name);
        assert!(
            peers.iter().all(|p| *p == peers[0]),
            "one flow, one source: {peers:?}"
        );
        assert!(
            !clients.contains(&peers[0]),
            "backend saw the client's own address"
        );
    }
    assert_ne!(a.peers()[0], b.peers()[0]);

    // Counters: one flow per backend, open; the bytes both ways.
    for be in [&a, &b] {
        let (active, total, failures, bytes_in, bytes_out) = backend_counters(admin, be.addr).await;
        assert_eq!((active, total, failures), (1, 1, 0), "backend {}", be.name);
        assert_eq!(
            bytes_in,
            6 * 4,
            "backend {}: six 4-byte datagrams in",
            be.name
        );
        assert_eq!(
            bytes_out,
            6 * 6,
            "backend {}: six 6-byte replies out",
            be.name
        );
    }
    assert_eq!(
        service_metric(admin, "tandem_service_connections_total").await,
        2
    );
    assert_eq!(
        service_metric(admin, "tandem_service_no_backend_total").await,
        0
    );
    let services = curl(&[&format!("http://{admin}/api/v1/services")]).await;
    let services: serde_json::Value = serde_json::from_slice(&services.stdout).expect("json");
    assert_eq!(services["services"][0]["mode"], "udp", "{services}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_responses_one_closes_the_flow_after_the_reply() {
    let n = 63;
    let a = UdpBackend::start(n, "a").await;
    let listen = addr(n, 8102);
    let admin = addr(n, 9102);
    let cfg = udp_config(listen, admin, &[&a], "responses = 1");
    let _t = run("udp-responses", &cfg, listen, admin).await;

    let c = client(n).await;
    assert_eq!(ask(&c, listen, "q1").await, "a|q1");
    // The idle timeout is 30 s: only `responses` can close it this fast.
    active_becomes(admin, a.addr, 0, Duration::from_secs(2)).await;
    // The same client's next datagram opens a new flow, from a new socket.
    assert_eq!(ask(&c, listen, "q2").await, "a|q2");
    active_becomes(admin, a.addr, 0, Duration::from_secs(2)).await;
    let peers = a.peers();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert_ne!(peers[0], peers[1], "a new flow has a new source port");
    let (_, total, failures, _, _) = backend_counters(admin, a.addr).await;
    assert_eq!((total, failures), (2, 0));
    assert_eq!(
        service_metric(admin, "tandem_service_connections_total").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_idle_flows_close_and_busy_ones_stay() {
    let n = 64;
    let a = UdpBackend::start(n, "a").await;
    let listen = addr(n, 8103);
    let admin = addr(n, 9103);
    let cfg = udp_config(listen, admin, &[&a], "idle_timeout = \"300ms\"");
    let _t = run("udp-idle", &cfg, listen, admin).await;

    let c = client(n).await;
    assert_eq!(ask(&c, listen, "t0").await, "a|t0");
    // A datagram every 100 ms for 1.2 s: never idle for 300 ms, so one flow throughout.
    let start = Instant::now();
    let mut last = Instant::now();
    let mut i = 1;
    while start.elapsed() < Duration::from_millis(1200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let msg = format!("t{i}");
        assert_eq!(ask(&c, listen, &msg).await, format!("a|{msg}"));
        last = Instant::now();
        i += 1;
    }
    let peers = a.peers();
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "the flow stayed: {peers:?}"
    );
    // Silent now: the flow is closed after 300 ms.
    active_becomes(admin, a.addr, 0, Duration::from_secs(3)).await;
    assert!(
        last.elapsed() >= Duration::from_millis(300),
        "closed after {:?}, before its idle timeout",
        last.elapsed()
    );
    let (_, total, _, _, _) = backend_counters(admin, a.addr).await;
    assert_eq!(total, 1, "one flow");
    // The next datagram opens another.
    assert_eq!(ask(&c, listen, "again").await, "a|again");
    let peers = a.peers();
    assert_ne!(
        peers.last(),
        peers.first(),
        "a new flow has a new source port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_move_off_a_backend_that_stopped() {
    let n = 64;
    let a = UdpBackend::start(n, "a").await;
    let b = UdpBackend::start(n, "b").await;
    let listen = addr(n, 8104);
    let admin = addr(n, 9104);
    let cfg = udp_config(listen, admin, &[&a, &b], "");
    let _t = run("udp-backend-stops", &cfg, listen, admin).await;

    // Two clients, one flow on each backend.
    let c1 = client(n).await;
    let c2 = client(n).await;
    let r1 = ask(&c1, listen, "x").await;
    let r2 = ask(&c2, listen, "x").await;
    let mut replies = [r1, r2];
    replies.sort();
    assert_eq!(replies, ["a|x", "b|x"]);
    let on_a = if ask(&c1, listen, "y").await == "a|y" {
        c1
    } else {
        c2
    };

    a.stop().await;
    // The flow on `a` draws port unreachable: it is closed and counted as a failure, and the
    // client's next datagrams open a flow elsewhere (after enough failures `a` is ejected).
    let moved = ask_until_answered(&on_a, listen, "z").await;
    assert_eq!(moved, "b|z");
    let (active, _, failures, _, _) = backend_counters(admin, a.addr).await;
    assert!(failures >= 1, "a's failures: {failures}");
    assert_eq!(active, 0, "no flow left on a");
    // From now on every new flow goes to b.
    for i in 0..6 {
        let c = client(n).await;
        let msg = format!("n{i}");
        assert_eq!(
            ask_until_answered(&c, listen, &msg).await,
            format!("b|{msg}")
        );
    }
    let pool = pool_backends(admin, "p").await.expect("admin API");
    let a_view = pool
        .iter()
        .find(|x| x["address"] == a.addr.to_string())
        .expect("a in the API");
    assert_eq!(a_view["ejected"], true, "{a_view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_max_flows_drops_new_flows_and_counts_them() {
    let n = 63;
    let a = UdpBackend::start(n, "a").await;
    let listen = addr(n, 8105);
    let admin = addr(n, 9105);
    let cfg = udp_config(
        listen,
        admin,
        &[&a],
        "max_flows = 1\nidle_timeout = \"300ms\"",
    )
    .replace("workers = 2", "workers = 1");
    let _t = run("udp-max-flows", &cfg, listen, admin).await;

    let c1 = client(n).await;
    let c2 = client(n).await;
    assert_eq!(ask(&c1, listen, "one").await, "a|one");
    // The one flow is taken: c2's datagram is dropped and counted.
    c2.send_to(b"two", listen).await.expect("send");
    assert_eq!(
        recv_from(&c2, listen, Duration::from_millis(500)).await,
        None
    );
    assert_eq!(
        service_metric(admin, "tandem_service_rejected_requests_total").await,
        1
    );
    // Once c1's flow has idled out, c2 gets its turn.
    active_becomes(admin, a.addr, 0, Duration::from_secs(3)).await;
    assert_eq!(ask(&c2, listen, "two").await, "a|two");
    assert_eq!(
        service_metric(admin, "tandem_service_connections_total").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_shutdown_relays_replies_in_flight_then_exits() {
    let n = 64;
    // Answers 400 ms after each datagram.
    let slow = UdpBackend::start_at(
        SocketAddr::new(ip(n), 0),
        "slow",
        Duration::from_millis(400),
    )
    .await;
    let listen = addr(n, 8106);
    let admin = addr(n, 9106);
    let cfg = udp_config(listen, admin, &[&slow], "")
        .replace("drain_timeout = \"2s\"", "drain_timeout = \"10s\"");
    let mut t = run("udp-shutdown", &cfg, listen, admin).await;

    let c = client(n).await;
    c.send_to(b"q", listen).await.expect("send");
    eventually(
        "the backend to get the query",
        Duration::from_secs(5),
        || {
            let got = !slow.peers().is_empty();
            async move { got.then_some(()) }
        },
    )
    .await;
    let stopping = Instant::now();
    t.signal(libc::SIGTERM);
    // The answer still comes back through the draining flow.
    assert_eq!(
        recv_from(&c, listen, Duration::from_secs(3))
            .await
            .as_deref(),
        Some("slow|q")
    );
    // New datagrams are no longer read.
    let late = client(n).await;
    late.send_to(b"late", listen).await.expect("send");
    assert_eq!(
        recv_from(&late, listen, Duration::from_millis(300)).await,
        None
    );
    // Flows end about 1 s after their last datagram, well before the 10 s drain timeout.
    let status = t
        .wait_exit(Duration::from_secs(6))
        .await
        .unwrap_or_else(|| panic!("tandem still running 6 s after SIGTERM; log:\n{}", t.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", t.log());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "took {:?}",
        stopping.elapsed()
    );
    assert_eq!(
        slow.peers().len(),
        1,
        "the late datagram never reached the backend"
    );
}

fn has_ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("00000000000000000000000000000001"))
        })
        .unwrap_or(false)
}

/// IPv6 on [::1] with probed free ports (admin on 127.77.63.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_ipv6_listener_with_ipv4_and_ipv6_backends() {
    if !has_ipv6_loopback() {
        eprintln!("!!!! SKIPPING udp_ipv6_listener_with_ipv4_and_ipv6_backends: ::1 is not configured on this machine");
        return;
    }
    let n = 63;
    let v6 = UdpBackend::start_at("[::1]:0".parse().expect("addr"), "v6", Duration::ZERO).await;
    let v4 = UdpBackend::start(n, "v4").await;
    // A free UDP port on ::1 right now.
    let port = std::net::UdpSocket::bind("[::1]:0")
        .and_then(|s| s.local_addr())
        .expect("probe a port")
        .port();
    let listen: SocketAddr = format!("[::1]:{port}").parse().expect("addr");
    let admin = addr(n, 9107);
    let cfg = udp_config(listen, admin, &[&v6, &v4], "");
    let _t = run("udp-ipv6", &cfg, listen, admin).await;

    let mut answers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..2 {
        let c = UdpSocket::bind("[::1]:0").await.expect("bind client");
        answers.push(ask(&c, listen, &format!("m{i}")).await);
        clients.push(c);
    }
    answers.sort();
    answers.iter_mut().for_each(|a| a.truncate(3));
    assert_eq!(
        answers,
        ["v4|", "v6|"],
        "rr over an IPv6 and an IPv4 backend"
    );
    assert!(v6.peers()[0].is_ipv6() && v4.peers()[0].is_ipv4());
}
