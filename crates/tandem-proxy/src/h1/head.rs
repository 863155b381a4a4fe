//! Request and response heads: parse with `httparse` (the parser hyper uses), decide the body
//! framing strictly (RFC 9112 §6), and write the head the other side gets — hop-by-hop headers
//! removed, forwarding headers merged — straight into an output buffer, without building a
//! header map.

use std::net::{IpAddr, SocketAddr};

/// Header lines accepted in one head; more is answered with 431 (requests) or 502 (responses).
pub(crate) const MAX_HEADERS: usize = 128;
/// Header lines a rewritten request may gain: Host, X-Forwarded-For, X-Forwarded-Proto,
/// Forwarded, Via, Content-Length or Transfer-Encoding, Connection, Upgrade.
const ADDED_HEADERS: usize = 8;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLen {
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the backend closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("request head too large")]
    TooLarge,
    #[error("{0}")]
    Bad(&'static str),
    #[error("method not allowed: {0}")]
    Method(&'static str),
    #[error("request body larger than max_request_body")]
    BodyTooLarge,
}

/// What the proxy needs to know about a request after its head was rewritten.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestInfo {
    pub(crate) head_len: usize,
    /// 0 or 1 (HTTP/1.0 or HTTP/1.1).
    pub(crate) minor: u8,
    pub(crate) body: BodyLen,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    pub(crate) expect_continue: bool,
    pub(crate) is_head: bool,
    /// GET, HEAD, OPTIONS, PUT, DELETE, TRACE: safe to replay when a reused backend connection
    /// closed without answering.
    pub(crate) idempotent: bool,
    /// The persistence token the request presented (cookie, url_param), if any.
    pub(crate) persist_token: Option<crate::persist::Token>,
    /// The hash of the persistence header (header persistence), if present.
    pub(crate) persist_hash: Option<u64>,
    /// Where routing sends it, and the route that matched (for its response headers).
    pub(crate) target: crate::route::Target,
    pub(crate) route: Option<usize>,
}

/// What a response needs from persistence (see [`rewrite_response_with`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum CookieOut<'a> {
    /// Add this `Set-Cookie` line (CRLF-terminated) unless the response sets cookie `name`
    /// itself.
    Insert { name: &'a str, line: &'a [u8] },
    /// Prefix the application's cookie `name` with `token~`.
    Prefix { name: &'a str, token: &'a str },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseInfo {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    pub(crate) body: BodyLen,
    /// The backend connection can carry another request after this response.
    pub(crate) backend_keep_alive: bool,
}

/// Per-connection text of the client's identity, formatted once per connection into an inline
/// buffer (no allocation).
pub(crate) struct Peer {
    ip: [u8; 46],
    len: usize,
    v6: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        use std::io::Write;
        let mut ip = [0u8; 46];
        let mut cursor = std::io::Cursor::new(&mut ip[..]);
        // The longest IPv6 text (45 bytes) fits; a failed write would only shorten the text.
        let _ = write!(cursor, "{}", addr.ip());
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        Peer {
            ip,
            len,
            v6: matches!(addr.ip(), IpAddr::V6(_)),
        }
    }

    fn ip(&self) -> &[u8] {
        &self.ip[..self.len]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    ProxyAuthorization,
    ContentLength,
    Host,
    XForwardedFor,
    XForwardedProto,
    Forwarded,
    Via,
    Expect,
}

fn classify(name: &str) -> Kind {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is("te") => Kind::Te,
        3 if is("via") => Kind::Via,
        4 if is("host") => Kind::Host,
        6 if is("expect") => Kind::Expect,
        7 if is("upgrade") => Kind::Upgrade,
        7 if is("trailer") => Kind::Trailer,
        9 if is("forwarded") => Kind::Forwarded,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::KeepAlive,
        14 if is("content-length") => Kind::ContentLength,
        15 if is("x-forwarded-for") => Kind::XForwardedFor,
        16 if is("proxy-connection") => Kind::ProxyConnection,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        17 if is("x-forwarded-proto") => Kind::XForwardedProto,
        19 if is("proxy-authorization") => Kind::ProxyAuthorization,
        _ => Kind::Other,
    }
}

