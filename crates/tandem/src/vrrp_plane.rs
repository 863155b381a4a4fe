//! Every running VRRP instance together with what steers it (tracking, scripts, quorum
//! witnesses) and what reports on it (notify commands, the admin API), held as one thing a
//! reload can change piece by piece.
//!
//! A reload compares each `[[vrrp]]` table with the running one of the same name and does
//! the least that applies it, so that an instance whose settings did not change never
//! notices, and one whose settings did only moves its VIPs if the new settings say so:
//!
//! - **unchanged** (the table and every script it tracks): nothing happens;
//! - **retracked** (only `track_*`, `quorum` or a tracked script changed): the instance
//!   runs on; its tracking is replaced, and the first tick of the new tracking sends the
//!   priority and FAULT state the new settings call for;
//! - **restarted** (anything else, e.g. `priority`, `advert_interval`, `virtual_ips`,
//!   `notify`): the instance is stopped as for a binary upgrade (no priority-0 advert, its
//!   addresses stay) and started with the new settings, as master at once if it was master
//!   (the peer keeps hearing adverts; a lower new priority then loses the election by the
//!   usual rules, and only then does the VIP move). Addresses no longer listed are removed;
//! - **replaced** (another interface, VRID, version, `use_vmac` or address family: another
//!   virtual router): stopped gracefully (priority 0, addresses released) and started fresh;
//! - **added** / **removed**: started fresh / stopped gracefully.
//!
//! Everything that can fail is done in [`VrrpPlane::prepare`], before the reload changes
//! anything: interfaces and their advert source addresses are checked, and new scripts and
//! quorum witnesses have their first round (so a restarted instance starts with the verdicts
//! it needs). [`VrrpPlane::commit`] then stops and starts threads, which can still fail (the
//! machine changed in between); an instance that cannot start with its new settings is
//! started again with its old ones, and the failure is reported.

use std::sync::Arc;

use tandem_admin::{Events, VrrpSource};
use tandem_balance::SharedTopology;
use tandem_config::{Config, Quorum, Vrrp, VrrpScript};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::vrrp::Running;
use crate::vrrp_probes::{Probes, QuorumCheck, ScriptCheck, Verdict};
use crate::vrrp_track::Tracking;

/// Ends a task of the plane when dropped, or with the daemon.
struct Stopper(watch::Sender<bool>);

impl Stopper {
    fn new(daemon: &watch::Receiver<bool>) -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        let forward = tx.clone();
        let mut daemon = daemon.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = daemon.wait_for(|s| *s) => { let _ = forward.send(true); }
                // The task it stops has ended (every receiver dropped).
                _ = forward.closed() => {}
            }
        });
        (Self(tx), rx)
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

struct RunningScript {
    cfg: VrrpScript,
    verdict: Verdict,
    _stop: Stopper,
}

struct RunningQuorum {
    cfg: Quorum,
    verdict: Verdict,
    _stop: Stopper,
}

struct Member {
    running: Running,
    _tracking: Stopper,
    quorum: Option<RunningQuorum>,
}

/// What a reload did to the VRRP instances, by name.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VrrpReport {
    pub vrrp_added: Vec<String>,
    pub vrrp_removed: Vec<String>,
    pub vrrp_restarted: Vec<String>,
    pub vrrp_retracked: Vec<String>,
    pub vrrp_unchanged: Vec<String>,
    /// Instances that could not start with their new settings (and run on with the old).
    pub vrrp_failed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Unchanged,
    Retrack,
    Restart,
    Replace,
    Add,
}

/// A reload's VRRP part, checked and with its new checks' first rounds done.
pub struct Prepared {
    steps: Vec<(Vrrp, Step)>,
    removed: Vec<String>,
    scripts: Vec<ScriptCheck>,
    quorums: Vec<QuorumCheck>,
}

impl Prepared {
    /// Whether the reload changes nothing here.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.steps.iter().all(|(_, s)| *s == Step::Unchanged)
    }
}

pub struct VrrpPlane {
    members: Vec<Member>,
    scripts: Vec<RunningScript>,
    topology: SharedTopology,
    bus: Events,
    stop: watch::Receiver<bool>,
    notifiers: Vec<JoinHandle<()>>,
}

