//! Hot reload (SIGHUP, `tandem reload`, `POST /api/v1/reload`): re-read the configuration and
//! swap it in without dropping a connection.
//!
//! The order matters. Everything that can fail happens first: parsing and validating the file,
//! checking that only reloadable sections changed, binding the listeners of new addresses,
//! loading certificates. Only then is anything replaced, so a failed reload leaves the old
//! configuration serving exactly as before. Then: the data plane switches each service to a
//! new plan (new connections use it, open ones finish their request on the old one), the new
//! topology is published (admin API, cluster, VRRP tracking read it from there), health
//! checkers of rebuilt pools are replaced, and the admin API shows the new services.
//!
//! Pools whose configuration did not change are the very same objects afterwards (health,
//! counters, connections in flight, their running checker); changed pools inherit what was
//! known of the backends they keep (see `Topology::reloaded`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tandem_admin::{ServiceInfo, SharedAdmin};
use tandem_balance::{PoolRuntime, SharedTopology, Topology};
use tandem_config::Config;
use tandem_proxy::Dataplane;
use tokio::sync::watch;

use crate::vrrp_plane::VrrpPlane;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this process was not started from a configuration file")]
    NoFile,
    #[error("invalid configuration, nothing changed:\n{0}")]
    Invalid(String),
    #[error(
        "{0} changed: that needs a restart (the admin and cluster listeners and the worker \
         count are fixed for the life of the process); nothing changed"
    )]
    NeedsRestart(String),
    #[error("cannot apply the new VRRP settings, nothing changed: {0}")]
    Vrrp(String),
    #[error("cannot apply the new configuration, nothing changed: {0}")]
    Apply(#[from] tandem_proxy::DataplaneError),
}

/// What a reload changed, as `POST /api/v1/reload` answers it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    pub services_changed: Vec<String>,
    pub services_unchanged: Vec<String>,
    pub pools_added: Vec<String>,
    pub pools_removed: Vec<String>,
    pub pools_changed: Vec<String>,
    pub pools_unchanged: Vec<String>,
    #[serde(flatten)]
    pub vrrp: crate::vrrp_plane::VrrpReport,
}

/// One pool's health checkers, stopped when a reload drops or rebuilds the pool.
struct Checker {
    pool: Arc<PoolRuntime>,
    stop: watch::Sender<bool>,
}

/// The running configuration and the handles a reload replaces.
pub struct Reloader {
    file: Option<PathBuf>,
    running: Config,
    topology: SharedTopology,
    admin: SharedAdmin,
    workers: usize,
    vips: Vec<IpAddr>,
    checkers: Vec<Checker>,
    /// The daemon's stop signal: every checker also ends with it.
    stop: watch::Receiver<bool>,
    /// The admin API's event log (checkers publish there; so does every reload).
    events: tandem_admin::Events,
}

impl Reloader {
    /// Starts the health checkers of every pool of `running`.
    pub fn start(
        file: Option<PathBuf>,
        running: Config,
        topology: SharedTopology,
        admin: SharedAdmin,
        workers: usize,
        stop: watch::Receiver<bool>,
    ) -> Reloader {
        let vips = vips(&running);
        let events = admin.load().events.clone();
        let mut r = Reloader {
            file,
            running,
            topology,
            admin,
            workers,
            vips,
            checkers: Vec::new(),
            stop,
            events,
        };
        let topology = r.topology.load_full();
        for pool in &topology.pools {
            r.spawn_checker(pool);
        }
        r
    }

    fn spawn_checker(&mut self, pool: &Arc<PoolRuntime>) {
        let (tx, rx) = watch::channel(false);
        // Either the daemon's stop or this pool's replacement ends its checks.
        let mut daemon = self.stop.clone();
        let forward = tx.clone();
        tokio::spawn(async move {
            let _ = daemon.wait_for(|s| *s).await;
            let _ = forward.send(true);
        });
        crate::daemon::spawn_health(&pool.config, pool, rx, &self.events);
        self.checkers.push(Checker {
            pool: Arc::clone(pool),
            stop: tx,
        });
    }

    /// Re-read the file and apply it, or leave everything as it is and say why; either way
    /// the outcome is an event in the admin API.
    pub async fn reload(
        &mut self,
        dataplane: &Dataplane,
        vrrp: Option<&mut VrrpPlane>,
    ) -> Result<Report, ReloadError> {
        let outcome = self.apply(dataplane, vrrp).await;
        match &outcome {
            Ok(r) => self.events.push(
                tandem_admin::EventKind::Reload,
                "configuration reloaded",
                [
                    ("services_changed", r.services_changed.join(",")),
                    ("services_added", r.services_added.join(",")),
                    ("services_removed", r.services_removed.join(",")),
                    ("pools_changed", r.pools_changed.join(",")),
                    ("pools_added", r.pools_added.join(",")),
                    ("pools_removed", r.pools_removed.join(",")),
                    ("vrrp_restarted", r.vrrp.vrrp_restarted.join(",")),
                    ("vrrp_retracked", r.vrrp.vrrp_retracked.join(",")),
                    ("vrrp_added", r.vrrp.vrrp_added.join(",")),
                    ("vrrp_removed", r.vrrp.vrrp_removed.join(",")),
                    ("vrrp_failed", r.vrrp.vrrp_failed.join(",")),
                ],
            ),
            Err(e) => self.events.push(
                tandem_admin::EventKind::Reload,
                "reload refused; the previous configuration keeps running",
                [("error", e.to_string())],
            ),
        };
        outcome
    }