fn hop_by_hop(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Connection
            | Kind::KeepAlive
            | Kind::ProxyConnection
            | Kind::Te
            | Kind::Trailer
            | Kind::TransferEncoding
            | Kind::Upgrade
            | Kind::ProxyAuthorization
    )
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `Connection` options of a message: the names it lists (to drop) and the flags we act on.
#[derive(Default)]
struct ConnectionOpts<'a> {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    names: [&'a [u8]; 8],
    n: usize,
    overflow: bool,
}

impl<'a> ConnectionOpts<'a> {
    fn add(&mut self, value: &'a [u8]) {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if self.n < self.names.len() {
                self.names[self.n] = t;
                self.n += 1;
            } else {
                self.overflow = true;
            }
        }
    }

    fn names(&self, name: &str) -> bool {
        self.names[..self.n]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// The headers that decide how a message is delimited and what happens to the connection.
#[derive(Default)]
struct Framing<'a> {
    conn: ConnectionOpts<'a>,
    length: Option<u64>,
    te_seen: bool,
    chunked: bool,
}

impl<'a> Framing<'a> {
    /// Note `kind: value` if it bears on framing; `Err` for an invalid Content-Length.
    fn observe(&mut self, kind: Kind, value: &'a [u8]) -> Result<(), ()> {
        match kind {
            Kind::Connection => self.conn.add(value),
            Kind::ContentLength => self.length = merge_length(self.length, value)?,
            Kind::TransferEncoding => {
                self.te_seen = true;
                self.chunked = chunked_last(value);
            }
            _ => {}
        }
        Ok(())
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_length(out: &mut Vec<u8>, n: u64) {
    push_header(out, b"Content-Length", itoa_u64(n, &mut [0u8; 20]));
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let v = trim(value);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Combine every `Content-Length` line: all must be the same valid number.
fn merge_length(prev: Option<u64>, value: &[u8]) -> Result<Option<u64>, ()> {
    let mut cur = prev;
    for part in value.split(|&b| b == b',') {
        let n = parse_length(part).ok_or(())?;
        match cur {
            Some(p) if p != n => return Err(()),
            _ => cur = Some(n),
        }
    }
    Ok(cur)
}

/// Whether the final transfer coding is `chunked` (anything else cannot frame a request).
fn chunked_last(value: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

/// The values of one list header seen in a head (X-Forwarded-For, Forwarded, Via), to be
/// merged with ours into a single line. Bounded: more lines than this is refused.
#[derive(Default)]
struct Lines<'a> {
    values: [&'a [u8]; 8],
    n: usize,
}

impl<'a> Lines<'a> {
    fn push(&mut self, v: &'a [u8]) -> Result<(), HeadError> {
        let slot = self
            .values
            .get_mut(self.n)
            .ok_or(HeadError::Bad("too many forwarding header lines"))?;
        *slot = v;
        self.n += 1;
        Ok(())
    }

    fn as_slice(&self) -> &[&'a [u8]] {
        &self.values[..self.n]
    }
}

fn push_merged(out: &mut Vec<u8>, name: &[u8], existing: &[&[u8]], ours: &[&[u8]]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let mut first = true;
    for v in existing.iter().chain(ours.iter()) {
        if !first {
            out.extend_from_slice(b", ");
        }
        first = false;
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
}

/// Parse a request head in `buf` and write the backend's version into `out` (cleared first).
/// `Ok(None)`: the head is not complete yet.
pub(crate) fn rewrite_request(
    buf: &[u8],
    peer: &Peer,
    local: &mut dyn FnMut() -> Option<SocketAddr>,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, HeadError> {
    rewrite_request_with(buf, peer, local, out, &Rules::default())
}

/// Per-pool request settings routing needs (by balancer index).
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolOpts {
    /// `host`: the Host header sent instead of the client's.
    pub(crate) host: Option<String>,
    /// `keepalive = false`: ask the backend to close after this request.
    pub(crate) close: bool,
}

/// What a service applies to each request head beyond forwarding it.
#[derive(Default)]
pub(crate) struct Rules<'a> {
    pub(crate) persist: Option<crate::persist::Spec<'a>>,
    pub(crate) router: Option<&'a crate::route::Router>,
    /// Indexed like the router's balancers; empty: defaults for every pool.
    pub(crate) pools: &'a [PoolOpts],
    pub(crate) client: Option<std::net::IpAddr>,
    /// `max_request_body`.
    pub(crate) max_body: Option<u64>,
    /// The client connection is TLS: the forwarding headers say `https`.
    pub(crate) https: bool,
}

/// [`rewrite_request`], also finding what `persist` looks for (and, in cookie prefix mode,
/// stripping the prefix from the cookie the backend sees).
///
/// With a router: a request routed to a local answer (redirect, respond) gets `target`
/// `Local(route)` and, for a redirect, the expanded Location in `out` instead of a head.
pub(crate) fn rewrite_request_with(
    buf: &[u8],
    peer: &Peer,
    local: &mut dyn FnMut() -> Option<SocketAddr>,
    out: &mut Vec<u8>,
    rules: &Rules<'_>,
) -> Result<Option<RequestInfo>, HeadError> {
    let persist = rules.persist;
    // Room is left for the lines we add (Host, forwarding, framing, upgrade), so the head we
    // send never exceeds what we (and backends) accept.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS - ADDED_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let minor = req.version.unwrap_or(1);
    if method == "CONNECT" {
        return Err(HeadError::Method("CONNECT"));
    }

    let mut f = Framing::default();
    let mut hosts = 0;
    let mut host_value: &[u8] = b"";
    let mut expect_continue = false;
    let mut upgrade_value: Option<&[u8]> = None;
    let (mut xff, mut fwd, mut via) = (Lines::default(), Lines::default(), Lines::default());
    for h in req.headers.iter() {
        let kind = classify(h.name);
        f.observe(kind, h.value)
            .map_err(|()| HeadError::Bad("invalid Content-Length"))?;
        match kind {
            Kind::Host => {
                hosts += 1;
                host_value = h.value;
            }
            Kind::Expect => expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue"),
            Kind::Upgrade => upgrade_value = Some(h.value),
            Kind::XForwardedFor => xff.push(h.value)?,
            Kind::Forwarded => fwd.push(h.value)?,
            Kind::Via => via.push(h.value)?,
            _ => {}
        }
    }
    // Framing (RFC 9112 §6.1, §6.3): a request with both Transfer-Encoding and Content-Length,
    // or a Transfer-Encoding that does not end in chunked, is the classic smuggling vector:
    // refuse it rather than guess which length the backend will believe.
    let Framing {
        conn,
        length,
        te_seen,
        chunked,
    } = f;
    let body = match (te_seen, length) {
        (true, Some(_)) => return Err(HeadError::Bad("both Transfer-Encoding and Content-Length")),
        (true, None) if minor == 0 => {
            return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"))
        }
        (true, None) if !chunked => return Err(HeadError::Bad("unsupported Transfer-Encoding")),
        (true, None) => BodyLen::Chunked,
        (false, Some(0)) | (false, None) => BodyLen::None,
        (false, Some(n)) => BodyLen::Length(n),
    };
    if hosts > 1 {
        return Err(HeadError::Bad("more than one Host header"));
    }
    // Absolute-form targets (RFC 9112 §3.2.2): the authority replaces Host.
    let (path, authority) = split_absolute(target);
    if hosts == 0 && minor == 1 && authority.is_none() {
        return Err(HeadError::Bad("missing Host header"));
    }
    let upgrade = minor == 1 && conn.upgrade && upgrade_value.is_some();
    let keep_alive = !conn.close && (minor == 1 || conn.keep_alive);
    let host = authority.map_or(host_value, str::as_bytes);
    if let (Some(max), BodyLen::Length(n)) = (rules.max_body, body) {
        if n > max {
            return Err(HeadError::BodyTooLarge);
        }
    }

    // Routing: the first matching route decides the pool (or a local answer), the rewrite and
    // the route's header operations.
    let (path_only, query) = match path.find('?') {
        Some(q) => (&path.as_bytes()[..q], &path.as_bytes()[q + 1..]),
        None => (path.as_bytes(), &b""[..]),
    };
    let host_name = crate::route::strip_port(host);
    let decision = rules.router.map(|r| {
        r.decide(&crate::route::RequestView {
            method,
            path: path_only,
            query,
            host: host_name,
            headers: &crate::route::Parsed(req.headers),
            client: rules
                .client
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        })
    });
    let target = decision
        .as_ref()
        .map_or(crate::route::Target::Balancer(0), |d| d.target);
    let info = |persist_token, persist_hash| RequestInfo {
        head_len,
        minor,
        body,
        keep_alive,
        upgrade,
        expect_continue,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
        persist_token,
        persist_hash,
        target,
        route: decision.as_ref().and_then(|d| d.route),
    };
    if let crate::route::Target::Local(i) = target {
        out.clear();
        if let (Some(r), true) = (rules.router, true) {
            if let Some(tandem_config::RouteAction::Redirect { location, .. }) = r.action(i) {
                out.extend_from_slice(&crate::route::expand(location, host_name, path_only, query));
            }
        }
        return Ok(Some(info(None, None)));
    }
    let pool_opts = match target {
        crate::route::Target::Balancer(b) => rules.pools.get(b),
        crate::route::Target::Local(_) => None,
    };
    let svc_ops = rules
        .router
        .map(|r| &r.request_headers)
        .filter(|o| !o.is_empty());
    let route_ops = decision.as_ref().and_then(|d| d.route_request_headers);
    let ops = [svc_ops, route_ops];
    let rewritten_path = decision
        .as_ref()
        .and_then(|d| d.rewrite)
        .and_then(|rw| crate::route::rewrite_path(rw, path_only));

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    match &rewritten_path {
        Some(p) => {
            out.extend_from_slice(p);
            if !query.is_empty() {
                out.push(b'?');
                out.extend_from_slice(query);
            }
        }
        None => out.extend_from_slice(path.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(h) = pool_opts.and_then(|o| o.host.as_deref()) {
        push_header(out, b"Host", h.as_bytes());
    } else if authority.is_some() || hosts == 1 {
        push_header(out, b"Host", host);
    } else {
        // An HTTP/1.0 request without Host goes out as HTTP/1.1, which requires one: name the
        // address the client connected to, as RFC 9112 §3.3 reconstructs the target URI.
        let addr = local().map(|a| a.to_string()).unwrap_or_default();
        push_header(out, b"Host", addr.as_bytes());
    }
    let mut persist_token = None;
    let mut persist_hash = None;
    if let Some(crate::persist::Spec::UrlParam { name }) = persist {
        persist_token =
            crate::persist::query_param(path.as_bytes(), name).map(crate::persist::token_of);
    }
    let mut rewritten = Vec::new();
    for h in req.headers.iter() {
        match persist {
            Some(crate::persist::Spec::Cookie { name, prefix })
                if persist_token.is_none() && h.name.eq_ignore_ascii_case("cookie") =>
            {
                if prefix {
                    rewritten.clear();
                    if let Some(t) =
                        crate::persist::strip_cookie_prefix(h.value, name, &mut rewritten)
                    {
                        persist_token = Some(crate::persist::token_of(t));
                        push_header(out, h.name.as_bytes(), &rewritten);
                        continue;
                    }
                } else if let Some(t) = crate::persist::cookie_value(h.value, name) {
                    persist_token = Some(crate::persist::token_of(t));
                }
            }
            Some(crate::persist::Spec::Header { name })
                if persist_hash.is_none() && h.name.eq_ignore_ascii_case(name) =>
            {
                persist_hash = Some(tandem_balance::scheduler::key_hash(trim(h.value)));
            }
            _ => {}
        }
        let kind = classify(h.name);
        let skip = hop_by_hop(kind)
            || matches!(
                kind,
                Kind::Host
                    | Kind::ContentLength
                    | Kind::XForwardedFor
                    | Kind::XForwardedProto
                    | Kind::Forwarded
                    | Kind::Via
            )
            || (kind == Kind::Expect && expect_continue)
            || conn.names(h.name)
            || (rules.router.is_some() && crate::route::removed(h.name, &ops));
        if !skip {
            push_header(out, h.name.as_bytes(), h.value);
        }
    }
    match body {
        BodyLen::Length(n) => push_length(out, n),
        BodyLen::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyLen::None | BodyLen::UntilClose => {}
    }
    if let (true, Some(proto)) = (upgrade, upgrade_value) {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        out.extend_from_slice(proto);
        out.extend_from_slice(b"\r\n");
    }
    push_merged(out, b"X-Forwarded-For", xff.as_slice(), &[peer.ip()]);
    out.extend_from_slice(if rules.https {
        &b"X-Forwarded-Proto: https\r\n"[..]
    } else {
        b"X-Forwarded-Proto: http\r\n"
    });
    // Forwarded: for=...;proto=http[s][;host="..."]
    let mut ours = Vec::with_capacity(64);
    ours.extend_from_slice(b"for=");
    if peer.v6 {
        ours.extend_from_slice(b"\"[");
        ours.extend_from_slice(peer.ip());
        ours.extend_from_slice(b"]\"");
    } else {
        ours.extend_from_slice(peer.ip());
    }
    ours.extend_from_slice(if rules.https {
        &b";proto=https"[..]
    } else {
        b";proto=http"
    });
    if !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        ours.extend_from_slice(b";host=\"");
        ours.extend_from_slice(host);
        ours.push(b'"');
    }
    push_merged(out, b"Forwarded", fwd.as_slice(), &[&ours]);
    let via_ours: &[u8] = if minor == 0 {
        b"1.0 tandem"
    } else {
        b"1.1 tandem"
    };
    push_merged(out, b"Via", via.as_slice(), &[via_ours]);
    crate::route::push_ops(out, &ops);
    if pool_opts.is_some_and(|o| o.close) && !upgrade {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");

    Ok(Some(info(persist_token, persist_hash)))
}

/// Split an absolute-form target into (origin-form path, authority).
fn split_absolute(target: &str) -> (&str, Option<&str>) {
    // `get` rather than slicing: a target with non-ASCII bytes must not panic on a char boundary.
    let has_scheme = |scheme: &str| {
        target
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
            && target.len() > scheme.len()
    };
    let rest = if has_scheme("http://") {
        &target[7..]
    } else if has_scheme("https://") {
        &target[8..]
    } else {
        return (target, None);
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[i..], Some(&rest[..i])),
        // "http://host?q" has an empty path: origin-form needs "/"; keep it simple and exact.
        Some(_) => ("/", Some(rest.split('?').next().unwrap_or(rest))),
        None => ("/", Some(rest)),
    }
}

/// Parse a response head in `buf`; for a final response write the client's version into `out`.
/// `client_keep_alive` is whether the client connection may stay open; the returned info says
/// how the body is delimited. 1xx responses other than 101 are returned with `BodyLen::None`
/// and nothing written: the caller skips them.
pub(crate) fn rewrite_response(
    buf: &[u8],
    req: &RequestInfo,
    client_keep_alive: bool,
    out: &mut Vec<u8>,
) -> Result<Option<(ResponseInfo, bool)>, HeadError> {
    rewrite_response_with(buf, req, client_keep_alive, out, None, &[])
}

/// RFC 9112 §6.3, in order: how a response body is delimited, and whether the backend
/// connection can carry another request after it.
fn decide_response(status: u16, minor: u8, is_head: bool, f: &Framing<'_>) -> (BodyLen, bool) {
    let informational = (100..200).contains(&status);
    let body = if is_head || status == 204 || status == 304 || informational {
        BodyLen::None
    } else if f.te_seen {
        if f.chunked {
            BodyLen::Chunked
        } else {
            BodyLen::UntilClose
        }
    } else {
        match f.length {
            Some(0) => BodyLen::None,
            Some(n) => BodyLen::Length(n),
            None => BodyLen::UntilClose,
        }
    };
    let keep_alive = !f.conn.close
        && (minor == 1 || f.conn.keep_alive)
        && body != BodyLen::UntilClose
        && !(f.te_seen && f.length.is_some());
    (body, keep_alive)
}

/// A backend's response head as a client of it sees it: how the body is delimited, whether
/// the connection can be reused, and which headers are the message's own (for the HTTP/2
/// side, which builds a header map instead of rewriting the head).
pub(crate) struct BackendResponse<'a> {
    pub(crate) body: BodyLen,
    pub(crate) keep_alive: bool,
    conn: ConnectionOpts<'a>,
}

impl BackendResponse<'_> {
    /// Whether header `name` belongs to the message (not hop-by-hop, not named by
    /// `Connection`).
    pub(crate) fn forwards(&self, name: &str) -> bool {
        !hop_by_hop(classify(name)) && !self.conn.names(name)
    }
}

/// Framing of a parsed response head (`minor`: 0 or 1). `Err` for an invalid
/// `Content-Length`.
pub(crate) fn backend_response<'a>(
    status: u16,
    minor: u8,
    is_head: bool,
    headers: &[httparse::Header<'a>],
) -> Result<BackendResponse<'a>, HeadError> {
    let mut f = Framing::default();
    for h in headers {
        f.observe(classify(h.name), h.value)
            .map_err(|()| HeadError::Bad("invalid Content-Length from backend"))?;
    }
    let (body, keep_alive) = decide_response(status, minor, is_head, &f);
    Ok(BackendResponse {
        body,
        keep_alive,
        conn: f.conn,
    })
}

/// [`rewrite_response`] with persistence's cookie work (see [`CookieOut`]).
pub(crate) fn rewrite_response_with(
    buf: &[u8],
    req: &RequestInfo,
    client_keep_alive: bool,
    out: &mut Vec<u8>,
    cookie: Option<CookieOut<'_>>,
    ops: &[Option<&tandem_config::HeaderOps>],
) -> Result<Option<(ResponseInfo, bool)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("malformed response head")),
    };
    let status = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    let mut f = Framing::default();
    let mut via = Lines::default();
    for h in resp.headers.iter() {
        let kind = classify(h.name);
        f.observe(kind, h.value)
            .map_err(|()| HeadError::Bad("invalid Content-Length from backend"))?;
        if kind == Kind::Via {
            // A backend's excess Via lines are dropped rather than failing the response.
            let _ = via.push(h.value);
        }
    }
    let (body, backend_keep_alive) = decide_response(status, minor, req.is_head, &f);
    let Framing { conn, length, .. } = f;
    let informational = (100..200).contains(&status);
    if informational && status != 101 {
        let info = ResponseInfo {
            head_len,
            status,
            body: BodyLen::None,
            backend_keep_alive: true,
        };
        return Ok(Some((info, false)));
    }
    // An HTTP/1.0 client cannot read chunked framing: it gets the data and a close.
    let dechunk = req.minor == 0 && body == BodyLen::Chunked;
    let client_keep_alive =
        client_keep_alive && body != BodyLen::UntilClose && !dechunk && status != 101;

