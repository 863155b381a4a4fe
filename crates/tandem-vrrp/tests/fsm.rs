//! The VRRP state machine against RFC 5798 6.4 (and RFC 3768 6.4 for v2), on a simulated
//! clock: `t0` is a base `Instant` and every input is `t0 + offset`; nothing sleeps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use tandem_vrrp::fsm::{
    master_down_interval, skew_time, Action, ConfigError, Instance, InstanceConfig, State,
};
use tandem_vrrp::{Advert, Centis, Received, Version};

const VRID: u8 = 51;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(version: Version, priority: u8, interval: u16, local: IpAddr) -> InstanceConfig {
    InstanceConfig {
        version,
        vrid: VRID,
        priority,
        advert_interval: Centis(interval),
        preempt: true,
        preempt_delay: Duration::ZERO,
        local_address: local,
        accept: false,
    }
}

fn v3(priority: u8) -> InstanceConfig {
    config(Version::V3, priority, 100, v4(10))
}

fn instance(config: InstanceConfig) -> Instance {
    match Instance::new(config) {
        Ok(i) => i,
        Err(e) => panic!("test config rejected: {e}"),
    }
}

fn rx_full(version: Version, source: IpAddr, priority: u8, interval: u16) -> Received {
    Received {
        source,
        advert: Advert {
            version,
            vrid: VRID,
            priority,
            interval: Centis(interval),
            addresses: vec![v4(100)],
        },
    }
}

fn rx(source: IpAddr, priority: u8, interval: u16) -> Received {
    rx_full(Version::V3, source, priority, interval)
}

fn send(priority: u8) -> Action {
    Action::SendAdvert { priority }
}

/// A started backup (priority `p`, 1 s interval, v3), with `t0`.
fn backup(p: u8) -> (Instance, Instant) {
    let t0 = Instant::now();
    let mut i = instance(v3(p));
    assert_eq!(i.start(t0), vec![Action::BecomeBackup]);
    (i, t0)
}

/// A master (priority `p`), reached through the Master_Down_Timer; returns the instant it
/// became master.
fn master(p: u8) -> (Instance, Instant) {
    let (mut i, t0) = backup(p);
    let Some(at) = i.next_deadline() else {
        panic!("backup without a timer")
    };
    assert_eq!(i.tick(at), vec![send(p), Action::BecomeMaster]);
    let _ = t0;
    (i, at)
}

// ---- timer arithmetic -----------------------------------------------------------------

#[test]
fn v3_timer_formulas_exact() {
    // (priority, interval cs, Skew_Time µs, Master_Down_Interval µs)
    let cases = [
        (100, 100, 609_375, 3_609_375),
        (255, 100, 3_906, 3_003_906),
        (254, 100, 7_812, 3_007_812),
        (1, 100, 996_093, 3_996_093),
        (150, 50, 207_031, 1_707_031),
        (200, 200, 437_500, 6_437_500),
        (100, 1, 6_093, 36_093),
        (200, 4095, 8_957_812, 131_807_812),
    ];
    for (p, i, skew, mdi) in cases {
        assert_eq!(
            skew_time(Version::V3, p, Centis(i)),
            us(skew),
            "skew p={p} i={i}"
        );
        assert_eq!(
            master_down_interval(Version::V3, p, Centis(i)),
            us(mdi),
            "mdi p={p} i={i}"
        );
    }
}

#[test]
fn v2_timer_formulas_exact() {
    let cases = [
        (100, 100, 609_375, 3_609_375),
        (100, 300, 609_375, 9_609_375),
        (255, 100, 3_906, 3_003_906),
        (1, 500, 996_093, 15_996_093),
    ];
    for (p, i, skew, mdi) in cases {
        assert_eq!(
            skew_time(Version::V2, p, Centis(i)),
            us(skew),
            "skew p={p} i={i}"
        );
        assert_eq!(
            master_down_interval(Version::V2, p, Centis(i)),
            us(mdi),
            "mdi p={p} i={i}"
        );
    }
}

#[test]
fn higher_priority_always_has_shorter_master_down_interval() {
    for interval in [1, 7, 100, 4095] {
        for p in 1..=254u8 {
            let lo = master_down_interval(Version::V3, p, Centis(interval));
            let hi = master_down_interval(Version::V3, p + 1, Centis(interval));
            assert!(hi < lo, "p={p} interval={interval}");
        }
    }
}

// ---- config -----------------------------------------------------------------------------

