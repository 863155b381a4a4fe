//! `tandem status` against a running daemon with real backends: the numbers reflect the
//! traffic sent, a killed backend shows down, `--watch` refreshes with rates, the N+1 verdict
//! follows the backends in rotation; and against a stand-in API: the bearer token is sent and
//! a refusal is explained. Each test owns the loopback address 127.77.N.1 (N in the comment).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `tandem status ARGS...` to completion: (exit code, stdout, stderr).
async fn status(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(tandem_bin())
            .arg("status")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run tandem status");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("status thread")
}

async fn status_json(admin: SocketAddr) -> Value {
    let (code, stdout, stderr) = status(&["--json", "--admin", &admin.to_string()]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `count` GETs over one keep-alive connection (curl reuses it).
async fn requests(url: &str, count: usize) {
    let mut args = vec!["-o", "/dev/null"];
    for _ in 0..count {
        args.push(url);
    }
    let out = curl(&args).await;
    assert!(out.ok, "{}", out.stderr);
}

fn backend<'a>(doc: &'a Value, address: &SocketAddr) -> &'a Value {
    doc["pools"][0]["backends"]
        .as_array()
        .and_then(|b| {
            b.iter()
                .find(|b| b["address"].as_str() == Some(&address.to_string()))
        })
        .unwrap_or_else(|| panic!("{address} not in {doc}"))
}

