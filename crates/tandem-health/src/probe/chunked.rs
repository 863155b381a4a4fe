//! An incremental decoder of `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! Fed whatever slices the socket returns, it keeps only the decoded body (up to a limit) and
//! the current size or trailer line (up to [`MAX_LINE`]), so a peer can neither make it buffer
//! without bound nor make it panic: every malformed input is a [`ChunkError`].

/// Longest chunk-size line (size plus extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted in total.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ChunkError {
    /// The decoded body would exceed the limit.
    TooLarge,
    /// Not valid chunked coding; says what was wrong.
    Bad(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Reading a `size[;ext]` line into `line`.
    Size,
    /// Copying this many more data bytes.
    Data(u64),
    /// After the data: expecting CRLF (`cr`: the CR was seen).
    DataEnd {
        cr: bool,
    },
    /// Reading trailer lines into `line` until an empty one.
    Trailers,
    Done,
}

pub(super) struct Chunked {
    state: State,
    body: Vec<u8>,
    limit: usize,
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl Chunked {
    /// A decoder that refuses bodies over `limit` bytes.
    pub(super) fn new(limit: usize) -> Chunked {
        Chunked {
            state: State::Size,
            body: Vec::new(),
            limit,
            line: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// Decode `input`. `Ok(true)` once the last chunk and the trailers have been seen (bytes
    /// after that are ignored: the probe closes the connection anyway).
    pub(super) fn feed(&mut self, mut input: &[u8]) -> Result<bool, ChunkError> {
        while !input.is_empty() && self.state != State::Done {
            match self.state {
                State::Size | State::Trailers => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        self.take_line_part(input)?;
                        return Ok(false);
                    };
                    self.take_line_part(&input[..nl])?;
                    input = &input[nl + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if self.state == State::Size {
                        self.state = match self.size(line)? {
                            0 => State::Trailers,
                            n => State::Data(n),
                        };
                    } else if line.is_empty() {
                        self.state = State::Done;
                    }
                }
                State::Data(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    self.body.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd { cr: false }
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd { cr } => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match (b, cr) {
                        (b'\r', false) => State::DataEnd { cr: true },
                        (b'\n', _) => State::Size,
                        _ => return Err(ChunkError::Bad("no line end after chunk data")),
                    };
                }
                State::Done => {}
            }
        }
        Ok(self.state == State::Done)
    }

    /// The decoded body.
    pub(super) fn into_body(self) -> Vec<u8> {
        self.body
    }

    fn take_line_part(&mut self, part: &[u8]) -> Result<(), ChunkError> {
        if self.line.len() + part.len() > MAX_LINE {
            return Err(ChunkError::Bad("line too long"));
        }
        if self.state == State::Trailers {
            self.trailer_bytes += part.len() + 1;
            if self.trailer_bytes > MAX_TRAILERS {
                return Err(ChunkError::Bad("trailers too long"));
            }
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    /// Parse a chunk-size line (`1a`, `1A;name=value`, `5 ` before extensions) and check the
    /// body stays within the limit.
    fn size(&self, line: &[u8]) -> Result<u64, ChunkError> {
        let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
        let digits = line[..end].trim_ascii_end();
        if digits.is_empty() || digits.len() > 16 {
            return Err(ChunkError::Bad("bad chunk size"));
        }
        let mut n: u64 = 0;
        for &b in digits {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(ChunkError::Bad("bad chunk size")),
            };
            n = n << 4 | u64::from(d);
        }
        let room = self.limit.saturating_sub(self.body.len()) as u64;
        if n > room {
            return Err(ChunkError::TooLarge);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed in pieces of `step` bytes.
    fn decode(input: &[u8], step: usize, limit: usize) -> Result<Option<Vec<u8>>, ChunkError> {
        let mut d = Chunked::new(limit);
        for piece in input.chunks(step.max(1)) {
            if d.feed(piece)? {
                return Ok(Some(d.into_body()));
            }
        }
        Ok(None)
    }

    #[test]
    fn decodes_in_any_pieces() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n,\r\nA \r\n world!!!!\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            assert_eq!(
                decode(wire, step, 100),
                Ok(Some(b"hello, world!!!!".to_vec())),
                "step {step}"
            );
        }
        // Bare LF line ends, upper-case hex, bytes after the end ignored.
        assert_eq!(
            decode(b"B\nhello world\n0\n\nGARBAGE", 4, 100),
            Ok(Some(b"hello world".to_vec()))
        );
        assert_eq!(decode(b"0\r\n\r\n", 1, 0), Ok(Some(Vec::new())));
        // Incomplete: needs more.
        assert_eq!(decode(b"5\r\nhel", 2, 100), Ok(None));
        assert_eq!(decode(b"5\r\nhello\r\n0\r\n", 2, 100), Ok(None));
    }

    #[test]
    fn refuses_garbage_and_overflow() {
        for (wire, why) in [
            (&b"xyz\r\n"[..], "bad chunk size"),
            (b"\r\n", "bad chunk size"),
            (b"-1\r\n", "bad chunk size"),
            (b"11111111111111111\r\n", "bad chunk size"),
            (b"5\r\nhelloXX", "no line end after chunk data"),
            (b"5\r\nhello\rX", "no line end after chunk data"),
        ] {
            assert_eq!(decode(wire, 3, 1000), Err(ChunkError::Bad(why)), "{wire:?}");
        }
        assert_eq!(
            decode(&[b'1'; MAX_LINE + 1], 100, 1000),
            Err(ChunkError::Bad("line too long"))
        );
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..1000 {
            trailers.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(
            decode(&trailers, 512, 1000),
            Err(ChunkError::Bad("trailers too long"))
        );
        // The limit counts decoded bytes, across chunks.
        assert_eq!(decode(b"6\r\n", 1, 5), Err(ChunkError::TooLarge));
        assert_eq!(
            decode(b"3\r\nabc\r\n3\r\n", 1, 5),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(
            decode(b"ffffffffffffffff\r\n", 1, usize::MAX),
            Ok(None),
            "a huge size is only a promise; the data still has to come"
        );
    }
}
