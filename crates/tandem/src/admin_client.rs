//! The command line's side of the admin API (`tandem status`, `tandem reload`): one blocking
//! HTTP/1.1 request at a time.
//!
//! A few requests a second at most, to a server on the same host, so a std `TcpStream` with
//! `Connection: close` is enough: no runtime, no connection pool, nothing to configure.
//! `httparse` reads the head; the body is read by length, chunks, or to EOF.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A larger answer is not an admin API response; stop reading rather than buffer it.
const MAX_RESPONSE: u64 = 32 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reload binds sockets and reads certificates; a status read is instant.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer ...` when set.
    pub token: Option<String>,
}

impl Client {
    /// `GET path`; the body of a 200 answer, else an error naming the status.
    pub fn get(&self, path: &str) -> Result<Vec<u8>> {
        let (status, body) = self.request("GET", path)?;
        match status {
            200 => Ok(body),
            401 | 403 => bail!(
                "the admin API at {} refused {path} ({status}): pass its token with --token-file",
                self.addr
            ),
            _ => bail!(
                "the admin API at {} answered {path} with {status}: {}",
                self.addr,
                String::from_utf8_lossy(&body).trim()
            ),
        }
    }

    /// One request without a body; the status and body of whatever came back.
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
            .with_context(|| format!("cannot reach the admin API at {}", self.addr))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tandem-cli\r\nAccept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .with_context(|| format!("sending to the admin API at {}", self.addr))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .with_context(|| format!("reading from the admin API at {}", self.addr))?;
        parse_response(&raw)
    }
}

/// Status code and body of a complete response read to EOF.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => bail!("the admin API closed the connection mid-answer"),
        Err(e) => bail!("the admin API's answer is not HTTP: {e}"),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = raw.get(head_len..).unwrap_or_default();
    let body = if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .context("bad Content-Length from the admin API")?;
        match rest.get(..len) {
            Some(b) => b.to_vec(),
            None => bail!("the admin API's answer is shorter than its Content-Length"),
        }
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

/// The payload of a chunked body (trailers ignored).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            bail!("the admin API's chunked answer is cut short");
        };
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?} from the admin API"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let Some(chunk) = rest.get(..size) else {
            bail!("the admin API's chunked answer is cut short");
        };
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// `tandem reload`.
pub fn reload(opts: &crate::cli::AdminOpts) -> std::process::ExitCode {
    use std::process::ExitCode;
    let outcome = target(opts).and_then(|c| c.request("POST", "/api/v1/reload"));
    match outcome {
        Ok((200, body)) => {
            println!("{}", String::from_utf8_lossy(&body).trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let body = String::from_utf8_lossy(&body).to_string();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or(body);
            eprintln!("tandem: reload refused ({status}): {}", message.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the admin API is (`--admin`, else the `[admin] listen` of `--config`, else the
/// default), and the token to present.
fn target(opts: &crate::cli::AdminOpts) -> Result<Client> {
    let addr = match (&opts.config, opts.admin) {
        (_, Some(a)) => a,
        (Some(path), None) => {
            tandem_config::load_file(path)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?
                .admin
                .listen
        }
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 9900)),
    };
    let token = match &opts.token_file {
        Some(p) => Some(crate::status::read_token(p)?),
        None => None,
    };
    Ok(Client { addr, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_length_chunks_or_eof() {
        let (s, b) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        let (s, b) = parse_response(b"HTTP/1.0 401 Unauthorized\r\n\r\nno").unwrap();
        assert_eq!((s, b.as_slice()), (401, &b"no"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
    }
}
