//! Two (or more) real tandem nodes running `[[vrrp]]` in a [`Lab`]: a node's config, starting
//! it, reading its instance from the admin API, and what the lab sees of the VIP (who holds
//! it, which MAC answers ARP for it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{ip_output, Lab, Proc};
use super::{curl, tandem_bin, TempDir};

pub const ADVERT_MS: u64 = 100;

/// The VIP: an unused address of the lab's /27 (hosts are .11 and up, the bridge .1).
pub fn vip(lab: &Lab) -> Ipv4Addr {
    let IpAddr::V4(gw) = lab.gateway() else {
        panic!("IPv4 lab expected")
    };
    Ipv4Addr::from(u32::from(gw) + 19)
}

pub fn node_config(lab: &Lab, i: usize, priority: u8, preempt: bool) -> String {
    node_config_with(lab, i, priority, preempt, "", r#"{ kind = "none" }"#)
}

/// `node_config` with extra `[[vrrp]]` keys (`track_*`) and pool `p`'s health check.
pub fn node_config_with(
    lab: &Lab,
    i: usize,
    priority: u8,
    preempt: bool,
    vrrp_extra: &str,
    health: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "{admin}"
token_file = "{token}"

[[vrrp]]
name = "web"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "{ADVERT_MS}ms"
virtual_ips = ["{vip}/27"]
preempt = {preempt}
garp_master_delay = "0s"
{vrrp_extra}

# A service on the VIP: bound on both nodes from the start (the backup does not hold the
# address yet). Its pool's only backend is closed, so tandem itself answers 502.
[[pool]]
name = "p"
health = {health}
backends = [{{ address = "127.0.0.1:1" }}]

[[service]]
name = "www"
listen = "{vip}:8080"
pool = "p"
"#,
        admin = lab.host_addr(i, 9900),
        token = lab.admin_token_file().display(),
        vip = vip(lab),
    )
}

pub fn has_vip(lab: &Lab, i: usize) -> bool {
    ip_output(&[
        "-n",
        lab.netns(i),
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ])
    .contains(&format!(" {}/27 ", vip(lab)))
}

/// `GET path` from a lab node's admin API, with the lab's token (it is off loopback).
pub async fn admin_get(admin: SocketAddr, path: &str) -> super::CurlOut {
    let auth = format!("Authorization: Bearer {}", super::netns::LAB_ADMIN_TOKEN);
    curl(&[
        "-s",
        "-m",
        "1",
        "-H",
        &auth,
        &format!("http://{admin}{path}"),
    ])
    .await
}

