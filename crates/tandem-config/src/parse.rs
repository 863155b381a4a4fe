//! TOML text → validated [`Config`], collecting every problem on the way.
//!
//! We walk the spanned document tree (`toml::de::DeTable`) by hand instead of deriving
//! `Deserialize`: serde stops at the first error and knows nothing of "did you mean", while an
//! operator running `tandem check` wants the whole list, each with a line, a column and a key
//! path they can search for. When a value is bad we record the error, substitute the default
//! and keep going; the substituted values never escape because any error fails the whole parse.
//!
//! Checks that relate two values (timeout vs interval, duplicate names, a service's pool) only
//! run when both values parsed, so one typo never causes a cascade of follow-on errors.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::address::parse_socket_addr;
use crate::duration::parse_duration;
use crate::model::*;
use crate::position::LineIndex;
use crate::suggest::closest;
use crate::{ConfigError, ConfigErrors};

mod capacity;
mod health;
mod persistence;
mod route;
mod spof;
mod tls;
mod vrrp;
mod vrrp_ops;
use health::health;

type Value<'i> = Spanned<DeValue<'i>>;

/// Marker: the problem has been recorded in [`Cx::errors`]; the caller just stops using the value.
struct Reported;

type R<T> = Result<T, Reported>;

/// Where errors go while walking one file.
struct Cx<'s> {
    file: &'s str,
    lines: LineIndex<'s>,
    errors: Vec<ConfigError>,
    /// Valid but fragile: reported by `tandem check`, never fatal.
    warnings: Vec<ConfigError>,
}

impl Cx<'_> {
    fn error(&mut self, at: usize, key: &str, message: impl Into<String>) -> Reported {
        let (line, col) = self.lines.position(at);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
        Reported
    }

    fn warn(&mut self, at: usize, key: &str, message: impl Into<String>) {
        let (line, col) = self.lines.position(at);
        self.warnings.push(ConfigError {
            file: self.file.to_string(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn line(&self, at: usize) -> usize {
        self.lines.position(at).0
    }
}

/// The configuration and its warnings (sorted by position), or every error.
pub(crate) fn parse(src: &str, file: &str) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let mut cx = Cx {
        file,
        lines: LineIndex::new(src),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(src);
    if syntax_errors.is_empty() {
        let config = config(&mut cx, root.get_ref());
        if cx.errors.is_empty() {
            cx.warnings.sort_by_key(|e| (e.line, e.col));
            return Ok((config, cx.warnings));
        }
    } else {
        // The recovered tree of a broken file has holes; validating it would bury the real
        // problem under "missing key" noise. Syntax first, the rest on the next run.
        for e in &syntax_errors {
            let span = e.span().unwrap_or(0..0);
            let mut message = e.message().to_string();
            // toml says only "duplicate key"; name it, since the position alone may point into
            // a long table header.
            if message == "duplicate key" {
                if let Some(k) = src.get(span.clone()).filter(|k| !k.is_empty()) {
                    message = format!("duplicate key `{k}`");
                }
            }
            cx.error(span.start, "(syntax)", message);
        }
    }
    // Maps iterate in key order, not file order: sort so the report reads top to bottom.
    cx.errors.sort_by_key(|e| (e.line, e.col));
    Err(ConfigErrors(cx.errors))
}

// ---------------------------------------------------------------------------------------------
// Tables and scalar values

/// A table being read: its keys, where it starts (for "missing key" errors) and its path.
struct Table<'a, 'i> {
    map: &'a DeTable<'i>,
    at: usize,
    path: String,
    /// How the table is written, for messages: `[runtime]`, `[[pool]]`, `health`...
    what: &'static str,
    /// Known keys that [`Table::check_keys`] suggested for a misspelt key. If one of them is
    /// required and missing, the typo already explains it: no second error.
    suggested: Vec<&'static str>,
}

impl<'a, 'i> Table<'a, 'i> {
    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.map.get(key)
    }

    /// Where `key` itself is written (for errors about the key rather than its value).
    fn key_at(&self, key: &str) -> Option<usize> {
        self.map.get_key_value(key).map(|(k, _)| k.span().start)
    }

    /// Report every key not in `known`, suggesting the closest known one.
    fn check_keys(&mut self, cx: &mut Cx, known: &[&'static str]) {
        for (key, _) in self.map.iter() {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            let path = self.key_path(name);
            if let Some((_, why)) = PLANNED.iter().find(|(p, _)| *p == path) {
                cx.error(key.span().start, &path, *why);
                continue;
            }
            let message = match closest(name, known.iter().copied()) {
                Some(k) => {
                    self.suggested.push(k);
                    format!("unknown key `{name}`; did you mean `{k}`?")
                }
                None => format!(
                    "unknown key `{name}` in {}; known keys: {}",
                    self.what,
                    known.join(", ")
                ),
            };
            cx.error(key.span().start, &path, message);
        }
    }

    /// An optional key: `Ok(None)` when absent, `Err` when present but invalid (reported).
    fn opt<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &str, &'a Value<'i>) -> R<T>,
    ) -> R<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => read(cx, &self.key_path(key), v).map(Some),
        }
    }

    /// A required key; its absence is reported at the start of this table.
    fn req<T>(
        &self,
        cx: &mut Cx,
        key: &str,
        read: impl FnOnce(&mut Cx, &str, &'a Value<'i>) -> R<T>,
    ) -> R<T> {
        match self.get(key) {
            None if self.suggested.contains(&key) => Err(Reported),
            None => Err(cx.error(
                self.at,
                &self.key_path(key),
                format!("missing required key `{key}` in {}", self.what),
            )),
            Some(v) => read(cx, &self.key_path(key), v),
        }
    }
}

/// The value, or `default` when absent or invalid (invalid is already reported).
fn or<T>(r: R<Option<T>>, default: T) -> T {
    r.ok().flatten().unwrap_or(default)
}

