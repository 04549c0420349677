//! The admin API on `node.admin_listen` (see CONTRACT.md): thin handlers that
//! authenticate, validate, and turn each change into one Raft command. Any node
//! takes writes: a follower forwards them to the leader and returns its answer.
//! Every write answers with `X-Sluice-Version` (the log index it was applied at).
//! Reads are local unless `?consistent=true`.

// Helpers here return a ready error response as `Err`; admin calls are rare, so the
// size of `HttpResponse` in a `Result` costs nothing that matters.
#![allow(clippy::result_large_err)]

use crate::runtime::Shared;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use cluster_config::{parse_gateway_json, Gateway, GatewaySpec, Origins};
use openraft::BasicNode;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_raft::command::{route_id, ApiClient, ApiKey, SecretHash};
use sluice_raft::{Command, RaftNode, Response, WriteError};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

pub const X_SLUICE_VERSION: &str = "x-sluice-version";
/// Set on requests one node forwards to the leader, so they are never bounced on.
const X_SLUICE_FORWARDED: &str = "x-sluice-forwarded";

/// What the admin handlers share.
pub struct Admin {
    pub raft: Arc<RaftNode>,
    pub shared: web::Data<Shared>,
    /// `admin.token` from this node's config, hashed; replicated tokens also work.
    bootstrap_token: Option<SecretHash>,
}

impl Admin {
    pub fn new(raft: Arc<RaftNode>, shared: web::Data<Shared>, token: Option<&str>) -> Admin {
        Admin {
            raft,
            shared,
            bootstrap_token: token.map(|t| SecretHash::of(t.as_bytes())),
        }
    }

    /// Bearer token check, in constant time per candidate.
    fn authorized(&self, req: &HttpRequest) -> bool {
        let Some(token) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return false;
        };
        if self
            .bootstrap_token
            .as_ref()
            .is_some_and(|h| h.matches(token.as_bytes()))
        {
            return true;
        }
        let state = self.raft.subscribe();
        let published = state.borrow();
        let ok = published
            .state
            .admin_tokens
            .values()
            .any(|t| t.token_hash.matches(token.as_bytes()));
        ok
    }

    /// The leader's admin address, if one is known and it is not this node.
    fn leader_addr(&self) -> Option<String> {
        let m = self.raft.raft().metrics().borrow().clone();
        let leader = m.current_leader.filter(|l| *l != m.id)?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.raft().metrics().borrow().clone();
        m.current_leader == Some(m.id)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/openapi.json", web::get().to(openapi))
            .route("/cluster", web::get().to(cluster_info))
            .route("/cluster/nodes", web::post().to(add_node))
            .route("/cluster/nodes/{id}", web::delete().to(remove_node))
            .route("/config", web::get().to(get_config))
            .route("/config", web::put().to(put_config))
            .route("/services/{name}", web::get().to(get_service))
            .route("/services/{name}", web::put().to(put_service))
            .route("/services/{name}", web::delete().to(delete_service))
            .route("/routes/{id}", web::get().to(get_route))
            .route("/routes/{id}", web::put().to(put_route))
            .route("/routes/{id}", web::delete().to(delete_route))
            .route("/clients", web::post().to(create_client))
            .route("/keys", web::post().to(create_key))
            .route("/keys/{id}", web::delete().to(revoke_key)),
    );
}

// ----------------------------------------------------------------- helpers ----

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": code,
        "message": message.into(),
        "request_id": uuid::Uuid::new_v4().to_string(),
    }))
}

