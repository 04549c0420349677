//! The replicated webhook domain: subscriptions, accepted events, one delivery
//! per (event, subscription) with its attempts, dead letters and idempotency keys.
//!
//! Like the rate-limit ledger ([`crate::limits`]) it is high-churn (every attempt
//! outcome is a write), so it lives beside [`crate::ClusterState`] in the state
//! machine ([`crate::store::SharedWebhooks`]) and is never republished whole;
//! apply tells the node's dispatcher that something changed with a
//! [`crate::Delta::WebhooksChanged`]. Subscriptions live here too rather than in
//! `ClusterState`: the data plane never needs them, the dispatcher and the admin
//! API read them with the deliveries under one lock, and their signing secrets
//! (which must be kept in clear to sign) stay out of the state every subscriber
//! of the published state clones.
//!
//! Everything here is a pure function of the state and the command: every time
//! (`now_ms`) is stamped by the proposer, never read from a clock. The decisions
//! that need randomness or the receiver's answer (jitter, `Retry-After`) are made
//! by the dispatcher and arrive as the next attempt time in [`AttemptReport`].

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Default retry schedule (the first attempt included): 0s, 1m, 5m, 30m, 2h.
pub const DEFAULT_SCHEDULE_MS: [u64; 5] = [0, 60_000, 300_000, 1_800_000, 7_200_000];
/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// How long a rotated-out secret keeps signing alongside the new one.
pub const DEFAULT_ROTATION_GRACE_MS: u64 = 24 * 3_600_000;
/// How long an idempotency key maps to its first event.
pub const IDEMPOTENCY_MS: u64 = 24 * 3_600_000;
/// Delivered deliveries (and events with nothing pending) are purged after this.
pub const DELIVERED_RETENTION_MS: u64 = 72 * 3_600_000;
/// Dead letters are kept this long, then purged with their events.
pub const DEAD_RETENTION_MS: u64 = 14 * 24 * 3_600_000;
/// Attempts kept per delivery (the oldest are dropped): bounds a delivery that is
/// replayed over and over.
pub const MAX_ATTEMPTS_KEPT: usize = 32;

/// A subscription's signing secret (`whsec_...`). Kept in clear (every attempt
/// is signed with it) but never printed: `Debug` shows only that it is there.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> WebhookSecret {
        WebhookSecret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// A subscriber endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    /// Exact types, prefixes ending in `.*`, or `*`.
    pub event_types: Vec<String>,
    /// Delays before each attempt, the first included (ms).
    pub retry_schedule_ms: Vec<u64>,
    pub timeout_ms: u64,
    pub description: Option<String>,
    pub enabled: bool,
    /// One delivery at a time, in publish order.
    pub ordered: bool,
    /// `whsec_...`: kept in clear because every attempt is signed with it.
    pub secret: WebhookSecret,
    /// The secret a rotation replaced, and until when (ms) it still signs.
    pub previous_secret: Option<(WebhookSecret, u64)>,
    /// Why the cluster disabled it (a 410 from the receiver), if it did.
    pub disabled_reason: Option<String>,
    pub created_ms: u64,
}

impl Subscription {
    /// Whether this subscription wants events of type `ty`.
    pub fn matches(&self, ty: &str) -> bool {
        self.event_types.iter().any(|p| type_matches(p, ty))
    }

    /// The secrets to sign with at `now_ms`: the current one, then the previous
    /// one while its grace period lasts.
    pub fn signing_secrets(&self, now_ms: u64) -> Vec<&str> {
        let mut out = vec![self.secret.expose()];
        if let Some((old, until)) = &self.previous_secret {
            if now_ms < *until {
                out.push(old.expose());
            }
        }
        out
    }
}

/// `order.*` matches `order.created` (and `order.x.y`); `*` matches everything.
pub fn type_matches(pattern: &str, ty: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => ty.starts_with(prefix) && ty.len() > prefix.len(),
        None => pattern == ty,
    }
}

/// An accepted event: what every delivery of it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    pub event_version: Option<String>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    /// The `data` member as JSON text (bincode cannot carry a `serde_json::Value`).
    pub data: String,
    /// When it was accepted (ms, the proposer's clock).
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Delivered,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
        }
    }
}

