//! VRRP, the protocol that moves a virtual IP to a healthy node: the packet codec
//! ([`packet`]) and the per-instance state machine ([`fsm`]), both pure.
//!
//! Nothing here touches a socket or reads a clock: packets come in as bytes plus what the IP
//! layer said (source, destination, TTL), time comes in as an `Instant`, and decisions go out
//! as [`fsm::Action`]s. The Linux shell (raw sockets, netlink, gratuitous ARP) drives it, and
//! the tests drive it with a simulated clock, so every transition in RFC 5798's state tables
//! is tested without sleeping.

pub mod fsm;
pub mod packet;
pub mod types;

pub use types::*;
