//! Helpers for the black-box tests: run the real `tandem` binary on a config, small backends
//! (hyper or raw TCP) on loopback, a `curl` runner and bounded polling.
//!
//! Every test gets its own loopback address `127.77.N.1` (see [`ip`]) so that tests running in
//! parallel never collide on a port; backends bind ephemeral ports on that address.

#![allow(dead_code)]

pub mod cdp;
pub mod load;
pub mod netns;
pub mod process_backend;
pub mod vrrp;

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// The loopback address owned by test number `n`.
pub fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, n, 1))
}

/// A fixed port on test `n`'s own address.
pub fn addr(n: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(n), port)
}

/// An address on which nothing listens (connections are refused at once).
pub fn closed_addr(n: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 77, n, 2)), port)
}

// ---------------------------------------------------------------------------------------------
// Bounded waiting

/// Poll `f` every 20 ms until it returns `Some`, or panic after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `fut` must finish within `within`.
pub async fn within<T>(what: &str, within: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(within, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {within:?}: {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tandem-itest-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The tandem process

pub fn tandem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// A running `tandem` process, killed (by PID) when dropped. Its stdout and stderr go to files
/// in its temp dir; the log is printed when a test fails, to help whoever reads the failure.
pub struct Tandem {
    child: Option<Child>,
    dir: TempDir,
    tag: String,
}

impl Tandem {
    /// Spawn `tandem ARGS...` (no waiting).
    pub fn spawn(tag: &str, args: &[&str], dir: TempDir) -> Tandem {
        let out = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(tandem_bin())
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn tandem");
        Tandem {
            child: Some(child),
            dir,
            tag: tag.to_string(),
        }
    }

    /// `tandem run --config <config>` without waiting for it to listen.
    pub fn run_config(tag: &str, config: &str) -> Tandem {
        let dir = TempDir::new(tag);
        let path = dir.write("tandem.toml", config);
        let path = path.to_str().expect("utf-8 path").to_string();
        Tandem::spawn(tag, &["run", "--config", &path], dir)
    }

    /// `tandem run` on `config`, then wait until every address in `ready` accepts connections.
    pub async fn run(tag: &str, config: &str, ready: &[SocketAddr]) -> Tandem {
        let mut t = Tandem::run_config(tag, config);
        t.wait_ready(ready).await;
        t
    }

    /// Wait until every address accepts a TCP connection (and the process is still alive).
    pub async fn wait_ready(&mut self, addrs: &[SocketAddr]) {
        for &a in addrs {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = self.try_wait() {
                    panic!(
                        "tandem exited with {status} before listening on {a}; log:\n{}",
                        self.log()
                    );
                }
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(a)).await
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "tandem is not listening on {a} after 10s; log:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The configuration file `run_config` wrote (a test rewrites it before a reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tandem.toml")
    }

    pub fn pid(&self) -> i32 {
        let id = self.child.as_ref().expect("child").id();
        i32::try_from(id).expect("pid fits i32")
    }

    /// Send a signal to this process (by PID).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the PID of our own child process, which we have not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("try_wait")
    }

    /// Wait (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything tandem wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                // Child::kill sends SIGKILL to this child's PID only.
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- tandem log ({}) ----\n{}---- end of tandem log ----",
                self.tag,
                self.log()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// curl

pub struct CurlOut {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CurlOut {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Run `curl -sS --noproxy '*' --max-time 30 ARGS...` on a blocking thread.
pub async fn curl(args: &[&str]) -> CurlOut {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "--max-time", "30"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run curl (is it installed?)");
        CurlOut {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    })
    .await
    .expect("curl thread")
}

/// A parsed HTTP response as printed by `curl -i` (interim 1xx responses skipped).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Resp {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Parse `curl -i` output: status line, headers, body.
pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let mut rest = raw;
    loop {
        let end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..end]).ok()?;
        let body = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let mut parts = status_line.split_whitespace();
        let version = parts.next()?.to_string();
        let status: u16 = parts.next()?.parse().ok()?;
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        return Some(Resp {
            status,
            version,
            headers,
            body: body.to_vec(),
            elapsed: Duration::ZERO,
        });
    }
}

