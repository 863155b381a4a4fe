//! Replication benchmark: two `tandem_cluster::Node`s streaming `source_ip` sticky entries to
//! each other over real TCP on 127.0.0.1. Run by `bench/persistence.sh`; the results and how
//! to read them are in `bench/persistence/RESULTS.md`.
//!
//! ```text
//! cargo run --release -p tandem-cluster --example replication -- --scenario rate:10000
//! cargo run --release -p tandem-cluster --example replication -- --header --scenario snapshot:1000000
//! ```
//!
//! Each node runs as the daemon runs it: `Node::start` on a current-thread tokio runtime of its
//! own thread (`node-a`, `node-b`; the daemon uses its control-plane thread), with a `Topology`
//! built from a small configuration (one service with `source_ip` persistence, parsed with
//! `tandem_config::parse_str`). A third thread (`insert`) stands in for node A's data plane:
//! it binds new clients with `ServicePersistence::chosen(Pinned::None, ..)`, exactly what a
//! worker does for a client it has not seen, which binds the entry and queues the change for
//! the stream. A fourth (`poll`) watches node B's table. CPU time is read per thread from
//! `/proc/self/task/TID/schedstat` (time on CPU, ns), so each node's share is known although
//! both live in one process.
//!
//! One scenario per run (the script starts a fresh process for each, so memory and state
//! never carry over):
//!
//! - `rate:R` — both nodes connected; R new entries per second on A (paced, in bursts every
//!   ~0.2 ms) for `--duration` s. About every (R/`--samples`)-th key (random gaps, none in the
//!   first `--warmup` s) and the last key are sampled: the poller looks them up in B's
//!   table every `--poll-us` µs and records insert → present on B. Entries reach B in insert
//!   order (one inserter, one ordered log), so the poller only needs to look at the oldest
//!   sample not seen yet. The library's own view (`lag_ms`, `lag_entries`, `queued` of B's
//!   `PeerStatus`) is sampled every 50 ms alongside.
//! - `rate-ckpt:R` — the same with `state_dir` on both nodes (each writes its checkpoint
//!   once a second while something changed).
//! - `snapshot:N` — N entries on A while B is not running; then B starts: the time until B
//!   holds them all (A sends a full snapshot).
//! - `resume:N` — B (with `state_dir`) connects, is stopped (its final checkpoint holds its
//!   position in A's log); N entries on A; B starts again from the checkpoint: the time until
//!   it has applied all N (A resumes the stream at B's position, no snapshot).
//!
//! `--presize` (a diagnostic, not used by the script) grows both tables to the run's size
//! before a rate run, so that no hash map or queue of the sticky table resizes during it.
//! `REPLICATION_LAG_DUMP=FILE` writes a rate run's lag samples, in insert order, to FILE.
//!
//! Output: one tab-separated line per run on stdout (`--header` prints the column names
//! first), progress on stderr.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_balance::persistence::{Pinned, ServicePersistence};
use tandem_balance::Topology;
use tandem_cluster::{Node, PeerStatus};
use tokio::sync::watch;

const SERVICE: &str = "web";
const SECRET: &str = "tandem-bench-replication-secret";
/// Client keys: 10.0.0.0 + i (16.7 M distinct /32s).
const KEY_BASE: u32 = 0x0A00_0000;

const COLUMNS: &[&str] = &[
    "round",
    "scenario",
    "rate",
    "n",
    "status",
    "insert_s",
    "inserted_rps",
    "applied_rps",
    "drain_ms",
    "lag_p50_ms",
    "lag_p90_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "lag_samples",
    "hb_lag_p50_ms",
    "hb_lag_max_ms",
    "max_lag_entries",
    "max_queued",
    "catchup_ms",
    "catchup_rps",
    "cpu_a_ms",
    "cpu_b_ms",
    "cpu_insert_ms",
    "cpu_poll_ms",
    "a_us_per_rec",
    "b_us_per_rec",
    "ckpt_ms",
    "ckpt_mib",
    "rss_mib",
    "b_snapshots",
    "b_resumes",
    "echo_records",
    // The HAProxy driver's lag from its CLI send; here an insert is the bind itself.
    "lag_send_p50_ms",
    "lag_send_p99_ms",
];

