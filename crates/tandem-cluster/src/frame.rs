//! The wire: length-prefixed frames, each authenticated with a truncated HMAC-SHA256.
//!
//! ```text
//! frame   = len:u32le  body  tag[16]          (len = body + 16, at most MAX_FRAME)
//! tag     = HMAC-SHA256(key, direction:u8 || counter:u64le || body)[..16]
//! ```
//!
//! The handshake (client `Hello`, server `Welcome`) is tagged with a key derived from the
//! shared secret alone; everything after it with a per-connection key derived from the secret
//! and both sides' random nonces, so a frame recorded from one connection is worthless in
//! another. The counter (one per direction, starting at 0) makes a replayed, dropped or
//! reordered frame fail its tag. A frame that fails its tag or does not parse closes the
//! connection; nothing in it is applied.
//!
//! There is no encryption: the stream carries client network prefixes and backend addresses,
//! which the same network already sees in traffic; use a private link or VLAN between nodes
//! if that matters.

use ring::hmac;
use thiserror::Error;

use crate::record::{DecodeError, Reader, Record};

/// Largest frame accepted (body + tag): far above any record, small enough that a garbage
/// length cannot make a node allocate much.
pub const MAX_FRAME: usize = 64 * 1024;
pub const TAG_LEN: usize = 16;
pub const NONCE_LEN: usize = 16;
pub const VERSION: u8 = 1;

/// Which side sends: each direction has its own counter and tags.
pub const CLIENT: u8 = 0;
pub const SERVER: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client → server: "stream me your changes from `seq` of log `epoch`" (`epoch` 0: from
    /// nothing, send a snapshot).
    Hello {
        version: u8,
        nonce: [u8; NONCE_LEN],
        epoch: u64,
        seq: u64,
    },
    /// Server → client: the server's log `epoch`, and whether a snapshot follows (the
    /// position asked for is not in the log any more, or belongs to another epoch) or the
    /// stream resumes at the position asked for.
    Welcome {
        nonce: [u8; NONCE_LEN],
        epoch: u64,
        snapshot: bool,
    },
    /// One change of the log.
    Change { seq: u64, record: Record },
    /// One entry of a snapshot.
    Snapshot { record: Record },
    /// The snapshot is complete and reflects the log up to (excluding) `seq`; changes from
    /// `seq` follow.
    SnapshotEnd { seq: u64 },
    /// Sent when idle: the head of the server's log and its wall clock, for lag.
    Heartbeat { head_seq: u64, wall_ms: u64 },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} out of range")]
    Length(usize),
    #[error("authentication failed (wrong secret, or a corrupted or replayed frame)")]
    Auth,
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("unknown message type {0}")]
    Type(u8),
}

impl FrameError {
    /// Counted apart from parse errors: a wrong secret is a configuration problem.
    pub fn is_auth(&self) -> bool {
        matches!(self, FrameError::Auth)
    }
}

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const CHANGE: u8 = 3;
const SNAPSHOT: u8 = 4;
const SNAPSHOT_END: u8 = 5;
const HEARTBEAT: u8 = 6;

