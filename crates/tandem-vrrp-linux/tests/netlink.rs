//! The netlink and announcement code against a real kernel, in network namespaces made per
//! test: two namespaces joined by a veth pair. The code under test runs on a thread that has
//! `setns(2)`-ed into a namespace (setns changes only the calling thread, and the netlink and
//! packet sockets it then opens belong to that namespace); the test checks the effect with
//! `ip -n NS ...`.
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns, CAP_NET_RAW). A lab that cannot be
//! built is a failure, never a skip. Only documentation ranges are used (198.51.100.0/24,
//! 2001:db8::/32).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tandem_vrrp_linux::netlink::{self, LinkEvent, LinkWatcher, NetlinkVips};
use tandem_vrrp_linux::Vips;

/// Upper bound for anything the kernel does asynchronously (carrier, ARP/ND processing).
const WAIT: Duration = Duration::from_secs(5);

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Two namespaces `a` and `b` joined by veth `dev_a` <-> `dev_b`, both up. Dropping it
/// deletes both namespaces (and so the veth pair) by exact name, also when a test panics.
struct Lab {
    a: String,
    b: String,
    dev_a: String,
    dev_b: String,
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    fn new() -> Lab {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("vl{}t{n}", std::process::id());
        let lab = Lab {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
            dev_a: format!("{tag}a"),
            dev_b: format!("{tag}b"),
        };
        assert!(
            lab.dev_a.len() <= 15,
            "interface name {} too long",
            lab.dev_a
        );
        // From here on Drop cleans up whatever part got built.
        ip(&["netns", "add", &lab.a]);
        ip(&["netns", "add", &lab.b]);
        for ns in [&lab.a, &lab.b] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &lab.a, "link", "add", &lab.dev_a, "type", "veth", "peer", "name", &lab.dev_b,
            "netns", &lab.b,
        ]);
        ip(&["-n", &lab.a, "link", "set", &lab.dev_a, "up"]);
        ip(&["-n", &lab.b, "link", "set", &lab.dev_b, "up"]);
        // Both ends have carrier shortly after both are up; start from a settled link.
        for (ns, dev) in [(&lab.a, &lab.dev_a), (&lab.b, &lab.dev_b)] {
            wait_until(&format!("carrier on {dev}"), || {
                ip(&["-n", ns, "link", "show", "dev", dev]).contains("LOWER_UP")
            });
        }
        lab
    }

    /// Like [`Lab::new`], with 198.51.100.1/24 on A and 198.51.100.2/24 on B.
    fn with_addresses() -> Lab {
        let lab = Lab::new();
        ip(&[
            "-n",
            &lab.a,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            &lab.dev_a,
        ]);
        ip(&[
            "-n",
            &lab.b,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            &lab.dev_b,
        ]);
        lab
    }

    /// `ip -n NS -br addr show dev DEV`.
    fn brief_addrs(&self, ns: &str, dev: &str) -> String {
        ip(&["-n", ns, "-br", "addr", "show", "dev", dev])
    }

    fn mac(&self, ns: &str, dev: &str) -> String {
        let out = ip(&["-n", ns, "-br", "link", "show", "dev", dev]);
        out.split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in {out:?}"))
            .to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a new thread inside network namespace `ns` and returns its result; a panic
/// in `f` is re-raised here.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    let handle = thread::spawn(move || {
        enter_ns(&path);
        f()
    });
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn enter_ns(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: a valid namespace fd; setns affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
}

/// Polls `check` until it is true or `WAIT` passes; panics with `what` then.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?}: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