fn unauthorized() -> HttpResponse {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "admin API: send Authorization: Bearer <admin token>",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

fn no_leader(message: impl Into<String>) -> HttpResponse {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

fn invalid(problems: Vec<(String, String)>) -> HttpResponse {
    let count = problems.len();
    HttpResponse::UnprocessableEntity().json(json!({
        "error": "invalid_config",
        "message": format!("{count} problem(s); nothing was applied"),
        "request_id": uuid::Uuid::new_v4().to_string(),
        "errors": problems
            .into_iter()
            .map(|(path, message)| json!({ "path": path, "message": message }))
            .collect::<Vec<_>>(),
    }))
}

fn config_errors(errors: cluster_config::ConfigErrors) -> HttpResponse {
    invalid(errors.0.into_iter().map(|e| (e.path, e.message)).collect())
}

macro_rules! authorize {
    ($admin:expr, $req:expr) => {
        if !$admin.authorized(&$req) {
            warn!(peer = ?$req.peer_addr(), path = $req.path(), "admin request refused: bad or missing token");
            return unauthorized();
        }
    };
}

/// Proposes `command` through any node and maps the outcome to HTTP.
async fn write(admin: &Admin, command: Command, ok: impl FnOnce(u64) -> Value) -> HttpResponse {
    let started = Instant::now();
    let result = admin.raft.write_anywhere(command).await;
    match result {
        Ok((Response::Applied, version)) => {
            admin
                .shared
                .metrics
                .raft_commit_duration
                .observe(started.elapsed().as_secs_f64());
            HttpResponse::Ok()
                .insert_header((X_SLUICE_VERSION, version.to_string()))
                .json(ok(version))
        }
        Ok((Response::Rejected { problems }, _)) => {
            invalid(problems.into_iter().map(|p| (p.path, p.message)).collect())
        }
        Ok((Response::NotFound { kind, id }, _)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {kind} {id:?}"),
        ),
        Err(e @ (WriteError::NoLeader | WriteError::ForwardToLeader { .. })) => {
            no_leader(format!("{e}"))
        }
        // Proposed but not committed in time: it may still apply later (a retry is
        // safe: every admin write is a put or a delete).
        Err(e @ WriteError::Timeout(_)) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "commit_timeout",
                format!("{e}; it may still be applied (is a quorum of nodes up?)"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        Err(WriteError::Fatal(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "raft_failed", e),
    }
}

fn versioned(version: u64) -> Value {
    json!({ "version": version })
}

/// For `?consistent=true`: confirms this node leads and has applied everything
/// committed before the read; a follower sends the read to the leader instead.
async fn consistent_read(
    admin: &Admin,
    req: &HttpRequest,
    client: &awc::Client,
) -> Option<HttpResponse> {
    let wants = req
        .query_string()
        .split('&')
        .any(|kv| kv == "consistent=true");
    if !wants {
        return None;
    }
    if admin.is_leader() {
        return match admin.raft.raft().ensure_linearizable().await {
            Ok(_) => None,
            Err(e) => Some(no_leader(format!("cannot confirm leadership: {e}"))),
        };
    }
    Some(forward(admin, req, client, None).await)
}

/// Sends the same admin request to the leader and relays its answer.
async fn forward(
    admin: &Admin,
    req: &HttpRequest,
    client: &awc::Client,
    body: Option<web::Bytes>,
) -> HttpResponse {
    if req.headers().contains_key(X_SLUICE_FORWARDED) {
        return no_leader("leadership is changing; try again");
    }
    let Some(leader) = admin.leader_addr() else {
        return no_leader("no leader is known right now");
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut up = client
        .request(req.method().clone(), format!("http://{leader}{path}"))
        .insert_header((X_SLUICE_FORWARDED, "1"));
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = req.headers().get(&name) {
            up = up.insert_header((name, v.clone()));
        }
    }
    let sent = match body {
        Some(b) => up.send_body(b).await,
        None => up.send().await,
    };
    match sent {
        Ok(mut r) => {
            let body = r.body().limit(16 << 20).await.unwrap_or_default();
            let mut out = HttpResponse::build(r.status());
            for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
                if let Some(v) = r.headers().get(&name) {
                    out.insert_header((name, v.clone()));
                }
            }
            if let Some(v) = r.headers().get(X_SLUICE_VERSION) {
                out.insert_header((X_SLUICE_VERSION, v.clone()));
            }
            out.body(body)
        }
        Err(e) => no_leader(format!("cannot reach the leader at {leader}: {e}")),
    }
}

fn current(admin: &Admin) -> Arc<sluice_raft::Published> {
    admin.raft.subscribe().borrow().clone()
}

fn with_version(version: u64, body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((X_SLUICE_VERSION, version.to_string()))
        .json(body)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid JSON body: {e}"),
        )
    })
}

// ---------------------------------------------------------------- cluster ----

async fn cluster_info(admin: web::Data<Admin>, req: HttpRequest) -> HttpResponse {
    authorize!(admin, req);
    let m = admin.raft.raft().metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let matched = m.replication.clone().unwrap_or_default();
    let nodes: Vec<Value> = membership
        .nodes()
        .map(|(id, node)| {
            let mut v = json!({
                "id": id,
                "addr": node.addr,
                "voter": voters.contains(id),
                "leader": m.current_leader == Some(*id),
            });
            if let Some(log) = matched.get(id) {
                v["matched_index"] = json!(log.map_or(0, |l| l.index));
            }
            v
        })
        .collect();
    let published = current(&admin);
    HttpResponse::Ok().json(json!({
        "node_id": m.id,
        "state": format!("{:?}", m.state),
        "leader_id": m.current_leader,
        "term": m.current_term,
        "voters": voters,
        "learners": learners,
        "applied_index": m.last_applied.map_or(0, |l| l.index),
        "last_log_index": m.last_log_index.unwrap_or(0),
        "config_version": published.version,
        "data_plane_version": admin.shared.snapshot.load().version,
        "snapshot_index": m.snapshot.map_or(0, |l| l.index),
        "purged_index": m.purged.map_or(0, |l| l.index),
        "millis_since_quorum_ack": m.millis_since_quorum_ack,
        "nodes": nodes,
    }))
}

