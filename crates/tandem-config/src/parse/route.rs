//! `routes`, header operations and sizes.

use super::*;

const ROUTE_KEYS: &[&str] = &[
    "match",
    "pool",
    "redirect",
    "respond",
    "rewrite",
    "request_headers",
    "response_headers",
];
const MATCH_KEYS: &[&str] = &[
    "host",
    "path_prefix",
    "path_regex",
    "method",
    "header",
    "user_agent",
    "client_cidr",
    "query",
];
const REWRITE_KEYS: &[&str] = &["strip_prefix", "add_prefix", "path_regex", "replace"];
const REDIRECT_KEYS: &[&str] = &["status", "location"];
const RESPOND_KEYS: &[&str] = &["status", "body", "content_type"];
const OPS_KEYS: &[&str] = &["set", "add", "remove"];
const NAMED_VALUE_KEYS: &[&str] = &["name", "value"];

/// `routes = [ ... ]` of a service; `pool_names` are the defined pools (any name passes when
/// a pool's own name is broken: that is reported already).
pub(super) fn routes(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    pool_names: &[&str],
    broken_pools: bool,
) -> R<Vec<Route>> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(
            cx,
            path,
            v,
            "an array of routes, e.g. [{ match = { path_prefix = \"/static/\" }, pool = \"static\" }]",
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Ok(mut t) = table(cx, &p, item, "a route") else {
            continue;
        };
        t.check_keys(cx, ROUTE_KEYS);
        let when = match t.get("match") {
            Some(m) => route_match(cx, &t.key_path("match"), m).unwrap_or_default(),
            None => {
                cx.error(
                    t.at,
                    &t.key_path("match"),
                    "missing `match`: write the conditions of this route, e.g. match = { path_prefix = \"/api/\" } (a route for every request is the service's `pool`)",
                );
                RouteMatch::default()
            }
        };
        let actions: Vec<&str> = ["pool", "redirect", "respond"]
            .into_iter()
            .filter(|k| t.get(k).is_some())
            .collect();
        let action = match actions.as_slice() {
            ["pool"] => t
                .req(cx, "pool", |cx, p, v| {
                    let s = string(cx, p, v)?;
                    if broken_pools || pool_names.contains(&s) {
                        return Ok(RouteAction::Pool(s.to_string()));
                    }
                    let hint = match closest(s, pool_names.iter().copied()) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("defined pools: {}", pool_names.join(", ")),
                    };
                    Err(cx.error(v.span().start, p, format!("no pool named `{s}`; {hint}")))
                })
                .ok(),
            ["redirect"] => t.req(cx, "redirect", redirect).ok(),
            ["respond"] => t.req(cx, "respond", respond).ok(),
            [] => {
                cx.error(
                    t.at,
                    &p,
                    "a route needs one of `pool`, `redirect` or `respond`",
                );
                None
            }
            _ => {
                let at = t.key_at(actions[1]).unwrap_or(t.at);
                cx.error(
                    at,
                    &t.key_path(actions[1]),
                    format!(
                        "a route does one thing: `{}` and `{}` cannot both be given",
                        actions[0], actions[1]
                    ),
                );
                None
            }
        };
        let rewrite = t
            .opt(cx, "rewrite", rewrite)
            .ok()
            .flatten()
            .unwrap_or_default();
        if !rewrite.is_empty() && !matches!(action, Some(RouteAction::Pool(_)) | None) {
            let at = t.key_at("rewrite").unwrap_or(t.at);
            cx.error(
                at,
                &t.key_path("rewrite"),
                "`rewrite` applies to requests sent to a pool; this route answers itself",
            );
        }
        let request_headers = t
            .opt(cx, "request_headers", header_ops)
            .ok()
            .flatten()
            .unwrap_or_default();
        let response_headers = t
            .opt(cx, "response_headers", header_ops)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some(action) = action {
            out.push(Route {
                when,
                action,
                rewrite,
                request_headers,
                response_headers,
            });
        }
    }
    Ok(out)
}

