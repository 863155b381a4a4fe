//! What `tandem status` reads from the admin API, and what it shows: the counters of two
//! samples turned into rates.
//!
//! The API exposes counters only (as Prometheus wants them), so rates are computed here from
//! two snapshots taken a known time apart: `(total₂ − total₁) / Δt`. Only the fields used are
//! declared, and new ones default, so `status` also reads a daemon older or newer than itself.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::admin_client::Client;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServiceDoc {
    pub name: String,
    pub listen: String,
    pub mode: String,
    pub pool: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PoolDoc {
    pub name: String,
    pub scheduler: String,
    #[serde(default)]
    pub sorry_server: Option<String>,
    #[serde(default)]
    pub backends_eligible: usize,
    pub backends: Vec<BackendDoc>,
    #[serde(default)]
    pub survives_losing_one: Option<bool>,
    #[serde(default)]
    pub capacity: Option<CapacityDoc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackendDoc {
    pub address: String,
    pub weight: u32,
    #[serde(default)]
    pub backup: bool,
    /// `up`, `down` or `unknown`.
    pub state: String,
    /// `enabled`, `draining` or `disabled`.
    pub admin_state: String,
    #[serde(default)]
    pub ejected: bool,
    pub active: u64,
    pub total: u64,
    #[serde(default)]
    pub failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CapacityDoc {
    pub unit: String,
    pub observed_load: Option<f64>,
    pub expected_load: Option<f64>,
    pub capacity: f64,
    pub capacity_without_largest: f64,
    pub largest: Option<String>,
}

#[derive(Deserialize)]
struct ServicesDoc {
    services: Vec<ServiceDoc>,
}

#[derive(Deserialize)]
struct PoolsDoc {
    pools: Vec<PoolDoc>,
}

/// One reading of the API.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub services: Vec<ServiceDoc>,
    pub pools: Vec<PoolDoc>,
}

impl Snapshot {
    pub fn fetch(client: &Client) -> Result<Snapshot> {
        let services: ServicesDoc = serde_json::from_slice(&client.get("/api/v1/services")?)
            .context("reading /api/v1/services")?;
        let pools: PoolsDoc = serde_json::from_slice(&client.get("/api/v1/pools")?)
            .context("reading /api/v1/pools")?;
        Ok(Snapshot {
            at: Instant::now(),
            services: services.services,
            pools: pools.pools,
        })
    }
}

/// What `tandem status --json` prints and the table is drawn from.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The admin API read.
    pub admin: String,
    /// Seconds between the two samples the rates come from; null without rates.
    pub interval_s: Option<f64>,
    pub services: Vec<ServiceDoc>,
    pub pools: Vec<PoolStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub scheduler: String,
    /// What `total` and `rate` count: `req/s` (http), `conn/s` (tcp), `flows/s` (udp), from the
    /// first service that uses the pool.
    pub unit: &'static str,
    pub sorry_server: Option<String>,
    pub backends_eligible: usize,
    pub survives_losing_one: Option<bool>,
    pub capacity: Option<CapacityDoc>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub address: String,
    /// One word: `draining` or `disabled` (operator), else `ejected` (passive detection),
    /// else the health verdict: `up`, `down`, `unknown`.
    pub state: String,
    pub health: String,
    pub admin_state: String,
    pub ejected: bool,
    pub backup: bool,
    pub weight: u32,
    pub active: u64,
    pub total: u64,
    pub failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Per second between the two samples; null without a previous sample or when a counter
    /// went backwards (the daemon restarted).
    pub rate: Option<f64>,
    pub bytes_in_per_s: Option<f64>,
    pub bytes_out_per_s: Option<f64>,
}

impl PoolStatus {
    /// Sums over the backends (rates are null if any backend's is).
    pub fn totals(&self) -> Totals {
        let sum_opt = |f: fn(&BackendStatus) -> Option<f64>| {
            self.backends
                .iter()
                .map(f)
                .try_fold(0.0, |acc, v| v.map(|v| acc + v))
        };
        Totals {
            active: self.backends.iter().map(|b| b.active).sum(),
            total: self.backends.iter().map(|b| b.total).sum(),
            failures: self.backends.iter().map(|b| b.failures).sum(),
            bytes_in: self.backends.iter().map(|b| b.bytes_in).sum(),
            bytes_out: self.backends.iter().map(|b| b.bytes_out).sum(),
            rate: sum_opt(|b| b.rate),
            bytes_in_per_s: sum_opt(|b| b.bytes_in_per_s),
            bytes_out_per_s: sum_opt(|b| b.bytes_out_per_s),
        }
    }
}

/// A pool's backends added up, for its service's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub active: u64,
    pub total: u64,
    pub failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rate: Option<f64>,
    pub bytes_in_per_s: Option<f64>,
    pub bytes_out_per_s: Option<f64>,
}

