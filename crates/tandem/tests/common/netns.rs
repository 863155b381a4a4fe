//! A small network lab for failure tests: "hosts" that are Linux network namespaces on a bridge,
//! which a test can unplug or blackhole while tandem (in the root namespace) sends them traffic.
//!
//! ```text
//!  root namespace (tandem, the test)            host 0: netns tl<pid><k>h0, eth0 = .11
//!  bridge tl<pid><k>b = base+1/27     ──veth tl<pid><k>v0 ── eth0
//!                                     ──veth tl<pid><k>v1 ── eth0 (host 1, .12) ...
//! ```
//!
//! - **Addresses**: each lab takes the first free /27 of the documentation ranges
//!   198.51.100.0/24, then 203.0.113.0/24 (never 192.0.2.0/24, which some sandboxes use as their
//!   real LAN): the bridge gets `base+1`, host `i` gets `base+11+i` (bridge 198.51.100.1, hosts
//!   198.51.100.11, .12, …). "Free" means it overlaps no address and no route of the root
//!   namespace: a lab left behind by a killed run never collides with a new one.
//! - **Names** contain the PID of the test process and a per-process letter (`tl<pid><k>…`), so
//!   parallel or stale runs never collide; [`Drop`] removes exactly the names this lab created
//!   and kills (by PID) every process it spawned.
//! - **Failures** a test can inject: [`Lab::link_down`] (the host's cable is pulled: its bridge
//!   port goes down; ARP for it fails, so after a few seconds connects fail with "no route to
//!   host"), [`Lab::blackhole`] (the host stays on the wire but nothing it sends leaves it: no
//!   SYN-ACK, no RST, no ICMP, so connects and requests hang) and [`Lab::restore`].
//!
//! Needs root (CAP_NET_ADMIN) and iproute2. A lab that cannot be built panics with the reason:
//! a failure test that silently skips would prove nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{read_head, TempDir};

/// Documentation prefixes (RFC 5737) the labs may use, each cut into /27s.
/// Documentation ranges only. 192.0.2.0/24 is left out on purpose: some hosting networks
/// (this project's own machines among them) use it as their real LAN, and a lab subnet there
/// could shadow a real route.
const RANGES: [[u8; 3]; 2] = [[198, 51, 100], [203, 0, 113]];
const SUBNET_LEN: u8 = 27;
/// Host `i` is `base + HOST_OFFSET + i`.
const HOST_OFFSET: u8 = 11;
/// Hosts per lab: `base+11 ..= base+30` (base+31 is the broadcast address).
pub const MAX_HOSTS: usize = 20;
/// Preference of the `ip rule` that blackholes a host (before `main` at 32766, after `local`
/// at 0 so the host still receives what is sent to it).
const BLACKHOLE_PREF: &str = "100";

/// Run `ip ARGS...`; panic with its stderr if it fails.
pub fn ip_cmd(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("netns lab: cannot run `ip` (is iproute2 installed?): {e}"));
    assert!(
        out.status.success(),
        "netns lab: `ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Run `ip ARGS...` during cleanup: report a failure on stderr instead of panicking (this runs
/// in `Drop`, possibly while a test is already unwinding).
fn ip_cleanup(args: &[&str]) -> bool {
    match Command::new("ip").args(args).stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "netns lab cleanup: `ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("netns lab cleanup: cannot run `ip {}`: {e}", args.join(" "));
            false
        }
    }
}

/// `ip ARGS...` stdout, or an empty string.
pub fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The python3 to run backends with: the system one when present (a pyenv shim costs a shell
/// start per process), else whatever `python3` is on PATH.
pub fn python3() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Blackholed,
    LinkDown,
}

#[derive(Debug)]
struct Host {
    /// Network namespace name (`ip netns`).
    netns: String,
    /// The bridge-side end of the host's veth pair (in the root namespace); the other end is
    /// `eth0` inside the namespace.
    veth: String,
    ip: Ipv4Addr,
    fault: Fault,
}

