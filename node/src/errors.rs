//! One error vocabulary for the node. Data-plane errors ([`GatewayError`]) say what
//! went wrong ([`Kind`]), whose fault it was ([`Source`]), whether trying again may
//! help, and what caused it; the admin API has its own kinds (`admin::AdminError`).
//! Both become the one JSON error shape of CONTRACT.md in [`error_response`],
//! carrying the request id that the access log line of the same request carries.

use actix_web::{HttpResponse, HttpResponseBuilder};
use http::{header, StatusCode};
use serde::Serialize;
use std::fmt;

/// The response header (and access-log field) that ties a request to its logs.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The request id for a request whose `X-Request-ID` is `client`: the client's
/// when it is sane (1–128 visible ASCII characters), else a new UUID. The admin
/// API's; the data plane's is a [`RequestId`], by the same rule.
pub fn request_id(client: Option<&[u8]>) -> String {
    match client {
        Some(b) if sane(b) => String::from_utf8_lossy(b).into_owned(),
        _ => RequestId::new().as_str().to_owned(),
    }
}

/// 1–128 visible ASCII characters.
fn sane(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
}

/// A request's id, checked once and kept as a header value: the data plane puts
/// it on the upstream request and on the response (a reference-count increment
/// each, no copy) and in log lines (as `&str`).
#[derive(Clone)]
pub struct RequestId(header::HeaderValue);

impl RequestId {
    /// See [`request_id`].
    pub fn from_headers(headers: &header::HeaderMap) -> RequestId {
        // A `HeaderName`, not a `&str`: the lookup need not parse the name first.
        const NAME: header::HeaderName = header::HeaderName::from_static(X_REQUEST_ID);
        match headers.get(NAME).filter(|v| sane(v.as_bytes())) {
            Some(v) => RequestId(v.clone()),
            None => RequestId::new(),
        }
    }

    /// A new UUID.
    fn new() -> RequestId {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated();
        // A hyphenated UUID is visible ASCII: always a valid header value.
        RequestId(
            header::HeaderValue::from_str(id.encode_lower(&mut buf))
                .unwrap_or(header::HeaderValue::from_static("-")),
        )
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (checked above), so this never falls back.
        self.0.to_str().unwrap_or("-")
    }

    pub fn header_value(&self) -> header::HeaderValue {
        self.0.clone()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// nginx's "client closed request": the status a request dropped mid-way is
/// recorded with (never sent: there is nobody left to send it to).
pub fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Who caused an error: decides the log level and whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request the gateway will not route (e.g. an encoded slash in the path).
    BadRequest,
    /// No or bad credentials (401, with `WWW-Authenticate`).
    Unauthorized,
    /// Valid credentials without the role the route needs (403).
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// An `Expect` other than `100-continue` (417): the gateway cannot meet it.
    ExpectationFailed,
    /// The client's request body ended early or was malformed (a short body, a
    /// connection closed mid-upload, a bad chunk, an HTTP/2 body longer than its
    /// `content-length`): the client's fault, never counted against the upstream.
    BadRequestBody,
    /// The client went away before it had an answer (nginx's 499); only ever in
    /// the access log and the metrics.
    ClientClosed,
    /// A rate limit refused the request (429, with `Retry-After`).
    TooManyRequests,
    BadGateway,
    GatewayTimeout,
    ServiceUnavailable,
    CircuitOpen,
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            Kind::BadRequestBody => StatusCode::BAD_REQUEST,
            Kind::ClientClosed => client_closed_request(),
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
            Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::ServiceUnavailable | Kind::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable `error` field.
    pub fn code(self) -> &'static str {
        match self {
            Kind::BadRequest => "bad_request",
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::NotFound => "not_found",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::ExpectationFailed => "expectation_failed",
            Kind::BadRequestBody => "bad_request_body",
            Kind::ClientClosed => "client_closed",
            Kind::TooManyRequests => "rate_limited",
            Kind::BadGateway => "bad_gateway",
            Kind::GatewayTimeout => "gateway_timeout",
            Kind::ServiceUnavailable => "service_unavailable",
            Kind::CircuitOpen => "circuit_open",
        }
    }
}

/// Not `Send`: a request, and so its errors, stay on one worker thread.
type Cause = Box<dyn std::error::Error>;

#[derive(Debug)]
pub struct GatewayError {
    pub kind: Kind,
    pub source: Source,
    /// True when the same request may succeed if sent again (to another target).
    pub retryable: bool,
    /// What the client is told.
    pub message: String,
    /// The underlying error, for logs (never sent to the client).
    pub cause: Option<Cause>,
    /// Extra response headers (`Allow`, `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(header::HeaderName, String)>,
    /// A refusal's reason from a closed set, as a metric label
    /// (`gateway_auth_failures_total{reason}`).
    pub reason: Option<&'static str>,
    /// A rate-limit refusal's `Retry-After` in seconds, repeated in the body
    /// (`retry_after`) for clients that read only the body.
    pub retry_after: Option<u64>,
}

impl GatewayError {
    pub fn new(kind: Kind, source: Source, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            source,
            retryable: false,
            message: message.into(),
            cause: None,
            headers: Vec::new(),
            reason: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(Kind::NotFound, Source::Client, "no route matches this path")
    }

