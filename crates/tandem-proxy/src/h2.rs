//! The request side shared by HTTP/2 clients (served by [`crate::h2_server`]) and by HTTP/1.1
//! clients of services whose pools need TLS or HTTP/2 towards their backends (served by
//! hyper): routing, persistence, limits, retries, and the exchange with a backend, through
//! [`crate::h1_upstream`] for cleartext HTTP/1.1 pools and hyper's client for the others.
//!
//! The lifecycle of a request reads top to bottom in [`H2Service::handle`]: take a slot,
//! rewrite the head, send (offering the request to another backend when a connect fails before
//! anything was sent, and replaying an idempotent body-less request that got no response, as
//! the HTTP/1 engine does), rewrite the response head, stream the body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tandem_balance::persistence::{Pinned, ServicePersistence};
use tandem_balance::{Avoid, RequestKey};
use tandem_config::{CookieMode, PersistenceKind};
use tandem_config::{Service, Timeouts};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::activity::{Activity, ActivityIo, Prefixed};
use crate::body::{BackendBody, ClientBody, Finish, ProxyBody, RequestBody, UpstreamBody};
use crate::headers;
use crate::proxy_protocol::Addresses;
use crate::slot::{Acquired, Balancer, Slot};
use crate::upstream::{Failed, UpstreamError, Upstreams};

/// How a connection reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// Cleartext HTTP/2 with prior knowledge, handed over by the HTTP/1 engine.
    H2c,
    /// HTTP/2 over TLS (ALPN h2).
    H2Tls,
    /// HTTP/1.1 over TLS, for services whose pools need TLS or HTTP/2 to their backends
    /// (otherwise the HTTP/1 engine serves it).
    H1Tls,
    /// Cleartext HTTP/1.1 served by hyper (services whose pools need TLS or HTTP/2 to their
    /// backends, which the HTTP/1 engine does not speak).
    H1Plain,
}

pub(crate) struct H2Service {
    /// `tls.hsts`: added to every response over TLS.
    hsts: Option<HeaderValue>,
    /// The service's pool; `balancers` are every pool it routes to (index 0 is this one).
    balancer: Arc<Balancer>,
    balancers: Vec<Arc<Balancer>>,
    router: Option<crate::route::Router>,
    upstreams: Arc<Upstreams>,
    timeouts: Timeouts,
    /// `max_header_size`, as HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE.
    max_header_list_size: u32,
    measure_latency: bool,
    /// `max_request_body`.
    max_body: Option<u64>,
    access_log: Option<crate::access_log::AccessLog>,
}

