//! Durable Raft storage on sled: the log and vote ([`LogStore`], openraft's
//! `RaftLogStorage`) and the state machine with its snapshots
//! ([`StateMachineStore`], `RaftStateMachine`). Both live in one sled database
//! under `<data_dir>/raft`, in separate trees.
//!
//! Durability rule (openraft's, and the reason this module exists): nothing is
//! reported to openraft as stored until sled has fsynced it. Log appends call the
//! IO callback only after `flush_async`; vote, truncate, purge and snapshots flush
//! before returning. The state machine itself lives in memory and is rebuilt on
//! start from the last snapshot plus the committed log tail, which openraft
//! re-applies.

mod fault;
mod log;
mod state_machine;

pub use log::{LogStats, LogStore};
pub use state_machine::{SharedLedger, SharedWebhooks, StateMachineStore};

use crate::state::Validator;
use std::path::Path;

/// sled's default page cache is 1 GiB, sized for a database server. The control
/// plane's working set is a few MB of config and the recent log; 16 MiB is plenty.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open raft storage at {path}: {source}")]
    Sled {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("raft storage at {path} is unreadable: {message}")]
    Corrupt { path: String, message: String },
}

/// Opens (or creates) the store under `data_dir`. `validator` decides which gateway
/// specs the state machine accepts (see [`crate::state::compile_validator`]).
pub fn open(
    data_dir: &Path,
    cache_bytes: u64,
    validator: Validator,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    let path = data_dir.join("raft");
    let shown = path.display().to_string();
    let sled_err = |source| OpenError::Sled {
        path: shown.clone(),
        source,
    };
    // Debug builds may be broken on purpose (SLUICE_FAULT, see fault.rs).
    let faults = fault::Faults::from_env();
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(cache_bytes)
        // Durability comes from explicit flushes; the background flush only bounds
        // how much of the (non-critical) `committed` hint a crash can lose.
        .flush_every_ms((!faults.skip_flush()).then_some(500))
        .open()
        .map_err(sled_err)?;
    let log = LogStore::new(&db, faults).map_err(sled_err)?;
    let sm = StateMachineStore::new(&db, validator, faults).map_err(|e| OpenError::Corrupt {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests;