#[derive(Deserialize)]
struct NewNode {
    id: u64,
    addr: String,
}

/// Adds a node: first as a learner (it catches up), then as a voter.
async fn add_node(
    admin: web::Data<Admin>,
    req: HttpRequest,
    body: web::Bytes,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    authorize!(admin, req);
    let new: NewNode = match parse_json(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if new.id == 0 || new.addr.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "id must be > 0 and addr host:port",
        );
    }
    if !admin.is_leader() {
        return forward(&admin, &req, &client, Some(body)).await;
    }
    let raft = admin.raft.raft();
    if let Err(e) = raft
        .add_learner(new.id, BasicNode::new(&new.addr), true)
        .await
    {
        return error(
            StatusCode::CONFLICT,
            "membership_change_failed",
            e.to_string(),
        );
    }
    let mut voters = current_voters(raft);
    voters.insert(new.id);
    info!(id = new.id, addr = %new.addr, "adding node as a voter");
    set_voters(raft, voters).await
}

/// The current voter set, as this node sees it.
fn current_voters(raft: &sluice_raft::Raft) -> BTreeSet<u64> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

/// Commits a new voter set (leader only) and answers with its log index.
async fn set_voters(raft: &sluice_raft::Raft, voters: BTreeSet<u64>) -> HttpResponse {
    match raft.change_membership(voters.clone(), false).await {
        Ok(r) => {
            info!(?voters, "membership changed");
            with_version(
                r.log_id.index,
                json!({ "version": r.log_id.index, "voters": voters }),
            )
        }
        Err(e) => error(
            StatusCode::CONFLICT,
            "membership_change_failed",
            e.to_string(),
        ),
    }
}

async fn remove_node(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<u64>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    authorize!(admin, req);
    if !admin.is_leader() {
        return forward(&admin, &req, &client, None).await;
    }
    let id = path.into_inner();
    let mut voters = current_voters(admin.raft.raft());
    if !voters.remove(&id) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("node {id} is not a voter"),
        );
    }
    if voters.is_empty() {
        return error(
            StatusCode::CONFLICT,
            "membership_change_failed",
            "cannot remove the last voter",
        );
    }
    set_voters(admin.raft.raft(), voters).await
}

// ----------------------------------------------------------------- config ----

async fn get_config(
    admin: web::Data<Admin>,
    req: HttpRequest,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    authorize!(admin, req);
    if let Some(r) = consistent_read(&admin, &req, &client).await {
        return r;
    }
    let p = current(&admin);
    with_version(
        p.version,
        serde_json::to_value(&p.state.gateway).unwrap_or(Value::Null),
    )
}

/// Validates a whole spec before proposing it: 422 with every error, nothing applied.
fn validated(spec: GatewaySpec) -> Result<GatewaySpec, HttpResponse> {
    Gateway::compile(spec, &Origins::default(), None)
        .map(|g| g.spec)
        .map_err(config_errors)
}

async fn put_config(admin: web::Data<Admin>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    authorize!(admin, req);
    let spec = match parse_gateway_json(&body)
        .map_err(config_errors)
        .and_then(validated)
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    write(&admin, Command::ReplaceGateway { spec }, versioned).await
}

async fn get_service(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let name = path.into_inner();
    read_one(&admin, &req, &client, &format!("service {name:?}"), |g| {
        g.services.get(&name).map(serde_json::to_value)
    })
    .await
}

/// `GET` of one entity: authorised, optionally linearizable, 404 when absent.
async fn read_one(
    admin: &Admin,
    req: &HttpRequest,
    client: &awc::Client,
    what: &str,
    find: impl FnOnce(&GatewaySpec) -> Option<serde_json::Result<Value>>,
) -> HttpResponse {
    authorize!(admin, req);
    if let Some(r) = consistent_read(admin, req, client).await {
        return r;
    }
    let p = current(admin);
    match find(&p.state.gateway) {
        Some(v) => with_version(p.version, v.unwrap_or(Value::Null)),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no {what}")),
    }
}

/// One entity change is checked against the whole current config first, so the
/// answer lists every problem the change would cause.
fn check_change(admin: &Admin, change: impl FnOnce(&mut GatewaySpec)) -> Result<(), HttpResponse> {
    let mut next = current(admin).state.gateway.clone();
    change(&mut next);
    validated(next).map(|_| ())
}