#[test]
fn config_validation() {
    let err = |c: InstanceConfig| Instance::new(c).err();
    assert_eq!(err(v3(100)), None);
    assert_eq!(
        err(InstanceConfig { vrid: 0, ..v3(100) }),
        Some(ConfigError::ZeroVrid)
    );
    assert_eq!(err(v3(0)), Some(ConfigError::ZeroPriority));
    assert!(matches!(
        err(config(Version::V3, 100, 0, v4(1))),
        Some(ConfigError::IntervalOutOfRange { .. })
    ));
    assert!(matches!(
        err(config(Version::V3, 100, 4096, v4(1))),
        Some(ConfigError::IntervalOutOfRange { .. })
    ));
    assert_eq!(err(config(Version::V3, 100, 4095, v6(1))), None);
    assert!(matches!(
        err(config(Version::V2, 100, 50, v4(1))),
        Some(ConfigError::IntervalOutOfRange { .. })
    ));
    assert!(matches!(
        err(config(Version::V2, 100, 25_600, v4(1))),
        Some(ConfigError::IntervalOutOfRange { .. })
    ));
    assert_eq!(
        err(config(Version::V2, 100, 150, v4(1))),
        Some(ConfigError::V2IntervalNotWholeSeconds(Centis(150)))
    );
    assert_eq!(
        err(config(Version::V2, 100, 100, v6(1))),
        Some(ConfigError::V2RequiresIpv4(v6(1)))
    );
    assert!(matches!(
        err(config(
            Version::V3,
            100,
            100,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        )),
        Some(ConfigError::UnspecifiedLocalAddress(_))
    ));
    // The message says what is wrong.
    let msg = ConfigError::ZeroPriority.to_string();
    assert!(msg.contains("priority"), "{msg}");
}

// ---- RFC 5798 6.4.1 Initialize ---------------------------------------------------------

#[test]
fn initialize_owner_becomes_master_and_advertises() {
    let t0 = Instant::now();
    let mut i = instance(v3(255));
    assert_eq!(i.state(), State::Initialize);
    assert_eq!(i.next_deadline(), None);
    assert_eq!(i.start(t0), vec![send(255), Action::BecomeMaster]);
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.next_deadline(), Some(t0 + secs(1)));
    assert_eq!(i.master_address(), Some(v4(10)));
    assert_eq!(i.counters().became_master, 1);
}

#[test]
fn initialize_non_owner_becomes_backup_with_master_down_timer() {
    let (i, t0) = backup(100);
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.master_adver_interval(), Centis(100));
    assert_eq!(i.next_deadline(), Some(t0 + us(3_609_375)));
    assert_eq!(i.master_address(), None);
    assert_eq!(i.counters().became_backup, 1);
}

#[test]
fn start_is_ignored_once_running() {
    let (mut i, t0) = backup(100);
    assert_eq!(i.start(t0 + secs(1)), vec![]);
    assert_eq!(i.next_deadline(), Some(t0 + us(3_609_375)));
}

#[test]
fn adverts_are_ignored_before_start() {
    let t0 = Instant::now();
    let mut i = instance(v3(100));
    assert_eq!(i.advert(t0, &rx(v4(20), 200, 100)), vec![]);
    assert_eq!(i.state(), State::Initialize);
    assert_eq!(i.master_address(), None);
}

// ---- RFC 5798 6.4.2 Backup --------------------------------------------------------------

#[test]
fn backup_shutdown_stops_without_advert() {
    let (mut i, t0) = backup(100);
    assert_eq!(i.shutdown(t0 + secs(1)), vec![Action::Stopped]);
    assert_eq!(i.state(), State::Stopped);
    assert_eq!(i.next_deadline(), None);
    assert_eq!(i.tick(t0 + secs(60)), vec![]);
}

#[test]
fn backup_master_down_timer_fires_exactly_at_master_down_interval() {
    let (mut i, t0) = backup(100);
    let due = t0 + us(3_609_375);
    assert_eq!(i.tick(due - us(1)), vec![]);
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.tick(due), vec![send(100), Action::BecomeMaster]);
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.next_deadline(), Some(due + secs(1)));
    assert_eq!(i.master_address(), Some(v4(10)));
}

#[test]
fn backup_priority_zero_hands_over_after_exactly_skew_time() {
    let (mut i, t0) = backup(100);
    let at = t0 + secs(1);
    assert_eq!(i.advert(at, &rx(v4(20), 200, 100)), vec![]);
    assert_eq!(i.master_address(), Some(v4(20)));
    let resign = t0 + secs(2);
    assert_eq!(i.advert(resign, &rx(v4(20), 0, 100)), vec![]);
    assert_eq!(i.master_address(), None);
    assert_eq!(i.counters().priority_zero_received, 1);
    // Skew_Time for priority 100 at 1 s: 609 375 µs.
    assert_eq!(i.next_deadline(), Some(resign + us(609_375)));
    assert_eq!(i.tick(resign + us(609_374)), vec![]);
    assert_eq!(
        i.tick(resign + us(609_375)),
        vec![send(100), Action::BecomeMaster]
    );
}

#[test]
fn backup_priority_zero_uses_adopted_interval_for_skew() {
    let (mut i, t0) = backup(100);
    i.advert(t0, &rx(v4(20), 200, 200)); // master advertises every 2 s
    let resign = t0 + secs(1);
    i.advert(resign, &rx(v4(20), 0, 200));
    // ((256 - 100) * 200 cs) / 256 = 121.875 cs.
    assert_eq!(i.next_deadline(), Some(resign + us(1_218_750)));
}

