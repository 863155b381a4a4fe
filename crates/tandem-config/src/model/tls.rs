//! `[[service]] tls = { ... }`: TLS termination.

use std::path::PathBuf;

/// `tls = { certificates = [...], min_version = "1.2", hsts = "max-age=..." }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// At least one; the first is the default (no SNI, or no certificate for the name).
    pub certificates: Vec<TlsCertificate>,
    /// `min_version`: `"1.2"` (default) or `"1.3"`.
    pub min_version: TlsVersion,
    /// `hsts`: a `Strict-Transport-Security` value added to every response over TLS.
    pub hsts: Option<String>,
}

/// `{ cert = "/etc/tandem/www.pem", key = "/etc/tandem/www.key", ocsp = "/etc/tandem/www.ocsp" }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// DER: an OCSP response to staple, refreshed from the file on reload.
    pub ocsp: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl Tls {
    /// How often certificate files are checked for changes (renewals are picked up without a
    /// restart).
    pub const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(5);
}

/// Loads and checks one certificate and its key: the chain parses, the key parses, and the key
/// belongs to the certificate. The error names the file at fault and never shows key bytes.
pub fn load_certified_key(
    c: &TlsCertificate,
) -> Result<std::sync::Arc<rustls::sign::CertifiedKey>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| format!("cannot read certificate file {}: {e}", c.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file {}: {e}", c.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "certificate file {} has no PEM certificate",
            c.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| {
        // pki-types' errors never contain key material.
        format!("private key file {}: {e}", c.key.display())
    })?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
        format!(
            "private key file {}: unsupported key ({e})",
            c.key.display()
        )
    })?;
    let mut ck = rustls::sign::CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| {
        format!(
            "private key file {} does not belong to the certificate in {}",
            c.key.display(),
            c.cert.display()
        )
    })?;
    if let Some(ocsp) = &c.ocsp {
        ck.ocsp = Some(
            std::fs::read(ocsp)
                .map_err(|e| format!("cannot read OCSP response {}: {e}", ocsp.display()))?,
        );
    }
    Ok(std::sync::Arc::new(ck))
}
