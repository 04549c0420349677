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
use crate::errors::{GatewayError, Kind, Source};
use cluster_config::Method;
use cluster_config::{RateLimitScope, Route, RouteMatch, TrustedProxies};
use sluice_actors::limiter::ClientLimiters;
use std::net::IpAddr;
use std::sync::Arc;

/// Header access, whatever the server's header map type is.
pub trait HeaderLookup {
    /// The value of header `name` (lower-case) if present and valid text.
    fn get_str(&self, name: &str) -> Option<&str>;

    /// Every value of header `name`, in the order received (lines that are not
    /// valid text left out).
    fn get_all_str(&self, name: &str) -> Vec<&str> {
        self.get_str(name).into_iter().collect()
    }

    /// How many lines of header `name` there are.
    fn count(&self, name: &str) -> usize {
        self.get_all_str(name).len()
    }
}

/// What the decisions see of a request.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The request path as routed: normalised (`crate::path`), no query string.
    pub path: &'a str,
    pub headers: &'a dyn HeaderLookup,
    /// The TCP peer (the client, or the load balancer in front of us).
    pub peer: Option<IpAddr>,
    /// `node.trusted_proxies`: the peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: &'a TrustedProxies,
}

impl RequestHead<'_> {
    /// The client's address: the peer, or what a trusted proxy forwarded (see
    /// [`crate::forwarded`]). The `ip` rate-limit scope keys on it.
    pub fn client_addr(&self) -> Option<IpAddr> {
        crate::forwarded::client_addr(self.peer, self.headers, self.trusted_proxies)
    }
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

/// The verdict of the rate-limit step: on a refusal the policy that refused, else
/// the policy closest to refusing (fewest requests left). Every response of the
/// request reports it (`X-RateLimit-*`, `RateLimit-Policy`, `RateLimit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDecision {
    /// The policy's name (`rate_limits[].name`).
    pub policy: Arc<str>,
    /// The scope the key was taken from: the policy's, or `ip` when the request
    /// had no key for it (an anonymous caller under a `user` or `client` policy).
    pub scope: RateLimitScope,
    pub limit: u64,
    pub remaining: u64,
    /// The policy's window, in seconds.
    pub window_secs: u64,
    /// Seconds until the window ends (token bucket: until the bucket is full),
    /// rounded up.
    pub reset_secs: u64,
    /// When that is (Unix seconds).
    pub reset_at: u64,
    /// `Some(seconds, >= 1)` when the request was refused: when to try again.
    pub retry_after: Option<u64>,
}

/// Step 0: what no route can serve, refused before routing so it never reaches an
/// upstream (or its breaker): an HTTP/1.1 request without `Host`, or any request
/// with two (400, RFC 9112 §3.2, as nginx and Envoy answer: two would let the
/// gateway and the upstream each read a different one), an `Expect` other than
/// `100-continue` (417; hyper's server answers `100-continue` itself when the body
/// is first read), and CONNECT with an authority-form target (`CONNECT host:443`,
/// 405: the gateway is not a tunnel). `target_path` is the request target's path as
/// received.
pub fn screen(
    method: &Method,
    version: http::Version,
    target_path: &str,
    headers: &dyn HeaderLookup,
) -> Result<(), GatewayError> {
    let hosts = headers.count("host");
    if hosts > 1 || (hosts == 0 && version == http::Version::HTTP_11) {
        return Err(GatewayError::new(
            Kind::BadRequest,
            Source::Client,
            "exactly one Host header is required (none is allowed only before HTTP/1.1)",
        ));
    }
    if headers
        .get_all_str("expect")
        .iter()
        .any(|v| !v.trim().eq_ignore_ascii_case("100-continue"))
    {
        return Err(GatewayError::new(
            Kind::ExpectationFailed,
            Source::Client,
            "only \"Expect: 100-continue\" is supported",
        ));
    }
    if *method == Method::CONNECT && !target_path.starts_with('/') {
        return Err(GatewayError::method_not_allowed(
            cluster_config::gateway::ANY_METHOD_ALLOW.join(", "),
        ));
    }
    Ok(())
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

/// Step 3: whether every rate limit that applies to this request admits it (see
/// [`crate::limits`]); `None` when none applies. A refusal is a decision too
/// (`retry_after` set), so the 429 can carry the same headers as an admission.
/// The limiter answers from memory: nothing here waits.
pub fn rate_limit(
    state: &DataPlaneState,
    limiters: &ClientLimiters,
    route: &Route,
    identity: Option<&Identity>,
    head: &RequestHead<'_>,
) -> Option<LimitDecision> {
    crate::limits::decide(&state.gateway.limits, limiters, route, identity, head)
}
