//! The per-instance VRRP state machine: RFC 5798 section 6.4 (with RFC 9568's
//! clarifications), or RFC 3768 section 6.4 when configured for VRRPv2, plus two tandem
//! states (Fault and Stopped).
//!
//! Pure: every input carries `now`, every output is a list of [`Action`]s for the shell to
//! carry out in order, and [`Instance::next_deadline`] says when to call [`Instance::tick`].
//! The FSM keeps at most one timer, because RFC 5798's two timers never run together:
//! Master_Down_Timer only in Backup, Adver_Timer only in Master.
//!
//! # Priority changes (tracking)
//!
//! [`Instance::set_priority`] changes the priority used from then on: in the adverts a
//! master sends, and in a backup's comparisons. It neither sends nor transitions by itself,
//! because the RFC's mechanism already covers it: if a master's priority drops below a
//! preempting backup's, that backup discards the (now lower) adverts (RFC 5798 6.4.2), its
//! Master_Down_Timer, last reset by the last advert it accepted, fires, it becomes master
//! and advertises its higher priority, and the old master yields on hearing it (6.4.3). So
//! the takeover happens one Master_Down_Interval after the last accepted advert (plus
//! `preempt_delay`, if set). A non-preempting backup never takes over from a live master.
//!
//! # preempt_delay (keepalived extension)
//!
//! It delays taking over from a *live, lower-priority* master, never from a dead one: when
//! the Master_Down_Timer fires (the master stopped advertising, or resigned with priority 0)
//! the backup becomes master at once, whatever the delay. Exactly: a backup with
//! `preempt` and a non-zero delay keeps *accepting* lower-priority adverts (as if `nopreempt`,
//! resetting its Master_Down_Timer) until `preempt_delay` has passed since the *delay
//! start*, and discards them (preempts) from then on. The delay start is the moment the
//! instance entered Backup from Initialize or Fault (so "after start"); it is cleared
//! whenever the backup accepts an advert of priority >= its own, and then restarts at the
//! first lower-priority advert after that (so a master whose priority drops is also given
//! the delay). The takeover itself is one Master_Down_Interval after the last advert
//! accepted before the delay ended. The address owner (priority 255) ignores the delay.

mod config;
mod timers;

use std::cmp::Ordering;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use config::{ConfigError, InstanceConfig, V2_MAX_INTERVAL, V3_MAX_INTERVAL};
pub use timers::{master_down_interval, skew_time};

use crate::types::{Centis, Received, Version, OWNER_PRIORITY, RESIGN_PRIORITY};

/// Where an instance is (RFC 5798 6.4, plus tandem's Fault and Stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Configured, not started (RFC 5798 6.4.1: waiting for a Startup event).
    Initialize,
    /// Watching the master; Master_Down_Timer running (RFC 5798 6.4.2).
    Backup,
    /// Owning the virtual addresses; Adver_Timer running (RFC 5798 6.4.3).
    Master,
    /// tandem: a tracked object without weight failed. The addresses are released, adverts
    /// are still heard (for [`Instance::master_address`]), and the instance never becomes
    /// master until the fault clears.
    Fault,
    /// After [`Instance::shutdown`]; [`Instance::start`] may start it again. RFC 5798 calls
    /// this Initialize; it is kept apart so the admin API can tell "stopped" from "new".
    Stopped,
}

/// What the shell must do, in order. Each is idempotent (BecomeBackup with no addresses
/// held removes nothing), so the shell need not track the previous state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Multicast one advertisement with this priority (0: resigning).
    SendAdvert { priority: u8 },
    /// Add the virtual addresses, send gratuitous ARP / unsolicited NA (RFC 5798 6.4.1/6.4.2).
    BecomeMaster,
    /// Remove the virtual addresses if held (RFC 5798 6.4.2: a backup must not own them).
    BecomeBackup,
    /// Remove the virtual addresses if held; the instance is in Fault.
    EnterFault,
    /// Remove the virtual addresses if held; the instance is stopped.
    Stopped,
    /// Announce the virtual addresses again (gratuitous ARP / unsolicited NA burst) while
    /// staying master: a lower-priority node claimed to be master, so hosts may have
    /// followed its announcements.
    Announce,
}

