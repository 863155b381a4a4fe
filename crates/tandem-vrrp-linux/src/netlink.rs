//! Virtual addresses and link state through rtnetlink, never by shelling out to `ip`.
//!
//! A VRRP master must own its virtual addresses (RFC 5798 6.4.3: "add the virtual IP
//! addresses" on the transition to master), drop them as soon as it is backup again, and
//! follow the state of the interface it runs on (keepalived's interface tracking: a master
//! whose link is down must not keep advertising). All of that is rtnetlink:
//! `RTM_NEWADDR`/`RTM_DELADDR`/`RTM_GETADDR` for addresses, `RTM_GETLINK` and the
//! `RTMGRP_LINK` multicast group for links.
//!
//! # Why blocking sockets and these crates
//!
//! The messages are encoded and decoded with `netlink-packet-route` (+ `netlink-packet-core`),
//! and carried over a plain blocking `NETLINK_ROUTE` socket from `netlink-sys`. These calls
//! are rare (a role change, a link event) and run on the VRRP instance's own thread, so an
//! async netlink stack (`rtnetlink` and its tokio connection task) would only add moving
//! parts; the blocking socket has a receive timeout so a kernel that never answers cannot
//! wedge the instance. Using the crates rather than hand-rolled `libc` structures keeps the
//! attribute layouts (alignment, `IFA_FLAGS` vs the 8-bit header flags, nested link
//! attributes) in a maintained, tested place.
//!
//! Every socket is created on the calling thread and so belongs to that thread's network
//! namespace: tests run these functions on a thread that has `setns(2)`-ed into a lab
//! namespace.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::Vips;

/// How long a request waits for the kernel's answer. The kernel answers rtnetlink requests
/// synchronously, so this only bounds the damage of something truly broken.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Receive buffer for one `recv`: a dump part is at most a few pages; larger datagrams are
/// detected (`MSG_TRUNC`) and reported rather than silently cut.
const RECV_BUFFER: usize = 64 * 1024;

/// Adds `context` to an error while keeping its kind, so callers can still match on
/// [`io::ErrorKind`].
pub(crate) fn with_context(err: io::Error, context: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{context}: {err}"))
}

/// One blocking rtnetlink request/response channel.
struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| with_context(e, "netlink: cannot open a NETLINK_ROUTE socket"))?;
        socket
            .bind_auto()
            .map_err(|e| with_context(e, "netlink: cannot bind the NETLINK_ROUTE socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| with_context(e, "netlink: cannot connect to the kernel"))?;
        set_recv_timeout(&socket, REPLY_TIMEOUT)?;
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Sends `message` and collects the kernel's answer. A dump ends with `NLMSG_DONE`; any
    /// other request is sent with `NLM_F_ACK` and ends with the acknowledgement (an
    /// `NLMSG_ERROR` whose code is 0), so every call returns only after the kernel has acted.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let mut answers = Vec::new();
        loop {
            self.receive()?;
            for item in split_messages(&self.buf) {
                let (seq, payload) = match item {
                    Ok(parsed) => parsed,
                    // A dump covers every link or address of the namespace; one message the
                    // decoder does not understand must not hide all the others.
                    Err(e) if dump => {
                        tracing::warn!(error = %e, "netlink: skipping an undecodable message");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if seq != self.seq {
                    continue;
                }
                match payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => match e.code {
                        None if dump => {}
                        None => return Ok(answers),
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                    },
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
        }
    }

    /// Reads one datagram into `self.buf`.
    fn receive(&mut self) -> io::Result<()> {
        receive_into(&self.socket, &mut self.buf, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("netlink: no answer from the kernel within {REPLY_TIMEOUT:?}"),
                )
            } else {
                e
            }
        })
    }

    fn link(&mut self, query: LinkMessage) -> io::Result<LinkMessage> {
        let answers = self.request(RouteNetlinkMessage::GetLink(query), 0)?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no RTM_NEWLINK in answer"))
    }

    fn link_by_index(&mut self, index: u32) -> io::Result<LinkMessage> {
        let mut query = LinkMessage::default();
        query.header.index = index;
        self.link(query)
            .map_err(|e| link_error(e, &format!("ifindex {index}")))
    }

    fn all_links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let answers = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }
}

