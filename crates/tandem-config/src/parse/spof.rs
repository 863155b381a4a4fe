//! Warnings for pools that are valid but fragile: one failure away from an outage, or blind to
//! one. The listen-address and VRRP ones live with the VRRP tables ([`super::vrrp`]); these
//! look at one pool at a time, and at the cluster as a whole.

use std::collections::BTreeSet;

use super::*;

/// Every single point of failure of one `[[pool]]` table.
pub(super) fn pool_warnings(cx: &mut Cx, t: &Table, pool: &Pool) {
    let backends_at = t.get("backends").map_or(t.at, |v| v.span().start);
    let backends_path = t.key_path("backends");
    let name = &pool.name;
    if let [only] = pool.backends.as_slice() {
        cx.warn(
            backends_at,
            &backends_path,
            format!("single point of failure: pool `{name}` has one backend ({}); when it fails, the pool has nothing to send traffic to; add a second backend", only.address),
        );
    }
    let hosts: BTreeSet<IpAddr> = pool.backends.iter().map(|b| b.address.ip()).collect();
    if let (true, [host]) = (
        pool.backends.len() > 1,
        hosts.iter().collect::<Vec<_>>().as_slice(),
    ) {
        cx.warn(
            backends_at,
            &backends_path,
            format!("single point of failure: all {} backends of pool `{name}` are on one host, {host}, so that host going down takes the whole pool with it; spread them over hosts", pool.backends.len()),
        );
    }
    if !pool.backends.iter().any(|b| b.backup) && pool.sorry_server.is_none() {
        cx.warn(
            t.at,
            &t.path,
            format!("single point of failure: pool `{name}` has no backup backend and no sorry_server, so when every backend is down clients get errors (HTTP 503, or refused connections); add `backup = true` to a spare backend or set `sorry_server`"),
        );
    }
    no_health_warnings(cx, t, pool);
}

/// `health = { kind = "none" }` trusts a backend to be up: a dead one keeps its share of the
/// traffic until passive detection notices, if it is on.
fn no_health_warnings(cx: &mut Cx, t: &Table, pool: &Pool) {
    let passive = if pool.outlier.consecutive_connect_failures > 0 {
        format!(
            "until {} connect failures in a row eject it",
            pool.outlier.consecutive_connect_failures
        )
    } else {
        "for good (outlier detection is off too)".to_string()
    };
    let unchecked = |h: &HealthCheck| matches!(h.kind, HealthKind::None);
    let at = |v: &Value| match v.get_ref() {
        DeValue::Table(h) => h.get("kind").map_or(v.span().start, |k| k.span().start),
        _ => v.span().start,
    };
    let own_checks = pool.backends.iter().filter(|b| b.health.is_some()).count();
    if unchecked(&pool.health) && own_checks < pool.backends.len() {
        if let Some(v) = t.get("health") {
            cx.warn(
                at(v),
                &t.key_path("health"),
                format!("single point of failure: pool `{}` has no health check (kind = \"none\"), so a backend that dies keeps getting traffic {passive}; use kind = \"tcp\" or \"http\"", pool.name),
            );
        }
    }
    let items: Vec<&Value> = match t.get("backends").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    };
    for (i, (b, item)) in pool.backends.iter().zip(items).enumerate() {
        let (Some(h), DeValue::Table(bt)) = (&b.health, item.get_ref()) else {
            continue;
        };
        if let (true, Some(v)) = (unchecked(h), bt.get("health")) {
            cx.warn(
                at(v),
                &format!("{}.backends[{i}].health", t.path),
                format!("single point of failure: backend {} has no health check (kind = \"none\"), so if it dies it keeps getting traffic {passive}; use kind = \"tcp\" or \"http\"", b.address),
            );
        }
    }
}

/// A `[cluster]` shares state between nodes, so it is a multi-node setup; without a quorum
/// witness on any `[[vrrp]]` instance, a network split between the nodes makes each of them
/// master of the virtual IPs at once (split brain).
pub(super) fn cluster_warnings(cx: &mut Cx, at: usize, cluster: &Cluster, vrrps: &[Vrrp]) {
    if vrrps.is_empty() || vrrps.iter().any(|v| v.quorum.is_some()) {
        return;
    }
    let nodes = cluster.peers.len() + 1;
    cx.warn(
        at,
        "cluster",
        format!("single point of failure: {nodes} nodes and no quorum witness: when the link between them fails, every node becomes master of the virtual IPs (split brain); give the [[vrrp]] instances a `quorum` of witnesses (e.g. the default gateway)"),
    );
}
