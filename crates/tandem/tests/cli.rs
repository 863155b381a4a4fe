//! The command line: `--version`/`--help`, `check`, `run` failing cleanly, SIGTERM drain, and
//! `demo`. Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

// N = 70
#[test]
fn version_and_help() {
    let out = Command::new(tandem_bin())
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with("tandem ") && v.contains(env!("CARGO_PKG_VERSION")),
        "{v:?}"
    );

    let out = Command::new(tandem_bin())
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check", "demo", "--help", "--version"] {
        assert!(help.contains(word), "--help lacks {word:?}:\n{help}");
    }
    for sub in ["run", "check"] {
        let out = Command::new(tandem_bin())
            .args([sub, "--help"])
            .output()
            .expect("run");
        assert!(out.status.success());
        let h = String::from_utf8_lossy(&out.stdout);
        assert!(h.contains("--config"), "`{sub} --help`:\n{h}");
    }
    let out = Command::new(tandem_bin())
        .arg("no-such-command")
        .output()
        .expect("run");
    assert!(!out.status.success());
}

// N = 71
#[test]
fn check_accepts_every_example() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        n += 1;
        let out = Command::new(tandem_bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "tandem check {}: {}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(n >= 3, "only {n} examples found");
}

/// Split `FILE:LINE:COL: key: message`; `None` if the line does not have that shape.
fn parse_error_line<'a>(line: &'a str, file: &str) -> Option<(u32, u32, &'a str, &'a str)> {
    let rest = line.strip_prefix(file)?.strip_prefix(':')?;
    let (l, rest) = rest.split_once(':')?;
    let (c, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix(' ')?;
    let (key, msg) = rest.split_once(": ")?;
    if key.is_empty() || key.contains(' ') || msg.trim().is_empty() {
        return None;
    }
    Some((l.parse().ok()?, c.parse().ok()?, key, msg))
}

// N = 72
#[test]
fn check_reports_every_error_with_position() {
    let dir = TempDir::new("check-broken");
    let cfg = "\
[[pool]]
name = \"web\"
schedular = \"rr\"
health = { kind = \"tcp\", interval = \"5 s\" }
backends = [{ address = \"127.0.0.1:8001\" }]

[[service]]
name = \"www\"
listen = \"127.0.0.1:8080\"
pool = \"nope\"
";
    let path = dir.write("broken.toml", cfg);
    let out = Command::new(tandem_bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let file = path.to_str().expect("utf-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{stderr}");
    let errors: Vec<(u32, u32, &str, &str)> = all
        .lines()
        .filter_map(|l| parse_error_line(l, file))
        .collect();
    let want: [(u32, &str); 3] = [
        (3, "schedular"),
        (4, "health.interval"),
        (10, "service[www].pool"),
    ];
    for (line, key) in want {
        assert!(
            errors
                .iter()
                .any(|e| e.0 == line && e.2.contains(key) && e.1 >= 1),
            "no `{file}:{line}:COL: ...{key}...: message` line in:\n{all}"
        );
    }
    assert_eq!(errors.len(), 3, "exactly three errors expected:\n{all}");

    // A TOML syntax error, and a file that does not exist: same format, exit 1.
    let bad = dir.write(
        "syntax.toml",
        "[[pool]]\nname = \"web\nscheduler = \"rr\"\n",
    );
    let missing = dir.path().join("missing.toml");
    for path in [bad, missing] {
        let out = Command::new(tandem_bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        let file = path.to_str().expect("utf-8");
        let all = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            all.lines().any(|l| parse_error_line(l, file).is_some()),
            "no FILE:LINE:COL: key: message line:\n{all}"
        );
    }
}

// N = 73
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_invalid_config_exits_nonzero_fast() {
    let n = 73;
    let listen = addr(n, 8080);
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"
[[pool]]
name = "p"
health = {{ kind = "tcp", interval = "soon" }}
backends = [{{ address = "127.0.0.1:8001" }}]
[[service]]
name = "www"
listen = "{listen}"
pool = "p"
"#,
        admin = addr(n, 0)
    );
    let start = Instant::now();
    let mut t = Tandem::run_config("run-invalid", &cfg);
    let status = t
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("tandem run with a bad config must exit");
    assert!(!status.success(), "exit status {status}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        t.log().contains("interval"),
        "log does not name the problem:\n{}",
        t.log()
    );
    assert!(
        TcpStream::connect(listen).await.is_err(),
        "{listen} is bound"
    );
}

// N = 74
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_listen_address_in_use_exits_naming_service_and_address() {
    let n = 74;
    let backend = text_backend(ip(n), "x").await;
    let first = addr(n, 8080);
    let taken = addr(n, 8081);
    let _squatter = TcpListener::bind(taken).await.expect("bind squatter");
    let cfg = format!(
        r#"
[runtime]
workers = 1
[admin]
listen = "{admin}"
[[pool]]
name = "p"
health = {{ kind = "none" }}
backends = [{{ address = "{b}" }}]
[[service]]
name = "first"
listen = "{first}"
pool = "p"
[[service]]
name = "second"
listen = "{taken}"
pool = "p"
"#,
        admin = addr(n, 0),
        b = backend.addr
    );
    let start = Instant::now();
    let mut t = Tandem::run_config("in-use", &cfg);
    let status = t
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("tandem must exit when it cannot listen");
    assert!(!status.success(), "exit status {status}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let log = t.log();
    assert!(
        log.contains("second") && log.contains(&taken.to_string()),
        "error must name the service and the address:\n{log}"
    );
    assert!(
        TcpStream::connect(first).await.is_err(),
        "{first} left bound"
    );

    // The admin address in use: same story.
    let admin = addr(n, 9900);
    let _admin_squatter = TcpListener::bind(admin).await.expect("bind admin squatter");
    let cfg = cfg
        .replace(&format!("\"{}\"", addr(n, 0)), &format!("\"{admin}\""))
        .replace(&format!("\"{taken}\""), &format!("\"{}\"", addr(n, 8082)));
    let mut t = Tandem::run_config("admin-in-use", &cfg);
    let status = t
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("tandem must exit when the admin address is taken");
    assert!(!status.success());
    assert!(t.log().contains(&admin.to_string()), "{}", t.log());
    assert!(
        TcpStream::connect(first).await.is_err(),
        "{first} left bound"
    );
}

/// A backend that answers after `delay`.
async fn slow_backend(n: u8, delay: Duration) -> HttpBackend {
    HttpBackend::start(ip(n), move |_req| async move {
        tokio::time::sleep(delay).await;
        response(200, "slow but sure")
    })
    .await
}

// N = 75
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let n = 75;
    let backend = slow_backend(n, Duration::from_secs(1)).await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "").replace(
        "[runtime]\nworkers = 2",
        "[runtime]\nworkers = 2\ndrain_timeout = \"5s\"",
    );
    let mut t = Tandem::run("drain", &cfg, &[listen]).await;

    // An idle keep-alive connection must not hold up the exit.
    let mut idle = TcpStream::connect(listen).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let _ = within(
        "idle conn's response",
        Duration::from_secs(5),
        read_head(&mut idle),
    )
    .await;

    let url = format!("http://{listen}/");
    let inflight = tokio::spawn(async move { get(&url, &[]).await });
    eventually(
        "the request to reach the backend",
        Duration::from_secs(5),
        || async { (backend.stats.requests() >= 2).then_some(()) },
    )
    .await;
    let sent = Instant::now();
    t.signal(libc::SIGTERM);

    eventually(
        "new connections to be refused",
        Duration::from_secs(1),
        || async { TcpStream::connect(listen).await.is_err().then_some(()) },
    )
    .await;
    assert!(
        !inflight.is_finished(),
        "listener closed only after the in-flight request ended"
    );
    let r = within("the in-flight request", Duration::from_secs(5), inflight)
        .await
        .expect("task");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), "slow but sure");
    let status = t
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("tandem did not exit within drain_timeout");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "exit {took:?} after SIGTERM: an idle keep-alive connection held up the drain"
    );
}

