//! `[[vrrp]]`: a virtual router instance that moves virtual IPs between tandem nodes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::ExecCommand;

/// `[[vrrp]]`
#[derive(Debug, Clone, PartialEq)]
pub struct Vrrp {
    /// `name`: required, unique among `[[vrrp]]` tables; used in logs, metrics and the API.
    pub name: String,
    /// `interface`: required; the interface the adverts go out on and the VIPs are added to.
    pub interface: String,
    /// `vrid`: required, 1..=255; the same on every node of this virtual router, unique per
    /// interface and address family.
    pub vrid: u8,
    /// `priority`: 1..=255, default 100. 255 means "address owner": only for the node that owns
    /// the VIPs as real addresses.
    pub priority: u8,
    /// `version`: 2 or 3, default 3.
    pub version: VrrpVersion,
    /// `advert_interval`: default 1s. v3: 10ms..=40.95s in steps of 10 ms; v2: whole seconds
    /// 1..=255.
    pub advert_interval: Duration,
    /// `virtual_ips`: required, at least one, all of one family (v2: IPv4 only), written
    /// `"198.51.100.10/24"` or `"198.51.100.10"` (then /32 or /128).
    pub virtual_ips: Vec<VirtualIp>,
    /// `preempt`: default true. With false (keepalived's `nopreempt`), a higher-priority node
    /// that comes up does not take over from a working lower-priority master.
    pub preempt: bool,
    /// `preempt_delay`: default 0. How long a higher-priority node waits after it starts before
    /// taking over from a working lower-priority master.
    pub preempt_delay: Duration,
    /// `accept`: default true (a load balancer's master must accept traffic addressed to the VIP).
    pub accept: bool,
    /// `unicast_peers`: default none (multicast). When set, adverts go to these addresses
    /// only, and adverts from any other source are dropped.
    pub unicast_peers: Vec<IpAddr>,
    /// `garp_master_delay`: default 5s; the second burst of gratuitous ARPs after becoming
    /// master (0 = none).
    pub garp_master_delay: Duration,
    /// `garp_master_repeat`: default 5; announcements per burst, 1..=100.
    pub garp_master_repeat: u32,
    /// `garp_master_refresh`: default off; keep announcing this often while master.
    pub garp_master_refresh: Option<Duration>,
    /// `checksum`: `"keepalived"` (default) or `"rfc9568"`; only matters for v3 over IPv4.
    pub checksum: VrrpChecksum,
    /// `realtime_priority`: 1..=99 runs the instance thread under SCHED_FIFO; 0 is off.
    /// Default: [`Vrrp::DEFAULT_REALTIME_PRIORITY`] when `advert_interval` is under a second,
    /// off otherwise.
    pub realtime_priority: Option<u8>,
    /// `track_interfaces`: default none. Interfaces whose link state steers this instance
    /// (see [`Tracked`]); an interface is failed while it is down, has no carrier or does not
    /// exist.
    pub track_interfaces: Vec<Tracked>,
    /// `track_pools`: default none. `[[pool]]`s whose health steers this instance (see
    /// [`Tracked`]); a pool is failed while none of its backends is eligible.
    pub track_pools: Vec<Tracked>,
    /// `track_scripts`: default none. `[[vrrp_script]]`s by name; a script is failed while
    /// its command fails (after `fall` failures, until `rise` passes). An entry without its
    /// own weight takes the script's.
    pub track_scripts: Vec<Tracked>,
    /// `notify`: commands run on state changes (see [`Notify`]).
    pub notify: Notify,
    /// `quorum`: default off. Witnesses this node must reach to hold master (see [`Quorum`]).
    pub quorum: Option<Quorum>,
    /// `use_vmac`: default false. Put the virtual IPs on a macvlan interface with the virtual
    /// router MAC (00:00:5e:00:01:VRID, IPv6 00:00:5e:00:02:VRID), so a failover needs no ARP
    /// cache update on the hosts, only a switch relearning the port.
    pub use_vmac: bool,
    /// `password`: VRRPv2 only (RFC 2338 simple text authentication, keepalived's
    /// `auth_type PASS`), at most 8 bytes. It protects against a misconfigured neighbour, not an
    /// attacker: it crosses the wire in clear.
    pub password: Option<String>,
}

