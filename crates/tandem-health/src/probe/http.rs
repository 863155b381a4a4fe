//! The `http` and `https` probes: one request, the status line, and the body when a check
//! looks at it.
//!
//! A deliberately tiny HTTP/1.1 client rather than hyper: it must survive any bytes a broken
//! backend sends, bound what it buffers, and not keep pooled connections around (each probe is
//! a fresh connection, like a new client's would be). It runs over plain TCP or TLS alike.

use std::net::SocketAddr;
use std::time::Duration;

use md5::{Digest, Md5};
use tandem_config::{BodyMatch, Md5Digest, StatusSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::body::{self, Framing};
use super::{io_detail, ProbeOutcome};

/// How much of the response the probe reads looking for the status line (and, when it reads
/// the body, the headers). Generous for any real server (the status line comes first; 1xx
/// interim heads are skipped), and a hard cap on what a misbehaving peer can make us buffer.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Header lines parsed when the body is read; a health endpoint needs a handful.
const MAX_HEADERS: usize = 64;

/// What one http or https check asks.
pub(super) struct Check<'a> {
    /// `http` or `https`, the first word of every detail.
    pub scheme: &'static str,
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub expect_status: &'a StatusSet,
    pub expect_body: Option<&'a BodyMatch>,
    pub digest: Option<&'a Md5Digest>,
}

impl Check<'_> {
    fn reads_body(&self) -> bool {
        self.expect_body.is_some() || self.digest.is_some()
    }

    /// The request bytes, or what is wrong with the configured values. Config validation should
    /// already have refused these, but a CR/LF here would let a config value inject headers, so
    /// the probe checks again rather than send a malformed request.
    pub(super) fn encode(&self, addr: SocketAddr) -> Result<Vec<u8>, String> {
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if self.method.is_empty() || !self.method.bytes().all(is_tchar) {
            return Err(format!("invalid http check method {:?}", self.method));
        }
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80);
        if !(self.path.starts_with('/') || self.path == "*") || !visible(self.path) {
            return Err(format!("invalid http check path {:?}", self.path));
        }
        let host = match self.host {
            Some(h) if h.is_empty() || !visible(h) => {
                return Err(format!("invalid http check host {h:?}"))
            }
            Some(h) => h.to_string(),
            None => authority(addr),
        };
        Ok(format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n",
            self.method, self.path
        )
        .into_bytes())
    }
}

/// `ip:port` as a Host header wants it: IPv6 in brackets, without a zone id (not valid there).
fn authority(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Send `request` (the check's, from [`Check::encode`]) on `stream` (connected to `addr`) and
/// judge the answer, all before `deadline`.
pub(super) async fn run<S>(
    mut stream: S,
    addr: SocketAddr,
    check: &Check<'_>,
    request: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> ProbeOutcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match timeout_at(deadline, exchange(&mut stream, addr, check, request)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(detail)) => ProbeOutcome::fail(detail),
        Err(_) => ProbeOutcome::fail(format!(
            "timeout after {timeout:?} waiting for {addr} to answer"
        )),
    }
}

/// Write the request, read the status and, if the check needs it, the body. `Err` is a failed
/// outcome's detail: the response could not be judged.
async fn exchange<S>(
    stream: &mut S,
    addr: SocketAddr,
    check: &Check<'_>,
    req: &[u8],
) -> Result<ProbeOutcome, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(req)
        .await
        .map_err(|e| format!("write to {addr}: {}", io_detail(&e)))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("write to {addr}: {}", io_detail(&e)))?;
    let mut head = Head::default();
    let (code, start) = head.read_status(stream, addr).await?;
    let seen = format!("{} {code} from {addr}", check.scheme);
    if !check.expect_status.contains(code) {
        return Ok(ProbeOutcome::fail(seen));
    }
    if !check.reads_body() {
        return Ok(ProbeOutcome::ok(seen));
    }
    let (framing, body_start) = head.read_headers(stream, addr, start, code, check).await?;
    let leftover = head.buf.get(body_start..head.len).unwrap_or_default();
    let body = body::read(stream, addr, framing, leftover).await?;
    Ok(judge_body(check, &body, seen))
}

