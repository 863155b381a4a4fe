//! Connections to backends: connect with a timeout, HTTP/1.1 handshake, and a per-worker pool
//! of idle keep-alive connections per backend address.
//!
//! The pool belongs to one worker thread (each worker has its own), so a connection's I/O task
//! and the requests using it always run on the same thread.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use std::sync::Arc;

use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tandem_balance::{BackendRuntime, PoolRuntime};
use tandem_config::{BackendProtocol, BackendTls};

use crate::body::{BackendBody, RequestBody};
use crate::proxy_protocol::Addresses;
use tandem_config::Timeouts;
use tokio::time::Instant;

/// A backend connection ready for a request: HTTP/1.1 (one request at a time) or HTTP/2
/// (multiplexed: the same connection is handed to every request, and stays in the pool).
pub(crate) enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

/// A pooled backend connection: one of hyper's, or a cleartext HTTP/1.1 connection spoken to
/// by [`crate::h1_upstream`] (idle between requests). A pool only ever holds one kind.
pub(crate) enum Conn {
    Hyper(Sender),
    Native(Box<crate::h1_upstream::NativeConn>),
}

impl Conn {
    fn is_closed(&self) -> bool {
        match self {
            Conn::Hyper(s) => s.is_closed(),
            Conn::Native(c) => !c.still_idle(),
        }
    }
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }
}

/// Idle connections kept per backend and worker; beyond this a finished connection is closed.
const MAX_IDLE_PER_BACKEND: usize = 256;

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
    #[error("TLS: {0}")]
    Tls(io::Error),
    #[error("{0}")]
    Send(hyper::Error),
    #[error("no response within the response timeout")]
    ResponseTimeout,
    #[error("backend found dead while the request waited")]
    Gone,
    #[error("{0}")]
    Exchange(crate::h1_upstream::ExchangeError),
}

/// A failed exchange; `unsent` holds the request when the backend never saw any of it.
pub(crate) struct Failed {
    pub(crate) error: UpstreamError,
    pub(crate) unsent: Option<Request<RequestBody>>,
    /// The request after the backend saw it (its body, if any, consumed): the native client
    /// gives it back, so replaying a body-less request needs no copy of its head. (hyper's
    /// client keeps it.)
    pub(crate) seen: Option<Request<RequestBody>>,
}

/// Whether `pool`'s requests go through [`crate::h1_upstream`] rather than hyper's client.
pub(crate) fn is_native(pool: &PoolRuntime) -> bool {
    pool.protocol == BackendProtocol::Http1 && pool.tls.is_none()
}

pub(crate) struct Upstreams {
    /// Per pool, then per backend address: a connection made for one pool (its TLS name and
    /// verification, its protocol) is never reused for another pool that lists the same
    /// address.
    idle: HashMap<String, HashMap<SocketAddr, Mutex<Vec<Conn>>>>,
    timeouts: Timeouts,
    /// Per pool name: the TLS client configuration of pools with `tls`.
    tls: HashMap<String, Arc<rustls::ClientConfig>>,
}

