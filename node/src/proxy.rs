//! The request lifecycle, top to bottom:
//!
//! `route -> authenticate -> rate-limit -> circuit check -> proxy -> record`
//!
//! Each step is a small function. Authentication and rate limiting arrive with
//! their own issues and slot in between `route` and the circuit check; `record`
//! always runs, whatever the outcome. Nothing here waits on Raft, disk, an actor
//! or another node: config comes from one `ArcSwap` load, the breaker verdict from
//! atomics, and outcomes go back to the service's actor without waiting.

use crate::errors::{GatewayError, Kind, Source};
use crate::runtime::{RouteMetrics, Shared, Snapshot};
use crate::telemetry::UNMATCHED;
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::error::SendRequestError;
use bytes::Bytes;
use cluster_config::{Route, RouteMatch};
use futures_util::Stream;
use sluice_actors::upstream::{Admission, UpstreamPool};
use sluice_actors::UpstreamHandle;
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub const X_REQUEST_ID: &str = "x-request-id";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
/// Identity headers only the gateway may set; a client's copies are always removed.
const IDENTITY_HEADERS: [&str; 2] = ["x-user-id", "x-user-roles"];

/// What `record` needs to know about how a request ended.
struct Outcome {
    status: StatusCode,
    route: Option<Arc<Route>>,
    target: Option<String>,
}

