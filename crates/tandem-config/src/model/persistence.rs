//! `persistence` on a `[[service]]` and the `[cluster]` that replicates its state.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[[service]] persistence = { kind = ..., ... }`: keep a client on the backend it was sent
/// to before.
#[derive(Debug, Clone, PartialEq)]
pub struct Persistence {
    pub kind: PersistenceKind,
    /// `on_backend_down`: `"rebalance"` (default: the client goes to a healthy backend and is
    /// pinned there) or `"fail"` (503, for applications that must not switch).
    pub on_backend_down: OnBackendDown,
    /// `key` / `key_file` (cookie and url_param): the HMAC key of the tokens. `None`: derived
    /// from `[cluster] secret` if there is a cluster, else generated at start (tokens then do
    /// not survive a restart or a failover).
    pub key: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PersistenceKind {
    /// By client address, masked, with an idle timeout (IPVS persistence).
    SourceIp {
        /// `mask`: IPv4 prefix bits kept, default 32.
        mask_v4: u8,
        /// `mask6`: IPv6 prefix bits kept, default 128.
        mask_v6: u8,
        /// `timeout`: idle time before an entry expires, default 6 minutes.
        timeout: Duration,
        /// `max_entries`: table bound, least recently used entries go first. Default 100000.
        max_entries: usize,
    },
    /// A cookie inserted by tandem (or a prefix on the application's own), naming the backend,
    /// signed.
    Cookie(CookieSettings),
    /// A URL query parameter naming the backend, signed (for clients without cookies).
    UrlParam {
        /// `name`: the parameter.
        name: String,
    },
    /// The hash of a request header onto the pool by consistent hashing (Maglev).
    Header {
        /// `name`: the header, lower-cased.
        name: String,
    },
}

impl PersistenceKind {
    pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(360);
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

    /// The name written in `kind`.
    pub fn name(&self) -> &'static str {
        match self {
            PersistenceKind::SourceIp { .. } => "source_ip",
            PersistenceKind::Cookie(_) => "cookie",
            PersistenceKind::UrlParam { .. } => "url_param",
            PersistenceKind::Header { .. } => "header",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CookieSettings {
    /// `name`: default `TANDEMSRV` (insert); required with `mode = "prefix"` (the
    /// application's session cookie, e.g. `JSESSIONID`).
    pub name: String,
    /// `mode`: `insert` (default) or `prefix`.
    pub mode: CookieMode,
    /// `ttl`: `Max-Age`; `None` (default) makes a session cookie.
    pub ttl: Option<Duration>,
    /// `secure`: default false.
    pub secure: bool,
    /// `http_only`: default true.
    pub http_only: bool,
    /// `same_site`: default `Lax`.
    pub same_site: SameSite,
    /// `path`: default `/`.
    pub path: String,
    /// `domain`: default none (host-only cookie).
    pub domain: Option<String>,
}

impl CookieSettings {
    pub const DEFAULT_NAME: &'static str = "TANDEMSRV";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// tandem sets its own cookie, never touching one the application set.
    Insert,
    /// tandem prefixes the application's session cookie with `<token>~` on the way out and
    /// strips it on the way in (HAProxy's `cookie ... prefix`): no extra cookie.
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendDown {
    Rebalance,
    Fail,
}

/// Secret bytes (a key or a shared secret). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Shortest secret accepted: 16 bytes, 128 bits if random.
    pub const MIN_LEN: usize = 16;
}

/// `[cluster]`: the tandem nodes that share persistence tables and runtime backend state.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `listen`: where this node accepts its peers' streams, `ip:port`.
    pub listen: SocketAddr,
    /// `peers`: the other nodes' `listen` addresses.
    pub peers: Vec<SocketAddr>,
    /// `secret` / `secret_file`: shared by every node; authenticates every frame.
    pub secret: Secret,
    /// `state_dir`: where this node keeps what it applied from each peer and its position, so a
    /// restart resumes instead of taking a full snapshot. Default none (in memory only).
    pub state_dir: Option<PathBuf>,
}
