//! The runner on real raw sockets, in a network-namespace lab built per test (root needed):
//!
//! ```text
//!   ns A: eth0 198.51.100.1, fe80::1 ─┐
//!   ns B: eth0 198.51.100.2, fe80::2 ─┼─ ns C: br0 198.51.100.3, fe80::3 (bridge; injector)
//! ```
//!
//! Namespaces are named `vr<pid><tag><a|b|c>` and deleted by exact name on drop; keepalived
//! processes are killed by PID. Addresses are only from the documentation ranges
//! 198.51.100.0/24 and 2001:db8::/32 (plus link-local). Every wait is bounded, and a lab
//! that cannot be built fails the test. The tests run one at a time (a global lock) so the
//! timing measurements are not disturbed by each other on a small machine.

mod common;
use common::keepalived::{require_keepalived, Keepalived};
use common::lab::*;

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_vrrp::fsm::{master_down_interval, skew_time, InstanceConfig, State};
use tandem_vrrp::packet::{self, ChecksumMode, Discard};
use tandem_vrrp::{Advert, Version};
use tandem_vrrp_linux::runner::{self, RunnerConfig, RunnerHandle};
use tandem_vrrp_linux::Vips;

// ---- recording fake Vips ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Acquire,
    Release,
    Announce,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Instant, Call)>>>);

impl Recorder {
    fn calls(&self) -> Vec<(Instant, Call)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn kinds(&self) -> Vec<Call> {
        self.calls().into_iter().map(|(_, c)| c).collect()
    }
    fn first_after(&self, call: Call, after: Instant) -> Option<Instant> {
        self.calls()
            .into_iter()
            .find(|(t, c)| *c == call && *t >= after)
            .map(|(t, _)| t)
    }
    fn vips(&self) -> Box<dyn Vips> {
        Box::new(self.clone())
    }
}

impl Vips for Recorder {
    fn acquire(&mut self) -> io::Result<()> {
        self.push(Call::Acquire)
    }
    fn release(&mut self) -> io::Result<()> {
        self.push(Call::Release)
    }
    fn announce(&mut self) -> io::Result<()> {
        self.push(Call::Announce)
    }
}

impl Recorder {
    fn push(&self, call: Call) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), call));
        Ok(())
    }
}

// ---- helpers ------------------------------------------------------------------------------

fn config(local: IpAddr, vip: IpAddr, priority: u8, ifindex: u32) -> RunnerConfig {
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
    let mut cfg = RunnerConfig::new(instance, ifindex, "eth0", vec![vip]);
    cfg.garp_master_delay = Duration::from_millis(300);
    cfg.garp_master_repeat = 2;
    cfg
}

fn spawn_in(ns: &str, cfg: RunnerConfig, rec: &Recorder) -> RunnerHandle {
    let vips = rec.vips();
    in_netns(ns, move || runner::spawn(cfg, vips))
        .unwrap_or_else(|e| panic!("runner in {ns} did not start: {e}"))
}

fn state(h: &RunnerHandle) -> State {
    h.status().state
}

/// Starts A (priority 200) and B (priority 100) and waits until A is master, B backup.
fn start_pair(lab: &Lab, v6: bool) -> (RunnerHandle, Recorder, RunnerHandle, Recorder) {
    start_pair_with(lab, v6, false)
}

