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
use crate::command::{compile_validator, Command, Published, Response, Validator};
use crate::network::{HttpNetwork, Transport, TransportSettings};
use crate::server::{self, RaftRpc};
use crate::store::{self, LogStats, LogStore};
use crate::{NodeId, Raft};
use actix_web::web;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
}

impl WriteError {
    /// Whether trying again (here or at the leader) may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, WriteError::Fatal(_))
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
const QUORUM_LOST_AFTER_MS: u64 = 1_000;

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
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            match (f.leader_id, f.leader_node) {
                (Some(leader_id), Some(node)) => Err(WriteError::ForwardToLeader {
                    leader_id,
                    leader_addr: node.addr,
                }),
                _ => Err(WriteError::NoLeader),
            }
        }
        // Only membership changes produce this; a plain write cannot.
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(WriteError::Fatal(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(e))) => Err(WriteError::Fatal(e.to_string())),
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
        let (log, sm) = store::open(data_dir, settings.cache_bytes, validator)?;
        let state = sm.subscribe();
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
    /// any node and gets the leader's answer.
    pub async fn write_anywhere(&self, command: Command) -> Result<(Response, u64), WriteError> {
        let leader_addr = match self.write(command.clone()).await {
            Err(WriteError::ForwardToLeader { leader_addr, .. }) => leader_addr,
            other => return other,
        };
        let body = codec::encode(&command).map_err(|e| WriteError::Fatal(e.to_string()))?;
        let url = format!("http://{leader_addr}/raft/write");
        let answer = self
            .transport
            .post(
                url,
                self.secret.clone(),
                body,
                self.write_timeout + Duration::from_secs(1),
            )
            .await;
        match answer {
            Ok((200, bytes)) => codec::decode::<Result<(Response, u64), WriteError>>(&bytes)
                .unwrap_or_else(|e| {
                    Err(WriteError::Fatal(format!("leader answer undecodable: {e}")))
                }),
            // The leader moved or is unreachable: the caller retries later.
            Ok((status, _)) => {
                tracing::warn!(status, %leader_addr, "leader refused a forwarded write");
                Err(WriteError::NoLeader)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot forward a write to the leader");
                Err(WriteError::NoLeader)
            }
        }
    }

    /// Stops Raft (the transport thread follows once openraft drops its network).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown did not finish cleanly");
        }
    }
}
