use super::*;
use crate::command::{ApiClient, Command, Response, SecretHash};
use crate::state::tests::{route, service, test_validator};
use crate::{NodeId, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    StorageError, Vote,
};
use tempfile::TempDir;

/// The tempdir is the suite's "guard": it lives exactly as long as each store.
struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm) = open(dir.path(), DEFAULT_CACHE_BYTES, test_validator())
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledStoreBuilder) {
        panic!("storage suite failed: {e}");
    }
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn normal(term: u64, index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(command),
    }
}

fn put_service(name: &str) -> Command {
    Command::PutService {
        name: name.into(),
        spec: service("http://127.0.0.1:9001"),
    }
}

#[tokio::test]
async fn log_vote_and_snapshot_survive_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let entries: Vec<Entry<TypeConfig>> = (1..=20)
        .map(|i| normal(1, i, put_service(&format!("s{i}"))))
        .collect();
    {
        let (mut log, mut sm) =
            open(dir.path(), DEFAULT_CACHE_BYTES, test_validator()).expect("open");
        log.blocking_append(entries.clone()).await.expect("append");
        log.save_vote(&Vote::new_committed(1, 1))
            .await
            .expect("vote");
        log.save_committed(Some(log_id(1, 20)))
            .await
            .expect("committed");
        sm.apply(entries[..10].to_vec()).await.expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        // Applied past the snapshot but never snapshotted again: on reopen these
        // come back through re-applying the committed log, not from the state
        // machine.
        sm.apply(entries[10..].to_vec()).await.expect("apply");
    }
    let (mut log, mut sm) = reopen(dir.path());
    assert_eq!(
        log.read_vote().await.expect("vote"),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 20))
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_id(1, 20)));
    assert_eq!(
        log.try_get_log_entries(1..=20).await.expect("entries"),
        entries
    );
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(
        applied,
        Some(log_id(1, 10)),
        "state machine restarts from its snapshot"
    );
    let published = sm.subscribe().borrow().clone();
    assert_eq!(published.version, 10);
    assert_eq!(published.state.gateway.services.len(), 10);
    let snap = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("some");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 10)));
}

#[tokio::test]
async fn purge_and_truncate_are_durable() {
    let dir = TempDir::new().expect("tempdir");
    {
        let (mut log, _sm) = open(dir.path(), DEFAULT_CACHE_BYTES, test_validator()).expect("open");
        let entries: Vec<_> = (1..=100).map(|i| normal(1, i, put_service("s"))).collect();
        log.blocking_append(entries).await.expect("append");
        log.purge(log_id(1, 60)).await.expect("purge");
        log.truncate(log_id(1, 91)).await.expect("truncate");
    }
    let (mut log, _sm) = reopen(dir.path());
    let stats = log.stats().expect("stats");
    assert_eq!(stats.entries, 30);
    assert_eq!((stats.first_index, stats.last_index), (Some(61), Some(90)));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 60)));
    assert_eq!(state.last_log_id, Some(log_id(1, 90)));
    assert!(log
        .try_get_log_entries(0..61)
        .await
        .expect("read")
        .is_empty());
}

#[tokio::test]
async fn apply_publishes_and_rejects_deterministically() {
    let dir = TempDir::new().expect("tempdir");
    let (_log, mut sm) = open(dir.path(), DEFAULT_CACHE_BYTES, test_validator()).expect("open");
    let mut rx = sm.subscribe();
    assert_eq!(rx.borrow_and_update().version, 0);
    let client = ApiClient {
        id: "c1".into(),
        name: "one".into(),
        roles: vec![],
        scopes: vec![],
        secret_hash: SecretHash::of(b"plaintext-secret"),
    };
    let responses = sm
        .apply(vec![
            normal(1, 1, put_service("users")),
            normal(
                1,
                2,
                Command::PutRoute {
                    route: route("/users", "users"),
                },
            ),
            normal(
                1,
                3,
                Command::PutRoute {
                    route: route("/x", "missing"),
                },
            ),
            normal(1, 4, Command::PutClient { client }),
        ])
        .await
        .expect("apply");
    assert_eq!(responses[0], Response::Applied);
    assert_eq!(responses[1], Response::Applied);
    assert!(matches!(responses[2], Response::Rejected { .. }));
    assert_eq!(responses[3], Response::Applied);
    assert!(rx.has_changed().expect("open channel"));
    let published = rx.borrow_and_update().clone();
    assert_eq!(published.version, 4);
    assert_eq!(
        published.state.gateway.routes,
        vec![route("/users", "users")]
    );
    // The stored form carries the hash, never the secret.
    let encoded = crate::codec::encode(&published.state).expect("encode");
    let needle = b"plaintext-secret";
    assert!(!encoded.windows(needle.len()).any(|w| w == needle));
    assert!(published.state.credentials.clients["c1"]
        .secret_hash
        .matches(needle));
}