impl Vrrp {
    pub const DEFAULT_PRIORITY: u8 = 100;
    pub const DEFAULT_VERSION: VrrpVersion = VrrpVersion::V3;
    pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_GARP_MASTER_DELAY: Duration = Duration::from_secs(5);
    pub const DEFAULT_GARP_MASTER_REPEAT: u32 = 5;
    /// Accepted `garp_master_repeat` values, inclusive.
    pub const GARP_MASTER_REPEAT_RANGE: (u32, u32) = (1, 100);
    pub const DEFAULT_CHECKSUM: VrrpChecksum = VrrpChecksum::Keepalived;
    /// `realtime_priority` when absent and adverts are sub-second: above every normal task,
    /// below the kernel's threaded interrupt handlers (SCHED_FIFO 50), so the network
    /// interrupts that deliver the adverts still run first.
    pub const DEFAULT_REALTIME_PRIORITY: u8 = 40;
    /// Accepted `realtime_priority` values, inclusive (Linux SCHED_FIFO priorities).
    pub const REALTIME_PRIORITY_RANGE: (u8, u8) = (1, 99);
    /// An advert's address count is one byte.
    pub const MAX_VIRTUAL_IPS: usize = 255;
    /// Accepted tracking weights, inclusive (keepalived's); 0 is refused as it changes nothing.
    pub const TRACK_WEIGHT_RANGE: (i16, i16) = (-254, 254);

    /// Whether the instance's virtual IPs (and so its adverts) are IPv6. The parser guarantees
    /// at least one virtual IP and a single family.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_ips
            .first()
            .is_some_and(|v| v.address.is_ipv6())
    }
}

/// One entry of `track_interfaces` or `track_pools`: `"eth1"` or
/// `{ name = "eth1", weight = -20 }`.
///
/// As in keepalived, the two forms mean different things while the object is failed: with a
/// weight, the weight is added to the instance's priority (clamped to 1..=254; an address
/// owner's 255 never changes), so a failover happens only if that closes the gap to the
/// other node; without one, the instance goes to FAULT (releases its virtual IPs, keeps
/// listening) until every weightless object has recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// The interface or pool name.
    pub name: String,
    /// `weight`: `None` (FAULT while failed) or nonzero in [`Vrrp::TRACK_WEIGHT_RANGE`].
    pub weight: Option<i16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, advert interval in whole seconds.
    V2,
    /// RFC 9568 (formerly 5798): IPv4 or IPv6, advert interval in centiseconds.
    V3,
}

impl VrrpVersion {
    /// The number written in the file and carried in the advert's version field.
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }

    /// The `advert_interval` values this version can carry, inclusive; v3 also requires a
    /// multiple of [`VrrpVersion::ADVERT_STEP_V3`].
    pub fn advert_interval_range(self) -> (Duration, Duration) {
        match self {
            VrrpVersion::V2 => (Duration::from_secs(1), Duration::from_secs(255)),
            VrrpVersion::V3 => (Duration::from_millis(10), Duration::from_millis(40_950)),
        }
    }

    /// v3 adverts carry the interval as a 12-bit count of centiseconds.
    pub const ADVERT_STEP_V3: Duration = Duration::from_millis(10);
}

/// How a VRRPv3 advert over IPv4 is checksummed (see docs/configuration.md#vrrp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpChecksum {
    /// With the IPv4 pseudo-header, as keepalived sends and requires.
    Keepalived,
    /// Without it, as RFC 9568 section 5.2.8 specifies.
    Rfc9568,
}