// N = 76
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_gives_up_after_drain_timeout() {
    let n = 76;
    let backend = slow_backend(n, Duration::from_secs(30)).await;
    let listen = addr(n, 8080);
    let cfg = config(n, "http", &[backend.addr], "", "").replace(
        "[runtime]\nworkers = 2",
        "[runtime]\nworkers = 2\ndrain_timeout = \"1s\"",
    );
    let mut t = Tandem::run("drain-timeout", &cfg, &[listen]).await;
    let url = format!("http://{listen}/");
    let stuck = tokio::spawn(async move { curl(&[&url]).await });
    eventually(
        "the request to reach the backend",
        Duration::from_secs(5),
        || async { (backend.stats.requests() >= 1).then_some(()) },
    )
    .await;
    let sent = Instant::now();
    t.signal(libc::SIGINT);
    let status = t
        .wait_exit(Duration::from_secs(4))
        .await
        .expect("tandem must exit once drain_timeout has passed");
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM with drain_timeout = 1s"
    );
    let out = within("curl to end", Duration::from_secs(5), stuck)
        .await
        .expect("task");
    assert!(!out.ok, "the stuck request cannot have succeeded");
}

async fn pools_json(admin: SocketAddr) -> Option<serde_json::Value> {
    let out = curl(&[&format!("http://{admin}/api/v1/pools")]).await;
    out.ok
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn states(v: &serde_json::Value) -> Vec<(String, String)> {
    v["pools"][0]["backends"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    (
                        b["address"].as_str().unwrap_or("?").to_string(),
                        b["state"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// N = 77
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_balances_and_fails_over() {
    let n = 77;
    let listen = addr(n, 8080);
    let admin = addr(n, 9900);
    let mut t = Tandem::spawn(
        "demo",
        &[
            "demo",
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ],
        TempDir::new("demo"),
    );
    t.wait_ready(&[listen, admin]).await;
    let url = format!("http://{listen}/");

    let r = get(&url, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body_text().contains("demo backend"), "{r:?}");

    let v = eventually("3 backends up", Duration::from_secs(10), || async {
        pools_json(admin).await.filter(|v| {
            let s = states(v);
            s.len() == 3 && s.iter().all(|(_, st)| st == "up")
        })
    })
    .await;
    let addrs: Vec<String> = states(&v).into_iter().map(|(a, _)| a).collect();

    let r = get(&format!("http://{listen}/demo/sick"), &["-X", "POST"]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let sick_text = r.body_text();
    let sick = addrs
        .iter()
        .find(|a| sick_text.contains(a.as_str()))
        .unwrap_or_else(|| panic!("which backend is sick? {sick_text:?}"))
        .clone();

    eventually(
        "the sick backend to go down",
        Duration::from_secs(8),
        || async {
            pools_json(admin)
                .await
                .filter(|v| states(v).iter().any(|(a, st)| *a == sick && st == "down"))
        },
    )
    .await;
    let v = pools_json(admin).await.expect("pools");
    let up = states(&v).iter().filter(|(_, st)| st == "up").count();
    assert_eq!(up, 2, "{v}");

    for _ in 0..8 {
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            !r.body_text().contains(sick.as_str()),
            "traffic reached the sick backend: {}",
            r.body_text()
        );
    }

    let r = get(&format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text().trim(), "ok");
    let r = get(&format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body_text().contains("tandem_backend_up"),
        "{}",
        r.body_text()
    );
    assert!(t.stdout().contains("curl"), "the banner shows what to try");
    assert!(t.try_wait().is_none(), "demo exited");
}

/// Single points of failure are warnings: printed as `warning: FILE:LINE:COL: key: message`,
/// counted in the summary, and the exit status stays 0.
#[test]
fn check_warns_about_single_points_of_failure() {
    let dir = TempDir::new("check-spof");
    let path = dir.write(
        "spof.toml",
        "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:8001\" }, { address = \"127.0.0.2:8001\", backup = true }]\n\n\
         [[service]]\nname = \"s\"\nlisten = \"198.51.100.5:80\"\npool = \"p\"\n",
    );
    let out = Command::new(tandem_bin())
        .args(["check", "--config", path.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let file = path.to_str().expect("utf-8");
    let warned: Vec<_> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .filter_map(|l| parse_error_line(l, file))
        .collect();
    assert_eq!(warned.len(), 1, "{stdout}");
    assert_eq!(
        (warned[0].0, warned[0].2),
        (7, "service[s].listen"),
        "{stdout}"
    );
    assert!(
        warned[0].3.starts_with("single point of failure"),
        "{stdout}"
    );
    assert!(stdout.contains("1 warning(s)"), "{stdout}");
}
