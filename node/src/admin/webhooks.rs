//! `/admin/webhooks/...` and `/admin/events`: subscriptions, publishing, the
//! delivery history, dead letters and replays. Every change is one Raft command
//! applied to the replicated webhook domain; reads come from this node's copy of
//! it (`?consistent=true` waits for the leader's read index first).
//!
//! Input is checked here, before anything is proposed: a bad URL, a target on a
//! link-local or metadata address (loopback and private ranges only with
//! `webhooks.allow_private_targets`), a bad event type, an oversized or malformed
//! body is a 4xx JSON error and nothing is stored.

use super::{current_request_id, parse_json, read, Admin, AdminError, Caller, X_SLUICE_VERSION};
use crate::errors::error_response;
use crate::webhooks::{new_secret, now_ms};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use cluster_config::webhooks::WebhookSettings;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_raft::webhooks::{
    Delivery, Event, ReplayTarget, Status, Subscription, SubscriptionStats, WebhookSecret,
    DEFAULT_ROTATION_GRACE_MS, DEFAULT_SCHEDULE_MS, DEFAULT_TIMEOUT_MS,
};
use sluice_raft::{Command, Response};
use std::net::IpAddr;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events", web::post().to(publish))
        .route("/webhooks/subscriptions", web::post().to(create))
        .route("/webhooks/subscriptions", web::get().to(list))
        .route("/webhooks/subscriptions/{id}", web::get().to(get))
        .route("/webhooks/subscriptions/{id}", web::put().to(update))
        .route("/webhooks/subscriptions/{id}", web::delete().to(delete))
        .route(
            "/webhooks/subscriptions/{id}/rotate-secret",
            web::post().to(rotate),
        )
        .route("/webhooks/deliveries", web::get().to(deliveries))
        .route("/webhooks/deliveries/{id}", web::get().to(delivery))
        .route(
            "/webhooks/deliveries/{id}/replay",
            web::post().to(replay_one),
        )
        .route("/webhooks/dead-letters/replay", web::post().to(replay_dead));
}

/// Longest retry schedule, and longest delay in it.
const MAX_SCHEDULE_LEN: usize = 20;
const MAX_DELAY_MS: u64 = 7 * 24 * 3_600_000;
/// Bounds of a subscription's timeout.
const MIN_TIMEOUT_MS: u64 = 100;
const MAX_TIMEOUT_MS: u64 = 24 * 3_600_000;
/// Bounds of a rotation's grace period.
const MAX_GRACE_MS: u64 = 7 * 24 * 3_600_000;
const MAX_TYPE_LEN: usize = 128;
const MAX_PAGE: usize = 500;

/// The `webhooks:` settings the data plane runs with: the replicated config, or
/// this node's files while the cluster has none yet.
fn settings(admin: &Admin) -> WebhookSettings {
    WebhookSettings::of(&admin.plane.state.load().gateway.config.spec.webhooks)
}

/// `250ms`, `0s`, `1m`, `5m`, `2h`, `1d`.
fn duration_ms(text: &str, path: &str) -> Result<u64, AdminError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad =
        || AdminError::BadRequest(format!("{path}: invalid duration {text:?} (e.g. 30s, 5m)"));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Checks a subscriber URL: http(s), a host, and not an address the cluster
/// must not be made to call.
fn check_url(text: &str, allow_private: bool) -> Result<(), AdminError> {
    let bad = |m: &str| AdminError::BadRequest(format!("url: {m}"));
    let url = url::Url::parse(text).map_err(|e| bad(&format!("invalid URL {text:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    let host = match url.host() {
        Some(h) => h,
        None => return Err(bad("a host is required")),
    };
    let ip: Option<IpAddr> = match host {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            if d == "metadata.google.internal"
                || d == "metadata"
                || d.ends_with(".metadata.google.internal")
            {
                return Err(bad("cloud metadata endpoints are not allowed"));
            }
            if (d == "localhost" || d.ends_with(".localhost")) && !allow_private {
                return Err(bad(
                    "loopback targets need webhooks.allow_private_targets: true",
                ));
            }
            None
        }
    };
    if let Some(ip) = ip {
        let (link_local, private) = match ip {
            IpAddr::V4(a) => (
                a.is_link_local() || a.octets()[0] == 0 && !a.is_unspecified(),
                a.is_loopback()
                    || a.is_private()
                    || a.is_unspecified()
                    || a.is_broadcast()
                    || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64),
            ),
            IpAddr::V6(a) => {
                let seg = a.segments();
                let mapped = a.to_ipv4_mapped();
                let metadata = seg[0] == 0xfd00 && seg[1] == 0x0ec2;
                (
                    (seg[0] & 0xffc0) == 0xfe80
                        || metadata
                        || mapped.is_some_and(|m| m.is_link_local()),
                    a.is_loopback()
                        || a.is_unspecified()
                        || (seg[0] & 0xfe00) == 0xfc00
                        || mapped.is_some_and(|m| m.is_loopback() || m.is_private()),
                )
            }
        };
        if link_local {
            return Err(bad(
                "link-local and cloud-metadata addresses are not allowed",
            ));
        }
        if private && !allow_private {
            return Err(bad(
                "loopback and private addresses need webhooks.allow_private_targets: true",
            ));
        }
    }
    Ok(())
}