#[test]
fn backup_higher_priority_resets_timer_and_adopts_interval_v3() {
    let (mut i, t0) = backup(100);
    let at = t0 + secs(2);
    assert_eq!(i.advert(at, &rx(v4(20), 200, 200)), vec![]);
    assert_eq!(i.master_adver_interval(), Centis(200));
    // 3 * 2 s + (156 * 2 s) / 256 = 6.0 + 1.21875 s.
    assert_eq!(i.next_deadline(), Some(at + us(7_218_750)));
    assert_eq!(i.state(), State::Backup);
}

#[test]
fn backup_equal_priority_resets_timer() {
    let (mut i, t0) = backup(100);
    // Equal priority, smaller address: still accepted by a backup (>= local).
    let at = t0 + secs(3);
    i.advert(at, &rx(v4(5), 100, 100));
    assert_eq!(i.next_deadline(), Some(at + us(3_609_375)));
    assert_eq!(i.master_address(), Some(v4(5)));
}

#[test]
fn backup_lower_priority_with_preempt_is_discarded_and_timer_keeps_running() {
    let (mut i, t0) = backup(100);
    let due = t0 + us(3_609_375);
    assert_eq!(i.advert(t0 + secs(1), &rx(v4(20), 50, 200)), vec![]);
    assert_eq!(i.next_deadline(), Some(due));
    assert_eq!(
        i.master_adver_interval(),
        Centis(100),
        "no adoption on discard"
    );
    assert_eq!(i.counters().adverts_discarded, 1);
    // The lower-priority master is still the master we see.
    assert_eq!(i.master_address(), Some(v4(20)));
    i.advert(t0 + secs(2), &rx(v4(20), 50, 200));
    i.advert(t0 + secs(3), &rx(v4(20), 50, 200));
    assert_eq!(i.tick(due), vec![send(100), Action::BecomeMaster]);
}

#[test]
fn backup_lower_priority_without_preempt_resets_timer_and_adopts() {
    let t0 = Instant::now();
    let mut i = instance(InstanceConfig {
        preempt: false,
        ..v3(100)
    });
    i.start(t0);
    for k in 1..=10 {
        let at = t0 + secs(k);
        assert_eq!(i.advert(at, &rx(v4(20), 50, 50)), vec![]);
        assert_eq!(i.tick(at), vec![]);
    }
    assert_eq!(i.master_adver_interval(), Centis(50));
    // 3 * 0.5 s + (156 * 0.5 s) / 256 = 1.5 + 0.3046875 s.
    assert_eq!(i.next_deadline(), Some(t0 + secs(10) + us(1_804_687)));
    assert_eq!(i.state(), State::Backup);
}

// ---- RFC 5798 6.4.3 Master --------------------------------------------------------------

#[test]
fn master_adver_timer_sends_and_rearms() {
    let (mut i, m) = master(100);
    assert_eq!(i.tick(m + secs(1) - us(1)), vec![]);
    assert_eq!(i.tick(m + secs(1)), vec![send(100)]);
    assert_eq!(i.next_deadline(), Some(m + secs(2)));
    // Late tick: one advert, re-armed from now (no burst).
    let late = m + secs(5);
    assert_eq!(i.tick(late), vec![send(100)]);
    assert_eq!(i.next_deadline(), Some(late + secs(1)));
}

#[test]
fn master_shutdown_sends_priority_zero() {
    let (mut i, m) = master(100);
    assert_eq!(i.shutdown(m + us(10)), vec![send(0), Action::Stopped]);
    assert_eq!(i.state(), State::Stopped);
    assert_eq!(i.next_deadline(), None);
    assert_eq!(i.master_address(), None);
    assert_eq!(i.counters().priority_zero_sent, 1);
    assert_eq!(i.counters().stopped, 1);
}

#[test]
fn master_priority_zero_received_sends_at_once_and_resets_adver_timer() {
    let (mut i, m) = master(100);
    let at = m + us(300_000);
    assert_eq!(i.advert(at, &rx(v4(20), 0, 100)), vec![send(100)]);
    assert_eq!(i.next_deadline(), Some(at + secs(1)));
    assert_eq!(i.state(), State::Master);
}

#[test]
fn master_higher_priority_becomes_backup_and_adopts_interval() {
    let (mut i, m) = master(100);
    let at = m + us(500_000);
    assert_eq!(
        i.advert(at, &rx(v4(20), 101, 300)),
        vec![Action::BecomeBackup]
    );
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.master_adver_interval(), Centis(300));
    assert_eq!(i.master_address(), Some(v4(20)));
    // 3 * 3 s + (156 * 3 s) / 256 = 9 + 1.828125 s.
    assert_eq!(i.next_deadline(), Some(at + us(10_828_125)));
}

#[test]
fn master_lower_priority_is_answered_and_the_addresses_announced() {
    // RFC 5798 6.4.3 discards it; like keepalived we also answer at once and re-announce,
    // so a node that believes it is master steps down and hosts come back.
    let (mut i, m) = master(100);
    let due = i.next_deadline();
    assert_eq!(
        i.advert(m + us(1), &rx(v4(200), 99, 100)),
        vec![Action::SendAdvert { priority: 100 }, Action::Announce]
    );
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.next_deadline(), due, "the advert schedule is unchanged");
    assert_eq!(i.master_address(), Some(v4(10)));
    assert_eq!(i.counters().adverts_discarded, 1);
    assert_eq!(i.counters().lower_priority_answered, 1);
}

