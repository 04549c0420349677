//! [`RaftNode`]: what the node binary starts, writes through and subscribes to.
//!
//! ```ignore
//! let node = RaftNode::start(id, &data_dir, &secret, RaftSettings::default()).await?;
//! // admin HttpServer::new(move || App::new().configure(rpc.clone()) ...)
//! let rpc = node.rpc_service();
//! node.initialize_if_needed(&peers).await?;      // every start; no-op once initialised
//! let mut state = node.subscribe();               // rebuild ArcSwaps on each change
//! match node.write(command).await { ... }         // admin writes
//! ```
//!
//! ## Timing
//!
//! openraft 0.9 starts an election on a follower only after
//! `leader_lease + election_timeout` without hearing from a leader, where
//! `leader_lease = election_timeout_max` and `election_timeout` is drawn once per
//! node from `[min, max)`. With the defaults here (heartbeat 150 ms, election
//! timeout 400–700 ms) a dead leader is replaced after 1.1–1.4 s plus one vote
//! round-trip (an fsync on each voter; 1.1–1.4 s measured in
//! `tests/cluster.rs`): comfortably under the 2 s target, while a
//! follower tolerates ~7 missed heartbeats before disturbing a healthy leader.
//! Append-entries RPCs time out after one heartbeat interval (openraft's choice),
//! which is why the heartbeat is not set lower: a follower's append includes an
//! fsync.

use crate::codec;
use crate::command::{Command, Response};
use crate::network::{HttpNetwork, Transport, TransportSettings};
use crate::server::{self, RaftRpc};
use crate::state::{compile_validator, DeltaBatch, Published, Validator};
use crate::store::{self, LogStats, LogStore};
use crate::{NodeId, Raft};
use actix_web::web;
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Tunables, with defaults suitable for a 3–5 node gateway cluster on a LAN.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// Leader heartbeat; also openraft's timeout for one append-entries RPC.
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot every this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot, so a briefly lagging follower catches up
    /// from the log instead of a snapshot transfer. Disk holds at most about
    /// `snapshot_every + logs_kept_after_snapshot` entries.
    pub logs_kept_after_snapshot: u64,
    /// Timeout for one snapshot chunk RPC.
    pub install_snapshot_timeout: Duration,
    /// sled page cache size.
    pub cache_bytes: u64,
    /// How long [`RaftNode::write`] waits for a commit before giving up with
    /// [`WriteError::Timeout`] (e.g. while the cluster has no quorum).
    pub write_timeout: Duration,
    pub transport: TransportSettings,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(700),
            snapshot_every: 500,
            logs_kept_after_snapshot: 500,
            install_snapshot_timeout: Duration::from_secs(5),
            cache_bytes: store::DEFAULT_CACHE_BYTES,
            write_timeout: Duration::from_secs(5),
            transport: TransportSettings::default(),
        }
    }
}

