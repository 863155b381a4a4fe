//! Reading a whole response body, for the checks that look at it (`expect_body`, `digest`).
//!
//! Bodies are read by their framing (RFC 9112 §6.3): `Content-Length`, chunked, or until the
//! server closes (the probe always sends `Connection: close`). Whatever the framing, at most
//! [`MAX_BODY`] bytes are kept: a health endpoint that answers with more is misconfigured, and a
//! probe must not let a backend make tandem buffer without bound.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::chunked::{ChunkError, Chunked};
use super::io_detail;

/// The largest body an `expect_body` or `digest` check reads; a larger one fails the probe.
pub const MAX_BODY: usize = 1024 * 1024;

/// [`MAX_BODY`] as the docs and details say it.
const MAX_BODY_TEXT: &str = "1 MiB";

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body: the answer to HEAD, 1xx, 204 and 304.
    Empty,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

/// The framing of a response with status `code` to `method`, from its headers. `Err` is a
/// detail naming `addr`: a framing we cannot or will not read.
pub(super) fn framing(
    headers: &[httparse::Header<'_>],
    code: u16,
    method: &str,
    addr: SocketAddr,
) -> Result<Framing, String> {
    if method == "HEAD" || (100..200).contains(&code) || code == 204 || code == 304 {
        return Ok(Framing::Empty);
    }
    // Every comma-separated item of every header `name`, trimmed and lower-cased.
    let values = |name: &'static str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let codings = values("transfer-encoding");
    if !codings.is_empty() {
        // We ask for no coding (no TE or Accept-Encoding header), so only chunked is expected;
        // gzip'd bytes would make `expect_body` and `digest` meaningless anyway.
        return if codings == ["chunked"] {
            Ok(Framing::Chunked)
        } else {
            Err(format!(
                "unsupported transfer-encoding `{}` from {addr}",
                codings.join(", ")
            ))
        };
    }
    let mut length: Option<u64> = None;
    for v in values("content-length") {
        let n = match v.parse::<u64>() {
            Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("bad content-length `{v}` from {addr}")),
        };
        if length.is_some_and(|l| l != n) {
            return Err(format!("conflicting content-length headers from {addr}"));
        }
        length = Some(n);
    }
    match length {
        None => Ok(Framing::UntilClose),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= MAX_BODY => Ok(Framing::Length(n)),
            _ => Err(too_large(addr, &format!(" (content-length {n})"))),
        },
    }
}

fn too_large(addr: SocketAddr, what: &str) -> String {
    format!("body from {addr} is larger than the {MAX_BODY_TEXT} limit of checked bodies{what}")
}

/// Read the body framed as `framing`, starting with the `leftover` bytes that arrived with the
/// head. `Err` is a detail naming `addr`.
pub(super) async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    addr: SocketAddr,
    framing: Framing,
    leftover: &[u8],
) -> Result<Vec<u8>, String> {
    let mut scratch = vec![0u8; 16 * 1024];
    match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => {
            let mut body = Vec::with_capacity(n);
            body.extend_from_slice(&leftover[..leftover.len().min(n)]);
            while body.len() < n {
                let want = (n - body.len()).min(scratch.len());
                let got = read_some(stream, addr, &mut scratch[..want]).await?;
                if got == 0 {
                    return Err(format!(
                        "connection closed by {addr} after {} of {n} body bytes",
                        body.len()
                    ));
                }
                body.extend_from_slice(&scratch[..got]);
            }
            Ok(body)
        }
        Framing::UntilClose => {
            let mut body = Vec::new();
            let mut data = leftover;
            loop {
                if body.len() + data.len() > MAX_BODY {
                    return Err(too_large(addr, ""));
                }
                body.extend_from_slice(data);
                let got = read_some(stream, addr, &mut scratch).await?;
                if got == 0 {
                    return Ok(body);
                }
                data = &scratch[..got];
            }
        }
        Framing::Chunked => {
            let mut decoder = Chunked::new(MAX_BODY);
            let mut data = leftover;
            loop {
                match decoder.feed(data) {
                    Ok(true) => return Ok(decoder.into_body()),
                    Ok(false) => {}
                    Err(ChunkError::TooLarge) => return Err(too_large(addr, "")),
                    Err(ChunkError::Bad(why)) => {
                        return Err(format!("bad chunked body from {addr}: {why}"))
                    }
                }
                let got = read_some(stream, addr, &mut scratch).await?;
                if got == 0 {
                    return Err(format!(
                        "connection closed by {addr} in the middle of a chunked body"
                    ));
                }
                data = &scratch[..got];
            }
        }
    }
}