fn kind_of(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn wrong_type(cx: &mut Cx, path: &str, v: &Value, expected: &str) -> Reported {
    cx.error(
        v.span().start,
        path,
        format!("expected {expected}, found {}", kind_of(v.get_ref())),
    )
}

fn string<'a>(cx: &mut Cx, path: &str, v: &'a Value) -> R<&'a str> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s),
        _ => Err(wrong_type(cx, path, v, "a string")),
    }
}

fn boolean(cx: &mut Cx, path: &str, v: &Value) -> R<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(wrong_type(cx, path, v, "a boolean (true or false)")),
    }
}

/// An integer in `min..=max`.
fn integer(cx: &mut Cx, path: &str, v: &Value, min: i128, max: i128) -> R<i128> {
    let DeValue::Integer(i) = v.get_ref() else {
        return Err(wrong_type(cx, path, v, "an integer"));
    };
    let n = i128::from_str_radix(i.as_str(), i.radix()).ok();
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            let shown = i.to_string();
            let range = if max >= i128::from(u32::MAX) {
                format!("must be at least {min}")
            } else {
                format!("must be between {min} and {max}")
            };
            Err(cx.error(v.span().start, path, format!("{range}, got {shown}")))
        }
    }
}

/// An integer that must fit a `u32` and be at least `min`.
fn u32_at_least(cx: &mut Cx, path: &str, v: &Value, min: u32) -> R<u32> {
    let n = integer(cx, path, v, i128::from(min), i128::from(u32::MAX))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn duration(cx: &mut Cx, path: &str, v: &Value) -> R<Duration> {
    let DeValue::String(s) = v.get_ref() else {
        return Err(wrong_type(
            cx,
            path,
            v,
            "a duration string such as \"2s\" or \"500ms\"",
        ));
    };
    parse_duration(s).map_err(|m| cx.error(v.span().start, path, m))
}

/// Whether port 0 ("any free port") makes sense for this address.
#[derive(Clone, Copy, PartialEq)]
enum Port0 {
    /// Listeners: the OS picks a port; handy in tests.
    Allowed,
    /// Backends and the sorry server: we must connect to a real port.
    Rejected,
}

fn address(cx: &mut Cx, path: &str, v: &Value, port0: Port0) -> R<SocketAddr> {
    let DeValue::String(s) = v.get_ref() else {
        return Err(wrong_type(
            cx,
            path,
            v,
            "an address string such as \"127.0.0.1:8080\"",
        ));
    };
    let addr = parse_socket_addr(s).map_err(|m| cx.error(v.span().start, path, m))?;
    if port0 == Port0::Rejected && addr.port() == 0 {
        return Err(cx.error(
            v.span().start,
            path,
            format!(
                "port 0 is not allowed here; write the port the backend listens on, e.g. \"{}\"",
                SocketAddr::new(addr.ip(), 8080)
            ),
        ));
    }
    Ok(addr)
}

/// Names appear in metrics labels, URLs of the admin API and log lines, so they are kept to
/// characters that need no quoting anywhere.
fn name(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    if valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(cx.error(
            v.span().start,
            path,
            format!("invalid name \"{s}\"; use 1 to 64 letters, digits, `-`, `_` or `.`"),
        ))
    }
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn table<'a, 'i>(
    cx: &mut Cx,
    path: &str,
    v: &'a Value<'i>,
    what: &'static str,
) -> R<Table<'a, 'i>> {
    match v.get_ref() {
        DeValue::Table(map) => Ok(Table {
            map,
            at: v.span().start,
            path: path.to_string(),
            what,
            suggested: Vec::new(),
        }),
        _ => Err(wrong_type(cx, path, v, "a table")),
    }
}

/// `[[name]]` tables (or an array of inline tables, which TOML treats the same).
fn array_of_tables<'a, 'i>(
    cx: &mut Cx,
    path: &str,
    v: &'a Value<'i>,
    hint: &str,
) -> R<&'a [Value<'i>]> {
    match v.get_ref() {
        DeValue::Array(a) => Ok(a),
        _ => Err(wrong_type(
            cx,
            path,
            v,
            &format!("an array of tables ({hint})"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The schema

const ROOT_KEYS: &[&str] = &[
    "runtime",
    "admin",
    "pool",
    "service",
    "vrrp",
    "vrrp_script",
    "cluster",
];
/// Keys shown in the design but not implemented yet: say "planned", not "misspelt".
const PLANNED: &[(&str, &str)] = &[];
const RUNTIME_KEYS: &[&str] = &["workers", "drain_timeout"];
const ADMIN_KEYS: &[&str] = &["listen", "token_file"];
const POOL_KEYS: &[&str] = &[
    "name",
    "scheduler",
    "sorry_server",
    "health",
    "backends",
    "queue_timeout",
    "retries",
    "retry_budget",
    "outlier",
    "slow_start",
    "host",
    "keepalive",
    "tls",
    "protocol",
    "proxy_protocol",
    "expected_load",
];
const OUTLIER_KEYS: &[&str] = &[
    "consecutive_connect_failures",
    "consecutive_5xx",
    "base_ejection_time",
    "max_ejection_time",
    "max_ejection_percent",
];
const BACKEND_KEYS: &[&str] = &[
    "address",
    "weight",
    "backup",
    "max_connections",
    "health",
    "capacity",
];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "listen",
    "mode",
    "pool",
    "connect_timeout",
    "connect_timeout_min",
    "header_timeout",
    "response_timeout",
    "idle_timeout",
    "max_header_size",
    "persistence",
    "routes",
    "request_headers",
    "response_headers",
    "max_request_body",
    "max_connections",
    "buffer_requests",
    "buffer_responses",
    "tls",
    "https_redirect",
    "accept_proxy_protocol",
    "responses",
    "max_flows",
    "access_log",
];
const SERVICE_HTTP_ONLY: &[&str] = &[
    "tls",
    "https_redirect",
    "buffer_requests",
    "buffer_responses",
    "header_timeout",
    "response_timeout",
    "max_header_size",
    "routes",
    "request_headers",
    "response_headers",
    "max_request_body",
];
/// Keys of tcp and http services that mean nothing to a udp one (beside the http-only keys),
/// with why: a udp service has no connect and no connections.
const SERVICE_NOT_UDP: &[(&str, &str)] = &[
    ("connect_timeout", "a datagram needs no connect"),
    ("connect_timeout_min", "a datagram needs no connect"),
    (
        "max_connections",
        "flows are limited per worker with `max_flows`",
    ),
    (
        "accept_proxy_protocol",
        "the PROXY protocol is read on TCP connections only",
    ),
];
const SERVICE_UDP_ONLY: &[&str] = &["responses", "max_flows"];

/// Stands in for an address that failed to parse; never returned, since that error fails the
/// whole parse.
const PLACEHOLDER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Upper bound on `workers`: far above any real machine, low enough to catch a typo'd
/// `workers = 80000` before it spawns that many threads.
const MAX_WORKERS: i128 = 1024;

fn config(cx: &mut Cx, root: &DeTable) -> Config {
    let mut root = Table {
        map: root,
        at: 0,
        path: String::new(),
        what: "the top level",
        suggested: Vec::new(),
    };
    root.check_keys(cx, ROOT_KEYS);

    let runtime = root
        .get("runtime")
        .map(|v| runtime(cx, v))
        .unwrap_or_default();
    let (admin, admin_at) = match root.get("admin") {
        Some(v) => admin(cx, v),
        None => (Ok(Admin::default()), None),
    };
    let pools = match root.get("pool") {
        Some(v) => pools(cx, v),
        None => Vec::new(),
    };
    let cluster = root
        .get("cluster")
        .and_then(|v| persistence::cluster(cx, v).map(|c| (c, v.span().start)));
    let mut listens = Vec::new();
    let services = match root.get("service") {
        Some(v) => services(
            cx,
            v,
            &pools,
            admin.as_ref().ok().map(|a| (a.listen, admin_at)),
            &mut listens,
        ),
        None => Vec::new(),
    };
    let scripts = match root.get("vrrp_script") {
        Some(v) => vrrp_ops::scripts(cx, v),
        None => (Vec::new(), false),
    };
    let vrrp = match root.get("vrrp") {
        Some(v) => vrrp::vrrps(cx, v, &pools, &scripts),
        None => Vec::new(),
    };
    vrrp::single_points_of_failure(cx, &vrrp, &listens);
    let vrrp: Vec<Vrrp> = vrrp.into_iter().map(|(v, _, _)| v).collect();
    if let Some((c, at)) = &cluster {
        spof::cluster_warnings(cx, *at, c, &vrrp);
    }
    let cluster = cluster.map(|(c, _)| c);
    Config {
        runtime,
        admin: admin.unwrap_or_default(),
        pools: pools.into_iter().map(|p| p.pool).collect(),
        services,
        vrrp,
        vrrp_scripts: scripts.0,
        cluster,
    }
}

fn runtime(cx: &mut Cx, v: &Value) -> Runtime {
    let d = Runtime::default();
    let Ok(mut t) = table(cx, "runtime", v, "[runtime]") else {
        return d;
    };
    t.check_keys(cx, RUNTIME_KEYS);
    let workers = t
        .opt(cx, "workers", |cx, p, v| integer(cx, p, v, 1, MAX_WORKERS))
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok());
    Runtime {
        workers,
        drain_timeout: or(t.opt(cx, "drain_timeout", duration), d.drain_timeout),
    }
}

/// The admin settings and where `listen` is written (for conflict messages).
fn admin(cx: &mut Cx, v: &Value) -> (R<Admin>, Option<usize>) {
    let mut t = match table(cx, "admin", v, "[admin]") {
        Ok(t) => t,
        Err(e) => return (Err(e), None),
    };
    t.check_keys(cx, ADMIN_KEYS);
    let at = t.get("listen").map(|v| v.span().start);
    let listen = t.opt(cx, "listen", |cx, p, v| address(cx, p, v, Port0::Allowed));
    let token = t.opt(cx, "token_file", admin_token);
    let (Ok(listen), Ok(token)) = (listen, token) else {
        return (Err(Reported), at);
    };
    let listen = listen.unwrap_or(Admin::default().listen);
    // Off loopback every request needs the token (it shows the topology and can drain
    // backends), so there must be one.
    if !listen.ip().is_loopback() && token.is_none() {
        let e = cx.error(
            at.unwrap_or(t.at),
            "admin.listen",
            format!(
                "{listen} is not a loopback address, so every request to the admin API needs a \
                 token: set [admin] token_file to a file holding one (e.g. `openssl rand -hex 32 \
                 > /etc/tandem/admin.token`), or listen on 127.0.0.1"
            ),
        );
        return (Err(e), at);
    }
    (Ok(Admin { listen, token }), at)
}

/// `[admin] token_file`: the file's content without trailing newlines, at least
/// [`Secret::MIN_LEN`] bytes of visible ASCII (it travels in an `Authorization` header).
fn admin_token(cx: &mut Cx, path: &str, v: &Value) -> R<Secret> {
    let file = string(cx, path, v)?;
    let mut bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return Err(cx.error(v.span().start, path, format!("cannot read {file}: {e}"))),
    };
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(cx.error(
            v.span().start,
            path,
            format!("the token in {file} must be printable ASCII without spaces (it is sent in an HTTP header)"),
        ));
    }
    if bytes.len() < Secret::MIN_LEN {
        return Err(cx.error(
            v.span().start,
            path,
            format!(
                "the token in {file} is {} bytes; use at least {} (e.g. `openssl rand -hex 32`)",
                bytes.len(),
                Secret::MIN_LEN
            ),
        ));
    }
    Ok(Secret(bytes))
}

/// A pool as parsed; `name` is `None` when it was missing or invalid, so services naming a
/// pool that *is* there but broken are not also told the pool does not exist.
struct ParsedPool {
    name: Option<String>,
    pool: Pool,
}

fn pools(cx: &mut Cx, v: &Value) -> Vec<ParsedPool> {
    let Ok(items) = array_of_tables(cx, "pool", v, "write each pool as [[pool]]") else {
        return Vec::new();
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(mut t) = table(cx, &format!("pool[{i}]"), item, "[[pool]]") else {
            continue;
        };
        let pool_name = named(cx, &mut t, "pool", POOL_KEYS, &mut seen);
        let pool = pool(cx, &t, pool_name.clone().unwrap_or_default());
        out.push(ParsedPool {
            name: pool_name,
            pool,
        });
    }
    out
}

/// Read the `name` of a `[[pool]]` or `[[service]]`, check it is unique and the table's other
/// keys are known, and give the table its readable path (`pool[web]`). The first table of a
/// name gets that path; later duplicates keep their index (`pool[1]`) so every error still
/// points at one table unambiguously. Returns the name if it is valid, duplicate or not.
fn named(
    cx: &mut Cx,
    t: &mut Table,
    kind: &str,
    known: &[&'static str],
    seen: &mut HashMap<String, usize>,
) -> Option<String> {
    let peek = t.get("name").and_then(|v| match v.get_ref() {
        DeValue::String(s) if valid_name(s) && !seen.contains_key(s.as_ref()) => {
            Some(s.to_string())
        }
        _ => None,
    });
    if let Some(n) = peek {
        t.path = format!("{kind}[{n}]");
    }
    // Keys before `name` itself, so a misspelt `nmae` is one error, not two.
    t.check_keys(cx, known);
    let n = t.req(cx, "name", name).ok()?;
    let at = t.get("name").map(|v| v.span().start).unwrap_or(t.at);
    if let Some(&first) = seen.get(&n) {
        let line = cx.line(first);
        cx.error(
            at,
            &t.key_path("name"),
            format!("duplicate {kind} name `{n}`; first defined on line {line}"),
        );
    } else {
        seen.insert(n.clone(), at);
    }
    Some(n)
}

fn pool(cx: &mut Cx, t: &Table, name: String) -> Pool {
    let scheduler = t.opt(cx, "scheduler", |cx, p, v| {
        let s = string(cx, p, v)?;
        SchedulerKind::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = SchedulerKind::ALL.iter().map(|(n, _)| *n).collect();
            let hint = match closest(s, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`? "),
                None => String::new(),
            };
            cx.error(
                v.span().start,
                p,
                format!(
                    "unknown scheduler `{s}`; {hint}valid schedulers: {}",
                    names.join(", ")
                ),
            )
        })
    });
    let sorry_server = t
        .opt(cx, "sorry_server", |cx, p, v| {
            address(cx, p, v, Port0::Rejected)
        })
        .ok()
        .flatten();
    let health = match t.get("health") {
        Some(v) => health(cx, &t.key_path("health"), v),
        None => HealthCheck::default(),
    };
    let backends = t
        .req(cx, "backends", |cx, p, v| Ok(backends(cx, p, v)))
        .unwrap_or_default();
    let proxy_protocol = proxy_protocol(cx, t, &health, &backends);
    let expected_load = t.opt(cx, "expected_load", capacity::rate).ok().flatten();
    capacity::check_units(cx, t, &backends, expected_load);
    let pool = Pool {
        name,
        scheduler: or(scheduler, Pool::DEFAULT_SCHEDULER),
        sorry_server,
        health,
        backends,
        queue_timeout: or(
            t.opt(cx, "queue_timeout", duration),
            Pool::DEFAULT_QUEUE_TIMEOUT,
        ),
        retries: retries(cx, t),
        outlier: match t.get("outlier") {
            Some(v) => outlier(cx, &t.key_path("outlier"), v),
            None => Outlier::default(),
        },
        slow_start: t.opt(cx, "slow_start", duration).ok().flatten(),
        host: t
            .opt(cx, "host", |cx, p, v| {
                let s = string(cx, p, v)?;
                let ok = !s.is_empty()
                    && s.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                    });
                if ok {
                    Ok(s.to_string())
                } else {
                    Err(cx.error(
                        v.span().start,
                        p,
                        format!("invalid host {s:?}: a host name or address, with an optional port, e.g. \"app.internal\" or \"app.internal:8080\""),
                    ))
                }
            })
            .ok()
            .flatten(),
        keepalive: or(t.opt(cx, "keepalive", boolean), true),
        tls: t.opt(cx, "tls", backend_tls).ok().flatten(),
        protocol: or(
            t.opt(cx, "protocol", |cx, p, v| match string(cx, p, v)? {
                "http1" => Ok(BackendProtocol::Http1),
                "h2" => Ok(BackendProtocol::H2),
                s => Err(cx.error(
                    v.span().start,
                    p,
                    format!("unknown protocol `{s}`; write \"http1\" or \"h2\" (HTTP/2 to the backends, cleartext or over tls)"),
                )),
            }),
            BackendProtocol::Http1,
        ),
        proxy_protocol,
        expected_load,
    };
    spof::pool_warnings(cx, t, &pool);
    capacity::n_plus_one_warnings(cx, t, &pool);
    pool
}

/// `tls = true` or `tls = { ca_file, sni, verify }` on a pool.
fn backend_tls(cx: &mut Cx, path: &str, v: &Value) -> R<BackendTls> {
    const KEYS: &[&str] = &["ca_file", "sni", "verify"];
    match v.get_ref() {
        DeValue::Boolean(true) => Ok(BackendTls {
            verify: true,
            ..BackendTls::default()
        }),
        DeValue::Boolean(false) => Err(cx.error(
            v.span().start,
            path,
            "leave `tls` out for cleartext backends",
        )),
        DeValue::Table(_) => {
            let mut t = table(cx, path, v, "the backend tls table")?;
            t.check_keys(cx, KEYS);
            let ca_file = t
                .opt(cx, "ca_file", |cx, p, v| {
                    let s = string(cx, p, v)?;
                    let path = std::path::PathBuf::from(s);
                    use rustls_pki_types::pem::PemObject;
                    match rustls_pki_types::CertificateDer::pem_file_iter(&path) {
                        Ok(it) => {
                            let mut it = it;
                            if it.next().is_some_and(|c| c.is_ok()) {
                                Ok(path)
                            } else {
                                Err(cx.error(
                                    v.span().start,
                                    p,
                                    format!("{s} has no PEM certificate"),
                                ))
                            }
                        }
                        Err(e) => Err(cx.error(v.span().start, p, format!("cannot read {s}: {e}"))),
                    }
                })
                .ok()
                .flatten();
            let sni = t
                .opt(cx, "sni", |cx, p, v| {
                    let s = string(cx, p, v)?;
                    rustls_pki_types::ServerName::try_from(s.to_string())
                        .map(|_| s.to_string())
                        .map_err(|_| {
                            cx.error(v.span().start, p, format!("invalid server name {s:?}"))
                        })
                })
                .ok()
                .flatten();
            let verify = or(t.opt(cx, "verify", boolean), true);
            Ok(BackendTls {
                ca_file,
                sni,
                verify,
            })
        }
        _ => Err(wrong_type(
            cx,
            path,
            v,
            "true, or a table { ca_file = ..., sni = ..., verify = ... }",
        )),
    }
}

/// `[[pool]] proxy_protocol = "v1" | "v2"`, with a warning for health checks that talk to the
/// backend's traffic port: they send no PROXY header, which a backend requiring one refuses.
fn proxy_protocol(
    cx: &mut Cx,
    t: &Table,
    health: &HealthCheck,
    backends: &[Backend],
) -> Option<ProxyProtocol> {
    let version = t
        .opt(cx, "proxy_protocol", |cx, p, v| {
            let s = string(cx, p, v)?;
            match s {
                "v1" => Ok(ProxyProtocol::V1),
                "v2" => Ok(ProxyProtocol::V2),
                _ => Err(cx.error(
                    v.span().start,
                    p,
                    format!("unknown PROXY protocol version `{s}`; write \"v1\" or \"v2\" (or leave the key out to send none)"),
                )),
            }
        })
        .ok()
        .flatten()?;
    let talks_to_traffic_port = |h: &HealthCheck| {
        matches!(
            h.kind,
            HealthKind::Http { port: None, .. }
                | HealthKind::Https { port: None, .. }
                | HealthKind::Smtp { port: None, .. }
        )
    };
    let mut checks =
        std::iter::once(health).chain(backends.iter().filter_map(|b| b.health.as_ref()));
    if let Some(h) = checks.find(|h| talks_to_traffic_port(h)) {
        let at = t.get("proxy_protocol").map_or(t.at, |v| v.span().start);
        cx.warn(
            at,
            &t.key_path("proxy_protocol"),
            format!(
                "`{}` health checks send no PROXY header, so a backend that requires one fails them; use kind = \"tcp\" (a bare connect) or give the check a `port` that speaks without the header",
                h.kind.name()
            ),
        );
    }
    Some(version)
}

/// `responses` and `max_flows` of a udp service.
fn udp_flows(cx: &mut Cx, t: &Table) -> UdpFlows {
    let d = UdpFlows::default();
    UdpFlows {
        responses: t
            .opt(cx, "responses", |cx, p, v| u32_at_least(cx, p, v, 1))
            .ok()
            .flatten(),
        max_flows: or(
            t.opt(cx, "max_flows", |cx, p, v| {
                integer(cx, p, v, 1, i128::from(UdpFlows::MAX_MAX_FLOWS))
            })
            .map(|n| n.and_then(|n| u32::try_from(n).ok())),
            d.max_flows,
        ),
    }
}

fn retries(cx: &mut Cx, t: &Table) -> Retries {
    let d = Retries::default();
    let max = t.opt(cx, "retries", |cx, p, v| integer(cx, p, v, 0, 10));
    let budget = t.opt(cx, "retry_budget", |cx, p, v| integer(cx, p, v, 0, 100));
    Retries {
        max: or(max, d.max.into()).try_into().unwrap_or(d.max),
        budget_percent: or(budget, d.budget_percent.into())
            .try_into()
            .unwrap_or(d.budget_percent),
    }
}

fn outlier(cx: &mut Cx, path: &str, v: &Value) -> Outlier {
    let d = Outlier::default();
    let Ok(mut t) = table(cx, path, v, "the outlier table") else {
        return d;
    };
    t.check_keys(cx, OUTLIER_KEYS);
    let count = |cx: &mut Cx, key: &str, default: u32| {
        or(
            t.opt(cx, key, |cx, p, v| u32_at_least(cx, p, v, 0)),
            default,
        )
    };
    let consecutive_connect_failures = count(
        cx,
        "consecutive_connect_failures",
        d.consecutive_connect_failures,
    );
    let consecutive_5xx = count(cx, "consecutive_5xx", d.consecutive_5xx);
    let base = t.opt(cx, "base_ejection_time", duration);
    let max = t.opt(cx, "max_ejection_time", duration);
    if let (Ok(Some(b)), Ok(Some(m)), Some(v)) = (&base, &max, t.get("max_ejection_time")) {
        if m < b {
            cx.error(
                v.span().start,
                &t.key_path("max_ejection_time"),
                format!(
                    "max_ejection_time ({m:?}) must not be shorter than base_ejection_time ({b:?})"
                ),
            );
        }
    }
    let percent = t.opt(cx, "max_ejection_percent", |cx, p, v| {
        integer(cx, p, v, 0, 100)
    });
    let base = or(base, d.base_ejection_time);
    Outlier {
        consecutive_connect_failures,
        consecutive_5xx,
        base_ejection_time: base,
        max_ejection_time: or(max, d.max_ejection_time.max(base)),
        max_ejection_percent: or(percent, d.max_ejection_percent.into())
            .try_into()
            .unwrap_or(d.max_ejection_percent),
    }
}

fn backends(cx: &mut Cx, path: &str, v: &Value) -> Vec<Backend> {
    let Ok(items) = array_of_tables(cx, path, v, "e.g. [{ address = \"127.0.0.1:8001\" }]") else {
        return Vec::new();
    };
    if items.is_empty() {
        cx.error(
            v.span().start,
            path,
            "pool has no backends; add at least one, e.g. { address = \"127.0.0.1:8001\" }",
        );
        return Vec::new();
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(mut t) = table(cx, &format!("{path}[{i}]"), item, "a backend") else {
            continue;
        };
        t.check_keys(cx, BACKEND_KEYS);
        let address = t.req(cx, "address", |cx, p, v| address(cx, p, v, Port0::Rejected));
        if let (Ok(a), Some(v)) = (&address, t.get("address")) {
            if let Some(&first) = seen.get(a) {
                cx.error(
                    v.span().start,
                    &t.key_path("address"),
                    format!("backend {a} is listed twice in this pool (first as {path}[{first}])"),
                );
            } else {
                seen.insert(*a, i);
            }
        }
        let weight = t.opt(cx, "weight", |cx, p, v| integer(cx, p, v, 0, 65535));
        let backup = t.opt(cx, "backup", boolean);
        let max_connections = t
            .opt(cx, "max_connections", |cx, p, v| u32_at_least(cx, p, v, 1))
            .ok()
            .flatten();
        let health = t
            .get("health")
            .map(|v| health(cx, &t.key_path("health"), v));
        let capacity = t.opt(cx, "capacity", capacity::rate).ok().flatten();
        out.push(Backend {
            capacity,
            health,
            address: address.unwrap_or(PLACEHOLDER_ADDR),
            weight: or(weight, 1).try_into().unwrap_or(1),
            backup: or(backup, false),
            max_connections,
        });
    }
    out
}

/// Who already listens where, for conflict messages.
struct Listener {
    addr: SocketAddr,
    /// A UDP socket (`mode = "udp"`); everything else (http, tcp, the admin API) is TCP, and
    /// a TCP and a UDP socket on the same address do not conflict.
    udp: bool,
    at: Option<usize>,
    owner: String,
}

/// Two listeners that could not both bind: the same address, or the same port where one is
/// the unspecified address of the same family (`0.0.0.0:80` takes every IPv4 `:80`). Port 0
/// never conflicts: each listener gets its own free port.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

fn services(
    cx: &mut Cx,
    v: &Value,
    pools: &[ParsedPool],
    admin: Option<(SocketAddr, Option<usize>)>,
    listens: &mut Vec<(SocketAddr, usize, String)>,
) -> Vec<Service> {
    let Ok(items) = array_of_tables(cx, "service", v, "write each service as [[service]]") else {
        return Vec::new();
    };
    let mut pool_names: Vec<&str> = Vec::new();
    for name in pools.iter().filter_map(|p| p.name.as_deref()) {
        if !pool_names.contains(&name) {
            pool_names.push(name);
        }
    }
    // A pool with a broken name still exists as far as services are concerned (see ParsedPool).
    let broken_pools = pools.iter().any(|p| p.name.is_none());
    let mut listeners: Vec<Listener> = admin
        .map(|(addr, at)| Listener {
            addr,
            udp: false,
            at,
            owner: match at {
                Some(_) => "the admin API".to_string(),
                None => "the admin API (its default; set [admin] listen to move it)".to_string(),
            },
        })
        .into_iter()
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(mut t) = table(cx, &format!("service[{i}]"), item, "[[service]]") else {
            continue;
        };
        let svc_name = named(cx, &mut t, "service", SERVICE_KEYS, &mut seen);

        let mode = t.opt(cx, "mode", |cx, p, v| {
            let s = string(cx, p, v)?;
            match s {
                "http" => Ok(Mode::Http),
                "tcp" => Ok(Mode::Tcp),
                "udp" => Ok(Mode::Udp),
                _ => Err(cx.error(
                    v.span().start,
                    p,
                    format!("unknown mode `{s}`; valid modes: http, tcp, udp"),
                )),
            }
        });
        // Keys that do not apply to the mode are only reported when the mode itself is valid:
        // with a typo in `mode`, "applies only to..." would be noise.
        let mode_ok = mode.is_ok();
        let mode = or(mode, Mode::Http);
        let udp = mode == Mode::Udp;

        let listen = t.req(cx, "listen", |cx, p, v| address(cx, p, v, Port0::Allowed));
        if let (Ok(addr), Some(v)) = (&listen, t.get("listen")) {
            let at = v.span().start;
            if let Some(other) = listeners
                .iter()
                .find(|l| l.udp == udp && conflicts(*addr, l.addr))
            {
                let place = other
                    .at
                    .map(|a| format!(" on line {}", cx.line(a)))
                    .unwrap_or_default();
                let what = if *addr == other.addr {
                    format!(
                        "listen address {addr} is already used by {}{place}",
                        other.owner
                    )
                } else {
                    format!(
                        "listen address {addr} overlaps {} of {}{place}",
                        other.addr, other.owner
                    )
                };
                cx.error(at, &t.key_path("listen"), what);
            }
            listeners.push(Listener {
                addr: *addr,
                udp,
                at: Some(at),
                owner: format!("service `{}`", svc_name.as_deref().unwrap_or("?")),
            });
            listens.push((*addr, at, t.key_path("listen")));
        }

        let pool = t.req(cx, "pool", |cx, p, v| {
            let s = string(cx, p, v)?;
            if pool_names.contains(&s) || broken_pools {
                return Ok(s.to_string());
            }
            let hint = match closest(s, pool_names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None if pool_names.is_empty() => "no [[pool]] is defined".to_string(),
                None => format!("defined pools: {}", pool_names.join(", ")),
            };
            Err(cx.error(v.span().start, p, format!("no pool named `{s}`; {hint}")))
        });

        // A service whose pool points back at its own listener would forward every request
        // to itself until file descriptors run out.
        if let (Ok(pool_name), Ok(addr), Some(v)) = (&pool, &listen, t.get("pool")) {
            let mut targets = pools
                .iter()
                .filter(|p| p.name.as_deref() == Some(pool_name.as_str()))
                .flat_map(|p| {
                    p.pool
                        .backends
                        .iter()
                        .map(|b| b.address)
                        .chain(p.pool.sorry_server)
                });
            if let Some(target) = targets.find(|b| conflicts(*addr, *b)) {
                cx.error(
                    v.span().start,
                    &t.key_path("pool"),
                    format!("pool `{pool_name}` sends traffic to {target}, which is this service's own listen address {addr}; requests would loop"),
                );
            }
        }

        if let (Ok(pool_name), true) = (&pool, mode_ok) {
            if let Some(p) = pools
                .iter()
                .find(|p| p.name.as_deref() == Some(pool_name.as_str()))
            {
                capacity::service_unit_warning(cx, &t, mode, &p.pool);
            }
        }

        let mut skip = Vec::new();
        if matches!(mode, Mode::Tcp | Mode::Udp) {
            // In tcp mode, header_timeout bounds the wait for a PROXY header, so it is
            // meaningful there only with accept_proxy_protocol.
            let accepts_proxy = mode == Mode::Tcp && t.get("accept_proxy_protocol").is_some();
            for key in SERVICE_HTTP_ONLY {
                if *key == "header_timeout" && accepts_proxy {
                    continue;
                }
                if let Some(at) = t.key_at(key) {
                    cx.error(at, &t.key_path(key), format!("`{key}` applies only to mode = \"http\"; this service is mode = \"{}\"", mode.name()));
                    skip.push(*key);
                }
            }
        }
        if udp {
            for (key, why) in SERVICE_NOT_UDP {
                if let Some(at) = t.key_at(key) {
                    cx.error(
                        at,
                        &t.key_path(key),
                        format!("`{key}` does not apply to mode = \"udp\": {why}"),
                    );
                    skip.push(*key);
                }
            }
        } else if mode_ok {
            for key in SERVICE_UDP_ONLY {
                if let Some(at) = t.key_at(key) {
                    cx.error(
                        at,
                        &t.key_path(key),
                        format!(
                            "`{key}` applies only to mode = \"udp\"; this service is mode = \"{}\"",
                            mode.name()
                        ),
                    );
                }
            }
        }
        let d = Timeouts::default();
        let timeout = |cx: &mut Cx, key: &str, default: Duration| {
            if skip.contains(&key) {
                default
            } else {
                or(t.opt(cx, key, duration), default)
            }
        };
        let connect = timeout(cx, "connect_timeout", d.connect);
        let connect_min = if skip.contains(&"connect_timeout_min") {
            Ok(None)
        } else {
            t.opt(cx, "connect_timeout_min", duration)
        };
        if let (Ok(Some(min)), Some(v)) = (&connect_min, t.get("connect_timeout_min")) {
            if *min > connect {
                cx.error(
                    v.span().start,
                    &t.key_path("connect_timeout_min"),
                    format!("connect_timeout_min ({min:?}) must not exceed connect_timeout ({connect:?})"),
                );
            }
        }
        let timeouts = Timeouts {
            connect,
            // An absent floor adapts to a short ceiling rather than failing the check above.
            connect_min: or(connect_min, d.connect_min.min(connect)),
            header: timeout(cx, "header_timeout", d.header),
            response: timeout(cx, "response_timeout", d.response),
            idle: timeout(
                cx,
                "idle_timeout",
                if udp { UdpFlows::DEFAULT_IDLE } else { d.idle },
            ),
        };
        let (lo, hi) = Service::MAX_HEADER_SIZE_RANGE;
        let max_header_size = if skip.contains(&"max_header_size") {
            Service::DEFAULT_MAX_HEADER_SIZE
        } else {
            t.opt(cx, "max_header_size", |cx, p, v| {
                integer(cx, p, v, lo as i128, hi as i128)
            })
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(Service::DEFAULT_MAX_HEADER_SIZE)
        };
        let persistence = t
            .opt(cx, "persistence", |cx, p, v| {
                persistence::persistence(cx, p, v, mode)
            })
            .ok()
            .flatten();
        // A udp flow carries nothing but its source address to persist on. (Dropped after the
        // error, so the header kind's scheduler check below does not pile on.)
        let persistence = match persistence {
            Some(p) if udp && !matches!(p.kind, PersistenceKind::SourceIp { .. }) => {
                let v = t.get("persistence");
                let at = v
                    .and_then(|v| match v.get_ref() {
                        DeValue::Table(pt) => pt.get("kind").map(|k| k.span().start),
                        _ => None,
                    })
                    .or(v.map(|v| v.span().start))
                    .unwrap_or(t.at);
                cx.error(
                    at,
                    &format!("{}.kind", t.key_path("persistence")),
                    format!("{} persistence needs HTTP (mode = \"http\"); a udp service can persist by source_ip only", p.kind.name()),
                );
                None
            }
            p => p,
        };
        // Header persistence hashes with the pool's own scheduler: it must be a hashing one.
        if let (
            Some(Persistence {
                kind: PersistenceKind::Header { .. },
                ..
            }),
            Ok(pool_name),
        ) = (&persistence, &pool)
        {
            let scheduler = pools
                .iter()
                .find(|p| p.name.as_deref() == Some(pool_name.as_str()))
                .map(|p| p.pool.scheduler);
            if let Some(s) =
                scheduler.filter(|s| !matches!(s, SchedulerKind::Maglev | SchedulerKind::Sh))
            {
                let at = t.get("persistence").map_or(t.at, |v| v.span().start);
                cx.error(
                    at,
                    &t.key_path("persistence"),
                    format!("header persistence hashes the header onto the pool with its scheduler, and pool `{pool_name}` uses `{}`; set scheduler = \"maglev\" (or \"sh\") on it", s.name()),
                );
            }
        }
        let http_key = |k: &str| !skip.contains(&k);
        let routes = if http_key("routes") {
            t.opt(cx, "routes", |cx, p, v| {
                route::routes(cx, p, v, &pool_names, broken_pools)
            })
            .ok()
            .flatten()
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        let request_headers = if http_key("request_headers") {
            t.opt(cx, "request_headers", route::header_ops)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            HeaderOps::default()
        };
        let response_headers = if http_key("response_headers") {
            t.opt(cx, "response_headers", route::header_ops)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            HeaderOps::default()
        };
        let max_request_body = if http_key("max_request_body") {
            t.opt(cx, "max_request_body", route::size).ok().flatten()
        } else {
            None
        };
        let max_connections = if skip.contains(&"max_connections") {
            None
        } else {
            t.opt(cx, "max_connections", |cx, p, v| {
                integer(cx, p, v, 1, i128::from(u32::MAX))
            })
            .ok()
            .flatten()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let udp_flows = if udp {
            udp_flows(cx, &t)
        } else {
            UdpFlows::default()
        };
        let tls = if http_key("tls") {
            t.opt(cx, "tls", tls::tls).ok().flatten()
        } else {
            None
        };
        let mut routes = routes;
        if http_key("https_redirect") && or(t.opt(cx, "https_redirect", boolean), false) {
            if let (Some(_), Some(at)) = (&tls, t.key_at("https_redirect")) {
                cx.error(at, &t.key_path("https_redirect"), "`https_redirect` sends plain-HTTP clients to HTTPS; this service already is HTTPS (it has `tls`)");
            }
            // Before every other route: nothing is served over plain HTTP.
            routes.insert(0, tls::https_redirect_route());
        }
        let buffer_requests =
            http_key("buffer_requests") && or(t.opt(cx, "buffer_requests", boolean), false);
        let buffer_responses = if http_key("buffer_responses") {
            t.opt(cx, "buffer_responses", route::size).ok().flatten()
        } else {
            None
        };
        let accept_proxy_protocol = t
            .opt(cx, "accept_proxy_protocol", networks)
            .ok()
            .flatten()
            .unwrap_or_default();
        let access_log = if udp {
            None
        } else {
            t.opt(cx, "access_log", access_log).ok().flatten()
        };
        out.push(Service {
            name: svc_name.unwrap_or_default(),
            listen: listen.unwrap_or(PLACEHOLDER_ADDR),
            mode,
            pool: pool.unwrap_or_default(),
            timeouts,
            max_header_size,
            persistence,
            routes,
            request_headers,
            response_headers,
            max_request_body,
            max_connections,
            buffer_requests,
            buffer_responses,
            tls,
            accept_proxy_protocol,
            udp: udp_flows,
            access_log,
        });
    }
    out
}

const ACCESS_LOG_KEYS: &[&str] = &["path", "format"];

/// `access_log = { path = "...", format = "common" | "json" }`.
fn access_log(cx: &mut Cx, path: &str, v: &Value) -> R<AccessLog> {
    let mut t = table(cx, path, v, "the access_log table")?;
    t.check_keys(cx, ACCESS_LOG_KEYS);
    let target = t.req(cx, "path", |cx, p, v| {
        let s = string(cx, p, v)?;
        match s {
            "stdout" | "-" => Ok(AccessLogTarget::Stdout),
            "" => Err(cx.error(v.span().start, p, "an empty path")),
            s if !s.starts_with('/') => Err(cx.error(
                v.span().start,
                p,
                "use an absolute path (the daemon's working directory is no place for logs) or \"stdout\"",
            )),
            s => Ok(AccessLogTarget::File(std::path::PathBuf::from(s))),
        }
    });
    let format = t
        .opt(cx, "format", |cx, p, v| match string(cx, p, v)? {
            "common" => Ok(AccessLogFormat::Common),
            "json" => Ok(AccessLogFormat::Json),
            other => Err(cx.error(
                v.span().start,
                p,
                format!("unknown format `{other}`: use \"common\" or \"json\""),
            )),
        })
        .ok()
        .flatten()
        .unwrap_or(AccessLogFormat::Common);
    Ok(AccessLog {
        target: target?,
        format,
    })
}

/// A network or a list of them (`accept_proxy_protocol`): `"198.51.100.0/24"`,
/// `["198.51.100.0/24", "2001:db8::/32"]`; a bare address is a /32 or /128.
fn networks(cx: &mut Cx, path: &str, v: &Value) -> R<Vec<Cidr>> {
    let one = |cx: &mut Cx, path: &str, v: &Value| {
        let s = string(cx, path, v)?;
        Cidr::parse(s).map_err(|m| cx.error(v.span().start, path, m))
    };
    match v.get_ref() {
        DeValue::String(_) => Ok(vec![one(cx, path, v)?]),
        DeValue::Array(items) => {
            let mut out = Vec::new();
            let mut failed = false;
            for (i, item) in items.iter().enumerate() {
                match one(cx, &format!("{path}[{i}]"), item) {
                    Ok(c) => out.push(c),
                    Err(Reported) => failed = true,
                }
            }
            if failed {
                Err(Reported)
            } else {
                Ok(out)
            }
        }
        _ => Err(wrong_type(
            cx,
            path,
            v,
            "a list of networks, e.g. [\"198.51.100.0/24\", \"2001:db8::/32\"]",
        )),
    }
}