impl Message {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello {
                version,
                nonce,
                epoch,
                seq,
            } => {
                out.push(HELLO);
                out.push(*version);
                out.extend_from_slice(nonce);
                out.extend_from_slice(&epoch.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Message::Welcome {
                nonce,
                epoch,
                snapshot,
            } => {
                out.push(WELCOME);
                out.extend_from_slice(nonce);
                out.extend_from_slice(&epoch.to_le_bytes());
                out.push(u8::from(*snapshot));
            }
            Message::Change { seq, record } => {
                out.push(CHANGE);
                out.extend_from_slice(&seq.to_le_bytes());
                record.encode(out);
            }
            Message::Snapshot { record } => {
                out.push(SNAPSHOT);
                record.encode(out);
            }
            Message::SnapshotEnd { seq } => {
                out.push(SNAPSHOT_END);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Message::Heartbeat { head_seq, wall_ms } => {
                out.push(HEARTBEAT);
                out.extend_from_slice(&head_seq.to_le_bytes());
                out.extend_from_slice(&wall_ms.to_le_bytes());
            }
        }
    }

    fn decode(body: &[u8]) -> Result<Message, FrameError> {
        let mut r = Reader(body);
        let m = match r.u8()? {
            HELLO => Message::Hello {
                version: r.u8()?,
                nonce: r.bytes()?,
                epoch: r.u64()?,
                seq: r.u64()?,
            },
            WELCOME => Message::Welcome {
                nonce: r.bytes()?,
                epoch: r.u64()?,
                snapshot: r.u8()? != 0,
            },
            CHANGE => {
                let seq = r.u64()?;
                Message::Change {
                    seq,
                    record: Record::decode(r.rest())?,
                }
            }
            SNAPSHOT => Message::Snapshot {
                record: Record::decode(r.rest())?,
            },
            SNAPSHOT_END => Message::SnapshotEnd { seq: r.u64()? },
            HEARTBEAT => Message::Heartbeat {
                head_seq: r.u64()?,
                wall_ms: r.u64()?,
            },
            t => return Err(FrameError::Type(t)),
        };
        r.end()?;
        Ok(m)
    }
}

/// The key of the handshake frames.
pub fn hello_key(secret: &[u8]) -> hmac::Key {
    derive(secret, &[b"tandem-cluster-hello-v1"])
}

/// The key of one connection's frames after the handshake.
pub fn session_key(secret: &[u8], client: &[u8; NONCE_LEN], server: &[u8; NONCE_LEN]) -> hmac::Key {
    derive(secret, &[b"tandem-cluster-session-v1", client, server])
}

fn derive(secret: &[u8], parts: &[&[u8]]) -> hmac::Key {
    let k = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&k);
    for p in parts {
        ctx.update(p);
    }
    hmac::Key::new(hmac::HMAC_SHA256, ctx.sign().as_ref())
}

fn tag(key: &hmac::Key, direction: u8, counter: u64, body: &[u8]) -> [u8; TAG_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(&[direction]);
    ctx.update(&counter.to_le_bytes());
    ctx.update(body);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&ctx.sign().as_ref()[..TAG_LEN]);
    t
}

/// Seals one direction's frames.
pub struct Sealer {
    key: hmac::Key,
    direction: u8,
    counter: u64,
}

impl Sealer {
    pub fn new(key: hmac::Key, direction: u8) -> Self {
        Self {
            key,
            direction,
            counter: 0,
        }
    }

    /// Appends the frame for `m` to `out`.
    pub fn seal(&mut self, m: &Message, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        m.encode(out);
        let t = tag(&self.key, self.direction, self.counter, &out[start + 4..]);
        self.counter += 1;
        out.extend_from_slice(&t);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    pub fn rekey(&mut self, key: hmac::Key) {
        self.key = key;
        self.counter = 0;
    }
}

/// Opens the other direction's frames.
pub struct Opener {
    key: hmac::Key,
    direction: u8,
    counter: u64,
}

impl Opener {
    pub fn new(key: hmac::Key, direction: u8) -> Self {
        Self {
            key,
            direction,
            counter: 0,
        }
    }

    pub fn rekey(&mut self, key: hmac::Key) {
        self.key = key;
        self.counter = 0;
    }

    /// Checks a frame length read from the wire.
    pub fn check_len(len: u32) -> Result<usize, FrameError> {
        let n = len as usize;
        if (TAG_LEN + 1..=MAX_FRAME).contains(&n) {
            Ok(n)
        } else {
            Err(FrameError::Length(n))
        }
    }