/// A process started in a lab host; see [`Lab::spawn_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc(usize);

struct Spawned {
    what: String,
    child: Child,
    log: PathBuf,
}

/// The bearer token of every lab node's admin API (see [`Lab::admin_token_file`]).
pub const LAB_ADMIN_TOKEN: &str = "lab-admin-token-0123456789abcdef";

/// A bridge with `N` namespace hosts; everything is removed on drop. See the module docs.
pub struct Lab {
    tag: String,
    bridge: Option<String>,
    gateway: Ipv4Addr,
    hosts: Vec<Host>,
    /// Bridge-side veths created (also those of a half-built host): deleted by name on drop.
    veths: Vec<String>,
    children: Mutex<Vec<Spawned>>,
    logs: TempDir,
}

impl Lab {
    /// Build a lab with `hosts` hosts (1..=[`MAX_HOSTS`]), each with `lo` and `eth0` up.
    /// Panics (after removing whatever it had created) if anything fails.
    pub fn new(hosts: usize) -> Lab {
        assert!(
            (1..=MAX_HOSTS).contains(&hosts),
            "netns lab: 1..={MAX_HOSTS} hosts, not {hosts}"
        );
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "netns lab: needs root (CAP_NET_ADMIN) to create network namespaces; these tests \
             do not skip, run them as root"
        );
        static LABS: AtomicU8 = AtomicU8::new(0);
        let k = LABS.fetch_add(1, Ordering::Relaxed);
        assert!(k < 26, "netns lab: at most 26 labs per test process");
        let tag = format!("tl{}{}", std::process::id(), char::from(b'a' + k));
        // Interface names are limited to 15 bytes: "tl" + 7-digit PID + letter + "v19" = 13.
        assert!(tag.len() + 3 <= 15, "netns lab: name {tag} too long");

