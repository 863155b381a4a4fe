//! The checker: the thin async shell that runs [`probe`]s on a schedule and feeds a [`Tracker`]
//! per target.
//!
//! It knows nothing of pools, topology or the data plane. It reports through two callbacks:
//! `report` on every state change (publish it to the topology, log it) and `observe` after every
//! probe (bookkeeping such as `last_check` and the last detail for the admin API). Both are
//! called from the checker's tasks, so they must be quick and must not block: store, swap,
//! or send on a channel.
//!
//! One task per target, not one task for the pool: a slow or hanging probe of one backend then
//! never delays the others, and a reload that removes a single backend can stop just its task
//! ([`JoinHandle::abort`]) while the rest keep their state.

use std::future::Future;
use std::hash::Hasher;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tandem_config::{HealthCheck, HealthKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::probe::{ProbeOutcome, Prober};
use crate::tracker::{Health, Tracker, Transition};

/// Called with the target's index in `targets` and the transition, on every state change.
pub type ReportFn = Arc<dyn Fn(usize, &Transition) + Send + Sync>;
/// Called with the target's index, the outcome and when it was observed, after every probe.
pub type ObserveFn = Arc<dyn Fn(usize, &ProbeOutcome, std::time::Instant) + Send + Sync>;

/// Reason given when `kind = "none"` declares a backend up without probing.
pub const NOT_CHECKED: &str = "not checked (kind = none)";

/// Start checking `targets` (backend traffic addresses) as `check` says. Returns one task
/// handle per target, in the order of `targets`; the index passed to the callbacks is the
/// position in `targets`.
///
/// Schedule per target: the first probe runs after [`first_delay`] (a deterministic jitter in
/// `[0, interval)`), then one probe every `interval` measured start to start, so a slow probe
/// does not make the schedule drift (a probe that overruns its period skips the missed slots
/// rather than bursting). While the target is Down the period is `down_interval` instead (Up
/// and Unknown use `interval`); the switch happens right after the probe that changed the
/// state. `kind = "none"` reports Up once, immediately, never probes, and its task ends right
/// away.
///
/// The check's [`Prober`] is built once here and shared by the targets; if it cannot work at
/// all (an https `ca_file` that has become unreadable, no system roots) that is logged once as
/// an error, and every probe fails with the same reason, so the backends go down visibly.
///
/// The tasks end promptly, even in the middle of a probe, when `shutdown` becomes `true` or its
/// sender is dropped (nobody could ever ask them to stop any more, and a dropped sender means
/// the owner is gone). Must be called within a tokio runtime; uses `tokio::time`, so tests can
/// run it with paused time.
pub fn spawn(
    check: HealthCheck,
    targets: Vec<SocketAddr>,
    report: ReportFn,
    observe: ObserveFn,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let shared = Prober::new(&check.kind);
    if let Some(why) = shared.setup_error() {
        tracing::error!(kind = check.kind.name(), error = %why, "health check cannot run; its backends will be marked down");
    }
    let timeout = check.timeout;
    let prober: ProbeFn = Arc::new(move |target| {
        let p = shared.clone();
        Box::pin(async move { p.probe(target, timeout).await })
    });
    spawn_with(check, targets, prober, report, observe, shutdown)
}

/// The probe the loops run; a seam so tests can drive the schedule with a fake backend.
type ProbeFn =
    Arc<dyn Fn(SocketAddr) -> Pin<Box<dyn Future<Output = ProbeOutcome> + Send>> + Send + Sync>;

fn spawn_with(
    check: HealthCheck,
    targets: Vec<SocketAddr>,
    prober: ProbeFn,
    report: ReportFn,
    observe: ObserveFn,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let check = Arc::new(check);
    targets
        .into_iter()
        .enumerate()
        .map(|(index, target)| {
            let job = Job {
                index,
                target,
                check: Arc::clone(&check),
                prober: Arc::clone(&prober),
                report: Arc::clone(&report),
                observe: Arc::clone(&observe),
            };
            tokio::spawn(job.run(shutdown.clone()))
        })
        .collect()
}

/// Delay before the first probe of `target`: in `[0, interval)`, in whole milliseconds (the
/// resolution of tokio's timer, so the schedule is exactly what this returns), derived from the
/// address alone.
///
/// Spreading first probes keeps a pool of 1000 backends (or 1000 daemons restarted together)
/// from probing in the same millisecond; deriving it from the address (FNV-1a plus a mixing
/// step, not std's `DefaultHasher`, whose output may change between Rust releases) makes runs
/// reproducible and a given backend's probe phase stable across restarts and reloads.
pub fn first_delay(target: SocketAddr, interval: Duration) -> Duration {
    let millis = interval.as_millis();
    if millis == 0 {
        return Duration::ZERO;
    }
    let mut h = Fnv1a::default();
    match target {
        SocketAddr::V4(a) => h.write(&a.ip().octets()),
        SocketAddr::V6(a) => h.write(&a.ip().octets()),
    }
    h.write(&target.port().to_be_bytes());
    let offset = u128::from(h.finish()) % millis;
    // `offset < millis`, which came from a Duration, so it fits back into one.
    Duration::from_millis(u64::try_from(offset).unwrap_or(u64::MAX)).min(interval)
}

/// 64-bit FNV-1a with a final avalanche (MurmurHash3's fmix64): tiny, dependency-free and stable
/// forever. Plain FNV-1a barely mixes the last bytes written (the port), which left neighbouring
/// ports clustered on few milliseconds.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// Everything one target's loop needs.
struct Job {
    index: usize,
    target: SocketAddr,
    check: Arc<HealthCheck>,
    prober: ProbeFn,
    report: ReportFn,
    observe: ObserveFn,
}

impl Job {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if *shutdown.borrow_and_update() {
            return;
        }
        let mut tracker = Tracker::new(self.check.rise, self.check.fall);
        if matches!(self.check.kind, HealthKind::None) {
            // tokio's clock, like every other timestamp here, so paused-time tests agree.
            if let Some(t) = tracker.force(Instant::now().into_std(), Health::Up, NOT_CHECKED) {
                (self.report)(self.index, &t);
            }
            return;
        }
        // A zero period would spin; config validation refuses it, this keeps the loop sane.
        let interval = self.check.interval.max(Duration::from_millis(1));
        let down_interval = self.check.down_interval.max(Duration::from_millis(1));
        let mut next = Instant::now() + first_delay(self.target, interval);
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let outcome = tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                outcome = (self.prober)(self.target) => outcome,
            };
            let now = Instant::now();
            let at = now.into_std();
            tracing::debug!(backend = %self.target, ok = outcome.ok, detail = %outcome.detail, "health probe");
            (self.observe)(self.index, &outcome, at);
            if let Some(t) = tracker.observe(at, &outcome) {
                (self.report)(self.index, &t);
            }
            let period = if tracker.state() == Health::Down {
                down_interval
            } else {
                interval
            };
            next += period;
            if next <= now {
                // The probe overran its slot(s): skip to the next slot in phase.
                let behind = now.duration_since(next).as_nanos() / period.as_nanos() + 1;
                next += period * u32::try_from(behind).unwrap_or(u32::MAX);
            }
        }
    }
}

