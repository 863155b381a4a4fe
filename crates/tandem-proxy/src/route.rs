//! A service's routing table, compiled once: which pool (or local answer) a request gets, how
//! its path is rewritten, which headers change on the way in and out.
//!
//! Matching reads the parsed request head in place and allocates nothing; only a rewrite that
//! changes the path builds a new one.

use std::net::IpAddr;

use tandem_config::{HeaderOps, Rewrite, Route, RouteAction, RouteMatch, Template, TemplatePart};

/// What a request is, as routing sees it.
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a str,
    /// The path without the query.
    pub(crate) path: &'a [u8],
    /// The query without `?` (empty when none).
    pub(crate) query: &'a [u8],
    /// The Host (or absolute-form authority) without port.
    pub(crate) host: &'a [u8],
    pub(crate) headers: &'a dyn Headers,
    pub(crate) client: IpAddr,
}

/// Request headers as routing reads them (the HTTP/1 engine's parsed slice, or hyper's map).
pub(crate) trait Headers {
    /// Whether any value of header `name` (any case) satisfies `f`.
    fn any(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

/// The HTTP/1 engine's parsed headers.
pub(crate) struct Parsed<'a>(pub(crate) &'a [httparse::Header<'a>]);

impl Headers for Parsed<'_> {
    fn any(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.0
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| f(h.value))
    }
}

impl Headers for http::HeaderMap {
    fn any(&self, name: &str, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.get_all(name).iter().any(|v| f(v.as_bytes()))
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Index into the service's balancers (0 is the service's `pool`).
    Balancer(usize),
    /// Route `n` answers locally (redirect or respond).
    Local(usize),
}

struct Compiled {
    when: RouteMatch,
    target: Target,
    rewrite: Rewrite,
    request_headers: HeaderOps,
    response_headers: HeaderOps,
    action: RouteAction,
}

pub(crate) struct Router {
    routes: Vec<Compiled>,
    /// Per balancer index: the pool's name (balancer 0 is the default pool).
    pub(crate) pools: Vec<String>,
    pub(crate) request_headers: HeaderOps,
    pub(crate) response_headers: HeaderOps,
}

/// The decision for one request.
pub(crate) struct Decision<'r> {
    pub(crate) target: Target,
    /// The route that matched (`None`: the default pool).
    pub(crate) route: Option<usize>,
    pub(crate) rewrite: Option<&'r Rewrite>,
    pub(crate) route_request_headers: Option<&'r HeaderOps>,
}

impl Router {
    /// `default_pool` is the service's `pool`; every other pool a route names gets the next
    /// balancer index, in order of first appearance.
    pub(crate) fn new(
        routes: &[Route],
        default_pool: &str,
        request_headers: &HeaderOps,
        response_headers: &HeaderOps,
    ) -> Self {
        let mut pools = vec![default_pool.to_string()];
        let compiled = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let target = match &r.action {
                    RouteAction::Pool(name) => {
                        let idx = match pools.iter().position(|p| p == name) {
                            Some(idx) => idx,
                            None => {
                                pools.push(name.clone());
                                pools.len() - 1
                            }
                        };
                        Target::Balancer(idx)
                    }
                    _ => Target::Local(i),
                };
                Compiled {
                    when: r.when.clone(),
                    target,
                    rewrite: r.rewrite.clone(),
                    request_headers: r.request_headers.clone(),
                    response_headers: r.response_headers.clone(),
                    action: r.action.clone(),
                }
            })
            .collect();
        Router {
            routes: compiled,
            pools,
            request_headers: request_headers.clone(),
            response_headers: response_headers.clone(),
        }
    }

    /// The first route whose match holds, else the default pool.
    pub(crate) fn decide(&self, req: &RequestView<'_>) -> Decision<'_> {
        for (i, r) in self.routes.iter().enumerate() {
            if matches(&r.when, req) {
                return Decision {
                    target: r.target,
                    route: Some(i),
                    rewrite: (!r.rewrite.is_empty()).then_some(&r.rewrite),
                    route_request_headers: (!r.request_headers.is_empty())
                        .then_some(&r.request_headers),
                };
            }
        }
        Decision {
            target: Target::Balancer(0),
            route: None,
            rewrite: None,
            route_request_headers: None,
        }
    }

    pub(crate) fn action(&self, route: usize) -> Option<&RouteAction> {
        self.routes.get(route).map(|r| &r.action)
    }

    pub(crate) fn route_response_headers(&self, route: usize) -> Option<&HeaderOps> {
        self.routes
            .get(route)
            .map(|r| &r.response_headers)
            .filter(|o| !o.is_empty())
    }
}

