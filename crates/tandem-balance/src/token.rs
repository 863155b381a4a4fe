//! Signed persistence tokens: the value of a `cookie` or `url_param` that pins a client to a
//! backend.
//!
//! A token names the backend by an opaque id and carries an HMAC-SHA256 tag over that id and
//! the service and pool it belongs to, so a client can neither read the backend's address
//! from it nor steer itself to a backend of its choice by editing it (it would have to forge
//! the tag), and a token of one service is worthless in another. Anything that does not
//! verify is treated as no token at all: the request is balanced normally and a new token is
//! issued, never an error.
//!
//! Format: `<id: 16 hex digits>.<tag: 24 hex digits>` (41 bytes, cookie- and URL-safe). The id
//! is the first 8 bytes of SHA-256 over `pool/backend-address`, so every node with the same
//! configuration agrees on it, across reloads and restarts. The tag is the first 12 bytes of
//! HMAC-SHA256 (96 bits: forging one online is out of reach; RFC 2104 allows truncation to
//! half the output and no less than 80 bits).

use std::net::SocketAddr;

use ring::{digest, hmac};

/// Bytes of the tag kept.
const TAG_LEN: usize = 12;
/// Length of a token: 16 hex + '.' + 24 hex.
pub const TOKEN_LEN: usize = 16 + 1 + 2 * TAG_LEN;

/// A backend's id within its pool (see the module docs).
pub fn backend_id(pool: &str, backend: SocketAddr) -> u64 {
    let d = digest::digest(&digest::SHA256, format!("{pool}/{backend}").as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(id)
}

/// Signs and verifies the tokens of one service and pool.
#[derive(Clone)]
pub struct TokenKey {
    key: hmac::Key,
    /// `service/pool`, bound into every tag.
    context: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TokenKey")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key for `service`'s tokens of `pool`, from secret bytes.
    pub fn new(secret: &[u8], service: &str, pool: &str) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            context: format!("{service}/{pool}"),
        }
    }

    fn tag(&self, id: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"tandem-persist-v1\0");
        ctx.update(self.context.as_bytes());
        ctx.update(b"\0");
        ctx.update(&id.to_be_bytes());
        ctx.sign()
    }

    /// The token for backend `id`.
    pub fn issue(&self, id: u64) -> String {
        let tag = self.tag(id);
        let mut s = String::with_capacity(TOKEN_LEN);
        push_hex(&mut s, &id.to_be_bytes());
        s.push('.');
        push_hex(&mut s, &tag.as_ref()[..TAG_LEN]);
        s
    }

    /// The backend id a token names, if it is well-formed and its tag verifies (in constant
    /// time). (The data plane compares against precomputed tokens instead, see
    /// `persistence`; both accept exactly the same tokens.)
    pub fn verify(&self, token: &str) -> Option<u64> {
        let b = token.as_bytes();
        if b.len() != TOKEN_LEN || b[16] != b'.' {
            return None;
        }
        let mut id = [0u8; 8];
        unhex(&b[..16], &mut id)?;
        let mut tag = [0u8; TAG_LEN];
        unhex(&b[17..], &mut tag)?;
        let id = u64::from_be_bytes(id);
        let want = self.tag(id);
        constant_time_eq(&want.as_ref()[..TAG_LEN], &tag).then_some(id)
    }
}

/// Compares without an early exit, so the time taken does not tell how many leading bytes of
/// a guessed tag were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// The id a well-formed token claims (not verified: compare the whole token with the one
/// issued for that id).
pub fn parse_id(token: &str) -> Option<u64> {
    let b = token.as_bytes();
    if b.len() != TOKEN_LEN || b[16] != b'.' {
        return None;
    }
    let mut id = [0u8; 8];
    unhex(&b[..16], &mut id)?;
    Some(u64::from_be_bytes(id))
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// Lower-case hex only: one spelling per token, so a token cannot be varied to dodge a cache.
fn unhex(src: &[u8], out: &mut [u8]) -> Option<()> {
    if src.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(src[2 * i])? << 4) | digit(src[2 * i + 1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef", "www", "web")
    }

    #[test]
    fn issued_tokens_verify_and_name_their_backend() {
        let id = backend_id("web", "127.0.0.1:8001".parse().unwrap());
        let t = key().issue(id);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit() || c == b'.'));
        assert_eq!(key().verify(&t), Some(id));
        // Stable across processes: the id depends on pool and address only.
        assert_eq!(id, backend_id("web", "127.0.0.1:8001".parse().unwrap()));
        assert_ne!(id, backend_id("web", "127.0.0.1:8002".parse().unwrap()));
        assert_ne!(id, backend_id("api", "127.0.0.1:8001".parse().unwrap()));
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_are_refused() {
        let k = key();
        let id = backend_id("web", "127.0.0.1:8001".parse().unwrap());
        let other = backend_id("web", "127.0.0.1:8002".parse().unwrap());
        let t = k.issue(id);
        // Steering to another backend: change the id, keep the tag.
        let mut forged = String::new();
        push_hex(&mut forged, &other.to_be_bytes());
        forged.push_str(&t[16..]);
        assert_eq!(k.verify(&forged), None);
        // One flipped tag digit.
        let mut flipped = t.clone().into_bytes();
        flipped[30] = if flipped[30] == b'0' { b'1' } else { b'0' };
        assert_eq!(k.verify(std::str::from_utf8(&flipped).unwrap()), None);
        // Another service's or another key's token.
        let other_service = TokenKey::new(b"0123456789abcdef0123456789abcdef", "api", "web");
        assert_eq!(other_service.verify(&t), None);
        let other_key = TokenKey::new(b"another secret, another cluster", "www", "web");
        assert_eq!(other_key.verify(&t), None);
        // Malformed: wrong length, upper case, no dot, garbage, empty.
        for bad in [
            "",
            "x",
            &t[..TOKEN_LEN - 1],
            &t.to_uppercase(),
            &t.replace('.', "-"),
            &format!("{t}0"),
            "zzzzzzzzzzzzzzzz.zzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(k.verify(bad), None, "{bad:?}");
        }
        assert!(!format!("{k:?}").contains("0123456789abcdef"));
    }
}
