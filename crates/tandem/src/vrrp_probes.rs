//! The active checks behind VRRP tracking: `[[vrrp_script]]` commands (`track_scripts`) and
//! quorum witnesses (`quorum`). Each keeps a [`Verdict`] that [`crate::vrrp_track`] reads on
//! its tick, so probing (which may take a timeout's worth of time) never delays the tick.
//!
//! # Timing
//!
//! The first round of every check runs *before* the instances start
//! ([`Probes::first_rounds`], bounded by the longest timeout), so a node starts with the
//! priority and FAULT state its checks call for instead of starting at its configured
//! priority, winning an election, and stepping down a moment later (a needless failover for
//! every peer). That first outcome decides at once; after it, `rise`/`fall` apply, as for
//! backend health checks.
//!
//! # What counts as reaching a witness
//!
//! An ICMP witness is reached by an echo reply. A TCP witness is reached when the connect
//! completes *or is refused*: a RST proves the path to the host works, which is all a quorum
//! asks ("am I still connected to the rest of the network?"); whether a service listens there
//! is not the question. Timeouts, unreachable routes and ICMP errors are not reached.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_config::{Config, Quorum, VrrpScript, Witness};
use tandem_health::{Health, ProbeOutcome, Tracker};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A check's current verdict: `Ok` while it passes, else why not, in words.
pub type Verdict = Arc<Mutex<Result<(), String>>>;

fn set(verdict: &Verdict, value: Result<(), String>) {
    *verdict.lock().unwrap_or_else(|e| e.into_inner()) = value;
}

