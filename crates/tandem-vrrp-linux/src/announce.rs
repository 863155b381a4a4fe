//! Telling the segment that the virtual addresses moved: gratuitous ARP for IPv4,
//! unsolicited neighbour advertisements for IPv6.
//!
//! When a backup becomes master, every host and switch on the segment still maps the VIPs to
//! the old master's MAC address; without an announcement traffic keeps going to the dead
//! (or now backup) node until ARP/neighbour caches expire, which is minutes. RFC 5798 6.4.1
//! and 6.4.2, with the notes in 8.1.2 (IPv4) and 8.2 (IPv6), have a new master announce
//! each VIP at once; the runner repeats the announcement (as keepalived's
//! `garp_master_repeat` does) because one frame can be lost.
//!
//! Like keepalived without `use_vmac`, tandem announces the interface's own MAC address.
//!
//! The frames are built by pure functions ([`garp_frame`], [`unsolicited_na`]) that are
//! unit-tested byte for byte; the socket code around them is thin. All sockets are created
//! on the calling thread, so they belong to its network namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netlink;

/// Length of a gratuitous ARP frame: Ethernet header (14) + ARP for IPv4 over Ethernet (28).
/// The driver pads it to the 60-byte Ethernet minimum.
pub const GARP_FRAME_LEN: usize = 42;

/// Length of an unsolicited neighbour advertisement: ICMPv6 header and flags (8), target
/// (16), target link-layer address option (8).
pub const NA_LEN: usize = 32;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARPHRD_ETHER: u16 = 1;
const ARPOP_REQUEST: u16 = 1;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_NA_FLAG_ROUTER: u8 = 0x80;
const ND_NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// `ICMP6_FILTER` from `<netinet/icmp6.h>` (not in the libc crate).
const ICMP6_FILTER: libc::c_int = 1;

/// A gratuitous ARP in the "ARP Announcement" form of RFC 5227 2.3: an ARP *request*,
/// broadcast, with sender and target protocol address both `ip` and the sender hardware
/// address `mac`; the target hardware address is ignored by receivers and zero, as RFC 5227
/// 2.1.1 says it SHOULD be. The request form (rather than a reply) is what keepalived sends
/// and what every ARP implementation processes: Linux updates an existing neighbour entry
/// from it, and switches learn the port from the Ethernet source.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    // Ethernet: broadcast destination, our source, EtherType ARP.
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // ARP: Ethernet/IPv4, request.
    f[14..16].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&mac); // sender hardware address
    f[28..32].copy_from_slice(&ip.octets()); // sender protocol address
    f[32..38].fill(0); // target hardware address
    f[38..42].copy_from_slice(&ip.octets()); // target protocol address
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 7.2.6) for `target`: ICMPv6 type 136,
/// Solicited flag clear (it answers no solicitation, and RFC 4861 7.1.2 makes receivers drop
/// a multicast NA with S set), Override set so receivers replace the old master's
/// link-layer address, and a target link-layer address option carrying `mac`. `router` sets
/// the Router flag, which must tell the truth (RFC 4861 7.2.5: a receiver that sees it go
/// from 1 to 0 removes the node from its default router list).
///
/// The checksum is left zero: on a raw ICMPv6 socket the kernel always computes it over the
/// pseudo-header with the source address it picks (RFC 3542 3.1), so it cannot be known here.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr, router: bool) -> [u8; NA_LEN] {
    let mut m = [0u8; NA_LEN];
    m[0] = ND_NEIGHBOR_ADVERT;
    // m[1]: code 0; m[2..4]: checksum, filled by the kernel.
    m[4] = ND_NA_FLAG_OVERRIDE | if router { ND_NA_FLAG_ROUTER } else { 0 };
    m[8..24].copy_from_slice(&target.octets());
    m[24] = ND_OPT_TARGET_LINKADDR;
    m[25] = 1; // option length in units of 8 octets
    m[26..32].copy_from_slice(&mac);
    m
}