/// An event type or a subscription pattern: `a-z A-Z 0-9 . _ - : /`, no spaces;
/// a pattern may also be `*` or end in `.*`.
fn check_type(t: &str, pattern: bool) -> Result<(), String> {
    let body = if pattern {
        if t == "*" {
            return Ok(());
        }
        t.strip_suffix(".*").unwrap_or(t)
    } else {
        t
    };
    if body.is_empty() || t.len() > MAX_TYPE_LEN {
        return Err(format!("{t:?}: 1 to {MAX_TYPE_LEN} characters"));
    }
    if !body
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        return Err(format!(
            "{t:?}: only letters, digits and . _ - : / are allowed (no spaces)"
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    retry_schedule: Option<Vec<String>>,
    timeout: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    ordered: Option<bool>,
}

/// Applies `body` to `base` (a new subscription's defaults, or the current one).
fn build(
    body: SubscriptionBody,
    mut base: Subscription,
    settings: WebhookSettings,
) -> Result<Subscription, AdminError> {
    if let Some(url) = body.url {
        check_url(&url, settings.allow_private_targets)?;
        base.url = url;
    }
    if let Some(types) = body.event_types {
        if types.is_empty() {
            return Err(AdminError::BadRequest(
                "event_types: at least one type, prefix (order.*) or *".into(),
            ));
        }
        for t in &types {
            check_type(t, true).map_err(|m| AdminError::BadRequest(format!("event_types: {m}")))?;
        }
        base.event_types = types;
    }
    if let Some(schedule) = body.retry_schedule {
        if schedule.is_empty() || schedule.len() > MAX_SCHEDULE_LEN {
            return Err(AdminError::BadRequest(format!(
                "retry_schedule: 1 to {MAX_SCHEDULE_LEN} durations, the first attempt included"
            )));
        }
        let mut out = Vec::with_capacity(schedule.len());
        for (i, d) in schedule.iter().enumerate() {
            let ms = duration_ms(d, &format!("retry_schedule[{i}]"))?;
            if ms > MAX_DELAY_MS {
                return Err(AdminError::BadRequest(format!(
                    "retry_schedule[{i}]: at most 7 days"
                )));
            }
            out.push(ms);
        }
        base.retry_schedule_ms = out;
    }
    if let Some(t) = body.timeout {
        let ms = duration_ms(&t, "timeout")?;
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) {
            return Err(AdminError::BadRequest(
                "timeout: between 100ms and 1d".into(),
            ));
        }
        base.timeout_ms = ms;
    }
    if let Some(d) = body.description {
        if d.len() > 1024 {
            return Err(AdminError::BadRequest(
                "description: at most 1024 bytes".into(),
            ));
        }
        base.description = Some(d);
    }
    if let Some(e) = body.enabled {
        base.enabled = e;
    }
    if let Some(o) = body.ordered {
        base.ordered = o;
    }
    if base.url.is_empty() || base.event_types.is_empty() {
        return Err(AdminError::BadRequest(
            "url and event_types are required".into(),
        ));
    }
    Ok(base)
}

fn view(s: &Subscription, stats: Option<&SubscriptionStats>) -> Value {
    let schedule: Vec<String> = s
        .retry_schedule_ms
        .iter()
        .map(|ms| format!("{}ms", ms))
        .collect();
    let mut v = json!({
        "id": s.id,
        "url": s.url,
        "event_types": s.event_types,
        "retry_schedule": schedule,
        "timeout": format!("{}ms", s.timeout_ms),
        "description": s.description,
        "enabled": s.enabled,
        "ordered": s.ordered,
        "disabled_reason": s.disabled_reason,
        "created_at": crate::webhooks::rfc3339(s.created_ms),
        "previous_secret_valid_until": s.previous_secret.as_ref().map(|(_, until)| crate::webhooks::rfc3339(*until)),
    });
    if let Some(st) = stats {
        v["stats"] = json!({
            "queue_depth": st.pending,
            "delivered": st.delivered,
            "dead": st.dead,
            "success_rate": st.success_rate,
            "oldest_pending_seconds": st.oldest_pending_ms.map(|ms| ms as f64 / 1000.0),
        });
    }
    v
}

fn created(version: u64, body: Value) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((X_SLUICE_VERSION, version.to_string()))
        .json(body)
}