impl VrrpChecksum {
    pub const ALL: [(&'static str, VrrpChecksum); 2] = [
        ("keepalived", VrrpChecksum::Keepalived),
        ("rfc9568", VrrpChecksum::Rfc9568),
    ];

    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            VrrpChecksum::Keepalived => "keepalived",
            VrrpChecksum::Rfc9568 => "rfc9568",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, c)| *c)
    }
}

/// One virtual address with the prefix length it is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualIp {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for VirtualIp {
    /// As written in the file, always with the prefix: `198.51.100.10/24`, `2001:db8::10/128`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// `[[vrrp_script]]`: a command whose exit status steers the instances that list it in
/// `track_scripts` (keepalived's `vrrp_script`).
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpScript {
    /// `name`: required, unique among `[[vrrp_script]]` tables.
    pub name: String,
    /// `command`: required; argv, no shell. Exit 0 passes, anything else fails.
    pub command: ExecCommand,
    /// `interval`: default 2s (keepalived's default is 1 s; 2 s halves the forks for a check
    /// whose verdict waits for `fall` failures anyway).
    pub interval: Duration,
    /// `timeout`: default = `interval`; a run still going then is killed and counts as failed.
    pub timeout: Duration,
    /// `rise`: default 1; passes in a row to count as ok again.
    pub rise: u32,
    /// `fall`: default 1; failures in a row to count as failed.
    pub fall: u32,
    /// `weight`: default none (FAULT while failed); see [`Tracked`].
    pub weight: Option<i16>,
}

impl VrrpScript {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
}

/// `notify = { master = [...], backup = [...], fault = [...], stop = [...], any = [...] }`.
///
/// Unlike keepalived, the commands of one instance run one at a time, in the order of the
/// transitions: a `backup` command never overtakes the `master` command before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub master: Option<ExecCommand>,
    pub backup: Option<ExecCommand>,
    pub fault: Option<ExecCommand>,
    pub stop: Option<ExecCommand>,
    /// Run on every transition, after the state's own command (keepalived's `notify`).
    pub any: Option<ExecCommand>,
    /// `timeout`: default 30s; a command still running then is killed (with its process group)
    /// so it cannot hold up the ones after it.
    pub timeout: Duration,
}

impl Default for Notify {
    /// No commands (what an absent `notify` means).
    fn default() -> Self {
        Self {
            master: None,
            backup: None,
            fault: None,
            stop: None,
            any: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl Notify {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.any.is_none()
    }
}

/// `quorum = { witnesses = ["203.0.113.1", "203.0.113.2:443"], need = 1, ... }`: the node holds
/// master only while it reaches at least `need` witnesses; below that the instance goes to
/// FAULT (releases the virtual IPs, keeps listening) instead of claiming the address from an
/// isolated position.
#[derive(Debug, Clone, PartialEq)]
pub struct Quorum {
    pub witnesses: Vec<Witness>,
    /// `need`: default a majority of the witnesses (`n / 2 + 1`).
    pub need: usize,
    /// `interval`: default 1s between probes of each witness.
    pub interval: Duration,
    /// `timeout`: default 1s per probe.
    pub timeout: Duration,
    /// `fall`: default 3 failed probes in a row before a witness counts as unreachable.
    pub fall: u32,
    /// `rise`: default 2 good probes in a row before it counts as reachable again.
    pub rise: u32,
}

impl Quorum {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_FALL: u32 = 3;
    pub const DEFAULT_RISE: u32 = 2;
}

/// One quorum witness: `"203.0.113.1"` is pinged (ICMP echo), `"203.0.113.1:443"` is a TCP
/// connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Witness {
    Icmp(IpAddr),
    Tcp(SocketAddr),
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Witness::Icmp(ip) => write!(f, "icmp {ip}"),
            Witness::Tcp(a) => write!(f, "tcp {a}"),
        }
    }
}
