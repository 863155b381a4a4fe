//! VRRP between a real `tandem run` and a real keepalived (`/usr/sbin/keepalived`, Debian's
//! package), each in its own namespace of a [`Lab`] on one bridge: VRRPv2 over IPv4, VRRPv3
//! over IPv4 (keepalived's pseudo-header checksum, tandem's default) and VRRPv3 over IPv6
//! (adverts from the link-local addresses to ff02::12), each with tandem as the preferred
//! master and with keepalived as the preferred master.
//!
//! Every case runs the same script ([`interop`]):
//!
//! 1. The *lower*-priority side starts first and becomes master alone (it holds the VIP).
//! 2. The higher-priority side starts and preempts it: the roles end as the priorities say,
//!    whichever side started first. That already needs each side to decode the other's
//!    adverts: a side that discarded them would stay (or become) master next to the other.
//! 3. Nothing moves for a while (at least five adverts): tandem's state and transition
//!    counters (`GET /api/v1/vrrp`) stay put, the VIP stays on the master only, and
//!    keepalived's log shows no further transition.
//! 4. The master is SIGKILLed (keepalived: its VRRP child, then its parent, by PID, and `-R`
//!    so nothing respawns): a crash, no priority-0 advert. The backup takes the VIP after
//!    its Master_Down_Interval: not before `MDI - advert_interval` (the last advert left at
//!    most one interval before the kill) and not later than `MDI + advert_interval + 300 ms`
//!    (polling and a loaded CI machine).
//! 5. Neither side complained about the other's packets: tandem's `discarded` counters are
//!    empty and keepalived's log has no checksum/"invalid"/"bad"/TTL/mismatch line.
//!
//! keepalived's state is read from the VIP on its interface and from its log ("Entering
//! MASTER STATE" / "Entering BACKUP STATE"); tandem's from its admin API.
//!
//! The `tie_*` tests check the tie-break of RFC 5798 6.4.3 with equal priorities: two
//! masters at once (their bridge ports isolated from each other, links up) that then hear
//! each other settle on the one with the larger primary address (host 1: .12 > .11, and
//! fe80::c > fe80::b), whichever implementation each one is: tandem against tandem, and
//! tandem against keepalived with each on the winning side.
//!
//! Two tests guard bugs this suite found (both fixed):
//! `tandem_master_reannounces_on_a_lower_priority_advert` (a master re-announces its VIPs
//! when a lower-priority node claims master after a split brain, as keepalived does) and
//! `v2_interval_mismatch_is_reported` (state-machine drops are in the admin API).

mod common;

use std::time::{Duration, Instant};

use common::netns::Lab;
use common::vrrp::*;
use common::*;