/// [`start_pair`], optionally with A and B as each other's only unicast peer.
fn start_pair_with(
    lab: &Lab,
    v6: bool,
    unicast: bool,
) -> (RunnerHandle, Recorder, RunnerHandle, Recorder) {
    let (la, lb, vip) = if v6 {
        (IpAddr::V6(A6), IpAddr::V6(B6), IpAddr::V6(VIP6))
    } else {
        (IpAddr::V4(A4), IpAddr::V4(B4), IpAddr::V4(VIP4))
    };
    let (ra, rb) = (Recorder::default(), Recorder::default());
    let mut ca = config(la, vip, 200, lab.ifindex(&lab.a, "eth0"));
    let mut cb = config(lb, vip, 100, lab.ifindex(&lab.b, "eth0"));
    if unicast {
        ca.unicast_peers = vec![lb];
        cb.unicast_peers = vec![la];
    }
    let ha = spawn_in(&lab.a, ca, &ra);
    let hb = spawn_in(&lab.b, cb, &rb);
    wait_for(Duration::from_secs(3), "A master and B backup", || {
        state(&ha) == State::Master
            && state(&hb) == State::Backup
            && hb.status().master_address == Some(la)
    });
    // Let a few adverts flow, then check nothing flapped.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&ha), State::Master);
    assert_eq!(state(&hb), State::Backup);
    assert_eq!(hb.status().master_address, Some(la));
    assert!(
        hb.status().counters.adverts_received >= 3,
        "{:?}",
        hb.status()
    );
    assert_eq!(ha.status().counters.became_master, 1);
    assert_eq!(hb.status().counters.became_master, 0);
    // Startup release before anything else, the release of entering Backup (RFC 5798
    // 6.4.1), then the master acquires and announces a burst.
    let ka = ra.kinds();
    assert_eq!(
        ka.get(..5),
        Some(
            &[
                Call::Release,
                Call::Release,
                Call::Acquire,
                Call::Announce,
                Call::Announce
            ][..]
        ),
        "{ka:?}"
    );
    // garp_master_delay 300 ms: the second burst of 2 has happened by now.
    assert_eq!(
        ka.iter().filter(|c| **c == Call::Announce).count(),
        4,
        "{ka:?}"
    );
    let kb = rb.kinds();
    assert!(kb.iter().all(|c| *c == Call::Release), "{kb:?}");
    (ha, ra, hb, rb)
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn threads_inherit_the_network_namespace_set_by_their_creator() {
    let _serial = serial();
    let lab = Lab::new("vr", "ns");
    let root = thread_netns_inode();
    let want = File::open(format!("/var/run/netns/{}", lab.a))
        .and_then(|f| f.metadata())
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("{e}"));
    let got = in_netns(&lab.a, || {
        std::thread::spawn(|| std::thread::spawn(thread_netns_inode).join())
            .join()
            .ok()
            .and_then(|r| r.ok())
    });
    assert_eq!(got, Some(want));
    assert_eq!(
        thread_netns_inode(),
        root,
        "the test thread itself must not move"
    );
}

#[test]
fn v4_roles_follow_priority_and_shutdown_hands_over_after_skew_time() {
    let _serial = serial();
    let lab = Lab::new("vr", "s4");
    let (ha, ra, hb, rb) = start_pair(&lab, false);
    let status_a = ha.status_handle();
    let t0 = Instant::now();
    ha.shutdown().unwrap_or_else(|e| panic!("shutdown: {e}"));
    wait_for(Duration::from_secs(2), "B to take over", || {
        rb.first_after(Call::Acquire, t0).is_some()
    });
    let handover = rb.first_after(Call::Acquire, t0).unwrap_or(t0) - t0;
    let skew = skew_time(Version::V3, 100, INTERVAL);
    eprintln!("IPv4 priority-0 handover: {handover:?} (Skew_Time {skew:?})");
    assert!(
        handover >= skew - Duration::from_millis(10)
            && handover < skew + Duration::from_millis(100),
        "handover {handover:?}, Skew_Time {skew:?}"
    );
    wait_for(Duration::from_secs(1), "B master", || {
        state(&hb) == State::Master
    });
    let a = status_a.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(a.state, State::Stopped);
    assert_eq!(a.counters.priority_zero_sent, 1);
    assert_eq!(hb.status().counters.priority_zero_received, 1);
    assert_eq!(
        ra.kinds().last(),
        Some(&Call::Release),
        "A releases on shutdown"
    );
    hb.shutdown().unwrap_or_else(|e| panic!("shutdown: {e}"));
}

