//! The `health = { ... }` table: which probe, its timings and the keys of each kind.
//!
//! Kept apart from the rest of the schema because each probe kind brings its own keys, and
//! the same table is read for a pool and for a backend that overrides it.

use std::path::PathBuf;

use rustls_pki_types::ServerName;

use super::*;

/// Keys every kind accepts (`none` accepts them and ignores them: there is nothing to time).
const COMMON_KEYS: &[&str] = &[
    "kind",
    "interval",
    "down_interval",
    "timeout",
    "rise",
    "fall",
];

const HTTP_KINDS: &[&str] = &["http", "https"];

/// Keys that belong to some kinds only, and those kinds. On another kind such a key is an error,
/// not silently ignored: a user who wrote `path = "/healthz"` on a tcp check believes their
/// endpoint is being probed.
const KIND_KEYS: &[(&str, &[&str])] = &[
    ("port", &["tcp", "http", "https", "smtp"]),
    ("method", HTTP_KINDS),
    ("path", HTTP_KINDS),
    ("host", HTTP_KINDS),
    ("expect_status", HTTP_KINDS),
    ("expect_body", HTTP_KINDS),
    ("digest", HTTP_KINDS),
    ("sni", &["https"]),
    ("tls_verify", &["https"]),
    ("ca_file", &["https"]),
    ("helo_name", &["smtp"]),
    ("command", &["exec"]),
    ("dynamic_weight", &["exec"]),
];

pub(super) fn health(cx: &mut Cx, path: &str, v: &Value) -> HealthCheck {
    let d = HealthCheck::default();
    let Ok(mut t) = table(cx, path, v, "the health table") else {
        return d;
    };
    let known: Vec<&'static str> = COMMON_KEYS
        .iter()
        .copied()
        .chain(KIND_KEYS.iter().map(|(k, _)| *k))
        .collect();
    t.check_keys(cx, &known);

    let kind = t.opt(cx, "kind", kind_name).map(|k| k.unwrap_or("tcp"));
    let mut skip = Vec::new();
    if let Ok(kind) = kind {
        for (key, kinds) in KIND_KEYS {
            let Some(at) = t.key_at(key) else { continue };
            if !kinds.contains(&kind) {
                cx.error(
                    at,
                    &t.key_path(key),
                    format!(
                        "`{key}` applies only to {} health checks; this check is kind = \"{kind}\"",
                        list(kinds)
                    ),
                );
                skip.push(*key);
            }
        }
    }
    let (interval, down_interval, timeout) = timings(cx, &t, &d);
    let rise = or(
        t.opt(cx, "rise", |cx, p, v| u32_at_least(cx, p, v, 1)),
        d.rise,
    );
    let fall = or(
        t.opt(cx, "fall", |cx, p, v| u32_at_least(cx, p, v, 1)),
        d.fall,
    );
    // Kind-specific keys are read only by their kinds' branches below; `port` is shared by four.
    let port = if skip.contains(&"port") {
        None
    } else {
        t.opt(cx, "port", |cx, p, v| integer(cx, p, v, 1, 65535))
            .ok()
            .flatten()
            .and_then(|n| u16::try_from(n).ok())
    };

    let kind = match kind {
        Ok("none") => HealthKind::None,
        Ok("icmp") => HealthKind::Icmp,
        Ok("http") => {
            let h = http_keys(cx, &t);
            HealthKind::Http {
                method: h.method,
                path: h.path,
                host: h.host,
                expect_status: h.expect_status,
                port,
                expect_body: h.expect_body,
                digest: h.digest,
            }
        }
        Ok("https") => {
            let h = http_keys(cx, &t);
            let tls = tls_keys(cx, &t, h.host.as_deref());
            HealthKind::Https {
                method: h.method,
                path: h.path,
                host: h.host,
                expect_status: h.expect_status,
                port,
                expect_body: h.expect_body,
                digest: h.digest,
                sni: tls.sni,
                tls_verify: tls.verify,
                ca_file: tls.ca_file,
            }
        }
        Ok("smtp") => HealthKind::Smtp {
            helo_name: or(
                t.opt(cx, "helo_name", helo_name),
                HealthKind::DEFAULT_HELO_NAME.into(),
            ),
            port,
        },
        Ok("exec") => {
            let command = t.req(cx, "command", exec_command);
            HealthKind::Exec {
                // A placeholder only when the error is already reported (the parse then fails).
                command: command.unwrap_or_else(|_| ExecCommand {
                    program: String::new(),
                    path: PathBuf::new(),
                    args: Vec::new(),
                }),
                dynamic_weight: or(t.opt(cx, "dynamic_weight", boolean), false),
            }
        }
        Ok(_) | Err(_) => HealthKind::Tcp { port },
    };
    HealthCheck {
        kind,
        interval,
        down_interval,
        timeout,
        rise,
        fall,
    }
}

