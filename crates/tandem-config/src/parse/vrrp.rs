//! The `[[vrrp]]` tables: virtual routers that move virtual IPs between tandem nodes.
//!
//! Besides the usual per-key checks, the values of one table are checked against each other
//! (the advert interval against the version, the checksum against version and family, the
//! peers against the virtual IPs' family) and the tables against each other (one virtual router
//! per interface, vrid and family; one owner per virtual IP), and `track_pools` against the
//! `[[pool]]` tables.

use super::*;

const VRRP_KEYS: &[&str] = &[
    "name",
    "interface",
    "vrid",
    "priority",
    "version",
    "advert_interval",
    "virtual_ips",
    "preempt",
    "preempt_delay",
    "accept",
    "unicast_peers",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "checksum",
    "realtime_priority",
    "track_interfaces",
    "track_pools",
    "track_scripts",
    "notify",
    "quorum",
    "use_vmac",
    "password",
];

/// Keys of a `{ name = ..., weight = ... }` tracking entry.
const TRACK_KEYS: &[&str] = &["name", "weight"];

/// keepalived's names for keys tandem spells differently, too far off for "did you mean".
const KEEPALIVED_KEYS: &[(&str, &str)] = &[
    (
        "virtual_router_id",
        "unknown key `virtual_router_id` (keepalived's name); tandem calls it `vrid`",
    ),
    (
        "advert_int",
        "unknown key `advert_int` (keepalived's name); tandem calls it `advert_interval` and takes a duration, e.g. advert_interval = \"1s\"",
    ),
    (
        "virtual_ipaddress",
        "unknown key `virtual_ipaddress` (keepalived's name); tandem calls it `virtual_ips`, e.g. virtual_ips = [\"198.51.100.10/24\"]",
    ),
    (
        "nopreempt",
        "unknown key `nopreempt` (keepalived's name); write preempt = false",
    ),
    (
        "auth",
        "unknown key `auth`: VRRPv2 simple authentication is written password = \"...\" (at most 8 bytes); VRRPv3 has no authentication (RFC 5798 removed it)",
    ),
    (
        "authentication",
        "unknown key `authentication` (keepalived's name): VRRPv2 simple authentication is written password = \"...\" (at most 8 bytes); VRRPv3 has no authentication (RFC 5798 removed it)",
    ),
    (
        "track_script",
        "unknown key `track_script` (keepalived's name); tandem calls it `track_scripts` and takes names of [[vrrp_script]] tables",
    ),
    (
        "state",
        "unknown key `state`: tandem has no initial state; the node with the highest `priority` becomes master, so give the preferred node the higher priority",
    ),
];

/// What the error messages suggest for a virtual IP.
const VIP_FORM: &str =
    "write an IP address with an optional prefix length, e.g. \"198.51.100.10/24\" or \"2001:db8::10/64\"";

/// One table as parsed, with what the cross-table checks need.
struct Parsed {
    vrrp: Vrrp,
    /// How messages about this instance name it: vrrp `a`, or `vrrp[0]` without a valid name.
    owner: String,
    /// Its key path: `vrrp[a]`, or `vrrp[0]`.
    path: String,
    /// `(interface, vrid, is IPv6)` and where `vrid` is written, when all three are valid.
    router: Option<((String, u8, bool), usize)>,
    /// Each valid virtual IP and where it is written.
    vips: Vec<(IpAddr, usize, String)>,
}

