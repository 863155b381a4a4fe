//! RFC 3339 timestamps for the JSON API, without a date-time dependency.
//!
//! The API only ever *prints* wall-clock instants (health `since`, `last_check`), always in
//! UTC. That needs one conversion, days-since-epoch → (year, month, day), which is twenty lines
//! (Howard Hinnant's `civil_from_days`), so pulling in chrono or time for it is not worth the
//! compile time on a small machine.

use std::time::{SystemTime, UNIX_EPOCH};

/// Format `t` as RFC 3339 in UTC with millisecond precision, e.g.
/// `2024-02-29T23:59:59.123Z`.
///
/// Milliseconds because health checks run at sub-second intervals and an operator comparing
/// `last_check` with a log line wants to see which check it was. The width is fixed so the
/// strings also sort correctly as text. Instants before 1970 (a badly set clock) are printed
/// correctly too rather than clamped, so a wrong clock is visible as such.
pub fn rfc3339(t: SystemTime) -> String {
    let millis: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    };
    // i128 → i64 seconds: any SystemTime fits (u64 seconds at most).
    let secs = millis.div_euclid(1000) as i64;
    let ms = millis.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month 1..=12, day 1..=31).
///
/// Howard Hinnant's algorithm (<https://howardhinnant.github.io/date_algorithms.html>): shift
/// the epoch to 0000-03-01 so the leap day is the last day of a "year", then split into
/// 400-year eras (146 097 days each), years of era, and a March-based day of year.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms)
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(at(1_709_251_199, 123)), "2024-02-29T23:59:59.123Z");
        assert_eq!(rfc3339(at(1_700_000_000, 7)), "2023-11-14T22:13:20.007Z");
        assert_eq!(rfc3339(at(4_102_444_800, 999)), "2100-01-01T00:00:00.999Z");
        assert_eq!(rfc3339(at(253_402_300_799, 0)), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn before_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(rfc3339(t), "1969-12-31T23:59:59.999Z");
        let t = UNIX_EPOCH - Duration::from_secs(86_400 * 365);
        assert_eq!(rfc3339(t), "1969-01-01T00:00:00.000Z");
    }

    fn is_leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    fn month_len(y: i64, m: u32) -> u32 {
        match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Walk the calendar one day at a time from 1900 to 2500 (covers the 1900/2100 non-leap and
    /// 2000/2400 leap centuries) and compare with the closed form.
    #[test]
    fn matches_a_day_by_day_walk() {
        // 1900-01-01 is 25 567 days before the epoch.
        let (mut y, mut m, mut d) = (1900_i64, 1_u32, 1_u32);
        for days in -25_567_i64..(530 * 365) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
