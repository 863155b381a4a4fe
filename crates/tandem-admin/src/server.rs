//! The HTTP/1.1 shell around [`router::respond`]: accept, serve, shut down.
//!
//! Plain hyper, one task per connection. The admin port is for operators and Prometheus, not
//! for traffic, so the limits are small and fixed: it must never compete with the data plane
//! for file descriptors or CPU, and a stuck client must never hold up shutdown.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::router::{self, Reply};
use crate::sse;
use crate::state::{AdminState, SharedAdmin};

/// Every response body: a complete buffer, or an event stream.
type AnyBody = BoxBody<Bytes, Infallible>;

/// The head of an event-stream response around `body`.
fn event_stream(body: sse::SseBody) -> Response<AnyBody> {
    use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
    let mut resp = Response::new(body.boxed());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(router::EVENT_STREAM));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx-style buffering proxies in front to pass frames through at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Connections served at once; more are closed on accept. Enough for Prometheus, a few
/// dashboards (each holds one event stream and one polling connection) and a few curls; small enough that a misbehaving client cannot eat the process's fds.
const MAX_CONNECTIONS: usize = 128;

/// A client must send a whole request head within this (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After shutdown, how long in-flight responses may take before their connections are cut.
/// Responses are small and built in memory, so only a client that stops reading needs this.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` (e.g. out of fds) so the loop does not spin at 100% CPU.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve the admin API on `listener` until `shutdown` becomes `true`.
///
/// Shutdown stops accepting at once (the listener is closed, so new connections are refused),
/// asks every open connection to finish its current response and close (idle keep-alive
/// connections close immediately), waits up to 5 s for that, then drops the rest. A dropped
/// `shutdown` sender counts as shutdown: with nobody left to ask for it, the owner is gone.
///
/// Failed accepts (out of fds, a connection reset before accept) are logged and retried, never
/// returned: a hiccup on the admin port must not stop the daemon. The error is reserved for a
/// listener that is unusable from the start.
pub async fn serve(
    listener: TcpListener,
    state: SharedAdmin,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(%local, "admin API listening");
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut conns = JoinSet::new();

    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin API: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                if conns.len() >= MAX_CONNECTIONS {
                    tracing::warn!(%peer, "admin API: too many connections; closing this one");
                    continue;
                }
                let state = Arc::clone(&state);
                let stream_shutdown = shutdown.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.load_full();
                    let stream_shutdown = stream_shutdown.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let resp = match read_body(body).await {
                            Ok(body) => {
                                let path = parts.uri.path();
                                match router::handle(&state, &parts.method, path, &parts.headers, &body) {
                                    Reply::Done(resp) => resp.map(|b| b.boxed()),
                                    Reply::EventStream { after } => {
                                        event_stream(sse::start(&state.events, after, stream_shutdown))
                                    }
                                    Reply::Reload => reload(&state).await.map(|b| b.boxed()),
                                }
                            }
                            Err(resp) => resp.map(|b| b.boxed()),
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = http.serve_connection(TokioIo::new(stream), svc);
                let mut shutdown = shutdown.clone();
                conns.spawn(async move {
                    let mut conn = std::pin::pin!(conn);
                    // Run the connection to its end, or until shutdown; then let it finish
                    // the response in progress and close.
                    let res = tokio::select! {
                        res = conn.as_mut() => res,
                        () = wait_for_shutdown(&mut shutdown) => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "admin API connection ended with an error");
                    }
                });
            }
        }
    }

    drop(listener);
    tracing::info!(%local, open = conns.len(), "admin API shutting down");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "admin API: connections still open after drain; closing"
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// Request bodies are tiny (`{"weight": 5}`); anything larger is refused, never buffered.
const MAX_BODY: usize = 64 * 1024;

async fn read_body(body: Incoming) -> Result<Bytes, Response<Full<Bytes>>> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => {
            let mut resp = Response::new(Full::new(Bytes::from_static(
                b"request body too large or unreadable\n",
            )));
            *resp.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
            Err(resp)
        }
    }
}

async fn wait_for_shutdown(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

const RELOAD: &str = "/api/v1/reload";

/// `POST /api/v1/reload` (the router checked the method and the token): re-read the
/// configuration file, as SIGHUP does, and answer with what changed (200) or why nothing did
/// (422, the old configuration keeps running).
async fn reload(state: &AdminState) -> Response<Full<Bytes>> {
    let Some(hook) = &state.on_reload else {
        return router::error(
            RELOAD,
            hyper::StatusCode::NOT_IMPLEMENTED,
            "this node cannot reload its configuration through the API".into(),
        );
    };
    match (hook.0)().await {
        Ok(Ok(report)) => router::json(hyper::StatusCode::OK, &report),
        Ok(Err(message)) => router::error(RELOAD, hyper::StatusCode::UNPROCESSABLE_ENTITY, message),
        Err(_) => router::error(
            RELOAD,
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down".into(),
        ),
    }
}
