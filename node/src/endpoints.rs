//! Built-in data-plane endpoints: `/health` (process is up), `/ready` (safe to send
//! traffic) and `/metrics` (Prometheus text).

use crate::dataplane::DataPlane;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .configure(crate::auth::oauth::configure);
}

async fn health(plane: web::Data<DataPlane>) -> HttpResponse {
    let state = plane.state.load();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "node_id": plane.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "config_version": state.applied_index,
        "uptime_seconds": plane.started.elapsed().as_secs(),
    }))
}

/// 200 when config is loaded, the node is not draining and every service has at
/// least one target that is healthy or not actively checked; else 503 naming each
/// failing check.
async fn ready(plane: web::Data<DataPlane>) -> HttpResponse {
    let state = plane.state.load();
    let mut failing = Vec::new();
    if plane.is_draining() {
        failing.push("node is draining (shutting down)".to_owned());
    }
    for (name, handle) in &state.gateway.pools {
        if !handle.pool.has_usable_target() {
            failing.push(format!("service {name}: no healthy upstream"));
        }
    }
    let body = json!({
        "status": if failing.is_empty() { "ready" } else { "not_ready" },
        "config_version": state.applied_index,
        "services": state.gateway.pools.len(),
        "failing": failing,
    });
    if failing.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(plane: web::Data<DataPlane>) -> HttpResponse {
    // Read at scrape time: the limiter owns the keys, the gauge only mirrors them.
    let keys = plane.limiters.active_keys();
    plane
        .metrics
        .rate_limit_keys
        .set(i64::try_from(keys).unwrap_or(i64::MAX));
    match plane.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => HttpResponse::InternalServerError().body(format!("metrics: {e}")),
    }
}