/// `ENODEV` from the kernel becomes [`io::ErrorKind::NotFound`] naming the interface.
fn link_error(e: io::Error, what: &str) -> io::Error {
    if e.raw_os_error() == Some(libc::ENODEV) {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("netlink: no interface {what} in this network namespace"),
        )
    } else {
        with_context(e, format!("netlink: cannot read interface {what}"))
    }
}

fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: the fd is a live socket owned by `socket`; tv is a valid timeval whose size
    // is passed along.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(with_context(
            io::Error::last_os_error(),
            "netlink: cannot set SO_RCVTIMEO",
        ));
    }
    Ok(())
}

/// Reads one datagram into `buf` (cleared first). A datagram larger than the buffer is an
/// error rather than a silently truncated parse.
fn receive_into(socket: &Socket, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<()> {
    buf.clear();
    if buf.capacity() < RECV_BUFFER {
        buf.reserve(RECV_BUFFER);
    }
    let capacity = buf.capacity();
    let n = socket.recv(buf, flags | libc::MSG_TRUNC)?;
    if n > capacity {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("netlink: a {n}-byte datagram does not fit the {capacity}-byte buffer"),
        ));
    }
    Ok(())
}

type Parsed = io::Result<(u32, NetlinkPayload<RouteNetlinkMessage>)>;

/// Splits a datagram into its netlink messages: `(sequence number, payload)` each.
fn split_messages(mut data: &[u8]) -> impl Iterator<Item = Parsed> + '_ {
    std::iter::from_fn(move || {
        if data.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            data = &[];
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink: bad message length {len}"),
            )));
        }
        let (this, rest) = data.split_at(len);
        // Messages are 4-byte aligned inside a datagram.
        data = rest.get(((len + 3) & !3) - len..).unwrap_or(&[]);
        Some(
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(this)
                .map(|m| (m.header.sequence_number, m.payload))
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink: cannot decode a message: {e}"),
                    )
                }),
        )
    })
}

/// What this module needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name (`IFLA_IFNAME`).
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// The hardware address (`IFLA_ADDRESS`), empty for links without one (tun, ...).
    pub hw_address: Vec<u8>,
}

impl LinkInfo {
    /// Usable for VRRP: administratively up and with carrier. `IFF_UP` alone is not enough:
    /// an unplugged cable leaves it set, and a master behind a dead link must step down.
    pub fn is_up(&self) -> bool {
        self.admin_up && self.lower_up
    }

    fn from_message(link: &LinkMessage) -> Self {
        let mut name = String::new();
        let mut hw_address = Vec::new();
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::Address(a) => hw_address.clone_from(a),
                _ => {}
            }
        }
        Self {
            index: link.header.index,
            name,
            admin_up: link.header.flags.contains(LinkFlags::Up),
            lower_up: link.header.flags.contains(LinkFlags::LowerUp),
            hw_address,
        }
    }
}

/// The index of the interface called `name` in the calling thread's network namespace.
/// An unknown name is [`io::ErrorKind::NotFound`].
pub fn link_index(name: &str) -> io::Result<u32> {
    let mut query = LinkMessage::default();
    query
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    let link = Rtnl::open()?
        .link(query)
        .map_err(|e| link_error(e, &format!("{name:?}")))?;
    Ok(link.header.index)
}

/// The full `RTM_NEWLINK` description of the interface called `name` (kind, parent,
/// hardware address, ...), or `None` when there is no such interface. For [`crate::vmac`],
/// which has to tell its own macvlan interfaces from anything else of the same name.
pub(crate) fn link_message_by_name(name: &str) -> io::Result<Option<LinkMessage>> {
    let mut query = LinkMessage::default();
    query
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    match Rtnl::open()?.link(query) {
        Ok(link) => Ok(Some(link)),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(with_context(
            e,
            format!("netlink: cannot read interface {name:?}"),
        )),
    }
}

