//! The `smtp` probe against a real SMTP server (Debian's `python3-aiosmtpd`) and against small
//! scripted servers for the replies a real one rarely gives (421 banner, EHLO refused, garbage).
//!
//! The real server is required, not optional: if `aiosmtpd` cannot be imported the test fails
//! and says what to install, so a machine without it never passes by skipping. Every wait is
//! bounded and the server process is killed by its PID when the test ends, pass or fail.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tandem_config::HealthKind;
use tandem_health::{probe, ProbeOutcome};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const T: Duration = Duration::from_secs(5);

fn smtp(helo_name: &str, port: Option<u16>) -> HealthKind {
    HealthKind::Smtp {
        helo_name: helo_name.into(),
        port,
    }
}

// ---------------------------------------------------------------------------------------------
// A real SMTP server

/// A Python with `aiosmtpd` importable: `$TANDEM_TEST_PYTHON`, Debian's `/usr/bin/python3`
/// (where the apt package installs it, even when another `python3` comes first in PATH), or
/// `python3`.
fn python_with_aiosmtpd() -> String {
    let candidates = std::env::var("TANDEM_TEST_PYTHON")
        .into_iter()
        .chain(["/usr/bin/python3".to_string(), "python3".to_string()]);
    for python in candidates {
        let imported = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imported {
            return python;
        }
    }
    panic!(
        "the smtp probe tests need a real SMTP server: install python3-aiosmtpd \
         (apt-get install -y python3-aiosmtpd), or point TANDEM_TEST_PYTHON at a python3 \
         that can `import aiosmtpd`"
    );
}

/// The aiosmtpd process; killed by its PID and reaped when dropped.
struct SmtpServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start aiosmtpd on a free port of 127.0.0.1 and wait (at most 15 s) until it accepts.
async fn aiosmtpd() -> SmtpServer {
    let python = python_with_aiosmtpd();
    // A free port: bound, noted, released. Another process could take it in between; the
    // readiness check below would then fail loudly rather than test the wrong server.
    let addr = {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        l.local_addr().expect("addr")
    };
    let child = Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python} -m aiosmtpd: {e}"));
    let mut server = SmtpServer { child, addr };
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = server.child.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("aiosmtpd exited with {status} before listening:\n{err}");
        }
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await
        {
            // Read the banner so the server sees a well-behaved client, then leave.
            let mut line = String::new();
            let mut r = BufReader::new(&mut s);
            let _ = tokio::time::timeout(Duration::from_secs(2), r.read_line(&mut line)).await;
            if line.starts_with("220") {
                return server;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "aiosmtpd did not start listening on {addr} within 15s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn real_smtp_server_passes() {
    let server = aiosmtpd().await;
    let addr = server.addr;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("smtp 250 from {addr}")));
    let o = probe(&smtp("lb1.example.com", None), addr, T).await;
    assert!(o.ok, "{o:?}");
}

#[tokio::test]
async fn real_smtp_server_on_a_check_port() {
    let server = aiosmtpd().await;
    // Traffic goes to a port that refuses; the check goes to the SMTP server's port.
    let traffic = {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        l.local_addr().expect("addr")
    };
    let o = probe(&smtp("tandem-health", Some(server.addr.port())), traffic, T).await;
    assert_eq!(
        o,
        ProbeOutcome::ok(format!("smtp 250 from {}", server.addr))
    );
    drop(server);
    // Once it is gone, the same check fails at connect.
    let o = probe(&smtp("tandem-health", Some(traffic.port())), traffic, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("connect refused by {traffic}"))
    );
}

// ---------------------------------------------------------------------------------------------
// Scripted servers

/// A one-connection server: sends `banner`, then answers each line the client sends with the
/// next of `replies` (and `221 bye` to QUIT once they run out), until the client closes.
/// Resolves to the lines the client sent.
async fn scripted(
    banner: impl Into<String>,
    replies: &[&str],
) -> (SocketAddr, oneshot::Receiver<Vec<String>>) {
    let banner: String = banner.into();
    let replies: Vec<String> = replies.iter().map(|r| r.to_string()).collect();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut seen = Vec::new();
        let mut replies = replies.into_iter();
        if w.write_all(banner.as_bytes()).await.is_ok() {
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match replies.next() {
                    Some(r) => r,
                    None if line == "QUIT" => "221 bye\r\n".to_string(),
                    None => "500 unexpected\r\n".to_string(),
                };
                seen.push(line);
                if w.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        let _ = tx.send(seen);
    });
    (addr, rx)
}

