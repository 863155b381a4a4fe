//! The VRRP advertisement codec: VRRPv3 (RFC 5798 section 5, unchanged on the wire by RFC
//! 9568) and VRRPv2 (RFC 3768 section 5), byte-compatible with keepalived.
//!
//! Pure and allocation-light: [`encode`] writes into a caller-owned buffer, [`decode`] takes
//! the IP payload plus what the IP layer said about it ([`IpMeta`]) and either returns the
//! advertisement or one named [`Discard`] reason per receive check of RFC 5798 section 7.1
//! (RFC 3768 section 7.1 for v2), so the daemon can count each one ([`DiscardCounters`]).
//! Decoding is total: no input panics, and only a complete, exactly sized, correctly
//! checksummed packet decodes.
//!
//! ```text
//!  v3 (RFC 5798 5.1)                      v2 (RFC 3768 5.1)
//!  0: version(4) type(4)                  0: version(4) type(4)
//!  1: VRID                                1: VRID
//!  2: priority                            2: priority
//!  3: count IPvX addrs                    3: count IP addrs
//!  4: rsvd(4) Max Adver Int(12, centis)   4: auth type   5: adver int (seconds)
//!  6: checksum                            6: checksum
//!  8: addresses (4 or 16 bytes each)      8: IPv4 addresses, then 8 bytes of auth data
//! ```
//!
//! What is left to the caller, on purpose: comparing the advertised addresses with the
//! configured ones (RFC 5798 7.1 only says a mismatch MAY be logged), RFC 3768 7.1's
//! "Adver Interval must equal ours" rule for v2 (the state machine knows its interval and
//! counts it), and dropping our own looped-back adverts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::types::{Advert, Centis, Received, Version};

/// The IP protocol number (IPv4) / Next Header (IPv6) of VRRP (RFC 5798 5.1.1.3, 5.1.2.3).
pub const IPPROTO_VRRP: u8 = 112;
/// The only TTL / Hop Limit a VRRP packet may be sent and received with (RFC 5798 5.1.1.3,
/// 7.1): it proves the sender is on the link.
pub const REQUIRED_TTL: u8 = 255;
/// The IPv4 multicast group adverts are sent to (RFC 5798 5.1.1.2, RFC 3768 5.2.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts are sent to (RFC 5798 5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Most IPv4 addresses in one advert: the count field is one octet. 255 of them still fit a
/// 1500-byte MTU (20 + 8 + 1020 + 8 bytes), so the octet is the binding limit.
pub const MAX_ADDRESSES_V4: usize = 255;
/// Most IPv6 addresses in one advert: keeps the packet within IPv6's minimum link MTU of
/// 1280 bytes (RFC 8200 5), 40 + 8 + 77 * 16 = 1280, so it crosses any IPv6 link
/// unfragmented: a lost fragment would lose the whole advert, every interval.
pub const MAX_ADDRESSES_V6: usize = 77;

/// The fixed part of both versions.
const HEADER_LEN: usize = 8;
/// v2's trailing Authentication Data (RFC 3768 5.3.10).
const V2_AUTH_DATA_LEN: usize = 8;
/// The only packet type (RFC 5798 5.2.2): "Packets with unknown type MUST be discarded."
const TYPE_ADVERTISEMENT: u8 = 1;
/// v3's Max Adver Int is the low 12 bits of octets 4-5 (RFC 5798 5.2.7).
const V3_INTERVAL_MASK: u16 = 0x0fff;
/// v2 auth types (RFC 3768 5.3.6 keeps 0; RFC 2338 defined 1 and 2).
const AUTH_NONE: u8 = 0;
const AUTH_SIMPLE_TEXT: u8 = 1;

