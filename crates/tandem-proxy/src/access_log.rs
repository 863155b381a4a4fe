//! The access log: one line per HTTP request or TCP connection, written by a thread of its
//! own so that a slow disk never slows a request.
//!
//! Workers hand a [`Record`] of raw values to a bounded queue (`try_send`: when the writer
//! falls behind, lines are dropped and counted, never waited for); the writer formats and
//! writes them through a buffer that is flushed whenever the queue runs empty. One writer per
//! destination, shared by every service that names it. A reload reopens every file, which is
//! what log rotation needs (`postrotate: systemctl reload tandem`).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use tandem_config::{AccessLog as Config, AccessLogFormat, AccessLogTarget};

/// Lines waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 16_384;

/// One request (or TCP connection) as it is logged.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) at: SystemTime,
    pub(crate) client: IpAddr,
    /// `METHOD target` as received (HTTP), empty for TCP.
    pub(crate) request: String,
    /// `HTTP/1.1`, `HTTP/2`, `TCP`.
    pub(crate) protocol: &'static str,
    /// 0 when there was none (TCP).
    pub(crate) status: u16,
    /// Body bytes sent to the client (TCP: bytes both ways, `bytes_in` the client's).
    pub(crate) bytes: u64,
    pub(crate) bytes_in: u64,
    pub(crate) backend: Option<SocketAddr>,
    /// From the request head to the end of the response (TCP: the connection's life).
    pub(crate) duration: Duration,
    /// From sending the request to the backend's response head.
    pub(crate) backend_time: Option<Duration>,
}

/// A service's handle on its log.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    service: Arc<str>,
    format: AccessLogFormat,
    sink: Arc<Sink>,
}

#[derive(Debug)]
struct Sink {
    tx: SyncSender<Msg>,
    dropped: AtomicU64,
}

enum Msg {
    Line(Arc<str>, AccessLogFormat, Box<Record>),
    Reopen,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

fn sinks() -> &'static Mutex<HashMap<AccessLogTarget, Weak<Sink>>> {
    static SINKS: OnceLock<Mutex<HashMap<AccessLogTarget, Weak<Sink>>>> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

impl AccessLog {
    /// The log of `service` as configured: the writer for its destination, started on first
    /// use. A file that cannot be opened is an error (the service does not start with a log
    /// that silently goes nowhere).
    pub(crate) fn open(service: &str, cfg: &Config) -> std::io::Result<AccessLog> {
        let mut map = sinks().lock().unwrap_or_else(|e| e.into_inner());
        let sink = match map.get(&cfg.target).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let out = open(&cfg.target)?;
                let (tx, rx) = sync_channel(QUEUE);
                let target = cfg.target.clone();
                std::thread::Builder::new()
                    .name("access-log".into())
                    .spawn(move || write_loop(&target, out, &rx))?;
                let sink = Arc::new(Sink {
                    tx,
                    dropped: AtomicU64::new(0),
                });
                map.insert(cfg.target.clone(), Arc::downgrade(&sink));
                sink
            }
        };
        Ok(AccessLog {
            service: Arc::from(service),
            format: cfg.format,
            sink,
        })
    }

    /// Queue one line; never waits.
    pub(crate) fn log(&self, record: Record) {
        let msg = Msg::Line(Arc::clone(&self.service), self.format, Box::new(record));
        if let Err(TrySendError::Full(_)) = self.sink.tx.try_send(msg) {
            self.sink.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the writer fell behind.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.sink.dropped.load(Ordering::Relaxed)
    }
}

/// Reopen every log file (a reload): after logrotate moved a file away, lines go to a new one.
pub(crate) fn reopen_all() {
    let map = sinks().lock().unwrap_or_else(|e| e.into_inner());
    for sink in map.values().filter_map(Weak::upgrade) {
        let _ = sink.tx.try_send(Msg::Reopen);
    }
}

fn open(target: &AccessLogTarget) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        AccessLogTarget::Stdout => Box::new(std::io::stdout()),
        AccessLogTarget::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("access_log: cannot open {}: {e}", path.display()),
                    )
                })?,
        ),
    })
}

/// The writer: until every service using this destination is gone.
fn write_loop(target: &AccessLogTarget, out: Box<dyn Write + Send>, rx: &Receiver<Msg>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                // The queue ran empty: what was written reaches the file now.
                let _ = out.flush();
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match msg {
            Msg::Line(service, format, record) => {
                line.clear();
                match format {
                    AccessLogFormat::Common => common(&mut line, &service, &record),
                    AccessLogFormat::Json => json(&mut line, &service, &record),
                }
                line.push('\n');
                if let Err(e) = out.write_all(line.as_bytes()) {
                    tracing::warn!(error = %e, "access log write failed");
                }
            }
            Msg::Reopen => {
                let _ = out.flush();
                match open(target) {
                    Ok(new) => out = std::io::BufWriter::with_capacity(64 * 1024, new),
                    Err(e) => {
                        tracing::warn!(error = %e, "access log: reopening failed; writing to the old file")
                    }
                }
            }
        }
    }
    let _ = out.flush();
}

