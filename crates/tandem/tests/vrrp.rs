//! VRRP between two real tandem processes in a network-namespace lab: election, failover on
//! SIGKILL, `vip-cleanup` after a crash, preemption, the priority-0 handover on SIGTERM, and
//! tracking (`track_interfaces` into FAULT and back, `track_pools` lowering the priority,
//! `track_scripts`, `quorum`) and `notify` (serialized, in order, recorded as events).
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
    let (n0, n1) = pair(
        &lab,
        &dir,
        &node_config(&lab, 0, 150, true),
        &node_config(&lab, 1, 100, true),
    )
    .await;

    // Election: the higher priority holds the VIP, the other is backup without it.
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
    let (n0, n1) = pair(&lab, &dir, &c0, &node_config(&lab, 1, 100, true)).await;
    until("VIP on node 0 only", Duration::from_secs(2), || {
        has_vip(&lab, 0) && !has_vip(&lab, 1)
    })
    .await;
    let v = instance(a0).await.expect("node 0 API");
    assert_eq!(v["fault"], false, "{v}");
    assert_eq!(
        v["tracked"],
        serde_json::json!([
            { "kind": "interface", "name": "trk0", "weight": null, "ok": true, "reason": null },
            // Its own interface, tracked implicitly.
            { "kind": "interface", "name": "eth0", "weight": null, "ok": true, "reason": null },
        ])
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

/// A notify script that logs its start and end (with its arguments and the previous state
/// from the environment) and takes 300 ms in between, so two runs at once would interleave.
fn notify_script(dir: &TempDir, log: &std::path::Path) -> std::path::PathBuf {
    dir.write(
        "notify.sh",
        &format!(
            "echo \"start $* prev=$TANDEM_VRRP_PREVIOUS_STATE\" >> {log}\nsleep 0.3\necho \"end $*\" >> {log}\n",
            log = log.display()
        ),
    )
}

/// `notify`: node 0 (150) comes up alone (BACKUP, then MASTER), node 1 (200) then preempts it
/// (BACKUP) while node 0's master commands are still running, and SIGTERM stops it (STOP).
/// Every command runs to its end before the next starts, in transition order, each with
/// keepalived's arguments, and every transition is an event in the admin API with its
/// commands' results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_commands_run_one_at_a_time_in_order() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-notify");
    let log = dir.path().join("notify.log");
    let script = notify_script(&dir, &log);
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let s = script.display();
    let c0 = node_config_with(
        &lab,
        0,
        150,
        true,
        &format!(
            r#"notify = {{ master = ["/bin/sh", "{s}", "own"], any = ["/bin/sh", "{s}", "any"], timeout = "5s" }}"#
        ),
        r#"{ kind = "none" }"#,
    );
    let n0 = start_with(&lab, &dir, 0, &c0);
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    eventually("node 0 master", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    // Node 1 preempts while node 0's `master` and `any` commands (300 ms each) still run.
    let n1 = start(&lab, &dir, 1, 200, true);
    lab.wait_listening(n1.proc, a1, Duration::from_secs(10))
        .await;
    eventually("node 0 backup again", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("backup")).then_some(())
    })
    .await;
    let v = eventually(
        "node 0's events with every command done",
        Duration::from_secs(10),
        || async {
            instance(a0).await.filter(|v| {
                v["events"].as_array().is_some_and(|e| {
                    e.len() == 3
                        && e.iter().all(|e| {
                            e["notify"]
                                .as_array()
                                .is_some_and(|n| n.iter().all(|r| r["ok"] == true))
                        })
                })
            })
        },
    )
    .await;
    let events = v["events"].as_array().expect("events");
    let path: Vec<(String, String, Vec<String>)> = events
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or_default().to_string(),
                e["to"].as_str().unwrap_or_default().to_string(),
                e["notify"]
                    .as_array()
                    .map(|n| {
                        n.iter()
                            .map(|r| r["command"].as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        path,
        [
            (s("initialize"), s("backup"), vec![s("any")]),
            (s("backup"), s("master"), vec![s("master"), s("any")]),
            (s("master"), s("backup"), vec![s("any")]),
        ],
        "{v}"
    );
    assert_eq!(events[1]["priority"], 150, "{v}");

    lab.signal(n0.proc, libc::SIGTERM);
    until("node 0 to exit", Duration::from_secs(10), || {
        !lab.running(n0.proc)
    })
    .await;
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .expect("notify log")
        .lines()
        .map(str::to_string)
        .collect();
    let want = [
        "start any INSTANCE web BACKUP 150 prev=INIT",
        "end any INSTANCE web BACKUP 150",
        "start own INSTANCE web MASTER 150 prev=BACKUP",
        "end own INSTANCE web MASTER 150",
        "start any INSTANCE web MASTER 150 prev=BACKUP",
        "end any INSTANCE web MASTER 150",
        "start any INSTANCE web BACKUP 150 prev=MASTER",
        "end any INSTANCE web BACKUP 150",
        // The stop command ran before the process exited.
        "start any INSTANCE web STOP 150 prev=BACKUP",
        "end any INSTANCE web STOP 150",
    ];
    assert_eq!(lines, want, "notify log:\n{}", lines.join("\n"));
    lab.signal(n1.proc, libc::SIGTERM);
}

/// `track_scripts`: node 0 (150) tracks a script with weight -100 that fails while a flag
/// file exists; node 1 (100) tracks one without weight (FAULT) on a second flag. Flag 0 →
/// node 0 advertises 50 and node 1 takes over; flag 1 as well → node 1 is in FAULT and node 0
/// (50) is master again; both removed → back to node 0 at 150 and node 1 backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_scripts_weight_and_fault() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-scripts");
    let flag0 = dir.path().join("flag0");
    let flag1 = dir.path().join("flag1");
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let script = |name: &str, flag: &std::path::Path, weight: &str| {
        format!(
            r#"track_scripts = ["{name}"]

[[vrrp_script]]
name = "{name}"
command = ["/bin/sh", "-c", "! test -e {flag}"]
interval = "100ms"
{weight}
"#,
            flag = flag.display()
        )
    };
    let c0 = node_config_with(
        &lab,
        0,
        150,
        true,
        &script("chk0", &flag0, "weight = -100"),
        r#"{ kind = "none" }"#,
    );
    let c1 = node_config_with(
        &lab,
        1,
        100,
        true,
        &script("chk1", &flag1, ""),
        r#"{ kind = "none" }"#,
    );
    let (n0, n1) = pair(&lab, &dir, &c0, &c1).await;
    until("VIP on node 0", Duration::from_secs(2), || has_vip(&lab, 0)).await;

    std::fs::write(&flag0, "").expect("flag0");
    let took = until("node 1 takes the VIP", Duration::from_secs(5), || {
        has_vip(&lab, 1) && !has_vip(&lab, 0)
    })
    .await;
    eprintln!("script failed (weight -100): VIP on node 1 after {took:?}");
    let v = instance(a0).await.expect("node 0 API");
    assert_eq!(v["priority"], 50, "{v}");
    assert_eq!(v["tracked"][0]["kind"], "script", "{v}");
    assert_eq!(v["tracked"][0]["ok"], false, "{v}");
    assert!(
        v["tracked"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("script `chk0`: exit 1")),
        "{v}"
    );

    std::fs::write(&flag1, "").expect("flag1");
    until(
        "node 0 (50) takes the VIP back",
        Duration::from_secs(5),
        || has_vip(&lab, 0) && !has_vip(&lab, 1),
    )
    .await;
    let v = eventually("node 1 in fault", Duration::from_secs(3), || async {
        instance(a1).await.filter(|v| v["state"] == "fault")
    })
    .await;
    assert_eq!(v["fault"], true, "{v}");

    std::fs::remove_file(&flag0).expect("flag0");
    std::fs::remove_file(&flag1).expect("flag1");
    eventually("node 1 backup again", Duration::from_secs(5), || async {
        instance(a1).await.filter(|v| v["state"] == "backup")
    })
    .await;
    let v = eventually("node 0 at 150", Duration::from_secs(3), || async {
        instance(a0).await.filter(|v| v["priority"] == 150)
    })
    .await;
    assert_eq!(v["state"], "master", "{v}");
    assert!(has_vip(&lab, 0) && !has_vip(&lab, 1));
    lab.signal(n0.proc, libc::SIGTERM);
    lab.signal(n1.proc, libc::SIGTERM);
}

