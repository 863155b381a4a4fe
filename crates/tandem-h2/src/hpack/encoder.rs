//! HPACK encoding of the header blocks tandem sends (RFC 7541 §6).
//!
//! tandem's encoder never adds to the dynamic table and does not Huffman-code: every field is
//! a static-table index or a literal "without indexing" (never indexed for sensitive values).
//! Blocks come out a little larger than with indexing, but encoding is a copy per field, with no
//! table search or hashing, and there is no encoder state that the peer's table settings can
//! get out of step with. HAProxy's HTTP/2 encoder makes the same trade.

use http::{HeaderName, HeaderValue};

use super::table::static_name_index;

#[derive(Debug, Default)]
pub struct Encoder {
    /// A dynamic table size update to 0 is owed at the start of the next block: at the first
    /// block, and after the peer changes SETTINGS_HEADER_TABLE_SIZE (§4.2; nghttp2 refuses a
    /// block without one after the size shrinks).
    size_update_owed: bool,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            size_update_owed: true,
        }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE changed.
    pub fn peer_table_size_changed(&mut self) {
        self.size_update_owed = true;
    }

    /// Start a block: emits an owed size update.
    pub fn begin(&mut self, dst: &mut Vec<u8>) {
        if std::mem::take(&mut self.size_update_owed) {
            dst.push(0x20);
        }
    }

    pub fn status(&mut self, status: http::StatusCode, dst: &mut Vec<u8>) {
        let index = match status.as_u16() {
            200 => 8,
            204 => 9,
            206 => 10,
            304 => 11,
            400 => 12,
            404 => 13,
            500 => 14,
            _ => 0,
        };
        if index != 0 {
            dst.push(0x80 | index);
        } else {
            // Literal without indexing, name :status (index 8).
            dst.push(0x08);
            string(status.as_str().as_bytes(), dst);
        }
    }

    /// A pseudo-header of a request (for HTTP/2 towards backends).
    pub fn pseudo(&mut self, name_index: u8, value: &[u8], dst: &mut Vec<u8>) {
        integer(usize::from(name_index), 4, 0x00, dst);
        string(value, dst);
    }

    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue, dst: &mut Vec<u8>) {
        let flags = if value.is_sensitive() { 0x10 } else { 0x00 };
        match static_name_index(name) {
            Some(i) => integer(i, 4, flags, dst),
            None => {
                dst.push(flags);
                string(name.as_str().as_bytes(), dst);
            }
        }
        string(value.as_bytes(), dst);
    }
}

/// An integer with an `n`-bit prefix whose other bits are `flags` (§5.1).
pub(crate) fn integer(mut value: usize, n: u8, flags: u8, dst: &mut Vec<u8>) {
    let max_prefix = (1usize << n) - 1;
    if value < max_prefix {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | max_prefix as u8);
    value -= max_prefix;
    while value >= 0x80 {
        dst.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    dst.push(value as u8);
}

/// A string literal, not Huffman-coded (§5.2).
fn string(s: &[u8], dst: &mut Vec<u8>) {
    integer(s.len(), 7, 0x00, dst);
    dst.extend_from_slice(s);
}
