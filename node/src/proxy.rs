//! The request lifecycle, top to bottom (the shape of pingora's `ProxyHttp`):
//!
//! `route -> authenticate -> rate_limit -> circuit_check -> proxy -> response_filter -> record`
//!
//! One [`RequestCtx`] travels through the steps and collects what each decided.
//! `route`, `authenticate` and `rate_limit` are decisions on the request's head
//! ([`crate::phases`]). `response_filter` adds the headers every response carries
//! (the rate-limit headers too, whoever answered: upstream, 429 or a later
//! error), and `record` always runs, whatever
//! the outcome — also when the client goes away and the handler is dropped
//! mid-request ([`Recording`]: status 499, `client_closed`).
//!
//! Only the upstream's own failures count against its breaker: a client whose
//! body ends early, stalls or is malformed gets 400 (or nothing, if it is gone)
//! and the upstream's record is untouched. Error bodies never name an upstream
//! target; the log line of the same request id does. Nothing here waits on Raft, disk or another node: the state comes
//! from one `ArcSwap` load, limits and the breaker verdict from memory, and
//! outcomes go back to the service's actor without waiting.

use crate::body::{Body, Response, Streamed};
use crate::dataplane::{DataPlane, DataPlaneState};
use crate::errors::{GatewayError, Kind, Source, X_REQUEST_ID};
use crate::forwarded::X_FORWARDED_FOR;
use crate::listener::{Busy, ClientRequest, HeadClock};
use crate::path::{self, PathError};
use crate::phases::{self, HeaderLookup, Identity, LimitDecision, RequestHead};
use crate::telemetry::UNMATCHED;
use crate::upstream_client::{
    ClientBody, ResponseBody, UpstreamBody, UpstreamClient, UpstreamResponse,
};
use crate::upstream_h1;
use bytes::Bytes;
use cluster_config::{Route, Upstream};
use futures_util::future::Either;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use hyper::body::Incoming;
use sluice_actors::upstream::{Admission, UpstreamPool};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_USER_ID: &str = "x-user-id";
const X_USER_ROLES: &str = "x-user-roles";
const X_CLIENT_ID: &str = "x-client-id";
const FORWARDED: &str = "forwarded";
const X_REAL_IP: &str = "x-real-ip";

/// What one request has been decided so far; each step fills in its part.
pub struct RequestCtx {
    /// The client's sane `X-Request-ID`, else a new UUID; in every log line and
    /// response of this request.
    pub request_id: crate::errors::RequestId,
    pub started: Instant,
    /// The normalised request path when it differs from the raw one (routed and
    /// forwarded instead of it).
    pub normalized: Option<String>,
    /// The data-plane state this request is served with, start to end.
    pub state: Arc<DataPlaneState>,
    /// Whether the TCP peer is one of `node.trusted_proxies`: then its
    /// `X-Forwarded-For` (extended with the peer), `Forwarded` and `X-Real-IP` go
    /// upstream; anyone else's are replaced by the peer's address or dropped.
    pub peer_trusted: bool,
    /// Whether the client's connection is TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    pub route: Option<Arc<Route>>,
    pub identity: Option<Identity>,
    /// The rate-limit step's decision (admitted or refused), reported on every
    /// response of the request.
    pub limit: Option<LimitDecision>,
    /// The breaker's verdict (a probe reports back differently).
    pub admission: Option<Admission>,
    /// Index, in its service's pool, of the target the request was last sent to
    /// (its URL: [`RequestCtx::target_url`]).
    pub target: Option<usize>,
    /// The response status, and the error kind when the gateway answered itself.
    pub status: StatusCode,
    pub error: Option<Kind>,
    /// Why authentication refused the request (a metric label).
    pub auth_failure: Option<&'static str>,
    /// Time spent waiting on upstreams (every attempt), so `record` can tell the
    /// gateway's own share of the request's time.
    pub upstream_wait: Duration,
    /// HTTP/1.1: the connection is handling this request (its head clock stopped)
    /// until this is dropped: with the request, or with the streamed response
    /// body it is handed to.
    busy: Option<Busy>,
}

