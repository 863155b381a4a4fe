//! The TCP service (`mode = "tcp"`): one backend per client connection, bytes copied both ways
//! with half-close passed through (a client's FIN becomes a FIN to the backend and the other
//! direction keeps flowing until the backend closes too).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tandem_balance::persistence::Pinned;
use tandem_balance::{Avoid, RequestKey};
use tandem_config::{Service, Timeouts};
use tokio::net::TcpStream;

use crate::activity::{Activity, ActivityIo};
use crate::connect::connect;
use crate::proxy_protocol::{self, Acceptor};
use crate::slot::{Acquired, Balancer};
/// Copy buffer per direction: large enough that bulk transfers take few syscalls, small
/// enough that thousands of idle connections do not pin much memory.
const COPY_BUF: usize = 32 * 1024;

pub(crate) struct TcpService {
    balancer: Arc<Balancer>,
    timeouts: Timeouts,
    /// `accept_proxy_protocol`.
    accept_proxy: Option<Acceptor>,
    access_log: Option<crate::access_log::AccessLog>,
}

impl TcpService {
    pub(crate) fn new(
        cfg: &Service,
        balancer: Arc<Balancer>,
        access_log: Option<crate::access_log::AccessLog>,
    ) -> Self {
        TcpService {
            accept_proxy: Acceptor::new(cfg, Arc::clone(&balancer.stats)),
            balancer,
            timeouts: cfg.timeouts.clone(),
            access_log,
        }
    }

    pub(crate) async fn serve_connection(self: Arc<Self>, client: TcpStream, peer: SocketAddr) {
        // From a trusted proxy: its PROXY header says who the client is (nothing is sent to a
        // backend before it has been read); a bad one just closes the connection.
        let (peer, local) = match &self.accept_proxy {
            None => (peer, None),
            Some(a) => match a.accept(&client, peer).await {
                Ok(Some(x)) => (x.source, Some(x.destination)),
                Ok(None) => (peer, None),
                Err(_) => return,
            },
        };
        let announce = proxy_protocol::endpoints(&self.balancer.pool, peer, local, &client);
        let key = RequestKey {
            client: Some(peer.ip()),
            hash: None,
        };
        // A failed connect is retried on another backend: the client has sent nothing that
        // could be lost, since nothing is read from it before a backend is connected.
        let mut avoid = Avoid::default();
        // source_ip persistence (the only kind a tcp service has).
        let now = std::time::Instant::now();
        let pinned = self
            .balancer
            .persist
            .as_ref()
            .map_or(Pinned::None, |p| p.pin(None, peer.ip(), now));
        while !avoid.is_full() {
            let slot = match self.balancer.acquire_pinned(&key, &avoid, pinned).await {
                Acquired::Slot(s) => s,
                Acquired::Busy
                | Acquired::NoBackend
                | Acquired::Exhausted
                | Acquired::PinnedDown => {
                    tracing::debug!(%peer, pool = %self.balancer.pool.name, "no backend for connection");
                    return;
                }
            };
            let backend = Arc::clone(slot.backend());
            avoid.insert(backend.id);
            let Ok(upstream) =
                connect(&self.balancer.pool, &backend, &self.timeouts, announce).await
            else {
                continue;
            };
            if let Some(p) = &self.balancer.persist {
                p.chosen(pinned, backend.id, peer.ip(), now);
            }
            let activity = Arc::new(Activity::default());
            let mut c = ActivityIo::new(client, Arc::clone(&activity));
            let mut b = ActivityIo::new(upstream, Arc::clone(&activity));
            let started = std::time::Instant::now();
            let mut moved = (0, 0);
            tokio::select! {
                r = tokio::io::copy_bidirectional_with_sizes(&mut c, &mut b, COPY_BUF, COPY_BUF) => {
                    if let Ok((up, down)) = r {
                        backend.stats.bytes_in.fetch_add(up, Ordering::Relaxed);
                        backend.stats.bytes_out.fetch_add(down, Ordering::Relaxed);
                        moved = (up, down);
                    }
                }
                _ = activity.idle_expired(self.timeouts.idle) => {
                    tracing::debug!(%peer, backend = %backend.address, "idle timeout");
                }
            }
            drop(slot);
            if let Some(log) = &self.access_log {
                log.log(crate::access_log::Record {
                    at: std::time::SystemTime::now(),
                    client: peer.ip(),
                    request: String::new(),
                    protocol: "TCP",
                    status: 0,
                    bytes: moved.1,
                    bytes_in: moved.0,
                    backend: Some(backend.address),
                    duration: started.elapsed(),
                    backend_time: None,
                });
            }
            return;
        }
    }
}
