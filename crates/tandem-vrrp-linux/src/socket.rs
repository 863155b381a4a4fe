//! Raw IP protocol 112 sockets: how VRRP advertisements leave and reach this host.
//!
//! One [`VrrpSocket`] per instance, IPv4 or IPv6 (the family of the instance's primary
//! address), bound to one interface with `SO_BINDTODEVICE`, so a packet heard on another
//! link can never reach the instance (RFC 5798 7.1 relies on the link: TTL 255 proves the
//! sender is on it).
//!
//! # Sending
//!
//! The kernel builds the IP header; every packet is sent with `sendmsg` and a pktinfo
//! control message (`IP_PKTINFO` / `IPV6_PKTINFO`) naming the interface and the source
//! address, so the source is exactly the primary address the checksum was computed over
//! (RFC 5798 5.1.1.1 / 5.1.2.1: the primary IPv4 address, or the IPv6 link-local address),
//! whatever the routing table would pick. TTL / Hop Limit is 255 for multicast and unicast
//! alike (RFC 5798 5.1.1.3, 5.1.2.3: receivers discard anything else). The destination is
//! 224.0.0.18 / ff02::12 (RFC 5798 5.1.1.2, 5.1.2.2), or each configured unicast peer in
//! turn (keepalived's `unicast_peer`, for links without multicast). Multicast loopback is
//! off: our own adverts are of no use to us (the state machine would drop them anyway).
//!
//! With a [`SendInterface`] (VRRP's virtual MAC, [`crate::vmac`]) adverts are received on the
//! instance's interface as always but sent through a second raw socket bound to the send
//! interface, so they carry that interface's MAC address as Ethernet source. The source
//! address stays the instance's interface's primary address: for IPv6 the send socket is
//! `IPV6_FREEBIND`, because the kernel otherwise only sends from a link-local address
//! configured on the outgoing interface itself. The send socket joins no group and has a
//! filter that drops everything, so nothing queues on it.
//!
//! # Receiving
//!
//! - IPv4: a raw socket delivers the whole datagram *with* its IP header. We parse that
//!   header (IHL, TTL, source, destination) rather than asking for `IP_PKTINFO` and
//!   `IP_RECVTTL` control messages: the header is exact (it is the packet as received, not
//!   a routing decision about it), needs no control buffer, and is what keepalived reads too.
//! - IPv6: raw sockets never deliver the IPv6 header (RFC 3542 3), so the hop limit and the
//!   destination come from `IPV6_HOPLIMIT` and `IPV6_PKTINFO` control messages
//!   (`IPV6_RECVHOPLIMIT`, `IPV6_RECVPKTINFO`), the source from the socket address. A
//!   packet without the hop-limit control message is reported with hop limit 0, so
//!   [`tandem_vrrp::packet::decode`] discards it as `bad_ttl` rather than trusting it.
//!
//! With unicast peers configured, only packets whose source is one of the peers are passed
//! on; the others are counted ([`SocketCounters::foreign_source`]) and dropped, since on a
//! unicast setup anything else is either a misconfigured neighbour or a spoofer.
//!
//! The socket is nonblocking and registered with the calling thread's tokio runtime
//! ([`tokio::io::unix::AsyncFd`]), so [`VrrpSocket::open`] must run inside a runtime: the
//! runner opens it on its own thread.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tandem_vrrp::packet::{IpMeta, IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, REQUIRED_TTL};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Largest datagram we read: an Ethernet MTU is plenty (a full v4 advert is 1056 bytes, a
/// full v6 one 1280, see [`tandem_vrrp::packet::MAX_ADDRESSES_V6`]); anything longer is
/// truncated and then fails the codec's exact-length check.
pub const RECV_BUFFER_LEN: usize = 2048;

/// Space for the control messages we ask for on IPv6 (hop limit and pktinfo), generously.
const CONTROL_LEN: usize = 128;

/// The IP address family of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