impl RaftSettings {
    /// The openraft config these settings stand for (validated).
    pub fn openraft_config(&self) -> Result<openraft::Config, Box<openraft::ConfigError>> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.install_snapshot_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // 1 MiB chunks: several round-trips per snapshot, each well inside the
            // chunk timeout even on a busy link.
            snapshot_max_chunk_size: 1024 * 1024,
            // Bounds one append-entries body (and so our RPC size) to 100 commands.
            max_payload_entries: 100,
            ..Default::default()
        }
        .validate()
        .map_err(Box::new)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft settings: {0}")]
    Config(#[from] Box<openraft::ConfigError>),
    #[error(transparent)]
    Storage(#[from] store::OpenError),
    #[error("cannot start the raft transport thread: {0}")]
    Transport(#[from] std::io::Error),
    #[error(transparent)]
    Secret(#[from] crate::network::BadSecret),
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a write did not happen (or may not have). Only `Fatal` means this node's
/// Raft is gone; the others are "ask someone else / try again".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum WriteError {
    /// This node is a follower; send the write to the leader's admin listener.
    #[error("not the leader; the leader is node {leader_id} at {leader_addr}")]
    ForwardToLeader {
        leader_id: NodeId,
        leader_addr: String,
    },
    /// No leader is known right now (election in progress, or no quorum). Retry
    /// after a short delay; the admin API answers 503 + Retry-After.
    #[error("no raft leader is known; try again shortly")]
    NoLeader,
    /// No commit within `write_timeout`. The entry may still commit later, so a
    /// retry must be safe to apply twice (puts and deletes are).
    #[error("the write was not committed within {0:?}")]
    Timeout(Duration),
    /// Raft on this node has stopped (storage failure or shutdown).
    #[error("raft is not running: {0}")]
    Fatal(String),
    // Variants below were appended (bincode numbers them by position: peers
    // decode forwarded answers with it).
    /// A membership change that cannot be made as asked (e.g. removing the last
    /// voter, or a learner that cannot catch up).
    #[error("{0}")]
    Conflict(String),
    /// A membership change named a node that is not a member.
    #[error("{0}")]
    NotFound(String),
}

impl WriteError {
    /// Whether trying again (here or at the leader) may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            WriteError::Fatal(_) | WriteError::Conflict(_) | WriteError::NotFound(_)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("raft is not running: {0}")]
    Fatal(String),
    #[error("cannot initialise the cluster: {0}")]
    Rejected(String),
}

/// A leader that has heard from no quorum for this long (several heartbeats and
/// more than an election timeout) treats itself as cut off and refuses writes.
pub const QUORUM_LOST_AFTER_MS: u64 = 1_000;

/// Whether the node these metrics describe has heard from a quorum recently.
///
/// A leader: a quorum acknowledged it within [`QUORUM_LOST_AFTER_MS`] (a leader
/// cut off from its quorum still reports itself leader in openraft 0.9, so the
/// role alone says nothing). A follower or learner: it knows a leader other than
/// itself. openraft 0.9's `RaftMetrics` has no time-since-last-heartbeat for a
/// follower, so this is a proxy: a follower that stops hearing heartbeats starts
/// an election within `leader_lease + election_timeout` (~1.4 s with the defaults)
/// and from then on knows no leader until one wins with a quorum.
pub fn has_quorum(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> bool {
    match m.current_leader {
        Some(leader) if leader == m.id => m
            .millis_since_quorum_ack
            .is_some_and(|ms| ms <= QUORUM_LOST_AFTER_MS),
        Some(_) => m.vote.is_committed(),
        None => false,
    }
}

/// Proposes `command` on this node's Raft (it must be the leader) and waits for
/// it to be applied, at most `timeout`.
pub(crate) async fn write_local(
    raft: &Raft,
    timeout: Duration,
    command: Command,
) -> Result<(Response, u64), WriteError> {
    // A leader cut off from its quorum still believes it leads (openraft 0.9 has
    // no leader lease step-down). Proposing there would park the entry in its log:
    // the caller gets a timeout, and the write may still commit much later, when
    // the quorum returns. Refuse at once instead, like a node with no leader.
    {
        let m = raft.metrics().borrow().clone();
        let stale = m
            .millis_since_quorum_ack
            .is_some_and(|ms| ms > QUORUM_LOST_AFTER_MS);
        if m.current_leader == Some(m.id) && stale {
            return Err(WriteError::NoLeader);
        }
    }
    let outcome = tokio::time::timeout(timeout, raft.client_write(command)).await;
    match outcome {
        Err(_) => Err(WriteError::Timeout(timeout)),
        Ok(Ok(written)) => Ok((written.data, written.log_id.index)),
        Ok(Err(e)) => Err(write_error(e)),
    }
}

fn forward_to(f: ForwardToLeader<NodeId, BasicNode>) -> WriteError {
    match (f.leader_id, f.leader_node) {
        (Some(leader_id), Some(node)) => WriteError::ForwardToLeader {
            leader_id,
            leader_addr: node.addr,
        },
        _ => WriteError::NoLeader,
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward_to(f),
        // Only membership changes produce this (e.g. one already in progress).
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            WriteError::Conflict(e.to_string())
        }
        RaftError::Fatal(e) => WriteError::Fatal(e.to_string()),
    }
}

/// A change of the voter set, made on the leader (a follower forwards it over
/// `/raft/membership`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MembershipChange {
    /// Add `id` at `addr` (its admin listener) as a learner; once it has caught up
    /// (within [`LEARNER_CATCH_UP`]), make it a voter. A learner that has not
    /// caught up by then stays a learner: the same call again promotes it once it
    /// has.
    AddVoter { id: NodeId, addr: String },
    /// Remove `id` from the cluster, voter or learner.
    RemoveVoter { id: NodeId },
}

/// What a membership change left: committed at log index `version`, with these
/// voters and learners. `pending` names a node added as a learner that had not
/// caught up within the wait (the admin API answers 202).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipOutcome {
    pub version: u64,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub pending: Option<LearnerProgress>,
}

/// How far a learner has got: `matched_index` of the leader's `last_log_index`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LearnerProgress {
    pub id: NodeId,
    pub matched_index: u64,
    pub last_log_index: u64,
}