    out.clear();
    out.extend_from_slice(if req.minor == 0 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(itoa_u64(u64::from(status), &mut [0u8; 20]));
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut app_sets_cookie = false;
    for h in resp.headers.iter() {
        let kind = classify(h.name);
        if hop_by_hop(kind)
            || kind == Kind::Via
            || kind == Kind::ContentLength
            || conn.names(h.name)
            || (!ops.is_empty() && crate::route::removed(h.name, ops))
        {
            continue;
        }
        if let Some(c) = cookie {
            if h.name.eq_ignore_ascii_case("set-cookie") {
                match c {
                    CookieOut::Insert { name, .. } => {
                        app_sets_cookie |= crate::persist::sets_cookie(h.value, name);
                    }
                    CookieOut::Prefix { name, token } => {
                        if let Some(v) = crate::persist::prefix_set_cookie(h.value, name, token) {
                            push_header(out, h.name.as_bytes(), &v);
                            continue;
                        }
                    }
                }
            }
        }
        push_header(out, h.name.as_bytes(), h.value);
    }
    // Not on interim responses (returned above) nor a protocol switch.
    if let (Some(CookieOut::Insert { line, .. }), false, false) =
        (cookie, app_sets_cookie, status == 101)
    {
        out.extend_from_slice(line);
    }
    crate::route::push_ops(out, ops);
    match body {
        BodyLen::Length(n) => push_length(out, n),
        BodyLen::Chunked if !dechunk => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        // A HEAD response or 304 keeps the Content-Length the backend announced.
        BodyLen::None if length.is_some_and(|n| n > 0) => push_length(out, length.unwrap_or(0)),
        BodyLen::None if status != 204 && status != 304 && !informational && !req.is_head => {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        _ => {}
    }
    if status == 101 {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        if let Some(u) = resp
            .headers
            .iter()
            .find(|h| classify(h.name) == Kind::Upgrade)
        {
            out.extend_from_slice(b"Upgrade: ");
            out.extend_from_slice(u.value);
            out.extend_from_slice(b"\r\n");
        }
    } else if !client_keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if req.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    let via_ours: &[u8] = if minor == 0 {
        b"1.0 tandem"
    } else {
        b"1.1 tandem"
    };
    push_merged(out, b"Via", via.as_slice(), &[via_ours]);
    out.extend_from_slice(b"\r\n");
    let info = ResponseInfo {
        head_len,
        status,
        body,
        backend_keep_alive,
    };
    Ok(Some((info, client_keep_alive)))
}

/// Format `n` in decimal into `buf` without allocating.
pub(crate) fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Option<SocketAddr> {
        "198.51.100.9:8080".parse().ok()
    }

    fn peer() -> Peer {
        Peer::new("192.0.2.7:5000".parse().expect("addr"))
    }

    fn req(raw: &str) -> Result<(RequestInfo, String), HeadError> {
        let mut out = Vec::new();
        let info =
            rewrite_request(raw.as_bytes(), &peer(), &mut local, &mut out)?.expect("complete");
        Ok((info, String::from_utf8(out).expect("utf8")))
    }

    #[test]
    fn rewrites_a_simple_get() {
        let (info, out) =
            req("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n").expect("ok");
        assert_eq!(info.body, BodyLen::None);
        assert!(info.keep_alive && info.idempotent && !info.upgrade);
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Forwarded-For: 192.0.2.7\r\n\
             X-Forwarded-Proto: http\r\nForwarded: for=192.0.2.7;proto=http;host=\"example.com\"\r\n\
             Via: 1.1 tandem\r\n\r\n"
        );
    }

