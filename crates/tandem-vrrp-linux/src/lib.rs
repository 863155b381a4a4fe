//! The Linux side of VRRP: everything [`tandem_vrrp`]'s pure core needs to act on a real
//! network.
//!
//! - [`socket`]: raw IP protocol 112 sockets (IPv4 and IPv6), multicast membership, TTL/hop
//!   limit 255 on send, TTL/hop limit and destination read back on receive.
//! - [`netlink`]: add and remove virtual IPs, look up interfaces, watch link state
//!   (rtnetlink; never by shelling out to `ip`).
//! - [`announce`]: gratuitous ARP (AF_PACKET) and unsolicited neighbour advertisements.
//! - [`runner`]: one instance's loop, on its own OS thread with its own current-thread
//!   runtime, so a saturated proxy cannot delay adverts.
//! - [`vmac`]: VRRP's virtual MAC (keepalived's `use_vmac`): a macvlan interface with the
//!   RFC 5798 virtual router MAC address for the VIPs, so a failover changes no host's
//!   neighbour entry.

pub mod announce;
pub mod netlink;
pub mod runner;
pub mod socket;
pub mod vmac;

use std::io;

/// What the instance loop asks of the host when its role changes: the seam between the
/// runner and netlink/ARP, so the runner is tested with a recording fake and the netlink side
/// in a network namespace.
pub trait Vips: Send {
    /// Configure every virtual address on the interface; already present is not an error.
    fn acquire(&mut self) -> io::Result<()>;
    /// Remove every virtual address from the interface; already absent is not an error.
    fn release(&mut self) -> io::Result<()>;
    /// Tell the segment where the virtual addresses live now: gratuitous ARP for IPv4,
    /// unsolicited neighbour advertisements for IPv6.
    fn announce(&mut self) -> io::Result<()>;
}
