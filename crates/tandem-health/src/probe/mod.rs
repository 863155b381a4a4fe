//! Probes: one attempt to see whether a backend works, as far as its check kind can see.
//!
//! A probe never fails with an error: everything that can go wrong (refused, reset, timeout,
//! garbage from the peer, a bad certificate) is a failed [`ProbeOutcome`] whose `detail` tells an
//! operator what was seen. The detail always names the address actually probed, because with
//! `port = N` that is not the address traffic goes to, and "refused by :9000" is what explains a
//! down backend whose traffic port works fine. The [`Tracker`](crate::tracker::Tracker) appends
//! the streak count to it, giving reasons like `http 503 from 127.0.0.1:8002 (3/3)`.
//!
//! One module per protocol ([`http`], [`tls`], [`smtp`]); this one dispatches on the kind and
//! owns what they share: connecting within the deadline and wording I/O errors.
//!
//! What can be built once per check rather than per probe (the TLS client configuration, with
//! its parsed root certificates) lives in a [`Prober`], which the checker builds when it starts.

mod body;
mod chunked;
mod http;
mod smtp;
mod tls;

pub use body::MAX_BODY;
pub use http::MAX_RESPONSE_HEAD;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_config::{ExecCommand, HealthKind};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Did the backend pass?
    pub ok: bool,
    /// Short, operator-readable account of what was seen, naming the probed address,
    /// e.g. `http 200 from 127.0.0.1:8001`, `connect refused by 127.0.0.1:8002`,
    /// `timeout after 500ms connecting to 10.0.0.7:80`, `bad status line from [::1]:8003`.
    pub detail: String,
    /// The weight the backend asked for: set only by an `exec` check with
    /// `dynamic_weight = true` whose command reported one; `None` otherwise (keep the weight).
    pub weight: Option<u32>,
}

impl ProbeOutcome {
    /// A pass.
    pub fn ok(detail: impl Into<String>) -> ProbeOutcome {
        ProbeOutcome {
            ok: true,
            detail: detail.into(),
            weight: None,
        }
    }

    /// A failure.
    pub fn fail(detail: impl Into<String>) -> ProbeOutcome {
        ProbeOutcome {
            ok: false,
            detail: detail.into(),
            weight: None,
        }
    }

    /// The same outcome, asking for `weight` (exec checks with `dynamic_weight`).
    pub fn with_weight(mut self, weight: u32) -> ProbeOutcome {
        self.weight = Some(weight);
        self
    }
}

