//! `/metrics`: the live counters in the OpenMetrics text format.
//!
//! A custom [`Collector`] reads the data plane's atomics at scrape time. There is no metric
//! object per backend to keep up to date and no global registry: the proxies count once, in
//! `BackendStats`, and this module only formats what it finds. A reload that replaces pools
//! therefore needs no metric bookkeeping either.
//!
//! Every backend series carries `pool`, `backend` (the address as configured, `ip:port` or
//! `[v6]:port`) and `role` (`primary`, `backup`, or `sorry` for the pool's sorry server, which
//! is counted like a backend so its traffic is visible). See `docs/metrics.md` for the list.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use tandem_balance::{BackendRuntime, Health, PoolRuntime, ServiceStats, Topology};

/// `Content-Type` of the exposition. Prometheus picks its parser from this header; the
/// OpenMetrics parser is the one that understands the `info` type, `# UNIT` and `# EOF`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Formats a [`Topology`] (and process facts) on each scrape.
#[derive(Debug)]
pub(crate) struct TopologyCollector {
    pub topology: Arc<Topology>,
    pub started: SystemTime,
    pub version: &'static str,
}

/// One backend series' labels plus the backend to read.
struct Row<'a> {
    pool: &'a str,
    backend: String,
    role: &'static str,
    runtime: &'a BackendRuntime,
}

impl Row<'_> {
    fn labels(&self) -> [(&str, &str); 3] {
        [
            ("pool", self.pool),
            ("backend", self.backend.as_str()),
            ("role", self.role),
        ]
    }
}

fn rows(topology: &Topology) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for pool in &topology.pools {
        for b in &pool.backends {
            rows.push(Row {
                pool: &pool.name,
                backend: b.address.to_string(),
                role: if b.backup { "backup" } else { "primary" },
                runtime: b,
            });
        }
        if let Some(s) = &pool.sorry {
            rows.push(Row {
                pool: &pool.name,
                backend: s.address.to_string(),
                role: "sorry",
                runtime: s,
            });
        }
    }
    rows
}

/// Backends the scheduler may pick right now: primary or backup, not down, not ejected, not
/// drained or disabled, weight > 0 — the same filter the pool's selection snapshot is built
/// with. The sorry server is not counted:
/// 0 here means the pool is serving from its sorry server, or failing.
pub fn eligible_backends(pool: &PoolRuntime) -> usize {
    pool.backends.iter().filter(|b| b.in_rotation()).count()
}

/// Picks one counter out of a service's stats.
type ServiceCounter = fn(&ServiceStats) -> &AtomicU64;

fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[Row<'_>],
    value: impl Fn(&BackendRuntime) -> V,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for r in rows {
        m.encode_family(&r.labels())?
            .encode_gauge(&value(r.runtime))?;
    }
    Ok(())
}

/// `name` without `_total`: the OpenMetrics encoder appends it to counter samples.
fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[Row<'_>],
    value: impl Fn(&BackendRuntime) -> u64,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for r in rows {
        m.encode_family(&r.labels())?
            .encode_counter::<NoLabelSet, u64, u64>(&value(r.runtime), None)?;
    }
    Ok(())
}