#[test]
fn a_late_advert_timer_does_not_stretch_the_interval() {
    let (mut i, _) = master(100);
    let due = i.next_deadline().expect("deadline");
    // Handled 3 ms late: the next one is still one interval after the one that was due.
    assert_eq!(
        i.tick(due + us(3_000)),
        vec![Action::SendAdvert { priority: 100 }]
    );
    let interval = i.next_deadline().expect("deadline") - due;
    assert_eq!(interval, us(1_000_000));
    // Stalled for more than an interval: restart from now rather than burst.
    let due = i.next_deadline().expect("deadline");
    let late = due + us(2_500_000);
    i.tick(late);
    assert_eq!(i.next_deadline(), Some(late + us(1_000_000)));
}

#[test]
fn master_equal_priority_tie_break_ipv4() {
    // Local 192.0.2.10. A larger sender address wins...
    let (mut i, m) = master(100);
    assert_eq!(
        i.advert(m, &rx(v4(11), 100, 100)),
        vec![Action::BecomeBackup]
    );
    // ...a smaller one loses (and is answered, see master_lower_priority_...).
    let (mut i, m) = master(100);
    assert_eq!(
        i.advert(m, &rx(v4(9), 100, 100)),
        vec![Action::SendAdvert { priority: 100 }, Action::Announce]
    );
    assert_eq!(i.state(), State::Master);
    // Compared as unsigned integers: 192.0.2.10 < 192.0.3.1 < 200.0.0.0.
    let (mut i, m) = master(100);
    let big = IpAddr::V4(Ipv4Addr::new(200, 0, 0, 0));
    assert_eq!(i.advert(m, &rx(big, 100, 100)), vec![Action::BecomeBackup]);
}

#[test]
fn master_equal_priority_tie_break_ipv6() {
    let mk = || {
        let t0 = Instant::now();
        let mut i = instance(config(Version::V3, 255, 100, v6(0x10)));
        i.start(t0);
        (i, t0)
    };
    let (mut i, t0) = mk();
    assert_eq!(
        i.advert(t0, &rx(v6(0x11), 255, 100)),
        vec![Action::BecomeBackup]
    );
    let (mut i, t0) = mk();
    assert_eq!(
        i.advert(t0, &rx(v6(0x0f), 255, 100)),
        vec![Action::SendAdvert { priority: 255 }, Action::Announce]
    );
    let (mut i, t0) = mk();
    let high = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
    assert_eq!(
        i.advert(t0, &rx(high, 255, 100)),
        vec![Action::BecomeBackup]
    );
}

// ---- drops --------------------------------------------------------------------------------

#[test]
fn adverts_failing_checks_are_dropped_and_counted() {
    let (mut i, t0) = backup(100);
    let due = i.next_deadline();
    let mut wrong_vrid = rx(v4(20), 200, 100);
    wrong_vrid.advert.vrid = VRID + 1;
    i.advert(t0, &wrong_vrid);
    i.advert(t0, &rx_full(Version::V2, v4(20), 200, 100));
    i.advert(t0, &rx(v4(20), 200, 0));
    i.advert(t0, &rx(v4(20), 200, 4096));
    i.advert(t0, &rx(v6(20), 200, 100));
    i.advert(t0, &rx(v4(10), 200, 100));
    let d = i.counters().dropped;
    assert_eq!(
        (d.vrid, d.version, d.interval, d.family, d.own),
        (1, 1, 2, 1, 1)
    );
    assert_eq!(i.counters().adverts_received, 0);
    assert_eq!(i.next_deadline(), due, "no drop touches the timer");
    assert_eq!(i.master_address(), None);
}

// ---- VRRPv2 (RFC 3768) ------------------------------------------------------------------

fn v2(priority: u8, interval: u16) -> InstanceConfig {
    config(Version::V2, priority, interval, v4(10))
}

#[test]
fn v2_backup_timer_uses_whole_second_skew() {
    let t0 = Instant::now();
    let mut i = instance(v2(100, 300));
    assert_eq!(i.start(t0), vec![Action::BecomeBackup]);
    assert_eq!(i.next_deadline(), Some(t0 + us(9_609_375)));
    assert_eq!(i.skew_time(), us(609_375));
}

#[test]
fn v2_does_not_adopt_and_drops_interval_mismatch() {
    let t0 = Instant::now();
    let mut i = instance(v2(100, 100));
    i.start(t0);
    let due = i.next_deadline();
    // A master advertising every 2 s is a misconfiguration in v2: dropped, counted.
    let at = t0 + secs(1);
    assert_eq!(
        i.advert(at, &rx_full(Version::V2, v4(20), 200, 200)),
        vec![]
    );
    assert_eq!(i.counters().dropped.interval, 1);
    assert_eq!(i.next_deadline(), due);
    assert_eq!(i.master_adver_interval(), Centis(100));
    // A matching one resets the timer with our own interval.
    i.advert(at, &rx_full(Version::V2, v4(20), 200, 100));
    assert_eq!(i.next_deadline(), Some(at + us(3_609_375)));
}

