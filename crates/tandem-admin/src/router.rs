//! Request → response, with no I/O: the whole API surface in one match.
//!
//! Kept apart from the server so routing, status codes and headers are tested as plain
//! function calls, and the server module stays about sockets and shutdown only.

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::auth::AuthError;
use crate::events::EventKind;
use crate::metrics;
use crate::state::AdminState;
use crate::view::{BackendView, PoolView, PoolsView, ServicesView, VrrpListView};
use tandem_balance::AdminState as BackendAdmin;

/// Every read route answers these methods. HEAD is GET without the body (hyper drops it),
/// which lets monitoring probes check `/healthz` cheaply.
const ALLOWED: &str = "GET, HEAD";
/// Actions change state, so they are POST only (a crawler or a prefetching browser must not
/// drain a backend by following a link).
const ALLOWED_ACTION: &str = "POST";

const JSON: &str = "application/json";
/// `Content-Type` of the server-sent event stream.
pub const EVENT_STREAM: &str = "text/event-stream";
const TEXT: &str = "text/plain; charset=utf-8";
/// Sticky entries shown by `GET /api/v1/services/{service}/sticky` (the count is always
/// complete).
const STICKY_LIMIT: usize = 1000;

/// Every endpoint as `(methods, path template)`, the template written as in
/// `docs/openapi.yaml`. Tests check that each template routes (so this list cannot drift from
/// [`route`]) and that the OpenAPI document describes each one with these methods.
pub const ROUTES: &[(&[&str], &str)] = &[
    (&["GET"], "/"),
    (&["GET"], "/dashboard.css"),
    (&["GET"], "/dashboard.js"),
    (&["GET"], "/healthz"),
    (&["GET"], "/metrics"),
    (&["GET"], "/api/v1/overview"),
    (&["GET"], "/api/v1/events"),
    (&["GET"], "/api/v1/events/stream"),
    (&["GET"], "/api/v1/pools"),
    (&["GET"], "/api/v1/pools/{name}"),
    (&["POST"], "/api/v1/pools/{pool}/backends/{address}/drain"),
    (&["POST"], "/api/v1/pools/{pool}/backends/{address}/disable"),
    (&["POST"], "/api/v1/pools/{pool}/backends/{address}/enable"),
    (&["POST"], "/api/v1/pools/{pool}/backends/{address}/weight"),
    (&["GET"], "/api/v1/services"),
    (&["GET"], "/api/v1/services/{name}/sticky"),
    (&["GET"], "/api/v1/vrrp"),
    (&["GET"], "/api/v1/cluster"),
    (&["POST"], "/api/v1/reload"),
];

#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// The dashboard's embedded files.
    Asset(crate::dashboard::Asset),
    Healthz,
    Overview,
    Events,
    /// `GET /api/v1/events/stream` (served by the server: it streams).
    EventsStream,
    /// `POST /api/v1/reload`
    Reload,
    Pools,
    Pool(String),
    Services,
    Cluster,
    /// `GET /api/v1/services/{service}/sticky`
    Sticky(String),
    Vrrp,
    Metrics,
    /// `POST /api/v1/pools/{pool}/backends/{address}/{action}`
    Action {
        pool: String,
        backend: String,
        action: Action,
    },
}

/// What an operator can do to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Drain,
    Disable,
    Enable,
    Weight,
}

impl Action {
    fn from_name(s: &str) -> Option<Action> {
        match s {
            "drain" => Some(Action::Drain),
            "disable" => Some(Action::Disable),
            "enable" => Some(Action::Enable),
            "weight" => Some(Action::Weight),
            _ => None,
        }
    }
}