impl Collector for TopologyCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let relaxed = Ordering::Relaxed;
        enc.encode_descriptor(
            "tandem_build",
            "tandem's version; always 1 (join on `version`).",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", self.version)])?;

        let seconds = Unit::Seconds;
        let start = match self.started.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        enc.encode_descriptor(
            "tandem_start_time",
            "When this tandem process started, seconds since the Unix epoch.",
            Some(&seconds),
            MetricType::Gauge,
        )?
        .encode_gauge(&start)?;

        let rows = rows(&self.topology);
        gauge(
            &mut enc,
            "tandem_backend_up",
            "1 if the last health verdict was up, else 0 (down, or unknown: not decided yet).",
            &rows,
            |b| u32::from(b.health() == Health::Up),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "tandem_backend_state",
                "Health state as a state set: 1 for the current state, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for r in &rows {
                let current = r.runtime.health();
                for state in [Health::Up, Health::Down, Health::Unknown] {
                    let [pool, backend, role] = r.labels();
                    let labels = [pool, backend, role, ("state", state.as_str())];
                    m.encode_family(&labels)?
                        .encode_gauge(&u32::from(current == state))?;
                }
            }
        }
        gauge(
            &mut enc,
            "tandem_backend_active",
            "In flight now: open connections (tcp) or requests (http).",
            &rows,
            |b| b.stats.active.load(relaxed),
        )?;
        counter(
            &mut enc,
            "tandem_backend_requests",
            "Connections (tcp) or requests (http) sent to the backend.",
            &rows,
            |b| b.stats.total.load(relaxed),
        )?;
        counter(
            &mut enc,
            "tandem_backend_failures",
            "Connect failures, timeouts, resets and invalid responses from the backend.",
            &rows,
            |b| b.stats.failures.load(relaxed),
        )?;
        counter(
            &mut enc,
            "tandem_backend_bytes_in",
            "Bytes tandem sent to the backend (client to backend direction).",
            &rows,
            |b| b.stats.bytes_in.load(relaxed),
        )?;
        counter(
            &mut enc,
            "tandem_backend_bytes_out",
            "Bytes tandem received from the backend (backend to client direction).",
            &rows,
            |b| b.stats.bytes_out.load(relaxed),
        )?;
        gauge(
            &mut enc,
            "tandem_backend_weight",
            "Weight in force (configured, or set by an operator or an exec check); 0 = receives no new traffic.",
            &rows,
            |b| b.weight(),
        )?;
        gauge(
            &mut enc,
            "tandem_backend_effective_weight",
            "Weight the scheduler uses now: lower while slow-starting, 0 when out of rotation.",
            &rows,
            |b| {
                if b.in_rotation() {
                    b.scheduled_weight()
                } else {
                    0
                }
            },
        )?;
        gauge(
            &mut enc,
            "tandem_backend_ejected",
            "1 while passive detection keeps the backend out of rotation, else 0.",
            &rows,
            |b| u32::from(b.is_ejected()),
        )?;
        counter(
            &mut enc,
            "tandem_backend_ejections",
            "Times passive detection (consecutive connect failures or 5xx) ejected the backend.",
            &rows,
            |b| b.stats.ejections.load(relaxed),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "tandem_backend_admin_state",
                "Operator state as a state set: 1 for the current one (enabled, draining, disabled).",
                None,
                MetricType::Gauge,
            )?;
            for r in &rows {
                let current = r.runtime.admin_state();
                for state in [
                    tandem_balance::AdminState::Enabled,
                    tandem_balance::AdminState::Draining,
                    tandem_balance::AdminState::Disabled,
                ] {
                    let [pool, backend, role] = r.labels();
                    let labels = [pool, backend, role, ("state", state.as_str())];
                    m.encode_family(&labels)?
                        .encode_gauge(&u32::from(current == state))?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "tandem_backend_response",
                "Time from sending a request to the backend to its response head (HTTP), by backend; buckets double from 2 µs.",
                Some(&seconds),
                MetricType::Histogram,
            )?;
            for r in &rows {
                let h = &r.runtime.stats.latency;
                let buckets = h.prometheus_buckets();
                let count = buckets.iter().map(|b| b.1).sum();
                m.encode_family(&r.labels())?
                    .encode_histogram::<NoLabelSet>(h.sum_seconds(), count, &buckets, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "tandem_backend_latency_ewma",
                "Peak-EWMA response time used by the ewma scheduler; absent until measured.",
                Some(&seconds),
                MetricType::Gauge,
            )?;
            for r in &rows {
                let ns = r.runtime.stats.latency_ewma_ns.load(relaxed);
                if ns > 0 {
                    m.encode_family(&r.labels())?
                        .encode_gauge(&(ns as f64 / 1e9))?;
                }
            }
        }

        let mut m = enc.encode_descriptor(
            "tandem_pool_backends_eligible",
            "Primary and backup backends the scheduler may pick (not down, weight > 0).",
            None,
            MetricType::Gauge,
        )?;
        for pool in &self.topology.pools {
            m.encode_family(&[("pool", pool.name.as_str())])?
                .encode_gauge(&(eligible_backends(pool) as u64))?;
        }

        let mut m = enc.encode_descriptor(
            "tandem_pool_retry_budget",
            "Replays the pool's retry budget allows right now (at most 100).",
            None,
            MetricType::Gauge,
        )?;
        for pool in &self.topology.pools {
            m.encode_family(&[("pool", pool.name.as_str())])?
                .encode_gauge(&pool.budget.available())?;
        }
        let mut m = enc.encode_descriptor(
            "tandem_pool_connect_time",
            "Smoothed backend connect time that sets the adaptive connect timeout; absent until measured.",
            Some(&seconds),
            MetricType::Gauge,
        )?;
        for pool in &self.topology.pools {
            if let Some(t) = pool.connect_timer.smoothed() {
                m.encode_family(&[("pool", pool.name.as_str())])?
                    .encode_gauge(&t.as_secs_f64())?;
            }
        }

        encode_capacity(&mut enc, &self.topology)?;

        let services: [(&str, &str, ServiceCounter); 7] = [
            ("tandem_service_connections", "Client connections accepted.", |s| &s.connections),
            (
                "tandem_service_rejected_requests",
                "Requests refused before reaching a backend: malformed (400), head too large (431), method not allowed (405), head not finished in time (408), body over max_request_body (413).",
                |s| &s.rejected,
            ),
            (
                "tandem_service_no_backend",
                "Requests or connections turned away because no backend was available or all were at max_connections (HTTP 503).",
                |s| &s.no_backend,
            ),
            (
                "tandem_service_backend_errors",
                "Error answers tandem gave on a backend's behalf (HTTP 502 and 504).",
                |s| &s.backend_errors,
            ),
            (
                "tandem_service_tls_handshake_failures",
                "TLS handshakes that failed or timed out (malformed TLS, no common parameters, a client that rejects the certificate).",
                |s| &s.tls_failures,
            ),
            (
                "tandem_service_retries",
                "Requests replayed on another backend after getting no response (connect failures, always retried, are not counted).",
                |s| &s.retries,
            ),
            (
                "tandem_service_proxy_protocol_rejected",
                "Connections from a trusted proxy (accept_proxy_protocol) closed because their PROXY header was missing, malformed or late.",
                |s| &s.proxy_protocol_rejected,
            ),
        ];
        for (name, help, field) in services {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (service, stats) in &self.topology.services {
                m.encode_family(&[("service", service.as_str())])?
                    .encode_counter::<NoLabelSet, u64, u64>(&field(stats).load(relaxed), None)?;
            }
        }
        self.encode_persistence(&mut enc)?;
        Ok(())
    }
}

