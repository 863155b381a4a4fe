//! One VRRP instance's loop, on its own OS thread with its own current-thread tokio runtime.
//!
//! Why a thread of its own: VRRP's failure detector is a timer (RFC 5798 6.1:
//! Master_Down_Interval is three advert intervals plus Skew_Time, 300-400 ms with 100 ms
//! adverts). If adverts shared a runtime with a saturated proxy, a late advert would look
//! exactly like a dead master and the backup would take the address while the master still
//! holds it. A dedicated thread (optionally `SCHED_FIFO`, [`RunnerConfig::realtime_priority`])
//! keeps the timing independent of the data plane.
//!
//! The loop ([`spawn`]):
//!
//! 1. **Releases the virtual addresses before anything else** ([`Vips::release`]): after a
//!    crash they may still be configured, and a node that comes up as Backup while holding
//!    them would answer for them next to the real master (RFC 5798 6.4.2: a backup "MUST
//!    NOT" own them). A failure here fails the start.
//! 2. Opens the [`VrrpSocket`] (inside the thread, so it lives in the thread's runtime and in
//!    the network namespace the thread was created in).
//! 3. Runs the Startup event (RFC 5798 6.4.1), then waits for whichever comes first: a
//!    packet (decoded by [`packet::decode`], which counts every discard by reason, then fed
//!    to [`Instance::advert`]), the state machine's timer ([`Instance::next_deadline`] →
//!    [`Instance::tick`]), a gratuitous-announcement timer, or a [`Command`].
//! 4. Carries out the returned [`Action`]s in order, and publishes an [`InstanceStatus`]
//!    snapshot after every event.
//!
//! # Announcements (keepalived's `garp_master_*` semantics, exactly)
//!
//! One [`Vips::announce`] call is one announcement of every virtual address (one gratuitous
//! ARP / unsolicited NA each). On becoming master: `acquire()`, then a burst of
//! `garp_master_repeat` announcements at once; then, if `garp_master_delay` is non-zero, a
//! second burst of `garp_master_repeat` announcements `garp_master_delay` after the
//! transition (switches and hosts that missed the first, e.g. because a port was still
//! coming up); then, if `garp_master_refresh` is set and non-zero, one announcement every
//! `garp_master_refresh` while master (keepalived's `garp_master_refresh_repeat` default of
//! 1). Leaving Master cancels whatever is pending. (RFC 5798 6.4.1/6.4.2 ask for "a
//! gratuitous ARP request" per address on the transition; the repeats are keepalived's
//! robustness on top.)
//!
//! # Stopping
//!
//! [`Command::Shutdown`] (also sent when the [`RunnerHandle`] is dropped, and assumed when
//! every command sender is gone) runs the Shutdown event: a master sends a priority-0 advert
//! (RFC 5798 6.4.3) so the best backup takes over after only its Skew_Time, then the
//! addresses are released. [`Command::Kill`] stops the loop without any of that, the way a
//! crash would: no advert, addresses left in place (the next start releases them). It exists
//! so failover after a dead master can be tested; the daemon has no reason to send it.

use std::io;
use std::net::IpAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_vrrp::fsm::{self, Action, Instance, InstanceConfig, State};
use tandem_vrrp::packet::{self, ChecksumMode, DiscardCounters, Expect};
use tandem_vrrp::{Advert, Version, OWNER_PRIORITY};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::socket::{SendInterface, SocketCounters, VrrpSocket, RECV_BUFFER_LEN};
use crate::Vips;

