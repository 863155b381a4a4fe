//! Capacity planning: rates written as `"500 req/s"` and the N+1 question "does this pool still
//! carry its load when its largest member is gone?".
//!
//! The arithmetic lives here, next to the values it reads, because two places ask the same
//! question: `tandem check` with the configured `expected_load`, and the running daemon with
//! the load it observes. One function answers both, so they cannot disagree.

use std::fmt;

/// What a capacity or a load counts. tandem counts requests on http services and connections
/// (flows, for udp) on tcp and udp ones, so the unit says which counter the daemon compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadUnit {
    /// `req/s`: HTTP requests per second.
    RequestsPerSecond,
    /// `conn/s`: new connections (tcp) or flows (udp) per second.
    ConnectionsPerSecond,
}

impl LoadUnit {
    /// The spelling in the configuration file and in messages.
    pub fn name(self) -> &'static str {
        match self {
            LoadUnit::RequestsPerSecond => "req/s",
            LoadUnit::ConnectionsPerSecond => "conn/s",
        }
    }
}

/// A rate such as `"500 req/s"`: a backend's `capacity` or a pool's `expected_load`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Greater than zero, finite.
    pub per_second: f64,
    pub unit: LoadUnit,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", number(self.per_second), self.unit.name())
    }
}

/// What the error messages tell a user to write.
pub(crate) const RATE_FORM: &str = "write a number and a unit, e.g. \"500 req/s\" (http: requests) or \"200 conn/s\" (tcp and udp: connections or flows)";

/// The largest accepted rate: far above any one backend, low enough to catch a stray exponent.
const MAX_RATE: f64 = 1e9;

impl Rate {
    /// Parse `"500 req/s"`, `"1.5k req/s"`, `"200 conn/s"` (the space is optional). The error is
    /// a sentence for the user, with the accepted forms.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, rest) = s.split_at(split);
        let rest = rest.trim_start();
        let (scale, unit) = match rest.strip_prefix('k') {
            Some(u) => (1000.0, u.trim_start()),
            None => (1.0, rest),
        };
        let unit = match unit {
            "req/s" => LoadUnit::RequestsPerSecond,
            "conn/s" => LoadUnit::ConnectionsPerSecond,
            "" => return Err(format!("missing unit in \"{s}\"; {RATE_FORM}")),
            other => return Err(format!("unknown unit `{other}` in \"{s}\"; {RATE_FORM}")),
        };
        let well_formed = !num.is_empty()
            && !num.starts_with('.')
            && !num.ends_with('.')
            && num.matches('.').count() <= 1;
        let value = num
            .parse::<f64>()
            .ok()
            .filter(|_| well_formed)
            .ok_or_else(|| format!("invalid number in \"{s}\"; {RATE_FORM}"))?
            * scale;
        if !(value > 0.0 && value <= MAX_RATE) {
            return Err(format!(
                "must be greater than 0 and at most 1000000000, got \"{s}\""
            ));
        }
        Ok(Rate {
            per_second: value,
            unit,
        })
    }
}

/// A rate as people write it: `500`, `1.5`, `0.25`; no trailing zeros.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One backend as the N+1 arithmetic sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// Per second, in the pool's unit; 0 for a backend without a `capacity`.
    pub capacity: f64,
    /// Backups serve only when no primary is left.
    pub backup: bool,
}

/// The answer to "does the pool survive losing its largest member?".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NPlusOne {
    /// What the members that serve now can carry: the primaries, or the backups when there is
    /// no primary.
    pub capacity: f64,
    /// What is left after the largest serving member is gone (the backups take over when it
    /// was the last primary).
    pub without_largest: f64,
    /// Index (in the slice given) of the member whose loss is assumed; `None` when nothing
    /// serves.
    pub largest: Option<usize>,
    /// `without_largest >= load`.
    pub survives: bool,
}

