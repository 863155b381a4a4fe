//! `[cluster]` in the daemon: the admin API's view of the stream and the hook that puts
//! operator actions into it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tandem_admin::view::{ClusterPeerView, ClusterView};
use tandem_admin::{ActionHook, ClusterSource, OperatorAction};
use tandem_balance::AdminState;
use tandem_cluster::{BackendAction, Node};

pub fn admin(node: &Arc<Node>) -> (ClusterSource, ActionHook) {
    let view_node = Arc::clone(node);
    let source = ClusterSource(Arc::new(move || view(&view_node)));
    let hook_node = Arc::clone(node);
    let hook = ActionHook(Arc::new(move |pool, backend, action| {
        let action = match action {
            OperatorAction::State(AdminState::Enabled) => BackendAction::Enable,
            OperatorAction::State(AdminState::Draining) => BackendAction::Drain,
            OperatorAction::State(AdminState::Disabled) => BackendAction::Disable,
            OperatorAction::Weight(w) => BackendAction::Weight(w),
        };
        hook_node.backend_action(pool, backend, action);
    }));
    (source, hook)
}

/// Publish each peer stream's connects and drops to the admin event log. Polled once a second
/// from the peers' `connected` flags, so the cluster crate needs no hook for it; a flap
/// shorter than a second may go unseen (the peer's `connects` counter still shows it).
pub async fn watch_peers(
    node: Arc<Node>,
    events: tandem_admin::Events,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tandem_admin::EventKind;
    let mut was: Vec<bool> = node.peers.iter().map(|_| false).collect();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for (p, was) in node.peers.iter().zip(was.iter_mut()) {
            let now = p.connected.load(Relaxed);
            if now == *was {
                continue;
            }
            *was = now;
            let (kind, word) = if now {
                (EventKind::PeerUp, "connected")
            } else {
                (EventKind::PeerDown, "disconnected")
            };
            let error = if now { None } else { p.last_error() };
            let message = match &error {
                Some(e) => format!("cluster peer {} {word}: {e}", p.address),
                None => format!("cluster peer {} {word}", p.address),
            };
            events.push(
                kind,
                message,
                [
                    ("peer", p.address.to_string()),
                    ("error", error.unwrap_or_default()),
                ],
            );
        }
    }
}

fn view(node: &Node) -> ClusterView {
    ClusterView {
        listen: node.listen,
        epoch: format!("{:016x}", node.log.epoch()),
        head: node.log.head(),
        log_start: node.log.start(),
        streams: node.server.streams.load(Relaxed),
        snapshots_sent: node.server.snapshots_sent.load(Relaxed),
        resumes_served: node.server.resumes_served.load(Relaxed),
        auth_failures: node.server.auth_failures.load(Relaxed),
        parse_failures: node.server.parse_failures.load(Relaxed),
        peers: node
            .peers
            .iter()
            .map(|p| ClusterPeerView {
                address: p.address,
                connected: p.connected.load(Relaxed),
                epoch: format!("{:016x}", p.epoch.load(Relaxed)),
                position: p.position.load(Relaxed),
                source_head: p.source_head.load(Relaxed),
                lag_entries: p.lag_entries(),
                lag_ms: p.lag_ms.load(Relaxed),
                queued: p.queued.load(Relaxed),
                applied: p.applied.load(Relaxed),
                snapshots: p.snapshots.load(Relaxed),
                resumes: p.resumes.load(Relaxed),
                connects: p.connects.load(Relaxed),
                connect_failures: p.connect_failures.load(Relaxed),
                auth_failures: p.auth_failures.load(Relaxed),
                parse_failures: p.parse_failures.load(Relaxed),
                last_error: p.last_error(),
            })
            .collect(),
    }
}