impl VrrpPlane {
    /// Start tracking, checks and notifications for the instances just started; `probes`
    /// have had their first round.
    pub fn spawn(
        running: Vec<Running>,
        probes: Probes,
        topology: &SharedTopology,
        bus: &Events,
        stop: &watch::Receiver<bool>,
    ) -> Self {
        let mut plane = VrrpPlane {
            members: Vec::new(),
            scripts: Vec::new(),
            topology: Arc::clone(topology),
            bus: bus.clone(),
            stop: stop.clone(),
            notifiers: Vec::new(),
        };
        for s in probes.scripts {
            plane.scripts.push(plane.run_script(s));
        }
        let mut quorums = probes.quorums;
        for r in running {
            let quorum = quorums
                .iter()
                .position(|q| q.instance() == r.name)
                .map(|i| plane.run_quorum(quorums.swap_remove(i)));
            plane.watch_notifications(&r);
            let member = plane.member(r, quorum);
            plane.members.push(member);
        }
        plane
    }

    fn run_script(&self, s: ScriptCheck) -> RunningScript {
        let (stop, rx) = Stopper::new(&self.stop);
        let r = RunningScript {
            cfg: s.config().clone(),
            verdict: s.verdict(),
            _stop: stop,
        };
        tokio::spawn(s.run(rx));
        r
    }

    fn run_quorum(&self, q: QuorumCheck) -> RunningQuorum {
        let (stop, rx) = Stopper::new(&self.stop);
        let r = RunningQuorum {
            cfg: q.config().clone(),
            verdict: q.verdict(),
            _stop: stop,
        };
        tokio::spawn(q.run(rx));
        r
    }

    fn watch_notifications(&mut self, r: &Running) {
        if let Some(n) = crate::vrrp::notifier(r, &self.bus) {
            self.notifiers.push(tokio::spawn(n.run()));
        }
    }

    /// `r` with a tracking task of its own.
    fn member(&self, r: Running, quorum: Option<RunningQuorum>) -> Member {
        let scripts = &self.scripts;
        let tracking = Tracking::new(
            &r,
            &self.topology,
            |name| {
                scripts
                    .iter()
                    .find(|s| s.cfg.name == name)
                    .map(|s| Arc::clone(&s.verdict))
            },
            quorum.as_ref().map(|q| Arc::clone(&q.verdict)),
        );
        let (stop, rx) = Stopper::new(&self.stop);
        tokio::spawn(tracking.run(rx));
        Member {
            running: r,
            _tracking: stop,
            quorum,
        }
    }

    /// The admin API's view of every instance, in configuration order.
    pub fn sources(&self) -> Vec<VrrpSource> {
        self.members
            .iter()
            .map(|m| crate::vrrp::admin_source(&m.running))
            .collect()
    }

    /// The longest `notify` timeout of any instance (how long stopping waits for them).
    pub fn notify_timeout(&self) -> std::time::Duration {
        self.members
            .iter()
            .map(|m| m.running.cfg.notify.timeout)
            .max()
            .unwrap_or_default()
    }

    /// The running instances and the notification tasks (which end once their instance has
    /// stopped and its queued commands have run), for stopping or handing over. Tracking
    /// and checks end here.
    pub fn finish(self) -> (Vec<Running>, Vec<JoinHandle<()>>) {
        let running = self.members.into_iter().map(|m| m.running).collect();
        (running, self.notifiers)
    }

    fn script_changed(&self, new: &Config, name: &str) -> bool {
        let old = self
            .scripts
            .iter()
            .find(|s| s.cfg.name == name)
            .map(|s| &s.cfg);
        old != new.vrrp_scripts.iter().find(|s| s.name == name)
    }

