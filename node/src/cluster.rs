//! The node's control plane glue: starts this node's Raft, bootstraps the cluster,
//! seeds it once with the YAML gateway config and an OAuth signing key, and keeps
//! the data plane in step with the replicated state (never the other way round:
//! the request path reads the `ArcSwap`, this module writes it).

use crate::dataplane::DataPlane;
use crate::signing;
use crate::telemetry::Metrics;
use actix_web::web;
use cluster_config::{GatewaySpec, NodeConfig};
use sluice_actors::limiter::{ClientLimiter, ClientLimiters, Deltas};
use sluice_raft::{Command, Delta, DeltaBatch, Published, RaftNode, RaftSettings, WriteError};
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
    let mut settings = RaftSettings {
        snapshot_every: node.snapshot_every,
        logs_kept_after_snapshot: node.snapshot_every,
        ..RaftSettings::default()
    };
    if let Some(tls) = &node.admin_tls {
        settings.transport.tls = Some(Arc::new(crate::tls::peer_client_config(tls)?));
    }
    let secret = node.cluster_secret.clone().unwrap_or_default();
    let raft = RaftNode::start(node.id, &node.data_dir, &secret, settings)
        .await
        .map_err(|e| std::io::Error::other(format!("raft: {e}")))?;
    Ok(Arc::new(raft))
}

