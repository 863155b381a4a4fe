//! What one VRRP instance is configured with, and the checks that keep the state machine's
//! arithmetic meaningful.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::types::{Centis, Version};

/// Largest v3 Max_Adver_Int: the field is 12 bits of centiseconds (RFC 5798 5.2.7).
pub const V3_MAX_INTERVAL: Centis = Centis(4095);
/// Largest v2 Adver_Int: 8 bits of whole seconds (RFC 3768 5.3.7), in centiseconds.
pub const V2_MAX_INTERVAL: Centis = Centis(25_500);

/// One virtual router as this node runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub version: Version,
    /// Virtual Router Identifier, 1..=255 (RFC 5798 5.2.3).
    pub vrid: u8,
    /// Configured priority, 1..=255; 255 means this node owns the addresses (RFC 5798 5.2.4).
    /// Tracking may lower the *effective* priority later ([`super::Instance::set_priority`]).
    pub priority: u8,
    /// Advertisement_Interval. v3: 1..=4095 cs. v2: whole seconds 1..=255 (100..=25500 cs).
    pub advert_interval: Centis,
    /// Preempt_Mode (RFC 5798 6.1): take over from a live master of lower priority.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: how long a preempting backup keeps deferring to a live
    /// lower-priority master (see [`super::Instance`] for the exact rule). Zero: no delay.
    pub preempt_delay: Duration,
    /// This node's primary address on the interface: the source of its adverts and the
    /// tie-breaker on equal priority (RFC 5798 6.4.3).
    pub local_address: IpAddr,
    /// Accept_Mode (RFC 5798 6.1): the shell's concern (whether a non-owner master accepts
    /// packets addressed to the virtual addresses); carried here, unused by the FSM.
    pub accept: bool,
}

/// Why an [`InstanceConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// VRID 0 is not a virtual router (RFC 5798 5.2.3: 1..=255).
    ZeroVrid,
    /// Priority 0 is reserved for a master resigning (RFC 5798 5.2.4).
    ZeroPriority,
    /// The advertisement interval is outside what the version can put on the wire.
    IntervalOutOfRange {
        version: Version,
        interval: Centis,
        min: Centis,
        max: Centis,
    },
    /// VRRPv2 carries the interval in whole seconds (RFC 3768 5.3.7).
    V2IntervalNotWholeSeconds(Centis),
    /// VRRPv2 is IPv4 only (RFC 3768 1).
    V2RequiresIpv4(IpAddr),
    /// An unspecified address (0.0.0.0, ::) cannot be a primary address or break ties.
    UnspecifiedLocalAddress(IpAddr),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroVrid => write!(f, "vrid must be 1..=255, got 0"),
            Self::ZeroPriority => write!(
                f,
                "priority must be 1..=255, got 0 (0 is reserved for a master resigning)"
            ),
            Self::IntervalOutOfRange {
                version,
                interval,
                min,
                max,
            } => write!(
                f,
                "advert interval {} cs is out of range for {version:?} ({}..={} cs)",
                interval.0, min.0, max.0
            ),
            Self::V2IntervalNotWholeSeconds(i) => write!(
                f,
                "VRRPv2 advert interval must be whole seconds, got {} cs",
                i.0
            ),
            Self::V2RequiresIpv4(a) => write!(f, "VRRPv2 is IPv4 only, local address is {a}"),
            Self::UnspecifiedLocalAddress(a) => {
                write!(
                    f,
                    "local address {a} is unspecified; a primary address is needed"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl InstanceConfig {
    /// Checks every field against the RFC ranges; the FSM only runs validated configs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::ZeroVrid);
        }
        if self.priority == 0 {
            return Err(ConfigError::ZeroPriority);
        }
        if self.local_address.is_unspecified() {
            return Err(ConfigError::UnspecifiedLocalAddress(self.local_address));
        }
        match self.version {
            Version::V3 => self.check_interval(Centis(1), V3_MAX_INTERVAL),
            Version::V2 => self.validate_v2(),
        }
    }

    // `%` rather than `is_multiple_of`, which needs Rust 1.87 (the workspace declares 1.85).
    #[allow(clippy::manual_is_multiple_of)]
    fn validate_v2(&self) -> Result<(), ConfigError> {
        if !self.local_address.is_ipv4() {
            return Err(ConfigError::V2RequiresIpv4(self.local_address));
        }
        self.check_interval(Centis(100), V2_MAX_INTERVAL)?;
        if self.advert_interval.0 % 100 != 0 {
            return Err(ConfigError::V2IntervalNotWholeSeconds(self.advert_interval));
        }
        Ok(())
    }

    fn check_interval(&self, min: Centis, max: Centis) -> Result<(), ConfigError> {
        if (min..=max).contains(&self.advert_interval) {
            Ok(())
        } else {
            Err(ConfigError::IntervalOutOfRange {
                version: self.version,
                interval: self.advert_interval,
                min,
                max,
            })
        }
    }
}
