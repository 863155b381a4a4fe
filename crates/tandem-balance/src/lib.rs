//! Schedulers and the live backend set of each pool.
//!
//! Pure code: no sockets, no clock reads (time is always an argument). The data plane asks a
//! [`PoolRuntime`] to pick a backend and reports how connects and responses went; the control
//! plane (health checks, admin actions, a periodic tick) publishes changes, which rebuild the
//! pool's selection snapshot and swap it in atomically.

pub mod backend;
pub mod connect_timer;
pub mod latency;
pub mod load;
pub mod outlier;
pub mod persistence;
pub mod pool;
pub mod retry_budget;
pub mod scheduler;
pub mod slow_start;
pub mod sticky;
pub mod token;
pub mod topology;

pub use backend::{ActiveGuard, AdminState, BackendRuntime, BackendStats, Health, HealthDetail};
pub use load::{CapacityStatus, LoadMonitor};
pub use pool::{Avoid, Pick, PoolRuntime, SORRY_ID};
pub use scheduler::{build as build_scheduler, Candidate, LoadView, RequestKey, Scheduler};
pub use topology::{ServiceStats, SharedTopology, Topology};
