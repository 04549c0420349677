//! Webhook delivery: signing (Standard Webhooks), the envelope, and the
//! `WebhookDispatcher` that runs on the Raft leader only.
//!
//! The dispatcher owns no durable state: everything it needs (subscriptions,
//! pending deliveries, their next attempt times) is the replicated webhook domain
//! ([`sluice_raft::webhooks::Webhooks`]). On becoming leader it starts a session
//! that walks the pending deliveries, and on losing leadership the session stops;
//! the next leader's session resumes from the replicated state, so delivery is
//! at-least-once (an attempt whose outcome was not committed before a crash is
//! made again; `webhook-id` lets receivers de-duplicate).
//!
//! Each subscription is a lane with its own concurrency: up to
//! [`CONCURRENCY`] attempts at once, or, for an `ordered` subscription, one at a
//! time in publish order where the head of the queue holds the rest until it is
//! delivered or dead-lettered. Outcomes are proposed in batches
//! ([`Command::RecordWebhookAttempts`]) through the command-level write path; a
//! delivery stays "in flight" until its outcome is committed, so it is never
//! attempted twice by one session.

use crate::dataplane::DataPlane;
use actix_web::web;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::StreamExt;
use ring::hmac;
use sluice_raft::webhooks::{Attempt, AttemptReport, Event, Outcome, Subscription};
use sluice_raft::{Command, RaftNode};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// Attempts in flight per (unordered) subscription.
pub const CONCURRENCY: usize = 4;
/// Bytes of a receiver's response read (then discarded): a 1 GiB body costs this.
pub const MAX_RESPONSE_READ: usize = 64 * 1024;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER_MS: u64 = 24 * 3_600_000;
/// How often the session looks for due deliveries without a wake-up.
const TICK: Duration = Duration::from_millis(100);
/// Most outcomes in one `RecordWebhookAttempts`.
const BATCH: usize = 500;
/// How often the leader proposes retention.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often every node refreshes the webhook gauges from the replicated state.
const GAUGES_EVERY: Duration = Duration::from_secs(2);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new subscription secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)?;
    Ok(format!("whsec_{}", B64.encode(bytes)))
}

/// The HMAC key of a `whsec_` secret: the base64-decoded part after the prefix
/// (a secret that is not base64 is used as bytes, as the reference libraries do).
fn key_of(secret: &str) -> hmac::Key {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let raw = B64.decode(b64).unwrap_or_else(|_| b64.as_bytes().to_vec());
    hmac::Key::new(hmac::HMAC_SHA256, &raw)
}