    async fn apply(
        &mut self,
        dataplane: &Dataplane,
        mut vrrp: Option<&mut VrrpPlane>,
    ) -> Result<Report, ReloadError> {
        let file = self.file.clone().ok_or(ReloadError::NoFile)?;
        let new = tandem_config::load_file(&file)
            .map_err(|errors| ReloadError::Invalid(errors.to_string()))?;
        let fixed = fixed_sections_changed(&self.running, &new);
        if !fixed.is_empty() {
            return Err(ReloadError::NeedsRestart(fixed.join(", ")));
        }
        // VRRP: interfaces checked, new scripts and witnesses probed once; nothing stopped.
        let vrrp_step = match vrrp.as_deref() {
            Some(plane) => Some(plane.prepare(&new).await.map_err(ReloadError::Vrrp)?),
            None => None,
        };
        let vips = vips(&new);
        let old = self.topology.load_full();
        let topology = Arc::new(Topology::reloaded(&new, &old, Instant::now()));
        let (to_bind, _) = tandem_proxy::reload_plan(&dataplane.services(), &new.services);
        let bound = tandem_proxy::bind(&to_bind, self.workers, &vips)?;
        let served = dataplane.reload(&new.services, bound, &topology)?;

        // Committed: publish, then move the checkers.
        self.topology.store(Arc::clone(&topology));
        let mut report = Report {
            services_added: served.added,
            services_removed: served.removed,
            services_changed: served.changed,
            services_unchanged: served.unchanged,
            ..Report::default()
        };
        // After the data plane: a service on a new VIP is listening before the VIP arrives.
        if let (Some(plane), Some(step)) = (vrrp.as_deref_mut(), vrrp_step) {
            if !step.is_empty() {
                report.vrrp = plane.commit(step);
            } else {
                report.vrrp.vrrp_unchanged = new.vrrp.iter().map(|v| v.name.clone()).collect();
            }
        }
        for pool in &topology.pools {
            match old.pool(&pool.name) {
                Some(o) if Arc::ptr_eq(o, pool) => report.pools_unchanged.push(pool.name.clone()),
                Some(_) => report.pools_changed.push(pool.name.clone()),
                None => report.pools_added.push(pool.name.clone()),
            }
        }
        for pool in &old.pools {
            if topology.pool(&pool.name).is_none() {
                report.pools_removed.push(pool.name.clone());
            }
        }
        let (keep, retire): (Vec<Checker>, Vec<Checker>) = std::mem::take(&mut self.checkers)
            .into_iter()
            .partition(|c| topology.pools.iter().any(|p| Arc::ptr_eq(p, &c.pool)));
        for c in retire {
            let _ = c.stop.send(true);
        }
        self.checkers = keep;
        for pool in &topology.pools {
            if !self.checkers.iter().any(|c| Arc::ptr_eq(&c.pool, pool)) {
                self.spawn_checker(pool);
            }
        }
        let services = dataplane
            .services()
            .iter()
            .map(ServiceInfo::from)
            .collect::<Vec<_>>();
        let mut admin = self.admin.load_full().reloaded(topology, services);
        if let Some(plane) = vrrp.as_deref() {
            admin = admin.with_vrrp(plane.sources());
        }
        self.admin.store(Arc::new(admin));
        self.vips = vips;
        self.running = new;
        Ok(report)
    }
}

/// The addresses VRRP may move here (a service may listen on one before this node holds it).
pub fn vips(cfg: &Config) -> Vec<IpAddr> {
    cfg.vrrp
        .iter()
        .flat_map(|v| v.virtual_ips.iter().map(|ip| ip.address))
        .collect()
}

/// The sections a reload cannot change: the admin and cluster listeners and the worker count
/// are fixed for the life of the process. (`[[vrrp]]` changes are applied instance by
/// instance, see [`crate::vrrp_plane`].)
fn fixed_sections_changed(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    if old.runtime != new.runtime {
        changed.push("[runtime]".to_string());
    }
    if old.admin != new.admin {
        changed.push("[admin]".to_string());
    }
    if old.cluster != new.cluster {
        changed.push("[cluster]".to_string());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Config {
        let src = format!(
            "[admin]\nlisten = \"127.0.0.1:9900\"\n{extra}\n[[pool]]\nname = \"p\"\n\
             backends = [{{ address = \"127.0.0.1:8001\" }}]\n"
        );
        match tandem_config::parse_str(&src, "t.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn only_pools_and_services_are_reloadable() {
        let a = parse("");
        assert!(fixed_sections_changed(&a, &parse("")).is_empty());
        let b = parse("[runtime]\nworkers = 3");
        assert_eq!(fixed_sections_changed(&a, &b), vec!["[runtime]"]);
    }
}