#[test]
fn addresses_are_added_listed_and_removed_idempotently() {
    let lab = Lab::new();
    let dev = lab.dev_a.clone();
    let vip4 = v4("198.51.100.10");
    let vip6 = v6("2001:db8:1::10");

    let index = in_ns(&lab.a, move || {
        let index = netlink::link_index(&dev).expect("link_index");
        netlink::add_address(index, vip4, 24).expect("add v4");
        netlink::add_address(index, vip4, 24).expect("add v4 again (EEXIST is Ok)");
        netlink::add_address(index, vip6, 64).expect("add v6");
        netlink::add_address(index, vip6, 64).expect("add v6 again");
        let listed = netlink::addresses(index).expect("addresses");
        assert!(listed.contains(&(vip4, 24)), "{listed:?}");
        assert!(listed.contains(&(vip6, 64)), "{listed:?}");
        assert_eq!(listed.iter().filter(|a| a.0 == vip4).count(), 1);
        index
    });
    let brief = lab.brief_addrs(&lab.a, &lab.dev_a);
    assert!(brief.contains("198.51.100.10/24"), "{brief}");
    assert!(brief.contains("2001:db8:1::10/64"), "{brief}");
    // IFA_F_NODAD: the VIP is usable at once, never tentative.
    let full = ip(&["-n", &lab.a, "addr", "show", "dev", &lab.dev_a]);
    let line = full
        .lines()
        .find(|l| l.contains("2001:db8:1::10/64"))
        .unwrap_or_else(|| panic!("{full}"));
    assert!(!line.contains("tentative"), "{line}");
    assert!(line.contains("nodad"), "{line}");
    // The namespace's other interface is not the one we changed.
    let b = lab.brief_addrs(&lab.b, &lab.dev_b);
    assert!(!b.contains("198.51.100.10"), "{b}");

    in_ns(&lab.a, move || {
        netlink::del_address(index, vip4, 24).expect("del v4");
        netlink::del_address(index, vip4, 24).expect("del v4 again (absent is Ok)");
        netlink::del_address(index, vip6, 64).expect("del v6");
        netlink::del_address(index, vip6, 64).expect("del v6 again");
        let listed = netlink::addresses(index).expect("addresses");
        assert!(
            !listed.iter().any(|a| a.0 == vip4 || a.0 == vip6),
            "{listed:?}"
        );
        let missing = netlink::link_index("vl-no-such").expect_err("unknown interface");
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound, "{missing}");
        assert!(netlink::add_address(index, vip4, 33).is_err());
    });
    let brief = lab.brief_addrs(&lab.a, &lab.dev_a);
    assert!(!brief.contains("198.51.100.10"), "{brief}");
    assert!(!brief.contains("2001:db8:1::10"), "{brief}");
}

#[test]
fn netlink_vips_acquire_and_release_every_vip() {
    let lab = Lab::with_addresses();
    let dev = lab.dev_a.clone();
    let vips = vec![
        (v4("198.51.100.20"), 24),
        (v4("198.51.100.21"), 32),
        (v6("2001:db8:1::20"), 64),
    ];
    let (to_test, from_ns) = mpsc::channel::<&'static str>();
    let (to_ns, in_ns_rx) = mpsc::channel::<()>();
    let worker = {
        let path = format!("/var/run/netns/{}", lab.a);
        let vips = vips.clone();
        thread::spawn(move || {
            enter_ns(&path);
            let mut host = NetlinkVips::on_interface(&dev, vips).expect("NetlinkVips");
            host.acquire().expect("acquire");
            host.acquire().expect("acquire twice");
            to_test.send("acquired").unwrap();
            in_ns_rx.recv_timeout(WAIT).expect("test went away");
            host.release().expect("release");
            host.release().expect("release twice");
            to_test.send("released").unwrap();
        })
    };
    assert_eq!(from_ns.recv_timeout(WAIT), Ok("acquired"));
    let brief = lab.brief_addrs(&lab.a, &lab.dev_a);
    for want in [
        "198.51.100.1/24",
        "198.51.100.20/24",
        "198.51.100.21/32",
        "2001:db8:1::20/64",
    ] {
        assert!(brief.contains(want), "{want} missing: {brief}");
    }
    to_ns.send(()).unwrap();
    assert_eq!(from_ns.recv_timeout(WAIT), Ok("released"));
    worker.join().expect("worker panicked");
    let brief = lab.brief_addrs(&lab.a, &lab.dev_a);
    assert!(
        brief.contains("198.51.100.1/24"),
        "the host's own address stays: {brief}"
    );
    for gone in ["198.51.100.20", "198.51.100.21", "2001:db8:1::20"] {
        assert!(!brief.contains(gone), "{gone} still there: {brief}");
    }
}