/// Warnings for addresses that do not move when this node fails: services when no
/// `[[vrrp]]` exists, services on a specific address that is no virtual IP, and instances
/// whose peer `tandem check` cannot see (multicast: nothing in the file names the other
/// node).
pub(super) fn single_points_of_failure(
    cx: &mut Cx,
    vrrps: &[(Vrrp, usize, String)],
    listens: &[(SocketAddr, usize, String)],
) {
    if vrrps.is_empty() {
        if let Some((addr, at, path)) = listens.first() {
            cx.warn(
                *at,
                path,
                format!("single point of failure: no [[vrrp]] instance, so {addr} and every other listen address live on this node only and are gone when it fails; share a virtual IP with a second node in [[vrrp]] and listen on it"),
            );
        }
        return;
    }
    for (addr, at, path) in listens {
        let ip = addr.ip();
        if ip.is_unspecified() || ip.is_loopback() {
            continue;
        }
        let is_vip = vrrps
            .iter()
            .any(|(v, _, _)| v.virtual_ips.iter().any(|x| x.address == ip));
        if !is_vip {
            cx.warn(
                *at,
                path,
                format!("single point of failure: {ip} is not a virtual IP of any [[vrrp]] instance, so clients using it lose this service when this node fails; listen on a virtual IP (or on every address)"),
            );
        }
    }
    for (v, at, path) in vrrps {
        if v.unicast_peers.is_empty() {
            let vips = v
                .virtual_ips
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            cx.warn(
                *at,
                path,
                format!("no peer is configured (multicast finds peers at run time, which `tandem check` cannot see): if no other node runs vrid {} on its `{}`, {vips} cannot fail over; list the other nodes in `unicast_peers` to make this checkable, and check `tandem status` on both nodes", v.vrid, v.interface),
            );
        }
    }
}

/// Every `[[vrrp]]` table, validated.
pub(super) fn vrrps(
    cx: &mut Cx,
    v: &Value,
    pools: &[ParsedPool],
    scripts: &(Vec<VrrpScript>, bool),
) -> Vec<(Vrrp, usize, String)> {
    let Ok(items) = array_of_tables(cx, "vrrp", v, "write each instance as [[vrrp]]") else {
        return Vec::new();
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut routers: HashMap<(String, u8, bool), (String, usize)> = HashMap::new();
    let mut vip_owners: HashMap<IpAddr, (String, usize)> = HashMap::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(t) = table(cx, &format!("vrrp[{i}]"), item, "[[vrrp]]") else {
            continue;
        };
        let p = instance(cx, &t, i, &mut seen, pools, scripts);

        if let Some((key, at)) = p.router {
            if let Some((first, line)) = routers.get(&key) {
                let (interface, vrid, v6) = &key;
                let family = if *v6 { "IPv6" } else { "IPv4" };
                cx.error(
                    at,
                    &format!("{}.vrid", p.path),
                    format!("vrid {vrid} on {interface} ({family}) is already used by {first} on line {line}; each virtual router needs its own vrid per interface and address family"),
                );
            } else {
                let line = cx.line(at);
                routers.insert(key, (p.owner.clone(), line));
            }
        }
        for (ip, at, path) in &p.vips {
            if let Some((first, line)) = vip_owners.get(ip) {
                cx.error(
                    *at,
                    path,
                    format!("virtual IP {ip} is already managed by {first} on line {line}; an address can belong to one instance only"),
                );
            } else {
                let line = cx.line(*at);
                vip_owners.insert(*ip, (p.owner.clone(), line));
            }
        }
        out.push((p.vrrp, t.at, p.path));
    }
    out
}