fn route_match(cx: &mut Cx, path: &str, v: &Value) -> R<RouteMatch> {
    let mut t = table(cx, path, v, "the match table")?;
    t.check_keys(cx, MATCH_KEYS);
    let hosts = t
        .opt(cx, "host", |cx, p, v| one_or_many(cx, p, v, host_match))
        .ok()
        .flatten()
        .unwrap_or_default();
    let path_prefix = t
        .opt(cx, "path_prefix", |cx, p, v| {
            let s = string(cx, p, v)?;
            if s.starts_with('/') {
                Ok(s.to_string())
            } else {
                Err(cx.error(
                    v.span().start,
                    p,
                    format!("a path prefix starts with `/`, got {s:?}"),
                ))
            }
        })
        .ok()
        .flatten();
    let path_regex = t.opt(cx, "path_regex", regex_only).ok().flatten();
    let methods = t
        .opt(cx, "method", |cx, p, v| {
            one_or_many(cx, p, v, |cx, p, v| {
                let s = string(cx, p, v)?;
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) {
                    Ok(s.to_string())
                } else {
                    Err(cx.error(
                        v.span().start,
                        p,
                        format!("methods are upper case, e.g. \"GET\"; got {s:?}"),
                    ))
                }
            })
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    let headers = t
        .opt(cx, "header", |cx, p, v| {
            one_or_many(cx, p, v, |cx, p, v| named_value(cx, p, v, false, true))
        })
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| HeaderMatch { name, value })
        .collect();
    let user_agent = t
        .opt(cx, "user_agent", |cx, p, v| {
            let s = string(cx, p, v)?;
            Pattern::parse(s, true).map_err(|m| cx.error(v.span().start, p, m))
        })
        .ok()
        .flatten();
    let client_cidr = t
        .opt(cx, "client_cidr", |cx, p, v| {
            one_or_many(cx, p, v, |cx, p, v| {
                let s = string(cx, p, v)?;
                Cidr::parse(s).map_err(|m| cx.error(v.span().start, p, m))
            })
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    let query = t
        .opt(cx, "query", |cx, p, v| {
            one_or_many(cx, p, v, |cx, p, v| named_value(cx, p, v, true, false))
        })
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| QueryMatch { name, value })
        .collect();
    Ok(RouteMatch {
        hosts,
        path_prefix,
        path_regex,
        methods,
        headers,
        user_agent,
        client_cidr,
        query,
    })
}

/// A value or an array of them.
fn one_or_many<T>(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    mut one: impl FnMut(&mut Cx, &str, &Value) -> R<T>,
) -> R<Vec<T>> {
    match v.get_ref() {
        DeValue::Array(items) => {
            let mut out = Vec::new();
            let mut bad = false;
            for (i, item) in items.iter().enumerate() {
                match one(cx, &format!("{path}[{i}]"), item) {
                    Ok(x) => out.push(x),
                    Err(_) => bad = true,
                }
            }
            if bad {
                Err(Reported)
            } else {
                Ok(out)
            }
        }
        _ => one(cx, path, v).map(|x| vec![x]),
    }
}

fn host_match(cx: &mut Cx, path: &str, v: &Value) -> R<HostMatch> {
    let s = string(cx, path, v)?;
    let valid = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    };
    if let Some(rest) = s.strip_prefix("*.") {
        if valid(rest) {
            return Ok(HostMatch::Suffix(format!(".{}", rest.to_ascii_lowercase())));
        }
    } else if valid(s) {
        return Ok(HostMatch::Exact(s.to_ascii_lowercase()));
    }
    Err(cx.error(
        v.span().start,
        path,
        format!("invalid host {s:?}: write a name like \"example.com\" or \"*.example.com\" (no port, no scheme)"),
    ))
}

/// `"/regex/"` only.
fn regex_only(cx: &mut Cx, path: &str, v: &Value) -> R<Pattern> {
    let s = string(cx, path, v)?;
    let source = if s.starts_with('/') && s.len() > 1 && s.rfind('/').is_some_and(|i| i > 0) {
        s.to_string()
    } else {
        // A bare pattern is accepted as a regex here (the key says regex).
        format!("/{s}/")
    };
    Pattern::parse(&source, true).map_err(|m| cx.error(v.span().start, path, m))
}

