//! The admin API on `node.admin_listen` (see CONTRACT.md), a module per area:
//! [`cluster`] (members, debug views), [`config`] (the gateway config and its
//! entities), [`credentials`] (clients and API keys), [`signing`] (the
//! cluster's OAuth signing keys), [`ratelimits`] (a key's cluster-wide rate-limit
//! standing, and its reset) and `/admin/metrics` (this node's Prometheus text, so
//! the [`console`] can read it from its own origin) and [`webhooks`]
//! (subscriptions, `POST /admin/events`, deliveries, dead letters and replays).
//! The [`console`] (`/console`, outside
//! `/admin`) is a static page that logs in with an admin token and reads this API.
//!
//! Handlers are thin: a [`Caller`] extractor authenticates, the body is parsed,
//! and a change becomes one Raft command proposed through any node
//! ([`RaftNode::write_anywhere`]: a follower forwards it to the leader over the
//! cluster's Raft RPC). Validation happens once, in the state machine's apply,
//! against the state the command lands on; its refusal comes back through the
//! write's response as 422. Every write answers `X-Sluice-Version` (the log index
//! it was applied at). Reads are local unless `?consistent=true`, which waits for
//! the leader's read index ([`RaftNode::linearizable_barrier`]).
//!
//! Errors are [`AdminError`]s, rendered in the one JSON error shape with the
//! request id of the `sluice::admin_access` log line of the same request.

pub mod cluster;
pub mod config;
pub mod console;
pub mod credentials;
pub mod ratelimits;
pub mod signing;
pub mod webhooks;

use crate::dataplane::DataPlane;
use crate::errors::{error_response, X_REQUEST_ID};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;
use sluice_raft::command::{Problem, SecretHash};
use sluice_raft::{Command, Published, RaftNode, Response, WriteError};
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

pub const X_SLUICE_VERSION: &str = "x-sluice-version";

/// What the admin handlers share.
pub struct Admin {
    pub raft: Arc<RaftNode>,
    pub plane: web::Data<DataPlane>,
    /// `admin.token` from this node's config, hashed; replicated tokens also work.
    bootstrap_token: Option<SecretHash>,
}

impl Admin {
    pub fn new(raft: Arc<RaftNode>, plane: web::Data<DataPlane>, token: Option<&str>) -> Admin {
        Admin {
            raft,
            plane,
            bootstrap_token: token.map(|t| SecretHash::of(t.as_bytes())),
        }
    }

    /// Who is calling, from `Authorization: Bearer <token>`: the bootstrap token or
    /// a replicated admin token, each compared in constant time (as hashes).
    fn caller(&self, req: &HttpRequest) -> Result<Caller, AdminError> {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer_token)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(AdminError::Unauthorized);
        };
        if self
            .bootstrap_token
            .as_ref()
            .is_some_and(|h| h.matches(token.as_bytes()))
        {
            return Ok(Caller::Admin);
        }
        let published = self.current();
        let replicated = published
            .state
            .credentials
            .admin_tokens
            .values()
            .any(|t| t.token_hash.matches(token.as_bytes()));
        if replicated {
            Ok(Caller::Admin)
        } else {
            Err(AdminError::Unauthorized)
        }
    }

    /// The replicated state as this node has applied it.
    pub fn current(&self) -> Arc<Published> {
        self.raft.subscribe().borrow().clone()
    }

    /// The state to answer a read from: the local one, or with `?consistent=true`
    /// one that includes every write committed before the request.
    pub async fn read_state(&self, req: &HttpRequest) -> Result<Arc<Published>, AdminError> {
        let mut consistent = None;
        for kv in req.query_string().split('&').filter(|kv| !kv.is_empty()) {
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            if key != "consistent" {
                continue;
            }
            let value = match value {
                "true" => true,
                "false" => false,
                other => {
                    return Err(AdminError::BadRequest(format!(
                        "consistent must be true or false, not {other:?}"
                    )))
                }
            };
            if consistent.replace(value).is_some() {
                return Err(AdminError::BadRequest("consistent given twice".into()));
            }
        }
        let consistent = consistent.unwrap_or(false);
        if consistent {
            self.raft.linearizable_barrier().await?;
        }
        Ok(self.current())
    }

    /// [`Admin::write`], answered as most writes are: `{"version": N}` and
    /// `X-Sluice-Version: N`.
    pub async fn write_versioned(&self, command: Command) -> Result<HttpResponse, AdminError> {
        let version = self.write(command).await?;
        Ok(written(version, Versioned { version }))
    }

    /// Proposes `command` through any node; `Ok` carries the log index it was
    /// applied at. The state machine's refusal is 422 (or 404 for a missing entity).
    pub async fn write(&self, command: Command) -> Result<u64, AdminError> {
        self.write_answer(command).await.map(|(_, version)| version)
    }

    /// [`Admin::write`] keeping the state machine's answer when it carries data
    /// (a published event's id, a count).
    pub async fn write_answer(&self, command: Command) -> Result<(Response, u64), AdminError> {
        self.wait_seeded().await;
        let started = Instant::now();
        match self.raft.write_anywhere(command).await? {
            (Response::Rejected { problems }, _) => Err(AdminError::Invalid(problems)),
            (Response::NotFound { kind, id }, _) => {
                Err(AdminError::NotFound(format!("no {kind} {id:?}")))
            }
            (answer, version) => {
                self.plane
                    .metrics
                    .raft_commit_duration
                    .observe(started.elapsed().as_secs_f64());
                Ok((answer, version))
            }
        }
    }

    /// Waits, for at most [`SEED_WAIT`], until this node has offered its YAML
    /// gateway config to the cluster. The seed is applied only while the cluster
    /// has no config, so a write made just after a founding node's first start (a
    /// deploy script's first `PUT`) would otherwise become the cluster's whole
    /// config and the node's YAML routes would be skipped. Once settled this
    /// returns at once.
    async fn wait_seeded(&self) {
        let mut settled = self.plane.seed_settled.subscribe();
        let _ = tokio::time::timeout(SEED_WAIT, settled.wait_for(|done| *done)).await;
    }
}

