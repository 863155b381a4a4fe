//! VRRP between two real tandem processes in a network-namespace lab: election, failover on
//! SIGKILL, `vip-cleanup` after a crash, preemption, the priority-0 handover on SIGTERM, and
//! tracking (`track_interfaces` into FAULT and back, `track_pools` lowering the priority).
//! Every wait is bounded; the lab removes what it made.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::{ip_cmd, Lab};
use common::vrrp::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_elect_fail_over_clean_up_and_hand_over() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-pair");
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let n0 = start(&lab, &dir, 0, 150, true);
    let n1 = start(&lab, &dir, 1, 100, true);
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    lab.wait_listening(n1.proc, a1, Duration::from_secs(10))
        .await;

    // Election: the higher priority holds the VIP, the other is backup without it.
    eventually("node 0 master", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    assert_eq!(state(a1).await.as_deref(), Some("backup"));
    until("VIP on node 0", Duration::from_secs(2), || has_vip(&lab, 0)).await;
    assert!(!has_vip(&lab, 1), "the backup must not hold the VIP");
    assert_eq!(resolved_mac(&lab, vip(&lab)), Some(mac_of(&lab, 0)));

    // SIGKILL the master: the backup takes over within Master_Down_Interval (3 × 100 ms +
    // skew 61 ms), plus slack for a loaded CI machine.
    lab.signal(n0.proc, libc::SIGKILL);
    let took = until("node 1 takes the VIP", Duration::from_secs(3), || {
        has_vip(&lab, 1)
    })
    .await;
    eprintln!("failover after SIGKILL: VIP on the backup after {took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    // A killed process removed nothing: the VIP is on both nodes, as keepalived leaves it...
    assert!(has_vip(&lab, 0), "expected the crashed node's stale VIP");
    // ...until `tandem vip-cleanup` (systemd's ExecStopPost) runs.
    let mut cleanup = Command::new(tandem_bin());
    cleanup.args([
        "vip-cleanup",
        "--config",
        n0.config.to_str().expect("utf-8"),
    ]);
    let c = lab.spawn_in(0, &cleanup);
    until("vip-cleanup to finish", Duration::from_secs(5), || {
        !lab.running(c)
    })
    .await;
    assert!(
        !has_vip(&lab, 0),
        "vip-cleanup left the VIP: {}",
        lab.log(c)
    );
    assert!(has_vip(&lab, 1));
    assert_eq!(
        resolved_mac(&lab, vip(&lab)),
        Some(mac_of(&lab, 1)),
        "only the new master may answer ARP for the VIP"
    );
    // The new master's service, bound to the VIP before it held it, answers on it.
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-m",
        "2",
        &format!("http://{}:8080/", vip(&lab)),
    ])
    .await;
    assert_eq!(
        out.text(),
        "502",
        "tandem on the new master should answer (its backend is closed): {}",
        out.stderr
    );

    // Node 0 comes back and preempts (higher priority, preempt on).
    let n0 = start(&lab, &dir, 0, 150, true);
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    until("node 0 preempts", Duration::from_secs(5), || {
        has_vip(&lab, 0) && !has_vip(&lab, 1)
    })
    .await;
    assert_eq!(state(a1).await.as_deref(), Some("backup"));

    // SIGTERM: priority 0, so the backup takes over after about Skew_Time (61 ms), not
    // Master_Down_Interval.
    lab.signal(n0.proc, libc::SIGTERM);
    let took = until("handover on SIGTERM", Duration::from_secs(3), || {
        has_vip(&lab, 1)
    })
    .await;
    eprintln!("handover after SIGTERM: VIP on the backup after {took:?}");
    assert!(
        took < Duration::from_millis(350),
        "{took:?}: slower than a priority-0 handover"
    );
    until(
        "node 0 exits and released the VIP",
        Duration::from_secs(10),
        || !lab.running(n0.proc) && !has_vip(&lab, 0),
    )
    .await;
    lab.signal(n1.proc, libc::SIGTERM);
}

