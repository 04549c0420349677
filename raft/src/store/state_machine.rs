//! The state machine: [`ClusterState`] in memory, its snapshots on sled.
//!
//! Tree `sm` holds exactly one value, the latest snapshot (meta + encoded state),
//! written and fsynced before openraft is told it exists (openraft purges the log
//! behind a snapshot, so an unflushed snapshot would lose data). On open the state
//! is restored from it; openraft then re-applies the committed log tail.

use super::fault::Faults;
use crate::codec;
use crate::command::Response;
use crate::limits::Ledger;
use crate::state::{self, ApplyCtx, ClusterState, Delta, DeltaBatch, Published, Validator};
use crate::webhooks::Webhooks;
use crate::{NodeId, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};

const SNAPSHOT: &[u8] = b"snapshot";

/// The snapshot as stored: openraft's metadata plus the encoded [`ClusterState`]
/// (the same bytes that are streamed to a lagging follower).
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// What a snapshot captures. Cloned for the snapshot builder so building never
/// blocks applying.
#[derive(Clone, Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: ClusterState,
}

/// The rate-limit ledger, shared with readers (`GET /admin/rate-limits/...`).
/// Only apply writes it; readers hold the lock for a lookup.
pub type SharedLedger = Arc<RwLock<Ledger>>;

/// The webhook domain, shared with the admin API and the dispatcher. Only
/// apply writes it.
pub type SharedWebhooks = Arc<RwLock<Webhooks>>;

pub struct StateMachineStore {
    tree: sled::Tree,
    db: sled::Db,
    applied: Applied,
    /// Replicated like `applied.state`, but never published whole: apply hands
    /// its changes to the node's limiter as deltas.
    ledger: SharedLedger,
    /// Replicated, never published whole: apply tells the dispatcher it changed.
    webhooks: SharedWebhooks,
    validator: Validator,
    /// Every apply publishes the low-churn state here; the node rebuilds its
    /// data plane from it.
    published: Arc<watch::Sender<Arc<Published>>>,
    /// Changes of high-churn domains, in log order, for the actors that own them
    /// (unbounded: applies are bounded by what Raft commits, and losing one would
    /// desynchronise the owner).
    deltas: mpsc::UnboundedSender<DeltaBatch>,
    /// The receiving end, until the node takes it ([`Self::take_deltas`]).
    deltas_rx: Option<mpsc::UnboundedReceiver<DeltaBatch>>,
    /// Makes snapshot ids unique when two snapshots share a last log id.
    snapshot_seq: u64,
    /// Empty in release builds; `drop-apply` skips some commands.
    faults: Faults,
}

#[derive(Debug, thiserror::Error)]
pub enum SmOpenError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("stored snapshot: {0}")]
    Codec(#[from] codec::CodecError),
}

impl StateMachineStore {
    pub(super) fn new(
        db: &sled::Db,
        validator: Validator,
        faults: Faults,
    ) -> Result<StateMachineStore, SmOpenError> {
        let tree = db.open_tree("sm")?;
        let (applied, ledger, webhooks) = match tree.get(SNAPSHOT)? {
            Some(bytes) => {
                let stored: StoredSnapshot = codec::decode(&bytes)?;
                let (state, ledger, webhooks) = state::decode_snapshot(&stored.data)?;
                let applied = Applied {
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership,
                    state,
                };
                (applied, ledger, webhooks)
            }
            None => (Applied::default(), Ledger::default(), Webhooks::default()),
        };
        let (tx, _) = watch::channel(Arc::new(publish_of(&applied)));
        let (deltas, deltas_rx) = mpsc::unbounded_channel();
        Ok(StateMachineStore {
            tree,
            db: db.clone(),
            applied,
            ledger: Arc::new(RwLock::new(ledger)),
            webhooks: Arc::new(RwLock::new(webhooks)),
            validator,
            published: Arc::new(tx),
            deltas,
            deltas_rx: Some(deltas_rx),
            snapshot_seq: 0,
            faults,
        })
    }

    /// A receiver that always holds the latest applied state. Take it before the
    /// store is handed to `Raft::new`; receivers stay valid afterwards.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.published.subscribe()
    }

    /// The rate-limit ledger, for reads.
    pub fn ledger(&self) -> SharedLedger {
        self.ledger.clone()
    }

    /// The webhook domain, for reads.
    pub fn webhooks(&self) -> SharedWebhooks {
        self.webhooks.clone()
    }

    /// The stream of [`DeltaBatch`]es, once: take it before the store is handed to
    /// `Raft::new`.
    pub fn take_deltas(&mut self) -> Option<mpsc::UnboundedReceiver<DeltaBatch>> {
        self.deltas_rx.take()
    }

    /// Publishes the state (a few `Arc` copies) and hands `deltas` to their owners.
    fn publish(&self, deltas: Vec<Delta>) {
        // `send_replace` stores the value even when nobody is subscribed yet.
        let published = Arc::new(publish_of(&self.applied));
        let version = published.version;
        self.published.send_replace(published);
        if !deltas.is_empty() {
            // Nobody listening (the receiver was dropped) is fine.
            let _ = self.deltas.send(DeltaBatch { version, deltas });
        }
    }

    async fn persist(&self, stored: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        persist_snapshot(&self.tree, &self.db, stored).await
    }
}