/// Resolves when shutdown is requested: the value is `true` or the sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Mutex;
    use tandem_config::StatusSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    fn check(kind: HealthKind, interval_ms: u64, rise: u32, fall: u32) -> HealthCheck {
        HealthCheck {
            kind,
            interval: Duration::from_millis(interval_ms),
            down_interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(interval_ms),
            rise,
            fall,
        }
    }

    type Seen = (usize, Health, Health, String, Instant);
    type ProbeLog = Arc<Mutex<Vec<(usize, Instant)>>>;

    /// Callbacks that forward transitions (stamped with tokio time) and count probes.
    fn recorders() -> (ReportFn, ObserveFn, mpsc::UnboundedReceiver<Seen>, ProbeLog) {
        let (tx, rx) = mpsc::unbounded_channel();
        let report: ReportFn = Arc::new(move |i, t: &Transition| {
            let _ = tx.send((i, t.from, t.to, t.reason.clone(), Instant::now()));
        });
        let probes = Arc::new(Mutex::new(Vec::new()));
        let p = Arc::clone(&probes);
        let observe: ObserveFn = Arc::new(move |i, _o: &ProbeOutcome, _at| {
            p.lock().expect("lock").push((i, Instant::now()));
        });
        (report, observe, rx, probes)
    }

    /// A fake backend per address: answers instantly, up or down as the test says.
    fn fake(up: Arc<HashMap<SocketAddr, AtomicBool>>) -> ProbeFn {
        Arc::new(move |target| {
            let ok = up.get(&target).is_some_and(|b| b.load(Ordering::SeqCst));
            Box::pin(async move {
                let detail = format!("{} from {target}", if ok { "http 200" } else { "http 503" });
                if ok {
                    ProbeOutcome::ok(detail)
                } else {
                    ProbeOutcome::fail(detail)
                }
            })
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    #[test]
    fn first_delay_is_in_range_deterministic_and_spread() {
        let interval = Duration::from_secs(2);
        let mut seen = std::collections::HashSet::new();
        for port in 8000..9000 {
            let d = first_delay(addr(port), interval);
            assert!(d < interval);
            assert_eq!(d, first_delay(addr(port), interval));
            seen.insert(d.as_millis());
        }
        // 1000 backends land on many different milliseconds, not one.
        assert!(seen.len() > 500, "only {} distinct ms", seen.len());
        assert_eq!(first_delay(addr(1), Duration::ZERO), Duration::ZERO);
        let v6: SocketAddr = "[2001:db8::1]:80".parse().expect("v6");
        assert!(first_delay(v6, interval) < interval);
    }

    #[tokio::test(start_paused = true)]
    async fn up_then_down_on_schedule() {
        let (a, b) = (addr(8001), addr(8002));
        let up: Arc<HashMap<_, _>> =
            Arc::new([(a, AtomicBool::new(true)), (b, AtomicBool::new(false))].into());
        let (report, observe, mut rx, probes) = recorders();
        let (stop_tx, stop_rx) = watch::channel(false);
        let start = Instant::now();
        let interval = Duration::from_secs(1);
        let handles = spawn_with(
            check(HealthKind::Tcp { port: None }, 1000, 2, 3),
            vec![a, b],
            fake(Arc::clone(&up)),
            report,
            observe,
            stop_rx,
        );
        assert_eq!(handles.len(), 2);

        // Each target: first probe at its jitter, verdict after rise (2) or fall (3) probes.
        let mut first = HashMap::new();
        for _ in 0..2 {
            let (i, from, to, reason, at) = rx.recv().await.expect("transition");
            first.insert(i, (from, to, reason, at));
        }
        let (from, to, reason, at) = &first[&0];
        assert_eq!((*from, *to), (Health::Unknown, Health::Up));
        assert_eq!(reason, &format!("http 200 from {a} (2/2)"));
        assert_eq!(*at - start, first_delay(a, interval) + interval);
        let (from, to, reason, at) = &first[&1];
        assert_eq!((*from, *to), (Health::Unknown, Health::Down));
        assert_eq!(reason, &format!("http 503 from {b} (3/3)"));
        assert_eq!(*at - start, first_delay(b, interval) + 2 * interval);

        // a stops answering: down after exactly `fall` more probes.
        up[&a].store(false, Ordering::SeqCst);
        let flipped = Instant::now();
        let (i, from, to, reason, at) = rx.recv().await.expect("transition");
        assert_eq!((i, from, to), (0, Health::Up, Health::Down));
        assert_eq!(reason, format!("http 503 from {a} (3/3)"));
        assert!(at - flipped <= 3 * interval, "{:?}", at - flipped);

        // Probes were one interval apart, start to start.
        let times: Vec<Instant> = probes
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| p.0 == 0)
            .map(|p| p.1)
            .collect();
        assert!(
            times.windows(2).all(|w| w[1] - w[0] == interval),
            "{times:?}"
        );

        // Shutdown ends every task promptly (no time needs to pass).
        stop_tx.send(true).expect("send");
        for h in handles {
            tokio::time::timeout(Duration::from_millis(1), h)
                .await
                .expect("prompt exit")
                .expect("no panic");
        }
    }

    /// Probe start times of target 0 after `from`.
    fn probe_times(probes: &ProbeLog, from: Instant) -> Vec<Duration> {
        probes
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| p.0 == 0 && p.1 >= from)
            .map(|p| p.1 - from)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn down_interval_paces_a_down_backend_then_interval_again() {
        let a = addr(8001);
        let up: Arc<HashMap<_, _>> = Arc::new([(a, AtomicBool::new(false))].into());
        let (report, observe, mut rx, probes) = recorders();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (interval, down_interval) = (Duration::from_secs(1), Duration::from_secs(5));
        let handles = spawn_with(
            HealthCheck {
                down_interval,
                ..check(HealthKind::Tcp { port: None }, 1000, 2, 2)
            },
            vec![a],
            fake(Arc::clone(&up)),
            report,
            observe,
            stop_rx,
        );
        let start = Instant::now();

        // Unknown probes at `interval`: down after the second failure.
        let (_, from, to, _, down_at) = rx.recv().await.expect("down");
        assert_eq!((from, to), (Health::Unknown, Health::Down));
        assert_eq!(down_at - start, first_delay(a, interval) + interval);

        // Down: probes every `down_interval`; it recovers and needs `rise` (2) of them.
        up[&a].store(true, Ordering::SeqCst);
        let (_, from, to, reason, up_at) = rx.recv().await.expect("up");
        assert_eq!((from, to), (Health::Down, Health::Up));
        assert_eq!(reason, format!("http 200 from {a} (2/2)"));
        assert_eq!(up_at - down_at, 2 * down_interval);

        // Up again: back to `interval`, so a new failure is noticed at the old pace.
        up[&a].store(false, Ordering::SeqCst);
        let (_, _, to, _, down_again) = rx.recv().await.expect("down again");
        assert_eq!(to, Health::Down);
        assert_eq!(down_again - up_at, 2 * interval);
        assert_eq!(
            probe_times(&probes, down_at),
            [
                Duration::ZERO,
                down_interval,
                2 * down_interval,
                2 * down_interval + interval,
                2 * down_interval + 2 * interval,
            ]
        );
        for h in handles {
            h.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_down_interval_notices_recovery_sooner() {
        let a = addr(8002);
        let up: Arc<HashMap<_, _>> = Arc::new([(a, AtomicBool::new(false))].into());
        let (report, observe, mut rx, probes) = recorders();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (interval, down_interval) = (Duration::from_secs(30), Duration::from_secs(1));
        let handles = spawn_with(
            HealthCheck {
                down_interval,
                timeout: down_interval,
                ..check(HealthKind::Tcp { port: None }, 30_000, 1, 1)
            },
            vec![a],
            fake(Arc::clone(&up)),
            report,
            observe,
            stop_rx,
        );
        let (_, _, to, _, down_at) = rx.recv().await.expect("down");
        assert_eq!(to, Health::Down);
        // Five probes a second apart while down, then it answers.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        up[&a].store(true, Ordering::SeqCst);
        let (_, _, to, _, up_at) = rx.recv().await.expect("up");
        assert_eq!(to, Health::Up);
        assert_eq!(up_at - down_at, 5 * down_interval, "not 30s later");
        tokio::time::sleep(Duration::from_secs(61)).await;
        let times = probe_times(&probes, up_at);
        assert_eq!(times, [Duration::ZERO, interval, 2 * interval]);
        for h in handles {
            h.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn flapping_backend_keeps_its_state() {
        let a = addr(8001);
        let up: Arc<HashMap<_, _>> = Arc::new([(a, AtomicBool::new(true))].into());
        let (report, observe, mut rx, probes) = recorders();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let handles = spawn_with(
            check(HealthKind::Tcp { port: None }, 100, 2, 2),
            vec![a],
            fake(Arc::clone(&up)),
            report,
            observe,
            stop_rx,
        );
        let (_, _, to, _, _) = rx.recv().await.expect("up");
        assert_eq!(to, Health::Up);
        // Alternate the answer before every probe for 50 probes: never two failures in a row.
        let seen = probes.lock().expect("lock").len();
        for n in 0..50 {
            up[&a].store(n % 2 == 1, Ordering::SeqCst);
            // Bounded polling (virtual time): wait for the probe that sees this answer.
            tokio::time::timeout(Duration::from_secs(1), async {
                while probes.lock().expect("lock").len() < seen + n + 1 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("probe within one interval");
        }
        assert!(rx.try_recv().is_err(), "no transition while flapping");
        for h in handles {
            h.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn kind_none_reports_up_once_and_never_probes() {
        let (report, observe, mut rx, probes) = recorders();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let calls = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&calls);
        let prober: ProbeFn = Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { ProbeOutcome::fail("") })
        });
        let start = Instant::now();
        let handles = spawn_with(
            check(HealthKind::None, 1000, 2, 3),
            vec![addr(1), addr(2)],
            prober,
            report,
            observe,
            stop_rx,
        );
        for h in handles {
            h.await.expect("task ends by itself");
        }
        let mut got = Vec::new();
        while let Ok(seen) = rx.try_recv() {
            got.push(seen);
        }
        assert_eq!(got.len(), 2);
        for (_, from, to, reason, at) in got {
            assert_eq!(
                (from, to, reason.as_str(), at),
                (Health::Unknown, Health::Up, NOT_CHECKED, start)
            );
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(probes.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_a_hanging_probe_and_a_dropped_sender_stops_too() {
        let prober: ProbeFn = Arc::new(|_| Box::pin(std::future::pending()));
        let (report, observe, _rx, _) = recorders();
        let (stop_tx, stop_rx) = watch::channel(false);
        let handles = spawn_with(
            check(HealthKind::Tcp { port: None }, 1000, 1, 1),
            vec![addr(1)],
            Arc::clone(&prober),
            Arc::clone(&report),
            Arc::clone(&observe),
            stop_rx,
        );
        tokio::time::sleep(Duration::from_secs(5)).await; // well inside the hanging probe
        stop_tx.send(true).expect("send");
        for h in handles {
            tokio::time::timeout(Duration::from_millis(1), h)
                .await
                .expect("prompt exit")
                .expect("no panic");
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let handles = spawn_with(
            check(HealthKind::Tcp { port: None }, 1000, 1, 1),
            vec![addr(1)],
            prober,
            report,
            observe,
            stop_rx,
        );
        drop(stop_tx);
        for h in handles {
            tokio::time::timeout(Duration::from_millis(1), h)
                .await
                .expect("prompt exit")
                .expect("no panic");
        }
    }

    /// End to end with real sockets and real time: an HTTP backend comes up, then its
    /// listener goes away and the checker marks it down.
    #[tokio::test]
    async fn real_http_backend_goes_up_then_down() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let target = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        let kind = HealthKind::Http {
            method: "GET".into(),
            path: "/healthz".into(),
            host: None,
            expect_status: StatusSet {
                ranges: vec![(200, 299)],
            },
            port: None,
            expect_body: None,
            digest: None,
        };
        let (report, observe, mut rx, _) = recorders();
        let (stop_tx, stop_rx) = watch::channel(false);
        let handles = spawn(
            check(kind, 50, 2, 2),
            vec![target],
            report,
            observe,
            stop_rx,
        );
        let bound = Duration::from_secs(10);

        let (_, from, to, reason, _) = tokio::time::timeout(bound, rx.recv())
            .await
            .expect("up in time")
            .expect("open");
        assert_eq!((from, to), (Health::Unknown, Health::Up));
        assert_eq!(reason, format!("http 200 from {target} (2/2)"));

        // Stop answering: abort the accept loop, which drops (closes) the listener.
        server.abort();
        let _ = server.await;
        let (_, from, to, reason, _) = tokio::time::timeout(bound, rx.recv())
            .await
            .expect("down in time")
            .expect("open");
        assert_eq!((from, to), (Health::Up, Health::Down));
        assert_eq!(reason, format!("connect refused by {target} (2/2)"));

        stop_tx.send(true).expect("send");
        for h in handles {
            tokio::time::timeout(bound, h)
                .await
                .expect("exit")
                .expect("no panic");
        }
    }
}
