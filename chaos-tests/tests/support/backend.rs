//! The seam between a [`Cluster`](super::Cluster) and whatever runs its nodes.
//!
//! A backend starts, kills, pauses and partitions nodes and says where they are;
//! everything else (the admin API, Raft RPC, the data plane, waiting for state) is
//! HTTP in `Cluster`, the same for every backend. [`LocalProcesses`] runs nodes
//! as processes on loopback; a Docker backend (containers on a private network)
//! is a second implementation of this trait, not a second harness.
//!
//! [`LocalProcesses`]: super::local::LocalProcesses

use std::fmt;

/// Where a node is reached.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// Base URL of the data plane (`node.listen`), as the test reaches it.
    pub data: String,
    /// Base URL of the admin API and Raft RPC (`node.admin_listen`), as the test
    /// reaches it.
    pub admin: String,
    /// `host:port` of the admin listener as the *other nodes* reach it: what
    /// `cluster.peers` and `POST /admin/cluster/nodes {addr}` name.
    pub peer: String,
}

/// Why a backend could not do what it was asked.
#[derive(Debug)]
pub enum BackendError {
    /// This backend cannot do that at all; the test should be skipped or run on
    /// another backend.
    Unsupported {
        backend: &'static str,
        op: &'static str,
        why: &'static str,
    },
    /// It tried and failed.
    Failed(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unsupported { backend, op, why } => {
                write!(f, "{backend} cannot {op}: {why}")
            }
            BackendError::Failed(e) => f.write_str(e),
        }
    }
}

/// What a cluster test needs from the thing that runs its nodes. Node ids and
/// their addresses are fixed when the backend is configured; a node keeps them
/// (and its data) across kill and start.
pub trait Backend {
    /// For messages: "local processes", "docker".
    fn name(&self) -> &'static str;

    /// Every configured node id, started or not.
    fn ids(&self) -> Vec<u64>;

    fn addresses(&self, id: u64) -> Addresses;

    /// The echo upstream's base URL as the nodes reach it (what services name).
    fn upstream_url(&self) -> String;

    /// Starts node `id` on its config and data; returns once both of its
    /// listeners accept connections.
    fn start(&mut self, id: u64) -> Result<(), BackendError>;

    /// kill -9: no drain, no flush. Returns once the node is gone and its ports
    /// and data dir are free for a restart.
    fn kill(&mut self, id: u64) -> Result<(), BackendError>;

    /// [`Backend::kill`] of every node in `ids`, as close to simultaneously as the
    /// backend can (one after the other by default).
    fn kill_many(&mut self, ids: &[u64]) -> Result<(), BackendError> {
        for id in ids {
            self.kill(*id)?;
        }
        Ok(())
    }

    /// Freezes node `id` (SIGSTOP, `docker pause`): it keeps its sockets, memory
    /// and disk but answers nothing, to peers and clients alike, until resumed.
    fn pause(&mut self, id: u64) -> Result<(), BackendError>;

    /// Thaws a paused node (SIGCONT, `docker unpause`).
    fn resume(&mut self, id: u64) -> Result<(), BackendError>;

    /// Splits the network: afterwards a node reaches only the nodes in its own
    /// group (the test still reaches every node). Nodes in no group are cut off
    /// from all.
    fn partition(&mut self, groups: &[&[u64]]) -> Result<(), BackendError>;

    /// Undoes every partition.
    fn heal(&mut self) -> Result<(), BackendError>;

    /// Started and not killed since (a paused node is running).
    fn is_running(&self, id: u64) -> bool;

    /// Node `id`'s whole log, across restarts.
    fn log(&self, id: u64) -> String;

    /// State and log tail of every node and of the upstream, plus where the whole
    /// logs are: what a failed assertion prints.
    fn logs(&self) -> String;
}