/// Apply `expect_body` and `digest` to a body that has been read whole.
fn judge_body(check: &Check<'_>, body: &[u8], seen: String) -> ProbeOutcome {
    if let Some(want) = check.expect_body {
        if !want.is_match(body) {
            let verb = if want.is_regex() { "match" } else { "contain" };
            return ProbeOutcome::fail(format!(
                "{seen}, body does not {verb} {:?}",
                want.as_written()
            ));
        }
    }
    if let Some(want) = check.digest {
        let got = Md5::digest(body);
        if got.as_slice() != want.0 {
            let got = Md5Digest(got.into());
            return ProbeOutcome::fail(format!(
                "{seen}, body digest {got} is not the expected {want}"
            ));
        }
    }
    ProbeOutcome::ok(seen)
}

/// The response head as it arrives.
struct Head {
    buf: Vec<u8>,
    len: usize,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            buf: vec![0; MAX_RESPONSE_HEAD],
            len: 0,
        }
    }
}

impl Head {
    /// Read one more slice of the head; `what` names what was being looked for, for details.
    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        addr: SocketAddr,
        what: &str,
    ) -> Result<(), String> {
        if self.len == self.buf.len() {
            return Err(format!(
                "no {what} in the first {MAX_RESPONSE_HEAD} bytes from {addr}"
            ));
        }
        let n = stream
            .read(&mut self.buf[self.len..])
            .await
            .map_err(|e| format!("read from {addr}: {}", io_detail(&e)))?;
        if n == 0 {
            return Err(if self.len == 0 {
                format!("connection closed by {addr} before any response")
            } else {
                format!("connection closed by {addr} in the middle of the {what}")
            });
        }
        self.len += n;
        Ok(())
    }

    /// Read until a final status code is known: the code and where its status line starts.
    async fn read_status<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        addr: SocketAddr,
    ) -> Result<(u16, usize), String> {
        loop {
            match parse_status(&self.buf[..self.len]) {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => self.fill(stream, addr, "status line").await?,
                Err(BadStatusLine) => return Err(format!("bad status line from {addr}")),
            }
        }
    }

    /// Read the rest of the final head (which starts at `start`): how the body is framed and
    /// where it starts.
    async fn read_headers<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        addr: SocketAddr,
        start: usize,
        code: u16,
        check: &Check<'_>,
    ) -> Result<(Framing, usize), String> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let input = self.buf.get(start..self.len).unwrap_or_default();
            match response.parse(input) {
                Ok(httparse::Status::Complete(n)) => {
                    let framing = body::framing(response.headers, code, check.method, addr)?;
                    return Ok((framing, start + n));
                }
                Ok(httparse::Status::Partial) => {
                    self.fill(stream, addr, "end of the response headers")
                        .await?
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(format!(
                        "more than {MAX_HEADERS} response headers from {addr}"
                    ))
                }
                Err(e) => return Err(format!("bad response head from {addr}: {e}")),
            }
        }
    }
}

/// The response does not start like HTTP/1.x.
#[derive(Debug, PartialEq, Eq)]
struct BadStatusLine;