/// One read; `Ok(0)` at the end of the stream.
///
/// Over TLS, a server that closes without `close_notify` surfaces as `UnexpectedEof`. Many
/// servers do that, so it counts as a plain end here: a body delimited by length or chunks still
/// detects truncation, and a body delimited by the close is all a health check gets anyway.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    addr: SocketAddr,
    buf: &mut [u8],
) -> Result<usize, String> {
    match stream.read(buf).await {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(format!("read from {addr}: {}", io_detail(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 80))
    }

    fn framing_of(headers: &[(&str, &str)], code: u16, method: &str) -> Result<Framing, String> {
        let hs: Vec<httparse::Header<'_>> = headers
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        framing(&hs, code, method, addr())
    }

    #[test]
    fn framing_rules() {
        let ok = |h: &[(&str, &str)]| framing_of(h, 200, "GET");
        assert_eq!(ok(&[]), Ok(Framing::UntilClose));
        assert_eq!(ok(&[("Content-Length", "12")]), Ok(Framing::Length(12)));
        assert_eq!(ok(&[("content-length", "5, 5")]), Ok(Framing::Length(5)));
        assert_eq!(
            ok(&[("Transfer-Encoding", "Chunked")]),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            ok(&[("Transfer-Encoding", "chunked"), ("Content-Length", "3")]),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of(&[("Content-Length", "3")], 204, "GET"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing_of(&[("Content-Length", "3")], 304, "GET"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing_of(&[("Content-Length", "3")], 200, "HEAD"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            ok(&[("Transfer-Encoding", "gzip, chunked")]),
            Err("unsupported transfer-encoding `gzip, chunked` from 127.0.0.1:80".into())
        );
        assert_eq!(
            ok(&[("Content-Length", "3"), ("Content-Length", "4")]),
            Err("conflicting content-length headers from 127.0.0.1:80".into())
        );
        for bad in ["-1", "+3", "0x10", "1 2", "99999999999999999999999"] {
            assert_eq!(
                ok(&[("Content-Length", bad)]),
                Err(format!("bad content-length `{bad}` from 127.0.0.1:80"))
            );
        }
        assert_eq!(
            ok(&[("Content-Length", "1048577")]),
            Err("body from 127.0.0.1:80 is larger than the 1 MiB limit of checked bodies (content-length 1048577)".into())
        );
        assert_eq!(
            ok(&[("Content-Length", "1048576")]),
            Ok(Framing::Length(MAX_BODY))
        );
    }

    #[tokio::test]
    async fn reads_by_length_until_close_and_chunked() {
        let mut rest: &[u8] = b"lo world";
        let body = read(&mut rest, addr(), Framing::Length(5), b"hel").await;
        assert_eq!(body.as_deref(), Ok(&b"hello"[..]));

        let mut rest: &[u8] = b"";
        let body = read(&mut rest, addr(), Framing::Length(5), b"hello, and more").await;
        assert_eq!(body.as_deref(), Ok(&b"hello"[..]));

        let mut rest: &[u8] = b"l";
        let body = read(&mut rest, addr(), Framing::Length(5), b"hel").await;
        assert_eq!(
            body,
            Err("connection closed by 127.0.0.1:80 after 4 of 5 body bytes".into())
        );

        let mut rest: &[u8] = b" world";
        let body = read(&mut rest, addr(), Framing::UntilClose, b"hello").await;
        assert_eq!(body.as_deref(), Ok(&b"hello world"[..]));

        let mut rest: &[u8] = b"lo\r\n0\r\n\r\n";
        let body = read(&mut rest, addr(), Framing::Chunked, b"5\r\nhel").await;
        assert_eq!(body.as_deref(), Ok(&b"hello"[..]));

        let mut rest: &[u8] = b"lo";
        let body = read(&mut rest, addr(), Framing::Chunked, b"5\r\nhel").await;
        assert_eq!(
            body,
            Err("connection closed by 127.0.0.1:80 in the middle of a chunked body".into())
        );
    }

    #[tokio::test]
    async fn until_close_is_capped() {
        let big = vec![b'x'; MAX_BODY];
        let mut rest: &[u8] = &big;
        let body = read(&mut rest, addr(), Framing::UntilClose, b"").await;
        assert_eq!(body.map(|b| b.len()), Ok(MAX_BODY));
        let mut rest: &[u8] = &big;
        let body = read(&mut rest, addr(), Framing::UntilClose, b"!").await;
        assert_eq!(
            body,
            Err("body from 127.0.0.1:80 is larger than the 1 MiB limit of checked bodies".into())
        );
    }
}
