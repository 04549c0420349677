//! The decisions of the request lifecycle that do not depend on the HTTP server:
//! route, authenticate, rate-limit. Each takes what a request *is* (method, path,
//! headers, peer: a [`RequestHead`]) and the data-plane state, and returns a
//! decision; none touches actix types, so a second listener built on hyper (gRPC
//! needs HTTP trailers, which actix-http cannot send) reuses them as they are.
//! `proxy.rs` strings them together with the server-specific steps.
//!
//! Like everything on the request path these only read memory: the state is an
//! immutable value, and limiter decisions come from actors that answer from
//! memory.

use crate::dataplane::DataPlaneState;
use crate::errors::GatewayError;
use cluster_config::Method;
use cluster_config::{Route, RouteMatch};
use std::net::IpAddr;
use std::sync::Arc;

/// Header access, whatever the server's header map type is.
pub trait HeaderLookup {
    /// The value of header `name` (lower-case) if present and valid text.
    fn get_str(&self, name: &str) -> Option<&str>;
}

/// What the decisions see of a request.
#[allow(dead_code)] // `peer` is read by the rate-limit step (its own issue)
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The request path as routed: normalised (`crate::path`), no query string.
    pub path: &'a str,
    pub headers: &'a dyn HeaderLookup,
    /// The TCP peer (the client, or the load balancer in front of us).
    pub peer: Option<IpAddr>,
}

/// Who is calling, as established by [`authenticate`]; upstreams receive it as
/// `X-User-ID` / `X-User-Roles`.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The JWT subject, or the API key's client id.
    pub user_id: String,
    pub roles: Vec<String>,
    /// The API client the credential belongs to, if any (the `client` limit scope).
    pub client_id: Option<String>,
}

/// The verdict of the rate-limit step for an admitted request: the policy closest
/// to refusing, reported in the `X-RateLimit-*` headers of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDecision {
    pub limit: u64,
    pub remaining: u64,
    /// When the current window ends (Unix seconds).
    pub reset_at: u64,
}

/// Step 1: the route for this method and path. 404 when no path matches, 405 (with
/// `Allow`) when only the method misses.
pub fn route(state: &DataPlaneState, head: &RequestHead<'_>) -> Result<Arc<Route>, GatewayError> {
    match state.gateway.config.routes.lookup(head.method, head.path) {
        RouteMatch::Found(route) => Ok(route.clone()),
        RouteMatch::MethodNotAllowed(allow) => Err(GatewayError::method_not_allowed(allow)),
        RouteMatch::NotFound => Err(GatewayError::not_found()),
    }
}

/// Step 2: who is calling, per the route's `auth` policy (see [`crate::auth`]).
/// `Ok(None)` is an anonymous caller on a public route.
pub fn authenticate(
    state: &DataPlaneState,
    route: &Route,
    head: &RequestHead<'_>,
) -> Result<Option<Identity>, GatewayError> {
    crate::auth::authenticate(state, route, head)
}

/// Step 3: whether the cluster-wide limits that apply to this request admit it.
/// `Ok(None)`: no limit applies.
///
/// Pass-through today: limits arrive with their own issue (per-client limiter
/// actors answering from memory).
pub fn rate_limit(
    _state: &DataPlaneState,
    _route: &Route,
    _identity: Option<&Identity>,
    _head: &RequestHead<'_>,
) -> Result<Option<LimitDecision>, GatewayError> {
    Ok(None)
}
