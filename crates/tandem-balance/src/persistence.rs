//! One service's session persistence at run time: which backend a request is pinned to, and
//! what pins it for next time.
//!
//! - `source_ip`: a [`StickyTable`] from the masked client address; binding and refreshing
//!   produce [`Change`]s for the cluster stream ([`ServicePersistence::take_changes`]).
//! - `cookie` / `url_param`: a signed token ([`crate::token`]) names the backend. A token
//!   never changes for a given backend, so each backend's token (and the `Set-Cookie` line
//!   that carries it) is computed once here: issuing costs nothing per request, and checking
//!   a presented token is a table lookup by its id plus a constant-time comparison, no HMAC.
//! - `header`: nothing to keep: the header's hash goes to the pool's hashing scheduler
//!   ([`crate::RequestKey::hash`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tandem_config::{CookieMode, CookieSettings, OnBackendDown, Persistence, PersistenceKind};

use crate::sticky::{mask, Change, StickyTable};
use crate::token::{backend_id, TokenKey};
use crate::PoolRuntime;

/// Changes waiting for the cluster stream are dropped beyond this many (the stream is gone
/// or far behind; a reconnecting peer gets a snapshot anyway).
const MAX_PENDING_CHANGES: usize = 1 << 20;

/// What pins a request, as found in it (see [`ServicePersistence::pin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// Nothing pins it (no token, an invalid one, no sticky entry): balance normally.
    None,
    /// Pinned to this backend index, which is eligible.
    Backend(usize),
    /// Pinned to a backend that is not eligible now.
    Down(usize),
}

#[derive(Debug, Default)]
pub struct PersistenceCounters {
    /// Requests sent to the backend they were pinned to.
    pub pinned: AtomicU64,
    /// Pinned requests whose backend was down and that went elsewhere (or got 503).
    pub repinned: AtomicU64,
    /// Tokens presented that did not verify (tampered, foreign, stale key): ignored.
    pub invalid_tokens: AtomicU64,
    /// Tokens issued (a `Set-Cookie` added to a response).
    pub issued: AtomicU64,
}

pub struct ServicePersistence {
    pub service: String,
    pub cfg: Persistence,
    pub pool: Arc<PoolRuntime>,
    /// `source_ip` only.
    pub sticky: Option<StickyTable>,
    /// `cookie` / `url_param` only: the signing key of this service and pool.
    key: Option<TokenKey>,
    /// Token id → backend index, and each backend's token.
    by_id: HashMap<u64, usize>,
    tokens: Vec<String>,
    /// Each backend's `Set-Cookie` header line (`cookie` insert mode), CRLF-terminated.
    set_cookie: Vec<Vec<u8>>,
    pending: Mutex<Vec<Change>>,
    pub counters: PersistenceCounters,
}

impl std::fmt::Debug for ServicePersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePersistence")
            .field("service", &self.service)
            .field("kind", &self.cfg.kind.name())
            .finish_non_exhaustive()
    }
}

impl ServicePersistence {
    /// `secret` signs tokens (cookie, url_param); see `Topology::new` for where it comes from.
    pub fn new(service: &str, cfg: &Persistence, pool: Arc<PoolRuntime>, secret: &[u8]) -> Self {
        let sticky = match &cfg.kind {
            PersistenceKind::SourceIp {
                timeout,
                max_entries,
                ..
            } => Some(StickyTable::new(*timeout, *max_entries)),
            _ => None,
        };
        let key = matches!(
            cfg.kind,
            PersistenceKind::Cookie(_) | PersistenceKind::UrlParam { .. }
        )
        .then(|| TokenKey::new(secret, service, &pool.name));
        let mut by_id = HashMap::new();
        let mut tokens = Vec::new();
        let mut set_cookie = Vec::new();
        if let Some(key) = &key {
            for b in pool.backends.iter() {
                let id = backend_id(&pool.name, b.address);
                by_id.insert(id, b.id);
                let token = key.issue(id);
                if let PersistenceKind::Cookie(c) = &cfg.kind {
                    set_cookie.push(set_cookie_line(c, &token));
                }
                tokens.push(token);
            }
        }
        Self {
            service: service.to_string(),
            cfg: cfg.clone(),
            pool,
            sticky,
            key,
            by_id,
            tokens,
            set_cookie,
            pending: Mutex::new(Vec::new()),
            counters: PersistenceCounters::default(),
        }
    }

    /// The cookie settings in `cookie` mode.
    pub fn cookie(&self) -> Option<&CookieSettings> {
        match &self.cfg.kind {
            PersistenceKind::Cookie(c) => Some(c),
            _ => None,
        }
    }

    pub fn on_backend_down(&self) -> OnBackendDown {
        self.cfg.on_backend_down
    }