/// The one-word state shown for a backend.
pub fn state_word(b: &BackendDoc) -> String {
    if b.admin_state != "enabled" {
        b.admin_state.clone()
    } else if b.ejected {
        "ejected".to_string()
    } else {
        b.state.clone()
    }
}

/// What a pool's counters count, by the mode of the first service using it.
fn unit_of(pool: &str, services: &[ServiceDoc]) -> &'static str {
    match services
        .iter()
        .find(|s| s.pool == pool)
        .map(|s| s.mode.as_str())
    {
        Some("http") => "req/s",
        Some("tcp") => "conn/s",
        Some("udp") => "flows/s",
        _ => "/s",
    }
}

impl Status {
    /// `cur` with rates against `prev` (same daemon, taken earlier).
    pub fn new(admin: String, prev: Option<&Snapshot>, cur: &Snapshot) -> Status {
        let secs = prev
            .map(|p| cur.at.saturating_duration_since(p.at).as_secs_f64())
            .filter(|s| *s > 0.0);
        let pools = cur
            .pools
            .iter()
            .map(|p| {
                let before = prev.and_then(|s| s.pools.iter().find(|x| x.name == p.name));
                PoolStatus {
                    name: p.name.clone(),
                    scheduler: p.scheduler.clone(),
                    unit: unit_of(&p.name, &cur.services),
                    sorry_server: p.sorry_server.clone(),
                    backends_eligible: p.backends_eligible,
                    survives_losing_one: p.survives_losing_one,
                    capacity: p.capacity.clone(),
                    backends: p
                        .backends
                        .iter()
                        .map(|b| {
                            let old = before
                                .and_then(|x| x.backends.iter().find(|o| o.address == b.address));
                            let per_s = |f: fn(&BackendDoc) -> u64| {
                                let (old, secs) = (old?, secs?);
                                let delta = f(b).checked_sub(f(old))?;
                                Some(delta as f64 / secs)
                            };
                            BackendStatus {
                                address: b.address.clone(),
                                state: state_word(b),
                                health: b.state.clone(),
                                admin_state: b.admin_state.clone(),
                                ejected: b.ejected,
                                backup: b.backup,
                                weight: b.weight,
                                active: b.active,
                                total: b.total,
                                failures: b.failures,
                                bytes_in: b.bytes_in,
                                bytes_out: b.bytes_out,
                                rate: per_s(|b| b.total),
                                bytes_in_per_s: per_s(|b| b.bytes_in),
                                bytes_out_per_s: per_s(|b| b.bytes_out),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Status {
            admin,
            interval_s: secs,
            services: cur.services.clone(),
            pools,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn backend(total: u64, bytes: u64) -> BackendDoc {
        BackendDoc {
            address: "127.0.0.1:8001".into(),
            weight: 1,
            backup: false,
            state: "up".into(),
            admin_state: "enabled".into(),
            ejected: false,
            active: 0,
            total,
            failures: 0,
            bytes_in: bytes,
            bytes_out: bytes * 2,
        }
    }

    fn snap(at: Instant, b: BackendDoc) -> Snapshot {
        Snapshot {
            at,
            services: vec![ServiceDoc {
                name: "www".into(),
                listen: "127.0.0.1:8080".into(),
                mode: "http".into(),
                pool: "web".into(),
            }],
            pools: vec![PoolDoc {
                name: "web".into(),
                scheduler: "wrr".into(),
                sorry_server: None,
                backends_eligible: 1,
                backends: vec![b],
                survives_losing_one: None,
                capacity: None,
            }],
        }
    }

    #[test]
    fn rates_come_from_two_samples() {
        let t0 = Instant::now();
        let a = snap(t0, backend(100, 1000));
        let b = snap(t0 + Duration::from_secs(2), backend(150, 3048));
        let s = Status::new("x".into(), Some(&a), &b);
        let p = &s.pools[0];
        assert_eq!(p.unit, "req/s");
        assert_eq!(p.backends[0].rate, Some(25.0));
        assert_eq!(p.backends[0].bytes_in_per_s, Some(1024.0));
        assert_eq!(p.backends[0].bytes_out_per_s, Some(2048.0));
        assert_eq!(p.totals().rate, Some(25.0));
        // A restarted daemon's counters went down: no rate rather than a huge one.
        let s = Status::new(
            "x".into(),
            Some(&b),
            &snap(t0 + Duration::from_secs(3), backend(1, 1)),
        );
        assert_eq!(s.pools[0].backends[0].rate, None);
        // No previous sample: totals only.
        let s = Status::new("x".into(), None, &a);
        assert_eq!((s.interval_s, s.pools[0].backends[0].rate), (None, None));
    }

    #[test]
    fn the_state_word_puts_the_operator_first() {
        let mut b = backend(0, 0);
        assert_eq!(state_word(&b), "up");
        b.ejected = true;
        assert_eq!(state_word(&b), "ejected");
        b.admin_state = "draining".into();
        assert_eq!(state_word(&b), "draining");
    }
}
