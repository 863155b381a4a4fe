//! TLS termination: certificates chosen by SNI, reloaded from their files without a restart,
//! and the rustls server configuration (ALPN `h2` and `http/1.1`, TLS 1.2 and 1.3).
//!
//! Decrypted HTTP/1.1 is served by the native HTTP/1 engine ([`crate::h1`]) like cleartext;
//! HTTP/2 (ALPN `h2`), and every connection of a service whose pools need TLS or HTTP/2 to the
//! backends, by hyper ([`crate::h2::H2Service`]). The choice is made in the data plane's TLS
//! handler.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tandem_config::{load_certified_key, Tls, TlsCertificate, TlsVersion};

/// One loaded certificate, with the file times it was loaded at.
struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: Vec<Option<SystemTime>>,
}

/// The certificates of one service; the first is the default.
pub(crate) struct Certificates {
    files: Vec<TlsCertificate>,
    loaded: ArcSwap<Vec<Loaded>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Certificates")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

fn stamps(c: &TlsCertificate) -> Vec<Option<SystemTime>> {
    let t = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut v = vec![t(&c.cert), t(&c.key)];
    if let Some(o) = &c.ocsp {
        v.push(t(o));
    }
    v
}

impl Certificates {
    /// Loads every certificate (the configuration was validated, so an error here means the
    /// files changed since: it is reported and the service does not start).
    pub(crate) fn load(tls: &Tls) -> Result<Arc<Self>, String> {
        let mut loaded = Vec::with_capacity(tls.certificates.len());
        for c in &tls.certificates {
            loaded.push(Loaded {
                key: load_certified_key(c)?,
                stamp: stamps(c),
            });
        }
        Ok(Arc::new(Self {
            files: tls.certificates.clone(),
            loaded: ArcSwap::from_pointee(loaded),
        }))
    }

    /// Reloads the certificates whose files changed. A renewal that does not load (a key that
    /// does not match, a half-written file) keeps the old certificate and is reported; the
    /// next check tries again. Returns how many were replaced.
    pub(crate) fn reload_changed(&self) -> usize {
        let current = self.loaded.load();
        let mut next: Vec<Loaded> = Vec::with_capacity(current.len());
        let mut replaced = 0;
        for (c, old) in self.files.iter().zip(current.iter()) {
            let now = stamps(c);
            if now == old.stamp {
                next.push(Loaded {
                    key: Arc::clone(&old.key),
                    stamp: old.stamp.clone(),
                });
                continue;
            }
            match load_certified_key(c) {
                Ok(key) => {
                    tracing::info!(cert = %c.cert.display(), "TLS certificate reloaded");
                    replaced += 1;
                    next.push(Loaded { key, stamp: now });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the old one");
                    next.push(Loaded {
                        key: Arc::clone(&old.key),
                        stamp: old.stamp.clone(),
                    });
                }
            }
        }
        if replaced > 0 {
            self.loaded.store(Arc::new(next));
        }
        replaced
    }
}

/// Picks the certificate for a handshake.
#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.0.loaded.load();
        if let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
        {
            for l in loaded.iter() {
                let Some(leaf) = l.key.cert.first() else {
                    continue;
                };
                let valid = webpki::EndEntityCert::try_from(leaf)
                    .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok());
                if valid {
                    return Some(Arc::clone(&l.key));
                }
            }
        }
        loaded.first().map(|l| Arc::clone(&l.key))
    }
}

/// The rustls configuration of a service.
pub(crate) fn server_config(tls: &Tls, certs: &Arc<Certificates>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap_or_else(|_| {
            // The aws-lc-rs provider supports both versions; only a build without them gets here.
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default versions")
        });
    let mut cfg = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(Arc::clone(certs))));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Checks every service's certificate files every [`Tls::RELOAD_CHECK`] until `stop` is set;
/// runs on a thread of its own, so a slow disk never holds up a worker.
pub(crate) fn spawn_reloader(
    all: Arc<std::sync::Mutex<Vec<Arc<Certificates>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            let step = Duration::from_millis(250);
            let mut waited = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited >= Tls::RELOAD_CHECK {
                    waited = Duration::ZERO;
                    // A copy of the list (a reload replaces it), so no file is read under the lock.
                    let watched = all
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    for c in &watched {
                        c.reload_changed();
                    }
                }
            }
        })
}