/// `"name"` or `{ name = "...", value = "..." }` → (name, value pattern).
fn named_value(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    keep_case: bool,
    header: bool,
) -> R<(String, Option<Pattern>)> {
    let check_name = |cx: &mut Cx, p: &str, v: &Value, s: &str| -> R<String> {
        let ok = !s.is_empty()
            && if header {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            } else {
                !s.contains(['&', '=', '#', ' '])
            };
        if ok {
            Ok(if keep_case {
                s.to_string()
            } else {
                s.to_ascii_lowercase()
            })
        } else {
            Err(cx.error(v.span().start, p, format!("invalid name {s:?}")))
        }
    };
    match v.get_ref() {
        DeValue::String(s) => Ok((check_name(cx, path, v, s)?, None)),
        DeValue::Table(_) => {
            let mut t = table(cx, path, v, "a { name, value } table")?;
            t.check_keys(cx, NAMED_VALUE_KEYS);
            let name = t.req(cx, "name", |cx, p, v| {
                let s = string(cx, p, v)?;
                check_name(cx, p, v, s)
            })?;
            let value = t.opt(cx, "value", |cx, p, v| {
                let s = string(cx, p, v)?;
                Pattern::parse(s, false).map_err(|m| cx.error(v.span().start, p, m))
            })?;
            Ok((name, value))
        }
        _ => Err(wrong_type(
            cx,
            path,
            v,
            "a name, or a { name = ..., value = ... } table",
        )),
    }
}

fn status(cx: &mut Cx, path: &str, v: &Value, lo: i128, hi: i128) -> R<u16> {
    integer(cx, path, v, lo, hi).map(|n| u16::try_from(n).unwrap_or(500))
}

fn redirect(cx: &mut Cx, path: &str, v: &Value) -> R<RouteAction> {
    let mut t = table(cx, path, v, "the redirect table")?;
    t.check_keys(cx, REDIRECT_KEYS);
    let status = or(
        t.opt(cx, "status", |cx, p, v| {
            let s = status(cx, p, v, 300, 399)?;
            if matches!(s, 301 | 302 | 303 | 307 | 308) {
                Ok(s)
            } else {
                Err(cx.error(
                    v.span().start,
                    p,
                    format!("a redirect status is 301, 302, 303, 307 or 308; got {s}"),
                ))
            }
        }),
        302,
    );
    let location = t.req(cx, "location", |cx, p, v| {
        let s = string(cx, p, v)?;
        if s.is_empty() || s.bytes().any(|b| b.is_ascii_control()) {
            return Err(cx.error(
                v.span().start,
                p,
                "a location is a non-empty URL without control characters",
            ));
        }
        Template::parse(s).map_err(|m| cx.error(v.span().start, p, m))
    })?;
    Ok(RouteAction::Redirect { status, location })
}