/// Whether `members` still carry `load` (per second) with the largest serving member gone.
///
/// The largest member is the one with the most capacity among those that serve now: losing it
/// is the worst single failure. Backups count only once no primary is left, because the
/// scheduler sends them nothing while one is (see `backup` in docs/configuration.md).
pub fn n_plus_one(members: &[Member], load: f64) -> NPlusOne {
    let sum = |backup: bool, skip: Option<usize>| -> f64 {
        members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.backup == backup && Some(*i) != skip)
            .map(|(_, m)| m.capacity)
            // fold, not sum: an empty f64 sum is -0.0, which prints as "-0".
            .fold(0.0, |a, c| a + c)
    };
    let has_primary = members.iter().any(|m| !m.backup);
    let serving_backup = !has_primary;
    let largest = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.backup == serving_backup)
        // On a tie, the first listed: the one a reader finds first in the file.
        .max_by(|(i, a), (j, b)| a.capacity.total_cmp(&b.capacity).then(j.cmp(i)))
        .map(|(i, _)| i);
    let capacity = sum(serving_backup, None);
    let primaries_left = has_primary && members.iter().filter(|m| !m.backup).count() > 1;
    let without_largest = if primaries_left || serving_backup {
        sum(serving_backup, largest)
    } else {
        // The only primary is gone: the backups take over.
        sum(true, None)
    };
    NPlusOne {
        capacity,
        without_largest,
        largest,
        survives: without_largest >= load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(capacity: f64, backup: bool) -> Member {
        Member { capacity, backup }
    }

    #[test]
    fn rates_parse_with_their_unit() {
        let r = Rate::parse("500 req/s").unwrap();
        assert_eq!((r.per_second, r.unit), (500.0, LoadUnit::RequestsPerSecond));
        assert_eq!(Rate::parse("1.5k conn/s").unwrap().per_second, 1500.0);
        assert_eq!(Rate::parse("200conn/s").unwrap().to_string(), "200 conn/s");
        assert_eq!(Rate::parse("0.5 req/s").unwrap().to_string(), "0.5 req/s");
        for bad in [
            "500",
            "req/s",
            "500 rps",
            "-5 req/s",
            "0 req/s",
            "1..5 req/s",
            ".5 req/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert!(Rate::parse("2000000k req/s")
            .unwrap_err()
            .contains("at most 1000000000"));
    }

    #[test]
    fn the_largest_member_is_the_one_lost() {
        let pool = [m(500.0, false), m(300.0, false), m(200.0, false)];
        let r = n_plus_one(&pool, 500.0);
        assert_eq!(
            (r.capacity, r.without_largest, r.largest),
            (1000.0, 500.0, Some(0))
        );
        assert!(r.survives, "exactly enough is enough");
        assert!(!n_plus_one(&pool, 500.5).survives);
    }

    #[test]
    fn backups_count_only_when_no_primary_is_left() {
        // Two primaries: the backup is not part of the arithmetic.
        let r = n_plus_one(&[m(400.0, false), m(400.0, false), m(1000.0, true)], 600.0);
        assert_eq!((r.capacity, r.without_largest), (800.0, 400.0));
        assert!(!r.survives);
        // One primary: losing it hands the load to the backups.
        let r = n_plus_one(&[m(400.0, false), m(300.0, true), m(300.0, true)], 500.0);
        assert_eq!(
            (r.capacity, r.without_largest, r.largest),
            (400.0, 600.0, Some(0))
        );
        assert!(r.survives);
        // Backups only: they serve, and lose their largest.
        let r = n_plus_one(&[m(300.0, true), m(200.0, true)], 250.0);
        assert_eq!(
            (r.capacity, r.without_largest, r.largest),
            (500.0, 200.0, Some(0))
        );
    }

    #[test]
    fn a_single_member_never_survives_load() {
        let r = n_plus_one(&[m(1000.0, false)], 1.0);
        assert_eq!((r.without_largest, r.survives), (0.0, false));
        let r = n_plus_one(&[], 0.0);
        assert_eq!((r.capacity, r.largest, r.survives), (0.0, None, true));
        assert!(r.capacity.is_sign_positive() && r.without_largest.is_sign_positive());
    }
}
