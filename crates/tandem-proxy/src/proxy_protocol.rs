//! HAProxy's PROXY protocol, versions 1 and 2 (`doc/proxy-protocol.txt` in HAProxy's sources):
//! a header at the very start of a TCP connection that tells the receiver who the connection is
//! really for, when a proxy stands in between.
//!
//! The first part of this module is pure: [`parse`] reads a header (either version, told apart
//! by its signature) from the bytes received so far, and [`encode`] writes one. The second part
//! ([`Acceptor`], [`endpoints`]) connects them to sockets: reading the header of a connection
//! from a trusted proxy, and choosing what a new backend connection announces.
//!
//! Reading takes exactly the header off the socket and nothing more (the bytes are peeked,
//! parsed, then consumed), so whatever follows stays in the kernel for the HTTP or TCP code,
//! which then reads the connection as if the header had never been there.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tandem_balance::{PoolRuntime, ServiceStats};
use tandem_config::{Cidr, Service};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The 12 bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What a version 1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 line, CRLF included (the spec's worst case, `UNKNOWN` with two full
/// IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// The largest version 2 header accepted: the 16 fixed bytes, the addresses and the TLVs. The
/// format allows 16 + 65535; real senders stay far below (addresses plus a few TLVs: ALPN,
/// authority, unique ID, TLS details, a cloud's endpoint ID), and a bound keeps what one
/// connection can make tandem hold small.
pub const MAX_HEADER_LEN: usize = 4096;

/// `PP2_TYPE_CRC32C`: a checksum of the whole header, verified when present.
const TLV_CRC32C: u8 = 0x03;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl From<tandem_config::ProxyProtocol> for Version {
    fn from(v: tandem_config::ProxyProtocol) -> Self {
        match v {
            tandem_config::ProxyProtocol::V1 => Version::V1,
            tandem_config::ProxyProtocol::V2 => Version::V2,
        }
    }
}

/// The endpoints of the connection a proxy relays: the client and the address it connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// Version 2's command (a version 1 header is always `Proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The connection is relayed on behalf of `addresses`' source.
    Proxy,
    /// The proxy opened the connection for itself (a health check): the real endpoints apply.
    Local,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub command: Command,
    /// The relayed connection's endpoints. `None`: use the real connection's, because the
    /// header says so (v2 `LOCAL`, v1 `UNKNOWN`) or relays something other than TCP over IPv4
    /// or IPv6 (v2 `AF_UNSPEC`, `AF_UNIX`, UDP), which HAProxy treats the same way.
    pub addresses: Option<Addresses>,
    /// Bytes the header takes, up to and including its last TLV or the CRLF of its line.
    pub len: usize,
    /// Version 2 TLVs seen (and skipped); 0 for version 1.
    pub tlvs: usize,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Complete(Header),
    /// A valid beginning; more bytes are needed. `total`: the whole header's length, once the
    /// bytes so far tell it (version 2 after its 16 fixed bytes).
    Incomplete {
        total: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither `PROXY ` nor the version 2 signature.
    #[error("not a PROXY protocol header")]
    Signature,
    /// A version 1 line without CRLF in its first 107 bytes, or a version 2 header longer than
    /// [`MAX_HEADER_LEN`].
    #[error("PROXY protocol header too long")]
    TooLong,
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(&'static str),
}

/// Parse a header at the start of `buf` (v1 or v2, by signature). Bytes after the header are
/// not looked at. Never reads past `buf`, never allocates.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    match buf.first() {
        None => Ok(Parsed::Incomplete { total: None }),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(Error::Signature),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(Error::Signature);
    }
    // Find the CRLF; reject early what can never become a valid line: bytes other than
    // printable ASCII, a lone CR or LF.
    let mut end = None;
    for (i, &b) in buf.iter().enumerate().take(V1_MAX_LEN) {
        match b {
            b'\n' if i > 0 && buf[i - 1] == b'\r' => {
                end = Some(i + 1);
                break;
            }
            b'\n' => return Err(Error::Invalid("LF without CR")),
            b'\r' if buf.get(i + 1).is_some_and(|&next| next != b'\n') => {
                return Err(Error::Invalid("CR without LF"))
            }
            b'\r' | b' '..=b'~' => {}
            _ => return Err(Error::Invalid("a byte that is not printable ASCII")),
        }
    }
    let Some(end) = end else {
        return if buf.len() >= V1_MAX_LEN {
            Err(Error::TooLong)
        } else {
            Ok(Parsed::Incomplete { total: None })
        };
    };
    // Printable ASCII only, checked above.
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end - 2])
        .map_err(|_| Error::Invalid("not ASCII"))?;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        // "the receiver must ignore anything presented before the CRLF"
        "UNKNOWN" => {
            return Ok(Parsed::Complete(Header {
                version: Version::V1,
                command: Command::Proxy,
                addresses: None,
                len: end,
                tlvs: 0,
            }))
        }
        _ => return Err(Error::Invalid("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let mut next = || fields.next().ok_or(Error::Invalid("missing fields"));
    let src = v1_ip(next()?, v6)?;
    let dst = v1_ip(next()?, v6)?;
    let sport = v1_port(next()?)?;
    let dport = v1_port(next()?)?;
    if fields.next().is_some() {
        return Err(Error::Invalid("extra fields"));
    }
    Ok(Parsed::Complete(Header {
        version: Version::V1,
        command: Command::Proxy,
        addresses: Some(Addresses {
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
        }),
        len: end,
        tlvs: 0,
    }))
}

/// An address of the line's family. std's parsers are strict enough for the spec: IPv4 as
/// exactly four decimal numbers without leading zeros, IPv6 without a zone.
fn v1_ip(s: &str, v6: bool) -> Result<IpAddr, Error> {
    if v6 {
        s.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| Error::Invalid("bad IPv6 address"))
    } else {
        s.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| Error::Invalid("bad IPv4 address"))
    }
}

