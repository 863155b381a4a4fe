//! VRRP tracking: `track_interfaces`, `track_pools`, `track_scripts` and `quorum` steer a
//! running instance's priority and FAULT state, with keepalived's semantics.
//!
//! Every 100 ms, on the control-plane runtime, each tracked object is checked: an interface
//! is failed while it is administratively down, has no carrier or does not exist; a pool is
//! failed while none of its backends is eligible ([`PoolRuntime::any_eligible`]); a script or
//! a quorum is failed while its check says so ([`crate::vrrp_probes`], which run on their own
//! schedule; the tick only reads their verdicts). The instance's own interface is always
//! tracked, without weight (keepalived does the same): a node whose link is down cannot
//! serve the VIP, and releasing it at once lets the ARP caches of the segment move on when
//! the peer takes over, instead of the address staying configured on a dead port. Listing
//! the interface in `track_interfaces` with a weight replaces that implicit entry.
//!
//! From the verdicts, each instance gets
//!
//! - an effective priority: the configured one plus the weights of its failed weighted
//!   objects, clamped to 1..=254; an address owner (255) keeps 255, as in keepalived, since
//!   its priority says "these addresses are mine" rather than a preference;
//! - a fault flag: set while any object without weight is failed.
//!
//! A change of either is sent to the instance's thread ([`Command::SetPriority`],
//! [`Command::SetFault`]) and logged with the objects behind it.
//!
//! Interfaces are polled (one `RTM_GETLINK` per tracked interface per tick) rather than
//! followed with a [`tandem_vrrp_linux::netlink::LinkWatcher`] on a thread of their own:
//! polling by name survives an interface being deleted and created again under a new index,
//! needs no thread to start, stop and keep in the right network namespace, and lets one loop
//! decide for both kinds of object. The cost is a few microseconds of netlink per interface
//! per tick, run inline on the control-plane thread (it never blocks on the network), and a
//! reaction within one tick (100 ms) plus the instance's own reaction.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_admin::view::TrackedView;
use tandem_balance::SharedTopology;
use tandem_config::{Tracked, Vrrp};
use tandem_vrrp_linux::netlink;
use tandem_vrrp_linux::runner::Command;
use tokio::sync::{mpsc, watch};

use crate::vrrp::Running;
use crate::vrrp_probes::Verdict;

/// How often every tracked object is checked; bounds the reaction time.
const TICK: Duration = Duration::from_millis(100);

/// What the admin API shows of one instance's tracking, kept current by [`Tracking::run`].
#[derive(Debug, Clone, Default)]
pub struct TrackState {
    /// A weightless object is failed: the instance is held in FAULT.
    pub fault: bool,
    pub objects: Vec<TrackedView>,
}

pub type SharedTrack = Arc<Mutex<TrackState>>;

/// The state the admin API shows before the first check: every object assumed ok, which is
/// also what the instance assumes until told otherwise.
pub fn initial_state(cfg: &Vrrp) -> SharedTrack {
    let objects = tracked_objects(cfg)
        .into_iter()
        .map(|(kind, t)| TrackedView {
            kind,
            name: t.name,
            weight: t.weight,
            ok: true,
            reason: None,
        })
        .collect();
    Arc::new(Mutex::new(TrackState {
        fault: false,
        objects,
    }))
}

const INTERFACE: &str = "interface";
const POOL: &str = "pool";
const SCRIPT: &str = "script";
const QUORUM: &str = "quorum";

/// Everything an instance tracks, in the order the admin API shows it: the configured
/// interfaces, pools and scripts, its own interface (unless listed explicitly), its quorum.
fn tracked_objects(cfg: &Vrrp) -> Vec<(&'static str, Tracked)> {
    let own = (!cfg.track_interfaces.iter().any(|t| t.name == cfg.interface)).then(|| Tracked {
        name: cfg.interface.clone(),
        weight: None,
    });
    let quorum = cfg.quorum.as_ref().map(|_| Tracked {
        name: "quorum".to_string(),
        weight: None,
    });
    cfg.track_interfaces
        .iter()
        .map(|t| (INTERFACE, t.clone()))
        .chain(cfg.track_pools.iter().map(|t| (POOL, t.clone())))
        .chain(cfg.track_scripts.iter().map(|t| (SCRIPT, t.clone())))
        .chain(own.map(|t| (INTERFACE, t)))
        .chain(quorum.map(|t| (QUORUM, t)))
        .collect()
}