// N = 110
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_traffic_and_the_backends_state() {
    let n = 110;
    let big = text_backend(ip(n), "big").await;
    let small = text_backend(ip(n), "small").await;
    let admin = addr(n, 9900);
    let www = addr(n, 8080);
    let cfg = format!(
        r#"
[runtime]
workers = 2
[admin]
listen = "{admin}"
[[pool]]
name = "web"
scheduler = "rr"
health = {{ kind = "http", path = "/", interval = "200ms", timeout = "100ms", rise = 1, fall = 1 }}
expected_load = "40 req/s"
backends = [
  {{ address = "{big}", capacity = "100 req/s" }},
  {{ address = "{small}", capacity = "50 req/s" }},
]
[[service]]
name = "www"
listen = "{www}"
pool = "web"
"#,
        big = big.addr,
        small = small.addr,
    );
    let dir = TempDir::new("status-config");
    let config = dir.write("tandem.toml", &cfg);
    let config = config.to_str().expect("utf-8").to_string();
    let _t = Tandem::run("status", &cfg, &[www, admin]).await;

    // Both backends checked up, as status reports them.
    eventually("both backends up", Duration::from_secs(10), || async {
        let doc = status_json(admin).await;
        let states: Vec<_> = doc["pools"][0]["backends"]
            .as_array()?
            .iter()
            .map(|b| b["state"].as_str().unwrap_or("").to_string())
            .collect();
        (states == ["up", "up"]).then_some(())
    })
    .await;

    requests(&format!("http://{www}/"), 30).await;

    // --json, with the address read from the config file.
    let (code, stdout, stderr) = status(&["--json", "--config", &config]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(doc["admin"], admin.to_string());
    assert_eq!(doc["services"][0]["name"], "www");
    assert_eq!(doc["services"][0]["mode"], "http");
    let pool = &doc["pools"][0];
    assert_eq!(pool["name"], "web");
    assert_eq!(pool["unit"], "req/s");
    assert_eq!(pool["backends_eligible"], 2);
    let (b, s) = (backend(&doc, &big.addr), backend(&doc, &small.addr));
    assert_eq!(b["total"], 15, "rr splits 30 requests evenly: {doc}");
    assert_eq!(s["total"], 15, "{doc}");
    // http counts body bytes: 15 answers of "big" and of "small"; GETs send none.
    assert_eq!(
        (b["bytes_out"].as_u64(), s["bytes_out"].as_u64()),
        (Some(45), Some(75))
    );
    for x in [b, s] {
        assert_eq!(x["state"], "up");
        assert_eq!(x["failures"], 0);
        assert_eq!(x["bytes_in"], 0, "{x}");
        assert_eq!(x["rate"], 0.0, "no traffic while sampling: {x}");
        assert_eq!(x["bytes_out_per_s"], 0.0, "{x}");
    }
    let interval = doc["interval_s"].as_f64().expect("interval");
    assert!((0.9..5.0).contains(&interval), "{interval}");
    // 100 + 50 in rotation, 50 left without the 100 one, against the traffic just sent.
    let cap = &pool["capacity"];
    assert_eq!(cap["capacity"], 150.0, "{pool}");
    assert_eq!(cap["capacity_without_largest"], 50.0, "{pool}");
    assert_eq!(cap["largest"], big.addr.to_string());
    assert_eq!(cap["expected_load"], 40.0);
    assert_eq!(pool["survives_losing_one"], true, "{pool}");

    // The table: plain text into a pipe, one row per backend under the service.
    let (code, table, stderr) = status(&["--admin", &admin.to_string()]).await;
    assert_eq!(code, Some(0), "{table}{stderr}");
    assert!(!table.contains('\x1b'), "no colour into a pipe: {table:?}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SERVICE / BACKEND"), "{table}");
    let row = |prefix: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix:?} in\n{table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    let svc = row(&format!("www {www} http"));
    assert_eq!(&svc[3..8], ["2/2", "ok", "rr", "0", "30"], "{table}");
    let b_row = row(&format!("  -> {}", big.addr));
    assert_eq!(&b_row[2..7], ["up", "1", "0", "15", "0"], "{table}");
    assert!(
        table.contains("  pool web survives losing 1 backend: yes (observed "),
        "{table}"
    );
    // Every row's columns line up: the TOTAL column ends at the same place in each.
    let header_end = lines[0].find("TOTAL").expect("TOTAL") + "TOTAL".len();
    for l in lines
        .iter()
        .filter(|l| l.contains(" -> ") || l.starts_with("www "))
    {
        assert_eq!(
            l.get(header_end - 2..header_end),
            Some(if l.starts_with("www") { "30" } else { "15" }),
            "{table}"
        );
    }

    // --watch --json: a document per refresh, with rates from the traffic in between.
    let watch = Watch::start(&["--json", "--watch", "0.3", "--admin", &admin.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline && !watch.saw(|d| rate_of(d) > 0.0) {
        requests(&format!("http://{www}/"), 5).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let docs = watch.stop();
    assert!(docs.len() >= 2, "{docs:?}");
    assert!(docs.iter().any(|d| rate_of(d) > 0.0), "{docs:?}");
    assert!(
        docs.iter()
            .skip(1)
            .all(|d| d["interval_s"].as_f64().is_some_and(|s| s < 2.0)),
        "{docs:?}"
    );

    // A killed backend shows down; the pool no longer survives losing one more.
    small.stop_and_wait().await;
    requests(&format!("http://{www}/"), 4).await;
    let doc = eventually(
        "the killed backend down",
        Duration::from_secs(10),
        || async {
            let doc = status_json(admin).await;
            (backend(&doc, &small.addr)["state"] == "down").then_some(doc)
        },
    )
    .await;
    assert_eq!(backend(&doc, &big.addr)["state"], "up");
    assert_eq!(doc["pools"][0]["backends_eligible"], 1);
    let (_, table, _) = status(&["--admin", &admin.to_string()]).await;
    let down = table
        .lines()
        .find(|l| l.starts_with(&format!("  -> {}", small.addr)))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(down.split_whitespace().nth(2), Some("down"), "{table}");
    assert!(table.contains("1/2 ok"), "{table}");
    eventually("N+1 lost", Duration::from_secs(5), || async {
        let doc = status_json(admin).await;
        (doc["pools"][0]["survives_losing_one"] == false).then_some(())
    })
    .await;
    let metrics = curl(&[&format!("http://{admin}/metrics")]).await.text();
    assert!(
        metrics.contains("tandem_pool_survives_loss_of_largest{pool=\"web\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_pool_capacity_without_largest{pool=\"web\",unit=\"req/s\"} 0.0\n"),
        "{metrics}"
    );
}

fn rate_of(doc: &Value) -> f64 {
    doc["pools"][0]["backends"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["rate"].as_f64()).sum())
        .unwrap_or(0.0)
}

/// `tandem status --watch ...` running, its stdout lines collected as JSON documents.
struct Watch {
    child: std::process::Child,
    docs: Arc<Mutex<Vec<Value>>>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = Command::new(tandem_bin())
            .arg("status")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tandem status --watch");
        let docs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&docs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("docs").push(v);
                }
            }
        });
        Watch { child, docs }
    }

    fn saw(&self, f: impl Fn(&Value) -> bool) -> bool {
        self.docs.lock().expect("docs").iter().any(f)
    }

    /// Kill it (our own child, by its handle) and return what it printed.
    fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        let docs = self.docs.lock().expect("docs").clone();
        docs
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in admin API on a std listener: answers each GET from `routes` (path → status and
/// body) and records the request heads.
fn fake_admin(
    n: u8,
    routes: Vec<(&'static str, u16, String)>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(SocketAddr::new(ip(n), 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().expect("heads").push(head);
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, "not found".into()));
            // Chunked, as a streaming server would send it.
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
        }
    });
    (addr, heads)
}