/// The data-plane handler for every path that is not a built-in endpoint.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let started = Instant::now();
    if shared.request_metrics {
        shared.metrics.in_flight.inc();
    }
    let request_id = request_id(&req);
    let snapshot = shared.snapshot.load_full();

    let mut outcome = Outcome {
        status: StatusCode::OK,
        route: None,
        target: None,
    };
    let result = match route(&snapshot, &req) {
        Ok(route) => {
            outcome.route = Some(route.clone());
            // Authentication and rate limiting slot in here (their own issues).
            match upstream(&snapshot, &route).and_then(|h| circuit_check(&h.pool).map(|a| (h, a))) {
                Ok((handle, admission)) => {
                    let pool = &handle.pool;
                    proxy(
                        &req,
                        payload,
                        pool,
                        admission,
                        &route,
                        snapshot.route_metrics(&route),
                        &client,
                        &shared,
                        &request_id,
                        &mut outcome,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(resp) => resp,
        Err(e) => {
            // Expected refusals (client mistakes, an open breaker) are not warnings:
            // under an outage they would flood the log; metrics count them.
            if e.source != Source::Client && e.kind != Kind::CircuitOpen {
                warn!(request_id = %request_id, kind = ?e.kind, source = ?e.source, "{}", e.message);
            }
            e.response(&request_id)
        }
    };
    outcome.status = response.status();
    record(&shared, &snapshot, &req, &request_id, started, &outcome);
    response
}

/// Step 1: find the route. 404 when no path matches, 405 (with `Allow`) when only
/// the method misses.
fn route(snapshot: &Snapshot, req: &HttpRequest) -> Result<Arc<Route>, GatewayError> {
    match snapshot.gateway.routes.lookup(req.method(), req.path()) {
        RouteMatch::Found(route) => Ok(route.clone()),
        RouteMatch::MethodNotAllowed(allow) => Err(GatewayError::method_not_allowed(allow)),
        RouteMatch::NotFound => Err(GatewayError::not_found()),
    }
}

/// The route's service: its targets, their state and its breaker.
fn upstream<'a>(snapshot: &'a Snapshot, route: &Route) -> Result<&'a UpstreamHandle, GatewayError> {
    snapshot.pools.get(&route.service).ok_or_else(|| {
        GatewayError::new(
            Kind::ServiceUnavailable,
            Source::Internal,
            format!("service {} has no upstream pool", route.service),
        )
    })
}

/// Step 4: the circuit check reads the breaker's published state (atomics only);
/// an open breaker answers 503 at once without touching the upstream.
fn circuit_check(pool: &UpstreamPool) -> Result<Admission, GatewayError> {
    match pool.admit() {
        a @ (Admission::Allowed | Admission::Probe) => Ok(a),
        Admission::Rejected { retry_after } => Err(GatewayError::circuit_open(
            &pool.service_name(),
            retry_after,
        )),
    }
}

/// Step 5: forward to one target of the route's service; on a connect failure of an
/// idempotent request whose body was not sent yet, try once more on another target.
/// Each attempt's outcome goes to the service's actor (`do_send`, no waiting).
#[allow(clippy::too_many_arguments)]
async fn proxy(
    req: &HttpRequest,
    payload: web::Payload,
    pool: &UpstreamPool,
    admission: Admission,
    route: &Route,
    route_metrics: Option<&RouteMetrics>,
    client: &awc::Client,
    shared: &Shared,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<HttpResponse, GatewayError> {
    let body = RequestBody::new(req, payload);
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
        outcome.target = Some(upstream.url.clone());
        debug!(request_id, route = %route.id, service = %route.service, target = %upstream.url, "routed");

        let sent = Instant::now();
        let result = send(
            req,
            &body,
            route,
            pool,
            target.index,
            client,
            shared,
            request_id,
        )
        .await;
        pool.report(
            matches!(&result, Ok(r) if !r.status().is_server_error()),
            admission,
        );
        match result {
            Ok(resp) => {
                if let Some(rm) = route_metrics.filter(|_| shared.request_metrics) {
                    rm.upstream_duration.observe(sent.elapsed().as_secs_f64());
                }
                return Ok(respond(resp, request_id));
            }
            Err(e)
                if e.retryable
                    && exclude.is_none()
                    && is_idempotent(req.method())
                    && body.unsent() =>
            {
                warn!(request_id, target = %upstream.url, "{}; retrying on another target", e.message);
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
#[allow(clippy::too_many_arguments)]
async fn send(
    req: &HttpRequest,
    body: &RequestBody,
    route: &Route,
    pool: &UpstreamPool,
    index: usize,
    client: &awc::Client,
    shared: &Shared,
    request_id: &str,
) -> Result<awc::ClientResponse, GatewayError> {
    let upstream = &pool.targets()[index].upstream;
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let uri = format!(
        "{}://{}{}{}",
        upstream.scheme, upstream.authority, upstream.base_path, path
    );
    let mut up = client.request(req.method().clone(), uri);
    copy_request_headers(req, up.headers_mut(), shared.tls, request_id);

    let progress = body.progress.clone();
    let fut = match body.kind {
        // `body::None`, not `send()`: no `Content-Length: 0` on a GET.
        BodyKind::Empty => up.send_body(actix_web::body::None::new()),
        BodyKind::Sized(len) => up.send_body(SizedStream::new(len, body.stream())),
        BodyKind::Stream => up.send_body(BodyStream::new(body.stream())),
    };
    let timeout = route.timeout;
    let mut fut = std::pin::pin!(fut);
    let mut deadline = tokio::time::Instant::now() + timeout;
    let result = loop {
        tokio::select! {
            r = &mut fut => break r,
            _ = tokio::time::sleep_until(deadline) => {
                // The upload still moving means the upstream has not had the whole
                // request yet: wait on, but never longer than `timeout` idle.
                match progress.next_deadline(timeout) {
                    Some(d) if d > tokio::time::Instant::now() => deadline = d,
                    _ => return Err(GatewayError::new(
                        Kind::GatewayTimeout,
                        Source::Upstream,
                        format!("upstream {} did not answer within {:?}", upstream.url, timeout),
                    )),
                }
            }
        }
    };
    result.map_err(|e| upstream_error(e, &upstream.url))
}

fn upstream_error(e: SendRequestError, target: &str) -> GatewayError {
    match e {
        SendRequestError::Connect(err) => GatewayError::new(
            Kind::BadGateway,
            Source::Upstream,
            format!("cannot connect to upstream {target}: {err}"),
        )
        .retryable(),
        SendRequestError::Timeout => GatewayError::new(
            Kind::GatewayTimeout,
            Source::Upstream,
            format!("upstream {target} timed out"),
        ),
        other => GatewayError::new(
            Kind::BadGateway,
            Source::Upstream,
            format!("upstream {target} failed: {other}"),
        ),
    }
}

/// Builds the client response from the upstream's, streaming its body.
fn respond(up: awc::ClientResponse, request_id: &str) -> HttpResponse {
    let mut b = HttpResponse::build(up.status());
    let skip = connection_listed(up.headers());
    let mut length = None;
    for (name, value) in up.headers() {
        if name == header::CONTENT_LENGTH {
            length = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
            continue;
        }
        if is_hop_by_hop(name) || skip.iter().any(|s| s == name) || name == X_REQUEST_ID {
            continue;
        }
        b.append_header((name.clone(), value.clone()));
    }
    b.insert_header((X_REQUEST_ID, request_id));
    let status = up.status();
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return b.finish();
    }
    match length {
        Some(len) => b.body(SizedStream::new(len, up)),
        None => b.streaming(up),
    }
}

/// Copies the client's headers minus hop-by-hop and identity headers, and sets the
/// forwarding headers. `Host` is left to the client library (the upstream's own).
fn copy_request_headers(req: &HttpRequest, out: &mut HeaderMap, tls: bool, request_id: &str) {
    let skip = connection_listed(req.headers());
    for (name, value) in req.headers() {
        if is_hop_by_hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == X_REQUEST_ID
            || name == X_FORWARDED_FOR
            || name == X_FORWARDED_PROTO
            || name == X_FORWARDED_HOST
            || IDENTITY_HEADERS.contains(&name.as_str())
            || skip.iter().any(|s| s == name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert(HeaderName::from_static(X_REQUEST_ID), v);
    }
    let peer = req.peer_addr().map(|a| a.ip().to_string());
    let prior = req
        .headers()
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok());
    let xff = match (prior, peer) {
        (Some(p), Some(ip)) => format!("{p}, {ip}"),
        (None, Some(ip)) => ip,
        (Some(p), None) => p.to_owned(),
        (None, None) => String::new(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        if !xff.is_empty() {
            out.insert(HeaderName::from_static(X_FORWARDED_FOR), v);
        }
    }
    out.insert(
        HeaderName::from_static(X_FORWARDED_PROTO),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    // HTTP/2 carries the host in the URI authority, HTTP/1.1 in `Host`.
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(h) = host {
        out.insert(HeaderName::from_static(X_FORWARDED_HOST), h);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Header names listed in `Connection` (hop-by-hop by declaration). Usually none,
/// so this allocates nothing in the common case.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Keeps a client's `X-Request-ID` when it is sane, else makes a new one.
fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Step 6: metrics and the access-log line. Always runs.
fn record(
    shared: &Shared,
    snapshot: &Snapshot,
    req: &HttpRequest,
    request_id: &str,
    started: Instant,
    o: &Outcome,
) {
    let elapsed = started.elapsed();
    let method = req.method().as_str();
    let route = o.route.as_ref().map_or(UNMATCHED, |r| r.template.as_str());
    let m = &shared.metrics;
    if shared.request_metrics {
        m.in_flight.dec();
        m.requests_total
            .with_label_values(&[method, route, o.status.as_str()])
            .inc();
        let seconds = elapsed.as_secs_f64();
        match o.route.as_ref().and_then(|r| snapshot.route_metrics(r)) {
            Some(rm) => rm.request_duration.observe(seconds),
            None => m
                .request_duration
                .with_label_values(&[route])
                .observe(seconds),
        }
    }
    info!(
        target: "sluice::access",
        request_id,
        method,
        path = req.path(),
        route,
        upstream = o.target.as_deref().unwrap_or(""),
        status = o.status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        version = ?req.version(),
        "request"
    );
}

#[derive(Debug, Clone, Copy)]
enum BodyKind {
    Empty,
    Sized(u64),
    Stream,
}

/// Upload progress, so the timeout can start when the upstream has the whole body.
#[derive(Default)]
struct Progress {
    /// When the last chunk went out (or the body ended).
    last: Cell<Option<Instant>>,
    done: Cell<bool>,
    started: Cell<bool>,
}

impl Progress {
    /// When the route timeout expires given the upload so far: `timeout` after the
    /// body finished, or after the last chunk while it is still moving.
    fn next_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        if !self.started.get() && !self.done.get() {
            return None;
        }
        self.last
            .get()
            .map(|t| tokio::time::Instant::from_std(t + timeout))
    }
}

/// The client's body, handed to the upstream request lazily: it is taken out of the
/// slot only when the client library first polls it, so after a connect failure
/// (which happens before any polling) it is still there for the retry.
struct RequestBody {
    kind: BodyKind,
    slot: Rc<RefCell<Option<web::Payload>>>,
    progress: Rc<Progress>,
}

impl RequestBody {
    fn new(req: &HttpRequest, payload: web::Payload) -> Self {
        let h = req.headers();
        let length = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let kind = match length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Sized(n),
            None if h.contains_key(header::TRANSFER_ENCODING) => BodyKind::Stream,
            // HTTP/2 bodies need no length header; assume one unless the method
            // normally has none.
            None if req.version() == Version::HTTP_2
                && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) =>
            {
                BodyKind::Stream
            }
            None => BodyKind::Empty,
        };
        let progress = Rc::new(Progress::default());
        if matches!(kind, BodyKind::Empty) {
            progress.done.set(true);
            progress.last.set(Some(Instant::now()));
        }
        RequestBody {
            kind,
            slot: Rc::new(RefCell::new(Some(payload))),
            progress,
        }
    }

    fn unsent(&self) -> bool {
        self.slot.borrow().is_some()
    }

    fn stream(&self) -> LazyBody {
        LazyBody {
            slot: self.slot.clone(),
            taken: None,
            progress: self.progress.clone(),
        }
    }
}

struct LazyBody {
    slot: Rc<RefCell<Option<web::Payload>>>,
    taken: Option<web::Payload>,
    progress: Rc<Progress>,
}

impl Stream for LazyBody {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.taken.is_none() {
            this.taken = this.slot.borrow_mut().take();
            this.progress.started.set(true);
            this.progress.last.set(Some(Instant::now()));
        }
        let Some(payload) = this.taken.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(payload).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.progress.last.set(Some(Instant::now())),
            Poll::Ready(None) => {
                this.progress.done.set(true);
                this.progress.last.set(Some(Instant::now()));
            }
            _ => {}
        }
        polled
    }
}