/// `client - - [22/Nov/2026:09:14:09 +0000] "GET /x HTTP/1.1" 200 13 service=www
/// backend=127.0.0.1:8001 duration=0.002 backend_time=0.001`
fn common(out: &mut String, service: &str, r: &Record) {
    use std::fmt::Write as _;
    let (y, mo, d, h, mi, s, _) = civil(r.at);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::from(mo - 1) % 12];
    let _ = write!(
        out,
        "{} - - [{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000] \"",
        r.client
    );
    if r.request.is_empty() {
        out.push_str(r.protocol);
    } else {
        escaped(out, &r.request);
        out.push(' ');
        out.push_str(r.protocol);
    }
    out.push('"');
    if r.status == 0 {
        out.push_str(" -");
    } else {
        let _ = write!(out, " {}", r.status);
    }
    let _ = write!(out, " {} service={service} backend=", r.bytes);
    match r.backend {
        Some(b) => {
            let _ = write!(out, "{b}");
        }
        None => out.push('-'),
    }
    let _ = write!(out, " duration={:.3}", r.duration.as_secs_f64());
    match r.backend_time {
        Some(t) => {
            let _ = write!(out, " backend_time={:.3}", t.as_secs_f64());
        }
        None => out.push_str(" backend_time=-"),
    }
    if r.protocol == "TCP" {
        let _ = write!(out, " bytes_in={}", r.bytes_in);
    }
}

fn json(out: &mut String, service: &str, r: &Record) {
    use std::fmt::Write as _;
    let (y, mo, d, h, mi, s, ms) = civil(r.at);
    let _ = write!(
        out,
        "{{\"time\":\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z\",\"service\":"
    );
    json_str(out, service);
    let _ = write!(out, ",\"client\":\"{}\",\"request\":", r.client);
    json_str(out, &r.request);
    let _ = write!(out, ",\"protocol\":\"{}\",\"status\":", r.protocol);
    if r.status == 0 {
        out.push_str("null");
    } else {
        let _ = write!(out, "{}", r.status);
    }
    let _ = write!(
        out,
        ",\"bytes\":{},\"bytes_in\":{},\"backend\":",
        r.bytes, r.bytes_in
    );
    match r.backend {
        Some(b) => {
            let _ = write!(out, "\"{b}\"");
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"duration_ms\":{:.3},\"backend_ms\":",
        r.duration.as_secs_f64() * 1000.0
    );
    match r.backend_time {
        Some(t) => {
            let _ = write!(out, "{:.3}", t.as_secs_f64() * 1000.0);
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

/// The request line as a client sent it, with quotes, backslashes and control bytes escaped
/// so a hostile target cannot forge a log line.
fn escaped(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// UTC calendar fields of `t` (days-from-civil inverse, Howard Hinnant's algorithm).
fn civil(t: SystemTime) -> (i64, u8, u8, u8, u8, u8, u32) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
        since.subsec_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_339_449_123),
            client: "2001:db8::7".parse().expect("ip"),
            request: "GET /a\"b\x01".into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 13,
            bytes_in: 0,
            backend: Some("127.0.0.1:8001".parse().expect("addr")),
            duration: Duration::from_micros(2500),
            backend_time: Some(Duration::from_micros(1200)),
        }
    }

    #[test]
    fn common_format() {
        let mut s = String::new();
        common(&mut s, "www", &record());
        assert_eq!(
            s,
            "2001:db8::7 - - [22/Nov/2026:09:24:09 +0000] \"GET /a\\\"b\\x01 HTTP/1.1\" 200 13 \
             service=www backend=127.0.0.1:8001 duration=0.003 backend_time=0.001"
        );
    }

    #[test]
    fn json_format_parses() {
        let mut s = String::new();
        json(&mut s, "w\"w", &record());
        let v: serde_json::Value = serde_json::from_str(&s).expect(&s);
        assert_eq!(v["time"], "2026-11-22T09:24:09.123Z");
        assert_eq!(v["service"], "w\"w");
        assert_eq!(v["request"], "GET /a\"b\u{1}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["backend_ms"], 1.2);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = sync_channel(1);
        let log = AccessLog {
            service: Arc::from("s"),
            format: AccessLogFormat::Json,
            sink: Arc::new(Sink {
                tx,
                dropped: AtomicU64::new(0),
            }),
        };
        log.log(record());
        log.log(record());
        log.log(record());
        assert_eq!(log.dropped(), 2);
    }
}
