//! Durations written as strings: `"100ms"`, `"1.5s"`, `"5m"`, `"1h"`, `"1m30s"`.
//!
//! Strings rather than bare numbers because a bare `timeout = 5` is ambiguous (seconds?
//! milliseconds?) and that ambiguity is exactly how outages are configured. The unit is
//! therefore mandatory.

use std::time::Duration;

/// What the error messages tell a user to write instead.
pub(crate) const ACCEPTED: &str =
    "write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"";

/// Parse a duration string. Accepted: one or more `NUMBER UNIT` parts with no spaces, where
/// `NUMBER` is digits with an optional decimal part (`1`, `1.5`) and `UNIT` is `ms`, `s`, `m`
/// or `h`; parts add up (`"1m30s"` = 90s). The result must be greater than zero.
///
/// The error text is a complete sentence meant for the user, including the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{why}; {ACCEPTED}");
    if s.is_empty() {
        return Err(bad("empty duration"));
    }
    if s.starts_with('-') {
        return Err(bad(&format!("negative duration \"{s}\"")));
    }
    let mut nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if num.is_empty() {
            return Err(bad(&format!("invalid duration \"{s}\"")));
        }
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        // "5." and ".5" are rejected: a dot must have digits on both sides.
        let dot_ok = !num.contains('.') || !frac_part.is_empty();
        let well_formed =
            !int_part.is_empty() && dot_ok && frac_part.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(bad(&format!(
                "invalid number \"{num}\" in duration \"{s}\""
            )));
        }
        let unit_nanos: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "" => return Err(bad(&format!("missing unit in duration \"{s}\""))),
            other => {
                return Err(bad(&format!(
                    "unknown unit \"{other}\" in duration \"{s}\""
                )))
            }
        };
        let too_large = || format!("duration \"{s}\" is too large");
        // Integer arithmetic so "0.1s" is exactly 100ms; digits past nanosecond precision are
        // dropped rather than rounded.
        let int: u128 = int_part.parse().map_err(|_| too_large())?;
        let mut part = int.checked_mul(unit_nanos).ok_or_else(too_large)?;
        let mut scale = unit_nanos;
        for d in frac_part.bytes() {
            scale /= 10;
            part += u128::from(d - b'0') * scale;
        }
        nanos = nanos.checked_add(part).ok_or_else(too_large)?;
        rest = next;
    }
    if nanos == 0 {
        return Err(format!("duration must be greater than zero; {ACCEPTED}"));
    }
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("duration \"{s}\" is too large"))?;
    // The remainder is < 1e9 so it always fits a u32.
    let sub = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn valid() {
        let cases: &[(&str, Duration)] = &[
            ("100ms", ms(100)),
            ("1ms", ms(1)),
            ("1s", ms(1000)),
            ("1.5s", ms(1500)),
            ("0.1s", ms(100)),
            ("0.5ms", Duration::from_micros(500)),
            ("5m", ms(300_000)),
            ("1.5m", ms(90_000)),
            ("2h", ms(7_200_000)),
            ("1m30s", ms(90_000)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("90s", ms(90_000)),
            ("0s1ms", ms(1)),
            ("007s", ms(7000)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).as_ref(), Ok(want), "{s}");
        }
    }

    #[test]
    fn invalid() {
        let cases: &[(&str, &str)] = &[
            ("", "empty duration"),
            ("5", "missing unit in duration \"5\""),
            ("1m30", "missing unit in duration \"1m30\""),
            ("0s", "duration must be greater than zero"),
            ("0ms", "duration must be greater than zero"),
            ("0.0h", "duration must be greater than zero"),
            ("-1s", "negative duration \"-1s\""),
            ("5sec", "unknown unit \"sec\" in duration \"5sec\""),
            ("5us", "unknown unit \"us\" in duration \"5us\""),
            ("5 s", "unknown unit \" s\" in duration \"5 s\""),
            (" 5s", "invalid duration \" 5s\""),
            ("s", "invalid duration \"s\""),
            (".5s", "invalid number \".5\" in duration \".5s\""),
            ("5.s", "invalid number \"5.\" in duration \"5.s\""),
            ("1.2.3s", "invalid number \"1.2.3\" in duration \"1.2.3s\""),
            ("99999999999999999999999999999999999999999h", "is too large"),
            ("9999999999999999999h", "is too large"),
        ];
        for (s, want) in cases {
            let err = parse_duration(s).expect_err(s);
            assert!(err.contains(want), "{s}: {err}");
            if !want.contains("too large") {
                assert!(err.ends_with(ACCEPTED), "{s}: {err}");
            }
        }
    }
}