/// How to checksum a VRRPv3 advertisement sent over IPv4. (IPv6 always includes the RFC
/// 8200 8.1 pseudo-header, and v2 never includes one: those are not in dispute.)
///
/// Why there is a choice: RFC 5798 5.2.8 says the checksum covers "the entire VRRP message
/// starting with the version field and a 'pseudo-header' as defined in Section 8.1 of
/// \[RFC2460\]", but RFC 2460 only defines an IPv6 pseudo-header. Implementations split:
/// keepalived (by default; its `v3_checksum_as_v2` option turns it off) and FRRouting (its
/// `checksum-with-ipv4-pseudoheader`, on by default) prepend the IPv4 pseudo-header (source,
/// destination, zero, protocol 112, VRRP length); Cisco and others do not.
///
/// RFC 9568 (April 2024, obsoletes RFC 5798) settles it the other way. Its section 5.2.8
/// reads: "For the IPv4 address family, the checksum calculation only includes the VRRP
/// message starting with the Version field and ending after the last IPv4 address (refer
/// to Section 5.2)." and "For the IPv6 address family, the checksum calculation also
/// includes a prepended 'pseudo-header', as defined in Section 8.1 of \[RFC8200\]." (Quoted
/// identically by two independent implementers' RFC 9568 compliance notes; the change is
/// what keepalived issue #2324 and FRRouting issue #14024, both July 2023, report against
/// the rfc5798bis draft.) So RFC 9568 is the "without" form, while keepalived sends, and
/// unless `v3_checksum_as_v2` is set requires, the "with" form.
///
/// tandem therefore sends keepalived's form by default and accepts both on receive (see
/// [`decode`]). Tested against keepalived 2.2.7 with default settings: it discarded the
/// message-only form ("Invalid VRRPv3 checksum") and accepted the pseudo-header form
/// (tests/vectors/keepalived_v3_ipv4_checksum_forms.txt, which both modes reproduce).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ChecksumMode {
    /// IPv4 pseudo-header included: RFC 5798 as keepalived and FRRouting read it.
    #[default]
    Keepalived,
    /// VRRP message only: RFC 9568 5.2.8 (and Cisco-style RFC 5798 implementations).
    Rfc9568,
}

/// Why [`encode`] refused: each is a configuration the wire cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// Source, destination and virtual addresses are not all of one family: VRRP infers the
    /// addresses' family from the IP packet's (RFC 5798 5.2.5).
    FamilyMismatch,
    /// VRRPv2 is IPv4-only (RFC 3768 1).
    V2OverIpv6,
    /// An advert must carry at least one address (RFC 5798 5.2.9: "one or more"); peers
    /// (and [`decode`]) discard empty ones.
    NoAddresses,
    /// More addresses than the count octet or the link MTU allows ([`MAX_ADDRESSES_V4`],
    /// [`MAX_ADDRESSES_V6`]).
    TooManyAddresses { count: usize, max: usize },
    /// Zero, or beyond the field: v3 carries 1..=4095 centiseconds (RFC 5798 5.2.7, and RFC
    /// 9568 erratum 8301 makes 0 invalid), v2 1..=255 seconds (RFC 3768 5.3.7).
    IntervalOutOfRange { interval: Centis },
    /// v2's interval is in whole seconds (RFC 3768 5.3.7): a fraction would be silently
    /// rounded, and the peer's equality check (RFC 3768 7.1) would then fail.
    IntervalNotWholeSeconds { interval: Centis },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FamilyMismatch => f.write_str("addresses of mixed IP families"),
            Self::V2OverIpv6 => f.write_str("VRRPv2 cannot carry IPv6"),
            Self::NoAddresses => f.write_str("no virtual address to advertise"),
            Self::TooManyAddresses { count, max } => {
                write!(f, "{count} virtual addresses, at most {max} fit one advert")
            }
            Self::IntervalOutOfRange { interval } => {
                write!(f, "advert interval {} cs out of range", interval.0)
            }
            Self::IntervalNotWholeSeconds { interval } => {
                write!(
                    f,
                    "VRRPv2 advert interval {} cs is not whole seconds",
                    interval.0
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// What the IP layer said about a received packet (from the IP header or, on Linux, the
/// `IP_TTL` / `IPV6_HOPLIMIT` control messages and the socket address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpMeta {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl_or_hop_limit: u8,
}

/// What the receiving instance is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expect {
    pub version: Version,
    pub vrid: u8,
    /// v2 only: the simple text password (auth type 1, RFC 2338 5.3.6), zero-padded to 8
    /// octets as keepalived's `auth_pass` is (see [`pad_password`]). `None`: no
    /// authentication (type 0). Ignored for v3, which has no authentication field.
    pub password: Option<[u8; 8]>,
    /// This router is the address owner (configured priority 255): RFC 5798 7.1 requires
    /// it to discard every advert for the VRID, since no one can outrank it.
    pub local_is_owner: bool,
}