impl RequestCtx {
    fn new(req: &ClientRequest, plane: &DataPlane) -> RequestCtx {
        RequestCtx {
            request_id: crate::errors::RequestId::from_headers(req.headers()),
            started: Instant::now(),
            normalized: None,
            state: plane.state.load_full(),
            peer_trusted: !plane.trusted_proxies.is_empty()
                && req
                    .peer_addr()
                    .is_some_and(|a| plane.trusted_proxies.contains(a.ip())),
            tls: plane.tls,
            route: None,
            identity: None,
            limit: None,
            admission: None,
            target: None,
            status: StatusCode::OK,
            error: None,
            auth_failure: None,
            upstream_wait: Duration::ZERO,
            busy: req.head_clock().map(Busy::enter),
        }
    }

    /// URL of the target the request was last sent to; empty before any.
    fn target_url(&self) -> &str {
        let (Some(index), Some(route)) = (self.target, &self.route) else {
            return "";
        };
        self.state
            .gateway
            .pools
            .get(&route.service)
            .and_then(|h| h.pool.targets().get(index))
            .map_or("", |t| t.upstream.url.as_str())
    }
}

/// The data-plane handler for every path that is not a built-in endpoint.
pub async fn handle(
    req: ClientRequest,
    payload: Incoming,
    plane: &DataPlane,
    client: &UpstreamClient,
) -> Response {
    let mut rec = Recording::start(&req, plane);
    let ctx = &mut rec.ctx;
    let mut response = match lifecycle(ctx, &req, payload, plane, client).await {
        Ok(response) => response,
        Err(e) => {
            if e.is_noteworthy() {
                let upstream = ctx.target_url();
                warn!(request_id = %ctx.request_id, kind = ?e.kind, source = ?e.source, upstream, "{e}");
            }
            ctx.error = Some(e.kind);
            ctx.auth_failure = e.reason;
            e.response(&ctx.request_id)
        }
    };
    response_filter(ctx, &mut response);
    if *req.method() == Method::CONNECT
        && !response.status().is_success()
        && req.version() < Version::HTTP_2
    {
        // A refused tunnel: whatever the client sends next may be the tunnel's
        // bytes, not HTTP. The connection ends with this answer, as nginx's does.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    rec.finish(response.status());
    response
}

/// Makes step 7 (`record`) run exactly once per request: when the handler answers,
/// or, if the handler is dropped first (the client closed the connection), when
/// it is dropped. The in-flight
/// gauge goes up here and down in `record`, so it cannot leak.
struct Recording<'r> {
    plane: &'r DataPlane,
    req: &'r ClientRequest,
    ctx: RequestCtx,
    done: bool,
}

impl<'r> Recording<'r> {
    fn start(req: &'r ClientRequest, plane: &'r DataPlane) -> Recording<'r> {
        if plane.request_metrics {
            plane.metrics.in_flight.inc();
        }
        Recording {
            ctx: RequestCtx::new(req, plane),
            plane,
            req,
            done: false,
        }
    }

    fn finish(mut self, status: StatusCode) {
        self.ctx.status = status;
        self.done = true;
        record(self.plane, &self.ctx, self.req);
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let ctx = &mut self.ctx;
        ctx.status = crate::errors::client_closed_request();
        ctx.error = Some(Kind::ClientClosed);
        // A probe that never got its verdict gives its slot back.
        if let (Some(admission), Some(route)) = (ctx.admission.take(), &ctx.route) {
            if let Some(h) = ctx.state.gateway.pools.get(&route.service) {
                h.pool.release(admission);
            }
        }
        debug!(request_id = %ctx.request_id, "the client went away before its answer");
        record(self.plane, &self.ctx, self.req);
    }
}

