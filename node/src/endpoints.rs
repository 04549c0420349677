//! Built-in data-plane endpoints: `/health` (process is up), `/ready` (safe to send
//! traffic) and `/metrics` (Prometheus text), and the dispatch that sends them,
//! the OAuth endpoints (`crate::auth::oauth`) and the proxy their requests.

use crate::dataplane::DataPlane;
use crate::upstream_client::UpstreamClient;
use actix_http::{Payload, Request};
use actix_web::http::{header, Method, StatusCode};
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;

/// The data plane's one service, on actix-http directly (no actix-web `App`: its
/// request object, routing and extractors cost about 2,000 instructions per
/// proxied request). The built-in endpoints are found by their exact path in a
/// `match`; every other request goes to the proxy.
pub async fn dispatch(req: Request, plane: &DataPlane, client: &UpstreamClient) -> HttpResponse {
    let allowed = match req.path() {
        "/health" | "/ready" | "/metrics" | "/.well-known/jwks.json" => Method::GET,
        "/oauth/token" => Method::POST,
        _ => return crate::proxy::handle(req, plane, client).await,
    };
    if req.method() != allowed {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allowed.as_str()))
            .finish();
    }
    match req.path() {
        "/health" => health(plane),
        "/ready" => ready(plane),
        "/metrics" => metrics(plane),
        "/.well-known/jwks.json" => crate::auth::oauth::jwks(plane),
        _ => {
            let mut req = req;
            match read_body(req.take_payload(), TOKEN_BODY_LIMIT).await {
                Ok(body) => crate::auth::oauth::token(&req, body, plane).await,
                Err(status) => HttpResponse::build(status).finish(),
            }
        }
    }
}

/// Bound on a token request's form body (actix-web's default body limit).
const TOKEN_BODY_LIMIT: usize = 256 * 1024;

/// A whole request body, up to `limit` bytes: 413 beyond it, 400 when it is
/// malformed or ends early.
async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes, StatusCode> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if body.len() + chunk.len() > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn health(plane: &DataPlane) -> HttpResponse {
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
fn ready(plane: &DataPlane) -> HttpResponse {
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

fn metrics(plane: &DataPlane) -> HttpResponse {
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