/// The TLS client configuration of a pool: its CA file or the system's roots, or no
/// verification with `verify = false`; ALPN per protocol.
pub(crate) fn client_config(
    t: &BackendTls,
    protocol: BackendProtocol,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut cfg = if t.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &t.ca_file {
            Some(path) => {
                for c in rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                {
                    let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    cfg.alpn_protocols = match protocol {
        BackendProtocol::H2 => vec![b"h2".to_vec()],
        BackendProtocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(cfg))
}

/// `verify = false`: accepts any certificate (signatures are still checked, so the
/// handshake is sound; only the identity is not).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Upstreams {
    /// `addrs`: (pool name, backend address) pairs whose connections may be pooled.
    pub(crate) fn new(
        addrs: impl IntoIterator<Item = (String, SocketAddr)>,
        timeouts: Timeouts,
        tls: HashMap<String, Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut idle: HashMap<String, HashMap<SocketAddr, Mutex<Vec<Conn>>>> = HashMap::new();
        for (pool, a) in addrs {
            idle.entry(pool)
                .or_default()
                .insert(a, Mutex::new(Vec::new()));
        }
        Upstreams {
            idle,
            timeouts,
            tls,
        }
    }

    fn slot(&self, pool: &str, addr: SocketAddr) -> Option<&Mutex<Vec<Conn>>> {
        self.idle.get(pool)?.get(&addr)
    }

    fn checkout(&self, pool: &str, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self
            .slot(pool, addr)?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if s.is_closed() {
                continue;
            }
            // HTTP/2: the connection serves every request at once; it stays in the pool.
            if let Conn::Hyper(Sender::H2(h2)) = &s {
                let shared = Conn::Hyper(Sender::H2(h2.clone()));
                idle.push(s);
                return Some(shared);
            }
            return Some(s);
        }
        None
    }

    /// Return a connection whose response has been read completely.
    pub(crate) fn checkin(&self, pool: &str, addr: SocketAddr, sender: Conn) {
        if sender.is_closed() {
            return;
        }
        // An HTTP/2 connection never left the pool.
        if matches!(sender, Conn::Hyper(Sender::H2(_))) {
            return;
        }
        if let Some(idle) = self.slot(pool, addr) {
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_PER_BACKEND {
                idle.push(sender);
            }
        }
    }

    async fn connect(
        &self,
        pool: &PoolRuntime,
        backend: &BackendRuntime,
        client: Option<Addresses>,
    ) -> Result<Sender, UpstreamError> {
        let addr = backend.address;
        let tcp = crate::connect::connect(pool, backend, &self.timeouts, client)
            .await
            .map_err(UpstreamError::Connect)?;
        match self.tls.get(&pool.name) {
            Some(cfg) => {
                let name = pool
                    .tls
                    .as_ref()
                    .and_then(|t| t.sni.clone())
                    .and_then(|n| rustls::pki_types::ServerName::try_from(n).ok())
                    .unwrap_or(rustls::pki_types::ServerName::IpAddress(addr.ip().into()));
                let tls = tokio::time::timeout(
                    self.timeouts.connect,
                    tokio_rustls::TlsConnector::from(Arc::clone(cfg)).connect(name, tcp),
                )
                .await
                .map_err(|_| {
                    UpstreamError::Tls(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "handshake timed out",
                    ))
                })?
                .map_err(UpstreamError::Tls)?;
                self.handshake(TokioIo::new(tls), pool, addr).await
            }
            None => self.handshake(TokioIo::new(tcp), pool, addr).await,
        }
    }

    async fn handshake<I>(
        &self,
        io: I,
        pool: &PoolRuntime,
        addr: SocketAddr,
    ) -> Result<Sender, UpstreamError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        match pool.protocol {
            BackendProtocol::Http1 => {
                let (sender, conn) = http1::Builder::new()
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::Handshake)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(backend = %addr, error = %e, "backend connection ended");
                    }
                });
                Ok(Sender::H1(sender))
            }
            BackendProtocol::H2 => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::Handshake)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(backend = %addr, error = %e, "backend connection ended");
                    }
                });
                let sender = Sender::H2(sender);
                if let Some(idle) = self.slot(&pool.name, addr) {
                    // Shared by every request from now on (see `checkout`).
                    if let Sender::H2(s) = &sender {
                        idle.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Conn::Hyper(Sender::H2(s.clone())));
                    }
                }
                Ok(sender)
            }
        }
    }

    /// Send `req` to `addr` on a pooled connection (or a new one), returning the response head
    /// and the connection, which the caller checks back in once the body has been read.
    ///
    /// A pooled connection that turns out to be closed before the request was written is
    /// replaced by a fresh one; that is always safe because the backend saw nothing. When even
    /// a fresh connection cannot be made, the request comes back with the error so the caller
    /// can offer it to another backend.
    ///
    /// With `abandon_if_gone` (a request that can be replayed elsewhere), the wait for the
    /// response ends as soon as the backend is found dead: marked down or ejected. `client` is
    /// what a new connection's PROXY header announces, if the pool sends one.
    pub(crate) async fn send(
        &self,
        pool: &PoolRuntime,
        backend: &BackendRuntime,
        req: Request<RequestBody>,
        deadline: Instant,
        abandon_if_gone: bool,
        client: Option<Addresses>,
    ) -> Result<(Response<BackendBody>, Option<Conn>), Failed> {
        if is_native(pool) {
            self.send_native(pool, backend, req, deadline, abandon_if_gone, client)
                .await
        } else {
            // Boxed: hyper's handshakes (and TLS's) make a large state machine, which would
            // otherwise be part of every request's future, native ones included, and be copied
            // with it.
            Box::pin(self.send_hyper(pool, backend, req, deadline, abandon_if_gone, client)).await
        }
    }

    /// [`send`](Self::send) through hyper's client (pools with TLS or HTTP/2).
    async fn send_hyper(
        &self,
        pool: &PoolRuntime,
        backend: &BackendRuntime,
        mut req: Request<RequestBody>,
        deadline: Instant,
        abandon_if_gone: bool,
        client: Option<Addresses>,
    ) -> Result<(Response<BackendBody>, Option<Conn>), Failed> {
        loop {
            let (mut sender, pooled) = match self.checkout(&pool.name, backend.address) {
                Some(Conn::Hyper(s)) => (s, true),
                Some(Conn::Native(_)) | None => match self.connect(pool, backend, client).await {
                    Ok(s) => (s, false),
                    Err(error) => {
                        return Err(Failed {
                            error,
                            unsent: Some(req),
                            seen: None,
                        })
                    }
                },
            };
            if pooled && sender.ready().await.is_err() {
                continue;
            }
            // Watch first, then look: a death between the two is never missed.
            let gone = backend.gone();
            tokio::pin!(gone);
            if abandon_if_gone && backend.is_gone() {
                return Err(Failed {
                    error: UpstreamError::Gone,
                    unsent: Some(req),
                    seen: None,
                });
            }
            let send = async {
                match &mut sender {
                    Sender::H1(s) => s.try_send_request(req).await,
                    Sender::H2(s) => s.try_send_request(req).await,
                }
            };
            let exchange = tokio::time::timeout_at(deadline, send);
            let outcome = if abandon_if_gone {
                tokio::select! {
                    biased;
                    r = exchange => r,
                    () = &mut gone => {
                        return Err(Failed {
                            error: UpstreamError::Gone,
                            unsent: None,
                            seen: None,
                        })
                    }
                }
            } else {
                exchange.await
            };
            match outcome {
                Err(_) => {
                    return Err(Failed {
                        error: UpstreamError::ResponseTimeout,
                        unsent: None,
                        seen: None,
                    })
                }
                Ok(Ok(resp)) => {
                    return Ok((resp.map(BackendBody::Hyper), Some(Conn::Hyper(sender))))
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if pooled => req = unsent,
                    unsent => {
                        return Err(Failed {
                            error: UpstreamError::Send(e.into_error()),
                            unsent,
                            seen: None,
                        })
                    }
                },
            }
        }
    }

    /// [`send`](Self::send) for cleartext HTTP/1.1 pools: the exchange runs in the caller's
    /// task (see [`crate::h1_upstream`]). The same rules: a pooled connection found closed
    /// before the backend saw the request is replaced by a new one; a connect failure returns
    /// the request.
    async fn send_native(
        &self,
        pool: &PoolRuntime,
        backend: &BackendRuntime,
        mut req: Request<RequestBody>,
        deadline: Instant,
        abandon_if_gone: bool,
        client: Option<Addresses>,
    ) -> Result<(Response<BackendBody>, Option<Conn>), Failed> {
        loop {
            let pooled = match self.checkout(&pool.name, backend.address) {
                Some(Conn::Native(s)) => Some(s),
                _ => None,
            };
            let (stream, pooled) = match pooled {
                Some(s) => (s, true),
                None => {
                    // Boxed: only new connections pay for this state machine (see `send`).
                    let connect = crate::connect::connect(pool, backend, &self.timeouts, client);
                    match Box::pin(connect).await {
                        Ok(s) => (crate::h1_upstream::NativeConn::new(s), false),
                        Err(e) => {
                            return Err(Failed {
                                error: UpstreamError::Connect(e),
                                unsent: Some(req),
                                seen: None,
                            })
                        }
                    }
                }
            };
            // Watch first, then look: a death between the two is never missed.
            let gone = backend.gone();
            tokio::pin!(gone);
            if abandon_if_gone && backend.is_gone() {
                return Err(Failed {
                    error: UpstreamError::Gone,
                    unsent: Some(req),
                    seen: None,
                });
            }
            let outcome = {
                let exchange = tokio::time::timeout_at(
                    deadline,
                    crate::h1_upstream::exchange(stream, &mut req),
                );
                if abandon_if_gone {
                    tokio::select! {
                        biased;
                        r = exchange => Some(r),
                        () = &mut gone => None,
                    }
                } else {
                    Some(exchange.await)
                }
            };
            match outcome {
                None => {
                    return Err(Failed {
                        error: UpstreamError::Gone,
                        unsent: None,
                        seen: Some(req),
                    })
                }
                Some(Err(_)) => {
                    return Err(Failed {
                        error: UpstreamError::ResponseTimeout,
                        unsent: None,
                        seen: Some(req),
                    })
                }
                Some(Ok(Ok(resp))) => return Ok((resp.map(BackendBody::Native), None)),
                Some(Ok(Err((_, true)))) if pooled => continue,
                Some(Ok(Err((error, true)))) => {
                    return Err(Failed {
                        error: UpstreamError::Exchange(error),
                        unsent: Some(req),
                        seen: None,
                    })
                }
                Some(Ok(Err((error, false)))) => {
                    return Err(Failed {
                        error: UpstreamError::Exchange(error),
                        unsent: None,
                        seen: Some(req),
                    })
                }
            }
        }
    }
}
