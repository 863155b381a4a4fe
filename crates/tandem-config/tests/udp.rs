//! `mode = "udp"` services: defaults, the udp-only keys, the keys that do not apply to udp,
//! and listen conflicts between TCP and UDP sockets.

use std::time::Duration;

use tandem_config::*;

const POOL: &str = "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:5301\" }]\n";

/// A udp service `s` on 127.0.0.1:53 (line 4 is `[[service]]`, extra keys start on line 9).
fn service(extra: &str) -> String {
    format!(
        "{POOL}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:53\"\nmode = \"udp\"\npool = \"p\"\n{extra}"
    )
}

fn parse(src: &str) -> Config {
    match parse_str(src, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "t.toml") {
        Ok(_) => panic!("expected errors, parsed fine:\n{src}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[track_caller]
fn one(src: &str, want: &str) {
    assert_eq!(errors(src), [want], "\nsource:\n{src}");
}

#[test]
fn udp_service_defaults() {
    let c = parse(&service(""));
    let s = &c.services[0];
    assert_eq!(s.mode, Mode::Udp);
    assert_eq!(s.mode.name(), "udp");
    assert_eq!(s.timeouts.idle, Duration::from_secs(30), "udp idle default");
    assert_eq!(s.udp, UdpFlows::default());
    assert_eq!(s.udp.responses, None);
    assert_eq!(s.udp.max_flows, 65536);
    assert_eq!(s.persistence, None);
    assert_eq!(s.max_connections, None);
    // The other modes keep their 60 s.
    let tcp = parse(&format!(
        "{POOL}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:53\"\nmode = \"tcp\"\npool = \"p\"\n"
    ));
    assert_eq!(tcp.services[0].timeouts.idle, Duration::from_secs(60));
    assert_eq!(tcp.services[0].udp, UdpFlows::default());
}

#[test]
fn udp_keys_are_read() {
    let c = parse(&service(
        "responses = 1\nmax_flows = 1000\nidle_timeout = \"300ms\"\npersistence = { kind = \"source_ip\", mask = 24 }\n",
    ));
    let s = &c.services[0];
    assert_eq!(
        s.udp,
        UdpFlows {
            responses: Some(1),
            max_flows: 1000,
        }
    );
    assert_eq!(s.timeouts.idle, Duration::from_millis(300));
    assert!(matches!(
        s.persistence.as_ref().map(|p| &p.kind),
        Some(PersistenceKind::SourceIp { mask_v4: 24, .. })
    ));
}

#[test]
fn udp_key_ranges() {
    one(
        &service("responses = 0\n"),
        "t.toml:9:13: service[s].responses: must be at least 1, got 0",
    );
    one(
        &service("max_flows = 0\n"),
        "t.toml:9:13: service[s].max_flows: must be between 1 and 1048576, got 0",
    );
    one(
        &service("max_flows = \"many\"\n"),
        "t.toml:9:13: service[s].max_flows: expected an integer, found a string",
    );
}

#[test]
fn keys_that_do_not_apply_to_udp_are_errors() {
    for (key, value) in [
        ("header_timeout", "\"1s\""),
        ("response_timeout", "\"1s\""),
        ("max_header_size", "4096"),
        ("max_request_body", "\"1MiB\""),
    ] {
        one(
            &service(&format!("{key} = {value}\n")),
            &format!("t.toml:9:1: service[s].{key}: `{key}` applies only to mode = \"http\"; this service is mode = \"udp\""),
        );
    }
    one(
        &service("routes = [{ path_prefix = \"/a\", pool = \"p\" }]\n"),
        "t.toml:9:1: service[s].routes: `routes` applies only to mode = \"http\"; this service is mode = \"udp\"",
    );
    one(
        &service("request_headers = { set = { \"x-a\" = \"1\" } }\n"),
        "t.toml:9:1: service[s].request_headers: `request_headers` applies only to mode = \"http\"; this service is mode = \"udp\"",
    );
    one(
        &service("response_headers = { set = { \"x-a\" = \"1\" } }\n"),
        "t.toml:9:1: service[s].response_headers: `response_headers` applies only to mode = \"http\"; this service is mode = \"udp\"",
    );
    one(
        &service("connect_timeout = \"1s\"\n"),
        "t.toml:9:1: service[s].connect_timeout: `connect_timeout` does not apply to mode = \"udp\": a datagram needs no connect",
    );
    one(
        &service("connect_timeout_min = \"50ms\"\n"),
        "t.toml:9:1: service[s].connect_timeout_min: `connect_timeout_min` does not apply to mode = \"udp\": a datagram needs no connect",
    );
    one(
        &service("max_connections = 10\n"),
        "t.toml:9:1: service[s].max_connections: `max_connections` does not apply to mode = \"udp\": flows are limited per worker with `max_flows`",
    );
    // Every one of them at once: one error each, in file order.
    let all = errors(&service(
        "header_timeout = \"1s\"\nconnect_timeout = \"1s\"\nmax_connections = 1\n",
    ));
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].starts_with("t.toml:9:1: service[s].header_timeout:"));
    assert!(all[1].starts_with("t.toml:10:1: service[s].connect_timeout:"));
    assert!(all[2].starts_with("t.toml:11:1: service[s].max_connections:"));
}

#[test]
fn persistence_other_than_source_ip_is_an_error() {
    one(
        &service("persistence = { kind = \"cookie\" }\n"),
        "t.toml:9:24: service[s].persistence.kind: cookie persistence needs HTTP (mode = \"http\"); a udp service can persist by source_ip only",
    );
    one(
        &service("persistence = { kind = \"header\", name = \"x-tenant\" }\n"),
        "t.toml:9:24: service[s].persistence.kind: header persistence needs HTTP (mode = \"http\"); a udp service can persist by source_ip only",
    );
    one(
        &service("[service.persistence]\nkind = \"url_param\"\nname = \"srv\"\n"),
        "t.toml:10:8: service[s].persistence.kind: url_param persistence needs HTTP (mode = \"http\"); a udp service can persist by source_ip only",
    );
}

#[test]
fn udp_only_keys_on_other_modes_are_errors() {
    for mode in ["http", "tcp"] {
        let src = format!(
            "{POOL}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:53\"\nmode = \"{mode}\"\npool = \"p\"\nresponses = 1\nmax_flows = 10\n"
        );
        assert_eq!(
            errors(&src),
            [
                format!("t.toml:9:1: service[s].responses: `responses` applies only to mode = \"udp\"; this service is mode = \"{mode}\""),
                format!("t.toml:10:1: service[s].max_flows: `max_flows` applies only to mode = \"udp\"; this service is mode = \"{mode}\""),
            ]
        );
    }
    // The default mode is http.
    one(
        &format!("{POOL}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:53\"\npool = \"p\"\nresponses = 1\n"),
        "t.toml:8:1: service[s].responses: `responses` applies only to mode = \"udp\"; this service is mode = \"http\"",
    );
    // A misspelt mode is one error, not one more per udp key.
    one(
        &format!("{POOL}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:53\"\nmode = \"upd\"\npool = \"p\"\nresponses = 1\n"),
        "t.toml:7:8: service[s].mode: unknown mode `upd`; valid modes: http, tcp, udp",
    );
}

/// Two services named `a` and `b` on `la` / `lb` in modes `ma` / `mb`.
fn two(ma: &str, la: &str, mb: &str, lb: &str) -> String {
    format!(
        "{POOL}[[service]]\nname = \"a\"\nlisten = \"{la}\"\nmode = \"{ma}\"\npool = \"p\"\n\
         [[service]]\nname = \"b\"\nlisten = \"{lb}\"\nmode = \"{mb}\"\npool = \"p\"\n"
    )
}

#[test]
fn udp_and_tcp_may_share_an_address() {
    // DNS: the same port over both protocols.
    let c = parse(&two("udp", "127.0.0.1:53", "tcp", "127.0.0.1:53"));
    assert_eq!(c.services.len(), 2);
    parse(&two("http", "127.0.0.1:53", "udp", "127.0.0.1:53"));
    parse(&two("udp", "0.0.0.0:53", "tcp", "127.0.0.1:53"));
    parse(&two("udp", "[::1]:53", "udp", "127.0.0.1:53"));
    // The admin API is TCP: a udp service may take its port.
    parse(&format!(
        "[admin]\nlisten = \"127.0.0.1:9900\"\n{}",
        two("udp", "127.0.0.1:9900", "udp", "127.0.0.1:53")
    ));
}

#[test]
fn two_udp_services_on_one_address_conflict() {
    one(
        &two("udp", "127.0.0.1:53", "udp", "127.0.0.1:53"),
        "t.toml:11:10: service[b].listen: listen address 127.0.0.1:53 is already used by service `a` on line 6",
    );
    one(
        &two("udp", "0.0.0.0:53", "udp", "127.0.0.1:53"),
        "t.toml:11:10: service[b].listen: listen address 127.0.0.1:53 overlaps 0.0.0.0:53 of service `a` on line 6",
    );
    // tcp against tcp still conflicts.
    one(
        &two("tcp", "127.0.0.1:53", "http", "127.0.0.1:53"),
        "t.toml:11:10: service[b].listen: listen address 127.0.0.1:53 is already used by service `a` on line 6",
    );
}

#[test]
fn a_udp_service_may_not_forward_to_itself() {
    one(
        "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:53\" }]\n[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:53\"\nmode = \"udp\"\npool = \"p\"\n",
        "t.toml:8:8: service[s].pool: pool `p` sends traffic to 127.0.0.1:53, which is this service's own listen address 127.0.0.1:53; requests would loop",
    );
}