/// Find the final status code in `buf`, skipping interim `1xx` heads: the code and the offset
/// of its status line. `Ok(None)`: need more bytes. Rejects as soon as the bytes cannot be
/// HTTP/1.x, so a peer speaking another protocol fails fast instead of running into the timeout.
fn parse_status(buf: &[u8]) -> Result<Option<(u16, usize)>, BadStatusLine> {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let prefix = &rest[..rest.len().min(5)];
        if !b"HTTP/".starts_with(prefix) {
            return Err(BadStatusLine);
        }
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let code = parse_status_line(&rest[..nl])?;
        if !(100..200).contains(&code) || code == 101 {
            return Ok(Some((code, start)));
        }
        // Interim response: skip its header lines up to the empty line, then parse again.
        let mut pos = nl + 1;
        loop {
            let Some(len) = rest[pos..].iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let line = &rest[pos..pos + len];
            pos += len + 1;
            if line.is_empty() || line == b"\r" {
                break;
            }
        }
        start += pos;
    }
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`, with the `\n` removed (a trailing `\r` is tolerated, a bare
/// `\n` line end too, as RFC 9112 §2.2 allows). Codes outside 100..=599 are rejected.
fn parse_status_line(line: &[u8]) -> Result<u16, BadStatusLine> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(BadStatusLine)?;
    let (minor, rest) = rest.split_first().ok_or(BadStatusLine)?;
    let rest = rest.strip_prefix(b" ").ok_or(BadStatusLine)?;
    if !minor.is_ascii_digit() || rest.len() < 3 {
        return Err(BadStatusLine);
    }
    let (digits, reason) = rest.split_at(3);
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(BadStatusLine);
    }
    // Strictly a space before the reason; some servers omit an empty reason and its space.
    if !(reason.is_empty() || reason[0] == b' ') || reason.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(BadStatusLine);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if (100..=599).contains(&code) {
        Ok(code)
    } else {
        Err(BadStatusLine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(buf: &[u8]) -> Result<Option<u16>, BadStatusLine> {
        parse_status(buf).map(|o| o.map(|(c, _)| c))
    }

    #[test]
    fn status_line_parser() {
        assert_eq!(code(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(code(b"HTTP/1.0 404\r\n"), Ok(Some(404)));
        assert_eq!(code(b"HTTP/1.1 200 OK\n"), Ok(Some(200)));
        assert_eq!(code(b"HTTP/1.1 101 Switching\r\n"), Ok(Some(101)));
        assert_eq!(code(b"HTT"), Ok(None));
        assert_eq!(code(b"HTTP/1.1 200 O"), Ok(None));
        assert_eq!(code(b"HTTP/1.1 100 Continue\r\n"), Ok(None));
        assert_eq!(code(b"HTTP/1.1 100 Continue\r\nX: y\r\n"), Ok(None));
        assert_eq!(
            parse_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 \r\n"),
            Ok(Some((204, 25)))
        );
        assert_eq!(
            code(b"HTTP/1.1 100 Continue\r\n\r\nGARBAGE"),
            Err(BadStatusLine)
        );
        for bad in [
            &b"http/1.1 200 OK\r\n"[..],
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 200OK\r\n",
            b"HTTP/1.1 2x0 OK\r\n",
            b"HTTP/1.x 200 OK\r\n",
            b"HTTP/1.1 600 Nope\r\n",
            b"HTTP/1.1 200 OK\r\r\n",
            b"HTTP/1.1\r\n",
            b"\r\n",
            b"X",
        ] {
            assert_eq!(
                code(bad),
                Err(BadStatusLine),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn body_judgement_details() {
        let status = StatusSet::default();
        let substring = BodyMatch::parse("ready").expect("valid");
        let regex = BodyMatch::parse("/^ok$/").expect("valid");
        let digest = Md5Digest::parse("5d41402abc4b2a76b9719d911017c592").expect("valid"); // "hello"
        fn check<'a>(
            status: &'a StatusSet,
            body: Option<&'a BodyMatch>,
            digest: Option<&'a Md5Digest>,
        ) -> Check<'a> {
            Check {
                scheme: "http",
                method: "GET",
                path: "/",
                host: None,
                expect_status: status,
                expect_body: body,
                digest,
            }
        }
        let seen = || "http 200 from 127.0.0.1:1".to_string();
        assert!(
            judge_body(
                &check(&status, Some(&substring), None),
                b"all ready",
                seen()
            )
            .ok
        );
        assert_eq!(
            judge_body(&check(&status, Some(&substring), None), b"starting", seen()).detail,
            "http 200 from 127.0.0.1:1, body does not contain \"ready\""
        );
        assert_eq!(
            judge_body(&check(&status, Some(&regex), None), b"ok!", seen()).detail,
            "http 200 from 127.0.0.1:1, body does not match \"/^ok$/\""
        );
        assert!(judge_body(&check(&status, None, Some(&digest)), b"hello", seen()).ok);
        assert_eq!(
            judge_body(&check(&status, None, Some(&digest)), b"", seen()).detail,
            "http 200 from 127.0.0.1:1, body digest d41d8cd98f00b204e9800998ecf8427e is not the expected 5d41402abc4b2a76b9719d911017c592"
        );
    }
}
