//! Node-local settings (`node`, `cluster`, `admin`, `log`): never replicated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Unique, > 0 (default 1).
    pub id: u64,
    /// Data plane (default `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// Admin API and Raft RPC (default `127.0.0.1:9080`).
    pub admin_listen: SocketAddr,
    /// sled files (default `./data/node-{id}`).
    pub data_dir: PathBuf,
    /// Data-plane worker threads (default: available parallelism).
    pub workers: usize,
    /// Drain limit on SIGTERM (default 30 s).
    pub shutdown_timeout: Duration,
    pub tls: Option<TlsFiles>,
    /// Upstream connections per worker thread (default 512): beyond it requests queue.
    pub upstream_pool_limit: usize,
    /// `cluster.peers`: node id -> admin address. Empty: one-node cluster.
    pub peers: BTreeMap<u64, String>,
    /// `cluster.secret`; required when `peers` has more than one node.
    pub cluster_secret: Option<String>,
    /// `admin.token`: the bootstrap admin token.
    pub admin_token: Option<String>,
    pub log_format: LogFormat,
    /// `log.level`, an `EnvFilter` directive (default `info`).
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}
