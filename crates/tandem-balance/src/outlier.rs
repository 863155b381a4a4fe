//! Passive failure detection: the bookkeeping of ejecting a backend that fails live traffic,
//! and of letting it back in.
//!
//! Pure: time comes in as an argument. The topology owns one [`Ejection`] per backend behind
//! a mutex that is only taken when a failure streak reaches its threshold, when an ejection
//! expires, or when an active check passes, never per request.

use std::time::{Duration, Instant};

use tandem_config::Outlier;

/// One backend's ejection history.
#[derive(Debug, Clone, Default)]
pub struct Ejection {
    /// Ejections in a row; the n-th lasts n × `base_ejection_time`.
    count: u32,
    /// While ejected: when the ejection ends.
    until: Option<Instant>,
    /// When the last ejection ended, to forget old ejections.
    released_at: Option<Instant>,
}

impl Ejection {
    pub fn is_ejected(&self) -> bool {
        self.until.is_some()
    }

    /// Ejections in a row so far (the multiplier of the next one, minus one).
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Eject now; returns how long for. A backend that has stayed in for `max_ejection_time`
    /// since its last ejection starts over at `base_ejection_time`: a failure a day ago says
    /// nothing about today, while a backend that fails again right after release is ejected
    /// for longer each time (capped), so a flapping backend costs less and less traffic.
    pub fn eject(&mut self, now: Instant, cfg: &Outlier) -> Duration {
        if let Some(released) = self.released_at {
            if now.saturating_duration_since(released) >= cfg.max_ejection_time {
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        let length = cfg
            .base_ejection_time
            .saturating_mul(self.count)
            .min(cfg.max_ejection_time);
        self.until = Some(now + length);
        length
    }

    /// End an ejection whose time is up. True when the backend came back.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.until {
            Some(until) if until <= now => self.release(now),
            _ => false,
        }
    }

    /// End the ejection now (an active check passed, or an operator re-enabled the backend).
    /// True when the backend was ejected.
    pub fn release(&mut self, now: Instant) -> bool {
        if self.until.take().is_some() {
            self.released_at = Some(now);
            true
        } else {
            false
        }
    }
}

/// Whether one more of a pool's `total` backends may be ejected while `ejected` already are.
///
/// At most `max_percent` of the pool, rounded down, but at least one when the pool has two
/// or more backends (a 3-backend pool at 10% could otherwise never eject anything). A single
/// backend is never ejected: sending it traffic is the only chance those requests have, and
/// its active check still takes it out when it is really gone.
pub fn may_eject(total: usize, ejected: usize, max_percent: u32) -> bool {
    if total < 2 || max_percent == 0 {
        return false;
    }
    let share = total.saturating_mul(max_percent.min(100) as usize) / 100;
    ejected < share.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Outlier {
        Outlier {
            consecutive_connect_failures: 3,
            consecutive_5xx: 0,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn ejections_grow_linearly_up_to_the_cap() {
        let t0 = Instant::now();
        let mut e = Ejection::default();
        assert_eq!(e.eject(t0, &cfg()), Duration::from_secs(10));
        assert!(e.is_ejected());
        assert!(!e.expire(t0 + Duration::from_secs(9)));
        assert!(e.expire(t0 + Duration::from_secs(10)));
        assert!(!e.is_ejected());
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(e.eject(t1, &cfg()), Duration::from_secs(20));
        e.release(t1 + Duration::from_secs(1));
        assert_eq!(
            e.eject(t1 + Duration::from_secs(2), &cfg()),
            Duration::from_secs(30)
        );
        e.release(t1 + Duration::from_secs(3));
        // Capped at max_ejection_time.
        assert_eq!(
            e.eject(t1 + Duration::from_secs(4), &cfg()),
            Duration::from_secs(30)
        );
        assert_eq!(e.count(), 4);
    }

    #[test]
    fn a_long_good_spell_resets_the_multiplier() {
        let t0 = Instant::now();
        let mut e = Ejection::default();
        e.eject(t0, &cfg());
        e.release(t0 + Duration::from_secs(1));
        let later = t0 + Duration::from_secs(1) + cfg().max_ejection_time;
        assert_eq!(e.eject(later, &cfg()), Duration::from_secs(10));
        assert_eq!(e.count(), 1);
    }

    #[test]
    fn release_only_reports_a_real_ejection() {
        let t0 = Instant::now();
        let mut e = Ejection::default();
        assert!(!e.release(t0));
        e.eject(t0, &cfg());
        assert!(e.release(t0));
        assert!(!e.release(t0));
        assert!(!e.expire(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn ejection_share_is_bounded() {
        assert!(!may_eject(1, 0, 100), "a lone backend is never ejected");
        assert!(may_eject(2, 0, 50));
        assert!(!may_eject(2, 1, 50));
        assert!(may_eject(3, 0, 10), "at least one of a larger pool");
        assert!(!may_eject(3, 1, 10));
        assert!(may_eject(10, 4, 50));
        assert!(!may_eject(10, 5, 50));
        assert!(!may_eject(10, 0, 0), "0% turns ejection off");
        assert!(may_eject(4, 3, 100));
    }
}
