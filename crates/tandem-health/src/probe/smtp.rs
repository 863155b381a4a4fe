//! The `smtp` probe: the opening of a mail session, as keepalived's SMTP_CHECK does it.
//!
//! Banner `220`, then `EHLO name` answered `250` (a server that refuses EHLO with a 5xx is asked
//! `HELO name` instead, as RFC 5321 §4.1.4 allows old servers), then `QUIT`. No mail is sent. A
//! server that accepts TCP but is not ready for mail (a `421` banner when overloaded, a `554`
//! when it refuses us) fails, which a `tcp` check would miss.
//!
//! Replies are read line by line with a cap on line length and on lines per reply, so a peer
//! speaking something else (or nothing useful, forever) fails the probe cleanly.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{io_detail, ProbeOutcome};

/// Longest reply line accepted. RFC 5321 §4.5.3.1.5 sets 512 octets; servers pad banners.
const MAX_LINE: usize = 2048;
/// Most lines in one reply (an EHLO reply lists one extension per line; a dozen is typical).
const MAX_REPLY_LINES: usize = 100;

/// Run the dialogue on `stream` (connected to `addr`), all before `deadline`.
pub(super) async fn run(
    stream: TcpStream,
    addr: SocketAddr,
    helo_name: &str,
    deadline: Instant,
    timeout: Duration,
) -> ProbeOutcome {
    if helo_name.is_empty() || !helo_name.bytes().all(|b| b.is_ascii_graphic()) {
        // Config validation refuses these; a CR/LF here would inject a command.
        return ProbeOutcome::fail(format!("invalid smtp check helo_name {helo_name:?}"));
    }
    let mut session = Session {
        stream,
        addr,
        buf: Vec::new(),
        waiting_for: "banner",
    };
    let outcome = match timeout_at(deadline, session.greet(helo_name)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(detail)) => return ProbeOutcome::fail(detail),
        Err(_) => {
            return ProbeOutcome::fail(format!(
                "timeout after {timeout:?} waiting for the smtp {} from {addr}",
                session.waiting_for
            ))
        }
    };
    if outcome.ok {
        // Say goodbye so the server does not log a lost connection; its answer changes nothing.
        let _ = timeout_at(deadline, session.quit()).await;
    }
    outcome
}

struct Session {
    stream: TcpStream,
    addr: SocketAddr,
    /// Bytes read but not yet consumed as lines.
    buf: Vec<u8>,
    /// What the next reply is, for details: `banner`, `reply to EHLO`...
    waiting_for: &'static str,
}

impl Session {
    /// Banner, EHLO (or HELO). `Ok` is the verdict; `Err` a detail of a broken exchange.
    async fn greet(&mut self, helo_name: &str) -> Result<ProbeOutcome, String> {
        let addr = self.addr;
        let banner = self.reply().await?;
        if banner != 220 {
            return Ok(ProbeOutcome::fail(format!(
                "smtp {banner} banner from {addr}"
            )));
        }
        self.waiting_for = "reply to EHLO";
        self.send(&format!("EHLO {helo_name}\r\n")).await?;
        let ehlo = self.reply().await?;
        if ehlo == 250 {
            return Ok(ProbeOutcome::ok(format!("smtp 250 from {addr}")));
        }
        if !(500..600).contains(&ehlo) {
            return Ok(ProbeOutcome::fail(format!(
                "smtp {ehlo} to EHLO from {addr}"
            )));
        }
        self.waiting_for = "reply to HELO";
        self.send(&format!("HELO {helo_name}\r\n")).await?;
        let helo = self.reply().await?;
        Ok(if helo == 250 {
            ProbeOutcome::ok(format!(
                "smtp 250 to HELO from {addr} (EHLO refused with {ehlo})"
            ))
        } else {
            ProbeOutcome::fail(format!("smtp {helo} to HELO from {addr}"))
        })
    }

    async fn quit(&mut self) -> Result<u16, String> {
        self.waiting_for = "reply to QUIT";
        self.send("QUIT\r\n").await?;
        self.reply().await
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.stream
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("write to {}: {}", self.addr, io_detail(&e)))
    }

    /// One whole reply (`250-a`, `250-b`, `250 c`): its code.
    async fn reply(&mut self) -> Result<u16, String> {
        let mut code = None;
        for _ in 0..MAX_REPLY_LINES {
            let line = self.line().await?;
            let (this, last) = parse_reply_line(&line).ok_or_else(|| {
                format!(
                    "bad smtp {} from {}: {:?}",
                    self.waiting_for,
                    self.addr,
                    String::from_utf8_lossy(&line[..line.len().min(40)])
                )
            })?;
            if code.is_some_and(|c| c != this) {
                return Err(format!(
                    "bad smtp {} from {}: lines with different codes",
                    self.waiting_for, self.addr
                ));
            }
            code = Some(this);
            if last {
                return Ok(this);
            }
        }
        Err(format!(
            "smtp {} from {} longer than {MAX_REPLY_LINES} lines",
            self.waiting_for, self.addr
        ))
    }

    /// The next line, without its line end.
    async fn line(&mut self) -> Result<Vec<u8>, String> {
        let mut scratch = [0u8; 1024];
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() >= MAX_LINE {
                return Err(format!(
                    "smtp {} line from {} longer than {MAX_LINE} bytes",
                    self.waiting_for, self.addr
                ));
            }
            let n = self
                .stream
                .read(&mut scratch)
                .await
                .map_err(|e| format!("read from {}: {}", self.addr, io_detail(&e)))?;
            if n == 0 {
                let when = if self.buf.is_empty() {
                    "before the"
                } else {
                    "in the middle of the"
                };
                return Err(format!(
                    "connection closed by {} {when} smtp {}",
                    self.addr, self.waiting_for
                ));
            }
            self.buf.extend_from_slice(&scratch[..n]);
        }
    }
}

/// `250-text` → `(250, false)`; `250 text` or `250` → `(250, true)`. `None` when the line is not
/// a reply line: three digits, the first 2 to 5 (RFC 5321 §4.2).
fn parse_reply_line(line: &[u8]) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(parse_reply_line(b"220 mx.example ESMTP"), Some((220, true)));
        assert_eq!(parse_reply_line(b"250-PIPELINING"), Some((250, false)));
        assert_eq!(parse_reply_line(b"250"), Some((250, true)));
        assert_eq!(parse_reply_line(b"421 busy"), Some((421, true)));
        for bad in [
            &b""[..],
            b"25",
            b"2a0 x",
            b"100 x",
            b"650 x",
            b"250x",
            b"HTTP/1.1 400 Bad Request",
            b"SSH-2.0-OpenSSH",
        ] {
            assert_eq!(parse_reply_line(bad), None, "{bad:?}");
        }
    }
}