/// `POST /admin/webhooks/subscriptions` → 201 `{id, secret, ...}` (the secret
/// is shown here and at rotation only).
async fn create(
    admin: web::Data<Admin>,
    _: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let parsed: SubscriptionBody = parse_json(&body)?;
    let secret = new_secret().map_err(|_| AdminError::Internal("no randomness".into()))?;
    let now = now_ms();
    let base = Subscription {
        id: format!("sub_{}", uuid::Uuid::new_v4().simple()),
        url: String::new(),
        event_types: Vec::new(),
        retry_schedule_ms: DEFAULT_SCHEDULE_MS.to_vec(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        description: None,
        enabled: true,
        ordered: false,
        secret: WebhookSecret::new(secret.clone()),
        previous_secret: None,
        disabled_reason: None,
        created_ms: now,
    };
    let sub = build(parsed, base, settings(&admin))?;
    let mut out = view(&sub, None);
    let version = admin
        .write(Command::PutWebhookSubscription { subscription: sub })
        .await?;
    out["secret"] = json!(secret);
    Ok(created(version, out))
}

async fn list(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let p = admin.read_state(&req).await?;
    let hooks = hooks(&admin);
    let stats = hooks.stats(now_ms());
    let subs: Vec<Value> = hooks
        .subscriptions
        .values()
        .map(|s| view(s, stats.get(&s.id)))
        .collect();
    Ok(read(p.version, json!({ "subscriptions": subs })))
}

async fn get(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let p = admin.read_state(&req).await?;
    let hooks = hooks(&admin);
    let sub = hooks
        .subscriptions
        .get(&id)
        .ok_or_else(|| AdminError::NotFound(format!("no subscription {id:?}")))?;
    let stats = hooks.stats(now_ms());
    Ok(read(p.version, view(sub, stats.get(&id))))
}

/// `PUT /admin/webhooks/subscriptions/{id}`: the fields sent replace the
/// current ones (the secret never changes here).
async fn update(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let parsed: SubscriptionBody = parse_json(&body)?;
    let current = hooks(&admin)
        .subscriptions
        .get(&id)
        .cloned()
        .ok_or_else(|| AdminError::NotFound(format!("no subscription {id:?}")))?;
    let mut sub = build(parsed, current, settings(&admin))?;
    // Empty: keep the replicated secret (a rotation may have landed meanwhile).
    sub.secret = WebhookSecret::default();
    sub.previous_secret = None;
    let version = admin
        .write(Command::PutWebhookSubscription {
            subscription: sub.clone(),
        })
        .await?;
    Ok(super::written(version, view(&sub, None)))
}

async fn delete(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    admin
        .write_versioned(Command::DeleteWebhookSubscription { id })
        .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
}

/// `POST .../{id}/rotate-secret` → `{id, secret, previous_secret_valid_until}`.
async fn rotate(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let parsed: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        parse_json(&body)?
    };
    let grace_ms = match parsed.grace {
        Some(g) => duration_ms(&g, "grace")?,
        None => DEFAULT_ROTATION_GRACE_MS,
    };
    if grace_ms > MAX_GRACE_MS {
        return Err(AdminError::BadRequest("grace: at most 7 days".into()));
    }
    let secret = new_secret().map_err(|_| AdminError::Internal("no randomness".into()))?;
    let now = now_ms();
    let version = admin
        .write(Command::RotateWebhookSecret {
            id: id.clone(),
            secret: WebhookSecret::new(secret.clone()),
            now_ms: now,
            grace_ms,
        })
        .await?;
    Ok(super::written(
        version,
        json!({
            "id": id,
            "secret": secret,
            "previous_secret_valid_until": crate::webhooks::rfc3339(now + grace_ms),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    idempotency_key: Option<String>,
    correlation_id: Option<String>,
    event_version: Option<String>,
    source: Option<String>,
}

/// A 413 in the one JSON error shape.
fn too_large(limit: usize) -> HttpResponse {
    error_response::<()>(
        HttpResponseBuilder::new(StatusCode::PAYLOAD_TOO_LARGE),
        "payload_too_large",
        &format!("the event is larger than webhooks.max_payload ({limit} bytes)"),
        &current_request_id(),
        None,
    )
}

/// Who may publish: an admin token, or `X-API-Key` of a client with the role
/// `publisher` (looked up by hash in the data plane's key index).
fn may_publish(admin: &Admin, req: &HttpRequest) -> Result<(), AdminError> {
    if let Some(key) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        let state = admin.plane.state.load();
        let entry = state.credentials.api_key(key.as_bytes());
        let publisher = entry
            .and_then(|e| state.credentials.client(&e.client_id))
            .is_some_and(|c| c.roles.iter().any(|r| r == "publisher"));
        return if publisher {
            Ok(())
        } else {
            Err(AdminError::Unauthorized)
        };
    }
    admin.caller(req).map(|_| ())
}

/// `POST /admin/events` → 202 `{id}` once the event is committed.
async fn publish(
    admin: web::Data<Admin>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, AdminError> {
    may_publish(&admin, &req)?;
    let limit = settings(&admin).max_payload;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AdminError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Ok(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let parsed: EventBody = parse_json(&body)?;
    check_type(&parsed.event_type, false)
        .map_err(|m| AdminError::BadRequest(format!("type: {m}")))?;
    for (name, v) in [
        ("idempotency_key", &parsed.idempotency_key),
        ("correlation_id", &parsed.correlation_id),
        ("event_version", &parsed.event_version),
        ("source", &parsed.source),
    ] {
        if v.as_ref().is_some_and(|s| s.is_empty() || s.len() > 256) {
            return Err(AdminError::BadRequest(format!(
                "{name}: 1 to 256 characters"
            )));
        }
    }
    let event = Event {
        id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
        event_type: parsed.event_type,
        event_version: parsed.event_version,
        source: parsed.source,
        correlation_id: parsed.correlation_id,
        data: parsed.data.to_string(),
        created_ms: 0,
    };
    let (answer, version) = admin
        .write_answer(Command::PublishEvent {
            event,
            idempotency_key: parsed.idempotency_key,
            now_ms: now_ms(),
        })
        .await?;
    match answer {
        Response::Event { id, created } => Ok(HttpResponse::Accepted()
            .insert_header((X_SLUICE_VERSION, version.to_string()))
            .json(json!({ "id": id, "duplicate": !created }))),
        other => Err(AdminError::Internal(format!("unexpected answer {other:?}"))),
    }
}

fn delivery_view(d: &Delivery, hooks: &sluice_raft::webhooks::Webhooks) -> Value {
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .map(|a| {
            json!({
                "at": crate::webhooks::rfc3339(a.at_ms),
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "error": a.error,
            })
        })
        .collect();
    json!({
        "id": d.seq.to_string(),
        "event_id": d.event_id,
        "event_type": hooks.events.get(&d.event_id).map(|e| e.event_type.as_str()),
        "subscription": d.subscription_id,
        "status": d.status.as_str(),
        "attempts": attempts,
        "next_attempt_at": (d.status == Status::Pending).then(|| crate::webhooks::rfc3339(d.next_attempt_ms)),
        "created_at": crate::webhooks::rfc3339(d.created_ms),
        "finished_at": d.finished_ms.map(crate::webhooks::rfc3339),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    status: Option<String>,
    subscription: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
    #[allow(dead_code)]
    consistent: Option<bool>,
}

/// `GET /admin/webhooks/deliveries?status=&subscription=&cursor=&limit=`, in
/// publish order; `next_cursor` is set when there may be more.
async fn deliveries(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let q = web::Query::<DeliveriesQuery>::from_query(req.query_string())
        .map_err(|e| AdminError::BadRequest(format!("invalid query: {e}")))?;
    let status = match q.status.as_deref() {
        None => None,
        Some("pending") => Some(Status::Pending),
        Some("delivered") => Some(Status::Delivered),
        Some("dead") => Some(Status::Dead),
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "status: {other:?} is not one of pending, delivered, dead"
            )))
        }
    };
    let after: u64 = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<u64>().map(|c| c + 1).map_err(|_| {
            AdminError::BadRequest("cursor: not a cursor from a previous page".into())
        })?,
    };
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(AdminError::BadRequest(format!(
                "limit: {n} is not between 1 and {MAX_PAGE}"
            )))
        }
    };
    let p = admin.read_state(&req).await?;
    let hooks = hooks(&admin);
    let mut page = Vec::new();
    let mut last = None;
    let mut more = false;
    let source: Box<dyn Iterator<Item = &Delivery>> = match status {
        Some(Status::Dead) => Box::new(
            hooks
                .dead
                .range(after..)
                .filter_map(|s| hooks.deliveries.get(s)),
        ),
        Some(Status::Pending) => Box::new(
            hooks
                .pending
                .range(after..)
                .filter_map(|s| hooks.deliveries.get(s)),
        ),
        _ => Box::new(hooks.deliveries.range(after..).map(|(_, d)| d)),
    };
    for d in source {
        if status.is_some_and(|s| s != d.status) {
            continue;
        }
        if q.subscription
            .as_ref()
            .is_some_and(|s| *s != d.subscription_id)
        {
            continue;
        }
        if page.len() == limit {
            more = true;
            break;
        }
        last = Some(d.seq);
        page.push(delivery_view(d, &hooks));
    }
    let next_cursor = if more {
        last.map(|l| l.to_string())
    } else {
        None
    };
    Ok(read(
        p.version,
        json!({ "deliveries": page, "next_cursor": next_cursor }),
    ))
}

