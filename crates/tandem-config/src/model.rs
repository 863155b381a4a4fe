//! The validated configuration model.
//!
//! Everything here has already been checked: addresses parse, names are unique, every service's
//! pool exists, durations are positive. The rest of tandem consumes these types and never sees
//! raw TOML, so no other crate has to re-validate anything.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

mod health;
mod persistence;
mod resilience;
mod route;
mod tls;
mod vrrp;
pub use health::*;
pub use persistence::*;
pub use resilience::*;
pub use route::*;
pub use tls::*;
pub use vrrp::*;

/// A whole configuration file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub runtime: Runtime,
    pub admin: Admin,
    pub pools: Vec<Pool>,
    pub services: Vec<Service>,
    /// `[[vrrp]]` instances, in file order.
    pub vrrp: Vec<Vrrp>,
    /// `[[vrrp_script]]` check commands, in file order.
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `[cluster]`: absent means this node shares nothing with others.
    pub cluster: Option<Cluster>,
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
    /// `token_file`: the bearer token (the file's content without its trailing newline) that
    /// state-changing API calls must send, and every call but `/healthz` and the dashboard's
    /// static files when `listen` is not a loopback address. Required in that case. Read
    /// once, when the configuration is loaded.
    pub token: Option<Secret>,
}

impl Default for Admin {
    /// What an absent `[admin]` table means.
    fn default() -> Self {
        Admin {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900),
            token: None,
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
    pub retries: Retries,
    pub outlier: Outlier,
    /// `slow_start`: a backend that comes back up ramps its weight from a trickle to its full
    /// weight over this long. Default off (`None`).
    pub slow_start: Option<Duration>,
    /// `host` (http): the `Host` header requests to this pool carry, instead of the client's.
    pub host: Option<String>,
    /// `keepalive` (http): default true; false closes each backend connection after one
    /// request, for application servers that need it (client keep-alive is unaffected).
    pub keepalive: bool,
    /// `tls` (http): connect to the backends over TLS. Default none (cleartext).
    pub tls: Option<BackendTls>,
    /// `protocol` (http): `"http1"` (default) or `"h2"` to the backends.
    pub protocol: BackendProtocol,
    /// `proxy_protocol`: every new connection to a backend of this pool starts with a PROXY
    /// protocol header of this version carrying the client's addresses. Default none.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `expected_load`: the peak the pool must carry, e.g. `"800 req/s"`; `tandem check` says
    /// whether it still does with its largest backend gone. Default none.
    pub expected_load: Option<crate::capacity::Rate>,
}

/// `[[pool]] tls = true` or `tls = { ca_file = "...", sni = "...", verify = true }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendTls {
    /// `ca_file`: PEM roots to verify backends against; default the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// `sni`: the name sent and verified; default the backend's IP address.
    pub sni: Option<String>,
    /// `verify`: default true. false accepts any certificate (lab backends with self-signed
    /// certificates); the traffic is then encrypted but not authenticated.
    pub verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendProtocol {
    Http1,
    H2,
}

impl Pool {
    /// `queue_timeout` when the key is absent.
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
    /// `scheduler` when the key is absent: smooth weighted round robin, because it honours
    /// weights and needs no load feedback, so it behaves well from the first request.
    pub const DEFAULT_SCHEDULER: SchedulerKind = SchedulerKind::Wrr;
}

/// `[[pool]] proxy_protocol`: which version of HAProxy's PROXY protocol header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    /// `"v1"`: the text line, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`.
    V1,
    /// `"v2"`: the binary header.
    V2,
}

impl ProxyProtocol {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
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
    /// `health`: this backend's own check, replacing the pool's (`None`: the pool's applies).
    pub health: Option<HealthCheck>,
    /// `capacity`: what this backend can serve, e.g. `"500 req/s"`, for the N+1 analysis of
    /// `tandem check` and the live `survives_losing_one`. Default none.
    pub capacity: Option<crate::capacity::Rate>,
}

/// `[[service]] mode`: what the listener speaks. Default `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `http`: HTTP/1.1 and h2c reverse proxy; one backend choice per request.
    Http,
    /// `tcp`: byte stream proxy; one backend choice per connection.
    Tcp,
    /// `udp`: datagram proxy; one backend choice per flow (client address and port).
    Udp,
}

