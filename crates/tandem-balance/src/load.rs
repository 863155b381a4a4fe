//! A pool's observed load against its backends' capacities: "would it survive losing its
//! largest backend right now?", answered live.
//!
//! The data plane already counts every request (connection, for tcp) in
//! [`BackendStats::total`](crate::BackendStats); this module only samples those counters from
//! the control plane's tick, once a second, and keeps [`LoadMonitor::WINDOW`] of samples. The
//! request path pays nothing for it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tandem_config::capacity::{n_plus_one, Member};
use tandem_config::{LoadUnit, Pool as PoolConfig};

use crate::backend::BackendRuntime;

/// What the admin API shows: the N+1 verdict with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityStatus {
    pub unit: LoadUnit,
    /// Requests (connections) per second to the pool's backends over the last
    /// [`LoadMonitor::WINDOW`] (less just after start); `None` until two samples exist.
    pub observed: Option<f64>,
    /// The configured `expected_load`, per second.
    pub expected: Option<f64>,
    /// What the backends in rotation can carry now (a backend without `capacity` counts 0).
    pub capacity: f64,
    /// What is left once the largest of them is gone.
    pub without_largest: f64,
    /// The backend whose loss is assumed.
    pub largest: Option<SocketAddr>,
    /// `without_largest >= observed`; `None` until the load is known.
    pub survives: Option<bool>,
}

/// Samples a pool's request counters and judges N+1 against the configured capacities.
#[derive(Debug)]
pub struct LoadMonitor {
    /// Per backend (by id), its `capacity` per second; empty when no backend has one, which
    /// turns the whole monitor off.
    capacities: Vec<Option<f64>>,
    unit: Option<LoadUnit>,
    expected: Option<f64>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `(when, sum of the backends' totals)`, oldest first, one per [`LoadMonitor::EVERY`].
    samples: VecDeque<(Instant, u64)>,
    status: Option<CapacityStatus>,
}

impl LoadMonitor {
    /// How far back the observed rate looks: long enough to smooth bursts, short enough that
    /// the verdict follows a traffic change within a minute.
    pub const WINDOW: Duration = Duration::from_secs(30);
    /// How often [`Self::sample`] records (the tick that calls it runs more often).
    pub const EVERY: Duration = Duration::from_secs(1);

    pub fn new(cfg: &PoolConfig) -> Self {
        let unit = cfg
            .backends
            .iter()
            .find_map(|b| b.capacity)
            .map(|c| c.unit)
            .or(cfg.expected_load.map(|l| l.unit));
        let any = cfg.backends.iter().any(|b| b.capacity.is_some());
        LoadMonitor {
            capacities: if any {
                cfg.backends
                    .iter()
                    .map(|b| b.capacity.map(|c| c.per_second))
                    .collect()
            } else {
                Vec::new()
            },
            unit,
            expected: cfg.expected_load.map(|l| l.per_second),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether any backend has a `capacity` (otherwise there is nothing to judge).
    pub fn enabled(&self) -> bool {
        !self.capacities.is_empty()
    }

    /// Record the counters if [`Self::EVERY`] has passed since the last sample, and recompute
    /// the verdict. Called from the pool's control-plane tick.
    pub fn sample(&self, now: Instant, backends: &[Arc<BackendRuntime>]) {
        let Some(unit) = self.unit.filter(|_| self.enabled()) else {
            return;
        };
        let mut st = lock(&self.state);
        if let Some((last, _)) = st.samples.back() {
            if now.saturating_duration_since(*last) < Self::EVERY {
                return;
            }
        }
        let total: u64 = backends
            .iter()
            .map(|b| b.stats.total.load(Ordering::Relaxed))
            .sum();
        st.samples.push_back((now, total));
        while st
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > Self::WINDOW)
        {
            st.samples.pop_front();
        }
        let observed = observed_rate(&st.samples);
        st.status = Some(self.judge(unit, observed, backends));
    }

    /// The latest verdict; `None` when no backend has a `capacity` or before the first sample.
    pub fn status(&self) -> Option<CapacityStatus> {
        lock(&self.state).status.clone()
    }

    fn judge(
        &self,
        unit: LoadUnit,
        observed: Option<f64>,
        backends: &[Arc<BackendRuntime>],
    ) -> CapacityStatus {
        let serving: Vec<&Arc<BackendRuntime>> =
            backends.iter().filter(|b| b.in_rotation()).collect();
        let members: Vec<Member> = serving
            .iter()
            .map(|b| Member {
                capacity: self.capacities.get(b.id).copied().flatten().unwrap_or(0.0),
                backup: b.backup,
            })
            .collect();
        let r = n_plus_one(&members, observed.unwrap_or(0.0));
        CapacityStatus {
            unit,
            observed,
            expected: self.expected,
            capacity: r.capacity,
            without_largest: r.without_largest,
            largest: r.largest.and_then(|i| serving.get(i)).map(|b| b.address),
            survives: observed.map(|_| r.survives),
        }
    }
}

/// Per second between the oldest and the newest sample; `None` with fewer than two or when
/// the counters went backwards (they never should; a reload builds a new monitor).
fn observed_rate(samples: &VecDeque<(Instant, u64)>) -> Option<f64> {
    let (t0, n0) = samples.front()?;
    let (t1, n1) = samples.back()?;
    let secs = t1.saturating_duration_since(*t0).as_secs_f64();
    (secs > 0.0 && n1 >= n0).then(|| (n1 - n0) as f64 / secs)
}

/// The state holds plain numbers, so a panic elsewhere cannot leave it inconsistent.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Health;
    use crate::pool::PoolRuntime;
    use tandem_config::{Backend, Rate};