fn seq_of(id: &str) -> Result<u64, AdminError> {
    id.parse()
        .map_err(|_| AdminError::NotFound(format!("no delivery {id:?}")))
}

async fn delivery(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let seq = seq_of(&path)?;
    let p = admin.read_state(&req).await?;
    let hooks = hooks(&admin);
    let d = hooks
        .deliveries
        .get(&seq)
        .ok_or_else(|| AdminError::NotFound(format!("no delivery {seq}")))?;
    Ok(read(p.version, delivery_view(d, &hooks)))
}

async fn replay(admin: &Admin, target: ReplayTarget) -> Result<HttpResponse, AdminError> {
    let (answer, version) = admin
        .write_answer(Command::ReplayWebhookDeliveries {
            target,
            now_ms: now_ms(),
        })
        .await?;
    let n = match answer {
        Response::Count { count } => count,
        _ => 0,
    };
    Ok(super::written(version, json!({ "replayed": n })))
}

/// `POST /admin/webhooks/deliveries/{id}/replay`: a dead (or delivered)
/// delivery is sent again with a fresh schedule.
async fn replay_one(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let seq = seq_of(&path)?;
    replay(&admin, ReplayTarget::One(seq)).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    subscription: Option<String>,
}

/// `POST /admin/webhooks/dead-letters/replay [{subscription}]`: every dead
/// letter of one subscription, or of the cluster.
async fn replay_dead(
    admin: web::Data<Admin>,
    _: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let parsed: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        parse_json(&body)?
    };
    let target = match parsed.subscription {
        Some(s) => ReplayTarget::Subscription(s),
        None => ReplayTarget::All,
    };
    replay(&admin, target).await
}

