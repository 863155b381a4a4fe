//! The rise/fall tracker: turns a stream of probe outcomes into a health state with hysteresis.
//!
//! This is a pure state machine (DESIGN.md, "pure cores, thin shells"): no tokio, no sockets,
//! no clock reads. The caller passes the `Instant` at which each outcome was observed, so tests
//! drive it with a simulated clock and the [`checker`](crate::checker) feeds it real time.
//!
//! # Semantics
//!
//! - A tracker starts in [`Health::Unknown`]: nothing has been observed yet.
//! - `rise` **consecutive** successes make it [`Health::Up`]; `fall` **consecutive** failures
//!   make it [`Health::Down`]. Any outcome of the other kind resets the streak, so a flapping
//!   backend (ok, fail, ok, fail, ...) never changes state: that is the point of hysteresis.
//! - From `Unknown` the same thresholds apply in both directions. Going Up after a single success
//!   would make `rise` meaningless at start-up (exactly when backends are most likely to be
//!   half-ready), and going Down after a single failure would make one lost SYN at start-up cost a
//!   backend `rise × interval` of traffic. Keeping one rule ("`rise` to go up, `fall` to go down,
//!   from anywhere") is also the one an operator can predict without reading code. The price is
//!   that a dead backend stays `Unknown` for up to `fall` probes after start; that is acceptable
//!   because consumers treat `Unknown` as eligible for traffic (a fresh daemon must serve before
//!   its first checks complete) and the proxy retries failed connects on another backend.
//! - Thresholds of 0 are treated as 1 (config validation rejects 0; this just keeps the
//!   arithmetic total).
//!
//! Streak counters saturate at their threshold once the state is reached, so a backend that has
//! been up for a week still needs exactly `fall` failures to go down.

use std::time::Instant;

use crate::probe::ProbeOutcome;

/// What the tracker believes about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No verdict yet (just started, or not enough consecutive outcomes of one kind).
    Unknown,
    /// `rise` consecutive successes were seen since the last verdict.
    Up,
    /// `fall` consecutive failures were seen since the last verdict.
    Down,
}

impl Health {
    /// Lower-case name as the admin API and logs show it: `unknown`, `up`, `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of [`Health`], with the evidence that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
    /// When the deciding outcome was observed.
    pub at: Instant,
    /// What was seen and how many times in a row, e.g. `http 503 from 127.0.0.1:8002 (3/3)`.
    pub reason: String,
}

/// Rise/fall hysteresis for one backend. See the [module docs](self) for the rules.
#[derive(Debug, Clone)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    state: Health,
    /// Consecutive successes in the current streak (0 while failing).
    successes: u32,
    /// Consecutive failures in the current streak (0 while succeeding).
    failures: u32,
    since: Option<Instant>,
    last_check: Option<Instant>,
    last_detail: Option<String>,
    last_reason: Option<String>,
}

impl Tracker {
    /// A tracker in [`Health::Unknown`]. `rise`/`fall` of 0 behave as 1.
    pub fn new(rise: u32, fall: u32) -> Tracker {
        Tracker {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Health::Unknown,
            successes: 0,
            failures: 0,
            since: None,
            last_check: None,
            last_detail: None,
            last_reason: None,
        }
    }