/// A check's probe, prepared once: the kind plus what is expensive to build (for `https`, the
/// TLS client configuration with its root certificates, parsed once instead of per probe).
///
/// Cheap to clone; one is shared by all the backends a check covers.
#[derive(Clone)]
pub struct Prober {
    kind: Arc<HealthKind>,
    /// `https` only: the client configuration, or why it could not be built.
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Prober {
    /// Prepare `kind`. Never fails: a TLS setup problem (an unreadable `ca_file`, no system
    /// roots) is kept and becomes the failed detail of every probe, so the backends go down with
    /// a reason an operator can read; [`Prober::setup_error`] lets the caller log it once.
    pub fn new(kind: &HealthKind) -> Prober {
        let tls = match kind {
            HealthKind::Https {
                tls_verify,
                ca_file,
                ..
            } => Some(tls::client_config(*tls_verify, ca_file.as_deref())),
            _ => None,
        };
        Prober {
            kind: Arc::new(kind.clone()),
            tls,
        }
    }

    /// Why this check cannot work at all, if it cannot (e.g. `ca_file` no longer readable).
    pub fn setup_error(&self) -> Option<&str> {
        match &self.tls {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// Probe `target` (the backend's traffic address) once, within `timeout` in total (connect
    /// and TLS handshake included).
    ///
    /// - `none`: always ok, no I/O.
    /// - `tcp`: ok iff a TCP connect to `target` (or its `port` override) succeeds.
    /// - `http`/`https`: sends `METHOD path HTTP/1.1` with `Host` (default: the probed address),
    ///   `User-Agent: tandem-health` and `Connection: close`, and is ok iff the status code is in
    ///   `expect_status` and, when `expect_body` or `digest` is set, the body (at most
    ///   [`MAX_BODY`] bytes) passes them. Interim `1xx` responses (other than `101`) are skipped.
    ///   Without body checks the connection is dropped after the status line, as HAProxy's
    ///   checks do.
    /// - `smtp`: banner `220`, `EHLO` (or `HELO` if EHLO is refused with 5xx) answered `250`.
    /// - `icmp`, `exec`: see [`icmp_probe`] and [`exec_probe`].
    pub async fn probe(&self, target: SocketAddr, timeout: Duration) -> ProbeOutcome {
        let deadline = deadline(timeout);
        match &*self.kind {
            HealthKind::None => ProbeOutcome::ok("not checked (kind = none)"),
            HealthKind::Tcp { port } => {
                let addr = with_port(target, *port);
                match connect(addr, deadline, timeout).await {
                    Ok(_stream) => ProbeOutcome::ok(format!("connected to {addr}")),
                    Err(outcome) => outcome,
                }
            }
            HealthKind::Http {
                method,
                path,
                host,
                expect_status,
                port,
                expect_body,
                digest,
            } => {
                let addr = with_port(target, *port);
                let check = http::Check {
                    scheme: "http",
                    method,
                    path,
                    host: host.as_deref(),
                    expect_status,
                    expect_body: expect_body.as_ref(),
                    digest: digest.as_ref(),
                };
                // Encoded before connecting: a request we would refuse to send never costs the
                // backend a connection.
                let request = match check.encode(addr) {
                    Ok(r) => r,
                    Err(why) => return ProbeOutcome::fail(why),
                };
                let stream = match connect(addr, deadline, timeout).await {
                    Ok(s) => s,
                    Err(outcome) => return outcome,
                };
                http::run(stream, addr, &check, &request, deadline, timeout).await
            }
            HealthKind::Https {
                method,
                path,
                host,
                expect_status,
                port,
                expect_body,
                digest,
                sni,
                ..
            } => {
                let addr = with_port(target, *port);
                let config = match &self.tls {
                    Some(Ok(c)) => Arc::clone(c),
                    Some(Err(e)) => return ProbeOutcome::fail(e.clone()),
                    None => return ProbeOutcome::fail("https check without a TLS configuration"),
                };
                let check = http::Check {
                    scheme: "https",
                    method,
                    path,
                    host: host.as_deref(),
                    expect_status,
                    expect_body: expect_body.as_ref(),
                    digest: digest.as_ref(),
                };
                let request = match check.encode(addr) {
                    Ok(r) => r,
                    Err(why) => return ProbeOutcome::fail(why),
                };
                let tcp = match connect(addr, deadline, timeout).await {
                    Ok(s) => s,
                    Err(outcome) => return outcome,
                };
                let stream = match tls::handshake(
                    tcp,
                    addr,
                    sni.as_deref(),
                    config,
                    deadline,
                    timeout,
                )
                .await
                {
                    Ok(s) => s,
                    Err(outcome) => return outcome,
                };
                http::run(stream, addr, &check, &request, deadline, timeout).await
            }
            HealthKind::Smtp { helo_name, port } => {
                let addr = with_port(target, *port);
                let stream = match connect(addr, deadline, timeout).await {
                    Ok(s) => s,
                    Err(outcome) => return outcome,
                };
                smtp::run(stream, addr, helo_name, deadline, timeout).await
            }
            HealthKind::Icmp => icmp_probe(target, timeout).await,
            HealthKind::Exec {
                command,
                dynamic_weight,
            } => exec_probe(command, *dynamic_weight, target, timeout).await,
        }
    }
}

/// Probe once with a prober built for this call: for one-off probes and tests. The checker
/// builds a [`Prober`] once per check instead, so `https` parses its roots once.
pub async fn probe(kind: &HealthKind, target: SocketAddr, timeout: Duration) -> ProbeOutcome {
    Prober::new(kind).probe(target, timeout).await
}

/// ICMP echo to the backend's IP address. The ICMP module owns its timeout.
async fn icmp_probe(target: SocketAddr, timeout: Duration) -> ProbeOutcome {
    crate::icmp::probe(target.ip(), timeout).await
}

/// The operator's command, run for this backend. The exec module owns its timeout (it must
/// kill the process, not just stop waiting for it).
async fn exec_probe(
    command: &ExecCommand,
    dynamic_weight: bool,
    target: SocketAddr,
    timeout: Duration,
) -> ProbeOutcome {
    crate::exec::run(command, target, timeout, dynamic_weight)
        .await
        .to_probe_outcome()
}

/// When a probe started now must be over. `checked_add` guards absurd timeouts (which config
/// validation should already refuse).
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

fn with_port(target: SocketAddr, port: Option<u16>) -> SocketAddr {
    let mut addr = target;
    if let Some(p) = port {
        addr.set_port(p);
    }
    addr
}

async fn connect(
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ProbeOutcome> {
    match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ProbeOutcome::fail(format!("connect refused by {addr}")))
        }
        Ok(Err(e)) => Err(ProbeOutcome::fail(format!(
            "connect to {addr}: {}",
            io_detail(&e)
        ))),
        // A connect that hangs usually means the host is gone or a firewall drops packets;
        // saying so separately from a slow answer points the operator at the right layer.
        Err(_) => Err(ProbeOutcome::fail(format!(
            "timeout after {timeout:?} connecting to {addr}"
        ))),
    }
}

/// An I/O error as a short lower-case phrase: "connection reset by peer", not
/// "Connection reset by peer (os error 104)".
fn io_detail(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => &s[..i],
        None => &s[..],
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "i/o error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::net::TcpListener;

    const T: Duration = Duration::from_secs(5);

    /// A port that refuses: bound once, then released.
    pub(super) async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    }

