//! Health checks: a pure rise/fall [`tracker`], the async [`probe`]s that feed it, and the
//! [`checker`] loop that runs probes on a schedule.
//!
//! The checker is decoupled from the rest of tandem: it reports transitions through a
//! callback, so this crate knows nothing of pools or the data plane (DESIGN.md: control-plane
//! tasks publish state, they never touch the data plane).

pub mod checker;
pub mod exec;
pub mod icmp;
pub mod probe;
pub mod tracker;

pub use checker::{first_delay, spawn, ObserveFn, ReportFn};
pub use probe::{probe, ProbeOutcome, Prober};
pub use tracker::{Health, Tracker, Transition};