/// How long an admin write waits for the node's seed (proposed as soon as there
/// is a leader): past that, it goes ahead.
const SEED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An authenticated admin API caller. Today only admin tokens; an API key of a
/// client with the role `publisher` joins for `POST /admin/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
}

impl FromRequest for Caller {
    type Error = AdminError;
    type Future = Ready<Result<Caller, AdminError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = match req.app_data::<web::Data<Admin>>() {
            Some(admin) => admin.caller(req),
            None => Err(AdminError::Internal("admin state missing".into())),
        };
        if caller.is_err() {
            warn!(peer = ?req.peer_addr(), path = req.path(), "admin request refused: bad or missing token");
        }
        ready(caller)
    }
}

/// Why an admin call failed. "Try again / ask the leader" (`NoLeader`,
/// `CommitTimeout`) is kept apart from the caller's mistakes and from failures.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("admin API: send Authorization: Bearer <admin token>")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// The change would leave an invalid state; nothing was applied.
    #[error("{} problem(s); nothing was applied", .0.len())]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NoLeader(String),
    #[error("{0}; it may still be applied (is a quorum of nodes up?)")]
    CommitTimeout(String),
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    fn code(&self) -> &'static str {
        match self {
            AdminError::BadRequest(_) => "bad_request",
            AdminError::Unauthorized => "unauthorized",
            AdminError::NotFound(_) => "not_found",
            AdminError::Invalid(_) => "invalid_config",
            AdminError::Conflict(_) => "membership_change_failed",
            AdminError::NoLeader(_) => "no_leader",
            AdminError::CommitTimeout(_) => "commit_timeout",
            AdminError::Internal(_) => "raft_failed",
        }
    }
}

impl From<WriteError> for AdminError {
    fn from(e: WriteError) -> AdminError {
        match e {
            WriteError::NoLeader | WriteError::ForwardToLeader { .. } => {
                AdminError::NoLeader(e.to_string())
            }
            // Proposed but not committed in time: it may still apply later (a retry
            // is safe: every admin write is a put or a delete).
            WriteError::Timeout(_) => AdminError::CommitTimeout(e.to_string()),
            WriteError::Conflict(m) => AdminError::Conflict(m),
            WriteError::NotFound(m) => AdminError::NotFound(m),
            WriteError::Fatal(m) => AdminError::Internal(m),
        }
    }
}

