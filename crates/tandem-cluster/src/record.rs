//! What the stream carries, and its binary encoding (little-endian, length-prefixed strings).
//!
//! A record is a fact about the state a standby needs to be hot: a sticky binding, or an
//! operator's action on a backend. Applying a record twice is harmless (the later of two
//! records for the same key wins), which is what makes resuming from a position safe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `service`'s sticky table binds `key` to `backend`; the client was last seen at
    /// `last_seen_ms` (Unix milliseconds, so an entry expires on the receiver when it would
    /// on the sender, clocks being in sync as NTP keeps them).
    Sticky {
        service: String,
        key: IpAddr,
        backend: SocketAddr,
        last_seen_ms: u64,
    },
    /// An operator's action on a backend of `pool` through the admin API.
    Backend {
        pool: String,
        backend: SocketAddr,
        action: BackendAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    Enable,
    Drain,
    Disable,
    Weight(u32),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("name is not UTF-8")]
    Utf8,
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

const STICKY: u8 = 1;
const BACKEND: u8 = 2;

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Sticky {
                service,
                key,
                backend,
                last_seen_ms,
            } => {
                out.push(STICKY);
                put_str(out, service);
                put_ip(out, *key);
                put_addr(out, *backend);
                out.extend_from_slice(&last_seen_ms.to_le_bytes());
            }
            Record::Backend {
                pool,
                backend,
                action,
            } => {
                out.push(BACKEND);
                put_str(out, pool);
                put_addr(out, *backend);
                let (code, weight) = match action {
                    BackendAction::Enable => (0u8, 0u32),
                    BackendAction::Drain => (1, 0),
                    BackendAction::Disable => (2, 0),
                    BackendAction::Weight(w) => (3, *w),
                };
                out.push(code);
                out.extend_from_slice(&weight.to_le_bytes());
            }
        }
    }

    /// Decodes exactly one record filling `b`.
    pub fn decode(b: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader(b);
        let rec = match r.u8()? {
            STICKY => Record::Sticky {
                service: r.str()?,
                key: r.ip()?,
                backend: r.addr()?,
                last_seen_ms: r.u64()?,
            },
            BACKEND => {
                let pool = r.str()?;
                let backend = r.addr()?;
                let code = r.u8()?;
                let weight = r.u32()?;
                let action = match code {
                    0 => BackendAction::Enable,
                    1 => BackendAction::Drain,
                    2 => BackendAction::Disable,
                    3 => BackendAction::Weight(weight),
                    t => return Err(DecodeError::UnknownType(t)),
                };
                Record::Backend {
                    pool,
                    backend,
                    action,
                }
            }
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.end()?;
        Ok(rec)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are at most 64 bytes (config validation); cut defensively at 255.
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    put_ip(out, a.ip());
    out.extend_from_slice(&a.port().to_le_bytes());
}

/// A cursor over a byte slice; every read checks the length.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn bytes<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError::Utf8)
    }
    fn ip(&mut self) -> Result<IpAddr, DecodeError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.bytes::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.bytes::<16>()?))),
            f => Err(DecodeError::Family(f)),
        }
    }
    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = self.ip()?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    pub(crate) fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let recs = [
            Record::Sticky {
                service: "www".into(),
                key: "198.51.100.0".parse().unwrap(),
                backend: "127.0.0.1:8001".parse().unwrap(),
                last_seen_ms: 1_763_000_000_000,
            },
            Record::Sticky {
                service: "api".into(),
                key: "2001:db8::".parse().unwrap(),
                backend: "[2001:db8::7]:443".parse().unwrap(),
                last_seen_ms: 0,
            },
            Record::Backend {
                pool: "web".into(),
                backend: "127.0.0.1:8002".parse().unwrap(),
                action: BackendAction::Weight(7),
            },
            Record::Backend {
                pool: "web".into(),
                backend: "127.0.0.1:8002".parse().unwrap(),
                action: BackendAction::Drain,
            },
        ];
        for r in &recs {
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(Record::decode(&b).as_ref(), Ok(r));
            // Every truncation is an error, never a panic.
            for n in 0..b.len() {
                assert!(Record::decode(&b[..n]).is_err());
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Record::decode(&longer), Err(DecodeError::Trailing(1)));
        }
        assert_eq!(Record::decode(&[9]), Err(DecodeError::UnknownType(9)));
        assert_eq!(Record::decode(&[1, 0, 5]), Err(DecodeError::Family(5)));
    }
}