impl H2Service {
    pub(crate) fn new(
        cfg: &Service,
        balancers: Vec<Arc<Balancer>>,
        router: Option<crate::route::Router>,
        access_log: Option<crate::access_log::AccessLog>,
    ) -> Self {
        let balancer = Arc::clone(&balancers[0]);
        let backend_addrs = |b: &Arc<Balancer>| {
            b.pool
                .backends
                .iter()
                .map(|x| x.address)
                .chain(b.pool.sorry.as_ref().map(|s| s.address))
                .collect::<Vec<_>>()
        };
        // A connection that began with a PROXY header speaks for one client: never pooled
        // (not even for a pool without the header that shares the backend's address).
        let private: Vec<SocketAddr> = balancers
            .iter()
            .filter(|b| b.pool.proxy_protocol.is_some())
            .flat_map(backend_addrs)
            .collect();
        let addrs: Vec<(String, SocketAddr)> = balancers
            .iter()
            .flat_map(|b| {
                b.pool
                    .backends
                    .iter()
                    .map(|x| x.address)
                    .chain(b.pool.sorry.as_ref().map(|s| s.address))
                    .map(|a| (b.pool.name.clone(), a))
                    .collect::<Vec<_>>()
            })
            .filter(|(_, a)| !private.contains(a))
            .collect();
        let tls = balancers
            .iter()
            .filter_map(|b| {
                let t = b.pool.tls.as_ref()?;
                match crate::upstream::client_config(t, b.pool.protocol) {
                    Ok(c) => Some((b.pool.name.clone(), c)),
                    Err(e) => {
                        tracing::error!(pool = %b.pool.name, error = %e, "backend TLS configuration failed; connections to this pool will be cleartext-refused");
                        None
                    }
                }
            })
            .collect();
        let upstreams = Arc::new(Upstreams::new(addrs, cfg.timeouts.clone(), tls));
        H2Service {
            hsts: cfg
                .tls
                .as_ref()
                .and_then(|t| t.hsts.as_deref())
                .and_then(|h| HeaderValue::from_str(h).ok()),
            // Every pool, not just `ewma` ones: the admin API's p50/p99 and the dashboard
            // read the histogram this feeds (one clock read per response).
            measure_latency: true,
            balancer: Arc::clone(&balancer),
            balancers,
            router,
            upstreams,
            timeouts: cfg.timeouts.clone(),
            max_header_list_size: u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX),
            max_body: cfg.max_request_body,
            access_log,
        }
    }

    /// Serve an HTTP/2 connection whose first bytes (`prefix`, the preface the HTTP/1 engine
    /// read to recognise it) were already taken off the socket.
    pub(crate) async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        prefix: Vec<u8>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        // For PROXY headers to backends: the client and the address it connected to.
        let client = local
            .or_else(|| stream.local_addr().ok())
            .map(|destination| Addresses {
                source: peer,
                destination,
            });
        let activity = Arc::new(Activity::default());
        let io = Prefixed::new(prefix, ActivityIo::new(stream, Arc::clone(&activity)));
        self.serve_io(io, activity, peer, client, shutdown, Proto::H2c)
            .await;
    }

    /// Serve a cleartext connection with hyper: h2c if it starts with the HTTP/2 preface, else
    /// HTTP/1.1.
    pub(crate) async fn serve_plain(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let client = local.map(|destination| Addresses {
            source: peer,
            destination,
        });
        let mut head = [0u8; 24];
        let h2 = matches!(
            tokio::time::timeout(self.timeouts.header, stream.peek(&mut head)).await,
            Ok(Ok(24)) if &head == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        );
        let activity = Arc::new(Activity::default());
        let io = ActivityIo::new(stream, Arc::clone(&activity));
        let proto = if h2 { Proto::H2c } else { Proto::H1Plain };
        self.serve_io(io, activity, peer, client, shutdown, proto)
            .await;
    }

    /// Serve a decrypted TLS connection: HTTP/2 if ALPN chose it, else HTTP/1.1 (hyper).
    pub(crate) async fn serve_tls<I>(
        self: Arc<Self>,
        io: I,
        h2: bool,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        shutdown: watch::Receiver<bool>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let io = ActivityIo::new(io, Arc::clone(&activity));
        let proto = if h2 { Proto::H2Tls } else { Proto::H1Tls };
        let client = local.map(|destination| Addresses {
            source: peer,
            destination,
        });
        self.serve_io(io, activity, peer, client, shutdown, proto)
            .await;
    }

    async fn serve_io<I>(
        self: Arc<Self>,
        io: I,
        activity: Arc<Activity>,
        peer: SocketAddr,
        client: Option<Addresses>,
        mut shutdown: watch::Receiver<bool>,
        proto: Proto,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let https = matches!(proto, Proto::H2Tls | Proto::H1Tls);
        if matches!(proto, Proto::H2c | Proto::H2Tls) {
            let peer = crate::h2_server::Peer {
                addr: peer,
                https,
                client,
            };
            crate::h2_server::serve(self, io, activity, peer, shutdown).await;
            return;
        }
        let io = TokioIo::new(io);
        let this = Arc::clone(&self);
        let act = Arc::clone(&activity);
        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
            let this = Arc::clone(&this);
            let inflight = act.begin();
            let req = req.map(ClientBody::Hyper);
            // Boxed: a large state machine, moved by hyper between its states; one small
            // allocation instead of several copies.
            Box::pin(async move {
                let resp = this.handle(req, peer, https, client).await;
                let resp = this.finish_response(resp, https);
                drop(inflight);
                Ok::<_, Infallible>(resp)
            })
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeouts.header)
            .serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = activity.idle_expired(self.timeouts.idle) => {}
            _ = crate::stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Requests refused before reaching a backend (malformed HTTP/2 requests, say).
    pub(crate) fn count_rejected(&self, n: u64) {
        self.balancer.stats.rejected.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn max_header_list_size(&self) -> u32 {
        self.max_header_list_size
    }

    /// What every response gets on its way out: HSTS over TLS (`tls.hsts`).
    pub(crate) fn finish_response(
        &self,
        mut resp: Response<ProxyBody>,
        https: bool,
    ) -> Response<ProxyBody> {
        if let (true, Some(v)) = (https, &self.hsts) {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
        resp
    }

    /// One request, with its access log line when the service keeps one.
    pub(crate) async fn handle(
        &self,
        req: Request<ClientBody>,
        peer: SocketAddr,
        https: bool,
        client: Option<Addresses>,
    ) -> Response<ProxyBody> {
        // What the log line needs from the request, taken before it is consumed. (One
        // `serve_request` call either way: a second await of it would double the size of
        // this future, which is moved whole into the connection's set of streams.)
        let logged = self.access_log.as_ref().map(|log| {
            let request = format!(
                "{} {}",
                req.method(),
                req.uri()
                    .path_and_query()
                    .map_or_else(|| req.uri().path(), |pq| pq.as_str())
            );
            let protocol = match req.version() {
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            };
            (log, std::time::Instant::now(), request, protocol)
        });
        let resp = self.serve_request(req, peer, https, client).await;
        let Some((log, started, request, protocol)) = logged else {
            return resp;
        };
        let answered = resp.extensions().get::<Answered>().copied();
        let record = crate::access_log::Record {
            at: std::time::SystemTime::now(),
            client: peer.ip(),
            request,
            protocol,
            status: resp.status().as_u16(),
            // Both set when the body has been sent (see `Logged`).
            bytes: 0,
            duration: std::time::Duration::ZERO,
            bytes_in: 0,
            backend: answered.map(|a| a.backend),
            backend_time: answered.map(|a| a.after),
        };
        resp.map(|inner| {
            ProxyBody::Logged(Box::new(crate::body::Logged {
                inner,
                log: log.clone(),
                record: Some(record),
                started,
                bytes: 0,
            }))
        })
    }

    async fn serve_request(
        &self,
        mut req: Request<ClientBody>,
        peer: SocketAddr,
        https: bool,
        client: Option<Addresses>,
    ) -> Response<ProxyBody> {
        let persist = self.balancer.persist.as_deref();
        // (The clock is read for persistence only.)
        let now = persist.map(|_| std::time::Instant::now());
        let (token, hash) = persist.map_or((None, None), |p| persist_in(p, &mut req));
        let pinned = persist.map_or(Pinned::None, |p| {
            let now = now.unwrap_or_else(std::time::Instant::now);
            p.pin(token.as_ref().map(|t| &t[..]), peer.ip(), now)
        });
        let key = RequestKey {
            client: Some(peer.ip()),
            hash,
        };
        let mut req = prepare_request(req, peer, if https { "https" } else { "http" });
        let (balancer, route) = match self.route(&mut req, peer) {
            Ok(x) => x,
            Err(local) => return local,
        };
        let persist = if std::ptr::eq(balancer, &*self.balancer) {
            persist
        } else {
            None
        };
        // Only an idempotent request without a body may be sent again after a backend saw it.
        // The native client gives a request back after a failure; hyper's keeps it, so for
        // its pools the head is copied first.
        let replayable = Replay::allowed(&req);
        let replay =
            (replayable && !crate::upstream::is_native(&balancer.pool)).then(|| Replay::of(&req));
        let mut req = match self.max_body {
            None => req.map(RequestBody::Client),
            // Boxed: only services with the limit pay for this state machine.
            Some(max) => match Box::pin(self.limit_body(req, max)).await {
                Ok(req) => req,
                Err(refused) => return refused,
            },
        };
        let deadline = Instant::now() + self.timeouts.response;
        let pool = &balancer.pool;
        let mut avoid = Avoid::default();
        let mut replays = 0;
        let mut last = None;
        while !avoid.is_full() {
            let slot = match balancer.acquire_pinned(&key, &avoid, pinned).await {
                Acquired::Slot(s) => s,
                Acquired::Busy => {
                    return local(StatusCode::SERVICE_UNAVAILABLE, "all backends are busy\n")
                }
                Acquired::NoBackend => return no_backend(),
                Acquired::PinnedDown => {
                    return local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the backend of this session is down\n",
                    )
                }
                Acquired::Exhausted => break,
            };
            let id = slot.backend().id;
            avoid.insert(id);
            let issue = persist.is_some_and(|p| {
                let now = now.unwrap_or_else(std::time::Instant::now);
                p.chosen(pinned, id, peer.ip(), now)
            });
            if let Some(p) = persist {
                persist_request_header(p, id, req.headers_mut());
            }
            match self
                .forward(balancer, req, slot, deadline, replayable, client)
                .await
            {
                Ok(mut resp) => {
                    if let Some(p) = persist {
                        persist_out(p, id, issue, resp.headers_mut());
                    }
                    self.response_headers(route, resp.headers_mut());
                    return resp;
                }
                // A connect failure: the backend never saw the request; always safe.
                Err(Lost::Unsent(unsent)) => req = *unsent,
                Err(Lost::NoResponse(error, seen)) => {
                    let retry = replayable
                        && error.replayable()
                        && replays < pool.retries.max
                        && pool.budget.try_spend();
                    let again = match (retry, seen, &replay) {
                        (true, Some(seen), _) => {
                            let mut r = *seen;
                            *r.body_mut() = RequestBody::Empty;
                            r
                        }
                        (true, None, Some(copy)) => copy.request(),
                        _ => {
                            last = Some(error);
                            break;
                        }
                    };
                    replays += 1;
                    balancer.stats.retries.fetch_add(1, Ordering::Relaxed);
                    req = again;
                    last = Some(error);
                }
            }
        }
        match last {
            Some(error) => {
                self.balancer
                    .stats
                    .backend_errors
                    .fetch_add(1, Ordering::Relaxed);
                error_response(&error)
            }
            None => local(
                StatusCode::BAD_GATEWAY,
                "no backend accepted the connection\n",
            ),
        }
    }

    /// `max_request_body`: a declared length over it is refused at once; a body of unknown
    /// length is read (up to the limit) before any backend is involved, so a backend never
    /// sees part of a body that is then refused. Refusals are counted with the other
    /// rejected requests.
    async fn limit_body(
        &self,
        req: Request<ClientBody>,
        max: u64,
    ) -> Result<Request<RequestBody>, Response<ProxyBody>> {
        use http_body_util::BodyExt as _;
        use hyper::body::Body as _;
        let hint = req.body().size_hint();
        let (parts, mut body) = req.into_parts();
        let refuse = |body: ClientBody| {
            self.balancer.stats.rejected.fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(ProxyBody::Refused(
                Some(bytes::Bytes::from_static(b"request body too large\n")),
                body,
            ));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        };
        if hint.lower() > max {
            // A small body is on its way anyway (it fits the flow-control window): read it
            // and throw it away, so the stream ends cleanly after the answer. A larger one is
            // cut short with a reset after the answer (RFC 9113 §8.1).
            if hint.lower() <= DISCARD_MAX {
                let drain = async { while let Some(Ok(_)) = body.frame().await {} };
                let _ = tokio::time::timeout(self.timeouts.header, drain).await;
            }
            return Err(refuse(body));
        }
        if hint.exact().is_some() {
            return Ok(Request::from_parts(parts, RequestBody::Client(body)));
        }
        let mut data = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(local(StatusCode::BAD_REQUEST, "request body failed\n"));
            };
            if let Some(d) = frame.data_ref() {
                if (data.len() + d.len()) as u64 > max {
                    return Err(refuse(body));
                }
                data.extend_from_slice(d);
            }
        }
        Ok(Request::from_parts(
            parts,
            RequestBody::Buffered(Some(data.freeze())),
        ))
    }

    /// Routing (as in the HTTP/1 engine): the balancer for the request and the route that
    /// matched, after rewriting the path and request headers; or the route's local answer.
    #[allow(clippy::result_large_err)]
    fn route<B>(
        &self,
        req: &mut Request<B>,
        peer: SocketAddr,
    ) -> Result<(&Balancer, Option<usize>), Response<ProxyBody>> {
        let Some(router) = &self.router else {
            // No routes and no header operations: only the pool's own rewrites.
            set_pool_host(&self.balancer, req.headers_mut());
            set_pool_close(&self.balancer, req.headers_mut());
            return Ok((&self.balancer, None));
        };
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .unwrap_or_default();
        let host_name = crate::route::strip_port(&host).to_vec();
        let method = req.method().as_str().to_string();
        let decision = router.decide(&crate::route::RequestView {
            method: &method,
            path: path.as_bytes(),
            query: query.as_bytes(),
            host: &host_name,
            headers: req.headers(),
            client: peer.ip(),
        });
        let balancer = match decision.target {
            crate::route::Target::Balancer(i) => {
                self.balancers.get(i).map_or(&*self.balancer, |b| &**b)
            }
            crate::route::Target::Local(i) => {
                let mut resp = match router.action(i) {
                    Some(tandem_config::RouteAction::Redirect { status, location }) => {
                        let loc = crate::route::expand(
                            location,
                            &host_name,
                            path.as_bytes(),
                            query.as_bytes(),
                        );
                        let mut r = local(
                            StatusCode::from_u16(*status).unwrap_or(StatusCode::FOUND),
                            "",
                        );
                        if let Ok(v) = HeaderValue::from_bytes(&loc) {
                            r.headers_mut().insert(header::LOCATION, v);
                        }
                        r
                    }
                    Some(tandem_config::RouteAction::Respond {
                        status,
                        body,
                        content_type,
                    }) => {
                        let mut r =
                            local(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK), "");
                        *r.body_mut() = ProxyBody::Local(Some(Bytes::from(body.clone())));
                        if let Ok(v) = HeaderValue::from_str(content_type) {
                            r.headers_mut().insert(header::CONTENT_TYPE, v);
                        }
                        r
                    }
                    _ => local(StatusCode::NOT_FOUND, "no route\n"),
                };
                self.response_headers(Some(i), resp.headers_mut());
                return Err(resp);
            }
        };
        if let Some(new_path) = decision
            .rewrite
            .and_then(|rw| crate::route::rewrite_path(rw, path.as_bytes()))
        {
            let mut pq = new_path;
            if !query.is_empty() {
                pq.push(b'?');
                pq.extend_from_slice(query.as_bytes());
            }
            if let Ok(uri) = Uri::try_from(pq) {
                *req.uri_mut() = uri;
            }
        }
        let headers = req.headers_mut();
        set_pool_host(balancer, headers);
        for ops in [
            Some(&router.request_headers),
            decision.route_request_headers,
        ]
        .into_iter()
        .flatten()
        {
            apply_ops(ops, headers);
        }
        set_pool_close(balancer, headers);
        Ok((balancer, decision.route))
    }

    /// The service's and the matched route's response header operations.
    fn response_headers(&self, route: Option<usize>, headers: &mut http::HeaderMap) {
        let Some(router) = &self.router else { return };
        apply_ops(&router.response_headers, headers);
        if let Some(ops) = route.and_then(|i| router.route_response_headers(i)) {
            apply_ops(ops, headers);
        }
    }

    /// Send to the slot's backend.
    async fn forward(
        &self,
        balancer: &Balancer,
        req: Request<RequestBody>,
        slot: Slot,
        deadline: Instant,
        replayable: bool,
        client: Option<Addresses>,
    ) -> Result<Response<ProxyBody>, Lost> {
        let backend = Arc::clone(slot.backend());
        let sent = std::time::Instant::now();
        let pool = &balancer.pool;
        match self
            .upstreams
            .send(pool, &backend, req, deadline, replayable, client)
            .await
        {
            Ok((resp, sender)) => {
                // One clock read for both the latency record and the access log.
                let answered = std::time::Instant::now();
                let after = answered.saturating_duration_since(sent);
                if self.measure_latency {
                    backend.record_latency(crate::mono_ns_at(answered), after.as_nanos() as u64);
                }
                let (mut parts, body) = resp.into_parts();
                if matches!(body, BackendBody::Hyper(_)) {
                    // (The native client keeps only the message's own headers.)
                    headers::strip_hop_by_hop(&mut parts.headers);
                }
                headers::append_via(&mut parts.headers, parts.version);
                let finish = Finish {
                    sender,
                    upstreams: Arc::clone(&self.upstreams),
                    pool: Arc::clone(&balancer.pool),
                    addr: backend.address,
                    slot,
                };
                if self.access_log.is_some() {
                    parts.extensions.insert(Answered {
                        backend: backend.address,
                        after,
                    });
                }
                let body = ProxyBody::Upstream(UpstreamBody::new(body, finish));
                Ok(Response::from_parts(parts, body))
            }
            Err(Failed {
                error,
                unsent,
                seen,
            }) => {
                // Connect failures were counted (and logged) where they happened.
                if !matches!(error, UpstreamError::Connect(_)) {
                    backend.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backend = %backend.address, %error, "backend request failed");
                }
                match unsent {
                    Some(req) => Err(Lost::Unsent(Box::new(req))),
                    None => Err(Lost::NoResponse(error, seen.map(Box::new))),
                }
            }
        }
    }
}