/// What the socket dropped before the codec saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounters {
    /// Unicast mode: the source is not a configured peer.
    pub foreign_source: u64,
    /// An IPv4 header we could not parse (shorter than its IHL says, or not version 4), or
    /// an IPv6 packet without a usable source: never seen from a sane kernel, counted so it
    /// is visible if it happens.
    pub malformed_ip: u64,
}

/// The interface adverts are sent through when it is not the one they are received on: a
/// VRRP virtual MAC interface ([`crate::vmac::Vmac::send_interface`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendInterface {
    /// Interface index.
    pub index: u32,
    /// Interface name (for `SO_BINDTODEVICE`).
    pub name: String,
}

/// A VRRP raw socket on one interface (see the module docs).
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    /// With a [`SendInterface`]: the socket bound to it, and its index. Without: adverts
    /// leave through `fd` on `ifindex`.
    send_via: Option<(AsyncFd<Socket>, u32)>,
    family: Family,
    ifindex: u32,
    source: IpAddr,
    /// Where adverts go: the multicast group, or every unicast peer.
    destinations: Vec<IpAddr>,
    /// Unicast mode: the only sources accepted. Empty: multicast, accept any source.
    peers: Vec<IpAddr>,
    foreign_source: AtomicU64,
    malformed_ip: AtomicU64,
}

impl VrrpSocket {
    /// Opens the socket on interface `ifname` (index `ifindex`) with `source` as the source
    /// of every advert; the family is `source`'s. With `unicast_peers` empty it joins the
    /// VRRP multicast group and sends to it; otherwise it sends to each peer and accepts
    /// only them (and joins no group). Must be called inside a tokio runtime with I/O
    /// enabled.
    ///
    /// Refuses an IPv6 `source` that is not link-local in multicast mode (RFC 5798 5.1.2.1:
    /// "The IPv6 source address MUST be the IPv6 link-local address of the interface"), and
    /// peers of the other family.
    pub fn open(
        ifindex: u32,
        ifname: &str,
        source: IpAddr,
        unicast_peers: &[IpAddr],
    ) -> io::Result<Self> {
        Self::open_with_send_interface(ifindex, ifname, source, unicast_peers, None)
    }