#[test]
fn link_state_and_watcher_follow_the_link() {
    let lab = Lab::new();
    let dev = lab.dev_a.clone();
    let (events_tx, events) = mpsc::channel::<(u32, bool, Duration)>();
    let (ready_tx, ready) = mpsc::channel::<u32>();
    let (stop_tx, stop) = mpsc::channel::<()>();
    let watcher_thread = {
        let path = format!("/var/run/netns/{}", lab.a);
        thread::spawn(move || {
            enter_ns(&path);
            let index = netlink::link_index(&dev).expect("link_index");
            // The veth carrier comes up shortly after both ends are up.
            wait_until("veth up with carrier", || {
                netlink::link_is_up(index).expect("link_is_up")
            });
            let mut watcher = LinkWatcher::new().expect("LinkWatcher");
            assert_eq!(watcher.is_up(index), Some(true));
            ready_tx.send(index).unwrap();
            loop {
                if stop.try_recv().is_ok() {
                    return;
                }
                let started = Instant::now();
                match watcher.next_event(Duration::from_millis(200)) {
                    Ok(Some(LinkEvent { index: i, up })) if i == index => {
                        let info = netlink::link_info(index).expect("link_info");
                        assert_eq!(info.is_up(), up, "event agrees with a fresh read");
                        events_tx.send((i, up, started.elapsed())).unwrap();
                    }
                    Ok(_) => {}
                    Err(e) => panic!("next_event: {e}"),
                }
            }
        })
    };
    let index = ready
        .recv_timeout(WAIT * 2)
        .expect("watcher thread not ready");
    let expect_event = |up: bool, what: &str| {
        let (i, got, _) = events
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no link event within {WAIT:?} after {what}"));
        assert_eq!((i, got), (index, up), "after {what}");
    };

    ip(&["-n", &lab.a, "link", "set", &lab.dev_a, "down"]);
    expect_event(false, "link set down");
    let a_ns = lab.a.clone();
    assert!(!in_ns(&a_ns, move || netlink::link_is_up(index)
        .expect("link_is_up")));

    ip(&["-n", &lab.a, "link", "set", &lab.dev_a, "up"]);
    expect_event(true, "link set up");

    // The peer going down takes the carrier (IFF_LOWER_UP) away while IFF_UP stays.
    ip(&["-n", &lab.b, "link", "set", &lab.dev_b, "down"]);
    expect_event(false, "peer down (carrier lost)");
    let info = in_ns(&a_ns, move || netlink::link_info(index).expect("link_info"));
    assert!(info.admin_up && !info.lower_up, "{info:?}");

    ip(&["-n", &lab.b, "link", "set", &lab.dev_b, "up"]);
    expect_event(true, "peer up");

    stop_tx.send(()).unwrap();
    watcher_thread.join().expect("watcher thread panicked");
    assert!(events.try_recv().is_err(), "no spurious event");
}

