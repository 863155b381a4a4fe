//! VRRP's virtual MAC ([`tandem_vrrp_linux::vmac`]) on a real kernel, in a network-namespace
//! lab built per test (root needed):
//!
//! ```text
//!   ns A: eth0 198.51.100.1, fe80::1 ──pa─┐
//!   ns B: eth0 198.51.100.2, fe80::2 ──pb─┴─ ns C: br0 198.51.100.3, 2001:db8::3 (client)
//! ```
//!
//! A and B run the real runner with real [`NetlinkVips`] over their vmacs; C is the client
//! and the switch: it connects to the VIP, and its bridge's forwarding table, its neighbour
//! table and packet captures on the bridge ports `pa`/`pb` show which node sends what with
//! which MAC.
//!
//! Namespaces are named `vm<pid><tag><a|b|c>` and deleted by exact name on drop (which also
//! deletes every interface in them); keepalived is killed by PID. Addresses are only from the
//! documentation ranges 198.51.100.0/24 and 2001:db8::/32 (plus link-local). Every wait is
//! bounded, and a lab that cannot be built fails the test ("LAB SETUP FAILED"). The tests run
//! one at a time (a global lock; nextest runs them alone anyway).

mod common;
use common::keepalived::{require_keepalived, Keepalived};
use common::lab::*;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_vrrp::fsm::{master_down_interval, InstanceConfig, State};
use tandem_vrrp::Version;
use tandem_vrrp_linux::netlink::{self, NetlinkVips};
use tandem_vrrp_linux::runner::{self, RunnerConfig, RunnerHandle};
use tandem_vrrp_linux::vmac::{self, Vmac};

/// The responders' port: each node answers a connection with its name.
const PORT: u16 = 7070;

fn sysctl(ns: &str, key: &str) -> String {
    let path = format!("/proc/sys/{key}");
    in_netns(ns, move || {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    })
}

fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ---- what C sees --------------------------------------------------------------------------

/// The bridge port in C behind which `mac` was learned, if any.
fn fdb_port(lab: &Lab, mac: &str) -> Option<String> {
    let out = ip_output_cmd("bridge", &["-n", &lab.c, "fdb", "show", "br", "br0"]);
    out.lines()
        .filter(|l| l.starts_with(mac) && !l.contains("permanent"))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "dev")?;
            words.next().map(str::to_owned)
        })
}

fn ip_output_cmd(cmd: &str, args: &[&str]) -> String {
    let out = Process::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} {args:?}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// C's neighbour entry for `ip` on br0: (link-layer address, state), if there is one.
fn neighbour(lab: &Lab, ip: IpAddr) -> Option<(Option<String>, String)> {
    let out = ip_output(&["-n", &lab.c, "neigh", "show", &ip.to_string(), "dev", "br0"]);
    let line = out.lines().next()?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let lladdr = words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|s| (*s).to_owned());
    let state = words.last().map(|s| (*s).to_owned()).unwrap_or_default();
    Some((lladdr, state))
}

/// Records every link-layer address C's neighbour entry for `ip` shows, every 10 ms, until
/// stopped (at most 30 s).
struct NeighbourWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<BTreeSet<String>>>,
}

