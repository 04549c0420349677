//! Built-in data-plane endpoints: `/health` (process is up), `/ready` (safe to send
//! traffic) and `/metrics` (Prometheus text), and the dispatch that sends them,
//! the OAuth endpoints (`crate::auth::oauth`) and the proxy their requests.

use crate::body::{self, Response};
use crate::dataplane::DataPlane;
use crate::listener::{ClientRequest, ConnInfo};
use crate::upstream_client::UpstreamClient;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use std::rc::Rc;

/// The data plane's one handler, on hyper's server connection (no framework: a
/// router and extractors would cost more than the rest of a request's own work).
/// The built-in endpoints are found by their exact path in a `match`; every other
/// request goes to the proxy.
pub async fn dispatch(
    req: http::Request<Incoming>,
    conn: Rc<ConnInfo>,
    plane: &DataPlane,
    client: &UpstreamClient,
) -> Response {
    let (head, payload) = req.into_parts();
    let req = ClientRequest { head, conn };
    let (allowed, allow) = match req.path() {
        "/health" | "/ready" | "/metrics" | "/.well-known/jwks.json" => (Method::GET, "GET"),
        "/oauth/token" => (Method::POST, "POST"),
        _ => return crate::proxy::handle(req, payload, plane, client).await,
    };
    if req.method() != allowed {
        let mut r = body::empty(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    match req.path() {
        "/health" => health(plane),
        "/ready" => ready(plane),
        "/metrics" => metrics(plane),
        "/.well-known/jwks.json" => crate::auth::oauth::jwks(plane),
        _ => match read_body(payload, TOKEN_BODY_LIMIT).await {
            Ok(body) => crate::auth::oauth::token(&req, body, plane).await,
            Err(status) => body::empty(status),
        },
    }
}

/// Bound on a token request's form body (actix-web's default body limit).
const TOKEN_BODY_LIMIT: usize = 256 * 1024;

/// A whole request body, up to `limit` bytes: 413 beyond it, 400 when it is
/// malformed or ends early.
async fn read_body(mut payload: Incoming, limit: usize) -> Result<Bytes, StatusCode> {
    let mut body = BytesMut::new();
    while let Some(frame) = payload.frame().await {
        let Ok(chunk) = frame.map_err(|_| StatusCode::BAD_REQUEST)?.into_data() else {
            continue;
        };
        if body.len() + chunk.len() > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn health(plane: &DataPlane) -> Response {
    let state = plane.state.load();
    body::json(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "node_id": plane.node_id,
            "version": env!("CARGO_PKG_VERSION"),
            "config_version": state.applied_index,
            "uptime_seconds": plane.started.elapsed().as_secs(),
        }),
    )
}

/// 200 when config is loaded, the node is not draining and every service has at
/// least one target that is healthy or not actively checked; else 503 naming each
/// failing check.
fn ready(plane: &DataPlane) -> Response {
    let state = plane.state.load();
    let mut failing = Vec::new();
    if plane.is_draining() {
        failing.push("node is draining (shutting down)".to_owned());
    }
    if let Some(why) = plane.consensus_stopped.get() {
        failing.push(format!(
            "raft stopped on this node ({why}): it serves its last applied state and gets no changes; restart it"
        ));
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
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    body::json(status, &body)
}

fn metrics(plane: &DataPlane) -> Response {
    // Read at scrape time: the limiter owns the keys, the gauge only mirrors them.
    let keys = plane.limiters.active_keys();
    plane
        .metrics
        .rate_limit_keys
        .set(i64::try_from(keys).unwrap_or(i64::MAX));
    match plane.metrics.render() {
        Ok(text) => body::with_body(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text.into(),
        ),
        Err(e) => body::with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("metrics: {e}").into(),
        ),
    }
}
