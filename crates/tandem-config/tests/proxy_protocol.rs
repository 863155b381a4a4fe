//! `[[pool]] proxy_protocol` and `[[service]] accept_proxy_protocol`: the model, the errors with
//! their positions, and the health-check warning.

use std::net::IpAddr;

use tandem_config::*;

fn src(pool_extra: &str, mode: &str, service_extra: &str) -> String {
    format!(
        "[[pool]]\nname = \"p\"\nbackends = [{{ address = \"127.0.0.1:8001\" }}]\n{pool_extra}\n\
         [[service]]\nname = \"s\"\nlisten = \"127.0.0.1:8080\"\nmode = \"{mode}\"\npool = \"p\"\n{service_extra}\n"
    )
}

fn parse(src: &str) -> Config {
    match parse_str(src, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

#[track_caller]
fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "t.toml") {
        Ok(_) => panic!("expected an error:\n{src}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// Warnings about `proxy_protocol` (a one-node config also gets single-point-of-failure ones).
fn warnings(src: &str) -> Vec<String> {
    match check_str(src, "t.toml") {
        Ok((_, w)) => w
            .iter()
            .filter(|w| w.key.ends_with("proxy_protocol"))
            .map(|w| w.to_string())
            .collect(),
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).expect("cidr")
}

#[test]
fn defaults_are_off() {
    let cfg = parse(&src("", "http", ""));
    assert_eq!(cfg.pools[0].proxy_protocol, None);
    assert!(cfg.services[0].accept_proxy_protocol.is_empty());
}

#[test]
fn both_versions_and_networks_parse() {
    for (text, want) in [("v1", ProxyProtocol::V1), ("v2", ProxyProtocol::V2)] {
        let cfg = parse(&src(
            &format!("proxy_protocol = \"{text}\""),
            "tcp",
            "accept_proxy_protocol = [\"198.51.100.0/24\", \"2001:db8::/32\", \"192.0.2.7\"]",
        ));
        assert_eq!(cfg.pools[0].proxy_protocol, Some(want));
        assert_eq!(want.name(), text);
        let nets = &cfg.services[0].accept_proxy_protocol;
        assert_eq!(
            nets,
            &[
                cidr("198.51.100.0/24"),
                cidr("2001:db8::/32"),
                cidr("192.0.2.7/32")
            ]
        );
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(nets[0].contains(ip("198.51.100.200")));
        assert!(nets[1].contains(ip("2001:db8:1::5")));
        assert!(!nets.iter().any(|n| n.contains(ip("203.0.113.1"))));
    }
    // One network may be written without the list.
    let cfg = parse(&src("", "http", "accept_proxy_protocol = \"10.0.0.0/8\""));
    assert_eq!(cfg.services[0].accept_proxy_protocol, [cidr("10.0.0.0/8")]);
}

#[test]
fn bad_values_are_reported_where_they_are() {
    assert_eq!(
        errors(&src("proxy_protocol = \"v3\"", "http", "")),
        ["t.toml:4:18: pool[p].proxy_protocol: unknown PROXY protocol version `v3`; write \"v1\" or \"v2\" (or leave the key out to send none)"]
    );
    assert_eq!(
        errors(&src("proxy_protocol = true", "http", "")),
        ["t.toml:4:18: pool[p].proxy_protocol: expected a string, found a boolean"]
    );
    assert_eq!(
        errors(&src(
            "",
            "http",
            "accept_proxy_protocol = [\"198.51.100.0/24\", \"198.51.100.1/24\", \"nope\"]"
        )),
        [
            "t.toml:10:45: service[s].accept_proxy_protocol[1]: 198.51.100.1/24 has host bits set; the network is 198.51.100.0/24",
            "t.toml:10:64: service[s].accept_proxy_protocol[2]: invalid network \"nope\": write an address with a prefix length, e.g. \"198.51.100.0/24\" or \"2001:db8::/32\"",
        ]
    );
    assert_eq!(
        errors(&src("", "http", "accept_proxy_protocol = 24")),
        ["t.toml:10:25: service[s].accept_proxy_protocol: expected a list of networks, e.g. [\"198.51.100.0/24\", \"2001:db8::/32\"], found an integer"]
    );
    // A misspelt key gets a suggestion.
    let e = errors(&src("proxy_protcol = \"v1\"", "http", ""));
    assert!(e[0].contains("did you mean `proxy_protocol`?"), "{e:?}");
}

#[test]
fn header_timeout_in_tcp_mode_only_with_accept_proxy_protocol() {
    // It bounds the wait for the PROXY header there.
    let cfg = parse(&src(
        "",
        "tcp",
        "accept_proxy_protocol = [\"198.51.100.0/24\"]\nheader_timeout = \"3s\"",
    ));
    assert_eq!(
        cfg.services[0].timeouts.header,
        std::time::Duration::from_secs(3)
    );
    let e = errors(&src("", "tcp", "header_timeout = \"3s\""));
    assert_eq!(
        e,
        ["t.toml:10:1: service[s].header_timeout: `header_timeout` applies only to mode = \"http\"; this service is mode = \"tcp\""]
    );
}

#[test]
fn health_checks_that_would_miss_the_header_are_warned_about() {
    let http = "health = { kind = \"http\", path = \"/\" }\nproxy_protocol = \"v2\"";
    assert_eq!(
        warnings(&src(http, "http", "")),
        ["t.toml:5:18: pool[p].proxy_protocol: `http` health checks send no PROXY header, so a backend that requires one fails them; use kind = \"tcp\" (a bare connect) or give the check a `port` that speaks without the header"]
    );
    // A backend's own check counts too.
    let own = "[[pool]]\nname = \"p\"\nproxy_protocol = \"v1\"\nbackends = [{ address = \"127.0.0.1:8001\", health = { kind = \"smtp\" } }]\n\
               [[service]]\nname = \"s\"\nlisten = \"127.0.0.1:8080\"\npool = \"p\"\n";
    assert_eq!(warnings(own).len(), 1, "{:?}", warnings(own));
    // tcp checks, other ports, and pools without the header: nothing to say.
    for quiet in [
        src("proxy_protocol = \"v2\"", "tcp", ""),
        src(
            "health = { kind = \"http\", path = \"/\", port = 9000 }\nproxy_protocol = \"v2\"",
            "http",
            "",
        ),
        src("health = { kind = \"http\", path = \"/\" }", "http", ""),
    ] {
        assert_eq!(warnings(&quiet), Vec::<String>::new(), "{quiet}");
    }
}