    /// Like [`VrrpSocket::open`], and with `send` set, adverts leave through that interface
    /// instead of `ifname` (from the same `source` address; see the module docs). Receiving
    /// is unchanged: on `ifname`.
    ///
    /// `send` is for multicast only and refused with `unicast_peers`: a unicast advert out of
    /// a virtual MAC interface would resolve the peer's address from there, announcing this
    /// node's own address with the virtual MAC (see [`crate::vmac`]).
    pub fn open_with_send_interface(
        ifindex: u32,
        ifname: &str,
        source: IpAddr,
        unicast_peers: &[IpAddr],
        send: Option<&SendInterface>,
    ) -> io::Result<Self> {
        let family = Family::of(source);
        if let Some(peer) = unicast_peers.iter().find(|p| Family::of(**p) != family) {
            return Err(invalid(format!(
                "unicast peer {peer} is not of the family of the source address {source}"
            )));
        }
        if source.is_unspecified() || source.is_multicast() {
            return Err(invalid(format!(
                "VRRP source address {source} must be a unicast address of {ifname}"
            )));
        }
        if let (Some(send), false) = (send, unicast_peers.is_empty()) {
            return Err(invalid(format!(
                "adverts to unicast peers must leave from {ifname}, not through {}",
                send.name
            )));
        }
        if let IpAddr::V6(v6) = source {
            if unicast_peers.is_empty() && !is_link_local_v6(&v6) {
                return Err(invalid(format!(
                    "VRRP over IPv6 must be sent from the link-local address of {ifname} \
                     (RFC 5798 5.1.2.1), not {source}"
                )));
            }
        }
        let socket = match family {
            Family::V4 => open_v4(ifindex, ifname, unicast_peers.is_empty()),
            Family::V6 => open_v6(ifindex, ifname, unicast_peers.is_empty()),
        }
        .map_err(|e| context(e, format!("VRRP socket on {ifname} (ifindex {ifindex})")))?;
        let destinations = if unicast_peers.is_empty() {
            vec![match family {
                Family::V4 => IpAddr::V4(MULTICAST_V4),
                Family::V6 => IpAddr::V6(MULTICAST_V6),
            }]
        } else {
            unicast_peers.to_vec()
        };
        // SAFETY: a `Socket` owns its descriptor for its whole life and `as_raw_fd` always
        // returns that one; the `AsyncFd` owns the `Socket`.
        let fd = unsafe {
            AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(|e| {
            let (_, e) = e.into_parts();
            context(e, format!("registering the VRRP socket on {ifname}"))
        })?;
        let send_via = match send {
            None => None,
            Some(send) => {
                let socket = open_send_only(family, send).map_err(|e| {
                    context(
                        e,
                        format!("VRRP send socket on {} (ifindex {})", send.name, send.index),
                    )
                })?;
                // SAFETY: as above.
                let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::WRITABLE) }
                    .map_err(|e| {
                        let (_, e) = e.into_parts();
                        context(e, format!("registering the send socket on {}", send.name))
                    })?;
                Some((fd, send.index))
            }
        };
        Ok(Self {
            fd,
            send_via,
            family,
            ifindex,
            source,
            destinations,
            peers: unicast_peers.to_vec(),
            foreign_source: AtomicU64::new(0),
            malformed_ip: AtomicU64::new(0),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The source address of every advert sent (and covered by the checksum).
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// Where each advert must be sent: the multicast group, or every unicast peer. The
    /// caller encodes once per destination, since the checksum covers it (RFC 5798 5.2.8).
    pub fn destinations(&self) -> &[IpAddr] {
        &self.destinations
    }

    pub fn counters(&self) -> SocketCounters {
        SocketCounters {
            foreign_source: self.foreign_source.load(Ordering::Relaxed),
            malformed_ip: self.malformed_ip.load(Ordering::Relaxed),
        }
    }

    /// Waits for the next VRRP packet that passes the socket's own filters, writes its VRRP
    /// message (the IP payload) to the start of `buf` and returns its length and what the
    /// IP layer said. A packet longer than `buf` is truncated (and then fails the codec's
    /// length check).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, IpMeta)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let received = match guard.try_io(|inner| match self.family {
                Family::V4 => recv_v4(inner.get_ref(), buf),
                Family::V6 => recv_v6(inner.get_ref(), buf),
            }) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            let Some((len, meta)) = received else {
                self.malformed_ip.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if !self.peers.is_empty() && !self.peers.contains(&meta.src) {
                self.foreign_source.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return Ok((len, meta));
        }
    }