/// keepalived's default `garp_master_delay`.
pub const DEFAULT_GARP_MASTER_DELAY: Duration = Duration::from_secs(5);
/// keepalived's default `garp_master_repeat`.
pub const DEFAULT_GARP_MASTER_REPEAT: u32 = 5;
/// Packets already queued that a backup reads before its Master_Down timer may act.
const QUEUED_BEFORE_TAKEOVER: usize = 16;
/// How long receiving pauses after a socket error, so a persistent one (interface gone)
/// does not spin the thread; adverts keep going out meanwhile.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything one instance's loop needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// The state machine's configuration; `instance.local_address` is also the source of
    /// every advert (the primary IPv4 address, or the interface's IPv6 link-local address,
    /// RFC 5798 5.1.1.1 / 5.1.2.1).
    pub instance: InstanceConfig,
    /// The interface the instance runs on.
    pub ifindex: u32,
    pub ifname: String,
    /// The virtual addresses, carried in every advert (RFC 5798 5.2.9); all of the family of
    /// `instance.local_address`.
    pub vips: Vec<IpAddr>,
    /// How to checksum v3 over IPv4 (see [`ChecksumMode`]).
    pub checksum: ChecksumMode,
    /// Delay of the second announcement burst after becoming master; zero: no second burst.
    pub garp_master_delay: Duration,
    /// Announcements per burst (see the module docs).
    pub garp_master_repeat: u32,
    /// Period of the refresh announcements while master; `None` or zero: none.
    pub garp_master_refresh: Option<Duration>,
    /// Send to these instead of the multicast group, and accept adverts only from them.
    pub unicast_peers: Vec<IpAddr>,
    /// VRRPv2 only: simple text password (RFC 2338 5.3.6, keepalived's `auth_pass`),
    /// zero-padded ([`packet::pad_password`]); sent and required. Ignored for v3.
    pub password: Option<[u8; 8]>,
    /// Run the thread as `SCHED_FIFO` with this priority (1..=99; clamped). Failing to get it
    /// (no `CAP_SYS_NICE`) is logged and the instance runs at normal priority.
    pub realtime_priority: Option<u8>,
    /// Start as master, keeping the addresses in place: this process takes over from one that
    /// was master and stopped without resigning (`tandem run --upgrade`).
    pub resume_master: bool,
    /// Send adverts through this interface instead of `ifindex` (still receiving on
    /// `ifindex`, still from `instance.local_address`): the VRRP virtual MAC interface, so
    /// adverts carry the virtual MAC (see [`crate::vmac`]). Multicast only: refused at
    /// spawn together with `unicast_peers`. `None` (the default): send on `ifindex`.
    pub send_interface: Option<SendInterface>,
}

impl RunnerConfig {
    /// A config with keepalived's defaults for everything but the essentials.
    pub fn new(instance: InstanceConfig, ifindex: u32, ifname: &str, vips: Vec<IpAddr>) -> Self {
        Self {
            instance,
            ifindex,
            ifname: ifname.to_owned(),
            vips,
            checksum: ChecksumMode::default(),
            garp_master_delay: DEFAULT_GARP_MASTER_DELAY,
            garp_master_repeat: DEFAULT_GARP_MASTER_REPEAT,
            garp_master_refresh: None,
            unicast_peers: Vec::new(),
            password: None,
            realtime_priority: None,
            resume_master: false,
            send_interface: None,
        }
    }
}

/// What the rest of the daemon can ask of a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Tracking changed the effective priority ([`Instance::set_priority`]).
    SetPriority(u8),
    /// A weightless tracked object failed (`true`) or recovered ([`Instance::set_fault`]).
    SetFault(bool),
    /// Stop gracefully: priority-0 advert if master, release the addresses, end the thread.
    Shutdown,
    /// Stop as a crash would: no advert, no release (see the module docs). For tests.
    Kill,
}

/// A snapshot of one instance for the admin API and metrics, published after every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub vrid: u8,
    pub state: State,
    /// The effective priority (configured, changed by tracking).
    pub priority: u8,
    /// The current master's primary address as last seen ([`Instance::master_address`]).
    pub master_address: Option<IpAddr>,
    /// When `state` was entered.
    pub since: Instant,
    /// The state machine's counters (transitions, adverts accepted and discarded by its
    /// rules, priority-0 adverts).
    pub counters: fsm::Counters,
    /// Packets the codec discarded, by reason (RFC 5798 7.1).
    pub discards: DiscardCounters,
    /// Packets the socket dropped before decoding (foreign unicast sources, bad IP headers).
    pub socket: SocketCounters,
    pub adverts_sent: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Failed acquire/release/announce calls.
    pub vip_errors: u64,
    /// The most recent error, for the operator.
    pub last_error: Option<String>,
}