impl NeighbourWatch {
    fn start(lab: &Lab, ip: IpAddr) -> NeighbourWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let c = lab.c.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let end = Instant::now() + Duration::from_secs(30);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                let out = ip_output(&["-n", &c, "neigh", "show", &ip.to_string(), "dev", "br0"]);
                let words: Vec<&str> = out.split_whitespace().collect();
                if let Some(i) = words.iter().position(|w| *w == "lladdr") {
                    if let Some(mac) = words.get(i + 1) {
                        seen.insert((*mac).to_owned());
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        });
        NeighbourWatch {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for NeighbourWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One captured frame, parsed as far as the test needs.
#[derive(Debug, Clone)]
struct Frame {
    src_mac: [u8; 6],
    ethertype: u16,
    /// IPv4/IPv6 source, or an ARP packet's sender protocol address.
    src_ip: Option<IpAddr>,
    /// IPv4 protocol / IPv6 next header.
    proto: Option<u8>,
}

impl Frame {
    fn parse(f: &[u8]) -> Option<Frame> {
        let src_mac: [u8; 6] = f.get(6..12)?.try_into().ok()?;
        let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        let (src_ip, proto) = match ethertype {
            0x0800 => {
                let ip: [u8; 4] = f.get(26..30)?.try_into().ok()?;
                (Some(IpAddr::from(ip)), f.get(23).copied())
            }
            0x86dd => {
                let ip: [u8; 16] = f.get(22..38)?.try_into().ok()?;
                (Some(IpAddr::from(ip)), f.get(20).copied())
            }
            0x0806 => {
                let ip: [u8; 4] = f.get(28..32)?.try_into().ok()?;
                (Some(IpAddr::from(ip)), None)
            }
            _ => (None, None),
        };
        Some(Frame {
            src_mac,
            ethertype,
            src_ip,
            proto,
        })
    }

    fn is_vrrp_from(&self, src: IpAddr) -> bool {
        self.proto == Some(112) && self.src_ip == Some(src)
    }
}

/// Frames *arriving* on one interface of C (a bridge port: what one node sends), captured
/// with an `AF_PACKET` socket until stopped (at most 60 s or 100 000 frames).
struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Frame>>>,
}

impl Capture {
    fn start(ns: &str, dev: &str) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let dev = dev.to_owned();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = spawn_in_netns(ns, move || {
            let socket = match packet_socket(&dev) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Vec::new();
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut frames = Vec::new();
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end && frames.len() < 100_000 {
                // SAFETY: all-zero is a valid sockaddr_ll.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buf and from are valid for the lengths given.
                let n = unsafe {
                    libc::recvfrom(
                        socket.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                let Ok(n) = usize::try_from(n) else { continue };
                if from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                if let Some(frame) = buf.get(..n).and_then(Frame::parse) {
                    frames.push(frame);
                }
            }
            frames
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("LAB SETUP FAILED: capture on {ns}: {e}"),
            Err(e) => panic!("LAB SETUP FAILED: capture on {ns} did not start: {e}"),
        }
        Capture {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `AF_PACKET`/`SOCK_RAW`, every protocol, bound to `dev`, 50 ms receive timeout.
fn packet_socket(dev: &str) -> io::Result<OwnedFd> {
    let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(eth_p_all),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev).map_err(io::Error::other)?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = eth_p_all;
    addr.sll_ifindex = index as i32;
    // SAFETY: addr is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: tv is a valid timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// A TCP server on [::]:PORT in one namespace that answers every connection with `name`
/// and closes it; stopped on drop (and after 60 s at most).
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(ns: &str, name: &'static str) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = spawn_in_netns(ns, move || {
            let listener = match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, PORT)))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let end = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("LAB SETUP FAILED: responder in {ns}: {e}"),
            Err(e) => panic!("LAB SETUP FAILED: responder in {ns} did not start: {e}"),
        }
        Responder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from C to `vip`:PORT and returns what the node there says (its name).
fn ask(lab: &Lab, vip: IpAddr) -> io::Result<String> {
    in_netns(&lab.c, move || {
        let mut stream =
            TcpStream::connect_timeout(&SocketAddr::new(vip, PORT), Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
}

/// Asks until `who` answers, for at most `limit`; returns how long it took.
fn reached(lab: &Lab, vip: IpAddr, who: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < limit {
        match ask(lab, vip) {
            Ok(answer) if answer == who => return start.elapsed(),
            other => last = Some(other),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{who} not reached at {vip} within {limit:?}; last answer: {last:?}");
}

// ---- instances ----------------------------------------------------------------------------

fn ensure_in(ns: &str, name: &'static str, v6: bool) -> Vmac {
    in_netns(ns, move || {
        let base = netlink::link_index("eth0")?;
        vmac::ensure(base, name, VRID, v6)
    })
    .unwrap_or_else(|e| panic!("vmac::ensure in {ns}: {e}"))
}

fn remove_in(ns: &str, name: &'static str) -> io::Result<()> {
    in_netns(ns, move || vmac::remove(name))
}

/// An instance over `vmac`: received on eth0, sent and VIPs through the vmac (the wiring of
/// the `vmac` module docs).
fn spawn_over_vmac(
    lab: &Lab,
    ns: &str,
    vmac: &Vmac,
    local: IpAddr,
    vip: IpAddr,
    priority: u8,
) -> RunnerHandle {
    spawn_with(lab, ns, vmac, local, vip, priority, None)
}

/// [`spawn_over_vmac`], or with `unicast_peer` the unicast wiring of the module docs:
/// adverts to that peer, from eth0 (no send interface), periodic announcements.
fn spawn_with(
    lab: &Lab,
    ns: &str,
    vmac: &Vmac,
    local: IpAddr,
    vip: IpAddr,
    priority: u8,
    unicast_peer: Option<IpAddr>,
) -> RunnerHandle {
    let instance = InstanceConfig {
        version: Version::V3,
        vrid: VRID,
        priority,
        advert_interval: INTERVAL,
        preempt: true,
        preempt_delay: Duration::ZERO,
        local_address: local,
        accept: false,
    };
    let mut cfg = RunnerConfig::new(instance, lab.ifindex(ns, "eth0"), "eth0", vec![vip]);
    cfg.garp_master_delay = Duration::from_millis(300);
    cfg.garp_master_repeat = 2;
    match unicast_peer {
        None => cfg.send_interface = Some(vmac.send_interface()),
        Some(peer) => {
            cfg.unicast_peers = vec![peer];
            cfg.garp_master_refresh = Some(Duration::from_secs(1));
        }
    }
    let prefix = if vip.is_ipv4() { 24 } else { 64 };
    let index = vmac.index;
    in_netns(ns, move || {
        let vips = NetlinkVips::new(index, vec![(vip, prefix)])?;
        runner::spawn(cfg, Box::new(vips))
    })
    .unwrap_or_else(|e| panic!("runner in {ns} did not start: {e}"))
}

fn state(h: &RunnerHandle) -> State {
    h.status().state
}

fn has_address(ns: &str, dev: &str, ip: IpAddr) -> bool {
    ip_try(&["-n", ns, "-o", "addr", "show", "dev", dev])
        .is_some_and(|out| out.contains(&format!(" {ip}/")))
}

fn link_exists(ns: &str, dev: &str) -> bool {
    ip_try(&["-n", ns, "-o", "link", "show", "dev", dev]).is_some()
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn ensure_creates_adopts_refuses_and_remove_is_idempotent() {
    let _serial = serial();
    let lab = Lab::new("vm", "e");
    let a = lab.a.clone();
    let base = lab.ifindex(&a, "eth0");

    // Created: a VEPA macvlan on eth0 with the IPv4 virtual router MAC, up.
    let t0 = Instant::now();
    let v = ensure_in(&a, "vrrp.51", false);
    eprintln!("vmac::ensure (create, IPv4): {:?}", t0.elapsed());
    assert!(v.created);
    assert_eq!(v.mac, [0x00, 0x00, 0x5e, 0x00, 0x01, 51]);
    assert_eq!(v.parent_index, base);
    assert_eq!(v.index, lab.ifindex(&a, "vrrp.51"));
    let detail = ip_output(&["-n", &a, "-d", "-o", "link", "show", "dev", "vrrp.51"]);
    assert!(detail.contains("vrrp.51@eth0:"), "{detail}");
    assert!(detail.contains("link/ether 00:00:5e:00:01:33 "), "{detail}");
    assert!(detail.contains("macvlan mode vepa"), "{detail}");
    assert!(
        detail.contains(",UP,") || detail.contains("<UP,"),
        "{detail}"
    );
    // The sysctls of the module docs.
    for (key, want) in [
        ("net/ipv4/conf/vrrp.51/arp_ignore", "1"),
        ("net/ipv4/conf/vrrp.51/accept_local", "1"),
        ("net/ipv4/conf/vrrp.51/rp_filter", "0"),
        ("net/ipv4/conf/vrrp.51/promote_secondaries", "1"),
        ("net/ipv6/conf/vrrp.51/disable_ipv6", "1"),
        ("net/ipv4/conf/eth0/arp_ignore", "1"),
        ("net/ipv4/conf/eth0/arp_filter", "1"),
        ("net/ipv4/conf/eth0/arp_announce", "2"),
    ] {
        assert_eq!(sysctl(&a, key), want, "{key}");
    }
    let addrs = ip_output(&["-n", &a, "-o", "addr", "show", "dev", "vrrp.51"]);
    assert!(addrs.trim().is_empty(), "no address at all: {addrs}");

    // Again: adopted, same interface.
    let again = ensure_in(&a, "vrrp.51", false);
    assert!(!again.created);
    assert_eq!(again.index, v.index);

    // A private-mode macvlan with the right parent and MAC (keepalived's): adopted, VEPA now.
    ip(&[
        "-n",
        &a,
        "link",
        "add",
        "link",
        "eth0",
        "name",
        "vrrp.52",
        "address",
        "00:00:5e:00:01:33",
        "type",
        "macvlan",
        "mode",
        "private",
    ]);
    // (same MAC as vrrp.51 on purpose: bringing it up must fail with a clear error)
    let e = in_netns(&a, move || vmac::ensure(base, "vrrp.52", VRID, false)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    assert!(
        e.to_string().contains("already uses MAC 00:00:5e:00:01:33"),
        "{e}"
    );
    ip(&["-n", &a, "link", "del", "vrrp.52"]);
    ip(&[
        "-n",
        &a,
        "link",
        "add",
        "link",
        "eth0",
        "name",
        "vrrp6.51",
        "address",
        "00:00:5e:00:02:33",
        "type",
        "macvlan",
        "mode",
        "private",
    ]);
    let v6 = ensure_in(&a, "vrrp6.51", true);
    assert!(!v6.created);
    let detail = ip_output(&["-n", &a, "-d", "-o", "link", "show", "dev", "vrrp6.51"]);
    assert!(detail.contains("macvlan mode vepa"), "{detail}");
    for (key, want) in [
        ("net/ipv6/conf/vrrp6.51/addr_gen_mode", "1"),
        ("net/ipv6/conf/vrrp6.51/accept_ra", "0"),
        ("net/ipv6/conf/vrrp6.51/autoconf", "0"),
        ("net/ipv4/conf/vrrp6.51/arp_ignore", "1"),
    ] {
        assert_eq!(sysctl(&a, key), want, "{key}");
    }
    // IPv6 on, but no link-local address derived from the virtual MAC.
    std::thread::sleep(Duration::from_millis(200));
    let addrs = ip_output(&["-n", &a, "-o", "addr", "show", "dev", "vrrp6.51"]);
    assert!(addrs.trim().is_empty(), "{addrs}");

    // Same name, not ours: a veth; a macvlan with another MAC; our vmac for another VRID.
    ip(&[
        "-n", &a, "link", "add", "vrrp.53", "type", "veth", "peer", "name", "x53",
    ]);
    let e = in_netns(&a, move || vmac::ensure(base, "vrrp.53", 53, false)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("vrrp.53"), "{e}");
    assert!(e.to_string().contains("it is a veth"), "{e}");
    ip(&[
        "-n",
        &a,
        "link",
        "add",
        "link",
        "eth0",
        "name",
        "vrrp.54",
        "address",
        "02:00:00:00:00:54",
        "type",
        "macvlan",
    ]);
    let e = in_netns(&a, move || vmac::ensure(base, "vrrp.54", 54, false)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("02:00:00:00:00:54"), "{e}");
    let e = in_netns(&a, move || vmac::ensure(base, "vrrp.51", 52, false)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    eprintln!("conflict error, for the record: {e}");
    // Nothing was changed or deleted by the refusals.
    assert!(link_exists(&a, "vrrp.53") && link_exists(&a, "vrrp.54"));

    // Bad input.
    let e = in_netns(&a, move || vmac::ensure(base, "vrrp.0", 0, false)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let e = in_netns(&a, move || {
        vmac::ensure(base, "much-too-long-name", 9, false)
    })
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let e = in_netns(&a, move || vmac::ensure(9999, "vrrp.9", 9, false)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(!link_exists(&a, "vrrp.9"));

    // remove: deletes, then absent is fine; refuses what is not a VRRP vmac.
    remove_in(&a, "vrrp.51").unwrap_or_else(|e| panic!("remove: {e}"));
    assert!(!link_exists(&a, "vrrp.51"));
    remove_in(&a, "vrrp.51").unwrap_or_else(|e| panic!("remove again: {e}"));
    remove_in(&a, "vrrp6.51").unwrap_or_else(|e| panic!("remove: {e}"));
    assert!(!link_exists(&a, "vrrp6.51"));
    for not_ours in ["vrrp.53", "vrrp.54", "eth0"] {
        let e = remove_in(&a, not_ours).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(link_exists(&a, not_ours), "{not_ours} must survive");
    }
    // And a fresh create after removal works.
    let v = ensure_in(&a, "vrrp.51", false);
    assert!(v.created);
    remove_in(&a, "vrrp.51").unwrap_or_else(|e| panic!("remove: {e}"));
}

/// The failover scenario of the module docs, IPv4 or IPv6: A (200) master and B (100)
/// backup, both over a vmac; C talks to the VIP; A is killed, B takes over, C's neighbour
/// entry never changes; then A's vmac is removed (what `vip-cleanup` does after a crash).
/// With `unicast`, A and B are each other's unicast peer and send adverts from eth0 (the
/// unicast wiring of the module docs): the adverts then carry eth0's MAC, the rest holds.
fn failover_keeps_the_clients_neighbour_entry(v6: bool, unicast: bool) {
    let _serial = serial();
    let lab = Lab::new(
        "vm",
        match (v6, unicast) {
            (false, false) => "f4",
            (true, false) => "f6",
            (false, true) => "u4",
            (true, true) => "u6",
        },
    );
    let (name, la, lb, vip) = if v6 {
        ("vrrp6.51", IpAddr::V6(A6), IpAddr::V6(B6), IpAddr::V6(VIP6))
    } else {
        ("vrrp.51", IpAddr::V4(A4), IpAddr::V4(B4), IpAddr::V4(VIP4))
    };
    let vmac_str = mac_string(&vmac::virtual_mac(VRID, v6));
    let fam = match (v6, unicast) {
        (false, false) => "IPv4",
        (true, false) => "IPv6",
        (false, true) => "IPv4 unicast",
        (true, true) => "IPv6 unicast",
    };

    // Everything A and B send, from before their vmacs exist.
    let cap_a = Capture::start(&lab.c, "pa");
    let cap_b = Capture::start(&lab.c, "pb");
    let va = ensure_in(&lab.a, name, v6);
    let vb = ensure_in(&lab.b, name, v6);
    let _ra = Responder::start(&lab.a, "A");
    let _rb = Responder::start(&lab.b, "B");

    let ha = spawn_with(&lab, &lab.a, &va, la, vip, 200, unicast.then_some(lb));
    let hb = spawn_with(&lab, &lab.b, &vb, lb, vip, 100, unicast.then_some(la));
    wait_for(Duration::from_secs(3), "A master and B backup", || {
        state(&ha) == State::Master
            && state(&hb) == State::Backup
            && hb.status().master_address == Some(la)
    });
    std::thread::sleep(Duration::from_millis(600));
    let (sa, sb) = (ha.status(), hb.status());
    assert_eq!(sa.state, State::Master, "{sa:?}");
    assert_eq!(sb.state, State::Backup, "{sb:?}");
    assert!(sb.counters.adverts_received >= 3, "{sb:?}");
    assert_eq!(sb.discards.total(), 0, "{:?}", sb.discards);
    assert_eq!(sa.vip_errors, 0, "{sa:?}");
    assert_eq!(sb.vip_errors, 0, "{sb:?}");
    // The VIP is on A's vmac, nowhere else.
    assert!(has_address(&lab.a, name, vip));
    assert!(!has_address(&lab.a, "eth0", vip));
    assert!(!has_address(&lab.b, name, vip));

    // C reaches the VIP at A, through the virtual MAC.
    let first = reached(&lab, vip, "A", Duration::from_secs(3));
    eprintln!("{fam}: C reaches the VIP at A after {first:?}");
    let (lladdr, state_c) = neighbour(&lab, vip).unwrap_or_else(|| panic!("no neighbour entry"));
    assert_eq!(lladdr.as_deref(), Some(vmac_str.as_str()), "{state_c}");
    assert_eq!(fdb_port(&lab, &vmac_str).as_deref(), Some("pa"));

    // On the wire so far: A's adverts carry the virtual MAC; B sent nothing with it (no
    // IGMP/MLD report, no ND, nothing from a backup's vmac).
    let frames_a = cap_a.stop();
    let frames_b = cap_b.stop();
    let adverts_a: Vec<&Frame> = frames_a.iter().filter(|f| f.is_vrrp_from(la)).collect();
    assert!(adverts_a.len() >= 5, "{} adverts from A", adverts_a.len());
    assert!(
        adverts_a
            .iter()
            .all(|f| (f.src_mac == vmac::virtual_mac(VRID, v6)) != unicast),
        "an advert from A with the wrong MAC (unicast: {unicast}): {adverts_a:?}"
    );
    let from_vmac_b: Vec<&Frame> = frames_b
        .iter()
        .filter(|f| f.src_mac == vmac::virtual_mac(VRID, v6))
        .collect();
    assert!(
        from_vmac_b.is_empty(),
        "the backup sent frames with the virtual MAC: {from_vmac_b:?}"
    );
    let garps_a = frames_a
        .iter()
        .filter(|f| {
            f.src_mac == vmac::virtual_mac(VRID, v6)
                && (f.ethertype == 0x0806 || f.proto == Some(58))
                && f.src_ip != Some(la)
        })
        .count();
    assert!(
        garps_a >= 2,
        "A's announcements from the virtual MAC: {garps_a}"
    );

    // Crash A: no priority 0, its VIP and vmac stay. B takes over after Master_Down_Interval
    // and C reaches B through the very same neighbour entry.
    let watch = NeighbourWatch::start(&lab, vip);
    let cap_b = Capture::start(&lab.c, "pb");
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    ha.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    wait_for(Duration::from_secs(2), "B master", || {
        state(&hb) == State::Master
    });
    let failover = t0.elapsed();
    let mdi = master_down_interval(Version::V3, 100, INTERVAL);
    eprintln!("{fam}: B master {failover:?} after A was killed (Master_Down_Interval {mdi:?})");
    assert!(failover < mdi + Duration::from_millis(200), "{failover:?}");
    let to_b = reached(&lab, vip, "B", Duration::from_secs(3));
    eprintln!(
        "{fam}: C reaches the VIP at B {:?} after the kill ({to_b:?} of asking)",
        t0.elapsed()
    );
    assert!(has_address(&lab.b, name, vip));
    assert_eq!(fdb_port(&lab, &vmac_str).as_deref(), Some("pb"));
    let (lladdr, _) = neighbour(&lab, vip).unwrap_or_else(|| panic!("no neighbour entry"));
    assert_eq!(lladdr.as_deref(), Some(vmac_str.as_str()));

    // The dead master's vmac goes (vip-cleanup); C keeps reaching B.
    remove_in(&lab.a, name).unwrap_or_else(|e| panic!("remove: {e}"));
    assert!(!link_exists(&lab.a, name));
    reached(&lab, vip, "B", Duration::from_secs(1));
    let seen = watch.stop();
    assert_eq!(
        seen,
        BTreeSet::from([vmac_str.clone()]),
        "C's neighbour entry for the VIP changed during the failover"
    );
    // A few of B's adverts as master (100 ms apart).
    std::thread::sleep(Duration::from_millis(400));
    let frames_b = cap_b.stop();
    let adverts_b: Vec<&Frame> = frames_b.iter().filter(|f| f.is_vrrp_from(lb)).collect();
    assert!(adverts_b.len() >= 3, "{} adverts from B", adverts_b.len());
    assert!(adverts_b
        .iter()
        .all(|f| (f.src_mac == vmac::virtual_mac(VRID, v6)) != unicast));
    let sb = hb.status();
    assert_eq!(sb.vip_errors, 0, "{sb:?}");
    assert_eq!(sb.send_errors, 0, "{sb:?}");

    // Graceful stop of B: VIP released, then the vmac removed.
    hb.shutdown().unwrap_or_else(|e| panic!("shutdown: {e}"));
    assert!(!has_address(&lab.b, name, vip));
    remove_in(&lab.b, name).unwrap_or_else(|e| panic!("remove: {e}"));
    remove_in(&lab.b, name).unwrap_or_else(|e| panic!("remove again: {e}"));
    assert!(!link_exists(&lab.b, name));
}

#[test]
fn v4_failover_over_vmac_keeps_the_clients_neighbour_entry() {
    failover_keeps_the_clients_neighbour_entry(false, false);
}

#[test]
fn v6_failover_over_vmac_keeps_the_clients_neighbour_entry() {
    failover_keeps_the_clients_neighbour_entry(true, false);
}

#[test]
fn v4_unicast_failover_over_vmac_keeps_the_clients_neighbour_entry() {
    failover_keeps_the_clients_neighbour_entry(false, true);
}

// ---- keepalived interop -------------------------------------------------------------------

/// keepalived as the peer: starts as backup for `VRID` with `priority`.
fn keepalived(ns: &str, priority: u8) -> Keepalived {
    Keepalived::start(
        ns,
        "vm",
        &format!(
            "vrrp_instance VI_{VRID} {{\n  state BACKUP\n  interface eth0\n  \
             use_vmac vrrp.{VRID}\n  virtual_router_id {VRID}\n  priority {priority}\n  advert_int 0.1\n  \
             virtual_ipaddress {{\n    {VIP4}/24\n  }}\n}}\n"
        ),
    )
}

/// keepalived's log lines that would mean it did not like what tandem sent.
fn keepalived_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "invalid", "error", "bad ", "wrong", "mismatch", "discard", "ttl",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect()
}

/// tandem (A, 200) and keepalived (B, 100), both with a vmac: keepalived stays backup under
/// tandem's adverts (sent from the virtual MAC, which its own private-mode vmac shares),
/// takes over on tandem's priority 0, and tandem preempts it again; C's neighbour entry
/// stays the virtual MAC throughout, and neither side reports a protocol problem.
#[test]
fn keepalived_with_use_vmac_interoperates() {
    let _serial = serial();
    require_keepalived();
    let lab = Lab::new("vm", "k");
    let vmac_str = mac_string(&vmac::virtual_mac(VRID, false));
    let vip = IpAddr::V4(VIP4);
    let _ra = Responder::start(&lab.a, "A");
    let _rb = Responder::start(&lab.b, "B");
    let va = ensure_in(&lab.a, "vrrp.51", false);
    let ha = spawn_over_vmac(&lab, &lab.a, &va, IpAddr::V4(A4), vip, 200);
    wait_for(Duration::from_secs(3), "tandem master", || {
        state(&ha) == State::Master
    });
    // keepalived leaves arp_announce at 0 on its base interface: as master, its replies to C
    // leave through eth0 and the ARP request for C names the VIP with eth0's MAC, rewriting
    // C's entry for the VIP (seen in this lab with keepalived 2.2.7). Set it as tandem's
    // vmac::ensure does on its own side, so the comparison below is about the vmacs.
    in_netns(&lab.b, || {
        std::fs::write("/proc/sys/net/ipv4/conf/eth0/arp_announce", "2")
    })
    .unwrap_or_else(|e| panic!("LAB SETUP FAILED: arp_announce: {e}"));
    let mut kd = keepalived(&lab.b, 100);
    wait_for(Duration::from_secs(5), "keepalived's vmac", || {
        link_exists(&lab.b, "vrrp.51")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        kd.log().contains("Entering BACKUP STATE"),
        "keepalived not in backup:\n{}",
        kd.log()
    );
    assert!(
        !has_address(&lab.b, "vrrp.51", vip),
        "keepalived took the VIP from a higher-priority tandem:\n{}",
        kd.log()
    );
    assert_eq!(state(&ha), State::Master);
    reached(&lab, vip, "A", Duration::from_secs(3));
    let watch = NeighbourWatch::start(&lab, vip);

    // tandem resigns: keepalived takes the VIP on its vmac; C reaches B, same MAC.
    let t0 = Instant::now();
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(3), "keepalived to take the VIP", || {
        has_address(&lab.b, "vrrp.51", vip)
    });
    eprintln!(
        "tandem → keepalived handover (priority 0): {:?} (polled `ip addr`)",
        t0.elapsed()
    );
    reached(&lab, vip, "B", Duration::from_secs(3));
    assert_eq!(fdb_port(&lab, &vmac_str).as_deref(), Some("pb"));

    // tandem returns (adopting its vmac) and preempts: it decodes keepalived's adverts.
    let t1 = Instant::now();
    let va = ensure_in(&lab.a, "vrrp.51", false);
    assert!(!va.created);
    let ha = spawn_over_vmac(&lab, &lab.a, &va, IpAddr::V4(A4), vip, 200);
    wait_for(
        Duration::from_secs(3),
        "tandem to preempt keepalived",
        || state(&ha) == State::Master && !has_address(&lab.b, "vrrp.51", vip),
    );
    eprintln!("tandem preempts keepalived: {:?}", t1.elapsed());
    reached(&lab, vip, "A", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    let status = ha.status();
    assert_eq!(status.state, State::Master);
    assert!(status.counters.adverts_received > 0, "{status:?}");
    assert_eq!(status.discards.total(), 0, "{:?}", status.discards);
    assert!(!has_address(&lab.b, "vrrp.51", vip), "{}", kd.log());
    let seen = watch.stop();
    assert_eq!(seen, BTreeSet::from([vmac_str]), "C's entry changed");
    let log = kd.log();
    assert!(
        keepalived_complaints(&log).is_empty(),
        "keepalived complained:\n{log}"
    );
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    remove_in(&lab.a, "vrrp.51").unwrap_or_else(|e| panic!("{e}"));
    kd.stop();
    eprintln!("keepalived log:\n{}", kd.log());
}
