use super::*;
use crate::codec;
use crate::limits::Ledger;
use crate::state::{decode_snapshot, encode_snapshot, ApplyCtx, ClusterState, Delta};
use crate::{Command, Response};

fn sub(id: &str, types: &[&str]) -> Subscription {
    Subscription {
        id: id.into(),
        url: format!("http://127.0.0.1:1/{id}"),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        retry_schedule_ms: vec![0, 1000, 5000],
        timeout_ms: DEFAULT_TIMEOUT_MS,
        description: None,
        enabled: true,
        ordered: false,
        secret: WebhookSecret::new(format!("whsec_{id}")),
        previous_secret: None,
        disabled_reason: None,
        created_ms: 0,
    }
}

fn event(id: &str, ty: &str) -> Event {
    Event {
        id: id.into(),
        event_type: ty.into(),
        event_version: None,
        source: None,
        correlation_id: None,
        data: "{}".into(),
        created_ms: 0,
    }
}

fn attempt(at_ms: u64, code: u16) -> Attempt {
    Attempt {
        at_ms,
        status_code: Some(code),
        latency_ms: 1,
        error: None,
    }
}

fn apply(state: &mut ClusterState, hooks: &mut Webhooks, c: Command) -> (Response, Vec<Delta>) {
    let v = crate::state::tests::test_validator();
    let mut ctx = ApplyCtx::new(&v);
    ctx.webhooks = Some(hooks);
    let r = state.apply(&c, &mut ctx);
    (r, ctx.deltas)
}

#[test]
fn types_match_exactly_by_prefix_or_all() {
    assert!(type_matches("order.created", "order.created"));
    assert!(!type_matches("order.created", "order.paid"));
    assert!(type_matches("order.*", "order.paid"));
    assert!(type_matches("order.*", "order.line.added"));
    assert!(!type_matches("order.*", "orders.paid"));
    assert!(!type_matches("order.*", "order."));
    assert!(type_matches("*", "anything"));
}

#[test]
fn publish_fans_out_to_matching_enabled_subscriptions_only() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["order.*"])).unwrap();
    h.put_subscription(sub("b", &["order.created"])).unwrap();
    h.put_subscription(sub("c", &["user.*"])).unwrap();
    let mut off = sub("d", &["*"]);
    off.enabled = false;
    h.put_subscription(off).unwrap();
    let p = h.publish(&event("e1", "order.created"), None, 1000);
    assert!(p.created);
    let subs: Vec<&str> = h
        .deliveries
        .values()
        .map(|d| d.subscription_id.as_str())
        .collect();
    assert_eq!(subs, ["a", "b"]);
    assert_eq!(h.pending.len(), 2);
    assert_eq!(h.deliveries[&0].next_attempt_ms, 1000);
    assert_eq!(h.events["e1"].created_ms, 1000);
}

#[test]
fn idempotency_keys_hold_for_24_hours() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    let first = h.publish(&event("e1", "t"), Some("k"), 1000);
    let again = h.publish(&event("e2", "t"), Some("k"), 1000 + IDEMPOTENCY_MS - 1);
    assert_eq!(again.id, "e1");
    assert!(!again.created);
    assert_eq!(h.events.len(), 1);
    assert_eq!(h.deliveries.len(), 1);
    assert_eq!(first.id, "e1");
    // After 24 h the key is free again.
    let later = h.publish(&event("e3", "t"), Some("k"), 1000 + IDEMPOTENCY_MS);
    assert!(later.created);
    assert_eq!(later.id, "e3");
    // The same command applied twice creates nothing new either.
    let dup = h.publish(&event("e3", "t"), None, 5_000_000_000);
    assert!(!dup.created);
    assert_eq!(h.deliveries.len(), 2);
}

