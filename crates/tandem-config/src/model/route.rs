//! `[[service]] routes`: which pool (or which local answer) a request gets, and how it is
//! rewritten on the way; plus the header operations of services and routes.
//!
//! Everything is compiled here, at load: regexes, wildcard hosts, CIDRs. The data plane only
//! matches, without allocating.

use std::fmt;
use std::net::IpAddr;

/// One entry of `routes`, tried in order; the first whose `match` holds wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub when: RouteMatch,
    pub action: RouteAction,
    pub rewrite: Rewrite,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

/// `match = { ... }`: every condition given must hold (an empty match holds always).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteMatch {
    /// `host`: `"example.com"` (exact, case-insensitive, port ignored) or `"*.example.com"`
    /// (any subdomain, not the domain itself); a list matches any.
    pub hosts: Vec<HostMatch>,
    /// `path_prefix`: the path starts with this (query excluded).
    pub path_prefix: Option<String>,
    /// `path_regex`: the path (query excluded) matches.
    pub path_regex: Option<Pattern>,
    /// `method`: one of these methods (upper case).
    pub methods: Vec<String>,
    /// `header`: each must hold.
    pub headers: Vec<HeaderMatch>,
    /// `user_agent`: the User-Agent contains this text, or matches `/regex/`.
    pub user_agent: Option<Pattern>,
    /// `client_cidr`: the client address is in one of these networks.
    pub client_cidr: Vec<Cidr>,
    /// `query`: each parameter must be present (with this value, if given).
    pub query: Vec<QueryMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-cased.
    Exact(String),
    /// `*.example.com`, kept as `.example.com` (lower-cased).
    Suffix(String),
}

impl HostMatch {
    /// `host` without port, any case.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// `{ name = "X-Tenant" }` (present), `{ name = "X-Tenant", value = "acme" }` (equals), or
/// `{ name = "X-Tenant", value = "/^a/" }` (regex).
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    /// Lower-cased.
    pub name: String,
    pub value: Option<Pattern>,
}

/// `{ name = "beta" }` (present) or `{ name = "beta", value = "1" }`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMatch {
    pub name: String,
    pub value: Option<Pattern>,
}

/// A text condition: plain text (equals, or for `user_agent` contains), or `/regex/` with
/// optional flag `i` (`/bot/i`).
#[derive(Debug, Clone)]
pub struct Pattern {
    written: String,
    regex: regex::bytes::Regex,
}

impl Pattern {
    /// `contains`: a plain text matches anywhere rather than the whole value.
    pub fn parse(s: &str, contains: bool) -> Result<Pattern, String> {
        let (source, regex) = match parse_slashed(s) {
            Some((body, flags)) => {
                let mut prefix = String::new();
                for f in flags.chars() {
                    match f {
                        'i' => prefix.push_str("(?i)"),
                        other => {
                            return Err(format!(
                                "unknown regex flag `{other}` in {s}; the only flag is `i` (ignore case)"
                            ))
                        }
                    }
                }
                (format!("{prefix}{body}"), true)
            }
            None if contains => (regex::escape(s), false),
            None => (format!("^{}$", regex::escape(s)), false),
        };
        if regex && source.trim_start_matches("(?i)").is_empty() {
            return Err(format!(
                "{s} is an empty regular expression; it would match anything"
            ));
        }
        let regex = regex::bytes::Regex::new(&source)
            .map_err(|e| format!("invalid regular expression {s}: {}", one_line(&e)))?;
        Ok(Pattern {
            written: s.to_string(),
            regex,
        })
    }

    pub fn is_match(&self, value: &[u8]) -> bool {
        self.regex.is_match(value)
    }

    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.regex
    }

    pub fn as_written(&self) -> &str {
        &self.written
    }
}

/// `/body/flags` → (body, flags), if `s` is written that way.
fn parse_slashed(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix('/')?;
    let end = rest.rfind('/')?;
    let flags = &rest[end + 1..];
    flags
        .chars()
        .all(|c| c.is_ascii_alphabetic())
        .then(|| (&rest[..end], flags))
}

pub(crate) fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// An IPv4 or IPv6 network, `198.51.100.0/24` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("invalid network {s:?}: write an address with a prefix length, e.g. \"198.51.100.0/24\" or \"2001:db8::/32\""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}: 0 to {max}"))?,
        };
        let c = Cidr { addr, len };
        if c.network() != addr {
            return Err(format!(
                "{s} has host bits set; the network is {}/{len}",
                c.network()
            ));
        }
        Ok(c)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        }
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 clients count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & m == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & m == u128::from(n)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What a matching route does.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    /// `pool = "static"`: proxy to this pool.
    Pool(String),
    /// `redirect = { status = 301, location = "https://{host}{uri}" }`.
    Redirect { status: u16, location: Template },
    /// `respond = { status = 503, body = "...", content_type = "text/plain" }`.
    Respond {
        status: u16,
        body: String,
        content_type: String,
    },
}

/// A redirect location with `{host}`, `{path}`, `{query}` (with its `?`, or empty) and `{uri}`
/// (path and query) filled in from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Host,
    Path,
    Query,
    Uri,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {s:?}"))?;
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "host" => TemplatePart::Host,
                "path" => TemplatePart::Path,
                "query" => TemplatePart::Query,
                "uri" => TemplatePart::Uri,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} in {s:?}; use {{host}}, {{path}}, {{query}} or {{uri}}"
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }
}

/// `rewrite = { strip_prefix = "/static" }`, `{ add_prefix = "/v2" }`, or
/// `{ path_regex = "^/old/(.*)$", replace = "/app/$1" }` (applied in that order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rewrite {
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    /// The pattern and its replacement (`$1`, `${name}` refer to captures).
    pub path_regex: Option<(Pattern, String)>,
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.strip_prefix.is_none() && self.add_prefix.is_none() && self.path_regex.is_none()
    }
}

/// `{ set = { "X-A" = "1" }, add = { "X-B" = "2" }, remove = ["X-C"] }`: remove, then set
/// (replacing any value), then add (another line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    /// Lower-cased.
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}
