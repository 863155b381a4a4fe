//! Health check kinds end to end: the real binary, real commands and real sockets, verdicts
//! read back from the admin API.
//!
//! Each test owns the loopback address 127.77.N.1 (N in the comment above it).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Children of `pid` as `(name, state)`, read from /proc (`Z` = zombie: exited, never reaped).
fn children(pid: i32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
        if ppid == Some(pid) {
            out.push((format!("{head})"), state.unwrap_or_default().to_string()));
        }
    }
    out
}

// N = 86
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_checks_exit_codes_dynamic_weight_and_timeout() {
    let n = 86;
    let b: Vec<HttpBackend> = four_backends(n).await;
    let admin = addr(n, 9900);
    let listen = addr(n, 8080);
    let exec = |script: &str, extra: &str| {
        format!(
            "{{ kind = \"exec\", command = [\"/bin/sh\", \"-c\", \"{script}\"], interval = \"300ms\", timeout = \"250ms\", rise = 1, fall = 1{extra} }}"
        )
    };
    let cfg = format!(
        r#"
[runtime]
workers = 1
[admin]
listen = "{admin}"
[[pool]]
name = "p"
health = {{ kind = "none" }}
backends = [
  {{ address = "{a0}", health = {h0} }},
  {{ address = "{a1}", health = {h1} }},
  {{ address = "{a2}", health = {h2} }},
  {{ address = "{a3}", health = {h3} }},
]
[[service]]
name = "www"
listen = "{listen}"
pool = "p"
"#,
        a0 = b[0].addr,
        a1 = b[1].addr,
        a2 = b[2].addr,
        a3 = b[3].addr,
        // The command sees which backend it checks.
        h0 = exec(&format!("test $TANDEM_BACKEND = {}", b[0].addr), ""),
        h1 = exec("echo disk full >&2; exit 1", ""),
        h2 = exec("exit 7", ", dynamic_weight = true"),
        h3 = exec("sleep 30", ""),
    );
    let t = Tandem::run("exec", &cfg, &[listen, admin]).await;
    let v = eventually(
        "exec verdicts for all four",
        Duration::from_secs(6),
        || async {
            pool_backends(admin, "p")
                .await
                .filter(|v| v.iter().all(|b| b["state"] != "unknown"))
        },
    )
    .await;
    assert_eq!(v[0]["state"], "up", "{}", v[0]);
    assert_eq!(v[1]["state"], "down", "{}", v[1]);
    let reason = v[1]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exit 1") && reason.contains("disk full"),
        "{reason}"
    );
    assert_eq!(v[2]["state"], "up", "{}", v[2]);
    assert_eq!(
        v[2]["weight"], 5,
        "exit 7 with dynamic_weight means weight 5: {}",
        v[2]
    );
    assert_eq!(v[2]["configured_weight"], 1);
    assert_eq!(v[3]["state"], "down", "{}", v[3]);
    let reason = v[3]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timed out"), "{reason}");
    // Several timed-out runs later: every child was reaped and every `sleep` killed.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let kids = children(t.pid());
    assert!(
        kids.iter().all(|(_, state)| state != "Z"),
        "zombie children of tandem: {kids:?}"
    );
    // At most one check per backend can be running at any moment.
    assert!(kids.len() <= 4, "timed-out checks are piling up: {kids:?}");
}

async fn four_backends(n: u8) -> Vec<HttpBackend> {
    let mut v = Vec::new();
    for text in ["0\n", "1\n", "2\n", "3\n"] {
        v.push(text_backend(ip(n), text).await);
    }
    v
}

// N = 87
#[test]
fn a_missing_exec_command_is_a_config_error() {
    let dir = TempDir::new("exec-missing");
    let path = dir.write(
        "tandem.toml",
        r#"[[pool]]
name = "p"
health = { kind = "exec", command = ["/nonexistent/check-backend", "--quick"] }
backends = [{ address = "127.0.0.1:8001" }]

[[service]]
name = "www"
listen = "127.0.0.1:8080"
pool = "p"
"#,
    );
    let out = Command::new(tandem_bin())
        .args(["check", "--config", path.to_str().expect("utf-8")])
        .output()
        .expect("run tandem check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tandem.toml:3:") && err.contains("pool[p].health.command"),
        "{err}"
    );
    assert!(err.contains("/nonexistent/check-backend"), "{err}");
}
