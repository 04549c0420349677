//! Built-in data-plane endpoints: `/health` (process is up), `/ready` (safe to send
//! traffic) and `/metrics` (Prometheus text), and the dispatch that sends them,
//! the OAuth endpoints (`crate::auth::oauth`) and the proxy their requests.

use crate::dataplane::DataPlane;
use crate::upstream_client::UpstreamClient;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde_json::json;

/// The data plane's one service. The built-in endpoints are found by their exact
/// path in a `match`; every other request goes to the proxy. (Registered as actix
/// resources, each would be tried, pattern by pattern, before every proxied
/// request reached the proxy: about 1,400 instructions per request.)
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    plane: web::Data<DataPlane>,
    client: web::Data<UpstreamClient>,
) -> HttpResponse {
    let allowed = match req.path() {
        "/health" | "/ready" | "/metrics" | "/.well-known/jwks.json" => Method::GET,
        "/oauth/token" => Method::POST,
        _ => return crate::proxy::handle(req, payload, plane, client).await,
    };
    if req.method() != allowed {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allowed.as_str()))
            .finish();
    }
    match req.path() {
        "/health" => health(plane).await,
        "/ready" => ready(plane).await,
        "/metrics" => metrics(plane).await,
        "/.well-known/jwks.json" => crate::auth::oauth::jwks(plane).await,
        _ => match web::Bytes::from_request(&req, &mut payload.into_inner()).await {
            Ok(body) => crate::auth::oauth::token(req, body, plane).await,
            Err(e) => e.as_response_error().error_response(),
        },
    }
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
