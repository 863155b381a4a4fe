//! `[[vrrp]]`: valid instances and the exact model they produce, and every error with its
//! exact `file:line:col: key: message` line.

use std::net::IpAddr;
use std::time::Duration;

use tandem_config::*;

/// A minimal valid instance (5 lines); cases append keys from line 6 on.
const BASE: &str = "[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"198.51.100.10/24\"]\n";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn tracked(name: &str, weight: Option<i16>) -> Tracked {
    Tracked {
        name: name.into(),
        weight,
    }
}

fn cmd(argv: &[&str]) -> ExecCommand {
    ExecCommand::new(argv.iter().map(|s| s.to_string()).collect(), None).expect("test command")
}

fn vip(s: &str, prefix_len: u8) -> VirtualIp {
    VirtualIp {
        address: ip(s),
        prefix_len,
    }
}

fn parse(src: &str) -> Config {
    match parse_str(src, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "t.toml") {
        Ok(cfg) => panic!("expected errors, parsed fine:\n{src}\n{:#?}", cfg.vrrp),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// Assert that `src` yields exactly the one error `want`.
#[track_caller]
fn one(src: &str, want: &str) {
    assert_eq!(errors(src), [want], "\nsource:\n{src}");
}

/// `BASE` plus `extra`, which must yield exactly the one error `want`.
#[track_caller]
fn with(extra: &str, want: &str) {
    one(&format!("{BASE}{extra}"), want);
}

#[test]
fn every_key_parses_into_exact_model() {
    let src = r#"
[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:8001" }]

[[pool]]
name = "api"
backends = [{ address = "127.0.0.1:8002" }]

[[service]]
name = "www"
listen = "198.51.100.10:80"   # the VIP: that is the point
pool = "web"

[[vrrp]]
name = "vi_1"
interface = "eth0"
vrid = 51
priority = 150
version = 3
advert_interval = "500ms"
virtual_ips = ["198.51.100.10/24", "198.51.100.11"]
preempt = true
preempt_delay = "30s"
accept = false
unicast_peers = ["198.51.100.2", "198.51.100.3"]
garp_master_delay = "2s"
garp_master_repeat = 3
garp_master_refresh = "1m"
checksum = "rfc9568"
realtime_priority = 10
track_interfaces = [{ name = "eth1", weight = -20 }, "eth2", { name = "bond0", weight = 5 }]
track_pools = [{ name = "web", weight = -50 }, "api"]
track_scripts = ["chk_nginx", { name = "chk_disk", weight = -5 }, { name = "chk_nginx2" }]
notify = { master = ["/bin/true", "became"], backup = ["/bin/true"], fault = ["/bin/true"], stop = ["/bin/true"], any = ["/bin/true", "any"], timeout = "5s" }
quorum = { witnesses = ["198.51.100.1", "198.51.100.254:443", "[2001:db8::1]:80"], need = 2, interval = "500ms", timeout = "300ms", rise = 1, fall = 2 }
use_vmac = true

[[vrrp_script]]
name = "chk_nginx"
command = ["/bin/true", "--nginx"]
weight = -30

[[vrrp_script]]
name = "chk_disk"
command = ["/bin/true"]
interval = "10s"
timeout = "3s"
rise = 2
fall = 3
weight = -1

[[vrrp_script]]
name = "chk_nginx2"
command = ["/bin/true"]
"#;
    let cfg = parse(src);
    assert_eq!(
        cfg.vrrp,
        [Vrrp {
            name: "vi_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            priority: 150,
            version: VrrpVersion::V3,
            advert_interval: Duration::from_millis(500),
            virtual_ips: vec![vip("198.51.100.10", 24), vip("198.51.100.11", 32)],
            preempt: true,
            preempt_delay: Duration::from_secs(30),
            accept: false,
            unicast_peers: vec![ip("198.51.100.2"), ip("198.51.100.3")],
            garp_master_delay: Duration::from_secs(2),
            garp_master_repeat: 3,
            garp_master_refresh: Some(Duration::from_secs(60)),
            checksum: VrrpChecksum::Rfc9568,
            realtime_priority: Some(10),
            track_interfaces: vec![
                tracked("eth1", Some(-20)),
                tracked("eth2", None),
                tracked("bond0", Some(5)),
            ],
            track_pools: vec![tracked("web", Some(-50)), tracked("api", None)],
            // Entry weight wins over the script's; an entry without one takes the script's.
            track_scripts: vec![
                tracked("chk_nginx", Some(-30)),
                tracked("chk_disk", Some(-5)),
                tracked("chk_nginx2", None),
            ],
            notify: Notify {
                master: Some(cmd(&["/bin/true", "became"])),
                backup: Some(cmd(&["/bin/true"])),
                fault: Some(cmd(&["/bin/true"])),
                stop: Some(cmd(&["/bin/true"])),
                any: Some(cmd(&["/bin/true", "any"])),
                timeout: Duration::from_secs(5),
            },
            quorum: Some(Quorum {
                witnesses: vec![
                    Witness::Icmp(ip("198.51.100.1")),
                    Witness::Tcp("198.51.100.254:443".parse().unwrap()),
                    Witness::Tcp("[2001:db8::1]:80".parse().unwrap()),
                ],
                need: 2,
                interval: Duration::from_millis(500),
                timeout: Duration::from_millis(300),
                fall: 2,
                rise: 1,
            }),
            use_vmac: true,
            password: None,
        }]
    );
    assert_eq!(
        cfg.vrrp_scripts,
        [
            VrrpScript {
                name: "chk_nginx".into(),
                command: cmd(&["/bin/true", "--nginx"]),
                interval: VrrpScript::DEFAULT_INTERVAL,
                timeout: VrrpScript::DEFAULT_INTERVAL,
                rise: 1,
                fall: 1,
                weight: Some(-30),
            },
            VrrpScript {
                name: "chk_disk".into(),
                command: cmd(&["/bin/true"]),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(3),
                rise: 2,
                fall: 3,
                weight: Some(-1),
            },
            VrrpScript {
                name: "chk_nginx2".into(),
                command: cmd(&["/bin/true"]),
                interval: VrrpScript::DEFAULT_INTERVAL,
                timeout: VrrpScript::DEFAULT_INTERVAL,
                rise: 1,
                fall: 1,
                weight: None,
            },
        ]
    );
    assert_eq!(cfg.vrrp[0].virtual_ips[1].to_string(), "198.51.100.11/32");
    assert!(!cfg.vrrp[0].is_ipv6());
}

#[test]
fn defaults() {
    let cfg = parse(BASE);
    assert_eq!(
        cfg.vrrp,
        [Vrrp {
            name: "vi".into(),
            interface: "eth0".into(),
            vrid: 51,
            priority: Vrrp::DEFAULT_PRIORITY,
            version: VrrpVersion::V3,
            advert_interval: Duration::from_secs(1),
            virtual_ips: vec![vip("198.51.100.10", 24)],
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept: true,
            unicast_peers: Vec::new(),
            garp_master_delay: Duration::from_secs(5),
            garp_master_repeat: 5,
            garp_master_refresh: None,
            checksum: VrrpChecksum::Keepalived,
            realtime_priority: None,
            track_interfaces: Vec::new(),
            track_pools: Vec::new(),
            track_scripts: Vec::new(),
            notify: Notify {
                timeout: Notify::DEFAULT_TIMEOUT,
                ..Notify::default()
            },
            quorum: None,
            use_vmac: false,
            password: None,
        }]
    );
    assert!(cfg.vrrp[0].notify.is_empty());
    assert_eq!(Vrrp::DEFAULT_PRIORITY, 100);
    assert!(parse("").vrrp.is_empty());
}

#[test]
fn realtime_priority_defaults_on_for_sub_second_adverts() {
    let rt = |extra: &str| parse(&format!("{BASE}{extra}")).vrrp[0].realtime_priority;
    assert_eq!(rt(""), None, "1 s adverts: off");
    assert_eq!(rt("advert_interval = \"2s\"\n"), None);
    assert_eq!(
        rt("advert_interval = \"100ms\"\n"),
        Some(Vrrp::DEFAULT_REALTIME_PRIORITY)
    );
    assert_eq!(
        rt("advert_interval = \"100ms\"\nrealtime_priority = 0\n"),
        None
    );
    assert_eq!(
        rt("advert_interval = \"100ms\"\nrealtime_priority = 7\n"),
        Some(7)
    );
    assert_eq!(rt("realtime_priority = 7\n"), Some(7));
}

#[test]
fn ipv6_version2_zero_durations_and_limits() {
    let cfg = parse(concat!(
        "[[vrrp]]\nname = \"v6\"\ninterface = \"bond0.100\"\nvrid = 1\npriority = 255\n",
        "virtual_ips = [\"2001:db8::10/64\", \"2001:db8::11\", \"fe80::1\"]\n",
        "unicast_peers = [\"2001:db8::2\"]\nadvert_interval = \"40.95s\"\n",
        "preempt_delay = \"0s\"\ngarp_master_delay = \"0ms\"\ngarp_master_repeat = 100\n",
        "realtime_priority = 99\n",
        "[[vrrp]]\nname = \"v2\"\ninterface = \"eth1\"\nvrid = 255\nversion = 2\n",
        "advert_interval = \"255s\"\nvirtual_ips = [\"203.0.113.5/0\"]\npreempt = false\n",
        "[[vrrp]]\nname = \"fast\"\ninterface = \"eth0\"\nvrid = 1\n",
        "advert_interval = \"10ms\"\nvirtual_ips = [\"192.0.2.1\"]\nchecksum = \"keepalived\"\n",
    ));
    let [v6, v2, fast] = &cfg.vrrp[..] else {
        panic!("{:#?}", cfg.vrrp)
    };
    assert_eq!(v6.interface, "bond0.100");
    assert_eq!(v6.priority, 255);
    assert!(v6.is_ipv6());
    assert_eq!(
        v6.virtual_ips,
        [
            vip("2001:db8::10", 64),
            vip("2001:db8::11", 128),
            vip("fe80::1", 128)
        ]
    );
    assert_eq!(v6.unicast_peers, [ip("2001:db8::2")]);
    assert_eq!(v6.advert_interval, Duration::from_millis(40_950));
    assert_eq!(v6.preempt_delay, Duration::ZERO);
    assert_eq!(v6.garp_master_delay, Duration::ZERO);
    assert_eq!(v6.garp_master_repeat, 100);
    assert_eq!(v6.realtime_priority, Some(99));
    assert_eq!(v2.version, VrrpVersion::V2);
    assert_eq!(v2.vrid, 255);
    assert_eq!(v2.advert_interval, Duration::from_secs(255));
    assert_eq!(v2.virtual_ips, [vip("203.0.113.5", 0)]);
    assert!(!v2.preempt);
    // Same interface and vrid as `v6`, but the other family: a different virtual router.
    assert_eq!((fast.vrid, fast.interface.as_str()), (1, "eth0"));
    assert_eq!(fast.advert_interval, Duration::from_millis(10));
}

#[test]
fn vrrp_must_be_an_array_of_tables() {
    one(
        "[vrrp]\nname = \"vi\"\n",
        "t.toml:1:1: vrrp: expected an array of tables (write each instance as [[vrrp]]), found a table",
    );
}

#[test]
fn required_keys() {
    assert_eq!(
        errors("[[vrrp]]\nname = \"vi_1\"\n"),
        [
            "t.toml:1:1: vrrp[vi_1].interface: missing required key `interface` in [[vrrp]]",
            "t.toml:1:1: vrrp[vi_1].vrid: missing required key `vrid` in [[vrrp]]",
            "t.toml:1:1: vrrp[vi_1].virtual_ips: missing required key `virtual_ips` in [[vrrp]]",
        ]
    );
    one(
        "[[vrrp]]\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"198.51.100.10\"]\n",
        "t.toml:1:1: vrrp[0].name: missing required key `name` in [[vrrp]]",
    );
}

#[test]
fn names() {
    one(
        "[[vrrp]]\nname = \"vi 1\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"198.51.100.10\"]\n",
        "t.toml:2:8: vrrp[0].name: invalid name \"vi 1\"; use 1 to 64 letters, digits, `-`, `_` or `.`",
    );
    // The same name as a pool is fine; the same as another instance is not.
    one(
        &format!("{BASE}[[vrrp]]\nname = \"vi\"\ninterface = \"eth1\"\nvrid = 52\nvirtual_ips = [\"198.51.100.20\"]\n"),
        "t.toml:7:8: vrrp[1].name: duplicate vrrp name `vi`; first defined on line 2",
    );
}

#[test]
fn unknown_planned_and_keepalived_keys() {
    with(
        "prioirty = 150\n",
        "t.toml:6:1: vrrp[vi].prioirty: unknown key `prioirty`; did you mean `priority`?",
    );
    with(
        "unicast_peer = [\"198.51.100.2\"]\n",
        "t.toml:6:1: vrrp[vi].unicast_peer: unknown key `unicast_peer`; did you mean `unicast_peers`?",
    );
    with(
        "foo = 1\n",
        "t.toml:6:1: vrrp[vi].foo: unknown key `foo` in [[vrrp]]; known keys: name, interface, vrid, priority, version, advert_interval, virtual_ips, preempt, preempt_delay, accept, unicast_peers, garp_master_delay, garp_master_repeat, garp_master_refresh, checksum, realtime_priority, track_interfaces, track_pools, track_scripts, notify, quorum, use_vmac, password",
    );
    let planned = [
        ("auth = \"secret\"", "unknown key `auth`: VRRPv2 simple authentication is written password = \"...\" (at most 8 bytes); VRRPv3 has no authentication (RFC 5798 removed it)"),
        ("track_script = [\"chk\"]", "unknown key `track_script` (keepalived's name); tandem calls it `track_scripts` and takes names of [[vrrp_script]] tables"),
        ("virtual_router_id = 51", "unknown key `virtual_router_id` (keepalived's name); tandem calls it `vrid`"),
        ("advert_int = 1", "unknown key `advert_int` (keepalived's name); tandem calls it `advert_interval` and takes a duration, e.g. advert_interval = \"1s\""),
        ("virtual_ipaddress = []", "unknown key `virtual_ipaddress` (keepalived's name); tandem calls it `virtual_ips`, e.g. virtual_ips = [\"198.51.100.10/24\"]"),
        ("nopreempt = true", "unknown key `nopreempt` (keepalived's name); write preempt = false"),
        ("state = \"MASTER\"", "unknown key `state`: tandem has no initial state; the node with the highest `priority` becomes master, so give the preferred node the higher priority"),
    ];
    for (line, message) in planned {
        let key = line.split(' ').next().unwrap();
        with(
            &format!("{line}\n"),
            &format!("t.toml:6:1: vrrp[vi].{key}: {message}"),
        );
    }
    // keepalived's name for a required key: the table still has no `vrid`, so both are reported.
    assert_eq!(
        errors("[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ips = [\"198.51.100.10\"]\n"),
        [
            "t.toml:1:1: vrrp[vi].vrid: missing required key `vrid` in [[vrrp]]",
            "t.toml:4:1: vrrp[vi].virtual_router_id: unknown key `virtual_router_id` (keepalived's name); tandem calls it `vrid`",
        ]
    );
}

#[test]
fn interface_names() {
    let src = |name: &str| {
        format!("[[vrrp]]\nname = \"vi\"\ninterface = {name}\nvrid = 51\nvirtual_ips = [\"198.51.100.10\"]\n")
    };
    let cases = [
        ("\"\"", "invalid interface name \"\": it is empty"),
        ("\"abcdefghijklmnop\"", "invalid interface name \"abcdefghijklmnop\": it is longer than 15 bytes, the Linux limit"),
        ("\".\"", "invalid interface name \".\": \".\" and \"..\" are not interface names"),
        ("\"..\"", "invalid interface name \"..\": \".\" and \"..\" are not interface names"),
        ("\"eth/0\"", "invalid interface name \"eth/0\": it contains `/`"),
        ("\"eth0:1\"", "invalid interface name \"eth0:1\": it contains `:` (\"eth0:1\" is an address label, not an interface; write the interface itself, e.g. \"eth0\")"),
        ("\"eth 0\"", "invalid interface name \"eth 0\": it contains whitespace or a NUL byte"),
        ("\"eth\\t0\"", "invalid interface name \"eth\\t0\": it contains whitespace or a NUL byte"),
        ("0", "expected a string, found an integer"),
    ];
    for (value, message) in cases {
        one(
            &src(value),
            &format!("t.toml:3:13: vrrp[vi].interface: {message}"),
        );
    }
    // Exactly 15 bytes is the longest name Linux accepts.
    parse(&src("\"abcdefghijklmno\""));
}

#[test]
fn integer_ranges() {
    let vrid = |v: &str| {
        format!("[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = {v}\nvirtual_ips = [\"198.51.100.10\"]\n")
    };
    one(
        &vrid("0"),
        "t.toml:4:8: vrrp[vi].vrid: must be between 1 and 255, got 0",
    );
    one(
        &vrid("256"),
        "t.toml:4:8: vrrp[vi].vrid: must be between 1 and 255, got 256",
    );
    one(
        &vrid("\"51\""),
        "t.toml:4:8: vrrp[vi].vrid: expected an integer, found a string",
    );
    with(
        "priority = 0\n",
        "t.toml:6:12: vrrp[vi].priority: must be between 1 and 255, got 0",
    );
    with(
        "priority = 256\n",
        "t.toml:6:12: vrrp[vi].priority: must be between 1 and 255, got 256",
    );
    with(
        "version = 4\n",
        "t.toml:6:11: vrrp[vi].version: VRRP version must be 2 or 3, got 4",
    );
    with(
        "version = \"3\"\n",
        "t.toml:6:11: vrrp[vi].version: expected the integer 2 or 3, found a string",
    );
    with(
        "garp_master_repeat = 0\n",
        "t.toml:6:22: vrrp[vi].garp_master_repeat: must be between 1 and 100, got 0",
    );
    with(
        "garp_master_repeat = 101\n",
        "t.toml:6:22: vrrp[vi].garp_master_repeat: must be between 1 and 100, got 101",
    );
    with(
        "realtime_priority = 100\n",
        "t.toml:6:21: vrrp[vi].realtime_priority: must be between 0 and 99, got 100",
    );
    with(
        "preempt = \"yes\"\n",
        "t.toml:6:11: vrrp[vi].preempt: expected a boolean (true or false), found a string",
    );
    with(
        "accept = 1\n",
        "t.toml:6:10: vrrp[vi].accept: expected a boolean (true or false), found an integer",
    );
}

#[test]
fn advert_interval_by_version() {
    with(
        "advert_interval = \"15ms\"\n",
        "t.toml:6:19: vrrp[vi].advert_interval: with version 3 (the default), advert_interval must be a multiple of 10ms (adverts carry it in centiseconds), got 15ms",
    );
    with(
        "advert_interval = \"5ms\"\n",
        "t.toml:6:19: vrrp[vi].advert_interval: with version 3 (the default), advert_interval must be between 10ms and 40.95s, got 5ms",
    );
    with(
        "version = 3\nadvert_interval = \"41s\"\n",
        "t.toml:7:19: vrrp[vi].advert_interval: with version 3, advert_interval must be between 10ms and 40.95s, got 41s",
    );
    with(
        "version = 2\nadvert_interval = \"1.5s\"\n",
        "t.toml:7:19: vrrp[vi].advert_interval: with version 2, advert_interval must be whole seconds from 1s to 255s (VRRPv2 adverts carry it in seconds), got 1.5s; version = 3 allows steps of 10ms",
    );
    with(
        "version = 2\nadvert_interval = \"256s\"\n",
        "t.toml:7:19: vrrp[vi].advert_interval: with version 2, advert_interval must be whole seconds from 1s to 255s (VRRPv2 adverts carry it in seconds), got 256s; version = 3 allows steps of 10ms",
    );
    with(
        "advert_interval = \"0s\"\n",
        "t.toml:6:19: vrrp[vi].advert_interval: duration must be greater than zero; write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"",
    );
    // A bad version is one error, not also a complaint about the interval.
    with(
        "version = 5\nadvert_interval = \"15ms\"\n",
        "t.toml:6:11: vrrp[vi].version: VRRP version must be 2 or 3, got 5",
    );
}

#[test]
fn durations_where_zero_is_allowed() {
    with(
        "preempt_delay = \"0\"\n",
        "t.toml:6:17: vrrp[vi].preempt_delay: missing unit in duration \"0\"; write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"",
    );
    with(
        "garp_master_delay = 0\n",
        "t.toml:6:21: vrrp[vi].garp_master_delay: expected a duration string such as \"0s\", \"2s\" or \"500ms\", found an integer",
    );
    with(
        "garp_master_refresh = \"0s\"\n",
        "t.toml:6:23: vrrp[vi].garp_master_refresh: a refresh period of 0 would announce without pause; leave garp_master_refresh out to turn refreshing off",
    );
    with(
        "garp_master_refresh = \"5x\"\n",
        "t.toml:6:23: vrrp[vi].garp_master_refresh: unknown unit \"x\" in duration \"5x\"; write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"",
    );
    with(
        "preempt = false\npreempt_delay = \"10s\"\n",
        "t.toml:7:1: vrrp[vi].preempt_delay: `preempt_delay` has no effect with preempt = false (this node never takes over from a working master); remove one of them",
    );
}

#[test]
fn virtual_ips() {
    let src = |vips: &str| {
        format!("[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = {vips}\n")
    };
    let at = |col: usize, i: usize, message: &str| {
        format!("t.toml:5:{col}: vrrp[vi].virtual_ips[{i}]: {message}")
    };
    one(
        &src("[]"),
        "t.toml:5:15: vrrp[vi].virtual_ips: no virtual IPs; add at least one, e.g. [\"198.51.100.10/24\"]",
    );
    one(
        &src("\"198.51.100.10\""),
        "t.toml:5:15: vrrp[vi].virtual_ips: expected an array of strings such as [\"198.51.100.10/24\"], found a string",
    );
    one(
        &src("[198]"),
        &at(16, 0, "expected a string, found an integer"),
    );
    let bad = [
        ("lb.example.com", "invalid virtual IP \"lb.example.com\"; write an IP address with an optional prefix length, e.g. \"198.51.100.10/24\" or \"2001:db8::10/64\""),
        ("198.51.100.10:80", "virtual IP \"198.51.100.10:80\" has a port; write the address alone, e.g. \"198.51.100.10/24\""),
        ("[2001:db8::10]", "invalid virtual IP \"[2001:db8::10]\"; write an IP address with an optional prefix length, e.g. \"198.51.100.10/24\" or \"2001:db8::10/64\""),
        ("198.51.100.10/33", "invalid prefix length in \"198.51.100.10/33\": must be 0 to 32 for an IPv4 address"),
        ("198.51.100.10/", "invalid prefix length in \"198.51.100.10/\": must be 0 to 32 for an IPv4 address"),
        ("198.51.100.10/+8", "invalid prefix length in \"198.51.100.10/+8\": must be 0 to 32 for an IPv4 address"),
        ("198.51.100.10/255.255.255.0", "invalid prefix length in \"198.51.100.10/255.255.255.0\": must be 0 to 32 for an IPv4 address"),
        ("2001:db8::10/129", "invalid prefix length in \"2001:db8::10/129\": must be 0 to 128 for an IPv6 address"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address; a virtual IP must be a unicast address other hosts can reach"),
        ("::/0", ":: is the unspecified address; a virtual IP must be a unicast address other hosts can reach"),
        ("224.0.0.18", "224.0.0.18 is a multicast address; a virtual IP must be a unicast address other hosts can reach"),
        ("ff02::12", "ff02::12 is a multicast address; a virtual IP must be a unicast address other hosts can reach"),
        ("127.0.0.10", "127.0.0.10 is a loopback address, which never leaves this machine; a virtual IP must be a unicast address other hosts can reach"),
        ("::1", "::1 is a loopback address, which never leaves this machine; a virtual IP must be a unicast address other hosts can reach"),
        ("255.255.255.255", "255.255.255.255 is the broadcast address; a virtual IP must be a unicast address other hosts can reach"),
        ("::ffff:198.51.100.10", "::ffff:198.51.100.10 is an IPv4-mapped IPv6 address (write 198.51.100.10 instead); a virtual IP must be a unicast address other hosts can reach"),
    ];
    for (vip, message) in bad {
        one(&src(&format!("[\"{vip}\"]")), &at(16, 0, message));
    }
    one(
        &src("[\"198.51.100.10/24\", \"198.51.100.10/32\"]"),
        &at(
            36,
            1,
            "virtual IP 198.51.100.10 is listed twice (first as vrrp[vi].virtual_ips[0])",
        ),
    );
    one(
        &src("[\"198.51.100.10/24\", \"2001:db8::10\"]"),
        &at(36, 1, "2001:db8::10 is IPv6 but the first virtual IP (198.51.100.10) is IPv4; use one [[vrrp]] per address family"),
    );
    one(
        &src("[\"2001:db8::10\", \"198.51.100.10\"]"),
        &at(32, 1, "198.51.100.10 is IPv4 but the first virtual IP (2001:db8::10) is IPv6; use one [[vrrp]] per address family"),
    );
    // VRRPv2 is IPv4 only: said once, at the first address.
    one(
        "[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nversion = 2\nvirtual_ips = [\"2001:db8::10\", \"2001:db8::11\"]\n",
        "t.toml:6:16: vrrp[vi].virtual_ips[0]: 2001:db8::10 is IPv6, and VRRP version 2 carries IPv4 only; use version = 3 for IPv6",
    );
    let many: Vec<String> = (0..256)
        .map(|i| format!("\"198.51.{}.{}\"", 100 + i / 200, 1 + i % 200))
        .collect();
    one(
        &src(&format!("[{}]", many.join(", "))),
        "t.toml:5:15: vrrp[vi].virtual_ips: 256 virtual IPs; an instance can have at most 255 (an advert's address count is one byte)",
    );
    parse(&src(&format!("[{}]", many[..255].join(", "))));
}

#[test]
fn unicast_peers() {
    let at = |col: usize, i: usize, message: &str| {
        format!("t.toml:6:{col}: vrrp[vi].unicast_peers[{i}]: {message}")
    };
    with(
        "unicast_peers = []\n",
        "t.toml:6:17: vrrp[vi].unicast_peers: empty list; leave unicast_peers out to send adverts by multicast, or list the other nodes' addresses",
    );
    with(
        "unicast_peers = \"198.51.100.2\"\n",
        "t.toml:6:17: vrrp[vi].unicast_peers: expected an array of strings such as [\"198.51.100.2\"], found a string",
    );
    let bad = [
        ("198.51.100.2:112", "invalid peer address \"198.51.100.2:112\"; write another node's IP address, e.g. \"198.51.100.2\" or \"2001:db8::2\" (no port, no prefix length)"),
        ("198.51.100.2/24", "invalid peer address \"198.51.100.2/24\"; write another node's IP address, e.g. \"198.51.100.2\" or \"2001:db8::2\" (no port, no prefix length)"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address; list the other nodes' own addresses (leave unicast_peers out to use multicast)"),
        ("224.0.0.18", "224.0.0.18 is a multicast address; list the other nodes' own addresses (leave unicast_peers out to use multicast)"),
        ("2001:db8::2", "peer 2001:db8::2 is IPv6 but this instance's virtual IPs are IPv4; adverts are sent in the virtual IPs' address family"),
        ("198.51.100.10", "peer 198.51.100.10 is one of this instance's virtual IPs; list the other nodes' own addresses"),
    ];
    for (peer, message) in bad {
        with(
            &format!("unicast_peers = [\"{peer}\"]\n"),
            &at(18, 0, message),
        );
    }
    with(
        "unicast_peers = [\"198.51.100.2\", \"198.51.100.2\"]\n",
        &at(
            34,
            1,
            "peer 198.51.100.2 is listed twice (first as vrrp[vi].unicast_peers[0])",
        ),
    );
    with(
        "unicast_peers = [2]\n",
        &at(18, 0, "expected a string, found an integer"),
    );
}

#[test]
fn checksum() {
    with(
        "checksum = \"rfc9586\"\n",
        "t.toml:6:12: vrrp[vi].checksum: unknown checksum `rfc9586`; did you mean `rfc9568`? valid values: keepalived, rfc9568",
    );
    with(
        "checksum = \"none\"\n",
        "t.toml:6:12: vrrp[vi].checksum: unknown checksum `none`; valid values: keepalived, rfc9568",
    );
    with(
        "version = 2\nchecksum = \"keepalived\"\n",
        "t.toml:7:1: vrrp[vi].checksum: `checksum` has no effect with version = 2 (only VRRPv3 over IPv4 has two checksum conventions); remove it",
    );
    one(
        "[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"2001:db8::10\"]\nchecksum = \"rfc9568\"\n",
        "t.toml:6:1: vrrp[vi].checksum: `checksum` has no effect with IPv6 virtual IPs (the IPv6 pseudo-header is always included); remove it",
    );
}

#[test]
fn duplicates_across_instances() {
    let second = |name: &str, interface: &str, vrid: u8, vip: &str| {
        format!("[[vrrp]]\nname = \"{name}\"\ninterface = \"{interface}\"\nvrid = {vrid}\nvirtual_ips = [\"{vip}\"]\n")
    };
    // Same interface, vrid and family.
    one(
        &format!("{BASE}{}", second("other", "eth0", 51, "198.51.100.20")),
        "t.toml:9:8: vrrp[other].vrid: vrid 51 on eth0 (IPv4) is already used by vrrp `vi` on line 4; each virtual router needs its own vrid per interface and address family",
    );
    // The same VIP in two instances.
    one(
        &format!("{BASE}{}", second("other", "eth1", 52, "198.51.100.10/32")),
        "t.toml:10:16: vrrp[other].virtual_ips[0]: virtual IP 198.51.100.10 is already managed by vrrp `vi` on line 5; an address can belong to one instance only",
    );
    // Both, under a duplicate name: the later table is named by its index.
    assert_eq!(
        errors(&format!("{BASE}{}", second("vi", "eth0", 51, "198.51.100.10"))),
        [
            "t.toml:7:8: vrrp[1].name: duplicate vrrp name `vi`; first defined on line 2",
            "t.toml:9:8: vrrp[1].vrid: vrid 51 on eth0 (IPv4) is already used by vrrp `vi` on line 4; each virtual router needs its own vrid per interface and address family",
            "t.toml:10:16: vrrp[1].virtual_ips[0]: virtual IP 198.51.100.10 is already managed by vrrp `vi` on line 5; an address can belong to one instance only",
        ]
    );
    // The same vrid on another interface, or in the other family, is another virtual router.
    let cfg = parse(&format!(
        "{BASE}{}{}",
        second("eth1", "eth1", 51, "198.51.100.20"),
        second("v6", "eth0", 51, "2001:db8::10")
    ));
    assert_eq!(cfg.vrrp.len(), 3);
}

/// The two-node example of docs/configuration.md, with a pool so the service is complete.
#[test]
fn docs_pair_example_parses() {
    let node = |priority: u8, peer: &str| {
        format!(
            "[[vrrp]]\nname = \"www\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             virtual_ips = [\"198.51.100.10/24\"]\nunicast_peers = [\"{peer}\"]\n\
             [[service]]\nname = \"www\"\nlisten = \"198.51.100.10:80\"\npool = \"web\"\n\
             [[pool]]\nname = \"web\"\nbackends = [{{ address = \"198.51.100.21:8080\" }}]\n"
        )
    };
    let a = parse(&node(150, "198.51.100.3"));
    let b = parse(&node(100, "198.51.100.2"));
    assert_eq!((a.vrrp[0].priority, b.vrrp[0].priority), (150, 100));
    assert_eq!(a.vrrp[0].vrid, b.vrrp[0].vrid);
    assert_eq!(a.vrrp[0].virtual_ips, [vip("198.51.100.10", 24)]);
}

/// Two pools, `web` and `api`, on lines 1..=6: before `BASE`, so the tracking keys on line 12
/// belong to the instance.
const POOLS: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n[[pool]]\nname = \"api\"\nbackends = [{ address = \"127.0.0.1:8002\" }]\n";

/// The pools, `BASE`, then `extra` on line 12: exactly the one error `want`.
#[track_caller]
fn tracking(extra: &str, want: &str) {
    one(&format!("{POOLS}{BASE}{extra}"), want);
}

#[test]
fn tracking_valid_forms() {
    let cfg = parse(&format!(
        "{BASE}track_interfaces = [\"eth0\", {{ name = \"eth1\" }}, {{ name = \"eth2\", weight = 254 }}, {{ name = \"eth3\", weight = -254 }}]\ntrack_pools = []\n{POOLS}"
    ));
    assert_eq!(
        cfg.vrrp[0].track_interfaces,
        [
            tracked("eth0", None),
            tracked("eth1", None),
            tracked("eth2", Some(254)),
            tracked("eth3", Some(-254)),
        ]
    );
    assert!(cfg.vrrp[0].track_pools.is_empty());
    // The same pool may be tracked by several instances.
    let two = format!(
        "{BASE}track_pools = [\"web\"]\n{}track_pools = [{{ name = \"web\", weight = -10 }}]\n{POOLS}",
        "[[vrrp]]\nname = \"v2\"\ninterface = \"eth0\"\nvrid = 52\nvirtual_ips = [\"198.51.100.11/24\"]\n"
    );
    let cfg = parse(&two);
    assert_eq!(cfg.vrrp[1].track_pools, [tracked("web", Some(-10))]);
}

#[test]
fn tracking_errors() {
    let cases = [
        // Pools that do not exist.
        ("track_pools = [\"wbe\"]", "t.toml:12:16: vrrp[vi].track_pools[0]: no pool named `wbe`; did you mean `web`?"),
        ("track_pools = [\"db\"]", "t.toml:12:16: vrrp[vi].track_pools[0]: no pool named `db`; defined pools: web, api"),
        ("track_pools = [{ name = \"db\", weight = -10 }]", "t.toml:12:25: vrrp[vi].track_pools[0].name: no pool named `db`; defined pools: web, api"),
        // Interface names.
        ("track_interfaces = [\"eth0:1\"]", "t.toml:12:21: vrrp[vi].track_interfaces[0]: invalid interface name \"eth0:1\": it contains `:` (\"eth0:1\" is an address label, not an interface; write the interface itself, e.g. \"eth0\")"),
        ("track_interfaces = [{ name = \"abcdefghijklmnop\" }]", "t.toml:12:30: vrrp[vi].track_interfaces[0].name: invalid interface name \"abcdefghijklmnop\": it is longer than 15 bytes, the Linux limit"),
        // Weights.
        ("track_interfaces = [{ name = \"eth1\", weight = 0 }]", "t.toml:12:47: vrrp[vi].track_interfaces[0].weight: a weight of 0 changes nothing; give a negative weight to lower the priority while the object is failed, or leave `weight` out to put the instance in FAULT"),
        ("track_interfaces = [{ name = \"eth1\", weight = -255 }]", "t.toml:12:47: vrrp[vi].track_interfaces[0].weight: must be between -254 and 254, got -255"),
        ("track_pools = [{ name = \"web\", weight = 255 }]", "t.toml:12:41: vrrp[vi].track_pools[0].weight: must be between -254 and 254, got 255"),
        ("track_pools = [{ name = \"web\", weight = \"-10\" }]", "t.toml:12:41: vrrp[vi].track_pools[0].weight: expected an integer, found a string"),
        // Duplicates.
        ("track_interfaces = [\"eth1\", { name = \"eth1\", weight = -5 }]", "t.toml:12:38: vrrp[vi].track_interfaces[1].name: `eth1` is listed twice (first as vrrp[vi].track_interfaces[0])"),
        ("track_pools = [\"web\", \"web\"]", "t.toml:12:23: vrrp[vi].track_pools[1]: `web` is listed twice (first as vrrp[vi].track_pools[0])"),
        // Shapes.
        ("track_pools = \"web\"", "t.toml:12:15: vrrp[vi].track_pools: expected an array of names or { name = ..., weight = ... } tables, e.g. [\"eth1\", { name = \"eth2\", weight = -20 }], found a string"),
        ("track_pools = [1]", "t.toml:12:16: vrrp[vi].track_pools[0]: expected the name of a pool or a { name = ..., weight = ... } table, found an integer"),
        ("track_interfaces = [{ weight = -5 }]", "t.toml:12:21: vrrp[vi].track_interfaces[0].name: missing required key `name` in a tracking entry"),
        ("track_interfaces = [{ name = \"eth1\", wieght = -5 }]", "t.toml:12:38: vrrp[vi].track_interfaces[0].wieght: unknown key `wieght`; did you mean `weight`?"),
    ];
    for (line, want) in cases {
        tracking(&format!("{line}\n"), want);
    }
    // Without any [[pool]].
    with(
        "track_pools = [\"web\"]\n",
        "t.toml:6:16: vrrp[vi].track_pools[0]: no pool named `web`; no [[pool]] is defined",
    );
    // Every bad entry is reported, not only the first.
    assert_eq!(
        errors(&format!("{POOLS}{BASE}track_pools = [\"db\", {{ name = \"web\", weight = 0 }}]\n")),
        [
            "t.toml:12:16: vrrp[vi].track_pools[0]: no pool named `db`; defined pools: web, api",
            "t.toml:12:47: vrrp[vi].track_pools[1].weight: a weight of 0 changes nothing; give a negative weight to lower the priority while the object is failed, or leave `weight` out to put the instance in FAULT",
        ]
    );
}

#[test]
fn scripts_notify_quorum_password_errors() {
    with(
        "track_scripts = [\"chk\"]\n",
        "t.toml:6:18: vrrp[vi].track_scripts[0]: no vrrp_script named `chk`; no [[vrrp_script]] is defined; define the check as [[vrrp_script]] with a name and a command",
    );
    one(
        &format!("{BASE}track_scripts = [\"chk_ngnix\"]\n[[vrrp_script]]\nname = \"chk_nginx\"\ncommand = [\"/bin/true\"]\n"),
        "t.toml:6:18: vrrp[vi].track_scripts[0]: no vrrp_script named `chk_ngnix`; did you mean `chk_nginx`?",
    );
    one(
        "[[vrrp_script]]\nname = \"c\"\n",
        "t.toml:1:1: vrrp_script[c].command: missing required key `command` in [[vrrp_script]]",
    );
    one(
        "[[vrrp_script]]\nname = \"c\"\ncommand = [\"/nonexistent/chk\"]\n",
        "t.toml:3:12: vrrp_script[c].command[0]: command `/nonexistent/chk` not found",
    );
    with(
        "notify = \"/bin/true\"\n",
        "t.toml:6:10: vrrp[vi].notify: expected a table of commands per state, e.g. { master = [\"/usr/local/bin/notify\", \"master\"], backup = [...] }, found a string",
    );
    with(
        "notify = { mastr = [\"/bin/true\"] }\n",
        "t.toml:6:12: vrrp[vi].notify.mastr: unknown key `mastr`; did you mean `master`?",
    );
    with(
        "notify = { master = \"/bin/true x\" }\n",
        "t.toml:6:21: vrrp[vi].notify.master: expected an array of strings such as [\"/usr/local/bin/check-db\", \"--port\", \"5432\"] (no shell runs it: one string per argument), found a string",
    );
    with(
        "quorum = { witnesses = [] }\n",
        "t.toml:6:24: vrrp[vi].quorum.witnesses: no witnesses: list at least one address this node must reach to hold master, or remove `quorum`",
    );
    with(
        "quorum = { witnesses = [\"gw\"] }\n",
        "t.toml:6:25: vrrp[vi].quorum.witnesses[0]: invalid witness \"gw\": write an IP address to ping (\"203.0.113.1\") or an address with a port to connect to (\"203.0.113.1:443\", \"[2001:db8::1]:443\")",
    );
    with(
        "quorum = { witnesses = [\"198.51.100.1\"], need = 2 }\n",
        "t.toml:6:49: vrrp[vi].quorum.need: need = 2 but only 1 witness(es) are listed; the node could never hold master",
    );
    with(
        "quorum = { witnesses = [\"198.51.100.1\", \"198.51.100.1\"] }\n",
        "t.toml:6:41: vrrp[vi].quorum.witnesses[1]: witness 198.51.100.1 is listed twice",
    );
    with(
        "password = \"secret\"\n",
        "t.toml:6:1: vrrp[vi].password: `password` needs version = 2: VRRPv3 has no authentication (RFC 5798 removed it as it protects nothing; use unicast_peers or a separate VLAN)",
    );
    with(
        "version = 2\npassword = \"too-long-9\"\n",
        "t.toml:7:12: vrrp[vi].password: a VRRPv2 password is 1 to 8 bytes (RFC 2338 5.3.6), got 10",
    );
    // Defaults: majority of witnesses; notify keeps its timeout; v2 password kept.
    let cfg = parse(&format!(
        "{BASE}version = 2\npassword = \"s3cret\"\nquorum = {{ witnesses = [\"198.51.100.1\", \"198.51.100.2\", \"198.51.100.3:22\"] }}\n"
    ));
    let q = cfg.vrrp[0].quorum.as_ref().expect("quorum");
    assert_eq!(q.need, 2);
    assert_eq!(
        (q.interval, q.timeout, q.fall, q.rise),
        (Quorum::DEFAULT_INTERVAL, Quorum::DEFAULT_TIMEOUT, 3, 2)
    );
    assert_eq!(cfg.vrrp[0].password.as_deref(), Some("s3cret"));
}

/// The warnings about listen addresses and instances (pools have their own, tested in
/// spof.rs).
fn warnings(src: &str) -> Vec<String> {
    match check_str(src, "t.toml") {
        Ok((_, w)) => w
            .iter()
            .filter(|e| !e.key.starts_with("pool["))
            .map(|e| e.to_string())
            .collect(),
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

#[test]
fn single_points_of_failure_are_warnings() {
    let pool = "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n";
    // No [[vrrp]]: the first service's listen address is named.
    assert_eq!(
        warnings(&format!("{pool}[[service]]\nname = \"s\"\nlisten = \"198.51.100.5:80\"\npool = \"p\"\n")),
        ["t.toml:6:10: service[s].listen: single point of failure: no [[vrrp]] instance, so 198.51.100.5:80 and every other listen address live on this node only and are gone when it fails; share a virtual IP with a second node in [[vrrp]] and listen on it"]
    );
    // A service on the VIP, one on every address, one on loopback: fine; one on a node
    // address: warned. The multicast instance gets its note; with unicast peers, none.
    let src = format!(
        "{pool}[[service]]\nname = \"vip\"\nlisten = \"198.51.100.10:80\"\npool = \"p\"\n\
         [[service]]\nname = \"any\"\nlisten = \"0.0.0.0:81\"\npool = \"p\"\n\
         [[service]]\nname = \"lo\"\nlisten = \"127.0.0.1:82\"\npool = \"p\"\n\
         [[service]]\nname = \"node\"\nlisten = \"198.51.100.5:83\"\npool = \"p\"\n{BASE}"
    );
    assert_eq!(
        warnings(&src),
        [
            "t.toml:18:10: service[node].listen: single point of failure: 198.51.100.5 is not a virtual IP of any [[vrrp]] instance, so clients using it lose this service when this node fails; listen on a virtual IP (or on every address)",
            "t.toml:20:1: vrrp[vi]: no peer is configured (multicast finds peers at run time, which `tandem check` cannot see): if no other node runs vrid 51 on its `eth0`, 198.51.100.10/24 cannot fail over; list the other nodes in `unicast_peers` to make this checkable, and check `tandem status` on both nodes",
        ]
    );
    assert!(warnings(&format!("{BASE}unicast_peers = [\"198.51.100.2\"]\n")).is_empty());
    // Without services or instances there is nothing to warn about.
    assert!(warnings("").is_empty());
}
