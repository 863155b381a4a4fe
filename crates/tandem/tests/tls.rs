//! TLS termination through a real tandem process with real curl: certificates chosen by SNI
//! (verified by curl against the test CA), ALPN h2 and http/1.1, HSTS, X-Forwarded-Proto,
//! malformed TLS counted, a renewed certificate picked up without a restart, and the
//! HTTP→HTTPS redirect helper, HTTP/1.1 over TLS on the native engine. Certificates are made
//! in the test (rcgen, ECDSA P-256).
//! N = 69, 70, 130.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca() -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "tandem test CA");
    let cert = p.self_signed(&key).expect("ca");
    Ca { cert, key }
}

/// A leaf for `name` with common name `cn`, written as `<stem>.pem` / `<stem>.key`.
fn leaf(ca: &Ca, dir: &Path, stem: &str, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("leaf key");
    let mut p = CertificateParams::new(vec![name.to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("leaf");
    let c = dir.join(format!("{stem}.pem"));
    let k = dir.join(format!("{stem}.key"));
    // Written through a temporary name and renamed, as a certificate manager does.
    std::fs::write(c.with_extension("tmp"), cert.pem()).expect("write cert");
    std::fs::rename(c.with_extension("tmp"), &c).expect("rename cert");
    std::fs::write(k.with_extension("tmpk"), key.serialize_pem()).expect("write key");
    std::fs::rename(k.with_extension("tmpk"), &k).expect("rename key");
    (c, k)
}

/// curl over TLS to `name` (resolved to tandem's address); returns (exit ok, stdout, stderr).
async fn tls_curl(port: u16, name: &str, ca: &Path, extra: &[&str], path: &str) -> CurlOut {
    let resolve = format!("{name}:{port}:{}", ip(69));
    let url = format!("https://{name}:{port}{path}");
    let mut args = vec!["-s", "-v", "-m", "5", "--resolve", &resolve, "--cacert"];
    let ca = ca.to_str().expect("utf-8");
    args.push(ca);
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args).await
}

fn subject(err: &str) -> String {
    err.lines()
        .find_map(|l| l.trim().strip_prefix("*  subject: "))
        .unwrap_or("")
        .to_string()
}

// N = 69
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_alpn_hsts_bad_handshakes_and_reload() {
    let n = 69;
    let dir = TempDir::new("tls-certs");
    let ca = ca();
    let ca_file = dir.write("ca.pem", &ca.cert.pem());
    let (www_c, www_k) = leaf(&ca, dir.path(), "www", "www.example.test", "www one");
    let (api_c, api_k) = leaf(&ca, dir.path(), "api", "api.example.test", "api one");
    let backend = HttpBackend::start(
        ip(n),
        |req: hyper::Request<hyper::body::Incoming>| async move {
            let proto = req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            response(200, format!("proto={proto}"))
        },
    )
    .await;
    let listen = addr(n, 8443);
    let plain = addr(n, 8080);
    let admin = addr(n, 9900);
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"

[[pool]]
name = "p"
health = {{ kind = "none" }}
backends = [{{ address = "{b}" }}]

[[service]]
name = "secure"
listen = "{listen}"
pool = "p"
tls = {{ certificates = [ {{ cert = "{wc}", key = "{wk}" }}, {{ cert = "{ac}", key = "{ak}" }} ], hsts = "max-age=31536000" }}

[[service]]
name = "plain"
listen = "{plain}"
pool = "p"
https_redirect = true
"#,
        b = backend.addr,
        wc = www_c.display(),
        wk = www_k.display(),
        ac = api_c.display(),
        ak = api_k.display(),
    );
    let _t = Tandem::run("tls", &cfg, &[listen, plain, admin]).await;
    let port = listen.port();

    // SNI picks the certificate curl verifies for each name (against the test CA).
    let r = tls_curl(
        port,
        "www.example.test",
        &ca_file,
        &["--http1.1", "-D", "-"],
        "/",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let out = String::from_utf8_lossy(&r.stdout).to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert!(
        out.contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    assert!(out.ends_with("proto=https"), "{out}");
    assert!(
        subject(&r.stderr).contains("www one"),
        "{}",
        subject(&r.stderr)
    );
    let r = tls_curl(
        port,
        "api.example.test",
        &ca_file,
        &["--http2", "-w", "%{http_version}", "-o", "/dev/null"],
        "/",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "2", "ALPN h2");
    assert!(subject(&r.stderr).contains("api one"));
    // A name without a certificate gets the default (the first): curl rejects it for that name.
    let r = tls_curl(port, "other.example.test", &ca_file, &[], "/").await;
    assert!(!r.ok);
    assert!(subject(&r.stderr).contains("www one"), "{}", r.stderr);

    // Malformed TLS: plain HTTP on the TLS port; the connection is closed and counted.
    let r = curl(&["-s", "-m", "3", &format!("http://{listen}/")]).await;
    assert!(!r.ok);
    let metrics = curl(&["-s", &format!("http://{admin}/metrics")]).await;
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("tandem_service_tls_handshake_failures_total{service=\"secure\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        failures >= 2,
        "garbage and the rejected name count: {failures}\n{metrics}"
    );
    // ...and the service goes on.
    let r = tls_curl(port, "www.example.test", &ca_file, &[], "/").await;
    assert!(r.ok);

    // The HTTP→HTTPS helper.
    let r = get(
        &format!("http://{plain}/a/b?c=1"),
        &["-H", "Host: www.example.test"],
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(
        header_in(&r.headers, "location"),
        Some("https://www.example.test/a/b?c=1")
    );

    // A renewed certificate is used by new handshakes without a restart.
    let _ = leaf(&ca, dir.path(), "www", "www.example.test", "www two");
    eventually(
        "the renewed certificate",
        Duration::from_secs(15),
        || async {
            let r = tls_curl(port, "www.example.test", &ca_file, &[], "/").await;
            (r.ok && subject(&r.stderr).contains("www two")).then_some(())
        },
    )
    .await;
}

/// A backend speaking `h2` (cleartext, prior knowledge) or HTTP/1.1 over TLS with `cert`:
/// answers its name and the HTTP version it saw. Aborted on drop.
struct ProtoBackend {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProtoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proto_backend(
    n: u8,
    name: &'static str,
    tls: Option<(
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> ProtoBackend {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind((ip(n), 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.map(|(cert, key)| {
        let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg))
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(response(
                            200,
                            format!("{name} {:?}", req.version()),
                        ))
                    },
                );
                match acceptor {
                    Some(a) => {
                        if let Ok(t) = a.accept(s).await {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(t), svc)
                                .await;
                        }
                    }
                    None => {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    }
                }
            });
        }
    });
    ProtoBackend { addr, task }
}