// ------------------------------------------------------------------------------ options

struct Opts {
    kind: String,
    n_or_rate: u64,
    round: String,
    duration: f64,
    port_a: u16,
    port_b: u16,
    samples_per_s: u64,
    warmup: f64,
    poll_us: u64,
    timeout: Duration,
    tmp: PathBuf,
    cpu_a: Option<usize>,
    cpu_b: Option<usize>,
    header: bool,
    presize: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: replication --scenario rate:R|rate-ckpt:R|snapshot:N|resume:N [--round LABEL] \
         [--duration S] [--warmup S] [--port-a P] [--port-b P] [--samples PER_S] [--poll-us US] [--timeout S] \
         [--tmp DIR] [--cpu-a CORE] [--cpu-b CORE] [--presize] [--header]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        kind: String::new(),
        n_or_rate: 0,
        round: "1".into(),
        duration: 10.0,
        port_a: 18941,
        port_b: 18942,
        samples_per_s: 100,
        warmup: 1.0,
        poll_us: 200,
        timeout: Duration::from_secs(120),
        tmp: std::env::temp_dir(),
        cpu_a: None,
        cpu_b: None,
        header: false,
        presize: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--header" {
            o.header = true;
            continue;
        }
        if a == "--presize" {
            o.presize = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            usage();
        }
        let v = args.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<u64>().unwrap_or_else(|_| usage());
        match a.as_str() {
            "--scenario" => {
                let (k, n) = v.split_once(':').unwrap_or_else(|| usage());
                o.kind = k.to_string();
                o.n_or_rate = num(n);
            }
            "--round" => o.round = v,
            "--duration" => o.duration = v.parse().unwrap_or_else(|_| usage()),
            "--port-a" => o.port_a = u16::try_from(num(&v)).unwrap_or_else(|_| usage()),
            "--port-b" => o.port_b = u16::try_from(num(&v)).unwrap_or_else(|_| usage()),
            "--samples" => o.samples_per_s = num(&v).max(1),
            "--warmup" => o.warmup = v.parse().unwrap_or_else(|_| usage()),
            "--poll-us" => o.poll_us = num(&v).max(10),
            "--timeout" => o.timeout = Duration::from_secs(num(&v).max(1)),
            "--tmp" => o.tmp = PathBuf::from(v),
            "--cpu-a" => o.cpu_a = Some(usize::try_from(num(&v)).unwrap_or_else(|_| usage())),
            "--cpu-b" => o.cpu_b = Some(usize::try_from(num(&v)).unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let valid_times =
        o.duration > 0.0 && o.duration <= 3600.0 && o.warmup >= 0.0 && o.warmup < o.duration;
    if !matches!(
        o.kind.as_str(),
        "rate" | "rate-ckpt" | "snapshot" | "resume"
    ) || o.n_or_rate == 0
        || !valid_times
    {
        usage();
    }
    o
}

// ------------------------------------------------------------------------------ /proc

/// This thread's kernel id, from `/proc/thread-self` (`/proc/PID/task/TID`).
fn thread_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// Time the thread spent on a CPU, ns (`schedstat` field 1; `stat` utime+stime as a fallback).
fn thread_cpu_ns(tid: Option<u32>) -> Option<u64> {
    let tid = tid?;
    if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|x| x.parse().ok()) {
            return Some(ns);
        }
    }
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000) // USER_HZ = 100 on Linux
}

fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Pins thread `tid` to `cpu` with taskset (no libc dependency for a benchmark).
fn pin(tid: Option<u32>, cpu: Option<usize>, what: &str) {
    let (Some(tid), Some(cpu)) = (tid, cpu) else {
        return;
    };
    let ok = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("replication: warning: could not pin {what} (tid {tid}) to core {cpu}");
    }
}

// ------------------------------------------------------------------------------ nodes

fn config(
    listen: u16,
    peer: u16,
    state_dir: Option<&Path>,
    max_entries: u64,
) -> tandem_config::Config {
    let state_dir = state_dir
        .map(|d| format!("state_dir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    // The service's listener is never bound here (no data plane): only its persistence is used.
    let src = format!(
        r#"
[[pool]]
name = "bench"
scheduler = "rr"
health = {{ kind = "none" }}
backends = [ {{ address = "127.0.0.1:18001" }}, {{ address = "127.0.0.1:18002" }} ]

[[service]]
name = "{SERVICE}"
listen = "127.0.0.1:{svc}"
mode = "tcp"
pool = "bench"
persistence = {{ kind = "source_ip", timeout = "1h", max_entries = {max_entries} }}

[cluster]
listen = "127.0.0.1:{listen}"
peers = ["127.0.0.1:{peer}"]
secret = "{SECRET}"
{state_dir}"#,
        svc = u32::from(listen) + 10,
    );
    tandem_config::parse_str(&src, "replication-bench.toml")
        .unwrap_or_else(|e| panic!("bench configuration does not parse:\n{e}"))
}

struct NodeHandle {
    node: Arc<Node>,
    topo: Arc<Topology>,
    tid: Option<u32>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// How long the final checkpoint took (ns), written by the node thread as it stops.
    final_ckpt_ns: Arc<AtomicU64>,
}

impl NodeHandle {
    fn persistence(&self) -> &Arc<ServicePersistence> {
        self.topo
            .persistence(SERVICE)
            .expect("the bench service has persistence")
    }
    fn peer(&self) -> &Arc<PeerStatus> {
        &self.node.peers[0]
    }
    fn cpu_ns(&self) -> Option<u64> {
        thread_cpu_ns(self.tid)
    }
    fn table_len(&self) -> usize {
        self.persistence().sticky.as_ref().map_or(0, |t| t.len())
    }
    /// Stops the node as the daemon does (collect, final checkpoint) and joins its thread.
    fn stop(mut self) -> Duration {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Duration::from_nanos(self.final_ckpt_ns.load(Ordering::Relaxed))
    }
}

/// Starts a node on its own thread (a current-thread runtime, like the daemon's control plane).
fn start_node(name: &str, cfg: &tandem_config::Config, cpu: Option<usize>) -> NodeHandle {
    let topo = Arc::new(Topology::new(cfg));
    let cluster = cfg.cluster.clone().expect("bench config has [cluster]");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tx, rx) = mpsc::channel();
    let final_ckpt_ns = Arc::new(AtomicU64::new(0));
    let (t2, f2, label) = (
        Arc::clone(&topo),
        Arc::clone(&final_ckpt_ns),
        name.to_string(),
    );
    let thread =
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let tid = thread_tid();
                pin(tid, cpu, &label);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let mut stop = stop_rx.clone();
                    let node =
                        match Node::start(&cluster, Arc::new(arc_swap::ArcSwap::new(t2)), stop_rx)
                            .await
                        {
                            Ok(n) => n,
                            Err(e) => {
                                let _ = tx.send(Err(e.to_string()));
                                return;
                            }
                        };
                    let _ = tx.send(Ok((Arc::clone(&node), tid)));
                    let _ = stop.wait_for(|s| *s).await;
                    // As the daemon stops: the last changes, then the final checkpoint.
                    let t = Instant::now();
                    node.collect_once();
                    if let Err(e) = node.write_checkpoint() {
                        eprintln!("replication: {label}: final checkpoint failed: {e}");
                    }
                    f2.store(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                });
            })
            .expect("spawn node thread");
    match rx.recv() {
        Ok(Ok((node, tid))) => NodeHandle {
            node,
            topo,
            tid,
            stop: stop_tx,
            thread: Some(thread),
            final_ckpt_ns,
        },
        Ok(Err(e)) => fail(&format!("{name} did not start: {e}")),
        Err(_) => fail(&format!("{name} thread died while starting")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("replication: error: {msg}");
    std::process::exit(1)
}

/// Polls `f` every `every` until it holds or `timeout` passes; whether it held.
fn wait_until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

fn key(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(KEY_BASE.wrapping_add(i as u32)))
}