/// `track_interfaces` without weight: the tracked link going down puts node 0 in FAULT (it
/// releases the VIP after a priority-0 advert, so node 1 takes over after about Skew_Time);
/// the link coming back ends FAULT and node 0 preempts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_interface_fault_and_recovery() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-track-if");
    let ns0 = lab.netns(0).to_string();
    // A veth pair (this kernel may lack `dummy`), both ends up so trk0 has carrier; it goes
    // with the namespace.
    ip_cmd(&[
        "-n", &ns0, "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
    ]);
    ip_cmd(&["-n", &ns0, "link", "set", "trk1", "up"]);
    ip_cmd(&["-n", &ns0, "link", "set", "trk0", "up"]);
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let c0 = node_config_with(
        &lab,
        0,
        150,
        true,
        r#"track_interfaces = ["trk0"]"#,
        r#"{ kind = "none" }"#,
    );
    let n0 = start_with(&lab, &dir, 0, &c0);
    let n1 = start(&lab, &dir, 1, 100, true);
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    lab.wait_listening(n1.proc, a1, Duration::from_secs(10))
        .await;
    eventually("node 0 master", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    until("VIP on node 0 only", Duration::from_secs(2), || {
        has_vip(&lab, 0) && !has_vip(&lab, 1)
    })
    .await;
    let v = instance(a0).await.expect("node 0 API");
    assert_eq!(v["fault"], false, "{v}");
    assert_eq!(
        v["tracked"],
        serde_json::json!([{ "kind": "interface", "name": "trk0", "weight": null, "ok": true, "reason": null }])
    );

    ip_cmd(&["-n", &ns0, "link", "set", "trk0", "down"]);
    let took = until("node 1 takes the VIP", Duration::from_secs(3), || {
        has_vip(&lab, 1) && !has_vip(&lab, 0)
    })
    .await;
    eprintln!("tracked interface down: VIP on node 1 after {took:?}");
    assert!(
        took < Duration::from_millis(800),
        "{took:?}: slower than a 100 ms poll plus a priority-0 handover"
    );
    let v = instance(a0).await.expect("node 0 API");
    assert_eq!(v["state"], "fault", "{v}");
    assert_eq!(v["fault"], true, "{v}");
    assert_eq!(v["tracked"][0]["ok"], false, "{v}");
    assert_eq!(
        v["tracked"][0]["reason"], "link is administratively down",
        "{v}"
    );
    assert_eq!(state(a1).await.as_deref(), Some("master"));

    ip_cmd(&["-n", &ns0, "link", "set", "trk0", "up"]);
    until("node 0 preempts", Duration::from_secs(5), || {
        has_vip(&lab, 0) && !has_vip(&lab, 1)
    })
    .await;
    let v = instance(a0).await.expect("node 0 API");
    assert_eq!(v["state"], "master", "{v}");
    assert_eq!(v["fault"], false, "{v}");
    assert_eq!(v["tracked"][0]["ok"], true, "{v}");
    let log = lab.log(n0.proc);
    assert!(
        log.contains("tracked interface `trk0` failed") && log.contains("entering FAULT"),
        "{log}"
    );
    lab.signal(n0.proc, libc::SIGTERM);
    lab.signal(n1.proc, libc::SIGTERM);
}

/// `track_pools` with a weight: node 0 (150) tracks pool `p` with weight -60; its only
/// backend is a closed port, so once the tcp check marks it down the pool has nothing
/// eligible, node 0 advertises 90 and node 1 (100, preempt) takes the VIP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_pool_weight_lowers_priority() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-track-pool");
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let c0 = node_config_with(
        &lab,
        0,
        150,
        true,
        r#"track_pools = [{ name = "p", weight = -60 }]"#,
        r#"{ kind = "tcp", interval = "100ms", fall = 1 }"#,
    );
    let n0 = start_with(&lab, &dir, 0, &c0);
    let n1 = start(&lab, &dir, 1, 100, true);
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    lab.wait_listening(n1.proc, a1, Duration::from_secs(10))
        .await;

    let v = eventually("node 0 at priority 90", Duration::from_secs(5), || async {
        instance(a0)
            .await
            .filter(|v| v["priority"] == 90 && v["state"] == "backup")
    })
    .await;
    assert_eq!(v["configured_priority"], 150, "{v}");
    assert_eq!(v["fault"], false, "{v}");
    assert_eq!(v["tracked"][0]["kind"], "pool", "{v}");
    assert_eq!(v["tracked"][0]["name"], "p", "{v}");
    assert_eq!(v["tracked"][0]["weight"], -60, "{v}");
    assert_eq!(v["tracked"][0]["ok"], false, "{v}");
    eventually("node 1 master", Duration::from_secs(5), || async {
        (state(a1).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    until("VIP on node 1 only", Duration::from_secs(3), || {
        has_vip(&lab, 1) && !has_vip(&lab, 0)
    })
    .await;
    let log = lab.log(n0.proc);
    assert!(
        log.contains("tracked pool `p` failed") && log.contains("priority changed by tracking"),
        "{log}"
    );
    lab.signal(n0.proc, libc::SIGTERM);
    lab.signal(n1.proc, libc::SIGTERM);
}