fn instance(
    cx: &mut Cx,
    whole: &Table,
    i: usize,
    seen: &mut HashMap<String, usize>,
    pools: &[ParsedPool],
    (scripts, broken_script_names): &(Vec<VrrpScript>, bool),
) -> Parsed {
    // keepalived's keys get their own message; the rest of the table goes through
    // the ordinary unknown-key check, which then neither suggests nor lists them.
    let mut map = whole.map.clone();
    let mut special = Vec::new();
    for (key, message) in KEEPALIVED_KEYS.iter() {
        if let Some((k, _)) = map.remove_entry(*key) {
            special.push((k.span().start, *key, *message));
        }
    }
    let mut t = Table {
        map: &map,
        at: whole.at,
        path: whole.path.clone(),
        what: whole.what,
        suggested: Vec::new(),
    };
    let name = named(cx, &mut t, "vrrp", VRRP_KEYS, seen);
    for (at, key, message) in special {
        cx.error(at, &t.key_path(key), message);
    }
    // A duplicate name keeps the index path, so name the instance the same way.
    let owner = if t.path == format!("vrrp[{i}]") {
        t.path.clone()
    } else {
        format!("vrrp `{}`", name.clone().unwrap_or_default())
    };

    let interface = t.req(cx, "interface", interface);
    let vrid = t.req(cx, "vrid", |cx, p, v| integer(cx, p, v, 1, 255));
    let priority = t.opt(cx, "priority", |cx, p, v| integer(cx, p, v, 1, 255));
    let version = t.opt(cx, "version", version);
    let version_default = matches!(version, Ok(None));
    let version = version.map(|v| v.unwrap_or(Vrrp::DEFAULT_VERSION));

    let advert_interval = t.opt(cx, "advert_interval", duration);
    if let (Ok(Some(d)), Ok(version), Some(v)) =
        (&advert_interval, &version, t.get("advert_interval"))
    {
        if let Err(m) = check_advert_interval(*d, *version, version_default) {
            cx.error(v.span().start, &t.key_path("advert_interval"), m);
        }
    }

    let vips = t
        .req(cx, "virtual_ips", |cx, p, v| {
            Ok(virtual_ips(cx, p, v, version.as_ref().ok().copied()))
        })
        .unwrap_or_default();
    // The family of the instance: that of its first valid virtual IP.
    let v6 = vips.first().map(|(vip, _, _)| vip.address.is_ipv6());

    let preempt = t.opt(cx, "preempt", boolean);
    let preempt_delay = t.opt(cx, "preempt_delay", duration_or_zero);
    if let (Ok(Some(false)), Some(at)) = (&preempt, t.key_at("preempt_delay")) {
        cx.error(
            at,
            &t.key_path("preempt_delay"),
            "`preempt_delay` has no effect with preempt = false (this node never takes over from a working master); remove one of them",
        );
    }
    let accept = t.opt(cx, "accept", boolean);
    let unicast_peers = t
        .opt(cx, "unicast_peers", |cx, p, v| {
            let vip_addrs: Vec<IpAddr> = vips.iter().map(|(vip, _, _)| vip.address).collect();
            unicast_peers(cx, p, v, v6, &vip_addrs)
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    let garp_master_delay = t.opt(cx, "garp_master_delay", duration_or_zero);
    let (lo, hi) = Vrrp::GARP_MASTER_REPEAT_RANGE;
    let garp_master_repeat = t.opt(cx, "garp_master_repeat", |cx, p, v| {
        integer(cx, p, v, lo.into(), hi.into())
    });
    let garp_master_refresh = t
        .opt(cx, "garp_master_refresh", |cx, p, v| {
            let d = duration_or_zero(cx, p, v)?;
            if d.is_zero() {
                return Err(cx.error(
                    v.span().start,
                    p,
                    "a refresh period of 0 would announce without pause; leave garp_master_refresh out to turn refreshing off",
                ));
            }
            Ok(d)
        })
        .ok()
        .flatten();

    let checksum = t.opt(cx, "checksum", checksum);
    if let (Ok(Some(_)), Some(at)) = (&checksum, t.key_at("checksum")) {
        let why = match (&version, v6) {
            (Ok(VrrpVersion::V2), _) => Some("`checksum` has no effect with version = 2 (only VRRPv3 over IPv4 has two checksum conventions); remove it"),
            (_, Some(true)) => Some("`checksum` has no effect with IPv6 virtual IPs (the IPv6 pseudo-header is always included); remove it"),
            _ => None,
        };
        if let Some(why) = why {
            cx.error(at, &t.key_path("checksum"), why);
        }
    }
    let (_, hi) = Vrrp::REALTIME_PRIORITY_RANGE;
    let realtime_priority = match t.opt(cx, "realtime_priority", |cx, p, v| {
        integer(cx, p, v, 0, hi.into())
    }) {
        // 0: explicitly off.
        Ok(Some(n)) => u8::try_from(n).ok().filter(|n| *n > 0),
        // Sub-second adverts on a busy node miss their deadlines without it (measured: 2 of
        // 6 runs of 60 s at 50 ms adverts under full proxy load made a false takeover).
        Ok(None) if matches!(advert_interval, Ok(Some(d)) if d < Duration::from_secs(1)) => {
            Some(Vrrp::DEFAULT_REALTIME_PRIORITY)
        }
        _ => None,
    };

    let track_interfaces = t
        .opt(cx, "track_interfaces", |cx, p, v| {
            tracked(cx, p, v, "an interface", |cx, p, v| {
                self::interface(cx, p, v)
            })
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    let track_pools = t
        .opt(cx, "track_pools", |cx, p, v| {
            tracked(cx, p, v, "a pool", |cx, p, v| tracked_pool(cx, p, v, pools))
        })
        .ok()
        .flatten()
        .unwrap_or_default();

    let track_scripts = t
        .opt(cx, "track_scripts", |cx, p, v| {
            tracked(cx, p, v, "a script", |cx, p, v| {
                vrrp_ops::tracked_script(cx, p, v, scripts, *broken_script_names)
            })
        })
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            // An entry without a weight of its own takes the script's.
            let script_weight = scripts
                .iter()
                .find(|s| s.name == t.name)
                .and_then(|s| s.weight);
            Tracked {
                weight: t.weight.or(script_weight),
                ..t
            }
        })
        .collect();
    let notify = t
        .opt(cx, "notify", vrrp_ops::notify)
        .ok()
        .flatten()
        .unwrap_or_default();
    let quorum = t.opt(cx, "quorum", vrrp_ops::quorum).ok().flatten();
    let use_vmac = t.opt(cx, "use_vmac", boolean);
    let password = t.opt(cx, "password", |cx, p, v| {
        let s = string(cx, p, v)?;
        if s.is_empty() || s.len() > 8 {
            return Err(cx.error(
                v.span().start,
                p,
                format!(
                    "a VRRPv2 password is 1 to 8 bytes (RFC 2338 5.3.6), got {}",
                    s.len()
                ),
            ));
        }
        Ok(s.to_string())
    });
    if let (Ok(Some(_)), Ok(VrrpVersion::V3), Some(at)) =
        (&password, &version, t.key_at("password"))
    {
        cx.error(
            at,
            &t.key_path("password"),
            "`password` needs version = 2: VRRPv3 has no authentication (RFC 5798 removed it as it protects nothing; use unicast_peers or a separate VLAN)",
        );
    }

    let router = match (&interface, &vrid, v6, t.get("vrid")) {
        (Ok(interface), Ok(vrid), Some(v6), Some(v)) => Some((
            (interface.clone(), u8::try_from(*vrid).unwrap_or(0), v6),
            v.span().start,
        )),
        _ => None,
    };
    let vip_positions = vips
        .iter()
        .map(|(vip, at, path)| (vip.address, *at, path.clone()))
        .collect();

    let vrrp = Vrrp {
        name: name.unwrap_or_default(),
        interface: interface.unwrap_or_default(),
        vrid: vrid.ok().and_then(|n| u8::try_from(n).ok()).unwrap_or(1),
        priority: or(priority, Vrrp::DEFAULT_PRIORITY.into())
            .try_into()
            .unwrap_or(Vrrp::DEFAULT_PRIORITY),
        version: version.unwrap_or(Vrrp::DEFAULT_VERSION),
        advert_interval: or(advert_interval, Vrrp::DEFAULT_ADVERT_INTERVAL),
        virtual_ips: vips.into_iter().map(|(vip, _, _)| vip).collect(),
        preempt: or(preempt, true),
        preempt_delay: or(preempt_delay, Duration::ZERO),
        accept: or(accept, true),
        unicast_peers,
        garp_master_delay: or(garp_master_delay, Vrrp::DEFAULT_GARP_MASTER_DELAY),
        garp_master_repeat: or(garp_master_repeat, Vrrp::DEFAULT_GARP_MASTER_REPEAT.into())
            .try_into()
            .unwrap_or(Vrrp::DEFAULT_GARP_MASTER_REPEAT),
        garp_master_refresh,
        checksum: or(checksum, Vrrp::DEFAULT_CHECKSUM),
        realtime_priority,
        track_interfaces,
        track_pools,
        track_scripts,
        notify,
        quorum,
        use_vmac: or(use_vmac, false),
        password: password.ok().flatten(),
    };
    Parsed {
        vrrp,
        owner,
        path: t.path.clone(),
        router,
        vips: vip_positions,
    }
}

/// `interface`: a name the Linux kernel accepts (`dev_valid_name`).
fn interface(cx: &mut Cx, path: &str, v: &Value) -> R<String> {
    let s = string(cx, path, v)?;
    let why = if s.is_empty() {
        Some("it is empty")
    } else if s.len() > 15 {
        Some("it is longer than 15 bytes, the Linux limit")
    } else if s == "." || s == ".." {
        Some("\".\" and \"..\" are not interface names")
    } else if s.contains('/') {
        Some("it contains `/`")
    } else if s.contains(':') {
        Some("it contains `:` (\"eth0:1\" is an address label, not an interface; write the interface itself, e.g. \"eth0\")")
    } else if s.chars().any(|c| c.is_whitespace() || c == '\0') {
        Some("it contains whitespace or a NUL byte")
    } else {
        None
    };
    match why {
        None => Ok(s.to_string()),
        Some(why) => Err(cx.error(
            v.span().start,
            path,
            format!("invalid interface name {s:?}: {why}"),
        )),
    }
}

/// `track_interfaces` or `track_pools`: an array whose entries are a name (`"eth1"`) or a
/// table `{ name = "eth1", weight = -20 }`; `what` names one object in messages and `name`
/// reads and checks a name. Every valid entry is kept, so one bad entry does not hide the
/// errors of the others.
fn tracked(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    what: &str,
    mut name: impl FnMut(&mut Cx, &str, &Value) -> R<String>,
) -> R<Vec<Tracked>> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(
            cx,
            path,
            v,
            "an array of names or { name = ..., weight = ... } tables, e.g. [\"eth1\", { name = \"eth2\", weight = -20 }]",
        ));
    };
    let mut out: Vec<(Tracked, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let (entry, name_at, name_path) = match item.get_ref() {
            DeValue::String(_) => {
                let Ok(n) = name(cx, &p, item) else { continue };
                (
                    Tracked {
                        name: n,
                        weight: None,
                    },
                    item.span().start,
                    p.clone(),
                )
            }
            DeValue::Table(_) => {
                let Ok(mut t) = table(cx, &p, item, "a tracking entry") else {
                    continue;
                };
                t.check_keys(cx, TRACK_KEYS);
                let n = t.req(cx, "name", |cx, p, v| name(cx, p, v));
                let weight = t.opt(cx, "weight", track_weight);
                let (Ok(n), Ok(weight)) = (n, weight) else {
                    continue;
                };
                let at = t.get("name").map_or(item.span().start, |v| v.span().start);
                (Tracked { name: n, weight }, at, t.key_path("name"))
            }
            _ => {
                wrong_type(
                    cx,
                    &p,
                    item,
                    &format!("the name of {what} or a {{ name = ..., weight = ... }} table"),
                );
                continue;
            }
        };
        if let Some((_, first)) = out.iter().find(|(f, _)| f.name == entry.name) {
            cx.error(
                name_at,
                &name_path,
                format!("`{}` is listed twice (first as {first})", entry.name),
            );
            continue;
        }
        out.push((entry, p));
    }
    Ok(out.into_iter().map(|(t, _)| t).collect())
}