    #[tokio::test]
    async fn none_is_ok_without_io() {
        let o = probe(&HealthKind::None, closed_port().await, T).await;
        assert!(o.ok);
        assert_eq!(o.weight, None);
    }

    #[tokio::test]
    async fn tcp_open_and_closed_port() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let open = l.local_addr().expect("addr");
        let o = probe(&HealthKind::Tcp { port: None }, open, T).await;
        assert_eq!(o, ProbeOutcome::ok(format!("connected to {open}")));

        let closed = closed_port().await;
        let o = probe(&HealthKind::Tcp { port: None }, closed, T).await;
        assert_eq!(
            o,
            ProbeOutcome::fail(format!("connect refused by {closed}"))
        );
    }

    #[tokio::test]
    async fn tcp_port_override_probes_the_other_port() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let open = l.local_addr().expect("addr");
        let closed = closed_port().await;
        // Traffic address refuses, check port accepts: up.
        let o = probe(
            &HealthKind::Tcp {
                port: Some(open.port()),
            },
            closed,
            T,
        )
        .await;
        assert!(o.ok, "{o:?}");
        // And the other way round: down, and the detail names the port that was probed.
        let o = probe(
            &HealthKind::Tcp {
                port: Some(closed.port()),
            },
            open,
            T,
        )
        .await;
        assert_eq!(o.detail, format!("connect refused by {closed}"));
    }

    #[tokio::test]
    async fn ipv6_tcp_refused() {
        let l = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
            .await
            .expect("IPv6 loopback (::1) is required by this test");
        let closed = l.local_addr().expect("addr");
        drop(l);
        let o = probe(&HealthKind::Tcp { port: None }, closed, T).await;
        assert_eq!(o.detail, format!("connect refused by {closed}"));
    }

    #[tokio::test]
    async fn icmp_and_exec_kinds_reach_their_probes() {
        // The port is closed, but ICMP does not care: loopback answers pings.
        let target = closed_port().await;
        let o = probe(&HealthKind::Icmp, target, T).await;
        assert!(o.ok, "{o:?}");
        assert!(
            o.detail.starts_with("icmp echo reply from 127.0.0.1"),
            "{o:?}"
        );
        let command = ExecCommand {
            program: "sh".into(),
            path: "/bin/sh".into(),
            args: vec!["-c".into(), "exit 7".into()],
        };
        let kind = HealthKind::Exec {
            command,
            dynamic_weight: true,
        };
        let o = probe(&kind, target, T).await;
        assert!(o.ok, "{o:?}");
        assert_eq!(o.weight, Some(5), "{o:?}");
    }

    #[test]
    fn outcome_constructors() {
        let o = ProbeOutcome::ok("exec exit 0").with_weight(7);
        assert_eq!(
            (o.ok, o.detail.as_str(), o.weight),
            (true, "exec exit 0", Some(7))
        );
        assert_eq!(ProbeOutcome::fail("x").weight, None);
    }

    #[test]
    fn io_errors_read_like_phrases() {
        let e = io::Error::from_raw_os_error(104);
        assert_eq!(io_detail(&e), "connection reset by peer");
        assert_eq!(io_detail(&io::Error::other("")), "i/o error");
    }
}