/// Why a received packet was discarded: one reason per receive check, in the order
/// [`decode`] makes them (RFC 5798 7.1's order, with the parsing prerequisites first).
/// Named `Discard` (RFC 5798's word) rather than `Drop`, which would shadow the
/// `std::ops::Drop` trait wherever it is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Discard {
    /// TTL / Hop Limit is not 255 (RFC 5798 7.1, RFC 3768 7.1): possibly off-link.
    BadTtl,
    /// Shorter than the 8-octet fixed header.
    TooShort,
    /// Version is not the configured one (RFC 5798 7.1, RFC 3768 7.1).
    BadVersion,
    /// Type is not 1, ADVERTISEMENT (RFC 5798 5.2.2).
    BadType,
    /// IP source and destination differ in family, or v2 arrived over IPv6.
    FamilyMismatch,
    /// Count IPvX Addrs is zero (RFC 5798 5.2.9 requires one or more).
    AddressCountZero,
    /// Length disagrees with the address count: "MUST verify that the received packet
    /// contains the complete VRRP packet (including fixed fields, and IPvX address(es))"
    /// (RFC 5798 7.1); longer is refused too, so only exact packets decode.
    BadLength,
    /// Checksum wrong (RFC 5798 7.1, RFC 3768 7.1).
    BadChecksum,
    /// VRID not the configured one (RFC 5798 7.1).
    WrongVrid,
    /// We are the address owner, which discards all adverts for the VRID (RFC 5798 7.1).
    LocalOwner,
    /// Advertisement interval 0 (RFC 9568 erratum 8301; it would make every timer zero).
    ZeroInterval,
    /// v2 auth type differs from the configured method (RFC 3768 7.1), e.g. a password
    /// expected and none sent, or the reverse.
    AuthTypeMismatch,
    /// v2 auth type 2 (IP Authentication Header, RFC 2338) or an unknown type.
    UnsupportedAuth,
    /// v2 auth type 1 with the wrong password (RFC 2338 7.1).
    BadPassword,
}

impl Discard {
    /// Every reason, in [`Discard::index`] order.
    pub const ALL: [Discard; 14] = [
        Self::BadTtl,
        Self::TooShort,
        Self::BadVersion,
        Self::BadType,
        Self::FamilyMismatch,
        Self::AddressCountZero,
        Self::BadLength,
        Self::BadChecksum,
        Self::WrongVrid,
        Self::LocalOwner,
        Self::ZeroInterval,
        Self::AuthTypeMismatch,
        Self::UnsupportedAuth,
        Self::BadPassword,
    ];

    /// Stable snake_case name for metrics labels and logs. Never rename one: dashboards
    /// and alerts key on them.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadTtl => "bad_ttl",
            Self::TooShort => "too_short",
            Self::BadVersion => "bad_version",
            Self::BadType => "bad_type",
            Self::FamilyMismatch => "family_mismatch",
            Self::AddressCountZero => "address_count_zero",
            Self::BadLength => "bad_length",
            Self::BadChecksum => "bad_checksum",
            Self::WrongVrid => "wrong_vrid",
            Self::LocalOwner => "local_owner",
            Self::ZeroInterval => "zero_interval",
            Self::AuthTypeMismatch => "auth_type_mismatch",
            Self::UnsupportedAuth => "unsupported_auth",
            Self::BadPassword => "bad_password",
        }
    }

    /// Position in [`Discard::ALL`] and in [`DiscardCounters`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Discard {}

