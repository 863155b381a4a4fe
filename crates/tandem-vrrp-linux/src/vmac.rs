//! VRRP's virtual MAC address (keepalived's `use_vmac`): the master's virtual addresses live
//! on a macvlan interface whose MAC address is the virtual router MAC of RFC 5798 7.3,
//! `00:00:5e:00:01:<VRID>` for IPv4 and `00:00:5e:00:02:<VRID>` for IPv6.
//!
//! Without it, hosts map a VIP to the *current master's own* MAC address, so a failover
//! only takes effect once every host has processed the new master's gratuitous ARP /
//! unsolicited NA (and a host that missed them keeps sending to the dead node until its cache
//! expires). With it, the VIP's MAC address never changes: on failover switches only have to
//! relearn which port the virtual MAC is behind (the new master's adverts and announcements,
//! sent with it as Ethernet source, teach them), and hosts have nothing to update.
//!
//! # Running an instance over a virtual MAC interface (for the daemon)
//!
//! With `base` the configured interface (index `base_index`, name `base_name`):
//!
//! 1. **Before** [`crate::runner::spawn`]: `let vmac = vmac::ensure(base_index, &name, vrid,
//!    v6)?;` with `name` the configured one or [`default_name`]`(vrid, v6)`, `v6` the family
//!    of the instance (of its VIPs). It creates the macvlan, or adopts the one a crashed
//!    tandem left behind; a crashed master's VIPs may still be on it, which the runner's
//!    startup release removes as for a plain interface.
//! 2. `instance.local_address` (advert source, tie-breaker): **unchanged**, the *base*
//!    interface's primary IPv4 address or the *base* interface's IPv6 link-local address, as
//!    without a vmac. The vmac has no address of its own (an IPv4 vmac carries only VIPs, an
//!    IPv6 one not even a link-local).
//! 3. `RunnerConfig::new(instance, base_index, base_name, vips)`: `ifindex`/`ifname` stay
//!    the **base** interface (adverts are *received* there), and set
//!    `cfg.send_interface = Some(vmac.send_interface())` so adverts *leave* through the
//!    vmac, with the virtual MAC as Ethernet source (see "Adverts" below). **Except with
//!    `unicast_peers`**: leave `send_interface` `None` (`spawn` refuses both together), so
//!    adverts leave from the base as keepalived's required `vmac_xmit_base` does, and set
//!    `garp_master_refresh` so switches keep learning the virtual MAC from periodic
//!    announcements (RFC 5798 2.4). A unicast advert through the vmac would resolve the
//!    peer *from the vmac*, naming the base's address with the virtual MAC: the peer's
//!    entry for this node's own address would then point at whichever node is master.
//! 4. `NetlinkVips::new(vmac.index, vips)`: the VIPs go on the **vmac**; the announcements
//!    (gratuitous ARP / unsolicited NA) are sent from the same index by the same object, so
//!    they carry the virtual MAC too. Nothing else to wire.
//! 5. Link tracking follows the **base** interface (the vmac's carrier follows it anyway).
//! 6. Graceful shutdown: after `RunnerHandle::shutdown` has returned (priority-0 advert sent,
//!    VIPs released), [`remove`]`(&vmac.name)`. `tandem vip-cleanup`: [`remove`]`(name)` for
//!    every instance configured with a vmac; deleting the interface deletes any VIP left on
//!    it (an address owner's addresses live on its vmac too, so the exception `vip-cleanup`
//!    makes for owners applies to their vmac). It is idempotent, so running it after a clean
//!    stop is fine. Removing a vmac is what makes a crashed master's copy of the virtual MAC
//!    go away: until then its kernel would still answer ARP/ND for the VIPs with it.
//!
//! Each (base interface, VRID, family) needs its own name: [`default_name`] only varies
//! with VRID and family, so two instances with the same VRID on two base interfaces need
//! configured names. Names are at most [`MAX_NAME_LEN`] bytes.
//!
//! # What [`ensure`] configures, and why
//!
//! - The macvlan, on the base interface, with the virtual MAC, mode **VEPA** (the kernel's
//!   default), brought up.
//! - On the vmac: `arp_ignore=1` (answer ARP only for addresses configured on the vmac,
//!   i.e. the VIPs: without it the weak host model would have the vmac answer for the base's
//!   own addresses with the virtual MAC), `accept_local=1`, `rp_filter=0` (traffic to a VIP
//!   arrives on the vmac while the route back to the sender is the base's prefix route),
//!   `promote_secondaries=1` (removing one VIP must not remove the other VIPs of its subnet).
//!   These are keepalived's settings (`vrrp_if_config.c`), on both families' vmacs (an IPv6
//!   vmac has an IPv4 stack too, and must not answer ARP for the base's addresses either).
//! - IPv4 vmac: IPv6 off (`disable_ipv6=1`), as keepalived does: no link-local address, no
//!   MLD, no DAD, nothing sent from the virtual MAC by a backup.
//! - IPv6 vmac: `addr_gen_mode=1` (none: no link-local address derived from the virtual MAC,
//!   which would be the same on every node and fail DAD), `accept_ra=0` and `autoconf=0`
//!   (no SLAAC address from the virtual MAC either).
//! - On the base interface, IPv4 instances only, values raised, never lowered:
//!   `arp_ignore` at least 1 and `arp_filter=1` (the base must not answer ARP for the VIPs,
//!   which live on the vmac, with its own MAC; keepalived's settings), and `arp_announce=2`
//!   (not keepalived's: replies from a VIP to a host on the base's subnet leave through the
//!   base's prefix route, and with the default `arp_announce=0` the ARP request for that
//!   host names the VIP as sender with the *base's* MAC, so the host maps the VIP to the
//!   base's MAC from then on. The lab test sees it happen without this setting, and with
//!   keepalived 2.2.7 as master; keepalived's `doc/NOTE_vrrp_vmac.txt` only suggests
//!   `arp_announce` host-wide, and its `1` is not enough when the VIP is in the base's
//!   subnet).
//!
//! The base's settings are not restored by [`remove`]: several vmacs can share one base,
//! and after a crash the original values are unknown anyway. They are what a host with
//! addresses on several interfaces wants regardless. A strict `net.ipv4.conf.all.rp_filter=1`
//! overrides the vmac's `rp_filter=0` and drops traffic to IPv4 VIPs; [`ensure`] logs a
//! warning then, and leaves the host-wide setting to the operator (keepalived rewrites
//! `conf.all`).
//!
//! # Adverts: received on the base, sent through the vmac
//!
//! keepalived (without `vmac_xmit_base`) sends *and receives* adverts on the vmac, in macvlan
//! mode *private*: the only mode in which a frame from the outside whose source is the
//! vmac's own MAC (the other node's adverts) is delivered to the vmac (`macvlan_handle_frame`
//! in `drivers/net/macvlan.c`). Receiving on the vmac means joining 224.0.0.18 / ff02::12
//! there, and the kernel then sends IGMP/MLD membership reports with the virtual MAC as
//! source from every *backup*, at start and in answer to every querier: switches move the
//! virtual MAC to the backup's port until the master's next advert (keepalived issues #882,
//! #1957; filtered there with nftables/iptables rules, pull requests #1403, #1797, #2454).
//!
//! tandem instead receives on the base interface, as without a vmac, and only sends through
//! the vmac ([`crate::socket::SendInterface`]). In VEPA mode a frame whose source is the
//! vmac's MAC is passed to the base interface too, so a backup hears the master's adverts;
//! the vmac joins no group and a backup's vmac sends nothing at all. On the wire the adverts
//! are what keepalived sends: Ethernet source the virtual MAC (RFC 5798 7.3), IP source the
//! base's primary IPv4 address or IPv6 link-local address. For IPv6 the send socket uses
//! `IPV6_FREEBIND`, since that link-local address is on the base and not on the vmac
//! (keepalived copies it onto the vmac, and then has to stop a backup answering neighbour
//! solicitations for it with the virtual MAC, pull request #2329). Without a link-local
//! address, the master's IPv6 vmac sends its neighbour discovery from the VIPs.
//!
//! Known limitation (IPv6 only): the master's vmac joins the solicited-node group of each
//! IPv6 VIP, and leaving it when the VIPs are released sends an MLD report with the virtual
//! MAC from a node that is no longer master; a switch points the virtual MAC at it until the
//! new master's next advert. keepalived filters such reports with nftables (#2452, #2454).
//!
//! All of this is rtnetlink and `/proc/sys` in the calling thread's network namespace.

