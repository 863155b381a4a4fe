//! The three-namespace lab of the runner and vmac tests: A and B (the VRRP nodes, `eth0`
//! each) and C (a bridge `br0` joining them, standing for the switch and the clients), with
//! documentation addresses only; namespaces are deleted by exact name on drop.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command as Process;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_vrrp::Centis;

pub const INTERVAL: Centis = Centis(10); // 100 ms adverts
pub const VRID: u8 = 51;
pub const A4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
pub const A6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const B6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
pub const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- lab ----------------------------------------------------------------------------------

pub fn ip(args: &[&str]) {
    let out = Process::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("LAB SETUP FAILED: cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "LAB SETUP FAILED: ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS`' output; `None` if it failed (e.g. the device does not exist).
pub fn ip_try(args: &[&str]) -> Option<String> {
    let out = Process::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn ip_output(args: &[&str]) -> String {
    ip_try(args).unwrap_or_else(|| panic!("ip {args:?} failed"))
}

/// Three namespaces joined by a bridge in the third; deleted by exact name on drop.
pub struct Lab {
    pub a: String,
    pub b: String,
    pub c: String,
    created: Vec<String>,
}

impl Lab {
    /// `prefix` (one per test binary) and `tag` (one per test) name the namespaces.
    pub fn new(prefix: &str, tag: &str) -> Lab {
        let pid = std::process::id();
        let name = |x: &str| format!("{prefix}{pid}{tag}{x}");
        let mut lab = Lab {
            a: name("a"),
            b: name("b"),
            c: name("c"),
            created: Vec::new(),
        };
        for ns in [lab.a.clone(), lab.b.clone(), lab.c.clone()] {
            ip(&["netns", "add", &ns]);
            lab.created.push(ns);
        }
        let (a, b, c) = (lab.a.clone(), lab.b.clone(), lab.c.clone());
        // No IGMP/MLD snooping: every group is flooded, as on a plain switch.
        ip(&[
            "-n",
            &c,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        for (ns, port, v4, v6) in [(&a, "pa", A4, A6), (&b, "pb", B4, B6)] {
            ip(&[
                "-n", &c, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]);
            ip(&["-n", &c, "link", "set", port, "master", "br0"]);
            ip(&["-n", &c, "link", "set", port, "up"]);
            // Our own link-local, without DAD, so it is usable at once.
            ip(&["-n", ns, "link", "set", "eth0", "addrgenmode", "none"]);
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        ip(&["-n", &c, "link", "set", "br0", "addrgenmode", "none"]);
        ip(&["-n", &c, "addr", "add", &format!("{C4}/24"), "dev", "br0"]);
        ip(&["-n", &c, "addr", "add", "fe80::3/64", "dev", "br0", "nodad"]);
        ip(&[
            "-n",
            &c,
            "addr",
            "add",
            &format!("{C6}/64"),
            "dev",
            "br0",
            "nodad",
        ]);
        ip(&["-n", &c, "link", "set", "lo", "up"]);
        ip(&["-n", &c, "link", "set", "br0", "up"]);
        for (ns, dev) in [(&a, "eth0"), (&b, "eth0"), (&c, "pa"), (&c, "pb")] {
            wait_for(
                Duration::from_secs(5),
                &format!("LAB SETUP FAILED: carrier on {dev} in {ns}"),
                || ip_output(&["-n", ns, "link", "show", "dev", dev]).contains("LOWER_UP"),
            );
        }
        lab
    }

    pub fn ifindex(&self, ns: &str, ifname: &str) -> u32 {
        let out = ip_output(&["-n", ns, "-o", "link", "show", "dev", ifname]);
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("LAB SETUP FAILED: no ifindex for {ifname} in {ns}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            let _ = Process::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

pub fn enter_netns(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("LAB: open {path}: {e}"));
    // SAFETY: a valid namespace fd; setns affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "LAB: setns {path}: {}", io::Error::last_os_error());
}

/// Runs `f` on a new thread that has first joined network namespace `ns` (setns affects
/// only the calling thread; threads it creates, like the runner's, inherit it).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    match std::thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
    .join()
    {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Like [`in_netns`], without waiting for the result.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
}

/// Polls `cond` every 5 ms for at most `limit`; panics with `what` if it never holds.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The inode of the calling thread's network namespace (which namespace it is in).
pub fn thread_netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("/proc/thread-self/ns/net: {e}"))
}