/// `curl -i ARGS... URL`, parsed. Panics (with curl's stderr) when curl itself fails.
pub async fn get(url: &str, extra: &[&str]) -> Resp {
    let mut args: Vec<&str> = vec!["-i"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await;
    assert!(
        out.ok,
        "curl {args:?} failed ({:?}): {}",
        out.code, out.stderr
    );
    let mut r = parse_response(&out.stdout)
        .unwrap_or_else(|| panic!("unparsable response to {url}: {:?}", out.text()));
    r.elapsed = out.elapsed;
    r
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// HTTP backends (hyper)

#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub conns: AtomicUsize,
    /// Requests whose handler started.
    pub requests: AtomicUsize,
    /// Requests whose handler has not produced a response yet.
    pub inflight: AtomicUsize,
    /// The highest `inflight` seen.
    pub max_inflight: AtomicUsize,
}

impl Stats {
    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn max_inflight(&self) -> usize {
        self.max_inflight.load(Ordering::SeqCst)
    }
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// An HTTP/1.1 server (keep-alive, upgrades) on an ephemeral port; stops when dropped.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start<F, Fut>(ip: IpAddr, handler: F) -> HttpBackend
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::start_at(SocketAddr::new(ip, 0), handler).await
    }

    pub async fn start_at<F, Fut>(addr: SocketAddr, handler: F) -> HttpBackend
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let stats = Arc::new(Stats::default());
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let task = tokio::spawn(serve_http(listener, handler, Arc::clone(&stats)));
        HttpBackend { addr, stats, task }
    }

    /// Stop listening and drop every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Stop, and wait until the port refuses connections.
    pub async fn stop_and_wait(&self) {
        self.stop();
        let addr = self.addr;
        eventually(
            "backend port to close",
            Duration::from_secs(5),
            || async move { TcpStream::connect(addr).await.is_err().then_some(()) },
        )
        .await;
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_http(listener: TcpListener, handler: Handler, stats: Arc<Stats>) {
    // Connection tasks live in the set, so aborting this task closes them all.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        stats.conns.fetch_add(1, Ordering::SeqCst);
        let handler = Arc::clone(&handler);
        let stats = Arc::clone(&stats);
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let handler = Arc::clone(&handler);
                let stats = Arc::clone(&stats);
                async move {
                    stats.requests.fetch_add(1, Ordering::SeqCst);
                    let now = stats.inflight.fetch_add(1, Ordering::SeqCst) + 1;
                    stats.max_inflight.fetch_max(now, Ordering::SeqCst);
                    let resp = handler(req).await;
                    stats.inflight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// A backend answering every request with `200` and `text` as the body.
pub async fn text_backend(ip: IpAddr, text: &'static str) -> HttpBackend {
    HttpBackend::start(ip, move |_req| async move { response(200, text) }).await
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

pub fn response(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(full(body))
        .expect("response")
}

/// A response body fed through a channel: frames are sent when the test decides.
pub struct ChanBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

pub fn chan_body(capacity: usize) -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, ChanBody(rx).boxed())
}

// ---------------------------------------------------------------------------------------------
// Raw TCP backends

/// A TCP server running `handler` for every accepted connection; stops when dropped.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    pub async fn start<F, Fut>(ip: IpAddr, handler: F) -> RawBackend
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&conns);
        let task = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while set.try_join_next().is_some() {}
                counter.fetch_add(1, Ordering::SeqCst);
                set.spawn(handler(stream));
            }
        });
        RawBackend { addr, conns, task }
    }

    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP echo backend.
pub async fn echo_backend(ip: IpAddr) -> RawBackend {
    RawBackend::start(ip, |mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// Read an HTTP message head (up to and including the blank line) from `s`. Returns the head
/// and whatever was read past it; `None` on EOF before a whole head.
pub async fn read_head<R: AsyncRead + Unpin>(s: &mut R) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Header lines of a raw head (lower-cased names, trimmed values), request/status line skipped.
pub fn head_headers(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// Read until EOF or error, bounded. Returns what was read and whether it ended (EOF/error)
/// rather than by the deadline.
pub async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test data: a deterministic byte pattern and a cheap streaming checksum

/// Chunk `i` (64 KiB) of the deterministic test pattern.
pub fn pattern_chunk(i: u64) -> Bytes {
    const WORDS: u64 = 8192;
    let mut v = Vec::with_capacity((WORDS * 8) as usize);
    for j in 0..WORDS {
        v.extend_from_slice(&splitmix64(i * WORDS + j).to_le_bytes());
    }
    Bytes::from(v)
}

pub const CHUNK: u64 = 64 * 1024;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An order-sensitive checksum over a byte stream fed in arbitrary pieces.
#[derive(Debug, Clone)]
pub struct Digest {
    h: u64,
    len: u64,
    tail: Vec<u8>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
            tail: Vec::with_capacity(8),
        }
    }
}

impl Digest {
    fn mix(&mut self, w: u64) {
        self.h = (self.h.rotate_left(5) ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let need = 8 - self.tail.len();
            let take = need.min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail[..8].try_into().expect("8 bytes"));
            self.tail.clear();
            self.mix(w);
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        self.tail.extend_from_slice(words.remainder());
    }

    /// `(length, checksum)`.
    pub fn finish(mut self) -> (u64, u64) {
        if !self.tail.is_empty() {
            let mut w = [0u8; 8];
            w[..self.tail.len()].copy_from_slice(&self.tail);
            self.mix(u64::from_le_bytes(w) ^ 0xff);
        }
        (self.len, self.h)
    }
}

/// The digest of the first `chunks` pattern chunks.
pub fn pattern_digest(chunks: u64) -> (u64, u64) {
    let mut d = Digest::default();
    for i in 0..chunks {
        d.update(&pattern_chunk(i));
    }
    d.finish()
}

/// Digest of a file read in pieces.
pub fn file_digest(path: &Path) -> (u64, u64) {
    let mut f = std::fs::File::open(path).expect("open file");
    let mut d = Digest::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read file");
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    d.finish()
}

/// Shared slot for whatever a backend wants to report to the test (e.g. request headers).
pub type Seen<T> = Arc<Mutex<Vec<T>>>;

pub fn seen<T>() -> Seen<T> {
    Arc::new(Mutex::new(Vec::new()))
}

// ---------------------------------------------------------------------------------------------
// Configs

/// A config with one pool `p` over `backends` and one service `www` on `127.77.N.1:8080` in
/// `mode`, admin on an ephemeral port of the same address. `pool_extra` and `service_extra` are
/// extra TOML lines; the pool's health check is `none` unless `pool_extra` sets one.
pub fn config(
    n: u8,
    mode: &str,
    backends: &[SocketAddr],
    pool_extra: &str,
    service_extra: &str,
) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect();
    let health = if pool_extra.contains("health") {
        ""
    } else {
        "health = { kind = \"none\" }"
    };
    format!(
        r#"
[runtime]
workers = 2

[admin]
listen = "{admin}"

[[pool]]
name = "p"
{health}
{pool_extra}
backends = [{list}]

[[service]]
name = "www"
listen = "{listen}"
mode = "{mode}"
pool = "p"
{service_extra}
"#,
        admin = addr(n, 0),
        list = list.join(", "),
        listen = addr(n, 8080),
    )
}