impl Mode {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
            Mode::Udp => "udp",
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
    /// `persistence`: default none (every request or connection is balanced on its own).
    pub persistence: Option<Persistence>,
    /// `routes` (http): tried in order before the default `pool`.
    pub routes: Vec<Route>,
    /// `request_headers` / `response_headers` (http): applied to every request / response,
    /// before a route's own.
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// `max_request_body` (http): a larger body is refused with 413. Default none.
    pub max_request_body: Option<u64>,
    /// `max_connections`: client connections held open at once; beyond, new ones wait in the
    /// kernel's accept queue. Default none.
    pub max_connections: Option<u32>,
    /// `buffer_requests` (http): read a request body (with Content-Length, up to
    /// `max_request_body` or [`Service::DEFAULT_REQUEST_BUFFER`]) before taking a backend, so a
    /// slow upload does not hold a backend connection. Default false.
    pub buffer_requests: bool,
    /// `buffer_responses` (http): read a response body (with Content-Length) up to this size
    /// from the backend before sending it, releasing the backend before a slow client has read
    /// it. Default none.
    pub buffer_responses: Option<u64>,
    /// `tls` (http): terminate TLS on this listener.
    pub tls: Option<Tls>,
    /// `accept_proxy_protocol`: networks of trusted proxies. A connection from one of them must
    /// start with a PROXY protocol header (v1 or v2), whose addresses then stand for the
    /// client's everywhere; connections from elsewhere are served as direct clients. Default
    /// none (no header is ever read).
    pub accept_proxy_protocol: Vec<Cidr>,
    /// `responses` / `max_flows` (udp).
    pub udp: UdpFlows,
    /// `access_log`: one line per request (http) or connection (tcp). Default none.
    pub access_log: Option<AccessLog>,
}

/// `access_log = { path = "stdout" | "/var/log/tandem/access.log", format = "common" | "json" }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// `path`: a file (appended to, reopened on reload for log rotation) or `"stdout"`.
    pub target: AccessLogTarget,
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccessLogTarget {
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// The NCSA common log format with tandem's fields appended (`backend=`, `duration=`,
    /// `backend_time=`), so the usual log tools read it.
    Common,
    /// One JSON object per line.
    Json,
}

impl Service {
    /// How much of a request body `buffer_requests` reads when `max_request_body` is unset.
    pub const DEFAULT_REQUEST_BUFFER: u64 = 1 << 20;
    /// `max_header_size` when the key is absent.
    pub const DEFAULT_MAX_HEADER_SIZE: usize = 16384;
    /// Accepted `max_header_size` values, inclusive: below 1 KiB ordinary browsers fail, above
    /// 1 MiB a client could pin a lot of memory per connection.
    pub const MAX_HEADER_SIZE_RANGE: (usize, usize) = (1024, 1_048_576);
}

/// The udp-only keys of a `[[service]]` (flat keys, like the timeouts).
#[derive(Debug, Clone, PartialEq)]
pub struct UdpFlows {
    /// `responses`: a flow is closed after this many datagrams from its backend (DNS: 1), which
    /// frees its socket at once instead of at the idle timeout. Default none: flows end idle.
    pub responses: Option<u32>,
    /// `max_flows`: open flows per worker thread; a datagram that would open one more is
    /// dropped (and counted). Default 65536.
    pub max_flows: u32,
}

impl UdpFlows {
    /// `max_flows` when the key is absent.
    pub const DEFAULT_MAX_FLOWS: u32 = 65536;
    /// Largest `max_flows`: every flow holds a socket, and a million per worker is already
    /// more file descriptors than most systems allow.
    pub const MAX_MAX_FLOWS: u32 = 1 << 20;
    /// `idle_timeout` of a udp service when the key is absent: shorter than tcp's 60 s, since
    /// a flow has no close of its own and most UDP exchanges are over in milliseconds.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);
}

impl Default for UdpFlows {
    fn default() -> Self {
        UdpFlows {
            responses: None,
            max_flows: Self::DEFAULT_MAX_FLOWS,
        }
    }
}

/// Per-service timeouts (flat keys on `[[service]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// `connect_timeout`: the longest a TCP connect to a backend may take. Default 3s. The
    /// timeout actually used adapts to observed connect times, between `connect_timeout_min`
    /// and this.
    pub connect: Duration,
    /// `connect_timeout_min`: the shortest connect timeout the adaptive estimate may choose.
    /// Default 100ms; at most `connect_timeout`.
    pub connect_min: Duration,
    /// `header_timeout` (http): a client must send a whole request head within this. Default 10s.
    /// With `accept_proxy_protocol` (http and tcp) it also bounds the wait for the PROXY header.
    pub header: Duration,
    /// `response_timeout` (http): backend must start its response within this. Default 60s.
    pub response: Duration,
    /// `idle_timeout`: a connection with no traffic either way is closed. Default 60s
    /// (http: keep-alive idle; tcp: no bytes either way; udp: a flow with no datagram either
    /// way, default 30s, see [`UdpFlows::DEFAULT_IDLE`]).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            connect_min: Duration::from_millis(100),
            header: Duration::from_secs(10),
            response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}