#[test]
fn v2_master_yields_without_adopting() {
    let t0 = Instant::now();
    let mut i = instance(v2(255, 200));
    assert_eq!(i.start(t0), vec![send(255), Action::BecomeMaster]);
    assert_eq!(i.next_deadline(), Some(t0 + secs(2)));
    // Equal priority, larger address, same interval: yield.
    let at = t0 + secs(1);
    assert_eq!(
        i.advert(at, &rx_full(Version::V2, v4(11), 255, 200)),
        vec![Action::BecomeBackup]
    );
    assert_eq!(i.master_adver_interval(), Centis(200));
    // 3 * 2 s + 1/256 s = 6.00390625 s, rounded down to µs.
    assert_eq!(i.next_deadline(), Some(at + us(6_003_906)));
}

#[test]
fn v2_priority_zero_and_master_down_match_v3_rules() {
    let t0 = Instant::now();
    let mut i = instance(v2(200, 100));
    i.start(t0);
    let at = t0 + secs(1);
    i.advert(at, &rx_full(Version::V2, v4(20), 0, 100));
    // (256 - 200) / 256 s = 218 750 µs.
    assert_eq!(i.next_deadline(), Some(at + us(218_750)));
    assert_eq!(
        i.tick(at + us(218_750)),
        vec![send(200), Action::BecomeMaster]
    );
    assert_eq!(
        i.advert(at + secs(1), &rx_full(Version::V2, v4(20), 0, 100)),
        vec![send(200)]
    );
}

// ---- preemption ------------------------------------------------------------------------

#[test]
fn preempt_delay_defers_to_live_lower_master_then_preempts() {
    let t0 = Instant::now();
    let mut i = instance(InstanceConfig {
        preempt_delay: secs(10),
        ..v3(100)
    });
    i.start(t0);
    // A priority-50 master advertises every second, at 0.5 s, 1.5 s, ...
    let mut became_master = None;
    for k in 0..20u64 {
        let at = t0 + us(500_000 + k * 1_000_000);
        if let Some(due) = i.next_deadline() {
            if due <= at && became_master.is_none() {
                assert_eq!(i.tick(due), vec![send(100), Action::BecomeMaster]);
                became_master = Some(due);
            }
        }
        i.advert(at, &rx(v4(20), 50, 100));
    }
    // Accepted until t0 + 10 s (last at 9.5 s), discarded from 10.5 s; the takeover is one
    // Master_Down_Interval after 9.5 s: 9.5 + 3.609375 s.
    assert_eq!(became_master, Some(t0 + us(13_109_375)));
}

#[test]
fn preempt_delay_does_not_delay_taking_over_from_a_dead_master() {
    let t0 = Instant::now();
    let mut i = instance(InstanceConfig {
        preempt_delay: secs(100),
        ..v3(100)
    });
    i.start(t0);
    i.advert(t0 + secs(1), &rx(v4(20), 50, 100));
    // The lower master dies: taken over one Master_Down_Interval later, delay or not.
    let due = t0 + secs(1) + us(3_609_375);
    assert_eq!(i.next_deadline(), Some(due));
    assert_eq!(i.tick(due), vec![send(100), Action::BecomeMaster]);
}

#[test]
fn preempt_delay_restarts_when_a_master_becomes_lower() {
    let t0 = Instant::now();
    let mut i = instance(InstanceConfig {
        preempt_delay: secs(5),
        ..v3(100)
    });
    i.start(t0);
    // A higher master for 20 s: the delay count is cleared.
    for k in 1..=20 {
        i.advert(t0 + secs(k), &rx(v4(20), 150, 100));
    }
    // Its priority drops to 80 (tracking); from 21 s its adverts are lower.
    for k in 21..=28 {
        let at = t0 + secs(k);
        assert_eq!(i.tick(at), vec![], "no takeover at {k} s");
        i.advert(at, &rx(v4(20), 80, 100));
    }
    // Delay started at 21 s, so accepted through 25 s (exclusive end 26 s), discarded from
    // 26 s; takeover 3.609375 s after 25 s.
    assert_eq!(i.next_deadline(), Some(t0 + secs(25) + us(3_609_375)));
}

#[test]
fn nopreempt_backup_never_takes_over_from_live_lower_master() {
    let t0 = Instant::now();
    let mut i = instance(InstanceConfig {
        preempt: false,
        ..v3(200)
    });
    i.start(t0);
    for k in 1..=100 {
        let at = t0 + secs(k);
        assert_eq!(i.tick(at), vec![]);
        i.advert(at, &rx(v4(20), 1, 100));
    }
    assert_eq!(i.state(), State::Backup);
}

