//! The command line's side of the admin API (`tandem reload`): one HTTP/1.1 request over a
//! plain `TcpStream`. The admin API is local and tiny, so a blocking client with a timeout is
//! all it takes, and the binary needs no HTTP client library for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::cli::AdminOpts;

/// How long a call may take: a reload binds sockets and reads certificates, never more.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is, and the token to present.
pub fn target(opts: &AdminOpts) -> anyhow::Result<(SocketAddr, Option<String>)> {
    let addr = match (&opts.config, opts.admin) {
        (_, Some(a)) => a,
        (Some(path), None) => {
            tandem_config::load_file(path)
                .map_err(|e| anyhow!("invalid configuration:\n{e}"))?
                .admin
                .listen
        }
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 9900)),
    };
    let token = match &opts.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the token file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok((addr, token))
}

/// One request; the status and the body.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("cannot reach the admin API at {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed answer from {addr}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line from {addr}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The data of a chunked body (the admin API's answers are small and complete).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `tandem reload`.
pub fn reload(opts: &AdminOpts) -> ExitCode {
    let outcome = target(opts)
        .and_then(|(addr, token)| call(addr, "POST", "/api/v1/reload", token.as_deref()));
    match outcome {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
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

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks() {
        assert_eq!(
            super::dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"),
            "hello!"
        );
    }
}