    /// The backend a token names, if the token verifies.
    fn resolve_token(&self, token: &[u8]) -> Option<usize> {
        self.key.as_ref()?;
        let token = std::str::from_utf8(token).ok()?;
        let id = crate::token::parse_id(token)?;
        let &backend = self.by_id.get(&id)?;
        // The presented token must be exactly the one issued for that backend.
        let want = self.tokens.get(backend)?;
        crate::token::constant_time_eq(want.as_bytes(), token.as_bytes()).then_some(backend)
    }

    /// What pins a request carrying `token` (cookie, url_param) from `client`.
    pub fn pin(&self, token: Option<&[u8]>, client: IpAddr, now: Instant) -> Pinned {
        let backend = match &self.cfg.kind {
            PersistenceKind::SourceIp {
                mask_v4, mask_v6, ..
            } => {
                let Some(table) = &self.sticky else {
                    return Pinned::None;
                };
                let key = mask(client, *mask_v4, *mask_v6);
                let (hit, change) = table.lookup(key, now);
                if let Some(change) = change {
                    self.push_change(change);
                }
                let Some(addr) = hit else {
                    return Pinned::None;
                };
                match self.pool.find(addr) {
                    Some(b) => b.id,
                    // The backend left the pool (a reload): forget the entry.
                    None => {
                        table.remove(key);
                        return Pinned::None;
                    }
                }
            }
            PersistenceKind::Cookie(_) | PersistenceKind::UrlParam { .. } => {
                let Some(token) = token else {
                    return Pinned::None;
                };
                match self.resolve_token(token) {
                    Some(b) => b,
                    None => {
                        self.counters.invalid_tokens.fetch_add(1, Ordering::Relaxed);
                        return Pinned::None;
                    }
                }
            }
            PersistenceKind::Header { .. } => return Pinned::None,
        };
        let eligible = self
            .pool
            .backends
            .get(backend)
            .is_some_and(|b| b.in_rotation());
        if eligible {
            Pinned::Backend(backend)
        } else {
            Pinned::Down(backend)
        }
    }

    /// A request went to backend index `backend` after being pinned as `pinned`: count it,
    /// and (source_ip) bind the client if it was not already bound there. Returns whether a
    /// token must be issued to the client (cookie insert mode, url_param's header).
    pub fn chosen(&self, pinned: Pinned, backend: usize, client: IpAddr, now: Instant) -> bool {
        match pinned {
            Pinned::Backend(b) if b == backend => {
                self.counters.pinned.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Pinned::Down(_) | Pinned::Backend(_) => {
                self.counters.repinned.fetch_add(1, Ordering::Relaxed);
            }
            Pinned::None => {}
        }
        match &self.cfg.kind {
            PersistenceKind::SourceIp {
                mask_v4, mask_v6, ..
            } => {
                if let (Some(table), Some(b)) = (&self.sticky, self.pool.backends.get(backend)) {
                    let change = table.bind(mask(client, *mask_v4, *mask_v6), b.address, now);
                    self.push_change(change);
                }
                false
            }
            PersistenceKind::Cookie(_) | PersistenceKind::UrlParam { .. } => {
                backend < self.tokens.len()
            }
            PersistenceKind::Header { .. } => false,
        }
    }

    /// Backend index `backend`'s token.
    pub fn token(&self, backend: usize) -> Option<&str> {
        self.tokens.get(backend).map(String::as_str)
    }

    /// Backend index `backend`'s `Set-Cookie` line (insert mode), counted as issued.
    pub fn set_cookie_line(&self, backend: usize) -> Option<&[u8]> {
        let line = self.set_cookie.get(backend)?;
        self.counters.issued.fetch_add(1, Ordering::Relaxed);
        Some(line)
    }

    /// Whether this is prefix mode.
    pub fn is_prefix(&self) -> bool {
        self.cookie().is_some_and(|c| c.mode == CookieMode::Prefix)
    }

    fn push_change(&self, change: Change) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < MAX_PENDING_CHANGES {
            p.push(change);
        }
    }

    /// Every change since the last call, in order (for the cluster stream).
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies a peer's change (source_ip).
    pub fn apply(&self, change: &Change, now: Instant) {
        if let Some(table) = &self.sticky {
            table.apply(change, now);
        }
    }
}

/// `Set-Cookie: NAME=TOKEN; Path=/; Max-Age=N; Domain=D; Secure; HttpOnly; SameSite=Lax\r\n`
fn set_cookie_line(c: &CookieSettings, token: &str) -> Vec<u8> {
    let mut s = format!("Set-Cookie: {}={token}; Path={}", c.name, c.path);
    if let Some(ttl) = c.ttl {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(d) = &c.domain {
        s.push_str(&format!("; Domain={d}"));
    }
    if c.secure {
        s.push_str("; Secure");
    }
    if c.http_only {
        s.push_str("; HttpOnly");
    }
    s.push_str("; SameSite=");
    s.push_str(c.same_site.as_str());
    s.push_str("\r\n");
    s.into_bytes()
}