#[test]
fn owner_preempts_regardless_of_nopreempt_and_delay() {
    let t0 = Instant::now();
    let mut i = instance(InstanceConfig {
        preempt: false,
        preempt_delay: secs(1000),
        ..v3(255)
    });
    // Tracking lowered the owner before start: it starts as a backup.
    i.set_priority(t0, 200);
    assert_eq!(i.start(t0), vec![Action::BecomeBackup]);
    i.advert(t0 + secs(1), &rx(v4(20), 100, 100));
    let accepted_until = t0 + secs(1) + us(3_218_750); // MDI for 200 at 1 s
    assert_eq!(
        i.next_deadline(),
        Some(accepted_until),
        "nopreempt: accepted"
    );
    // Back to 255: the owner now discards lower adverts and takes over.
    i.set_priority(t0 + secs(2), 255);
    assert_eq!(i.effective_priority(), 255);
    i.advert(t0 + secs(2), &rx(v4(20), 100, 100));
    i.advert(t0 + secs(3), &rx(v4(20), 100, 100));
    assert_eq!(i.next_deadline(), Some(accepted_until));
    assert_eq!(
        i.tick(accepted_until),
        vec![send(255), Action::BecomeMaster]
    );
}

// ---- set_priority ------------------------------------------------------------------------

#[test]
fn set_priority_clamps_and_changes_adverts() {
    let (mut i, m) = master(100);
    assert_eq!(i.set_priority(m, 0), vec![]);
    assert_eq!(i.effective_priority(), 1);
    assert_eq!(i.set_priority(m, 255), vec![]);
    assert_eq!(i.effective_priority(), 254, "only the owner may claim 255");
    i.set_priority(m, 70);
    assert_eq!(i.tick(m + secs(1)), vec![send(70)]);
    // The owner may return to 255.
    let mut o = instance(v3(255));
    o.set_priority(m, 10);
    o.set_priority(m, 255);
    assert_eq!(o.effective_priority(), 255);
}

#[test]
fn set_priority_on_backup_applies_from_next_accepted_advert() {
    let (mut i, t0) = backup(100);
    let due = i.next_deadline();
    i.set_priority(t0 + secs(1), 200);
    assert_eq!(i.next_deadline(), due, "the running timer is not moved");
    let at = t0 + secs(2);
    i.advert(at, &rx(v4(20), 250, 100));
    // Recomputed with priority 200: 3 s + 218 750 µs.
    assert_eq!(i.next_deadline(), Some(at + us(3_218_750)));
}

#[test]
fn master_whose_priority_drops_is_preempted_via_backup_timer() {
    let (mut m, tm) = master(150);
    let mut b = instance(config(Version::V3, 100, 100, v4(11)));
    b.start(tm);
    // b hears m every second while m's priority is higher.
    let mut now = tm;
    for _ in 0..3 {
        now += secs(1);
        let out = m.tick(now);
        assert_eq!(out, vec![send(150)]);
        b.advert(now, &rx(v4(10), 150, 100));
    }
    let last_accepted = now;
    m.set_priority(now, 50);
    let mut taken = None;
    for _ in 0..10 {
        now += secs(1);
        if let Some(due) = b.next_deadline() {
            if due <= now && taken.is_none() {
                assert_eq!(b.tick(due), vec![send(100), Action::BecomeMaster]);
                taken = Some(due);
                assert_eq!(
                    m.advert(due, &rx(v4(11), 100, 100)),
                    vec![Action::BecomeBackup]
                );
            }
        }
        if m.state() == State::Master {
            assert_eq!(m.tick(now), vec![send(50)]);
            b.advert(now, &rx(v4(10), 50, 100));
        }
    }
    assert_eq!(taken, Some(last_accepted + us(3_609_375)));
    assert_eq!(m.state(), State::Backup);
}

// ---- Fault (tandem) -----------------------------------------------------------------------

#[test]
fn fault_from_master_resigns_and_never_becomes_master() {
    let (mut i, m) = master(100);
    assert_eq!(i.set_fault(m, true), vec![send(0), Action::EnterFault]);
    assert_eq!(i.state(), State::Fault);
    assert!(i.is_fault());
    assert_eq!(i.next_deadline(), None);
    assert_eq!(i.counters().entered_fault, 1);
    // Still hears adverts (for the admin API) but never takes over.
    assert_eq!(i.advert(m + secs(1), &rx(v4(20), 50, 100)), vec![]);
    assert_eq!(i.master_address(), Some(v4(20)));
    assert_eq!(i.advert(m + secs(2), &rx(v4(20), 0, 100)), vec![]);
    assert_eq!(i.master_address(), None, "resigned: no master known");
    assert_eq!(i.tick(m + secs(100)), vec![]);
    assert_eq!(i.state(), State::Fault);
    // Repeating the same fault state does nothing.
    assert_eq!(i.set_fault(m + secs(100), true), vec![]);
    // Leaving Fault is a fresh Startup (RFC 5798 6.4.1).
    let back = m + secs(101);
    assert_eq!(i.set_fault(back, false), vec![Action::BecomeBackup]);
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.next_deadline(), Some(back + us(3_609_375)));
}

