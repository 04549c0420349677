//! `sluice run`: builds the data plane from the replicated state (or, on a fresh
//! node, from the loaded config), starts the data-plane
//! listener (HTTP/1.1 + h2c, or TLS with ALPN h2/http1.1) and handles signals:
//! SIGTERM/SIGINT drain and exit, SIGHUP reloads the config directory. Also starts
//! this node's Raft and the admin listener (admin API + Raft RPC).

use crate::admin::Admin;
use crate::dataplane::DataPlane;
use crate::telemetry::Metrics;
use crate::{cluster, endpoints, listener};
use actix_web::{web, App, HttpServer};
use cluster_config::{load_dir, LoadedConfig, NodeConfig};
use sluice_raft::RaftNode;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Runs a node until it is told to stop. Returns once draining has finished.
pub fn run(loaded: LoadedConfig) -> std::io::Result<()> {
    raise_open_files_limit();
    actix_rt::System::new().block_on(serve(loaded))
}

async fn serve(loaded: LoadedConfig) -> std::io::Result<()> {
    let node = loaded.node.clone();
    let metrics = Metrics::new().map_err(std::io::Error::other)?;

    // Control plane first: the data plane starts from the replicated config when
    // this node already has one (restart), else from its files (fresh node).
    let raft = cluster::start_raft(&node).await?;
    let published = raft.subscribe().borrow().clone();
    let version = published.version;
    let events: Arc<dyn sluice_actors::UpstreamEvents> = Arc::new(metrics.events());
    let limiters = cluster::client_limiters(&node, &raft);
    let mut plane = DataPlane::start(
        &published,
        &loaded.gateway,
        events,
        metrics,
        limiters,
        node.id,
        node.tls.is_some(),
    );
    plane.request_metrics = node.request_metrics;
    plane.trusted_proxies = node.trusted_proxies.clone();
    crate::auth::jwt::set_cache(node.jwt_cache);
    let plane = web::Data::new(plane);

    // Before any port opens: a SIGHUP or SIGTERM sent once the node answers must
    // find its handler (the default action of either ends the process).
    let signals = Signals::install()?;
    let admin = admin_plane(&node, raft.clone(), plane.clone())?;
    let server = data_plane(&node, plane.clone())?;
    let handles = [server.handle(), admin.handle()];
    info!(
        node_id = node.id,
        listen = %node.listen,
        admin_listen = %node.admin_listen,
        data_dir = %node.data_dir.display(),
        peers = node.peers.len(),
        tls = node.tls.is_some(),
        workers = node.workers,
        config_version = version,
        "sluice listening"
    );
    cluster::spawn_tasks(
        raft.clone(),
        node.clone(),
        loaded.gateway.spec.clone(),
        plane.clone(),
    );

    let signals = actix_rt::spawn(watch_signals(
        signals,
        loaded,
        plane.clone(),
        raft.clone(),
        handles,
    ));
    let admin_task = actix_rt::spawn(admin);
    let result = server.await;
    let _ = admin_task.await;
    signals.abort();
    raft.shutdown().await;
    info!("sluice stopped");
    result
}

const ADMIN_WORKERS: usize = 2;

/// The admin listener: admin API and Raft RPC (each authenticates on its own).
fn admin_plane(
    node: &NodeConfig,
    raft: Arc<RaftNode>,
    plane: web::Data<DataPlane>,
) -> std::io::Result<actix_web::dev::Server> {
    let admin = web::Data::new(Admin::new(raft.clone(), plane, node.admin_token.as_deref()));
    let rpc = raft.rpc_service();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(admin.clone())
            .app_data(web::PayloadConfig::new(16 << 20))
            .configure(rpc.clone())
            .configure(crate::admin::configure)
    })
    .workers(ADMIN_WORKERS)
    // Its own connection limit and timeouts: a flood of connections on the data
    // port (or on this one) leaves room for the operator and the Raft peers.
    .max_connections(node.admin_max_connections.div_ceil(ADMIN_WORKERS))
    .client_request_timeout(node.client_header_timeout)
    .keep_alive(node.keepalive_timeout)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match &node.admin_tls {
        Some(tls) => {
            server.bind_rustls_0_23(node.admin_listen, crate::tls::admin_server_config(tls)?)?
        }
        None => server.bind(node.admin_listen)?,
    };
    Ok(server.run())
}

