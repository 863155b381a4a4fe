//! An incremental scanner for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! The proxy forwards chunked bodies as they are, byte for byte, but it must know exactly where
//! a body ends to keep the connection in sync (and to refuse request smuggling), so every byte
//! goes through this strict state machine: CRLF only, no whitespace around sizes, bounded
//! extensions and trailers. For HTTP/1.0 clients it also reports the data ranges so the body
//! can be sent de-chunked.

use std::ops::Range;

/// Longest chunk-extension or trailer line accepted; longer is treated as an attack.
const MAX_LINE: usize = 4096;
/// Total trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("invalid chunk size")]
    Size,
    #[error("chunk size too large")]
    Overflow,
    #[error("missing CRLF in chunked body")]
    Crlf,
    #[error("chunk extension or trailer too long")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` counts them.
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    digits: u32,
    line: usize,
    trailers: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }
}

impl Chunked {
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scan `buf`; returns how many bytes of it belong to the body (all of them unless the
    /// body ended inside `buf`). `on_data` receives the ranges of `buf` that are chunk data.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        if self.digits >= 15 {
                            return Err(ChunkError::Overflow);
                        }
                        self.size = self.size * 16 + v;
                        self.digits += 1;
                    }
                    b';' if self.digits > 0 => {
                        self.state = State::Ext;
                        self.line = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(ChunkError::Size),
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkError::Crlf),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(ChunkError::TooLong);
                        }
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Crlf);
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let take =
                        (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    on_data(i..i + take);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::Crlf);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Crlf);
                    }
                    self.state = State::Size;
                    self.size = 0;
                    self.digits = 0;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else if b == b'\n' {
                        return Err(ChunkError::Crlf);
                    } else {
                        self.state = State::TrailerLine;
                        self.line = 1;
                        self.count_trailer()?;
                    }
                }
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err(ChunkError::Crlf),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(ChunkError::TooLong);
                        }
                        self.count_trailer()?;
                    }
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Crlf);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Crlf);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkError::TooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], step: usize) -> Result<(usize, Vec<u8>, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = c.scan(piece, |r| out.extend_from_slice(&piece[r]))?;
            used += n;
            if c.is_done() {
                break;
            }
        }
        Ok((used, out, c.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (used, data, done) = decode(body, step).expect("valid");
            assert!(done, "step {step}");
            assert_eq!(data, b"hello world!", "step {step}");
            assert_eq!(used, body.len() - 4, "step {step}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5 \r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"0\r\n\n",
            b"fffffffffffffffff\r\n",
            b"-1\r\n",
        ] {
            assert!(
                decode(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 1));
        assert_eq!(decode(&long, long.len()).err(), Some(ChunkError::TooLong));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-Trailer: 0123456789\r\n");
        }
        assert_eq!(decode(&trailers, 977).err(), Some(ChunkError::TooLong));
    }

    #[test]
    fn incomplete_is_not_done() {
        let (used, data, done) = decode(b"5\r\nhel", 100).expect("partial ok");
        assert_eq!((used, data.as_slice(), done), (6, &b"hel"[..], false));
    }
}