/// One try at delivering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at_ms: u64,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// One event on its way to one subscription. Its id is its sequence number:
/// publish order, and a stable pagination cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub event_id: String,
    pub subscription_id: String,
    pub status: Status,
    /// Attempts since it was created or last replayed: the position in the schedule.
    pub tries: u32,
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (ms); meaningful while pending.
    pub next_attempt_ms: u64,
    pub created_ms: u64,
    /// When it was delivered or dead-lettered.
    pub finished_ms: Option<u64>,
}

/// What happened to one attempt, as the dispatcher reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Failed; try again at this time (the dispatcher applied the schedule,
    /// jitter and `Retry-After`).
    RetryAt(u64),
    /// Failed and the schedule is exhausted.
    Dead,
    /// The receiver answered 410 Gone: dead-letter it and disable the subscription.
    Gone,
}

/// One attempt outcome in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub seq: u64,
    /// `tries` of the delivery when the attempt started: a report that arrives
    /// twice, or after a replay, no longer matches and is ignored.
    pub tries: u32,
    pub attempt: Attempt,
    pub outcome: Outcome,
}

/// What `PublishEvent` answers: the event's id, and whether this call created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub created: bool,
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplayTarget {
    /// One delivery (dead or delivered: a re-send is what the caller asked for).
    One(u64),
    /// Every dead letter of one subscription.
    Subscription(String),
    /// Every dead letter of the cluster.
    All,
}

/// The webhook domain's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhooks {
    pub subscriptions: BTreeMap<String, Subscription>,
    pub events: BTreeMap<String, Event>,
    pub deliveries: BTreeMap<u64, Delivery>,
    /// Pending deliveries' sequence numbers: what the dispatcher walks.
    pub pending: BTreeSet<u64>,
    /// Dead letters, for the gauge and for replays.
    pub dead: BTreeSet<u64>,
    /// Idempotency key -> (event id, accepted at ms).
    pub idempotency: BTreeMap<String, (String, u64)>,
    pub next_seq: u64,
}

/// Per-subscription figures for `GET /admin/webhooks/subscriptions/{id}` and the
/// gauges.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SubscriptionStats {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    /// `delivered / (delivered + dead)` of retained deliveries; `None` before any.
    pub success_rate: Option<f64>,
    /// Age of the oldest pending delivery at `now_ms`.
    pub oldest_pending_ms: Option<u64>,
}

impl Webhooks {
    /// Inserts or replaces a subscription. An empty `secret` keeps the current
    /// one (an update); a new subscription must bring one.
    pub fn put_subscription(&mut self, mut sub: Subscription) -> Result<(), String> {
        if sub.id.is_empty() || sub.url.is_empty() || sub.event_types.is_empty() {
            return Err("id, url and event_types are required".into());
        }
        if sub.retry_schedule_ms.is_empty() {
            return Err("retry_schedule must list at least one attempt".into());
        }
        match self.subscriptions.get(&sub.id) {
            Some(old) => {
                if sub.secret.is_empty() {
                    sub.secret = old.secret.clone();
                    sub.previous_secret = old.previous_secret.clone();
                }
                sub.created_ms = old.created_ms;
                if sub.enabled {
                    sub.disabled_reason = None;
                }
            }
            None if sub.secret.is_empty() => return Err("a new subscription needs a secret".into()),
            None => {}
        }
        self.subscriptions.insert(sub.id.clone(), sub);
        Ok(())
    }

    /// Removes a subscription with every delivery it had (and the events left
    /// with none). `false` when there is none.
    pub fn delete_subscription(&mut self, id: &str) -> bool {
        if self.subscriptions.remove(id).is_none() {
            return false;
        }
        let gone: Vec<u64> = self
            .deliveries
            .values()
            .filter(|d| d.subscription_id == id)
            .map(|d| d.seq)
            .collect();
        let mut events = BTreeSet::new();
        for seq in gone {
            if let Some(d) = self.remove_delivery(seq) {
                events.insert(d.event_id);
            }
        }
        self.drop_orphans(&events);
        true
    }

    /// New secret; the old one signs alongside it until `now_ms + grace_ms`.
    pub fn rotate_secret(
        &mut self,
        id: &str,
        secret: &WebhookSecret,
        now_ms: u64,
        grace_ms: u64,
    ) -> bool {
        let Some(sub) = self.subscriptions.get_mut(id) else {
            return false;
        };
        let old = std::mem::replace(&mut sub.secret, secret.clone());
        sub.previous_secret = Some((old, now_ms.saturating_add(grace_ms)));
        true
    }