    /// Feed one probe outcome observed at `now`. Returns the transition if the state changed.
    ///
    /// `now` should not go backwards between calls; if it does, it is recorded as given (the
    /// tracker never computes durations, so nothing breaks).
    #[must_use = "a transition must be published, or the rest of tandem never learns of it"]
    pub fn observe(&mut self, now: Instant, outcome: &ProbeOutcome) -> Option<Transition> {
        self.last_check = Some(now);
        self.last_detail = Some(outcome.detail.clone());
        let (target, count, threshold) = if outcome.ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1).min(self.rise);
            (Health::Up, self.successes, self.rise)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1).min(self.fall);
            (Health::Down, self.failures, self.fall)
        };
        if self.state == target || count < threshold {
            return None;
        }
        let reason = format!("{} ({count}/{threshold})", outcome.detail);
        self.enter(now, target, reason)
    }

    /// Set the state directly, bypassing the thresholds, e.g. `kind = "none"` (trusted up) or an
    /// operator action. Streaks restart from zero. Returns the transition if the state changed;
    /// the reason is recorded either way.
    #[must_use = "a transition must be published, or the rest of tandem never learns of it"]
    pub fn force(
        &mut self,
        now: Instant,
        to: Health,
        reason: impl Into<String>,
    ) -> Option<Transition> {
        self.successes = 0;
        self.failures = 0;
        let reason = reason.into();
        if self.state == to {
            self.last_reason = Some(reason);
            return None;
        }
        self.enter(now, to, reason)
    }

    fn enter(&mut self, now: Instant, to: Health, reason: String) -> Option<Transition> {
        let from = std::mem::replace(&mut self.state, to);
        self.since = Some(now);
        self.last_reason = Some(reason.clone());
        Some(Transition {
            from,
            to,
            at: now,
            reason,
        })
    }

    /// The current verdict.
    pub fn state(&self) -> Health {
        self.state
    }

    /// When the current state was entered; `None` while still in the initial `Unknown`.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// When the last outcome was observed; `None` before the first.
    pub fn last_check(&self) -> Option<Instant> {
        self.last_check
    }

    /// Why the tracker is in its current state: the reason of the last transition (or
    /// [`force`](Self::force)). `None` while still in the initial `Unknown`.
    pub fn last_reason(&self) -> Option<&str> {
        self.last_reason.as_deref()
    }

    /// The detail of the most recent outcome, whether or not it changed anything
    /// (e.g. `http 503 from 127.0.0.1:8002` while still up after 1 of 3 failures).
    pub fn last_detail(&self) -> Option<&str> {
        self.last_detail.as_deref()
    }

    /// Configured `rise` (after the 0 → 1 adjustment).
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// Configured `fall` (after the 0 → 1 adjustment).
    pub fn fall(&self) -> u32 {
        self.fall
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A simulated clock: every probe happens one `interval` after the previous one.
    struct Sim {
        t: Instant,
        tracker: Tracker,
    }

    impl Sim {
        fn new(rise: u32, fall: u32) -> Sim {
            Sim {
                t: Instant::now(),
                tracker: Tracker::new(rise, fall),
            }
        }

        fn step(&mut self, ok: bool, detail: &str) -> Option<Transition> {
            self.t += Duration::from_secs(1);
            let outcome = if ok {
                ProbeOutcome::ok(detail)
            } else {
                ProbeOutcome::fail(detail)
            };
            self.tracker.observe(self.t, &outcome)
        }

        fn ok(&mut self) -> Option<Transition> {
            self.step(true, "http 200 from 127.0.0.1:8002")
        }

        fn fail(&mut self) -> Option<Transition> {
            self.step(false, "http 503 from 127.0.0.1:8002")
        }
    }

    #[test]
    fn starts_unknown_with_no_history() {
        let t = Tracker::new(2, 3);
        assert_eq!(t.state(), Health::Unknown);
        assert_eq!(t.since(), None);
        assert_eq!(t.last_check(), None);
        assert_eq!(t.last_reason(), None);
        assert_eq!(t.last_detail(), None);
    }

    #[test]
    fn unknown_goes_up_after_rise_successes() {
        let mut s = Sim::new(2, 3);
        assert_eq!(s.ok(), None);
        assert_eq!(s.tracker.state(), Health::Unknown);
        assert_eq!(s.tracker.last_check(), Some(s.t));
        let tr = s.ok().expect("second success reaches rise = 2");
        assert_eq!(tr.from, Health::Unknown);
        assert_eq!(tr.to, Health::Up);
        assert_eq!(tr.at, s.t);
        assert_eq!(tr.reason, "http 200 from 127.0.0.1:8002 (2/2)");
        assert_eq!(s.tracker.since(), Some(s.t));
        assert_eq!(s.tracker.last_reason(), Some(tr.reason.as_str()));
        // Staying up emits nothing, and `since` does not move.
        let up_since = s.t;
        for _ in 0..10 {
            assert_eq!(s.ok(), None);
        }
        assert_eq!(s.tracker.since(), Some(up_since));
    }

    #[test]
    fn unknown_goes_down_after_fall_failures_not_one() {
        let mut s = Sim::new(2, 3);
        assert_eq!(s.fail(), None);
        assert_eq!(s.fail(), None);
        assert_eq!(s.tracker.state(), Health::Unknown);
        let tr = s.fail().expect("third failure reaches fall = 3");
        assert_eq!((tr.from, tr.to), (Health::Unknown, Health::Down));
        assert_eq!(tr.reason, "http 503 from 127.0.0.1:8002 (3/3)");
    }

    #[test]
    fn up_goes_down_after_fall_and_back_up_after_rise() {
        let mut s = Sim::new(2, 3);
        s.ok();
        s.ok();
        assert_eq!(s.tracker.state(), Health::Up);
        assert_eq!(s.fail(), None);
        assert_eq!(
            s.tracker.last_detail(),
            Some("http 503 from 127.0.0.1:8002")
        );
        // The reason still explains the current (up) state, not the last probe.
        assert_eq!(
            s.tracker.last_reason(),
            Some("http 200 from 127.0.0.1:8002 (2/2)")
        );
        assert_eq!(s.fail(), None);
        let down = s
            .step(false, "connect refused by 127.0.0.1:8002")
            .expect("down");
        assert_eq!((down.from, down.to), (Health::Up, Health::Down));
        // The reason names the deciding outcome; the count covers the whole streak.
        assert_eq!(down.reason, "connect refused by 127.0.0.1:8002 (3/3)");
        assert_eq!(s.ok(), None);
        let up = s.ok().expect("up again");
        assert_eq!((up.from, up.to), (Health::Down, Health::Up));
        assert_eq!(s.tracker.since(), Some(s.t));
    }

    #[test]
    fn flapping_resets_streaks_and_never_transitions() {
        let mut s = Sim::new(2, 2);
        for _ in 0..50 {
            assert_eq!(s.ok(), None);
            assert_eq!(s.fail(), None);
        }
        assert_eq!(s.tracker.state(), Health::Unknown);

        // Up, then flapping with runs shorter than `fall` keeps it up.
        s.ok();
        s.ok();
        assert_eq!(s.tracker.state(), Health::Up);
        for _ in 0..50 {
            assert_eq!(s.fail(), None);
            assert_eq!(s.ok(), None);
        }
        assert_eq!(s.tracker.state(), Health::Up);
        // A failure streak interrupted by one success starts over from 1.
        s.fail();
        s.ok();
        assert_eq!(s.fail(), None, "1/2 after the reset, not 2/2");
        assert!(s.fail().is_some());
    }

    #[test]
    fn long_uptime_still_needs_exactly_fall_failures() {
        let mut s = Sim::new(1, 3);
        for _ in 0..1000 {
            s.ok();
        }
        assert_eq!(s.fail(), None);
        assert_eq!(s.fail(), None);
        assert_eq!(
            s.fail().map(|t| t.reason),
            Some("http 503 from 127.0.0.1:8002 (3/3)".into())
        );
    }

    #[test]
    fn rise_and_fall_of_one_and_zero() {
        let mut s = Sim::new(0, 0);
        assert_eq!((s.tracker.rise(), s.tracker.fall()), (1, 1));
        assert_eq!(s.ok().map(|t| t.to), Some(Health::Up));
        assert_eq!(
            s.fail().map(|t| t.reason),
            Some("http 503 from 127.0.0.1:8002 (1/1)".into())
        );
        assert_eq!(s.ok().map(|t| t.to), Some(Health::Up));
    }

    #[test]
    fn force_sets_state_and_restarts_streaks() {
        let mut s = Sim::new(2, 2);
        let now = s.t;
        let tr = s
            .tracker
            .force(now, Health::Up, "no health check (kind = none)")
            .expect("changed");
        assert_eq!((tr.from, tr.to), (Health::Unknown, Health::Up));
        assert_eq!(s.tracker.since(), Some(now));
        assert_eq!(s.tracker.force(now, Health::Up, "again"), None);
        assert_eq!(s.tracker.last_reason(), Some("again"));
        s.fail();
        assert_eq!(
            s.tracker.force(s.t, Health::Up, "operator"),
            None,
            "already up"
        );
        assert_eq!(s.fail(), None, "the failure before force does not count");
        assert!(s.fail().is_some());
    }

    #[test]
    fn health_names() {
        assert_eq!(Health::Unknown.to_string(), "unknown");
        assert_eq!(Health::Up.as_str(), "up");
        assert_eq!(Health::Down.to_string(), "down");
    }
}