        let base = free_subnet().unwrap_or_else(|| {
            panic!(
                "netns lab: every /{SUBNET_LEN} of 198.51.100.0/24 and \
                 203.0.113.0/24 has an address in the root namespace (stale labs? see `ip -br \
                 addr | grep '^tl'`)"
            )
        });
        let mut lab = Lab {
            bridge: None,
            gateway: offset(base, 1),
            hosts: Vec::new(),
            veths: Vec::new(),
            children: Mutex::new(Vec::new()),
            logs: TempDir::new(&format!("netns-{tag}")),
            tag,
        };
        // From here on, a panic drops `lab`, which removes whatever exists so far.
        let bridge = format!("{}b", lab.tag);
        ip_cmd(&["link", "add", &bridge, "type", "bridge"]);
        lab.bridge = Some(bridge.clone());
        let cidr = format!("{}/{SUBNET_LEN}", lab.gateway);
        ip_cmd(&["addr", "add", &cidr, "dev", &bridge]);
        ip_cmd(&["link", "set", &bridge, "up"]);
        for i in 0..hosts {
            lab.add_host(i, base);
        }
        lab
    }

    fn add_host(&mut self, i: usize, base: Ipv4Addr) {
        let netns = format!("{}h{i}", self.tag);
        let veth = format!("{}v{i}", self.tag);
        let ip = offset(base, HOST_OFFSET + u8::try_from(i).expect("host index"));
        ip_cmd(&["netns", "add", &netns]);
        self.hosts.push(Host {
            netns: netns.clone(),
            veth: veth.clone(),
            ip,
            fault: Fault::None,
        });
        // The peer is created directly inside the namespace as eth0 (names there are private).
        ip_cmd(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        self.veths.push(veth.clone());
        let bridge = self.bridge.clone().expect("bridge");
        ip_cmd(&["link", "set", &veth, "master", &bridge]);
        ip_cmd(&["link", "set", &veth, "up"]);
        ip_cmd(&["-n", &netns, "link", "set", "lo", "up"]);
        let cidr = format!("{ip}/{SUBNET_LEN}");
        ip_cmd(&["-n", &netns, "addr", "add", &cidr, "dev", "eth0"]);
        ip_cmd(&["-n", &netns, "link", "set", "eth0", "up"]);
    }

    /// How many hosts the lab has.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The name prefix of everything this lab created.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The root namespace's address on the lab (the bridge's): the source of tandem's traffic.
    pub fn gateway(&self) -> IpAddr {
        IpAddr::V4(self.gateway)
    }

    pub fn host_ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.host(i).ip)
    }

    pub fn host_addr(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.host_ip(i), port)
    }

    pub fn netns(&self, i: usize) -> &str {
        &self.host(i).netns
    }

    /// The bridge-side veth of host `i` (in the root namespace).
    pub fn veth(&self, i: usize) -> &str {
        &self.host(i).veth
    }

    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().expect("bridge")
    }

    fn host(&self, i: usize) -> &Host {
        self.hosts
            .get(i)
            .unwrap_or_else(|| panic!("netns lab: no host {i} (lab has {})", self.hosts.len()))
    }

    /// Start `cmd` inside host `i`'s namespace (`ip netns exec NS PROGRAM ARGS...`, which
    /// execs the program, so the PID is the program's). The command's program, arguments,
    /// environment and working directory are used; stdin is null, stdout and stderr go to a log
    /// file shown by [`Lab::log`]. The process is killed by PID when the lab is dropped.
    pub fn spawn_in(&self, i: usize, cmd: &Command) -> Proc {
        let netns = self.netns(i).to_string();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &netns]).arg(cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        let mut children = self.children.lock().expect("children lock");
        let n = children.len();
        let log_path = self.logs.path().join(format!("proc{n}-h{i}.log"));
        let log = std::fs::File::create(&log_path).expect("netns lab: create log file");
        let err = log.try_clone().expect("netns lab: clone log file");
        c.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("netns lab: spawning {cmd:?} in {netns}: {e}"));
        let what = format!("{:?} in host {i}", cmd.get_program());
        children.push(Spawned {
            what,
            child,
            log: log_path,
        });
        Proc(n)
    }

    /// The PID of a spawned process.
    pub fn pid(&self, p: Proc) -> i32 {
        let children = self.children.lock().expect("children lock");
        i32::try_from(children[p.0].child.id()).expect("pid fits i32")
    }

    /// Send `sig` to a spawned process (by its PID; it is our unreaped child, so the PID is
    /// still its own). Panics if it has already exited.
    pub fn signal(&self, p: Proc, sig: i32) {
        let mut children = self.children.lock().expect("children lock");
        let sp = &mut children[p.0];
        assert!(
            matches!(sp.child.try_wait(), Ok(None)),
            "netns lab: {} has already exited",
            sp.what
        );
        let pid = i32::try_from(sp.child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "netns lab: kill({pid}, {sig}) failed");
    }

    /// Whether a spawned process is still running.
    pub fn running(&self, p: Proc) -> bool {
        let mut children = self.children.lock().expect("children lock");
        matches!(children[p.0].child.try_wait(), Ok(None))
    }

    /// A file holding [`LAB_ADMIN_TOKEN`], for `[admin] token_file`: an admin API on a lab
    /// host's address is off loopback, where tandem requires a token for every request.
    pub fn admin_token_file(&self) -> PathBuf {
        self.logs.write("admin.token", LAB_ADMIN_TOKEN)
    }

    /// Everything a spawned process wrote to stdout and stderr so far.
    pub fn log(&self, p: Proc) -> String {
        let path = self.children.lock().expect("children lock")[p.0]
            .log
            .clone();
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Make host `i` a black hole: it stays on the wire (its bridge port is up and it answers
    /// ARP), but every packet it would send, except to itself, is discarded by an
    /// `ip rule ... blackhole` inside its namespace. To everyone else, its packets vanish: a
    /// SYN gets neither SYN-ACK nor RST, a request on an open connection gets no answer (not
    /// even ACKs), a ping no reply, and since ARP keeps working no "host unreachable" ever comes
    /// back. Connects hang until the caller's own timeout (the kernel's SYN retries, ~2 min).
    ///
    /// Why not the alternatives: a `blackhole` route in the *root* namespace fails connect()
    /// at once with EINVAL; `tc ... netem loss 100%` or a tc drop action also drops ARP (and
    /// these kernel modules are not available everywhere), so after the neighbour entry expires
    /// connects fail with EHOSTUNREACH instead of hanging; setting the bridge port down is
    /// [`Lab::link_down`], which ends the same way. The test
    /// `lab_blackhole_hangs_connects_and_cleans_up` (tests/netns.rs) checks this behaviour.
    pub fn blackhole(&mut self, i: usize) {
        let netns = self.netns(i).to_string();
        assert_eq!(
            self.host(i).fault,
            Fault::None,
            "netns lab: host {i} already has a fault; restore it first"
        );
        ip_cmd(&[
            "-n",
            &netns,
            "rule",
            "add",
            "pref",
            BLACKHOLE_PREF,
            "blackhole",
        ]);
        ip_cmd(&[
            "-n",
            &netns,
            "-6",
            "rule",
            "add",
            "pref",
            BLACKHOLE_PREF,
            "blackhole",
        ]);
        self.hosts[i].fault = Fault::Blackholed;
    }

    /// Pull host `i`'s cable: its bridge-side veth goes down, so `eth0` inside loses carrier and
    /// frames to it vanish in the bridge, and the root namespace forgets its MAC address. A
    /// connect then waits while ARP is tried (about 3 s) and fails with EHOSTUNREACH ("no route
    /// to host"); every new connect starts ARP again. Pings get no reply. As on a LAN whose
    /// host was unplugged.
    pub fn link_down(&mut self, i: usize) {
        assert_eq!(
            self.host(i).fault,
            Fault::None,
            "netns lab: host {i} already has a fault; restore it first"
        );
        let veth = self.veth(i).to_string();
        ip_cmd(&["link", "set", &veth, "down"]);
        // Forget its MAC address, as a gateway's entry soon would: the next packet to it starts
        // ARP, which fails after ~3 s. Without this the outcome depends on how old the entry
        // happens to be (REACHABLE for 15-45 s, during which packets silently vanish).
        let bridge = self.bridge().to_string();
        let ip = self.host(i).ip.to_string();
        let _ = Command::new("ip")
            .args(["neigh", "del", &ip, "dev", &bridge])
            .stdin(Stdio::null())
            .output();
        self.hosts[i].fault = Fault::LinkDown;
    }

    /// Undo [`Lab::blackhole`] or [`Lab::link_down`] on host `i`.
    pub fn restore(&mut self, i: usize) {
        let netns = self.netns(i).to_string();
        let veth = self.veth(i).to_string();
        match self.host(i).fault {
            Fault::None => {}
            Fault::Blackholed => {
                ip_cmd(&["-n", &netns, "rule", "del", "pref", BLACKHOLE_PREF]);
                ip_cmd(&["-n", &netns, "-6", "rule", "del", "pref", BLACKHOLE_PREF]);
            }
            Fault::LinkDown => ip_cmd(&["link", "set", &veth, "up"]),
        }
        self.hosts[i].fault = Fault::None;
    }

    /// Wait (bounded) until `addr` accepts TCP connections from the root namespace, checking
    /// that process `p` is still alive; panics with its log otherwise.
    pub async fn wait_listening(&self, p: Proc, addr: SocketAddr, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            assert!(
                self.running(p),
                "netns lab: process for {addr} exited; log:\n{}",
                self.log(p)
            );
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "netns lab: nothing listens on {addr} after {within:?}; log:\n{}",
                self.log(p)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Isolate host `i`'s bridge port (`on`) or end it: isolated ports exchange no frames
    /// with each other (Linux bridge `isolated`), while each still reaches the bridge itself.
    /// Isolating every VRRP node's port partitions them from one another (each becomes
    /// master) while the links stay up (keepalived would enter FAULT on a carrier loss) and
    /// the root namespace still reaches every host (admin APIs keep answering).
    pub fn isolate(&self, i: usize, on: bool) {
        let veth = self.veth(i).to_string();
        let on = if on { "on" } else { "off" };
        ip_cmd(&[
            "link",
            "set",
            "dev",
            &veth,
            "type",
            "bridge_slave",
            "isolated",
            on,
        ]);
    }

    /// Give the lab IPv6 (off until asked for, so the IPv4-only tests are unchanged): every
    /// host's `eth0` gets a fixed link-local address `fe80::<11+i>` (see
    /// [`Lab::link_local`]) and `<prefix>::<11+i>/64` (see [`Lab::host_ip6`]), the bridge
    /// `<prefix>::1/64`, all without duplicate address detection so they are usable at once
    /// (a tentative link-local cannot source a VRRPv3 advert). The kernel's own EUI-64
    /// link-local is removed (`addrgenmode none`), so the fixed one is the only one. The
    /// bridge's multicast snooping is turned off: every group (ff02::12 included) is flooded,
    /// as on a plain switch. The /64 is derived from the lab's IPv4 /27, so it is as unique
    /// as that one among the labs on this machine, and lies in 2001:db8::/32 (RFC 3849).
    pub fn enable_ipv6(&self) {
        let bridge = self.bridge().to_string();
        ip_cmd(&[
            "link",
            "set",
            &bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        let cidr = format!("{}/64", self.ipv6_addr(1));
        ip_cmd(&["addr", "add", &cidr, "dev", &bridge, "nodad"]);
        for (i, h) in self.hosts.iter().enumerate() {
            let ns = h.netns.as_str();
            ip_cmd(&["-n", ns, "link", "set", "eth0", "addrgenmode", "none"]);
            ip_cmd(&[
                "-n", ns, "-6", "addr", "flush", "dev", "eth0", "scope", "link",
            ]);
            let ll = format!("{}/64", self.link_local(i));
            ip_cmd(&["-n", ns, "addr", "add", &ll, "dev", "eth0", "nodad"]);
            let global = format!("{}/64", self.host_ip6(i));
            ip_cmd(&["-n", ns, "addr", "add", &global, "dev", "eth0", "nodad"]);
        }
    }

    /// The lab's IPv6 /64 (see [`Lab::enable_ipv6`]): `2001:db8:AABB:CCDD::/64` for the
    /// IPv4 /27 based at `AA.BB.CC.DD`.
    pub fn ipv6_prefix(&self) -> Ipv6Addr {
        let base = u32::from(self.gateway) - 1;
        let [a, b, c, d] = base.to_be_bytes();
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
            0,
            0,
            0,
            0,
        )
    }

    /// `<prefix>::<n>` in the lab's /64.
    pub fn ipv6_addr(&self, n: u16) -> Ipv6Addr {
        let mut s = self.ipv6_prefix().segments();
        s[7] = n;
        Ipv6Addr::from(s)
    }

    /// Host `i`'s global IPv6 address (after [`Lab::enable_ipv6`]): `<prefix>::<11+i>`.
    pub fn host_ip6(&self, i: usize) -> Ipv6Addr {
        let _ = self.host(i);
        self.ipv6_addr(u16::from(HOST_OFFSET) + u16::try_from(i).expect("host index"))
    }

    /// Host `i`'s link-local address (after [`Lab::enable_ipv6`]): `fe80::<11+i>`, the
    /// source of its VRRPv3 IPv6 adverts (RFC 5798 5.1.2.1).
    pub fn link_local(&self, i: usize) -> Ipv6Addr {
        let _ = self.host(i);
        let n = u16::from(HOST_OFFSET) + u16::try_from(i).expect("host index");
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
    }

    /// Names of this lab's links and namespaces that still exist (empty after drop).
    pub fn leftovers(tag: &str) -> Vec<String> {
        let mut left: Vec<String> = ip_output(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n.starts_with(tag))
            .collect();
        left.extend(
            ip_output(&["netns", "list"])
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(tag))
                .map(str::to_string),
        );
        left
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // 1. Processes first (by PID: they are our own unreaped children), so no namespace is
        //    kept busy and nothing keeps serving.
        let mut children = std::mem::take(
            self.children
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for sp in &mut children {
            if matches!(sp.child.try_wait(), Ok(None)) {
                // Child::kill sends SIGKILL to this child's PID only.
                if let Err(e) = sp.child.kill() {
                    eprintln!(
                        "netns lab cleanup: kill {} (pid {}): {e}",
                        sp.what,
                        sp.child.id()
                    );
                }
            }
            let _ = sp.child.wait();
        }
        // 2. The veths (deleting one end removes the pair at once, where deleting a namespace
        //    removes its links asynchronously), the namespaces, then the bridge: exact names.
        for v in &self.veths {
            ip_cleanup(&["link", "del", v]);
        }
        for h in &self.hosts {
            ip_cleanup(&["netns", "del", &h.netns]);
        }
        if let Some(b) = &self.bridge {
            ip_cleanup(&["link", "del", b]);
        }
        let left = Lab::leftovers(&self.tag);
        if !left.is_empty() {
            eprintln!("netns lab cleanup: still present after cleanup: {left:?}");
        }
    }
}

fn offset(base: Ipv4Addr, n: u8) -> Ipv4Addr {
    let o = base.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] + n)
}

/// The first /27 of the documentation ranges that overlaps no address and no route of the root
/// namespace (on some machines the real network itself is numbered in 192.0.2.0/24).
fn free_subnet() -> Option<Ipv4Addr> {
    let used = used_prefixes();
    for r in RANGES {
        for k in 0..(1u16 << (SUBNET_LEN - 24)) {
            let last = u8::try_from(k << (32 - SUBNET_LEN)).expect("octet");
            let base = Ipv4Addr::new(r[0], r[1], r[2], last);
            let cand = (u32::from(base), SUBNET_LEN);
            if !used.iter().any(|&p| overlaps(p, cand)) {
                return Some(base);
            }
        }
    }
    None
}

/// Every IPv4 prefix the root namespace has an address in or a route to (all tables; the
/// default route aside).
fn used_prefixes() -> Vec<(u32, u8)> {
    let mut v = Vec::new();
    let addrs = ip_output(&["-o", "-4", "addr", "show"]);
    let words: Vec<&str> = addrs.split_whitespace().collect();
    for w in words.windows(2) {
        if w[0] == "inet" {
            v.extend(parse_prefix(w[1]));
        }
    }
    for line in ip_output(&["-4", "route", "show", "table", "all"]).lines() {
        let mut t = line.split_whitespace();
        let mut first = t.next().unwrap_or("");
        if matches!(
            first,
            "local"
                | "broadcast"
                | "unicast"
                | "blackhole"
                | "unreachable"
                | "prohibit"
                | "throw"
                | "multicast"
                | "anycast"
                | "nat"
        ) {
            first = t.next().unwrap_or("");
        }
        v.extend(parse_prefix(first));
    }
    v
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32) as (network, len).
fn parse_prefix(s: &str) -> Option<(u32, u8)> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let a: Ipv4Addr = a.parse().ok()?;
    let l: u8 = l.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(a) & mask(l), l))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    a.0 & m == b.0 & m
}