// N = 70
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_h2_to_backends() {
    let n = 70;
    let dir = TempDir::new("tls-backend");
    let ca = ca();
    let ca_file = dir.write("ca.pem", &ca.cert.pem());
    // The TLS backend's certificate is for backend.internal, signed by the test CA.
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["backend.internal".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "backend");
    let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("cert");
    let der = cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let tls_backend = proto_backend(n, "tls-backend", Some((der, key_der))).await;
    let h2a = proto_backend(n, "h2-a", None).await;
    let h2b = proto_backend(n, "h2-b", None).await;
    let admin = addr(n, 9900);
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"

[[pool]]
name = "secure"
health = {{ kind = "none" }}
tls = {{ ca_file = "{ca}", sni = "backend.internal" }}
backends = [{{ address = "{tb}" }}]

[[pool]]
name = "wrongname"
health = {{ kind = "none" }}
tls = {{ ca_file = "{ca}", sni = "other.internal" }}
backends = [{{ address = "{tb}" }}]

[[pool]]
name = "grpc"
scheduler = "rr"
health = {{ kind = "none" }}
protocol = "h2"
backends = [{{ address = "{a}" }}, {{ address = "{b}" }}]

[[service]]
name = "to-tls"
listen = "{l1}"
pool = "secure"
routes = [{{ match = {{ path_prefix = "/wrong" }}, pool = "wrongname" }}]

[[service]]
name = "to-h2"
listen = "{l2}"
pool = "grpc"
"#,
        ca = ca_file.display(),
        tb = tls_backend.addr,
        a = h2a.addr,
        b = h2b.addr,
        l1 = addr(n, 8081),
        l2 = addr(n, 8082),
    );
    let _t = Tandem::run("tls-backends", &cfg, &[addr(n, 8081), addr(n, 8082), admin]).await;

    // TLS to the backend, verified against the CA for the configured name.
    let r = get(&format!("http://{}/", addr(n, 8081)), &[]).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(String::from_utf8_lossy(&r.body), "tls-backend HTTP/1.1");
    // A name the certificate does not cover: the handshake fails, the client gets 502.
    let r = get(&format!("http://{}/wrong", addr(n, 8081)), &[]).await;
    assert_eq!(r.status, 502);

    // HTTP/2 to the backends, balanced per request over one client connection.
    let urls: Vec<String> = (0..10)
        .map(|_| format!("http://{}/", addr(n, 8082)))
        .collect();
    let mut args = vec!["-s", "-w", "\n"];
    args.extend(urls.iter().map(String::as_str));
    let out = curl(&args).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let a = text.lines().filter(|l| *l == "h2-a HTTP/2.0").count();
    let b = text.lines().filter(|l| *l == "h2-b HTTP/2.0").count();
    assert_eq!((a, b), (5, 5), "{text}");
}