/// Match a path. `None` means 404. A pool name is percent-decoded, so a name that needs
/// escaping in a URL still has a URL; a malformed escape simply names no pool.
fn route(path: &str) -> Option<Route> {
    if let Some(asset) = crate::dashboard::asset(path) {
        return Some(Route::Asset(asset));
    }
    match path {
        "/healthz" => Some(Route::Healthz),
        "/api/v1/overview" => Some(Route::Overview),
        "/api/v1/events" => Some(Route::Events),
        "/api/v1/events/stream" => Some(Route::EventsStream),
        "/api/v1/reload" => Some(Route::Reload),
        "/metrics" => Some(Route::Metrics),
        "/api/v1/pools" => Some(Route::Pools),
        "/api/v1/services" => Some(Route::Services),
        "/api/v1/vrrp" => Some(Route::Vrrp),
        "/api/v1/cluster" => Some(Route::Cluster),
        _ if path.starts_with("/api/v1/services/") => {
            let rest = path.strip_prefix("/api/v1/services/")?;
            let (name, tail) = rest.split_once('/')?;
            (tail == "sticky" && !name.is_empty())
                .then(|| percent_decode(name).map(Route::Sticky))
                .flatten()
        }
        _ => {
            let rest = path.strip_prefix("/api/v1/pools/")?;
            let mut parts = rest.split('/');
            let name = parts.next().filter(|n| !n.is_empty())?;
            let name = percent_decode(name)?;
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (None, ..) => Some(Route::Pool(name)),
                (Some("backends"), Some(backend), Some(action), None) if !backend.is_empty() => {
                    Some(Route::Action {
                        pool: name,
                        backend: percent_decode(backend)?,
                        action: Action::from_name(action)?,
                    })
                }
                _ => None,
            }
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
pub fn respond(
    state: &AdminState,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Some(route) = route(path) else {
        return error(
            path,
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path}"),
        );
    };
    if let Route::Action {
        pool,
        backend,
        action,
    } = route
    {
        if method != Method::POST {
            let mut resp = error(
                path,
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed; use POST"),
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED_ACTION));
            return resp;
        }
        return act(state, path, &pool, &backend, action, body);
    }
    if route == Route::Reload {
        if method != Method::POST {
            let mut resp = error(
                path,
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed; use POST"),
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED_ACTION));
            return resp;
        }
        return reload(state, path);
    }
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
        Route::Asset(asset) => {
            let mut resp = plain(StatusCode::OK, asset.content_type, asset.body.into());
            let h = resp.headers_mut();
            h.insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(crate::dashboard::CONTENT_SECURITY_POLICY),
            );
            h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            resp
        }
        Route::Healthz => plain(StatusCode::OK, TEXT, "ok\n".into()),
        Route::Overview => json(StatusCode::OK, &crate::overview::OverviewView::new(state)),
        Route::Events => json(StatusCode::OK, &EventsView::new(state)),
        // Reached for HEAD only: GET is streamed by the server (see [`handle`]).
        Route::EventsStream => plain(StatusCode::OK, EVENT_STREAM, Bytes::new()),
        Route::Reload => error(path, StatusCode::NOT_FOUND, "no such endpoint".into()),
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
        Route::Action { .. } => error(path, StatusCode::NOT_FOUND, "no such endpoint".into()),
        Route::Sticky(name) => match state.topology.persistence(&name) {
            Some(p) => json(
                StatusCode::OK,
                &crate::view::StickyView::new(p, STICKY_LIMIT),
            ),
            None if state.services.iter().any(|s| s.name == name) => error(
                path,
                StatusCode::NOT_FOUND,
                format!("service {name:?} has no persistence"),
            ),
            None => error(
                path,
                StatusCode::NOT_FOUND,
                format!("no service named {name:?}"),
            ),
        },
        Route::Cluster => match &state.cluster {
            Some(source) => json(StatusCode::OK, &(source.0)()),
            None => error(
                path,
                StatusCode::NOT_FOUND,
                "this node has no [cluster]".into(),
            ),
        },
        Route::Vrrp => json(
            StatusCode::OK,
            &VrrpListView {
                instances: state.vrrp.iter().map(|s| (s.0)()).collect(),
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

/// Apply an operator action and answer with the backend as it is now.
fn act(
    state: &AdminState,
    path: &str,
    pool_name: &str,
    backend: &str,
    action: Action,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Some(pool) = state.topology.pool(pool_name) else {
        return error(
            path,
            StatusCode::NOT_FOUND,
            format!("no pool named {pool_name:?}"),
        );
    };
    let Ok(address) = backend.parse::<std::net::SocketAddr>() else {
        return error(
            path,
            StatusCode::BAD_REQUEST,
            format!("{backend:?} is not a backend address; write it as in the configuration, e.g. 127.0.0.1:8001 or [::1]:8001"),
        );
    };
    let Some(b) = pool.find(address) else {
        return error(
            path,
            StatusCode::NOT_FOUND,
            format!("pool {pool_name:?} has no backend {address}"),
        );
    };
    let now = std::time::Instant::now();
    let id = b.id;
    match action {
        Action::Drain | Action::Disable | Action::Enable => {
            let target = match action {
                Action::Drain => BackendAdmin::Draining,
                Action::Disable => BackendAdmin::Disabled,
                _ => BackendAdmin::Enabled,
            };
            if let Some(old) = pool.set_admin_state(id, target, now) {
                tracing::info!(pool = %pool.name, backend = %address, from = old.as_str(), to = target.as_str(), "admin: backend state set");
                state.events.push(
                    EventKind::Operator,
                    format!(
                        "{}/{address}: {} (was {})",
                        pool.name,
                        target.as_str(),
                        old.as_str()
                    ),
                    [
                        ("pool", pool.name.clone()),
                        ("backend", address.to_string()),
                        ("action", action_name(action).to_string()),
                        ("from", old.as_str().to_string()),
                        ("to", target.as_str().to_string()),
                    ],
                );
            }
            if let Some(hook) = &state.on_action {
                (hook.0)(
                    &pool.name,
                    address,
                    crate::state::OperatorAction::State(target),
                );
            }
        }
        Action::Weight => {
            let weight = match parse_weight(body) {
                Ok(w) => w,
                Err(message) => return error(path, StatusCode::BAD_REQUEST, message),
            };
            if let Some(old) = pool.set_weight(id, weight, now) {
                tracing::info!(pool = %pool.name, backend = %address, from = old, to = weight, "admin: backend weight set");
                state.events.push(
                    EventKind::Operator,
                    format!("{}/{address}: weight {weight} (was {old})", pool.name),
                    [
                        ("pool", pool.name.clone()),
                        ("backend", address.to_string()),
                        ("action", "weight".to_string()),
                        ("from", old.to_string()),
                        ("to", weight.to_string()),
                    ],
                );
            }
            if let Some(hook) = &state.on_action {
                (hook.0)(
                    &pool.name,
                    address,
                    crate::state::OperatorAction::Weight(weight),
                );
            }
        }
    }
    json(StatusCode::OK, &BackendView::new(b))
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Drain => "drain",
        Action::Disable => "disable",
        Action::Enable => "enable",
        Action::Weight => "weight",
    }
}

/// `POST /api/v1/reload` without a hook (with one, [`handle`] hands the request to the
/// server, which waits for the daemon): 501.
fn reload(_state: &AdminState, path: &str) -> Response<Full<Bytes>> {
    error(
        path,
        StatusCode::NOT_IMPLEMENTED,
        "this node cannot reload its configuration through the API".into(),
    )
}

/// `GET /api/v1/events`
#[derive(Serialize)]
struct EventsView {
    events: Vec<crate::events::Event>,
    /// The sequence number the next event will get.
    next_seq: u64,
    /// Stream clients connected now, and events they missed by reading too slowly.
    stream_clients: usize,
    stream_lagged: u64,
}

impl EventsView {
    fn new(state: &AdminState) -> Self {
        EventsView {
            events: state
                .events
                .since(0)
                .iter()
                .map(|e| (**e).clone())
                .collect(),
            next_seq: state.events.next_seq(),
            stream_clients: state.events.subscribers(),
            stream_lagged: state.events.lagged(),
        }
    }
}

/// What the server does with a request.
#[derive(Debug)]
pub enum Reply {
    /// A complete response.
    Done(Response<Full<Bytes>>),
    /// Open the event stream, resuming after this sequence number (`None`: new events only).
    EventStream { after: Option<u64> },
    /// `POST /api/v1/reload` with a hook: the server waits for the daemon's answer.
    Reload,
}

/// Answer one request, bearer token included: the server's entry point.
pub fn handle(
    state: &AdminState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if let Err(e) = state.auth.check(method, path, headers) {
        return Reply::Done(unauthorized(path, e));
    }
    if method == Method::GET && route(path) == Some(Route::EventsStream) {
        return Reply::EventStream {
            after: last_event_id(headers),
        };
    }
    if method == Method::POST && route(path) == Some(Route::Reload) && state.on_reload.is_some() {
        return Reply::Reload;
    }
    Reply::Done(respond(state, method, path, body))
}

/// `Last-Event-ID` as a sequence number; anything unparsable counts as absent.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// 401 with the RFC 6750 challenge.
fn unauthorized(path: &str, e: AuthError) -> Response<Full<Bytes>> {
    let challenge = match e {
        AuthError::Missing => "Bearer realm=\"tandem\"",
        AuthError::Wrong => "Bearer realm=\"tandem\", error=\"invalid_token\"",
        // No token would help: there is none to present.
    };
    let mut resp = error(path, StatusCode::UNAUTHORIZED, e.to_string());
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// The body of `/weight`: `{"weight": N}`, N in the configuration's range 0..=65535.
fn parse_weight(body: &[u8]) -> Result<u32, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WeightBody {
        weight: u32,
    }
    let parsed: WeightBody = serde_json::from_slice(body)
        .map_err(|e| format!("expected a JSON body like {{\"weight\": 5}}: {e}"))?;
    if parsed.weight > 65535 {
        return Err(format!(
            "weight must be between 0 and 65535, got {}",
            parsed.weight
        ));
    }
    Ok(parsed.weight)
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

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
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
pub(crate) fn error(path: &str, status: StatusCode, message: String) -> Response<Full<Bytes>> {
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
        assert_eq!(route("/api/v1/vrrp"), Some(Route::Vrrp));
        assert_eq!(route("/api/v1/pools/web"), Some(Route::Pool("web".into())));
        assert_eq!(
            route("/api/v1/pools/a%20b%2Fc"),
            Some(Route::Pool("a b/c".into()))
        );
        assert_eq!(
            route("/api/v1/pools/web/backends/%5B::1%5D:80/weight"),
            Some(Route::Action {
                pool: "web".into(),
                backend: "[::1]:80".into(),
                action: Action::Weight
            })
        );
        assert_eq!(
            route("/api/v1/pools/web/backends/127.0.0.1:8001/drain"),
            Some(Route::Action {
                pool: "web".into(),
                backend: "127.0.0.1:8001".into(),
                action: Action::Drain
            })
        );
        assert!(matches!(route("/"), Some(Route::Asset(_))));
        assert_eq!(route("/api/v1/events/stream"), Some(Route::EventsStream));
        for p in [
            "",
            "/healthz/",
            "/api/v1/pools/",
            "/api/v1/pools/a/b",
            "/api/v1/pools/%",
            "/api/v1/pools/%zz",
            "/api/v1/pools/%ff",
            "/api/v2/pools",
            "/api/v1/pools/web/backends",
            "/api/v1/pools/web/backends/127.0.0.1:1",
            "/api/v1/pools/web/backends//drain",
            "/api/v1/pools/web/backends/127.0.0.1:1/explode",
            "/api/v1/pools/web/backends/127.0.0.1:1/drain/x",
        ] {
            assert_eq!(route(p), None, "{p:?}");
        }
    }

    /// Every template in [`ROUTES`] routes, so the list (and the OpenAPI test built on it)
    /// cannot silently drift from [`route`].
    #[test]
    fn every_listed_route_routes() {
        for (_, template) in ROUTES {
            let path = template
                .replace("{name}", "web")
                .replace("{pool}", "web")
                .replace("{address}", "127.0.0.1:8001");
            assert!(route(&path).is_some(), "{template} does not route");
        }
    }

    #[test]
    fn weight_bodies() {
        assert_eq!(parse_weight(br#"{"weight": 7}"#), Ok(7));
        assert_eq!(parse_weight(br#"{"weight": 0}"#), Ok(0));
        assert!(parse_weight(br#"{"weight": 70000}"#).is_err());
        assert!(parse_weight(br#"{"weight": -1}"#).is_err());
        assert!(parse_weight(br#"{"wieght": 1}"#).is_err());
        assert!(parse_weight(b"").is_err());
        assert!(parse_weight(b"\xff\x00").is_err());
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