/// The priority an instance advertises: `configured` plus the weights of its failed
/// weighted objects, clamped to 1..=254 (0 would mean "resigning", 255 is the owner's); an
/// owner's 255 is never changed (keepalived's rule).
pub fn effective_priority(configured: u8, failed_weights: impl IntoIterator<Item = i16>) -> u8 {
    if configured == 255 {
        return 255;
    }
    let sum = i32::from(configured)
        + failed_weights
            .into_iter()
            .map(i32::from)
            .fold(0i32, i32::saturating_add);
    u8::try_from(sum.clamp(1, 254)).unwrap_or(1)
}

/// Every instance that tracks something, ready to [`run`](Tracking::run).
pub struct Tracking {
    instances: Vec<Instance>,
}

struct Instance {
    name: String,
    configured: u8,
    commands: mpsc::UnboundedSender<Command>,
    objects: Vec<Object>,
    /// What was last sent (or the starting values the instance already has).
    priority: u8,
    fault: bool,
    /// Whether a tick has decided yet: the first one always does, objects changed or not.
    decided: bool,
    shared: SharedTrack,
}

struct Object {
    kind: &'static str,
    name: String,
    weight: Option<i16>,
    probe: Probe,
    ok: bool,
    reason: Option<String>,
}

enum Probe {
    /// The index last found for the name, re-resolved when it disappears or is renamed.
    Interface(Option<u32>),
    /// Looked up by name in the topology in force at each tick, so a reload that rebuilds
    /// the pool is followed.
    Pool(SharedTopology),
    /// A script's or quorum's verdict, kept current by [`crate::vrrp_probes`]; `None` only if
    /// the check is missing, which validation prevents.
    Checked(Option<Verdict>),
}

impl Tracking {
    /// The tracking of one running instance: `script` finds a `[[vrrp_script]]`'s verdict
    /// by name, `quorum` is the instance's quorum verdict.
    ///
    /// It starts from what the instance has now (its priority and the FAULT state last
    /// sent), and its first tick decides afresh and sends whatever differs: a reload that
    /// replaces the tracking of a running instance (new weights, another script) leaves no
    /// stale priority behind, and one that changes nothing sends nothing.
    pub fn new(
        r: &Running,
        topology: &SharedTopology,
        script: impl Fn(&str) -> Option<Verdict>,
        quorum: Option<Verdict>,
    ) -> Self {
        let objects: Vec<Object> = tracked_objects(&r.cfg)
            .into_iter()
            .map(|(kind, t)| {
                let probe = match kind {
                    POOL => Probe::Pool(Arc::clone(topology)),
                    SCRIPT => Probe::Checked(script(&t.name)),
                    QUORUM => Probe::Checked(quorum.clone()),
                    _ => Probe::Interface(None),
                };
                Object {
                    kind,
                    name: t.name,
                    weight: t.weight,
                    probe,
                    ok: true,
                    reason: None,
                }
            })
            .collect();
        if r.cfg.priority == 255 && objects.iter().any(|o| o.weight.is_some()) {
            tracing::warn!(
                vrrp = %r.name,
                "priority 255 (address owner): tracking weights never change it; only tracked objects without weight (FAULT) affect this instance"
            );
        }
        let fault = r.tracked.lock().unwrap_or_else(|e| e.into_inner()).fault;
        let instance = Instance {
            name: r.name.clone(),
            configured: r.cfg.priority,
            commands: r.handle.commands(),
            objects,
            priority: r.handle.status().priority,
            fault,
            decided: false,
            shared: Arc::clone(&r.tracked),
        };
        Self {
            instances: vec![instance],
        }
    }

    /// Check every object each [`TICK`] until `stop`; the first check runs at once, before
    /// an instance has had time to become master on a stale assumption.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if self.instances.is_empty() {
            return;
        }
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            for instance in &mut self.instances {
                instance.evaluate();
            }
        }
    }
}

