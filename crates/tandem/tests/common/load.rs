//! A steady HTTP/1.1 load for failure tests: a few keep-alive clients sending GETs back to
//! back, recording every request's outcome and latency, so a test can assert "zero failed
//! requests" and report the worst latency while a backend dies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, relative to the start of the load.
    pub at: Duration,
    pub latency: Duration,
    /// The status and body, or what went wrong.
    pub result: Result<(u16, String), String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self.result, Ok((200, _)))
    }

    pub fn body(&self) -> Option<&str> {
        self.result.as_ref().ok().map(|(_, b)| b.as_str())
    }
}

/// A running load; [`Load::stop`] ends it and returns every outcome.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    pub started: Instant,
}

/// Per-request client timeout: far above anything a working proxy needs, so a hang shows as a
/// failure with its latency instead of stalling the test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

impl Load {
    /// `clients` keep-alive connections to `target`, each sending `GET path` back to back,
    /// with `pause` between requests (bounded: at most `max_requests` per client).
    pub fn start(
        target: SocketAddr,
        path: &'static str,
        clients: usize,
        pause: Duration,
        max_requests: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let tasks = (0..clients)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let outcomes = Arc::clone(&outcomes);
                tokio::spawn(async move {
                    let mut conn: Option<TcpStream> = None;
                    for _ in 0..max_requests {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let at = started.elapsed();
                        let t = Instant::now();
                        let result = match tokio::time::timeout(
                            CLIENT_TIMEOUT,
                            one(&mut conn, target, path),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                conn = None;
                                Err("client timeout".to_string())
                            }
                        };
                        let o = Outcome {
                            at,
                            latency: t.elapsed(),
                            result,
                        };
                        outcomes.lock().expect("outcomes").push(o);
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            outcomes,
            started,
        }
    }

    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(CLIENT_TIMEOUT + Duration::from_secs(1), t).await;
        }
        let mut v = self.outcomes.lock().expect("outcomes").clone();
        v.sort_by_key(|o| o.at);
        v
    }
}

/// One GET on the kept connection (opened if needed); the connection is dropped after an
/// error or a `Connection: close`.
async fn one(
    conn: &mut Option<TcpStream>,
    target: SocketAddr,
    path: &str,
) -> Result<(u16, String), String> {
    if conn.is_none() {
        *conn = Some(
            TcpStream::connect(target)
                .await
                .map_err(|e| format!("connect: {e}"))?,
        );
    }
    let Some(s) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        *conn = None;
        return Err(format!("write: {e}"));
    }
    match read_response(s).await {
        Ok((status, body, close)) => {
            if close {
                *conn = None;
            }
            Ok((status, body))
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

/// Read one response with a Content-Length body: (status, body, connection closes).
async fn read_response(s: &mut TcpStream) -> Result<(u16, String, bool), String> {
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(i) = super::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed without a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let headers = super::head_headers(&head);
    let len: usize = super::header_in(&headers, "content-length")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    let close =
        super::header_in(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("closed mid-body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok((status, String::from_utf8_lossy(&body).to_string(), close))
}

/// Latency percentile (0.0..=1.0) of `outcomes`.
pub fn percentile(outcomes: &[Outcome], p: f64) -> Duration {
    let mut l: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    if l.is_empty() {
        return Duration::ZERO;
    }
    l.sort();
    let i = ((l.len() - 1) as f64 * p).round() as usize;
    l[i.min(l.len() - 1)]
}

/// A short account of the failures, for assertion messages.
pub fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(|o| format!("at {:?} after {:?}: {:?}", o.at, o.latency, o.result))
        .collect()
}
