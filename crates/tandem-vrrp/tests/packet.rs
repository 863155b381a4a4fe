//! The VRRP codec against hand-computed vectors, real keepalived captures
//! (tests/vectors/*.txt, see capture.sh there), one minimal mutation per discard reason,
//! and a deterministic differential fuzz against a deliberately naive reference decoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tandem_vrrp::packet::{
    checksum_mode_of, decode, encode, pad_password, peek_vrid, ChecksumMode, Discard,
    DiscardCounters, EncodeError, Expect, IpMeta, MAX_ADDRESSES_V6, MULTICAST_V4, MULTICAST_V6,
};
use tandem_vrrp::{Advert, Centis, Received, Version};

// ---- helpers ----------------------------------------------------------------------------

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last))
}

fn meta4() -> IpMeta {
    IpMeta {
        src: IpAddr::V4(SRC4),
        dst: IpAddr::V4(MULTICAST_V4),
        ttl_or_hop_limit: 255,
    }
}

fn meta6() -> IpMeta {
    IpMeta {
        src: IpAddr::V6(SRC6),
        dst: IpAddr::V6(MULTICAST_V6),
        ttl_or_hop_limit: 255,
    }
}

fn expect(version: Version, vrid: u8) -> Expect {
    Expect {
        version,
        vrid,
        password: None,
        local_is_owner: false,
    }
}

fn advert(version: Version, vrid: u8, interval: u16, addresses: Vec<IpAddr>) -> Advert {
    Advert {
        version,
        vrid,
        priority: 100,
        interval: Centis(interval),
        addresses,
    }
}

fn encoded(advert: &Advert, ip: &IpMeta, mode: ChecksumMode) -> Vec<u8> {
    let mut out = Vec::new();
    encode(advert, ip.src, ip.dst, mode, &mut out).unwrap();
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Naive RFC 1071 sum, written independently of the library: word by word, folding as it
/// goes. A correct message (checksum included) sums to 0xffff.
fn naive_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for i in (0..data.len()).step_by(2) {
        let hi = u32::from(data[i]) << 8;
        let lo = data.get(i + 1).map_or(0, |b| u32::from(*b));
        sum += hi | lo;
        if sum > 0xffff {
            sum -= 0xffff;
        }
    }
    sum as u16
}

/// The pseudo-header (RFC 8200 8.1 for IPv6; src, dst, 0, 112, len for IPv4), as bytes.
fn pseudo_header(ip: &IpMeta, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (ip.src, ip.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend([0, 112]);
            p.extend((len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend((len as u32).to_be_bytes());
            p.extend([0, 0, 0, 112]);
        }
        _ => {}
    }
    p
}

fn sums_ok(bytes: &[u8], ip: &IpMeta, with_pseudo: bool) -> bool {
    let mut all = if with_pseudo {
        pseudo_header(ip, bytes.len())
    } else {
        Vec::new()
    };
    all.extend_from_slice(bytes);
    naive_sum(&all) == 0xffff
}

/// Rewrites the checksum field so the packet verifies (with or without pseudo-header).
fn fix_checksum(bytes: &mut [u8], ip: &IpMeta, with_pseudo: bool) {
    if bytes.len() < 8 {
        return;
    }
    bytes[6] = 0;
    bytes[7] = 0;
    let mut all = if with_pseudo {
        pseudo_header(ip, bytes.len())
    } else {
        Vec::new()
    };
    all.extend_from_slice(bytes);
    let c = !naive_sum(&all);
    bytes[6..8].copy_from_slice(&c.to_be_bytes());
}

/// The reference decoder: RFC 5798 7.1 / RFC 3768 7.1 as a flat list, no shared code.
fn reference(bytes: &[u8], ip: &IpMeta, ex: &Expect) -> Option<Received> {
    if ip.ttl_or_hop_limit != 255 || bytes.len() < 8 {
        return None;
    }
    let want = match ex.version {
        Version::V2 => 2,
        Version::V3 => 3,
    };
    if bytes[0] >> 4 != want || bytes[0] & 0x0f != 1 {
        return None;
    }
    let is6 = match (ip.src, ip.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return None,
    };
    if is6 && want == 2 {
        return None;
    }
    let n = usize::from(bytes[3]);
    let alen = if is6 { 16 } else { 4 };
    let auth = if want == 2 { 8 } else { 0 };
    if n == 0 || bytes.len() != 8 + n * alen + auth {
        return None;
    }
    let sum_ok = match (want, is6) {
        (2, _) => sums_ok(bytes, ip, false),
        (_, true) => sums_ok(bytes, ip, true),
        _ => sums_ok(bytes, ip, true) || sums_ok(bytes, ip, false),
    };
    if !sum_ok || bytes[1] != ex.vrid || ex.local_is_owner {
        return None;
    }
    let interval = if want == 2 {
        u16::from(bytes[5]) * 100
    } else {
        (u16::from(bytes[4] & 0x0f) << 8) | u16::from(bytes[5])
    };
    if interval == 0 {
        return None;
    }
    if want == 2 {
        let data = &bytes[bytes.len() - 8..];
        match (bytes[4], ex.password) {
            (0, None) => {}
            (1, Some(p)) if data == p => {}
            _ => return None,
        }
    }
    let addresses = bytes[8..8 + n * alen]
        .chunks(alen)
        .map(|c| {
            if is6 {
                IpAddr::from(<[u8; 16]>::try_from(c).unwrap())
            } else {
                IpAddr::from(<[u8; 4]>::try_from(c).unwrap())
            }
        })
        .collect();
    Some(Received {
        source: ip.src,
        advert: Advert {
            version: ex.version,
            vrid: bytes[1],
            priority: bytes[2],
            interval: Centis(interval),
            addresses,
        },
    })
}

// ---- keepalived vectors -----------------------------------------------------------------

/// One captured packet: the IP layer's view and the VRRP message.
struct Vector {
    ip: IpMeta,
    bytes: Vec<u8>,
}

fn vectors(text: &str) -> Vec<Vector> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Vector {
                ip: IpMeta {
                    src: f[0].parse().unwrap(),
                    dst: f[1].parse().unwrap(),
                    ttl_or_hop_limit: f[2].parse().unwrap(),
                },
                bytes: hex(f[3]),
            }
        })
        .collect()
}

