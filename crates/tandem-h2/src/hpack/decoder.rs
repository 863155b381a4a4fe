//! HPACK decoding of header blocks (RFC 7541 §6).

use bytes::{Bytes, BytesMut};

use super::huffman::{self, HuffmanError};
use super::table::{DynamicTable, Name, ENTRY_OVERHEAD, STATIC};

/// One decoded field. `value` shares the header block's buffer when it was sent as is, or one
/// buffer per block for Huffman-coded values; it is not validated here (that is the message
/// layer's job, and a bad value is a stream error while a decoding failure is fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Name,
    pub value: Bytes,
    /// Sent as "never indexed" (§6.2.3): a proxy must forward it the same way.
    pub sensitive: bool,
}

impl Field {
    /// Size the field counts towards SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2).
    pub fn list_size(&self) -> usize {
        self.name.as_bytes().len() + self.value.len() + ENTRY_OVERHEAD
    }
}

/// A header block HPACK cannot decode: the connection's compression state is lost, which
/// RFC 9113 §4.3 makes a connection error of type COMPRESSION_ERROR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer in header block too large")]
    Integer,
    #[error("index {0} is in neither table")]
    Index(usize),
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
    #[error("dynamic table size update to {0} is above the limit")]
    SizeUpdate(usize),
    #[error("dynamic table size update after a field")]
    LateSizeUpdate,
}

/// How a block went: whether every field was handed over, or the list grew past the limit and
/// the rest was only decoded to keep the table in step (the request is then refused, 431).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Complete,
    TooLarge,
}

#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the largest table the peer may switch to.
    limit: usize,
}

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(limit),
            limit,
        }
    }

    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decode one complete header block (HEADERS plus any CONTINUATION), handing each field to
    /// `emit` while the list stays within `max_list` bytes.
    pub fn decode(
        &mut self,
        block: &Bytes,
        max_list: usize,
        mut emit: impl FnMut(Field),
    ) -> Result<Decoded, DecodeError> {
        let mut cur = Cursor {
            buf: block,
            pos: 0,
            arena: BytesMut::new(),
        };
        let mut list = 0usize;
        let mut any_field = false;
        let mut outcome = Decoded::Complete;
        while let Some(&first) = cur.peek() {
            let field = if first & 0x80 != 0 {
                let index = cur.integer(7)?;
                let (name, value) = self.lookup(index)?;
                Field {
                    name,
                    value,
                    sensitive: false,
                }
            } else if first & 0xc0 == 0x40 {
                let field = self.literal(&mut cur, 6, false)?;
                self.table.insert(field.name.clone(), &field.value);
                field
            } else if first & 0xe0 == 0x20 {
                if any_field {
                    return Err(DecodeError::LateSizeUpdate);
                }
                let size = cur.integer(5)?;
                if size > self.limit {
                    return Err(DecodeError::SizeUpdate(size));
                }
                self.table.set_max_size(size);
                continue;
            } else {
                self.literal(&mut cur, 4, first & 0x10 != 0)?
            };
            any_field = true;
            list = list.saturating_add(field.list_size());
            if list > max_list {
                outcome = Decoded::TooLarge;
            }
            if outcome == Decoded::Complete {
                emit(field);
            }
        }
        Ok(outcome)
    }

    fn lookup(&self, index: usize) -> Result<(Name, Bytes), DecodeError> {
        match index {
            0 => Err(DecodeError::Index(0)),
            1..=61 => {
                let (name, value) = &STATIC[index - 1];
                Ok((name.to_name(), Bytes::from_static(value.as_bytes())))
            }
            _ => self
                .table
                .get(index)
                .map(|(n, v)| (n.clone(), v.clone()))
                .ok_or(DecodeError::Index(index)),
        }
    }

    /// A literal field whose representation has an index of `prefix` bits (0: a literal name).
    fn literal(
        &self,
        cur: &mut Cursor<'_>,
        prefix: u8,
        sensitive: bool,
    ) -> Result<Field, DecodeError> {
        let index = cur.integer(prefix)?;
        let name = if index == 0 {
            Name::parse(&cur.string()?)
        } else {
            self.lookup(index)?.0
        };
        let value = cur.string()?;
        Ok(Field {
            name,
            value,
            sensitive,
        })
    }
}

struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    /// Huffman-decoded strings of this block, one allocation shared by all of them.
    arena: BytesMut,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&u8> {
        self.buf.get(self.pos)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// An integer with an `n`-bit prefix (§5.1). Values are capped at 2^28: nothing in a
    /// header block can be larger, and the cap keeps the arithmetic from overflowing.
    fn integer(&mut self, n: u8) -> Result<usize, DecodeError> {
        let max_prefix = (1usize << n) - 1;
        let mut value = usize::from(self.byte()?) & max_prefix;
        if value < max_prefix {
            return Ok(value);
        }
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            value += usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 21 {
                return Err(DecodeError::Integer);
            }
        }
    }

    /// A string literal (§5.2).
    fn string(&mut self) -> Result<Bytes, DecodeError> {
        let huffman = self.peek().is_some_and(|b| b & 0x80 != 0);
        let len = self.integer(7)?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated)?;
        let raw = &self.buf[self.pos..end];
        let out = if huffman {
            if self.arena.capacity() - self.arena.len() < len * 8 / 5 + 1 {
                // Enough for the rest of the block, so it is one allocation per block.
                self.arena.reserve((self.buf.len() - self.pos) * 8 / 5 + 1);
            }
            huffman::decode(raw, &mut self.arena)?;
            self.arena.split().freeze()
        } else {
            self.buf.slice(self.pos..end)
        };
        self.pos = end;
        Ok(out)
    }
}