const HIGH: u8 = 150;
const LOW: u8 = 100;
/// Host 0 runs tandem, host 1 keepalived.
const TANDEM: usize = 0;
const KEEPALIVED: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preferred {
    Tandem,
    Keepalived,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_tandem_master_keepalived_backup() {
    interop(Flavour::V2, Preferred::Tandem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_keepalived_master_tandem_backup() {
    interop(Flavour::V2, Preferred::Keepalived).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_ipv4_tandem_master_keepalived_backup() {
    interop(Flavour::V3Ipv4, Preferred::Tandem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_ipv4_keepalived_master_tandem_backup() {
    interop(Flavour::V3Ipv4, Preferred::Keepalived).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_ipv6_tandem_master_keepalived_backup() {
    interop(Flavour::V3Ipv6, Preferred::Tandem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_ipv6_keepalived_master_tandem_backup() {
    interop(Flavour::V3Ipv6, Preferred::Keepalived).await;
}

/// How many times keepalived logged entering `state` ("MASTER", "BACKUP").
fn ka_entered(ka: &Keepalived, lab: &Lab, state: &str) -> usize {
    let needle = format!("Entering {state} STATE");
    ka.log(lab).lines().filter(|l| l.contains(&needle)).count()
}

async fn tandem_instance(lab: &Lab, node: &Node) -> serde_json::Value {
    let admin = lab.host_addr(TANDEM, 9900);
    let v = instance(admin).await;
    v.unwrap_or_else(|| {
        panic!(
            "tandem's admin API at {admin} did not answer; tandem log:\n{}",
            lab.log(node.proc)
        )
    })
}

fn assert_no_complaints(lab: &Lab, ka: &Keepalived, v: &serde_json::Value, when: &str) {
    assert_eq!(
        v["discarded"],
        serde_json::json!({}),
        "{when}: tandem discarded packets: {v}"
    );
    let complaints = ka.complaints(lab);
    assert!(
        complaints.is_empty(),
        "{when}: keepalived complained:\n{}\n---- full keepalived log ----\n{}",
        complaints.join("\n"),
        ka.log(lab)
    );
}

async fn interop(flavour: Flavour, preferred: Preferred) {
    let t_start = Instant::now();
    let lab = Lab::new(2);
    if flavour.ipv6() {
        lab.enable_ipv6();
    }
    let dir = TempDir::new("vrrp-interop");
    let (vip, len) = flavour.vip(&lab);
    let has = |i: usize| host_has(&lab, i, vip, len);
    let admin = lab.host_addr(TANDEM, 9900);
    let interval = flavour.advert_interval();
    let (tandem_prio, ka_prio) = match preferred {
        Preferred::Tandem => (HIGH, LOW),
        Preferred::Keepalived => (LOW, HIGH),
    };
    let (master, backup) = match preferred {
        Preferred::Tandem => (TANDEM, KEEPALIVED),
        Preferred::Keepalived => (KEEPALIVED, TANDEM),
    };
    // Starting alone, a node becomes master after its own Master_Down_Interval; preempting a
    // lower-priority master takes the preferring node's Master_Down_Interval again.
    let settle = flavour.master_down_interval(LOW) * 2 + Duration::from_secs(3);
    let tandem_config = flavour_config(&lab, TANDEM, flavour, tandem_prio, "");

    // 1. The lower-priority side first, alone: it becomes master.
    let (node, ka) = match preferred {
        Preferred::Tandem => {
            let ka = Keepalived::start(
                &lab,
                TempDir::new("keepalived"),
                KEEPALIVED,
                flavour,
                ka_prio,
            );
            until("keepalived (alone) takes the VIP", settle, || {
                has(KEEPALIVED)
            })
            .await;
            assert_eq!(ka_entered(&ka, &lab, "MASTER"), 1, "{}", ka.log(&lab));
            let node = start_with(&lab, &dir, TANDEM, &tandem_config);
            lab.wait_listening(node.proc, admin, Duration::from_secs(10))
                .await;
            (node, ka)
        }
        Preferred::Keepalived => {
            let node = start_with(&lab, &dir, TANDEM, &tandem_config);
            lab.wait_listening(node.proc, admin, Duration::from_secs(10))
                .await;
            until("tandem (alone) takes the VIP", settle, || has(TANDEM)).await;
            let ka = Keepalived::start(
                &lab,
                TempDir::new("keepalived"),
                KEEPALIVED,
                flavour,
                ka_prio,
            );
            (node, ka)
        }
    };

    // 2. The higher-priority side preempts: roles as the priorities say.
    let took = until("the preferred node takes the VIP", settle, || {
        has(master) && !has(backup)
    })
    .await;
    eprintln!("{flavour:?}: {preferred:?} (priority {HIGH}) preempted after {took:?}");
    let want_state = if master == TANDEM { "master" } else { "backup" };
    let v = eventually(
        "tandem's state as its priority says",
        Duration::from_secs(3),
        || async { instance(admin).await.filter(|v| v["state"] == want_state) },
    )
    .await;
    assert_eq!(v["version"], flavour.version_number(), "{v}");
    assert_eq!(v["priority"], tandem_prio, "{v}");
    if master == TANDEM {
        assert_eq!(
            v["master_address"],
            flavour.primary(&lab, TANDEM).to_string(),
            "{v}"
        );
        assert!(
            ka_entered(&ka, &lab, "BACKUP") >= 2,
            "keepalived should have gone back to BACKUP:\n{}",
            ka.log(&lab)
        );
    } else {
        let ka_primary = flavour.primary(&lab, KEEPALIVED);
        assert_eq!(v["master_address"], ka_primary.to_string(), "{v}");
        assert_eq!(ka_entered(&ka, &lab, "MASTER"), 1, "{}", ka.log(&lab));
    }

    // 3. Stable: at least five adverts, and 1.5 s, with nothing moving.
    let before = tandem_instance(&lab, &node).await;
    let ka_masters = ka_entered(&ka, &lab, "MASTER");
    let hold = (interval * 5).max(Duration::from_millis(1500));
    let t = Instant::now();
    while t.elapsed() < hold {
        assert!(
            has(master) && !has(backup),
            "the VIP moved while both sides were up; keepalived log:\n{}\ntandem log:\n{}",
            ka.log(&lab),
            lab.log(node.proc)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = tandem_instance(&lab, &node).await;
    assert_eq!(after["state"], before["state"], "{before}\n{after}");
    for k in ["became_master", "became_backup"] {
        assert_eq!(
            after[k], before[k],
            "tandem changed state: {before}\n{after}"
        );
    }
    assert_eq!(
        ka_entered(&ka, &lab, "MASTER"),
        ka_masters,
        "{}",
        ka.log(&lab)
    );
    let adverts = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let expected = (hold.as_millis() / interval.as_millis()) as u64;
    if master == TANDEM {
        let sent = adverts(&after, "adverts_sent") - adverts(&before, "adverts_sent");
        assert!(sent + 2 >= expected, "{sent} adverts sent in {hold:?}");
    } else {
        let got = adverts(&after, "adverts_received") - adverts(&before, "adverts_received");
        assert!(
            got + 2 >= expected,
            "{got} of keepalived's adverts accepted in {hold:?}: {after}"
        );
    }
    assert_no_complaints(&lab, &ka, &after, "with both sides up");

    // 4. SIGKILL the master: the backup takes over after its Master_Down_Interval.
    let mdi = flavour.master_down_interval(LOW);
    let t0 = Instant::now();
    if master == TANDEM {
        lab.signal(node.proc, libc::SIGKILL);
    } else {
        ka.kill(&lab);
    }
    until(
        "the backup takes the VIP",
        mdi + Duration::from_secs(5),
        || has(backup),
    )
    .await;
    let took = t0.elapsed();
    eprintln!(
        "{flavour:?}: failover {} → {} after SIGKILL: {took:?} (Master_Down_Interval {mdi:?})",
        if master == TANDEM {
            "tandem"
        } else {
            "keepalived"
        },
        if backup == TANDEM {
            "tandem"
        } else {
            "keepalived"
        },
    );
    assert!(
        took + interval + Duration::from_millis(20) >= mdi,
        "{took:?}: earlier than Master_Down_Interval {mdi:?} allows"
    );
    assert!(
        took <= mdi + interval + Duration::from_millis(300),
        "{took:?}: later than Master_Down_Interval {mdi:?} + one interval + 300 ms"
    );
    if backup == TANDEM {
        let v = eventually("tandem master", Duration::from_secs(2), || async {
            instance(admin).await.filter(|v| v["state"] == "master")
        })
        .await;
        let became = after["became_master"].as_u64().unwrap_or(0) + 1;
        assert_eq!(v["became_master"], became, "{v}");
        assert_eq!(
            v["master_address"],
            flavour.primary(&lab, TANDEM).to_string(),
            "{v}"
        );
        // Stays master (no one else is left).
        tokio::time::sleep(interval * 3).await;
        let v = tandem_instance(&lab, &node).await;
        assert_eq!(v["state"], "master", "{v}");
        assert_eq!(v["became_master"], became, "{v}");
        assert_no_complaints(&lab, &ka, &v, "after the failover");
    } else {
        until("keepalived logs MASTER", Duration::from_secs(2), || {
            ka_entered(&ka, &lab, "MASTER") > ka_masters
        })
        .await;
        tokio::time::sleep(interval * 3).await;
        assert!(has(KEEPALIVED), "{}", ka.log(&lab));
        assert_eq!(ka_entered(&ka, &lab, "MASTER"), ka_masters + 1);
        assert_no_complaints(&lab, &ka, &after, "after the failover");
    }
    eprintln!(
        "---- keepalived log ----\n{}---- end of keepalived log ----",
        ka.log(&lab)
    );
    eprintln!("{flavour:?} {preferred:?}: done in {:?}", t_start.elapsed());
    if backup == TANDEM {
        lab.signal(node.proc, libc::SIGTERM);
    }
    drop(ka);
}

// ---- equal priorities ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Tandem,
    Keepalived,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tie_v3_ipv4_tandem_pair_larger_address_wins() {
    tie(Flavour::V3Ipv4, [Side::Tandem, Side::Tandem]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tie_v3_ipv4_keepalived_with_larger_address_wins_over_tandem() {
    tie(Flavour::V3Ipv4, [Side::Tandem, Side::Keepalived]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tie_v3_ipv4_tandem_with_larger_address_wins_over_keepalived() {
    tie(Flavour::V3Ipv4, [Side::Keepalived, Side::Tandem]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tie_v3_ipv6_keepalived_with_larger_address_wins_over_tandem() {
    tie(Flavour::V3Ipv6, [Side::Tandem, Side::Keepalived]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tie_v3_ipv6_tandem_with_larger_address_wins_over_keepalived() {
    tie(Flavour::V3Ipv6, [Side::Keepalived, Side::Tandem]).await;
}

/// Hosts 0 and 1 run `sides`, both at priority 100; host 1 has the larger primary address.
async fn tie(flavour: Flavour, sides: [Side; 2]) {
    const PRIO: u8 = 100;
    let lab = Lab::new(2);
    if flavour.ipv6() {
        lab.enable_ipv6();
    }
    let dir = TempDir::new("vrrp-tie");
    let (vip, len) = flavour.vip(&lab);
    let has = |i: usize| host_has(&lab, i, vip, len);
    let interval = flavour.advert_interval();
    // Partitioned: each will be master.
    lab.isolate(0, true);
    lab.isolate(1, true);
    let mut nodes: Vec<Option<Node>> = Vec::new();
    let mut kas: Vec<Option<Keepalived>> = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        match side {
            Side::Tandem => {
                let node = start_with(&lab, &dir, i, &flavour_config(&lab, i, flavour, PRIO, ""));
                lab.wait_listening(node.proc, lab.host_addr(i, 9900), Duration::from_secs(10))
                    .await;
                nodes.push(Some(node));
                kas.push(None);
            }
            Side::Keepalived => {
                let ka = Keepalived::start(&lab, TempDir::new("keepalived"), i, flavour, PRIO);
                nodes.push(None);
                kas.push(Some(ka));
            }
        }
    }
    let logs = |lab: &Lab| -> String {
        let mut out = String::new();
        for i in 0..2 {
            let log = match (&nodes[i], &kas[i]) {
                (Some(n), _) => lab.log(n.proc),
                (_, Some(k)) => k.log(lab),
                _ => String::new(),
            };
            out.push_str(&format!("---- host {i} ({:?}) ----\n{log}", sides[i]));
        }
        out
    };
    let mdi = flavour.master_down_interval(PRIO);
    until(
        "both sides master while partitioned",
        mdi * 2 + Duration::from_secs(3),
        || has(0) && has(1),
    )
    .await;
    for (i, n) in nodes.iter().enumerate() {
        if n.is_some() {
            let v = instance(lab.host_addr(i, 9900)).await.expect("admin API");
            assert_eq!(v["state"], "master", "host {i}: {v}");
        }
    }

    // Heal the partition: the smaller address steps down at the first advert it hears.
    lab.isolate(0, false);
    lab.isolate(1, false);
    let took = until(
        "the smaller address to release the VIP",
        interval * 3 + Duration::from_secs(2),
        || has(1) && !has(0),
    )
    .await;
    eprintln!("{flavour:?} {sides:?}: equal priorities settled after {took:?}");
    assert!(
        took <= interval * 2 + Duration::from_millis(300),
        "{took:?}: the tie should be settled by the first adverts\n{}",
        logs(&lab)
    );
    // Stable, and as RFC 5798 6.4.3 says.
    let hold = (interval * 10).max(Duration::from_millis(1000));
    let t = Instant::now();
    while t.elapsed() < hold {
        assert!(has(1) && !has(0), "the VIP moved again\n{}", logs(&lab));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.is_some() {
            let v = instance(lab.host_addr(i, 9900)).await.expect("admin API");
            let want = if i == 1 { "master" } else { "backup" };
            assert_eq!(v["state"], want, "host {i}: {v}\n{}", logs(&lab));
            assert_eq!(v["discarded"], serde_json::json!({}), "host {i}: {v}");
            if i == 0 {
                assert_eq!(
                    v["master_address"],
                    flavour.primary(&lab, 1).to_string(),
                    "{v}"
                );
            }
        }
    }
    for (i, k) in kas.iter().enumerate() {
        if let Some(k) = k {
            let complaints = k.complaints(&lab);
            assert!(
                complaints.is_empty(),
                "keepalived complained: {complaints:?}\n{}",
                logs(&lab)
            );
            let log = k.log(&lab);
            if i == 0 {
                assert!(
                    log.contains("same priority 100 but higher IP address than ours"),
                    "{}",
                    logs(&lab)
                );
                assert_eq!(ka_entered(k, &lab, "BACKUP"), 2, "{}", logs(&lab));
            } else {
                assert_eq!(ka_entered(k, &lab, "MASTER"), 1, "{}", logs(&lab));
            }
        }
    }
    eprintln!("{}", logs(&lab));
    drop(kas);
}

// ---- a master that hears a lower priority takes its neighbours back -------------------

/// keepalived as the master: see [`lower_priority_advert_reannounces`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalived_master_reannounces_on_a_lower_priority_advert() {
    lower_priority_advert_reannounces(Side::Keepalived).await;
}

/// tandem as the master: see [`lower_priority_advert_reannounces`]. Fails today: a tandem
/// master drops a lower-priority advert silently (`Instance::master_advert` in
/// crates/tandem-vrrp/src/fsm.rs counts it in `adverts_discarded` and returns no action), so
/// it neither answers with an advert nor re-announces its VIPs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_master_reannounces_on_a_lower_priority_advert() {
    lower_priority_advert_reannounces(Side::Tandem).await;
}

/// The MAC host `i`'s neighbour table has for `ip` on eth0, if any.
fn neighbour_mac(lab: &Lab, i: usize, ip: std::net::IpAddr) -> Option<String> {
    let out = common::netns::ip_output(&[
        "-n",
        lab.netns(i),
        "neigh",
        "show",
        "to",
        &ip.to_string(),
        "dev",
        "eth0",
    ]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string)
}

/// **After a split brain the neighbours must follow the master back.** When two nodes were
/// both master (a partition, or adverts delayed past Master_Down_Interval), the lower one
/// announced the VIP with gratuitous ARPs, so the hosts on the segment now send to it. When
/// the two hear each other again the lower one steps down and releases the VIP; unless the
/// real master announces again, those hosts keep sending to a node that no longer has the
/// address until their neighbour entries time out (on Linux: STALE → DELAY 5 s → three
/// unicast probes: a client of the lab reached the VIP again 8.5 s after such a partition
/// healed, and a tandem pair that flapped once under load cost 128 requests that timed out
/// after 5 s, see tests/vrrp_load.rs).
///
/// keepalived's master answers a lower-priority advert with an advert of its own ("forcing
/// new election", unless `vrrp_lower_prio_no_advert`) and `garp_lower_prio_repeat`
/// gratuitous ARPs (default `garp_master_repeat`, 5), which fixes the neighbours whenever it
/// hears the other node before that node steps down. (keepalived's
/// `vrrp_higher_prio_send_advert`, off by default, makes the stepping-down node send that
/// advert on purpose; tandem has neither.)
///
/// The scenario, deterministic: host 0 (`master`, priority 150) is master alone; host 2's
/// neighbour entry for the VIP is set to host 1's MAC (what host 1's announcements would
/// have left); host 2 sends one valid priority-100 advert for the VRID with the same VIP.
/// Within a second, host 2 must resolve the VIP to host 0 again.
async fn lower_priority_advert_reannounces(master: Side) {
    let flavour = Flavour::V3Ipv4;
    let lab = Lab::new(3);
    let dir = TempDir::new("vrrp-reannounce");
    let (vip, len) = flavour.vip(&lab);
    let mut node = None;
    let mut ka = None;
    match master {
        Side::Tandem => {
            let n = start_with(&lab, &dir, 0, &flavour_config(&lab, 0, flavour, HIGH, ""));
            lab.wait_listening(n.proc, lab.host_addr(0, 9900), Duration::from_secs(10))
                .await;
            node = Some(n);
        }
        Side::Keepalived => {
            ka = Some(Keepalived::start(
                &lab,
                TempDir::new("keepalived"),
                0,
                flavour,
                HIGH,
            ));
        }
    }
    let log0 = |lab: &Lab| match (&node, &ka) {
        (Some(n), _) => lab.log(n.proc),
        (_, Some(k)) => k.log(lab),
        _ => String::new(),
    };
    until("host 0 master", Duration::from_secs(5), || {
        host_has(&lab, 0, vip, len)
    })
    .await;
    // Let the startup announcements pass (garp_master_delay is 0: one burst).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mac0, mac1) = (mac_of(&lab, 0), mac_of(&lab, 1));
    common::netns::ip_cmd(&[
        "-n",
        lab.netns(2),
        "neigh",
        "replace",
        &vip.to_string(),
        "lladdr",
        &mac1,
        "dev",
        "eth0",
        "nud",
        "stale",
    ]);
    assert_eq!(neighbour_mac(&lab, 2, vip), Some(mac1.clone()));

    let host2 = match lab.host_ip(2) {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => unreachable!("IPv4"),
    };
    let advert = tandem_vrrp::Advert {
        version: flavour.version(),
        vrid: 51,
        priority: LOW,
        interval: flavour.centis(),
        addresses: vec![vip],
    };
    let mut bytes = Vec::new();
    tandem_vrrp::packet::encode(
        &advert,
        lab.host_ip(2),
        std::net::IpAddr::V4(tandem_vrrp::packet::MULTICAST_V4),
        tandem_vrrp::packet::ChecksumMode::Keepalived,
        &mut bytes,
    )
    .expect("encode");
    let t0 = Instant::now();
    send_raw_vrrp_v4(&lab, 2, host2, 255, vec![bytes]);
    let back = tokio::time::timeout(Duration::from_secs(1), async {
        while neighbour_mac(&lab, 2, vip).as_deref() != Some(mac0.as_str()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        back.is_ok(),
        "{master:?} master: 1 s after a lower-priority advert, host 2 still resolves the VIP \
         to {:?} (host 1 = {mac1}, host 0 = {mac0})\n---- host 0 log ----\n{}",
        neighbour_mac(&lab, 2, vip),
        log0(&lab)
    );
    eprintln!(
        "{master:?} master: host 2 resolves the VIP to host 0 again {:?} after the advert",
        t0.elapsed()
    );
    assert!(host_has(&lab, 0, vip, len));
    if let Some(k) = &ka {
        assert!(
            k.log(&lab).contains("forcing new election"),
            "{}",
            k.log(&lab)
        );
    }
    if let Some(n) = &node {
        let v = instance(lab.host_addr(0, 9900)).await.expect("admin API");
        assert_eq!(v["state"], "master", "{v}");
        lab.signal(n.proc, libc::SIGTERM);
    }
    drop(ka);
}

// ---- a misconfigured peer must show ------------------------------------------------------

/// **VRRPv2 with different advert intervals must be visible in the API.** RFC 3768 7.1: a
/// v2 advert whose Adver Int differs from ours MUST be discarded, and tandem does (its state
/// machine counts it in `Counters::dropped.interval`). But `GET /api/v1/vrrp` shows only the
/// codec's and the socket's discards (`admin_source` in crates/tandem/src/vrrp.rs), so a
/// tandem that drops every advert of its peer, and so is master next to it, reports
/// `discarded: {}`, while keepalived logs "advertisement interval mismatch" for each advert.
/// Here tandem (1 s, priority 100) runs next to keepalived (2 s, priority 150); the test
/// asserts what an operator needs: both are master (the split brain this causes) and
/// tandem's API names a reason for dropping keepalived's adverts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_interval_mismatch_is_reported() {
    let flavour = Flavour::V2;
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-v2-interval");
    let (vip, len) = flavour.vip(&lab);
    let ka = Keepalived::start_with(
        &lab,
        TempDir::new("keepalived"),
        KEEPALIVED,
        flavour,
        HIGH,
        "2",
    );
    until("keepalived master", Duration::from_secs(10), || {
        host_has(&lab, KEEPALIVED, vip, len)
    })
    .await;
    let node = start_with(
        &lab,
        &dir,
        TANDEM,
        &flavour_config(&lab, TANDEM, flavour, LOW, ""),
    );
    let admin = lab.host_addr(TANDEM, 9900);
    lab.wait_listening(node.proc, admin, Duration::from_secs(10))
        .await;
    // tandem hears keepalived's adverts (every 2 s) and drops them all: it becomes master
    // after its Master_Down_Interval, next to keepalived.
    until("tandem takes the VIP too", Duration::from_secs(8), || {
        host_has(&lab, TANDEM, vip, len)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = instance(admin).await.expect("admin API");
    eprintln!("tandem: {v}\n---- keepalived ----\n{}", ka.log(&lab));
    assert_eq!(v["state"], "master", "{v}");
    assert!(host_has(&lab, KEEPALIVED, vip, len), "{}", ka.log(&lab));
    assert!(
        ka.log(&lab).contains("advertisement interval mismatch"),
        "{}",
        ka.log(&lab)
    );
    assert_eq!(v["adverts_received"], 0, "{v}");
    assert!(
        v["discarded"]["interval_mismatch"].as_u64() >= Some(1),
        "tandem must say why it drops every advert of its peer: {v}"
    );
    lab.signal(node.proc, libc::SIGTERM);
}

/// VRRPv2 simple-text authentication against keepalived's `auth_type PASS`: with the same
/// password tandem follows keepalived as backup without a discard and takes over when it is
/// killed; with another password every advert is dropped as `bad_password` (and tandem, not
/// hearing a master, takes the VIP: what a password mismatch means on the wire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_password_interoperates_with_keepalived_auth_pass() {
    let flavour = Flavour::V2;
    for (ours, matching) in [("s3cret", true), ("other", false)] {
        let lab = Lab::new(2);
        let dir = TempDir::new("vrrp-v2-pass");
        let (vip, len) = flavour.vip(&lab);
        let ka = Keepalived::start_configured(
            &lab,
            TempDir::new("keepalived"),
            KEEPALIVED,
            flavour,
            HIGH,
            flavour.keepalived_advert_int(),
            "  authentication {\n    auth_type PASS\n    auth_pass s3cret\n  }",
        );
        until("keepalived master", Duration::from_secs(10), || {
            host_has(&lab, KEEPALIVED, vip, len)
        })
        .await;
        let node = start_with(
            &lab,
            &dir,
            TANDEM,
            &flavour_config(
                &lab,
                TANDEM,
                flavour,
                LOW,
                &format!("password = \"{ours}\""),
            ),
        );
        let admin = lab.host_addr(TANDEM, 9900);
        lab.wait_listening(node.proc, admin, Duration::from_secs(10))
            .await;
        if matching {
            // Two adverts heard, none dropped, still backup.
            let v = eventually("adverts accepted", Duration::from_secs(6), || async {
                instance(admin)
                    .await
                    .filter(|v| v["adverts_received"].as_u64() >= Some(2))
            })
            .await;
            assert_eq!(v["state"], "backup", "{v}");
            assert_eq!(v["discarded"], serde_json::json!({}), "{v}");
            assert!(ka.complaints(&lab).is_empty(), "{:?}", ka.complaints(&lab));
            ka.kill(&lab);
            until("tandem takes over", Duration::from_secs(6), || {
                host_has(&lab, TANDEM, vip, len)
            })
            .await;
        } else {
            let v = eventually("adverts dropped", Duration::from_secs(6), || async {
                instance(admin)
                    .await
                    .filter(|v| v["discarded"]["bad_password"].as_u64() >= Some(2))
            })
            .await;
            assert_eq!(v["adverts_received"], 0, "{v}");
        }
        lab.signal(node.proc, libc::SIGTERM);
    }
}
