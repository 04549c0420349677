//! Data-plane errors: what went wrong, whose fault it was, and whether trying again
//! may help, mapped to the one JSON error shape in CONTRACT.md in one place.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use serde::Serialize;

/// Who caused an error: decides logging level and, later, retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    MethodNotAllowed,
    BadGateway,
    GatewayTimeout,
    ServiceUnavailable,
    CircuitOpen,
}

impl Kind {
    fn status(self) -> StatusCode {
        match self {
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
            Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::ServiceUnavailable | Kind::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable `error` field.
    fn code(self) -> &'static str {
        match self {
            Kind::NotFound => "not_found",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::BadGateway => "bad_gateway",
            Kind::GatewayTimeout => "gateway_timeout",
            Kind::ServiceUnavailable => "service_unavailable",
            Kind::CircuitOpen => "circuit_open",
        }
    }
}

#[derive(Debug)]
pub struct GatewayError {
    pub kind: Kind,
    pub source: Source,
    /// True when the same request may succeed if sent again (to another target).
    pub retryable: bool,
    pub message: String,
    /// Extra response headers (`Allow`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl GatewayError {
    pub fn new(kind: Kind, source: Source, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            source,
            retryable: false,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn not_found() -> Self {
        Self::new(Kind::NotFound, Source::Client, "no route matches this path")
    }

    pub fn method_not_allowed(allow: String) -> Self {
        let mut e = Self::new(
            Kind::MethodNotAllowed,
            Source::Client,
            format!("method not allowed on this path; allowed: {allow}"),
        );
        e.headers.push((header::ALLOW, allow));
        e
    }

    /// The service's circuit breaker is open: fail fast, say when to come back.
    pub fn circuit_open(service: &str, retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_millis().div_ceil(1000).max(1);
        let mut e = Self::new(
            Kind::CircuitOpen,
            Source::Upstream,
            format!("circuit breaker for service {service} is open; retry in {secs}s"),
        );
        e.headers.push((header::RETRY_AFTER, secs.to_string()));
        e
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn response(&self, request_id: &str) -> HttpResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
            request_id: &'a str,
        }
        let mut b = HttpResponse::build(self.status());
        for (name, value) in &self.headers {
            b.insert_header((name.clone(), value.as_str()));
        }
        b.insert_header((crate::proxy::X_REQUEST_ID, request_id));
        b.json(Body {
            error: self.kind.code(),
            message: &self.message,
            request_id,
        })
    }
}
