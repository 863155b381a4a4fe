//! Health check settings: which probe runs against a backend and how its results turn into
//! up/down.

use std::fmt;
use std::time::Duration;

/// `health = { kind = ..., interval, timeout, rise, fall, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    /// `interval`: default 2s.
    pub interval: Duration,
    /// `timeout`: default 1s, or `interval` when that is shorter. Must not exceed `interval`,
    /// so probes of one backend never overlap.
    pub timeout: Duration,
    /// `rise`: consecutive successes to mark a backend up. Default 2, at least 1.
    pub rise: u32,
    /// `fall`: consecutive failures to mark a backend down. Default 3, at least 1.
    pub fall: u32,
}

impl Default for HealthCheck {
    /// What an absent `health` key means: a TCP connect every 2s.
    fn default() -> Self {
        HealthCheck {
            kind: HealthKind::Tcp { port: None },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// `health.kind` and the keys that only make sense for that kind.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthKind {
    /// `none`: the backend is trusted to be up.
    None,
    /// `tcp`: a TCP connect succeeds. `port` probes another port than traffic.
    Tcp { port: Option<u16> },
    /// `http`: a request answered with an expected status.
    Http {
        /// `method`: default GET.
        method: String,
        /// `path`: default `/`.
        path: String,
        /// `host`: Host header; default the backend address.
        host: Option<String>,
        /// `expect_status`: default "200-399".
        expect_status: StatusSet,
        /// `port`: probe this port instead of the backend's traffic port.
        port: Option<u16>,
    },
}

/// A set of HTTP status codes written as "200-299,301".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    /// Inclusive ranges.
    pub ranges: Vec<(u16, u16)>,
}

impl StatusSet {
    /// The valid range of a single code, inclusive.
    pub const CODES: (u16, u16) = (100, 599);

    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= status && status <= hi)
    }

    /// Parse `"200-299,301"`: comma-separated codes or inclusive `LO-HI` ranges, each code
    /// 100..=599, spaces around items allowed. The error text is meant for the user.
    pub fn parse(s: &str) -> Result<StatusSet, String> {
        const FORM: &str = "write status codes or ranges separated by commas, e.g. \"200-299,301\"";
        let code = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("\"{t}\" is not a status code; {FORM}"));
            }
            match t.parse::<u16>() {
                Ok(c) if (Self::CODES.0..=Self::CODES.1).contains(&c) => Ok(c),
                _ => Err(format!(
                    "status code {t} is out of range; codes are 100 to 599"
                )),
            }
        };
        if s.trim().is_empty() {
            return Err(format!("empty status list; {FORM}"));
        }
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (code(lo)?, code(hi)?),
                None => {
                    let c = code(item)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("range {lo}-{hi} is backwards; write {hi}-{lo}"));
            }
            ranges.push((lo, hi));
        }
        Ok(StatusSet { ranges })
    }
}

impl Default for StatusSet {
    /// `200-399`: success and redirects, which is what a healthy web server answers.
    fn default() -> Self {
        StatusSet {
            ranges: vec![(200, 399)],
        }
    }
}

impl fmt::Display for StatusSet {
    /// The same syntax [`StatusSet::parse`] accepts, so it round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

