//! `GET /api/v1/overview`: everything the dashboard draws, in one request.
//!
//! The dashboard polls this once a second. It carries counters, not rates: the page divides
//! the difference of two snapshots by the time between them (requests/s, errors/s, and the
//! latency histogram of just that interval), so the server keeps no history and any number of
//! open dashboards cost it nothing between requests.

use std::time::SystemTime;

use serde::Serialize;
use tandem_balance::latency::{upper_ms, BUCKETS};

use crate::state::{AdminState, ServiceInfo};
use crate::time::rfc3339;
use crate::view::BackendView;

/// `GET /api/v1/overview`
#[derive(Debug, Serialize)]
pub struct OverviewView<'a> {
    pub version: &'static str,
    pub started: String,
    /// The server's clock when this was built, RFC 3339.
    pub now: String,
    pub uptime_s: u64,
    /// Whether state changes need `Authorization: Bearer` (a `token_file` is configured).
    pub actions_need_token: bool,
    /// The sequence number the next event will get (so a client knows where it stands).
    pub events_next_seq: u64,
    pub vrrp: Vec<VrrpSummary>,
    pub services: &'a [ServiceInfo],
    pub pools: Vec<OverviewPool<'a>>,
    /// Upper edge in ms of each bucket of `latency_histogram`.
    pub latency_bucket_upper_ms: Vec<f64>,
}

/// One VRRP instance, as the dashboard's VIP table shows it.
#[derive(Debug, Serialize)]
pub struct VrrpSummary {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub state: &'static str,
    pub since: String,
    pub priority: u8,
    pub master_address: Option<std::net::IpAddr>,
    pub virtual_ips: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct OverviewPool<'a> {
    pub name: &'a str,
    pub scheduler: &'static str,
    pub backends_eligible: usize,
    /// N+1 (from the backends' `capacity`): whether the pool carries its observed load
    /// without its largest member; null when no backend has a `capacity` or the load is not
    /// known yet. The dashboard shows it as a badge.
    pub survives_losing_one: Option<bool>,
    pub backends: Vec<OverviewBackend>,
}

/// A backend: the same fields as in `/api/v1/pools`, plus its latency histogram.
#[derive(Debug, Serialize)]
pub struct OverviewBackend {
    #[serde(flatten)]
    pub view: BackendView,
    /// Response-time counts since start per bucket (see `latency_bucket_upper_ms`); trailing
    /// empty buckets are left out.
    pub latency_histogram: Vec<u64>,
}

impl<'a> OverviewView<'a> {
    pub fn new(state: &'a AdminState) -> Self {
        let now = SystemTime::now();
        OverviewView {
            version: state.version,
            started: rfc3339(state.started),
            now: rfc3339(now),
            uptime_s: now.duration_since(state.started).map_or(0, |d| d.as_secs()),
            actions_need_token: state.auth.has_token(),
            events_next_seq: state.events.next_seq(),
            vrrp: state
                .vrrp
                .iter()
                .map(|source| {
                    let v = (source.0)();
                    VrrpSummary {
                        name: v.name,
                        interface: v.interface,
                        vrid: v.vrid,
                        state: v.state,
                        since: v.since,
                        priority: v.priority,
                        master_address: v.master_address,
                        virtual_ips: v.virtual_ips,
                    }
                })
                .collect(),
            services: &state.services,
            pools: state
                .topology
                .pools
                .iter()
                .map(|p| OverviewPool {
                    name: &p.name,
                    scheduler: p.scheduler.name(),
                    backends_eligible: crate::metrics::eligible_backends(p),
                    survives_losing_one: p.load.status().and_then(|s| s.survives),
                    backends: p
                        .backends
                        .iter()
                        .map(|b| {
                            let mut hist = b.stats.latency.snapshot().to_vec();
                            while hist.last() == Some(&0) {
                                hist.pop();
                            }
                            OverviewBackend {
                                view: BackendView::new(b),
                                latency_histogram: hist,
                            }
                        })
                        .collect(),
                })
                .collect(),
            latency_bucket_upper_ms: (0..BUCKETS).map(upper_ms).collect(),
        }
    }
}