impl InstanceStatus {
    fn new(vrid: u8, priority: u8) -> Self {
        Self {
            vrid,
            state: State::Initialize,
            priority,
            master_address: None,
            since: Instant::now(),
            counters: fsm::Counters::default(),
            discards: DiscardCounters::default(),
            socket: SocketCounters::default(),
            adverts_sent: 0,
            send_errors: 0,
            recv_errors: 0,
            vip_errors: 0,
            last_error: None,
        }
    }
}

/// Shared, always-current status of one instance.
pub type SharedStatus = Arc<Mutex<InstanceStatus>>;

/// One change of state, in the order the instance went through them. Sent on an unbounded
/// channel ([`RunnerHandle::take_transitions`]) so the VRRP thread never waits for whoever
/// runs notify scripts or records events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// The effective priority at the time of the change.
    pub priority: u8,
    /// The master's address as known then (ours when `to` is Master).
    pub master_address: Option<IpAddr>,
    /// Wall-clock time of the change, for the event log.
    pub at: std::time::SystemTime,
}

/// A running instance: its command channel, its status, its thread.
#[derive(Debug)]
pub struct RunnerHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: SharedStatus,
    transitions: Mutex<Option<mpsc::UnboundedReceiver<Transition>>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunnerHandle {
    /// A sender for [`Command`]s (tracking keeps one). When every sender, this handle's
    /// included, is gone, the instance shuts down gracefully.
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    /// Sends one command; fails if the loop has already ended.
    pub fn send(&self, command: Command) -> io::Result<()> {
        self.commands.send(command).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the VRRP instance loop has ended",
            )
        })
    }

    /// Every state change from the start on, in order (the first is Initialize → Backup or
    /// Master). `None` after the first call: there is one consumer.
    pub fn take_transitions(&self) -> Option<mpsc::UnboundedReceiver<Transition>> {
        self.transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The shared status (for the admin API to keep).
    pub fn status_handle(&self) -> SharedStatus {
        Arc::clone(&self.status)
    }

    /// A copy of the current status.
    pub fn status(&self) -> InstanceStatus {
        lock(&self.status).clone()
    }

    /// Graceful stop ([`Command::Shutdown`]) and wait for the thread; returns the loop's
    /// result.
    pub fn shutdown(mut self) -> io::Result<()> {
        let _ = self.commands.send(Command::Shutdown);
        self.join_thread()
    }

    /// Crash-like stop ([`Command::Kill`]) and wait for the thread.
    pub fn kill(mut self) -> io::Result<()> {
        let _ = self.commands.send(Command::Kill);
        self.join_thread()
    }

    fn join_thread(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("the VRRP instance thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunnerHandle {
    /// Never leave an instance running (and holding addresses) unowned.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.commands.send(Command::Shutdown);
            if let Err(e) = self.join_thread() {
                error!(error = %e, "VRRP instance ended with an error");
            }
        }
    }
}