/// `GET path` as JSON (`None` if it does not answer or is not JSON).
pub async fn admin_json(admin: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let out = admin_get(admin, path).await;
    out.ok.then_some(())?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The backends of `pool` on a lab node (`GET /api/v1/pools/{pool}`).
pub async fn lab_pool_backends(admin: SocketAddr, pool: &str) -> Option<Vec<serde_json::Value>> {
    admin_json(admin, &format!("/api/v1/pools/{pool}")).await?["backends"]
        .as_array()
        .cloned()
}

pub async fn state(admin: SocketAddr) -> Option<String> {
    let out = admin_get(admin, "/api/v1/vrrp").await;
    if !out.ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["instances"][0]["state"].as_str().map(str::to_string)
}

/// The first instance of `GET /api/v1/vrrp`.
pub async fn instance(admin: SocketAddr) -> Option<serde_json::Value> {
    let out = admin_get(admin, "/api/v1/vrrp").await;
    if !out.ok {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["instances"][0].take())
}

pub struct Node {
    pub proc: Proc,
    pub config: std::path::PathBuf,
}

pub fn start(lab: &Lab, dir: &TempDir, i: usize, priority: u8, preempt: bool) -> Node {
    let config = dir.write(
        &format!("node{i}.toml"),
        &node_config(lab, i, priority, preempt),
    );
    let mut cmd = Command::new(tandem_bin());
    cmd.args(["run", "--config", config.to_str().expect("utf-8")]);
    Node {
        proc: lab.spawn_in(i, &cmd),
        config,
    }
}

pub fn start_with(lab: &Lab, dir: &TempDir, i: usize, config: &str) -> Node {
    let config = dir.write(&format!("node{i}.toml"), config);
    let mut cmd = Command::new(tandem_bin());
    cmd.args(["run", "--config", config.to_str().expect("utf-8")]);
    Node {
        proc: lab.spawn_in(i, &cmd),
        config,
    }
}

/// Nodes 0 and 1 started with `c0` and `c1`, both admin APIs answering, node 0 master.
pub async fn pair(lab: &Lab, dir: &TempDir, c0: &str, c1: &str) -> (Node, Node) {
    let n0 = start_with(lab, dir, 0, c0);
    let n1 = start_with(lab, dir, 1, c1);
    let a0 = lab.host_addr(0, 9900);
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    lab.wait_listening(n1.proc, lab.host_addr(1, 9900), Duration::from_secs(10))
        .await;
    super::eventually("node 0 master", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    (n0, n1)
}

/// Wait until `f` holds, polling every 5 ms; returns how long it took.
pub async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if f() {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "timed out after {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The MAC the root namespace resolved `ip` to (it sits on the lab's bridge).
pub fn resolved_mac(lab: &Lab, ip: Ipv4Addr) -> Option<String> {
    let _ = ip_output(&["neigh", "flush", "to", &ip.to_string(), "dev", lab.bridge()]);
    // Any packet to the VIP makes the kernel resolve it; a refused connect is enough.
    let _ = std::net::TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(ip), 9),
        Duration::from_millis(500),
    );
    let out = ip_output(&["neigh", "show", "to", &ip.to_string(), "dev", lab.bridge()]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string)
}

pub fn mac_of(lab: &Lab, i: usize) -> String {
    let out = ip_output(&["-n", lab.netns(i), "-o", "link", "show", "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("eth0 MAC")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Running code inside a lab host's namespace

/// Start `f` on a new thread that has first joined network namespace `ns` (`setns` moves the
/// calling thread only; threads and sockets it creates afterwards live in `ns`, so a tokio
/// runtime built inside `f` does all its networking there). The test's own threads stay in
/// the root namespace.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("LAB SETUP FAILED: open {path}: {e}"));
            // SAFETY: a valid namespace fd; setns affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "LAB SETUP FAILED: setns {path}: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .expect("spawn a thread")
}

/// [`spawn_in_netns`] and wait for it (a panic inside is re-raised here).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

// ---------------------------------------------------------------------------------------------
// Hand-made VRRP packets

/// Send each of `payloads` (VRRP messages: the IP payload) once from a raw IPPROTO 112 socket
/// inside host `i`'s namespace to 224.0.0.18, out of the interface that has `src`, with IP TTL
/// `ttl`. The kernel writes the IP header (source `src`); the payload is sent as given, so a
/// test can craft any checksum, length or field it likes.
pub fn send_raw_vrrp_v4(lab: &Lab, i: usize, src: Ipv4Addr, ttl: u8, payloads: Vec<Vec<u8>>) {
    in_netns(lab.netns(i), move || {
        // SAFETY: plain socket calls on a descriptor owned (and closed) here; every pointer
        // passed points to a live local of the size given.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 112);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let iface = libc::in_addr {
                s_addr: u32::from(src).to_be(),
            };
            let ttl = libc::c_int::from(ttl);
            let off: libc::c_int = 0;
            for (opt, ptr, len) in [
                (
                    libc::IP_MULTICAST_IF,
                    (&iface as *const libc::in_addr).cast::<libc::c_void>(),
                    std::mem::size_of::<libc::in_addr>(),
                ),
                (
                    libc::IP_MULTICAST_TTL,
                    (&ttl as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>(),
                ),
                (
                    libc::IP_MULTICAST_LOOP,
                    (&off as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>(),
                ),
            ] {
                let rc = libc::setsockopt(fd, libc::IPPROTO_IP, opt, ptr, len as libc::socklen_t);
                assert_eq!(
                    rc,
                    0,
                    "setsockopt {opt}: {}",
                    std::io::Error::last_os_error()
                );
            }
            let dst = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(tandem_vrrp::packet::MULTICAST_V4).to_be(),
                },
                sin_zero: [0; 8],
            };
            for p in &payloads {
                let n = libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&dst as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                assert_eq!(
                    n,
                    p.len() as isize,
                    "sendto 224.0.0.18: {}",
                    std::io::Error::last_os_error()
                );
            }
            libc::close(fd);
        }
    });
}

/// The RFC 1071 Internet checksum of `bytes` (odd length padded with a zero octet).
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in bytes.chunks(2) {
        let word = match *c {
            [hi, lo] => u16::from_be_bytes([hi, lo]),
            [hi] => u16::from_be_bytes([hi, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recompute a VRRP message's checksum over the message alone (VRRPv2, and the RFC 9568 form
/// of VRRPv3 over IPv4, which tandem accepts next to keepalived's pseudo-header form).
pub fn fix_checksum(message: &mut [u8]) {
    message[6] = 0;
    message[7] = 0;
    let c = internet_checksum(message);
    message[6..8].copy_from_slice(&c.to_be_bytes());
}

// ---------------------------------------------------------------------------------------------
// Interop with keepalived, and tandem nodes for any VRRP version and family

/// The VRRP flavours tandem and keepalived share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// VRRPv2 (RFC 3768), IPv4, 1 s adverts (v2 counts whole seconds).
    V2,
    /// VRRPv3 over IPv4, 100 ms adverts, keepalived's checksum form (tandem's default).
    V3Ipv4,
    /// VRRPv3 over IPv6 (adverts from the link-local address to ff02::12), 100 ms adverts.
    V3Ipv6,
}

impl Flavour {
    pub fn version(self) -> tandem_vrrp::Version {
        match self {
            Flavour::V2 => tandem_vrrp::Version::V2,
            _ => tandem_vrrp::Version::V3,
        }
    }

    pub fn version_number(self) -> u8 {
        match self {
            Flavour::V2 => 2,
            _ => 3,
        }
    }

    pub fn ipv6(self) -> bool {
        self == Flavour::V3Ipv6
    }

    pub fn advert_interval(self) -> Duration {
        match self {
            Flavour::V2 => Duration::from_secs(1),
            _ => Duration::from_millis(100),
        }
    }

    pub fn centis(self) -> tandem_vrrp::Centis {
        let c = self.advert_interval().as_millis() / 10;
        tandem_vrrp::Centis(u16::try_from(c).expect("interval"))
    }

    /// RFC 5798 6.1 / RFC 3768 6.1, for a backup of `priority`.
    pub fn master_down_interval(self, priority: u8) -> Duration {
        tandem_vrrp::fsm::master_down_interval(self.version(), priority, self.centis())
    }

    /// keepalived's `advert_int` (seconds, fractional for v3).
    pub fn keepalived_advert_int(self) -> &'static str {
        match self {
            Flavour::V2 => "1",
            _ => "0.1",
        }
    }

    /// The VIP, with its prefix: the lab's IPv4 VIP (/27), or `<lab /64>::100/64`.
    pub fn vip(self, lab: &Lab) -> (IpAddr, u8) {
        if self.ipv6() {
            (IpAddr::V6(lab.ipv6_addr(0x100)), 64)
        } else {
            (IpAddr::V4(vip(lab)), 27)
        }
    }

    /// The address adverts from host `i` come from (RFC 5798 5.1.1.1, 5.1.2.1).
    pub fn primary(self, lab: &Lab, i: usize) -> IpAddr {
        if self.ipv6() {
            IpAddr::V6(lab.link_local(i))
        } else {
            lab.host_ip(i)
        }
    }
}

/// A tandem node's config for `flavour`: the admin API on host `i`'s IPv4 address port 9900,
/// one `[[vrrp]]` instance (VRID 51) on `eth0` and nothing else; `extra` is appended to the
/// `[[vrrp]]` table (then more tables may follow).
pub fn flavour_config(lab: &Lab, i: usize, flavour: Flavour, priority: u8, extra: &str) -> String {
    let (vip, len) = flavour.vip(lab);
    format!(
        r#"
[admin]
listen = "{admin}"
token_file = "{token}"

[[vrrp]]
name = "ka"
interface = "eth0"
vrid = 51
version = {version}
priority = {priority}
advert_interval = "{interval}ms"
virtual_ips = ["{vip}/{len}"]
garp_master_delay = "0s"
{extra}
"#,
        admin = lab.host_addr(i, 9900),
        token = lab.admin_token_file().display(),
        version = flavour.version_number(),
        interval = flavour.advert_interval().as_millis(),
    )
}

/// Whether `ip` (with prefix `len`) is on host `i`'s `eth0`.
pub fn host_has(lab: &Lab, i: usize, ip: IpAddr, len: u8) -> bool {
    let family = if ip.is_ipv6() { "-6" } else { "-4" };
    ip_output(&[
        "-n",
        lab.netns(i),
        "-o",
        family,
        "addr",
        "show",
        "dev",
        "eth0",
    ])
    .contains(&format!(" {ip}/{len} "))
}

/// keepalived (`/usr/sbin/keepalived`, VRRP only) in a lab host, with its own config, pid
/// files and log in a temp dir; killed by PID (its VRRP child too) on drop.
pub struct Keepalived {
    pub proc: Proc,
    dir: TempDir,
    parent: i32,
    /// The VRRP child's PID once seen (see [`Keepalived::vrrp_pid`]).
    child: std::cell::Cell<Option<i32>>,
}

/// keepalived's log lines that mean it found fault with a packet it received (checksum,
/// TTL, version, length, type, interval, address list, authentication, source), lower-cased.
/// Taken from keepalived 2.2.7's messages (`vrrp.c`: "Invalid VRRPv3 checksum", "invalid
/// TTL/HL", "wrong version", "vrrp packet too short", "advertisement interval mismatch",
/// "expected N VIPs but received M", "ip address associated with VRID not present in
/// MASTER advert", "received an unexpected ip number count", ...). Not a complaint:
/// "received lower priority (N) advert from X - discarding", which is preemption at work.
pub const KEEPALIVED_PROTOCOL_COMPLAINTS: [&str; 17] = [
    "checksum",
    "invalid",
    "bad ",
    "bogus",
    "mismatch",
    "wrong",
    "not present",
    "ttl",
    "malformed",
    "packet too",
    "expected",
    "expecting",
    "auth",
    "icast packet",
    "not a unicast peer",
    "with our ip address",
    "error",
];

impl Keepalived {
    /// Start keepalived in host `i` as a `state BACKUP` (so priorities alone decide, as
    /// with tandem) instance for VRID 51 with `flavour`'s version, interval and VIP.
    pub fn start(lab: &Lab, dir: TempDir, i: usize, flavour: Flavour, priority: u8) -> Keepalived {
        Keepalived::start_with(
            lab,
            dir,
            i,
            flavour,
            priority,
            flavour.keepalived_advert_int(),
        )
    }

    /// [`Keepalived::start`] with another `advert_int` (seconds, as keepalived writes it).
    pub fn start_with(
        lab: &Lab,
        dir: TempDir,
        i: usize,
        flavour: Flavour,
        priority: u8,
        advert_int: &str,
    ) -> Keepalived {
        Keepalived::start_configured(lab, dir, i, flavour, priority, advert_int, "")
    }

    /// [`Keepalived::start_with`] with `extra` lines inside `vrrp_instance` (e.g. an
    /// `authentication` block).
    pub fn start_configured(
        lab: &Lab,
        dir: TempDir,
        i: usize,
        flavour: Flavour,
        priority: u8,
        advert_int: &str,
        extra: &str,
    ) -> Keepalived {
        let (vip, len) = flavour.vip(lab);
        let conf = dir.write(
            "keepalived.conf",
            &format!(
                "global_defs {{\n  router_id {tag}k{i}\n  vrrp_version {version}\n}}\n\
                 vrrp_instance VI_51 {{\n  state BACKUP\n  interface eth0\n  \
                 virtual_router_id 51\n  priority {priority}\n  advert_int {int}\n  \
                 garp_master_delay 0\n  virtual_ipaddress {{\n    {vip}/{len} dev eth0\n  }}\n{extra}\n}}\n",
                tag = lab.tag(),
                version = flavour.version_number(),
                int = advert_int,
            ),
        );
        let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
        let mut cmd = Command::new("/usr/sbin/keepalived");
        // -n: stay in the foreground; -l -D: detailed log to the console (the lab's log file);
        // -G: not to syslog; -P: VRRP only; -R: a killed VRRP child is not respawned (a crash
        // must stay a crash).
        cmd.args(["-n", "-l", "-D", "-G", "-P", "-R", "-f"])
            .arg(conf)
            .arg("-p")
            .arg(path("keepalived.pid"))
            .arg("-r")
            .arg(path("vrrp.pid"));
        let proc = lab.spawn_in(i, &cmd);
        let parent = lab.pid(proc);
        Keepalived {
            proc,
            dir,
            parent,
            child: std::cell::Cell::new(None),
        }
    }

    /// The PID of keepalived's VRRP child process (the one that sends and receives adverts),
    /// once it has written its pid file; checked to be a keepalived child of ours.
    pub fn vrrp_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("vrrp.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let (comm, rest) = stat.split_once(") ")?;
        let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        let ours = comm.ends_with("(keepalived") && ppid == self.parent;
        if ours {
            self.child.set(Some(pid));
        }
        ours.then_some(pid)
    }

    /// SIGKILL the VRRP child, then the parent, by PID: a crash (no priority-0 advert, VIPs
    /// left where they are; `-R` keeps the parent from respawning the child).
    pub fn kill(&self, lab: &Lab) {
        let child = self.vrrp_pid();
        if let Some(child) = child {
            // SAFETY: kill(2) on the PID keepalived wrote, checked above to be a keepalived
            // process whose parent is our (unreaped) child.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        if lab.running(self.proc) {
            lab.signal(self.proc, libc::SIGKILL);
        }
        assert!(child.is_some(), "keepalived's VRRP child was not running");
    }

    /// Everything keepalived logged so far.
    pub fn log(&self, lab: &Lab) -> String {
        lab.log(self.proc)
    }

    /// The lines of its log that complain about a received packet
    /// ([`KEEPALIVED_PROTOCOL_COMPLAINTS`]).
    pub fn complaints(&self, lab: &Lab) -> Vec<String> {
        self.log(lab)
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                KEEPALIVED_PROTOCOL_COMPLAINTS.iter().any(|w| l.contains(w))
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // The parent itself is the lab's child, killed by PID when the lab goes; its VRRP
        // child is ours to end: the PID seen as its child, if that is still a keepalived.
        let _ = self.vrrp_pid();
        if let Some(child) = self.child.get() {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "keepalived" {
                // SAFETY: kill(2) on the PID of keepalived's VRRP child, still a keepalived.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
        }
    }
}
