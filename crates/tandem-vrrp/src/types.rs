//! The vocabulary shared by the codec and the state machine.

use std::net::IpAddr;
use std::time::Duration;

/// Which VRRP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, advertisement interval in whole seconds, an authentication field.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

/// Advertisement interval, kept in centiseconds: v3's unit (12 bits on the wire, 1..=4095);
/// v2's whole seconds (1..=255) are multiples of 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centis(pub u16);

impl Centis {
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
}

/// The priority an address owner uses (RFC 5798 5.2.4): it always wins and never waits.
pub const OWNER_PRIORITY: u8 = 255;
/// Sent by a master that is stopping, so a backup takes over after only Skew_Time.
pub const RESIGN_PRIORITY: u8 = 0;

/// One VRRP advertisement, as the state machine sees it: decoded from the wire, or to be
/// encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Max_Adver_Int (v3) or Adver_Int (v2, converted to centiseconds).
    pub interval: Centis,
    /// The virtual addresses, all of one family (the family of the IP packet carrying them).
    pub addresses: Vec<IpAddr>,
}

/// An advertisement as received, with what the IP layer told us about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's primary address (the IP source): the tie-breaker on equal priorities.
    pub source: IpAddr,
    pub advert: Advert,
}