pub type MembershipResult = Result<MembershipOutcome, WriteError>;

/// How long adding a node waits for it to catch up as a learner before answering
/// that it is still one.
pub const LEARNER_CATCH_UP: Duration = Duration::from_secs(5);

/// Checks a peer address: `host:port`, a port from 1 to 65535, and a host that is
/// an IP address or a DNS name (letters, digits, `-`, `.`). Nothing is resolved.
pub fn check_peer_addr(addr: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("addr {addr:?}: {why} (expected host:port)"));
    if addr.len() > 253 + 6 {
        return bad("too long");
    }
    if addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.port() != 0)
    {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("no port");
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return bad("port must be 1 to 65535"),
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return bad("host must be an IP address or a DNS name");
    }
    Ok(())
}

fn outcome(raft: &Raft, version: u64, pending: Option<LearnerProgress>) -> MembershipOutcome {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    MembershipOutcome {
        version,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        pending,
    }
}

/// Waits up to `wait` for learner `id` to have replicated the leader's log;
/// returns its progress either way.
async fn catch_up(raft: &Raft, id: NodeId, wait: Duration) -> (bool, LearnerProgress) {
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let progress = {
            let m = metrics.borrow_and_update();
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map_or(0, |l| l.index);
            LearnerProgress {
                id,
                matched_index: matched,
                last_log_index: m.last_log_index.unwrap_or(0),
            }
        };
        if progress.matched_index >= progress.last_log_index {
            return (true, progress);
        }
        if tokio::time::timeout_at(deadline, metrics.changed())
            .await
            .is_err()
        {
            return (false, progress);
        }
    }
}