impl From<cluster_config::ConfigErrors> for AdminError {
    fn from(errors: cluster_config::ConfigErrors) -> AdminError {
        AdminError::Invalid(
            errors
                .0
                .into_iter()
                .map(|e| Problem::new(e.path, e.message))
                .collect(),
        )
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::NoLeader(_) | AdminError::CommitTimeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponseBuilder::new(self.status_code());
        match self {
            AdminError::Unauthorized => {
                b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            AdminError::NoLeader(_) | AdminError::CommitTimeout(_) => {
                b.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        let request_id = current_request_id();
        let problems = match self {
            AdminError::Invalid(p) => Some(p),
            _ => None,
        };
        error_response(b, self.code(), &self.to_string(), &request_id, problems)
    }
}

tokio::task_local! {
    /// The id of the admin request being handled (set by [`configure`]'s
    /// middleware), so an error rendered anywhere inside carries it.
    static REQUEST_ID: String;
}

fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

/// A successful write: `X-Sluice-Version` and a JSON body.
pub fn written(version: u64, body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((X_SLUICE_VERSION, version.to_string()))
        .json(body)
}

/// A successful read: the state's version as `X-Sluice-Version` (so a client
/// can tell whether it includes its own write) and a JSON body.
pub fn read(version: u64, body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((X_SLUICE_VERSION, version.to_string()))
        .json(body)
}

/// The body every plain write answers with.
#[derive(Serialize)]
pub struct Versioned {
    pub version: u64,
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service;
                let id = crate::errors::request_id(
                    req.headers().get(X_REQUEST_ID).map(|v| v.as_bytes()),
                );
                let method = req.method().clone();
                let path = req.path().to_owned();
                let started = Instant::now();
                let call = srv.call(req);
                REQUEST_ID.scope(id.clone(), async move {
                    let mut res = json_errors(call.await?, &id);
                    if let Ok(v) = header::HeaderValue::from_str(&id) {
                        res.headers_mut()
                            .insert(header::HeaderName::from_static(X_REQUEST_ID), v);
                    }
                    info!(
                        target: "sluice::admin_access",
                        request_id = %id,
                        method = %method,
                        path,
                        status = res.status().as_u16(),
                        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "admin request"
                    );
                    Ok(res)
                })
            })
            // Admin bodies are small JSON documents; larger is 413 before parsing.
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .default_service(web::to(no_such_operation))
            .route("/openapi.json", web::get().to(openapi))
            .route("/metrics", web::get().to(metrics))
            .configure(cluster::configure)
            .configure(config::configure)
            .configure(credentials::configure)
            .configure(ratelimits::configure)
            .configure(signing::configure)
            .configure(webhooks::configure),
    )
    .configure(console::configure);
}

/// The largest admin request body (413 above it).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Errors actix itself answers (a body over the limit, a path parameter that
/// does not parse, a missing route) come as plain text: rewritten here into the
/// one JSON error shape, with the request id.
fn json_errors<B: actix_web::body::MessageBody + 'static>(
    res: actix_web::dev::ServiceResponse<B>,
    request_id: &str,
) -> actix_web::dev::ServiceResponse {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return res.map_into_boxed_body();
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!("admin request bodies are limited to {MAX_BODY_BYTES} bytes"),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such admin resource".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed here".to_owned())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "send application/json".to_owned())
        }
        _ => ("bad_request", "malformed admin request".to_owned()),
    };
    let mut b = HttpResponseBuilder::new(status);
    for (name, value) in res.headers() {
        if name == header::ALLOW || name == header::WWW_AUTHENTICATE {
            b.append_header((name.clone(), value.clone()));
        }
    }
    let body = error_response(b, code, &message, request_id, None::<&()>);
    res.into_response(body)
}

/// The paths and methods the OpenAPI document describes, for 405's `Allow`.
fn documented() -> &'static [(actix_web::dev::ResourceDef, String)] {
    static DOC: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, String)>> =
        std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).unwrap_or_default();
        let mut out = Vec::new();
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            let methods: Vec<String> = ops
                .as_object()
                .into_iter()
                .flatten()
                .map(|(m, _)| m.to_ascii_uppercase())
                .filter(|m| ["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&m.as_str()))
                .collect();
            out.push((
                actix_web::dev::ResourceDef::new(path.as_str()),
                methods.join(", "),
            ));
        }
        out
    })
}

/// No route took the request: 405 with `Allow` when the path is one the API
/// has (under other methods), else 404; both in the JSON error shape.
async fn no_such_operation(req: HttpRequest) -> HttpResponse {
    let request_id = current_request_id();
    let allow = documented()
        .iter()
        .find(|(def, _)| def.is_match(req.path()))
        .map(|(_, allow)| allow.clone());
    match allow {
        Some(allow) => {
            let mut b = HttpResponseBuilder::new(StatusCode::METHOD_NOT_ALLOWED);
            b.insert_header((header::ALLOW, allow.clone()));
            error_response(
                b,
                "method_not_allowed",
                &format!(
                    "{} {} is not an operation; allowed: {allow}",
                    req.method(),
                    req.path()
                ),
                &request_id,
                None::<&()>,
            )
        }
        None => error_response(
            HttpResponseBuilder::new(StatusCode::NOT_FOUND),
            "not_found",
            &format!("no admin resource at {}", req.path()),
            &request_id,
            None::<&()>,
        ),
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("openapi.json"))
}

/// This node's Prometheus text, as the data plane's `/metrics` serves it, behind
/// the admin token: the console reads it from the admin origin (the data port is
/// another origin under its CSP, and is remapped in containers).
async fn metrics(admin: web::Data<Admin>, _: Caller) -> Result<HttpResponse, AdminError> {
    let text = admin
        .plane
        .metrics
        .render()
        .map_err(|e| AdminError::Internal(format!("metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(text))
}
