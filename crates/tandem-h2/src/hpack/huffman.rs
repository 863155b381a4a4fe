//! HPACK's static Huffman code (RFC 7541 §5.2, Appendix B).
//!
//! The code is canonical: within each length, codes are consecutive in symbol order. So the 257
//! lengths of Appendix B define it completely, and the codes are derived from them at compile
//! time instead of being transcribed (a typo in one of 257 hex codes would go unnoticed; a wrong
//! length breaks the Kraft sum the tests check).
//!
//! Decoding walks the code four bits at a time through a table built once: 256 states (the
//! inner nodes of the code tree) × 16 nibbles. No code is shorter than five bits, so a nibble
//! completes at most one symbol.

use std::sync::OnceLock;

use bytes::{BufMut, BytesMut};

/// Code length in bits of each symbol; index 256 is EOS.
const LENS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The canonical code of each symbol, right-aligned.
const CODES: [u32; 257] = canonical_codes();

const fn canonical_codes() -> [u32; 257] {
    let mut codes = [0u32; 257];
    let mut code: u32 = 0;
    let mut len: u8 = 1;
    // Symbols in (length, symbol) order get consecutive codes; a longer length shifts left.
    while len <= 30 {
        let mut sym = 0;
        while sym < 257 {
            if LENS[sym] == len {
                codes[sym] = code;
                code += 1;
            }
            sym += 1;
        }
        code <<= 1;
        len += 1;
    }
    codes
}

/// Bytes `src` takes once Huffman-encoded.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| LENS[b as usize] as usize).sum();
    bits.div_ceil(8)
}

/// Append the Huffman encoding of `src`, padded with the most significant bits of EOS (ones).
pub fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &b in src {
        let len = u32::from(LENS[b as usize]);
        acc = (acc << len) | u64::from(CODES[b as usize]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            dst.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        dst.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// A Huffman-coded string that is not valid (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman-coded string contains EOS")]
    Eos,
    #[error("Huffman-coded string has invalid padding")]
    Padding,
}

/// Append the decoding of `src` to `dst`. It grows by at most `src.len() * 8 / 5 + 1` bytes (no
/// code is shorter than five bits), which callers reserve to decode without reallocating.
pub fn decode(src: &[u8], dst: &mut BytesMut) -> Result<(), HuffmanError> {
    let t = table();
    let mut state = 0usize;
    for &b in src {
        for nibble in [b >> 4, b & 0x0f] {
            let step = t.steps[state][nibble as usize];
            if step.flags & FAIL != 0 {
                return Err(HuffmanError::Eos);
            }
            if step.flags & EMIT != 0 {
                dst.put_u8(step.sym);
            }
            state = step.next as usize;
        }
    }
    if t.accept[state] {
        Ok(())
    } else {
        Err(HuffmanError::Padding)
    }
}

const EMIT: u8 = 1;
const FAIL: u8 = 2;

#[derive(Clone, Copy, Default)]
struct Step {
    next: u8,
    sym: u8,
    flags: u8,
}

struct Table {
    steps: Vec<[Step; 16]>,
    /// Whether input may end in this state: on a symbol boundary (the root), or inside at most
    /// seven bits of EOS's all-ones prefix.
    accept: Vec<bool>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build)
}

#[derive(Clone, Copy)]
enum Child {
    Node(usize),
    Leaf(u16),
    Empty,
}

