//! All pools of a configuration and the counters of every service.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tandem_config::Config;

use crate::pool::PoolRuntime;

/// What a service's listener saw that is not any one backend's doing, so an operator can tell
/// "clients send garbage" and "no backend to send to" from backend trouble.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Requests refused before any backend was involved: malformed (400), head too large
    /// (431), method not allowed (405), head not finished within header_timeout (408).
    pub rejected: AtomicU64,
    /// Requests or connections turned away because no backend was available or all were full.
    pub no_backend: AtomicU64,
    /// Error answers tandem gave on a backend's behalf (502, 504).
    pub backend_errors: AtomicU64,
    /// Requests replayed on another backend after getting no response (connect failures,
    /// which are always retried, are not counted here).
    pub retries: AtomicU64,
}

/// All pools of a configuration, by name, and the counters of every service.
#[derive(Debug, Default)]
pub struct Topology {
    pub pools: Vec<Arc<PoolRuntime>>,
    /// `(service name, counters)` in configuration order.
    pub services: Vec<(String, Arc<ServiceStats>)>,
}

impl Topology {
    pub fn new(cfg: &Config) -> Self {
        Topology {
            pools: cfg
                .pools
                .iter()
                .map(|p| Arc::new(PoolRuntime::new(p)))
                .collect(),
            services: cfg
                .services
                .iter()
                .map(|s| (s.name.clone(), Arc::new(ServiceStats::default())))
                .collect(),
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolRuntime>> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn service_stats(&self, name: &str) -> Option<&Arc<ServiceStats>> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}