    /// Accepts an event: one pending delivery per enabled subscription that wants
    /// its type. With an idempotency key seen in the last 24 h, nothing is
    /// created and the first event's id is returned.
    pub fn publish(&mut self, event: &Event, key: Option<&str>, now_ms: u64) -> Published {
        if let Some(key) = key {
            if let Some((id, at)) = self.idempotency.get(key) {
                if now_ms.saturating_sub(*at) < IDEMPOTENCY_MS {
                    return Published {
                        id: id.clone(),
                        created: false,
                    };
                }
            }
        }
        if self.events.contains_key(&event.id) {
            // The same command applied twice (a retried proposal): nothing new.
            return Published {
                id: event.id.clone(),
                created: false,
            };
        }
        let mut event = event.clone();
        event.created_ms = now_ms;
        let targets: Vec<(String, u64)> = self
            .subscriptions
            .values()
            .filter(|s| s.enabled && s.matches(&event.event_type))
            .map(|s| (s.id.clone(), s.retry_schedule_ms[0]))
            .collect();
        for (sub, first_delay) in targets {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.deliveries.insert(
                seq,
                Delivery {
                    seq,
                    event_id: event.id.clone(),
                    subscription_id: sub,
                    status: Status::Pending,
                    tries: 0,
                    attempts: Vec::new(),
                    next_attempt_ms: now_ms.saturating_add(first_delay),
                    created_ms: now_ms,
                    finished_ms: None,
                },
            );
            self.pending.insert(seq);
        }
        if let Some(key) = key {
            self.idempotency
                .insert(key.to_owned(), (event.id.clone(), now_ms));
        }
        let id = event.id.clone();
        self.events.insert(id.clone(), event);
        Published { id, created: true }
    }

    /// Records attempt outcomes. Reports for deliveries no longer pending, or
    /// whose `tries` moved on, are ignored (at-least-once: a duplicate outcome
    /// must not count twice). Returns how many were recorded.
    pub fn record(&mut self, reports: &[AttemptReport]) -> usize {
        let mut recorded = 0;
        for r in reports {
            let Some(d) = self.deliveries.get_mut(&r.seq) else {
                continue;
            };
            if d.status != Status::Pending || d.tries != r.tries {
                continue;
            }
            recorded += 1;
            d.tries += 1;
            d.attempts.push(r.attempt.clone());
            if d.attempts.len() > MAX_ATTEMPTS_KEPT {
                d.attempts.remove(0);
            }
            let at = r.attempt.at_ms;
            match r.outcome {
                Outcome::Delivered => {
                    d.status = Status::Delivered;
                    d.finished_ms = Some(at);
                    self.pending.remove(&r.seq);
                }
                Outcome::RetryAt(next) => d.next_attempt_ms = next,
                Outcome::Dead | Outcome::Gone => {
                    d.status = Status::Dead;
                    d.finished_ms = Some(at);
                    self.pending.remove(&r.seq);
                    self.dead.insert(r.seq);
                    if r.outcome == Outcome::Gone {
                        let sub = d.subscription_id.clone();
                        self.disable_gone(&sub, at);
                    }
                }
            }
        }
        recorded
    }

    /// A 410: the subscription is disabled and its other pending deliveries are
    /// dead-lettered (they can be replayed once it is re-enabled).
    fn disable_gone(&mut self, id: &str, at_ms: u64) {
        if let Some(sub) = self.subscriptions.get_mut(id) {
            sub.enabled = false;
            sub.disabled_reason = Some("the receiver answered 410 Gone".into());
        }
        let held: Vec<u64> = self
            .pending
            .iter()
            .copied()
            .filter(|s| {
                self.deliveries
                    .get(s)
                    .is_some_and(|d| d.subscription_id == id)
            })
            .collect();
        for seq in held {
            if let Some(d) = self.deliveries.get_mut(&seq) {
                d.status = Status::Dead;
                d.finished_ms = Some(at_ms);
            }
            self.pending.remove(&seq);
            self.dead.insert(seq);
        }
    }