    /// Sends one encoded VRRP message to `dst` (one of [`Self::destinations`]) from
    /// [`Self::source`] out of this interface, with TTL / Hop Limit 255.
    pub async fn send(&self, bytes: &[u8], dst: IpAddr) -> io::Result<()> {
        if Family::of(dst) != self.family {
            return Err(invalid(format!(
                "cannot send a VRRP packet to {dst} from {}",
                self.source
            )));
        }
        let (fd, ifindex) = match &self.send_via {
            Some((fd, index)) => (fd, *index),
            None => (&self.fd, self.ifindex),
        };
        loop {
            let mut guard = fd.writable().await?;
            match guard.try_io(|inner| {
                send_with_pktinfo(inner.get_ref(), bytes, self.source, dst, ifindex)
            }) {
                Ok(result) => {
                    return result.map_err(|e| context(e, format!("sending VRRP to {dst}")))
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// fe80::/10 (RFC 4291 2.5.6).
fn is_link_local_v6(address: &Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Wraps `error` with what we were doing, keeping its kind.
fn context(error: io::Error, what: String) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

fn open_v4(ifindex: u32, ifname: &str, multicast: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(|e| context(e, "socket(AF_INET, SOCK_RAW, 112)".into()))?;
    socket
        .bind_device(Some(ifname.as_bytes()))
        .map_err(|e| context(e, "SO_BINDTODEVICE".into()))?;
    // RFC 5798 5.1.1.3: "The TTL MUST be set to 255."
    socket
        .set_ttl_v4(u32::from(REQUIRED_TTL))
        .map_err(|e| context(e, "IP_TTL 255".into()))?;
    socket
        .set_multicast_ttl_v4(u32::from(REQUIRED_TTL))
        .map_err(|e| context(e, "IP_MULTICAST_TTL 255".into()))?;
    socket
        .set_multicast_loop_v4(false)
        .map_err(|e| context(e, "IP_MULTICAST_LOOP off".into()))?;
    if multicast {
        socket
            .join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))
            .map_err(|e| context(e, "IP_ADD_MEMBERSHIP 224.0.0.18".into()))?;
        // Memberships of other sockets on other interfaces must not leak in (Linux delivers
        // every group the host joined to every raw socket unless this is off).
        socket
            .set_multicast_all_v4(false)
            .map_err(|e| context(e, "IP_MULTICAST_ALL off".into()))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, "O_NONBLOCK".into()))?;
    Ok(socket)
}

fn open_v6(ifindex: u32, ifname: &str, multicast: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(|e| context(e, "socket(AF_INET6, SOCK_RAW, 112)".into()))?;
    socket
        .bind_device(Some(ifname.as_bytes()))
        .map_err(|e| context(e, "SO_BINDTODEVICE".into()))?;
    // RFC 5798 5.1.2.3: "The Hop Limit MUST be set to 255."
    socket
        .set_multicast_hops_v6(u32::from(REQUIRED_TTL))
        .map_err(|e| context(e, "IPV6_MULTICAST_HOPS 255".into()))?;
    socket
        .set_unicast_hops_v6(u32::from(REQUIRED_TTL))
        .map_err(|e| context(e, "IPV6_UNICAST_HOPS 255".into()))?;
    socket
        .set_multicast_loop_v6(false)
        .map_err(|e| context(e, "IPV6_MULTICAST_LOOP off".into()))?;
    socket
        .set_multicast_if_v6(ifindex)
        .map_err(|e| context(e, "IPV6_MULTICAST_IF".into()))?;
    set_int_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)
        .map_err(|e| context(e, "IPV6_RECVHOPLIMIT".into()))?;
    set_int_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
        .map_err(|e| context(e, "IPV6_RECVPKTINFO".into()))?;
    if multicast {
        socket
            .join_multicast_v6(&MULTICAST_V6, ifindex)
            .map_err(|e| context(e, "IPV6_JOIN_GROUP ff02::12".into()))?;
        socket
            .set_multicast_all_v6(false)
            .map_err(|e| context(e, "IPV6_MULTICAST_ALL off".into()))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, "O_NONBLOCK".into()))?;
    Ok(socket)
}

/// A raw protocol-112 socket that only sends, through `send`: bound to it, TTL / hop limit
/// 255, no multicast loopback, no group joined, and a classic BPF filter that accepts
/// nothing (a raw socket otherwise gets a copy of every VRRP packet arriving on its
/// interface, which nobody would read). IPv6 also gets `IPV6_FREEBIND`, since the source
/// (the link-local address of the receiving interface) is not on this one.
fn open_send_only(family: Family, send: &SendInterface) -> io::Result<Socket> {
    let domain = match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    };
    let socket = Socket::new(
        domain,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(|e| context(e, "socket(SOCK_RAW, 112)".into()))?;
    // BPF_RET | BPF_K with k = 0: keep 0 bytes of every packet, i.e. drop it.
    socket
        .attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])
        .map_err(|e| context(e, "SO_ATTACH_FILTER (drop all)".into()))?;
    socket
        .bind_device(Some(send.name.as_bytes()))
        .map_err(|e| context(e, "SO_BINDTODEVICE".into()))?;
    match family {
        Family::V4 => {
            socket
                .set_ttl_v4(u32::from(REQUIRED_TTL))
                .map_err(|e| context(e, "IP_TTL 255".into()))?;
            socket
                .set_multicast_ttl_v4(u32::from(REQUIRED_TTL))
                .map_err(|e| context(e, "IP_MULTICAST_TTL 255".into()))?;
            socket
                .set_multicast_loop_v4(false)
                .map_err(|e| context(e, "IP_MULTICAST_LOOP off".into()))?;
        }
        Family::V6 => {
            socket
                .set_multicast_hops_v6(u32::from(REQUIRED_TTL))
                .map_err(|e| context(e, "IPV6_MULTICAST_HOPS 255".into()))?;
            socket
                .set_unicast_hops_v6(u32::from(REQUIRED_TTL))
                .map_err(|e| context(e, "IPV6_UNICAST_HOPS 255".into()))?;
            socket
                .set_multicast_loop_v6(false)
                .map_err(|e| context(e, "IPV6_MULTICAST_LOOP off".into()))?;
            socket
                .set_multicast_if_v6(send.index)
                .map_err(|e| context(e, "IPV6_MULTICAST_IF".into()))?;
            socket
                .set_freebind_v6(true)
                .map_err(|e| context(e, "IPV6_FREEBIND".into()))?;
        }
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| context(e, "O_NONBLOCK".into()))?;
    Ok(socket)
}

fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One `recv` on the IPv4 raw socket. `Ok(None)`: the IP header did not parse.
fn recv_v4(socket: &Socket, buf: &mut [u8]) -> io::Result<Option<(usize, IpMeta)>> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    Ok(strip_ipv4_header(buf, n))
}

/// Parses the IPv4 header a raw socket delivers in front of the payload (RFC 791 3.1),
/// moves the payload to the start of `buf` and returns its length with the header's TTL,
/// source and destination. `None` if the header is not a well-formed IPv4 header.
pub fn strip_ipv4_header(buf: &mut [u8], n: usize) -> Option<(usize, IpMeta)> {
    let packet = buf.get(..n)?;
    let &[version_ihl, _tos, len_hi, len_lo, _, _, _, _, ttl, _proto, _, _, s0, s1, s2, s3, d0, d1, d2, d3] =
        packet.first_chunk::<20>()?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if header_len < 20 || header_len > n {
        return None;
    }
    // Trust the smaller of what arrived and what the header says (Ethernet padding never
    // reaches a raw socket, but a truncated read might).
    let total = usize::from(u16::from_be_bytes([len_hi, len_lo])).clamp(header_len, n);
    let meta = IpMeta {
        src: IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)),
        dst: IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3)),
        ttl_or_hop_limit: ttl,
    };
    buf.copy_within(header_len..total, 0);
    Some((total - header_len, meta))
}

/// One `recvmsg` on the IPv6 raw socket, reading hop limit and destination from the
/// control messages. `Ok(None)`: no IPv6 source address came with it.
fn recv_v6(socket: &Socket, buf: &mut [u8]) -> io::Result<Option<(usize, IpMeta)>> {
    // SAFETY: all-zero is a valid sockaddr_in6 and a valid msghdr.
    let mut from: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut control = [0u64; CONTROL_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    // SAFETY: every pointer in `msg` points at a live buffer of the stated length.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if i32::from(from.sin6_family) != libc::AF_INET6 {
        return Ok(None);
    }
    let mut hop_limit = 0u8;
    let mut dst = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    // SAFETY: the kernel filled `control` up to `msg_controllen`; the CMSG_* helpers stay
    // within it, and each payload is read unaligned with the size the kernel documents.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            if header.cmsg_level == libc::IPPROTO_IPV6 {
                if header.cmsg_type == libc::IPV6_HOPLIMIT {
                    let value: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    hop_limit = u8::try_from(value).unwrap_or(0);
                } else if header.cmsg_type == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    dst = IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let meta = IpMeta {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst,
        ttl_or_hop_limit: hop_limit,
    };
    Ok(Some((n.min(buf.len()), meta)))
}

