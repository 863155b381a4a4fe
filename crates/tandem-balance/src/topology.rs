//! All pools of a configuration and the counters of every service.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tandem_config::Config;

use crate::persistence::ServicePersistence;
use crate::pool::PoolRuntime;

/// The key that signs a service's persistence tokens: its own `key`, else one derived from the
/// cluster's shared secret (so every node issues and accepts the same tokens), else random
/// bytes made once per process (tokens then do not survive a restart or a failover).
fn token_secret(
    p: &tandem_config::Persistence,
    cfg: &Config,
    generated: &std::sync::OnceLock<Vec<u8>>,
) -> Vec<u8> {
    if let Some(k) = &p.key {
        return k.0.clone();
    }
    if let Some(c) = &cfg.cluster {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &c.secret.0);
        return ring::hmac::sign(&key, b"tandem persistence token key v1")
            .as_ref()
            .to_vec();
    }
    generated
        .get_or_init(|| {
            use ring::rand::SecureRandom;
            let mut k = vec![0u8; 32];
            if ring::rand::SystemRandom::new().fill(&mut k).is_err() {
                // No system randomness: tokens are then only as secret as this process's
                // start time; say so rather than fail to start.
                clock_fallback(&mut k);
            }
            k
        })
        .clone()
}

/// A last resort key from the clock and the process id, when getrandom fails.
fn clock_fallback(k: &mut [u8]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = nanos ^ u128::from(std::process::id());
    for (i, b) in k.iter_mut().enumerate() {
        *b = (seed >> ((i % 16) * 8)) as u8;
    }
}

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
    /// TLS handshakes that failed or timed out (malformed TLS, no common cipher, a client
    /// that does not trust the certificate and aborts).
    pub tls_failures: AtomicU64,
    /// Connections from a trusted proxy (`accept_proxy_protocol`) closed because their PROXY
    /// header was missing, malformed or not complete within the header timeout.
    pub proxy_protocol_rejected: AtomicU64,
}

/// All pools of a configuration, by name, and the counters of every service.
#[derive(Debug, Default)]
pub struct Topology {
    pub pools: Vec<Arc<PoolRuntime>>,
    /// `(service name, counters)` in configuration order.
    pub services: Vec<(String, Arc<ServiceStats>)>,
    /// The services with `persistence`, in configuration order.
    pub persistence: Vec<Arc<ServicePersistence>>,
}

impl Topology {
    pub fn new(cfg: &Config) -> Self {
        let pools: Vec<Arc<PoolRuntime>> = cfg
            .pools
            .iter()
            .map(|p| Arc::new(PoolRuntime::new(p)))
            .collect();
        let generated = std::sync::OnceLock::new();
        let persistence = cfg
            .services
            .iter()
            .filter_map(|s| {
                let p = s.persistence.as_ref()?;
                let pool = pools.iter().find(|x| x.name == s.pool)?;
                let secret = token_secret(p, cfg, &generated);
                Some(Arc::new(ServicePersistence::new(
                    &s.name,
                    p,
                    Arc::clone(pool),
                    &secret,
                )))
            })
            .collect();
        Topology {
            pools,
            services: cfg
                .services
                .iter()
                .map(|s| (s.name.clone(), Arc::new(ServiceStats::default())))
                .collect(),
            persistence,
        }
    }

    pub fn persistence(&self, service: &str) -> Option<&Arc<ServicePersistence>> {
        self.persistence.iter().find(|p| p.service == service)
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