/// The steps up to and including the upstream's answer; the first refusal ends it.
async fn lifecycle(
    ctx: &mut RequestCtx,
    req: &ClientRequest,
    payload: Incoming,
    plane: &DataPlane,
    client: &UpstreamClient,
) -> Result<Response, GatewayError> {
    let state = ctx.state.clone();
    phases::screen(req.method(), req.version(), req.path(), req.headers())?;
    let (routed, encoded_slash) = normalized_path(req.path())?;
    let head = RequestHead {
        method: req.method(),
        path: &routed,
        headers: req.headers(),
        peer: req.peer_addr().map(|a| a.ip()),
        trusted_proxies: &plane.trusted_proxies,
    };
    let route = phases::route(&state, &head)?;
    ctx.route = Some(route.clone());
    if encoded_slash && !route.allow_encoded_slashes {
        return Err(GatewayError::new(
            Kind::BadRequest,
            Source::Client,
            "encoded slashes (%2F, %5C) are not allowed in this route's paths",
        ));
    }
    ctx.identity = phases::authenticate(&state, &route, &head)?;
    rate_limit(ctx, plane, &route, &head)?;
    if let std::borrow::Cow::Owned(p) = routed {
        ctx.normalized = Some(p);
    }
    let pool = circuit_check(ctx, &state, &route)?;
    proxy(ctx, req, payload, pool, plane, client).await
}

/// The path to route and forward (see [`crate::path`]), and whether it holds an
/// encoded slash (allowed only on routes that opt in). A malformed path is 400.
fn normalized_path(raw: &str) -> Result<(std::borrow::Cow<'_, str>, bool), GatewayError> {
    match path::normalize(raw) {
        Ok(p) => Ok((p, false)),
        Err(PathError::EncodedSlash) => path::normalize_keeping_encoded_slashes(raw)
            .map(|p| (p, true))
            .map_err(|_| malformed_path()),
        Err(PathError::Malformed) => Err(malformed_path()),
    }
}

fn malformed_path() -> GatewayError {
    GatewayError::new(Kind::BadRequest, Source::Client, "malformed request path")
}

impl HeaderLookup for HeaderMap {
    fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }

    fn get_all_str(&self, name: &str) -> Vec<&str> {
        self.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        self.get_all(name).iter().count()
    }
}

/// Step 3: the rate limits that apply ([`phases::rate_limit`]). The decision is
/// kept for the response headers whatever happens next; a refusal ends the
/// request with 429.
fn rate_limit(
    ctx: &mut RequestCtx,
    plane: &DataPlane,
    route: &Route,
    head: &RequestHead<'_>,
) -> Result<(), GatewayError> {
    let decision = phases::rate_limit(
        &ctx.state,
        &plane.limiters,
        route,
        ctx.identity.as_ref(),
        head,
    );
    let refusal = decision.as_ref().and_then(|d| {
        d.retry_after
            .map(|secs| GatewayError::rate_limited(&d.policy, d.limit, d.window_secs, secs))
    });
    ctx.limit = decision;
    refusal.map_or(Ok(()), Err)
}

/// Step 4: the route's service and its breaker's published verdict (atomics
/// only); an open breaker answers 503 at once without touching the upstream.
fn circuit_check<'s>(
    ctx: &mut RequestCtx,
    state: &'s DataPlaneState,
    route: &Route,
) -> Result<&'s UpstreamPool, GatewayError> {
    let pool = state
        .gateway
        .pools
        .get(&route.service)
        .map(|h| &*h.pool)
        .ok_or_else(|| {
            GatewayError::new(
                Kind::ServiceUnavailable,
                Source::Internal,
                format!("service {} has no upstream pool", route.service),
            )
        })?;
    match pool.admit() {
        a @ (Admission::Allowed | Admission::Probe) => {
            ctx.admission = Some(a);
            Ok(pool)
        }
        Admission::Rejected { retry_after } => Err(GatewayError::circuit_open(
            &pool.service_name(),
            retry_after,
        )),
    }
}

