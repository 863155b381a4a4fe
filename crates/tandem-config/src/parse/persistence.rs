//! `[[service]] persistence = { ... }` and `[cluster]`.

use std::path::PathBuf;

use super::health::list;
use super::*;

const COMMON_KEYS: &[&str] = &["kind", "on_backend_down", "key", "key_file"];
/// Keys of one kind only; on another kind they are an error, not ignored.
const KIND_KEYS: &[(&str, &[&str])] = &[
    ("mask", &["source_ip"]),
    ("mask6", &["source_ip"]),
    ("timeout", &["source_ip"]),
    ("max_entries", &["source_ip"]),
    ("name", &["cookie", "url_param", "header"]),
    ("mode", &["cookie"]),
    ("ttl", &["cookie"]),
    ("secure", &["cookie"]),
    ("http_only", &["cookie"]),
    ("same_site", &["cookie"]),
    ("path", &["cookie"]),
    ("domain", &["cookie"]),
];
const KINDS: &[&str] = &["source_ip", "cookie", "url_param", "header"];
const CLUSTER_KEYS: &[&str] = &["listen", "peers", "secret", "secret_file", "state_dir"];

/// `persistence` of a service in `mode`.
pub(super) fn persistence(cx: &mut Cx, path: &str, v: &Value, mode: Mode) -> R<Persistence> {
    let mut t = table(cx, path, v, "the persistence table")?;
    let known: Vec<&'static str> = COMMON_KEYS
        .iter()
        .copied()
        .chain(KIND_KEYS.iter().map(|(k, _)| *k))
        .collect();
    t.check_keys(cx, &known);
    let kind = t.req(cx, "kind", |cx, p, v| {
        let s = string(cx, p, v)?;
        KINDS.iter().copied().find(|k| *k == s).ok_or_else(|| {
            cx.error(
                v.span().start,
                p,
                format!(
                    "unknown persistence kind `{s}`; valid kinds: {}",
                    KINDS.join(", ")
                ),
            )
        })
    })?;
    for (key, kinds) in KIND_KEYS {
        if let Some(at) = t.key_at(key) {
            if !kinds.contains(&kind) {
                cx.error(
                    at,
                    &t.key_path(key),
                    format!(
                        "`{key}` applies only to {} persistence; this one is kind = \"{kind}\"",
                        list(kinds)
                    ),
                );
            }
        }
    }
    if kind != "source_ip" && mode == Mode::Tcp {
        let at = t.get("kind").map_or(t.at, |v| v.span().start);
        return Err(cx.error(
            at,
            &t.key_path("kind"),
            format!("{kind} persistence needs HTTP (mode = \"http\"); a tcp service can persist by source_ip only"),
        ));
    }
    let on_backend_down = or(
        t.opt(cx, "on_backend_down", |cx, p, v| match string(cx, p, v)? {
            "rebalance" => Ok(OnBackendDown::Rebalance),
            "fail" => Ok(OnBackendDown::Fail),
            s => Err(cx.error(
                v.span().start,
                p,
                format!("unknown on_backend_down `{s}`; write \"rebalance\" (send the client to a healthy backend) or \"fail\" (answer 503)"),
            )),
        }),
        OnBackendDown::Rebalance,
    );
    let key = secret(cx, &t, "key", "key_file")?;
    if key.is_some() && !matches!(kind, "cookie" | "url_param") {
        let at = t.key_at("key").or(t.key_at("key_file")).unwrap_or(t.at);
        cx.error(
            at,
            &t.key_path("key"),
            format!("a key signs cookie and url_param tokens; {kind} persistence has none"),
        );
    }
    let kind = match kind {
        "source_ip" => PersistenceKind::SourceIp {
            mask_v4: or(
                t.opt(cx, "mask", |cx, p, v| integer(cx, p, v, 0, 32)),
                32,
            )
            .try_into()
            .unwrap_or(32),
            mask_v6: or(
                t.opt(cx, "mask6", |cx, p, v| integer(cx, p, v, 0, 128)),
                128,
            )
            .try_into()
            .unwrap_or(128),
            timeout: or(
                t.opt(cx, "timeout", duration),
                PersistenceKind::DEFAULT_SOURCE_TIMEOUT,
            ),
            max_entries: or(
                t.opt(cx, "max_entries", |cx, p, v| integer(cx, p, v, 1, 100_000_000)),
                PersistenceKind::DEFAULT_MAX_ENTRIES as i128,
            )
            .try_into()
            .unwrap_or(PersistenceKind::DEFAULT_MAX_ENTRIES),
        },
        "cookie" => {
            let mode = or(
                t.opt(cx, "mode", |cx, p, v| match string(cx, p, v)? {
                    "insert" => Ok(CookieMode::Insert),
                    "prefix" => Ok(CookieMode::Prefix),
                    s => Err(cx.error(
                        v.span().start,
                        p,
                        format!("unknown cookie mode `{s}`; write \"insert\" (tandem's own cookie) or \"prefix\" (on the application's session cookie)"),
                    )),
                }),
                CookieMode::Insert,
            );
            let name = t.opt(cx, "name", cookie_name);
            let name = match (name, mode) {
                (Ok(Some(n)), _) => n,
                (Ok(None), CookieMode::Insert) => CookieSettings::DEFAULT_NAME.to_string(),
                (Ok(None), CookieMode::Prefix) => {
                    return Err(cx.error(
                        t.at,
                        &t.key_path("name"),
                        "mode = \"prefix\" needs `name`: the application's session cookie to prefix, e.g. name = \"JSESSIONID\"",
                    ))
                }
                (Err(e), _) => return Err(e),
            };
            let same_site = or(
                t.opt(cx, "same_site", |cx, p, v| match string(cx, p, v)? {
                    "strict" | "Strict" => Ok(SameSite::Strict),
                    "lax" | "Lax" => Ok(SameSite::Lax),
                    "none" | "None" => Ok(SameSite::None),
                    s => Err(cx.error(
                        v.span().start,
                        p,
                        format!("unknown same_site `{s}`; write \"strict\", \"lax\" or \"none\""),
                    )),
                }),
                SameSite::Lax,
            );
            let secure = t.opt(cx, "secure", boolean);
            if let (SameSite::None, Ok(None | Some(false))) = (same_site, &secure) {
                let at = t.key_at("same_site").unwrap_or(t.at);
                cx.error(
                    at,
                    &t.key_path("same_site"),
                    "browsers drop a SameSite=None cookie without Secure; add secure = true",
                );
            }
            PersistenceKind::Cookie(CookieSettings {
                name,
                mode,
                ttl: t.opt(cx, "ttl", duration).ok().flatten(),
                secure: or(secure, false),
                http_only: or(t.opt(cx, "http_only", boolean), true),
                same_site,
                path: or(
                    t.opt(cx, "path", |cx, p, v| {
                        let s = string(cx, p, v)?;
                        if s.starts_with('/') && s.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
                            Ok(s.to_string())
                        } else {
                            Err(cx.error(v.span().start, p, format!("invalid cookie path {s:?}: it starts with `/` and has no spaces, `;` or control characters")))
                        }
                    }),
                    "/".to_string(),
                ),
                domain: t
                    .opt(cx, "domain", |cx, p, v| {
                        let s = string(cx, p, v)?;
                        if !s.is_empty()
                            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                        {
                            Ok(s.to_string())
                        } else {
                            Err(cx.error(v.span().start, p, format!("invalid cookie domain {s:?}")))
                        }
                    })
                    .ok()
                    .flatten(),
            })
        }
        "url_param" => PersistenceKind::UrlParam {
            name: t.req(cx, "name", |cx, p, v| {
                let s = string(cx, p, v)?;
                if !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
                {
                    Ok(s.to_string())
                } else {
                    Err(cx.error(v.span().start, p, format!("invalid parameter name {s:?}: use letters, digits, `-`, `_`, `.` or `~`")))
                }
            })?,
        },
        _ => PersistenceKind::Header {
            name: t.req(cx, "name", |cx, p, v| {
                let s = string(cx, p, v)?;
                if !s.is_empty() && s.bytes().all(is_tchar) {
                    Ok(s.to_ascii_lowercase())
                } else {
                    Err(cx.error(v.span().start, p, format!("invalid header name {s:?}")))
                }
            })?,
        },
    };
    Ok(Persistence {
        kind,
        on_backend_down,
        key,
    })
}