// ---------------------------------------------------------------------------------------------
// A backend for lab hosts

/// A multithreaded HTTP/1.1 keep-alive server (python3's standard library only): every request
/// is answered `200` with the body `NAME\n` after `DELAY_MS` milliseconds, so that requests are
/// really in flight on a backend when it fails. Arguments: `IP PORT NAME [DELAY_MS]`.
pub const PY_BACKEND: &str = r#"
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
delay = float(sys.argv[4]) / 1000.0 if len(sys.argv) > 4 else 0.0
body = (name + "\n").encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if delay:
            time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

print("serving", name, "on", host, port, flush=True)
Server((host, port), Handler).serve_forever()
"#;

/// Start [`PY_BACKEND`] on host `i`, port `port`, answering `name`, and wait until it listens.
pub async fn start_py_backend(lab: &Lab, i: usize, port: u16, name: &str, delay_ms: u32) -> Proc {
    let mut cmd = Command::new(python3());
    cmd.arg("-c")
        .arg(PY_BACKEND)
        .arg(lab.host_ip(i).to_string())
        .arg(port.to_string())
        .arg(name)
        .arg(delay_ms.to_string());
    let p = lab.spawn_in(i, &cmd);
    lab.wait_listening(p, lab.host_addr(i, port), Duration::from_secs(10))
        .await;
    p
}