/// Step 5: forward to one target of the route's service; on a connect failure of an
/// idempotent request whose body was not sent yet, try once more on another target.
/// Each attempt's outcome goes to the service's actor (`do_send`, no waiting).
async fn proxy(
    ctx: &mut RequestCtx,
    req: &ClientRequest,
    payload: Incoming,
    pool: &UpstreamPool,
    plane: &DataPlane,
    client: &UpstreamClient,
) -> Result<Response, GatewayError> {
    let Some(route) = ctx.route.clone() else {
        return Err(GatewayError::not_found());
    };
    let admission = ctx.admission.unwrap_or(Admission::Allowed);
    let body = RequestBody::new(payload);
    let mut exclude = None;
    let mut first_error = None;
    loop {
        let Some(target) = pool.pick(exclude) else {
            // A retry with nowhere else to go reports what the first attempt met.
            return Err(first_error.unwrap_or_else(|| {
                GatewayError::new(
                    Kind::ServiceUnavailable,
                    Source::Upstream,
                    format!("service {} has no upstream target available", route.service),
                )
            }));
        };
        let upstream = &target.target.upstream;
        ctx.target = Some(target.index);
        debug!(request_id = %ctx.request_id, route = %route.id, service = %route.service, target = %upstream.url, "routed");

        let sent = Instant::now();
        let result = send(ctx, req, &body, upstream, sent, route.timeout, client).await;
        let waited = sent.elapsed();
        ctx.upstream_wait += waited;
        // The client's failure (its body ended early, stalled or was malformed)
        // says nothing about the upstream: no verdict, and a probe slot goes back.
        if body.client_failed() {
            ctx.admission = None;
            pool.release(admission);
            return result.map(|r| respond(r, ctx.busy.take())).map_err(|_| {
                GatewayError::new(
                    Kind::BadRequestBody,
                    Source::Client,
                    "the request body ended early, stalled or was malformed",
                )
            });
        }
        ctx.admission = None;
        pool.report(
            matches!(&result, Ok(r) if !r.status.is_server_error()),
            admission,
        );
        match result {
            Ok(resp) => {
                if plane.request_metrics {
                    if let Some(rm) = ctx.state.gateway.route_metrics(&route) {
                        rm.upstream_duration.observe(waited.as_secs_f64());
                    }
                }
                return Ok(respond(resp, ctx.busy.take()));
            }
            Err(e)
                if e.retryable
                    && exclude.is_none()
                    && is_idempotent(req.method())
                    && body.unsent() =>
            {
                warn!(request_id = %ctx.request_id, target = %upstream.url, "{e}; retrying on another target");
                exclude = Some(target.index);
                first_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends the request to one target and waits for its response head, within the
/// route's timeout (counted from the end of the request body, like Envoy's route
/// timeout, so a slow upload is not cut off while it makes progress).
///
/// A bodiless request to a plain-HTTP upstream goes out on the proxy's own
/// HTTP/1.1 client ([`crate::upstream_h1`]), its head written straight from the
/// client's headers; any other on hyper's.
async fn send(
    ctx: &RequestCtx,
    req: &ClientRequest,
    body: &RequestBody,
    upstream: &Upstream,
    sent: Instant,
    timeout: Duration,
    client: &UpstreamClient,
) -> Result<UpstreamResponse, GatewayError> {
    let fut = if body.is_empty() && upstream.scheme == "http" {
        let head = h1_head(ctx, req, upstream);
        Either::Left(async move {
            let answer = client
                .send_h1(upstream_h1::Request {
                    authority: &upstream.authority,
                    head: &head,
                    head_only: req.method() == Method::HEAD,
                    idempotent: is_idempotent(req.method()),
                    sent,
                })
                .await;
            answer.map_err(|e| upstream_error(e.is_connect(), &e, &upstream.url))
        })
    } else {
        let mut up = http::Request::new(body.upstream_body());
        // Room for the client's headers and the gateway's own, so it never regrows.
        *up.headers_mut() = HeaderMap::with_capacity(req.headers().len() + 8);
        *up.method_mut() = req.method().clone();
        *up.uri_mut() = upstream_uri(ctx, req, upstream)?;
        copy_request_headers(req, up.headers_mut(), ctx);
        up.headers_mut()
            .insert(header::HOST, host_header(upstream)?);
        Either::Right(async move {
            let answer = client.send(up).await;
            answer.map_err(|e| upstream_error(e.is_connect(), &e, &upstream.url))
        })
    };

    let mut fut = std::pin::pin!(fut);
    let mut deadline = after(tokio::time::Instant::from_std(sent), timeout);
    // HTTP/1.1: the connection's timer, kept from one request to the next.
    let conn = req.head_clock();
    loop {
        tokio::select! {
            biased;
            r = &mut fut => return r,
            _ = sleep_until(conn, deadline) => {
                // The upload still moving means the upstream has not had the whole
                // request yet: wait on, but never longer than `timeout` idle.
                match body.next_deadline(timeout) {
                    Some(d) if d > tokio::time::Instant::now() => deadline = d,
                    // Waiting on the client's next body chunk, not on the upstream.
                    _ if body.fail_if_stalled() => {
                        return Err(GatewayError::new(
                            Kind::BadRequestBody,
                            Source::Client,
                            "the request body stalled",
                        ));
                    }
                    _ => return Err(GatewayError::new(
                        Kind::GatewayTimeout,
                        Source::Upstream,
                        format!("the upstream did not answer within {timeout:?}"),
                    )
                    .detail(&upstream.url)),
                }
            }
        }
    }
}

/// The head of a bodiless request for the own HTTP/1.1 client: request line
/// (the upstream's base path, the normalised path and the query), the client's
/// headers as [`copy_request_headers`] passes them, and `Host`.
fn h1_head(ctx: &RequestCtx, req: &ClientRequest, upstream: &Upstream) -> Vec<u8> {
    let path = ctx.normalized.as_deref().unwrap_or(req.path());
    let query = req.uri().query();
    let target = [
        upstream.base_path.as_str(),
        path,
        if query.is_some() { "?" } else { "" },
        query.unwrap_or(""),
    ];
    let mut head = upstream_h1::HeadWriter::new(req.method().as_str(), &target, 512);
    copy_request_headers(req, &mut head, ctx);
    head.header("host", host_of(upstream).as_bytes());
    head.finish()
}

/// Waits until `deadline` on the connection's reusable timer, or (HTTP/2, whose
/// requests share the connection) a timer of its own.
async fn sleep_until(conn: Option<&Rc<HeadClock>>, deadline: tokio::time::Instant) {
    match conn {
        Some(c) => c.request_timer.sleep_until(deadline).await,
        None => tokio::time::sleep_until(deadline).await,
    }
}

/// The target's URL for this request: the upstream's scheme, authority and base
/// path, then the (normalised) request path and query, built in one buffer.
fn upstream_uri(
    ctx: &RequestCtx,
    req: &ClientRequest,
    upstream: &Upstream,
) -> Result<http::Uri, GatewayError> {
    let path = ctx.normalized.as_deref().unwrap_or(req.path());
    let query = req.uri().query();
    let mut uri = String::with_capacity(
        upstream.scheme.len()
            + 3
            + upstream.authority.len()
            + upstream.base_path.len()
            + path.len()
            + query.map_or(0, |q| q.len() + 1),
    );
    for part in [
        upstream.scheme.as_str(),
        "://",
        &upstream.authority,
        &upstream.base_path,
        path,
    ] {
        uri.push_str(part);
    }
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(q);
    }
    http::Uri::from_maybe_shared(Bytes::from(uri)).map_err(|e| {
        GatewayError::new(Kind::BadRequest, Source::Client, "malformed request path")
            .caused_by(e.to_string())
    })
}

/// `Host` for the target: its authority, without the scheme's default port (as
/// hyper would write it, without its per-request `format!`).
fn host_header(upstream: &Upstream) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(host_of(upstream)).map_err(|e| {
        GatewayError::new(Kind::BadGateway, Source::Internal, "invalid upstream host")
            .caused_by(e.to_string())
    })
}

/// The target's authority, without the scheme's default port.
fn host_of(upstream: &Upstream) -> &str {
    let a = upstream.authority.as_str();
    match upstream.scheme.as_str() {
        "http" => a.strip_suffix(":80").unwrap_or(a),
        "https" => a.strip_suffix(":443").unwrap_or(a),
        _ => a,
    }
}

/// The client is told what kind of failure it met, never which target: that
/// goes to the log line (`detail`, `cause`) of the same request id.
fn upstream_error(connect: bool, e: &dyn std::error::Error, target: &str) -> GatewayError {
    if connect {
        return GatewayError::new(
            Kind::BadGateway,
            Source::Upstream,
            "cannot connect to the upstream",
        )
        .caused_by(error_chain(e))
        .retryable()
        .detail(target);
    }
    GatewayError::new(Kind::BadGateway, Source::Upstream, "the upstream failed")
        .caused_by(error_chain(e))
        .detail(target)
}

/// An error and its sources on one line (hyper's own `Display` names only the
/// outermost, e.g. "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `t + d`, or as far ahead as the clock goes: a duration from config never
/// overflows the clock (and panics the request).
fn after(t: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(MAX_TIMEOUT_SECS))
}

/// Bound on any wait the proxy computes (a day, as `services.*.timeout`).
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// Builds the client response from the upstream's, streaming its body; the
/// connection stays busy with the request until the body has gone out.
fn respond(up: UpstreamResponse, busy: Option<Busy>) -> Response {
    let UpstreamResponse {
        status,
        mut headers,
        mut body,
    } = up;
    // With `Transfer-Encoding` the body is delimited by it and any
    // `Content-Length` is wrong (RFC 9112 §6.3): not forwarded, not trusted.
    let encoded = headers.contains_key(header::TRANSFER_ENCODING);
    let length_header = headers.get(header::CONTENT_LENGTH);
    let length = length_header
        .filter(|_| !encoded)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Forwarded as sent when it is a plain number, else written anew below.
    let plain_length = length.is_some()
        && length_header.is_some_and(|v| v.as_bytes().iter().all(u8::is_ascii_digit));
    // The upstream's map is trimmed, not copied: usually one name goes
    // (`Connection`). `X-Request-ID` is replaced in `response_filter`.
    let skip = connection_listed(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .map(|v| v.as_bytes()),
    );
    let gone: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            is_hop_by_hop(n)
                || (*name == header::CONTENT_LENGTH && !plain_length)
                || skip.iter().any(|s| s.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    drop(skip);
    for name in &gone {
        headers.remove(name);
    }
    if let (Some(len), false) = (length, plain_length) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = status;
    // Kept also on an answer to HEAD, whose body is empty.
    *response.headers_mut() = headers;
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return response;
    }
    if let ResponseBody::H1(h1) = &mut body {
        if let Some(whole) = h1.take_whole() {
            // Handed over whole: the upstream's slot is free and, the body
            // having nothing left to produce, the client's connection no longer
            // busy with it.
            drop(body);
            drop(busy);
            *response.body_mut() = Body::full(whole);
            return response;
        }
    }
    *response.body_mut() = Body::Upstream(Box::new(Streamed { body, length, busy }));
    response
}

/// Where the upstream request's headers go: hyper's header map, or the head
/// bytes of the own HTTP/1.1 client.
trait HeaderSink {
    /// One of the client's headers (its name as parsed, lower case).
    fn add(&mut self, name: &HeaderName, value: &HeaderValue);
    /// One of the gateway's own.
    fn set(&mut self, name: &'static str, value: &[u8]);
}

impl HeaderSink for HeaderMap {
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append(name.clone(), value.clone());
    }

    fn set(&mut self, name: &'static str, value: &[u8]) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            self.insert(HeaderName::from_static(name), v);
        }
    }
}