fn build() -> Table {
    // The code tree: 256 inner nodes for 257 leaves; node 0 is the root.
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    for sym in 0..257u16 {
        let len = u32::from(LENS[sym as usize]);
        let code = CODES[sym as usize];
        let mut node = 0;
        for i in (0..len).rev() {
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                nodes[node][bit] = Child::Leaf(sym);
            } else {
                node = match nodes[node][bit] {
                    Child::Node(n) => n,
                    _ => {
                        nodes.push([Child::Empty; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Child::Node(n);
                        n
                    }
                };
            }
        }
    }
    // Depth of the inner nodes on the all-ones path (EOS's prefix).
    let mut ones_depth = vec![None; nodes.len()];
    let (mut node, mut depth) = (0, 0);
    ones_depth[0] = Some(0);
    while let Child::Node(n) = nodes[node][1] {
        depth += 1;
        ones_depth[n] = Some(depth);
        node = n;
    }
    let accept = ones_depth
        .iter()
        .map(|d| matches!(d, Some(d) if *d <= 7))
        .collect();
    let steps = (0..nodes.len())
        .map(|start| {
            let mut row = [Step::default(); 16];
            for (nibble, step) in row.iter_mut().enumerate() {
                let mut node = start;
                for i in (0..4).rev() {
                    match nodes[node][(nibble >> i) & 1] {
                        Child::Node(n) => node = n,
                        Child::Leaf(256) | Child::Empty => {
                            step.flags = FAIL;
                            break;
                        }
                        Child::Leaf(sym) => {
                            step.flags |= EMIT;
                            step.sym = sym as u8;
                            node = 0;
                        }
                    }
                }
                step.next = node as u8;
            }
            row
        })
        .collect();
    Table { steps, accept }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::hex;

    #[test]
    fn the_lengths_make_a_complete_prefix_code() {
        // Kraft: a complete code sums to exactly 1 (scaled by 2^30, the longest length).
        let sum: u64 = LENS.iter().map(|&l| 1u64 << (30 - l)).sum();
        assert_eq!(sum, 1 << 30);
        assert_eq!(table().steps.len(), 256);
    }

    #[test]
    fn codes_match_appendix_b_spot_checks() {
        // (symbol, code, length) rows of RFC 7541 Appendix B.
        for (sym, code, len) in [
            (b'0' as usize, 0x0, 5),
            (b' ' as usize, 0x14, 6),
            (b'a' as usize, 0x3, 5),
            (b'z' as usize, 0x7b, 7),
            (0, 0x1ff8, 13),
            (1, 0x7fffd8, 23),
            (256, 0x3fffffff, 30),
        ] {
            assert_eq!((CODES[sym], LENS[sym]), (code, len), "symbol {sym}");
        }
    }

    #[test]
    fn rfc7541_appendix_c_strings() {
        // C.4 and C.6: Huffman-coded literals of the request and response examples.
        for (plain, coded) in [
            ("www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"),
            ("no-cache", "a8eb10649cbf"),
            ("custom-key", "25a849e95ba97d7f"),
            ("custom-value", "25a849e95bb8e8b4bf"),
            ("302", "6402"),
            ("private", "aec3771a4b"),
            (
                "Mon, 21 Oct 2013 20:13:21 GMT",
                "d07abe941054d444a8200595040b8166e082a62d1bff",
            ),
            (
                "https://www.example.com",
                "9d29ad171863c78f0b97c8e9ae82ae43d3",
            ),
        ] {
            let mut out = Vec::new();
            encode(plain.as_bytes(), &mut out);
            assert_eq!(out, hex(coded), "encode {plain}");
            assert_eq!(encoded_len(plain.as_bytes()), out.len());
            let mut back = BytesMut::new();
            decode(&out, &mut back).unwrap();
            assert_eq!(&back[..], plain.as_bytes(), "decode {plain}");
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        encode(&all, &mut out);
        let mut back = BytesMut::new();
        decode(&out, &mut back).unwrap();
        assert_eq!(&back[..], &all[..]);
        for n in 0..=255u8 {
            let (mut o, mut b) = (Vec::new(), BytesMut::new());
            encode(&[n], &mut o);
            decode(&o, &mut b).unwrap();
            assert_eq!(&b[..], &[n]);
        }
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // '0' is 00000: padding with zeros instead of ones.
        assert_eq!(
            decode(&[0x00], &mut BytesMut::new()),
            Err(HuffmanError::Padding)
        );
        // A full byte of ones as padding (8 bits, the limit is 7).
        let mut o = Vec::new();
        encode(b"a", &mut o);
        o.push(0xff);
        assert_eq!(decode(&o, &mut BytesMut::new()), Err(HuffmanError::Padding));
        // EOS itself: 30 ones, padded with ones to 32 bits.
        assert_eq!(
            decode(&[0xff; 4], &mut BytesMut::new()),
            Err(HuffmanError::Eos)
        );
        // The empty string is valid.
        assert_eq!(decode(&[], &mut BytesMut::new()), Ok(()));
    }
}
