//! The `https` probe against a real TLS server (tokio-rustls) on 127.0.0.1, with a self-signed
//! certificate made per test run by `rcgen`: what each verification setting accepts, and that
//! SNI is what the server sees.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tandem_config::{BodyMatch, HealthKind, StatusSet};
use tandem_health::{probe, ProbeOutcome, Prober};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

const T: Duration = Duration::from_secs(5);

/// A self-signed certificate for `localhost` and 127.0.0.1, and its PEM in a temp file
/// (removed on drop) for `ca_file`.
struct TestCert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem_file: PathBuf,
}

impl TestCert {
    fn new(tag: &str) -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("rcgen");
        let pem_file =
            std::env::temp_dir().join(format!("tandem-health-{}-{tag}.pem", std::process::id()));
        std::fs::write(&pem_file, made.cert.pem()).expect("write ca file");
        TestCert {
            der: made.cert.der().clone(),
            key: made.key_pair.serialize_der(),
            pem_file,
        }
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_file);
    }
}

/// A TLS server answering every connection with `response`; reports the SNI of each
/// handshake that completed (`None`: the client sent none). Aborted on drop.
struct TlsServer {
    addr: SocketAddr,
    sni: mpsc::UnboundedReceiver<Option<String>>,
    task: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_server(cert: &TestCert, response: &'static [u8], close_notify: bool) -> TlsServer {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone()));
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, sni) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake: nothing to serve.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tx.send(tls.get_ref().1.server_name().map(str::to_string));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(response).await;
                if close_notify {
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    TlsServer { addr, sni, task }
}

fn https(sni: Option<&str>, tls_verify: bool, ca_file: Option<&PathBuf>) -> HealthKind {
    HealthKind::Https {
        method: "GET".into(),
        path: "/healthz".into(),
        host: None,
        expect_status: StatusSet::default(),
        port: None,
        expect_body: None,
        digest: None,
        sni: sni.map(str::to_string),
        tls_verify,
        ca_file: ca_file.cloned(),
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready";

#[tokio::test]
async fn tls_verify_false_accepts_a_self_signed_certificate() {
    let cert = TestCert::new("noverify");
    let mut server = tls_server(&cert, OK, true).await;
    let addr = server.addr;
    let o = probe(&https(None, false, None), addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("https 200 from {addr}")));
    // No sni and an IP target: no SNI sent.
    assert_eq!(server.sni.recv().await, Some(None));
}

#[tokio::test]
async fn ca_file_trusts_the_certificate_by_ip_and_by_name() {
    let cert = TestCert::new("cafile");
    let mut server = tls_server(&cert, OK, true).await;
    let addr = server.addr;
    // Verified against the IP address (the certificate lists 127.0.0.1).
    let o = probe(&https(None, true, Some(&cert.pem_file)), addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("https 200 from {addr}")));
    // Verified against the SNI name, which the server sees.
    let o = probe(
        &https(Some("localhost"), true, Some(&cert.pem_file)),
        addr,
        T,
    )
    .await;
    assert_eq!(o, ProbeOutcome::ok(format!("https 200 from {addr}")));
    assert_eq!(server.sni.recv().await, Some(None));
    assert_eq!(server.sni.recv().await, Some(Some("localhost".into())));
}

#[tokio::test]
async fn ca_file_rejects_a_name_the_certificate_does_not_cover() {
    let cert = TestCert::new("wrongname");
    let server = tls_server(&cert, OK, true).await;
    let addr = server.addr;
    let o = probe(
        &https(Some("db.example.test"), true, Some(&cert.pem_file)),
        addr,
        T,
    )
    .await;
    assert!(!o.ok, "{o:?}");
    assert!(
        o.detail.starts_with(&format!(
            "tls handshake with {addr}: invalid peer certificate"
        )),
        "{o:?}"
    );
}

#[tokio::test]
async fn system_roots_reject_a_self_signed_certificate() {
    let cert = TestCert::new("sysroots");
    let server = tls_server(&cert, OK, true).await;
    let addr = server.addr;
    let o = probe(&https(Some("localhost"), true, None), addr, T).await;
    assert!(!o.ok, "{o:?}");
    // With system roots installed the issuer is unknown; without any, the check says so.
    assert!(
        o.detail == format!("tls handshake with {addr}: invalid peer certificate: UnknownIssuer")
            || o.detail.starts_with("no system root certificates found"),
        "{o:?}"
    );
}

#[tokio::test]
async fn sni_is_sent_as_configured() {
    let cert = TestCert::new("sni");
    let mut server = tls_server(&cert, OK, true).await;
    let o = probe(
        &https(Some("api.example.test"), false, None),
        server.addr,
        T,
    )
    .await;
    assert!(o.ok, "{o:?}");
    let seen = tokio::time::timeout(T, server.sni.recv())
        .await
        .expect("handshake seen");
    assert_eq!(seen, Some(Some("api.example.test".into())));
}

#[tokio::test]
async fn body_checks_over_tls_even_without_close_notify() {
    let cert = TestCert::new("body");
    // Body delimited by the close, and the server closes without close_notify.
    let server = tls_server(&cert, b"HTTP/1.1 200 OK\r\n\r\nall ready", false).await;
    let addr = server.addr;
    let mut kind = https(None, false, None);
    if let HealthKind::Https { expect_body, .. } = &mut kind {
        *expect_body = Some(BodyMatch::parse("/ready$/").expect("valid"));
    }
    let o = probe(&kind, addr, T).await;
    assert_eq!(o, ProbeOutcome::ok(format!("https 200 from {addr}")));

    let server = tls_server(&cert, b"HTTP/1.1 200 OK\r\n\r\nstarting", true).await;
    let addr = server.addr;
    let o = probe(&kind, addr, T).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "https 200 from {addr}, body does not match \"/ready$/\""
        ))
    );
}

#[tokio::test]
async fn tls_to_a_plaintext_server_fails_cleanly() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let o = probe(&https(None, false, None), addr, T).await;
    assert!(!o.ok, "{o:?}");
    assert!(
        o.detail
            .starts_with(&format!("tls handshake with {addr}: ")),
        "{o:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_stalled_handshake_times_out() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let conn = listener.accept().await;
        std::future::pending::<()>().await;
        drop(conn);
    });
    let o = probe(&https(None, false, None), addr, Duration::from_millis(300)).await;
    assert_eq!(
        o,
        ProbeOutcome::fail(format!(
            "timeout after 300ms in the tls handshake with {addr}"
        ))
    );
    server.abort();
}

#[tokio::test]
async fn an_unusable_ca_file_fails_every_probe_with_the_reason() {
    let missing = PathBuf::from("/nonexistent/tandem/ca.pem");
    let prober = Prober::new(&https(None, true, Some(&missing)));
    let why = prober.setup_error().expect("setup error").to_string();
    assert!(
        why.starts_with("cannot read ca_file /nonexistent/tandem/ca.pem"),
        "{why}"
    );
    let o = prober
        .probe(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)), T)
        .await;
    assert_eq!(o, ProbeOutcome::fail(why));
}
