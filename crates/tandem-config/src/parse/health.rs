//! The `health = { ... }` table: which probe, its timings and the keys of each kind.
//!
//! Kept apart from the rest of the schema because each probe kind brings its own keys, and
//! the same table is read for a pool and for a backend that overrides it.

use super::*;

const HEALTH_KEYS: &[&str] = &[
    "kind",
    "interval",
    "timeout",
    "rise",
    "fall",
    "port",
    "method",
    "path",
    "host",
    "expect_status",
];
const HEALTH_HTTP_ONLY: &[&str] = &["method", "path", "host", "expect_status"];
pub(super) fn health(cx: &mut Cx, path: &str, v: &Value) -> HealthCheck {
    let d = HealthCheck::default();
    let Ok(mut t) = table(cx, path, v, "the health table") else {
        return d;
    };
    t.check_keys(cx, HEALTH_KEYS);

    #[derive(PartialEq)]
    enum Kind {
        None,
        Tcp,
        Http,
    }
    let kind = t.opt(cx, "kind", |cx, p, v| {
        let s = string(cx, p, v)?;
        match s {
            "none" => Ok(Kind::None),
            "tcp" => Ok(Kind::Tcp),
            "http" => Ok(Kind::Http),
            _ => Err(cx.error(
                v.span().start,
                p,
                format!("unknown health check kind `{s}`; valid kinds: none, tcp, http"),
            )),
        }
    });
    let kind = kind.map(|k| k.unwrap_or(Kind::Tcp));

    // Keys that the chosen kind would silently ignore are errors: a user who wrote
    // `path = "/healthz"` on a tcp check believes their endpoint is being probed.
    let kind_name = match &kind {
        Ok(Kind::None) => Some("none"),
        Ok(Kind::Tcp) => Some("tcp"),
        _ => None,
    };
    let not_for_kind = |cx: &mut Cx, key: &str, needs: &str| -> bool {
        match (kind_name, t.key_at(key)) {
            (Some(k), Some(at)) => {
                cx.error(
                    at,
                    &t.key_path(key),
                    format!("`{key}` applies only to {needs} health checks; this check is kind = \"{k}\""),
                );
                true
            }
            _ => false,
        }
    };
    let mut skip = Vec::new();
    for key in HEALTH_HTTP_ONLY {
        if not_for_kind(cx, key, "kind = \"http\"") {
            skip.push(*key);
        }
    }
    if kind_name == Some("none") && not_for_kind(cx, "port", "tcp and http") {
        skip.push("port");
    }
    let get = |key: &str| !skip.contains(&key);

    let interval = t.opt(cx, "interval", duration);
    let timeout = t.opt(cx, "timeout", duration);
    let rise = or(
        t.opt(cx, "rise", |cx, p, v| u32_at_least(cx, p, v, 1)),
        d.rise,
    );
    let fall = or(
        t.opt(cx, "fall", |cx, p, v| u32_at_least(cx, p, v, 1)),
        d.fall,
    );
    let port = if get("port") {
        t.opt(cx, "port", |cx, p, v| integer(cx, p, v, 1, 65535))
            .ok()
            .flatten()
            .and_then(|n| u16::try_from(n).ok())
    } else {
        None
    };

    let interval_v = interval
        .as_ref()
        .ok()
        .copied()
        .flatten()
        .unwrap_or(d.interval);
    if let (Ok(Some(timeout)), Ok(_)) = (&timeout, &interval) {
        if *timeout > interval_v {
            let default = if matches!(interval, Ok(None)) {
                ", the default"
            } else {
                ""
            };
            cx.error(
                t.get("timeout").map(|v| v.span().start).unwrap_or(t.at),
                &t.key_path("timeout"),
                format!("timeout ({timeout:?}) must not exceed interval ({interval_v:?}{default})"),
            );
        }
    }
    // An absent timeout adapts to a short interval rather than failing the check above.
    let timeout_v = or(timeout, d.timeout.min(interval_v));

    let kind = match kind {
        Ok(Kind::None) => HealthKind::None,
        Ok(Kind::Http) => {
            let method = or(t.opt(cx, "method", method), "GET".to_string());
            let path = or(t.opt(cx, "path", http_path), "/".to_string());
            let host = t.opt(cx, "host", host).ok().flatten();
            let expect_status = or(
                t.opt(cx, "expect_status", |cx, p, v| {
                    let s = string(cx, p, v)?;
                    StatusSet::parse(s).map_err(|m| cx.error(v.span().start, p, m))
                }),
                StatusSet::default(),
            );
            HealthKind::Http {
                method,
                path,
                host,
                expect_status,
                port,
            }
        }
        Ok(Kind::Tcp) | Err(_) => HealthKind::Tcp { port },
    };
    HealthCheck {
        kind,
        interval: interval_v,
        timeout: timeout_v,
        rise,
        fall,
    }
}

/// An HTTP method token (RFC 9110 `token`): `GET`, `HEAD`, or an extension method.
fn method(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !s.is_empty() && s.bytes().all(tchar) {
        Ok(s.to_string())
    } else {
        Err(cx.error(
            v.span().start,
            path,
            format!("invalid HTTP method \"{s}\"; write e.g. \"GET\" or \"HEAD\""),
        ))
    }
}

fn http_path(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    if s.starts_with('/')
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        Ok(s.to_string())
    } else {
        Err(cx.error(
            v.span().start,
            path,
            format!("invalid path \"{s}\"; it must start with `/` and contain no spaces, e.g. \"/healthz\""),
        ))
    }
}

fn host(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    if !s.is_empty()
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
    {
        Ok(s.to_string())
    } else {
        Err(cx.error(
            v.span().start,
            path,
            format!("invalid host \"{s}\"; write a host name such as \"www.example.com\""),
        ))
    }
}