/// Writes the snapshot and fsyncs it; only then may openraft rely on it.
async fn persist_snapshot(
    tree: &sled::Tree,
    db: &sled::Db,
    stored: &StoredSnapshot,
) -> Result<(), StorageError<NodeId>> {
    let sig = Some(stored.meta.signature());
    let bytes =
        codec::encode(stored).map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
    tree.insert(SNAPSHOT, bytes)
        .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
    db.flush_async()
        .await
        .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
    Ok(())
}

/// Voters and learners: every member may serve traffic, so each has a rate-limit
/// floor reserved.
fn members_of(m: &StoredMembership<NodeId, BasicNode>) -> BTreeSet<NodeId> {
    m.membership().nodes().map(|(id, _)| *id).collect()
}

fn publish_of(applied: &Applied) -> Published {
    Published {
        state: applied.state.clone(),
        version: applied.last_applied.map(|l| l.index).unwrap_or(0),
    }
}

/// Builds a snapshot from a copy of the state taken when openraft asked for it.
pub struct SnapshotBuilder {
    applied: Applied,
    /// The ledger, encoded when the builder was made (in the state machine's
    /// task, so it matches `applied`): copying a million keys to encode them
    /// later would double the ledger's memory for the duration.
    ledger: Result<Vec<u8>, codec::CodecError>,
    /// The webhook domain, encoded with the ledger for the same reason.
    webhooks: Result<Vec<u8>, codec::CodecError>,
    snapshot_id: String,
    tree: sled::Tree,
    db: sled::Db,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = state::encode_snapshot_parts(&self.applied.state, &self.ledger, &self.webhooks)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let stored = StoredSnapshot { meta, data };
        persist_snapshot(&self.tree, &self.db, &stored).await?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, "raft snapshot built");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut ledger = self.ledger.write().unwrap_or_else(|p| p.into_inner());
        let mut webhooks = self.webhooks.write().unwrap_or_else(|p| p.into_inner());
        let mut ctx = ApplyCtx::new(&self.validator);
        ctx.ledger = Some(&mut ledger);
        ctx.webhooks = Some(&mut webhooks);
        ctx.members = members_of(&self.applied.membership);
        for entry in entries {
            self.applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Applied,
                // Broken on purpose (debug build, SLUICE_FAULT=drop-apply): the
                // command is skipped and reported applied.
                EntryPayload::Normal(_) if self.faults.drop_apply(entry.log_id.index) => {
                    Response::Applied
                }
                EntryPayload::Normal(command) => {
                    let response = self.applied.state.apply(&command, &mut ctx);
                    if let Response::Rejected { problems } = &response {
                        tracing::info!(
                            index = entry.log_id.index,
                            ?problems,
                            "command rejected at apply"
                        );
                    }
                    response
                }
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    ctx.members = members_of(&self.applied.membership);
                    Response::Applied
                }
            };
            responses.push(response);
        }
        // Once per batch: subscribers want the latest state, not every step.
        let deltas = ctx.deltas;
        drop(ledger);
        drop(webhooks);
        self.publish(deltas);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let snapshot_id = match self.applied.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("0-0-{}", self.snapshot_seq),
        };
        let ledger = codec::encode(&*self.ledger.read().unwrap_or_else(|p| p.into_inner()));
        let webhooks = codec::encode(&*self.webhooks.read().unwrap_or_else(|p| p.into_inner()));
        SnapshotBuilder {
            applied: self.applied.clone(),
            ledger,
            webhooks,
            snapshot_id,
            tree: self.tree.clone(),
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        // Decode before touching anything: a bad snapshot must leave us as we were.
        let (state, ledger, webhooks) = state::decode_snapshot(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        self.applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state,
        };
        *self.ledger.write().unwrap_or_else(|p| p.into_inner()) = ledger;
        *self.webhooks.write().unwrap_or_else(|p| p.into_inner()) = webhooks;
        tracing::info!(snapshot = %meta.snapshot_id, "raft snapshot installed");
        self.publish(vec![Delta::StateReplaced]);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let bytes = self
            .tree
            .get(SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let stored: StoredSnapshot =
            codec::decode(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