// ---------------------------------------------------------------------------------------------
// A load client that records every request

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub start: Duration,
    pub latency: Duration,
    /// `Ok((status, body))` or `Err(what went wrong)` (connect/read/write error, timeout, EOF).
    pub result: Result<(u16, String), String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        matches!(&self.result, Ok((200, _)))
    }
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// Send `GET /` to `target` from `clients` concurrent keep-alive connections for `duration`,
/// each client pausing `pause` between requests; every request is bounded by `timeout` (a
/// request that takes longer is recorded as failed and its connection dropped), and so is the
/// whole run (`duration + timeout`). `start` is the clock samples are relative to.
pub async fn run_load(
    target: SocketAddr,
    clients: usize,
    duration: Duration,
    pause: Duration,
    timeout: Duration,
    start: tokio::time::Instant,
) -> Vec<Sample> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        set.spawn(async move {
            let mut samples = Vec::new();
            let mut conn: Option<TcpStream> = None;
            // Bounded: the loop ends at `duration` and each request at `timeout`.
            while start.elapsed() < duration {
                let t0 = tokio::time::Instant::now();
                let result = match tokio::time::timeout(timeout, request(&mut conn, target)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("client timeout after {timeout:?}")),
                };
                if result.is_err() {
                    conn = None;
                }
                samples.push(Sample {
                    start: t0 - start,
                    latency: t0.elapsed(),
                    result,
                });
                tokio::time::sleep(pause).await;
            }
            samples
        });
    }
    let mut all = Vec::new();
    let bound = duration + timeout + Duration::from_secs(5);
    super::within("load clients to finish", bound, async {
        while let Some(r) = set.join_next().await {
            all.extend(r.expect("load client task"));
        }
    })
    .await;
    all.sort_by_key(|s| s.start);
    all
}

/// One `GET /` on `conn` (connecting first if needed). Keeps the connection for the next
/// request unless the response said `Connection: close`.
async fn request(
    conn: &mut Option<TcpStream>,
    target: SocketAddr,
) -> Result<(u16, String), String> {
    if conn.is_none() {
        let s = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        *conn = Some(s);
    }
    let s = conn.as_mut().expect("connection");
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let (head, mut body) = read_head(s)
        .await
        .ok_or_else(|| "connection closed or reset before a response".to_string())?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let headers = super::head_headers(&head);
    let len: usize = super::header_in(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no content-length: {head:?}"))?;
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if super::header_in(&headers, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
        *conn = None;
    }
    Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
}

/// Latency figures of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Nearest-rank percentiles of the latencies of `samples`.
pub fn latency(samples: &[&Sample]) -> Latency {
    let mut l: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    l.sort();
    let pick = |p: f64| -> Duration {
        if l.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * l.len() as f64).ceil() as usize;
        l[rank.clamp(1, l.len()) - 1]
    };
    Latency {
        count: l.len(),
        p50: pick(50.0),
        p99: pick(99.0),
        max: l.last().copied().unwrap_or_default(),
    }
}