/// A tracking `weight`: nonzero, in [`Vrrp::TRACK_WEIGHT_RANGE`].
pub(super) fn track_weight(cx: &mut Cx, path: &str, v: &Value) -> R<i16> {
    let (lo, hi) = Vrrp::TRACK_WEIGHT_RANGE;
    let n = integer(cx, path, v, lo.into(), hi.into())?;
    if n == 0 {
        return Err(cx.error(
            v.span().start,
            path,
            "a weight of 0 changes nothing; give a negative weight to lower the priority while the object is failed, or leave `weight` out to put the instance in FAULT",
        ));
    }
    i16::try_from(n).map_err(|_| Reported)
}

/// A `track_pools` name: one of the `[[pool]]` tables (any name is accepted when a pool's own
/// name is broken, as for a service's `pool`: that error is already reported).
fn tracked_pool(cx: &mut Cx, path: &str, v: &Value, pools: &[ParsedPool]) -> R<String> {
    let s = string(cx, path, v)?;
    let mut names: Vec<&str> = Vec::new();
    for name in pools.iter().filter_map(|p| p.name.as_deref()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.contains(&s) || pools.iter().any(|p| p.name.is_none()) {
        return Ok(s.to_string());
    }
    let hint = match closest(s, names.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if names.is_empty() => "no [[pool]] is defined".to_string(),
        None => format!("defined pools: {}", names.join(", ")),
    };
    Err(cx.error(v.span().start, path, format!("no pool named `{s}`; {hint}")))
}

/// `version`: the integer 2 or 3.
fn version(cx: &mut Cx, path: &str, v: &Value) -> R<VrrpVersion> {
    let DeValue::Integer(i) = v.get_ref() else {
        return Err(wrong_type(cx, path, v, "the integer 2 or 3"));
    };
    match i128::from_str_radix(i.as_str(), i.radix()) {
        Ok(2) => Ok(VrrpVersion::V2),
        Ok(3) => Ok(VrrpVersion::V3),
        _ => Err(cx.error(
            v.span().start,
            path,
            format!("VRRP version must be 2 or 3, got {i}"),
        )),
    }
}

/// What each version's advert can carry: v3 a count of centiseconds (12 bits), v2 of seconds
/// (8 bits).
fn check_advert_interval(d: Duration, version: VrrpVersion, default: bool) -> Result<(), String> {
    let (lo, hi) = version.advert_interval_range();
    let which = match (version, default) {
        (VrrpVersion::V3, true) => "with version 3 (the default)",
        (VrrpVersion::V3, false) => "with version 3",
        (VrrpVersion::V2, _) => "with version 2",
    };
    match version {
        VrrpVersion::V3 => {
            let step = VrrpVersion::ADVERT_STEP_V3.as_nanos();
            if d < lo || d > hi {
                Err(format!(
                    "{which}, advert_interval must be between {lo:?} and {hi:?}, got {d:?}"
                ))
            } else if d.as_nanos().checked_rem(step) != Some(0) {
                Err(format!(
                    "{which}, advert_interval must be a multiple of 10ms (adverts carry it in centiseconds), got {d:?}"
                ))
            } else {
                Ok(())
            }
        }
        VrrpVersion::V2 => {
            if d < lo || d > hi || d.subsec_nanos() != 0 {
                Err(format!(
                    "{which}, advert_interval must be whole seconds from {lo:?} to {hi:?} (VRRPv2 adverts carry it in seconds), got {d:?}; version = 3 allows steps of 10ms"
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// A duration where zero means "none" (`"0s"`); [`duration`] refuses zero everywhere else.
fn duration_or_zero(cx: &mut Cx, path: &str, v: &Value) -> R<Duration> {
    let DeValue::String(s) = v.get_ref() else {
        return Err(wrong_type(
            cx,
            path,
            v,
            "a duration string such as \"0s\", \"2s\" or \"500ms\"",
        ));
    };
    match parse_duration(s) {
        Ok(d) => Ok(d),
        Err(_) if is_zero_duration(s) => Ok(Duration::ZERO),
        Err(m) => Err(cx.error(v.span().start, path, m)),
    }
}

/// Whether `s` is a well-formed duration whose every digit is 0 (`"0s"`, `"0.0ms"`, `"0m0s"`).
fn is_zero_duration(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().all(|b| !b.is_ascii_digit() || b == b'0')
        && parse_duration(&s.replace('0', "1")).is_ok()
}

/// `virtual_ips`: each valid one with where it is written and its key path.
fn virtual_ips(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    version: Option<VrrpVersion>,
) -> Vec<(VirtualIp, usize, String)> {
    let DeValue::Array(items) = v.get_ref() else {
        wrong_type(
            cx,
            path,
            v,
            "an array of strings such as [\"198.51.100.10/24\"]",
        );
        return Vec::new();
    };
    if items.is_empty() {
        cx.error(
            v.span().start,
            path,
            "no virtual IPs; add at least one, e.g. [\"198.51.100.10/24\"]",
        );
        return Vec::new();
    }
    if items.len() > Vrrp::MAX_VIRTUAL_IPS {
        cx.error(
            v.span().start,
            path,
            format!(
                "{} virtual IPs; an instance can have at most {} (an advert's address count is one byte)",
                items.len(),
                Vrrp::MAX_VIRTUAL_IPS
            ),
        );
        return Vec::new();
    }
    let mut out: Vec<(VirtualIp, usize, String)> = Vec::new();
    let mut reported_v2 = false;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let at = item.span().start;
        let Ok(s) = string(cx, &p, item) else {
            continue;
        };
        let vip = match parse_vip(s) {
            Ok(vip) => vip,
            Err(m) => {
                cx.error(at, &p, m);
                continue;
            }
        };
        let ip = vip.address;
        if let Some((_, _, first)) = out.iter().find(|(f, _, _)| f.address == ip) {
            cx.error(
                at,
                &p,
                format!("virtual IP {ip} is listed twice (first as {first})"),
            );
            continue;
        }
        if let Some((first, _, _)) = out.first() {
            if first.address.is_ipv6() != ip.is_ipv6() {
                let (this, that) = if ip.is_ipv6() {
                    ("IPv6", "IPv4")
                } else {
                    ("IPv4", "IPv6")
                };
                cx.error(
                    at,
                    &p,
                    format!("{ip} is {this} but the first virtual IP ({}) is {that}; use one [[vrrp]] per address family", first.address),
                );
                continue;
            }
        }
        if ip.is_ipv6() && version == Some(VrrpVersion::V2) && !reported_v2 {
            cx.error(
                at,
                &p,
                format!(
                    "{ip} is IPv6, and VRRP version 2 carries IPv4 only; use version = 3 for IPv6"
                ),
            );
            reported_v2 = true;
        }
        out.push((vip, at, p));
    }
    out
}

/// `"ip"` or `"ip/prefix"`.
fn parse_vip(s: &str) -> Result<VirtualIp, String> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (s, None),
    };
    let Ok(address) = ip.parse::<IpAddr>() else {
        if s.parse::<SocketAddr>().is_ok() {
            return Err(format!(
                "virtual IP \"{s}\" has a port; write the address alone, e.g. \"198.51.100.10/24\""
            ));
        }
        return Err(format!("invalid virtual IP \"{s}\"; {VIP_FORM}"));
    };
    let max: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                let family = if address.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(format!(
                    "invalid prefix length in \"{s}\": must be 0 to {max} for an {family} address"
                ));
            }
        },
    };
    if let Some(why) = not_unicast(address) {
        return Err(format!(
            "{why}; a virtual IP must be a unicast address other hosts can reach"
        ));
    }
    Ok(VirtualIp {
        address,
        prefix_len,
    })
}

/// Why `ip` cannot be a virtual IP, if it cannot.
fn not_unicast(ip: IpAddr) -> Option<String> {
    if ip.is_unspecified() {
        return Some(format!("{ip} is the unspecified address"));
    }
    if ip.is_multicast() {
        return Some(format!("{ip} is a multicast address"));
    }
    if ip.is_loopback() {
        return Some(format!(
            "{ip} is a loopback address, which never leaves this machine"
        ));
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Some(format!("{ip} is the broadcast address")),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| format!("{ip} is an IPv4-mapped IPv6 address (write {v4} instead)")),
        IpAddr::V4(_) => None,
    }
}