fn only_vector(text: &str) -> Vector {
    let mut all = vectors(text);
    assert_eq!(
        all.len(),
        1,
        "keepalived's adverts do not change while master"
    );
    all.remove(0)
}

const V2_IPV4: &str = include_str!("vectors/v2_ipv4.txt");
const V2_IPV4_PASS: &str = include_str!("vectors/v2_ipv4_pass.txt");
const V3_IPV4: &str = include_str!("vectors/v3_ipv4.txt");
const V3_IPV6: &str = include_str!("vectors/v3_ipv6.txt");

#[test]
fn keepalived_v2_ipv4_decodes_and_reencodes_identically() {
    let v = only_vector(V2_IPV4);
    let rx = decode(&v.bytes, &v.ip, &expect(Version::V2, 51)).unwrap();
    assert_eq!(rx.source, v4(1));
    let want = Advert {
        priority: 150,
        ..advert(Version::V2, 51, 100, vec![v4(100), v4(101)])
    };
    assert_eq!(rx.advert, want);
    assert_eq!(encoded(&want, &v.ip, ChecksumMode::Keepalived), v.bytes);
}

#[test]
fn keepalived_v2_simple_password_accepted_only_with_that_password() {
    let v = only_vector(V2_IPV4_PASS);
    let mut ex = expect(Version::V2, 52);
    ex.password = pad_password(b"tandem1");
    let rx = decode(&v.bytes, &v.ip, &ex).unwrap();
    assert_eq!(rx.advert, advert(Version::V2, 52, 200, vec![v4(102)]));
    ex.password = pad_password(b"tandem2");
    assert_eq!(decode(&v.bytes, &v.ip, &ex), Err(Discard::BadPassword));
    ex.password = None;
    assert_eq!(decode(&v.bytes, &v.ip, &ex), Err(Discard::AuthTypeMismatch));
}

#[test]
fn keepalived_v3_ipv4_uses_the_pseudo_header_and_we_match_it() {
    let v = only_vector(V3_IPV4);
    let rx = decode(&v.bytes, &v.ip, &expect(Version::V3, 53)).unwrap();
    let want = Advert {
        priority: 200,
        ..advert(Version::V3, 53, 50, vec![v4(110), v4(111), v4(112)])
    };
    assert_eq!(rx.advert, want);
    assert_eq!(
        checksum_mode_of(&v.bytes, &v.ip),
        Some(ChecksumMode::Keepalived)
    );
    assert_eq!(encoded(&want, &v.ip, ChecksumMode::Keepalived), v.bytes);
    assert_ne!(encoded(&want, &v.ip, ChecksumMode::Rfc9568), v.bytes);
}

