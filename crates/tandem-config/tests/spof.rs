//! `capacity` / `expected_load` values (errors with their positions) and the pool-level
//! warnings of `tandem check`: single points of failure and N+1 capacity.

use tandem_config::{check_str, parse_str, LoadUnit};

#[track_caller]
fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "t.toml") {
        Ok(_) => panic!("expected an error:\n{src}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// The pool warnings only (the listen-address ones are tested in vrrp.rs).
#[track_caller]
fn warnings(src: &str) -> Vec<String> {
    match check_str(src, "t.toml") {
        Ok((_, w)) => w
            .iter()
            .filter(|e| e.key.starts_with("pool["))
            .map(|e| e.to_string())
            .collect(),
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

/// A pool with nothing to warn about but what `extra` and `backends` bring.
fn pool(extra: &str, backends: &str) -> String {
    format!("[[pool]]\nname = \"p\"\nsorry_server = \"192.0.2.99:80\"\n{extra}\nbackends = [\n{backends}\n]\n")
}

#[test]
fn capacities_parse_into_rates() {
    let cfg = parse_str(
        &pool(
            "expected_load = \"1.5k req/s\"",
            "{ address = \"192.0.2.1:80\", capacity = \"900 req/s\" },\n{ address = \"192.0.2.2:80\", capacity = \"900req/s\" },",
        ),
        "t.toml",
    )
    .expect("valid");
    let p = &cfg.pools[0];
    let load = p.expected_load.expect("expected_load");
    assert_eq!(
        (load.per_second, load.unit),
        (1500.0, LoadUnit::RequestsPerSecond)
    );
    assert_eq!(p.backends[1].capacity.map(|c| c.per_second), Some(900.0));
}

#[test]
fn bad_capacities_are_errors_at_their_value() {
    let e = errors(&pool(
        "expected_load = \"0 conn/s\"",
        "{ address = \"192.0.2.1:80\", capacity = 500 },\n{ address = \"192.0.2.2:80\", capacity = \"500 rps\" },",
    ));
    assert_eq!(
        e,
        [
            "t.toml:4:17: pool[p].expected_load: must be greater than 0 and at most 1000000000, got \"0 conn/s\"",
            "t.toml:6:40: pool[p].backends[0].capacity: expected a rate string, found an integer; write a number and a unit, e.g. \"500 req/s\" (http: requests) or \"200 conn/s\" (tcp and udp: connections or flows)",
            "t.toml:7:40: pool[p].backends[1].capacity: unknown unit `rps` in \"500 rps\"; write a number and a unit, e.g. \"500 req/s\" (http: requests) or \"200 conn/s\" (tcp and udp: connections or flows)",
        ]
    );
    // One pool, one unit: the first value written sets it.
    let e = errors(&pool(
        "expected_load = \"100 req/s\"",
        "{ address = \"192.0.2.1:80\", capacity = \"500 conn/s\" },",
    ));
    assert_eq!(
        e,
        ["t.toml:6:40: pool[p].backends[0].capacity: conn/s here, but pool[p].expected_load is in req/s; a pool's capacities and expected load use one unit"]
    );
}

#[test]
fn n_plus_one_warnings() {
    let b = |caps: &[&str]| {
        caps.iter()
            .enumerate()
            .map(|(i, c)| format!("{{ address = \"192.0.2.{}:80\"{c} }},", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Survives: exactly enough after losing the 400.
    let ok = pool(
        "expected_load = \"400 req/s\"",
        &b(&[", capacity = \"400 req/s\"", ", capacity = \"400 req/s\""]),
    );
    assert_eq!(warnings(&ok), Vec::<String>::new());
    // Does not.
    let short = pool(
        "expected_load = \"401 req/s\"",
        &b(&[", capacity = \"400 req/s\"", ", capacity = \"400 req/s\""]),
    );
    assert_eq!(
        warnings(&short),
        ["t.toml:4:17: pool[p].expected_load: capacity: pool `p` does not survive losing its largest backend (192.0.2.1:80, 400 req/s): 401 req/s expected, 400 req/s left of 800 req/s; N+1 needs 1 req/s more"]
    );
    // Backends without a capacity: said so, each at its table.
    let partial = pool(
        "expected_load = \"100 req/s\"",
        &b(&[", capacity = \"400 req/s\"", "", ", weight = 0"]),
    );
    assert_eq!(
        warnings(&partial),
        [
            "t.toml:4:17: pool[p].expected_load: capacity: pool `p` does not survive losing its largest backend (192.0.2.1:80, 400 req/s): 100 req/s expected, 0 req/s left of 400 req/s; N+1 needs 100 req/s more",
            "t.toml:7:1: pool[p].backends[1]: capacity: backend 192.0.2.2:80 has no `capacity`, so the N+1 check of pool `p` counts it as 0 req/s",
        ]
    );
    let none = pool("expected_load = \"100 req/s\"", &b(&["", ""]));
    assert_eq!(
        warnings(&none),
        ["t.toml:4:17: pool[p].expected_load: capacity: no backend of pool `p` has a `capacity`, so its expected load cannot be checked; give each backend one, e.g. capacity = \"500 req/s\""]
    );
    // Capacities without an expected load: nothing to check statically (the daemon judges
    // its observed load).
    assert_eq!(
        warnings(&pool("", &b(&[", capacity = \"1 req/s\"", ""]))),
        Vec::<String>::new()
    );
}

#[test]
fn single_points_of_failure_of_a_pool() {
    let one = "[[pool]]\nname = \"p\"\nhealth = { kind = \"none\" }\nbackends = [{ address = \"192.0.2.1:80\" }]\n";
    assert_eq!(
        warnings(one),
        [
            "t.toml:1:1: pool[p]: single point of failure: pool `p` has no backup backend and no sorry_server, so when every backend is down clients get errors (HTTP 503, or refused connections); add `backup = true` to a spare backend or set `sorry_server`",
            "t.toml:3:19: pool[p].health: single point of failure: pool `p` has no health check (kind = \"none\"), so a backend that dies keeps getting traffic until 3 connect failures in a row eject it; use kind = \"tcp\" or \"http\"",
            "t.toml:4:12: pool[p].backends: single point of failure: pool `p` has one backend (192.0.2.1:80); when it fails, the pool has nothing to send traffic to; add a second backend",
        ]
    );
    // One host, a backend's own "none" with outlier detection off; a backup also counts as
    // a fallback.
    let host =
        "[[pool]]\nname = \"p\"\noutlier = { consecutive_connect_failures = 0 }\nbackends = [\n\
                { address = \"192.0.2.1:80\" },\n\
                { address = \"192.0.2.1:81\", backup = true, health = { kind = \"none\" } },\n]\n";
    assert_eq!(
        warnings(host),
        [
            "t.toml:4:12: pool[p].backends: single point of failure: all 2 backends of pool `p` are on one host, 192.0.2.1, so that host going down takes the whole pool with it; spread them over hosts",
            "t.toml:6:62: pool[p].backends[1].health: single point of failure: backend 192.0.2.1:81 has no health check (kind = \"none\"), so if it dies it keeps getting traffic for good (outlier detection is off too); use kind = \"tcp\" or \"http\"",
        ]
    );
    // A pool-wide "none" that every backend overrides checks everything.
    let overridden = pool(
        "health = { kind = \"none\" }",
        "{ address = \"192.0.2.1:80\", health = { kind = \"tcp\" } },\n{ address = \"192.0.2.2:80\", health = { kind = \"tcp\" } },",
    );
    assert_eq!(warnings(&overridden), Vec::<String>::new());
}

#[test]
fn a_cluster_without_a_quorum_witness() {
    let base = "[cluster]\nlisten = \"198.51.100.2:9901\"\npeers = [\"198.51.100.3:9901\"]\nsecret = \"0123456789abcdef0123\"\n\n\
                [[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\npriority = 100\nvirtual_ips = [\"198.51.100.10/24\"]\nunicast_peers = [\"198.51.100.3\"]\n";
    let all = |src: &str| -> Vec<String> {
        check_str(src, "t.toml")
            .expect("valid")
            .1
            .iter()
            .map(|w| w.to_string())
            .collect()
    };
    assert_eq!(
        all(base),
        ["t.toml:1:1: cluster: single point of failure: 2 nodes and no quorum witness: when the link between them fails, every node becomes master of the virtual IPs (split brain); give the [[vrrp]] instances a `quorum` of witnesses (e.g. the default gateway)"]
    );
    let with_quorum = format!("{base}quorum = {{ witnesses = [\"198.51.100.1\"] }}\n");
    assert_eq!(all(&with_quorum), Vec::<String>::new());
}

#[test]
fn a_service_counting_other_things_than_the_capacity_is_warned_about() {
    let src = format!(
        "{}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:80\"\nmode = \"tcp\"\npool = \"p\"\n",
        pool(
            "",
            "{ address = \"192.0.2.1:80\", capacity = \"9 req/s\" },\n{ address = \"192.0.2.2:80\" },"
        )
    );
    let all: Vec<String> = check_str(&src, "t.toml")
        .expect("valid")
        .1
        .iter()
        .filter(|w| w.key == "service[s].pool")
        .map(|w| w.to_string())
        .collect();
    assert_eq!(
        all,
        ["t.toml:13:8: service[s].pool: capacity: pool `p` states its capacity in req/s, but this tcp service sends it connections, counted in conn/s; write the pool's rates in conn/s"]
    );
}