/// Applies `change` on this node, which must lead.
pub(crate) async fn change_membership_local(
    raft: &Raft,
    change: MembershipChange,
) -> MembershipResult {
    let (current, own_id) = {
        let m = raft.metrics().borrow().clone();
        (m.membership_config.membership().clone(), m.id)
    };
    if raft.metrics().borrow().current_leader != Some(own_id) {
        // Let openraft say where the leader is (ForwardToLeader) or that there is
        // none, with a no-op change of the current voters.
        let voters: BTreeSet<NodeId> = current.voter_ids().collect();
        raft.change_membership(voters, true)
            .await
            .map_err(write_error)?;
        return Err(WriteError::NoLeader);
    }
    let mut voters: BTreeSet<NodeId> = current.voter_ids().collect();
    match change {
        MembershipChange::AddVoter { id, addr } => {
            check_peer_addr(&addr).map_err(WriteError::Conflict)?;
            let known = current.get_node(&id).map(|n| n.addr.clone());
            if let Some(known) = &known {
                if *known != addr {
                    return Err(WriteError::Conflict(format!(
                        "node {id} is already a member at {known}; remove it first to move it"
                    )));
                }
            }
            if let Some((other, _)) = current.nodes().find(|(i, n)| **i != id && n.addr == addr) {
                return Err(WriteError::Conflict(format!(
                    "{addr} is already the address of node {other}"
                )));
            }
            if voters.contains(&id) {
                let version = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
                return Ok(outcome(raft, version, None));
            }
            if known.is_none() {
                raft.add_learner(id, BasicNode::new(&addr), false)
                    .await
                    .map_err(write_error)?;
                tracing::info!(id, %addr, "added node as a learner");
            }
            let (caught_up, progress) = catch_up(raft, id, LEARNER_CATCH_UP).await;
            if !caught_up {
                tracing::warn!(
                    id, %addr, matched = progress.matched_index, target = progress.last_log_index,
                    "learner has not caught up; it stays a learner until asked again"
                );
                let version = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
                return Ok(outcome(raft, version, Some(progress)));
            }
            voters.insert(id);
            tracing::info!(id, %addr, "promoting the learner to voter");
        }
        MembershipChange::RemoveVoter { id } => {
            if current.get_node(&id).is_none() {
                return Err(WriteError::NotFound(format!("node {id} is not a member")));
            }
            if !voters.contains(&id) {
                let changed = raft
                    .change_membership(
                        openraft::ChangeMembers::RemoveNodes([id].into_iter().collect()),
                        false,
                    )
                    .await
                    .map_err(write_error)?;
                tracing::info!(id, "learner removed");
                return Ok(outcome(raft, changed.log_id.index, None));
            }
            voters.remove(&id);
            if voters.is_empty() {
                return Err(WriteError::Conflict("cannot remove the last voter".into()));
            }
        }
    }
    let changed = raft
        .change_membership(voters.clone(), false)
        .await
        .map_err(write_error)?;
    tracing::info!(?voters, "membership changed");
    Ok(outcome(raft, changed.log_id.index, None))
}

/// Confirms with a quorum that this node still leads and returns the log index a
/// linearizable read must see applied (the read index).
pub(crate) async fn read_index_local(raft: &Raft) -> Result<u64, WriteError> {
    match raft.get_read_log_id().await {
        Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(forward_to(f)),
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
            Err(WriteError::NoLeader)
        }
        Err(RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
    }
}

/// One node's Raft: the handle, its published state and its RPC endpoints.
pub struct RaftNode {
    id: NodeId,
    raft: Raft,
    /// For forwarding writes to the leader (`/raft/write`), shared with openraft.
    transport: Transport,
    secret: awc::http::header::HeaderValue,
    state: watch::Receiver<Arc<Published>>,
    /// High-churn domain changes, until the node takes them ([`Self::take_deltas`]).
    deltas: std::sync::Mutex<Option<mpsc::UnboundedReceiver<DeltaBatch>>>,
    /// The replicated rate-limit ledger, for admin reads.
    ledger: crate::store::SharedLedger,
    /// The replicated webhook domain, for the admin API and the dispatcher.
    webhooks: crate::store::SharedWebhooks,
    rpc: web::Data<RaftRpc>,
    log: LogStore,
    write_timeout: Duration,
}

impl RaftNode {
    /// Opens the store under `data_dir`, starts the transport thread and Raft.
    /// `secret` authenticates Raft RPC both ways (empty: RPC refused, fine for a
    /// one-node cluster). Gateway specs are validated with
    /// [`cluster_config::Gateway::compile`].
    pub async fn start(
        node_id: NodeId,
        data_dir: &Path,
        secret: &str,
        settings: RaftSettings,
    ) -> Result<RaftNode, StartError> {
        Self::start_with_validator(node_id, data_dir, secret, settings, compile_validator()).await
    }

