//! The admin bearer token (`[admin] token_file`): who may change state, and who may read.
//!
//! Policy, decided once at startup from the configuration:
//! - state-changing requests (anything but GET/HEAD) need `Authorization: Bearer <token>`
//!   whenever a token is configured;
//! - when the listener is not on loopback, reads need it too (the configuration refuses a
//!   listener off loopback without a token, so there always is one there);
//! - `/healthz` and the dashboard's static files are always open: the first is for probes
//!   that cannot hold secrets, the second holds no data (the page asks for the token and
//!   sends it with every API call it makes).
//!
//! The comparison is constant-time in the token's content so response timing does not leak
//! how many leading bytes of a guess were right.

use http::{HeaderMap, Method};

/// The configured token, or none.
#[derive(Clone, Default)]
pub struct AuthPolicy {
    token: Option<Vec<u8>>,
    /// Reads need the token too (the listener is not on loopback).
    reads_need_token: bool,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("reads_need_token", &self.reads_need_token)
            .finish()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this request needs an Authorization: Bearer <token> header ([admin] token_file)")]
    Missing,
    #[error("the bearer token is wrong")]
    Wrong,
}

impl AuthPolicy {
    /// No token: everything is open (a loopback listener without `token_file`).
    pub fn open() -> Self {
        AuthPolicy::default()
    }

    /// `token` guards state changes; with `reads_need_token` (a non-loopback listener) it
    /// guards reads as well.
    pub fn with_token(token: Vec<u8>, reads_need_token: bool) -> Self {
        AuthPolicy {
            token: Some(token),
            reads_need_token,
        }
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Decide whether a request may go on.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), AuthError> {
        let read = method == Method::GET || method == Method::HEAD;
        let Some(token) = &self.token else {
            return Ok(());
        };
        if is_public(path) {
            return Ok(());
        }
        if read && !self.reads_need_token {
            return Ok(());
        }
        let Some(given) = bearer(headers) else {
            return Err(AuthError::Missing);
        };
        if constant_time_eq(given, token) {
            Ok(())
        } else {
            Err(AuthError::Wrong)
        }
    }
}

/// Paths anyone may fetch: the health probe and the dashboard's static files.
fn is_public(path: &str) -> bool {
    path == "/healthz" || crate::dashboard::asset(path).is_some()
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Equal in content, taking time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("header"),
            );
        }
        h
    }

    const T: &[u8] = b"0123456789abcdef-token";

    #[test]
    fn open_policy_allows_everything() {
        let p = AuthPolicy::open();
        assert!(p
            .check(&Method::POST, "/api/v1/reload", &headers(None))
            .is_ok());
    }

    #[test]
    fn loopback_token_guards_changes_only() {
        let p = AuthPolicy::with_token(T.to_vec(), false);
        let path = "/api/v1/pools/p/backends/127.0.0.1:1/drain";
        assert_eq!(
            p.check(&Method::POST, path, &headers(None)),
            Err(AuthError::Missing)
        );
        assert_eq!(
            p.check(&Method::POST, path, &headers(Some("Bearer nope"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            p.check(&Method::POST, path, &headers(Some("Basic abc"))),
            Err(AuthError::Missing)
        );
        let good = format!("bearer {}", std::str::from_utf8(T).expect("ascii"));
        assert!(p.check(&Method::POST, path, &headers(Some(&good))).is_ok());
        assert!(p
            .check(&Method::GET, "/api/v1/pools", &headers(None))
            .is_ok());
    }

    #[test]
    fn remote_token_guards_reads_but_not_healthz_or_the_page() {
        let p = AuthPolicy::with_token(T.to_vec(), true);
        assert_eq!(
            p.check(&Method::GET, "/api/v1/pools", &headers(None)),
            Err(AuthError::Missing)
        );
        assert_eq!(
            p.check(&Method::GET, "/metrics", &headers(None)),
            Err(AuthError::Missing)
        );
        assert!(p.check(&Method::GET, "/healthz", &headers(None)).is_ok());
        assert!(p.check(&Method::GET, "/", &headers(None)).is_ok());
        assert!(p
            .check(&Method::GET, "/dashboard.js", &headers(None))
            .is_ok());
    }

    #[test]
    fn comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
