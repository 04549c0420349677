//! The node's control plane glue: starts this node's Raft, bootstraps the cluster,
//! seeds it once with the YAML gateway config, and keeps the data plane's snapshot
//! in step with the replicated state (never the other way round: the request path
//! reads the `ArcSwap`, this module writes it).

use crate::runtime::Shared;
use crate::telemetry::Metrics;
use actix_web::web;
use cluster_config::{Gateway, GatewaySpec, NodeConfig, Origins};
use sluice_raft::{Command, Published, RaftNode, RaftSettings, WriteError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, error, info};

/// Opens this node's Raft under `node.data_dir`.
pub async fn start_raft(node: &NodeConfig) -> std::io::Result<Arc<RaftNode>> {
    std::fs::create_dir_all(&node.data_dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("data_dir {}: {e}", node.data_dir.display()),
        )
    })?;
    let settings = RaftSettings {
        snapshot_every: node.snapshot_every,
        logs_kept_after_snapshot: node.snapshot_every,
        ..RaftSettings::default()
    };
    let secret = node.cluster_secret.clone().unwrap_or_default();
    let raft = RaftNode::start(node.id, &node.data_dir, &secret, settings)
        .await
        .map_err(|e| std::io::Error::other(format!("raft: {e}")))?;
    Ok(Arc::new(raft))
}

/// True for a node that waits to be added to a cluster rather than founding one.
pub fn is_joining(node: &NodeConfig) -> bool {
    !node.peers.is_empty() && !node.peers.contains_key(&node.id)
}

/// The voters a fresh cluster starts with: `cluster.peers`, or just this node.
pub fn initial_members(node: &NodeConfig) -> BTreeMap<u64, String> {
    if node.peers.is_empty() {
        BTreeMap::from([(node.id, node.admin_listen.to_string())])
    } else {
        node.peers.clone()
    }
}

/// The gateway config the data plane should start with: the replicated one when
/// the cluster has one, else the node's own files (a fresh node serves at once).
pub fn initial_gateway(raft: &RaftNode, from_files: &Gateway) -> (Gateway, u64) {
    let published = raft.subscribe().borrow().clone();
    if published.state.seeded {
        match compile(&published.state.gateway) {
            Ok(g) => return (g, published.version),
            Err(e) => error!(error = %e, "replicated config does not compile; serving the files"),
        }
    }
    (from_files.clone(), published.version)
}

fn compile(spec: &GatewaySpec) -> Result<Gateway, cluster_config::ConfigErrors> {
    Gateway::compile(spec.clone(), &Origins::default(), None)
}

/// Background tasks of the control plane, on the node's main arbiter.
pub fn spawn_tasks(
    raft: Arc<RaftNode>,
    node: NodeConfig,
    files: GatewaySpec,
    shared: web::Data<Shared>,
) {
    // A joining node takes the cluster's config as it is: it seeds nothing.
    if !is_joining(&node) {
        actix_rt::spawn(seed(raft.clone(), files));
    }
    actix_rt::spawn(bootstrap(raft.clone(), node));
    actix_rt::spawn(follow_state(raft.subscribe(), shared.clone()));
    actix_rt::spawn(follow_metrics(raft, shared));
}

/// Initialises the cluster once (safe on every start, in any order). A node that
/// is not in `cluster.peers` is joining an existing cluster and never initialises.
async fn bootstrap(raft: Arc<RaftNode>, node: NodeConfig) {
    if is_joining(&node) {
        info!(
            node_id = node.id,
            "not in cluster.peers: joining an existing cluster; add this node with \
             POST /admin/cluster/nodes {{id, addr}} on any member"
        );
        return;
    }
    let members = initial_members(&node);
    match raft.initialize_if_needed(&members).await {
        Ok(true) => info!(?members, "cluster initialised by this node"),
        Ok(false) => info!("cluster already initialised"),
        Err(e) => error!(error = %e, "cannot initialise the cluster"),
    }
}

/// Proposes the YAML gateway config until the cluster has one (the state machine
/// applies `SeedGateway` only while no config was ever set, so every node may try).
async fn seed(raft: Arc<RaftNode>, spec: GatewaySpec) {
    let mut state = raft.subscribe();
    loop {
        if state.borrow_and_update().state.seeded {
            return;
        }
        match raft
            .write_anywhere(Command::SeedGateway { spec: spec.clone() })
            .await
        {
            Ok((response, version)) => {
                // Through a follower the answer can arrive before the local apply.
                let caught_up = async {
                    while state.borrow_and_update().version < version {
                        if state.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), caught_up).await;
                if state.borrow().state.gateway == spec {
                    info!(
                        version,
                        ?response,
                        "YAML gateway config seeded into the cluster"
                    );
                } else {
                    // Someone else's seed or an admin write got there first.
                    info!(
                        version,
                        "cluster already had a gateway config; YAML seed not applied"
                    );
                }
                return;
            }
            Err(WriteError::Fatal(e)) => {
                error!(error = %e, "cannot seed the cluster config");
                return;
            }
            Err(_) => {
                // No leader yet: wait for one (or for another node's seed to land).
                let _ = tokio::time::timeout(Duration::from_millis(300), state.changed()).await;
            }
        }
    }
}

/// Rebuilds the data plane's snapshot after every applied change.
async fn follow_state(mut rx: watch::Receiver<Arc<Published>>, shared: web::Data<Shared>) {
    let mut applied_spec: Option<GatewaySpec> = None;
    while rx.changed().await.is_ok() {
        let published = rx.borrow_and_update().clone();
        shared
            .metrics
            .raft_applied_index
            .set(published.version as i64);
        if !published.state.seeded || applied_spec.as_ref() == Some(&published.state.gateway) {
            continue;
        }
        match compile(&published.state.gateway) {
            Ok(gateway) => {
                let routes = gateway.routes.routes().len();
                shared.install(gateway, published.version);
                applied_spec = Some(published.state.gateway.clone());
                info!(
                    version = published.version,
                    routes, "replicated config applied to the data plane"
                );
            }
            // Cannot happen with the same binary (apply validated it); keep serving.
            Err(e) => {
                error!(version = published.version, error = %e, "replicated config does not compile")
            }
        }
    }
}

/// Mirrors Raft's view into the `gateway_raft_*` gauges.
async fn follow_metrics(raft: Arc<RaftNode>, shared: web::Data<Shared>) {
    let mut rx = raft.raft().metrics();
    loop {
        {
            let m = rx.borrow_and_update();
            let metrics: &Metrics = &shared.metrics;
            metrics
                .raft_leader
                .set(i64::from(m.current_leader == Some(m.id)));
            metrics.raft_term.set(m.current_term as i64);
        }
        if rx.changed().await.is_err() {
            debug!("raft metrics stream ended");
            return;
        }
    }
}

/// Proposes a gateway config (SIGHUP, `sluice apply`) and waits for its answer.
pub async fn propose_gateway(
    raft: &RaftNode,
    metrics: &Metrics,
    spec: GatewaySpec,
) -> Result<(sluice_raft::Response, u64), WriteError> {
    let started = std::time::Instant::now();
    let result = raft.write_anywhere(Command::ReplaceGateway { spec }).await;
    if result.is_ok() {
        metrics
            .raft_commit_duration
            .observe(started.elapsed().as_secs_f64());
    }
    result
}