/// A port: decimal 0..=65535, no sign, no leading zero.
fn v1_port(s: &str) -> Result<u16, Error> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(Error::Invalid("bad port"));
    }
    s.parse().map_err(|_| Error::Invalid("port above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(Error::Signature);
    }
    if buf.len() > 12 && buf[12] >> 4 != 2 {
        return Err(Error::Invalid("version is not 2"));
    }
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete { total: None });
    }
    let command = match buf[12] & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        _ => return Err(Error::Invalid("unknown command")),
    };
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    if family > 3 || transport > 2 {
        return Err(Error::Invalid("unknown address family or transport"));
    }
    let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if total > MAX_HEADER_LEN {
        return Err(Error::TooLong);
    }
    if buf.len() < total {
        return Ok(Parsed::Incomplete { total: Some(total) });
    }
    let header = &buf[..total];
    let block = &header[16..];
    let complete = |addresses, tlvs| {
        Ok(Parsed::Complete(Header {
            version: Version::V2,
            command,
            addresses,
            len: total,
            tlvs,
        }))
    };
    // LOCAL: "the receiver must use the real connection endpoints and discard the protocol
    // block including the family". An unspecified transport or family leaves the size of the
    // address block open: ignore it all, as the spec says to.
    if command == Command::Local || family == 0 || transport == 0 {
        return complete(None, 0);
    }
    let addr_len = match family {
        1 => 12,
        2 => 36,
        _ => 216,
    };
    if block.len() < addr_len {
        return Err(Error::Invalid(
            "address block shorter than its family needs",
        ));
    }
    let tlvs = skip_tlvs(header, 16 + addr_len)?;
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let addresses = match (family, transport) {
        (1, 1) => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ))
            };
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        (2, 1) => {
            let ip = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            Some(Addresses {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        // UDP or UNIX sockets: not something a TCP listener can stand in for; the real
        // endpoints apply (HAProxy does the same).
        _ => None,
    };
    complete(addresses, tlvs)
}

/// Walk the TLVs of `header` from `at`: each must fit, and a CRC32C must match. Returns how
/// many there were. Bounded by the header's length (at most [`MAX_HEADER_LEN`] / 3 TLVs).
fn skip_tlvs(header: &[u8], mut at: usize) -> Result<usize, Error> {
    let mut count = 0;
    let mut crc_at = None;
    while at < header.len() {
        let rest = &header[at..];
        if rest.len() < 3 {
            return Err(Error::Invalid("truncated TLV"));
        }
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        if rest.len() < 3 + len {
            return Err(Error::Invalid("TLV longer than the header"));
        }
        if rest[0] == TLV_CRC32C {
            if len != 4 || crc_at.is_some() {
                return Err(Error::Invalid("bad CRC32C TLV"));
            }
            crc_at = Some(at + 3);
        }
        at += 3 + len;
        count += 1;
    }
    if let Some(c) = crc_at {
        let want = u32::from_be_bytes([header[c], header[c + 1], header[c + 2], header[c + 3]]);
        let got = crc32c_finish(crc32c_update(
            crc32c_update(crc32c_update(!0, &header[..c]), &[0; 4]),
            &header[c + 4..],
        ));
        if got != want {
            return Err(Error::Invalid("CRC32C mismatch"));
        }
    }
    Ok(count)
}

/// CRC-32C (Castagnoli, reflected, as in RFC 4960 appendix B), bit by bit: headers are short
/// and rarely carry one.
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn crc32c_finish(crc: u32) -> u32 {
    !crc
}

/// Append a header of `version` to `out`. `None`: a connection tandem makes for itself, sent
/// as v2 `LOCAL` or v1 `UNKNOWN`. IPv4-mapped IPv6 addresses are sent as IPv4; when the two
/// endpoints still differ in family, the IPv4 one is sent mapped into IPv6.
pub fn encode(version: Version, addresses: Option<Addresses>, out: &mut Vec<u8>) {
    use std::io::Write;
    let Some(a) = addresses else {
        match version {
            Version::V1 => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
            Version::V2 => {
                out.extend_from_slice(&V2_SIGNATURE);
                out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            }
        }
        return;
    };
    let (src, dst) = (
        a.source.ip().to_canonical(),
        a.destination.ip().to_canonical(),
    );
    let (sport, dport) = (a.source.port(), a.destination.port());
    let as_v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match (version, src, dst) {
        (Version::V1, IpAddr::V4(s), IpAddr::V4(d)) => {
            let _ = write!(out, "PROXY TCP4 {s} {d} {sport} {dport}\r\n");
        }
        (Version::V1, s, d) => {
            let _ = write!(
                out,
                "PROXY TCP6 {} {} {sport} {dport}\r\n",
                as_v6(s),
                as_v6(d)
            );
        }
        (Version::V2, IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&V2_SIGNATURE);
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            out.extend_from_slice(&sport.to_be_bytes());
            out.extend_from_slice(&dport.to_be_bytes());
        }
        (Version::V2, s, d) => {
            out.extend_from_slice(&V2_SIGNATURE);
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&as_v6(s).octets());
            out.extend_from_slice(&as_v6(d).octets());
            out.extend_from_slice(&sport.to_be_bytes());
            out.extend_from_slice(&dport.to_be_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets

/// What a new backend connection's header announces for a client connection from `peer` to
/// `local` (the address it connected to; `None`: ask the socket). `None` when the pool sends
/// no header, so callers pay for nothing then.
pub(crate) fn endpoints(
    pool: &PoolRuntime,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    client: &TcpStream,
) -> Option<Addresses> {
    pool.proxy_protocol?;
    Some(Addresses {
        source: peer,
        destination: local.or_else(|| client.local_addr().ok())?,
    })
}

/// Why a connection from a trusted proxy is closed before it is served.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Closed (or reset) before sending a single byte: an upstream load balancer's TCP health
    /// check looks like this. Not counted.
    Silent,
    /// Not a valid PROXY header (http answers 400).
    Malformed(Error),
    /// Closed mid-header, or no complete header within the header timeout.
    Missing(&'static str),
}

/// `accept_proxy_protocol` of one service: which peers must send a header, and how long they
/// get for it.
pub(crate) struct Acceptor {
    service: String,
    trusted: Vec<Cidr>,
    timeout: Duration,
    stats: Arc<ServiceStats>,
}

impl Acceptor {
    /// `None` when the service trusts no proxy (the header is never read).
    pub(crate) fn new(cfg: &Service, stats: Arc<ServiceStats>) -> Option<Acceptor> {
        (!cfg.accept_proxy_protocol.is_empty()).then(|| Acceptor {
            service: cfg.name.clone(),
            trusted: cfg.accept_proxy_protocol.clone(),
            timeout: cfg.timeouts.header,
            stats,
        })
    }

    /// The endpoints a connection from `peer` stands for: `Ok(Some(_))` from its PROXY header
    /// when `peer` is a trusted proxy; `Ok(None)` when the real endpoints apply (an untrusted
    /// peer, whose bytes are not looked at; v2 `LOCAL`; v1 `UNKNOWN`). A refusal has been
    /// counted and logged; the caller closes the connection.
    pub(crate) async fn accept(
        &self,
        s: &TcpStream,
        peer: SocketAddr,
    ) -> Result<Option<Addresses>, Refused> {
        if !self.trusted.iter().any(|c| c.contains(peer.ip())) {
            return Ok(None);
        }
        match receive(s, Instant::now() + self.timeout).await {
            Ok(h) => Ok(h.addresses),
            Err(r) => {
                if !matches!(r, Refused::Silent) {
                    self.stats
                        .proxy_protocol_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    let why = match &r {
                        Refused::Malformed(e) => e.to_string(),
                        Refused::Missing(m) => (*m).to_string(),
                        Refused::Silent => String::new(),
                    };
                    tracing::warn!(service = %self.service, %peer, error = %why, "connection from a trusted proxy refused: no valid PROXY protocol header");
                }
                Err(r)
            }
        }
    }
}

/// Read a header off `s`, taking exactly its bytes off the socket.
///
/// Senders write the header at once, so it normally arrives whole: one peek sees it, one read
/// takes it. A header that arrives in pieces is read on with reads that cannot go past its end
/// (v2: up to the length it announces; v1: a byte at a time, since only its CRLF ends it).
async fn receive(s: &TcpStream, deadline: Instant) -> Result<Header, Refused> {
    const LATE: &str = "PROXY header not complete in time";
    // Any v1 line fits, and a v2 header with IPv6 addresses and a few TLVs.
    let mut first = [0u8; 256];
    let n = match tokio::time::timeout_at(deadline, s.peek(&mut first)).await {
        Err(_) => return Err(Refused::Missing("no PROXY header in time")),
        Ok(Err(_)) | Ok(Ok(0)) => return Err(Refused::Silent),
        Ok(Ok(n)) => n,
    };
    match parse(&first[..n]) {
        Ok(Parsed::Complete(h)) => {
            read_exact(s, &mut first[..h.len], deadline, LATE).await?;
            return Ok(h);
        }
        Err(e) => {
            // Take the bytes off the socket, so an answer (http's 400) is not lost to the
            // reset that closing with unread data causes.
            let _ = s.try_read(&mut first[..n]);
            return Err(Refused::Malformed(e));
        }
        Ok(Parsed::Incomplete { .. }) => {}
    }
    // Every byte peeked so far belongs to the header.
    let mut buf = Vec::with_capacity(n.max(16));
    let mut known = n;
    loop {
        let start = buf.len();
        let want = known.saturating_sub(start).max(1);
        buf.resize(start + want, 0);
        let got = read_some(s, &mut buf[start..], deadline, LATE).await?;
        buf.truncate(start + got);
        match parse(&buf) {
            Ok(Parsed::Complete(h)) => return Ok(h),
            Err(e) => return Err(Refused::Malformed(e)),
            Ok(Parsed::Incomplete { total: Some(t) }) => known = known.max(t),
            // v2 before its length: the 16 fixed bytes are certainly header.
            Ok(Parsed::Incomplete { total: None }) if buf[0] == b'\r' => known = known.max(16),
            Ok(Parsed::Incomplete { total: None }) => {}
        }
    }
}

/// Fill `buf` from `s` by `deadline`.
async fn read_exact(
    s: &TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    late: &'static str,
) -> Result<(), Refused> {
    let mut at = 0;
    while at < buf.len() {
        at += read_some(s, &mut buf[at..], deadline, late).await?;
    }
    Ok(())
}

/// Read at least one byte into `buf` (not empty) by `deadline`.
async fn read_some(
    s: &TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    late: &'static str,
) -> Result<usize, Refused> {
    const CLOSED: &str = "closed within the PROXY header";
    loop {
        match s.try_read(buf) {
            Ok(0) => return Err(Refused::Missing(CLOSED)),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout_at(deadline, s.readable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Refused::Missing(CLOSED)),
                    Err(_) => return Err(Refused::Missing(late)),
                }
            }
            Err(_) => return Err(Refused::Missing(CLOSED)),
        }
    }
}

#[doc(hidden)]
pub mod fuzzing {
    //! Properties the fuzz target checks on arbitrary input.

    use super::*;

    /// Parse `data`; never panics. A complete header must lie within `data`, every shorter
    /// prefix of it must read as incomplete (never as an error or as another header), and its
    /// addresses must survive being encoded and parsed again.
    pub fn parse_header(data: &[u8]) {
        let Ok(Parsed::Complete(h)) = parse(data) else {
            return;
        };
        assert!(h.len <= data.len() && h.len <= MAX_HEADER_LEN.max(V1_MAX_LEN));
        let step = if h.len <= 256 { 1 } else { 61 };
        for k in (0..h.len).step_by(step) {
            assert!(
                matches!(parse(&data[..k]), Ok(Parsed::Incomplete { .. })),
                "prefix of {k} bytes of a {}-byte header: {:?}",
                h.len,
                parse(&data[..k])
            );
        }
        let mut out = Vec::new();
        encode(h.version, h.addresses, &mut out);
        let again = match parse(&out) {
            Ok(Parsed::Complete(again)) => again,
            other => panic!("own encoding of {h:?} does not parse: {other:?}"),
        };
        assert_eq!(again.len, out.len());
        let canonical = |a: Option<Addresses>| {
            a.map(|a| {
                (
                    a.source.ip().to_canonical(),
                    a.source.port(),
                    a.destination.ip().to_canonical(),
                    a.destination.port(),
                )
            })
        };
        assert_eq!(canonical(again.addresses), canonical(h.addresses));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Header {
        match parse(buf) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn addrs(src: &str, dst: &str) -> Option<Addresses> {
        Some(Addresses {
            source: sa(src),
            destination: sa(dst),
        })
    }

    fn encoded(version: Version, a: Option<Addresses>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(version, a, &mut out);
        out
    }

    /// A v2 header by hand: command/version byte, family byte, address block, TLVs.
    fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&u16::try_from(block.len()).expect("len").to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn v4_block() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 198, 51, 100, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn tlv(t: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![t];
        out.extend_from_slice(&u16::try_from(value.len()).expect("len").to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// Every proper prefix of a valid header is incomplete, never an error.
    fn assert_prefixes_incomplete(buf: &[u8]) {
        let h = complete(buf);
        for k in 0..h.len {
            assert!(
                matches!(parse(&buf[..k]), Ok(Parsed::Incomplete { .. })),
                "{k} of {} bytes: {:?}",
                h.len,
                parse(&buf[..k])
            );
        }
    }

    #[test]
    fn v1_tcp4() {
        let buf = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nGET / HTTP/1.1\r\n";
        let h = complete(buf);
        assert_eq!(h.version, Version::V1);
        assert_eq!(h.command, Command::Proxy);
        assert_eq!(h.addresses, addrs("192.0.2.7:40000", "198.51.100.1:443"));
        assert_eq!(&buf[h.len..], b"GET / HTTP/1.1\r\n");
        assert_prefixes_incomplete(buf);
    }

    #[test]
    fn v1_tcp6() {
        let buf = b"PROXY TCP6 2001:db8::7 2001:db8:0:0:0:0:0:1 65535 0\r\n";
        let h = complete(buf);
        assert_eq!(h.addresses, addrs("[2001:db8::7]:65535", "[2001:db8::1]:0"));
        assert_eq!(h.len, buf.len());
        assert_prefixes_incomplete(buf);
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        for buf in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            b"PROXY UNKNOWN whatever is here\r\n",
        ] {
            let h = complete(buf);
            assert_eq!(h.addresses, None);
            assert_eq!(h.len, buf.len());
        }
        // The worst case is exactly the longest line a receiver must take.
        assert_eq!(
            b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".len(),
            V1_MAX_LEN
        );
    }

    #[test]
    fn v1_rejects_what_the_spec_rejects() {
        for (buf, why) in [
            (
                &b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\n"[..],
                "bare LF",
            ),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\rX", "bare CR"),
            (
                b"PROXY TCP4  192.0.2.7 198.51.100.1 40000 443\r\n",
                "two spaces",
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",
                "missing port",
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443 1\r\n",
                "extra field",
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443 \r\n",
                "trailing space",
            ),
            (b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n", "v6 in TCP4"),
            (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n", "v4 in TCP6"),
            (
                b"PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n",
                "leading zero in address",
            ),
            (b"PROXY TCP4 192.0.2 198.51.100.1 1 2\r\n", "three octets"),
            (
                b"PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",
                "octet above 255",
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
                "leading zero in port",
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
                "port above 65535",
            ),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n", "signed port"),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n",
                "negative port",
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 999999 2\r\n",
                "long port",
            ),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1  2\r\n", "empty port"),
            (
                b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
                "unknown protocol",
            ),
            (b"PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n", "lower case"),
            (b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "zone"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\x00\r\n", "NUL"),
            (b"PROXY \xff\r\n", "not ASCII"),
            (b"PROXY \r\n", "empty"),
        ] {
            assert!(
                matches!(parse(buf), Err(Error::Invalid(_))),
                "{why}: {:?}",
                parse(buf)
            );
        }
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_too_long() {
        let mut buf = b"PROXY UNKNOWN ".to_vec();
        buf.resize(V1_MAX_LEN - 1, b'a');
        assert_eq!(parse(&buf), Ok(Parsed::Incomplete { total: None }));
        buf.push(b'a');
        assert_eq!(parse(&buf), Err(Error::TooLong));
        // A CRLF just past the limit does not rescue it.
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse(&buf), Err(Error::TooLong));
    }

    #[test]
    fn wrong_signatures() {
        for buf in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXZ TCP4",
            b"PROXYTCP4 1.2.3.4",
            b"P\x00",
            b"\x16\x03\x01\x02\x00",
            b"\r\n\r\n\x00\r\nQUIX\n",
            b"\r\n\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(parse(buf), Err(Error::Signature), "{buf:?}");
        }
        // Prefixes of either signature wait for more.
        for buf in [&b""[..], b"P", b"PROX", b"PROXY", b"\r\n\r\n\0\r\nQU"] {
            assert_eq!(
                parse(buf),
                Ok(Parsed::Incomplete { total: None }),
                "{buf:?}"
            );
        }
    }

    #[test]
    fn v2_proxy_inet() {
        let mut buf = v2(0x21, 0x11, &v4_block());
        buf.extend_from_slice(b"rest");
        let h = complete(&buf);
        assert_eq!(h.version, Version::V2);
        assert_eq!(h.command, Command::Proxy);
        assert_eq!(h.addresses, addrs("192.0.2.7:40000", "198.51.100.1:443"));
        assert_eq!(h.len, 28);
        assert_eq!(&buf[h.len..], b"rest");
        assert_prefixes_incomplete(&buf);
    }

    #[test]
    fn v2_proxy_inet6() {
        let buf = encoded(Version::V2, addrs("[2001:db8::7]:1", "[2001:db8::1]:65535"));
        assert_eq!(buf.len(), 16 + 36);
        let h = complete(&buf);
        assert_eq!(h.addresses, addrs("[2001:db8::7]:1", "[2001:db8::1]:65535"));
        assert_prefixes_incomplete(&buf);
    }

    #[test]
    fn v2_local_keeps_the_real_endpoints_whatever_the_block_says() {
        let h = complete(&v2(0x20, 0x00, &[]));
        assert_eq!((h.command, h.addresses, h.len), (Command::Local, None, 16));
        // A LOCAL header may still carry a family and addresses: skipped by length.
        let h = complete(&v2(0x20, 0x11, &v4_block()));
        assert_eq!((h.command, h.addresses, h.len), (Command::Local, None, 28));
        assert_eq!(encoded(Version::V2, None), v2(0x20, 0x00, &[]));
    }

    #[test]
    fn v2_unspec_unix_and_udp_keep_the_real_endpoints() {
        let h = complete(&v2(0x21, 0x00, b"anything"));
        assert_eq!((h.addresses, h.len), (None, 24));
        let h = complete(&v2(0x21, 0x31, &[0; 216]));
        assert_eq!(h.addresses, None);
        let h = complete(&v2(0x21, 0x12, &v4_block()));
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn v2_rejects_bad_fields() {
        for (buf, why) in [
            (v2(0x11, 0x11, &v4_block()), "version 1 in a v2 header"),
            (v2(0x31, 0x11, &v4_block()), "version 3"),
            (v2(0x22, 0x11, &v4_block()), "command 2"),
            (v2(0x2f, 0x11, &v4_block()), "command 15"),
            (v2(0x21, 0x41, &v4_block()), "family 4"),
            (v2(0x21, 0x13, &v4_block()), "transport 3"),
            (v2(0x21, 0x11, &v4_block()[..11]), "short IPv4 block"),
            (v2(0x21, 0x21, &[0; 35]), "short IPv6 block"),
            (v2(0x21, 0x31, &[0; 215]), "short UNIX block"),
        ] {
            assert!(
                matches!(parse(&buf), Err(Error::Invalid(_))),
                "{why}: {:?}",
                parse(&buf)
            );
        }
        // The version is checked as soon as its byte is there.
        let mut buf = V2_SIGNATURE.to_vec();
        buf.push(0x11);
        assert!(matches!(parse(&buf), Err(Error::Invalid(_))));
    }

    #[test]
    fn v2_tlvs_are_skipped_and_bounded() {
        let mut block = v4_block();
        block.extend(tlv(0x01, b"h2"));
        block.extend(tlv(0x02, b"example.com"));
        block.extend(tlv(0x04, b""));
        block.extend(tlv(0xE0, &[7; 300]));
        let buf = v2(0x21, 0x11, &block);
        let h = complete(&buf);
        assert_eq!(h.tlvs, 4);
        assert_eq!(h.len, buf.len());
        assert_eq!(h.addresses, addrs("192.0.2.7:40000", "198.51.100.1:443"));
        assert_prefixes_incomplete(&buf);

        // A TLV that runs past the header, or a header that ends inside a TLV's own head.
        let mut bad = v4_block();
        bad.extend(tlv(0x02, b"example.com"));
        bad.pop();
        assert!(matches!(
            parse(&v2(0x21, 0x11, &bad)),
            Err(Error::Invalid(_))
        ));
        let mut bad = v4_block();
        bad.extend_from_slice(&[0x02, 0x00]);
        assert!(matches!(
            parse(&v2(0x21, 0x11, &bad)),
            Err(Error::Invalid(_))
        ));

        // The size bound: the length field alone decides, before the bytes arrive.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11]);
        big.extend_from_slice(
            &u16::try_from(MAX_HEADER_LEN - 16)
                .expect("len")
                .to_be_bytes(),
        );
        assert_eq!(
            parse(&big),
            Ok(Parsed::Incomplete {
                total: Some(MAX_HEADER_LEN)
            })
        );
        let mut too_big = V2_SIGNATURE.to_vec();
        too_big.extend_from_slice(&[0x21, 0x11]);
        too_big.extend_from_slice(
            &u16::try_from(MAX_HEADER_LEN - 15)
                .expect("len")
                .to_be_bytes(),
        );
        assert_eq!(parse(&too_big), Err(Error::TooLong));
        assert_eq!(
            parse(&[too_big, vec![0; 70_000]].concat()),
            Err(Error::TooLong)
        );
    }

    #[test]
    fn crc32c_known_answer_and_checked_tlv() {
        assert_eq!(crc32c_finish(crc32c_update(!0, b"123456789")), 0xE306_9283);
        let mut block = v4_block();
        block.extend(tlv(0x02, b"example.com"));
        block.extend(tlv(TLV_CRC32C, &[0; 4]));
        let mut buf = v2(0x21, 0x11, &block);
        let crc = crc32c_finish(crc32c_update(!0, &buf));
        let at = buf.len() - 4;
        buf[at..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(complete(&buf).tlvs, 2);
        buf[20] ^= 1;
        assert_eq!(parse(&buf), Err(Error::Invalid("CRC32C mismatch")));
    }

    #[test]
    fn truncated_input_at_every_length_is_incomplete() {
        let headers = [
            encoded(Version::V1, addrs("192.0.2.7:40000", "198.51.100.1:443")),
            encoded(Version::V1, addrs("[2001:db8::7]:1", "[2001:db8::1]:2")),
            encoded(Version::V1, None),
            encoded(Version::V2, addrs("192.0.2.7:40000", "198.51.100.1:443")),
            encoded(Version::V2, addrs("[2001:db8::7]:1", "[2001:db8::1]:2")),
            encoded(Version::V2, None),
        ];
        for h in headers {
            assert_prefixes_incomplete(&h);
            assert_eq!(complete(&h).len, h.len());
        }
    }

    #[test]
    fn round_trips() {
        for a in [
            addrs("192.0.2.7:40000", "198.51.100.1:443"),
            addrs("0.0.0.0:0", "255.255.255.255:65535"),
            addrs("[2001:db8::7]:1", "[2001:db8::1]:2"),
            addrs("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[::]:0"),
            None,
        ] {
            for v in [Version::V1, Version::V2] {
                let buf = encoded(v, a);
                let h = complete(&buf);
                assert_eq!(
                    (h.version, h.addresses, h.len),
                    (v, a, buf.len()),
                    "{v:?} {a:?}"
                );
                crate::proxy_protocol::fuzzing::parse_header(&buf);
            }
        }
        assert_eq!(
            encoded(Version::V1, addrs("192.0.2.7:40000", "198.51.100.1:443")),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"
        );
    }

    #[test]
    fn mapped_and_mixed_families() {
        // A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6: sent as IPv4.
        let a = addrs("[::ffff:192.0.2.7]:5", "[::ffff:198.51.100.1]:80");
        assert_eq!(
            encoded(Version::V1, a),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5 80\r\n"
        );
        assert_eq!(
            complete(&encoded(Version::V2, a)).addresses,
            addrs("192.0.2.7:5", "198.51.100.1:80")
        );
        // One of each family: both as IPv6.
        let a = addrs("192.0.2.7:5", "[2001:db8::1]:80");
        assert_eq!(
            encoded(Version::V1, a),
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 5 80\r\n"
        );
        assert_eq!(
            complete(&encoded(Version::V2, a)).addresses,
            addrs("[::ffff:192.0.2.7]:5", "[2001:db8::1]:80")
        );
    }

    #[test]
    fn fuzz_property_holds_on_odd_inputs() {
        for buf in [
            &b""[..],
            b"PROXY UNKNOWN\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
            b"PROXY TCP6 ::1 ::1 1 1\r\n",
            b"\xff\xfe",
        ] {
            crate::proxy_protocol::fuzzing::parse_header(buf);
        }
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair: (what the test writes to, what tandem reads from).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        (c, s)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    async fn rest(s: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        out
    }

    #[tokio::test]
    async fn whole_header_then_data_stays_on_the_socket() {
        let (mut c, mut s) = pair().await;
        c.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nGET / HTTP/1.1\r\n")
            .await
            .expect("write");
        c.shutdown().await.expect("shutdown");
        let h = receive(&s, soon()).await.expect("header");
        assert_eq!(
            h.addresses.map(|a| a.source),
            Some("192.0.2.7:40000".parse().unwrap())
        );
        assert_eq!(rest(&mut s).await, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn fragmented_v1_is_read_to_its_crlf_and_no_further() {
        let (mut c, mut s) = pair().await;
        let writer = tokio::spawn(async move {
            for piece in [
                &b"PRO"[..],
                b"XY TCP6 2001:db8::7 ",
                b"2001:db8::1 1 2\r",
                b"\nhello",
            ] {
                c.write_all(piece).await.expect("write");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            c.shutdown().await.expect("shutdown");
        });
        let h = receive(&s, soon()).await.expect("header");
        assert_eq!(
            h.addresses.map(|a| a.destination),
            Some("[2001:db8::1]:2".parse().unwrap())
        );
        assert_eq!(rest(&mut s).await, b"hello");
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn fragmented_large_v2_is_read_to_its_length_and_no_further() {
        let mut header = Vec::new();
        encode(
            Version::V2,
            Some(Addresses {
                source: "192.0.2.7:1".parse().unwrap(),
                destination: "198.51.100.1:2".parse().unwrap(),
            }),
            &mut header,
        );
        // Grow it past the first peek's buffer with a NOOP TLV.
        let tlv_len = 600u16;
        header[15] += 3 + u8::try_from(tlv_len % 256).unwrap();
        header[14] += u8::try_from(tlv_len / 256).unwrap();
        header.push(0x04);
        header.extend_from_slice(&tlv_len.to_be_bytes());
        header.resize(header.len() + usize::from(tlv_len), 0);
        assert!(matches!(parse(&header), Ok(Parsed::Complete(h)) if h.len == header.len()));
        let (mut c, mut s) = pair().await;
        let h2 = header.clone();
        let writer = tokio::spawn(async move {
            for piece in [&h2[..10], &h2[10..300], &h2[300..], b"tail"] {
                c.write_all(piece).await.expect("write");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            c.shutdown().await.expect("shutdown");
        });
        let h = receive(&s, soon()).await.expect("header");
        assert_eq!((h.len, h.tlvs), (header.len(), 1));
        assert_eq!(rest(&mut s).await, b"tail");
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn silence_partial_headers_and_garbage_are_refused() {
        // Closed without a byte: silent (an upstream's TCP health check).
        let (c, s) = pair().await;
        drop(c);
        assert!(matches!(receive(&s, soon()).await, Err(Refused::Silent)));
        // Nothing in time.
        let (_c, s) = pair().await;
        let deadline = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            receive(&s, deadline).await,
            Err(Refused::Missing(_))
        ));
        // Half a header, then nothing in time; half a header, then closed.
        let (mut c, s) = pair().await;
        c.write_all(b"PROXY TCP4 192.0.2.7").await.expect("write");
        let deadline = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            receive(&s, deadline).await,
            Err(Refused::Missing(_))
        ));
        let (mut c, s) = pair().await;
        c.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21")
            .await
            .expect("write");
        c.shutdown().await.expect("shutdown");
        assert!(matches!(
            receive(&s, soon()).await,
            Err(Refused::Missing(_))
        ));
        // Not a header at all, at once or after a valid beginning.
        let (mut c, s) = pair().await;
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        assert!(matches!(
            receive(&s, soon()).await,
            Err(Refused::Malformed(Error::Signature))
        ));
        let (mut c, s) = pair().await;
        let writer = tokio::spawn(async move {
            c.write_all(b"PROXY TCP4 ").await.expect("write");
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.write_all(b"192.0.2.7 x\n").await.expect("write");
            c
        });
        assert!(matches!(
            receive(&s, soon()).await,
            Err(Refused::Malformed(Error::Invalid(_)))
        ));
        drop(writer.await);
    }
}