use std::io;
use std::time::{Duration, Instant};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo as LinkInfoAttr,
    LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::netlink::{self, with_context};
use crate::socket::SendInterface;

/// Longest interface name Linux accepts (`IFNAMSIZ` 16, including the terminating zero).
pub const MAX_NAME_LEN: usize = 15;

/// How long [`ensure`] waits for the vmac to be up and, if the base has carrier, to have
/// it too. Both normally take well under a millisecond.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// A virtual MAC interface, as [`ensure`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmac {
    /// Interface index of the vmac: give it to `NetlinkVips::new` and, through
    /// [`Vmac::send_interface`], to `RunnerConfig::send_interface`.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// The virtual router MAC address ([`virtual_mac`]).
    pub mac: [u8; 6],
    /// The base interface the macvlan sits on.
    pub parent_index: u32,
    /// `true` if this call created the interface, `false` if it adopted an existing one.
    pub created: bool,
}

impl Vmac {
    /// Where adverts must leave: `RunnerConfig::send_interface = Some(vmac.send_interface())`.
    pub fn send_interface(&self) -> SendInterface {
        SendInterface {
            index: self.index,
            name: self.name.clone(),
        }
    }
}

/// The virtual router MAC address of RFC 5798 7.3: `00:00:5e:00:01:<vrid>` for IPv4,
/// `00:00:5e:00:02:<vrid>` for IPv6.
pub fn virtual_mac(vrid: u8, v6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// `vrrp.<vrid>` for IPv4 (keepalived's default name), `vrrp6.<vrid>` for IPv6 (the name
/// keepalived falls back to when an IPv4 instance with the same VRID already took
/// `vrrp.<vrid>`; tandem always uses it, so the name does not depend on start order). At
/// most 9 bytes.
pub fn default_name(vrid: u8, v6: bool) -> String {
    if v6 {
        format!("vrrp6.{vrid}")
    } else {
        format!("vrrp.{vrid}")
    }
}

/// Creates the virtual MAC interface `name` for VRID `vrid` (IPv6 if `v6`) on interface
/// `parent_index`, or adopts an existing interface of that name if it is a macvlan on that
/// parent with that MAC (left behind by a crash, or by a previous call); sets the sysctls of
/// the module docs; brings it up; and waits (at most 3 s) until it is up and, when the
/// parent has carrier, until it has carrier too. Safe to call again at any time.
///
/// Errors:
/// - [`io::ErrorKind::InvalidInput`]: VRID 0, or a name Linux would refuse.
/// - [`io::ErrorKind::NotFound`]: no interface `parent_index`.
/// - [`io::ErrorKind::Unsupported`]: the parent has no Ethernet address.
/// - [`io::ErrorKind::AlreadyExists`]: an interface called `name` exists and is not this
///   vmac (another kind, another parent or another MAC address: the message says which);
///   or another interface on the parent already uses the virtual MAC (`EADDRINUSE` when
///   bringing it up; an interface this call created is deleted again).
/// - [`io::ErrorKind::TimedOut`]: not up in time.
/// - anything else the kernel or `/proc/sys` answers, with context.
pub fn ensure(parent_index: u32, name: &str, vrid: u8, v6: bool) -> io::Result<Vmac> {
    check_name(name)?;
    if vrid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vmac {name}: VRID 0 is not a valid virtual router id (1-255)"),
        ));
    }
    let parent = netlink::link_info(parent_index)?;
    if parent.hw_address.len() != 6 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "vmac {name}: interface {} has no Ethernet address, a macvlan cannot sit on it",
                parent.name
            ),
        ));
    }
    let mac = virtual_mac(vrid, v6);
    let wanted = Wanted {
        name,
        parent_index,
        parent_name: &parent.name,
        mac,
    };

    // Adopt, or create; a concurrent creation between the two (EEXIST) is adopted.
    let (index, created) = match netlink::link_message_by_name(name)? {
        Some(existing) => (adopt(&wanted, &existing)?, false),
        None => match create(&wanted) {
            Ok(index) => (index, true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let existing = netlink::link_message_by_name(name)?.ok_or_else(|| {
                    io::Error::other(format!(
                        "vmac {name}: created concurrently and then gone again"
                    ))
                })?;
                (adopt(&wanted, &existing)?, false)
            }
            Err(e) => {
                return Err(with_context(
                    e,
                    format!(
                        "vmac {name}: cannot create a macvlan on {} with MAC {}",
                        parent.name,
                        format_mac(&mac)
                    ),
                ))
            }
        },
    };

    let finish = || -> io::Result<()> {
        configure_sysctls(name, &parent.name, v6)?;
        set_up(index, &wanted)?;
        wait_ready(index, parent_index, name)
    };
    if let Err(e) = finish() {
        if created {
            // Do not leave a half-configured interface of ours behind.
            if let Err(del) = delete(index) {
                tracing::warn!(vmac = name, error = %del, "vmac: cannot remove it after failing");
            }
        }
        return Err(e);
    }
    tracing::info!(
        vmac = name,
        parent = %parent.name,
        mac = %format_mac(&mac),
        created,
        "VRRP virtual MAC interface ready"
    );
    Ok(Vmac {
        index,
        name: name.to_owned(),
        mac,
        parent_index,
        created,
    })
}

