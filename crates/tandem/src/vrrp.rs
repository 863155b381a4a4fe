//! `[[vrrp]]` in the daemon: start one instance per table (each on its own thread, see
//! `tandem_vrrp_linux::runner`), stop them first on shutdown, and `tandem vip-cleanup`.
//!
//! Order on SIGTERM matters: the VRRP instances hand the VIPs over (priority-0 advert, VIPs
//! removed) *before* the data plane drains, so new connections already go to the other node
//! while this one finishes the requests it has.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tandem_config::{Vrrp, VrrpChecksum, VrrpVersion};
use tandem_vrrp::fsm::InstanceConfig;
use tandem_vrrp::packet::ChecksumMode;
use tandem_vrrp::{Centis, Version};
use tandem_vrrp_linux::netlink::{self, NetlinkVips};
use tandem_vrrp_linux::runner::{self, RunnerConfig, RunnerHandle, SharedStatus};
use tandem_vrrp_linux::vmac;

/// A started instance.
pub struct Running {
    pub name: String,
    pub cfg: Vrrp,
    pub handle: RunnerHandle,
    /// The macvlan carrying the VIPs with the virtual MAC (`use_vmac`), removed on stop.
    pub vmac: Option<String>,
    /// What tracking ([`crate::vrrp_track`]) last decided, for the admin API.
    pub tracked: crate::vrrp_track::SharedTrack,
    /// Recent state changes, for the admin API.
    pub events: crate::vrrp_notify::SharedEvents,
}

impl Running {
    pub fn status(&self) -> SharedStatus {
        self.handle.status_handle()
    }
}

/// Start every instance; on any failure the ones already started are stopped again (their
/// handles drop) and the error names the instance.
///
/// Instances named in `resume` start as master with their addresses in place: the process
/// this one replaces was master for them (`tandem run --upgrade`).
pub fn start_all(instances: &[Vrrp], resume: &[String]) -> anyhow::Result<Vec<Running>> {
    let mut running = Vec::with_capacity(instances.len());
    for v in instances {
        running.push(start_one(v, resume.contains(&v.name), None)?);
    }
    Ok(running)
}

/// Start one instance (as master at once with `resume_master`), keeping `events` (the
/// admin API's recent state changes) when it replaces an earlier run of the same instance.
pub fn start_one(
    v: &Vrrp,
    resume_master: bool,
    events: Option<crate::vrrp_notify::SharedEvents>,
) -> anyhow::Result<Running> {
    let (handle, vmac) = start(v, resume_master).with_context(|| format!("vrrp `{}`", v.name))?;
    tracing::info!(
        vrrp = %v.name,
        interface = %v.interface,
        vrid = v.vrid,
        priority = v.priority,
        resume_master,
        "VRRP instance started"
    );
    Ok(Running {
        name: v.name.clone(),
        cfg: v.clone(),
        handle,
        vmac,
        tracked: crate::vrrp_track::initial_state(v),
        events: events.unwrap_or_else(crate::vrrp_notify::new_events),
    })
}

/// What would make [`start_one`] fail for reasons of the machine rather than the file (the
/// interface is missing or has no address to advertise from), checked before a reload
/// stops anything.
pub fn preflight(v: &Vrrp) -> anyhow::Result<()> {
    let index = netlink::link_index(&v.interface)
        .with_context(|| format!("vrrp `{}`: interface `{}`", v.name, v.interface))?;
    let family_v6 = v.virtual_ips.first().is_some_and(|ip| ip.address.is_ipv6());
    primary_address(index, family_v6, v).with_context(|| format!("vrrp `{}`", v.name))?;
    Ok(())
}

/// The event recorder and notify runner of an instance, to be spawned on the control plane;
/// it ends once its instance has stopped and its queued commands have run. `None` if it was
/// taken already.
pub fn notifier(r: &Running, bus: &tandem_admin::Events) -> Option<crate::vrrp_notify::Notifier> {
    Some(crate::vrrp_notify::Notifier {
        instance: r.name.clone(),
        notify: r.cfg.notify.clone(),
        events: std::sync::Arc::clone(&r.events),
        transitions: r.handle.take_transitions()?,
        bus: bus.clone(),
    })
}