/// The largest refused request body (`max_request_body`) read and discarded rather than reset.
const DISCARD_MAX: u64 = 64 * 1024;

/// Which backend answered and how long it took (for the access log), carried on the
/// response.
#[derive(Debug, Clone, Copy)]
struct Answered {
    backend: SocketAddr,
    after: std::time::Duration,
}

/// Why a backend did not answer a request.
enum Lost {
    /// The backend never saw it (connect failed, or found dead before sending): here it is.
    /// (Boxed: only the failure path pays for moving it.)
    Unsent(Box<Request<RequestBody>>),
    /// It was sent (at least in part) and no response came; the request, if the client gave
    /// it back.
    NoResponse(UpstreamError, Option<Box<Request<RequestBody>>>),
}

impl UpstreamError {
    /// Whether a request that met this error may be replayed (if it is idempotent and has no
    /// body): no response came at all. A slow backend (response timeout) is not retried:
    /// replaying would add load to a pool that is already struggling.
    fn replayable(&self) -> bool {
        use crate::h1_upstream::ExchangeError;
        matches!(
            self,
            UpstreamError::Send(_)
                | UpstreamError::Gone
                | UpstreamError::Exchange(ExchangeError::Closed | ExchangeError::Io(_))
        )
    }
}

/// What it takes to send an idempotent, body-less request again: its head.
struct Replay {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl Replay {
    /// Whether `req` may be sent again: idempotent, without a body.
    fn allowed(req: &Request<ClientBody>) -> bool {
        use hyper::body::Body as _;
        let idempotent = matches!(
            *req.method(),
            http::Method::GET
                | http::Method::HEAD
                | http::Method::OPTIONS
                | http::Method::PUT
                | http::Method::DELETE
                | http::Method::TRACE
        );
        idempotent && req.body().is_end_stream()
    }

