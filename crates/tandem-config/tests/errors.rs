//! Every kind of configuration error, with its exact `file:line:col: key: message` line.
//!
//! Columns are 1-based and point at the offending value (bad values), at the key (unknown or
//! misplaced keys) or at the start of the table that lacks a required key.

use tandem_config::parse_str;

/// A pool and a service that are valid on their own; cases append to or replace them.
const POOL: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n";

fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "t.toml") {
        Ok(cfg) => panic!("expected errors, parsed fine:\n{src}\n{cfg:#?}"),
        Err(e) => {
            assert!(!e.0.is_empty(), "ConfigErrors must never be empty");
            e.0.iter().map(|e| e.to_string()).collect()
        }
    }
}

/// Assert that `src` yields exactly the one error `want`.
#[track_caller]
fn one(src: &str, want: &str) {
    let got = errors(src);
    assert_eq!(got, [want], "\nsource:\n{src}");
}

#[test]
fn toml_syntax_errors_have_positions() {
    one(
        "[[pool]]\nname = \"web\nbackends = []\n",
        "t.toml:2:12: (syntax): invalid basic string, expected `\"`",
    );
    one(
        "[runtime]\nworkers = \n",
        "t.toml:2:11: (syntax): string values must be quoted, expected literal string",
    );
    one(
        "[runtime]\nworkers = 1\nworkers = 2\n",
        "t.toml:3:1: (syntax): duplicate key `workers`",
    );
}

#[test]
fn several_syntax_errors_are_all_reported() {
    let got = errors("[runtime\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:9900\nx = 1\n");
    assert_eq!(
        got,
        [
            "t.toml:1:9: (syntax): unclosed table, expected `]`",
            "t.toml:4:25: (syntax): invalid basic string, expected `\"`",
        ]
    );
}