/// Deletes the virtual MAC interface `name`. Absent is success, so it can run on every stop
/// and in `vip-cleanup`. Refuses ([`io::ErrorKind::InvalidInput`]) to delete an interface
/// that is not a macvlan with a VRRP virtual MAC (`00:00:5e:00:01:xx` / `00:00:5e:00:02:xx`):
/// a misconfigured name must never take down a real interface.
pub fn remove(name: &str) -> io::Result<()> {
    check_name(name)?;
    let Some(link) = netlink::link_message_by_name(name)? else {
        return Ok(());
    };
    let facts = Facts::of(&link);
    let is_vrrp_mac = matches!(
        facts.mac.as_deref(),
        Some([0x00, 0x00, 0x5e, 0x00, 0x01 | 0x02, _])
    );
    if !facts.is_macvlan || !is_vrrp_mac {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "vmac: refusing to remove interface {name}: it is {}, not a VRRP virtual MAC \
                 interface",
                facts.describe()
            ),
        ));
    }
    match delete(link.header.index) {
        Ok(()) => {
            tracing::info!(vmac = name, "VRRP virtual MAC interface removed");
            Ok(())
        }
        // Deleted by someone else in between: the goal is reached.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(with_context(e, format!("vmac: cannot remove {name}"))),
    }
}