/// What the scripted server saw, bounded.
async fn seen(rx: oneshot::Receiver<Vec<String>>) -> Vec<String> {
    tokio::time::timeout(T, rx)
        .await
        .expect("server finished")
        .unwrap_or_default()
}

#[tokio::test]
async fn a_421_banner_fails() {
    let (addr, rx) = scripted("421 mx.example Service not available\r\n", &[]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("smtp 421 banner from {addr}"))
    );
    assert!(
        seen(rx).await.is_empty(),
        "nothing sent after a refusing banner"
    );
}

#[tokio::test]
async fn ehlo_refused_falls_back_to_helo() {
    let (addr, rx) = scripted(
        "220 old.example SMTP\r\n",
        &["502 command not implemented\r\n", "250 old.example\r\n"],
    )
    .await;
    let o = probe(&smtp("lb1.example.com", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::ok(format!(
            "smtp 250 to HELO from {addr} (EHLO refused with 502)"
        ))
    );
    assert_eq!(
        seen(rx).await,
        ["EHLO lb1.example.com", "HELO lb1.example.com", "QUIT"]
    );
}

#[tokio::test]
async fn multi_line_replies_are_read_whole() {
    let (addr, rx) = scripted(
        "220-mx.example ESMTP\r\n220-no UCE\r\n220 ready\r\n",
        &["250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"],
    )
    .await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("smtp 250 from {addr}")));
    // QUIT comes after the whole reply, not after its first line.
    assert_eq!(seen(rx).await, ["EHLO tandem-health", "QUIT"]);
}

#[tokio::test]
async fn refusals_after_the_banner_fail() {
    let (addr, _) = scripted("220 mx\r\n", &["421 too busy\r\n"]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("smtp 421 to EHLO from {addr}"))
    );

    let (addr, _) = scripted("220 mx\r\n", &["500 what\r\n", "550 go away\r\n"]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!("smtp 550 to HELO from {addr}"))
    );
}

#[tokio::test]
async fn garbage_fails_cleanly() {
    let (addr, _) = scripted("HTTP/1.1 400 Bad Request\r\n\r\n", &[]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "bad smtp banner from {addr}: \"HTTP/1.1 400 Bad Request\""
        ))
    );

    let (addr, _) = scripted("220 mx\r\n", &["250-mx\r\n550 no\r\n"]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "bad smtp reply to EHLO from {addr}: lines with different codes"
        ))
    );

    // A reply that never ends.
    let endless = "250-more\r\n".repeat(500);
    let (addr, _) = scripted("220 mx\r\n", &[&endless]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "smtp reply to EHLO from {addr} longer than 100 lines"
        ))
    );

    // A line that never ends.
    let (addr, _) = scripted("2".repeat(5000), &[]).await;
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "smtp banner line from {addr} longer than 2048 bytes"
        ))
    );
}

#[tokio::test]
async fn early_close_and_silence() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        // First connection: closed at once. Second: accepted and never spoken to.
        if let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
        let conn = listener.accept().await;
        std::future::pending::<()>().await;
        drop(conn);
    });
    let o = probe(&smtp("tandem-health", None), addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "connection closed by {addr} before the smtp banner"
        ))
    );
    let o = probe(
        &smtp("tandem-health", None),
        addr,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "timeout after 300ms waiting for the smtp banner from {addr}"
        ))
    );
    server.abort();
}

#[tokio::test]
async fn helo_name_cannot_inject_commands() {
    let (addr, _) = scripted("220 mx\r\n", &["250 ok\r\n"]).await;
    let o = probe(&smtp("x\r\nRCPT TO:<a@b>", None), addr, T).await;
    assert!(
        !o.ok && o.detail.starts_with("invalid smtp check helo_name"),
        "{o:?}"
    );
}