/// Why an advertisement was dropped before the state machine looked at it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Not our VRRP version (RFC 5798 7.1: the version must match).
    pub version: u64,
    /// Not our VRID (the shell should demultiplex; counted if it did not).
    pub vrid: u64,
    /// v2: Adver_Int differs from ours, a misconfiguration (RFC 3768 7.1). v3: a
    /// Max_Adver_Int of 0 or above 4095, which would break the timers.
    pub interval: u64,
    /// Source address of another family than our primary address: no tie-break possible.
    pub family: u64,
    /// Source address is our own primary address: our own advert looped back.
    pub own: u64,
}

/// Counters for the admin API and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub became_master: u64,
    pub became_backup: u64,
    pub entered_fault: u64,
    pub stopped: u64,
    /// Adverts that passed the checks and reached the state machine.
    pub adverts_received: u64,
    /// Adverts the state machine discarded by the RFC rules (lower priority, or a losing
    /// tie-break, while we preempt / are master).
    pub adverts_discarded: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    /// Lower-priority adverts received as master and answered with an advert and a new
    /// announcement of the addresses (see `master_advert`).
    pub lower_priority_answered: u64,
    pub dropped: Drops,
}

/// The state with the timer that belongs to it (RFC 5798 6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Initialize,
    Backup { master_down_at: Instant },
    Master { adver_at: Instant },
    Fault,
    Stopped,
}

/// One VRRP instance (one VRID on one interface).
#[derive(Debug, Clone)]
pub struct Instance {
    config: InstanceConfig,
    phase: Phase,
    /// The priority in use: the configured one, changed by tracking.
    priority: u8,
    /// Master_Adver_Interval (RFC 5798 6.1): ours at start, the master's once learned (v3).
    master_adver_interval: Centis,
    fault: bool,
    master_address: Option<IpAddr>,
    /// Start of the preempt_delay count (see the module docs); None: not counting.
    preempt_delay_start: Option<Instant>,
    counters: Counters,
}

