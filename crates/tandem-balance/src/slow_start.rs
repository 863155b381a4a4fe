//! Slow start: the weight of a backend that just came back ramps from a trickle to its full
//! weight, so a cold cache or JIT is not flooded by its full share at once.

use std::time::{Duration, Instant};

/// The weight to schedule with at `now` for a backend of `weight` that came back at `since`,
/// or `None` once the ramp is over (use `weight` itself).
///
/// Linear in time, never below 1 while `weight > 0`: weight 0 means "no new traffic", which a
/// ramp must not turn into by rounding. A zero-length ramp is no ramp.
pub fn ramp_weight(weight: u32, since: Instant, now: Instant, ramp: Duration) -> Option<u32> {
    let elapsed = now.saturating_duration_since(since);
    if weight == 0 || ramp.is_zero() || elapsed >= ramp {
        return None;
    }
    let scaled = u128::from(weight) * elapsed.as_nanos() / ramp.as_nanos();
    Some(u32::try_from(scaled).unwrap_or(weight).clamp(1, weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_from_one_to_full() {
        let t0 = Instant::now();
        let ramp = Duration::from_secs(10);
        assert_eq!(ramp_weight(100, t0, t0, ramp), Some(1));
        assert_eq!(
            ramp_weight(100, t0, t0 + Duration::from_secs(1), ramp),
            Some(10)
        );
        assert_eq!(
            ramp_weight(100, t0, t0 + Duration::from_secs(5), ramp),
            Some(50)
        );
        assert_eq!(
            ramp_weight(100, t0, t0 + Duration::from_millis(9_990), ramp),
            Some(99)
        );
        assert_eq!(ramp_weight(100, t0, t0 + ramp, ramp), None);
    }

    #[test]
    fn never_zero_and_no_ramp_for_zero() {
        let t0 = Instant::now();
        let ramp = Duration::from_secs(10);
        assert_eq!(
            ramp_weight(1, t0, t0 + Duration::from_secs(9), ramp),
            Some(1)
        );
        assert_eq!(ramp_weight(0, t0, t0, ramp), None);
        assert_eq!(ramp_weight(5, t0, t0, Duration::ZERO), None);
    }
}
