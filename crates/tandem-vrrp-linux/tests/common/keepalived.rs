//! A real keepalived as the VRRP peer in a test's network namespace: started with the
//! test's own configuration, its log kept for assertions, and stopped by PID (its own and
//! the VRRP child's it wrote down), never by name.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

pub struct Keepalived {
    child: Child,
    vrrp_pid_file: PathBuf,
    dir: PathBuf,
}

impl Keepalived {
    /// keepalived in namespace `ns` with `global_defs` (VRRPv3, a router id from `tag` and
    /// this process) followed by `instances`, the `vrrp_instance` blocks of the test.
    pub fn start(ns: &str, tag: &str, instances: &str) -> Keepalived {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("{tag}{pid}-keepalived-{ns}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("LAB SETUP FAILED: {e}"));
        let conf = dir.join("keepalived.conf");
        std::fs::write(
            &conf,
            format!("global_defs {{\n  router_id {tag}{pid}\n  vrrp_version 3\n}}\n{instances}"),
        )
        .unwrap_or_else(|e| panic!("LAB SETUP FAILED: {e}"));
        let log = File::create(dir.join("keepalived.log"))
            .unwrap_or_else(|e| panic!("LAB SETUP FAILED: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("LAB SETUP FAILED: {e}"));
        let vrrp_pid_file = dir.join("vrrp.pid");
        let child = Process::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
            ])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(&vrrp_pid_file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("LAB SETUP FAILED: cannot start keepalived: {e}"));
        Keepalived {
            child,
            vrrp_pid_file,
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }

    fn vrrp_child_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.vrrp_pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// SIGTERM (keepalived resigns with priority 0 and removes its vmac), bounded wait,
    /// then SIGKILL by PID.
    pub fn stop(&mut self) {
        let vrrp_child = self.vrrp_child_pid();
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(child) = vrrp_child {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "keepalived" {
                // SAFETY: the PID keepalived wrote, still a keepalived process.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails the test loudly when keepalived is missing (CI installs it).
pub fn require_keepalived() {
    let ok = Process::new("keepalived")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "LAB SETUP FAILED: keepalived not installed (apt-get install -y keepalived)"
    );
}
