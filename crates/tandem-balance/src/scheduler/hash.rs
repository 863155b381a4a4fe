//! Small, stable hash functions for the hashing schedulers (`sh`, `maglev`) and the seeded PRNG
//! of `p2c`.
//!
//! Everything here is a fixed, well-known function of its input: no `RandomState`, no per-process
//! keys. Two tandem nodes with the same configuration map the same client address to the same
//! backend, before and after a restart or a VRRP failover.

use std::net::IpAddr;

/// FNV-1a, 64-bit (offset basis and prime from the FNV reference).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 output function (Stafford's "mix13"): a bijective avalanche on 64 bits.
/// FNV-1a alone mixes the last input bytes poorly into the high bits; this fixes that.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The SplitMix64 state increment (2^64 / golden ratio).
pub(crate) const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hash of a client address. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack
/// listener reports for IPv4 clients) hash like the plain IPv4 address.
pub(crate) fn ip_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => mix64(fnv1a64(&v4.octets())),
        IpAddr::V6(v6) => mix64(fnv1a64(&v6.octets())),
    }
}

/// Hash of a backend id (its index in the pool's backend list) under one of a few fixed seeds.
pub(crate) fn id_hash(id: usize, seed: u64) -> u64 {
    mix64(fnv1a64(&(id as u64).to_le_bytes()) ^ seed)
}

/// Map a well-mixed 64-bit hash uniformly onto `0..n` (Lemire's multiply-shift; uses the high
/// bits). `n == 0` yields 0.
pub(crate) fn reduce(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

// `%` rather than `is_multiple_of`, which needs Rust 1.87 (the workspace declares 1.85).
#[allow(clippy::manual_is_multiple_of)]
pub(crate) fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3usize;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// Smallest prime `>= n`.
pub(crate) fn next_prime(n: usize) -> usize {
    let mut p = n.max(2);
    while !is_prime(p) {
        p += 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn fnv_matches_reference_vectors() {
        // From the FNV reference test suite (fnv-1a 64).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn hashes_are_pinned() {
        // These values are part of the product: changing them remaps every client of `sh` and
        // `maglev` pools on upgrade. Change only on purpose.
        assert_eq!(mix64(0), 0);
        assert_eq!(
            ip_hash(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            mix64(fnv1a64(&[192, 0, 2, 1]))
        );
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(
            ip_hash(mapped),
            ip_hash(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_ne!(
            ip_hash(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ip_hash(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn reduce_stays_in_range() {
        for n in [0usize, 1, 2, 3, 101, 65537] {
            for h in [0u64, 1, u64::MAX / 2, u64::MAX] {
                let r = reduce(h, n);
                assert!(r < n.max(1));
            }
        }
    }

    #[test]
    fn primes() {
        let small: Vec<usize> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert_eq!(next_prime(100), 101);
        assert_eq!(next_prime(1000), 1009);
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(65537), 65537);
    }
}