fn respond(cx: &mut Cx, path: &str, v: &Value) -> R<RouteAction> {
    let mut t = table(cx, path, v, "the respond table")?;
    t.check_keys(cx, RESPOND_KEYS);
    let status = t.req(cx, "status", |cx, p, v| status(cx, p, v, 200, 599))?;
    let body = t
        .opt(cx, "body", |cx, p, v| Ok(string(cx, p, v)?.to_string()))
        .ok()
        .flatten()
        .unwrap_or_default();
    let content_type = t
        .opt(cx, "content_type", |cx, p, v| {
            let s = string(cx, p, v)?;
            if s.bytes().all(|b| (0x20..0x7f).contains(&b)) && !s.is_empty() {
                Ok(s.to_string())
            } else {
                Err(cx.error(
                    v.span().start,
                    p,
                    "a content type is printable ASCII, e.g. \"text/html; charset=utf-8\"",
                ))
            }
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| "text/plain; charset=utf-8".to_string());
    Ok(RouteAction::Respond {
        status,
        body,
        content_type,
    })
}

fn rewrite(cx: &mut Cx, path: &str, v: &Value) -> R<Rewrite> {
    let mut t = table(cx, path, v, "the rewrite table")?;
    t.check_keys(cx, REWRITE_KEYS);
    let prefix = |cx: &mut Cx, p: &str, v: &Value| -> R<String> {
        let s = string(cx, p, v)?;
        if s.starts_with('/') && s.len() > 1 && !s.ends_with('/') {
            Ok(s.to_string())
        } else {
            Err(cx.error(v.span().start, p, format!("a prefix starts with `/` and does not end with one, e.g. \"/static\"; got {s:?}")))
        }
    };
    let strip_prefix = t.opt(cx, "strip_prefix", prefix).ok().flatten();
    let add_prefix = t.opt(cx, "add_prefix", prefix).ok().flatten();
    let regex = t.opt(cx, "path_regex", regex_only).ok().flatten();
    let replace = t
        .opt(cx, "replace", |cx, p, v| {
            let s = string(cx, p, v)?;
            if s.starts_with('/') || s.starts_with('$') {
                Ok(s.to_string())
            } else {
                Err(cx.error(v.span().start, p, format!("the replacement is a path (starting with `/` or a capture like `$1`); got {s:?}")))
            }
        })
        .ok()
        .flatten();
    let path_regex = match (regex, replace) {
        (Some(r), Some(s)) => Some((r, s)),
        (None, None) => None,
        (Some(_), None) => {
            let at = t.key_at("path_regex").unwrap_or(t.at);
            cx.error(
                at,
                &t.key_path("replace"),
                "`path_regex` needs `replace`: what the path becomes, e.g. replace = \"/app/$1\"",
            );
            None
        }
        (None, Some(_)) => {
            let at = t.key_at("replace").unwrap_or(t.at);
            cx.error(
                at,
                &t.key_path("path_regex"),
                "`replace` needs `path_regex`: the pattern whose match it replaces",
            );
            None
        }
    };
    Ok(Rewrite {
        strip_prefix,
        add_prefix,
        path_regex,
    })
}

/// `request_headers` / `response_headers`.
pub(super) fn header_ops(cx: &mut Cx, path: &str, v: &Value) -> R<HeaderOps> {
    let mut t = table(cx, path, v, "a header operations table")?;
    t.check_keys(cx, OPS_KEYS);
    let pairs = |cx: &mut Cx, p: &str, v: &Value| -> R<Vec<(String, String)>> {
        let DeValue::Table(map) = v.get_ref() else {
            return Err(wrong_type(
                cx,
                p,
                v,
                "a table of header = value, e.g. { \"X-Frame-Options\" = \"DENY\" }",
            ));
        };
        let mut out = Vec::new();
        for (k, val) in map.iter() {
            let name = k.get_ref();
            let kp = format!("{p}.{name}");
            let ok_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let Ok(value) = string(cx, &kp, val) else {
                continue;
            };
            if !ok_name {
                cx.error(k.span().start, &kp, format!("invalid header name {name:?}"));
                continue;
            }
            if is_framing(name) {
                cx.error(k.span().start, &kp, format!("`{name}` is managed by tandem (message framing and connection handling) and cannot be set"));
                continue;
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                cx.error(
                    val.span().start,
                    &kp,
                    "a header value cannot contain CR, LF or NUL",
                );
                continue;
            }
            out.push((name.to_string(), value.to_string()));
        }
        Ok(out)
    };
    let set = t.opt(cx, "set", pairs).ok().flatten().unwrap_or_default();
    let add = t.opt(cx, "add", pairs).ok().flatten().unwrap_or_default();
    let remove = t
        .opt(cx, "remove", |cx, p, v| {
            one_or_many(cx, p, v, |cx, p, v| {
                let s = string(cx, p, v)?;
                if is_framing(s) {
                    return Err(cx.error(
                        v.span().start,
                        p,
                        format!("`{s}` is managed by tandem and cannot be removed"),
                    ));
                }
                Ok(s.to_ascii_lowercase())
            })
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(HeaderOps { set, add, remove })
}

/// Headers that frame messages or manage connections: tandem writes them itself.
fn is_framing(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A size: an integer of bytes, or a string with a unit (`"64KiB"`, `"10MiB"`, `"1GiB"`,
/// also `k`, `KB`, `M`, `MB`... as powers of 1024, which is what operators mean here).
pub(super) fn size(cx: &mut Cx, path: &str, v: &Value) -> R<u64> {
    match v.get_ref() {
        DeValue::Integer(_) => integer(cx, path, v, 0, i128::from(u64::MAX)).map(|n| n as u64),
        DeValue::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => 0,
            };
            match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).filter(|_| mult > 0) {
                Some(n) => Ok(n),
                None => Err(cx.error(v.span().start, path, format!("invalid size {s:?}: write a number of bytes or one with a unit, e.g. \"10MiB\", \"64KiB\""))),
            }
        }
        _ => Err(wrong_type(
            cx,
            path,
            v,
            "a size such as \"10MiB\" or a number of bytes",
        )),
    }
}
