//! HPACK (RFC 7541): header compression for HTTP/2.

pub mod decoder;
pub mod encoder;
pub mod huffman;
pub mod table;

pub use decoder::{DecodeError, Decoded, Decoder, Field};
pub use encoder::Encoder;
pub use table::{Name, Pseudo};

#[cfg(test)]
mod tests;

/// Bytes from hex digits, spaces allowed (as RFC 7541's examples print them).
#[cfg(test)]
pub(crate) fn hex(s: &str) -> bytes::Bytes {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect::<Vec<u8>>()
        .into()
}