fn matches(m: &RouteMatch, req: &RequestView<'_>) -> bool {
    if !m.hosts.is_empty() && !m.hosts.iter().any(|h| h.matches(req.host)) {
        return false;
    }
    if let Some(p) = &m.path_prefix {
        if !req.path.starts_with(p.as_bytes()) {
            return false;
        }
    }
    if let Some(r) = &m.path_regex {
        if !r.is_match(req.path) {
            return false;
        }
    }
    if !m.methods.is_empty() && !m.methods.iter().any(|x| x == req.method) {
        return false;
    }
    for h in &m.headers {
        let found = req.headers.any(&h.name, &mut |v| {
            h.value.as_ref().is_none_or(|p| p.is_match(trim(v)))
        });
        if !found {
            return false;
        }
    }
    if let Some(ua) = &m.user_agent {
        if !req.headers.any("user-agent", &mut |v| ua.is_match(v)) {
            return false;
        }
    }
    if !m.client_cidr.is_empty() && !m.client_cidr.iter().any(|c| c.contains(req.client)) {
        return false;
    }
    for q in &m.query {
        let found = req.query.split(|&b| b == b'&').any(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], Some(&pair[i + 1..])),
                None => (pair, None),
            };
            k == q.name.as_bytes()
                && match (&q.value, v) {
                    (None, _) => true,
                    (Some(p), Some(v)) => p.is_match(v),
                    (Some(_), None) => false,
                }
        });
        if !found {
            return false;
        }
    }
    true
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e]
}

/// The path after `rewrite` (strip, add prefix, then the regex), or `None` if unchanged.
pub(crate) fn rewrite_path(rw: &Rewrite, path: &[u8]) -> Option<Vec<u8>> {
    let mut p: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(path);
    if let Some(s) = &rw.strip_prefix {
        let s = s.as_bytes();
        // Only at a segment boundary: /static strips /static and /static/x, not /staticfoo.
        if p.starts_with(s) && (p.len() == s.len() || p[s.len()] == b'/') {
            let rest = p[s.len()..].to_vec();
            p = std::borrow::Cow::Owned(if rest.is_empty() { b"/".to_vec() } else { rest });
        }
    }
    if let Some(a) = &rw.add_prefix {
        let mut v = a.as_bytes().to_vec();
        v.extend_from_slice(&p);
        p = std::borrow::Cow::Owned(v);
    }
    if let Some((re, replace)) = &rw.path_regex {
        if re.is_match(&p) {
            let out = re.regex().replace(&p, replace.as_bytes()).into_owned();
            p = std::borrow::Cow::Owned(out);
        }
    }
    match p {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(v) => Some(v),
    }
}

/// A redirect's Location for this request.
pub(crate) fn expand(t: &Template, host: &[u8], path: &[u8], query: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in &t.parts {
        match part {
            TemplatePart::Text(s) => out.extend_from_slice(s.as_bytes()),
            TemplatePart::Host => out.extend_from_slice(host),
            TemplatePart::Path => out.extend_from_slice(path),
            TemplatePart::Query => {
                if !query.is_empty() {
                    out.push(b'?');
                    out.extend_from_slice(query);
                }
            }
            TemplatePart::Uri => {
                out.extend_from_slice(path);
                if !query.is_empty() {
                    out.push(b'?');
                    out.extend_from_slice(query);
                }
            }
        }
    }
    // A Location is one header line: nothing that could end it.
    out.retain(|&b| b != b'\r' && b != b'\n');
    out
}