/// The replicated webhook state as this node has applied it (a poisoned lock is
/// read as is, as the rest of the node does).
fn hooks(admin: &Admin) -> std::sync::RwLockReadGuard<'_, sluice_raft::webhooks::Webhooks> {
    admin
        .raft
        .webhooks()
        .read()
        .unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("ftp://example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
        assert!(check_url("http://169.254.169.254/latest", true).is_err());
        assert!(check_url("http://[fe80::1]/", true).is_err());
        assert!(check_url("http://metadata.google.internal/", true).is_err());
        assert!(check_url("http://127.0.0.1:9/", false).is_err());
        assert!(check_url("http://10.1.2.3/", false).is_err());
        assert!(check_url("http://localhost/", false).is_err());
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
        assert!(check_url("http://[::1]:9/", true).is_ok());
    }

    #[test]
    fn types_and_durations_are_checked() {
        assert!(check_type("order.created", false).is_ok());
        assert!(check_type("order created", false).is_err());
        assert!(check_type("order.*", true).is_ok());
        assert!(check_type("*", true).is_ok());
        assert!(check_type("*", false).is_err());
        assert_eq!(duration_ms("1m", "x").ok(), Some(60_000));
        assert_eq!(duration_ms("0s", "x").ok(), Some(0));
        assert!(duration_ms("1 fortnight", "x").is_err());
    }
}