/// `kind`: one of [`HealthKind::NAMES`], with a "did you mean" for a near miss.
fn kind_name(cx: &mut Cx, path: &str, v: &Value) -> R<&'static str> {
    let s = string(cx, path, v)?;
    if let Some(k) = HealthKind::NAMES.iter().find(|k| **k == s) {
        return Ok(k);
    }
    let hint = match closest(s, HealthKind::NAMES.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? "),
        None => String::new(),
    };
    Err(cx.error(
        v.span().start,
        path,
        format!(
            "unknown health check kind `{s}`; {hint}valid kinds: {}",
            HealthKind::NAMES.join(", ")
        ),
    ))
}

/// `["a"]` → `a`; `["a", "b", "c"]` → `a, b and c`.
pub(super) fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// `interval`, `down_interval` and `timeout`, checked against each other so that probes of one
/// backend never overlap, whatever state it is in.
fn timings(cx: &mut Cx, t: &Table, d: &HealthCheck) -> (Duration, Duration, Duration) {
    let interval = t.opt(cx, "interval", duration);
    let down_interval = t.opt(cx, "down_interval", duration);
    let timeout = t.opt(cx, "timeout", duration);

    let interval_v = interval
        .as_ref()
        .ok()
        .copied()
        .flatten()
        .unwrap_or(d.interval);
    let down_v = down_interval
        .as_ref()
        .ok()
        .copied()
        .flatten()
        .unwrap_or(interval_v);
    let value_at = |key: &str| t.get(key).map(|v| v.span().start).unwrap_or(t.at);
    if let (Ok(Some(timeout)), Ok(_)) = (&timeout, &interval) {
        if *timeout > interval_v {
            let default = if matches!(interval, Ok(None)) {
                ", the default"
            } else {
                ""
            };
            cx.error(
                value_at("timeout"),
                &t.key_path("timeout"),
                format!("timeout ({timeout:?}) must not exceed interval ({interval_v:?}{default})"),
            );
        }
    }
    if let (Ok(Some(timeout)), Ok(Some(down))) = (&timeout, &down_interval) {
        if down < timeout {
            cx.error(
                value_at("down_interval"),
                &t.key_path("down_interval"),
                format!("down_interval ({down:?}) must not be shorter than timeout ({timeout:?}), or probes of a down backend would overlap"),
            );
        }
    }
    // An absent timeout adapts to short periods rather than failing the checks above.
    let timeout_v = or(timeout, d.timeout.min(interval_v).min(down_v));
    (interval_v, down_v, timeout_v)
}

/// The keys `http` and `https` share.
struct HttpKeys {
    method: String,
    path: String,
    host: Option<String>,
    expect_status: StatusSet,
    expect_body: Option<BodyMatch>,
    digest: Option<Md5Digest>,
}

fn http_keys(cx: &mut Cx, t: &Table) -> HttpKeys {
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
    let expect_body = t
        .opt(cx, "expect_body", |cx, p, v| {
            let s = string(cx, p, v)?;
            BodyMatch::parse(s).map_err(|m| cx.error(v.span().start, p, m))
        })
        .ok()
        .flatten();
    let digest = t
        .opt(cx, "digest", |cx, p, v| {
            let s = string(cx, p, v)?;
            Md5Digest::parse(s).map_err(|m| cx.error(v.span().start, p, m))
        })
        .ok()
        .flatten();
    // The answer to HEAD has no body, so a body check could never pass.
    if method == "HEAD" {
        for key in ["expect_body", "digest"] {
            if let Some(at) = t.key_at(key) {
                cx.error(
                    at,
                    &t.key_path(key),
                    format!("`{key}` checks the response body, and the answer to a HEAD request has none; use method = \"GET\""),
                );
            }
        }
    }
    HttpKeys {
        method,
        path,
        host,
        expect_status,
        expect_body,
        digest,
    }
}

/// The keys only `https` has.
struct TlsKeys {
    sni: Option<String>,
    verify: bool,
    ca_file: Option<PathBuf>,
}