    /// Decide what `new` changes, check that it can be applied, and run the first round of
    /// every new script and quorum; changes nothing.
    pub async fn prepare(&self, new: &Config) -> Result<Prepared, String> {
        let mut steps = Vec::with_capacity(new.vrrp.len());
        for v in &new.vrrp {
            let old = self.members.iter().find(|m| m.running.name == v.name);
            let step = match old.map(|m| &m.running.cfg) {
                None => Step::Add,
                Some(o) if identity(o) != identity(v) => Step::Replace,
                Some(o) if runner_settings(o) != runner_settings(v) => Step::Restart,
                Some(o)
                    if o != v
                        || v.track_scripts
                            .iter()
                            .any(|t| self.script_changed(new, &t.name)) =>
                {
                    Step::Retrack
                }
                Some(_) => Step::Unchanged,
            };
            if matches!(step, Step::Add | Step::Replace | Step::Restart) {
                crate::vrrp::preflight(v).map_err(|e| format!("{e:#}"))?;
            }
            steps.push((v.clone(), step));
        }
        let removed = self
            .members
            .iter()
            .filter(|m| !new.vrrp.iter().any(|v| v.name == m.running.name))
            .map(|m| m.running.name.clone())
            .collect();
        let tracked = |name: &str| {
            new.vrrp
                .iter()
                .any(|v| v.track_scripts.iter().any(|t| t.name == name))
        };
        let mut scripts: Vec<ScriptCheck> = new
            .vrrp_scripts
            .iter()
            .filter(|s| tracked(&s.name) && self.script_changed(new, &s.name))
            .map(ScriptCheck::new)
            .collect();
        let mut quorums: Vec<QuorumCheck> = steps
            .iter()
            .filter(|(_, step)| *step != Step::Unchanged)
            .filter_map(|(v, _)| {
                let q = v.quorum.as_ref()?;
                let old = self
                    .members
                    .iter()
                    .find(|m| m.running.name == v.name)
                    .and_then(|m| m.quorum.as_ref());
                (old.map(|o| &o.cfg) != Some(q)).then(|| QuorumCheck::new(&v.name, q))
            })
            .collect();
        crate::vrrp_probes::first_rounds(&mut scripts, &mut quorums).await;
        Ok(Prepared {
            steps,
            removed,
            scripts,
            quorums,
        })
    }

    /// Apply what [`prepare`](Self::prepare) decided. Stops and starts instance threads,
    /// so it blocks for as long as that takes (a few milliseconds each).
    pub fn commit(&mut self, prepared: Prepared) -> VrrpReport {
        let Prepared {
            steps,
            removed,
            scripts,
            mut quorums,
        } = prepared;
        let mut report = VrrpReport::default();
        let mut old: Vec<Member> = std::mem::take(&mut self.members);

        // Scripts first: the tracking built below must read the new verdicts.
        let mut kept: Vec<RunningScript> = std::mem::take(&mut self.scripts)
            .into_iter()
            .filter(|s| !scripts.iter().any(|n| n.name() == s.cfg.name))
            .collect();
        for s in scripts {
            kept.push(self.run_script(s));
        }
        kept.retain(|s| {
            steps
                .iter()
                .any(|(v, _)| v.track_scripts.iter().any(|t| t.name == s.cfg.name))
        });
        self.scripts = kept;

        // Stop what goes or restarts before anything starts (a replacement may reuse the
        // VRID and interface of the instance it replaces).
        for name in &removed {
            if let Some(i) = old.iter().position(|m| &m.running.name == name) {
                let m = old.swap_remove(i);
                tracing::info!(vrrp = %name, "reload: VRRP instance removed; stopping it");
                crate::vrrp::stop_one(m.running);
                report.vrrp_removed.push(name.clone());
            }
        }
        let mut stopped: Vec<(
            Vrrp,
            bool,
            Option<RunningQuorum>,
            crate::vrrp_notify::SharedEvents,
        )> = Vec::new();
        for (v, step) in &steps {
            if !matches!(step, Step::Restart | Step::Replace) {
                continue;
            }
            let Some(i) = old.iter().position(|m| m.running.name == v.name) else {
                continue;
            };
            let m = old.swap_remove(i);
            let previous = m.running.cfg.clone();
            let events = Arc::clone(&m.running.events);
            let was_master = if *step == Step::Replace {
                tracing::info!(vrrp = %v.name, "reload: another virtual router (interface, VRID, version, use_vmac or family changed); stopping the old one");
                crate::vrrp::stop_one(m.running);
                false
            } else {
                let master = crate::vrrp::kill_one(m.running);
                let gone: Vec<_> = previous
                    .virtual_ips
                    .iter()
                    .filter(|ip| !v.virtual_ips.contains(ip))
                    .cloned()
                    .collect();
                if master && !gone.is_empty() {
                    crate::vrrp::remove_addresses(&previous, &gone);
                }
                master
            };
            stopped.push((previous, was_master, m.quorum, events));
        }

        // Now build the new list in the file's order.
        for (v, step) in steps {
            let quorum_for =
                |quorums: &mut Vec<QuorumCheck>, kept: Option<RunningQuorum>| match quorums
                    .iter()
                    .position(|q| q.instance() == v.name)
                {
                    Some(i) => Some(self.run_quorum(quorums.swap_remove(i))),
                    None => kept.filter(|k| v.quorum.as_ref() == Some(&k.cfg)),
                };
            match step {
                Step::Unchanged => {
                    if let Some(i) = old.iter().position(|m| m.running.name == v.name) {
                        self.members.push(old.swap_remove(i));
                    }
                    report.vrrp_unchanged.push(v.name.clone());
                }
                Step::Retrack => {
                    let Some(i) = old.iter().position(|m| m.running.name == v.name) else {
                        continue;
                    };
                    let Member {
                        mut running,
                        _tracking,
                        quorum,
                    } = old.swap_remove(i);
                    // The old tracking ends before the new one starts: never two at once.
                    drop(_tracking);
                    running.cfg = v.clone();
                    let quorum = quorum_for(&mut quorums, quorum);
                    let member = self.member(running, quorum);
                    tracing::info!(vrrp = %v.name, "reload: tracking of the VRRP instance replaced");
                    self.members.push(member);
                    report.vrrp_retracked.push(v.name.clone());
                }
                Step::Add => match crate::vrrp::start_one(&v, false, None) {
                    Ok(r) => {
                        let quorum = quorum_for(&mut quorums, None);
                        self.watch_notifications(&r);
                        let member = self.member(r, quorum);
                        self.members.push(member);
                        report.vrrp_added.push(v.name.clone());
                    }
                    Err(e) => {
                        tracing::error!(vrrp = %v.name, error = %format!("{e:#}"), "reload: the new VRRP instance cannot start");
                        report.vrrp_failed.push(v.name.clone());
                    }
                },
                Step::Restart | Step::Replace => {
                    let Some(i) = stopped.iter().position(|(p, ..)| p.name == v.name) else {
                        continue;
                    };
                    let (previous, was_master, kept_quorum, events) = stopped.swap_remove(i);
                    let started = crate::vrrp::start_one(&v, was_master, Some(Arc::clone(&events)));
                    let (running, quorum) = match started {
                        Ok(r) => {
                            tracing::info!(vrrp = %v.name, resumed_master = was_master, "reload: VRRP instance restarted with its new settings");
                            report.vrrp_restarted.push(v.name.clone());
                            (r, quorum_for(&mut quorums, kept_quorum))
                        }
                        Err(e) => {
                            tracing::error!(vrrp = %v.name, error = %format!("{e:#}"), "reload: the VRRP instance cannot start with its new settings; starting it again with the old ones");
                            report.vrrp_failed.push(v.name.clone());
                            match crate::vrrp::start_one(&previous, was_master, Some(events)) {
                                Ok(r) => (r, kept_quorum),
                                Err(e) => {
                                    tracing::error!(vrrp = %v.name, error = %format!("{e:#}"), "reload: the VRRP instance cannot start with its old settings either; it is stopped");
                                    continue;
                                }
                            }
                        }
                    };
                    self.watch_notifications(&running);
                    let member = self.member(running, quorum);
                    self.members.push(member);
                }
            }
        }
        // (`old` is empty here: every member was kept, restarted or removed.)
        report
    }
}

