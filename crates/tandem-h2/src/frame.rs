//! HTTP/2 frames (RFC 9113 §4, §6): parsing a frame into a typed value with its size and
//! stream rules checked, and writing the frames a server sends.

use bytes::{Buf, Bytes};

/// What a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of the frame header.
pub const HEAD_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value and floor.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// SETTINGS_MAX_FRAME_SIZE's ceiling, 2^24 - 1.
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
/// Largest flow-control window, 2^31 - 1.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameters (RFC 9113 §6.5.2; ENABLE_CONNECT_PROTOCOL from RFC 8441).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match *self {
            Reason::NO_ERROR => "NO_ERROR",
            Reason::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Reason::INTERNAL_ERROR => "INTERNAL_ERROR",
            Reason::FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            Reason::SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
            Reason::STREAM_CLOSED => "STREAM_CLOSED",
            Reason::FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
            Reason::REFUSED_STREAM => "REFUSED_STREAM",
            Reason::CANCEL => "CANCEL",
            Reason::COMPRESSION_ERROR => "COMPRESSION_ERROR",
            Reason::CONNECT_ERROR => "CONNECT_ERROR",
            Reason::ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
            Reason::INADEQUATE_SECURITY => "INADEQUATE_SECURITY",
            Reason::HTTP_1_1_REQUIRED => "HTTP_1_1_REQUIRED",
            Reason(n) => return write!(f, "error code {n:#x}"),
        };
        f.write_str(name)
    }
}

/// A frame the peer got wrong, with the scope RFC 9113 gives the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("connection error {0}: {1}")]
    Connection(Reason, &'static str),
    #[error("stream {0} error {1}: {2}")]
    Stream(u32, Reason, &'static str),
}

/// The 9-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (§4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    pub fn write(&self, dst: &mut Vec<u8>) {
        let len = self.len as u32;
        dst.extend_from_slice(&len.to_be_bytes()[1..]);
        dst.push(self.kind);
        dst.push(self.flags);
        dst.extend_from_slice(&self.stream.to_be_bytes());
    }
}

/// A stream's dependency from a HEADERS or PRIORITY frame. Priority signals are parsed only to
/// check them (RFC 9113 §5.3.2 deprecates the scheme); tandem does not act on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub depends_on: u32,
    pub exclusive: bool,
    pub weight: u8,
}

/// Settings a peer sent; `None` for those it left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    pub header_table_size: Option<u32>,
    pub enable_push: Option<bool>,
    pub max_concurrent_streams: Option<u32>,
    pub initial_window_size: Option<u32>,
    pub max_frame_size: Option<u32>,
    pub max_header_list_size: Option<u32>,
    pub enable_connect_protocol: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
        /// The whole payload, padding included: what flow control counts (§6.1).
        flow_len: u32,
    },
    Headers {
        stream: u32,
        block: Bytes,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        reason: Reason,
    },
    Settings(Settings),
    SettingsAck,
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        reason: Reason,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        block: Bytes,
        end_headers: bool,
    },
    /// A frame type this endpoint does not know: ignored (§5.5).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

fn conn(reason: Reason, why: &'static str) -> FrameError {
    FrameError::Connection(reason, why)
}