async fn put_service(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    authorize!(admin, req);
    let name = path.into_inner();
    let wrapped = format!(
        "{{\"services\":{{{}:{}}}}}",
        serde_json::to_string(&name).unwrap_or_default(),
        String::from_utf8_lossy(&body)
    );
    let spec = match parse_gateway_json(wrapped.as_bytes()).map_err(config_errors) {
        Ok(mut s) => match s.services.remove(&name) {
            Some(svc) => svc,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "expected a service object",
                )
            }
        },
        Err(r) => return r,
    };
    if let Err(r) = check_change(&admin, |g| {
        g.services.insert(name.clone(), spec.clone());
    }) {
        return r;
    }
    write(&admin, Command::PutService { name, spec }, versioned).await
}

async fn delete_service(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    authorize!(admin, req);
    let name = path.into_inner();
    write(&admin, Command::DeleteService { name }, versioned).await
}

async fn get_route(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let id = route_key(&path);
    read_one(&admin, &req, &client, &format!("route {id:?}"), |g| {
        g.routes
            .iter()
            .find(|r| route_id(r) == id)
            .map(serde_json::to_value)
    })
    .await
}

/// Route ids are often paths (`/api/v1/users`): accept them percent-encoded.
fn route_key(raw: &str) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn put_route(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    authorize!(admin, req);
    let id = route_key(&path);
    let wrapped = format!("{{\"routes\":[{}]}}", String::from_utf8_lossy(&body));
    let mut route = match parse_gateway_json(wrapped.as_bytes()).map_err(config_errors) {
        Ok(mut s) if s.routes.len() == 1 => s.routes.remove(0),
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "expected a route object",
            )
        }
        Err(r) => return r,
    };
    // The URL names the route; a body without an id (or with the path as id) is
    // stored under it.
    if route.id.is_none() && route.path != id {
        route.id = Some(id.clone());
    }
    if route_id(&route) != id {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "route id {:?} in the body differs from {id:?} in the URL",
                route_id(&route)
            ),
        );
    }
    if let Err(r) = check_change(&admin, |g| {
        match g.routes.iter_mut().find(|r| route_id(r) == id) {
            Some(slot) => *slot = route.clone(),
            None => g.routes.push(route.clone()),
        }
    }) {
        return r;
    }
    write(&admin, Command::PutRoute { route }, versioned).await
}

async fn delete_route(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    authorize!(admin, req);
    let id = route_key(&path);
    write(&admin, Command::DeleteRoute { id }, versioned).await
}

// -------------------------------------------------------- clients and keys ----

fn random_secret(prefix: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{a}{b}")
}

#[derive(Deserialize)]
struct NewClient {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Creates an API client; its secret is shown once and stored only as a hash.
async fn create_client(
    admin: web::Data<Admin>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    authorize!(admin, req);
    let new: NewClient = match parse_json(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if new.name.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name must not be empty",
        );
    }
    let client_id = uuid::Uuid::new_v4().to_string();
    let secret = random_secret("cs_");
    let client = ApiClient {
        id: client_id.clone(),
        name: new.name,
        roles: new.roles,
        scopes: new.scopes,
        secret_hash: SecretHash::of(secret.as_bytes()),
    };
    write(
        &admin,
        Command::PutClient { client },
        |v| json!({ "client_id": client_id, "client_secret": secret, "version": v }),
    )
    .await
}

#[derive(Deserialize)]
struct NewKey {
    client_id: String,
}

/// Issues an API key for a client; the key is shown once and stored hashed.
async fn create_key(admin: web::Data<Admin>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    authorize!(admin, req);
    let new: NewKey = match parse_json(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let key = random_secret("sk_");
    let record = ApiKey {
        id: id.clone(),
        client_id: new.client_id,
        key_hash: SecretHash::of(key.as_bytes()),
        revoked: false,
    };
    write(
        &admin,
        Command::PutApiKey { key: record },
        |v| json!({ "id": id, "key": key, "version": v }),
    )
    .await
}

async fn revoke_key(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    authorize!(admin, req);
    write(
        &admin,
        Command::RevokeApiKey {
            id: path.into_inner(),
        },
        versioned,
    )
    .await
}

// ---------------------------------------------------------------- openapi ----

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("openapi.json"))
}

#[cfg(test)]
mod tests {
    use super::route_key;

    #[test]
    fn route_ids_may_be_percent_encoded_paths() {
        assert_eq!(route_key("%2Fapi%2Fv1%2Fusers"), "/api/v1/users");
        assert_eq!(route_key("user-by-id"), "user-by-id");
        assert_eq!(route_key("bad%zzend%"), "bad%zzend%");
    }
}