#[test]
fn unknown_keys() {
    one(
        &format!("{POOL}schedular = \"wrr\"\n"),
        "t.toml:4:1: pool[web].schedular: unknown key `schedular`; did you mean `scheduler`?",
    );
    one(
        "[runtime]\nthreads = 2\n",
        "t.toml:2:1: runtime.threads: unknown key `threads` in [runtime]; known keys: workers, drain_timeout",
    );
    one(
        &format!("{POOL}health = {{ probe = \"tcp\" }}\n"),
        "t.toml:4:12: pool[web].health.probe: unknown key `probe` in the health table; known keys: kind, interval, down_interval, timeout, rise, fall, port, method, path, host, expect_status, expect_body, digest, sni, tls_verify, ca_file, helo_name, command, dynamic_weight",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = [{ adress = \"127.0.0.1:8001\" }]\n",
        "t.toml:3:15: pool[web].backends[0].adress: unknown key `adress`; did you mean `address`?",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:8001\" }, { address = \"127.0.0.1:8002\", wieght = 2 }]\n",
        "t.toml:3:75: pool[web].backends[1].wieght: unknown key `wieght`; did you mean `weight`?",
    );
    one(
        &format!("{POOL}health = {{ knd = \"tcp\" }}\n"),
        "t.toml:4:12: pool[web].health.knd: unknown key `knd`; did you mean `kind`?",
    );
    one(
        "[servic]\nname = \"x\"\n",
        "t.toml:1:2: servic: unknown key `servic`; did you mean `service`?",
    );
    // A misspelt required key is one error, not also "missing `name`".
    one(
        "[[pool]]\nnmae = \"web\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n",
        "t.toml:2:1: pool[0].nmae: unknown key `nmae`; did you mean `name`?",
    );
}

#[test]
fn wrong_types() {
    one(
        "[runtime]\nworkers = \"2\"\n",
        "t.toml:2:11: runtime.workers: expected an integer, found a string",
    );
    one(
        "[runtime]\nworkers = 2.5\n",
        "t.toml:2:11: runtime.workers: expected an integer, found a float",
    );
    one(
        "[runtime]\ndrain_timeout = 10\n",
        "t.toml:2:17: runtime.drain_timeout: expected a duration string such as \"2s\" or \"500ms\", found an integer",
    );
    one(
        "runtime = 1\n",
        "t.toml:1:11: runtime: expected a table, found an integer",
    );
    one(
        "[pool]\nname = \"web\"\n",
        "t.toml:1:1: pool: expected an array of tables (write each pool as [[pool]]), found a table",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = { address = \"127.0.0.1:8001\" }\n",
        "t.toml:3:12: pool[web].backends: expected an array of tables (e.g. [{ address = \"127.0.0.1:8001\" }]), found a table",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = [\"127.0.0.1:8001\"]\n",
        "t.toml:3:13: pool[web].backends[0]: expected a table, found a string",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:8001\", backup = \"yes\" }]\n",
        "t.toml:3:52: pool[web].backends[0].backup: expected a boolean (true or false), found a string",
    );
    one(
        "[[pool]]\nname = 7\nbackends = [{ address = \"127.0.0.1:8001\" }]\n",
        "t.toml:2:8: pool[0].name: expected a string, found an integer",
    );
    one(
        "[admin]\nlisten = 9900\n",
        "t.toml:2:10: admin.listen: expected an address string such as \"127.0.0.1:8080\", found an integer",
    );
    one(
        &format!("{POOL}health = \"http\"\n"),
        "t.toml:4:10: pool[web].health: expected a table, found a string",
    );
}

#[test]
fn bad_durations() {
    const FORMS: &str =
        "write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"";
    let cases = [
        (
            "\"10\"",
            format!("missing unit in duration \"10\"; {FORMS}"),
        ),
        (
            "\"0s\"",
            format!("duration must be greater than zero; {FORMS}"),
        ),
        ("\"-5s\"", format!("negative duration \"-5s\"; {FORMS}")),
        (
            "\"5 seconds\"",
            format!("unknown unit \" seconds\" in duration \"5 seconds\"; {FORMS}"),
        ),
        (
            "\"1d\"",
            format!("unknown unit \"d\" in duration \"1d\"; {FORMS}"),
        ),
        ("\"\"", format!("empty duration; {FORMS}")),
        ("\"soon\"", format!("invalid duration \"soon\"; {FORMS}")),
    ];
    for (text, message) in cases {
        one(
            &format!("[runtime]\ndrain_timeout = {text}\n"),
            &format!("t.toml:2:17: runtime.drain_timeout: {message}"),
        );
    }
}

#[test]
fn bad_addresses() {
    let backend =
        |a: &str| format!("[[pool]]\nname = \"web\"\nbackends = [{{ address = \"{a}\" }}]\n");
    let at = "t.toml:3:25: pool[web].backends[0].address: ";
    one(&backend("127.0.0.1"), &format!("{at}address \"127.0.0.1\" has no port; write \"127.0.0.1:PORT\", e.g. \"127.0.0.1:8080\""));
    one(
        &backend("::1"),
        &format!("{at}address \"::1\" has no port (IPv6 addresses need brackets); write \"[::1]:PORT\", e.g. \"[::1]:8080\""),
    );
    one(
        &backend("localhost:8001"),
        &format!("{at}\"localhost:8001\": host names are not supported (tandem does not resolve names); write \"127.0.0.1:8001\" or \"[::1]:8001\""),
    );
    one(
        &backend("db.internal:5432"),
        &format!("{at}\"db.internal:5432\": host names are not supported (tandem does not resolve names); write its IP address instead"),
    );
    one(
        &backend("127.0.0.1:0"),
        &format!("{at}port 0 is not allowed here; write the port the backend listens on, e.g. \"127.0.0.1:8080\""),
    );
    one(
        &backend("[::1]:0"),
        &format!("{at}port 0 is not allowed here; write the port the backend listens on, e.g. \"[::1]:8080\""),
    );
    one(
        &backend("127.0.0.1:65536"),
        &format!("{at}port 65536 in \"127.0.0.1:65536\" is out of range; the port must be from 1 to 65535"),
    );
    one(
        &format!("{POOL}sorry_server = \"127.0.0.1\"\n"),
        "t.toml:4:16: pool[web].sorry_server: address \"127.0.0.1\" has no port; write \"127.0.0.1:PORT\", e.g. \"127.0.0.1:8080\"",
    );
    one(
        "[admin]\nlisten = \"[::1]\"\n",
        "t.toml:2:10: admin.listen: address \"[::1]\" has no port; write \"[::1]:PORT\", e.g. \"[::1]:8080\"",
    );
    one(
        &format!("{POOL}[[service]]\nname = \"www\"\nlisten = \"*:80\"\npool = \"web\"\n"),
        "t.toml:6:10: service[www].listen: invalid address \"*:80\"; write ip:port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"",
    );
}

#[test]
fn duplicate_names_and_addresses() {
    one(
        &format!("{POOL}{POOL}"),
        "t.toml:5:8: pool[1].name: duplicate pool name `web`; first defined on line 2",
    );
    let svc = |name: &str, listen: &str| {
        format!("[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\npool = \"web\"\n")
    };
    one(
        &format!(
            "{POOL}{}{}",
            svc("www", "127.0.0.1:8080"),
            svc("www", "127.0.0.1:8081")
        ),
        "t.toml:9:8: service[1].name: duplicate service name `www`; first defined on line 5",
    );
    one(
        &format!("{POOL}{}{}", svc("a", "127.0.0.1:8080"), svc("b", "127.0.0.1:8080")),
        "t.toml:10:10: service[b].listen: listen address 127.0.0.1:8080 is already used by service `a` on line 6",
    );
    one(
        &format!("{POOL}{}{}", svc("a", "0.0.0.0:8080"), svc("b", "127.0.0.1:8080")),
        "t.toml:10:10: service[b].listen: listen address 127.0.0.1:8080 overlaps 0.0.0.0:8080 of service `a` on line 6",
    );
    one(
        &format!("{POOL}{}{}", svc("a", "[::1]:8080"), svc("b", "[::1]:8080")),
        "t.toml:10:10: service[b].listen: listen address [::1]:8080 is already used by service `a` on line 6",
    );
    one(
        &format!("[admin]\nlisten = \"127.0.0.1:9900\"\n{POOL}{}", svc("a", "127.0.0.1:9900")),
        "t.toml:8:10: service[a].listen: listen address 127.0.0.1:9900 is already used by the admin API on line 2",
    );
    one(
        &format!("{POOL}{}", svc("a", "127.0.0.1:9900")),
        "t.toml:6:10: service[a].listen: listen address 127.0.0.1:9900 is already used by the admin API (its default; set [admin] listen to move it)",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = [\n  { address = \"127.0.0.1:8001\" },\n  { address = \"127.0.0.1:8002\" },\n  { address = \"127.0.0.1:8001\", weight = 2 },\n]\n",
        "t.toml:6:15: pool[web].backends[2].address: backend 127.0.0.1:8001 is listed twice in this pool (first as pool[web].backends[0])",
    );
}

#[test]
fn service_naming_a_missing_pool() {
    let svc = |pool: &str| {
        format!("[[service]]\nname = \"www\"\nlisten = \"127.0.0.1:8080\"\npool = \"{pool}\"\n")
    };
    one(
        &format!("{POOL}{}", svc("wbe")),
        "t.toml:7:8: service[www].pool: no pool named `wbe`; did you mean `web`?",
    );
    one(
        &format!("{POOL}{}", svc("api")),
        "t.toml:7:8: service[www].pool: no pool named `api`; defined pools: web",
    );
    one(
        &svc("web"),
        "t.toml:4:8: service[www].pool: no pool named `web`; no [[pool]] is defined",
    );
}

#[test]
fn service_forwarding_to_itself() {
    one(
        &format!("{POOL}[[service]]\nname = \"www\"\nlisten = \"127.0.0.1:8001\"\npool = \"web\"\n"),
        "t.toml:7:8: service[www].pool: pool `web` sends traffic to 127.0.0.1:8001, which is this service's own listen address 127.0.0.1:8001; requests would loop",
    );
    one(
        "[[pool]]\nname = \"web\"\nsorry_server = \"127.0.0.1:8080\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n[[service]]\nname = \"www\"\nlisten = \"0.0.0.0:8080\"\npool = \"web\"\n",
        "t.toml:8:8: service[www].pool: pool `web` sends traffic to 127.0.0.1:8080, which is this service's own listen address 0.0.0.0:8080; requests would loop",
    );
}

#[test]
fn unknown_enumerations() {
    one(
        &format!("{POOL}scheduler = \"wrrr\"\n"),
        "t.toml:4:13: pool[web].scheduler: unknown scheduler `wrrr`; did you mean `wrr`? valid schedulers: rr, wrr, lc, wlc, sh, maglev, p2c, ewma",
    );
    one(
        &format!("{POOL}scheduler = \"random\"\n"),
        "t.toml:4:13: pool[web].scheduler: unknown scheduler `random`; valid schedulers: rr, wrr, lc, wlc, sh, maglev, p2c, ewma",
    );
    let svc = |mode: &str| {
        format!("{POOL}[[service]]\nname = \"www\"\nlisten = \"127.0.0.1:8080\"\npool = \"web\"\nmode = \"{mode}\"\n")
    };
    one(
        &svc("https"),
        "t.toml:8:8: service[www].mode: unknown mode `https`; valid modes: http, tcp, udp",
    );
    one(
        &format!("{POOL}health = {{ kind = \"ping\" }}\n"),
        "t.toml:4:19: pool[web].health.kind: unknown health check kind `ping`; valid kinds: none, tcp, http, https, smtp, icmp, exec",
    );
}

#[test]
fn numbers_out_of_range() {
    one(
        "[runtime]\nworkers = 0\n",
        "t.toml:2:11: runtime.workers: must be between 1 and 1024, got 0",
    );
    one(
        "[runtime]\nworkers = 100000\n",
        "t.toml:2:11: runtime.workers: must be between 1 and 1024, got 100000",
    );
    one(
        &format!("{POOL}health = {{ rise = 0 }}\n"),
        "t.toml:4:19: pool[web].health.rise: must be at least 1, got 0",
    );
    one(
        &format!("{POOL}health = {{ fall = 0 }}\n"),
        "t.toml:4:19: pool[web].health.fall: must be at least 1, got 0",
    );
    one(
        &format!("{POOL}health = {{ port = 70000 }}\n"),
        "t.toml:4:19: pool[web].health.port: must be between 1 and 65535, got 70000",
    );
    let backend = |extra: &str| {
        format!(
            "[[pool]]\nname = \"web\"\nbackends = [{{ address = \"127.0.0.1:8001\", {extra} }}]\n"
        )
    };
    one(
        &backend("weight = 65536"),
        "t.toml:3:52: pool[web].backends[0].weight: must be between 0 and 65535, got 65536",
    );
    one(
        &backend("weight = -1"),
        "t.toml:3:52: pool[web].backends[0].weight: must be between 0 and 65535, got -1",
    );
    one(
        &backend("max_connections = 0"),
        "t.toml:3:61: pool[web].backends[0].max_connections: must be at least 1, got 0",
    );
    one(
        &format!("{POOL}[[service]]\nname = \"www\"\nlisten = \"127.0.0.1:8080\"\npool = \"web\"\nmax_header_size = 512\n"),
        "t.toml:8:19: service[www].max_header_size: must be between 1024 and 1048576, got 512",
    );
}

#[test]
fn health_check_rules() {
    one(
        &format!("{POOL}health = {{ interval = \"1s\", timeout = \"2s\" }}\n"),
        "t.toml:4:39: pool[web].health.timeout: timeout (2s) must not exceed interval (1s)",
    );
    one(
        &format!("{POOL}health = {{ timeout = \"3s\" }}\n"),
        "t.toml:4:22: pool[web].health.timeout: timeout (3s) must not exceed interval (2s, the default)",
    );
    one(
        &format!("{POOL}health = {{ kind = \"tcp\", path = \"/healthz\" }}\n"),
        "t.toml:4:26: pool[web].health.path: `path` applies only to http and https health checks; this check is kind = \"tcp\"",
    );
    one(
        &format!("{POOL}health = {{ expect_status = \"200\" }}\n"),
        "t.toml:4:12: pool[web].health.expect_status: `expect_status` applies only to http and https health checks; this check is kind = \"tcp\"",
    );
    one(
        &format!("{POOL}health = {{ kind = \"none\", port = 80 }}\n"),
        "t.toml:4:27: pool[web].health.port: `port` applies only to tcp, http, https and smtp health checks; this check is kind = \"none\"",
    );
    let http = |kv: &str| format!("{POOL}health = {{ kind = \"http\", {kv} }}\n");
    let at = "t.toml:4:43: pool[web].health.expect_status: ";
    one(
        &http("expect_status = \"200-\""),
        &format!("{at}\"\" is not a status code; write status codes or ranges separated by commas, e.g. \"200-299,301\""),
    );
    one(
        &http("expect_status = \"200-600\""),
        &format!("{at}status code 600 is out of range; codes are 100 to 599"),
    );
    one(
        &http("expect_status = \"299-200\""),
        &format!("{at}range 299-200 is backwards; write 200-299"),
    );
    one(
        &http("expect_status = \"2xx\""),
        &format!("{at}\"2xx\" is not a status code; write status codes or ranges separated by commas, e.g. \"200-299,301\""),
    );
    one(
        &http("path = \"healthz\""),
        "t.toml:4:34: pool[web].health.path: invalid path \"healthz\"; it must start with `/` and contain no spaces, e.g. \"/healthz\"",
    );
    one(
        &http("method = \"GET /\""),
        "t.toml:4:36: pool[web].health.method: invalid HTTP method \"GET /\"; write e.g. \"GET\" or \"HEAD\"",
    );
}

#[test]
fn pool_without_backends() {
    one(
        "[[pool]]\nname = \"web\"\nbackends = []\n",
        "t.toml:3:12: pool[web].backends: pool has no backends; add at least one, e.g. { address = \"127.0.0.1:8001\" }",
    );
}

#[test]
fn missing_required_keys_point_at_their_table() {
    one(
        "[[pool]]\nname = \"web\"\n",
        "t.toml:1:1: pool[web].backends: missing required key `backends` in [[pool]]",
    );
    one(
        "[[pool]]\nbackends = [{ address = \"127.0.0.1:8001\" }]\n",
        "t.toml:1:1: pool[0].name: missing required key `name` in [[pool]]",
    );
    one(
        "[[pool]]\nname = \"web\"\nbackends = [{ weight = 2 }]\n",
        "t.toml:3:13: pool[web].backends[0].address: missing required key `address` in a backend",
    );
    assert_eq!(
        errors(&format!("{POOL}\n[[service]]\nname = \"www\"\n")),
        [
            "t.toml:5:1: service[www].listen: missing required key `listen` in [[service]]",
            "t.toml:5:1: service[www].pool: missing required key `pool` in [[service]]",
        ]
    );
    one(
        &format!("{POOL}[[service]]\nlisten = \"127.0.0.1:8080\"\npool = \"web\"\n"),
        "t.toml:4:1: service[0].name: missing required key `name` in [[service]]",
    );
}

#[test]
fn http_only_service_keys_on_tcp() {
    one(
        &format!("{POOL}[[service]]\nname = \"db\"\nlisten = \"127.0.0.1:5432\"\npool = \"web\"\nmode = \"tcp\"\nheader_timeout = \"5s\"\n"),
        "t.toml:9:1: service[db].header_timeout: `header_timeout` applies only to mode = \"http\"; this service is mode = \"tcp\"",
    );
}

#[test]
fn invalid_names() {
    one(
        "[[pool]]\nname = \"my pool\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n",
        "t.toml:2:8: pool[0].name: invalid name \"my pool\"; use 1 to 64 letters, digits, `-`, `_` or `.`",
    );
}

/// A pool whose name is broken still "exists" for services: one mistake, one error.
#[test]
fn no_cascade_from_broken_pool_name() {
    let src = "[[pool]]\nname = \"w b\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:8080\"\npool = \"w b\"\n";
    assert_eq!(errors(src).len(), 1, "{:#?}", errors(src));
}

#[test]
fn every_error_in_a_file_is_reported_in_file_order() {
    let src = r#"[runtime]
workers = 0
drain_timeout = "10"

[[pool]]
name = "web"
schedular = "wlc"
health = { kind = "http", interval = "1s", timeout = "2s", expect_status = "200-" }
backends = [
  { address = "127.0.0.1:8001", weight = 70000 },
  { address = "localhost:8002" },
  { address = "127.0.0.1:8001" },
]

[[pool]]
name = "web"
backends = []

[[service]]
name = "www"
listen = "127.0.0.1:8080"
mode = "ucp"
pool = "wbe"

[[service]]
name = "api"
listen = "127.0.0.1:8080"
pool = "web"
idle_timeout = "0s"
"#;
    let got = errors(src);
    let want = [
        "t.toml:2:11: runtime.workers: must be between 1 and 1024, got 0",
        "t.toml:3:17: runtime.drain_timeout: missing unit in duration \"10\"; write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"",
        "t.toml:7:1: pool[web].schedular: unknown key `schedular`; did you mean `scheduler`?",
        "t.toml:8:54: pool[web].health.timeout: timeout (2s) must not exceed interval (1s)",
        "t.toml:8:76: pool[web].health.expect_status: \"\" is not a status code; write status codes or ranges separated by commas, e.g. \"200-299,301\"",
        "t.toml:10:42: pool[web].backends[0].weight: must be between 0 and 65535, got 70000",
        "t.toml:11:15: pool[web].backends[1].address: \"localhost:8002\": host names are not supported (tandem does not resolve names); write \"127.0.0.1:8002\" or \"[::1]:8002\"",
        "t.toml:12:15: pool[web].backends[2].address: backend 127.0.0.1:8001 is listed twice in this pool (first as pool[web].backends[0])",
        "t.toml:16:8: pool[1].name: duplicate pool name `web`; first defined on line 6",
        "t.toml:17:12: pool[1].backends: pool has no backends; add at least one, e.g. { address = \"127.0.0.1:8001\" }",
        "t.toml:22:8: service[www].mode: unknown mode `ucp`; valid modes: http, tcp, udp",
        "t.toml:23:8: service[www].pool: no pool named `wbe`; did you mean `web`?",
        "t.toml:27:10: service[api].listen: listen address 127.0.0.1:8080 is already used by service `www` on line 21",
        "t.toml:29:16: service[api].idle_timeout: duration must be greater than zero; write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"",
    ];
    assert_eq!(got, want);
}

#[test]
fn load_file_reports_unreadable_file() {
    let path = std::path::Path::new("/nonexistent/tandem.toml");
    let errs = tandem_config::load_file(path).expect_err("missing file");
    assert_eq!(errs.0.len(), 1);
    assert!(
        errs.0[0]
            .to_string()
            .starts_with("/nonexistent/tandem.toml:0:0: (file): cannot read: "),
        "{errs}"
    );
}

/// Whatever the bytes, parsing returns errors and never panics: feed it every truncation of a
/// real config and every single-character damage of it.
#[test]
fn mangled_input_never_panics() {
    let src = include_str!("../../../examples/http.toml");
    let junk = [
        '"', '[', ']', '{', '}', '=', ',', '\n', '#', '\'', '\0', 'é', ':', '-', '.',
    ];
    for cut in (0..src.len()).filter(|&i| src.is_char_boundary(i)) {
        let _ = parse_str(&src[..cut], "t.toml");
        for c in junk {
            let mut s = String::with_capacity(src.len() + 4);
            s.push_str(&src[..cut]);
            s.push(c);
            s.push_str(&src[cut..]);
            if let Err(e) = parse_str(&s, "t.toml") {
                assert!(e.0.iter().all(|e| e.line >= 1 && e.col >= 1), "{e}");
            }
        }
    }
}
