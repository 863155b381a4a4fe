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
    /// The per-process random token key (services without `key` and no `[cluster]`), kept
    /// across reloads so they do not invalidate every client's cookie.
    generated: std::sync::OnceLock<Vec<u8>>,
}

/// The topology in force, replaced as a whole by a reload: readers `load()` it when they need
/// it and keep what they loaded for the work at hand.
pub type SharedTopology = Arc<arc_swap::ArcSwap<Topology>>;

impl Topology {
    pub fn new(cfg: &Config) -> Self {
        Self::reloaded(cfg, &Topology::default(), std::time::Instant::now())
    }

    /// The topology for `cfg` when `old` was in force. A pool whose configuration did not
    /// change is kept as it is (the same `Arc`: health, counters, connections in flight, its
    /// checker); a changed one is new but inherits what is known of the backends it still
    /// has ([`PoolRuntime::inherit`]). Service counters are kept by name, and persistence is
    /// kept when neither it nor its pool changed (else its table starts empty; tokens signed
    /// with the same key stay valid).
    pub fn reloaded(cfg: &Config, old: &Topology, now: std::time::Instant) -> Self {
        let pools: Vec<Arc<PoolRuntime>> = cfg
            .pools
            .iter()
            .map(|p| match old.pool(&p.name) {
                Some(o) if o.config == *p => Arc::clone(o),
                Some(o) => Arc::new(PoolRuntime::succeeding(p, o, now)),
                None => Arc::new(PoolRuntime::new(p)),
            })
            .collect();
        let generated = old.generated.clone();
        let persistence = cfg
            .services
            .iter()
            .filter_map(|s| {
                let p = s.persistence.as_ref()?;
                let pool = pools.iter().find(|x| x.name == s.pool)?;
                if let Some(o) = old.persistence(&s.name) {
                    if o.cfg == *p && Arc::ptr_eq(&o.pool, pool) {
                        return Some(Arc::clone(o));
                    }
                }
                let secret = token_secret(p, cfg, &generated);
                let new = ServicePersistence::new(&s.name, p, Arc::clone(pool), &secret);
                // Same settings, rebuilt pool: clients keep their backend. (Entries name
                // backends by address; one no longer in the pool is rebalanced on lookup.)
                if let Some(o) = old.persistence(&s.name).filter(|o| o.cfg == *p) {
                    if let (Some(from), Some(to)) = (&o.sticky, &new.sticky) {
                        for change in from.snapshot(now) {
                            to.apply(&change, now);
                        }
                    }
                }
                Some(Arc::new(new))
            })
            .collect();
        Topology {
            pools,
            services: cfg
                .services
                .iter()
                .map(|s| {
                    let stats = old.service_stats(&s.name).cloned().unwrap_or_default();
                    (s.name.clone(), stats)
                })
                .collect(),
            persistence,
            generated,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdminState, Health};
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    fn cfg(app: &str) -> Config {
        let src = format!(
            r#"
[[pool]]
name = "app"
backends = [{app}]
[[pool]]
name = "other"
backends = [{{ address = "127.0.0.1:9001" }}]
[[service]]
name = "www"
listen = "127.0.0.1:8080"
pool = "other"
persistence = {{ kind = "cookie" }}
"#
        );
        match tandem_config::parse_str(&src, "t.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn reload_keeps_unchanged_pools_and_carries_state_into_changed_ones() {
        let now = Instant::now();
        let a = r#"{ address = "127.0.0.1:8001" }, { address = "127.0.0.1:8002", weight = 2 }"#;
        let old = Topology::new(&cfg(a));
        let app = Arc::clone(&old.pools[0]);
        app.set_health(0, Health::Down, "refused", now);
        app.set_health(1, Health::Up, "ok", now);
        app.set_admin_state(1, AdminState::Draining, now);
        app.backends[1].stats.total.store(42, Ordering::Relaxed);
        old.services[0].1.connections.store(7, Ordering::Relaxed);

        // Same file: everything is the same object.
        let same = Topology::reloaded(&cfg(a), &old, now);
        assert!(Arc::ptr_eq(&same.pools[0], &old.pools[0]));
        assert!(Arc::ptr_eq(&same.pools[1], &old.pools[1]));
        assert!(Arc::ptr_eq(&same.persistence[0], &old.persistence[0]));

        // A new backend in front and a weight change: "app" is rebuilt, "other" kept.
        let b = r#"{ address = "127.0.0.1:8003" }, { address = "127.0.0.1:8002", weight = 5 }, { address = "127.0.0.1:8001" }"#;
        let new = Topology::reloaded(&cfg(b), &old, now);
        assert!(!Arc::ptr_eq(&new.pools[0], &old.pools[0]));
        assert!(Arc::ptr_eq(&new.pools[1], &old.pools[1]));
        assert!(Arc::ptr_eq(&new.persistence[0], &old.persistence[0]));
        let p = &new.pools[0];
        assert_eq!(p.backends[0].health(), Health::Unknown, "new backend");
        assert_eq!(p.backends[1].health(), Health::Up);
        assert_eq!(p.backends[1].admin_state(), AdminState::Draining);
        assert_eq!(p.backends[1].weight(), 5, "the file's new weight wins");
        assert_eq!(p.backends[1].stats.total.load(Ordering::Relaxed), 42);
        assert_eq!(p.backends[2].health(), Health::Down);
        assert!(!p.backends[2].in_rotation());
        assert!(Arc::ptr_eq(&new.services[0].1, &old.services[0].1));
        assert_eq!(new.services[0].1.connections.load(Ordering::Relaxed), 7);
    }

    /// Work in flight on the old pool counts in the new one (least-connections and
    /// `max_connections` see it) and is released from the same counter when it ends.
    #[test]
    fn a_rebuilt_pool_shares_in_flight_counts_with_the_old_one() {
        let now = Instant::now();
        let old = Topology::new(&cfg(r#"{ address = "127.0.0.1:8001" }"#));
        let b = r#"{ address = "127.0.0.1:8001" }, { address = "127.0.0.1:8002" }"#;
        let guard = old.pools[0].backends[0].try_acquire();
        assert!(guard.is_some());
        let new = Topology::reloaded(&cfg(b), &old, now);
        assert!(!Arc::ptr_eq(&new.pools[0], &old.pools[0]));
        let active =
            |t: &Topology, i: usize| t.pools[0].backends[i].stats.active.load(Ordering::Relaxed);
        assert_eq!(active(&new, 0), 1, "the old pool's request counts here");
        assert_eq!(active(&new, 1), 0);
        drop(guard);
        assert_eq!(active(&new, 0), 0, "released on the shared counter");
        assert_eq!(active(&old, 0), 0);
    }

    /// `source_ip` entries survive a rebuild of the pool when the persistence settings are
    /// the same.
    #[test]
    fn source_ip_entries_survive_a_rebuilt_pool() {
        let now = Instant::now();
        let with = |backends: &str| {
            let src = format!(
                "[[pool]]\nname = \"app\"\nbackends = [{backends}]\n[[service]]\nname = \"www\"\n\
                 listen = \"127.0.0.1:8080\"\npool = \"app\"\n\
                 persistence = {{ kind = \"source_ip\", timeout = \"10m\" }}\n"
            );
            match tandem_config::parse_str(&src, "t.toml") {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            }
        };
        let old = Topology::new(&with(
            r#"{ address = "127.0.0.1:8001" }, { address = "127.0.0.1:8002" }"#,
        ));
        let client: std::net::IpAddr = [198, 51, 100, 7].into();
        let backend: std::net::SocketAddr = ([127, 0, 0, 1], 8002).into();
        let table = old.persistence[0].sticky.as_ref().expect("source_ip table");
        table.bind(client, backend, now);
        let new = Topology::reloaded(
            &with(r#"{ address = "127.0.0.1:8002" }, { address = "127.0.0.1:8003" }"#),
            &old,
            now,
        );
        assert!(!Arc::ptr_eq(&new.persistence[0], &old.persistence[0]));
        let table = new.persistence[0].sticky.as_ref().expect("source_ip table");
        assert_eq!(table.lookup(client, now).0, Some(backend));
    }
}