#[tokio::test]
async fn corrupt_snapshot_is_refused_without_change() {
    let dir = TempDir::new().expect("tempdir");
    let (_log, mut sm) = open(dir.path(), DEFAULT_CACHE_BYTES, test_validator()).expect("open");
    sm.apply(vec![normal(1, 1, put_service("users"))])
        .await
        .expect("apply");
    let mut snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(2, 50));
    meta.snapshot_id = "2-50-x".into();
    snap.snapshot.get_mut().truncate(3);
    assert!(sm.install_snapshot(&meta, snap.snapshot).await.is_err());
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1)));
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("some");
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 1)));
}

/// A leader on an earlier build sends a snapshot without the signing domain and
/// the rate-limit ledger: it installs, and it loads again after a restart.
#[tokio::test]
async fn snapshot_of_the_previous_layout_installs_and_reloads() {
    let dir = TempDir::new().expect("tempdir");
    let (log, mut sm) = open(dir.path(), DEFAULT_CACHE_BYTES, test_validator()).expect("open");
    sm.apply(vec![normal(1, 1, put_service("users"))])
        .await
        .expect("apply");
    let mut snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    // Today's encoding is the first one plus the empty signing key list (one
    // byte), the empty ledger (no keys, clock 0: two bytes) and the empty
    // webhook domain (five empty collections and a zero sequence: six bytes).
    let data = snap.snapshot.get_mut();
    for _ in 0..9 {
        assert_eq!(data.pop(), Some(0));
    }
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(2, 50));
    meta.snapshot_id = "2-50-old".into();
    sm.install_snapshot(&meta, snap.snapshot)
        .await
        .expect("old layout installs");
    assert!(sm
        .subscribe()
        .borrow()
        .state
        .gateway
        .services
        .contains_key("users"));
    drop((log, sm));
    let (_log, mut sm) = reopen(dir.path());
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(2, 50)));
    let state = sm.subscribe().borrow().state.clone();
    assert!(state.gateway.services.contains_key("users"));
    assert!(state.signing.keys.is_empty());
}

/// The rate-limit ledger is in the snapshot: a node restarting from one keeps
/// every grant (so a restart never hands out a fresh window).
#[tokio::test]
async fn the_ledger_survives_a_snapshot_and_a_restart() {
    use crate::limits::{ledger_key, Algo, Item, Report, Terms};
    let dir = TempDir::new().expect("tempdir");
    let (log, mut sm) = open(dir.path(), DEFAULT_CACHE_BYTES, test_validator()).expect("open");
    let terms = Terms {
        limit: 100,
        window_ms: 60_000,
        algo: Algo::SlidingWindow,
        members: 0,
    };
    let now = 1_700_000_000_000;
    let report = Report {
        node: 1,
        incarnation: 7,
        now_ms: now,
        items: vec![Item {
            key: ledger_key("search", "user:a"),
            terms,
            window: terms.window_of(now),
            hits: 3,
            want: 40,
        }],
    };
    sm.apply(vec![normal(1, 1, Command::ReportLimits { report })])
        .await
        .expect("apply");
    let before = sm.ledger().read().expect("lock").clone();
    assert_eq!(before.keys.len(), 1);
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    drop((log, sm));
    let (_log, sm) = reopen(dir.path());
    let after = sm.ledger().read().expect("lock").clone();
    assert_eq!(after.keys, before.keys);
    assert_eq!(after.clock_ms, now);
}

/// Opens a store that was just dropped. sled's background flusher can hold the
/// directory lock for a moment after the drop on a busy machine, so retry briefly
/// (a restarted node process never sees this: the OS drops the lock with it).
fn reopen(path: &std::path::Path) -> (LogStore, StateMachineStore) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open(path, DEFAULT_CACHE_BYTES, test_validator()) {
            Ok(stores) => return stores,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}
