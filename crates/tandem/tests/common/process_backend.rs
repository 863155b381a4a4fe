//! A backend that is a real process (tests/support/http_backend.py), so a test can kill it
//! by PID like a crashed server and see the kernel close its sockets.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use super::ChildGuard;

/// `http_backend.py` answering `NAME\n`; killed (SIGKILL, by PID) when dropped.
pub struct ProcessBackend {
    pub addr: SocketAddr,
    guard: Option<ChildGuard>,
}

impl ProcessBackend {
    /// Start on a free port of `ip` and wait for its `ready` line.
    pub fn start(ip: IpAddr, name: &str) -> ProcessBackend {
        let port = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .and_then(|l| l.local_addr())
            .expect("probe a free port")
            .port();
        Self::start_at(SocketAddr::new(ip, port), name)
    }

    /// Start on `addr` (e.g. again where a killed one was) and wait for its `ready` line.
    pub fn start_at(addr: SocketAddr, name: &str) -> ProcessBackend {
        let (ip, port) = (addr.ip(), addr.port());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http_backend.py");
        let mut child = Command::new("python3")
            .args([script, &ip.to_string(), &port.to_string(), name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        let guard = ChildGuard(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("backend stdout");
        assert_eq!(
            line.trim(),
            "ready",
            "backend {name} on {addr} did not start"
        );
        ProcessBackend {
            addr,
            guard: Some(guard),
        }
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut g) = self.guard.take() {
            let pid = i32::try_from(g.0.id()).expect("pid");
            // SAFETY: kill(2) on the PID of our own unreaped child.
            let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
            assert_eq!(rc, 0, "kill backend");
            let _ = g.0.wait();
        }
    }
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        self.kill();
    }
}
