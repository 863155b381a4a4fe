//! Connections to backends: connect with a timeout, HTTP/1.1 handshake, and a per-worker pool
//! of idle keep-alive connections per backend address.
//!
//! The pool belongs to one worker thread (each worker has its own), so a connection's I/O task
//! and the requests using it always run on the same thread.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tandem_balance::{BackendRuntime, PoolRuntime};

use crate::body::RequestBody;
use crate::proxy_protocol::Addresses;
use tandem_config::Timeouts;
use tokio::time::Instant;

pub(crate) type Sender = SendRequest<RequestBody>;

/// Idle connections kept per backend and worker; beyond this a finished connection is closed.
const MAX_IDLE_PER_BACKEND: usize = 256;

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
    #[error("{0}")]
    Send(hyper::Error),
    #[error("no response within the response timeout")]
    ResponseTimeout,
    #[error("backend found dead while the request waited")]
    Gone,
}

/// A failed exchange; `unsent` holds the request when the backend never saw any of it.
pub(crate) struct Failed {
    pub(crate) error: UpstreamError,
    pub(crate) unsent: Option<Request<RequestBody>>,
}

pub(crate) struct Upstreams {
    idle: HashMap<SocketAddr, Mutex<Vec<Sender>>>,
    timeouts: Timeouts,
}

impl Upstreams {
    pub(crate) fn new(addrs: impl IntoIterator<Item = SocketAddr>, timeouts: Timeouts) -> Self {
        Upstreams {
            idle: addrs
                .into_iter()
                .map(|a| (a, Mutex::new(Vec::new())))
                .collect(),
            timeouts,
        }
    }

    fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self
            .idle
            .get(&addr)?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Return a connection whose response has been read completely.
    pub(crate) fn checkin(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Some(idle) = self.idle.get(&addr) {
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
        let io = TokioIo::new(
            crate::connect::connect(pool, backend, &self.timeouts, client)
                .await
                .map_err(UpstreamError::Connect)?,
        );
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended");
            }
        });
        Ok(sender)
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
        mut req: Request<RequestBody>,
        deadline: Instant,
        abandon_if_gone: bool,
        client: Option<Addresses>,
    ) -> Result<(Response<Incoming>, Sender), Failed> {
        loop {
            let (mut sender, pooled) = match self.checkout(backend.address) {
                Some(s) => (s, true),
                None => match self.connect(pool, backend, client).await {
                    Ok(s) => (s, false),
                    Err(error) => {
                        return Err(Failed {
                            error,
                            unsent: Some(req),
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
                });
            }
            let exchange = tokio::time::timeout_at(deadline, sender.try_send_request(req));
            let outcome = if abandon_if_gone {
                tokio::select! {
                    biased;
                    r = exchange => r,
                    () = &mut gone => {
                        return Err(Failed {
                            error: UpstreamError::Gone,
                            unsent: None,
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
                    })
                }
                Ok(Ok(resp)) => return Ok((resp, sender)),
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if pooled => req = unsent,
                    unsent => {
                        return Err(Failed {
                            error: UpstreamError::Send(e.into_error()),
                            unsent,
                        })
                    }
                },
            }
        }
    }
}