#[test]
fn v4_killed_master_is_replaced_after_master_down_interval_and_preempts_on_return() {
    let _serial = serial();
    let lab = Lab::new("vr", "k4");
    let (ha, ra, hb, rb) = start_pair(&lab, false);
    let calls_before_kill = ra.calls().len();
    // start_pair returns in phase with A's adverts; kill mid-interval instead.
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    ha.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    wait_for(Duration::from_secs(2), "B to take over", || {
        rb.first_after(Call::Acquire, t0).is_some()
    });
    let failover = rb.first_after(Call::Acquire, t0).unwrap_or(t0) - t0;
    let mdi = master_down_interval(Version::V3, 100, INTERVAL);
    eprintln!("IPv4 failover after a killed master: {failover:?} (Master_Down_Interval {mdi:?})");
    // The last advert left at most one interval before the kill.
    assert!(
        failover > mdi - INTERVAL.as_duration() - Duration::from_millis(10)
            && failover < mdi + Duration::from_millis(100),
        "failover {failover:?}, Master_Down_Interval {mdi:?}"
    );
    assert_eq!(
        ra.calls().len(),
        calls_before_kill,
        "a killed runner must not touch the addresses"
    );
    // A comes back: releases first (stale address from the "crash"), then preempts B.
    let t1 = Instant::now();
    let ha = spawn_in(
        &lab.a,
        config(
            IpAddr::V4(A4),
            IpAddr::V4(VIP4),
            200,
            lab.ifindex(&lab.a, "eth0"),
        ),
        &ra,
    );
    assert_eq!(
        ra.calls().get(calls_before_kill).map(|c| c.1),
        Some(Call::Release)
    );
    wait_for(Duration::from_secs(3), "A to preempt B", || {
        state(&ha) == State::Master && state(&hb) == State::Backup
    });
    eprintln!(
        "IPv4 preemption by the returning master: {:?}",
        t1.elapsed()
    );
    assert!(rb.first_after(Call::Release, t1).is_some());
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    hb.shutdown().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn v6_roles_follow_priority_and_failover_works() {
    let _serial = serial();
    let lab = Lab::new("vr", "s6");
    let (ha, _ra, hb, rb) = start_pair(&lab, true);
    assert_eq!(hb.status().master_address, Some(IpAddr::V6(A6)));
    let t0 = Instant::now();
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(2), "B to take over", || {
        rb.first_after(Call::Acquire, t0).is_some()
    });
    let handover = rb.first_after(Call::Acquire, t0).unwrap_or(t0) - t0;
    let skew = skew_time(Version::V3, 100, INTERVAL);
    eprintln!("IPv6 priority-0 handover: {handover:?} (Skew_Time {skew:?})");
    assert!(handover < skew + Duration::from_millis(100), "{handover:?}");
    // B alone, as master: a second node with priority 50 starts and stays backup, then
    // B is killed and the newcomer takes over after its Master_Down_Interval.
    let rc = Recorder::default();
    let hc = spawn_in(
        &lab.a,
        config(
            IpAddr::V6(A6),
            IpAddr::V6(VIP6),
            50,
            lab.ifindex(&lab.a, "eth0"),
        ),
        &rc,
    );
    wait_for(Duration::from_secs(3), "A(50) backup under B", || {
        state(&hc) == State::Backup && hc.status().master_address == Some(IpAddr::V6(B6))
    });
    let t1 = Instant::now();
    hb.kill().unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(2), "A(50) to take over", || {
        rc.first_after(Call::Acquire, t1).is_some()
    });
    let failover = rc.first_after(Call::Acquire, t1).unwrap_or(t1) - t1;
    let mdi = master_down_interval(Version::V3, 50, INTERVAL);
    eprintln!("IPv6 failover after a killed master: {failover:?} (Master_Down_Interval {mdi:?})");
    assert!(
        failover > mdi - INTERVAL.as_duration() - Duration::from_millis(10)
            && failover < mdi + Duration::from_millis(100),
        "failover {failover:?}, Master_Down_Interval {mdi:?}"
    );
    hc.shutdown().unwrap_or_else(|e| panic!("{e}"));
}