/// Sends announcements for a set of VIPs on one interface, keeping its sockets between
/// calls (the runner announces several times after each transition to master).
pub struct Announcer {
    index: u32,
    arp: Option<OwnedFd>,
    ndisc: Option<Socket>,
}

impl Announcer {
    /// Announcer for interface `index`. Sockets are opened on first use, on the thread that
    /// uses them.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            arp: None,
            ndisc: None,
        }
    }

    /// One gratuitous ARP per IPv4 address and one unsolicited NA per IPv6 address of `ips`.
    /// The interface's MAC address is read afresh each time (it can be changed while tandem
    /// runs). Every address is tried; the first error is returned. A socket that failed is
    /// reopened on the next call. An interface that is down or without carrier is
    /// [`io::ErrorKind::NetworkDown`]: frames sent then are lost, so the caller should
    /// announce again once the link is back.
    pub fn announce(&mut self, ips: &[IpAddr]) -> io::Result<()> {
        if ips.is_empty() {
            return Ok(());
        }
        let link = netlink::link_info(self.index)?;
        if !link.is_up() {
            // Without carrier the kernel accepts the frames and drops them (IPv6 is not even
            // configured on a link that is not ready), so say so instead of pretending.
            return Err(io::Error::new(
                io::ErrorKind::NetworkDown,
                format!(
                    "announce: interface {} is down or has no carrier; nothing announced",
                    link.name
                ),
            ));
        }
        let mac = ethernet_address(&link)?;
        let router = ips.iter().any(IpAddr::is_ipv6) && ipv6_forwarding(&link.name);
        let mut first = None;
        for &ip in ips {
            let result = match ip {
                IpAddr::V4(v4) => self.send_garp(mac, v4),
                IpAddr::V6(v6) => self.send_na(&link.name, mac, v6, router),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "vrrp: announcement failed");
                match ip {
                    IpAddr::V4(_) => self.arp = None,
                    IpAddr::V6(_) => self.ndisc = None,
                }
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn send_garp(&mut self, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
        let fd = match &self.arp {
            Some(fd) => fd,
            None => self.arp.insert(packet_socket()?),
        };
        send_garp_on(fd, self.index, mac, ip)
    }

    fn send_na(&mut self, name: &str, mac: [u8; 6], ip: Ipv6Addr, router: bool) -> io::Result<()> {
        let socket = match &self.ndisc {
            Some(s) => s,
            None => self.ndisc.insert(ndisc_socket(self.index, name)?),
        };
        send_na_on(socket, self.index, mac, ip, router)
    }
}

/// Sends one gratuitous ARP for `ip` with sender `mac` out of interface `index`.
pub fn send_garp(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    send_garp_on(&packet_socket()?, index, mac, ip)
}

/// Sends one unsolicited neighbour advertisement for `ip` with link-layer address `mac` out
/// of interface `index` (see [`unsolicited_na`]).
pub fn send_unsolicited_na(index: u32, mac: [u8; 6], ip: Ipv6Addr, router: bool) -> io::Result<()> {
    let name = netlink::link_info(index)?.name;
    send_na_on(&ndisc_socket(index, &name)?, index, mac, ip, router)
}

/// The interface's 6-byte MAC address; announcing makes no sense on links without one
/// (tun, loopback, ...).
fn ethernet_address(link: &netlink::LinkInfo) -> io::Result<[u8; 6]> {
    <[u8; 6]>::try_from(link.hw_address.as_slice()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "announce: interface {} has no Ethernet address ({} bytes), cannot send ARP/NA",
                link.name,
                link.hw_address.len()
            ),
        )
    })
}

/// Whether this node forwards IPv6 on `name`, i.e. is a router there (for the NA's Router
/// flag). Read from the calling thread's network namespace; unreadable means host.
fn ipv6_forwarding(name: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/forwarding"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

/// A send-only `AF_PACKET`/`SOCK_RAW` socket. Protocol 0 means the kernel delivers it no
/// received frames, so nothing piles up in its queue.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("announce: cannot open an AF_PACKET socket (needs CAP_NET_RAW): {e}"),
        ));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_garp_on(fd: &OwnedFd, index: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let frame = garp_frame(mac, ip);
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as libc::c_int;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: frame and to are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("announce: gratuitous ARP for {ip} on ifindex {index}: {e}"),
        ));
    }
    Ok(())
}

