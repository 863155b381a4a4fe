//! `tandem demo`: three small HTTP backends in-process, a health-checked pool over them, an
//! HTTP service and the admin API, all on 127.0.0.1, so a newcomer sees balancing and
//! failover with nothing but curl.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tandem_config::Config;

use crate::cli::DemoOpts;

/// How long `POST /demo/sick` makes a backend fail its health checks.
const SICK_FOR: Duration = Duration::from_secs(15);

pub fn run(opts: DemoOpts) -> anyhow::Result<()> {
    let backends = start_backends(3)?;
    let cfg = demo_config(&opts, &backends)?;
    crate::daemon::run(cfg, None, None, |started| {
        let listen = started.services.first().map_or(opts.listen, |(_, a)| *a);
        print_banner(listen, started.admin, &backends);
    })
}

/// The demo's configuration, written as the TOML an operator would write (and parsed by the
/// same code), so the demo doubles as a worked example of a health-checked, retrying pool.
fn demo_toml(opts: &DemoOpts, backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let weight = if i == 0 { 2 } else { 1 };
            format!("  {{ address = \"{a}\", weight = {weight} }},")
        })
        .collect();
    format!(
        r#"[runtime]
workers = 1

[admin]
listen = "{admin}"

[[pool]]
name = "demo"
scheduler = "wrr"
health = {{ kind = "http", path = "/healthz", expect_status = "200-299", interval = "1s", timeout = "500ms", rise = 2, fall = 2 }}
retries = 2
slow_start = "10s"
backends = [
{list}
]

[[service]]
name = "www"
listen = "{listen}"
mode = "http"
pool = "demo"
"#,
        admin = opts.admin,
        listen = opts.listen,
        list = list.join("\n"),
    )
}

fn demo_config(opts: &DemoOpts, backends: &[SocketAddr]) -> anyhow::Result<Config> {
    tandem_config::parse_str(&demo_toml(opts, backends), "<demo>")
        .map_err(|e| anyhow::anyhow!("the demo's own configuration is invalid (a bug):\n{e}"))
}

fn print_banner(listen: SocketAddr, admin: SocketAddr, backends: &[SocketAddr]) {
    let list: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "\ntandem demo is running.\n\
         \n  HTTP service  http://{listen}/   pool \"demo\" (wrr, weights 2:1:1) over {}\
         \n  admin API     http://{admin}/\n\
         \nTry:\
         \n  curl http://{listen}/                     # answered by the backends in turn\
         \n  curl http://{admin}/api/v1/pools          # backends, health, counters (JSON)\
         \n  curl http://{admin}/metrics               # Prometheus metrics\
         \n  curl -X POST http://{listen}/demo/sick    # the answering backend fails its health checks for {}s;\
         \n                                              watch it go down in /api/v1/pools and traffic move away\
         \n\nCtrl-C stops everything.\n",
        list.join(", "),
        SICK_FOR.as_secs(),
    );
    let _ = out.flush();
}

/// Start `n` demo backends on 127.0.0.1 (ephemeral ports) on their own thread.
fn start_backends(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = std::net::TcpListener::bind("127.0.0.1:0")
            .context("demo backend: cannot bind 127.0.0.1")?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    let addrs = sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            rt.block_on(async move {
                for (i, s) in sockets.into_iter().enumerate() {
                    match tokio::net::TcpListener::from_std(s) {
                        Ok(l) => {
                            tokio::spawn(serve_backend(i + 1, l));
                        }
                        Err(e) => eprintln!("demo backend {}: {e}", i + 1),
                    }
                }
                std::future::pending::<()>().await;
            })
        })?;
    Ok(addrs)
}

/// Unix seconds until which the backend reports itself unhealthy.
struct BackendState {
    number: usize,
    addr: SocketAddr,
    sick_until: AtomicU64,
}

async fn serve_backend(number: usize, listener: tokio::net::TcpListener) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let state = Arc::new(BackendState {
        number,
        addr,
        sick_until: AtomicU64::new(0),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(backend_response(&state, &req)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn backend_response(state: &BackendState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let sick = state.sick_until.load(Ordering::Relaxed) > unix_now();
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") if sick => {
            (StatusCode::SERVICE_UNAVAILABLE, "sick\n".to_string())
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n".to_string()),
        (&Method::POST, "/demo/sick") => {
            state
                .sick_until
                .store(unix_now() + SICK_FOR.as_secs(), Ordering::Relaxed);
            (
                StatusCode::OK,
                format!(
                    "demo backend {} ({}) now fails its health checks for {}s\n",
                    state.number,
                    state.addr,
                    SICK_FOR.as_secs()
                ),
            )
        }
        _ => {
            let xff = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            (
                StatusCode::OK,
                format!(
                    "hello from demo backend {} ({}) path={} x-forwarded-for={}\n",
                    state.number,
                    state.addr,
                    req.uri().path(),
                    xff
                ),
            )
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}