/// Starts the instance on a new OS thread named `vrrp-<vrid>` (see the module docs) and
/// returns once it is running: after the startup release, the socket open and the Startup
/// event. Any failure up to there (invalid config, release failed, socket refused) is
/// returned here and the thread is gone.
///
/// The thread, and so the socket, lives in the network namespace of the *calling* thread
/// (new threads inherit it).
pub fn spawn(config: RunnerConfig, vips: Box<dyn Vips>) -> io::Result<RunnerHandle> {
    let instance = Instance::new(config.instance.clone()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("VRRP instance {}: {e}", config.instance.vrid),
        )
    })?;
    check_encodable(&config)?;
    let status = Arc::new(Mutex::new(InstanceStatus::new(
        config.instance.vrid,
        config.instance.priority,
    )));
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (transitions_tx, transitions_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std_mpsc::sync_channel::<io::Result<()>>(1);
    let thread_status = Arc::clone(&status);
    let thread = std::thread::Builder::new()
        .name(format!("vrrp-{}", config.instance.vrid))
        .spawn(move || {
            thread_main(
                config,
                instance,
                vips,
                thread_status,
                commands_rx,
                transitions_tx,
                ready_tx,
            )
        })
        .map_err(|e| io::Error::new(e.kind(), format!("spawning the VRRP thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(RunnerHandle {
            commands: commands_tx,
            status,
            transitions: Mutex::new(Some(transitions_rx)),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other(
                "the VRRP instance thread ended before starting",
            ))
        }
    }
}

/// Encodes one advert with the configured addresses, so a configuration the wire cannot
/// carry (mixed families, too many addresses, v2 over IPv6) fails at spawn, not at the first
/// transition.
fn check_encodable(config: &RunnerConfig) -> io::Result<()> {
    let source = config.instance.local_address;
    let probe_dst = if source.is_ipv4() {
        IpAddr::V4(packet::MULTICAST_V4)
    } else {
        IpAddr::V6(packet::MULTICAST_V6)
    };
    let mut out = Vec::new();
    packet::encode(
        &advert(config, config.instance.priority),
        source,
        probe_dst,
        config.checksum,
        &mut out,
    )
    .map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("VRRP instance {}: {e}", config.instance.vrid),
        )
    })
}

fn advert(config: &RunnerConfig, priority: u8) -> Advert {
    Advert {
        version: config.instance.version,
        vrid: config.instance.vrid,
        priority,
        interval: config.instance.advert_interval,
        addresses: config.vips.clone(),
    }
}

