//! The validated configuration model.
//!
//! Everything here has already been checked: addresses parse, names are unique, every service's
//! pool exists, durations are positive. The rest of tandem consumes these types and never sees
//! raw TOML, so no other crate has to re-validate anything.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A whole configuration file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: Runtime,
    pub admin: Admin,
    pub pools: Vec<Pool>,
    pub services: Vec<Service>,
}

/// `[runtime]`
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// `workers`: data-plane worker threads. `None` (the default) = one per core; `1` runs a
    /// single-threaded runtime. Validated to be 1..=1024.
    pub workers: Option<usize>,
    /// `drain_timeout`: how long SIGTERM waits for in-flight requests/connections. Default 10s.
    pub drain_timeout: Duration,
}

impl Default for Runtime {
    /// What an absent `[runtime]` table means.
    fn default() -> Self {
        Runtime {
            workers: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// `listen`: default `127.0.0.1:9900` (loopback only: the API can drain backends, so it is
    /// not exposed unless the operator asks for it).
    pub listen: SocketAddr,
}

impl Default for Admin {
    /// What an absent `[admin]` table means.
    fn default() -> Self {
        Admin {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900),
        }
    }
}

/// `[[pool]]`
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// `name`: required, unique among pools; 1-64 of `A-Z a-z 0-9 - _ .`.
    pub name: String,
    /// `scheduler`: default `wrr`; see [`SchedulerKind`].
    pub scheduler: SchedulerKind,
    /// `sorry_server`: used only when no primary and no backup backend is up.
    pub sorry_server: Option<SocketAddr>,
    /// `health`: default `{ kind = "tcp" }` with the default timings.
    pub health: HealthCheck,
    pub backends: Vec<Backend>,
    /// `queue_timeout`: how long a request waits for a slot when every backend is at
    /// `max_connections`. Default 1s.
    pub queue_timeout: Duration,
}

impl Pool {
    /// `queue_timeout` when the key is absent.
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
    /// `scheduler` when the key is absent: smooth weighted round robin, because it honours
    /// weights and needs no load feedback, so it behaves well from the first request.
    pub const DEFAULT_SCHEDULER: SchedulerKind = SchedulerKind::Wrr;
}

/// Scheduler names as IPVS / HAProxy users know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `rr`: round robin, weights ignored.
    Rr,
    /// `wrr`: smooth weighted round robin (nginx's algorithm).
    Wrr,
    /// `lc`: least connections.
    Lc,
    /// `wlc`: weighted least connections, minimum of (active+1)/weight.
    Wlc,
    /// `sh`: source-IP hash.
    Sh,
    /// `maglev`: Maglev consistent hashing on the source IP.
    Maglev,
    /// `p2c`: power of two random choices by active load.
    P2c,
    /// `ewma`: least response time, peak-EWMA latency × (in-flight+1).
    Ewma,
}

impl SchedulerKind {
    pub const ALL: [(&'static str, SchedulerKind); 8] = [
        ("rr", SchedulerKind::Rr),
        ("wrr", SchedulerKind::Wrr),
        ("lc", SchedulerKind::Lc),
        ("wlc", SchedulerKind::Wlc),
        ("sh", SchedulerKind::Sh),
        ("maglev", SchedulerKind::Maglev),
        ("p2c", SchedulerKind::P2c),
        ("ewma", SchedulerKind::Ewma),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }
}

/// `[[pool]] backends = [ { ... } ]`
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// `address`: required, `ip:port`, port 1-65535; unique within its pool.
    pub address: SocketAddr,
    /// `weight`: default 1, range 0..=65535. 0 means "configured but receives no new traffic".
    pub weight: u32,
    /// `backup`: default false. Used only when no primary backend is up.
    pub backup: bool,
    /// `max_connections`: default unlimited (`None`); when set, at least 1.
    pub max_connections: Option<u32>,
}

/// `health = { kind = ..., interval, timeout, rise, fall, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    /// `interval`: default 2s.
    pub interval: Duration,
    /// `timeout`: default 1s, or `interval` when that is shorter. Must not exceed `interval`,
    /// so probes of one backend never overlap.
    pub timeout: Duration,
    /// `rise`: consecutive successes to mark a backend up. Default 2, at least 1.
    pub rise: u32,
    /// `fall`: consecutive failures to mark a backend down. Default 3, at least 1.
    pub fall: u32,
}

