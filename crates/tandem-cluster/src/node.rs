//! The async shell: this node's stream server, one receiving client per peer, the collector
//! that turns sticky-table changes into log records, and the checkpoint of what was applied.
//!
//! Every peer is both a source and a replica: node B connects to node A's `listen` and asks
//! for A's changes from the position B last applied (A's log `epoch` and sequence number); A
//! streams from there, or sends a snapshot first when it no longer holds that position. B
//! receives on one task and applies on another, connected by an unbounded queue, so a slow
//! apply never stalls the socket; the position advances only as records are applied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::rand::SecureRandom;
use tandem_balance::sticky::Change;
use tandem_balance::{AdminState, SharedTopology};
use tandem_config::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::frame::{self, FrameError, Message, Opener, Sealer, CLIENT, NONCE_LEN, SERVER};
use crate::log::ChangeLog;
use crate::record::{BackendAction, Record};

/// Records a node keeps for resuming peers (about 60 bytes each).
pub const LOG_CAPACITY: usize = 1 << 20;
/// How often sticky-table changes are collected into the log.
const COLLECT_EVERY: Duration = Duration::from_millis(20);
/// A stream with nothing to send sends a heartbeat this often (lag, liveness).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A peer silent for this long (no record, no heartbeat) is taken for dead: reconnect.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Records per read of the log when streaming.
const BATCH: usize = 512;
/// How often the checkpoint is written when something changed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // No system randomness: fall back to the clock (nonces then only need to differ).
        let t = wall_ms().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % 8] ^ (i as u8);
        }
    }
    b
}

