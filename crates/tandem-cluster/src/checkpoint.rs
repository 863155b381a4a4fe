//! The checkpoint in `state_dir`: the position reached in each peer's log and the state
//! those records built, so a restarted node resumes instead of taking a snapshot.
//!
//! ```text
//! "TNDMCK01"  peers:u32  { addr-len:u8 addr-text epoch:u64 seq:u64 }*
//!             records:u32 { len:u32 record }*  checksum:u64 (FNV-1a of all before)
//! ```
//!
//! Written to a temporary file and renamed over the old one, so a crash mid-write leaves the
//! previous checkpoint; a file that does not check out is ignored (peers then send snapshots).

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use crate::record::Record;

pub const FILE: &str = "cluster.checkpoint";
const MAGIC: &[u8; 8] = b"TNDMCK01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Peer → (its log epoch, the next sequence number to apply).
    pub positions: Vec<(SocketAddr, (u64, u64))>,
    pub records: Vec<Record>,
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn encode(ck: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(ck.positions.len() as u32).to_le_bytes());
    for (addr, (epoch, seq)) in &ck.positions {
        let a = addr.to_string();
        out.push(a.len() as u8);
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out.extend_from_slice(&(ck.records.len() as u32).to_le_bytes());
    let mut rec = Vec::new();
    for r in &ck.records {
        rec.clear();
        r.encode(&mut rec);
        out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        out.extend_from_slice(&rec);
    }
    let sum = fnv(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

pub fn decode(b: &[u8]) -> Result<Checkpoint, String> {
    if b.len() < MAGIC.len() + 8 || &b[..8] != MAGIC {
        return Err("not a tandem cluster checkpoint".into());
    }
    let (body, sum) = b.split_at(b.len() - 8);
    let mut s = [0u8; 8];
    s.copy_from_slice(sum);
    if fnv(body) != u64::from_le_bytes(s) {
        return Err("checksum mismatch (a torn or damaged file)".into());
    }
    let mut r = &body[8..];
    let mut take = |n: usize| -> Result<&[u8], String> {
        if r.len() < n {
            return Err("truncated".into());
        }
        let (h, t) = r.split_at(n);
        r = t;
        Ok(h)
    };
    let u32_ = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let u64_ = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    let n = u32_(take(4)?) as usize;
    let mut positions = Vec::new();
    for _ in 0..n {
        let len = usize::from(take(1)?[0]);
        let addr: SocketAddr = std::str::from_utf8(take(len)?)
            .map_err(|_| "bad address")?
            .parse()
            .map_err(|_| "bad address")?;
        let epoch = u64_(take(8)?);
        let seq = u64_(take(8)?);
        positions.push((addr, (epoch, seq)));
    }
    let n = u32_(take(4)?) as usize;
    let mut records = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let len = u32_(take(4)?) as usize;
        records.push(Record::decode(take(len)?).map_err(|e| e.to_string())?);
    }
    Ok(Checkpoint { positions, records })
}

/// `Ok(None)` when there is no checkpoint yet.
pub fn load(path: &Path) -> io::Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(b) => decode(&b).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

pub fn save(path: &Path, ck: &Checkpoint) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, encode(ck))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BackendAction;

    #[test]
    fn round_trip_and_damage() {
        let ck = Checkpoint {
            positions: vec![
                ("198.51.100.3:9901".parse().unwrap(), (7, 42)),
                ("[2001:db8::3]:9901".parse().unwrap(), (9, 1)),
            ],
            records: vec![
                Record::Sticky {
                    service: "www".into(),
                    key: "198.51.100.0".parse().unwrap(),
                    backend: "127.0.0.1:8001".parse().unwrap(),
                    last_seen_ms: 3,
                },
                Record::Backend {
                    pool: "web".into(),
                    backend: "127.0.0.1:8002".parse().unwrap(),
                    action: BackendAction::Disable,
                },
            ],
        };
        let b = encode(&ck);
        assert_eq!(decode(&b), Ok(ck));
        for n in [0, 5, 8, b.len() / 2, b.len() - 1] {
            assert!(decode(&b[..n]).is_err(), "{n}");
        }
        let mut flipped = b.clone();
        flipped[12] ^= 1;
        assert!(decode(&flipped).is_err());
    }
}
