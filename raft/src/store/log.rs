//! The Raft log and vote on sled.
//!
//! Tree `log`: key = entry index as 8 big-endian bytes (so sled's byte order is log
//! order), value = the codec-encoded `Entry`. Tree `meta`: the vote, the last
//! purged log id and the committed hint, each codec-encoded under a fixed key.

use super::fault::Faults;
use crate::codec;
use crate::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

const VOTE: &[u8] = b"vote";
const LAST_PURGED: &[u8] = b"last_purged";
const COMMITTED: &[u8] = b"committed";

/// Cheap to clone: sled trees are reference-counted handles to the same database,
/// which is how openraft's separate log reader shares the store.
#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    db: sled::Db,
    /// Empty in release builds; `skip-flush` acknowledges appends unflushed.
    faults: Faults,
}

/// What is on disk, for `/admin/cluster`, metrics and the bounded-disk test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    /// Entries currently kept (after purges).
    pub entries: usize,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub last_purged_index: Option<u64>,
    /// sled's own estimate of the database's size on disk, in bytes.
    pub disk_bytes: u64,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    pub(super) fn new(db: &sled::Db, faults: Faults) -> Result<LogStore, sled::Error> {
        Ok(LogStore {
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
            db: db.clone(),
            faults,
        })
    }

    pub fn stats(&self) -> io::Result<LogStats> {
        let first_index = match self.log.first().map_err(io_err)? {
            Some((k, _)) => index_of(&k),
            None => None,
        };
        let last_index = match self.log.last().map_err(io_err)? {
            Some((k, _)) => index_of(&k),
            None => None,
        };
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED).map_err(io_err)?;
        Ok(LogStats {
            entries: self.log.len(),
            first_index,
            last_index,
            last_purged_index: last_purged.map(|l| l.index),
            disk_bytes: self.db.size_on_disk().map_err(io_err)?,
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, name: &[u8]) -> Result<Option<T>, MetaError> {
        match self.meta.get(name)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, name: &[u8], value: &T) -> Result<(), MetaError> {
        self.meta.insert(name, codec::encode(value)?)?;
        Ok(())
    }

    /// fsyncs everything written so far (sled has one page cache for all trees).
    async fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush_async().await.map(|_| ())
    }

    /// Removes every entry with index in `range`, as one atomic batch.
    fn remove_range(&self, range: (Bound<[u8; 8]>, Bound<[u8; 8]>)) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(range).keys() {
            batch.remove(item?);
        }
        self.log.apply_batch(batch)
    }
}

/// Errors reading or writing one `meta` value.
#[derive(Debug, thiserror::Error)]
enum MetaError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) if e < start => return Ok(Vec::new()),
            Bound::Excluded(&e) if e <= start => return Ok(Vec::new()),
            Bound::Included(&e) => Bound::Included(key(e)),
            Bound::Excluded(&e) => Bound::Excluded(key(e)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range((Bound::Included(key(start)), end)) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry: Entry<TypeConfig> =
                codec::decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self
            .get_meta(LAST_PURGED)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last = match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, bytes)) => {
                let entry: Entry<TypeConfig> =
                    codec::decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        // A vote that is not on disk can be cast twice after a crash: flush first.
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .get_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e))?)
    }

    /// Saved without its own fsync: `committed` is a hint that lets a restarted
    /// node re-apply its log tail at once (and serve its latest config without a
    /// quorum). Losing the last few hundred ms of it in a crash only means waiting
    /// for the leader to say it again; it can never exceed the flushed log.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.put_meta(COMMITTED, &committed)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .get_meta(COMMITTED)
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            // Broken on purpose (debug build, SLUICE_FAULT=fail-append:N): the
            // disk "fails" this write.
            if self.faults.fail_append(entry.log_id.index) {
                const WHAT: &str = "injected write failure (SLUICE_FAULT=fail-append)";
                callback.log_io_completed(Err(io::Error::other(WHAT)));
                return Err(StorageIOError::write_logs(&io::Error::other(WHAT)).into());
            }
            let bytes = codec::encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        if let Err(e) = self.log.apply_batch(batch) {
            callback.log_io_completed(Err(io_err(e.clone())));
            return Err(StorageIOError::write_logs(&e).into());
        }
        // Only a flushed append may be acknowledged: openraft counts this node
        // towards a commit quorum as soon as the callback fires. (Unless the store
        // is broken on purpose: a debug build with SLUICE_FAULT=skip-flush.)
        if self.faults.skip_flush() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io_err(e.clone())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(from = log_id.index, "truncating raft log");
        self.remove_range((Bound::Included(key(log_id.index)), Bound::Unbounded))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Conflicting entries resurrected by a crash would be re-sent to
        // openraft as ours; make the removal durable.
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(upto = log_id.index, "purging raft log");
        // Record the purge point before deleting, so the store never shows a gap
        // that `last_purged` does not explain.
        self.put_meta(LAST_PURGED, &log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.remove_range((Bound::Unbounded, Bound::Included(key(log_id.index))))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