#[test]
fn keepalived_v3_ipv6_decodes_and_reencodes_identically() {
    let v = only_vector(V3_IPV6);
    assert_eq!(v.ip, meta6());
    let rx = decode(&v.bytes, &v.ip, &expect(Version::V3, 54)).unwrap();
    let link_local = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100));
    let want = Advert {
        priority: 120,
        ..advert(Version::V3, 54, 100, vec![link_local, v6(0x100)])
    };
    assert_eq!(rx.advert, want);
    assert_eq!(rx.source, IpAddr::V6(SRC6));
    assert_eq!(encoded(&want, &v.ip, ChecksumMode::Keepalived), v.bytes);
    // The mode is only about IPv4: IPv6 always has the pseudo-header.
    assert_eq!(encoded(&want, &v.ip, ChecksumMode::Rfc9568), v.bytes);
    assert_eq!(checksum_mode_of(&v.bytes, &v.ip), None);
}

// ---- hand-computed checksums ------------------------------------------------------------

/// v2, VRID 1, priority 100, 1 address 198.51.100.10, 1 s. Words: 2101 6401 0001 c633 640a
/// (auth data zero): 0x2101 + 0x6401 + 0x0001 + 0xc633 + 0x640a = 0x1af40, folded 0xaf41,
/// complemented 0x50be.
#[test]
fn v2_checksum_by_hand() {
    let a = advert(Version::V2, 1, 100, vec![v4(10)]);
    let bytes = encoded(&a, &meta4(), ChecksumMode::Keepalived);
    assert_eq!(
        bytes,
        hex("21016401000150bec633640a0000000000000000"),
        "v2 has no pseudo-header in either mode"
    );
    assert_eq!(encoded(&a, &meta4(), ChecksumMode::Rfc9568), bytes);
}

/// v3, VRID 1, priority 100, 1 address 198.51.100.10, 100 cs, 198.51.100.1 -> 224.0.0.18.
/// Message words 3101 6401 0064 c633 640a sum to 0x1bfa3, folded 0xbfa4: message-only
/// checksum 0x405b. Pseudo-header c633 6401 e000 0012 0070 000c sums to 0x20ac2, folded
/// 0x0ac4; 0xbfa4 + 0x0ac4 = 0xca68: with-pseudo-header checksum 0x3597.
#[test]
fn v3_ipv4_checksums_by_hand() {
    let a = advert(Version::V3, 1, 100, vec![v4(10)]);
    let with = encoded(&a, &meta4(), ChecksumMode::Keepalived);
    let without = encoded(&a, &meta4(), ChecksumMode::Rfc9568);
    assert_eq!(with, hex("3101640100643597c633640a"));
    assert_eq!(without, hex("310164010064405bc633640a"));
}

#[test]
fn both_v3_ipv4_checksum_forms_are_accepted() {
    let a = advert(Version::V3, 7, 100, vec![v4(10), v4(11)]);
    for mode in [ChecksumMode::Keepalived, ChecksumMode::Rfc9568] {
        let bytes = encoded(&a, &meta4(), mode);
        let rx = decode(&bytes, &meta4(), &expect(Version::V3, 7)).unwrap();
        assert_eq!(rx.advert, a);
        assert_eq!(checksum_mode_of(&bytes, &meta4()), Some(mode));
    }
}

#[test]
fn ipv6_without_pseudo_header_is_rejected() {
    let a = advert(Version::V3, 7, 100, vec![v6(10)]);
    let mut bytes = encoded(&a, &meta6(), ChecksumMode::Keepalived);
    fix_checksum(&mut bytes, &meta6(), false);
    let got = decode(&bytes, &meta6(), &expect(Version::V3, 7));
    assert_eq!(got, Err(Discard::BadChecksum));
}

#[test]
fn v2_with_a_pseudo_header_checksum_is_rejected() {
    let a = advert(Version::V2, 7, 100, vec![v4(10)]);
    let mut bytes = encoded(&a, &meta4(), ChecksumMode::Keepalived);
    fix_checksum(&mut bytes, &meta4(), true);
    let got = decode(&bytes, &meta4(), &expect(Version::V2, 7));
    assert_eq!(got, Err(Discard::BadChecksum));
}