// ------------------------------------------------------------------------------ inserter

struct Inserted {
    first: Instant,
    last: Instant,
    cpu_ns: Option<u64>,
}

/// Binds keys `0..n` on `p` as new clients at `rate` per second (0: as fast as possible),
/// sending about every `sample_every`-th key (random gaps) and the last one, with its insert
/// time, to `samples`.
fn spawn_inserter(
    p: Arc<ServicePersistence>,
    n: u64,
    rate: u64,
    first_sample: u64,
    sample_every: u64,
    samples: Option<mpsc::Sender<(u64, Instant)>>,
    cpu: Option<usize>,
) -> JoinHandle<Inserted> {
    std::thread::Builder::new()
        .name("insert".into())
        .spawn(move || {
            let tid = thread_tid();
            pin(tid, cpu, "insert");
            let cpu0 = thread_cpu_ns(tid);
            let start = Instant::now();
            let mut i = 0u64;
            let mut next_sample = first_sample.min(n.saturating_sub(1));
            // Gaps between samples are random (mean `sample_every`): a fixed gap would sample
            // at a fixed phase of the collector's 20 ms tick and see only one or two lags.
            let mut rng = 0x9E37_79B9_7F4A_7C15u64;
            let mut gap = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                1 + rng
                    % sample_every
                        .max(1)
                        .saturating_mul(2)
                        .saturating_sub(1)
                        .max(1)
            };
            while i < n {
                let due = if rate == 0 {
                    n
                } else {
                    let d = (start.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
                    d.min(n)
                };
                if i >= due {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                while i < due {
                    let now = Instant::now();
                    // A client never seen: balanced to backend i % 2, bound, change queued.
                    p.chosen(Pinned::None, (i % 2) as usize, key(i), now);
                    if let Some(s) = &samples {
                        if i == next_sample || i + 1 == n {
                            let _ = s.send((i, now));
                            next_sample = next_sample.saturating_add(gap());
                        }
                    }
                    i += 1;
                }
            }
            let last = Instant::now();
            let cpu1 = thread_cpu_ns(tid);
            Inserted {
                first: start,
                last,
                cpu_ns: cpu0.zip(cpu1).map(|(a, b)| b - a),
            }
        })
        .expect("spawn inserter")
}

// ------------------------------------------------------------------------------ stats

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((q / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[k])
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

#[derive(Default)]
struct Row {
    status: String,
    insert_s: Option<f64>,
    inserted_rps: Option<f64>,
    applied_rps: Option<f64>,
    drain_ms: Option<f64>,
    lag: Vec<f64>,
    hb_lag: Vec<f64>,
    max_lag_entries: u64,
    max_queued: u64,
    catchup_ms: Option<f64>,
    catchup_rps: Option<f64>,
    cpu_a: Option<u64>,
    cpu_b: Option<u64>,
    cpu_insert: Option<u64>,
    cpu_poll: Option<u64>,
    records: u64,
    ckpt_ms: Option<f64>,
    ckpt_mib: Option<f64>,
    b_snapshots: u64,
    b_resumes: u64,
    echo: u64,
}

fn ms(ns: Option<u64>) -> Option<f64> {
    ns.map(|x| x as f64 / 1e6)
}

fn print_row(o: &Opts, r: &mut Row) {
    r.lag.sort_by(f64::total_cmp);
    r.hb_lag.sort_by(f64::total_cmp);
    let per_rec = |ns: Option<u64>| {
        ns.filter(|_| r.records > 0)
            .map(|x| x as f64 / 1e3 / r.records as f64)
    };
    let (rate, n) = match o.kind.as_str() {
        "rate" | "rate-ckpt" => (
            o.n_or_rate.to_string(),
            (o.n_or_rate as f64 * o.duration) as u64,
        ),
        _ => ("-".into(), o.n_or_rate),
    };
    let cols = [
        o.round.clone(),
        o.kind.clone(),
        rate,
        n.to_string(),
        r.status.clone(),
        f(r.insert_s, 3),
        f(r.inserted_rps, 0),
        f(r.applied_rps, 0),
        f(r.drain_ms, 1),
        f(percentile(&r.lag, 50.0), 2),
        f(percentile(&r.lag, 90.0), 2),
        f(percentile(&r.lag, 99.0), 2),
        f(r.lag.last().copied(), 2),
        r.lag.len().to_string(),
        f(percentile(&r.hb_lag, 50.0), 0),
        f(r.hb_lag.last().copied(), 0),
        r.max_lag_entries.to_string(),
        r.max_queued.to_string(),
        f(r.catchup_ms, 1),
        f(r.catchup_rps, 0),
        f(ms(r.cpu_a), 1),
        f(ms(r.cpu_b), 1),
        f(ms(r.cpu_insert), 1),
        f(ms(r.cpu_poll), 1),
        f(per_rec(r.cpu_a), 3),
        f(per_rec(r.cpu_b), 3),
        f(r.ckpt_ms, 1),
        f(r.ckpt_mib, 1),
        f(rss_mib(), 1),
        r.b_snapshots.to_string(),
        r.b_resumes.to_string(),
        r.echo.to_string(),
        "-".into(),
        "-".into(),
    ];
    println!("{}", cols.join("\t"));
}

fn diff(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.zip(b).map(|(a, b)| b.saturating_sub(a))
}

// ------------------------------------------------------------------------------ scenarios

/// `rate:R` / `rate-ckpt:R`.
fn run_rate(o: &Opts, checkpoints: bool) -> Row {
    let rate = o.n_or_rate;
    let n = ((rate as f64) * o.duration) as u64;
    let max_entries = (2 * n).max(100_000);
    let (sa, sb) = (o.tmp.join("a"), o.tmp.join("b"));
    let (da, db) = if checkpoints {
        (Some(sa.as_path()), Some(sb.as_path()))
    } else {
        (None, None)
    };
    let a = start_node(
        "node-a",
        &config(o.port_a, o.port_b, da, max_entries),
        o.cpu_a,
    );
    let b = start_node(
        "node-b",
        &config(o.port_b, o.port_a, db, max_entries),
        o.cpu_b,
    );
    // Both streams up (the first contact is an empty snapshot ending at position 1).
    if !wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
        b.peer().position.load(Ordering::Relaxed) >= 1
            && a.peer().position.load(Ordering::Relaxed) >= 1
    }) {
        fail("the nodes did not connect within 10 s");
    }
    if o.presize {
        // Diagnostic: grow both tables' hash maps and queues to the run's size beforehand
        // (bind and remove n other keys), so no shard resizes during the run.
        for h in [&a, &b] {
            let t = h.persistence().sticky.as_ref().expect("source_ip table");
            let now = Instant::now();
            let be = "127.0.0.1:18001".parse().expect("address");
            for i in 0..n {
                let k = IpAddr::V4(Ipv4Addr::from(0xAC10_0000u32.wrapping_add(i as u32)));
                t.bind(k, be, now);
            }
            for i in 0..n {
                t.remove(IpAddr::V4(Ipv4Addr::from(
                    0xAC10_0000u32.wrapping_add(i as u32),
                )));
            }
        }
        eprintln!("replication: tables presized for {n} entries");
    }
    std::thread::sleep(Duration::from_millis(200));

    let sample_every = (rate / o.samples_per_s).max(1);
    let (tx, rx) = mpsc::channel::<(u64, Instant)>();
    // The poller: insert → present in B's table, for the sampled keys.
    let b_table = Arc::clone(b.persistence());
    let poll_every = Duration::from_micros(o.poll_us);
    let cpu_poll = o.cpu_a;
    let deadline_after = o.timeout;
    let poller = std::thread::Builder::new()
        .name("poll".into())
        .spawn(move || {
            let tid = thread_tid();
            pin(tid, cpu_poll, "poll");
            let cpu0 = thread_cpu_ns(tid);
            let table = b_table.sticky.as_ref().expect("source_ip table");
            let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
            let mut lags = Vec::new();
            let mut last_seen = None;
            let mut closed = false;
            let mut deadline = None;
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(s) => pending.push_back(s),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let now = Instant::now();
                while let Some(&(i, t)) = pending.front() {
                    // Entries arrive in insert order: if the oldest is not there, none is.
                    if table.lookup(key(i), now).0.is_none() {
                        break;
                    }
                    lags.push(now.duration_since(t).as_secs_f64() * 1e3);
                    last_seen = Some(now);
                    pending.pop_front();
                }
                if closed && pending.is_empty() {
                    break;
                }
                if closed && deadline.is_none() {
                    deadline = Some(now + deadline_after);
                }
                if deadline.is_some_and(|d| now > d) {
                    break;
                }
                std::thread::sleep(poll_every);
            }
            let cpu = diff(cpu0, thread_cpu_ns(tid));
            (lags, last_seen, pending.len(), cpu)
        })
        .expect("spawn poller");

    let cpu_a0 = a.cpu_ns();
    let cpu_b0 = b.cpu_ns();
    let applied0 = b.peer().applied.load(Ordering::Relaxed);
    eprintln!(
        "replication: {} {rate}/s × {} s = {n} entries (sampling every {sample_every}th key){}",
        o.kind,
        o.duration,
        if checkpoints { ", checkpoints on" } else { "" }
    );
    // Keys of the first --warmup seconds are not sampled (start-up transients).
    let first_sample = (rate as f64 * o.warmup) as u64;
    let inserter = spawn_inserter(
        Arc::clone(a.persistence()),
        n,
        rate,
        first_sample,
        sample_every,
        Some(tx),
        o.cpu_a,
    );

    // Monitor the library's own view of the stream while it runs: lag_entries (the source's
    // head as of its last heartbeat − B's position), the receive→apply queue, and lag_ms (the
    // source's wall clock in its last heartbeat → when B applied that heartbeat).
    let mut row = Row::default();
    let peer_b = Arc::clone(b.peer());
    while !poller.is_finished() {
        row.max_lag_entries = row.max_lag_entries.max(peer_b.lag_entries());
        row.max_queued = row.max_queued.max(peer_b.queued.load(Ordering::Relaxed));
        row.hb_lag
            .push(peer_b.lag_ms.load(Ordering::Relaxed) as f64);
        std::thread::sleep(Duration::from_millis(50));
    }
    let ins = inserter.join().expect("inserter");
    let (lags, last_seen, missing, cpu_poll) = poller.join().expect("poller");
    let cpu_a1 = a.cpu_ns();
    let cpu_b1 = b.cpu_ns();

    row.lag = lags;
    row.records = b.peer().applied.load(Ordering::Relaxed) - applied0;
    row.insert_s = Some(ins.last.duration_since(ins.first).as_secs_f64());
    row.inserted_rps = Some(n as f64 / ins.last.duration_since(ins.first).as_secs_f64());
    row.cpu_a = diff(cpu_a0, cpu_a1);
    row.cpu_b = diff(cpu_b0, cpu_b1);
    row.cpu_insert = ins.cpu_ns;
    row.cpu_poll = cpu_poll;
    row.status = if missing == 0 {
        "ok".into()
    } else {
        format!("missing-{missing}")
    };
    if let Some(t) = last_seen.filter(|_| missing == 0) {
        row.applied_rps = Some(n as f64 / t.duration_since(ins.first).as_secs_f64());
        row.drain_ms = Some(t.saturating_duration_since(ins.last).as_secs_f64() * 1e3);
    }
    row.b_snapshots = b.peer().snapshots.load(Ordering::Relaxed);
    row.b_resumes = b.peer().resumes.load(Ordering::Relaxed);
    row.echo = a.peer().applied.load(Ordering::Relaxed);
    let len_b = b.table_len() as u64;
    if row.status == "ok" && len_b != n {
        row.status = format!("b-holds-{len_b}");
    }
    if let Ok(path) = std::env::var("REPLICATION_LAG_DUMP") {
        let text: Vec<String> = row.lag.iter().map(|x| format!("{x:.3}")).collect();
        let _ = std::fs::write(path, text.join("\n") + "\n");
    }
    let mut sorted = row.lag.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "replication: B applied {} records; lag p50 {} ms, p99 {} ms; CPU A {} ms, B {} ms",
        row.records,
        f(percentile(&sorted, 50.0), 2),
        f(percentile(&sorted, 99.0), 2),
        f(ms(row.cpu_a), 0),
        f(ms(row.cpu_b), 0),
    );
    let ck_b = b.stop();
    a.stop();
    if checkpoints {
        row.ckpt_ms = Some(ck_b.as_secs_f64() * 1e3);
        row.ckpt_mib = file_mib(&sb.join("cluster.checkpoint"));
    }
    row
}