impl HeaderSink for upstream_h1::HeadWriter {
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.client_header(name.as_str(), value);
    }

    fn set(&mut self, name: &'static str, value: &[u8]) {
        self.header(name, value);
    }
}

/// Copies the client's headers minus hop-by-hop and identity headers, and sets the
/// forwarding headers and the gateway's own identity headers. `Host` is left to
/// the client library (the upstream's own).
fn copy_request_headers(req: &ClientRequest, out: &mut impl HeaderSink, ctx: &RequestCtx) {
    let headers = req.headers();
    let skip = connection_listed(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .map(|v| v.as_bytes()),
    );
    let keep_credentials = ctx.route.as_ref().is_some_and(|r| r.forward_credentials);
    for (name, value) in headers.iter() {
        let n = name.as_str();
        if is_hop_by_hop(n)
            // The client's trailers are not forwarded: nor is their announcement.
            || name == header::TRAILER
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            // `100-continue` was answered here; nothing else gets past `screen`.
            || name == header::EXPECT
            || n == X_REQUEST_ID
            || n == X_FORWARDED_FOR
            || n == X_FORWARDED_PROTO
            || n == X_FORWARDED_HOST
            || (!ctx.peer_trusted && (n == FORWARDED || n == X_REAL_IP))
            || crate::headers::is_identity_header(n)
            || (!keep_credentials
                && (name == header::AUTHORIZATION || n == crate::auth::X_API_KEY))
            || skip.iter().any(|s| s.eq_ignore_ascii_case(n))
        {
            continue;
        }
        out.add(name, value);
    }
    out.set(X_REQUEST_ID, ctx.request_id.as_bytes());
    // The one end-to-end meaning of `TE` (hop-by-hop otherwise): the client takes
    // trailers, which the proxy forwards. gRPC servers require it.
    if headers
        .get_all(header::TE)
        .iter()
        .any(|v| upstream_h1::has_token(v.as_bytes(), "trailers"))
    {
        out.set("te", b"trailers");
    }
    if let Some(identity) = &ctx.identity {
        let roles = identity.roles.join(",");
        let client = identity.client_id.as_deref();
        for (name, value) in [
            (X_USER_ID, Some(identity.user_id.as_str())),
            (X_USER_ROLES, Some(roles.as_str())),
            (X_CLIENT_ID, client),
        ] {
            if let Some(v) = value {
                out.set(name, v.as_bytes());
            }
        }
    }
    // A trusted proxy's list is extended; anyone else's is replaced, so an
    // upstream never reads an address the client chose as the client's.
    let peer = req.peer_addr().map(|a| a.ip().to_canonical());
    let prior = if ctx.peer_trusted {
        headers.get_all_str(X_FORWARDED_FOR).join(", ")
    } else {
        String::new()
    };
    let xff = match (prior.is_empty(), peer) {
        (false, Some(ip)) => format!("{prior}, {ip}"),
        (true, Some(ip)) => ip_text(ip),
        (_, None) => prior,
    };
    if !xff.is_empty() {
        out.set(X_FORWARDED_FOR, xff.as_bytes());
    }
    out.set(X_FORWARDED_PROTO, if ctx.tls { b"https" } else { b"http" });
    // HTTP/2 carries the host in the URI authority, HTTP/1.1 in `Host`.
    let host = match headers.get(header::HOST) {
        Some(h) => Some(h.as_bytes()),
        None => req.uri().authority().map(|a| a.as_str().as_bytes()),
    };
    if let Some(h) = host {
        out.set(X_FORWARDED_HOST, h);
    }
}

