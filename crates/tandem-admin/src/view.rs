//! The JSON documents of `/api/v1`, as borrowed view structs.
//!
//! Views are built from the live [`Topology`] on each request and serialised at once, so the
//! field list here *is* the API contract (documented in `docs/admin-api.md`): renaming a field
//! is a breaking change, adding one is not.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tandem_balance::{BackendRuntime, PoolRuntime, Topology};

use crate::metrics::eligible_backends;
use crate::state::ServiceInfo;
use crate::time::rfc3339;
use tandem_balance::latency::quantile_ms;

/// `GET /api/v1/pools`
#[derive(Debug, Serialize)]
pub struct PoolsView<'a> {
    pub pools: Vec<PoolView<'a>>,
}

/// One pool: `GET /api/v1/pools/{name}` and an element of `pools`.
#[derive(Debug, Serialize)]
pub struct PoolView<'a> {
    pub name: &'a str,
    pub scheduler: &'static str,
    pub sorry_server: Option<SocketAddr>,
    /// Same as the `tandem_pool_backends_eligible` metric.
    pub backends_eligible: usize,
    pub backends: Vec<BackendView>,
    /// Whether the pool carries its observed load with its largest backend in rotation gone
    /// (see `capacity`); null when no backend has a `capacity` or the load is not known yet.
    pub survives_losing_one: Option<bool>,
    /// The numbers behind `survives_losing_one`; null when no backend has a `capacity`.
    pub capacity: Option<CapacityView>,
}

/// A pool's load against its backends' capacities (`capacity`, `expected_load` in the config).
#[derive(Debug, Serialize)]
pub struct CapacityView {
    /// `req/s` or `conn/s`.
    pub unit: &'static str,
    /// Per second over the last 30 s; null until measured.
    pub observed_load: Option<f64>,
    /// The configured `expected_load`; null when not set.
    pub expected_load: Option<f64>,
    /// What the backends in rotation can carry, and what is left without the largest.
    pub capacity: f64,
    pub capacity_without_largest: f64,
    pub largest: Option<SocketAddr>,
}

impl From<tandem_balance::CapacityStatus> for CapacityView {
    fn from(s: tandem_balance::CapacityStatus) -> Self {
        CapacityView {
            unit: s.unit.name(),
            observed_load: s.observed,
            expected_load: s.expected,
            capacity: s.capacity,
            capacity_without_largest: s.without_largest,
            largest: s.largest,
        }
    }
}

/// One backend with its health and counters.
#[derive(Debug, Serialize)]
pub struct BackendView {
    pub address: SocketAddr,
    /// The weight in force: configured, or set by an operator or an `exec` check.
    pub weight: u32,
    /// The weight in the configuration file.
    pub configured_weight: u32,
    /// The weight the scheduler uses now: below `weight` while slow-starting, 0 when out of
    /// rotation.
    pub effective_weight: u32,
    pub backup: bool,
    pub max_connections: Option<u32>,
    /// `up`, `down` or `unknown`: the active checks' verdict.
    pub state: &'static str,
    /// `enabled`, `draining` or `disabled`: what an operator set.
    pub admin_state: &'static str,
    /// Whether passive detection took it out of rotation.
    pub ejected: bool,
    /// Seconds until the current ejection ends; null when not ejected.
    pub ejected_for_s: Option<f64>,
    /// Times passive detection ejected it.
    pub ejections: u64,
    /// When `state` last changed; null until the first verdict.
    pub since: Option<String>,
    /// When a check last completed; null until then.
    pub last_check: Option<String>,
    /// What the last check saw, in words.
    pub reason: String,
    pub active: u32,
    pub total: u64,
    pub failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Peak-EWMA response time; null until a response has been timed (tcp pools never are).
    pub latency_ewma_ms: Option<f64>,
    /// Median and 99th percentile response time since start, from a √2-spaced histogram
    /// (the upper edge of the bucket, so within ~41% above the truth); null until timed.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// One VRRP instance: an element of `GET /api/v1/vrrp`.
#[derive(Debug, Clone, Serialize)]
pub struct VrrpView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// `initialize`, `backup`, `master`, `fault` or `stopped`.
    pub state: &'static str,
    /// When `state` was entered.
    pub since: String,
    /// The priority in effect (tracking may change it) and the configured one.
    pub priority: u8,
    pub configured_priority: u8,
    /// The current master's primary address as last heard (this node's own when master).
    pub master_address: Option<std::net::IpAddr>,
    pub virtual_ips: Vec<String>,
    pub became_master: u64,
    pub became_backup: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Received packets dropped, by reason (`bad_ttl`, `bad_checksum`, ...; RFC 5798 7.1).
    pub discarded: std::collections::BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
    /// Whether a tracked object without weight is failed, which holds the instance in FAULT.
    pub fault: bool,
    /// Every tracked object (interface, pool, script, quorum) with its current verdict.
    pub tracked: Vec<TrackedView>,
    /// The most recent state changes, oldest first, with what their notify commands did.
    pub events: Vec<VrrpEventView>,
}

