//! Connecting to a backend: with the pool's adaptive connect timeout, and every outcome
//! reported to the pool, which is how passive failure detection learns of a dead backend
//! between active checks. A pool with `proxy_protocol` gets its PROXY header here, before
//! anything else is written to the connection.

use std::io;
use std::time::Instant;

use tandem_balance::{BackendRuntime, PoolRuntime, SORRY_ID};
use tandem_config::Timeouts;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::proxy_protocol::Addresses;

/// A new connection to `backend` of `pool`, `TCP_NODELAY` set. A failure has been counted,
/// may have ejected the backend, and has been logged; the caller offers the work to another
/// backend.
///
/// When the pool sends the PROXY protocol, the connection starts with a header announcing
/// `client` (see [`crate::proxy_protocol::endpoints`]; `None` sends v2 `LOCAL` / v1 `UNKNOWN`).
pub(crate) async fn connect(
    pool: &PoolRuntime,
    backend: &BackendRuntime,
    timeouts: &Timeouts,
    client: Option<Addresses>,
) -> io::Result<TcpStream> {
    let limit = pool.connect_timeout(timeouts.connect_min, timeouts.connect);
    let started = Instant::now();
    let attempt = async {
        let mut s = tokio::time::timeout(limit, TcpStream::connect(backend.address))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {}ms", limit.as_millis()),
                )
            })??;
        s.set_nodelay(true)?;
        if let Some(version) = pool.proxy_protocol {
            // At most 104 bytes into an empty socket buffer: one write, as the spec asks.
            let mut header = Vec::with_capacity(108);
            crate::proxy_protocol::encode(version.into(), client, &mut header);
            tokio::time::timeout(limit, s.write_all(&header))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "PROXY header not sent"))??;
        }
        Ok(s)
    };
    match attempt.await {
        Ok(s) => {
            // The sorry server is not part of the pool: its connect times would skew the
            // pool's estimate, and it is never ejected.
            if backend.id != SORRY_ID {
                pool.connect_succeeded(backend.id, started.elapsed());
            }
            Ok(s)
        }
        Err(e) => {
            if backend.id == SORRY_ID {
                backend
                    .stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if let Some(length) = pool.connect_failed(backend.id, Instant::now()) {
                tracing::warn!(
                    pool = %pool.name,
                    backend = %backend.address,
                    seconds = length.as_secs(),
                    "backend ejected: {} connects in a row failed",
                    pool.outlier.consecutive_connect_failures
                );
            }
            tracing::warn!(backend = %backend.address, error = %e, "backend connect failed");
            Err(e)
        }
    }
}