impl Default for HealthCheck {
    /// What an absent `health` key means: a TCP connect every 2s.
    fn default() -> Self {
        HealthCheck {
            kind: HealthKind::Tcp { port: None },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// `health.kind` and the keys that only make sense for that kind.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthKind {
    /// `none`: the backend is trusted to be up.
    None,
    /// `tcp`: a TCP connect succeeds. `port` probes another port than traffic.
    Tcp { port: Option<u16> },
    /// `http`: a request answered with an expected status.
    Http {
        /// `method`: default GET.
        method: String,
        /// `path`: default `/`.
        path: String,
        /// `host`: Host header; default the backend address.
        host: Option<String>,
        /// `expect_status`: default "200-399".
        expect_status: StatusSet,
        /// `port`: probe this port instead of the backend's traffic port.
        port: Option<u16>,
    },
}

/// A set of HTTP status codes written as "200-299,301".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    /// Inclusive ranges.
    pub ranges: Vec<(u16, u16)>,
}

impl StatusSet {
    /// The valid range of a single code, inclusive.
    pub const CODES: (u16, u16) = (100, 599);

    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= status && status <= hi)
    }

    /// Parse `"200-299,301"`: comma-separated codes or inclusive `LO-HI` ranges, each code
    /// 100..=599, spaces around items allowed. The error text is meant for the user.
    pub fn parse(s: &str) -> Result<StatusSet, String> {
        const FORM: &str = "write status codes or ranges separated by commas, e.g. \"200-299,301\"";
        let code = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("\"{t}\" is not a status code; {FORM}"));
            }
            match t.parse::<u16>() {
                Ok(c) if (Self::CODES.0..=Self::CODES.1).contains(&c) => Ok(c),
                _ => Err(format!(
                    "status code {t} is out of range; codes are 100 to 599"
                )),
            }
        };
        if s.trim().is_empty() {
            return Err(format!("empty status list; {FORM}"));
        }
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (code(lo)?, code(hi)?),
                None => {
                    let c = code(item)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("range {lo}-{hi} is backwards; write {hi}-{lo}"));
            }
            ranges.push((lo, hi));
        }
        Ok(StatusSet { ranges })
    }
}

impl Default for StatusSet {
    /// `200-399`: success and redirects, which is what a healthy web server answers.
    fn default() -> Self {
        StatusSet {
            ranges: vec![(200, 399)],
        }
    }
}

impl fmt::Display for StatusSet {
    /// The same syntax [`StatusSet::parse`] accepts, so it round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// `[[service]] mode`: what the listener speaks. Default `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `http`: HTTP/1.1 and h2c reverse proxy; one backend choice per request.
    Http,
    /// `tcp`: byte stream proxy; one backend choice per connection.
    Tcp,
}

impl Mode {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        }
    }
}

/// `[[service]]`
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `name`: required, unique among services; 1-64 of `A-Z a-z 0-9 - _ .`.
    pub name: String,
    /// `listen`: required, `ip:port`. Port 0 (any free port) is accepted for tests. No two
    /// services (nor the admin API) may listen on the same address.
    pub listen: SocketAddr,
    /// `mode`: default `http`.
    pub mode: Mode,
    /// Name of a `[[pool]]`; validated to exist.
    pub pool: String,
    pub timeouts: Timeouts,
    /// `max_header_size` (http): bytes of request head accepted before 431. Default 16384,
    /// range 1024..=1048576.
    pub max_header_size: usize,
}

impl Service {
    /// `max_header_size` when the key is absent.
    pub const DEFAULT_MAX_HEADER_SIZE: usize = 16384;
    /// Accepted `max_header_size` values, inclusive: below 1 KiB ordinary browsers fail, above
    /// 1 MiB a client could pin a lot of memory per connection.
    pub const MAX_HEADER_SIZE_RANGE: (usize, usize) = (1024, 1_048_576);
}

/// Per-service timeouts (flat keys on `[[service]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// `connect_timeout`: TCP connect to a backend. Default 3s.
    pub connect: Duration,
    /// `header_timeout` (http): a client must send a whole request head within this. Default 10s.
    pub header: Duration,
    /// `response_timeout` (http): backend must start its response within this. Default 60s.
    pub response: Duration,
    /// `idle_timeout`: a connection with no traffic either way is closed. Default 60s
    /// (http: keep-alive idle; tcp: no bytes either way).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            header: Duration::from_secs(10),
            response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}