/// One state change of a VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VrrpEventView {
    /// RFC 3339 time of the change.
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
    /// The priority in effect at the change.
    pub priority: u8,
    pub master_address: Option<std::net::IpAddr>,
    /// The notify commands run for it, in order (empty when none is configured for the
    /// state); absent results mean still queued or running.
    pub notify: Vec<NotifyRunView>,
}

/// One notify command run for an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyRunView {
    /// `master`, `backup`, `fault`, `stop` or `any`.
    pub command: &'static str,
    /// `exit 0`, `exit 3: message`, `timed out after 30s (process group killed)`...; null
    /// while queued or running.
    pub result: Option<String>,
    pub ok: Option<bool>,
    pub duration_ms: Option<u64>,
}

/// One tracked object of a VRRP instance: a `track_interfaces`, `track_pools` or
/// `track_scripts` entry, its own interface, or its quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackedView {
    /// `interface`, `pool`, `script` or `quorum`.
    pub kind: &'static str,
    pub name: String,
    /// Added to the priority while failed; null means the instance goes to FAULT instead.
    pub weight: Option<i16>,
    /// Up (interface), with an eligible backend (pool), passing (script), enough witnesses
    /// reached (quorum).
    pub ok: bool,
    /// Why it is failed, in words; null while ok.
    pub reason: Option<String>,
}

/// `GET /api/v1/vrrp`
#[derive(Debug, Serialize)]
pub struct VrrpListView {
    pub instances: Vec<VrrpView>,
}

/// `GET /api/v1/services`
#[derive(Debug, Serialize)]
pub struct ServicesView<'a> {
    pub services: &'a [ServiceInfo],
}

impl<'a> PoolsView<'a> {
    pub fn new(topology: &'a Topology) -> Self {
        PoolsView {
            pools: topology.pools.iter().map(|p| PoolView::new(p)).collect(),
        }
    }
}

impl<'a> PoolView<'a> {
    pub fn new(pool: &'a PoolRuntime) -> Self {
        let capacity = pool.load.status();
        PoolView {
            survives_losing_one: capacity.as_ref().and_then(|c| c.survives),
            capacity: capacity.map(CapacityView::from),
            name: &pool.name,
            scheduler: pool.scheduler.name(),
            sorry_server: pool.sorry.as_ref().map(|s| s.address),
            backends_eligible: eligible_backends(pool),
            backends: pool.backends.iter().map(|b| BackendView::new(b)).collect(),
        }
    }
}