    /// Makes deliveries pending again, due at `now_ms`, with a fresh schedule.
    /// Returns how many.
    pub fn replay(&mut self, target: &ReplayTarget, now_ms: u64) -> usize {
        let seqs: Vec<u64> = match target {
            ReplayTarget::One(seq) => match self.deliveries.get(seq) {
                Some(d) if d.status != Status::Pending => vec![*seq],
                _ => Vec::new(),
            },
            ReplayTarget::Subscription(id) => self
                .dead
                .iter()
                .copied()
                .filter(|s| {
                    self.deliveries
                        .get(s)
                        .is_some_and(|d| d.subscription_id == *id)
                })
                .collect(),
            ReplayTarget::All => self.dead.iter().copied().collect(),
        };
        for seq in &seqs {
            if let Some(d) = self.deliveries.get_mut(seq) {
                d.status = Status::Pending;
                d.tries = 0;
                d.next_attempt_ms = now_ms;
                d.finished_ms = None;
                self.dead.remove(seq);
                self.pending.insert(*seq);
            }
        }
        seqs.len()
    }

    /// Retention: delivered deliveries older than `delivered_ms`, dead letters
    /// older than `dead_ms`, events left with no delivery (once older than
    /// `delivered_ms`), idempotency keys older than 24 h. Returns how many
    /// deliveries and events went.
    pub fn purge(&mut self, now_ms: u64, delivered_ms: u64, dead_ms: u64) -> (usize, usize) {
        let expired: Vec<u64> = self
            .deliveries
            .values()
            .filter(|d| match (d.status, d.finished_ms) {
                (Status::Delivered, Some(at)) => now_ms.saturating_sub(at) >= delivered_ms,
                (Status::Dead, Some(at)) => now_ms.saturating_sub(at) >= dead_ms,
                _ => false,
            })
            .map(|d| d.seq)
            .collect();
        for seq in &expired {
            self.remove_delivery(*seq);
        }
        let referenced: BTreeSet<&str> = self
            .deliveries
            .values()
            .map(|d| d.event_id.as_str())
            .collect();
        let orphans: Vec<String> = self
            .events
            .values()
            .filter(|e| {
                !referenced.contains(e.id.as_str())
                    && now_ms.saturating_sub(e.created_ms) >= delivered_ms
            })
            .map(|e| e.id.clone())
            .collect();
        for id in &orphans {
            self.events.remove(id);
        }
        self.idempotency
            .retain(|_, (_, at)| now_ms.saturating_sub(*at) < IDEMPOTENCY_MS);
        for sub in self.subscriptions.values_mut() {
            if sub
                .previous_secret
                .as_ref()
                .is_some_and(|(_, until)| now_ms >= *until)
            {
                sub.previous_secret = None;
            }
        }
        (expired.len(), orphans.len())
    }

    fn remove_delivery(&mut self, seq: u64) -> Option<Delivery> {
        self.pending.remove(&seq);
        self.dead.remove(&seq);
        self.deliveries.remove(&seq)
    }

    /// Drops those of `events` that no delivery refers to any more.
    fn drop_orphans(&mut self, events: &BTreeSet<String>) {
        if events.is_empty() {
            return;
        }
        let referenced: BTreeSet<&str> = self
            .deliveries
            .values()
            .filter(|d| events.contains(&d.event_id))
            .map(|d| d.event_id.as_str())
            .collect();
        let gone: Vec<String> = events
            .iter()
            .filter(|e| !referenced.contains(e.as_str()))
            .cloned()
            .collect();
        for e in gone {
            self.events.remove(&e);
        }
    }

    /// Figures of every subscription (and of deliveries whose subscription is
    /// gone, under their id) at `now_ms`.
    pub fn stats(&self, now_ms: u64) -> BTreeMap<String, SubscriptionStats> {
        let mut out: BTreeMap<String, SubscriptionStats> = self
            .subscriptions
            .keys()
            .map(|id| (id.clone(), SubscriptionStats::default()))
            .collect();
        for d in self.deliveries.values() {
            let s = out.entry(d.subscription_id.clone()).or_default();
            match d.status {
                Status::Pending => {
                    s.pending += 1;
                    let age = now_ms.saturating_sub(d.created_ms);
                    s.oldest_pending_ms = Some(s.oldest_pending_ms.map_or(age, |a| a.max(age)));
                }
                Status::Delivered => s.delivered += 1,
                Status::Dead => s.dead += 1,
            }
        }
        for s in out.values_mut() {
            let done = s.delivered + s.dead;
            if done > 0 {
                s.success_rate = Some(s.delivered as f64 / done as f64);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
