//! TLS for the `https` probe: the client configuration (built once per check) and the
//! handshake (once per probe).
//!
//! rustls with the *aws-lc-rs* provider (the one TLS termination uses), chosen explicitly
//! rather than through a process-wide default, so this crate never depends on what another part
//! of tandem installed. Trust comes from `ca_file` when set, else from the operating system's
//! store (`rustls-native-certs`: the `/etc/ssl/certs` bundle on Debian, which `ca-certificates`
//! maintains), loaded once per process. `tls_verify = false` swaps in a verifier that accepts any
//! certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{io_detail, ProbeOutcome};

/// The client configuration of one `https` check. `Err` is a detail for every probe of it.
pub(super) fn client_config(
    verify: bool,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls setup: {e}"))?;
    let config = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let roots = match ca_file {
            Some(path) => Arc::new(roots_from_file(path)?),
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The CAs in `path` (PEM). The config crate checked the file holds PEM certificates when it
/// was loaded; this parses them for real, and the file may also have changed since.
fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read ca_file {shown}: {e}"))?;
    for (i, cert) in certs.enumerate() {
        let cert = cert.map_err(|e| format!("ca_file {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {shown}: certificate {}: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {shown} holds no certificate"));
    }
    Ok(roots)
}

/// The operating system's trusted roots, read once per process (they are a few hundred
/// certificates; every https check shares them).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _unusable) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no system root certificates found{why}; install ca-certificates or set ca_file"
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// Run the TLS handshake on `tcp` (connected to `addr`) before `deadline`. The server name is
/// `sni` when set, sent and verified; else the backend's IP address, which rustls does not send
/// as SNI and verifies against the certificate's IP addresses.
pub(super) async fn handshake(
    tcp: TcpStream,
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
    deadline: Instant,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ProbeOutcome> {
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_string())
            .map_err(|_| ProbeOutcome::fail(format!("invalid https check sni {s:?}")))?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let connector = TlsConnector::from(config);
    match timeout_at(deadline, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ProbeOutcome::fail(format!(
            "tls handshake with {addr}: {}",
            io_detail(&e)
        ))),
        Err(_) => Err(ProbeOutcome::fail(format!(
            "timeout after {timeout:?} in the tls handshake with {addr}"
        ))),
    }
}

/// `tls_verify = false`: any certificate is accepted, for any name, expired or not. Handshake
/// signatures are still checked (with the certificate presented), so the connection is a
/// well-formed TLS session, just with a peer nobody vouches for.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_build() {
        assert!(client_config(false, None).is_ok());
        let err = client_config(true, Some(Path::new("/nonexistent/ca.pem"))).expect_err("no file");
        assert!(
            err.starts_with("cannot read ca_file /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