    /// A request that came over TLS says so to the backend, replacing what the client
    /// claimed.
    #[test]
    fn tls_clients_are_forwarded_as_https() {
        let raw = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: http\r\n\r\n";
        let mut out = Vec::new();
        let rules = Rules {
            https: true,
            ..Rules::default()
        };
        rewrite_request_with(raw.as_bytes(), &peer(), &mut local, &mut out, &rules)
            .expect("ok")
            .expect("complete");
        let out = String::from_utf8(out).expect("utf8");
        assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
        assert!(!out.contains("X-Forwarded-Proto: http\r\n"), "{out}");
        assert!(
            out.contains("Forwarded: for=192.0.2.7;proto=https;host=\"example.com\"\r\n"),
            "{out}"
        );
    }

    #[test]
    fn strips_hop_by_hop_and_merges_forwarding() {
        let (info, out) = req(
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Foo\r\nX-Foo: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
             Proxy-Connection: x\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\n\
             Content-Length: 3\r\n\r\nabc",
        )
        .expect("ok");
        assert!(!info.keep_alive);
        assert_eq!(info.body, BodyLen::Length(3));
        for gone in [
            "X-Foo",
            "Keep-Alive",
            "TE:",
            "Proxy-Connection",
            "Connection",
            "https",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(
            out.contains("X-Forwarded-For: 198.51.100.1, 192.0.2.7\r\n"),
            "{out}"
        );
        assert!(out.contains("Via: 1.0 edge, 1.1 tandem\r\n"), "{out}");
        assert!(out.contains("Content-Length: 3\r\n"), "{out}");
    }

    #[test]
    fn refuses_smuggling_shapes() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        ] {
            assert!(req(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn absolute_form_replaces_host() {
        let (_, out) =
            req("GET http://example.org:8080/x HTTP/1.1\r\nHost: other\r\n\r\n").expect("ok");
        assert!(
            out.starts_with("GET /x HTTP/1.1\r\nHost: example.org:8080\r\n"),
            "{out}"
        );
        assert!(!out.contains("other"));
    }

    #[test]
    fn upgrade_keeps_upgrade_headers() {
        let (info, out) =
            req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .expect("ok");
        assert!(info.upgrade);
        assert!(
            out.contains("Connection: upgrade\r\nUpgrade: websocket\r\n"),
            "{out}"
        );
    }

    #[test]
    fn http10_keep_alive_only_when_asked() {
        assert!(!req("GET / HTTP/1.0\r\n\r\n").expect("ok").0.keep_alive);
        assert!(
            req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .expect("ok")
                .0
                .keep_alive
        );
    }

    fn resp(raw: &str, request: &str) -> (ResponseInfo, bool, String) {
        let (r, _) = req(request).expect("request");
        let mut out = Vec::new();
        let (info, ka) = rewrite_response(raw.as_bytes(), &r, r.keep_alive, &mut out)
            .expect("ok")
            .expect("complete");
        (info, ka, String::from_utf8(out).expect("utf8"))
    }

    #[test]
    fn response_framing() {
        let get = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (i, ka, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
            get,
        );
        assert_eq!(
            (i.body, i.backend_keep_alive, ka),
            (BodyLen::Length(5), true, true)
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 tandem\r\n\r\n"
        );
        let (i, ka, out) = resp("HTTP/1.1 200 OK\r\n\r\n", get);
        assert_eq!(
            (i.body, i.backend_keep_alive, ka),
            (BodyLen::UntilClose, false, false)
        );
        assert!(out.contains("Connection: close\r\n"));
        let (i, _, _) = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", get);
        assert_eq!(i.body, BodyLen::Chunked);
        let (i, _, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        assert_eq!(i.body, BodyLen::None);
        assert!(out.contains("Content-Length: 10\r\n"));
        let (i, _, _) = resp("HTTP/1.1 100 Continue\r\n\r\n", get);
        assert_eq!((i.status, i.body), (100, BodyLen::None));
    }

    #[test]
    fn http10_client_gets_dechunked_close() {
        let (i, ka, out) = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
        );
        assert_eq!(i.body, BodyLen::Chunked);
        assert!(!ka);
        assert!(
            out.starts_with("HTTP/1.0 200 OK\r\n") && !out.contains("chunked"),
            "{out}"
        );
    }

    #[test]
    fn ipv6_client_is_quoted_in_forwarded() {
        let peer = Peer::new(
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:1"
                .parse()
                .expect("addr"),
        );
        let mut out = Vec::new();
        rewrite_request(
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            &peer,
            &mut local,
            &mut out,
        )
        .expect("ok");
        let out = String::from_utf8(out).expect("utf8");
        assert!(
            out.contains("X-Forwarded-For: 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Forwarded: for=\"[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]\";proto=http"),
            "{out}"
        );
    }

    #[test]
    fn http10_without_host_gets_the_local_address() {
        let (_, out) = req("GET / HTTP/1.0\r\n\r\n").expect("ok");
        assert!(
            out.starts_with("GET / HTTP/1.1\r\nHost: 198.51.100.9:8080\r\n"),
            "{out}"
        );
    }

    #[test]
    fn leaves_room_for_added_headers() {
        let head = |n: usize| {
            let mut raw = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
            for i in 0..n {
                raw.push_str(&format!("a{i}: b\r\n"));
            }
            raw + "\r\n"
        };
        let limit = MAX_HEADERS - ADDED_HEADERS;
        assert_eq!(req(&head(limit)).err(), Some(HeadError::TooLarge));
        let (_, out) = req(&head(limit - 1)).expect("fits");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = httparse::Request::new(&mut headers).parse(out.as_bytes());
        assert!(
            matches!(parsed, Ok(httparse::Status::Complete(_))),
            "{parsed:?}"
        );
    }

    #[test]
    fn itoa() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(itoa_u64(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