/// The node's rate limiter, built here and nowhere else (the data plane owns it;
/// the request path and the token endpoint ask it). This process's boot time is
/// its incarnation: the ledger counts what an earlier life of this node was
/// granted as spent, so a restart never hands out a fresh window.
/// [`spawn_tasks`] starts its actor (reports, grants, eviction).
///
/// A restarted node may not use its floors in the window it restarted in (its
/// earlier life may have used them); on a node's first start (an empty log)
/// nothing came before, so it may.
pub fn client_limiters(node: &NodeConfig, raft: &Arc<RaftNode>) -> ClientLimiters {
    let now = sluice_actors::limiter::now_ms();
    let first_start = raft.raft().metrics().borrow().last_log_index.is_none();
    let limiters = if first_start {
        ClientLimiters::first_start(node.id, now)
    } else {
        ClientLimiters::new(node.id, now)
    };
    // The configured members until Raft says (a joining node knows nothing yet).
    if !is_joining(node) {
        limiters.set_members(initial_members(node).len());
    }
    limiters
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

/// Background tasks of the control plane, on the node's main arbiter.
pub fn spawn_tasks(
    raft: Arc<RaftNode>,
    node: NodeConfig,
    files: GatewaySpec,
    plane: web::Data<DataPlane>,
) {
    // A joining node takes the cluster's config and keys as they are: it seeds
    // nothing.
    if is_joining(&node) {
        plane.seed_settled.send_replace(true);
    } else {
        let (seeding, plane) = (raft.clone(), plane.clone());
        actix_rt::spawn(async move {
            seed(seeding, files).await;
            plane.seed_settled.send_replace(true);
        });
        actix_rt::spawn(seed_signing_key(raft.clone()));
    }
    let limiter = start_limiter(&raft, &node, &plane.limiters);
    actix_rt::spawn(bootstrap(raft.clone(), node));
    actix_rt::spawn(follow_state(raft.subscribe(), plane.clone()));
    let webhooks_wake = Arc::new(tokio::sync::Notify::new());
    crate::webhooks::spawn(raft.clone(), plane.clone(), webhooks_wake.clone());
    if let Some(deltas) = raft.take_deltas() {
        actix_rt::spawn(follow_deltas(deltas, limiter, webhooks_wake));
    }
    actix_rt::spawn(follow_metrics(raft, plane));
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

/// Proposes `command` until `present` says the cluster has what it seeds. The
/// state machine applies a seed only while nothing is there, so every founding
/// node may try and the first to commit wins. Returns the state once this node
/// has caught up with the seed's answer (`None`: the cluster already had it, or
/// Raft stopped).
async fn seed_until(
    raft: &RaftNode,
    command: Command,
    present: impl Fn(&Published) -> bool,
    what: &str,
) -> Option<(Arc<Published>, u64)> {
    let mut state = raft.subscribe();
    loop {
        if present(&state.borrow_and_update()) {
            return None;
        }
        match raft.write_anywhere(command.clone()).await {
            Ok((_, version)) => {
                // Through a follower the answer can arrive before the local apply.
                let caught_up = async {
                    while state.borrow_and_update().version < version {
                        if state.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), caught_up).await;
                let published = state.borrow().clone();
                return Some((published, version));
            }
            Err(WriteError::Fatal(e)) => {
                error!(error = %e, "cannot seed the cluster's {what}");
                return None;
            }
            Err(_) => {
                // No leader yet: wait for one (or for another node's seed to land).
                let _ = tokio::time::timeout(Duration::from_millis(300), state.changed()).await;
            }
        }
    }
}

/// Proposes the YAML gateway config until the cluster has one.
async fn seed(raft: Arc<RaftNode>, spec: GatewaySpec) {
    let command = Command::SeedGateway { spec: spec.clone() };
    let seeded = |p: &Published| p.state.seeded;
    if let Some((published, version)) = seed_until(&raft, command, seeded, "gateway config").await {
        if *published.state.gateway == spec {
            info!(version, "YAML gateway config seeded into the cluster");
        } else {
            // Someone else's seed or an admin write got there first.
            info!(
                version,
                "cluster already had a gateway config; YAML seed not applied"
            );
        }
    }
}

/// Proposes a freshly generated signing key until the cluster has one.
async fn seed_signing_key(raft: Arc<RaftNode>) {
    let has_key = |p: &Published| !p.state.signing.keys.is_empty();
    if has_key(&raft.subscribe().borrow()) {
        return;
    }
    // One key for every attempt: a retried proposal that did commit the first
    // time is then a no-op rather than a second, different candidate.
    let key = match signing::generate(signing::now_unix()) {
        Ok(key) => key,
        Err(e) => {
            error!(error = %e, "cannot generate an OAuth signing key; another node's seed or a rotation must provide one");
            return;
        }
    };
    let kid = key.kid.clone();
    let command = Command::SeedSigningKey { key };
    if let Some((published, version)) = seed_until(&raft, command, has_key, "signing key").await {
        let active = published.state.signing.active().map(|k| k.kid.clone());
        if active.as_deref() == Some(kid.as_str()) {
            info!(version, kid, "OAuth signing key seeded into the cluster");
        } else {
            info!(version, active = ?active, "cluster already had a signing key; this node's seed not applied");
        }
    }
}

/// Brings the data plane up to date after every applied batch (only the parts
/// whose domain changed are rebuilt).
async fn follow_state(mut rx: watch::Receiver<Arc<Published>>, plane: web::Data<DataPlane>) {
    while rx.changed().await.is_ok() {
        let published = rx.borrow_and_update().clone();
        plane
            .metrics
            .raft_applied_index
            .set(published.version as i64);
        let rebuilt = plane.apply(&published);
        debug!(
            version = published.version,
            ?rebuilt,
            "data plane caught up"
        );
    }
}

/// Starts the rate limiter's actor: every `node.rate_limit_sync_interval` it
/// proposes this node's report as a node-originated command through the
/// command-level write path (forwarded to the leader with the cluster secret; no
/// admin token), one at a time. A report that cannot commit (no quorum) is
/// dropped: the node keeps enforcing within what it was granted.
fn start_limiter(
    raft: &Arc<RaftNode>,
    node: &NodeConfig,
    limiters: &ClientLimiters,
) -> actix::Addr<ClientLimiter> {
    let raft = raft.clone();
    limiters.start(node.rate_limit_sync_interval, move |report| {
        let raft = raft.clone();
        async move {
            let items = report.items.len();
            if let Err(e) = raft.write_anywhere(Command::ReportLimits { report }).await {
                debug!(error = %e, items, "rate-limit report not committed");
            }
        }
    })
}

/// Hands high-churn domain changes to the actors that own them: rate-limit
/// grants and resets to the limiter's actor.
async fn follow_deltas(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<DeltaBatch>,
    limiter: actix::Addr<ClientLimiter>,
    webhooks: Arc<tokio::sync::Notify>,
) {
    while let Some(batch) = rx.recv().await {
        if batch
            .deltas
            .iter()
            .any(|d| matches!(d, Delta::WebhooksChanged | Delta::StateReplaced))
        {
            webhooks.notify_one();
        }
        let limits = batch
            .deltas
            .iter()
            .any(|d| matches!(d, Delta::LimitsGranted(_) | Delta::LimitsReset { .. }));
        if batch.deltas.contains(&Delta::StateReplaced) {
            debug!(version = batch.version, "state replaced by a snapshot");
        }
        if limits {
            limiter.do_send(Deltas(Arc::new(batch.deltas)));
        }
    }
}

/// How often the gauges are refreshed without a change event: losing the quorum
/// is the absence of events (no acks arrive), so the watch alone may not say it.
const METRICS_REFRESH: Duration = Duration::from_millis(500);

/// Mirrors Raft's view into the `gateway_raft_*` gauges, on every change and on
/// a timer.
async fn follow_metrics(raft: Arc<RaftNode>, plane: web::Data<DataPlane>) {
    let mut rx = raft.raft().metrics();
    let mut tick = tokio::time::interval(METRICS_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        {
            let m = rx.borrow_and_update();
            let metrics: &Metrics = &plane.metrics;
            metrics
                .raft_leader
                .set(i64::from(m.current_leader == Some(m.id)));
            metrics.raft_term.set(m.current_term as i64);
            let stopped = plane.consensus_stopped.get().is_some() || m.running_state.is_err();
            metrics
                .raft_quorum
                .set(i64::from(!stopped && sluice_raft::node::has_quorum(&m)));
            let members = m.membership_config.membership().nodes().count();
            if members > 0 {
                plane.limiters.set_members(members);
            }
            if let Err(fatal) = &m.running_state {
                consensus_stopped(&plane, fatal.to_string());
            }
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The core is gone; on a graceful stop the process is
                    // exiting anyway.
                    if !plane.is_draining() {
                        consensus_stopped(&plane, "the raft core ended".to_owned());
                    }
                    plane.metrics.raft_quorum.set(0);
                    return;
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// Marks the node as cut off from the cluster for good: said once, at error
/// level, and by `/ready` from then on.
fn consensus_stopped(plane: &DataPlane, why: String) {
    if plane.consensus_stopped.set(why).is_ok() {
        plane.metrics.raft_quorum.set(0);
        error!(
            reason = plane.consensus_stopped.get().map(String::as_str),
            "raft stopped on this node: it keeps serving its last applied state, gets no \
             further changes and reports not ready; restart it"
        );
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