// ---- round trips and encode errors ------------------------------------------------------

#[test]
fn round_trips_every_version_and_family() {
    let cases = [
        (advert(Version::V2, 1, 300, vec![v4(10), v4(11)]), meta4()),
        (advert(Version::V3, 2, 4095, vec![v4(10)]), meta4()),
        (
            advert(Version::V3, 3, 1, vec![v6(1), v6(2), v6(3)]),
            meta6(),
        ),
    ];
    for (a, ip) in cases {
        for mode in [ChecksumMode::Keepalived, ChecksumMode::Rfc9568] {
            let bytes = encoded(&a, &ip, mode);
            let rx = decode(&bytes, &ip, &expect(a.version, a.vrid)).unwrap();
            assert_eq!(
                rx,
                Received {
                    source: ip.src,
                    advert: a.clone()
                }
            );
            assert_eq!(peek_vrid(&bytes), Some(a.vrid));
        }
    }
}

#[test]
fn encode_clears_the_buffer_and_leaves_it_alone_on_error() {
    let mut out = vec![0xaa; 100];
    let a = advert(Version::V3, 1, 100, vec![v4(10)]);
    encode(
        &a,
        meta4().src,
        meta4().dst,
        ChecksumMode::default(),
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 12);
    let bad = advert(Version::V3, 1, 0, vec![v4(10)]);
    let err = encode(
        &bad,
        meta4().src,
        meta4().dst,
        ChecksumMode::default(),
        &mut out,
    );
    assert!(err.is_err());
    assert_eq!(out.len(), 12);
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let (s4, d4, s6, d6) = (meta4().src, meta4().dst, meta6().src, meta6().dst);
    let try_encode = |a: &Advert, src, dst| {
        let mut out = Vec::new();
        encode(a, src, dst, ChecksumMode::Keepalived, &mut out)
    };
    let mixed = advert(Version::V3, 1, 100, vec![v4(1), v6(1)]);
    assert_eq!(try_encode(&mixed, s4, d4), Err(EncodeError::FamilyMismatch));
    let ok4 = advert(Version::V3, 1, 100, vec![v4(1)]);
    assert_eq!(try_encode(&ok4, s6, d6), Err(EncodeError::FamilyMismatch));
    assert_eq!(try_encode(&ok4, s4, d6), Err(EncodeError::FamilyMismatch));
    let v2_6 = advert(Version::V2, 1, 100, vec![v6(1)]);
    assert_eq!(try_encode(&v2_6, s6, d6), Err(EncodeError::V2OverIpv6));
    let empty = advert(Version::V3, 1, 100, vec![]);
    assert_eq!(try_encode(&empty, s4, d4), Err(EncodeError::NoAddresses));
    let many4 = advert(Version::V3, 1, 100, vec![v4(1); 256]);
    let too_many = EncodeError::TooManyAddresses {
        count: 256,
        max: 255,
    };
    assert_eq!(try_encode(&many4, s4, d4), Err(too_many));
    assert!(try_encode(&advert(Version::V2, 1, 100, vec![v4(1); 255]), s4, d4).is_ok());
    let many6 = advert(Version::V3, 1, 100, vec![v6(1); MAX_ADDRESSES_V6 + 1]);
    assert!(matches!(
        try_encode(&many6, s6, d6),
        Err(EncodeError::TooManyAddresses { .. })
    ));
    for (version, centis) in [(Version::V3, 0), (Version::V3, 4096), (Version::V2, 0)] {
        let a = advert(version, 1, centis, vec![v4(1)]);
        let want = EncodeError::IntervalOutOfRange {
            interval: Centis(centis),
        };
        assert_eq!(try_encode(&a, s4, d4), Err(want));
    }
    let a = advert(Version::V2, 1, 25600, vec![v4(1)]);
    assert!(matches!(
        try_encode(&a, s4, d4),
        Err(EncodeError::IntervalOutOfRange { .. })
    ));
    let a = advert(Version::V2, 1, 150, vec![v4(1)]);
    let want = EncodeError::IntervalNotWholeSeconds {
        interval: Centis(150),
    };
    assert_eq!(try_encode(&a, s4, d4), Err(want));
    assert!(try_encode(&advert(Version::V2, 1, 25500, vec![v4(1)]), s4, d4).is_ok());
}