/// What one peer's stream into this node looks like, for the admin API and metrics.
#[derive(Debug)]
pub struct PeerStatus {
    pub address: SocketAddr,
    pub connected: AtomicBool,
    /// The peer's log epoch and the next sequence number to apply from it: the position.
    pub epoch: AtomicU64,
    pub position: AtomicU64,
    /// The head of the peer's log as last heard.
    pub source_head: AtomicU64,
    /// Records received, not yet applied.
    pub queued: AtomicU64,
    /// The peer's wall clock when it sent the record last applied, and when it was applied:
    /// their difference is the replication delay.
    pub lag_ms: AtomicU64,
    pub applied: AtomicU64,
    pub snapshots: AtomicU64,
    pub resumes: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub auth_failures: AtomicU64,
    pub parse_failures: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl PeerStatus {
    fn new(address: SocketAddr) -> Self {
        Self {
            address,
            connected: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            position: AtomicU64::new(0),
            source_head: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            parse_failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Records the source holds that this node has not applied yet.
    pub fn lag_entries(&self) -> u64 {
        let head = self.source_head.load(Ordering::Relaxed);
        let pos = self.position.load(Ordering::Relaxed);
        head.saturating_sub(pos)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
}

/// This node as a source.
#[derive(Debug, Default)]
pub struct ServerStatus {
    pub streams: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub resumes_served: AtomicU64,
    /// Connections closed because a frame failed authentication (wrong secret...).
    pub auth_failures: AtomicU64,
    pub parse_failures: AtomicU64,
}

/// A running cluster member.
pub struct Node {
    pub log: Arc<ChangeLog>,
    pub peers: Vec<Arc<PeerStatus>>,
    pub server: Arc<ServerStatus>,
    pub listen: SocketAddr,
    secret: Arc<Vec<u8>>,
    topology: SharedTopology,
    /// Set when something was applied or collected since the last checkpoint.
    dirty: AtomicBool,
    state_dir: Option<PathBuf>,
    /// A second descriptor of the listening socket, for a process that takes over.
    listening: Option<std::os::fd::OwnedFd>,
}

impl Node {
    /// The listening socket, for handing it to a process that takes over.
    pub fn listener_fd(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.listening
            .as_ref()
            .and_then(|fd| fd.as_fd().try_clone_to_owned().ok())
    }

    /// Binds the listener (an error here is a startup error), loads the checkpoint if there
    /// is one, and starts every task on the current runtime until `stop`.
    pub async fn start(
        cfg: &Cluster,
        topology: SharedTopology,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Node>> {
        let listener = TcpListener::bind(cfg.listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cluster: cannot listen on {}: {e}", cfg.listen),
            )
        })?;
        Self::start_on(cfg, listener, topology, stop).await
    }

    /// [`Self::start`] on a listener that is already bound (handed over by the process this
    /// one replaces).
    pub async fn start_on(
        cfg: &Cluster,
        listener: TcpListener,
        topology: SharedTopology,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Node>> {
        let listen = listener.local_addr()?;
        let listening = {
            use std::os::fd::AsFd;
            listener.as_fd().try_clone_to_owned().ok()
        };
        let epoch = u64::from_le_bytes(random::<8>()) | 1;
        let peers: Vec<Arc<PeerStatus>> = cfg
            .peers
            .iter()
            .map(|&address| Arc::new(PeerStatus::new(address)))
            .collect();
        let node = Arc::new(Node {
            log: Arc::new(ChangeLog::new(epoch, LOG_CAPACITY)),
            peers,
            server: Arc::new(ServerStatus::default()),
            listen,
            secret: Arc::new(cfg.secret.0.clone()),
            topology,
            dirty: AtomicBool::new(false),
            state_dir: cfg.state_dir.clone(),
            listening,
        });
        if let Some(dir) = &node.state_dir {
            match crate::checkpoint::load(&dir.join(crate::checkpoint::FILE)) {
                Ok(Some(ck)) => node.restore(ck),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: ignoring an unreadable checkpoint; peers will send snapshots")
                }
            }
        }
        tokio::spawn(Arc::clone(&node).serve(listener, stop.clone()));
        for p in &node.peers {
            tokio::spawn(Arc::clone(&node).follow(Arc::clone(p), stop.clone()));
        }
        tokio::spawn(Arc::clone(&node).collect(stop.clone()));
        if node.state_dir.is_some() {
            tokio::spawn(Arc::clone(&node).checkpoints(stop));
        }
        tracing::info!(%listen, epoch = format!("{epoch:016x}"), peers = node.peers.len(), "cluster stream started");
        Ok(node)
    }

    /// An operator acted on a backend through the admin API: tell the peers.
    pub fn backend_action(&self, pool: &str, backend: SocketAddr, action: BackendAction) {
        self.log.append([Record::Backend {
            pool: pool.to_string(),
            backend,
            action,
        }]);
        self.dirty.store(true, Ordering::Relaxed);
    }

    // ---- source side ------------------------------------------------------------------

    async fn serve(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            let node = Arc::clone(&self);
            let stop = stop.clone();
            tokio::spawn(async move {
                node.server.streams.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = node.stream_to(stream, stop).await {
                    match &e {
                        StreamError::Frame(f) if f.is_auth() => {
                            node.server.auth_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, "cluster: connection refused: {f}");
                        }
                        StreamError::Frame(f) => {
                            node.server.parse_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, "cluster: connection closed: {f}");
                        }
                        other => tracing::debug!(%peer, "cluster stream ended: {other}"),
                    }
                }
                node.server.streams.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    async fn stream_to(
        &self,
        mut s: TcpStream,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), StreamError> {
        let _ = s.set_nodelay(true);
        let mut opener = Opener::new(frame::hello_key(&self.secret), CLIENT);
        let hello = tokio::time::timeout(READ_TIMEOUT, read_frame(&mut s, &mut opener))
            .await
            .map_err(|_| StreamError::Timeout)??;
        let Message::Hello {
            version,
            nonce: client_nonce,
            epoch,
            seq,
        } = hello
        else {
            return Err(StreamError::Protocol("expected Hello"));
        };
        if version != frame::VERSION {
            return Err(StreamError::Protocol("unsupported protocol version"));
        }
        let resume = epoch == self.log.epoch() && seq >= 1 && self.log.holds(seq);
        let server_nonce = random::<NONCE_LEN>();
        let mut sealer = Sealer::new(frame::hello_key(&self.secret), SERVER);
        let mut out = Vec::with_capacity(64 * 1024);
        sealer.seal(
            &Message::Welcome {
                nonce: server_nonce,
                epoch: self.log.epoch(),
                snapshot: !resume,
            },
            &mut out,
        );
        sealer.rekey(frame::session_key(
            &self.secret,
            &client_nonce,
            &server_nonce,
        ));
        let mut next = if resume {
            self.server.resumes_served.fetch_add(1, Ordering::Relaxed);
            seq
        } else {
            self.server.snapshots_sent.fetch_add(1, Ordering::Relaxed);
            // The head first: changes made while the snapshot is taken are sent again after
            // it, which is harmless (records are idempotent).
            let head = self.log.head();
            for record in self.snapshot() {
                sealer.seal(&Message::Snapshot { record }, &mut out);
                if out.len() >= 32 * 1024 {
                    write(&mut s, &mut out).await?;
                }
            }
            sealer.seal(&Message::SnapshotEnd { seq: head }, &mut out);
            head
        };
        write(&mut s, &mut out).await?;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            batch.clear();
            if self.log.read(next, BATCH, &mut batch).is_err() {
                // Fell behind further than the log reaches: the peer reconnects and gets a
                // snapshot.
                return Err(StreamError::Protocol("peer fell behind the log"));
            }
            if batch.is_empty() {
                let idle = tokio::select! {
                    _ = self.log.wait_beyond(next) => false,
                    _ = tokio::time::sleep(HEARTBEAT_EVERY) => true,
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                };
                if idle {
                    sealer.seal(
                        &Message::Heartbeat {
                            head_seq: self.log.head(),
                            wall_ms: wall_ms(),
                        },
                        &mut out,
                    );
                    write(&mut s, &mut out).await?;
                }
                continue;
            }
            for (seq, record) in batch.drain(..) {
                sealer.seal(&Message::Change { seq, record }, &mut out);
                next = seq + 1;
            }
            sealer.seal(
                &Message::Heartbeat {
                    head_seq: self.log.head(),
                    wall_ms: wall_ms(),
                },
                &mut out,
            );
            write(&mut s, &mut out).await?;
        }
    }

    /// Everything a fresh peer needs: every live sticky entry and every backend an operator
    /// took out of rotation.
    fn snapshot(&self) -> Vec<Record> {
        let now = Instant::now();
        let wall = wall_ms();
        let mut out = Vec::new();
        for p in &self.topology.load().persistence {
            if let Some(t) = &p.sticky {
                for c in t.snapshot(now) {
                    out.push(sticky_record(&p.service, &c, wall));
                }
            }
        }
        for pool in &self.topology.load().pools {
            for b in pool.backends.iter() {
                let action = match b.admin_state() {
                    AdminState::Enabled => continue,
                    AdminState::Draining => BackendAction::Drain,
                    AdminState::Disabled => BackendAction::Disable,
                };
                out.push(Record::Backend {
                    pool: pool.name.clone(),
                    backend: b.address,
                    action,
                });
            }
        }
        out
    }

    /// Moves new sticky-table changes into the log.
    async fn collect(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(COLLECT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.collect_once();
        }
    }

    /// One collection pass (also run by tests and before a checkpoint).
    pub fn collect_once(&self) {
        let wall = wall_ms();
        for p in &self.topology.load().persistence {
            let changes = p.take_changes();
            if changes.is_empty() {
                continue;
            }
            self.log
                .append(changes.iter().map(|c| sticky_record(&p.service, c, wall)));
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    // ---- replica side -----------------------------------------------------------------

    async fn follow(self: Arc<Self>, peer: Arc<PeerStatus>, mut stop: watch::Receiver<bool>) {
        let (tx, rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(Arc::clone(&self).apply_loop(Arc::clone(&peer), rx));
        let mut backoff = BACKOFF_MIN;
        loop {
            if *stop.borrow() {
                return;
            }
            // Start from what was applied: let the queue of the last connection drain first.
            for _ in 0..100 {
                if peer.queued.load(Ordering::Relaxed) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let result = tokio::select! {
                r = self.receive(&peer, &tx) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            peer.connected.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(StreamError::Connect(e)) => {
                    peer.connect_failures.fetch_add(1, Ordering::Relaxed);
                    peer.error(format!("connect: {e}"));
                }
                Err(StreamError::Frame(f)) => {
                    if f.is_auth() {
                        peer.auth_failures.fetch_add(1, Ordering::Relaxed);
                    } else {
                        peer.parse_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(peer = %peer.address, "cluster: stream from peer closed: {f}");
                    peer.error(&f);
                }
                Err(e) => {
                    tracing::info!(peer = %peer.address, "cluster: stream from peer ended: {e}");
                    peer.error(&e);
                    backoff = BACKOFF_MIN;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection to a peer: handshake, then queue every frame for the applier.
    async fn receive(
        &self,
        peer: &PeerStatus,
        tx: &mpsc::UnboundedSender<Message>,
    ) -> Result<(), StreamError> {
        let mut s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.address))
            .await
            .map_err(|_| StreamError::Connect("timed out".into()))?
            .map_err(|e| StreamError::Connect(e.to_string()))?;
        let _ = s.set_nodelay(true);
        peer.connects.fetch_add(1, Ordering::Relaxed);
        let client_nonce = random::<NONCE_LEN>();
        let mut sealer = Sealer::new(frame::hello_key(&self.secret), CLIENT);
        let mut out = Vec::new();
        let epoch = peer.epoch.load(Ordering::Relaxed);
        let position = peer.position.load(Ordering::Relaxed);
        sealer.seal(
            &Message::Hello {
                version: frame::VERSION,
                nonce: client_nonce,
                epoch,
                seq: position,
            },
            &mut out,
        );
        write(&mut s, &mut out).await?;
        let mut opener = Opener::new(frame::hello_key(&self.secret), SERVER);
        let welcome = tokio::time::timeout(READ_TIMEOUT, read_frame(&mut s, &mut opener))
            .await
            .map_err(|_| StreamError::Timeout)??;
        let Message::Welcome {
            nonce: server_nonce,
            epoch: source_epoch,
            snapshot,
        } = welcome
        else {
            return Err(StreamError::Protocol("expected Welcome"));
        };
        opener.rekey(frame::session_key(
            &self.secret,
            &client_nonce,
            &server_nonce,
        ));
        peer.connected.store(true, Ordering::Relaxed);
        if snapshot {
            peer.snapshots.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %peer.address, "cluster: receiving a snapshot from peer");
        } else {
            peer.resumes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %peer.address, position, "cluster: resuming the stream from peer");
        }
        // The applier learns the new epoch in order with the records.
        let _ = tx.send(Message::Welcome {
            nonce: server_nonce,
            epoch: source_epoch,
            snapshot,
        });
        peer.queued.fetch_add(1, Ordering::Relaxed);
        loop {
            let m = tokio::time::timeout(READ_TIMEOUT, read_frame(&mut s, &mut opener))
                .await
                .map_err(|_| StreamError::Timeout)??;
            if let Message::Heartbeat { head_seq, .. } = &m {
                peer.source_head.store(*head_seq, Ordering::Relaxed);
            }
            peer.queued.fetch_add(1, Ordering::Relaxed);
            if tx.send(m).is_err() {
                return Ok(());
            }
        }
    }

    async fn apply_loop(
        self: Arc<Self>,
        peer: Arc<PeerStatus>,
        mut rx: mpsc::UnboundedReceiver<Message>,
    ) {
        while let Some(m) = rx.recv().await {
            self.apply_message(&peer, m);
            peer.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn apply_message(&self, peer: &PeerStatus, m: Message) {
        match m {
            Message::Welcome {
                epoch, snapshot, ..
            } => {
                if snapshot || epoch != peer.epoch.load(Ordering::Relaxed) {
                    // Positions of another epoch mean nothing; a snapshot sets one at its end.
                    peer.epoch.store(epoch, Ordering::Relaxed);
                    peer.position.store(0, Ordering::Relaxed);
                }
            }
            Message::Change { seq, record } => {
                self.apply(&record);
                peer.position.store(seq + 1, Ordering::Relaxed);
                peer.applied.fetch_add(1, Ordering::Relaxed);
                self.dirty.store(true, Ordering::Relaxed);
            }
            Message::Snapshot { record } => {
                self.apply(&record);
                peer.applied.fetch_add(1, Ordering::Relaxed);
                self.dirty.store(true, Ordering::Relaxed);
            }
            Message::SnapshotEnd { seq } => {
                peer.position.store(seq, Ordering::Relaxed);
                self.dirty.store(true, Ordering::Relaxed);
            }
            Message::Heartbeat { wall_ms: sent, .. } => {
                peer.lag_ms
                    .store(wall_ms().saturating_sub(sent), Ordering::Relaxed);
            }
            Message::Hello { .. } => {}
        }
    }

    /// Applies one record to this node's state (idempotent).
    pub fn apply(&self, record: &Record) {
        let now = Instant::now();
        match record {
            Record::Sticky {
                service,
                key,
                backend,
                last_seen_ms,
            } => {
                if let Some(p) = self.topology.load().persistence(service) {
                    let idle = Duration::from_millis(wall_ms().saturating_sub(*last_seen_ms));
                    p.apply(
                        &Change {
                            key: *key,
                            backend: *backend,
                            idle,
                        },
                        now,
                    );
                }
            }
            Record::Backend {
                pool,
                backend,
                action,
            } => {
                let topology = self.topology.load();
                let Some(pool) = topology.pool(pool) else {
                    return;
                };
                let Some(b) = pool.find(*backend) else {
                    return;
                };
                let id = b.id;
                match action {
                    BackendAction::Enable => {
                        pool.set_admin_state(id, AdminState::Enabled, now);
                    }
                    BackendAction::Drain => {
                        pool.set_admin_state(id, AdminState::Draining, now);
                    }
                    BackendAction::Disable => {
                        pool.set_admin_state(id, AdminState::Disabled, now);
                    }
                    BackendAction::Weight(w) => {
                        pool.set_weight(id, *w, now);
                    }
                }
            }
        }
    }

    // ---- checkpoint ---------------------------------------------------------------------

    fn restore(&self, ck: crate::checkpoint::Checkpoint) {
        let positions: HashMap<SocketAddr, (u64, u64)> = ck.positions.into_iter().collect();
        for p in &self.peers {
            if let Some(&(epoch, seq)) = positions.get(&p.address) {
                p.epoch.store(epoch, Ordering::Relaxed);
                p.position.store(seq, Ordering::Relaxed);
            }
        }
        let n = ck.records.len();
        for r in &ck.records {
            self.apply(r);
        }
        // What was restored was not made here: keep it out of this node's log (its peers
        // have it already), and out of the next checkpoint's "dirty".
        for p in &self.topology.load().persistence {
            p.take_changes();
        }
        tracing::info!(records = n, "cluster: restored the checkpoint");
    }

    async fn checkpoints(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if self.dirty.swap(false, Ordering::Relaxed) || stopping {
                if let Err(e) = self.write_checkpoint() {
                    tracing::warn!(error = %e, "cluster: writing the checkpoint failed");
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Writes the positions, then the state: a restart resumes from positions no newer than
    /// the state it loads (records applied twice are harmless, records missed are not).
    pub fn write_checkpoint(&self) -> std::io::Result<()> {
        let Some(dir) = &self.state_dir else {
            return Ok(());
        };
        let positions: Vec<(SocketAddr, (u64, u64))> = self
            .peers
            .iter()
            .map(|p| {
                (
                    p.address,
                    (
                        p.epoch.load(Ordering::Relaxed),
                        p.position.load(Ordering::Relaxed),
                    ),
                )
            })
            .collect();
        let records = self.snapshot();
        crate::checkpoint::save(
            &dir.join(crate::checkpoint::FILE),
            &crate::checkpoint::Checkpoint { positions, records },
        )
    }
}

fn sticky_record(service: &str, c: &Change, wall: u64) -> Record {
    Record::Sticky {
        service: service.to_string(),
        key: c.key,
        backend: c.backend,
        last_seen_ms: wall.saturating_sub(u64::try_from(c.idle.as_millis()).unwrap_or(u64::MAX)),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("peer silent for too long")]
    Timeout,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

async fn read_frame(s: &mut TcpStream, opener: &mut Opener) -> Result<Message, StreamError> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let n = Opener::check_len(u32::from_le_bytes(len))?;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await?;
    Ok(opener.open(&buf)?)
}

async fn write(s: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), StreamError> {
    if out.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(WRITE_TIMEOUT, s.write_all(out))
        .await
        .map_err(|_| StreamError::Timeout)??;
    out.clear();
    Ok(())
}