/// Stop gracefully: a master sends priority 0 and removes its VIPs.
pub fn stop_all(running: Vec<Running>) {
    for r in running {
        stop_one(r);
    }
}

/// Stop one instance gracefully (priority-0 advert and release if master), then remove its
/// virtual MAC interface.
pub fn stop_one(r: Running) {
    match r.handle.shutdown() {
        Ok(()) => tracing::info!(vrrp = %r.name, "VRRP instance stopped"),
        Err(e) => {
            tracing::warn!(vrrp = %r.name, error = %e, "VRRP instance ended with an error")
        }
    }
    // After the priority-0 advert and the release: the virtual MAC leaves with the node.
    if let Some(name) = r.vmac {
        if let Err(e) = vmac::remove(&name) {
            tracing::warn!(vrrp = %r.name, vmac = %name, error = %e, "removing the virtual MAC interface failed");
        }
    }
}

/// Stop for a successor (`tandem run --upgrade`): no priority-0 advert, the VIPs and the
/// virtual MAC interface stay; returns the instances that were master, which the successor
/// starts as master at once.
pub fn hand_over(running: Vec<Running>) -> Vec<String> {
    let mut masters = Vec::new();
    for r in running {
        let name = r.name.clone();
        tracing::info!(vrrp = %name, "VRRP instance handed over to the new process");
        if kill_one(r) {
            masters.push(name);
        }
    }
    masters
}

/// Stop one instance as a crash would (no advert, addresses and virtual MAC left in place)
/// so that its successor can resume; returns whether it was master.
pub fn kill_one(r: Running) -> bool {
    let master = r.handle.status().state == tandem_vrrp::fsm::State::Master;
    if let Err(e) = r.handle.kill() {
        tracing::warn!(vrrp = %r.name, error = %e, "VRRP instance ended with an error");
    }
    master
}

/// Remove `gone` (addresses an instance held and its new settings no longer list) from the
/// interface that carried them: a killed instance leaves its addresses in place for its
/// successor, which only manages the ones it is told about.
pub fn remove_addresses(v: &Vrrp, gone: &[tandem_config::VirtualIp]) {
    let device = if v.use_vmac {
        vmac_name(v)
    } else {
        v.interface.clone()
    };
    let Ok(index) = netlink::link_index(&device) else {
        return;
    };
    let present = netlink::addresses(index).unwrap_or_default();
    for ip in gone {
        if !present.iter().any(|(a, _)| *a == ip.address) {
            continue;
        }
        match netlink::del_address(index, ip.address, ip.prefix_len) {
            Ok(()) => {
                tracing::info!(vrrp = %v.name, address = %ip.address, %device, "virtual IP no longer configured: removed")
            }
            Err(e) => {
                tracing::warn!(vrrp = %v.name, address = %ip.address, %device, error = %e, "removing a virtual IP no longer configured failed")
            }
        }
    }
}

/// The vmac interface name of an instance with `use_vmac`.
fn vmac_name(v: &Vrrp) -> String {
    vmac::default_name(v.vrid, v.is_ipv6())
}

