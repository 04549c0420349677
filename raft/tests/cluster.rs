//! Whole-stack tests: real sled stores in temp dirs, real actix servers on
//! loopback port 0, the real HTTP transport. They wait for state (metrics, the
//! published state), never for fixed sleeps.

use actix_web::{App, HttpServer};
use cluster_config::schema::ServiceSpec;
use sluice_raft::command::{AdminToken, SecretHash};
use sluice_raft::network::SECRET_HEADER;
use sluice_raft::{Command, RaftNode, RaftSettings, Response, WriteError};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const SECRET: &str = "test-cluster-secret";

fn put_service(name: &str) -> Command {
    Command::PutService {
        name: name.into(),
        spec: ServiceSpec {
            upstreams: vec!["http://127.0.0.1:9001".into()],
            ..Default::default()
        },
    }
}

async fn start(id: u64, dir: &Path, settings: RaftSettings) -> RaftNode {
    // sled holds a file lock until every handle of a previous run in this process
    // is dropped (openraft releases its storage shortly after shutdown).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The real gateway compiler validates every spec these tests write.
        match RaftNode::start(id, dir, SECRET, settings.clone()).await {
            Ok(node) => return node,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying start of node {id}: {e}");
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("node {id} did not start: {e}"),
        }
    }
}

async fn wait_leader(node: &RaftNode, not: Option<u64>, within: Duration) -> u64 {
    let metrics = node
        .raft()
        .wait(Some(within))
        .metrics(
            |m| m.current_leader.is_some() && m.current_leader != not,
            "a leader is known",
        )
        .await
        .expect("leader elected in time");
    metrics.current_leader.expect("checked above")
}

async fn wait_version(node: &RaftNode, version: u64) {
    let mut rx = node.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|p| p.version >= version),
    )
    .await
    .expect("applied in time")
    .expect("state channel open");
}