fn file_mib(p: &Path) -> Option<f64> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
}

/// Fills A with `n` entries as fast as possible and waits until they are all in A's log.
fn fill(o: &Opts, a: &NodeHandle, n: u64, row: &mut Row) {
    let ins = spawn_inserter(
        Arc::clone(a.persistence()),
        n,
        0,
        0,
        u64::MAX,
        None,
        o.cpu_a,
    )
    .join()
    .expect("inserter");
    let secs = ins.last.duration_since(ins.first).as_secs_f64();
    row.insert_s = Some(secs);
    row.inserted_rps = Some(n as f64 / secs);
    row.cpu_insert = ins.cpu_ns;
    if !wait_until(Duration::from_secs(30), Duration::from_millis(5), || {
        a.node.log.head() == n + 1
    }) {
        fail(&format!(
            "A's log did not reach {n} records (head {})",
            a.node.log.head()
        ));
    }
    eprintln!(
        "replication: A holds {n} entries (bound in {secs:.2} s, {:.0}/s)",
        n as f64 / secs
    );
}

/// Waits until B has applied everything up to A's head; fills in the catch-up columns.
fn catch_up(
    o: &Opts,
    a: &NodeHandle,
    b: &NodeHandle,
    n: u64,
    t0: Instant,
    cpu_a0: Option<u64>,
    row: &mut Row,
) {
    let head = a.node.log.head();
    let mut max_q = 0;
    let ok = wait_until(o.timeout, Duration::from_millis(1), || {
        max_q = max_q.max(b.peer().queued.load(Ordering::Relaxed));
        b.peer().position.load(Ordering::Relaxed) >= head
    });
    let dt = t0.elapsed();
    row.max_queued = max_q;
    row.cpu_a = diff(cpu_a0, a.cpu_ns());
    row.cpu_b = b.cpu_ns(); // B's thread started at t0
    row.records = b.peer().applied.load(Ordering::Relaxed);
    row.b_snapshots = b.peer().snapshots.load(Ordering::Relaxed);
    row.b_resumes = b.peer().resumes.load(Ordering::Relaxed);
    if ok {
        row.catchup_ms = Some(dt.as_secs_f64() * 1e3);
        row.catchup_rps = Some(n as f64 / dt.as_secs_f64());
        let len = b.table_len() as u64;
        row.status = if len == n {
            "ok".into()
        } else {
            format!("b-holds-{len}")
        };
    } else {
        row.status = "timeout".into();
    }
    // What A got back from B: B serves A a snapshot of B's whole table when A connects.
    std::thread::sleep(Duration::from_millis(100));
    row.echo = a.peer().applied.load(Ordering::Relaxed);
}