fn tls_keys(cx: &mut Cx, t: &Table, host: Option<&str>) -> TlsKeys {
    let verify = t.opt(cx, "tls_verify", boolean);
    let ca_file = t
        .opt(cx, "ca_file", |cx, p, v| {
            let s = string(cx, p, v)?;
            let file = PathBuf::from(s);
            check_ca_file(&file).map_err(|m| cx.error(v.span().start, p, m))?;
            Ok(file)
        })
        .ok()
        .flatten();
    if let (Ok(Some(false)), Some(at)) = (&verify, t.key_at("ca_file")) {
        cx.error(
            at,
            &t.key_path("ca_file"),
            "`ca_file` has no effect with tls_verify = false (no certificate is verified); remove one of them",
        );
    }
    let sni = match t.opt(cx, "sni", sni) {
        Ok(Some(s)) => Some(s),
        Ok(None) => host.and_then(host_name),
        Err(_) => None,
    };
    TlsKeys {
        sni,
        verify: or(verify, true),
        ca_file,
    }
}

/// `sni`: a DNS name, by the same rules the TLS stack applies. An IP address is refused: SNI
/// never carries one, and verifying against the backend's IP is what leaving `sni` out does.
fn sni(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    match ServerName::try_from(s) {
        Ok(ServerName::DnsName(_)) => Ok(s.to_string()),
        Ok(_) => Err(cx.error(
            v.span().start,
            path,
            format!("sni \"{s}\" is an IP address, which SNI cannot carry; leave sni out to verify the certificate against the backend's IP address"),
        )),
        Err(_) => Err(cx.error(
            v.span().start,
            path,
            format!("invalid sni \"{s}\"; write a host name such as \"www.example.com\""),
        )),
    }
}

/// The DNS name in a `host` value (`www.example.com` or `www.example.com:8443`), if it is one;
/// `None` for an IP address, with or without a port and brackets.
fn host_name(host: &str) -> Option<String> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) => Some(name.to_string()),
        _ => None,
    }
}

/// `helo_name`: what EHLO/HELO accept as a domain: visible ASCII, no spaces.
fn helo_name(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    if (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s.to_string())
    } else {
        Err(cx.error(
            v.span().start,
            path,
            format!("invalid helo_name \"{s}\"; write this machine's host name, e.g. \"lb1.example.com\""),
        ))
    }
}

/// `command = ["/path/prog", "arg", ...]`: every item a string, the program found now, so
/// `tandem check` reports a missing program instead of every backend going down at run time.
pub(super) fn exec_command(cx: &mut Cx, path: &str, v: &Value) -> R<ExecCommand> {
    const FORM: &str = "an array of strings such as [\"/usr/local/bin/check-db\", \"--port\", \"5432\"] (no shell runs it: one string per argument)";
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(cx, path, v, FORM));
    };
    let mut argv = Vec::new();
    let mut bad = false;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match string(cx, &p, item) {
            Ok(s) if s.contains('\0') => {
                cx.error(
                    item.span().start,
                    &p,
                    "contains a NUL byte, which cannot be passed to a program",
                );
                bad = true;
            }
            Ok(s) => argv.push(s.to_string()),
            Err(Reported) => bad = true,
        }
    }
    if bad {
        return Err(Reported);
    }
    let search_path = std::env::var("PATH").ok();
    ExecCommand::new(argv, search_path.as_deref()).map_err(|m| match items.first() {
        Some(first) => cx.error(first.span().start, &format!("{path}[0]"), m),
        None => cx.error(v.span().start, path, m),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_keys_name_real_kinds() {
        for (key, kinds) in KIND_KEYS {
            assert!(!COMMON_KEYS.contains(key), "{key}");
            for k in *kinds {
                assert!(HealthKind::NAMES.contains(k), "{key}: {k}");
            }
        }
    }

    #[test]
    fn lists_read_like_prose() {
        assert_eq!(list(&["https"]), "https");
        assert_eq!(list(&["http", "https"]), "http and https");
        assert_eq!(list(&["tcp", "http", "smtp"]), "tcp, http and smtp");
    }

    #[test]
    fn host_names_for_default_sni() {
        assert_eq!(host_name("www.example.com"), Some("www.example.com".into()));
        assert_eq!(
            host_name("www.example.com:8443"),
            Some("www.example.com".into())
        );
        assert_eq!(host_name("10.0.0.1"), None);
        assert_eq!(host_name("10.0.0.1:443"), None);
        assert_eq!(host_name("[::1]:443"), None);
        assert_eq!(host_name("::1"), None);
        assert_eq!(host_name("bad name"), None);
    }
}
