//! `sluice-raft` will own the replicated control plane: the openraft type
//! configuration, the sled-backed log and state machine (openraft's v2 storage
//! traits), the bincode codec and the Raft RPC client and server.
//!
//! It must never be on the data plane's request path: the data plane reads the
//! `ArcSwap` snapshots this crate publishes after each apply, and never waits on it.
#![forbid(unsafe_code)]