impl Instance {
    /// A new instance in Initialize. Fails if the config is out of the RFC ranges.
    pub fn new(config: InstanceConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            phase: Phase::Initialize,
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            fault: false,
            master_address: None,
            preempt_delay_start: None,
            counters: Counters::default(),
            config,
        })
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Initialize => State::Initialize,
            Phase::Backup { .. } => State::Backup,
            Phase::Master { .. } => State::Master,
            Phase::Fault => State::Fault,
            Phase::Stopped => State::Stopped,
        }
    }

    /// The current master's primary address as last seen: ours when master, the sender of
    /// the last advert heard in Backup/Fault, None when unknown (not started, stopped, or
    /// the master just resigned with priority 0).
    pub fn master_address(&self) -> Option<IpAddr> {
        self.master_address
    }

    /// The priority in use (configured, changed by [`Self::set_priority`]).
    pub fn effective_priority(&self) -> u8 {
        self.priority
    }

    /// Whether a fault is set (the state is Fault once started).
    pub fn is_fault(&self) -> bool {
        self.fault
    }

    /// Master_Adver_Interval (RFC 5798 6.1).
    pub fn master_adver_interval(&self) -> Centis {
        self.master_adver_interval
    }

    /// Skew_Time for the current priority and Master_Adver_Interval ([`skew_time`]).
    pub fn skew_time(&self) -> Duration {
        skew_time(
            self.config.version,
            self.priority,
            self.master_adver_interval,
        )
    }

    /// Master_Down_Interval for the current priority and Master_Adver_Interval.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(
            self.config.version,
            self.priority,
            self.master_adver_interval,
        )
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the running timer fires: Master_Down_Timer in Backup, Adver_Timer in Master.
    /// The shell sleeps until then (or until a packet or command) and calls [`Self::tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Backup { master_down_at } => Some(master_down_at),
            Phase::Master { adver_at } => Some(adver_at),
            Phase::Initialize | Phase::Fault | Phase::Stopped => None,
        }
    }

    /// The Startup event (RFC 5798 6.4.1). Ignored unless in Initialize or Stopped.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Initialize | Phase::Stopped => self.initialize(now),
            Phase::Backup { .. } | Phase::Master { .. } | Phase::Fault => Vec::new(),
        }
    }

    /// Startup as the successor of a process that was master until a moment ago (a binary
    /// upgrade that hands the sockets over): straight to Master, as an address owner would,
    /// so the peer keeps hearing adverts and the VIP never moves. A fault still wins; a
    /// higher-priority master, if there is one, takes over by the usual rules.
    pub fn resume_master(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Initialize | Phase::Stopped => {
                self.master_adver_interval = self.config.advert_interval;
                if self.fault {
                    return self.enter_fault();
                }
                self.become_master(now)
            }
            Phase::Backup { .. } | Phase::Master { .. } | Phase::Fault => Vec::new(),
        }
    }

    /// The timers (RFC 5798 6.4.2 Master_Down_Timer, 6.4.3 Adver_Timer). Call at or after
    /// [`Self::next_deadline`]; calling early does nothing. A late call fires once and
    /// re-arms from `now`, as the RFC's "reset the timer" reads (no burst to catch up).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Backup { master_down_at } if now >= master_down_at => self.become_master(now),
            Phase::Master { adver_at } if now >= adver_at => {
                // The next advert is one interval after the one that was due, not after this
                // moment: a timer that fires late (tokio rounds up to the millisecond) must
                // not stretch every interval. Far behind (a stalled thread), start afresh.
                let interval = self.config.advert_interval.as_duration();
                let next = adver_at + interval;
                self.readvertise_at(if next > now { next } else { now + interval })
            }
            _ => Vec::new(),
        }
    }

    /// An advertisement the codec accepted (checksum, TTL, length already verified).
    pub fn advert(&mut self, now: Instant, rx: &Received) -> Vec<Action> {
        if !self.admissible(rx) {
            return Vec::new();
        }
        self.counters.adverts_received += 1;
        if rx.advert.priority == RESIGN_PRIORITY {
            self.counters.priority_zero_received += 1;
        }
        match self.phase {
            Phase::Backup { .. } => self.backup_advert(now, rx),
            Phase::Master { .. } => self.master_advert(now, rx),
            Phase::Fault => {
                self.note_master(rx);
                Vec::new()
            }
            // RFC 5798 6.4.1: Initialize only waits for Startup.
            Phase::Initialize | Phase::Stopped => Vec::new(),
        }
    }

    /// The Shutdown event (RFC 5798 6.4.2/6.4.3). A master resigns with a priority-0 advert
    /// so the best backup takes over after only its Skew_Time.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        let _ = now; // every input carries the time; stopping arms no timer
        let mut actions = match self.phase {
            Phase::Stopped => return Vec::new(),
            Phase::Master { .. } => {
                self.counters.priority_zero_sent += 1;
                vec![Action::SendAdvert {
                    priority: RESIGN_PRIORITY,
                }]
            }
            Phase::Initialize | Phase::Backup { .. } | Phase::Fault => Vec::new(),
        };
        self.phase = Phase::Stopped;
        self.master_address = None;
        self.counters.stopped += 1;
        actions.push(Action::Stopped);
        actions
    }

    /// Tracking changed the effective priority. 0 is raised to 1 (0 means "resigning",
    /// RFC 5798 5.2.4) and 255 lowered to 254 unless the configured priority is 255 (only
    /// the address owner may claim 255). Takes effect in the next advert sent or received;
    /// no action is emitted (see the module docs for how preemption then happens).
    pub fn set_priority(&mut self, now: Instant, priority: u8) -> Vec<Action> {
        let _ = now; // RFC 5798 recomputes Skew_Time when an advert is accepted, not here
        self.priority = self.clamp_priority(priority);
        Vec::new()
    }

    /// A tracked object without weight failed (`true`) or recovered (`false`). Entering
    /// Fault from Master sends a priority-0 advert first (as keepalived does) so a backup
    /// takes over after Skew_Time instead of Master_Down_Interval. Leaving Fault runs the
    /// Startup event again (RFC 5798 6.4.1), so the owner returns straight to Master.
    pub fn set_fault(&mut self, now: Instant, fault: bool) -> Vec<Action> {
        if self.fault == fault {
            return Vec::new();
        }
        self.fault = fault;
        match (fault, self.phase) {
            (true, Phase::Master { .. }) => {
                self.counters.priority_zero_sent += 1;
                let mut actions = vec![Action::SendAdvert {
                    priority: RESIGN_PRIORITY,
                }];
                actions.extend(self.enter_fault());
                actions
            }
            (true, Phase::Backup { .. }) => self.enter_fault(),
            (false, Phase::Fault) => self.initialize(now),
            // Not started or stopped: the flag is applied at the next start.
            _ => Vec::new(),
        }
    }

    // ---- transitions ------------------------------------------------------------------

    /// RFC 5798 6.4.1: the owner becomes master at once; anyone else becomes backup with
    /// Master_Adver_Interval = Advertisement_Interval and waits Master_Down_Interval.
    fn initialize(&mut self, now: Instant) -> Vec<Action> {
        self.master_adver_interval = self.config.advert_interval;
        self.master_address = None;
        if self.fault {
            return self.enter_fault();
        }
        if self.priority == OWNER_PRIORITY {
            return self.become_master(now);
        }
        self.preempt_delay_start = Some(now);
        self.enter_backup(now)
    }

    /// RFC 5798 6.4.1 (owner) and 6.4.2 (Master_Down_Timer fired): send an advert, take the
    /// addresses, arm Adver_Timer with our own Advertisement_Interval.
    fn become_master(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::Master {
            adver_at: now + self.config.advert_interval.as_duration(),
        };
        self.master_address = Some(self.config.local_address);
        self.counters.became_master += 1;
        vec![
            Action::SendAdvert {
                priority: self.priority,
            },
            Action::BecomeMaster,
        ]
    }

    /// Into Backup with Master_Down_Timer = Master_Down_Interval (RFC 5798 6.4.1, 6.4.3).
    fn enter_backup(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::Backup {
            master_down_at: now + self.master_down_interval(),
        };
        self.counters.became_backup += 1;
        vec![Action::BecomeBackup]
    }

    fn enter_fault(&mut self) -> Vec<Action> {
        self.phase = Phase::Fault;
        self.counters.entered_fault += 1;
        vec![Action::EnterFault]
    }

    /// RFC 5798 6.4.3: Adver_Timer fired; advertise and reset it to Advertisement_Interval.
    fn readvertise(&mut self, now: Instant) -> Vec<Action> {
        self.readvertise_at(now + self.config.advert_interval.as_duration())
    }

    /// Sends an advert now; the next one is due at `next`.
    fn readvertise_at(&mut self, next: Instant) -> Vec<Action> {
        self.phase = Phase::Master { adver_at: next };
        vec![Action::SendAdvert {
            priority: self.priority,
        }]
    }

    // ---- receiving ----------------------------------------------------------------------

    /// RFC 5798 6.4.2 ("If an ADVERTISEMENT is received, then ..."), in Backup.
    fn backup_advert(&mut self, now: Instant, rx: &Received) -> Vec<Action> {
        let advert = &rx.advert;
        // The sender is the live master (even when we are about to preempt it).
        self.note_master(rx);
        if advert.priority == RESIGN_PRIORITY {
            // The master resigned: take over after Skew_Time, best priority first.
            self.phase = Phase::Backup {
                master_down_at: now + self.skew_time(),
            };
            return Vec::new();
        }
        if advert.priority >= self.priority {
            self.preempt_delay_start = None;
            return self.accept_master(now, advert.interval);
        }
        if !self.preempts() || self.preempt_delayed(now) {
            return self.accept_master(now, advert.interval);
        }
        // Preempting: discard, so the Master_Down_Timer keeps running and fires.
        self.counters.adverts_discarded += 1;
        Vec::new()
    }

    /// RFC 5798 6.4.2: adopt the master's interval (v3 only), recompute Skew_Time and
    /// Master_Down_Interval, reset Master_Down_Timer.
    fn accept_master(&mut self, now: Instant, interval: Centis) -> Vec<Action> {
        self.adopt_interval(interval);
        self.phase = Phase::Backup {
            master_down_at: now + self.master_down_interval(),
        };
        Vec::new()
    }

    /// RFC 5798 6.4.3 ("If an ADVERTISEMENT is received, then ..."), in Master.
    fn master_advert(&mut self, now: Instant, rx: &Received) -> Vec<Action> {
        let advert = &rx.advert;
        if advert.priority == RESIGN_PRIORITY {
            // Another router resigned: answer at once so backups hear a master.
            return self.readvertise(now);
        }
        if self.outranked_by(advert.priority, rx.source) {
            self.adopt_interval(advert.interval);
            self.note_master(rx);
            self.preempt_delay_start = None;
            return self.enter_backup(now);
        }
        // RFC 5798 6.4.3 says discard. But a node advertising a lower priority believes it is
        // master (a healed partition, a node that missed our adverts), and hosts may have
        // followed its gratuitous ARPs to a node that is about to release the VIP: answer
        // with an advert at once, so it steps down now rather than at our next interval, and
        // announce the VIPs again so hosts come back (keepalived does both). The regular
        // advert schedule is unchanged.
        self.counters.adverts_discarded += 1;
        self.counters.lower_priority_answered += 1;
        vec![
            Action::SendAdvert {
                priority: self.priority,
            },
            Action::Announce,
        ]
    }

    /// RFC 5798 6.4.3: a higher priority wins; on equal priority the larger primary address
    /// wins (compared as unsigned integers, i.e. octet by octet in network order).
    fn outranked_by(&self, priority: u8, source: IpAddr) -> bool {
        match priority.cmp(&self.priority) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => address_greater(source, self.config.local_address),
        }
    }

    /// Checks the FSM can make on its own (the codec checks the wire format). Counts drops.
    fn admissible(&mut self, rx: &Received) -> bool {
        let drops = &mut self.counters.dropped;
        let advert = &rx.advert;
        let bad = if advert.version != self.config.version {
            &mut drops.version
        } else if advert.vrid != self.config.vrid {
            &mut drops.vrid
        } else if !interval_acceptable(&self.config, advert.interval) {
            &mut drops.interval
        } else if rx.source.is_ipv4() != self.config.local_address.is_ipv4() {
            &mut drops.family
        } else if rx.source == self.config.local_address {
            &mut drops.own
        } else {
            return true;
        };
        *bad += 1;
        false
    }

    // ---- helpers --------------------------------------------------------------------------

    /// RFC 5798 6.4.2 (v3): "Set Master_Adver_Interval to Adver Interval contained in the
    /// ADVERTISEMENT". RFC 3768 has no such step: v2 keeps its own (equal, by the check).
    fn adopt_interval(&mut self, interval: Centis) {
        if self.config.version == Version::V3 {
            self.master_adver_interval = interval;
        }
    }

    /// Backup/Fault: the sender of a live advert is the master; a resigning one leaves none.
    fn note_master(&mut self, rx: &Received) {
        self.master_address = if rx.advert.priority == RESIGN_PRIORITY {
            None
        } else {
            Some(rx.source)
        };
    }

    /// Preempt_Mode, except that the address owner always preempts, whatever the flag says
    /// (RFC 5798 6.1, the note under Preempt_Mode).
    fn preempts(&self) -> bool {
        self.config.preempt || self.priority == OWNER_PRIORITY
    }

    /// Whether preempt_delay still holds us back from a live lower-priority master (module
    /// docs). Starts the count at the first such advert if it is not running.
    fn preempt_delayed(&mut self, now: Instant) -> bool {
        let delay = self.config.preempt_delay;
        if delay.is_zero() || self.priority == OWNER_PRIORITY {
            return false;
        }
        let start = *self.preempt_delay_start.get_or_insert(now);
        // A delay too large to add to an Instant never ends.
        start.checked_add(delay).is_none_or(|end| now < end)
    }

    fn clamp_priority(&self, priority: u8) -> u8 {
        let max = if self.config.priority == OWNER_PRIORITY {
            OWNER_PRIORITY
        } else {
            OWNER_PRIORITY - 1
        };
        priority.clamp(1, max)
    }
}

/// v2: Adver_Int must equal ours (RFC 3768 7.1). v3: Max_Adver_Int 1..=4095 (RFC 5798
/// 5.2.7; 0 would make Master_Down_Interval 0 and every backup take over at once).
fn interval_acceptable(config: &InstanceConfig, interval: Centis) -> bool {
    match config.version {
        Version::V2 => interval == config.advert_interval,
        Version::V3 => (Centis(1)..=V3_MAX_INTERVAL).contains(&interval),
    }
}

/// `a > b` as unsigned integers of one family (RFC 5798 6.4.3's tie-break). Different
/// families never compare greater (such adverts are dropped before this).
fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}
