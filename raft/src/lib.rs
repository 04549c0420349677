//! `sluice-raft` owns the replicated control plane: the openraft type
//! configuration ([`TypeConfig`]), the commands the cluster agrees on
//! ([`command`]) and the state they build, with its apply code split by domain
//! ([`state`]), the sled-backed log and state machine implementing
//! openraft's v2 storage traits ([`store`]), the one bincode codec used on disk and
//! on the wire ([`codec`]), the Raft RPC client ([`network`]) and server
//! ([`server`]), and a small facade the node binary drives ([`node::RaftNode`]).
//!
//! It must never be on the data plane's request path: the data plane reads the
//! snapshots this crate *publishes* after each apply (a `tokio::sync::watch` of
//! [`state::Published`], turned into `ArcSwap`s by the node) and never waits on
//! Raft, disk or a peer.
//!
//! Start reading at [`node::RaftNode`] (how the pieces are wired and the openraft
//! timing chosen), then [`command`] and [`state`] (what is replicated), then [`store`].
#![forbid(unsafe_code)]

pub mod codec;
pub mod command;
pub mod limits;
pub mod network;
pub mod node;
pub mod server;
pub mod state;
pub mod store;
pub mod webhooks;

pub use command::{Command, Response};
pub use node::{
    LearnerProgress, MembershipChange, MembershipOutcome, MembershipResult, RaftNode, RaftSettings,
    WriteError,
};
pub use state::{ClusterState, Delta, DeltaBatch, Published};

/// Raft node ids are the `node.id` of the node settings (unique, > 0).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Sluice's openraft types. A node is addressed by its admin listener
    /// (`BasicNode::addr` = `host:port`), where the Raft RPC endpoints live.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle the node crate holds.
pub type Raft = openraft::Raft<TypeConfig>;
