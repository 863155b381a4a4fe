//! `routes`, header operations, sizes and the new pool keys: the model and every error with
//! its position.

use tandem_config::*;

const POOLS: &str = "[[pool]]\nname = \"app\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n[[pool]]\nname = \"static\"\nbackends = [{ address = \"127.0.0.1:8002\" }]\n";

fn service(extra: &str) -> String {
    format!(
        "{POOLS}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:8080\"\npool = \"app\"\n{extra}"
    )
}

fn parse(src: &str) -> Config {
    match parse_str(src, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

#[track_caller]
fn one(src: &str, want: &str) {
    match parse_str(src, "t.toml") {
        Ok(_) => panic!("expected an error:\n{src}"),
        Err(e) => {
            let got: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
            assert_eq!(got, [want], "\nsource:\n{src}");
        }
    }
}

#[test]
fn routes_parse_into_the_model() {
    let cfg = parse(&service(
        r#"routes = [
  { match = { path_prefix = "/static/", host = ["a.example.com", "*.example.org"], method = "GET" }, pool = "static", rewrite = { strip_prefix = "/static" } },
  { match = { header = [{ name = "X-Canary", value = "1" }, "X-Present"], query = { name = "beta" }, client_cidr = ["198.51.100.0/24", "2001:db8::/32"] }, redirect = { status = 308, location = "https://{host}{uri}" } },
  { match = { user_agent = "/bot/i", path_regex = "^/a/(b)$" }, respond = { status = 403, body = "no" } },
]
request_headers = { set = { "X-A" = "1" }, remove = "X-B" }
max_request_body = "10MiB"
max_connections = 1000
"#,
    ));
    let s = &cfg.services[0];
    assert_eq!(s.routes.len(), 3);
    let r0 = &s.routes[0];
    assert_eq!(r0.action, RouteAction::Pool("static".into()));
    assert_eq!(
        r0.when.hosts,
        [
            HostMatch::Exact("a.example.com".into()),
            HostMatch::Suffix(".example.org".into())
        ]
    );
    assert_eq!(r0.when.methods, ["GET"]);
    assert_eq!(r0.rewrite.strip_prefix.as_deref(), Some("/static"));
    let r1 = &s.routes[1];
    assert_eq!(r1.when.headers.len(), 2);
    assert_eq!(r1.when.headers[1].name, "x-present");
    assert!(r1.when.headers[0]
        .value
        .as_ref()
        .is_some_and(|p| p.is_match(b"1") && !p.is_match(b"10")));
    assert_eq!(r1.when.client_cidr.len(), 2);
    assert!(r1.when.client_cidr[0].contains("198.51.100.200".parse().unwrap()));
    assert!(!r1.when.client_cidr[0].contains("198.51.101.1".parse().unwrap()));
    assert!(matches!(
        &r1.action,
        RouteAction::Redirect { status: 308, .. }
    ));
    let r2 = &s.routes[2];
    assert!(r2
        .when
        .user_agent
        .as_ref()
        .is_some_and(|p| p.is_match(b"Googlebot") && !p.is_match(b"Mozilla")));
    assert_eq!(
        r2.action,
        RouteAction::Respond {
            status: 403,
            body: "no".into(),
            content_type: "text/plain; charset=utf-8".into()
        }
    );
    assert_eq!(
        s.request_headers.set,
        [("X-A".to_string(), "1".to_string())]
    );
    assert_eq!(s.request_headers.remove, ["x-b"]);
    assert_eq!(s.max_request_body, Some(10 << 20));
    assert_eq!(s.max_connections, Some(1000));
    assert!(cfg.pools[0].keepalive && cfg.pools[0].host.is_none());
}

#[test]
fn route_errors() {
    one(
        &service("routes = [{ match = { path_prefix = \"/x\" }, pool = \"statc\" }]\n"),
        "t.toml:11:52: service[s].routes[0].pool: no pool named `statc`; did you mean `static`?",
    );
    one(
        &service("routes = [{ match = { path_prefix = \"/x\" } }]\n"),
        "t.toml:11:11: service[s].routes[0]: a route needs one of `pool`, `redirect` or `respond`",
    );
    one(
        &service("routes = [{ match = { path_prefix = \"/x\" }, pool = \"app\", respond = { status = 200 } }]\n"),
        "t.toml:11:59: service[s].routes[0].respond: a route does one thing: `pool` and `respond` cannot both be given",
    );
    one(
        &service("routes = [{ match = { path_regex = \"/(/\" }, pool = \"app\" }]\n"),
        "t.toml:11:36: service[s].routes[0].match.path_regex: invalid regular expression /(/: unclosed group",
    );
    one(
        &service("routes = [{ match = { user_agent = \"/bot/x\" }, pool = \"app\" }]\n"),
        "t.toml:11:36: service[s].routes[0].match.user_agent: unknown regex flag `x` in /bot/x; the only flag is `i` (ignore case)",
    );
    one(
        &service("routes = [{ match = { client_cidr = \"198.51.100.1/24\" }, pool = \"app\" }]\n"),
        "t.toml:11:37: service[s].routes[0].match.client_cidr: 198.51.100.1/24 has host bits set; the network is 198.51.100.0/24",
    );
    one(
        &service("routes = [{ match = { host = \"http://a.com\" }, pool = \"app\" }]\n"),
        "t.toml:11:30: service[s].routes[0].match.host: invalid host \"http://a.com\": write a name like \"example.com\" or \"*.example.com\" (no port, no scheme)",
    );
    one(
        &service("routes = [{ match = { path_prefix = \"/x\" }, redirect = { status = 200, location = \"/y\" } }]\n"),
        "t.toml:11:67: service[s].routes[0].redirect.status: must be between 300 and 399, got 200",
    );
    one(
        &service("routes = [{ match = { path_prefix = \"/x\" }, redirect = { location = \"{scheme}://a\" } }]\n"),
        "t.toml:11:69: service[s].routes[0].redirect.location: unknown placeholder {scheme} in \"{scheme}://a\"; use {host}, {path}, {query} or {uri}",
    );
    one(
        &service("routes = [{ match = { path_prefix = \"/x\" }, pool = \"app\", rewrite = { path_regex = \"^/x\" } }]\n"),
        "t.toml:11:71: service[s].routes[0].rewrite.replace: `path_regex` needs `replace`: what the path becomes, e.g. replace = \"/app/$1\"",
    );
    one(
        &service("request_headers = { set = { \"Content-Length\" = \"0\" } }\n"),
        "t.toml:11:29: service[s].request_headers.set.Content-Length: `Content-Length` is managed by tandem (message framing and connection handling) and cannot be set",
    );
    one(
        &service("max_request_body = \"10 parsecs\"\n"),
        "t.toml:11:20: service[s].max_request_body: invalid size \"10 parsecs\": write a number of bytes or one with a unit, e.g. \"10MiB\", \"64KiB\"",
    );
    one(
        &service("mode = \"tcp\"\nroutes = []\n"),
        "t.toml:12:1: service[s].routes: `routes` applies only to mode = \"http\"; this service is mode = \"tcp\"",
    );
}
