//! What the admin server shows: the live [`Topology`] plus a few facts fixed at startup.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::registry::Registry;
use serde::Serialize;
use tandem_balance::Topology;
use tandem_config::{Mode, Service};

use crate::auth::AuthPolicy;
use crate::events::Events;
use crate::metrics::TopologyCollector;

/// One `[[service]]` as the API lists it.
///
/// A display copy rather than `tandem_config::Service` itself: the API promises a small, stable
/// set of fields, and timeouts or header limits added to the config later should not leak into
/// the JSON contract by accident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub listen: SocketAddr,
    /// `"http"`, `"tcp"` or `"udp"`, as written in the config.
    pub mode: &'static str,
    /// Name of the pool the service sends traffic to.
    pub pool: String,
}

impl From<&Service> for ServiceInfo {
    fn from(s: &Service) -> Self {
        ServiceInfo {
            name: s.name.clone(),
            listen: s.listen,
            mode: mode_name(s.mode),
            pool: s.pool.clone(),
        }
    }
}

/// The config spelling of a mode. Exhaustive on purpose: a new mode must choose its name here.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Http => "http",
        Mode::Tcp => "tcp",
        Mode::Udp => "udp",
    }
}

/// The admin state in force: a reload stores a new one (new topology and services, the
/// same hooks); each request reads the one current when it arrived.
pub type SharedAdmin = Arc<arc_swap::ArcSwap<AdminState>>;

/// Runs a reload and tells its outcome: the report as JSON, or why nothing changed.
#[derive(Clone)]
pub struct ReloadHook(
    pub  Arc<
        dyn Fn() -> tokio::sync::oneshot::Receiver<Result<serde_json::Value, String>> + Send + Sync,
    >,
);

impl std::fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHook")
    }
}

/// Everything the admin server reads. Shared by all connections behind an `Arc`.
///
/// Nothing here is copied from the data plane: pools, health and counters are read from the
/// same atomics the proxies update, at request time, so the API never lags or double-counts.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The live pools, backends, health and counters.
    pub topology: Arc<Topology>,
    /// When this process started; `tandem_start_time_seconds` and uptime.
    pub started: SystemTime,
    /// tandem's version, for `tandem_build_info` (the binary passes `env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// The configured services, for `/api/v1/services`.
    pub services: Vec<ServiceInfo>,
    /// The VRRP instances, for `/api/v1/vrrp`: each a snapshot function, so this crate needs
    /// to know nothing of how instances run.
    pub vrrp: Vec<VrrpSource>,
    /// `/api/v1/cluster`, when the node has a `[cluster]`.
    pub cluster: Option<ClusterSource>,
    /// Told of every operator action on a backend (the cluster replicates them).
    pub on_action: Option<ActionHook>,
    /// Recent state changes, for `/api/v1/events` and the SSE stream. Operator actions are
    /// recorded here by the router; the daemon publishes the rest.
    pub events: Events,
    /// Who may read and who may change state (`[admin] token_file`).
    pub auth: AuthPolicy,
    /// `POST /api/v1/reload`, when the daemon supports it.
    pub on_reload: Option<ReloadHook>,
}

/// What an operator did to a backend through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    State(tandem_balance::AdminState),
    Weight(u32),
}

/// The function an [`ActionHook`] calls: (pool, backend, action).
pub type ActionFn = dyn Fn(&str, std::net::SocketAddr, OperatorAction) + Send + Sync;

/// Called after each successful operator action.
#[derive(Clone)]
pub struct ActionHook(pub Arc<ActionFn>);

impl std::fmt::Debug for ActionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionHook")
    }
}

/// Produces the cluster view.
#[derive(Clone)]
pub struct ClusterSource(pub Arc<dyn Fn() -> crate::view::ClusterView + Send + Sync>);

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSource")
    }
}

/// Produces one VRRP instance's current view.
#[derive(Clone)]
pub struct VrrpSource(pub Arc<dyn Fn() -> crate::view::VrrpView + Send + Sync>);

impl std::fmt::Debug for VrrpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VrrpSource")
    }
}

impl AdminState {
    /// State for a process that starts now.
    pub fn new(topology: Arc<Topology>, services: Vec<ServiceInfo>, version: &'static str) -> Self {
        AdminState {
            topology,
            started: SystemTime::now(),
            version,
            services,
            vrrp: Vec::new(),
            cluster: None,
            on_action: None,
            events: Events::default(),
            auth: AuthPolicy::open(),
            on_reload: None,
        }
    }

    /// The same, with `POST /api/v1/reload` running `hook`.
    pub fn with_reload(mut self, hook: ReloadHook) -> Self {
        self.on_reload = Some(hook);
        self
    }

    /// The state after a reload: the new topology and services, everything else as it was.
    pub fn reloaded(&self, topology: Arc<Topology>, services: Vec<ServiceInfo>) -> Self {
        AdminState {
            topology,
            services,
            ..self.clone()
        }
    }

    /// The same, publishing to `events` (a handle the daemon also pushes to).
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The same, guarded by `auth`.
    pub fn with_auth(mut self, auth: AuthPolicy) -> Self {
        self.auth = auth;
        self
    }

    /// The same, replicating operator actions through `cluster`.
    pub fn with_cluster(mut self, cluster: ClusterSource, on_action: ActionHook) -> Self {
        self.cluster = Some(cluster);
        self.on_action = Some(on_action);
        self
    }

    /// The same, with VRRP instances to show.
    pub fn with_vrrp(mut self, vrrp: Vec<VrrpSource>) -> Self {
        self.vrrp = vrrp;
        self
    }

    /// The OpenMetrics text for one scrape, read from the live counters now.
    ///
    /// prometheus-client's text encoder only takes a `Registry`, so each scrape builds a
    /// throwaway one holding just a [`TopologyCollector`] (two small allocations). Nothing is
    /// registered long-term, so there is no second copy of any value to keep in sync, and the
    /// fields of `self` stay the only source of truth.
    pub fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(TopologyCollector {
            topology: Arc::clone(&self.topology),
            started: self.started,
            version: self.version,
        }));
        registry.register_collector(Box::new(crate::metrics_vrrp::VrrpCollector {
            views: self.vrrp.iter().map(|source| (source.0)()).collect(),
        }));
        if let Some(c) = &self.cluster {
            registry.register_collector(Box::new(crate::metrics_vrrp::ClusterCollector {
                view: (c.0)(),
            }));
        }
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}