#[test]
fn fault_from_backup_and_owner_recovery() {
    let t0 = Instant::now();
    let mut i = instance(v3(255));
    i.set_fault(t0, true);
    assert_eq!(i.start(t0), vec![Action::EnterFault], "fault before start");
    assert_eq!(
        i.set_fault(t0 + secs(1), false),
        vec![send(255), Action::BecomeMaster]
    );

    let (mut b, t0) = backup(100);
    assert_eq!(b.set_fault(t0, true), vec![Action::EnterFault]);
    assert_eq!(b.next_deadline(), None);
    assert_eq!(b.set_fault(t0, false), vec![Action::BecomeBackup]);
}

#[test]
fn fault_while_stopped_applies_at_next_start() {
    let (mut i, m) = master(100);
    i.shutdown(m);
    assert_eq!(i.set_fault(m, true), vec![]);
    assert_eq!(i.state(), State::Stopped);
    assert_eq!(i.start(m + secs(1)), vec![Action::EnterFault]);
}

// ---- shutdown from each state ----------------------------------------------------------

#[test]
fn shutdown_from_every_state() {
    let t0 = Instant::now();
    let mut init = instance(v3(100));
    assert_eq!(init.shutdown(t0), vec![Action::Stopped]);

    let (mut b, t0) = backup(100);
    assert_eq!(b.shutdown(t0), vec![Action::Stopped]);

    let (mut m, t) = master(100);
    assert_eq!(m.shutdown(t), vec![send(0), Action::Stopped]);

    let (mut f, t0) = backup(100);
    f.set_fault(t0, true);
    assert_eq!(f.shutdown(t0), vec![Action::Stopped]);

    // Stopped: idempotent, and deaf.
    assert_eq!(f.shutdown(t0), vec![]);
    assert_eq!(f.advert(t0, &rx(v4(20), 0, 100)), vec![]);
    assert_eq!(f.tick(t0 + secs(100)), vec![]);
    assert_eq!(f.state(), State::Stopped);
}

#[test]
fn restart_after_shutdown() {
    let (mut m, t) = master(100);
    m.shutdown(t);
    let again = t + secs(5);
    assert_eq!(m.start(again), vec![Action::BecomeBackup]);
    assert_eq!(m.next_deadline(), Some(again + us(3_609_375)));
    assert_eq!(m.counters().became_backup, 2);
    assert_eq!(m.counters().became_master, 1);
}

// ---- a simulated network ---------------------------------------------------------------

struct Node {
    inst: Instance,
    alive: bool,
}

/// Instances on one segment: every advert reaches every other live node `delay` later.
struct Net {
    nodes: Vec<Node>,
    in_flight: Vec<(Instant, usize, u8)>,
    delay: Duration,
    now: Instant,
    /// When more than one live node became master (reset when back to one).
    dual_since: Option<Instant>,
    longest_dual: Duration,
    /// (time, node) of every BecomeMaster.
    became_master: Vec<(Instant, usize)>,
}

impl Net {
    fn new(configs: Vec<InstanceConfig>, delay: Duration) -> Self {
        let nodes = configs
            .into_iter()
            .map(|c| Node {
                inst: instance(c),
                alive: true,
            })
            .collect();
        Net {
            nodes,
            in_flight: Vec::new(),
            delay,
            now: Instant::now(),
            dual_since: None,
            longest_dual: Duration::ZERO,
            became_master: Vec::new(),
        }
    }

    fn start_all(&mut self) {
        for n in 0..self.nodes.len() {
            self.start(n);
        }
    }

    fn start(&mut self, n: usize) {
        self.nodes[n].alive = true;
        let out = self.nodes[n].inst.start(self.now);
        self.apply(n, out);
    }

    /// Stops sending and hearing, as if powered off.
    fn kill(&mut self, n: usize) {
        self.nodes[n].alive = false;
        self.watch();
    }

    fn shutdown(&mut self, n: usize) {
        let out = self.nodes[n].inst.shutdown(self.now);
        self.apply(n, out);
    }

    fn apply(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => {
                    self.in_flight.push((self.now + self.delay, from, priority));
                }
                Action::BecomeMaster => self.became_master.push((self.now, from)),
                _ => {}
            }
        }
        self.watch();
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].alive && self.nodes[n].inst.state() == State::Master)
            .collect()
    }

    fn watch(&mut self) {
        let dual = self.masters().len() > 1;
        match (dual, self.dual_since) {
            (true, None) => self.dual_since = Some(self.now),
            (false, Some(since)) => {
                self.longest_dual = self.longest_dual.max(self.now - since);
                self.dual_since = None;
            }
            _ => {}
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.inst.next_deadline());
        let packets = self.in_flight.iter().map(|p| p.0);
        timers.chain(packets).min()
    }

    /// Runs every event up to and including `until`, then sets the clock to `until`.
    fn run_until(&mut self, until: Instant) {
        while let Some(at) = self.next_event().filter(|&at| at <= until) {
            self.now = at;
            self.deliver();
            self.fire_timers();
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|p| p.0 <= now);
        self.in_flight = later;
        for (_, from, priority) in due {
            // Adverts sent before a kill are still on the wire and are delivered.
            let packet = self.received(from, priority);
            for n in 0..self.nodes.len() {
                if n != from && self.nodes[n].alive {
                    let out = self.nodes[n].inst.advert(now, &packet);
                    self.apply(n, out);
                }
            }
        }
    }

    fn received(&self, from: usize, priority: u8) -> Received {
        let c = self.nodes[from].inst.config();
        rx_full(c.version, c.local_address, priority, c.advert_interval.0)
    }

    fn fire_timers(&mut self) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].alive {
                let out = self.nodes[n].inst.tick(self.now);
                self.apply(n, out);
            }
        }
    }
}