/// Whether header `name` is removed by any of `ops`.
/// A Host value without its port (`[v6]:p` without the brackets too).
pub(crate) fn strip_port(host: &[u8]) -> &[u8] {
    if let Some(rest) = host.strip_prefix(b"[") {
        return match rest.iter().position(|&b| b == b']') {
            Some(i) => &rest[..i],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

pub(crate) fn removed(name: &str, ops: &[Option<&HeaderOps>]) -> bool {
    ops.iter().flatten().any(|o| {
        o.remove.iter().any(|r| name.eq_ignore_ascii_case(r))
            || o.set.iter().any(|(s, _)| name.eq_ignore_ascii_case(s))
    })
}

/// Writes the `set` and `add` lines of `ops`, in order.
pub(crate) fn push_ops(out: &mut Vec<u8>, ops: &[Option<&HeaderOps>]) {
    for o in ops.iter().flatten() {
        for (k, v) in o.set.iter().chain(&o.add) {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::{Cidr, HostMatch, Pattern};

    fn route(when: RouteMatch, pool: &str) -> Route {
        Route {
            when,
            action: RouteAction::Pool(pool.into()),
            rewrite: Rewrite::default(),
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
        }
    }

    fn view<'a>(
        method: &'a str,
        host: &'a [u8],
        path: &'a [u8],
        query: &'a [u8],
        headers: &'a Parsed<'a>,
    ) -> RequestView<'a> {
        RequestView {
            method,
            path,
            query,
            host,
            headers,
            client: "198.51.100.7".parse().unwrap(),
        }
    }

    #[test]
    fn first_match_wins_and_no_match_is_the_default() {
        let routes = vec![
            route(
                RouteMatch {
                    path_prefix: Some("/static/".into()),
                    ..RouteMatch::default()
                },
                "static",
            ),
            route(
                RouteMatch {
                    hosts: vec![HostMatch::Suffix(".example.com".into())],
                    ..RouteMatch::default()
                },
                "wild",
            ),
            // Overlaps the first: never reached for /static/.
            route(
                RouteMatch {
                    path_prefix: Some("/static/img/".into()),
                    ..RouteMatch::default()
                },
                "img",
            ),
            route(
                RouteMatch {
                    methods: vec!["POST".into()],
                    client_cidr: vec![Cidr::parse("198.51.100.0/24").unwrap()],
                    user_agent: Some(Pattern::parse("/bot/i", true).unwrap()),
                    ..RouteMatch::default()
                },
                "bots",
            ),
        ];
        let r = Router::new(&routes, "app", &HeaderOps::default(), &HeaderOps::default());
        assert_eq!(r.pools, ["app", "static", "wild", "img", "bots"]);
        let none = Parsed(&[]);
        let t = |m, h, p| r.decide(&view(m, h, p, b"", &none)).target;
        assert_eq!(t("GET", b"x.org", b"/static/a.css"), Target::Balancer(1));
        assert_eq!(
            t("GET", b"x.org", b"/static/img/a.png"),
            Target::Balancer(1)
        );
        assert_eq!(t("GET", b"www.EXAMPLE.com", b"/"), Target::Balancer(2));
        assert_eq!(
            t("GET", b"example.com", b"/"),
            Target::Balancer(0),
            "*.x is not x"
        );
        assert_eq!(t("GET", b"x.org", b"/"), Target::Balancer(0));
        let ua = [httparse::Header {
            name: "User-Agent",
            value: b"GoogleBot/2.1",
        }];
        let ua = Parsed(&ua);
        assert_eq!(
            r.decide(&view("POST", b"x.org", b"/", b"", &ua)).target,
            Target::Balancer(4)
        );
        assert_eq!(
            r.decide(&view("GET", b"x.org", b"/", b"", &ua)).target,
            Target::Balancer(0)
        );
    }

    #[test]
    fn rewrites() {
        let rw = |strip: Option<&str>, add: Option<&str>, re: Option<(&str, &str)>| Rewrite {
            strip_prefix: strip.map(Into::into),
            add_prefix: add.map(Into::into),
            path_regex: re.map(|(p, r)| {
                (
                    Pattern::parse(&format!("/{p}/"), true).unwrap(),
                    r.to_string(),
                )
            }),
        };
        let s = rw(Some("/static"), None, None);
        assert_eq!(
            rewrite_path(&s, b"/static/a.css").as_deref(),
            Some(&b"/a.css"[..])
        );
        assert_eq!(rewrite_path(&s, b"/static").as_deref(), Some(&b"/"[..]));
        assert_eq!(rewrite_path(&s, b"/staticfoo"), None);
        let r = rw(None, None, Some(("^/old/(.*)$", "/app/$1")));
        assert_eq!(
            rewrite_path(&r, b"/old/x/y").as_deref(),
            Some(&b"/app/x/y"[..])
        );
        assert_eq!(rewrite_path(&r, b"/new/x"), None);
        let a = rw(Some("/v1"), Some("/api/v2"), None);
        assert_eq!(
            rewrite_path(&a, b"/v1/users").as_deref(),
            Some(&b"/api/v2/users"[..])
        );
    }

    #[test]
    fn templates() {
        let t = Template::parse("https://{host}{uri}").unwrap();
        assert_eq!(
            expand(&t, b"example.com", b"/a", b"x=1"),
            b"https://example.com/a?x=1"
        );
        assert_eq!(
            expand(&t, b"example.com", b"/a", b""),
            b"https://example.com/a"
        );
        let t = Template::parse("https://new.example.com{path}{query}").unwrap();
        assert_eq!(
            expand(&t, b"h", b"/p\r\nX: y", b""),
            b"https://new.example.com/pX: y"
        );
    }
}