impl BackendView {
    pub fn new(b: &BackendRuntime) -> Self {
        let relaxed = Ordering::Relaxed;
        let detail = b.detail();
        let ewma_ns = b.stats.latency_ewma_ns.load(relaxed);
        let hist = b.stats.latency.snapshot();
        BackendView {
            address: b.address,
            weight: b.weight(),
            configured_weight: b.configured_weight,
            effective_weight: if b.in_rotation() {
                b.scheduled_weight()
            } else {
                0
            },
            backup: b.backup,
            max_connections: b.max_connections,
            state: b.health().as_str(),
            admin_state: b.admin_state().as_str(),
            ejected: b.is_ejected(),
            ejected_for_s: b.ejected_until().map(|until| {
                until
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs_f64()
            }),
            ejections: b.stats.ejections.load(relaxed),
            since: detail.since.map(rfc3339),
            last_check: detail.last_check.map(rfc3339),
            reason: detail.reason,
            active: b.stats.active.load(relaxed),
            total: b.stats.total.load(relaxed),
            failures: b.stats.failures.load(relaxed),
            bytes_in: b.stats.bytes_in.load(relaxed),
            bytes_out: b.stats.bytes_out.load(relaxed),
            latency_ewma_ms: (ewma_ns > 0).then(|| ewma_ns as f64 / 1e6),
            latency_p50_ms: quantile_ms(&hist, 0.5),
            latency_p99_ms: quantile_ms(&hist, 0.99),
        }
    }
}

/// `GET /api/v1/services/{service}/sticky`
#[derive(Debug, Serialize)]
pub struct StickyView {
    pub service: String,
    /// `source_ip`, `cookie`, `url_param` or `header`.
    pub kind: &'static str,
    /// Entries in the table (source_ip); 0 for the stateless kinds.
    pub size: usize,
    /// Up to 1000 entries, in no particular order.
    pub entries: Vec<StickyEntryView>,
    pub hits: u64,
    pub misses: u64,
    pub evicted: u64,
    pub expired: u64,
    pub pinned: u64,
    pub repinned: u64,
    pub invalid_tokens: u64,
    pub issued: u64,
}

#[derive(Debug, Serialize)]
pub struct StickyEntryView {
    /// The client address, masked.
    pub client: String,
    pub backend: String,
    pub idle_ms: u64,
    pub expires_in_ms: u64,
}

impl StickyView {
    pub fn new(p: &tandem_balance::persistence::ServicePersistence, limit: usize) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::Instant::now();
        let (size, entries, c) = match &p.sticky {
            Some(t) => (t.len(), t.entries(now, limit), t.counters()),
            None => (0, Vec::new(), Default::default()),
        };
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        StickyView {
            service: p.service.clone(),
            kind: p.cfg.kind.name(),
            size,
            entries: entries
                .into_iter()
                .map(|e| StickyEntryView {
                    client: e.key.to_string(),
                    backend: e.backend.to_string(),
                    idle_ms: ms(e.idle),
                    expires_in_ms: ms(e.expires_in),
                })
                .collect(),
            hits: c.hits,
            misses: c.misses,
            evicted: c.evicted,
            expired: c.expired,
            pinned: p.counters.pinned.load(Relaxed),
            repinned: p.counters.repinned.load(Relaxed),
            invalid_tokens: p.counters.invalid_tokens.load(Relaxed),
            issued: p.counters.issued.load(Relaxed),
        }
    }
}

/// `GET /api/v1/cluster`
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub listen: std::net::SocketAddr,
    /// This node's log: its epoch (hex), the next sequence number, the oldest one held.
    pub epoch: String,
    pub head: u64,
    pub log_start: u64,
    /// Peers streaming from this node now.
    pub streams: u64,
    pub snapshots_sent: u64,
    pub resumes_served: u64,
    /// Connections refused because a frame failed authentication (a wrong secret), and
    /// closed because one did not parse.
    pub auth_failures: u64,
    pub parse_failures: u64,
    pub peers: Vec<ClusterPeerView>,
}

/// One peer, as a source of this node's state.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterPeerView {
    pub address: std::net::SocketAddr,
    pub connected: bool,
    /// The peer's log epoch (hex) and the next sequence number to apply from it.
    pub epoch: String,
    pub position: u64,
    /// The head of the peer's log as last heard, and how far behind it this node is.
    pub source_head: u64,
    pub lag_entries: u64,
    /// Delay between the peer sending and this node applying, as of the last heartbeat.
    pub lag_ms: u64,
    /// Received but not applied yet.
    pub queued: u64,
    pub applied: u64,
    pub snapshots: u64,
    pub resumes: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub auth_failures: u64,
    pub parse_failures: u64,
    pub last_error: Option<String>,
}