fn start(v: &Vrrp, resume_master: bool) -> anyhow::Result<(RunnerHandle, Option<String>)> {
    let index = netlink::link_index(&v.interface)
        .with_context(|| format!("interface `{}`", v.interface))?;
    let family_v6 = v.virtual_ips.first().is_some_and(|ip| ip.address.is_ipv6());
    let local = primary_address(index, family_v6, v)?;
    let instance = InstanceConfig {
        version: match v.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        },
        vrid: v.vrid,
        priority: v.priority,
        advert_interval: centis(v.advert_interval)?,
        preempt: v.preempt,
        preempt_delay: v.preempt_delay,
        local_address: local,
        accept: v.accept,
    };
    let vips: Vec<(IpAddr, u8)> = v
        .virtual_ips
        .iter()
        .map(|ip| (ip.address, ip.prefix_len))
        .collect();
    let mut cfg = RunnerConfig::new(
        instance,
        index,
        &v.interface,
        vips.iter().map(|(ip, _)| *ip).collect(),
    );
    cfg.checksum = match v.checksum {
        VrrpChecksum::Keepalived => ChecksumMode::Keepalived,
        VrrpChecksum::Rfc9568 => ChecksumMode::Rfc9568,
    };
    cfg.garp_master_delay = v.garp_master_delay;
    cfg.garp_master_repeat = v.garp_master_repeat;
    cfg.garp_master_refresh = v.garp_master_refresh;
    cfg.unicast_peers = v.unicast_peers.clone();
    cfg.realtime_priority = v.realtime_priority;
    cfg.resume_master = resume_master;
    // use_vmac: the VIPs live on a macvlan with the virtual router MAC; adverts are received
    // on the interface and sent through the macvlan (see tandem_vrrp_linux::vmac).
    let mut vip_index = index;
    let mut vmac_created = None;
    if v.use_vmac {
        let name = vmac_name(v);
        let m = vmac::ensure(index, &name, v.vrid, family_v6)
            .with_context(|| format!("use_vmac: interface `{name}` on `{}`", v.interface))?;
        vip_index = m.index;
        if v.unicast_peers.is_empty() {
            cfg.send_interface = Some(m.send_interface());
        } else if cfg.garp_master_refresh.is_none() {
            // Unicast adverts leave from the base interface with its own MAC, so switches
            // learn the virtual MAC only from announcements: keep making them.
            cfg.garp_master_refresh = Some(VMAC_UNICAST_REFRESH);
        }
        vmac_created = Some(m.name);
    }
    if let Some(p) = &v.password {
        cfg.password = Some(
            tandem_vrrp::packet::pad_password(p.as_bytes())
                .ok_or_else(|| anyhow!("password is longer than 8 bytes"))?,
        );
    }
    let vips = NetlinkVips::new(vip_index, vips).context("virtual_ips")?;
    let handle = runner::spawn(cfg, Box::new(vips)).map_err(|e| anyhow!("{e}"));
    match handle {
        Ok(h) => Ok((h, vmac_created)),
        Err(e) => {
            if let Some(name) = &vmac_created {
                let _ = vmac::remove(name);
            }
            Err(e)
        }
    }
}

/// With `use_vmac` and `unicast_peers`, how often a master re-announces its VIPs (unless
/// `garp_master_refresh` says otherwise): often enough that a switch that forgot the virtual
/// MAC relearns it well within its own aging time (300 s by default).
const VMAC_UNICAST_REFRESH: Duration = Duration::from_secs(10);

/// The advert source and tie-breaker (RFC 5798 5.1.1.1, 5.1.2.1): the interface's first IPv4
/// address that is not a VIP, or its IPv6 link-local address.
fn primary_address(index: u32, v6: bool, v: &Vrrp) -> anyhow::Result<IpAddr> {
    let addrs = netlink::addresses(index)
        .with_context(|| format!("reading the addresses of `{}`", v.interface))?;
    let is_vip = |ip: &IpAddr| v.virtual_ips.iter().any(|x| x.address == *ip);
    let found = addrs.into_iter().map(|(ip, _)| ip).find(|ip| match ip {
        IpAddr::V4(_) if !v6 => !is_vip(ip),
        IpAddr::V6(a) if v6 => (a.segments()[0] & 0xffc0) == 0xfe80,
        _ => false,
    });
    match found {
        Some(ip) => Ok(ip),
        None if v6 => bail!(
            "interface `{}` has no IPv6 link-local address to send adverts from",
            v.interface
        ),
        None => bail!(
            "interface `{}` has no IPv4 address of its own (besides the VIPs) to send adverts from",
            v.interface
        ),
    }
}

fn centis(d: Duration) -> anyhow::Result<Centis> {
    let c = d.as_millis() / 10;
    u16::try_from(c)
        .map(Centis)
        .map_err(|_| anyhow!("advert_interval {d:?} is too long"))
}

