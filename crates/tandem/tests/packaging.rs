//! What a package ships, checked with the real tools: the systemd unit passes
//! `systemd-analyze verify`, the readiness protocol is spoken on `$NOTIFY_SOCKET` (READY,
//! RELOADING/READY around a reload, STOPPING), and the man page and completions are generated
//! from the command line definition. Loopback 127.77.122.1.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/tandem.service"
    ))
    .expect("packaging/tandem.service");
    assert!(
        unit.contains("Type=notify") && unit.contains("ExecReload="),
        "{unit}"
    );
    // The unit as installed, with this build's binary in place of /usr/bin/tandem (and no
    // man page lookup, which needs the page installed).
    let dir = TempDir::new("unit");
    let local = unit
        .replace("/usr/bin/tandem", tandem_bin())
        .replace("Documentation=man:tandem(1)\n", "");
    let path = dir.write("tandem.service", &local);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd) must be installed for this test");
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

#[test]
fn man_page_and_completions_cover_every_command() {
    let man = Command::new(tandem_bin())
        .arg("man")
        .output()
        .expect("tandem man");
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.contains(".TH tandem 1"), "{man}");
    let bash = Command::new(tandem_bin())
        .args(["completions", "bash"])
        .output()
        .expect("tandem completions");
    let bash = String::from_utf8_lossy(&bash.stdout);
    for sub in [
        "run",
        "check",
        "reload",
        "demo",
        "vip-cleanup",
        "completions",
        "man",
    ] {
        assert!(
            man.contains(&sub.replace('-', "\\-")),
            "man page lacks `{sub}`"
        );
        assert!(bash.contains(sub), "bash completion lacks `{sub}`");
    }
}

/// The datagrams tandem sent to the notify socket so far.
fn received(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    out
}

// N = 122
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_systemd_notify() {
    let n = 122;
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let listen = addr(n, 8080);
    let admin = addr(n, 9900);
    let config = dir.write(
        "tandem.toml",
        &format!(
            "[admin]\nlisten = \"{admin}\"\n[[pool]]\nname = \"p\"\n\
             backends = [{{ address = \"127.0.0.1:1\" }}]\n\
             [[service]]\nname = \"www\"\nlisten = \"{listen}\"\npool = \"p\"\n"
        ),
    );
    let upgrade = dir.path().join("upgrade.sock");
    let mut child = Command::new(tandem_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--upgrade-socket")
        .arg(&upgrade)
        .env("NOTIFY_SOCKET", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tandem");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut seen = Vec::new();
    let ready =
        |seen: &[String], n: usize| seen.iter().filter(|m| m.contains("READY=1")).count() >= n;
    for _ in 0..100 {
        seen.extend(received(&socket));
        if ready(&seen, 1) {
            break;
        }
    }
    assert!(ready(&seen, 1), "{seen:?}");
    // Ready means listening.
    assert!(std::net::TcpStream::connect(listen).is_ok());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    for _ in 0..100 {
        seen.extend(received(&socket));
        if ready(&seen, 2) {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
        "{seen:?}"
    );
    assert!(ready(&seen, 2), "READY=1 again after the reload: {seen:?}");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..100 {
        seen.extend(received(&socket));
        if seen.iter().any(|m| m.contains("STOPPING=1")) {
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert!(status.success());
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
}