impl TopologyCollector {
    /// Session persistence, per service that has it.
    fn encode_persistence(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        use tandem_balance::persistence::PersistenceCounters;
        let p = &self.topology.persistence;
        if p.is_empty() {
            return Ok(());
        }
        type Field = fn(&PersistenceCounters) -> &AtomicU64;
        let counters: [(&str, &str, Field); 4] = [
            (
                "tandem_persistence_pinned",
                "Requests (connections, tcp) sent to the backend persistence pinned them to.",
                |c| &c.pinned,
            ),
            (
                "tandem_persistence_repinned",
                "Pinned requests whose backend was down (or gone) and that were balanced again (or got 503 with on_backend_down = fail).",
                |c| &c.repinned,
            ),
            (
                "tandem_persistence_invalid_tokens",
                "Persistence cookies or URL parameters that did not verify (tampered, another service's, another key's): ignored.",
                |c| &c.invalid_tokens,
            ),
            (
                "tandem_persistence_issued",
                "Persistence cookies set on responses.",
                |c| &c.issued,
            ),
        ];
        for (name, help, field) in counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in p {
                m.encode_family(&[("service", s.service.as_str())])?
                    .encode_counter::<NoLabelSet, u64, u64>(
                        &field(&s.counters).load(Ordering::Relaxed),
                        None,
                    )?;
            }
        }
        let tables: Vec<_> = p
            .iter()
            .filter_map(|s| s.sticky.as_ref().map(|t| (s.service.as_str(), t)))
            .collect();
        if tables.is_empty() {
            return Ok(());
        }
        {
            let mut m = enc.encode_descriptor(
                "tandem_sticky_entries",
                "Entries in the service's source_ip sticky table.",
                None,
                MetricType::Gauge,
            )?;
            for (service, t) in &tables {
                m.encode_family(&[("service", *service)])?
                    .encode_gauge(&(t.len() as u64))?;
            }
        }
        type TableField = fn(&tandem_balance::sticky::StickyCounters) -> u64;
        let table_counters: [(&str, &str, TableField); 2] = [
            (
                "tandem_sticky_evicted",
                "Sticky entries dropped because the table was full (max_entries): raise it if this grows.",
                |c| c.evicted,
            ),
            (
                "tandem_sticky_expired",
                "Sticky entries dropped after being idle for the timeout.",
                |c| c.expired,
            ),
        ];
        for (name, help, field) in table_counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (service, t) in &tables {
                m.encode_family(&[("service", *service)])?
                    .encode_counter::<NoLabelSet, u64, u64>(&field(&t.counters()), None)?;
            }
        }
        Ok(())
    }
}

/// N+1 per pool with a `capacity` on its backends: the verdict and the numbers behind it,
/// from the pool's load monitor (sampled on the control-plane tick, not here).
fn encode_capacity(enc: &mut DescriptorEncoder, topology: &Topology) -> fmt::Result {
    let status: Vec<_> = topology
        .pools
        .iter()
        .filter_map(|p| p.load.status().map(|s| (p.name.as_str(), s)))
        .collect();
    let mut m = enc.encode_descriptor(
        "tandem_pool_survives_loss_of_largest",
        "1 if the backends in rotation carry the load of the last 30 s with the largest of them gone (N+1), else 0; absent without `capacity` on the backends.",
        None,
        MetricType::Gauge,
    )?;
    for (pool, s) in &status {
        if let Some(ok) = s.survives {
            m.encode_family(&[("pool", *pool)])?
                .encode_gauge(&u32::from(ok))?;
        }
    }
    let mut m = enc.encode_descriptor(
        "tandem_pool_observed_load",
        "Requests (http) or connections (tcp, udp) per second to the pool's backends over the last 30 s.",
        None,
        MetricType::Gauge,
    )?;
    for (pool, s) in &status {
        if let Some(v) = s.observed {
            m.encode_family(&[("pool", *pool), ("unit", s.unit.name())])?
                .encode_gauge(&v)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "tandem_pool_capacity_without_largest",
        "What the backends in rotation can carry per second (their `capacity`) with the largest of them gone.",
        None,
        MetricType::Gauge,
    )?;
    for (pool, s) in &status {
        m.encode_family(&[("pool", *pool), ("unit", s.unit.name())])?
            .encode_gauge(&s.without_largest)?;
    }
    Ok(())
}