/// Sends one link request (`RTM_NEWLINK`, `RTM_SETLINK`, `RTM_DELLINK`) with `flags` and
/// returns once the kernel has acknowledged it. The kernel's error is returned as is (no
/// context added), so callers can match on its errno (`EEXIST`, `ENODEV`, `EADDRINUSE`).
pub(crate) fn link_request(message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    Rtnl::open()?.request(message, flags).map(|_| ())
}

/// Name, flags and hardware address of interface `index`.
pub fn link_info(index: u32) -> io::Result<LinkInfo> {
    let link = Rtnl::open()?.link_by_index(index)?;
    Ok(LinkInfo::from_message(&link))
}

/// Whether interface `index` is administratively up and has carrier (see
/// [`LinkInfo::is_up`]).
pub fn link_is_up(index: u32) -> io::Result<bool> {
    Ok(link_info(index)?.is_up())
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn check_prefix(ip: IpAddr, prefix_len: u8) -> io::Result<()> {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ip}/{prefix_len}: prefix length over {max}"),
        ));
    }
    Ok(())
}

/// The message that names one address of one interface. IPv4 carries the address in both
/// `IFA_LOCAL` (the address itself) and `IFA_ADDRESS` (the peer, equal on broadcast links),
/// as `ip addr add` does; IPv6 only has `IFA_ADDRESS`.
fn address_message(index: u32, ip: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(ip);
    message.header.prefix_len = prefix_len;
    message.header.scope = AddressScope::Universe;
    message.header.index = index;
    if ip.is_ipv4() {
        message.attributes.push(AddressAttribute::Local(ip));
    }
    message.attributes.push(AddressAttribute::Address(ip));
    message
}

/// Adds `ip/prefix_len` to interface `index`. Already present (`EEXIST`) is success, so
/// acquiring twice is harmless.
///
/// IPv6 addresses are added with `IFA_F_NODAD`: a VIP must answer the moment this node
/// becomes master, and duplicate address detection would keep it tentative (unusable, not
/// even as a source address) for a second or more, while a departing master that still holds
/// it for a moment would make DAD fail and leave the address dead. VRRP itself already
/// arbitrates ownership, which is why keepalived adds its IPv6 VIPs with `nodad` too.
pub fn add_address(index: u32, ip: IpAddr, prefix_len: u8) -> io::Result<()> {
    check_prefix(ip, prefix_len)?;
    let mut message = address_message(index, ip, prefix_len);
    if ip.is_ipv6() {
        message.header.flags = AddressHeaderFlags::Nodad;
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    let result = Rtnl::open()?.request(
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_EXCL,
    );
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(with_context(
            e,
            format!("netlink: cannot add {ip}/{prefix_len} to ifindex {index}"),
        )),
    }
}

/// Removes `ip/prefix_len` from interface `index`. Already absent (`EADDRNOTAVAIL`, or
/// `ENOENT` from some kernels) is success, so releasing twice is harmless.
pub fn del_address(index: u32, ip: IpAddr, prefix_len: u8) -> io::Result<()> {
    check_prefix(ip, prefix_len)?;
    let message = address_message(index, ip, prefix_len);
    match Rtnl::open()?.request(RouteNetlinkMessage::DelAddress(message), 0) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => Ok(()),
        Err(e) => Err(with_context(
            e,
            format!("netlink: cannot remove {ip}/{prefix_len} from ifindex {index}"),
        )),
    }
}

/// Every address (IPv4 and IPv6, link-local included) of interface `index`, with its
/// prefix length.
pub fn addresses(index: u32) -> io::Result<Vec<(IpAddr, u8)>> {
    let answers = Rtnl::open()?
        .request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )
        .map_err(|e| {
            with_context(
                e,
                format!("netlink: cannot list addresses of ifindex {index}"),
            )
        })?;
    let mut out = Vec::new();
    for answer in answers {
        let RouteNetlinkMessage::NewAddress(message) = answer else {
            continue;
        };
        // Without strict checking the kernel dumps every interface; filter here.
        if message.header.index != index {
            continue;
        }
        let mut local = None;
        let mut address = None;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address where both exist (point-to-point links).
        if let Some(ip) = local.or(address) {
            out.push((ip, message.header.prefix_len));
        }
    }
    Ok(out)
}

