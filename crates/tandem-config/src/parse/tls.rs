//! `[[service]] tls = { ... }` and `https_redirect`.

use std::path::PathBuf;

use super::*;

const TLS_KEYS: &[&str] = &["certificates", "min_version", "hsts"];
const CERT_KEYS: &[&str] = &["cert", "key", "ocsp"];

pub(super) fn tls(cx: &mut Cx, path: &str, v: &Value) -> R<Tls> {
    let mut t = table(cx, path, v, "the tls table")?;
    t.check_keys(cx, TLS_KEYS);
    let certificates = t.req(cx, "certificates", |cx, p, v| {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(wrong_type(
                cx,
                p,
                v,
                "an array of { cert = \"...\", key = \"...\" } tables",
            ));
        };
        if items.is_empty() {
            return Err(cx.error(
                v.span().start,
                p,
                "no certificates: list at least one { cert = ..., key = ... }",
            ));
        }
        let mut out = Vec::new();
        let mut bad = false;
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let Ok(mut c) = table(cx, &ip, item, "a certificate table") else {
                bad = true;
                continue;
            };
            c.check_keys(cx, CERT_KEYS);
            let file = |cx: &mut Cx, p: &str, v: &Value| -> R<PathBuf> {
                Ok(PathBuf::from(string(cx, p, v)?))
            };
            let cert = c.req(cx, "cert", file);
            let key = c.req(cx, "key", file);
            let ocsp = c.opt(cx, "ocsp", file);
            let (Ok(cert), Ok(key), Ok(ocsp)) = (cert, key, ocsp) else {
                bad = true;
                continue;
            };
            let entry = TlsCertificate { cert, key, ocsp };
            if let Err(m) = load_certified_key(&entry) {
                let at = c.get("cert").map_or(c.at, |v| v.span().start);
                cx.error(at, &c.key_path("cert"), m);
                bad = true;
                continue;
            }
            out.push(entry);
        }
        if bad {
            Err(Reported)
        } else {
            Ok(out)
        }
    })?;
    let min_version = or(
        t.opt(cx, "min_version", |cx, p, v| match string(cx, p, v)? {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            s => Err(cx.error(
                v.span().start,
                p,
                format!("min_version is \"1.2\" or \"1.3\", got {s:?}"),
            )),
        }),
        TlsVersion::V1_2,
    );
    let hsts = t
        .opt(cx, "hsts", |cx, p, v| {
            let s = string(cx, p, v)?;
            if s.starts_with("max-age=") && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                Ok(s.to_string())
            } else {
                Err(cx.error(v.span().start, p, format!("an HSTS value starts with max-age=, e.g. \"max-age=31536000; includeSubDomains\"; got {s:?}")))
            }
        })
        .ok()
        .flatten();
    Ok(Tls {
        certificates,
        min_version,
        hsts,
    })
}

/// `https_redirect = true`: the route that sends every request to the same URL over HTTPS.
pub(super) fn https_redirect_route() -> Route {
    Route {
        when: RouteMatch::default(),
        action: RouteAction::Redirect {
            status: 301,
            location: Template {
                parts: vec![
                    TemplatePart::Text("https://".into()),
                    TemplatePart::Host,
                    TemplatePart::Uri,
                ],
            },
        },
        rewrite: Rewrite::default(),
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
    }
}