    /// [`RaftNode::start`] with a custom gateway validator (tests).
    pub async fn start_with_validator(
        node_id: NodeId,
        data_dir: &Path,
        secret: &str,
        settings: RaftSettings,
        validator: Validator,
    ) -> Result<RaftNode, StartError> {
        let config = Arc::new(settings.openraft_config()?);
        let (log, mut sm) = store::open(data_dir, settings.cache_bytes, validator)?;
        let state = sm.subscribe();
        let ledger = sm.ledger();
        let webhooks = sm.webhooks();
        let deltas = std::sync::Mutex::new(sm.take_deltas());
        let transport = Transport::start(settings.transport.clone())?;
        let network = HttpNetwork::new(transport.clone(), secret)?;
        let mut secret_header = awc::http::header::HeaderValue::from_str(secret)
            .map_err(|_| crate::network::BadSecret)?;
        secret_header.set_sensitive(true);
        let raft = Raft::new(node_id, config, network, log.clone(), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let rpc = web::Data::new(RaftRpc::new(raft.clone(), secret, settings.write_timeout));
        Ok(RaftNode {
            id: node_id,
            raft,
            transport,
            secret: secret_header,
            state,
            deltas,
            ledger,
            webhooks,
            rpc,
            log,
            write_timeout: settings.write_timeout,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The openraft handle: metrics, membership changes, `ensure_linearizable`.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The latest applied state, updated after every apply. Never blocks.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.state.clone()
    }

    /// The changes of high-churn domains (rate-limiter reports, webhook attempts),
    /// in log order, for the actors that own them. There is one stream: the first
    /// call gets it, later calls get `None`.
    pub fn take_deltas(&self) -> Option<mpsc::UnboundedReceiver<DeltaBatch>> {
        self.deltas.lock().ok().and_then(|mut d| d.take())
    }

    /// The replicated webhook domain as this node has applied it.
    pub fn webhooks(&self) -> &crate::store::SharedWebhooks {
        &self.webhooks
    }

    /// The replicated rate-limit ledger as this node has applied it (read it
    /// briefly: apply waits while it is read-locked).
    pub fn ledger(&self) -> &crate::store::SharedLedger {
        &self.ledger
    }

    /// Mounts the Raft RPC endpoints on the admin app:
    /// `App::new().configure(node.rpc_service())`.
    pub fn rpc_service(&self) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
        server::configure(self.rpc.clone())
    }

    /// Log size on disk (for `/admin/cluster` and metrics).
    pub fn log_stats(&self) -> std::io::Result<LogStats> {
        self.log.stats()
    }

    /// Initialises the cluster with `members` (node id -> admin `host:port`) unless
    /// this node already has a vote or log, i.e. safe to call on every start. Every
    /// node must pass the *same* map; a concurrent initialise elsewhere is fine.
    /// Returns whether this call initialised.
    pub async fn initialize_if_needed(
        &self,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<bool, InitError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| InitError::Fatal(e.to_string()))?
        {
            return Ok(false);
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => {
                tracing::info!(members = ?members, "raft cluster initialised");
                Ok(true)
            }
            // Another node got there first and we already heard from it.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(InitError::Rejected(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(InitError::Fatal(e.to_string())),
        }
    }

    /// Proposes `command` and waits for it to be applied here (as leader). Returns
    /// the state machine's answer and the entry's log index (the config version).
    pub async fn write(&self, command: Command) -> Result<(Response, u64), WriteError> {
        write_local(&self.raft, self.write_timeout, command).await
    }

    /// [`RaftNode::write`], forwarded to the leader (over `/raft/write`, with the
    /// cluster secret) when this node is a follower: an admin can write through
    /// any node and gets the leader's answer. This is the one way writes reach the
    /// leader, for admin changes and node-originated commands alike.
    pub async fn write_anywhere(&self, command: Command) -> Result<(Response, u64), WriteError> {
        match self.write(command.clone()).await {
            Err(WriteError::ForwardToLeader { leader_addr, .. }) => {
                self.forward(&leader_addr, server::WRITE, &command).await
            }
            other => other,
        }
    }

    /// Grows or shrinks the voter set, through any node (forwarded to the leader
    /// over `/raft/membership`).
    pub async fn change_membership(&self, change: MembershipChange) -> MembershipResult {
        match change_membership_local(&self.raft, change.clone()).await {
            Err(WriteError::ForwardToLeader { leader_addr, .. }) => {
                self.forward(&leader_addr, server::MEMBERSHIP, &change)
                    .await
            }
            other => other,
        }
    }

    /// Waits until this node has applied everything committed before the call,
    /// as confirmed by the leader with a quorum (a follower asks the leader for
    /// its read index over `/raft/read_index`). A read of the published state
    /// after this returns is linearizable. Returns the read index.
    pub async fn linearizable_barrier(&self) -> Result<u64, WriteError> {
        let index = match read_index_local(&self.raft).await {
            Err(WriteError::ForwardToLeader { leader_addr, .. }) => {
                self.forward(&leader_addr, server::READ_INDEX, &()).await?
            }
            other => other?,
        };
        let mut state = self.state.clone();
        let caught_up = async {
            while state.borrow_and_update().version < index {
                if state.changed().await.is_err() {
                    return Err(WriteError::Fatal("state machine stopped".into()));
                }
            }
            Ok(index)
        };
        tokio::time::timeout(self.write_timeout, caught_up)
            .await
            .unwrap_or(Err(WriteError::Timeout(self.write_timeout)))
    }

    /// Sends `request` to the leader's Raft RPC endpoint `path` and decodes its
    /// `Result<T, WriteError>` answer. A leader that moved or cannot be reached is
    /// `NoLeader` (the caller retries).
    async fn forward<Req: Serialize, T: DeserializeOwned>(
        &self,
        leader_addr: &str,
        path: &str,
        request: &Req,
    ) -> Result<T, WriteError> {
        // Mid-election a node may name itself as the leader it is not yet ready to
        // be: sending to ourselves would only come back the same way.
        if self.is_own_addr(leader_addr) {
            return Err(WriteError::NoLeader);
        }
        let body = codec::encode(request).map_err(|e| WriteError::Fatal(e.to_string()))?;
        let url = self.transport.url(leader_addr, path);
        let timeout = match path {
            server::MEMBERSHIP => LEARNER_CATCH_UP + self.write_timeout,
            _ => self.write_timeout + Duration::from_secs(1),
        };
        let answer = self
            .transport
            .post(url, self.secret.clone(), body, timeout)
            .await;
        match answer {
            Ok((200, bytes)) => {
                codec::decode::<Result<T, WriteError>>(&bytes).unwrap_or_else(|e| {
                    Err(WriteError::Fatal(format!("leader answer undecodable: {e}")))
                })
            }
            Ok((status, _)) => {
                tracing::warn!(status, %leader_addr, path, "leader refused a forwarded request");
                Err(WriteError::NoLeader)
            }
            Err(e) => {
                tracing::warn!(error = %e, path, "cannot forward to the leader");
                Err(WriteError::NoLeader)
            }
        }
    }

    fn is_own_addr(&self, addr: &str) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .get_node(&self.id)
            .is_some_and(|n| n.addr == addr)
    }