/// A TLS client connection to `addr` for `name`, trusting the test CA, offering `alpn`.
async fn tls_client(
    addr: std::net::SocketAddr,
    name: &str,
    ca: &Ca,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// Send `req` on `s`; the response head as received and its body (Content-Length framed).
async fn tls_exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req).await.expect("send request");
    let (head, mut body) = within("a response head", Duration::from_secs(5), read_head(s))
        .await
        .expect("a response head");
    let len: usize = header_in(&head_headers(&head), "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        let n = within("the body", Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("body");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, String::from_utf8_lossy(&body[..len]).into_owned())
}

/// Whether the server ends the connection (within 5 s) with a TLS `close_notify`: rustls
/// reports a plain TCP close as `UnexpectedEof` instead of a clean end of stream.
async fn closes_with_close_notify<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) => return true,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

fn secure_config(
    n: u8,
    backend: std::net::SocketAddr,
    cert: &Path,
    key: &Path,
    log: &Path,
    hsts: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "{admin}"

[[pool]]
name = "p"
health = {{ kind = "none" }}
backends = [{{ address = "{backend}" }}]

[[service]]
name = "native"
listen = "{listen}"
pool = "p"
max_request_body = 100
persistence = {{ kind = "cookie", name = "SRV" }}
access_log = {{ path = "{log}", format = "json" }}
tls = {{ certificates = [ {{ cert = "{cert}", key = "{key}" }} ], hsts = "{hsts}" }}
"#,
        admin = addr(n, 9900),
        listen = addr(n, 8443),
        cert = cert.display(),
        key = key.display(),
        log = log.display(),
    )
}