/// Upload and download `chunks` pattern chunks through `listen` (in front of a
/// [`digest_backend`]) with curl and `proto_args`, checking both arrive intact and the download
/// used HTTP version `want_version` as curl reports it ("1.1", "2").
pub async fn bulk_round_trip(
    listen: SocketAddr,
    chunks: u64,
    proto_args: &[&str],
    want_version: &str,
) {
    let dir = TempDir::new("bulk");
    let up = dir.path().join("up.bin");
    write_pattern_file(&up, chunks);
    let (len, h) = pattern_digest(chunks);
    assert_eq!(len, chunks * CHUNK);
    let mut args = proto_args.to_vec();
    args.extend(["-T", up.to_str().expect("path")]);
    let r = get(&format!("http://{listen}/upload"), &args).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body_text(),
        format!("{len} {h:x}"),
        "upload arrived intact"
    );

    let down = dir.path().join("down.bin");
    let url = format!("http://{listen}/download?chunks={chunks}");
    let mut args = proto_args.to_vec();
    args.extend([
        "-o",
        down.to_str().expect("path"),
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ]);
    let out = curl(&args).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.text(), format!("{want_version} 200"));
    assert_eq!(file_digest(&down), (len, h), "download arrived intact");
}

/// A backend for bulk transfers: `GET /download?chunks=N` streams `N` pattern chunks (default
/// 800 = 50 MiB); anything else reads the request body and answers `LEN HASH` of it.
pub async fn digest_backend(ip: IpAddr) -> HttpBackend {
    HttpBackend::start(ip, |req: Request<Incoming>| async move {
        if req.uri().path() == "/download" {
            let chunks: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("chunks="))
                .and_then(|c| c.parse().ok())
                .unwrap_or(800);
            let (tx, body) = chan_body(4);
            tokio::spawn(async move {
                for i in 0..chunks {
                    if tx.send(pattern_chunk(i)).await.is_err() {
                        return;
                    }
                }
            });
            return Response::new(body);
        }
        let mut body = req.into_body();
        let mut d = Digest::default();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(data) = f.data_ref() {
                        d.update(data);
                    }
                }
                Err(e) => return response(500, format!("body error: {e}")),
            }
        }
        let (len, h) = d.finish();
        response(200, format!("{len} {h:x}"))
    })
    .await
}

/// Write the first `chunks` pattern chunks to `path`.
pub fn write_pattern_file(path: &Path, chunks: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..chunks {
        f.write_all(&pattern_chunk(i)).expect("write");
    }
    f.flush().expect("flush");
}

/// A child process (e.g. a streaming curl) killed by PID and reaped when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The backends of `pool` as the admin API at `admin` shows them (`None` while it is not up).
pub async fn pool_backends(admin: SocketAddr, pool: &str) -> Option<Vec<serde_json::Value>> {
    let out = curl(&["-s", &format!("http://{admin}/api/v1/pools/{pool}")]).await;
    if !out.ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["backends"].as_array().cloned()
}

/// An HTTP/2 client (prior knowledge) on `stream`, its connection driven by a task of its own;
/// the task ends when the connection does (`Ok` after a server's GOAWAY and close).
pub async fn h2_client<B>(
    stream: TcpStream,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    (sender, tokio::spawn(conn))
}