#[test]
fn attempts_retry_deliver_or_die_and_duplicates_are_ignored() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    h.publish(&event("e1", "t"), None, 0);
    let fail = AttemptReport {
        seq: 0,
        tries: 0,
        attempt: attempt(10, 500),
        outcome: Outcome::RetryAt(1010),
    };
    assert_eq!(h.record(std::slice::from_ref(&fail)), 1);
    // The same report again (a re-sent batch) changes nothing.
    assert_eq!(h.record(&[fail]), 0);
    let d = &h.deliveries[&0];
    assert_eq!((d.tries, d.next_attempt_ms, d.attempts.len()), (1, 1010, 1));
    let ok = AttemptReport {
        seq: 0,
        tries: 1,
        attempt: attempt(1010, 200),
        outcome: Outcome::Delivered,
    };
    assert_eq!(h.record(&[ok]), 1);
    assert_eq!(h.deliveries[&0].status, Status::Delivered);
    assert!(h.pending.is_empty());

    h.publish(&event("e2", "t"), None, 0);
    let dead = AttemptReport {
        seq: 1,
        tries: 0,
        attempt: attempt(10, 500),
        outcome: Outcome::Dead,
    };
    h.record(&[dead]);
    assert_eq!(h.deliveries[&1].status, Status::Dead);
    assert!(h.dead.contains(&1));
    let stats = &h.stats(100)["a"];
    assert_eq!((stats.delivered, stats.dead, stats.pending), (1, 1, 0));
    assert_eq!(stats.success_rate, Some(0.5));
}

#[test]
fn replay_makes_dead_letters_pending_with_a_fresh_schedule() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    h.put_subscription(sub("b", &["*"])).unwrap();
    h.publish(&event("e1", "t"), None, 0);
    for seq in [0, 1] {
        h.record(&[AttemptReport {
            seq,
            tries: 0,
            attempt: attempt(5, 500),
            outcome: Outcome::Dead,
        }]);
    }
    assert_eq!(h.replay(&ReplayTarget::Subscription("a".into()), 100), 1);
    assert_eq!(h.deliveries[&0].status, Status::Pending);
    assert_eq!(h.deliveries[&0].tries, 0);
    assert_eq!(h.deliveries[&0].next_attempt_ms, 100);
    assert_eq!(h.deliveries[&1].status, Status::Dead);
    assert_eq!(h.replay(&ReplayTarget::All, 200), 1);
    assert_eq!(h.dead.len(), 0);
    assert_eq!(h.pending.len(), 2);
    // Attempt history is kept across the replay.
    assert_eq!(h.deliveries[&0].attempts.len(), 1);
}

#[test]
fn gone_disables_the_subscription_and_dead_letters_its_queue() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    h.publish(&event("e1", "t"), None, 0);
    h.publish(&event("e2", "t"), None, 0);
    h.record(&[AttemptReport {
        seq: 0,
        tries: 0,
        attempt: attempt(5, 410),
        outcome: Outcome::Gone,
    }]);
    assert!(!h.subscriptions["a"].enabled);
    assert!(h.subscriptions["a"].disabled_reason.is_some());
    assert!(h.pending.is_empty());
    assert_eq!(h.dead.len(), 2);
    // New events no longer reach it.
    h.publish(&event("e3", "t"), None, 10);
    assert_eq!(h.deliveries.len(), 2);
    // Re-enabling (an update without a secret) keeps the secret.
    let mut again = sub("a", &["*"]);
    again.secret = WebhookSecret::default();
    h.put_subscription(again).unwrap();
    assert!(h.subscriptions["a"].enabled);
    assert_eq!(h.subscriptions["a"].secret.expose(), "whsec_a");
}

#[test]
fn rotation_signs_with_both_secrets_during_the_grace_period() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    assert!(h.rotate_secret("a", &WebhookSecret::new("whsec_new"), 1000, 500));
    let s = &h.subscriptions["a"];
    assert_eq!(s.signing_secrets(1200), ["whsec_new", "whsec_a"]);
    assert_eq!(s.signing_secrets(1500), ["whsec_new"]);
    h.purge(1500, DELIVERED_RETENTION_MS, DEAD_RETENTION_MS);
    assert!(h.subscriptions["a"].previous_secret.is_none());
    assert!(!h.rotate_secret("nope", &WebhookSecret::new("whsec_x"), 0, 0));
    assert!(!format!("{:?}", h.subscriptions["a"]).contains("whsec_"));
}