/// A change of a link's usability ([`LinkInfo::is_up`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface index.
    pub index: u32,
    /// Up and with carrier now; `false` also when the link was deleted.
    pub up: bool,
}

/// Follows link state through the `RTMGRP_LINK` multicast group, reporting only changes of
/// up/down (the kernel also sends `RTM_NEWLINK` for MTU, address or statistics changes).
///
/// The watcher subscribes before it reads the current state of every link, so no change
/// can fall between the two. If the kernel drops notifications because the socket's buffer
/// overflowed (`ENOBUFS`), the watcher reads every link again and reports what differs.
pub struct LinkWatcher {
    socket: Socket,
    buf: Vec<u8>,
    known: HashMap<u32, bool>,
    pending: VecDeque<LinkEvent>,
}

impl LinkWatcher {
    /// Subscribes to link notifications in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| with_context(e, "netlink: cannot open a NETLINK_ROUTE socket"))?;
        socket
            .bind(&SocketAddr::new(0, libc::RTMGRP_LINK as u32))
            .map_err(|e| with_context(e, "netlink: cannot subscribe to RTMGRP_LINK"))?;
        let mut watcher = Self {
            socket,
            buf: Vec::with_capacity(RECV_BUFFER),
            known: HashMap::new(),
            pending: VecDeque::new(),
        };
        watcher.resync()?;
        watcher.pending.clear();
        Ok(watcher)
    }

    /// The last known state of link `index`, `None` for a link never seen.
    pub fn is_up(&self, index: u32) -> Option<bool> {
        self.known.get(&index).copied()
    }

    /// Waits up to `timeout` for the next change; `Ok(None)` when none came. A zero
    /// `timeout` only looks at what already arrived.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<LinkEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.wait_readable(left)? {
                return Ok(None);
            }
            match receive_into(&self.socket, &mut self.buf, libc::MSG_DONTWAIT) {
                Ok(()) => self.absorb(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("netlink: link notifications were lost; re-reading links");
                    self.resync()?;
                }
                Err(e) => return Err(with_context(e, "netlink: reading link notifications")),
            }
        }
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut fd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut fd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(true); // the caller's loop re-checks the deadline
            }
            return Err(with_context(e, "netlink: poll on the link watcher"));
        }
        Ok(rc > 0)
    }

    fn absorb(&mut self) {
        let mut changes = Vec::new();
        for item in split_messages(&self.buf) {
            match item {
                Ok((_, NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)))) => {
                    let info = LinkInfo::from_message(&link);
                    changes.push((info.index, Some(info.is_up())));
                }
                Ok((_, NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)))) => {
                    changes.push((link.header.index, None));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "netlink: undecodable link notification"),
            }
        }
        for (index, state) in changes {
            self.record(index, state);
        }
    }

    fn record(&mut self, index: u32, state: Option<bool>) {
        let before = match state {
            Some(up) => self.known.insert(index, up),
            None => self.known.remove(&index),
        };
        let up = state.unwrap_or(false);
        if before != Some(up) && !(before.is_none() && state.is_none()) {
            self.pending.push_back(LinkEvent { index, up });
        }
    }

    fn resync(&mut self) -> io::Result<()> {
        let links = Rtnl::open()?
            .all_links()
            .map_err(|e| with_context(e, "netlink: cannot list links"))?;
        let mut seen = Vec::with_capacity(links.len());
        for link in &links {
            let info = LinkInfo::from_message(link);
            seen.push(info.index);
            self.record(info.index, Some(info.is_up()));
        }
        let gone: Vec<u32> = self
            .known
            .keys()
            .copied()
            .filter(|i| !seen.contains(i))
            .collect();
        for index in gone {
            self.record(index, None);
        }
        Ok(())
    }
}

