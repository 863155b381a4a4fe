//! Schedulers and the live backend set of each pool.
//!
//! Pure code: no sockets, no clock reads. The data plane asks a [`PoolRuntime`] to pick a
//! backend; the control plane (health checks, admin actions) publishes health changes, which
//! rebuild the pool's selection snapshot and swap it in atomically.

pub mod scheduler;
pub mod topology;

pub use scheduler::{build as build_scheduler, Candidate, LoadView, RequestKey, Scheduler};
pub use topology::{
    ActiveGuard, BackendRuntime, BackendStats, Health, HealthDetail, Pick, PoolRuntime,
    ServiceStats, Topology,
};