/// What makes two `[[vrrp]]` tables the same virtual router on the wire.
fn identity(v: &Vrrp) -> (&str, u8, tandem_config::VrrpVersion, bool, bool) {
    (&v.interface, v.vrid, v.version, v.use_vmac, v.is_ipv6())
}

/// The settings the instance's thread runs with: everything but what tracking steers it by.
fn runner_settings(v: &Vrrp) -> Vrrp {
    Vrrp {
        track_interfaces: Vec::new(),
        track_pools: Vec::new(),
        track_scripts: Vec::new(),
        quorum: None,
        ..v.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vrrp(extra: &str) -> Vrrp {
        let src = format!(
            "[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 7\n\
             virtual_ips = [\"198.51.100.10/24\"]\n{extra}\n"
        );
        match tandem_config::parse_str(&src, "t.toml") {
            Ok(mut c) => c.vrrp.remove(0),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn tracking_is_not_a_runner_setting_and_priority_is() {
        let a = vrrp("priority = 150");
        let tracked = vrrp("priority = 150\ntrack_interfaces = [\"eth1\"]");
        assert_ne!(a, tracked);
        assert_eq!(runner_settings(&a), runner_settings(&tracked));
        assert_eq!(identity(&a), identity(&tracked));
        let lower = vrrp("priority = 90");
        assert_ne!(runner_settings(&a), runner_settings(&lower));
        assert_eq!(identity(&a), identity(&lower));
        let other = vrrp("priority = 150\nversion = 2\nadvert_interval = \"1s\"");
        assert_ne!(identity(&a), identity(&other));
    }
}