/// A raw ICMPv6 socket for sending neighbour advertisements on one interface: bound to the
/// device, hop limit 255 (RFC 4861 7.1.2: receivers drop ND messages with any other hop
/// limit, which proves they were not routed), no multicast loopback, and an ICMPv6 filter
/// that blocks every type so received ICMPv6 does not queue up on it.
fn ndisc_socket(index: u32, name: &str) -> io::Result<Socket> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("announce: ICMPv6 socket on {name} (ifindex {index}): {what}: {e}"),
        )
    };
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(|e| ctx("socket (needs CAP_NET_RAW)", e))?;
    let block_all = [u32::MAX; 8];
    // SAFETY: the fd is live; block_all is a valid struct icmp6_filter (8 x u32).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            block_all.as_ptr().cast(),
            std::mem::size_of_val(&block_all) as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(ctx("ICMP6_FILTER", io::Error::last_os_error()));
    }
    socket
        .bind_device(Some(name.as_bytes()))
        .map_err(|e| ctx("SO_BINDTODEVICE", e))?;
    socket
        .set_multicast_hops_v6(255)
        .map_err(|e| ctx("IPV6_MULTICAST_HOPS", e))?;
    socket
        .set_unicast_hops_v6(255)
        .map_err(|e| ctx("IPV6_UNICAST_HOPS", e))?;
    socket
        .set_multicast_if_v6(index)
        .map_err(|e| ctx("IPV6_MULTICAST_IF", e))?;
    socket
        .set_multicast_loop_v6(false)
        .map_err(|e| ctx("IPV6_MULTICAST_LOOP", e))?;
    Ok(socket)
}

/// Sends to ff02::1 (all nodes, RFC 4861 7.2.6). The source address is left to the kernel:
/// the interface's link-local address, or, while that is still tentative (a link that just
/// came up), the VIP itself, which is usable at once because VIPs are added without DAD.
fn send_na_on(
    socket: &Socket,
    index: u32,
    mac: [u8; 6],
    ip: Ipv6Addr,
    router: bool,
) -> io::Result<()> {
    let message = unsolicited_na(mac, ip, router);
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    socket
        .send_to(&message, &SockAddr::from(all_nodes))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("announce: unsolicited NA for {ip} on ifindex {index}: {e}"),
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn garp_frame_matches_hand_built_bytes() {
        let expected: [u8; GARP_FRAME_LEN] = [
            // Ethernet: dst broadcast, src MAC, type ARP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
            // htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request)
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            // sender MAC, sender IP 198.51.100.100
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc6, 0x33, 0x64, 0x64,
            // target MAC zero, target IP 198.51.100.100
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x64,
        ];
        assert_eq!(garp_frame(MAC, Ipv4Addr::new(198, 51, 100, 100)), expected);
    }

    #[test]
    fn unsolicited_na_matches_hand_built_bytes() {
        let target: Ipv6Addr = "2001:db8:1::100".parse().unwrap();
        let expected: [u8; NA_LEN] = [
            // type 136, code 0, checksum (kernel), flags O, reserved
            0x88, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, // target 2001:db8:1::100
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x01, 0x00,
            // option 2 (target link-layer address), length 1 (8 octets), MAC
            0x02, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
        ];
        assert_eq!(unsolicited_na(MAC, target, false), expected);
        let routed = unsolicited_na(MAC, target, true);
        assert_eq!(routed[4], 0xa0, "R and O set, S clear");
        assert_eq!(routed[..4], expected[..4]);
        assert_eq!(routed[5..], expected[5..]);
    }

    #[test]
    fn links_without_ethernet_address_are_refused() {
        let link = netlink::LinkInfo {
            index: 9,
            name: "tun0".into(),
            admin_up: true,
            lower_up: true,
            hw_address: Vec::new(),
        };
        let e = ethernet_address(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("tun0"));
    }
}
