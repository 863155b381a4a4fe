//! The access log through a real tandem: JSON lines for HTTP/1.1 (proxied and tandem's own
//! answers) and HTTP/2, the common format for a TCP service, reopening after log rotation on
//! reload, and a clear config error for a relative path. Loopback 127.77.123.1.

mod common;

use std::time::Duration;

use common::*;

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

// N = 123
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_connections_are_logged_and_logs_reopen_on_reload() {
    let n = 123;
    let web = text_backend(ip(n), "hello").await;
    let echo = echo_backend(ip(n)).await;
    let dir = TempDir::new("access-log");
    let json = dir.path().join("access.json");
    let tcp_log = dir.path().join("tcp.log");
    let listen = addr(n, 8080);
    let tcp = addr(n, 8081);
    let cfg = format!(
        r#"
[admin]
listen = "{admin}"
[[pool]]
name = "web"
backends = [{{ address = "{web}" }}]
[[pool]]
name = "echo"
backends = [{{ address = "{echo}" }}]
[[service]]
name = "www"
listen = "{listen}"
pool = "web"
max_request_body = "1KiB"
access_log = {{ path = "{json}", format = "json" }}
[[service]]
name = "raw"
listen = "{tcp}"
mode = "tcp"
pool = "echo"
access_log = {{ path = "{tcp_log}" }}
"#,
        admin = addr(n, 9900),
        web = web.addr,
        echo = echo.addr,
        json = json.display(),
        tcp_log = tcp_log.display(),
    );
    let t = Tandem::run("access-log", &cfg, &[listen, tcp]).await;

    let r = get(&format!("http://{listen}/x?y=1"), &["-A", "probe"]).await;
    assert_eq!(r.status, 200);
    let big = "z".repeat(2000);
    let r = get(
        &format!("http://{listen}/up"),
        &["-X", "POST", "--data-binary", &big],
    )
    .await;
    assert_eq!(r.status, 413);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        &format!("http://{listen}/h2"),
    ])
    .await;
    assert!(out.ok, "{}", out.stderr);
    let mut got = Vec::new();
    for _ in 0..250 {
        got = lines(&json);
        if got.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.len(), 3, "{got:?}\n{}", t.log());
    let parsed: Vec<serde_json::Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let first = &parsed[0];
    assert_eq!(first["request"], "GET /x?y=1", "{first}");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], 5);
    assert_eq!(first["service"], "www");
    assert_eq!(first["backend"], web.addr.to_string());
    assert!(first["client"]
        .as_str()
        .is_some_and(|c| c.starts_with("127.")));
    assert!(first["backend_ms"].as_f64().is_some(), "{first}");
    let refused = &parsed[1];
    assert_eq!(refused["status"], 413, "{refused}");
    assert!(refused["backend"].is_null(), "{refused}");
    let h2 = &parsed[2];
    assert_eq!(h2["protocol"], "HTTP/2", "{h2}");
    assert_eq!(h2["request"], "GET /h2", "{h2}");
    assert_eq!(h2["status"], 200, "{h2}");
    // Counted as sent (the line is written once the body is out), not taken from a header.
    assert_eq!(h2["bytes"], 5, "{h2}");
    assert_eq!(h2["backend"], web.addr.to_string(), "{h2}");

    // TCP: one line per connection, common format.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(tcp).await.expect("connect");
        s.write_all(&[7u8; 1000]).await.expect("write");
        s.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back.len(), 1000);
    }
    // (The readiness probe of the test harness made an empty connection before.)
    let line = eventually("the TCP line", Duration::from_secs(5), || async {
        lines(&tcp_log)
            .into_iter()
            .find(|l| l.contains("bytes_in=1000"))
    })
    .await;
    assert!(
        line.contains("\"TCP\" - 1000 service=raw")
            && line.contains(&format!("backend={}", echo.addr)),
        "{line}"
    );

    // Log rotation: the file is moved away, a reload opens a new one.
    let rotated = dir.path().join("access.json.1");
    std::fs::rename(&json, &rotated).expect("rotate");
    t.signal(libc::SIGHUP);
    eventually(
        "the reload reopened the log",
        Duration::from_secs(5),
        || async {
            let _ = get(&format!("http://{listen}/after"), &[]).await;
            lines(&json)
                .iter()
                .any(|l| l.contains("GET /after"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        lines(&rotated).len(),
        3,
        "nothing more went to the old file"
    );
}

#[test]
fn a_relative_path_is_a_config_error() {
    let dir = TempDir::new("access-log-bad");
    let path = dir.write(
        "t.toml",
        "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n\
         [[service]]\nname = \"s\"\nlisten = \"127.0.0.1:1\"\npool = \"p\"\n\
         access_log = { path = \"logs/a.log\" }\n",
    );
    let out = std::process::Command::new(tandem_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("tandem check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("t.toml:7:") && err.contains("access_log.path") && err.contains("absolute"),
        "{err}"
    );
}