// ---- one minimal mutation per discard reason --------------------------------------------

fn base_v3() -> Vec<u8> {
    encoded(
        &advert(Version::V3, 9, 100, vec![v4(10)]),
        &meta4(),
        ChecksumMode::Keepalived,
    )
}

fn base_v2() -> Vec<u8> {
    encoded(
        &advert(Version::V2, 9, 100, vec![v4(10)]),
        &meta4(),
        ChecksumMode::Keepalived,
    )
}

/// Applies `mutate` to a valid packet, re-checksums it, and returns the decode result.
fn mutated(
    mut bytes: Vec<u8>,
    ip: IpMeta,
    ex: Expect,
    mutate: impl Fn(&mut Vec<u8>),
) -> Result<Received, Discard> {
    mutate(&mut bytes);
    let v3 = bytes.first().is_some_and(|b| b >> 4 == 3);
    fix_checksum(&mut bytes, &ip, v3);
    decode(&bytes, &ip, &ex)
}

#[test]
fn each_discard_reason_from_one_mutation() {
    let (ip, ex3, ex2) = (meta4(), expect(Version::V3, 9), expect(Version::V2, 9));
    let none = |_: &mut Vec<u8>| {};
    assert!(mutated(base_v3(), ip, ex3, none).is_ok());
    assert!(mutated(base_v2(), ip, ex2, none).is_ok());

    let ttl = IpMeta {
        ttl_or_hop_limit: 254,
        ..ip
    };
    assert_eq!(mutated(base_v3(), ttl, ex3, none), Err(Discard::BadTtl));
    assert_eq!(decode(&base_v3()[..7], &ip, &ex3), Err(Discard::TooShort));
    assert_eq!(mutated(base_v3(), ip, ex2, none), Err(Discard::BadVersion));
    let v4_nibble = |b: &mut Vec<u8>| b[0] = 0x41;
    assert_eq!(
        mutated(base_v3(), ip, ex3, v4_nibble),
        Err(Discard::BadVersion)
    );
    let kind = |b: &mut Vec<u8>| b[0] = 0x32;
    assert_eq!(mutated(base_v3(), ip, ex3, kind), Err(Discard::BadType));
    let mixed = IpMeta {
        dst: meta6().dst,
        ..ip
    };
    assert_eq!(
        mutated(base_v3(), mixed, ex3, none),
        Err(Discard::FamilyMismatch)
    );
    assert_eq!(
        mutated(base_v2(), meta6(), ex2, none),
        Err(Discard::FamilyMismatch)
    );
    let zero = |b: &mut Vec<u8>| {
        b[3] = 0;
        b.truncate(8);
    };
    assert_eq!(
        mutated(base_v3(), ip, ex3, zero),
        Err(Discard::AddressCountZero)
    );
    let count = |b: &mut Vec<u8>| b[3] = 2;
    assert_eq!(mutated(base_v3(), ip, ex3, count), Err(Discard::BadLength));
    let longer = |b: &mut Vec<u8>| b.extend([0, 0, 0, 0]);
    assert_eq!(mutated(base_v3(), ip, ex3, longer), Err(Discard::BadLength));
    let mut corrupt = base_v3();
    corrupt[9] ^= 1;
    assert_eq!(decode(&corrupt, &ip, &ex3), Err(Discard::BadChecksum));
    let vrid = |b: &mut Vec<u8>| b[1] = 10;
    assert_eq!(mutated(base_v3(), ip, ex3, vrid), Err(Discard::WrongVrid));
    let owner = Expect {
        local_is_owner: true,
        ..ex3
    };
    assert_eq!(
        mutated(base_v3(), ip, owner, none),
        Err(Discard::LocalOwner)
    );
    let interval3 = |b: &mut Vec<u8>| b[4..6].copy_from_slice(&[0xf0, 0]);
    assert_eq!(
        mutated(base_v3(), ip, ex3, interval3),
        Err(Discard::ZeroInterval)
    );
    let interval2 = |b: &mut Vec<u8>| b[5] = 0;
    assert_eq!(
        mutated(base_v2(), ip, ex2, interval2),
        Err(Discard::ZeroInterval)
    );
    let pass = Expect {
        password: pad_password(b"pw"),
        ..ex2
    };
    assert_eq!(
        mutated(base_v2(), ip, pass, none),
        Err(Discard::AuthTypeMismatch)
    );
    let ah = |b: &mut Vec<u8>| b[4] = 2;
    assert_eq!(
        mutated(base_v2(), ip, ex2, ah),
        Err(Discard::UnsupportedAuth)
    );
    let simple = |b: &mut Vec<u8>| {
        b[4] = 1;
        let n = b.len();
        b[n - 8..n - 6].copy_from_slice(b"pX");
    };
    assert_eq!(
        mutated(base_v2(), ip, pass, simple),
        Err(Discard::BadPassword)
    );
    let right = |b: &mut Vec<u8>| {
        b[4] = 1;
        let n = b.len();
        b[n - 8..n - 6].copy_from_slice(b"pw");
    };
    assert!(mutated(base_v2(), ip, pass, right).is_ok());
}