/// What [`ensure`] is asked for.
struct Wanted<'a> {
    name: &'a str,
    parent_index: u32,
    parent_name: &'a str,
    mac: [u8; 6],
}

/// What an existing link is, as far as adopting it is concerned.
#[derive(Debug, Default)]
struct Facts {
    is_macvlan: bool,
    kind: Option<String>,
    parent: Option<u32>,
    mac: Option<Vec<u8>>,
    mode: Option<MacVlanMode>,
}

impl Facts {
    fn of(link: &LinkMessage) -> Self {
        let mut facts = Facts::default();
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::Link(parent) => facts.parent = Some(*parent),
                LinkAttribute::Address(mac) => facts.mac = Some(mac.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfoAttr::Kind(InfoKind::MacVlan) => {
                                facts.is_macvlan = true;
                                facts.kind = Some("macvlan".into());
                            }
                            LinkInfoAttr::Kind(kind) => facts.kind = Some(kind.to_string()),
                            LinkInfoAttr::Data(InfoData::MacVlan(data)) => {
                                for item in data {
                                    if let InfoMacVlan::Mode(mode) = item {
                                        facts.mode = Some(*mode);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        facts
    }

    /// "a veth", "a macvlan on ifindex 2 with MAC 02:..", for error messages.
    fn describe(&self) -> String {
        let kind = self
            .kind
            .as_deref()
            .unwrap_or("an interface of no particular kind");
        let mut out = if self.kind.is_some() {
            format!("a {kind}")
        } else {
            kind.to_owned()
        };
        if let Some(parent) = self.parent {
            out.push_str(&format!(" on ifindex {parent}"));
        }
        match self.mac.as_deref() {
            Some(mac) => out.push_str(&format!(" with MAC {}", format_mac(mac))),
            None => out.push_str(" without a MAC address"),
        }
        out
    }
}

/// Checks that `existing` is the vmac `wanted` describes and puts it in VEPA mode if it is
/// not (a private-mode vmac left by keepalived would swallow the peer's adverts, see the
/// module docs). Returns its index.
fn adopt(wanted: &Wanted<'_>, existing: &LinkMessage) -> io::Result<u32> {
    let facts = Facts::of(existing);
    let ours = facts.is_macvlan
        && facts.parent == Some(wanted.parent_index)
        && facts.mac.as_deref() == Some(&wanted.mac[..]);
    if !ours {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "vmac {}: an interface of that name already exists and is not the virtual MAC \
                 interface wanted (a macvlan on {} (ifindex {}) with MAC {}): it is {}. \
                 Remove it or configure another name",
                wanted.name,
                wanted.parent_name,
                wanted.parent_index,
                format_mac(&wanted.mac),
                facts.describe()
            ),
        ));
    }
    let index = existing.header.index;
    if facts.mode != Some(MacVlanMode::Vepa) {
        tracing::info!(
            vmac = wanted.name,
            mode = ?facts.mode,
            "vmac: adopting an existing macvlan; switching it to VEPA mode"
        );
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfoAttr::Kind(InfoKind::MacVlan),
            LinkInfoAttr::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Vepa,
            )])),
        ]));
        netlink::link_request(RouteNetlinkMessage::NewLink(message), 0).map_err(|e| {
            with_context(
                e,
                format!(
                    "vmac {}: cannot switch the macvlan to VEPA mode",
                    wanted.name
                ),
            )
        })?;
    }
    Ok(index)
}