    pub fn method_not_allowed(allow: String) -> Self {
        Self::new(
            Kind::MethodNotAllowed,
            Source::Client,
            format!("method not allowed on this path; allowed: {allow}"),
        )
        .header(header::ALLOW, allow)
    }

    /// The service's circuit breaker is open: fail fast, say when to come back.
    pub fn circuit_open(service: &str, retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_millis().div_ceil(1000).max(1);
        Self::new(
            Kind::CircuitOpen,
            Source::Upstream,
            format!("circuit breaker for service {service} is open; retry in {secs}s"),
        )
        .header(header::RETRY_AFTER, secs.to_string())
    }

    /// A rate limit refused the request: 429 with `Retry-After` (whole seconds,
    /// at least 1) and `retry_after` in the body.
    pub fn rate_limited(policy: &str, limit: u64, window_secs: u64, retry_after: u64) -> Self {
        let secs = retry_after.max(1);
        let mut e = Self::new(
            Kind::TooManyRequests,
            Source::Client,
            format!(
                "rate limit {policy:?} exceeded ({limit} requests per {window_secs}s); \
                 retry in {secs}s"
            ),
        )
        .header(header::RETRY_AFTER, secs.to_string());
        e.retry_after = Some(secs);
        e
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    pub fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Adds internal detail (an upstream URL) to the cause: the log line shows
    /// it, the client never does.
    pub fn detail(mut self, detail: &str) -> Self {
        self.cause = Some(match self.cause.take() {
            Some(cause) => format!("{detail}: {cause}").into(),
            None => detail.into(),
        });
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Whether this is worth a warning: expected refusals (client mistakes, an open
    /// breaker, a rate limit) are counted by metrics, not logged, or an outage or
    /// an abusive client would flood the log.
    pub fn is_noteworthy(&self) -> bool {
        self.source != Source::Client && self.kind != Kind::CircuitOpen
    }

    /// The answer to the client: the JSON error body, this error's headers and
    /// `X-Request-ID`.
    pub fn response(&self, request_id: &str) -> crate::body::Response {
        let body = error_body::<()>(
            self.kind.code(),
            &self.message,
            request_id,
            None,
            self.retry_after,
        );
        let mut response = crate::body::with_body(self.status(), "application/json", body.into());
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            if let Ok(v) = header::HeaderValue::from_str(value) {
                headers.insert(name.clone(), v);
            }
        }
        if let Ok(v) = header::HeaderValue::from_str(request_id) {
            headers.insert(header::HeaderName::from_static(X_REQUEST_ID), v);
        }
        response
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// The one JSON error shape (CONTRACT.md): `{"error","message","request_id"}`,
/// plus `errors` (a list of problems) where there are several. Sets
/// `X-Request-ID` so the client can quote it and operators find the log line.
pub fn error_response<T: Serialize>(
    mut b: HttpResponseBuilder,
    code: &str,
    message: &str,
    request_id: &str,
    errors: Option<&T>,
) -> HttpResponse {
    b.insert_header((X_REQUEST_ID, request_id))
        .content_type("application/json")
        .body(error_body(code, message, request_id, errors, None))
}

/// The JSON error body, with `retry_after` (seconds) when set: a 429's.
fn error_body<T: Serialize>(
    code: &str,
    message: &str,
    request_id: &str,
    errors: Option<&T>,
    retry_after: Option<u64>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a, T: Serialize> {
        error: &'a str,
        message: &'a str,
        request_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<&'a T>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    }
    serde_json::to_vec(&Body {
        error: code,
        message,
        request_id,
        errors,
        retry_after,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_cause_for_logs_not_for_clients() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = GatewayError::new(Kind::BadGateway, Source::Upstream, "cannot connect")
            .caused_by(io)
            .retryable();
        assert_eq!(e.to_string(), "cannot connect: refused");
        assert!(std::error::Error::source(&e).is_some());
        let resp = e.response("rid-1");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            resp.headers()
                .get(X_REQUEST_ID)
                .and_then(|v| v.to_str().ok()),
            Some("rid-1")
        );
    }

    /// The whole body of a data-plane response.
    async fn body_of(resp: crate::body::Response) -> bytes::Bytes {
        use http_body_util::BodyExt;
        resp.into_body().collect().await.expect("body").to_bytes()
    }

    #[actix_rt::test]
    async fn a_rate_limit_refusal_says_when_to_come_back() {
        let e = GatewayError::rate_limited("search", 100, 60, 0);
        let resp = e.response("rid-2");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1"),
            "Retry-After is at least 1"
        );
        let body = body_of(resp).await;
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["request_id"], "rid-2");
        assert_eq!(body["retry_after"], 1);
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("\"search\"")),
            "{body}"
        );
        // Other errors have no `retry_after`.
        let resp = GatewayError::not_found().response("rid-3");
        let body = body_of(resp).await;
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert!(body.get("retry_after").is_none(), "{body}");
    }

    #[test]
    fn new_kinds_map_to_their_statuses() {
        assert_eq!(Kind::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Kind::Forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            Kind::TooManyRequests.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(Kind::TooManyRequests.code(), "rate_limited");
    }
}