/// A raw socket in the bridge namespace sends a priority-254 advert (which would preempt
/// the master if accepted) once with TTL 64 and once with a broken checksum.
#[test]
fn malformed_adverts_are_counted_by_reason_and_change_nothing() {
    let _serial = serial();
    let lab = Lab::new("vr", "bad");
    let (ha, ra, hb, rb) = start_pair(&lab, false);
    let (calls_a, calls_b) = (ra.calls().len(), rb.calls().len());
    let (before_a, before_b) = (ha.status(), hb.status());
    in_netns(&lab.c, move || {
        inject_bad_adverts().unwrap_or_else(|e| panic!("inject: {e}"))
    });
    wait_for(Duration::from_secs(2), "both discards counted", || {
        let (a, b) = (ha.status().discards, hb.status().discards);
        a.get(Discard::BadTtl) == 1
            && a.get(Discard::BadChecksum) == 1
            && b.get(Discard::BadTtl) == 1
            && b.get(Discard::BadChecksum) == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    let (a, b) = (ha.status(), hb.status());
    assert_eq!(a.discards.total(), 2, "{:?}", a.discards);
    assert_eq!(b.discards.total(), 2, "{:?}", b.discards);
    assert_eq!(a.state, State::Master);
    assert_eq!(b.state, State::Backup);
    assert_eq!(b.master_address, Some(IpAddr::V4(A4)));
    assert_eq!(a.counters.became_master, before_a.counters.became_master);
    assert_eq!(b.counters.became_master, before_b.counters.became_master);
    assert_eq!(
        a.counters.adverts_received,
        before_a.counters.adverts_received
    );
    assert_eq!(ra.calls().len(), calls_a);
    assert_eq!(rb.calls().len(), calls_b);
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    hb.shutdown().unwrap_or_else(|e| panic!("{e}"));
}

/// Unicast mode: A and B send only to each other; a valid, higher-priority advert from a
/// third address (sent unicast to B) is dropped by B's socket and counted as foreign.
#[test]
fn unicast_peers_work_and_foreign_sources_are_dropped() {
    let _serial = serial();
    let lab = Lab::new("vr", "uc");
    let (ha, _ra, hb, rb) = start_pair_with(&lab, false, true);
    let calls_b = rb.calls().len();
    in_netns(&lab.c, move || {
        inject_valid_unicast(B4).unwrap_or_else(|e| panic!("inject: {e}"))
    });
    wait_for(
        Duration::from_secs(2),
        "B to count the foreign source",
        || hb.status().socket.foreign_source == 1,
    );
    std::thread::sleep(Duration::from_millis(300));
    let b = hb.status();
    assert_eq!(b.state, State::Backup);
    assert_eq!(b.master_address, Some(IpAddr::V4(A4)));
    assert_eq!(b.discards.total(), 0, "{:?}", b.discards);
    assert_eq!(rb.calls().len(), calls_b);
    let t0 = Instant::now();
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(2), "B to take over", || {
        rb.first_after(Call::Acquire, t0).is_some()
    });
    eprintln!(
        "IPv4 unicast priority-0 handover: {:?}",
        rb.first_after(Call::Acquire, t0).unwrap_or(t0) - t0
    );
    hb.shutdown().unwrap_or_else(|e| panic!("{e}"));
}

fn inject_valid_unicast(to: Ipv4Addr) -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
    socket.set_ttl_v4(255)?;
    let advert = Advert {
        version: Version::V3,
        vrid: VRID,
        priority: 254,
        interval: INTERVAL,
        addresses: vec![IpAddr::V4(VIP4)],
    };
    let mut bytes = Vec::new();
    packet::encode(
        &advert,
        IpAddr::V4(C4),
        IpAddr::V4(to),
        ChecksumMode::Keepalived,
        &mut bytes,
    )
    .map_err(|e| io::Error::other(e.to_string()))?;
    socket.send_to(&bytes, &SocketAddr::V4(SocketAddrV4::new(to, 0)).into())?;
    Ok(())
}

fn inject_bad_adverts() -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
    socket.set_multicast_if_v4(&C4)?;
    let advert = Advert {
        version: Version::V3,
        vrid: VRID,
        priority: 254,
        interval: INTERVAL,
        addresses: vec![IpAddr::V4(VIP4)],
    };
    let dst = IpAddr::V4(packet::MULTICAST_V4);
    let mut good = Vec::new();
    packet::encode(
        &advert,
        IpAddr::V4(C4),
        dst,
        ChecksumMode::Keepalived,
        &mut good,
    )
    .map_err(|e| io::Error::other(e.to_string()))?;
    let to = SocketAddr::V4(SocketAddrV4::new(packet::MULTICAST_V4, 0)).into();
    // Correct packet, wrong TTL (RFC 5798 7.1: MUST discard unless 255).
    socket.set_multicast_ttl_v4(64)?;
    socket.send_to(&good, &to)?;
    // TTL 255, broken checksum.
    socket.set_multicast_ttl_v4(255)?;
    let mut bad = good.clone();
    bad[6] ^= 0x5a;
    socket.send_to(&bad, &to)?;
    Ok(())
}

// ---- keepalived interop -------------------------------------------------------------------

/// keepalived as the peer: starts as backup for `VRID` with `priority`.
fn keepalived(ns: &str, priority: u8) -> Keepalived {
    Keepalived::start(
        ns,
        "vr",
        &format!(
            "vrrp_instance VI_{VRID} {{\n  state BACKUP\n  interface eth0\n  \
             virtual_router_id {VRID}\n  priority {priority}\n  advert_int 0.1\n  \
             virtual_ipaddress {{\n    {VIP4}/24\n  }}\n}}\n"
        ),
    )
}