/// `ip link add link PARENT name NAME address MAC type macvlan mode vepa`, through rtnetlink.
/// Returns the new interface's index.
fn create(wanted: &Wanted<'_>) -> io::Result<u32> {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(wanted.name.to_owned()));
    message
        .attributes
        .push(LinkAttribute::Link(wanted.parent_index));
    message
        .attributes
        .push(LinkAttribute::Address(wanted.mac.to_vec()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfoAttr::Kind(InfoKind::MacVlan),
        LinkInfoAttr::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
            MacVlanMode::Vepa,
        )])),
    ]));
    netlink::link_request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    netlink::link_index(wanted.name)
}

/// Sets `IFF_UP`. `EADDRINUSE`: another macvlan on the same parent (or the parent itself)
/// already has this MAC address.
fn set_up(index: u32, wanted: &Wanted<'_>) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    match netlink::link_request(RouteNetlinkMessage::SetLink(message), 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "vmac {}: cannot bring it up: another interface on {} already uses MAC {} \
                 (another VRRP instance or keepalived with VRID {} on the same interface?)",
                wanted.name,
                wanted.parent_name,
                format_mac(&wanted.mac),
                wanted.mac[5]
            ),
        )),
        Err(e) => Err(with_context(
            e,
            format!("vmac {}: cannot bring it up", wanted.name),
        )),
    }
}

fn delete(index: u32) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    netlink::link_request(RouteNetlinkMessage::DelLink(message), 0)
}