/// `tandem vip-cleanup`: remove every VIP of every instance from its interface, whatever
/// state a previous tandem left them in (for systemd's `ExecStopPost=`, which runs after any
/// exit, a crash included). An address owner's addresses (priority 255) are its own and stay.
pub fn cleanup(config: &Path) -> anyhow::Result<()> {
    let cfg = tandem_config::load_file(config)
        .map_err(|errors| anyhow!("invalid configuration:\n{errors}"))?;
    let mut failed = 0;
    for v in cfg.vrrp.iter().filter(|v| v.priority != 255) {
        if v.use_vmac {
            // Deleting the macvlan deletes the VIPs on it and the node's copy of the virtual
            // MAC, which would otherwise keep answering ARP for them.
            let name = vmac_name(v);
            let existed = netlink::link_index(&name).is_ok();
            match vmac::remove(&name) {
                Ok(()) if existed => println!("vrrp `{}`: removed {name}", v.name),
                Ok(()) => {}
                Err(e) => {
                    eprintln!("vrrp `{}`: removing {name}: {e}", v.name);
                    failed += 1;
                }
            }
            continue;
        }
        let index = match netlink::link_index(&v.interface) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("vrrp `{}`: interface `{}`: {e}", v.name, v.interface);
                failed += 1;
                continue;
            }
        };
        let present = netlink::addresses(index).unwrap_or_default();
        for ip in &v.virtual_ips {
            let was = present.iter().any(|(a, _)| *a == ip.address);
            match netlink::del_address(index, ip.address, ip.prefix_len) {
                Ok(()) if was => println!(
                    "vrrp `{}`: removed {}/{} from {}",
                    v.name, ip.address, ip.prefix_len, v.interface
                ),
                Ok(()) => {}
                Err(e) => {
                    eprintln!(
                        "vrrp `{}`: removing {}/{} from {}: {e}",
                        v.name, ip.address, ip.prefix_len, v.interface
                    );
                    failed += 1;
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} address(es) could not be removed");
    }
    Ok(())
}

/// The admin API's view of a running instance, read from its live status at request time.
pub fn admin_source(r: &Running) -> tandem_admin::VrrpSource {
    let status = r.status();
    let tracked = std::sync::Arc::clone(&r.tracked);
    let events = std::sync::Arc::clone(&r.events);
    let cfg = r.cfg.clone();
    tandem_admin::VrrpSource(std::sync::Arc::new(move || {
        let s = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let t = tracked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let age = std::time::Instant::now().saturating_duration_since(s.since);
        let since = std::time::SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let mut discarded: std::collections::BTreeMap<&'static str, u64> =
            s.discards.iter().filter(|(_, n)| *n > 0).collect();
        if s.socket.foreign_source > 0 {
            discarded.insert("foreign_source", s.socket.foreign_source);
        }
        if s.socket.malformed_ip > 0 {
            discarded.insert("malformed_ip", s.socket.malformed_ip);
        }
        // The state machine's own drops (own looped-back adverts are not worth showing). An
        // interval mismatch with a v2 peer is the classic split brain: show it.
        let d = s.counters.dropped;
        for (name, n) in [
            ("interval_mismatch", d.interval),
            ("version_mismatch", d.version),
            ("vrid_mismatch", d.vrid),
            ("family_mismatch", d.family),
        ] {
            if n > 0 {
                *discarded.entry(name).or_insert(0) += n;
            }
        }
        tandem_admin::VrrpView {
            name: cfg.name.clone(),
            interface: cfg.interface.clone(),
            vrid: cfg.vrid,
            version: match cfg.version {
                VrrpVersion::V2 => 2,
                VrrpVersion::V3 => 3,
            },
            state: state_name(s.state),
            since: tandem_admin::time::rfc3339(since),
            priority: s.priority,
            configured_priority: cfg.priority,
            master_address: s.master_address,
            virtual_ips: cfg
                .virtual_ips
                .iter()
                .map(|ip| format!("{}/{}", ip.address, ip.prefix_len))
                .collect(),
            became_master: s.counters.became_master,
            became_backup: s.counters.became_backup,
            adverts_sent: s.adverts_sent,
            adverts_received: s.counters.adverts_received,
            discarded,
            last_error: s.last_error.clone(),
            fault: t.fault,
            tracked: t.objects,
            events: events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }))
}

pub(crate) fn state_name(s: tandem_vrrp::fsm::State) -> &'static str {
    use tandem_vrrp::fsm::State;
    match s {
        State::Initialize => "initialize",
        State::Backup => "backup",
        State::Master => "master",
        State::Fault => "fault",
        State::Stopped => "stopped",
    }
}