    fn cfg(caps: &[(u16, Option<f64>, bool)]) -> PoolConfig {
        let src = "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n";
        let mut c = tandem_config::parse_str(src, "t.toml")
            .expect("valid")
            .pools
            .remove(0);
        c.backends = caps
            .iter()
            .map(|&(port, cap, backup)| Backend {
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                weight: 1,
                backup,
                max_connections: None,
                health: None,
                capacity: cap.map(|per_second| Rate {
                    per_second,
                    unit: LoadUnit::RequestsPerSecond,
                }),
            })
            .collect();
        c
    }

    fn serve(p: &PoolRuntime, id: usize, n: u64) {
        p.backends[id].stats.total.fetch_add(n, Ordering::Relaxed);
    }

    #[test]
    fn observed_load_against_capacity_without_the_largest() {
        let t0 = Instant::now();
        let p = PoolRuntime::new(&cfg(&[(1, Some(100.0), false), (2, Some(60.0), false)]));
        p.tick(t0, Duration::ZERO);
        let s = p.load.status().expect("a status after the first sample");
        assert_eq!(
            (s.observed, s.survives),
            (None, None),
            "one sample: no rate"
        );
        assert_eq!((s.capacity, s.without_largest), (160.0, 60.0));
        assert_eq!(s.largest, Some(SocketAddr::from(([127, 0, 0, 1], 1))));

        // 50 req/s for 10 s: 60 left without the 100 one carries it.
        for sec in 1..=10 {
            serve(&p, 0, 25);
            serve(&p, 1, 25);
            p.tick(t0 + Duration::from_secs(sec), Duration::ZERO);
        }
        let s = p.load.status().expect("status");
        assert_eq!(s.observed, Some(50.0));
        assert_eq!(s.survives, Some(true));

        // A burst to 80 req/s over the whole window does not survive.
        for sec in 11..=50 {
            serve(&p, 0, 80);
            p.tick(t0 + Duration::from_secs(sec), Duration::ZERO);
        }
        let s = p.load.status().expect("status");
        assert_eq!(s.observed, Some(80.0), "only the last 30 s count");
        assert_eq!(s.survives, Some(false));
    }

    #[test]
    fn only_backends_in_rotation_count() {
        let t0 = Instant::now();
        let p = PoolRuntime::new(&cfg(&[
            (1, Some(100.0), false),
            (2, Some(100.0), false),
            (3, None, false),
        ]));
        p.set_health(0, Health::Down, "down", t0);
        p.tick(t0, Duration::ZERO);
        let s = p.load.status().expect("status");
        // Backend 1 is down; of the rest, the 100 one is the largest and the one without a
        // capacity counts 0.
        assert_eq!((s.capacity, s.without_largest), (100.0, 0.0));
        assert_eq!(s.largest, Some(SocketAddr::from(([127, 0, 0, 1], 2))));
    }

    #[test]
    fn samples_are_taken_once_a_second() {
        let t0 = Instant::now();
        let p = PoolRuntime::new(&cfg(&[(1, Some(10.0), false), (2, Some(10.0), false)]));
        p.tick(t0, Duration::ZERO);
        serve(&p, 0, 5);
        // A tick 100 ms later records nothing, so the rate is not 50/s.
        p.tick(t0 + Duration::from_millis(100), Duration::ZERO);
        assert_eq!(p.load.status().and_then(|s| s.observed), None);
        p.tick(t0 + Duration::from_secs(1), Duration::ZERO);
        assert_eq!(p.load.status().and_then(|s| s.observed), Some(5.0));
    }

    #[test]
    fn pools_without_capacities_have_no_status() {
        let p = PoolRuntime::new(&cfg(&[(1, None, false)]));
        p.tick(Instant::now(), Duration::ZERO);
        assert!(!p.load.enabled());
        assert_eq!(p.load.status(), None);
    }
}