impl Instance {
    fn evaluate(&mut self) {
        let mut changed = false;
        for o in &mut self.objects {
            let verdict = o.check();
            let ok = verdict.is_ok();
            let reason = verdict.err();
            if ok != o.ok {
                match &reason {
                    Some(why) => tracing::warn!(
                        vrrp = %self.name,
                        kind = o.kind,
                        object = %o.name,
                        weight = o.weight,
                        reason = %why,
                        "tracked {} `{}` failed: {why}",
                        o.kind,
                        o.name
                    ),
                    None => tracing::info!(
                        vrrp = %self.name,
                        kind = o.kind,
                        object = %o.name,
                        weight = o.weight,
                        "tracked {} `{}` recovered",
                        o.kind,
                        o.name
                    ),
                }
            }
            changed |= ok != o.ok || reason != o.reason;
            o.ok = ok;
            o.reason = reason;
        }
        if !changed && self.decided {
            return;
        }
        self.decided = true;

        let failed = |weighted: bool| {
            self.objects
                .iter()
                .filter(|o| !o.ok && o.weight.is_some() == weighted)
                .map(|o| match o.weight {
                    Some(w) => format!("{} `{}` ({w:+})", o.kind, o.name),
                    None => format!("{} `{}`", o.kind, o.name),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let priority = effective_priority(
            self.configured,
            self.objects
                .iter()
                .filter(|o| !o.ok)
                .filter_map(|o| o.weight),
        );
        let fault = self.objects.iter().any(|o| !o.ok && o.weight.is_none());
        // Priority first: leaving FAULT restarts the instance, which should start with the
        // priority of this tick.
        if priority != self.priority {
            let failed = failed(true);
            if failed.is_empty() {
                tracing::info!(
                    vrrp = %self.name,
                    from = self.priority,
                    to = priority,
                    configured = self.configured,
                    "priority changed by tracking: every weighted object is ok again"
                );
            } else {
                tracing::info!(
                    vrrp = %self.name,
                    from = self.priority,
                    to = priority,
                    configured = self.configured,
                    failed = %failed,
                    "priority changed by tracking: failed {failed}"
                );
            }
            self.send(Command::SetPriority(priority));
            self.priority = priority;
        }
        if fault != self.fault {
            if fault {
                let failed = failed(false);
                tracing::warn!(
                    vrrp = %self.name,
                    failed = %failed,
                    "entering FAULT: tracked {failed} failed (no weight); releasing the virtual IPs"
                );
            } else {
                tracing::info!(
                    vrrp = %self.name,
                    "leaving FAULT: every tracked object without weight recovered"
                );
            }
            self.send(Command::SetFault(fault));
            self.fault = fault;
        }
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.fault = fault;
        shared.objects = self
            .objects
            .iter()
            .map(|o| TrackedView {
                kind: o.kind,
                name: o.name.clone(),
                weight: o.weight,
                ok: o.ok,
                reason: o.reason.clone(),
            })
            .collect();
    }

    fn send(&self, command: Command) {
        // Fails only once the instance has stopped (shutdown in progress): nothing to steer.
        if self.commands.send(command).is_err() {
            tracing::debug!(vrrp = %self.name, ?command, "VRRP instance already stopped");
        }
    }
}

impl Object {
    /// `Ok` while the object is fine, else why it is failed.
    fn check(&mut self) -> Result<(), String> {
        match &mut self.probe {
            Probe::Pool(topology) => match topology.load().pool(&self.name) {
                Some(pool) if pool.any_eligible() => Ok(()),
                Some(_) => {
                    Err("no backend is eligible (all down, ejected or disabled)".to_string())
                }
                None => Err("no such pool".to_string()),
            },
            Probe::Checked(Some(verdict)) => crate::vrrp_probes::read(verdict),
            Probe::Checked(None) => Err("no such check".to_string()),
            Probe::Interface(index) => interface_state(&self.name, index),
        }
    }
}

/// Whether interface `name` is up with carrier. `index` caches where it was last found, so a
/// tick normally costs one netlink request; if the index is gone or now names another link,
/// the name is looked up again.
fn interface_state(name: &str, index: &mut Option<u32>) -> Result<(), String> {
    if let Some(i) = *index {
        match netlink::link_info(i) {
            Ok(info) if info.name == name => return link_verdict(&info),
            _ => *index = None,
        }
    }
    match netlink::link_index(name) {
        Ok(i) => {
            *index = Some(i);
            match netlink::link_info(i) {
                Ok(info) => link_verdict(&info),
                Err(e) => Err(format!("cannot read its state: {e}")),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no such interface".to_string()),
        Err(e) => Err(format!("cannot look it up: {e}")),
    }
}

fn link_verdict(info: &netlink::LinkInfo) -> Result<(), String> {
    if !info.admin_up {
        Err("link is administratively down".to_string())
    } else if !info.lower_up {
        Err("link has no carrier".to_string())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::effective_priority;

    #[test]
    fn weights_add_and_clamp_like_keepalived() {
        assert_eq!(effective_priority(150, []), 150);
        assert_eq!(effective_priority(150, [-60]), 90);
        assert_eq!(effective_priority(150, [-60, -20]), 70);
        assert_eq!(effective_priority(100, [50]), 150);
        // Never 0 (resigning) nor 255 (owner) through weights.
        assert_eq!(effective_priority(100, [-254]), 1);
        assert_eq!(effective_priority(200, [254, 254]), 254);
        assert_eq!(effective_priority(1, [-1]), 1);
        // The owner keeps 255 whatever fails.
        assert_eq!(effective_priority(255, [-254]), 255);
        assert_eq!(effective_priority(255, [10]), 255);
    }
}
