//! `sluice run`: builds the shared state from a loaded config, starts the data-plane
//! listener (HTTP/1.1 + h2c, or TLS with ALPN h2/http1.1) and handles signals:
//! SIGTERM/SIGINT drain and exit, SIGHUP reloads the config directory.

use crate::runtime::{Shared, Snapshot};
use crate::telemetry::Metrics;
use crate::{endpoints, proxy};
use actix_web::{web, App, HttpServer};
use cluster_config::{load_dir, LoadedConfig, NodeConfig, TlsFiles};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Runs a node until it is told to stop. Returns once draining has finished.
pub fn run(loaded: LoadedConfig) -> std::io::Result<()> {
    actix_rt::System::new().block_on(serve(loaded))
}

async fn serve(loaded: LoadedConfig) -> std::io::Result<()> {
    let node = loaded.node.clone();
    let metrics = Metrics::new().map_err(std::io::Error::other)?;
    let events: Arc<dyn sluice_actors::UpstreamEvents> = Arc::new(metrics.events());
    let snapshot = Snapshot::build(loaded.gateway.clone(), None, 1, &events);
    let mut shared = Shared::new(snapshot, events, metrics, node.id, node.tls.is_some());
    shared.request_metrics = node.request_metrics;
    let shared = web::Data::new(shared);

    let server = data_plane(&node, shared.clone())?;
    let handle = server.handle();
    info!(
        node_id = node.id,
        listen = %node.listen,
        tls = node.tls.is_some(),
        workers = node.workers,
        services = loaded.gateway.services.len(),
        routes = loaded.gateway.routes.routes().len(),
        "sluice data plane listening"
    );

    let signals = actix_rt::spawn(watch_signals(loaded, shared.clone(), handle));
    let result = server.await;
    signals.abort();
    info!("sluice stopped");
    result
}

fn data_plane(
    node: &NodeConfig,
    shared: web::Data<Shared>,
) -> std::io::Result<actix_web::dev::Server> {
    let pool_limit = node.upstream_pool_limit;
    let server = HttpServer::new(move || {
        // One client per worker thread (awc's Client is !Send), with an explicit
        // pool limit, no redirects, no decompression (no compress features), no
        // default headers and no client-wide timeout: the proxy applies route
        // timeouts itself so a long download is not cut off.
        let client = awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .limit(pool_limit)
                    .timeout(Duration::from_secs(5))
                    .conn_keep_alive(Duration::from_secs(30))
                    .conn_lifetime(Duration::from_secs(300)),
            )
            .disable_redirects()
            .disable_timeout()
            .no_default_headers()
            .finish();
        App::new()
            .app_data(shared.clone())
            .app_data(web::Data::new(client))
            .configure(endpoints::configure)
            .default_service(web::to(proxy::handle))
    })
    .workers(node.workers)
    .shutdown_timeout(node.shutdown_timeout.as_secs().max(1))
    .disable_signals()
    .backlog(4096)
    .max_connection_rate(1024)
    .keep_alive(Duration::from_secs(75))
    .client_request_timeout(Duration::from_secs(30));
    let server = match &node.tls {
        Some(tls) => server.bind_rustls_0_23(node.listen, tls_config(tls)?)?,
        None => server.bind_auto_h2c(node.listen)?,
    };
    Ok(server.run())
}

fn tls_config(tls: &TlsFiles) -> std::io::Result<rustls::ServerConfig> {
    use std::io::{BufReader, Error, ErrorKind};
    let open = |p: &std::path::Path| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(&tls.cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{}: {e}", tls.cert_file.display()),
            )
        })?;
    let key = rustls_pemfile::private_key(&mut open(&tls.key_file)?)?.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{}: no private key found", tls.key_file.display()),
        )
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("TLS config: {e}")))
}

async fn watch_signals(
    mut loaded: LoadedConfig,
    shared: web::Data<Shared>,
    handle: actix_web::dev::ServerHandle,
) {
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            error!("cannot install signal handlers; stopping");
            handle.stop(false).await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&mut loaded, &shared),
        }
    }
    shared.draining.store(true, Ordering::Relaxed);
    info!(
        timeout_secs = loaded.node.shutdown_timeout.as_secs(),
        "shutdown requested: no new connections, draining in-flight requests"
    );
    handle.stop(true).await;
}

/// SIGHUP: reload the config directory. A valid config is swapped in whole; an
/// invalid one is logged and counted, and the old one keeps serving.
fn reload(loaded: &mut LoadedConfig, shared: &Shared) {
    match load_dir(&loaded.dir) {
        Ok(next) => {
            if next.node != loaded.node {
                warn!("node settings changed on disk; they take effect at the next restart");
            }
            let routes = next.gateway.routes.routes().len();
            let version = shared.install(next.gateway.clone());
            shared
                .metrics
                .config_reloads
                .with_label_values(&["ok"])
                .inc();
            info!(version, routes, "config reloaded");
            loaded.gateway = next.gateway;
            loaded.origins = next.origins;
        }
        Err(errors) => {
            shared
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
        }
    }
}