/// `snapshot:N`.
fn run_snapshot(o: &Opts) -> Row {
    let n = o.n_or_rate;
    let max_entries = (2 * n).max(100_000);
    let mut row = Row::default();
    let a = start_node(
        "node-a",
        &config(o.port_a, o.port_b, None, max_entries),
        o.cpu_a,
    );
    fill(o, &a, n, &mut row);
    let cpu_a0 = a.cpu_ns();
    let t0 = Instant::now();
    let b = start_node(
        "node-b",
        &config(o.port_b, o.port_a, None, max_entries),
        o.cpu_b,
    );
    catch_up(o, &a, &b, n, t0, cpu_a0, &mut row);
    eprintln!(
        "replication: snapshot of {n}: B caught up in {} ms (status {})",
        f(row.catchup_ms, 0),
        row.status
    );
    b.stop();
    a.stop();
    row
}

/// `resume:N`.
fn run_resume(o: &Opts) -> Row {
    let n = o.n_or_rate;
    let max_entries = (2 * n).max(100_000);
    let mut row = Row::default();
    let sb = o.tmp.join("b");
    let cfg_b = config(o.port_b, o.port_a, Some(&sb), max_entries);
    let a = start_node(
        "node-a",
        &config(o.port_a, o.port_b, None, max_entries),
        o.cpu_a,
    );
    let b = start_node("node-b", &cfg_b, o.cpu_b);
    if !wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
        b.peer().position.load(Ordering::Relaxed) >= 1
    }) {
        fail("B did not connect to A within 10 s");
    }
    // B stops (final checkpoint: its position in A's log), A carries on.
    b.stop();
    fill(o, &a, n, &mut row);
    let cpu_a0 = a.cpu_ns();
    let t0 = Instant::now();
    let b = start_node("node-b", &cfg_b, o.cpu_b);
    catch_up(o, &a, &b, n, t0, cpu_a0, &mut row);
    if row.status == "ok" && row.b_resumes == 0 {
        row.status = "no-resume".into();
    }
    eprintln!(
        "replication: resume of {n}: B caught up in {} ms (status {}, snapshots {}, resumes {})",
        f(row.catchup_ms, 0),
        row.status,
        row.b_snapshots,
        row.b_resumes
    );
    let ck = b.stop();
    row.ckpt_ms = Some(ck.as_secs_f64() * 1e3);
    row.ckpt_mib = file_mib(&sb.join("cluster.checkpoint"));
    a.stop();
    row
}

fn main() {
    let o = parse_opts();
    if o.header {
        println!("{}", COLUMNS.join("\t"));
    }
    // State directories live in a directory of this run's own, removed at the end.
    let mut o = o;
    o.tmp = o.tmp.join(format!("replication-{}", std::process::id()));
    std::fs::create_dir_all(&o.tmp).unwrap_or_else(|e| fail(&format!("{}: {e}", o.tmp.display())));
    let mut row = match o.kind.as_str() {
        "rate" => run_rate(&o, false),
        "rate-ckpt" => run_rate(&o, true),
        "snapshot" => run_snapshot(&o),
        "resume" => run_resume(&o),
        _ => usage(),
    };
    print_row(&o, &mut row);
    let _ = std::fs::remove_dir_all(&o.tmp);
}
