//! tandem's admin API: JSON under `/api/v1`, Prometheus `/metrics`, `/healthz`.
//!
//! A read-only window on the live [`tandem_balance::Topology`]. Every response is built from
//! the data plane's own atomics at request time, so there is no second copy of any state to
//! drift, and serving the API costs the data plane nothing but a few relaxed loads.
//!
//! ```no_run
//! # async fn run(topology: std::sync::Arc<tandem_balance::Topology>) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let state = tandem_admin::AdminState::new(topology, Vec::new(), env!("CARGO_PKG_VERSION"));
//! let state = Arc::new(arc_swap::ArcSwap::from_pointee(state));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9900").await?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let server = tokio::spawn(tandem_admin::serve(listener, state, stopped));
//! // ... later:
//! let _ = stop.send(true);
//! # let _ = server.await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`router`] maps a request to a response with no I/O, [`view`] and [`overview`]
//! hold the JSON shapes, [`metrics`] the Prometheus collector, [`server`] the hyper shell,
//! [`events`] the recent state changes (and `sse` their stream), [`auth`] the bearer token,
//! [`dashboard`] the embedded page, [`time`] RFC 3339.

pub mod auth;
pub mod dashboard;
pub mod events;
pub mod metrics;
mod metrics_vrrp;
pub mod overview;
pub mod router;
pub mod server;
mod sse;
pub mod state;
pub mod time;
pub mod view;

pub use auth::AuthPolicy;
pub use events::{Event, EventKind, Events};
pub use server::serve;
pub use state::{
    mode_name, ActionHook, AdminState, ClusterSource, OperatorAction, ReloadHook, ServiceInfo,
    SharedAdmin, VrrpSource,
};
pub use view::VrrpView;
