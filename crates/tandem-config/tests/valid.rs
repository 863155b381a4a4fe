//! Configurations that must parse, and the exact model they must produce.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tandem_config::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn parse(src: &str) -> Config {
    match parse_str(src, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

#[test]
fn full_config_parses_into_exact_model() {
    let src = r#"
[runtime]
workers = 2
drain_timeout = "30s"

[admin]
listen = "127.0.0.1:9901"

[[pool]]
name = "web"
scheduler = "wlc"
sorry_server = "127.0.0.1:8099"
queue_timeout = "250ms"
health = { kind = "http", method = "HEAD", path = "/healthz", host = "www.example", expect_status = "200-299,301", interval = "1s", timeout = "500ms", rise = 4, fall = 5, port = 9000 }
backends = [
  { address = "127.0.0.1:8001", weight = 3 },
  { address = "127.0.0.1:8002", weight = 1, backup = true },
  { address = "127.0.0.1:8003", weight = 0, max_connections = 50 },
]

[[pool]]
name = "db"
scheduler = "maglev"
health = { kind = "none" }
backends = [{ address = "[::1]:5432" }]

[[service]]
name = "www"
listen = "127.0.0.1:8080"
mode = "http"
pool = "web"
connect_timeout = "1.5s"
header_timeout = "5s"
response_timeout = "1m30s"
idle_timeout = "2m"
max_header_size = 65536

[[service]]
name = "pg"
listen = "[::1]:6432"
mode = "tcp"
pool = "db"
idle_timeout = "1h"
"#;
    let want = Config {
        runtime: Runtime {
            workers: Some(2),
            drain_timeout: ms(30_000),
        },
        admin: Admin {
            listen: addr("127.0.0.1:9901"),
            token: None,
        },
        pools: vec![
            Pool {
                name: "web".into(),
                scheduler: SchedulerKind::Wlc,
                sorry_server: Some(addr("127.0.0.1:8099")),
                health: HealthCheck {
                    kind: HealthKind::Http {
                        method: "HEAD".into(),
                        path: "/healthz".into(),
                        host: Some("www.example".into()),
                        expect_status: StatusSet {
                            ranges: vec![(200, 299), (301, 301)],
                        },
                        port: Some(9000),
                        expect_body: None,
                        digest: None,
                    },
                    interval: ms(1000),
                    down_interval: ms(1000),
                    timeout: ms(500),
                    rise: 4,
                    fall: 5,
                },
                backends: vec![
                    Backend {
                        address: addr("127.0.0.1:8001"),
                        weight: 3,
                        backup: false,
                        max_connections: None,
                        health: None,
                        capacity: None,
                    },
                    Backend {
                        address: addr("127.0.0.1:8002"),
                        weight: 1,
                        backup: true,
                        max_connections: None,
                        health: None,
                        capacity: None,
                    },
                    Backend {
                        address: addr("127.0.0.1:8003"),
                        weight: 0,
                        backup: false,
                        max_connections: Some(50),
                        health: None,
                        capacity: None,
                    },
                ],
                queue_timeout: ms(250),
                retries: tandem_config::Retries::default(),
                outlier: tandem_config::Outlier::default(),
                slow_start: None,
                host: None,
                keepalive: true,
                tls: None,
                protocol: BackendProtocol::Http1,
                proxy_protocol: None,
                expected_load: None,
            },
            Pool {
                name: "db".into(),
                scheduler: SchedulerKind::Maglev,
                sorry_server: None,
                health: HealthCheck {
                    kind: HealthKind::None,
                    interval: ms(2000),
                    down_interval: ms(2000),
                    timeout: ms(1000),
                    rise: 2,
                    fall: 3,
                },
                backends: vec![Backend {
                    address: addr("[::1]:5432"),
                    weight: 1,
                    backup: false,
                    max_connections: None,
                    health: None,
                    capacity: None,
                }],
                queue_timeout: ms(1000),
                retries: tandem_config::Retries::default(),
                outlier: tandem_config::Outlier::default(),
                slow_start: None,
                host: None,
                keepalive: true,
                tls: None,
                protocol: BackendProtocol::Http1,
                proxy_protocol: None,
                expected_load: None,
            },
        ],
        vrrp: Vec::new(),
        vrrp_scripts: Vec::new(),
        cluster: None,
        services: vec![
            Service {
                name: "www".into(),
                listen: addr("127.0.0.1:8080"),
                mode: Mode::Http,
                pool: "web".into(),
                timeouts: Timeouts {
                    connect: ms(1500),
                    connect_min: ms(100),
                    header: ms(5000),
                    response: ms(90_000),
                    idle: ms(120_000),
                },
                max_header_size: 65536,
                persistence: None,
                routes: Vec::new(),
                request_headers: HeaderOps::default(),
                response_headers: HeaderOps::default(),
                max_request_body: None,
                max_connections: None,
                buffer_requests: false,
                buffer_responses: None,
                tls: None,
                accept_proxy_protocol: Vec::new(),
                udp: UdpFlows::default(),
                access_log: None,
            },
            Service {
                name: "pg".into(),
                listen: addr("[::1]:6432"),
                mode: Mode::Tcp,
                pool: "db".into(),
                timeouts: Timeouts {
                    connect: ms(3000),
                    connect_min: ms(100),
                    header: ms(10_000),
                    response: ms(60_000),
                    idle: ms(3_600_000),
                },
                max_header_size: 16384,
                persistence: None,
                routes: Vec::new(),
                request_headers: HeaderOps::default(),
                response_headers: HeaderOps::default(),
                max_request_body: None,
                max_connections: None,
                buffer_requests: false,
                buffer_responses: None,
                tls: None,
                accept_proxy_protocol: Vec::new(),
                udp: UdpFlows::default(),
                access_log: None,
            },
        ],
    };
    assert_eq!(parse(src), want);
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let src = r#"
[[pool]]
name = "p"
backends = [{ address = "127.0.0.1:8001" }]

[[service]]
name = "s"
listen = "127.0.0.1:8080"
pool = "p"
"#;
    let want = Config {
        runtime: Runtime {
            workers: None,
            drain_timeout: ms(10_000),
        },
        admin: Admin {
            listen: addr("127.0.0.1:9900"),
            token: None,
        },
        pools: vec![Pool {
            name: "p".into(),
            scheduler: SchedulerKind::Wrr,
            sorry_server: None,
            health: HealthCheck {
                kind: HealthKind::Tcp { port: None },
                interval: ms(2000),
                down_interval: ms(2000),
                timeout: ms(1000),
                rise: 2,
                fall: 3,
            },
            backends: vec![Backend {
                address: addr("127.0.0.1:8001"),
                weight: 1,
                backup: false,
                max_connections: None,
                health: None,
                capacity: None,
            }],
            queue_timeout: ms(1000),
            retries: tandem_config::Retries::default(),
            outlier: tandem_config::Outlier::default(),
            slow_start: None,
            host: None,
            keepalive: true,
            tls: None,
            protocol: BackendProtocol::Http1,
            proxy_protocol: None,
            expected_load: None,
        }],
        vrrp: Vec::new(),
        vrrp_scripts: Vec::new(),
        cluster: None,
        services: vec![Service {
            name: "s".into(),
            listen: addr("127.0.0.1:8080"),
            mode: Mode::Http,
            pool: "p".into(),
            timeouts: Timeouts {
                connect: ms(3000),
                connect_min: ms(100),
                header: ms(10_000),
                response: ms(60_000),
                idle: ms(60_000),
            },
            max_header_size: 16384,
            persistence: None,
            routes: Vec::new(),
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            max_request_body: None,
            max_connections: None,
            buffer_requests: false,
            buffer_responses: None,
            tls: None,
            accept_proxy_protocol: Vec::new(),
            udp: UdpFlows::default(),
            access_log: None,
        }],
    };
    let got = parse(src);
    assert_eq!(got, want);
    // The Default impls are the same documented defaults.
    assert_eq!(got.runtime, Runtime::default());
    assert_eq!(got.admin, Admin::default());
    assert_eq!(got.pools[0].health, HealthCheck::default());
    assert_eq!(got.services[0].timeouts, Timeouts::default());
}

#[test]
fn http_health_defaults() {
    let src = r#"
[[pool]]
name = "p"
health = { kind = "http" }
backends = [{ address = "127.0.0.1:8001" }]
"#;
    let health = &parse(src).pools[0].health;
    assert_eq!(
        health,
        &HealthCheck {
            kind: HealthKind::Http {
                method: "GET".into(),
                path: "/".into(),
                host: None,
                expect_status: StatusSet {
                    ranges: vec![(200, 399)]
                },
                port: None,
                expect_body: None,
                digest: None,
            },
            ..HealthCheck::default()
        }
    );
}

#[test]
fn short_interval_shortens_default_timeout() {
    let src = r#"
[[pool]]
name = "p"
health = { interval = "300ms" }
backends = [{ address = "127.0.0.1:8001" }]
"#;
    let health = &parse(src).pools[0].health;
    assert_eq!((health.interval, health.timeout), (ms(300), ms(300)));
}

#[test]
fn empty_file_is_a_valid_config_with_defaults() {
    let cfg = parse("");
    assert_eq!(cfg.runtime, Runtime::default());
    assert_eq!(cfg.admin, Admin::default());
    assert!(cfg.pools.is_empty() && cfg.services.is_empty());
}

#[test]
fn table_syntax_alternatives_are_equivalent() {
    // `[pool.health]` and `[[pool.backends]]` are plain TOML for the inline forms.
    let long = r#"
[[pool]]
name = "p"
scheduler = "p2c"

[pool.health]
kind = "tcp"
port = 9000
interval = "5s"

[[pool.backends]]
address = "127.0.0.1:8001"
weight = 2

[[pool.backends]]
address = "127.0.0.1:8002"
"#;
    let short = r#"
pool = [
  { name = "p", scheduler = "p2c", health = { kind = "tcp", port = 9000, interval = "5s" }, backends = [
    { address = "127.0.0.1:8001", weight = 2 },
    { address = "127.0.0.1:8002" },
  ] },
]
"#;
    let a = parse(long);
    assert_eq!(a, parse(short));
    assert_eq!(a.pools[0].health.kind, HealthKind::Tcp { port: Some(9000) });
    assert_eq!(a.pools[0].backends.len(), 2);
}

#[test]
fn ipv6_listen_and_backends() {
    let src = r#"
[admin]
listen = "[::1]:9900"

[[pool]]
name = "v6"
sorry_server = "[2001:db8::99]:80"
backends = [
  { address = "[::1]:8001" },
  { address = "[2001:db8::1]:8002" },
  { address = "127.0.0.1:8001" },
]

[[service]]
name = "v6"
listen = "[::]:8080"
pool = "v6"

[[service]]
name = "v4"
listen = "0.0.0.0:8080"
pool = "v6"
"#;
    let cfg = parse(src);
    assert_eq!(cfg.admin.listen, addr("[::1]:9900"));
    let pool = &cfg.pools[0];
    assert_eq!(pool.sorry_server, Some(addr("[2001:db8::99]:80")));
    let backends: Vec<SocketAddr> = pool.backends.iter().map(|b| b.address).collect();
    assert_eq!(
        backends,
        [
            addr("[::1]:8001"),
            addr("[2001:db8::1]:8002"),
            addr("127.0.0.1:8001")
        ]
    );
    assert!(backends[0].is_ipv6() && backends[2].is_ipv4());
    assert_eq!(cfg.services[0].listen, addr("[::]:8080"));
    assert_eq!(cfg.services[1].listen, addr("0.0.0.0:8080"));
}

#[test]
fn every_scheduler_name_parses() {
    for (name, kind) in SchedulerKind::ALL {
        let src = format!(
            "[[pool]]\nname = \"p\"\nscheduler = \"{name}\"\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n"
        );
        assert_eq!(parse(&src).pools[0].scheduler, kind, "{name}");
        assert_eq!(kind.name(), name);
    }
}

#[test]
fn durations_in_config() {
    let cases = [
        ("100ms", ms(100)),
        ("1s", ms(1000)),
        ("1.5s", ms(1500)),
        ("0.25s", ms(250)),
        ("5m", ms(300_000)),
        ("1m30s", ms(90_000)),
        ("2h", ms(7_200_000)),
        ("1h30m", ms(5_400_000)),
        ("1h0m0s1ms", ms(3_600_001)),
    ];
    for (text, want) in cases {
        let src = format!("[runtime]\ndrain_timeout = \"{text}\"\n");
        assert_eq!(parse(&src).runtime.drain_timeout, want, "{text}");
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
}

#[test]
fn listen_port_zero_is_allowed_and_never_conflicts() {
    let src = r#"
[admin]
listen = "127.0.0.1:0"
[[pool]]
name = "p"
backends = [{ address = "127.0.0.1:1" }]
[[service]]
name = "a"
listen = "127.0.0.1:0"
pool = "p"
[[service]]
name = "b"
listen = "127.0.0.1:0"
pool = "p"
"#;
    let cfg = parse(src);
    assert_eq!(cfg.services[1].listen.port(), 0);
}

#[test]
fn status_set_round_trips() {
    for s in [
        "200-399",
        "200-299,301",
        "200",
        "100-599",
        "204,301-302,404",
    ] {
        let set = StatusSet::parse(s).expect(s);
        assert_eq!(set.to_string(), s);
    }
    let set = StatusSet::parse(" 200 - 204 , 301 ").expect("spaces");
    assert_eq!(set.ranges, vec![(200, 204), (301, 301)]);
    assert!(set.contains(204) && set.contains(301) && !set.contains(205));
}

/// Every example a user might copy must pass `tandem check`.
#[test]
fn every_example_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let cfg = match load_file(&path) {
            Ok(c) => c,
            Err(e) => panic!("{} does not parse:\n{e}", path.display()),
        };
        assert!(
            !cfg.services.is_empty(),
            "{} has no service",
            path.display()
        );
        seen.push(
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string(),
        );
    }
    seen.sort();
    for required in ["http.toml", "ipv6.toml", "tcp.toml"] {
        assert!(
            seen.iter().any(|s| s == required),
            "examples/{required} missing; saw {seen:?}"
        );
    }
}

#[test]
fn examples_show_what_they_promise() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let load = |name: &str| load_file(&dir.join(name)).unwrap_or_else(|e| panic!("{name}:\n{e}"));

    let http = load("http.toml");
    let web = &http.pools[0];
    assert_eq!(web.scheduler, SchedulerKind::Wlc);
    assert!(matches!(web.health.kind, HealthKind::Http { .. }));
    assert!(web.backends.iter().any(|b| b.backup));
    assert!(web.sorry_server.is_some());
    assert_eq!(http.services[0].mode, Mode::Http);

    let tcp = load("tcp.toml");
    assert!(tcp.services.iter().all(|s| s.mode == Mode::Tcp));
    assert!(tcp
        .pools
        .iter()
        .all(|p| matches!(p.health.kind, HealthKind::Tcp { .. })));

    let v6 = load("ipv6.toml");
    assert!(v6.services[0].listen.is_ipv6());
    assert!(v6.pools[0].backends.iter().any(|b| b.address.is_ipv6()));
}