pub fn read(verdict: &Verdict) -> Result<(), String> {
    verdict.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Rise/fall over one check's outcomes, where the first outcome decides at once (see the
/// module docs).
struct Judge {
    tracker: Tracker,
}

impl Judge {
    fn new(rise: u32, fall: u32) -> Self {
        Self {
            tracker: Tracker::new(rise, fall),
        }
    }

    /// Feeds one outcome; returns the transition's reason when the verdict changed.
    fn feed(&mut self, outcome: &ProbeOutcome) -> Option<String> {
        let now = Instant::now();
        let t = if self.tracker.state() == Health::Unknown {
            let to = if outcome.ok { Health::Up } else { Health::Down };
            self.tracker.force(now, to, outcome.detail.clone())
        } else {
            self.tracker.observe(now, outcome)
        };
        t.map(|t| t.reason)
    }

    fn up(&self) -> bool {
        self.tracker.state() == Health::Up
    }

    fn reason(&self) -> String {
        self.tracker
            .last_reason()
            .unwrap_or("no outcome yet")
            .to_string()
    }
}

/// One `[[vrrp_script]]`, run every `interval`.
pub struct ScriptCheck {
    script: VrrpScript,
    judge: Judge,
    verdict: Verdict,
}

impl ScriptCheck {
    pub fn new(script: &VrrpScript) -> Self {
        Self {
            judge: Judge::new(script.rise, script.fall),
            script: script.clone(),
            // Until the first run (which happens before the instances start) nothing is known;
            // not failing is what keepalived assumes too.
            verdict: Arc::new(Mutex::new(Ok(()))),
        }
    }

    pub fn name(&self) -> &str {
        &self.script.name
    }

    pub fn config(&self) -> &VrrpScript {
        &self.script
    }

    pub fn verdict(&self) -> Verdict {
        Arc::clone(&self.verdict)
    }

    async fn round(&mut self) {
        let (outcome, output) = tandem_health::exec::run_command(
            &self.script.command,
            &[],
            &[("TANDEM_VRRP_SCRIPT", self.script.name.clone())],
            self.script.timeout,
            false,
        )
        .await;
        let mut detail = format!("script `{}`: {outcome}", self.script.name);
        if let (false, Some(line)) = (outcome.is_up(), output) {
            detail.push_str(": ");
            detail.push_str(&line);
        }
        let probe = if outcome.is_up() {
            ProbeOutcome::ok(detail)
        } else {
            ProbeOutcome::fail(detail)
        };
        if let Some(reason) = self.judge.feed(&probe) {
            if self.judge.up() {
                tracing::info!(script = %self.script.name, %reason, "vrrp_script passes");
            } else {
                tracing::warn!(script = %self.script.name, %reason, "vrrp_script fails");
            }
            set(
                &self.verdict,
                if self.judge.up() {
                    Ok(())
                } else {
                    Err(self.judge.reason())
                },
            );
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.script.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                _ = self.round() => {}
                // The run is dropped: its process group is killed (exec's guard).
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// One instance's quorum: every witness probed each `interval`.
pub struct QuorumCheck {
    instance: String,
    quorum: Quorum,
    judges: Vec<Judge>,
    verdict: Verdict,
}

impl QuorumCheck {
    pub fn new(instance: &str, quorum: &Quorum) -> Self {
        Self {
            instance: instance.to_string(),
            judges: quorum
                .witnesses
                .iter()
                .map(|_| Judge::new(quorum.rise, quorum.fall))
                .collect(),
            quorum: quorum.clone(),
            // Held as lacking until the first round (which happens before the instance
            // starts) says otherwise: an isolated node must not win an election meanwhile.
            verdict: Arc::new(Mutex::new(Err("no witness probed yet".to_string()))),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn config(&self) -> &Quorum {
        &self.quorum
    }

    pub fn verdict(&self) -> Verdict {
        Arc::clone(&self.verdict)
    }

    async fn round(&mut self) {
        let mut set_ = JoinSet::new();
        for (i, w) in self.quorum.witnesses.iter().copied().enumerate() {
            let timeout = self.quorum.timeout;
            set_.spawn(async move { (i, reach(w, timeout).await) });
        }
        while let Some(joined) = set_.join_next().await {
            let Ok((i, outcome)) = joined else { continue };
            let Some(judge) = self.judges.get_mut(i) else {
                continue;
            };
            if let Some(reason) = judge.feed(&outcome) {
                let witness = self.quorum.witnesses[i];
                if judge.up() {
                    tracing::info!(vrrp = %self.instance, %witness, %reason, "quorum witness reached");
                } else {
                    tracing::warn!(vrrp = %self.instance, %witness, %reason, "quorum witness lost");
                }
            }
        }
        set(&self.verdict, self.judgement());
    }

    fn judgement(&self) -> Result<(), String> {
        let reached = self.judges.iter().filter(|j| j.up()).count();
        if reached >= self.quorum.need {
            return Ok(());
        }
        let lost: Vec<String> = self
            .judges
            .iter()
            .zip(&self.quorum.witnesses)
            .filter(|(j, _)| !j.up())
            .map(|(j, w)| format!("{w}: {}", j.reason()))
            .collect();
        Err(format!(
            "reaches {reached} of {} witness(es), needs {}; not reached: {}",
            self.quorum.witnesses.len(),
            self.quorum.need,
            lost.join("; ")
        ))
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.quorum.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                _ = self.round() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// One probe of one witness (see the module docs for what counts).
async fn reach(w: Witness, timeout: Duration) -> ProbeOutcome {
    match w {
        Witness::Icmp(ip) => tandem_health::icmp::probe(ip, timeout).await,
        Witness::Tcp(addr) => {
            let started = Instant::now();
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => {
                    ProbeOutcome::ok(format!("tcp connect to {addr} in {:?}", started.elapsed()))
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    ProbeOutcome::ok(format!("tcp {addr} refused the connection (host reached)"))
                }
                Ok(Err(e)) => ProbeOutcome::fail(format!("tcp connect to {addr}: {e}")),
                Err(_) => {
                    ProbeOutcome::fail(format!("tcp connect to {addr}: timeout after {timeout:?}"))
                }
            }
        }
    }
}

/// Every script and quorum check of a configuration.
pub struct Probes {
    pub scripts: Vec<ScriptCheck>,
    pub quorums: Vec<QuorumCheck>,
}

impl Probes {
    /// The checks the configuration asks for (scripts only if some instance tracks them),
    /// with their first round done, all concurrently.
    pub async fn first_rounds(cfg: &Config) -> Self {
        let tracked = |name: &str| {
            cfg.vrrp
                .iter()
                .any(|v| v.track_scripts.iter().any(|t| t.name == name))
        };
        let mut scripts: Vec<ScriptCheck> = cfg
            .vrrp_scripts
            .iter()
            .filter(|s| tracked(&s.name))
            .map(ScriptCheck::new)
            .collect();
        let mut quorums: Vec<QuorumCheck> = cfg
            .vrrp
            .iter()
            .filter_map(|v| v.quorum.as_ref().map(|q| QuorumCheck::new(&v.name, q)))
            .collect();
        first_rounds(&mut scripts, &mut quorums).await;
        Self { scripts, quorums }
    }
}

/// The first round of each check, all concurrently (see the module docs: it decides at once).
pub async fn first_rounds(scripts: &mut [ScriptCheck], quorums: &mut [QuorumCheck]) {
    let rounds = scripts
        .iter_mut()
        .map(|s| Box::pin(s.round()) as Round<'_>)
        .chain(quorums.iter_mut().map(|q| Box::pin(q.round()) as Round<'_>));
    join_all(rounds).await;
}

type Round<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

/// Await every future, concurrently, on the current task.
async fn join_all<'a>(futures: impl Iterator<Item = Round<'a>>) {
    let mut pending: Vec<_> = futures.map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for slot in &mut pending {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    all_done = false;
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
