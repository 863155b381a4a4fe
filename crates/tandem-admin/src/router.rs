//! Request → response, with no I/O: the whole API surface in one match.
//!
//! Kept apart from the server so routing, status codes and headers are tested as plain
//! function calls, and the server module stays about sockets and shutdown only.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::metrics;
use crate::state::AdminState;
use crate::view::{PoolView, PoolsView, ServicesView};

/// Every route answers these methods. HEAD is GET without the body (hyper drops it), which
/// lets monitoring probes check `/healthz` cheaply.
const ALLOWED: &str = "GET, HEAD";

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Healthz,
    Pools,
    Pool(String),
    Services,
    Metrics,
}

/// Match a path. `None` means 404. A pool name is percent-decoded, so a name that needs
/// escaping in a URL still has a URL; a malformed escape simply names no pool.
fn route(path: &str) -> Option<Route> {
    match path {
        "/healthz" => Some(Route::Healthz),
        "/metrics" => Some(Route::Metrics),
        "/api/v1/pools" => Some(Route::Pools),
        "/api/v1/services" => Some(Route::Services),
        _ => {
            let name = path.strip_prefix("/api/v1/pools/")?;
            if name.is_empty() || name.contains('/') {
                return None;
            }
            Some(Route::Pool(percent_decode(name)?))
        }
    }
}

/// Decode `%XX` escapes; `None` on a malformed escape or if the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Not `u8::from_str_radix`: it would accept a sign, so `%+1` would decode.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Answer one request. Never fails: every problem becomes a status code.
pub fn respond(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let Some(route) = route(path) else {
        return error(
            path,
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path}"),
        );
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = error(
            path,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed; use GET or HEAD"),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED));
        return resp;
    }
    match route {
        Route::Healthz => plain(StatusCode::OK, TEXT, "ok\n".into()),
        Route::Pools => json(StatusCode::OK, &PoolsView::new(&state.topology)),
        Route::Pool(name) => match state.topology.pool(&name) {
            Some(pool) => json(StatusCode::OK, &PoolView::new(pool)),
            None => error(
                path,
                StatusCode::NOT_FOUND,
                format!("no pool named {name:?}"),
            ),
        },
        Route::Services => json(
            StatusCode::OK,
            &ServicesView {
                services: &state.services,
            },
        ),
        Route::Metrics => match state.render_metrics() {
            Ok(text) => plain(StatusCode::OK, metrics::CONTENT_TYPE, text.into()),
            Err(_) => {
                // Only a bug in the encoder can get here (writing to a String cannot fail).
                tracing::error!("encoding metrics failed");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    "encoding metrics failed\n".into(),
                )
            }
        },
    }
}

fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Live state: a cached copy would be wrong a second later.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            plain(status, JSON, body.into())
        }
        Err(e) => {
            tracing::error!(error = %e, "serialising an API response failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                "serialising the response failed\n".into(),
            )
        }
    }
}

/// Errors under `/api/` are JSON `{"error": "..."}` so API clients can always parse the body;
/// elsewhere (`/metrics`, `/healthz`, typos) plain text is friendlier to curl.
fn error(path: &str, status: StatusCode, message: String) -> Response<Full<Bytes>> {
    if path.starts_with("/api/") {
        #[derive(Serialize)]
        struct ErrorView {
            error: String,
        }
        json(status, &ErrorView { error: message })
    } else {
        plain(status, TEXT, format!("{message}\n").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/healthz"), Some(Route::Healthz));
        assert_eq!(route("/metrics"), Some(Route::Metrics));
        assert_eq!(route("/api/v1/pools"), Some(Route::Pools));
        assert_eq!(route("/api/v1/services"), Some(Route::Services));
        assert_eq!(route("/api/v1/pools/web"), Some(Route::Pool("web".into())));
        assert_eq!(
            route("/api/v1/pools/a%20b%2Fc"),
            Some(Route::Pool("a b/c".into()))
        );
        for p in [
            "/",
            "",
            "/healthz/",
            "/api/v1/pools/",
            "/api/v1/pools/a/b",
            "/api/v1/pools/%",
            "/api/v1/pools/%zz",
            "/api/v1/pools/%ff",
            "/api/v2/pools",
        ] {
            assert_eq!(route(p), None, "{p:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%41%62").as_deref(), Some("Ab"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%C3"), None);
    }
}
