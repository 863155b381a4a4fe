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