fn data_plane(
    node: &NodeConfig,
    plane: web::Data<DataPlane>,
) -> std::io::Result<actix_web::dev::Server> {
    let pool_limit = node.upstream_pool_limit;
    let upstream_tls = crate::tls::upstream_client_config(node.upstream_ca_file.as_deref())?;
    let listen = listener::Listen {
        addr: node.listen,
        workers: node.workers,
        backlog: 4096,
        shutdown_timeout: node.shutdown_timeout.as_secs().max(1),
        keep_alive: node.keepalive_timeout,
        client_request_timeout: node.client_header_timeout,
        max_connections_per_worker: node.max_connections.div_ceil(node.workers.max(1)),
        max_tls_handshakes: 1024,
        tls: node
            .tls
            .as_ref()
            .map(|files| crate::tls::server_config(files, None))
            .transpose()?,
        counters: listener::Counters {
            h2_floods: plane.metrics.h2_floods.clone(),
            malformed_requests: plane.metrics.malformed_requests.clone(),
            header_timeouts: plane.metrics.header_timeouts.clone(),
            connections: plane.metrics.connections.clone(),
        },
    };
    warn_if_files_run_short(node);
    listener::serve(listen, move || {
        // One upstream client per worker thread, so a connection's task and its
        // requests share a thread; capped at `node.upstream_pool_limit` requests
        // in flight (see `upstream_client`).
        let worker = Rc::new((
            plane.clone(),
            crate::upstream_client::UpstreamClient::new(pool_limit, upstream_tls.clone()),
        ));
        move |req, conn| {
            let worker = worker.clone();
            async move {
                let (plane, client) = &*worker;
                endpoints::dispatch(req, conn, plane, client).await
            }
        }
    })
}

/// Warns when `node.max_connections` plus the admin port's limit and the upstream
/// pools could exceed the process's open-files limit: connections would then fail
/// with EMFILE (admin port included) before the limits protect anything.
fn warn_if_files_run_short(node: &NodeConfig) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    // Client connections, the upstream connection each may hold, the admin port,
    // and a margin for sled, Raft peers and logs.
    let needed = node.max_connections as u64 * 2 + node.admin_max_connections as u64 + 256;
    if needed > limit {
        warn!(
            open_files_limit = limit,
            max_connections = node.max_connections,
            admin_max_connections = node.admin_max_connections,
            "node.max_connections is too high for the open-files limit (ulimit -n): raise \
             the limit to at least {needed} or lower node.max_connections"
        );
    }
}

/// Raises the soft open-files limit to the hard one, as Go's runtime does at
/// start: systemd starts services at 1,024 soft (524,288 hard), far too few for
/// the default `node.max_connections`; the hard limit stays the operator's.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return; // unlimited already
    };
    // No hard limit: the kernel still caps open files at fs.nr_open.
    let hard = limit.maximum.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1 << 20)
    });
    if hard <= soft {
        return;
    }
    limit.current = Some(hard);
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => info!(
            from = soft,
            to = hard,
            "raised the open-files limit (ulimit -n)"
        ),
        Err(e) => warn!(soft, hard, error = %e, "could not raise the open-files limit"),
    }
}

/// The soft `RLIMIT_NOFILE`; `None` when unlimited.
fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// SIGTERM and SIGINT (graceful stop) and SIGHUP (reload) handlers, installed
/// when this is made.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        let install = |kind| {
            signal(kind)
                .map_err(|e| std::io::Error::other(format!("cannot install signal handlers: {e}")))
        };
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
        })
    }
}

async fn watch_signals(
    signals: Signals,
    mut loaded: LoadedConfig,
    plane: web::Data<DataPlane>,
    raft: Arc<RaftNode>,
    handles: [actix_web::dev::ServerHandle; 2],
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&mut loaded, &plane, &raft).await,
        }
    }
    plane.draining.store(true, Ordering::Relaxed);
    info!(
        timeout_secs = loaded.node.shutdown_timeout.as_secs(),
        "shutdown requested: no new connections, draining in-flight requests"
    );
    let [data, admin] = handles;
    // Admin stays up while the data plane drains, then goes too.
    data.stop(true).await;
    admin.stop(true).await;
}

/// SIGHUP: re-read the config directory. An invalid one is logged and counted
/// and changes nothing. A valid one whose gateway part differs from what the files
/// said last time is proposed to the cluster (the replicated state then flows back
/// to every node's data plane); unchanged files propose nothing.
async fn reload(loaded: &mut LoadedConfig, plane: &DataPlane, raft: &RaftNode) {
    let next = match load_dir(&loaded.dir) {
        Ok(next) => next,
        Err(errors) => {
            plane
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            for e in &errors.0 {
                error!(error = %e, "config reload rejected");
            }
            error!(
                count = errors.0.len(),
                "config reload failed; keeping the current config"
            );
            return;
        }
    };
    if next.node != loaded.node {
        warn!("node settings changed on disk; they take effect at the next restart");
    }
    if next.gateway.spec == loaded.gateway.spec {
        plane
            .metrics
            .config_reloads
            .with_label_values(&["ok"])
            .inc();
        info!("config files unchanged; nothing to propose");
        return;
    }
    // Right after start (or during an election) there may be no leader yet: keep
    // trying for a while rather than dropping the operator's change.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let result = loop {
        let r = cluster::propose_gateway(raft, &plane.metrics, next.gateway.spec.clone()).await;
        match &r {
            Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => break r,
        }
    };
    match result {
        Ok((sluice_raft::Response::Applied, version)) => {
            plane
                .metrics
                .config_reloads
                .with_label_values(&["ok"])
                .inc();
            info!(
                version,
                "config files changed: proposed and applied cluster-wide"
            );
            loaded.gateway = next.gateway;
            loaded.origins = next.origins;
        }
        Ok((other, _)) => {
            plane
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            error!(answer = ?other, "the cluster refused the reloaded config");
        }
        Err(e) => {
            plane
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            error!(error = %e, "cannot propose the reloaded config; keeping the current one");
        }
    }
}