#[test]
fn ignored_fields_are_ignored() {
    let (ip, ex3, ex2) = (meta4(), expect(Version::V3, 9), expect(Version::V2, 9));
    // RFC 5798 5.2.6: rsvd ignored on reception.
    let rsvd = |b: &mut Vec<u8>| b[4] |= 0xf0;
    assert_eq!(
        mutated(base_v3(), ip, ex3, rsvd).unwrap().advert.interval,
        Centis(100)
    );
    // RFC 3768 5.3.10: auth data ignored with auth type 0.
    let data = |b: &mut Vec<u8>| {
        let n = b.len();
        b[n - 1] = 0x5a;
    };
    assert!(mutated(base_v2(), ip, ex2, data).is_ok());
}

#[test]
fn discard_names_are_stable_unique_snake_case() {
    let names: Vec<&str> = Discard::ALL.iter().map(|d| d.as_str()).collect();
    for (i, d) in Discard::ALL.iter().enumerate() {
        assert_eq!(d.index(), i);
        assert_eq!(d.to_string(), d.as_str());
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    for n in &names {
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
    }
    assert_eq!(Discard::BadChecksum.as_str(), "bad_checksum");
}

#[test]
fn counters_count_each_reason() {
    let mut c = DiscardCounters::default();
    c.record(&Discard::BadTtl);
    c.record(&Discard::BadTtl);
    c.record(&Discard::BadPassword);
    assert_eq!(c.get(Discard::BadTtl), 2);
    assert_eq!(c.get(Discard::BadPassword), 1);
    assert_eq!(c.get(Discard::WrongVrid), 0);
    assert_eq!(c.total(), 3);
    let listed: Vec<(&str, u64)> = c.iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(listed, vec![("bad_ttl", 2), ("bad_password", 1)]);
    assert_eq!(c.iter().count(), Discard::ALL.len());
}

#[test]
fn password_padding() {
    assert_eq!(pad_password(b"tandem1"), Some(*b"tandem1\0"));
    assert_eq!(pad_password(b"12345678"), Some(*b"12345678"));
    assert_eq!(pad_password(b"123456789"), None);
    assert_eq!(peek_vrid(&[0x31]), None);
}

// ---- fuzz -------------------------------------------------------------------------------

/// SplitMix64: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Valid packets with the IP view and configuration they are valid for.
fn seeds() -> Vec<(Vec<u8>, IpMeta, Expect)> {
    let mut pass = expect(Version::V2, 52);
    pass.password = pad_password(b"tandem1");
    let mut out = vec![
        (only_vector(V2_IPV4).bytes, meta4(), expect(Version::V2, 51)),
        (only_vector(V2_IPV4_PASS).bytes, meta4(), pass),
        (only_vector(V3_IPV4).bytes, meta4(), expect(Version::V3, 53)),
        (only_vector(V3_IPV6).bytes, meta6(), expect(Version::V3, 54)),
    ];
    let rfc = advert(Version::V3, 5, 3, vec![v4(1), v4(2)]);
    let rfc_bytes = encoded(&rfc, &meta4(), ChecksumMode::Rfc9568);
    out.push((rfc_bytes, meta4(), expect(Version::V3, 5)));
    out
}

/// Decode must agree with the reference on every input: accepted exactly when valid, and
/// then with the same fields.
fn check(bytes: &[u8], ip: &IpMeta, ex: &Expect) -> bool {
    let got = decode(bytes, ip, ex);
    assert_eq!(
        got.clone().ok(),
        reference(bytes, ip, ex),
        "input {bytes:02x?} {ip:?}"
    );
    got.is_ok()
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for (bytes, ip, ex) in seeds() {
        assert!(check(&bytes, &ip, &ex));
        for len in 0..bytes.len() {
            let got = decode(&bytes[..len], &ip, &ex);
            let want = if len < 8 {
                Discard::TooShort
            } else {
                Discard::BadLength
            };
            assert_eq!(got, Err(want), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, &ip, &ex), Err(Discard::BadLength));
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    for (bytes, ip, ex) in seeds() {
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!check(&flipped, &ip, &ex), "bit {bit} of {bytes:02x?}");
        }
    }
}

