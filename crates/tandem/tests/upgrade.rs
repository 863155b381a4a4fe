//! Binary upgrade through real processes: `tandem run --upgrade` takes the listening sockets
//! (service and admin) over from the running tandem under a steady keep-alive load; the old
//! process drains and exits 0, no request fails, and the new one can be upgraded in turn. A
//! successor that cannot start (different worker count) leaves the running one serving.
//! Loopback 127.77.121.1.

mod common;

use std::time::Duration;

use common::load::{failures, Load};
use common::*;

fn spawn(tag: &str, dir: &TempDir, extra: &[&str]) -> Tandem {
    let config = dir.path().join("tandem.toml");
    let socket = dir.path().join("upgrade.sock");
    let mut args = vec![
        "run",
        "--config",
        config.to_str().unwrap_or_default(),
        "--upgrade-socket",
        socket.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    Tandem::spawn(tag, &args, TempDir::new(tag))
}

// N = 121
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_loses_no_request() {
    let n = 121;
    let backend = text_backend(ip(n), "ok").await;
    let listen = addr(n, 8080);
    let admin = addr(n, 9900);
    let config = |workers: u32| {
        format!(
            "[admin]\nlisten = \"{admin}\"\n[runtime]\nworkers = {workers}\n\
             [[pool]]\nname = \"app\"\nbackends = [{{ address = \"{}\" }}]\n\
             [[service]]\nname = \"www\"\nlisten = \"{listen}\"\npool = \"app\"\n",
            backend.addr
        )
    };
    let dir = TempDir::new("upgrade-shared");
    dir.write("tandem.toml", &config(2));
    let mut old = spawn("upgrade-a", &dir, &[]);
    old.wait_ready(&[listen, admin]).await;
    // The upgrade socket exists once the process is up.
    eventually("the upgrade socket", Duration::from_secs(5), || async {
        dir.path().join("upgrade.sock").exists().then_some(())
    })
    .await;

    let load = Load::start(listen, "/", 4, Duration::from_millis(3), 5000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A successor with another worker count is refused before anything changes.
    dir.write("tandem.toml", &config(3));
    let mut wrong = spawn("upgrade-wrong", &dir, &["--upgrade"]);
    let status = wrong.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}\n{}",
        wrong.log()
    );
    assert!(wrong.log().contains("workers"), "{}", wrong.log());
    assert!(
        old.try_wait().is_none(),
        "the old process must carry on:\n{}",
        old.log()
    );

    // The real upgrade: B takes over, A drains and exits 0.
    dir.write("tandem.toml", &config(2));
    let mut new = spawn("upgrade-b", &dir, &["--upgrade"]);
    let status = old.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "old: {status:?}\n{}\nnew:\n{}",
        old.log(),
        new.log()
    );
    assert!(new.try_wait().is_none(), "{}", new.log());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // And once more: the successor listens for its own successor.
    let mut third = spawn("upgrade-c", &dir, &["--upgrade"]);
    let status = new.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "second: {status:?}\n{}\nthird:\n{}",
        new.log(),
        third.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGUSR2 (what `systemctl kill -s USR2` sends): the process starts its own successor.
    third.signal(libc::SIGUSR2);
    let status = third.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        third.log()
    );
    let log = strip_ansi(&third.log());
    let fourth: i32 = log
        .lines()
        .find(|l| l.contains("started the successor"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no successor pid in the log:\n{log}"));
    let fourth = Successor(fourth);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let outcomes = load.stop().await;
    let failed = failures(&outcomes);
    assert!(outcomes.len() > 300, "only {} requests", outcomes.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\nthird:\n{}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)],
        third.log()
    );
    // The admin API answers from the fourth process (the only one left).
    let r = get(&format!("http://{admin}/api/v1/pools/app"), &[]).await;
    assert_eq!(r.status, 200);
    drop(fourth);
}

/// The log without terminal colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The process SIGUSR2 started (not our child): stopped by PID at the end of the test.
struct Successor(i32);

impl Drop for Successor {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID read from the log of the process that started it.
        unsafe { libc::kill(self.0, libc::SIGTERM) };
        for _ in 0..500 {
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(self.0, 0) } != 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}
