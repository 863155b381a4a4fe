//! `/metrics` for the VRRP instances, formatted from the same views `GET /api/v1/vrrp` shows,
//! taken at scrape time (so the two never disagree). Every series carries `instance` (the
//! `[[vrrp]]` name). See `docs/metrics.md`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::view::VrrpView;

/// The states an instance can be in, as the API names them.
const STATES: [&str; 5] = ["initialize", "backup", "master", "fault", "stopped"];

#[derive(Debug)]
pub(crate) struct VrrpCollector {
    pub views: Vec<VrrpView>,
}

impl VrrpCollector {
    fn gauge(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&VrrpView) -> i64,
    ) -> fmt::Result {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for v in &self.views {
            m.encode_family(&[("vrrp", v.name.as_str())])?
                .encode_gauge(&value(v))?;
        }
        Ok(())
    }

    fn counter(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&VrrpView) -> u64,
    ) -> fmt::Result {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for v in &self.views {
            m.encode_family(&[("vrrp", v.name.as_str())])?
                .encode_counter::<NoLabelSet, u64, u64>(&value(v), None)?;
        }
        Ok(())
    }
}

impl Collector for VrrpCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        if self.views.is_empty() {
            return Ok(());
        }
        {
            let mut m = enc.encode_descriptor(
                "tandem_vrrp_state",
                "VRRP instance state as a state set: 1 for the current state, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for v in &self.views {
                for state in STATES {
                    m.encode_family(&[("vrrp", v.name.as_str()), ("state", state)])?
                        .encode_gauge(&u32::from(v.state == state))?;
                }
            }
        }
        self.gauge(
            &mut enc,
            "tandem_vrrp_priority",
            "The priority the instance advertises now (tracking may lower or raise it).",
            |v| i64::from(v.priority),
        )?;
        self.gauge(
            &mut enc,
            "tandem_vrrp_configured_priority",
            "The priority in the configuration.",
            |v| i64::from(v.configured_priority),
        )?;
        self.counter(
            &mut enc,
            "tandem_vrrp_became_master",
            "Transitions to master since start; growing on two nodes at once means flapping.",
            |v| v.became_master,
        )?;
        self.counter(
            &mut enc,
            "tandem_vrrp_became_backup",
            "Transitions to backup since start.",
            |v| v.became_backup,
        )?;
        self.counter(&mut enc, "tandem_vrrp_adverts_sent", "Adverts sent.", |v| {
            v.adverts_sent
        })?;
        self.counter(
            &mut enc,
            "tandem_vrrp_adverts_received",
            "Adverts that passed every check and reached the state machine.",
            |v| v.adverts_received,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "tandem_vrrp_discarded",
                "Received packets dropped, by reason (RFC 5798 7.1: bad_ttl, bad_checksum, wrong_vrid, ...).",
                None,
                MetricType::Counter,
            )?;
            for v in &self.views {
                for (reason, n) in &v.discarded {
                    m.encode_family(&[("vrrp", v.name.as_str()), ("reason", reason)])?
                        .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "tandem_vrrp_tracked_ok",
                "1 while a tracked object (interface, pool, script, quorum) is ok, else 0.",
                None,
                MetricType::Gauge,
            )?;
            for v in &self.views {
                for t in &v.tracked {
                    m.encode_family(&[
                        ("vrrp", v.name.as_str()),
                        ("kind", t.kind),
                        ("name", t.name.as_str()),
                    ])?
                    .encode_gauge(&u32::from(t.ok))?;
                }
            }
        }
        Ok(())
    }
}

/// `/metrics` for `[cluster]`, from the same view as `GET /api/v1/cluster`; label `peer`.
#[derive(Debug)]
pub(crate) struct ClusterCollector {
    pub view: crate::view::ClusterView,
}

impl Collector for ClusterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        type Field = fn(&crate::view::ClusterPeerView) -> u64;
        let gauges: [(&str, &str, Field); 4] = [
            (
                "tandem_cluster_peer_connected",
                "1 while the stream from the peer is up.",
                |p| u64::from(p.connected),
            ),
            (
                "tandem_cluster_peer_lag_entries",
                "Records the peer holds that this node has not applied.",
                |p| p.lag_entries,
            ),
            (
                "tandem_cluster_peer_lag_milliseconds",
                "Delay from the peer sending to this node applying, at the last heartbeat.",
                |p| p.lag_ms,
            ),
            (
                "tandem_cluster_peer_queued",
                "Records received from the peer, not applied yet.",
                |p| p.queued,
            ),
        ];
        for (name, help, f) in gauges {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for p in &self.view.peers {
                let peer = p.address.to_string();
                m.encode_family(&[("peer", peer.as_str())])?
                    .encode_gauge(&f(p))?;
            }
        }
        let counters: [(&str, &str, Field); 5] = [
            ("tandem_cluster_peer_applied", "Records applied from the peer.", |p| p.applied),
            ("tandem_cluster_peer_snapshots", "Snapshots taken from the peer (first contact, or it restarted, or this node fell too far behind).", |p| p.snapshots),
            ("tandem_cluster_peer_resumes", "Times the stream from the peer resumed at this node's position.", |p| p.resumes),
            ("tandem_cluster_peer_auth_failures", "Connections to the peer closed because a frame failed authentication.", |p| p.auth_failures),
            ("tandem_cluster_peer_parse_failures", "Connections to the peer closed because a frame did not parse.", |p| p.parse_failures),
        ];
        for (name, help, f) in counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &self.view.peers {
                let peer = p.address.to_string();
                m.encode_family(&[("peer", peer.as_str())])?
                    .encode_counter::<NoLabelSet, u64, u64>(&f(p), None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "tandem_cluster_auth_failures",
            "Incoming connections refused because a frame failed authentication (a wrong secret).",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, u64, u64>(&self.view.auth_failures, None)?;
        Ok(())
    }
}