    /// Stops Raft (the transport thread follows once openraft drops its network).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown did not finish cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{RaftMetrics, Vote};

    fn metrics(leader: Option<NodeId>, quorum_ack: Option<u64>) -> RaftMetrics<NodeId, BasicNode> {
        let mut m = RaftMetrics::new_initial(1);
        m.current_leader = leader;
        m.vote = Vote::new_committed(3, leader.unwrap_or(1));
        m.millis_since_quorum_ack = quorum_ack;
        m
    }

    #[test]
    fn quorum_on_a_leader_is_a_recent_ack() {
        assert!(has_quorum(&metrics(Some(1), Some(0))));
        assert!(has_quorum(&metrics(Some(1), Some(QUORUM_LOST_AFTER_MS))));
        assert!(!has_quorum(&metrics(
            Some(1),
            Some(QUORUM_LOST_AFTER_MS + 1)
        )));
        assert!(!has_quorum(&metrics(Some(1), None)));
    }

    #[test]
    fn quorum_on_a_follower_is_a_known_leader() {
        assert!(has_quorum(&metrics(Some(2), None)));
        assert!(!has_quorum(&metrics(None, None)));
        let mut m = metrics(Some(2), None);
        m.vote = Vote::new(4, 2);
        assert!(!has_quorum(&m));
    }
}