/// `sendmsg` with an `IP_PKTINFO` / `IPV6_PKTINFO` control message fixing the source
/// address and outgoing interface (see the module docs for why not `bind`: a raw IPv4 socket
/// bound to an address only receives packets addressed to it, which would shut out the
/// multicast adverts).
fn send_with_pktinfo(
    socket: &Socket,
    bytes: &[u8],
    source: IpAddr,
    dst: IpAddr,
    ifindex: u32,
) -> io::Result<()> {
    let mut control = [0u64; CONTROL_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    let dst_addr = socket2::SockAddr::from(match dst {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, 0)),
        // Link-local and multicast-link-scope destinations need the interface as scope.
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, ifindex)),
    });
    msg.msg_name = dst_addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = dst_addr.len();
    let ifindex_c = libc::c_int::try_from(ifindex).map_err(|_| invalid("ifindex".into()))?;
    // SAFETY: `control` is CONTROL_LEN bytes, more than CMSG_SPACE of either pktinfo;
    // CMSG_FIRSTHDR is non-null because msg_controllen is large enough.
    let sent = unsafe {
        match (source, dst) {
            (IpAddr::V4(src), IpAddr::V4(_)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: ifindex_c,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(src.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                write_cmsg(&mut msg, libc::IPPROTO_IP, libc::IP_PKTINFO, &info);
            }
            (IpAddr::V6(src), IpAddr::V6(_)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: ifindex,
                };
                write_cmsg(&mut msg, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info);
            }
            _ => return Err(invalid(format!("{source} and {dst} differ in family"))),
        }
        libc::sendmsg(socket.as_raw_fd(), &msg, 0)
    };
    let sent = usize::try_from(sent).map_err(|_| io::Error::last_os_error())?;
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", bytes.len()),
        ));
    }
    Ok(())
}

/// Writes one control message holding `value` into `msg`'s (zeroed, large enough) control
/// buffer and sets `msg_controllen` to its space.
///
/// # Safety
/// `msg.msg_control` must point at a zeroed buffer of at least `CMSG_SPACE(size_of::<T>())`
/// bytes, aligned for `cmsghdr`.
unsafe fn write_cmsg<T: Copy>(
    msg: &mut libc::msghdr,
    level: libc::c_int,
    kind: libc::c_int,
    value: &T,
) {
    let size = mem::size_of::<T>() as u32;
    msg.msg_controllen = libc::CMSG_SPACE(size) as _;
    let cmsg = libc::CMSG_FIRSTHDR(msg);
    (*cmsg).cmsg_level = level;
    (*cmsg).cmsg_type = kind;
    (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), *value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_stripped_with_options() {
        // IHL 6 (one option word), TTL 255, 198.51.100.1 -> 224.0.0.18, 3 payload bytes.
        let mut buf = vec![
            0x46, 0, 0, 27, 0, 0, 0, 0, 255, 112, 0, 0, 198, 51, 100, 1, 224, 0, 0, 18, 1, 2, 3, 4,
            0xaa, 0xbb, 0xcc,
        ];
        let n = buf.len();
        let (len, meta) = strip_ipv4_header(&mut buf, n).unwrap();
        assert_eq!(len, 3);
        assert_eq!(&buf[..3], &[0xaa, 0xbb, 0xcc]);
        assert_eq!(meta.ttl_or_hop_limit, 255);
        assert_eq!(meta.src, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(meta.dst, IpAddr::V4(MULTICAST_V4));
    }

    #[test]
    fn malformed_ipv4_headers_are_refused() {
        let mut short = [0x45u8; 10];
        assert!(strip_ipv4_header(&mut short, 10).is_none());
        let mut v6 = [0u8; 20];
        v6[0] = 0x65;
        assert!(strip_ipv4_header(&mut v6, 20).is_none());
        let mut big_ihl = [0u8; 20];
        big_ihl[0] = 0x4f; // 60-byte header in a 20-byte packet
        assert!(strip_ipv4_header(&mut big_ihl, 20).is_none());
    }

    #[test]
    fn send_interface_is_refused_with_unicast_peers() {
        let send = SendInterface {
            index: 7,
            name: "vrrp.51".into(),
        };
        let e = VrrpSocket::open_with_send_interface(
            2,
            "eth0",
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            &[IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2))],
            Some(&send),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("vrrp.51"), "{e}");
    }

    #[test]
    fn link_local_check() {
        assert!(is_link_local_v6(&"fe80::1".parse().unwrap()));
        assert!(!is_link_local_v6(&"2001:db8::1".parse().unwrap()));
    }
}