/// Up, and with carrier whenever the parent has carrier. Without carrier on the parent the
/// vmac cannot get any; it is usable once the parent's link comes back, which the daemon's
/// link tracking of the base interface already follows.
fn wait_ready(index: u32, parent_index: u32, name: &str) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let link = netlink::link_info(index)?;
        if link.admin_up && (link.lower_up || !netlink::link_is_up(parent_index)?) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "vmac {name}: not up with carrier {READY_TIMEOUT:?} after being brought up \
                     (admin up: {}, carrier: {})",
                    link.admin_up, link.lower_up
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The sysctls of the module docs. Written before the interface goes up, so IPv6 never
/// configures anything on it first.
fn configure_sysctls(vmac: &str, parent: &str, v6: bool) -> io::Result<()> {
    for (key, value) in [
        ("arp_ignore", 1),
        ("accept_local", 1),
        ("rp_filter", 0),
        ("promote_secondaries", 1),
    ] {
        write_sysctl(&format!("net/ipv4/conf/{vmac}/{key}"), value)?;
    }
    if v6 {
        for (key, value) in [("addr_gen_mode", 1), ("accept_ra", 0), ("autoconf", 0)] {
            write_sysctl(&format!("net/ipv6/conf/{vmac}/{key}"), value)?;
        }
    } else {
        // No IPv6 in the kernel at all is as good as disabled.
        match write_sysctl(&format!("net/ipv6/conf/{vmac}/disable_ipv6"), 1) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        raise_sysctl(&format!("net/ipv4/conf/{parent}/arp_ignore"), 1)?;
        raise_sysctl(&format!("net/ipv4/conf/{parent}/arp_filter"), 1)?;
        raise_sysctl(&format!("net/ipv4/conf/{parent}/arp_announce"), 2)?;
        if read_sysctl("net/ipv4/conf/all/rp_filter").ok() == Some(1) {
            tracing::warn!(
                vmac,
                "net.ipv4.conf.all.rp_filter is 1 (strict): it overrides the vmac's rp_filter=0 \
                 and the kernel will drop traffic to the virtual addresses, which arrives on \
                 the vmac while the route back leaves through {parent}; set it to 0 or 2"
            );
        }
    }
    Ok(())
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{key}")
}

fn read_sysctl(key: &str) -> io::Result<i64> {
    let path = sysctl_path(key);
    let text =
        std::fs::read_to_string(&path).map_err(|e| with_context(e, format!("reading {path}")))?;
    text.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not a number ({:?}): {e}", text.trim()),
        )
    })
}

fn write_sysctl(key: &str, value: i64) -> io::Result<()> {
    let path = sysctl_path(key);
    std::fs::write(&path, value.to_string())
        .map_err(|e| with_context(e, format!("vmac: writing {value} to {path}")))
}

/// Sets `key` to `min` unless it already is at least that (an operator's stricter value
/// stays).
fn raise_sysctl(key: &str, min: i64) -> io::Result<()> {
    if read_sysctl(key)? < min {
        write_sysctl(key, min)?;
    }
    Ok(())
}

/// The rules of the kernel's `dev_valid_name`, checked here so a bad name fails with a
/// message and cannot reach a `/proc/sys` path.
fn check_name(name: &str) -> io::Result<()> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vmac interface name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("longer than {MAX_NAME_LEN} bytes"));
    }
    if name == "." || name == ".." {
        return bad("not a usable name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return bad("contains '/', ':', whitespace or a control character");
    }
    Ok(())
}

fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs_follow_rfc_5798() {
        assert_eq!(virtual_mac(51, false), [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
        assert_eq!(virtual_mac(51, true), [0x00, 0x00, 0x5e, 0x00, 0x02, 0x33]);
        assert_eq!(virtual_mac(255, false)[5], 0xff);
        assert_eq!(format_mac(&virtual_mac(1, true)), "00:00:5e:00:02:01");
    }

    #[test]
    fn default_names_are_short_and_distinct_per_family() {
        assert_eq!(default_name(51, false), "vrrp.51");
        assert_eq!(default_name(51, true), "vrrp6.51");
        for vrid in 1..=255u8 {
            for v6 in [false, true] {
                let name = default_name(vrid, v6);
                assert!(check_name(&name).is_ok(), "{name}");
            }
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            let e = check_name(name).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert!(check_name("fifteen-chars-x").is_ok());
    }

    #[test]
    fn facts_describe_what_is_there() {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::Link(2));
        link.attributes
            .push(LinkAttribute::Address(virtual_mac(7, false).to_vec()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfoAttr::Kind(InfoKind::MacVlan),
            LinkInfoAttr::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Private,
            )])),
        ]));
        let facts = Facts::of(&link);
        assert!(facts.is_macvlan);
        assert_eq!(facts.parent, Some(2));
        assert_eq!(facts.mode, Some(MacVlanMode::Private));
        assert_eq!(
            facts.describe(),
            "a macvlan on ifindex 2 with MAC 00:00:5e:00:01:07"
        );
        let mut veth = LinkMessage::default();
        veth.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfoAttr::Kind(
                InfoKind::Veth,
            )]));
        assert_eq!(Facts::of(&veth).describe(), "a veth without a MAC address");
    }
}