// N = 111
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sends_the_token_and_explains_a_refusal() {
    let n = 111;
    let services = r#"{"services":[{"name":"dns","listen":"127.77.111.1:53","mode":"udp","pool":"resolvers"}]}"#;
    let pools = r#"{"pools":[{"name":"resolvers","scheduler":"maglev","sorry_server":null,"backends_eligible":1,"backends":[
        {"address":"127.77.111.2:53","weight":2,"backup":false,"state":"up","admin_state":"draining","ejected":false,"active":3,"total":1234567,"failures":2,"bytes_in":2048,"bytes_out":5242880},
        {"address":"127.77.111.3:53","weight":1,"backup":true,"state":"up","admin_state":"enabled","ejected":true,"active":0,"total":0,"failures":0,"bytes_in":0,"bytes_out":0}]}]}"#;
    let (admin, heads) = fake_admin(
        n,
        vec![
            ("/api/v1/services", 200, services.to_string()),
            ("/api/v1/pools", 200, pools.replace('\n', "")),
        ],
    );
    let dir = TempDir::new("status-token");
    let token = dir.write("token", "s3cret-token\n");
    let (code, table, stderr) = status(&[
        "--admin",
        &admin.to_string(),
        "--token-file",
        token.to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(code, Some(0), "{table}{stderr}");
    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 4, "two samples of two documents: {heads:?}");
    for h in &heads {
        assert!(
            h.contains("\r\nAuthorization: Bearer s3cret-token\r\n"),
            "{h}"
        );
    }
    // An older daemon without capacity fields still reads; states, units and flags show.
    let row = |prefix: &str| {
        table
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} in\n{table}"))
            .to_string()
    };
    assert!(row("dns 127.77.111.1:53 udp").contains("1/2 ok"), "{table}");
    let drained = row("  -> 127.77.111.2:53");
    assert!(drained.contains(" draining "), "{table}");
    assert!(
        drained.contains(" 1.2M ") && drained.contains(" 5.0 MiB"),
        "{table}"
    );
    assert!(drained.contains(" 0.00 flows/s "), "{table}");
    assert!(
        row("  -> 127.77.111.3:53 (backup)").contains(" ejected "),
        "{table}"
    );
    assert!(!table.contains("survives"), "{table}");

    // A refusal names the way out.
    let (refusing, _) = fake_admin(n, vec![("/api/v1/services", 401, "{}".into())]);
    let (code, stdout, stderr) = status(&["--admin", &refusing.to_string()]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
    // Nothing listening: said plainly.
    let (code, _, stderr) = status(&["--admin", &closed_addr(n, 9).to_string()]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot reach the admin API at"), "{stderr}");
}