/// HTTP/1.1 over TLS (ALPN `http/1.1` or none) is served by the native HTTP/1 engine: many
/// requests per connection, the forwarding headers say https, HSTS and persistence cookies on
/// every answer (tandem's own too), 413 with a graceful close (`close_notify`), exact access
/// log lines, and a reload or shutdown that closes keep-alive connections with `close_notify`.
// N = 130
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_over_tls_native_engine() {
    let n = 130;
    let dir = TempDir::new("tls-native");
    let ca = ca();
    let (cert, key) = leaf(&ca, dir.path(), "www", "www.example.test", "www");
    let log = dir.path().join("access.log");
    let backend = HttpBackend::start(
        ip(n),
        |mut req: hyper::Request<hyper::body::Incoming>| async move {
            if req.headers().contains_key("upgrade") {
                // A WebSocket-like echo after 101.
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(up) = on.await else { return };
                    let mut io = hyper_util::rt::TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(k) = io.read(&mut buf).await {
                        if k == 0 || io.write_all(&buf[..k]).await.is_err() {
                            break;
                        }
                    }
                });
                return hyper::Response::builder()
                    .status(101)
                    .header("upgrade", "websocket")
                    .header("connection", "Upgrade")
                    .body(full(bytes::Bytes::new()))
                    .expect("101");
            }
            let h = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            response(
                200,
                format!(
                    "proto={} fwd={} xff={}",
                    h("x-forwarded-proto"),
                    h("forwarded"),
                    h("x-forwarded-for")
                ),
            )
        },
    )
    .await;
    let listen = addr(n, 8443);
    let cfg = secure_config(n, backend.addr, &cert, &key, &log, "max-age=60");
    let t = Tandem::run("tls-native", &cfg, &[listen, addr(n, 9900)]).await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: www.example.test\r\nX-Forwarded-Proto: http\r\n\r\n")
            .into_bytes()
    };

    // Keep-alive: several requests on one TLS connection (ALPN http/1.1).
    let mut s = tls_client(listen, "www.example.test", &ca, &[b"http/1.1"]).await;
    for i in 0..3 {
        let (head, body) = tls_exchange(&mut s, &get(&format!("/k{i}"))).await;
        let lower = head.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 200"), "{head}");
        assert!(
            lower.contains("strict-transport-security: max-age=60\r\n"),
            "{head}"
        );
        assert!(lower.contains("set-cookie: srv="), "{head}");
        assert!(!lower.contains("connection: close"), "{head}");
        let client = s.get_ref().0.local_addr().expect("local").ip().to_string();
        assert!(
            body.starts_with(&format!(
                "proto=https fwd=for={client};proto=https;host=\"www.example.test\""
            )),
            "{body}"
        );
        assert!(body.ends_with(&format!("xff={client}")), "{body}");
    }

    // A declared body over max_request_body: 413 (tandem's own answer, with HSTS), then a
    // graceful close although the body was never read.
    let mut big =
        b"POST /up HTTP/1.1\r\nHost: www.example.test\r\nContent-Length: 1000\r\n\r\n".to_vec();
    big.extend_from_slice(&[b'x'; 1000]);
    let (head, body) = tls_exchange(&mut s, &big).await;
    assert!(head.starts_with("HTTP/1.1 413 "), "{head}");
    // Written by the native engine (hyper would write lower-case names).
    assert!(
        head.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nStrict-Transport-Security: max-age=60\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert_eq!(body, "request body too large\n");
    assert!(
        closes_with_close_notify(&mut s).await,
        "413 ends with close_notify"
    );

    // No ALPN at all: HTTP/1.1, the same engine.
    let mut s = tls_client(listen, "www.example.test", &ca, &[]).await;
    let (head, body) = tls_exchange(
        &mut s,
        b"GET /noalpn HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.starts_with("proto=https "), "{body}");
    assert!(
        closes_with_close_notify(&mut s).await,
        "Connection: close ends with close_notify"
    );

    // The access log: one line per request, exact byte counts.
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
            .collect::<Vec<_>>()
    };
    let got = eventually("5 access log lines", Duration::from_secs(5), || async {
        let l = lines();
        (l.len() >= 5).then_some(l)
    })
    .await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0]["request"], "GET /k0", "{}", got[0]);
    assert_eq!(got[0]["protocol"], "HTTP/1.1");
    assert_eq!(got[0]["status"], 200);
    assert_eq!(got[3]["status"], 413, "{}", got[3]);
    assert_eq!(got[3]["bytes"], 23, "{}", got[3]);
    assert_eq!(got[4]["request"], "GET /noalpn", "{}", got[4]);

    // A protocol upgrade (WebSocket) through TLS: bytes relayed both ways after the 101.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tls_client(listen, "www.example.test", &ca, &[b"http/1.1"]).await;
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: www.example.test\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\n\r\n",
        )
        .await
        .expect("write");
        let (head, rest) = within("101", Duration::from_secs(5), read_head(&mut s))
            .await
            .expect("101 head");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(rest.is_empty());
        s.write_all(b"ping over tls").await.expect("write");
        let mut got = Vec::new();
        let mut chunk = [0u8; 64];
        while got.len() < 13 {
            let k = within("echo", Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("read");
            assert!(k > 0, "closed");
            got.extend_from_slice(&chunk[..k]);
        }
        assert_eq!(got, b"ping over tls");
    }

    // A reload: a keep-alive connection of the old configuration answers its next request
    // (as configured before) with `Connection: close`, then closes with close_notify; new
    // connections get the new configuration.
    let mut old = tls_client(listen, "www.example.test", &ca, &[b"http/1.1"]).await;
    let (head, _) = tls_exchange(&mut old, &get("/before")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    std::fs::write(
        t.config_path(),
        secure_config(n, backend.addr, &cert, &key, &log, "max-age=120"),
    )
    .expect("write config");
    t.signal(libc::SIGHUP);
    eventually("the reloaded HSTS", Duration::from_secs(10), || async {
        let mut s = tls_client(listen, "www.example.test", &ca, &[b"http/1.1"]).await;
        let (head, _) = tls_exchange(&mut s, &get("/probe")).await;
        head.contains("max-age=120").then_some(())
    })
    .await;
    let (head, _) = tls_exchange(&mut old, &get("/after")).await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert!(lower.contains("max-age=60"), "{head}");
    assert!(
        closes_with_close_notify(&mut old).await,
        "retired connection"
    );

    // Shutdown closes an idle keep-alive connection at once, with close_notify.
    let mut idle = tls_client(listen, "www.example.test", &ca, &[b"http/1.1"]).await;
    let (head, _) = tls_exchange(&mut idle, &get("/idle")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    t.signal(libc::SIGTERM);
    assert!(
        closes_with_close_notify(&mut idle).await,
        "idle at shutdown"
    );
}