/// One Standard Webhooks signature: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`.
pub fn sign(secret: &str, id: &str, ts: u64, body: &[u8]) -> String {
    let key = key_of(secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(ts.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", B64.encode(ctx.sign().as_ref()))
}

/// `webhook-signature`: one signature per secret, space-separated.
pub fn signature_header(secrets: &[&str], id: &str, ts: u64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, id, ts, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `X-Webhook-Signature`: hex HMAC-SHA256 of the body with the current secret.
pub fn body_signature(secret: &str, body: &[u8]) -> String {
    let tag = hmac::sign(&key_of(secret), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 (UTC, milliseconds) of a Unix time in ms.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The body every delivery of `event` sends.
pub fn envelope(event: &Event) -> Vec<u8> {
    let data: serde_json::Value =
        serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    let body = serde_json::json!({
        "event_id": event.id,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "timestamp": rfc3339(event.created_ms),
        "source": event.source,
        "correlation_id": event.correlation_id,
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A random factor in [0.9, 1.1] (±10 % jitter).
fn jitter(ms: u64) -> u64 {
    let r = (uuid::Uuid::new_v4().as_u128() % 2001) as f64 / 10_000.0; // 0..=0.2
    (ms as f64 * (0.9 + r)) as u64
}

/// `Retry-After` as delay-seconds (an HTTP date is not honoured).
fn retry_after_ms(headers: &awc::http::header::HeaderMap) -> Option<u64> {
    let v = headers.get(awc::http::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
}

/// What one attempt is about, copied out of the replicated state.
struct Job {
    seq: u64,
    tries: u32,
    sub: Subscription,
    event: Event,
}

/// Decides the outcome of a failed attempt (`retry_after`: from a 429/503).
fn after_failure(job: &Job, now: u64, retry_after: Option<u64>) -> Outcome {
    let next = job.tries as usize + 1;
    match job.sub.retry_schedule_ms.get(next) {
        Some(delay) => {
            let delay = jitter(*delay).max(retry_after.unwrap_or(0));
            Outcome::RetryAt(now.saturating_add(delay))
        }
        None => Outcome::Dead,
    }
}

/// Makes one attempt: signs at this moment, posts, reads at most
/// [`MAX_RESPONSE_READ`] of the answer, all within the subscription's timeout.
async fn attempt(client: &awc::Client, job: &Job) -> AttemptReport {
    let started = Instant::now();
    let at_ms = now_ms();
    let ts = at_ms / 1000;
    let body = envelope(&job.event);
    let secrets = job.sub.signing_secrets(at_ms);
    let timeout = Duration::from_millis(job.sub.timeout_ms.max(1));
    let request = client
        .post(&job.sub.url)
        .timeout(timeout)
        .insert_header(("content-type", "application/json"))
        .insert_header(("user-agent", "sluice-webhooks/1"))
        .insert_header(("webhook-id", job.event.id.as_str()))
        .insert_header(("webhook-timestamp", ts.to_string()))
        .insert_header((
            "webhook-signature",
            signature_header(&secrets, &job.event.id, ts, &body),
        ))
        .insert_header((
            "x-webhook-signature",
            body_signature(job.sub.secret.expose(), &body),
        ));
    let deadline = tokio::time::Instant::now() + timeout;
    // The status line and headers must arrive within the timeout.
    let result = match tokio::time::timeout_at(deadline, request.send_body(body)).await {
        Ok(Ok(mut res)) => {
            let status = res.status().as_u16();
            let retry_after = if status == 429 || status == 503 {
                retry_after_ms(res.headers())
            } else {
                None
            };
            // Read a little of the body (some receivers only finish after it is
            // read), never more than the bound and never past the deadline; the
            // answer is its status, so a body that trickles or never ends costs
            // the rest of the timeout at most, and is dropped with the connection.
            let drain = async {
                let mut read = 0usize;
                while let Some(Ok(c)) = res.next().await {
                    read += c.len();
                    if read >= MAX_RESPONSE_READ {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout_at(deadline, drain).await;
            Ok((status, retry_after))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let now = now_ms();
    let (status_code, error, outcome) = match result {
        Ok((code, _)) if (200..300).contains(&code) => (Some(code), None, Outcome::Delivered),
        Ok((410, _)) => (Some(410), None, Outcome::Gone),
        Ok((code, retry_after)) => (Some(code), None, after_failure(job, now, retry_after)),
        Err(e) => (None, Some(e), after_failure(job, now, None)),
    };
    AttemptReport {
        seq: job.seq,
        tries: job.tries,
        attempt: Attempt {
            at_ms,
            status_code,
            latency_ms,
            error,
        },
        outcome,
    }
}

/// Starts the dispatcher (it acts only while this node leads) and the gauges
/// (every node). `wake` is notified when apply reports a webhook change.
pub fn spawn(raft: Arc<RaftNode>, metrics: web::Data<DataPlane>, wake: Arc<Notify>) {
    actix_rt::spawn(follow_leadership(raft.clone(), metrics.clone(), wake));
    actix_rt::spawn(gauges(raft, metrics));
}

/// Starts a session on becoming leader, stops it on losing leadership.
async fn follow_leadership(raft: Arc<RaftNode>, metrics: web::Data<DataPlane>, wake: Arc<Notify>) {
    let mut rx = raft.raft().metrics();
    let mut session: Option<Rc<std::cell::Cell<bool>>> = None;
    loop {
        let leading = {
            let m = rx.borrow_and_update();
            m.current_leader == Some(m.id)
        };
        match (&session, leading) {
            (None, true) => {
                info!("webhook dispatcher started (this node leads)");
                let alive = Rc::new(std::cell::Cell::new(true));
                actix_rt::spawn(run_session(
                    raft.clone(),
                    metrics.clone(),
                    wake.clone(),
                    alive.clone(),
                ));
                session = Some(alive);
            }
            (Some(alive), false) => {
                info!("webhook dispatcher stopped (leadership lost)");
                alive.set(false);
                session = None;
            }
            _ => {}
        }
        if rx.changed().await.is_err() {
            if let Some(alive) = session {
                alive.set(false);
            }
            return;
        }
    }
}

/// What one session shares between its scheduler, attempts and batcher.
#[derive(Default)]
struct Lanes {
    /// Deliveries attempted, or whose outcome is not committed yet.
    in_flight: HashSet<u64>,
    /// In-flight count per subscription.
    per_sub: HashMap<String, usize>,
    /// Outcomes waiting to be proposed, with the subscription of an ordered
    /// lane whose slot the commit frees (`None`: the slot was freed when the
    /// attempt ended).
    outcomes: Vec<(Option<String>, AttemptReport)>,
}

async fn run_session(
    raft: Arc<RaftNode>,
    metrics: web::Data<DataPlane>,
    wake: Arc<Notify>,
    alive: Rc<std::cell::Cell<bool>>,
) {
    let client = Rc::new(
        awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .limit(256)
                    .timeout(Duration::from_secs(5)),
            )
            .disable_redirects()
            .disable_timeout()
            .finish(),
    );
    let lanes = Rc::new(RefCell::new(Lanes::default()));
    let flushed = Rc::new(Notify::new());
    actix_rt::spawn(batcher(
        raft.clone(),
        lanes.clone(),
        alive.clone(),
        flushed.clone(),
    ));
    let mut last_purge: Option<Instant> = None;
    while alive.get() {
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(Instant::now());
            let raft = raft.clone();
            actix_rt::spawn(async move {
                let command = Command::PurgeWebhooks {
                    now_ms: now_ms(),
                    delivered_retention_ms: sluice_raft::webhooks::DELIVERED_RETENTION_MS,
                    dead_retention_ms: sluice_raft::webhooks::DEAD_RETENTION_MS,
                };
                if let Err(e) = raft.write_anywhere(command).await {
                    debug!(error = %e, "webhook purge not committed");
                }
            });
        }
        for job in due_jobs(&raft, &lanes) {
            let client = client.clone();
            let lanes = lanes.clone();
            let metrics = metrics.clone();
            let done = flushed.clone();
            actix_rt::spawn(async move {
                let report = attempt(&client, &job).await;
                let outcome = match report.outcome {
                    Outcome::Delivered => "delivered",
                    Outcome::RetryAt(_) => "failed",
                    Outcome::Dead => "dead",
                    Outcome::Gone => "gone",
                };
                metrics
                    .metrics
                    .webhook_deliveries
                    .with_label_values(&[&job.sub.id, outcome])
                    .inc();
                metrics
                    .metrics
                    .webhook_delivery_duration
                    .observe(report.attempt.latency_ms as f64 / 1000.0);
                let mut l = lanes.borrow_mut();
                // An unordered lane may start its next attempt now (the seq stays
                // in flight until committed); an ordered lane waits for the commit,
                // so a crash cannot let a later event overtake this one.
                let hold = if job.sub.ordered {
                    Some(job.sub.id.clone())
                } else {
                    if let Some(n) = l.per_sub.get_mut(&job.sub.id) {
                        *n = n.saturating_sub(1);
                    }
                    None
                };
                l.outcomes.push((hold, report));
                drop(l);
                done.notify_one();
            });
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = flushed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// The deliveries to attempt now: due, not in flight, within their lane's limit
/// (ordered lanes: only the head, only when nothing of the lane is in flight).
fn due_jobs(raft: &RaftNode, lanes: &Rc<RefCell<Lanes>>) -> Vec<Job> {
    let now = now_ms();
    let hooks = raft.webhooks().read().unwrap_or_else(|p| p.into_inner());
    let mut lanes = lanes.borrow_mut();
    let mut jobs = Vec::new();
    // Ordered lanes whose head has been seen in this walk.
    let mut held: HashSet<&str> = HashSet::new();
    let mut full: HashSet<&str> = HashSet::new();
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for seq in &hooks.pending {
        let Some(d) = hooks.deliveries.get(seq) else {
            continue;
        };
        let sid = d.subscription_id.as_str();
        if held.contains(sid) || full.contains(sid) {
            continue;
        }
        let Some(sub) = hooks.subscriptions.get(sid) else {
            continue;
        };
        if !sub.enabled {
            full.insert(sid);
            continue;
        }
        let busy =
            lanes.per_sub.get(sid).copied().unwrap_or(0) + started.get(sid).copied().unwrap_or(0);
        if sub.ordered {
            held.insert(sid);
            if busy > 0 || lanes.in_flight.contains(seq) || d.next_attempt_ms > now {
                continue;
            }
        } else {
            if busy >= CONCURRENCY {
                full.insert(sid);
                continue;
            }
            if lanes.in_flight.contains(seq) || d.next_attempt_ms > now {
                continue;
            }
        }
        let Some(event) = hooks.events.get(&d.event_id) else {
            continue;
        };
        *started.entry(sid.to_owned()).or_default() += 1;
        jobs.push(Job {
            seq: *seq,
            tries: d.tries,
            sub: sub.clone(),
            event: event.clone(),
        });
    }
    for job in &jobs {
        lanes.in_flight.insert(job.seq);
        *lanes.per_sub.entry(job.sub.id.clone()).or_default() += 1;
    }
    jobs
}

/// Proposes outcomes in batches; once a batch is committed (or given up on),
/// its deliveries leave the in-flight set and the scheduler is woken.
async fn batcher(
    raft: Arc<RaftNode>,
    lanes: Rc<RefCell<Lanes>>,
    alive: Rc<std::cell::Cell<bool>>,
    flushed: Rc<Notify>,
) {
    while alive.get() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        loop {
            let batch: Vec<(Option<String>, AttemptReport)> = {
                let mut l = lanes.borrow_mut();
                let n = l.outcomes.len().min(BATCH);
                l.outcomes.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            let reports: Vec<AttemptReport> = batch.iter().map(|(_, r)| r.clone()).collect();
            let mut committed = false;
            for _ in 0..3 {
                match raft
                    .write_anywhere(Command::RecordWebhookAttempts {
                        reports: reports.clone(),
                    })
                    .await
                {
                    Ok(_) => {
                        committed = true;
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, n = reports.len(), "webhook outcomes not committed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            if !committed {
                warn!(
                    n = reports.len(),
                    "webhook outcomes not committed: those deliveries will be attempted again"
                );
            }
            let mut l = lanes.borrow_mut();
            for (held, r) in &batch {
                l.in_flight.remove(&r.seq);
                if let Some(n) = held.as_ref().and_then(|sub| l.per_sub.get_mut(sub)) {
                    *n = n.saturating_sub(1);
                }
            }
            drop(l);
            flushed.notify_one();
        }
    }
}

/// Refreshes the queue-depth, oldest-pending and dead-letter gauges from the
/// replicated state, on every node.
async fn gauges(raft: Arc<RaftNode>, metrics: web::Data<DataPlane>) {
    loop {
        {
            let hooks = raft.webhooks().read().unwrap_or_else(|p| p.into_inner());
            let stats = hooks.stats(now_ms());
            metrics.metrics.webhook_queue_depth.reset();
            metrics.metrics.webhook_oldest_pending.reset();
            for (sub, s) in &stats {
                metrics
                    .metrics
                    .webhook_queue_depth
                    .with_label_values(&[sub])
                    .set(s.pending as i64);
                metrics
                    .metrics
                    .webhook_oldest_pending
                    .with_label_values(&[sub])
                    .set(s.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0);
            }
            metrics
                .metrics
                .webhook_dead_letters
                .set(hooks.dead.len() as i64);
        }
        tokio::time::sleep(GAUGES_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The vector of the Standard Webhooks reference libraries.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let both = signature_header(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert!(both.starts_with("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,"));
        assert_eq!(body_signature("whsec_AAAA", b"x").len(), 64);
    }

    #[test]
    fn secrets_are_whsec_base64_of_32_bytes() {
        let s = new_secret().expect("random");
        let raw = B64
            .decode(s.strip_prefix("whsec_").expect("prefix"))
            .expect("b64");
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..200 {
            let j = jitter(60_000);
            assert!((54_000..=66_000).contains(&j), "{j}");
        }
    }
}