/// One counter per [`Discard`] reason. Plain integers: the shell owns it and reads it for
/// the admin API, so no atomics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscardCounters {
    counts: [u64; Discard::ALL.len()],
}

impl DiscardCounters {
    pub fn record(&mut self, reason: &Discard) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(1);
    }

    pub fn get(&self, reason: Discard) -> u64 {
        self.counts[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// `(metric name, count)` for every reason, zeros included, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Discard::ALL.iter().map(|r| (r.as_str(), self.get(*r)))
    }
}

/// Zero-pads a simple text password to the 8-octet Authentication Data field (RFC 2338
/// 5.3.6), as keepalived does with `auth_pass`. `None` if it is longer than 8 octets.
pub fn pad_password(password: &[u8]) -> Option<[u8; 8]> {
    let mut padded = [0u8; 8];
    padded.get_mut(..password.len())?.copy_from_slice(password);
    Some(padded)
}

/// The VRID octet, without any check: lets the shell pick the instance (and its
/// [`Expect`]) before decoding, when several VRIDs share an interface.
pub fn peek_vrid(bytes: &[u8]) -> Option<u8> {
    bytes.get(1).copied()
}

// ---- encoding ---------------------------------------------------------------------------

/// Writes `advert` as sent from `src` to `dst` into `out` (cleared first; left untouched on
/// error). `src` must be the source address the packet will really carry (the primary
/// IPv4 address, or the IPv6 link-local, RFC 5798 7.2) because the checksum covers it
/// (always for IPv6; for v3 over IPv4 when `mode` is [`ChecksumMode::Keepalived`]). v2
/// adverts carry auth type 0 and zero Authentication Data (RFC 3768 5.3.6, 5.3.10).
pub fn encode(
    advert: &Advert,
    src: IpAddr,
    dst: IpAddr,
    mode: ChecksumMode,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let family = encode_family(advert, src, dst)?;
    check_address_count(advert.addresses.len(), family)?;
    let interval_field = interval_field(advert.version, advert.interval)?;
    let len = message_len(advert.version, family, advert.addresses.len());
    out.clear();
    out.reserve(len);
    out.push((version_nibble(advert.version) << 4) | TYPE_ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    // Checked above: at most MAX_ADDRESSES_V4 (255).
    out.push(advert.addresses.len() as u8);
    out.extend_from_slice(&interval_field);
    out.extend_from_slice(&[0, 0]); // checksum, filled in below
    for address in &advert.addresses {
        push_address(out, address);
    }
    if advert.version == Version::V2 {
        out.extend_from_slice(&[0; V2_AUTH_DATA_LEN]);
    }
    let pseudo = pseudo_header_sum(advert.version, src, dst, len, mode);
    let checksum = internet_checksum(pseudo, out);
    out[6..8].copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

/// The one family of source, destination and addresses; v2 must be IPv4.
fn encode_family(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Family, EncodeError> {
    let family = Family::of(src);
    let same = |a: &IpAddr| Family::of(*a) == family;
    if !same(&dst) || !advert.addresses.iter().all(same) {
        return Err(EncodeError::FamilyMismatch);
    }
    if advert.version == Version::V2 && family == Family::V6 {
        return Err(EncodeError::V2OverIpv6);
    }
    Ok(family)
}

fn check_address_count(count: usize, family: Family) -> Result<(), EncodeError> {
    let max = family.max_addresses();
    match count {
        0 => Err(EncodeError::NoAddresses),
        n if n > max => Err(EncodeError::TooManyAddresses { count: n, max }),
        _ => Ok(()),
    }
}

/// Octets 4-5: v3's rsvd (0, RFC 5798 5.2.6) + Max Adver Int; v2's auth type 0 + seconds.
fn interval_field(version: Version, interval: Centis) -> Result<[u8; 2], EncodeError> {
    let out_of_range = EncodeError::IntervalOutOfRange { interval };
    match version {
        Version::V3 if (1..=V3_INTERVAL_MASK).contains(&interval.0) => Ok(interval.0.to_be_bytes()),
        Version::V3 => Err(out_of_range),
        // Not `is_multiple_of`: the workspace's MSRV (1.85) predates it.
        Version::V2 if (interval.0 / 100) * 100 != interval.0 => {
            Err(EncodeError::IntervalNotWholeSeconds { interval })
        }
        Version::V2 => match u8::try_from(interval.0 / 100) {
            Ok(seconds) if seconds > 0 => Ok([AUTH_NONE, seconds]),
            _ => Err(out_of_range),
        },
    }
}

fn push_address(out: &mut Vec<u8>, address: &IpAddr) {
    match address {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

// ---- decoding ---------------------------------------------------------------------------

/// Decodes one VRRP message (the IP payload) received with `ip`, for an instance configured
/// as `expect`, making RFC 5798 7.1's checks (RFC 3768 7.1's for v2) in that order and
/// returning the first that fails.
///
/// A v3 advert over IPv4 is accepted with either checksum form (see [`ChecksumMode`]):
/// keepalived and FRRouting send the pseudo-header form, RFC 9568 implementations the
/// message-only form, and accepting both costs nothing (the checksum only guards against
/// corruption, and a corrupted packet matching the other form is a 1-in-65535 event on top
/// of the corruption itself). Total: never panics, whatever `bytes` holds.
pub fn decode(bytes: &[u8], ip: &IpMeta, expect: &Expect) -> Result<Received, Discard> {
    if ip.ttl_or_hop_limit != REQUIRED_TTL {
        return Err(Discard::BadTtl);
    }
    let header = Header::parse(bytes)?;
    let version = header.version(expect.version)?;
    if header.kind != TYPE_ADVERTISEMENT {
        return Err(Discard::BadType);
    }
    let family = receive_family(ip, version)?;
    if header.count == 0 {
        return Err(Discard::AddressCountZero);
    }
    let addresses_end = HEADER_LEN + usize::from(header.count) * family.address_len();
    if bytes.len() != message_len(version, family, usize::from(header.count)) {
        return Err(Discard::BadLength);
    }
    verify_checksum(bytes, ip, version)?;
    check_identity(&header, expect)?;
    let interval = header.interval(version)?;
    if version == Version::V2 {
        check_v2_auth(
            header.auth_type(),
            bytes.get(addresses_end..),
            expect.password,
        )?;
    }
    let addresses = parse_addresses(bytes.get(HEADER_LEN..addresses_end), family);
    Ok(Received {
        source: ip.src,
        advert: Advert {
            version,
            vrid: header.vrid,
            priority: header.priority,
            interval,
            addresses,
        },
    })
}

/// Which checksum form a v3-over-IPv4 packet carries, if its checksum verifies in one:
/// lets the shell log which kind of peer it hears (and follow it, if configured to).
/// `None` for anything else (v2, IPv6, too short, or a bad checksum).
pub fn checksum_mode_of(bytes: &[u8], ip: &IpMeta) -> Option<ChecksumMode> {
    let header = Header::parse(bytes).ok()?;
    let (IpAddr::V4(_), IpAddr::V4(_)) = (ip.src, ip.dst) else {
        return None;
    };
    if header.version_nibble != version_nibble(Version::V3) {
        return None;
    }
    [ChecksumMode::Keepalived, ChecksumMode::Rfc9568]
        .into_iter()
        .find(|mode| sums_to_zero(bytes, ip, Version::V3, *mode))
}

/// The fixed 8 octets, split into fields; nothing is validated yet.
struct Header {
    version_nibble: u8,
    kind: u8,
    vrid: u8,
    priority: u8,
    count: u8,
    /// Octets 4-5: v3 rsvd + Max Adver Int, v2 auth type + Adver Int.
    word: [u8; 2],
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Self, Discard> {
        let Some(&[first, vrid, priority, count, w0, w1, _, _]) = bytes.first_chunk() else {
            return Err(Discard::TooShort);
        };
        Ok(Self {
            version_nibble: first >> 4,
            kind: first & 0x0f,
            vrid,
            priority,
            count,
            word: [w0, w1],
        })
    }

    /// "MUST verify that the VRRP version is 3" (RFC 5798 7.1), or 2 if so configured.
    fn version(&self, expected: Version) -> Result<Version, Discard> {
        if self.version_nibble == version_nibble(expected) {
            Ok(expected)
        } else {
            Err(Discard::BadVersion)
        }
    }

    /// v3: the rsvd bits are ignored on reception (RFC 5798 5.2.6). v2: seconds.
    fn interval(&self, version: Version) -> Result<Centis, Discard> {
        let centis = match version {
            Version::V3 => u16::from_be_bytes(self.word) & V3_INTERVAL_MASK,
            Version::V2 => u16::from(self.word[1]) * 100,
        };
        if centis == 0 {
            return Err(Discard::ZeroInterval);
        }
        Ok(Centis(centis))
    }

    fn auth_type(&self) -> u8 {
        self.word[0]
    }
}

/// The family the addresses must have: the IP packet's (RFC 5798 5.2.5); v2 is IPv4-only.
fn receive_family(ip: &IpMeta, version: Version) -> Result<Family, Discard> {
    let family = Family::of(ip.src);
    if Family::of(ip.dst) != family || (version == Version::V2 && family == Family::V6) {
        return Err(Discard::FamilyMismatch);
    }
    Ok(family)
}

/// RFC 5798 7.1: "MUST verify the VRRP checksum"; v3 over IPv4 in either form.
fn verify_checksum(bytes: &[u8], ip: &IpMeta, version: Version) -> Result<(), Discard> {
    let ok = sums_to_zero(bytes, ip, version, ChecksumMode::Keepalived)
        || (version == Version::V3
            && ip.src.is_ipv4()
            && sums_to_zero(bytes, ip, version, ChecksumMode::Rfc9568));
    if ok {
        Ok(())
    } else {
        Err(Discard::BadChecksum)
    }
}

/// A message whose checksum field is right sums, with its pseudo-header, to all ones.
fn sums_to_zero(bytes: &[u8], ip: &IpMeta, version: Version, mode: ChecksumMode) -> bool {
    let pseudo = pseudo_header_sum(version, ip.src, ip.dst, bytes.len(), mode);
    internet_checksum(pseudo, bytes) == 0
}

/// RFC 5798 7.1: the VRID is configured here, and we are not its address owner.
fn check_identity(header: &Header, expect: &Expect) -> Result<(), Discard> {
    if header.vrid != expect.vrid {
        return Err(Discard::WrongVrid);
    }
    if expect.local_is_owner {
        return Err(Discard::LocalOwner);
    }
    Ok(())
}

/// RFC 3768 7.1: "MUST verify that the Auth Type matches the locally configured
/// authentication method"; for simple text (RFC 2338 7.1) the Authentication Data must
/// equal the configured password. With type 0 the data is ignored (RFC 3768 5.3.10). The
/// comparison need not be constant-time: the password crosses the wire in clear anyway.
fn check_v2_auth(
    auth_type: u8,
    auth_data: Option<&[u8]>,
    password: Option<[u8; 8]>,
) -> Result<(), Discard> {
    match (auth_type, password) {
        (AUTH_NONE, None) => Ok(()),
        (AUTH_SIMPLE_TEXT, Some(expected)) if auth_data == Some(&expected[..]) => Ok(()),
        (AUTH_SIMPLE_TEXT, Some(_)) => Err(Discard::BadPassword),
        (AUTH_NONE | AUTH_SIMPLE_TEXT, _) => Err(Discard::AuthTypeMismatch),
        _ => Err(Discard::UnsupportedAuth),
    }
}

/// The address list; `region` has been length-checked, so `None` cannot happen, but an
/// empty list is returned rather than panicking if it ever did.
fn parse_addresses(region: Option<&[u8]>, family: Family) -> Vec<IpAddr> {
    let region = region.unwrap_or_default();
    region
        .chunks_exact(family.address_len())
        .filter_map(|chunk| match family {
            Family::V4 => <[u8; 4]>::try_from(chunk).ok().map(IpAddr::from),
            Family::V6 => <[u8; 16]>::try_from(chunk).ok().map(IpAddr::from),
        })
        .collect()
}

// ---- shared ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    fn address_len(self) -> usize {
        match self {
            Self::V4 => 4,
            Self::V6 => 16,
        }
    }

    fn max_addresses(self) -> usize {
        match self {
            Self::V4 => MAX_ADDRESSES_V4,
            Self::V6 => MAX_ADDRESSES_V6,
        }
    }
}

fn version_nibble(version: Version) -> u8 {
    match version {
        Version::V2 => 2,
        Version::V3 => 3,
    }
}

/// The whole VRRP message's length for `count` addresses.
fn message_len(version: Version, family: Family, count: usize) -> usize {
    let auth = match version {
        Version::V2 => V2_AUTH_DATA_LEN,
        Version::V3 => 0,
    };
    HEADER_LEN + count * family.address_len() + auth
}

/// The one's complement sum of the pseudo-header the checksum covers, 0 for none:
/// v2 has none (RFC 3768 5.3.8: "the entire VRRP message"); v3 over IPv6 always has RFC
/// 8200 8.1's (source, destination, 32-bit upper-layer length, 3 zero octets, next header
/// 112); v3 over IPv4 has RFC 768/793's shape (source, destination, zero, protocol 112,
/// 16-bit length) only in [`ChecksumMode::Keepalived`].
fn pseudo_header_sum(
    version: Version,
    src: IpAddr,
    dst: IpAddr,
    len: usize,
    mode: ChecksumMode,
) -> u64 {
    if version == Version::V2 {
        return 0;
    }
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // Bounded by the length checks (at most 8 + 255 * 16 octets).
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            let sum = ones_sum(ones_sum(0, &s.octets()), &d.octets());
            ones_sum(sum, &len.to_be_bytes()) + u64::from(IPPROTO_VRRP)
        }
        (IpAddr::V4(s), IpAddr::V4(d)) if mode == ChecksumMode::Keepalived => {
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            let sum = ones_sum(ones_sum(0, &s.octets()), &d.octets());
            ones_sum(sum, &len.to_be_bytes()) + u64::from(IPPROTO_VRRP)
        }
        _ => 0,
    }
}

/// Adds `bytes` as big-endian 16-bit words (an odd last octet padded with zero, RFC 1071)
/// to a wide accumulator; carries are folded at the end.
fn ones_sum(acc: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    let mut acc = words.by_ref().fold(acc, |acc, w| {
        acc + u64::from(u16::from_be_bytes([w[0], w[1]]))
    });
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// RFC 1071: the one's complement of the one's complement sum of `pseudo` and `bytes`.
/// Over a message whose checksum field is already right, this is 0.
fn internet_checksum(pseudo: u64, bytes: &[u8]) -> u16 {
    let mut sum = ones_sum(pseudo, bytes);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 0xffff.
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 4.1's worked example: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(0, &bytes), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(internet_checksum(0, &[0x12]), !0x1200);
        assert_eq!(internet_checksum(0, &[]), 0xffff);
    }
}