#[test]
fn watcher_times_out_without_changes() {
    let lab = Lab::new();
    let elapsed = in_ns(&lab.a, || {
        let mut watcher = LinkWatcher::new().expect("LinkWatcher");
        // Drain whatever the freshly created lab still reports.
        while watcher
            .next_event(Duration::from_millis(300))
            .expect("next_event")
            .is_some()
        {}
        let started = Instant::now();
        assert_eq!(
            watcher
                .next_event(Duration::from_millis(200))
                .expect("next_event"),
            None
        );
        started.elapsed()
    });
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// The neighbour entry `ns` has for `ip` on `dev`, as `ip neigh` prints it.
fn neighbour(ns: &str, ip_addr: &str, dev: &str) -> String {
    ip(&["-n", ns, "neigh", "show", ip_addr, "dev", dev])
}

const OLD_MAC: &str = "02:00:00:00:00:99";

#[test]
fn gratuitous_arp_updates_the_peer_neighbour_table() {
    let lab = Lab::with_addresses();
    let vip = "198.51.100.100";
    // Linux only creates entries from gratuitous ARP with arp_accept, but always updates an
    // existing one: the failover case, where peers still point at the old master.
    ip(&[
        "-n", &lab.b, "neigh", "replace", vip, "lladdr", OLD_MAC, "dev", &lab.dev_b, "nud", "stale",
    ]);
    let mac_a = lab.mac(&lab.a, &lab.dev_a);
    assert_ne!(mac_a, OLD_MAC);

    let dev = lab.dev_a.clone();
    let host = in_ns(&lab.a, move || {
        let mut host = NetlinkVips::on_interface(&dev, vec![(v4(vip), 24)]).expect("NetlinkVips");
        host.acquire().expect("acquire");
        host
    });
    // Configuring the address announces nothing by itself: the update below is ours.
    let before = neighbour(&lab.b, vip, &lab.dev_b);
    assert!(before.contains(OLD_MAC), "{before}");
    in_ns(&lab.a, move || {
        let mut host = host;
        host.announce().expect("announce");
    });
    wait_until(
        &format!("{vip} -> {mac_a} in {}'s neighbour table", lab.b),
        || neighbour(&lab.b, vip, &lab.dev_b).contains(&mac_a),
    );
}

#[test]
fn unsolicited_na_updates_the_peer_neighbour_table() {
    let lab = Lab::new();
    let vip = "2001:db8:1::100";
    ip(&[
        "-n", &lab.b, "-6", "neigh", "replace", vip, "lladdr", OLD_MAC, "dev", &lab.dev_b, "nud",
        "stale",
    ]);
    let mac_a = lab.mac(&lab.a, &lab.dev_a);

    let dev = lab.dev_a.clone();
    let host = in_ns(&lab.a, move || {
        let mut host = NetlinkVips::on_interface(&dev, vec![(v6(vip), 64)]).expect("NetlinkVips");
        host.acquire().expect("acquire");
        host
    });
    // Configuring the address announces nothing by itself: the update below is ours.
    let before = neighbour(&lab.b, vip, &lab.dev_b);
    assert!(before.contains(OLD_MAC), "{before}");
    in_ns(&lab.a, move || {
        let mut host = host;
        host.announce().expect("announce");
    });
    wait_until(
        &format!("{vip} -> {mac_a} in {}'s neighbour table", lab.b),
        || neighbour(&lab.b, vip, &lab.dev_b).contains(&mac_a),
    );
}

#[test]
fn announcing_on_a_link_without_carrier_is_an_error() {
    let lab = Lab::new();
    // The peer down: our side keeps IFF_UP but loses carrier.
    ip(&["-n", &lab.b, "link", "set", &lab.dev_b, "down"]);
    let dev = lab.dev_a.clone();
    let err = in_ns(&lab.a, move || {
        let index = netlink::link_index(&dev).expect("link_index");
        wait_until("carrier lost", || {
            !netlink::link_is_up(index).expect("link_is_up")
        });
        let mut host =
            NetlinkVips::new(index, vec![(v4("198.51.100.30"), 24)]).expect("NetlinkVips");
        host.acquire()
            .expect("acquire works on a link without carrier");
        host.announce().expect_err("announce without carrier")
    });
    assert_eq!(err.kind(), std::io::ErrorKind::NetworkDown, "{err}");
    assert!(err.to_string().contains(&lab.dev_a), "{err}");
}

#[test]
fn announce_frames_arrive_as_built() {
    // Capture in B with an AF_PACKET socket on a thread inside B, announce from A, and compare
    // the received ARP frame with the builder's output.
    let lab = Lab::new();
    let vip = Ipv4Addr::new(198, 51, 100, 101);
    let dev_b = lab.dev_b.clone();
    let path_b = format!("/var/run/netns/{}", lab.b);
    let (ready_tx, ready) = mpsc::channel::<()>();
    let capture = thread::spawn(move || -> Vec<u8> {
        enter_ns(&path_b);
        let index = netlink::link_index(&dev_b).expect("link_index in B");
        let proto = (0x0806u16).to_be() as libc::c_int;
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just created and is owned here.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x0806u16.to_be();
        sll.sll_ifindex = index as libc::c_int;
        // SAFETY: valid sockaddr_ll and length.
        let rc = unsafe {
            libc::bind(
                owned.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no gratuitous ARP for {vip} within {WAIT:?}"
            );
            let mut pfd = libc::pollfd {
                fd: owned.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int + 1) };
            if n <= 0 {
                continue;
            }
            // SAFETY: buf is valid for its length.
            let len =
                unsafe { libc::recv(owned.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert!(len >= 0, "recv: {}", std::io::Error::last_os_error());
            let frame = &buf[..len as usize];
            if frame.len() >= 42 && frame[38..42] == vip.octets() {
                return frame.to_vec();
            }
        }
    });
    ready.recv_timeout(WAIT).expect("capture thread not ready");
    let dev_a = lab.dev_a.clone();
    let mac = in_ns(&lab.a, move || {
        let index = netlink::link_index(&dev_a).expect("link_index");
        let info = netlink::link_info(index).expect("link_info");
        let mac: [u8; 6] = info.hw_address.as_slice().try_into().expect("6-byte MAC");
        tandem_vrrp_linux::announce::send_garp(index, mac, vip).expect("send_garp");
        mac
    });
    let frame = capture.join().expect("capture thread panicked");
    let built = tandem_vrrp_linux::announce::garp_frame(mac, vip);
    // The veth does not pad, but a padded frame would still start with the built bytes.
    assert_eq!(&frame[..built.len()], &built[..]);
}
