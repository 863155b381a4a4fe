//! Hot reload through a real tandem process: SIGHUP and `POST /api/v1/reload` under a steady
//! keep-alive load while weights change, a backend, a pool, a route and a service are added
//! and a service is removed, with zero failed requests; an invalid file leaves the old
//! configuration serving; state of unchanged and changed pools survives. Loopback 127.77.12x.1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::load::{failures, Load};
use common::*;

struct Lab {
    a1: HttpBackend,
    a2: HttpBackend,
    b1: HttpBackend,
    listen: SocketAddr,
    second: SocketAddr,
    admin: SocketAddr,
}

impl Lab {
    /// The file for one step: `app` backends, and optionally pool `b` with its route and the
    /// second service.
    fn config(&self, app: &str, with_b: bool, second: bool) -> String {
        let mut s = format!(
            "[admin]\nlisten = \"{}\"\n\n[[pool]]\nname = \"app\"\n\
             health = {{ kind = \"tcp\", interval = \"200ms\" }}\nbackends = [{app}]\n",
            self.admin
        );
        if with_b {
            s += &format!(
                "\n[[pool]]\nname = \"b\"\nhealth = {{ kind = \"tcp\", interval = \"200ms\" }}\n\
                 backends = [{{ address = \"{}\" }}]\n",
                self.b1.addr
            );
        }
        s += &format!(
            "\n[[service]]\nname = \"www\"\nlisten = \"{}\"\npool = \"app\"\n",
            self.listen
        );
        if with_b {
            s += "routes = [ { match = { path_prefix = \"/b/\" }, pool = \"b\" } ]\n";
        }
        if second {
            s += &format!(
                "\n[[service]]\nname = \"www2\"\nlisten = \"{}\"\npool = \"app\"\n",
                self.second
            );
        }
        s
    }

    fn a1(&self) -> String {
        format!("{{ address = \"{}\" }}", self.a1.addr)
    }

    fn a1_a2(&self, w2: u32) -> String {
        format!(
            "{{ address = \"{}\" }}, {{ address = \"{}\", weight = {w2} }}",
            self.a1.addr, self.a2.addr
        )
    }
}

async fn reload_api(admin: SocketAddr) -> (u16, String) {
    let out = curl(&[
        "-s",
        "-X",
        "POST",
        "-w",
        "\n%{http_code}",
        &format!("http://{admin}/api/v1/reload"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

/// A list of names in the reload report.
fn field(report: &str, name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(report).unwrap_or_default();
    v[name]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn body(url: &str) -> String {
    let r = get(url, &[]).await;
    String::from_utf8_lossy(&r.body).to_string()
}

// N = 120
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let n = 120;
    let lab = Lab {
        a1: text_backend(ip(n), "a1").await,
        a2: text_backend(ip(n), "a2").await,
        b1: text_backend(ip(n), "b1").await,
        listen: addr(n, 8080),
        second: addr(n, 8081),
        admin: addr(n, 9900),
    };
    let mut t = Tandem::run(
        "reload",
        &lab.config(&lab.a1(), false, false),
        &[lab.listen],
    )
    .await;
    let path = t.config_path();
    let write = |cfg: String| std::fs::write(&path, cfg).expect("write config");
    let load = Load::start(lab.listen, "/", 4, Duration::from_millis(5), 4000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. A backend added (SIGHUP): it gets traffic; a1's counters and health carry over.
    eventually("a1 is up", Duration::from_secs(5), || async {
        let b = pool_backends(lab.admin, "app").await?;
        (b[0]["state"] == "up").then_some(())
    })
    .await;
    let before = pool_backends(lab.admin, "app").await.expect("api");
    let a1_total = before[0]["total"].as_u64().unwrap_or(0);
    assert!(a1_total > 0, "{before:?}");
    write(lab.config(&lab.a1_a2(1), false, false));
    t.signal(libc::SIGHUP);
    eventually(
        "a2 serves after the reload",
        Duration::from_secs(5),
        || async { (body(&format!("http://{}/", lab.listen)).await == "a2").then_some(()) },
    )
    .await;
    let after = pool_backends(lab.admin, "app").await.expect("api");
    assert_eq!(after.len(), 2);
    assert!(
        after[0]["total"].as_u64().unwrap_or(0) >= a1_total,
        "{after:?}"
    );
    assert_eq!(after[0]["state"], "up", "health carried over: {after:?}");

    // 2. A weight change through the API.
    write(lab.config(&lab.a1_a2(3), false, false));
    let (code, report) = reload_api(lab.admin).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(field(&report, "pools_changed"), ["app"], "{report}");
    let after = pool_backends(lab.admin, "app").await.expect("api");
    assert_eq!(after[1]["weight"], 3, "{after:?}");

    // 3. A new pool, a route to it and a second service on a new address.
    write(lab.config(&lab.a1_a2(3), true, true));
    let (code, report) = reload_api(lab.admin).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(field(&report, "services_added"), ["www2"], "{report}");
    assert_eq!(field(&report, "pools_added"), ["b"], "{report}");
    assert_eq!(body(&format!("http://{}/b/x", lab.listen)).await, "b1");
    let r = get(&format!("http://{}/", lab.second), &[]).await;
    assert_eq!(r.status, 200);

    // 4. An invalid file: refused with the place of the error; the old one keeps serving.
    write(lab.config(&lab.a1_a2(3), true, true) + "\n[[pool]]\nname = 5\n");
    let (code, report) = reload_api(lab.admin).await;
    assert_eq!(code, 422, "{report}");
    assert!(report.contains("tandem.toml:"), "{report}");
    t.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(t.try_wait().is_none(), "tandem exited:\n{}", t.log());
    assert_eq!(body(&format!("http://{}/b/x", lab.listen)).await, "b1");
    // `tandem reload` says the same, with exit status 1.
    let cli = std::process::Command::new(tandem_bin())
        .args(["reload", "--admin", &lab.admin.to_string()])
        .output()
        .expect("tandem reload");
    assert_eq!(cli.status.code(), Some(1));
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(
        err.contains("reload refused (422)") && err.contains("tandem.toml:"),
        "{err}"
    );
    // A section a reload cannot change is refused too.
    write(lab.config(&lab.a1_a2(3), true, true) + "\n[runtime]\nworkers = 7\n");
    let (code, report) = reload_api(lab.admin).await;
    assert_eq!(code, 422, "{report}");
    assert!(report.contains("[runtime]"), "{report}");

    // 5. The second service removed (`tandem reload --config`): its listener closes; the
    // first one carries on.
    write(lab.config(&lab.a1_a2(3), true, false));
    let cli = std::process::Command::new(tandem_bin())
        .args(["reload", "--config", path.to_str().unwrap_or_default()])
        .output()
        .expect("tandem reload");
    let report = String::from_utf8_lossy(&cli.stdout).to_string();
    assert_eq!(cli.status.code(), Some(0), "{report}");
    assert_eq!(field(&report, "services_removed"), ["www2"], "{report}");
    assert_eq!(field(&report, "pools_unchanged"), ["app", "b"], "{report}");
    eventually("www2 stops listening", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(lab.second)
            .await
            .err()
            .map(|_| ())
    })
    .await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.stop().await;
    let failed = failures(&outcomes);
    assert!(outcomes.len() > 200, "only {} requests", outcomes.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)],
        t.log()
    );
    let services = curl(&["-s", &format!("http://{}/api/v1/services", lab.admin)]).await;
    let services = String::from_utf8_lossy(&services.stdout);
    assert!(!services.contains("www2"), "{services}");
}