    fn of(req: &Request<ClientBody>) -> Replay {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        }
    }

    fn request(&self) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::Empty);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// Rewrite the request head for the backend: origin-form URI, HTTP/1.1, `Host` from the h2
/// `:authority`, hop-by-hop headers removed, client identity added.
fn prepare_request(
    req: Request<ClientBody>,
    peer: SocketAddr,
    proto: &'static str,
) -> Request<ClientBody> {
    let received = req.version();
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // Origin form: the request's own path and query (a shared buffer: cloning it copies
        // nothing, where parsing its text again allocated on every HTTP/2 request).
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(origin).unwrap_or_else(|_| Uri::from_static("/"));
    }
    let host = parts.headers.get(header::HOST).cloned();
    headers::add_forwarding(&mut parts.headers, peer, proto, host.as_ref(), received);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

fn error_response(error: &UpstreamError) -> Response<ProxyBody> {
    match error {
        UpstreamError::ResponseTimeout => local(
            StatusCode::GATEWAY_TIMEOUT,
            "backend did not answer in time\n",
        ),
        _ => local(StatusCode::BAD_GATEWAY, "backend failed to answer\n"),
    }
}

fn no_backend() -> Response<ProxyBody> {
    let mut r = local(StatusCode::SERVICE_UNAVAILABLE, "no backend available\n");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// A short plain-text answer of tandem's own.
pub(crate) fn local(status: StatusCode, msg: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Local(Some(Bytes::from_static(msg.as_bytes()))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The persistence token (cookie, url_param) or header hash a request presents; in cookie
/// prefix mode the prefix is stripped from the cookie the backend will see.
fn persist_in<B>(
    p: &ServicePersistence,
    req: &mut Request<B>,
) -> (Option<crate::persist::Token>, Option<u64>) {
    match &p.cfg.kind {
        PersistenceKind::Cookie(c) => {
            let headers = req.headers_mut();
            for v in headers.get_all(http::header::COOKIE).iter() {
                let bytes = v.as_bytes();
                if c.mode == CookieMode::Prefix {
                    let mut out = Vec::new();
                    if let Some(t) = crate::persist::strip_cookie_prefix(bytes, &c.name, &mut out) {
                        let token = crate::persist::token_of(t);
                        if let Ok(new) = http::HeaderValue::from_bytes(&out) {
                            // One Cookie field per pair is allowed in HTTP/2 (RFC 9113
                            // 8.2.3); replace the one that carried the prefix.
                            let others: Vec<http::HeaderValue> = headers
                                .get_all(http::header::COOKIE)
                                .iter()
                                .filter(|x| x.as_bytes() != bytes)
                                .cloned()
                                .collect();
                            headers.remove(http::header::COOKIE);
                            for o in others {
                                headers.append(http::header::COOKIE, o);
                            }
                            headers.append(http::header::COOKIE, new);
                        }
                        return (Some(token), None);
                    }
                } else if let Some(t) = crate::persist::cookie_value(bytes, &c.name) {
                    return (Some(crate::persist::token_of(t)), None);
                }
            }
            (None, None)
        }
        PersistenceKind::UrlParam { name } => {
            let token = req
                .uri()
                .path_and_query()
                .and_then(|pq| crate::persist::query_param(pq.as_str().as_bytes(), name))
                .map(crate::persist::token_of);
            (token, None)
        }
        PersistenceKind::Header { name } => {
            let hash = req
                .headers()
                .get(name.as_str())
                .map(|v| tandem_balance::scheduler::key_hash(v.as_bytes().trim_ascii()));
            (None, hash)
        }
        PersistenceKind::SourceIp { .. } => (None, None),
    }
}

/// url_param: tell the backend its token (`x-tandem-persist: <param>=<token>`), replacing
/// what a previous attempt on another backend set.
fn persist_request_header(p: &ServicePersistence, id: usize, headers: &mut http::HeaderMap) {
    if let PersistenceKind::UrlParam { name } = &p.cfg.kind {
        headers.remove("x-tandem-persist");
        if let Some(v) = p
            .token(id)
            .and_then(|t| http::HeaderValue::from_str(&format!("{name}={t}")).ok())
        {
            headers.insert("x-tandem-persist", v);
        }
    }
}

/// Cookie work on the response (see the HTTP/1 engine's `persist_out`).
fn persist_out(p: &ServicePersistence, id: usize, issue: bool, headers: &mut http::HeaderMap) {
    let PersistenceKind::Cookie(c) = &p.cfg.kind else {
        return;
    };
    let sets = |h: &http::HeaderMap| {
        h.get_all(http::header::SET_COOKIE)
            .iter()
            .any(|v| crate::persist::sets_cookie(v.as_bytes(), &c.name))
    };
    match c.mode {
        CookieMode::Insert => {
            if !issue || sets(headers) {
                return;
            }
            let Some(line) = p.set_cookie_line(id) else {
                return;
            };
            // The line is `Set-Cookie: value\r\n`.
            let value = line
                .strip_prefix(b"Set-Cookie: ")
                .and_then(|v| v.strip_suffix(b"\r\n"))
                .unwrap_or(line);
            if let Ok(v) = http::HeaderValue::from_bytes(value) {
                headers.append(http::header::SET_COOKIE, v);
            }
        }
        CookieMode::Prefix => {
            let Some(token) = p.token(id) else { return };
            let values: Vec<http::HeaderValue> = headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .map(|v| {
                    crate::persist::prefix_set_cookie(v.as_bytes(), &c.name, token)
                        .and_then(|n| http::HeaderValue::from_bytes(&n).ok())
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            if values.is_empty() {
                return;
            }
            headers.remove(http::header::SET_COOKIE);
            for v in values {
                headers.append(http::header::SET_COOKIE, v);
            }
        }
    }
}

/// The pool's `host`: the `Host` its backends get.
fn set_pool_host(balancer: &Balancer, headers: &mut http::HeaderMap) {
    if let Some(h) = balancer
        .pool
        .host
        .as_deref()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(header::HOST, h);
    }
}

/// `keepalive = false`: the request tells the backend the connection ends with it.
fn set_pool_close(balancer: &Balancer, headers: &mut http::HeaderMap) {
    if !balancer.pool.keepalive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Remove, set, then add (see `tandem_config::HeaderOps`).
fn apply_ops(ops: &tandem_config::HeaderOps, headers: &mut http::HeaderMap) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (k, v) in &ops.set {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    for (k, v) in &ops.add {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
}