/// RFC 9110 `tchar`: what a header or cookie name may contain.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn cookie_name(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    if !s.is_empty() && s.bytes().all(is_tchar) {
        Ok(s.to_string())
    } else {
        Err(cx.error(
            v.span().start,
            path,
            format!("invalid cookie name {s:?}: letters, digits and !#$%&'*+-.^_`|~ only"),
        ))
    }
}

/// A secret from `key` (inline) or `file_key` (a file whose content, without a trailing
/// newline, is the secret); at most one of them, at least [`Secret::MIN_LEN`] bytes.
fn secret(cx: &mut Cx, t: &Table, key: &str, file_key: &str) -> R<Option<Secret>> {
    let inline = t.opt(cx, key, |cx, p, v| {
        Ok(string(cx, p, v)?.as_bytes().to_vec())
    })?;
    let file = t.opt(cx, file_key, |cx, p, v| {
        let s = string(cx, p, v)?;
        let path = PathBuf::from(s);
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok(bytes)
            }
            Err(e) => Err(cx.error(
                v.span().start,
                p,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    })?;
    let (bytes, at, which) = match (inline, file) {
        (Some(_), Some(_)) => {
            let at = t.key_at(file_key).unwrap_or(t.at);
            return Err(cx.error(
                at,
                &t.key_path(file_key),
                format!("give `{key}` or `{file_key}`, not both"),
            ));
        }
        (Some(b), None) => (b, t.get(key).map_or(t.at, |v| v.span().start), key),
        (None, Some(b)) => (
            b,
            t.get(file_key).map_or(t.at, |v| v.span().start),
            file_key,
        ),
        (None, None) => return Ok(None),
    };
    if bytes.len() < Secret::MIN_LEN {
        return Err(cx.error(
            at,
            &t.key_path(which),
            format!(
                "a secret of {} bytes is too short; use at least {} (e.g. `openssl rand -hex 32`)",
                bytes.len(),
                Secret::MIN_LEN
            ),
        ));
    }
    Ok(Some(Secret(bytes)))
}

/// `[cluster]`.
pub(super) fn cluster(cx: &mut Cx, v: &Value) -> Option<Cluster> {
    let mut t = table(cx, "cluster", v, "[cluster]").ok()?;
    t.check_keys(cx, CLUSTER_KEYS);
    let listen = t.req(cx, "listen", |cx, p, v| address(cx, p, v, Port0::Rejected));
    let peers = t.req(cx, "peers", |cx, p, v| {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(wrong_type(
                cx,
                p,
                v,
                "an array of the other nodes' cluster addresses, e.g. [\"198.51.100.3:9901\"]",
            ));
        };
        let mut out: Vec<SocketAddr> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let Ok(a) = address(cx, &ip, item, Port0::Rejected) else {
                continue;
            };
            if out.contains(&a) {
                cx.error(item.span().start, &ip, format!("peer {a} is listed twice"));
                continue;
            }
            out.push(a);
        }
        if items.is_empty() {
            return Err(cx.error(
                v.span().start,
                p,
                "no peers: list the other nodes' cluster addresses, or remove [cluster]",
            ));
        }
        Ok(out)
    });
    let secret = secret(cx, &t, "secret", "secret_file");
    let secret = match secret {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            cx.error(
                t.at,
                "cluster.secret",
                "missing `secret` (or `secret_file`) in [cluster]: every frame between nodes is authenticated with it",
            );
            None
        }
        Err(_) => None,
    };
    let state_dir = t
        .opt(cx, "state_dir", |cx, p, v| {
            Ok(PathBuf::from(string(cx, p, v)?))
        })
        .ok()
        .flatten();
    if let (Ok(listen), Ok(peers), Some(v)) = (&listen, &peers, t.get("peers")) {
        if peers.contains(listen) {
            cx.error(
                v.span().start,
                "cluster.peers",
                format!("{listen} is this node's own `listen`; list only the other nodes"),
            );
        }
    }
    Some(Cluster {
        listen: listen.ok()?,
        peers: peers.ok()?,
        secret: secret?,
        state_dir,
    })
}