#[actix_rt::test]
async fn single_node_snapshots_purge_and_restarts_with_state() {
    let dir = TempDir::new().expect("tempdir");
    let settings = RaftSettings {
        snapshot_every: 50,
        logs_kept_after_snapshot: 20,
        ..RaftSettings::default()
    };
    let members = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let node = start(1, dir.path(), settings.clone()).await;
    assert!(node.initialize_if_needed(&members).await.expect("init"));
    wait_leader(&node, None, Duration::from_secs(10)).await;
    let mut last = 0;
    for i in 0..400 {
        let (response, index) = node
            .write(put_service(&format!("svc-{i}")))
            .await
            .expect("write");
        assert_eq!(response, Response::Applied);
        assert!(index > last, "versions increase");
        last = index;
    }
    node.raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.map(|s| s.index).unwrap_or(0) + 60 >= last,
            "recent snapshot",
        )
        .await
        .expect("snapshot taken");
    // Purge follows the snapshot; wait for it rather than guess when it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bound = (settings.snapshot_every + settings.logs_kept_after_snapshot + 10) as usize;
    loop {
        let stats = node.log_stats().expect("stats");
        if stats.entries <= bound {
            assert!(stats.last_purged_index.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "log not purged: {stats:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await;
    drop(node);

    // Restart: initialise is a no-op, and the state is back without any write.
    let node = start(1, dir.path(), settings).await;
    assert!(!node.initialize_if_needed(&members).await.expect("init"));
    wait_version(&node, last).await;
    let published = node.subscribe().borrow().clone();
    assert_eq!(published.state.gateway.services.len(), 400);
    wait_leader(&node, None, Duration::from_secs(10)).await;
    let (_, index) = node
        .write(Command::PutAdminToken {
            token: AdminToken {
                id: "t".into(),
                token_hash: SecretHash::of(b"token"),
            },
        })
        .await
        .expect("write after restart");
    assert!(index > last);
    node.shutdown().await;
}

struct Member {
    node: RaftNode,
    addr: String,
    server: actix_web::dev::ServerHandle,
}

/// Waits until every node names the same leader and that leader agrees it leads:
/// concurrent initialisation can produce a short-lived leader first.
async fn wait_agreed_leader(members: &[Member], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let views: Vec<Option<u64>> = members
            .iter()
            .map(|m| m.node.raft().metrics().borrow().current_leader)
            .collect();
        if let Some(Some(leader)) = views.first().copied() {
            let leads = members.iter().any(|m| {
                let metrics = m.node.raft().metrics().borrow().clone();
                m.node.id() == leader && metrics.state == openraft::ServerState::Leader
            });
            if Some(leader) != not && leads && views.iter().all(|v| *v == Some(leader)) {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {views:?}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn serve(node: RaftNode, addr: &str) -> Member {
    let rpc = node.rpc_service();
    let server = HttpServer::new(move || App::new().configure(rpc.clone()))
        .workers(1)
        .disable_signals()
        .bind(addr)
        .expect("bind");
    let addr = server.addrs()[0].to_string();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Member {
        node,
        addr,
        server: handle,
    }
}

#[actix_rt::test]
async fn three_nodes_elect_replicate_authenticate_and_fail_over() {
    let dir = TempDir::new().expect("tempdir");
    // Small snapshot interval so the restarted node below has to catch up by
    // snapshot transfer (the log it is missing has been purged).
    let settings = RaftSettings {
        snapshot_every: 50,
        logs_kept_after_snapshot: 10,
        ..RaftSettings::default()
    };
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let node = start(id, &dir.path().join(id.to_string()), settings.clone()).await;
        members.push(serve(node, "127.0.0.1:0").await);
    }
    let peers: BTreeMap<u64, String> = members
        .iter()
        .map(|m| (m.node.id(), m.addr.clone()))
        .collect();
    // Every node initialises with the same map, as `sluice run` will.
    for m in &members {
        m.node.initialize_if_needed(&peers).await.expect("init");
    }
    let leader = wait_agreed_leader(&members, None).await;
    let at = |id: u64| {
        members
            .iter()
            .position(|m| m.node.id() == id)
            .expect("member")
    };
    let follower = members
        .iter()
        .find(|m| m.node.id() != leader)
        .expect("follower");

    // A follower names the leader instead of writing.
    match follower.node.write(put_service("users")).await {
        Err(WriteError::ForwardToLeader {
            leader_id,
            leader_addr,
        }) => {
            assert_eq!(leader_id, leader);
            assert_eq!(leader_addr, peers[&leader]);
        }
        other => panic!("expected ForwardToLeader, got {other:?}"),
    }
    let (response, index) = members[at(leader)]
        .node
        .write(put_service("users"))
        .await
        .expect("write");
    assert_eq!(response, Response::Applied);
    for m in &members {
        wait_version(&m.node, index).await;
        assert!(m
            .node
            .subscribe()
            .borrow()
            .state
            .gateway
            .services
            .contains_key("users"));
    }

    // RPC without, or with a wrong, secret: 401; garbage body: 400; Raft untouched.
    let term_before = follower.node.raft().metrics().borrow().current_term;
    let client = awc::Client::default();
    let url = format!("http://{}/raft/vote", follower.addr);
    let status = client
        .post(&url)
        .send_body(vec![1u8, 2, 3])
        .await
        .expect("send")
        .status();
    assert_eq!(status.as_u16(), 401);
    let status = client
        .post(&url)
        .insert_header((SECRET_HEADER, "wrong"))
        .send_body(vec![1u8, 2, 3])
        .await
        .expect("send")
        .status();
    assert_eq!(status.as_u16(), 401);
    let status = client
        .post(&url)
        .insert_header((SECRET_HEADER, SECRET))
        .send_body(vec![0xFFu8; 7])
        .await
        .expect("send")
        .status();
    assert_eq!(status.as_u16(), 400);
    assert_eq!(
        follower.node.raft().metrics().borrow().current_term,
        term_before
    );

    // Kill the leader (its server and its Raft) and time the takeover.
    let old = members.remove(at(leader));
    old.server.stop(false).await;
    old.node.shutdown().await;
    let killed = Instant::now();
    let new_leader = wait_agreed_leader(&members, Some(leader)).await;
    let took = killed.elapsed();
    eprintln!("new leader {new_leader} after {took:?}");
    assert!(took < Duration::from_secs(3), "failover took {took:?}");
    // The new leader accepts writes, and they reach the other survivor.
    let writer = &members
        .iter()
        .find(|m| m.node.id() == new_leader)
        .expect("leader")
        .node;
    let (_, index) = writer
        .write(put_service("orders"))
        .await
        .expect("write on new leader");
    for m in &members {
        wait_version(&m.node, index).await;
    }
    for m in &members {
        m.server.stop(false).await;
        m.node.shutdown().await;
    }
}