impl AsRawFd for LinkWatcher {
    /// For a caller that wants to wait on the watcher with its own poller; call
    /// [`LinkWatcher::next_event`] with a zero timeout when it is readable.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// The host side of one VRRP instance's virtual addresses: [`Vips`] over rtnetlink, with
/// announcements from [`crate::announce`].
pub struct NetlinkVips {
    index: u32,
    vips: Vec<(IpAddr, u8)>,
    announcer: crate::announce::Announcer,
}

impl NetlinkVips {
    /// The virtual addresses `vips` (address, prefix length) on interface `index`.
    pub fn new(index: u32, vips: Vec<(IpAddr, u8)>) -> io::Result<Self> {
        for (ip, prefix_len) in &vips {
            check_prefix(*ip, *prefix_len)?;
        }
        Ok(Self {
            index,
            vips,
            announcer: crate::announce::Announcer::new(index),
        })
    }

    /// Like [`NetlinkVips::new`], naming the interface.
    pub fn on_interface(name: &str, vips: Vec<(IpAddr, u8)>) -> io::Result<Self> {
        Self::new(link_index(name)?, vips)
    }

    /// The interface index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The virtual addresses with their prefix lengths.
    pub fn vips(&self) -> &[(IpAddr, u8)] {
        &self.vips
    }
}

/// Runs `op` on every VIP, even after a failure (one bad address must not keep the others
/// from being configured or removed), and returns the first error.
fn for_each_vip(
    vips: &[(IpAddr, u8)],
    mut op: impl FnMut(IpAddr, u8) -> io::Result<()>,
) -> io::Result<()> {
    let mut first = None;
    for &(ip, prefix_len) in vips {
        if let Err(e) = op(ip, prefix_len) {
            tracing::warn!(error = %e, "vrrp: virtual address operation failed");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

impl Vips for NetlinkVips {
    fn acquire(&mut self) -> io::Result<()> {
        let index = self.index;
        for_each_vip(&self.vips, |ip, len| add_address(index, ip, len))
    }

    fn release(&mut self) -> io::Result<()> {
        let index = self.index;
        for_each_vip(&self.vips, |ip, len| del_address(index, ip, len))
    }

    /// RFC 5798 6.4.1/6.4.2 (and 8.1.2/8.2): a new master broadcasts a gratuitous ARP for
    /// each IPv4 VIP and an unsolicited neighbour advertisement for each IPv6 VIP, so hosts
    /// and switches move traffic to it at once instead of waiting for caches to expire.
    fn announce(&mut self) -> io::Result<()> {
        let ips: Vec<IpAddr> = self.vips.iter().map(|(ip, _)| *ip).collect();
        self.announcer.announce(&ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lengths_are_checked() {
        assert!(check_prefix("198.51.100.1".parse().unwrap(), 32).is_ok());
        assert!(check_prefix("198.51.100.1".parse().unwrap(), 33).is_err());
        assert!(check_prefix("2001:db8::1".parse().unwrap(), 128).is_ok());
        assert!(check_prefix("2001:db8::1".parse().unwrap(), 129).is_err());
        assert!(NetlinkVips::new(1, vec![("198.51.100.1".parse().unwrap(), 40)]).is_err());
    }

    #[test]
    fn ipv4_address_message_carries_local_and_address() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let m = address_message(3, ip, 24);
        assert_eq!(m.header.index, 3);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert_eq!(
            m.attributes,
            vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)]
        );
        let ip6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            address_message(3, ip6, 64).attributes,
            vec![AddressAttribute::Address(ip6)]
        );
    }

    #[test]
    fn watcher_reports_only_changes() {
        let mut known = HashMap::new();
        known.insert(2, true);
        let mut w = LinkWatcher {
            socket: match Socket::new(NETLINK_ROUTE) {
                Ok(s) => s,
                Err(e) => panic!("netlink socket: {e}"),
            },
            buf: Vec::new(),
            known,
            pending: VecDeque::new(),
        };
        w.record(2, Some(true));
        assert!(w.pending.is_empty());
        w.record(2, Some(false));
        w.record(2, None);
        w.record(2, None);
        w.record(5, Some(true));
        assert_eq!(
            w.pending.drain(..).collect::<Vec<_>>(),
            vec![
                LinkEvent {
                    index: 2,
                    up: false
                },
                LinkEvent { index: 5, up: true }
            ]
        );
    }

    #[test]
    fn split_messages_rejects_bad_lengths() {
        let mut bogus = vec![0u8; 20];
        bogus[0] = 200;
        let items: Vec<_> = split_messages(&bogus).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }
}