/// Parse a frame whose header is `head` and whose payload (`head.len` bytes) is `payload`.
/// The caller has checked `head.len` against its SETTINGS_MAX_FRAME_SIZE.
pub fn parse(head: Head, mut payload: Bytes) -> Result<Frame, FrameError> {
    let stream = head.stream;
    let need_stream = |what: &'static str| {
        if stream == 0 {
            Err(conn(Reason::PROTOCOL_ERROR, what))
        } else {
            Ok(())
        }
    };
    let no_stream = |what: &'static str| {
        if stream != 0 {
            Err(conn(Reason::PROTOCOL_ERROR, what))
        } else {
            Ok(())
        }
    };
    Ok(match head.kind {
        kind::DATA => {
            need_stream("DATA on stream 0")?;
            let flow_len = payload.len() as u32;
            let data = unpad(head.flags, payload)?;
            Frame::Data {
                stream,
                data,
                end_stream: head.flags & flag::END_STREAM != 0,
                flow_len,
            }
        }
        kind::HEADERS => {
            need_stream("HEADERS on stream 0")?;
            let mut block = unpad(head.flags, payload)?;
            let priority = if head.flags & flag::PRIORITY != 0 {
                if block.len() < 5 {
                    return Err(conn(
                        Reason::FRAME_SIZE_ERROR,
                        "HEADERS too short for its priority",
                    ));
                }
                // A self-dependency is a stream error, but the block must still be decoded
                // (HPACK state), so the caller checks it.
                Some(priority(&mut block))
            } else {
                None
            };
            Frame::Headers {
                stream,
                block,
                end_stream: head.flags & flag::END_STREAM != 0,
                end_headers: head.flags & flag::END_HEADERS != 0,
                priority,
            }
        }
        kind::PRIORITY => {
            need_stream("PRIORITY on stream 0")?;
            if payload.len() != 5 {
                return Err(FrameError::Stream(
                    stream,
                    Reason::FRAME_SIZE_ERROR,
                    "PRIORITY is not 5 bytes",
                ));
            }
            let p = priority(&mut payload);
            if p.depends_on == stream {
                return Err(FrameError::Stream(
                    stream,
                    Reason::PROTOCOL_ERROR,
                    "stream depends on itself",
                ));
            }
            Frame::Priority {
                stream,
                priority: p,
            }
        }
        kind::RST_STREAM => {
            need_stream("RST_STREAM on stream 0")?;
            if payload.len() != 4 {
                return Err(conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes"));
            }
            Frame::RstStream {
                stream,
                reason: Reason(payload.get_u32()),
            }
        }
        kind::SETTINGS => {
            no_stream("SETTINGS on a stream")?;
            if head.flags & flag::ACK != 0 {
                if !payload.is_empty() {
                    return Err(conn(
                        Reason::FRAME_SIZE_ERROR,
                        "SETTINGS ack with a payload",
                    ));
                }
                return Ok(Frame::SettingsAck);
            }
            // `%`, not `is_multiple_of` (Rust 1.87; the workspace declares 1.85).
            #[allow(clippy::manual_is_multiple_of)]
            let partial = payload.len() % 6 != 0;
            if partial {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS length not a multiple of 6",
                ));
            }
            Frame::Settings(settings(payload)?)
        }
        kind::PUSH_PROMISE => {
            need_stream("PUSH_PROMISE on stream 0")?;
            Frame::PushPromise { stream }
        }
        kind::PING => {
            no_stream("PING on a stream")?;
            let payload: [u8; 8] = payload[..]
                .try_into()
                .map_err(|_| conn(Reason::FRAME_SIZE_ERROR, "PING is not 8 bytes"))?;
            Frame::Ping {
                ack: head.flags & flag::ACK != 0,
                payload,
            }
        }
        kind::GOAWAY => {
            no_stream("GOAWAY on a stream")?;
            if payload.len() < 8 {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "GOAWAY shorter than 8 bytes",
                ));
            }
            let last_stream = payload.get_u32() & MAX_WINDOW;
            Frame::GoAway {
                last_stream,
                reason: Reason(payload.get_u32()),
            }
        }
        kind::WINDOW_UPDATE => {
            if payload.len() != 4 {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "WINDOW_UPDATE is not 4 bytes",
                ));
            }
            let increment = payload.get_u32() & MAX_WINDOW;
            if increment == 0 {
                return Err(if stream == 0 {
                    conn(
                        Reason::PROTOCOL_ERROR,
                        "WINDOW_UPDATE of 0 on the connection",
                    )
                } else {
                    FrameError::Stream(stream, Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        kind::CONTINUATION => {
            need_stream("CONTINUATION on stream 0")?;
            Frame::Continuation {
                stream,
                block: payload,
                end_headers: head.flags & flag::END_HEADERS != 0,
            }
        }
        other => Frame::Unknown {
            kind: other,
            stream,
        },
    })
}

/// Strip padding (§6.1, §6.2): padding that fills the whole payload is a connection error.
fn unpad(flags: u8, mut payload: Bytes) -> Result<Bytes, FrameError> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let Some(&pad) = payload.first() else {
        return Err(conn(
            Reason::FRAME_SIZE_ERROR,
            "padded frame without a pad length",
        ));
    };
    payload.advance(1);
    // The pad length byte is gone, so padding may fill the rest (an empty body) but no more.
    let pad = usize::from(pad);
    if pad > payload.len() {
        return Err(conn(
            Reason::PROTOCOL_ERROR,
            "padding as long as the payload",
        ));
    }
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

fn priority(b: &mut Bytes) -> Priority {
    let dep = b.get_u32();
    Priority {
        depends_on: dep & MAX_WINDOW,
        exclusive: dep & !MAX_WINDOW != 0,
        weight: b.get_u8(),
    }
}

fn settings(mut b: Bytes) -> Result<Settings, FrameError> {
    let mut s = Settings::default();
    while b.remaining() >= 6 {
        let (id, value) = (b.get_u16(), b.get_u32());
        match id {
            setting::HEADER_TABLE_SIZE => s.header_table_size = Some(value),
            setting::ENABLE_PUSH => {
                if value > 1 {
                    return Err(conn(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"));
                }
                s.enable_push = Some(value == 1);
            }
            setting::MAX_CONCURRENT_STREAMS => s.max_concurrent_streams = Some(value),
            setting::INITIAL_WINDOW_SIZE => {
                if value > MAX_WINDOW {
                    return Err(conn(
                        Reason::FLOW_CONTROL_ERROR,
                        "INITIAL_WINDOW_SIZE above 2^31-1",
                    ));
                }
                s.initial_window_size = Some(value);
            }
            setting::MAX_FRAME_SIZE => {
                if !(DEFAULT_MAX_FRAME as u32..=MAX_MAX_FRAME).contains(&value) {
                    return Err(conn(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"));
                }
                s.max_frame_size = Some(value);
            }
            setting::MAX_HEADER_LIST_SIZE => s.max_header_list_size = Some(value),
            setting::ENABLE_CONNECT_PROTOCOL => {
                if value > 1 {
                    return Err(conn(
                        Reason::PROTOCOL_ERROR,
                        "ENABLE_CONNECT_PROTOCOL not 0 or 1",
                    ));
                }
                s.enable_connect_protocol = Some(value == 1);
            }
            // Unknown settings are ignored (§6.5.2).
            _ => {}
        }
    }
    Ok(s)
}

// ---------------------------------------------------------------- writing

pub fn write_settings(params: &[(u16, u32)], dst: &mut Vec<u8>) {
    Head {
        len: params.len() * 6,
        kind: kind::SETTINGS,
        flags: 0,
        stream: 0,
    }
    .write(dst);
    for &(id, value) in params {
        dst.extend_from_slice(&id.to_be_bytes());
        dst.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(dst: &mut Vec<u8>) {
    Head {
        len: 0,
        kind: kind::SETTINGS,
        flags: flag::ACK,
        stream: 0,
    }
    .write(dst);
}

pub fn write_ping_ack(payload: &[u8; 8], dst: &mut Vec<u8>) {
    Head {
        len: 8,
        kind: kind::PING,
        flags: flag::ACK,
        stream: 0,
    }
    .write(dst);
    dst.extend_from_slice(payload);
}

pub fn write_window_update(stream: u32, increment: u32, dst: &mut Vec<u8>) {
    Head {
        len: 4,
        kind: kind::WINDOW_UPDATE,
        flags: 0,
        stream,
    }
    .write(dst);
    dst.extend_from_slice(&increment.to_be_bytes());
}

pub fn write_rst_stream(stream: u32, reason: Reason, dst: &mut Vec<u8>) {
    Head {
        len: 4,
        kind: kind::RST_STREAM,
        flags: 0,
        stream,
    }
    .write(dst);
    dst.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn write_goaway(last_stream: u32, reason: Reason, dst: &mut Vec<u8>) {
    Head {
        len: 8,
        kind: kind::GOAWAY,
        flags: 0,
        stream: 0,
    }
    .write(dst);
    dst.extend_from_slice(&last_stream.to_be_bytes());
    dst.extend_from_slice(&reason.0.to_be_bytes());
}

/// The header of a DATA frame carrying `len` bytes (the caller writes the bytes).
pub fn write_data_head(stream: u32, len: usize, end_stream: bool, dst: &mut Vec<u8>) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    Head {
        len,
        kind: kind::DATA,
        flags,
        stream,
    }
    .write(dst);
}

/// A header block as HEADERS and, past `max_frame` bytes, CONTINUATION frames (§6.10).
pub fn write_headers(
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
    dst: &mut Vec<u8>,
) {
    let max_frame = max_frame.max(1);
    let mut chunks = block.chunks(max_frame).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    Head {
        len: first.len(),
        kind: kind::HEADERS,
        flags,
        stream,
    }
    .write(dst);
    dst.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        Head {
            len: chunk.len(),
            kind: kind::CONTINUATION,
            flags,
            stream,
        }
        .write(dst);
        dst.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<Frame, FrameError> {
        let mut raw = Vec::new();
        Head {
            len: payload.len(),
            kind,
            flags,
            stream,
        }
        .write(&mut raw);
        let head = Head::parse(raw[..HEAD_LEN].try_into().unwrap());
        assert_eq!(head.len, payload.len());
        parse(head, Bytes::copy_from_slice(payload))
    }

    #[test]
    fn head_round_trips_and_ignores_the_reserved_bit() {
        let h = Head {
            len: 0x01_02_03,
            kind: 7,
            flags: 0x25,
            stream: 0x7fff_fffe,
        };
        let mut v = Vec::new();
        h.write(&mut v);
        assert_eq!(v.len(), HEAD_LEN);
        assert_eq!(Head::parse(v[..].try_into().unwrap()), h);
        v[5] |= 0x80;
        assert_eq!(Head::parse(v[..].try_into().unwrap()).stream, 0x7fff_fffe);
    }

    #[test]
    fn data_padding() {
        assert_eq!(
            frame(
                kind::DATA,
                flag::PADDED | flag::END_STREAM,
                1,
                b"\x02abc\0\0"
            ),
            Ok(Frame::Data {
                stream: 1,
                data: Bytes::from_static(b"abc"),
                end_stream: true,
                flow_len: 6
            })
        );
        // Padding may leave an empty body, but not run past the payload.
        assert!(
            matches!(frame(kind::DATA, flag::PADDED, 1, b"\x02\0\0"), Ok(Frame::Data { ref data, .. }) if data.is_empty())
        );
        assert_eq!(
            frame(kind::DATA, flag::PADDED, 1, b"\x03\0\0"),
            Err(conn(
                Reason::PROTOCOL_ERROR,
                "padding as long as the payload"
            ))
        );
        assert!(matches!(
            frame(kind::DATA, flag::PADDED, 1, b""),
            Err(FrameError::Connection(Reason::FRAME_SIZE_ERROR, _))
        ));
        assert!(matches!(
            frame(kind::DATA, 0, 0, b"x"),
            Err(FrameError::Connection(Reason::PROTOCOL_ERROR, _))
        ));
    }

    #[test]
    fn headers_with_priority_and_padding() {
        let got = frame(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            3,
            b"\x01\x80\0\0\x01\x0f\x82\0",
        );
        assert_eq!(
            got,
            Ok(Frame::Headers {
                stream: 3,
                block: Bytes::from_static(b"\x82"),
                end_stream: false,
                end_headers: true,
                priority: Some(Priority {
                    depends_on: 1,
                    exclusive: true,
                    weight: 15
                }),
            })
        );
        assert!(matches!(
            frame(kind::HEADERS, flag::PRIORITY, 3, b"\0\0"),
            Err(FrameError::Connection(Reason::FRAME_SIZE_ERROR, _))
        ));
    }

    #[test]
    fn control_frames_check_their_sizes_and_streams() {
        use Reason as R;
        let c = |r: Result<Frame, FrameError>| match r {
            Err(FrameError::Connection(reason, _)) => Some(reason),
            _ => None,
        };
        assert_eq!(c(frame(kind::SETTINGS, 0, 1, b"")), Some(R::PROTOCOL_ERROR));
        assert_eq!(
            c(frame(kind::SETTINGS, flag::ACK, 0, b"\0\0\0\0\0\0")),
            Some(R::FRAME_SIZE_ERROR)
        );
        assert_eq!(
            c(frame(kind::SETTINGS, 0, 0, b"\0\x02\0\0\0")),
            Some(R::FRAME_SIZE_ERROR)
        );
        assert_eq!(
            c(frame(kind::SETTINGS, 0, 0, b"\0\x02\0\0\0\x02")),
            Some(R::PROTOCOL_ERROR)
        );
        assert_eq!(
            c(frame(kind::SETTINGS, 0, 0, b"\0\x04\x80\0\0\0")),
            Some(R::FLOW_CONTROL_ERROR)
        );
        assert_eq!(
            c(frame(kind::SETTINGS, 0, 0, b"\0\x05\0\0\x3f\xff")),
            Some(R::PROTOCOL_ERROR)
        );
        assert_eq!(
            c(frame(kind::PING, 0, 0, b"1234567")),
            Some(R::FRAME_SIZE_ERROR)
        );
        assert_eq!(
            c(frame(kind::PING, 0, 1, b"12345678")),
            Some(R::PROTOCOL_ERROR)
        );
        assert_eq!(
            c(frame(kind::RST_STREAM, 0, 1, b"\0\0\0")),
            Some(R::FRAME_SIZE_ERROR)
        );
        assert_eq!(
            c(frame(kind::RST_STREAM, 0, 0, b"\0\0\0\x08")),
            Some(R::PROTOCOL_ERROR)
        );
        assert_eq!(
            c(frame(kind::GOAWAY, 0, 0, b"\0\0\0\x01")),
            Some(R::FRAME_SIZE_ERROR)
        );
        assert_eq!(
            c(frame(kind::WINDOW_UPDATE, 0, 0, b"\0\0\0\0")),
            Some(R::PROTOCOL_ERROR)
        );
        assert_eq!(
            c(frame(kind::WINDOW_UPDATE, 0, 1, b"\0\0\0")),
            Some(R::FRAME_SIZE_ERROR)
        );
        assert!(matches!(
            frame(kind::WINDOW_UPDATE, 0, 5, b"\0\0\0\0"),
            Err(FrameError::Stream(5, R::PROTOCOL_ERROR, _))
        ));
        assert!(matches!(
            frame(kind::PRIORITY, 0, 5, b"\0\0\0\x01"),
            Err(FrameError::Stream(5, R::FRAME_SIZE_ERROR, _))
        ));
        assert_eq!(
            c(frame(kind::CONTINUATION, 0, 0, b"")),
            Some(R::PROTOCOL_ERROR)
        );
    }

    #[test]
    fn settings_known_and_unknown() {
        let got = frame(
            kind::SETTINGS,
            0,
            0,
            b"\0\x01\0\0\x10\0\0\x03\0\0\0\x64\0\x04\0\x01\0\0\0\x2a\0\0\0\x07\0\x05\0\0\x40\0",
        );
        assert_eq!(
            got,
            Ok(Frame::Settings(Settings {
                header_table_size: Some(4096),
                max_concurrent_streams: Some(100),
                initial_window_size: Some(65536),
                max_frame_size: Some(16384),
                ..Settings::default()
            }))
        );
    }

    #[test]
    fn written_frames_parse_back() {
        let mut v = Vec::new();
        write_settings(
            &[
                (setting::MAX_CONCURRENT_STREAMS, 128),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20),
            ],
            &mut v,
        );
        write_settings_ack(&mut v);
        write_ping_ack(b"abcdefgh", &mut v);
        write_window_update(0, 1000, &mut v);
        write_rst_stream(3, Reason::CANCEL, &mut v);
        write_goaway(7, Reason::NO_ERROR, &mut v);
        write_data_head(5, 3, true, &mut v);
        v.extend_from_slice(b"xyz");
        let mut buf = Bytes::from(v);
        let mut got = Vec::new();
        while !buf.is_empty() {
            let head = Head::parse(buf[..HEAD_LEN].try_into().unwrap());
            buf.advance(HEAD_LEN);
            got.push(parse(head, buf.split_to(head.len)).unwrap());
        }
        assert_eq!(
            got,
            [
                Frame::Settings(Settings {
                    max_concurrent_streams: Some(128),
                    initial_window_size: Some(1 << 20),
                    ..Settings::default()
                }),
                Frame::SettingsAck,
                Frame::Ping {
                    ack: true,
                    payload: *b"abcdefgh"
                },
                Frame::WindowUpdate {
                    stream: 0,
                    increment: 1000
                },
                Frame::RstStream {
                    stream: 3,
                    reason: Reason::CANCEL
                },
                Frame::GoAway {
                    last_stream: 7,
                    reason: Reason::NO_ERROR
                },
                Frame::Data {
                    stream: 5,
                    data: Bytes::from_static(b"xyz"),
                    end_stream: true,
                    flow_len: 3
                },
            ]
        );
    }

    #[test]
    fn a_large_block_is_split_into_continuations() {
        let block: Vec<u8> = (0..40u8).collect();
        let mut v = Vec::new();
        write_headers(9, &block, true, 16, &mut v);
        let mut buf = Bytes::from(v);
        let mut frames = Vec::new();
        while !buf.is_empty() {
            let head = Head::parse(buf[..HEAD_LEN].try_into().unwrap());
            buf.advance(HEAD_LEN);
            frames.push(parse(head, buf.split_to(head.len)).unwrap());
        }
        assert_eq!(frames.len(), 3);
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            match f {
                Frame::Headers {
                    block,
                    end_stream,
                    end_headers,
                    ..
                } => {
                    assert_eq!((i, *end_stream, *end_headers), (0, true, false));
                    joined.extend_from_slice(block);
                }
                Frame::Continuation {
                    block, end_headers, ..
                } => {
                    assert_eq!(*end_headers, i == 2);
                    joined.extend_from_slice(block);
                }
                f => panic!("unexpected {f:?}"),
            }
        }
        assert_eq!(joined, block);
        // An empty block is one HEADERS frame with END_HEADERS.
        let mut v = Vec::new();
        write_headers(1, &[], false, 16, &mut v);
        assert_eq!(v, [0, 0, 0, kind::HEADERS, flag::END_HEADERS, 0, 0, 0, 1]);
    }
}
