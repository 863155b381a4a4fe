//! Connecting to a backend: with the pool's adaptive connect timeout, and every outcome
//! reported to the pool, which is how passive failure detection learns of a dead backend
//! between active checks.

use std::io;
use std::time::Instant;

use tandem_balance::{BackendRuntime, PoolRuntime, SORRY_ID};
use tandem_config::Timeouts;
use tokio::net::TcpStream;

/// A new connection to `backend` of `pool`, `TCP_NODELAY` set. A failure has been counted,
/// may have ejected the backend, and has been logged; the caller offers the work to another
/// backend.
pub(crate) async fn connect(
    pool: &PoolRuntime,
    backend: &BackendRuntime,
    timeouts: &Timeouts,
) -> io::Result<TcpStream> {
    let limit = pool.connect_timeout(timeouts.connect_min, timeouts.connect);
    let started = Instant::now();
    let attempt = async {
        let s = tokio::time::timeout(limit, TcpStream::connect(backend.address))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {}ms", limit.as_millis()),
                )
            })??;
        s.set_nodelay(true)?;
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