fn thread_main(
    config: RunnerConfig,
    instance: Instance,
    mut vips: Box<dyn Vips>,
    status: SharedStatus,
    commands: mpsc::UnboundedReceiver<Command>,
    transitions: mpsc::UnboundedSender<Transition>,
    ready: std_mpsc::SyncSender<io::Result<()>>,
) -> io::Result<()> {
    let vrid = config.instance.vrid;
    // Step 1, before anything else: no stale address survives a crash (module docs). Not
    // when taking over from a master: its addresses are ours now.
    if config.resume_master {
        info!(vrid, "taking over as master from the previous process");
    } else if let Err(e) = vips.release() {
        let e = io::Error::new(
            e.kind(),
            format!("VRRP instance {vrid}: releasing the virtual addresses at start: {e}"),
        );
        let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
        return Err(e);
    }
    if let Some(priority) = config.realtime_priority {
        set_realtime(vrid, priority);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let e = io::Error::new(e.kind(), format!("VRRP instance {vrid}: runtime: {e}"));
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    runtime.block_on(async move {
        let socket = match VrrpSocket::open_with_send_interface(
            config.ifindex,
            &config.ifname,
            config.instance.local_address,
            &config.unicast_peers,
            config.send_interface.as_ref(),
        ) {
            Ok(socket) => socket,
            Err(e) => {
                let e = io::Error::new(e.kind(), format!("VRRP instance {vrid}: {e}"));
                let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        };
        let mut runner = Runner {
            expect: Expect {
                version: config.instance.version,
                vrid,
                password: config
                    .password
                    .filter(|_| config.instance.version == Version::V2),
                local_is_owner: config.instance.priority == OWNER_PRIORITY,
            },
            config,
            fsm: instance,
            vips,
            socket,
            status,
            transitions,
            stats: Stats::default(),
            garp: Garp::default(),
            out: Vec::new(),
        };
        let actions = if runner.config.resume_master {
            runner.fsm.resume_master(Instant::now())
        } else {
            runner.fsm.start(Instant::now())
        };
        runner.execute(actions).await;
        runner.publish();
        let _ = ready.send(Ok(()));
        runner.run(commands).await;
        Ok(())
    })
}

/// `SCHED_FIFO` for the calling thread (pid 0 is the calling thread on Linux).
fn set_realtime(vrid: u8, priority: u8) {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: plain syscall on the calling thread with a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        warn!(
            vrid,
            priority,
            error = %io::Error::last_os_error(),
            "could not switch the VRRP thread to SCHED_FIFO; running at normal priority"
        );
    }
}

fn lock(status: &SharedStatus) -> MutexGuard<'_, InstanceStatus> {
    // A panic while holding the lock leaves a still-meaningful snapshot: keep using it.
    status
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shell's own counters (the FSM and codec keep theirs).
#[derive(Debug, Default)]
struct Stats {
    discards: DiscardCounters,
    adverts_sent: u64,
    send_errors: u64,
    recv_errors: u64,
    vip_errors: u64,
    last_error: Option<String>,
}

/// Pending announcement timers while master (module docs).
#[derive(Debug, Default)]
struct Garp {
    second_burst_at: Option<Instant>,
    refresh_at: Option<Instant>,
}

impl Garp {
    fn next_at(&self) -> Option<Instant> {
        match (self.second_burst_at, self.refresh_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

struct Runner {
    config: RunnerConfig,
    expect: Expect,
    fsm: Instance,
    vips: Box<dyn Vips>,
    socket: VrrpSocket,
    status: SharedStatus,
    transitions: mpsc::UnboundedSender<Transition>,
    stats: Stats,
    garp: Garp,
    /// Encoding buffer, reused.
    out: Vec<u8>,
}

enum Event {
    Command(Option<Command>),
    Packet(io::Result<(usize, packet::IpMeta)>),
    Timer,
    Garp,
    RecvResume,
}

impl Runner {
    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        let mut recv_paused_until: Option<Instant> = None;
        loop {
            let deadline = self.fsm.next_deadline();
            let garp_at = self.garp.next_at();
            let recv_paused = recv_paused_until.is_some();
            let event = tokio::select! {
                biased;
                command = commands.recv() => Event::Command(command),
                _ = sleep_until(deadline) => Event::Timer,
                received = self.socket.recv(&mut buf), if !recv_paused => Event::Packet(received),
                _ = sleep_until(garp_at) => Event::Garp,
                _ = sleep_until(recv_paused_until), if recv_paused => Event::RecvResume,
            };
            match event {
                Event::Command(None | Some(Command::Shutdown)) => {
                    let actions = self.fsm.shutdown(Instant::now());
                    self.execute(actions).await;
                    self.publish();
                    info!(vrid = self.config.instance.vrid, "VRRP instance stopped");
                    return;
                }
                Event::Command(Some(Command::Kill)) => {
                    warn!(
                        vrid = self.config.instance.vrid,
                        "VRRP instance killed (no priority-0 advert, addresses left as they are)"
                    );
                    return;
                }
                Event::Command(Some(Command::SetPriority(priority))) => {
                    let actions = self.fsm.set_priority(Instant::now(), priority);
                    self.execute(actions).await;
                }
                Event::Command(Some(Command::SetFault(fault))) => {
                    let actions = self.fsm.set_fault(Instant::now(), fault);
                    self.execute(actions).await;
                }
                Event::Timer => {
                    // A backup whose thread was descheduled past Master_Down_Interval may find
                    // the master's advert already waiting in the socket: read what is queued
                    // (a bounded number) before deciding the master is dead.
                    if self.fsm.state() == State::Backup && !recv_paused {
                        for _ in 0..QUEUED_BEFORE_TAKEOVER {
                            let ready =
                                tokio::time::timeout(Duration::ZERO, self.socket.recv(&mut buf))
                                    .await;
                            let Ok(Ok((n, meta))) = ready else { break };
                            self.on_packet(buf.get(..n).unwrap_or(&[]), &meta).await;
                        }
                    }
                    let actions = self.fsm.tick(Instant::now());
                    self.execute(actions).await;
                }
                Event::Packet(Ok((n, meta))) => {
                    self.on_packet(buf.get(..n).unwrap_or(&[]), &meta).await;
                }
                Event::Packet(Err(e)) => {
                    self.stats.recv_errors += 1;
                    warn!(vrid = self.config.instance.vrid, error = %e, "VRRP receive failed");
                    self.stats.last_error = Some(format!("receive: {e}"));
                    recv_paused_until = Some(Instant::now() + RECV_ERROR_BACKOFF);
                }
                Event::Garp => self.garp_due().await,
                Event::RecvResume => recv_paused_until = None,
            }
            self.publish();
        }
    }

    /// One received packet: decoded (discards counted by reason) and fed to the state machine.
    async fn on_packet(&mut self, bytes: &[u8], meta: &packet::IpMeta) {
        match packet::decode(bytes, meta, &self.expect) {
            Ok(received) => {
                let actions = self.fsm.advert(Instant::now(), &received);
                self.execute(actions).await;
            }
            Err(reason) => {
                self.stats.discards.record(&reason);
                debug!(
                    vrid = self.config.instance.vrid,
                    src = %meta.src,
                    %reason,
                    "VRRP packet discarded"
                );
            }
        }
    }

    /// Carries out the state machine's actions, in order.
    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::BecomeMaster => self.become_master(),
                Action::Announce => {
                    info!(
                        vrid = self.config.instance.vrid,
                        "a lower-priority node claims master: answered, announcing the addresses again"
                    );
                    self.announce(self.config.garp_master_repeat);
                }
                Action::BecomeBackup | Action::EnterFault | Action::Stopped => {
                    info!(
                        vrid = self.config.instance.vrid,
                        state = ?self.fsm.state(),
                        master = ?self.fsm.master_address(),
                        "VRRP instance left or is not master; releasing addresses"
                    );
                    self.garp = Garp::default();
                    let result = self.vips.release();
                    self.vip_result("release", result);
                }
            }
        }
    }

    /// RFC 5798 6.4.1 / 6.4.2: take the addresses, then tell the segment (module docs for
    /// the bursts).
    fn become_master(&mut self) {
        info!(
            vrid = self.config.instance.vrid,
            priority = self.fsm.effective_priority(),
            "VRRP instance became master"
        );
        let result = self.vips.acquire();
        self.vip_result("acquire", result);
        self.announce(self.config.garp_master_repeat);
        let now = Instant::now();
        self.garp.second_burst_at = (!self.config.garp_master_delay.is_zero()
            && self.config.garp_master_repeat > 0)
            .then(|| now + self.config.garp_master_delay);
        self.garp.refresh_at = self
            .config
            .garp_master_refresh
            .filter(|period| !period.is_zero())
            .map(|period| now + period);
    }

    async fn garp_due(&mut self) {
        if self.fsm.state() != State::Master {
            self.garp = Garp::default();
            return;
        }
        let now = Instant::now();
        if self.garp.second_burst_at.is_some_and(|at| at <= now) {
            self.garp.second_burst_at = None;
            self.announce(self.config.garp_master_repeat);
        }
        if self.garp.refresh_at.is_some_and(|at| at <= now) {
            self.garp.refresh_at = self.config.garp_master_refresh.map(|period| now + period);
            self.announce(1);
        }
    }

    fn announce(&mut self, times: u32) {
        for _ in 0..times {
            let result = self.vips.announce();
            self.vip_result("announce", result);
        }
    }

    fn vip_result(&mut self, what: &str, result: io::Result<()>) {
        if let Err(e) = result {
            self.stats.vip_errors += 1;
            error!(vrid = self.config.instance.vrid, error = %e, "virtual addresses: {what} failed");
            self.stats.last_error = Some(format!("{what}: {e}"));
        }
    }

    /// One advert to every destination (the group, or each unicast peer), each encoded for
    /// its destination because the checksum covers it (RFC 5798 5.2.8).
    async fn send_advert(&mut self, priority: u8) {
        let advert = advert(&self.config, priority);
        let source = self.socket.source();
        let destinations = self.socket.destinations().to_vec();
        for dst in destinations {
            if let Err(e) =
                packet::encode(&advert, source, dst, self.config.checksum, &mut self.out)
            {
                // Checked at spawn; only reachable if that check and this one diverge.
                self.stats.send_errors += 1;
                self.stats.last_error = Some(format!("encode: {e}"));
                continue;
            }
            if let (Version::V2, Some(password)) = (advert.version, self.config.password) {
                apply_v2_password(&mut self.out, &password);
            }
            match self.socket.send(&self.out, dst).await {
                Ok(()) => self.stats.adverts_sent += 1,
                Err(e) => {
                    self.stats.send_errors += 1;
                    warn!(vrid = self.config.instance.vrid, error = %e, "VRRP send failed");
                    self.stats.last_error = Some(format!("send: {e}"));
                }
            }
        }
    }

    fn publish(&self) {
        let mut status = lock(&self.status);
        let state = self.fsm.state();
        if status.state != state {
            // Nobody listening (the receiver was dropped or never taken) is fine.
            let _ = self.transitions.send(Transition {
                from: status.state,
                to: state,
                priority: self.fsm.effective_priority(),
                master_address: self.fsm.master_address(),
                at: std::time::SystemTime::now(),
            });
            status.since = Instant::now();
            status.state = state;
        }
        status.priority = self.fsm.effective_priority();
        status.master_address = self.fsm.master_address();
        status.counters = *self.fsm.counters();
        status.discards = self.stats.discards;
        status.socket = self.socket.counters();
        status.adverts_sent = self.stats.adverts_sent;
        status.send_errors = self.stats.send_errors;
        status.recv_errors = self.stats.recv_errors;
        status.vip_errors = self.stats.vip_errors;
        status.last_error.clone_from(&self.stats.last_error);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Turns an encoded VRRPv2 advert (auth type 0, zero auth data) into a simple-text-password
/// one (RFC 2338 5.3.6: auth type 1, the password in the last 8 octets), and recomputes the
/// checksum (RFC 3768 5.3.8: the whole VRRP message, no pseudo-header).
fn apply_v2_password(message: &mut [u8], password: &[u8; 8]) {
    let len = message.len();
    if len < 16 {
        return;
    }
    message[4] = 1;
    message[len - 8..].copy_from_slice(password);
    message[6] = 0;
    message[7] = 0;
    let mut sum: u32 = 0;
    for chunk in message.chunks(2) {
        let word = match *chunk {
            [hi, lo] => u16::from_be_bytes([hi, lo]),
            [hi] => u16::from_be_bytes([hi, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    message[6..8].copy_from_slice(&checksum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tandem_vrrp::Centis;

    #[test]
    fn v2_password_advert_decodes_with_the_password() {
        let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let dst = IpAddr::V4(packet::MULTICAST_V4);
        let advert = Advert {
            version: Version::V2,
            vrid: 7,
            priority: 100,
            interval: Centis(100),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100))],
        };
        let mut out = Vec::new();
        packet::encode(&advert, src, dst, ChecksumMode::default(), &mut out).unwrap();
        let password = packet::pad_password(b"secret").unwrap();
        apply_v2_password(&mut out, &password);
        let meta = packet::IpMeta {
            src,
            dst,
            ttl_or_hop_limit: 255,
        };
        let expect = Expect {
            version: Version::V2,
            vrid: 7,
            password: Some(password),
            local_is_owner: false,
        };
        assert_eq!(packet::decode(&out, &meta, &expect).unwrap().advert, advert);
        let wrong = Expect {
            password: packet::pad_password(b"other"),
            ..expect
        };
        assert_eq!(
            packet::decode(&out, &meta, &wrong),
            Err(packet::Discard::BadPassword)
        );
    }
}