fn three_nodes() -> Vec<InstanceConfig> {
    vec![
        config(Version::V3, 200, 100, v4(1)),
        config(Version::V3, 150, 100, v4(2)),
        config(Version::V3, 100, 100, v4(3)),
    ]
}

#[test]
fn three_nodes_converge_fail_over_and_fail_back() {
    let delay = Duration::from_millis(10);
    let mut net = Net::new(three_nodes(), delay);
    net.start_all();
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    // Priority 200 wins the first election after its Master_Down_Interval.
    assert_eq!(net.became_master[0].1, 0);
    assert_eq!(net.became_master.len(), 1);

    // Kill the master (it stops sending and hearing).
    let killed = net.now;
    net.kill(0);
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![1]);
    let (took_over, who) = net.became_master[1];
    assert_eq!(who, 1);
    let mdi = master_down_interval(Version::V3, 150, Centis(100));
    assert!(
        took_over - killed <= mdi + delay,
        "failover took {:?}",
        took_over - killed
    );
    assert_eq!(net.nodes[1].inst.master_address(), Some(v4(2)));
    assert_eq!(net.nodes[2].inst.master_address(), Some(v4(2)));

    // The old master comes back and preempts; the others follow.
    net.start(0);
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(net.nodes[2].inst.master_address(), Some(v4(1)));
    net.watch();
    assert!(net.dual_since.is_none());
    assert!(
        net.longest_dual <= delay,
        "dual masters for {:?}",
        net.longest_dual
    );
}

#[test]
fn failover_time_is_exact() {
    // Two nodes, no jitter: last advert sent at T, arrives T+d, backup takes over at
    // T + d + Master_Down_Interval(150).
    let delay = Duration::from_millis(5);
    let mut net = Net::new(three_nodes()[..2].to_vec(), delay);
    net.start_all();
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    let Some(next_send) = net.nodes[0].inst.next_deadline() else {
        panic!("master without timer")
    };
    let last_sent = next_send - secs(1);
    net.kill(0);
    net.run_for(secs(10));
    assert_eq!(
        net.became_master.last().copied(),
        Some((last_sent + delay + us(3_414_062), 1))
    );
}

#[test]
fn graceful_shutdown_hands_over_after_skew_time() {
    let delay = Duration::from_millis(10);
    let mut net = Net::new(three_nodes(), delay);
    net.start_all();
    net.run_for(secs(10));
    let stop = net.now;
    net.shutdown(0);
    net.kill(0);
    net.run_for(secs(5));
    assert_eq!(net.masters(), vec![1]);
    // Priority 150's Skew_Time at 1 s: (106 * 1 s) / 256 = 414 062.5 µs, rounded down.
    assert_eq!(
        net.became_master.last().copied(),
        Some((stop + delay + us(414_062), 1))
    );
    assert!(net.longest_dual <= delay);
}

#[test]
fn equal_priority_converges_to_larger_address_ipv6() {
    let delay = Duration::from_millis(20);
    let mut net = Net::new(
        vec![
            config(Version::V3, 100, 100, v6(0xa)),
            config(Version::V3, 100, 100, v6(0xb)),
            config(Version::V3, 100, 100, v6(0x9)),
        ],
        delay,
    );
    net.start_all();
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![1]);
    assert!(net.longest_dual <= delay, "{:?}", net.longest_dual);
    net.kill(1);
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    assert!(net.longest_dual <= delay, "{:?}", net.longest_dual);
}

#[test]
fn v2_nodes_converge_and_fail_over() {
    let delay = Duration::from_millis(10);
    let mut net = Net::new(
        vec![
            config(Version::V2, 100, 100, v4(1)),
            config(Version::V2, 120, 100, v4(2)),
        ],
        delay,
    );
    net.start_all();
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![1]);
    net.kill(1);
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    assert!(net.longest_dual <= delay);
}

#[test]
fn priority_drop_on_master_moves_mastership_with_bounded_overlap() {
    let delay = Duration::from_millis(10);
    let mut net = Net::new(three_nodes(), delay);
    net.start_all();
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    let now = net.now;
    net.nodes[0].inst.set_priority(now, 120);
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![1]);
    assert!(net.longest_dual <= delay, "{:?}", net.longest_dual);
    // Restored: node 0 preempts back.
    let now = net.now;
    net.nodes[0].inst.set_priority(now, 200);
    net.run_for(secs(10));
    assert_eq!(net.masters(), vec![0]);
    assert!(net.longest_dual <= delay, "{:?}", net.longest_dual);
}