fn has_vip(ns: &str) -> bool {
    ip_output(&["-n", ns, "-o", "addr", "show", "dev", "eth0"]).contains(&format!("{VIP4}/"))
}

#[test]
fn keepalived_backup_follows_tandem_master_and_takes_over() {
    let _serial = serial();
    require_keepalived();
    let lab = Lab::new("vr", "kb");
    let ra = Recorder::default();
    let cfg = || {
        config(
            IpAddr::V4(A4),
            IpAddr::V4(VIP4),
            200,
            lab.ifindex(&lab.a, "eth0"),
        )
    };
    let ha = spawn_in(&lab.a, cfg(), &ra);
    let mut kd = keepalived(&lab.b, 100);
    wait_for(Duration::from_secs(3), "tandem master", || {
        state(&ha) == State::Master
    });
    // keepalived (started as BACKUP) must stay backup while tandem advertises.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !has_vip(&lab.b),
        "keepalived took the VIP from a higher-priority tandem:\n{}",
        kd.log()
    );
    assert_eq!(state(&ha), State::Master);
    assert!(
        kd.log().contains("Entering BACKUP STATE"),
        "keepalived not in backup:\n{}",
        kd.log()
    );
    // tandem resigns: keepalived takes over after its Skew_Time.
    let t0 = Instant::now();
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    wait_for(Duration::from_secs(3), "keepalived to take the VIP", || {
        has_vip(&lab.b)
    });
    eprintln!(
        "tandem → keepalived handover (priority 0): {:?} (polled `ip addr`)",
        t0.elapsed()
    );
    // tandem (200) returns and preempts keepalived (100): it must decode keepalived's adverts.
    let t1 = Instant::now();
    let ha = spawn_in(&lab.a, cfg(), &ra);
    wait_for(
        Duration::from_secs(3),
        "tandem to preempt keepalived",
        || state(&ha) == State::Master && !has_vip(&lab.b),
    );
    eprintln!("tandem preempts keepalived: {:?}", t1.elapsed());
    let status = ha.status();
    assert!(status.counters.adverts_received > 0, "{status:?}");
    assert_eq!(status.discards.total(), 0, "{:?}", status.discards);
    // ...and keepalived settles as backup again.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has_vip(&lab.b), "{}", kd.log());
    assert_eq!(state(&ha), State::Master);
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
    kd.stop();
}

#[test]
fn tandem_backup_follows_keepalived_master_and_takes_over() {
    let _serial = serial();
    require_keepalived();
    let lab = Lab::new("vr", "km");
    let mut kd = keepalived(&lab.b, 200);
    wait_for(Duration::from_secs(5), "keepalived master", || {
        has_vip(&lab.b)
    });
    let ra = Recorder::default();
    let ha = spawn_in(
        &lab.a,
        config(
            IpAddr::V4(A4),
            IpAddr::V4(VIP4),
            100,
            lab.ifindex(&lab.a, "eth0"),
        ),
        &ra,
    );
    wait_for(
        Duration::from_secs(3),
        "tandem backup under keepalived",
        || state(&ha) == State::Backup && ha.status().master_address == Some(IpAddr::V4(B4)),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let status = ha.status();
    assert_eq!(status.state, State::Backup, "{status:?}\n{}", kd.log());
    assert!(status.counters.adverts_received >= 5, "{status:?}");
    assert_eq!(status.discards.total(), 0, "{:?}", status.discards);
    assert!(ra.kinds().iter().all(|c| *c == Call::Release));
    let t0 = Instant::now();
    kd.stop(); // SIGTERM: keepalived resigns with priority 0
    wait_for(Duration::from_secs(3), "tandem to take over", || {
        ra.first_after(Call::Acquire, t0).is_some()
    });
    let handover = ra.first_after(Call::Acquire, t0).unwrap_or(t0) - t0;
    eprintln!("keepalived → tandem handover (SIGTERM, priority 0): {handover:?}");
    assert_eq!(
        ha.status().counters.priority_zero_received,
        1,
        "{}",
        kd.log()
    );
    assert!(handover < Duration::from_secs(1), "{handover:?}");
    ha.shutdown().unwrap_or_else(|e| panic!("{e}"));
}