/// `quorum`: both nodes need to reach a witness (host 2, by ICMP). A blackhole route on
/// node 0 (the master) to the witness loses it its quorum: it goes to FAULT and releases the
/// VIP, node 1 takes over. The route removed, node 0 regains quorum and preempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_releases_the_vip() {
    let lab = Lab::new(3);
    let dir = TempDir::new("vrrp-quorum");
    let witness = lab.host_ip(2);
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let quorum = format!(
        r#"quorum = {{ witnesses = ["{witness}"], interval = "100ms", timeout = "100ms", fall = 2, rise = 1 }}"#
    );
    let c0 = node_config_with(&lab, 0, 150, true, &quorum, r#"{ kind = "none" }"#);
    let c1 = node_config_with(&lab, 1, 100, true, &quorum, r#"{ kind = "none" }"#);
    let (n0, n1) = pair(&lab, &dir, &c0, &c1).await;
    let v = instance(a0).await.expect("node 0 API");
    let quorum_view = v["tracked"]
        .as_array()
        .and_then(|t| t.iter().find(|o| o["kind"] == "quorum").cloned())
        .expect("quorum in tracked");
    assert_eq!(quorum_view["ok"], true, "{v}");

    let ns0 = lab.netns(0).to_string();
    let route = format!("{witness}/32");
    ip_cmd(&["-n", &ns0, "route", "add", "blackhole", &route]);
    let took = until("node 1 takes the VIP", Duration::from_secs(5), || {
        has_vip(&lab, 1) && !has_vip(&lab, 0)
    })
    .await;
    eprintln!("quorum lost: VIP on node 1 after {took:?}");
    let v = instance(a0).await.expect("node 0 API");
    assert_eq!(v["state"], "fault", "{v}");
    let quorum_view = v["tracked"]
        .as_array()
        .and_then(|t| t.iter().find(|o| o["kind"] == "quorum").cloned())
        .expect("quorum in tracked");
    assert_eq!(quorum_view["ok"], false, "{v}");
    assert!(
        quorum_view["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("reaches 0 of 1 witness(es), needs 1")),
        "{v}"
    );
    assert_eq!(state(a1).await.as_deref(), Some("master"));

    ip_cmd(&["-n", &ns0, "route", "del", "blackhole", &route]);
    until("node 0 preempts", Duration::from_secs(5), || {
        has_vip(&lab, 0) && !has_vip(&lab, 1)
    })
    .await;
    let log = lab.log(n0.proc);
    assert!(log.contains("quorum witness lost"), "{log}");
    lab.signal(n0.proc, libc::SIGTERM);
    lab.signal(n1.proc, libc::SIGTERM);
}

/// Whether node `i` has the VIP on `dev`.
fn has_vip_on(lab: &Lab, i: usize, dev: &str) -> bool {
    common::netns::ip_output(&["-n", lab.netns(i), "-o", "-4", "addr", "show", "dev", dev])
        .contains(&format!(" {}/27 ", vip(lab)))
}

/// `use_vmac`: the VIP lives on `vrrp.51` with the virtual router MAC 00:00:5e:00:01:33, so
/// the lab resolves the VIP to that MAC on either node; a SIGKILLed master's copy of the
/// virtual MAC is gone after `vip-cleanup`, and a graceful stop removes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_vmac_keeps_the_vips_mac_across_failover() {
    const VMAC: &str = "00:00:5e:00:01:33";
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-vmac");
    let c0 = node_config_with(
        &lab,
        0,
        150,
        true,
        "use_vmac = true",
        r#"{ kind = "none" }"#,
    );
    let c1 = node_config_with(
        &lab,
        1,
        100,
        true,
        "use_vmac = true",
        r#"{ kind = "none" }"#,
    );
    let (n0, n1) = pair(&lab, &dir, &c0, &c1).await;
    until("VIP on node 0's vmac", Duration::from_secs(2), || {
        has_vip_on(&lab, 0, "vrrp.51")
    })
    .await;
    assert!(!has_vip(&lab, 0), "the VIP is on the vmac, not on eth0");
    assert_eq!(resolved_mac(&lab, vip(&lab)).as_deref(), Some(VMAC));

    lab.signal(n0.proc, libc::SIGKILL);
    let took = until("node 1 takes the VIP", Duration::from_secs(3), || {
        has_vip_on(&lab, 1, "vrrp.51")
    })
    .await;
    eprintln!("vmac failover after SIGKILL: {took:?}");
    // The stale copy on the dead node goes with vip-cleanup.
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
    let links = common::netns::ip_output(&["-n", lab.netns(0), "-o", "link", "show"]);
    assert!(!links.contains("vrrp.51"), "{links}");
    assert_eq!(resolved_mac(&lab, vip(&lab)).as_deref(), Some(VMAC));

    lab.signal(n1.proc, libc::SIGTERM);
    until("node 1 to exit", Duration::from_secs(10), || {
        !lab.running(n1.proc)
    })
    .await;
    let links = common::netns::ip_output(&["-n", lab.netns(1), "-o", "link", "show"]);
    assert!(
        !links.contains("vrrp.51"),
        "a graceful stop removes the vmac: {links}"
    );
}

/// A node of the persistence-across-failover lab: VRRP as usual, a `[cluster]` with the other
/// node, and a service on the VIP whose pool is three real backends on host 2, with source_ip
/// persistence.
fn persistent_node_config(lab: &Lab, i: usize, priority: u8) -> String {
    let other = 1 - i;
    let backends: Vec<String> = (0..3)
        .map(|k| format!("{{ address = \"{}\" }}", lab.host_addr(2, 8001 + k)))
        .collect();
    format!(
        r#"
[admin]
listen = "{admin}"
token_file = "{token}"

[cluster]
listen = "{cluster}"
peers = ["{peer}"]
secret = "lab-shared-secret-0123456789"

[[vrrp]]
name = "web"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "100ms"
virtual_ips = ["{vip}/27"]
garp_master_delay = "0s"

[[pool]]
name = "p"
scheduler = "rr"
health = {{ kind = "none" }}
backends = [{backends}]

[[service]]
name = "www"
listen = "{vip}:8080"
pool = "p"
persistence = {{ kind = "source_ip" }}
"#,
        admin = lab.host_addr(i, 9900),
        token = lab.admin_token_file().display(),
        cluster = lab.host_addr(i, 9901),
        peer = lab.host_addr(other, 9901),
        vip = vip(lab),
        backends = backends.join(", "),
    )
}

/// The issue's failover case for persistence: a client pinned through the VIP on node 0 keeps
/// its backend after node 0 is SIGKILLed and node 1 takes the VIP, because node 1 holds the
/// replicated sticky entry. (Round robin without persistence would move it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_survives_failover() {
    let lab = Lab::new(3);
    let dir = TempDir::new("vrrp-persist");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http_backend.py");
    let mut backends = Vec::new();
    for k in 0..3u16 {
        let mut cmd = Command::new(common::netns::python3());
        cmd.args([
            script,
            &lab.host_ip(2).to_string(),
            &(8001 + k).to_string(),
            &format!("b{k}"),
        ]);
        backends.push(lab.spawn_in(2, &cmd));
    }
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let n0 = start_with(&lab, &dir, 0, &persistent_node_config(&lab, 0, 150));
    let n1 = start_with(&lab, &dir, 1, &persistent_node_config(&lab, 1, 100));
    for (k, p) in backends.iter().enumerate() {
        lab.wait_listening(
            *p,
            lab.host_addr(2, 8001 + k as u16),
            Duration::from_secs(10),
        )
        .await;
    }
    lab.wait_listening(n0.proc, a0, Duration::from_secs(10))
        .await;
    lab.wait_listening(n1.proc, a1, Duration::from_secs(10))
        .await;
    eventually("node 0 master", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    until("VIP on node 0", Duration::from_secs(2), || has_vip(&lab, 0)).await;

    let url = format!("http://{}:8080/", vip(&lab));
    let ask = || async {
        let out = curl(&["-s", "-m", "2", &url]).await;
        out.ok
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let pinned = ask().await.expect("answer through node 0");
    for _ in 0..5 {
        assert_eq!(ask().await.as_deref(), Some(pinned.as_str()));
    }
    // Node 1 has the entry (replicated) before node 0 dies.
    eventually(
        "node 1 holds the sticky entry",
        Duration::from_secs(5),
        || async {
            let v = admin_json(a1, "/api/v1/services/www/sticky").await?;
            (v["size"] == 1).then_some(())
        },
    )
    .await;

    lab.signal(n0.proc, libc::SIGKILL);
    until("node 1 takes the VIP", Duration::from_secs(3), || {
        has_vip(&lab, 1)
    })
    .await;
    let after = eventually("an answer through node 1", Duration::from_secs(5), &ask).await;
    assert_eq!(
        after, pinned,
        "the client keeps its backend across the failover"
    );
    for _ in 0..5 {
        assert_eq!(ask().await.as_deref(), Some(pinned.as_str()));
    }
    lab.signal(n1.proc, libc::SIGTERM);
}

/// A reload on the master changes a pool without touching VRRP, and `run --upgrade` replaces
/// the master's process: neither causes a failover. The backup never becomes master, the VIP
/// never leaves node 0 (polled every few ms throughout) and the new process is master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_upgrade_on_the_master_cause_no_failover() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-upgrade");
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let socket = dir.path().join("up0.sock");
    let config0 = dir.write("node0.toml", &node_config(&lab, 0, 150, true));
    let run0 = |upgrade: bool| {
        let mut cmd = Command::new(tandem_bin());
        cmd.args([
            "run",
            "--config",
            config0.to_str().expect("utf-8"),
            "--upgrade-socket",
            socket.to_str().expect("utf-8"),
        ]);
        if upgrade {
            cmd.arg("--upgrade");
        }
        lab.spawn_in(0, &cmd)
    };
    let p0 = run0(false);
    let n1 = start(&lab, &dir, 1, 100, true);
    lab.wait_listening(p0, a0, Duration::from_secs(10)).await;
    lab.wait_listening(n1.proc, a1, Duration::from_secs(10))
        .await;
    eventually("node 0 master", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("master")).then_some(())
    })
    .await;
    assert_eq!(state(a1).await.as_deref(), Some("backup"));
    until("VIP on node 0", Duration::from_secs(2), || has_vip(&lab, 0)).await;

    // Reload on the master with a changed pool: applied, no VRRP change anywhere.
    let changed = node_config(&lab, 0, 150, true).replace(
        r#"backends = [{ address = "127.0.0.1:1" }]"#,
        r#"backends = [{ address = "127.0.0.1:1", weight = 2 }]"#,
    );
    std::fs::write(&config0, changed).expect("write config");
    lab.signal(p0, libc::SIGHUP);
    eventually("the reload applied", Duration::from_secs(5), || async {
        let b = lab_pool_backends(a0, "p").await?;
        (b[0]["weight"] == 2).then_some(())
    })
    .await;

    // The upgrade, with the VIP watched all along.
    let p0b = run0(true);
    let mut vip_missing = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while lab.running(p0) {
        if !has_vip(&lab, 0) {
            vip_missing += 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old process still running; new:\n{}",
            lab.log(p0b)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(lab.running(p0b), "{}", lab.log(p0b));
    // Three Master_Down_Intervals later the peer still has not stirred.
    for _ in 0..200 {
        if !has_vip(&lab, 0) || has_vip(&lab, 1) {
            vip_missing += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(vip_missing, 0, "the VIP moved during the upgrade");
    let i0 = instance(a0).await.expect("node 0 instance");
    let i1 = instance(a1).await.expect("node 1 instance");
    assert_eq!(i0["state"], "master", "{i0}\n{}", lab.log(p0b));
    assert_eq!(i1["state"], "backup", "{i1}");
    assert_eq!(
        i1["became_master"], 0,
        "the backup took over at some point: {i1}"
    );
    assert_eq!(
        lab_pool_backends(a0, "p").await.expect("api")[0]["weight"],
        2,
        "the new process runs the file as reloaded"
    );
    lab.signal(p0b, libc::SIGTERM);
    lab.signal(n1.proc, libc::SIGTERM);
    until("both exit", Duration::from_secs(10), || {
        !lab.running(p0b) && !lab.running(n1.proc)
    })
    .await;
}

/// Whether `addr/27` is on node `i`'s eth0.
fn has_addr(lab: &Lab, i: usize, addr: std::net::Ipv4Addr) -> bool {
    common::netns::ip_output(&[
        "-n",
        lab.netns(i),
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ])
    .contains(&format!(" {addr}/27 "))
}

/// SIGHUP to node `p` (as `systemctl reload` does), then the fields of the reload event it
/// logs.
async fn reload_by_signal(
    lab: &Lab,
    p: common::netns::Proc,
    admin: std::net::SocketAddr,
) -> serde_json::Value {
    let reloads = || async {
        let v = admin_json(admin, "/api/v1/events").await?;
        let events = v["events"].as_array()?.clone();
        Some(
            events
                .into_iter()
                .filter(|e| e["kind"] == "reload")
                .collect::<Vec<_>>(),
        )
    };
    let before = eventually("the event log", Duration::from_secs(2), reloads)
        .await
        .len();
    lab.signal(p, libc::SIGHUP);
    let mut after = eventually("a reload event", Duration::from_secs(10), || async {
        reloads().await.filter(|r| r.len() > before)
    })
    .await;
    let last = after.pop().expect("one reload event");
    assert_eq!(last["message"], "configuration reloaded", "{last}");
    last["fields"].clone()
}

/// Watch for `for_ms` (5 ms steps) that the VIP stays on node 0 and never shows on node 1;
/// returns how many looks saw otherwise.
async fn vip_moves(lab: &Lab, for_ms: u64) -> u32 {
    let mut moved = 0;
    for _ in 0..for_ms / 5 {
        if !has_vip(lab, 0) || has_vip(lab, 1) {
            moved += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    moved
}

/// Reloading `[[vrrp]]` on the master applies the new settings instance by instance without
/// a failover: a priority change that keeps it highest and an added VIP (the instance
/// restarts as master; the new VIP appears), then a tracking-only change (the instance runs
/// on), then the added VIP removed again. Only a priority below the peer's moves the VIP,
/// because the election says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrrp_reload_applies_new_settings_without_a_failover() {
    let lab = Lab::new(2);
    let dir = TempDir::new("vrrp-reload");
    let a0 = lab.host_addr(0, 9900);
    let a1 = lab.host_addr(1, 9900);
    let (n0, n1) = pair(
        &lab,
        &dir,
        &node_config(&lab, 0, 150, true),
        &node_config(&lab, 1, 100, true),
    )
    .await;
    until("VIP on node 0", Duration::from_secs(2), || has_vip(&lab, 0)).await;
    let std::net::IpAddr::V4(gw) = lab.gateway() else {
        panic!("IPv4 lab expected")
    };
    let second = std::net::Ipv4Addr::from(u32::from(gw) + 20);
    let base = node_config(&lab, 0, 150, true);
    let one_vip = format!("virtual_ips = [\"{}/27\"]", vip(&lab));
    let two_vips = format!("virtual_ips = [\"{}/27\", \"{second}/27\"]", vip(&lab));
    assert!(base.contains(&one_vip), "{base}");

    // 1. Priority 150 -> 140 (still above the peer's 100) and a second VIP: restarted.
    let step1 = base
        .replace("priority = 150", "priority = 140")
        .replace(&one_vip, &two_vips);
    std::fs::write(&n0.config, &step1).expect("write config");
    let report = reload_by_signal(&lab, n0.proc, a0).await;
    assert_eq!(report["vrrp_restarted"], "web", "{report}");
    let moved = vip_moves(&lab, 600).await;
    assert_eq!(
        moved, 0,
        "the VIP moved on a reload that keeps node 0 highest"
    );
    assert!(
        has_addr(&lab, 0, second),
        "the added VIP is not on the master"
    );
    let i0 = instance(a0).await.expect("node 0 instance");
    assert_eq!(i0["state"], "master", "{i0}\n{}", lab.log(n0.proc));
    assert_eq!(i0["configured_priority"], 140, "{i0}");
    assert_eq!(i0["priority"], 140, "{i0}");

    // 2. Only tracking changes (the own interface, now with a weight): retracked.
    let step2 = step1.replace(
        "garp_master_delay = \"0s\"",
        "garp_master_delay = \"0s\"\ntrack_interfaces = [{ name = \"eth0\", weight = -10 }]",
    );
    std::fs::write(&n0.config, &step2).expect("write config");
    let report = reload_by_signal(&lab, n0.proc, a0).await;
    assert_eq!(report["vrrp_retracked"], "web", "{report}");
    assert_eq!(report["vrrp_restarted"], "", "{report}");
    assert_eq!(
        vip_moves(&lab, 400).await,
        0,
        "the VIP moved on a tracking change"
    );
    let i0 = instance(a0).await.expect("node 0 instance");
    assert_eq!(i0["state"], "master", "{i0}");
    assert_eq!(i0["tracked"][0]["weight"], -10, "{i0}");

    // 3. The second VIP goes again: removed from the interface, the first stays.
    let step3 = step2.replace(&two_vips, &one_vip);
    std::fs::write(&n0.config, &step3).expect("write config");
    lab.signal(n0.proc, libc::SIGHUP);
    until("the dropped VIP removed", Duration::from_secs(5), || {
        !has_addr(&lab, 0, second)
    })
    .await;
    assert_eq!(
        vip_moves(&lab, 400).await,
        0,
        "the VIP moved when another was dropped"
    );
    let i1 = instance(a1).await.expect("node 1 instance");
    assert_eq!(i1["state"], "backup", "{i1}");
    assert_eq!(
        i1["became_master"], 0,
        "the backup took over at some point: {i1}"
    );

    // 4. A priority below the peer's: the peer preempts, by the election's rules.
    std::fs::write(&n0.config, step3.replace("priority = 140", "priority = 90"))
        .expect("write config");
    let report = reload_by_signal(&lab, n0.proc, a0).await;
    assert_eq!(report["vrrp_restarted"], "web", "{report}");
    until("the VIP on node 1", Duration::from_secs(5), || {
        has_vip(&lab, 1) && !has_vip(&lab, 0)
    })
    .await;
    eventually("node 0 backup", Duration::from_secs(5), || async {
        (state(a0).await.as_deref() == Some("backup")).then_some(())
    })
    .await;
    assert_eq!(state(a1).await.as_deref(), Some("master"));
    lab.signal(n0.proc, libc::SIGTERM);
    lab.signal(n1.proc, libc::SIGTERM);
    until("both exit", Duration::from_secs(10), || {
        !lab.running(n0.proc) && !lab.running(n1.proc)
    })
    .await;
}
