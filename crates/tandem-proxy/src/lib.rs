//! tandem's data plane: listeners, HTTP/1.1 (its own engine) and HTTP/2, TCP and UDP proxying over
//! the live backend set.
//!
//! Thread-per-core: every worker thread runs its own current-thread tokio runtime with its own
//! `SO_REUSEPORT` listener socket per service and its own pool of idle backend connections, so
//! a request is accepted, scheduled, proxied and pooled on one thread without cross-thread
//! wake-ups (what nginx and HAProxy do with processes/threads). The only shared state is the
//! [`tandem_balance::Topology`]: an atomically swapped selection snapshot and relaxed counters.

mod access_log;
mod activity;
mod body;
mod connect;
mod dataplane;
mod h1;
mod h1_upstream;
mod h2;
mod h2_server;
mod header_pool;
pub mod headers;
mod listener;
mod persist;
mod proxy_protocol;
mod route;
mod slot;
mod tcp;
mod tls;
mod udp;
mod upstream;

pub use dataplane::{bind, reload_plan, BoundService, Dataplane, DataplaneError, ReloadReport};

/// Resolves when the shutdown flag becomes true (or its sender is gone). The watch guard is
/// dropped inside, so callers stay `Send` across the await.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Monotonic nanoseconds since the first call, for latency bookkeeping.
pub(crate) fn mono_ns() -> u64 {
    mono_ns_at(std::time::Instant::now())
}

/// [`mono_ns`] for an instant already read.
pub(crate) fn mono_ns_at(at: std::time::Instant) -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(std::time::Instant::now))
        .as_nanos() as u64
}

/// Entry points for fuzzing the parsers tandem owns (`fuzz/`); not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::h1::fuzzing::{chunked, request_then_response};
    pub use crate::proxy_protocol::fuzzing::parse_header as proxy_protocol_header;
}
