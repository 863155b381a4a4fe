//! VRRP state changes as events (kept for the admin API) and `notify` commands.
//!
//! Each instance's thread sends its transitions, in order, on an unbounded channel
//! ([`tandem_vrrp_linux::runner::Transition`]); one task per instance takes them one at a
//! time: it records the event, then runs the state's command and then `any`, each to its end
//! (or its timeout) before the next. So, unlike keepalived (which forks every notify script
//! at once), a `backup` script never runs before or beside the `master` script of an earlier
//! transition, and two scripts of one instance never race on the same resource. The VRRP
//! thread never waits for any of it: a slow script delays later notifications, never an
//! advert.
//!
//! Every command gets keepalived's generic-notify arguments after its own, so existing
//! scripts work unchanged: `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`, and the
//! same in the environment (`TANDEM_VRRP_INSTANCE`, `TANDEM_VRRP_STATE`,
//! `TANDEM_VRRP_PREVIOUS_STATE`, `TANDEM_VRRP_PRIORITY`, `TANDEM_VRRP_MASTER` when known).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tandem_admin::view::{NotifyRunView, VrrpEventView};
use tandem_config::{ExecCommand, Notify};
use tandem_vrrp::fsm::State;
use tandem_vrrp_linux::runner::Transition;
use tokio::sync::mpsc;

/// How many recent events each instance keeps for the admin API.
pub const KEEP_EVENTS: usize = 32;

pub type SharedEvents = Arc<Mutex<VecDeque<VrrpEventView>>>;

pub fn new_events() -> SharedEvents {
    Arc::new(Mutex::new(VecDeque::with_capacity(KEEP_EVENTS)))
}

/// The state's word in notify arguments (keepalived's).
fn notify_word(s: State) -> Option<&'static str> {
    match s {
        State::Master => Some("MASTER"),
        State::Backup => Some("BACKUP"),
        State::Fault => Some("FAULT"),
        State::Stopped => Some("STOP"),
        // Passing through Initialize (leaving FAULT) is not a state anyone acts on.
        State::Initialize => None,
    }
}

/// Which commands a transition into `to` runs, in order.
fn commands_for(notify: &Notify, to: State) -> Vec<(&'static str, ExecCommand)> {
    let own = match to {
        State::Master => notify.master.as_ref().map(|c| ("master", c)),
        State::Backup => notify.backup.as_ref().map(|c| ("backup", c)),
        State::Fault => notify.fault.as_ref().map(|c| ("fault", c)),
        State::Stopped => notify.stop.as_ref().map(|c| ("stop", c)),
        State::Initialize => None,
    };
    let any = notify_word(to).and(notify.any.as_ref()).map(|c| ("any", c));
    own.into_iter()
        .chain(any)
        .map(|(label, c)| (label, c.clone()))
        .collect()
}

/// One instance's event log and notify runner (see the module docs).
pub struct Notifier {
    pub instance: String,
    pub notify: Notify,
    pub events: SharedEvents,
    pub transitions: mpsc::UnboundedReceiver<Transition>,
    /// The admin API's event log (`/api/v1/events`, the dashboard).
    pub bus: tandem_admin::Events,
}

impl Notifier {
    /// Runs until the instance has stopped and every queued notification has run.
    pub async fn run(mut self) {
        while let Some(t) = self.transitions.recv().await {
            let commands = commands_for(&self.notify, t.to);
            self.record(&t, &commands);
            for (i, (label, command)) in commands.iter().enumerate() {
                self.run_one(i, label, command, &t).await;
            }
        }
    }

    fn record(&self, t: &Transition, commands: &[(&'static str, ExecCommand)]) {
        let event = VrrpEventView {
            at: tandem_admin::time::rfc3339(t.at),
            from: crate::vrrp::state_name(t.from),
            to: crate::vrrp::state_name(t.to),
            priority: t.priority,
            master_address: t.master_address,
            notify: commands
                .iter()
                .map(|(label, _)| NotifyRunView {
                    command: label,
                    result: None,
                    ok: None,
                    duration_ms: None,
                })
                .collect(),
        };
        let master = t.master_address.map(|a| a.to_string()).unwrap_or_default();
        self.bus.push(
            tandem_admin::EventKind::Vrrp,
            format!(
                "vrrp {}: {} → {} (priority {})",
                self.instance, event.from, event.to, t.priority
            ),
            [
                ("instance", self.instance.clone()),
                ("from", event.from.to_string()),
                ("to", event.to.to_string()),
                ("priority", t.priority.to_string()),
                ("master_address", master),
            ],
        );
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() == KEEP_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Runs the event's `index`-th command and records its result in the event.
    async fn run_one(
        &self,
        index: usize,
        label: &'static str,
        command: &ExecCommand,
        t: &Transition,
    ) {
        let state = notify_word(t.to).unwrap_or("UNKNOWN");
        let previous = notify_word(t.from).unwrap_or("INIT");
        let args = [
            "INSTANCE".to_string(),
            self.instance.clone(),
            state.to_string(),
            t.priority.to_string(),
        ];
        let mut env = vec![
            ("TANDEM_VRRP_INSTANCE", self.instance.clone()),
            ("TANDEM_VRRP_STATE", state.to_string()),
            ("TANDEM_VRRP_PREVIOUS_STATE", previous.to_string()),
            ("TANDEM_VRRP_PRIORITY", t.priority.to_string()),
        ];
        if let Some(m) = t.master_address {
            env.push(("TANDEM_VRRP_MASTER", m.to_string()));
        }
        let started = Instant::now();
        let (outcome, output) =
            tandem_health::exec::run_command(command, &args, &env, self.notify.timeout, false)
                .await;
        let took = started.elapsed();
        let ok = outcome.is_up();
        let mut result = outcome.to_string();
        if let (false, Some(line)) = (ok, output) {
            result.push_str(": ");
            result.push_str(&line);
        }
        if ok {
            tracing::info!(vrrp = %self.instance, notify = label, state, took = ?took, "notify command ran");
        } else {
            tracing::warn!(vrrp = %self.instance, notify = label, state, took = ?took, %result, "notify command failed");
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        // Only this task appends events, and only after the commands of the previous one
        // have run: the event whose command this is, is the newest.
        if let Some(run) = events.back_mut().and_then(|e| e.notify.get_mut(index)) {
            run.result = Some(result);
            run.ok = Some(ok);
            run.duration_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(p: &str) -> ExecCommand {
        ExecCommand::new(vec![p.to_string()], None).expect("command")
    }

    #[test]
    fn each_state_runs_its_own_command_then_any() {
        let notify = Notify {
            master: Some(cmd("/bin/true")),
            fault: Some(cmd("/bin/false")),
            any: Some(cmd("/bin/echo")),
            ..Notify::default()
        };
        let labels = |s| {
            commands_for(&notify, s)
                .into_iter()
                .map(|(l, _)| l)
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(State::Master), ["master", "any"]);
        assert_eq!(labels(State::Backup), ["any"]);
        assert_eq!(labels(State::Fault), ["fault", "any"]);
        assert_eq!(labels(State::Stopped), ["any"]);
        assert!(labels(State::Initialize).is_empty());
        assert!(commands_for(&Notify::default(), State::Master).is_empty());
    }
}