#[test]
fn retention_purges_delivered_dead_orphans_and_keys() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    h.publish(&event("e1", "t"), Some("k1"), 0);
    h.publish(&event("e2", "t"), None, 0);
    h.publish(&event("e3", "t"), None, 0);
    h.record(&[
        AttemptReport {
            seq: 0,
            tries: 0,
            attempt: attempt(10, 200),
            outcome: Outcome::Delivered,
        },
        AttemptReport {
            seq: 1,
            tries: 0,
            attempt: attempt(10, 500),
            outcome: Outcome::Dead,
        },
    ]);
    let d = DELIVERED_RETENTION_MS;
    // Just before 72 h nothing goes.
    assert_eq!(h.purge(d + 9, d, DEAD_RETENTION_MS), (0, 0));
    // At 72 h the delivered one and its event go; the dead letter and the
    // pending one stay.
    assert_eq!(h.purge(d + 10, d, DEAD_RETENTION_MS), (1, 1));
    assert!(!h.events.contains_key("e1"));
    assert!(h.events.contains_key("e2") && h.events.contains_key("e3"));
    assert!(h.idempotency.is_empty());
    // After 14 days the dead letter goes too.
    assert_eq!(
        h.purge(DEAD_RETENTION_MS + 10, d, DEAD_RETENTION_MS),
        (1, 1)
    );
    assert_eq!(h.deliveries.len(), 1);
    assert_eq!(h.pending.len(), 1);
}

#[test]
fn delete_removes_deliveries_and_orphaned_events() {
    let mut h = Webhooks::default();
    h.put_subscription(sub("a", &["*"])).unwrap();
    h.put_subscription(sub("b", &["x"])).unwrap();
    h.publish(&event("e1", "t"), None, 0);
    h.publish(&event("e2", "x"), None, 0);
    assert!(h.delete_subscription("a"));
    assert_eq!(h.deliveries.len(), 1);
    assert!(!h.events.contains_key("e1"));
    assert!(h.events.contains_key("e2"));
    assert!(!h.delete_subscription("a"));
}

#[test]
fn commands_apply_through_the_state_machine_and_survive_a_snapshot() {
    let mut state = ClusterState::default();
    let mut hooks = Webhooks::default();
    let (r, deltas) = apply(
        &mut state,
        &mut hooks,
        Command::PutWebhookSubscription {
            subscription: sub("a", &["*"]),
        },
    );
    assert_eq!(r, Response::Applied);
    assert_eq!(deltas, [Delta::WebhooksChanged]);
    let (r, _) = apply(
        &mut state,
        &mut hooks,
        Command::PublishEvent {
            event: event("e1", "t"),
            idempotency_key: Some("k".into()),
            now_ms: 5,
        },
    );
    assert_eq!(
        r,
        Response::Event {
            id: "e1".into(),
            created: true
        }
    );
    let (r, deltas) = apply(
        &mut state,
        &mut hooks,
        Command::PublishEvent {
            event: event("e9", "t"),
            idempotency_key: Some("k".into()),
            now_ms: 6,
        },
    );
    assert_eq!(
        r,
        Response::Event {
            id: "e1".into(),
            created: false
        }
    );
    assert!(deltas.is_empty());
    let (r, _) = apply(
        &mut state,
        &mut hooks,
        Command::DeleteWebhookSubscription { id: "zz".into() },
    );
    assert!(matches!(r, Response::NotFound { .. }));
    let (r, _) = apply(
        &mut state,
        &mut hooks,
        Command::ReplayWebhookDeliveries {
            target: ReplayTarget::One(77),
            now_ms: 1,
        },
    );
    assert!(matches!(r, Response::NotFound { .. }));

    // The commands and the domain go through bincode (the log, snapshots).
    let c = Command::RecordWebhookAttempts {
        reports: vec![AttemptReport {
            seq: 0,
            tries: 0,
            attempt: attempt(1, 503),
            outcome: Outcome::RetryAt(99),
        }],
    };
    let back: Command = codec::decode(&codec::encode(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let bytes = encode_snapshot(&state, &Ledger::default(), &hooks).unwrap();
    let (_, _, restored) = decode_snapshot(&bytes).unwrap();
    assert_eq!(restored, hooks);
}

#[test]
fn snapshots_without_webhooks_still_decode() {
    #[derive(serde::Serialize)]
    struct V2<'a> {
        state: &'a ClusterState,
        ledger: &'a Ledger,
    }
    let state = ClusterState::default();
    let bytes = codec::encode(&V2 {
        state: &state,
        ledger: &Ledger::default(),
    })
    .unwrap();
    let (s, _, hooks) = decode_snapshot(&bytes).unwrap();
    assert_eq!(s, state);
    assert_eq!(hooks, Webhooks::default());
    // And the layout before the ledger.
    let (s, _, _) = decode_snapshot(&codec::encode(&state).unwrap()).unwrap();
    assert_eq!(s, state);
}