/// `unicast_peers`: the other nodes' addresses, in the family of the virtual IPs (`v6`, when
/// known).
fn unicast_peers(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    v6: Option<bool>,
    vips: &[IpAddr],
) -> R<Vec<IpAddr>> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(
            cx,
            path,
            v,
            "an array of strings such as [\"198.51.100.2\"]",
        ));
    };
    if items.is_empty() {
        return Err(cx.error(
            v.span().start,
            path,
            "empty list; leave unicast_peers out to send adverts by multicast, or list the other nodes' addresses",
        ));
    }
    let mut out: Vec<(IpAddr, String)> = Vec::new();
    let mut bad = false;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let at = item.span().start;
        let Ok(s) = string(cx, &p, item) else {
            bad = true;
            continue;
        };
        let problem = match s.parse::<IpAddr>() {
            Err(_) => Err(format!("invalid peer address \"{s}\"; write another node's IP address, e.g. \"198.51.100.2\" or \"2001:db8::2\" (no port, no prefix length)")),
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => Err(format!(
                "{ip} is {} address; list the other nodes' own addresses (leave unicast_peers out to use multicast)",
                if ip.is_multicast() { "a multicast" } else { "the unspecified" }
            )),
            Ok(ip) if v6.is_some_and(|v6| v6 != ip.is_ipv6()) => Err(format!(
                "peer {ip} is {} but this instance's virtual IPs are {}; adverts are sent in the virtual IPs' address family",
                if ip.is_ipv6() { "IPv6" } else { "IPv4" },
                if ip.is_ipv6() { "IPv4" } else { "IPv6" },
            )),
            Ok(ip) if vips.contains(&ip) => Err(format!(
                "peer {ip} is one of this instance's virtual IPs; list the other nodes' own addresses"
            )),
            Ok(ip) => match out.iter().find(|(f, _)| *f == ip) {
                Some((_, first)) => Err(format!("peer {ip} is listed twice (first as {first})")),
                None => Ok(ip),
            },
        };
        match problem {
            Ok(ip) => out.push((ip, p)),
            Err(m) => {
                cx.error(at, &p, m);
                bad = true;
            }
        }
    }
    if bad {
        return Err(Reported);
    }
    Ok(out.into_iter().map(|(ip, _)| ip).collect())
}

/// `checksum`: `"keepalived"` or `"rfc9568"`.
fn checksum(cx: &mut Cx, path: &str, v: &Value) -> R<VrrpChecksum> {
    let s = string(cx, path, v)?;
    VrrpChecksum::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = VrrpChecksum::ALL.iter().map(|(n, _)| *n).collect();
        let hint = match closest(s, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? "),
            None => String::new(),
        };
        cx.error(
            v.span().start,
            path,
            format!(
                "unknown checksum `{s}`; {hint}valid values: {}",
                names.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_durations() {
        for s in ["0s", "0ms", "0.0h", "0m0s", "00s"] {
            assert!(is_zero_duration(s), "{s}");
        }
        for s in ["0", "", "-0s", "0x", "s", "0.s", "1s", "0 s"] {
            assert!(!is_zero_duration(s), "{s}");
        }
    }

    #[test]
    fn keys_are_disjoint() {
        for (k, _) in KEEPALIVED_KEYS.iter() {
            assert!(!VRRP_KEYS.contains(k), "{k}");
        }
    }
}