/// An address as text; IPv4 (the usual peer) without the formatting machinery,
/// which costs more than the rest of the header work together.
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Hop-by-hop header names (lower case, as `http` keeps them): RFC 9110 §7.6.1's,
/// and the proxy ones. `Trailer` is end-to-end: the upstream's names the
/// trailers it sends, which go through (to an HTTP/1.1 client only when it sent
/// `TE: trailers`).
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "keep-alive"
            | "proxy-connection"
    )
}

/// Header names listed in `Connection` (hop-by-hop by declaration), borrowed from
/// its values. Usually there is no such header: then nothing is allocated.
fn connection_listed<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<&'a str> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
#[test]
fn ip_text_writes_what_display_does() {
    for ip in [
        "0.0.0.0",
        "127.0.0.1",
        "10.20.100.255",
        "203.0.113.9",
        "::1",
        "2001:db8::7",
    ] {
        let ip: std::net::IpAddr = ip.parse().expect("address");
        assert_eq!(ip_text(ip), ip.to_string());
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Step 6: headers every response carries, whoever produced it: the request id,
/// and on a limited route the rate-limit headers of the step's decision (the
/// upstream's own headers of these names are replaced).
fn response_filter(ctx: &RequestCtx, response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static(X_REQUEST_ID),
        ctx.request_id.header_value(),
    );
    if let Some(limit) = &ctx.limit {
        for (name, value) in [
            ("x-ratelimit-limit", limit.limit),
            ("x-ratelimit-remaining", limit.remaining),
            ("x-ratelimit-reset", limit.reset_at),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
        for (name, value) in [
            ("ratelimit-policy", crate::limits::policy_header(limit)),
            ("ratelimit", crate::limits::ratelimit_header(limit)),
        ] {
            if let Ok(v) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

/// Step 7: metrics and the access-log line. Always runs.
fn record(plane: &DataPlane, ctx: &RequestCtx, req: &ClientRequest) {
    let elapsed = ctx.started.elapsed();
    let method = req.method().as_str();
    let route = ctx
        .route
        .as_ref()
        .map_or(UNMATCHED, |r| r.template.as_str());
    let m = &plane.metrics;
    if let Some(limit) = ctx.limit.as_ref().filter(|l| l.retry_after.is_some()) {
        m.rate_limit_violations
            .with_label_values(&[route, limit.scope.as_str()])
            .inc();
    }
    if plane.request_metrics {
        m.in_flight.dec();
        if let Some(reason) = ctx.auth_failure {
            m.auth_failures.with_label_values(&[route, reason]).inc();
        }
        let seconds = elapsed.as_secs_f64();
        // What the gateway itself spent: all of it when it answered on its own.
        let overhead = elapsed.saturating_sub(ctx.upstream_wait).as_secs_f64();
        match ctx
            .route
            .as_ref()
            .and_then(|r| ctx.state.gateway.route_metrics(r))
        {
            Some(rm) => {
                rm.requests.inc(req.method(), ctx.status);
                rm.request_duration.observe(seconds);
                rm.overhead.observe(overhead);
            }
            None => {
                m.requests_total
                    .with_label_values(&[method, route, ctx.status.as_str()])
                    .inc();
                m.request_duration
                    .with_label_values(&[route])
                    .observe(seconds);
                m.overhead.with_label_values(&[route]).observe(overhead);
            }
        }
    }
    info!(
        target: "sluice::access",
        request_id = %ctx.request_id,
        method,
        path = req.path(),
        route,
        user = ctx.identity.as_ref().map_or("", |i| i.user_id.as_str()),
        client = ctx.identity.as_ref().and_then(|i| i.client_id.as_deref()).unwrap_or(""),
        upstream = ctx.target_url(),
        status = ctx.status.as_u16(),
        error = ctx.error.map_or("", Kind::code),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        version = ?req.version(),
        "request"
    );
}

/// The client's body, handed to each attempt's upstream request
/// ([`UpstreamBody::Client`]), which reads it in place when hyper's client asks
/// for a chunk: no task, no channel, and back-pressure straight to the client.
/// Until an attempt has asked, it can still be sent again: a connect failure
/// (which happens before that) leaves it whole for the retry on another target.
struct RequestBody {
    /// `None`: no body (nothing allocated; the request goes out bodiless).
    shared: Option<Arc<ClientBody>>,
    length: Option<u64>,
}

impl RequestBody {
    /// What hyper parsed says whether there is a body and how long it is: its
    /// `Content-Length` (HTTP/1.1 and HTTP/2 alike), chunked, or an HTTP/2 stream
    /// that did not end with its headers.
    fn new(payload: Incoming) -> Self {
        use hyper::body::Body as _;
        let length = payload.size_hint().exact();
        if payload.is_end_stream() || length == Some(0) {
            return RequestBody {
                shared: None,
                length: Some(0),
            };
        }
        RequestBody {
            shared: Some(ClientBody::new(payload)),
            length,
        }
    }

    /// No body to send (see [`Self::upstream_body`]).
    fn is_empty(&self) -> bool {
        self.shared.is_none()
    }

    /// No attempt has asked for the body yet: it may be sent to another target.
    fn unsent(&self) -> bool {
        !self.shared.as_ref().is_some_and(|b| b.upload().asked)
    }

    fn client_failed(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|b| b.upload().client_failed)
    }

    /// When the route timeout expires given the upload so far: `timeout` after the
    /// body finished, or after the last chunk while it is still moving (`None`:
    /// no upload, the timeout runs from the send, see `send`).
    fn next_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        let last = self.shared.as_ref()?.upload().last?;
        Some(after(tokio::time::Instant::from_std(last), timeout))
    }

    /// Whether the upstream's connection is waiting for the client's next chunk;
    /// if so, the client's body has stalled and is marked failed.
    fn fail_if_stalled(&self) -> bool {
        let Some(body) = &self.shared else {
            return false;
        };
        let mut upload = body.upload();
        if upload.waiting_on_client {
            upload.client_failed = true;
        }
        upload.waiting_on_client
    }

    /// The body of one attempt: nothing for a bodiless request.
    fn upstream_body(&self) -> UpstreamBody {
        match &self.shared {
            None => UpstreamBody::Empty,
            Some(body) => UpstreamBody::Client {
                length: self.length,
                body: body.clone(),
            },
        }
    }
}