#[test]
fn fuzz_agrees_with_the_reference_decoder() {
    let seeds = seeds();
    let mut rng = Rng(0x7a4d_e3f0_0d15_ea5e);
    let mut accepted = 0;
    const ROUNDS: usize = 100_000;
    for _ in 0..ROUNDS {
        let (base, ip, ex) = &seeds[rng.below(seeds.len())];
        let (mut ip, mut ex) = (*ip, *ex);
        let mut bytes = base.clone();
        match rng.below(6) {
            // Pure noise of any short length.
            0 => {
                let len = rng.below(80);
                bytes = (0..len).map(|_| rng.next() as u8).collect();
            }
            // A few bit flips anywhere.
            1 => {
                for _ in 0..=rng.below(4) {
                    let bit = rng.below(bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
            }
            // One random byte, then a right checksum: exercises the checks after it.
            2 | 3 => {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
                let pseudo = ip.src.is_ipv6() || (bytes[0] >> 4 == 3 && rng.below(2) == 0);
                fix_checksum(&mut bytes, &ip, pseudo);
            }
            // Resize (count and length disagree), then a right checksum.
            4 => {
                let len = rng.below(bytes.len() + 20);
                bytes.resize(len, rng.next() as u8);
                fix_checksum(&mut bytes, &ip, ip.src.is_ipv6());
            }
            // The IP view or the configuration is off.
            _ => {
                ip.ttl_or_hop_limit = if rng.below(2) == 0 {
                    255
                } else {
                    rng.next() as u8
                };
                if rng.below(4) == 0 {
                    ip.dst = if ip.dst.is_ipv4() {
                        meta6().dst
                    } else {
                        meta4().dst
                    };
                }
                if rng.below(4) == 0 {
                    ex.vrid = rng.next() as u8;
                }
                ex.local_is_owner = rng.below(8) == 0;
            }
        }
        if check(&bytes, &ip, &ex) {
            accepted += 1;
        }
    }
    // Both outcomes must really have been exercised.
    assert!(accepted > ROUNDS / 20, "only {accepted} accepted");
    assert!(accepted < ROUNDS / 2, "{accepted} accepted");
}

/// keepalived 2.2.7 discarded the message-only form ("Invalid VRRPv3 checksum") and
/// accepted the pseudo-header form (tests/vectors/keepalived_v3_ipv4_checksum_forms.txt).
/// Our two modes produce exactly those bytes, and we accept both.
#[test]
fn checksum_modes_match_what_keepalived_accepted_and_rejected() {
    let text = include_str!("vectors/keepalived_v3_ipv4_checksum_forms.txt");
    let a = Advert {
        priority: 200,
        ..advert(Version::V3, 61, 50, vec![v4(160)])
    };
    let mut seen = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (mode, verdict) = match f[0] {
            "keepalived" => (ChecksumMode::Keepalived, "accepted"),
            _ => (ChecksumMode::Rfc9568, "rejected"),
        };
        assert_eq!(f[1], verdict);
        let ip = IpMeta {
            src: f[2].parse().unwrap(),
            dst: f[3].parse().unwrap(),
            ttl_or_hop_limit: f[4].parse().unwrap(),
        };
        let bytes = hex(f[5]);
        assert_eq!(encoded(&a, &ip, mode), bytes);
        assert_eq!(
            decode(&bytes, &ip, &expect(Version::V3, 61))
                .unwrap()
                .advert,
            a
        );
        seen += 1;
    }
    assert_eq!(seen, 2);
}
