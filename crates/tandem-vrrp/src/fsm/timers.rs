//! The VRRP timer arithmetic, kept apart so the formulas can be read (and tested) alone.
//!
//! Everything is computed in integer **microseconds** and rounded **down** (truncating
//! division), as keepalived does. Microseconds are fine enough that the RFC's ordering
//! property survives: with the same Master_Adver_Interval, one priority step changes Skew_Time
//! by at least 10 000 / 256 = 39 µs (v3, 1 cs interval) or 1 000 000 / 256 = 3906 µs (v2), so
//! a higher priority always has a strictly shorter Master_Down_Interval and wins the race
//! when the master dies. The truncation error is below 1 µs. (Integer *centiseconds*, the
//! RFC's unit, would truncate Skew_Time to 0 for short intervals and lose that ordering.)

use std::time::Duration;

use crate::types::{Centis, Version};

/// Microseconds in one centisecond, v3's interval unit (RFC 5798 5.2.7).
const MICROS_PER_CENTI: u64 = 10_000;
/// Microseconds in one second: v2's Skew_Time is a fraction of a second (RFC 3768 6.1).
const MICROS_PER_SECOND: u64 = 1_000_000;

/// Skew_Time for a router of `priority`, given the Master_Adver_Interval in force.
///
/// - v3 (RFC 5798 6.1, unchanged in RFC 9568 6.1):
///   `Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256` centiseconds, computed
///   here as `(256 - Priority) * Master_Adver_Interval_cs * 10_000 / 256` µs, rounded down.
/// - v2 (RFC 3768 6.1): `Skew_Time = (256 - Priority) / 256` seconds, computed as
///   `(256 - Priority) * 1_000_000 / 256` µs, rounded down; the interval plays no part.
///
/// Why it exists: the higher the priority, the shorter the skew, so when a master dies the
/// best backup's Master_Down_Timer fires first and the others hear it before theirs do.
pub fn skew_time(version: Version, priority: u8, master_adver_interval: Centis) -> Duration {
    let weight = 256 - u64::from(priority);
    let unit = match version {
        Version::V3 => u64::from(master_adver_interval.0) * MICROS_PER_CENTI,
        Version::V2 => MICROS_PER_SECOND,
    };
    Duration::from_micros(weight * unit / 256)
}

/// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time` (RFC 5798 6.1; RFC 3768 6.1
/// with Advertisement_Interval, which is the same value in v2 because v2 never adopts the
/// master's interval). Three adverts may be lost before a backup declares the master dead.
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_interval: Centis,
) -> Duration {
    master_adver_interval.as_duration() * 3 + skew_time(version, priority, master_adver_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_exact_values() {
        let us = |p, i| skew_time(Version::V3, p, Centis(i)).as_micros();
        assert_eq!(us(100, 100), 609_375);
        assert_eq!(us(255, 100), 3_906); // 3906.25 rounded down
        assert_eq!(us(1, 100), 996_093); // 996093.75 rounded down
        assert_eq!(us(100, 1), 6_093); // 6093.75 rounded down
        assert_eq!(us(200, 4095), 8_957_812); // 8957812.5 rounded down
    }

    #[test]
    fn v2_ignores_interval() {
        let us = |p, i| skew_time(Version::V2, p, Centis(i)).as_micros();
        assert_eq!(us(100, 100), 609_375);
        assert_eq!(us(100, 300), 609_375);
        assert_eq!(
            master_down_interval(Version::V2, 100, Centis(300)).as_micros(),
            9_609_375
        );
    }
}