    /// Verifies and decodes a frame's `body || tag` (without the length).
    pub fn open(&mut self, frame: &[u8]) -> Result<Message, FrameError> {
        let n = Self::check_len(frame.len() as u32)?;
        let (body, got) = frame.split_at(n - TAG_LEN);
        let want = tag(&self.key, self.direction, self.counter, body);
        if !tandem_balance::token::constant_time_eq(&want, got) {
            return Err(FrameError::Auth);
        }
        self.counter += 1;
        Message::decode(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record::Sticky {
            service: "www".into(),
            key: "198.51.100.0".parse().unwrap(),
            backend: "127.0.0.1:8001".parse().unwrap(),
            last_seen_ms: 5,
        }
    }

    fn frames(msgs: &[Message], key: hmac::Key) -> Vec<Vec<u8>> {
        let mut s = Sealer::new(key, SERVER);
        msgs.iter()
            .map(|m| {
                let mut out = Vec::new();
                s.seal(m, &mut out);
                let len = u32::from_le_bytes([out[0], out[1], out[2], out[3]]) as usize;
                assert_eq!(len, out.len() - 4);
                out[4..].to_vec()
            })
            .collect()
    }

    #[test]
    fn sealed_frames_open_in_order_only() {
        let key = || session_key(b"0123456789abcdef", &[1; 16], &[2; 16]);
        let msgs = [
            Message::Change {
                seq: 7,
                record: rec(),
            },
            Message::SnapshotEnd { seq: 8 },
            Message::Heartbeat {
                head_seq: 9,
                wall_ms: 10,
            },
        ];
        let f = frames(&msgs, key());
        let mut o = Opener::new(key(), SERVER);
        for (frame, m) in f.iter().zip(&msgs) {
            assert_eq!(o.open(frame).as_ref(), Ok(m));
        }
        // Replayed, reordered, from the other direction, from another connection, with the
        // wrong secret, or one bit flipped: refused.
        let mut o = Opener::new(key(), SERVER);
        assert_eq!(o.open(&f[1]), Err(FrameError::Auth));
        let mut o = Opener::new(key(), CLIENT);
        assert_eq!(o.open(&f[0]), Err(FrameError::Auth));
        let mut o = Opener::new(session_key(b"0123456789abcdef", &[1; 16], &[3; 16]), SERVER);
        assert_eq!(o.open(&f[0]), Err(FrameError::Auth));
        let mut o = Opener::new(session_key(b"another secret!!", &[1; 16], &[2; 16]), SERVER);
        assert_eq!(o.open(&f[0]), Err(FrameError::Auth));
        let mut bad = f[0].clone();
        bad[3] ^= 1;
        assert_eq!(Opener::new(key(), SERVER).open(&bad), Err(FrameError::Auth));
        let mut o = Opener::new(key(), SERVER);
        assert!(o.open(&f[0]).is_ok());
        assert_eq!(o.open(&f[0]), Err(FrameError::Auth), "replay");
    }

    #[test]
    fn lengths_and_garbage() {
        assert!(Opener::check_len(0).is_err());
        assert!(Opener::check_len(TAG_LEN as u32).is_err());
        assert!(Opener::check_len(MAX_FRAME as u32 + 1).is_err());
        assert!(Opener::check_len(100).is_ok());
        // A correctly tagged frame with a body that does not parse: a decode error.
        let key = || hello_key(b"0123456789abcdef");
        let mut s = Sealer::new(key(), CLIENT);
        let mut out = Vec::new();
        s.seal(&Message::SnapshotEnd { seq: 1 }, &mut out);
        // Re-tag a body of an unknown type.
        let body = [99u8, 1, 2];
        let t = tag(&key(), CLIENT, 0, &body);
        let mut frame = body.to_vec();
        frame.extend_from_slice(&t);
        assert_eq!(
            Opener::new(key(), CLIENT).open(&frame),
            Err(FrameError::Type(99))
        );
        let hello = Message::Hello {
            version: VERSION,
            nonce: [4; 16],
            epoch: 1,
            seq: 2,
        };
        let mut out = Vec::new();
        Sealer::new(key(), CLIENT).seal(&hello, &mut out);
        assert_eq!(Opener::new(key(), CLIENT).open(&out[4..]), Ok(hello));
    }
}
