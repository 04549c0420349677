//! Webhooks on one node (issue 10), from the outside: a real gateway, receivers
//! that are small actix-web servers on loopback inside the test, subscriptions
//! and events through the admin API. Signatures are verified here with our own
//! HMAC (ring), independently of the node's code.
//!
//! Retry schedules are in milliseconds or seconds so the tests wait for state
//! (a receiver's count, a delivery's status), with generous deadlines.

mod support;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use sluice_testkit::{client, free_port, send, wait_for_async, Answer};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Gateway;

const TOKEN: &str = "webhook-tests-admin-token";
const WAIT: Duration = Duration::from_secs(30);

/// A node with `webhooks.allow_private_targets: true` (plus `webhooks` lines);
/// returns once it leads its one-node cluster (a consistent read succeeds).
async fn gateway(webhooks: &str) -> Gateway {
    let gw = Gateway::start(&[
        ("admin.yaml", &format!("admin:\n  token: {TOKEN}\n")),
        (
            "webhooks.yaml",
            &format!("webhooks:\n  allow_private_targets: true\n{webhooks}"),
        ),
    ]);
    wait_for_async("the node to lead", WAIT, &gw, || async {
        let a = admin(
            &gw,
            "GET",
            "/admin/webhooks/subscriptions?consistent=true",
            None,
        )
        .await;
        (a.status == 200).then_some(()).ok_or(a.text)
    })
    .await;
    gw
}

fn http() -> awc::Client {
    client(Duration::from_secs(30))
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> Answer {
    let m = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let req = http()
        .request(m, gw.admin_url(path))
        .insert_header(("authorization", format!("Bearer {TOKEN}")))
        .insert_header(("content-type", "application/json"));
    send(req, body.map(|b| b.to_string().into_bytes()))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// What a receiver saw of one request.
#[derive(Clone, Debug)]
struct Hit {
    id: String,
    ts: String,
    sig: String,
    xsig: String,
    body: Vec<u8>,
    at: Instant,
}

/// How a receiver answers: queued answers first, then the default.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    Hang,
    Huge,
    /// 200, then a body of one byte every 100 ms, for a minute.
    Trickle,
}

#[derive(Default)]
struct Plan {
    queued: VecDeque<Reply>,
    default: Option<Reply>,
}

#[derive(Clone, Default)]
struct Shared {
    hits: Arc<Mutex<HashMap<String, Vec<Hit>>>>,
    plans: Arc<Mutex<HashMap<String, Plan>>>,
}

/// One receiver server; each path is an independent endpoint.
struct Receiver {
    port: u16,
    shared: Shared,
}

impl Receiver {
    fn start() -> Receiver {
        let shared = Shared::default();
        let port = free_port();
        let s = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(s.clone()))
                .default_service(web::to(receive))
        })
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", port))
        .expect("bind receiver")
        .run();
        actix_rt::spawn(server);
        Receiver { port, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn queue(&self, path: &str, replies: &[Reply]) {
        let mut plans = self.shared.plans.lock().unwrap();
        plans
            .entry(path.into())
            .or_default()
            .queued
            .extend(replies.iter().cloned());
    }

    fn default(&self, path: &str, reply: Reply) {
        self.shared
            .plans
            .lock()
            .unwrap()
            .entry(path.into())
            .or_default()
            .default = Some(reply);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.shared
            .hits
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    async fn wait_hits(&self, gw: &Gateway, path: &str, n: usize) -> Vec<Hit> {
        wait_for_async(format!("{n} request(s) at {path}"), WAIT, gw, || async {
            let h = self.hits(path);
            if h.len() >= n {
                Ok(h)
            } else {
                Err(h.len())
            }
        })
        .await
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, s: web::Data<Shared>) -> HttpResponse {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path = req.path().to_owned();
    s.hits
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(Hit {
            id: h("webhook-id"),
            ts: h("webhook-timestamp"),
            sig: h("webhook-signature"),
            xsig: h("x-webhook-signature"),
            body: body.to_vec(),
            at: Instant::now(),
        });
    let reply = {
        let mut plans = s.plans.lock().unwrap();
        let plan = plans.entry(path).or_default();
        plan.queued
            .pop_front()
            .or_else(|| plan.default.clone())
            .unwrap_or(Reply::Status(200))
    };
    match reply {
        Reply::Status(code) => {
            HttpResponse::build(awc::http::StatusCode::from_u16(code).expect("status")).body("ok")
        }
        Reply::RetryAfter(code, secs) => {
            HttpResponse::build(awc::http::StatusCode::from_u16(code).expect("status"))
                .insert_header(("retry-after", secs.to_string()))
                .finish()
        }
        Reply::Hang => {
            actix_rt::time::sleep(Duration::from_secs(120)).await;
            HttpResponse::Ok().finish()
        }
        Reply::Huge => {
            // 1 GiB, produced lazily: the dispatcher must read 64 KiB and go.
            let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::iter(
                std::iter::repeat_n(chunk, 16 * 1024).map(Ok::<_, actix_web::Error>),
            );
            HttpResponse::Ok().streaming(stream)
        }
        Reply::Trickle => {
            let stream = futures_util::stream::unfold(0u32, |n| async move {
                if n >= 600 {
                    return None;
                }
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from_static(b"x")),
                    n + 1,
                ))
            });
            HttpResponse::Ok().streaming(stream)
        }
    }
}

/// The Standard Webhooks signature, computed here.
fn expected_sig(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut msg = Vec::new();
    msg.extend_from_slice(format!("{id}.{ts}.").as_bytes());
    msg.extend_from_slice(body);
    format!("v1,{}", B64.encode(ring::hmac::sign(&key, &msg).as_ref()))
}

fn expected_xsig(secret: &str, body: &[u8]) -> String {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates a subscription; returns (id, secret).
async fn subscribe(gw: &Gateway, body: Value) -> (String, String) {
    let a = admin(gw, "POST", "/admin/webhooks/subscriptions", Some(body)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert!(a.header("x-sluice-version").is_some());
    (
        a.body["id"].as_str().expect("id").to_owned(),
        a.body["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn publish(gw: &Gateway, body: Value) -> String {
    let a = admin(gw, "POST", "/admin/events", Some(body)).await;
    assert_eq!(a.status, 202, "{}", a.text);
    a.body["id"].as_str().expect("event id").to_owned()
}

async fn deliveries(gw: &Gateway, query: &str) -> Vec<Value> {
    let a = admin(
        gw,
        "GET",
        &format!("/admin/webhooks/deliveries?{query}"),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["deliveries"].as_array().cloned().unwrap_or_default()
}

#[actix_rt::test]
async fn an_event_reaches_every_subscriber_signed_and_no_one_else() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    let (a, secret_a) = subscribe(
        &gw,
        json!({"url": rx.url("/a"), "event_types": ["order.*"]}),
    )
    .await;
    let (_, secret_b) = subscribe(
        &gw,
        json!({"url": rx.url("/b"), "event_types": ["order.created"]}),
    )
    .await;
    let (c, _) = subscribe(&gw, json!({"url": rx.url("/c"), "event_types": ["user.*"]})).await;
    let id = publish(
        &gw,
        json!({"type": "order.created", "data": {"order": 42}, "correlation_id": "corr-1", "source": "shop"}),
    )
    .await;
    for (path, secret) in [("/a", &secret_a), ("/b", &secret_b)] {
        let hits = rx.wait_hits(&gw, path, 1).await;
        let hit = &hits[0];
        assert_eq!(hit.id, id);
        assert_eq!(hit.sig, expected_sig(secret, &hit.id, &hit.ts, &hit.body));
        assert_eq!(hit.xsig, expected_xsig(secret, &hit.body));
        let ts: u64 = hit.ts.parse().expect("unix seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(ts.abs_diff(now) < 300, "timestamp {ts} vs now {now}");
        let body: Value = serde_json::from_slice(&hit.body).expect("JSON body");
        assert_eq!(body["event_id"], id);
        assert_eq!(body["event_type"], "order.created");
        assert_eq!(body["data"], json!({"order": 42}));
        assert_eq!(body["correlation_id"], "corr-1");
        assert_eq!(body["source"], "shop");
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    // The third subscriber wants another type: no delivery was even created.
    assert!(deliveries(&gw, &format!("subscription={c}"))
        .await
        .is_empty());
    assert!(rx.hits("/c").is_empty());
    // Both deliveries end up delivered, one attempt each.
    wait_for_async("a's delivery to be delivered", WAIT, &gw, || async {
        let d = deliveries(&gw, &format!("subscription={a}&status=delivered")).await;
        (d.len() == 1).then_some(()).ok_or(d)
    })
    .await;
    let sub = admin(
        &gw,
        "GET",
        &format!("/admin/webhooks/subscriptions/{a}"),
        None,
    )
    .await;
    assert_eq!(sub.body["stats"]["delivered"], 1, "{}", sub.text);
    assert_eq!(sub.body["stats"]["success_rate"], 1.0);
    assert!(
        sub.body.get("secret").is_none(),
        "the secret is never read back"
    );
    assert!(!sub.text.contains(&secret_a));
}

#[actix_rt::test]
async fn a_receiver_failing_twice_gets_it_on_the_third_attempt() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    rx.queue("/flaky", &[Reply::Status(500), Reply::Status(502)]);
    let (sub, _) = subscribe(
        &gw,
        json!({"url": rx.url("/flaky"), "event_types": ["*"], "retry_schedule": ["0s", "1s", "1s", "1s"]}),
    )
    .await;
    let id = publish(&gw, json!({"type": "thing.happened", "data": null})).await;
    let hits = rx.wait_hits(&gw, "/flaky", 3).await;
    assert!(
        hits.iter().all(|h| h.id == id),
        "same webhook-id on every retry"
    );
    let d = wait_for_async("the delivery to be delivered", WAIT, &gw, || async {
        let d = deliveries(&gw, &format!("subscription={sub}&status=delivered")).await;
        d.into_iter().next().ok_or("not yet")
    })
    .await;
    // The leader counted the attempts; every node exports the queue gauges.
    gw.wait_metric(
        &format!("gateway_webhook_deliveries_total{{outcome=\"failed\",subscription=\"{sub}\"}}"),
        2.0,
        30,
    )
    .await;
    gw.wait_metric(
        &format!(
            "gateway_webhook_deliveries_total{{outcome=\"delivered\",subscription=\"{sub}\"}}"
        ),
        1.0,
        30,
    )
    .await;
    gw.wait_metric(
        &format!("gateway_webhook_queue_depth{{subscription=\"{sub}\"}}"),
        0.0,
        30,
    )
    .await;
    let codes: Vec<Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(502), json!(200)]);
    // Delivered: no fourth attempt.
    assert_eq!(rx.hits("/flaky").len(), 3);
}

#[actix_rt::test]
async fn retry_after_on_429_is_honoured() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    rx.queue("/busy", &[Reply::RetryAfter(429, 2)]);
    subscribe(
        &gw,
        json!({"url": rx.url("/busy"), "event_types": ["*"], "retry_schedule": ["0s", "100ms", "100ms"]}),
    )
    .await;
    publish(&gw, json!({"type": "t", "data": 1})).await;
    let hits = rx.wait_hits(&gw, "/busy", 2).await;
    let gap = hits[1].at.duration_since(hits[0].at);
    assert!(
        gap >= Duration::from_millis(1950),
        "retried after {gap:?}, before Retry-After: 2"
    );
}

#[actix_rt::test]
async fn a_dead_letter_is_replayed_once_the_receiver_heals() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    rx.default("/down", Reply::Status(500));
    let (sub, _) = subscribe(
        &gw,
        json!({"url": rx.url("/down"), "event_types": ["*"], "retry_schedule": ["0s", "200ms"]}),
    )
    .await;
    let id = publish(&gw, json!({"type": "t", "data": {}})).await;
    let dead = wait_for_async("the delivery to be dead", WAIT, &gw, || async {
        let d = deliveries(&gw, "status=dead").await;
        d.into_iter().next().ok_or("not yet")
    })
    .await;
    assert_eq!(dead["event_id"], id);
    assert_eq!(dead["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(rx.hits("/down").len(), 2);
    gw.wait_metric("gateway_webhook_dead_letters", 1.0, 30)
        .await;
    // Heal, then replay every dead letter of the subscription.
    rx.default("/down", Reply::Status(200));
    let r = admin(
        &gw,
        "POST",
        "/admin/webhooks/dead-letters/replay",
        Some(json!({"subscription": sub})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["replayed"], 1);
    let hits = rx.wait_hits(&gw, "/down", 3).await;
    assert_eq!(hits[2].id, id);
    wait_for_async("the replay to be delivered", WAIT, &gw, || async {
        let d = deliveries(&gw, &format!("subscription={sub}&status=delivered")).await;
        (d.len() == 1).then_some(()).ok_or(d.len())
    })
    .await;
    assert!(deliveries(&gw, "status=dead").await.is_empty());
    gw.wait_metric("gateway_webhook_dead_letters", 0.0, 30)
        .await;
}

#[actix_rt::test]
async fn gone_disables_the_subscription() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    rx.default("/gone", Reply::Status(410));
    let (sub, _) = subscribe(&gw, json!({"url": rx.url("/gone"), "event_types": ["*"]})).await;
    publish(&gw, json!({"type": "t", "data": 1})).await;
    rx.wait_hits(&gw, "/gone", 1).await;
    wait_for_async("the subscription to be disabled", WAIT, &gw, || async {
        let s = admin(
            &gw,
            "GET",
            &format!("/admin/webhooks/subscriptions/{sub}"),
            None,
        )
        .await;
        (s.body["enabled"] == false).then_some(()).ok_or(s.text)
    })
    .await;
    publish(&gw, json!({"type": "t", "data": 2})).await;
    // The second event creates no delivery for a disabled subscription.
    assert_eq!(
        deliveries(&gw, &format!("subscription={sub}")).await.len(),
        1
    );
    assert_eq!(rx.hits("/gone").len(), 1);
}

#[actix_rt::test]
async fn an_ordered_subscription_keeps_publish_order_across_a_failure() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    rx.queue("/ordered", &[Reply::Status(500)]);
    subscribe(
        &gw,
        json!({"url": rx.url("/ordered"), "event_types": ["*"], "ordered": true,
               "retry_schedule": ["0s", "500ms", "500ms"]}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&gw, json!({"type": "t", "data": i})).await);
    }
    let hits = rx.wait_hits(&gw, "/ordered", 6).await;
    let seen: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    let mut want = vec![ids[0].as_str()];
    want.extend(ids.iter().map(String::as_str));
    assert_eq!(seen, want, "the failed head holds the queue");
}

#[actix_rt::test]
async fn after_a_rotation_both_signatures_verify() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    let (sub, old) = subscribe(&gw, json!({"url": rx.url("/rot"), "event_types": ["*"]})).await;
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/webhooks/subscriptions/{sub}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new, old);
    publish(&gw, json!({"type": "t", "data": 1})).await;
    let hit = &rx.wait_hits(&gw, "/rot", 1).await[0];
    let sigs: Vec<&str> = hit.sig.split(' ').collect();
    assert_eq!(sigs.len(), 2, "{}", hit.sig);
    assert!(sigs.contains(&expected_sig(&new, &hit.id, &hit.ts, &hit.body).as_str()));
    assert!(sigs.contains(&expected_sig(&old, &hit.id, &hit.ts, &hit.body).as_str()));
    assert_eq!(hit.xsig, expected_xsig(&new, &hit.body));
}

#[actix_rt::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let gw = gateway("  max_payload: 4KiB\n").await;
    let rx = Receiver::start();
    for (body, what) in [
        (json!({"url": "not a url", "event_types": ["*"]}), "url"),
        (
            json!({"url": "ftp://example.com/x", "event_types": ["*"]}),
            "scheme",
        ),
        (
            json!({"url": "http://169.254.169.254/latest/meta-data", "event_types": ["*"]}),
            "metadata",
        ),
        (
            json!({"url": "http://[fe80::1]/", "event_types": ["*"]}),
            "link-local",
        ),
        (
            json!({"url": rx.url("/x"), "event_types": ["order created"]}),
            "type with a space",
        ),
        (json!({"url": rx.url("/x"), "event_types": []}), "no types"),
        (
            json!({"url": rx.url("/x"), "event_types": ["*"], "retry_schedule": ["soon"]}),
            "schedule",
        ),
        (
            json!({"url": rx.url("/x"), "event_types": ["*"], "timeout": "9d"}),
            "timeout",
        ),
        (
            json!({"url": rx.url("/x"), "event_types": ["*"], "colour": "red"}),
            "unknown field",
        ),
    ] {
        let a = admin(&gw, "POST", "/admin/webhooks/subscriptions", Some(body)).await;
        assert_eq!(a.status, 400, "{what}: {}", a.text);
        assert!(
            a.body["error"].is_string() && a.body["message"].is_string(),
            "{what}: {}",
            a.text
        );
    }
    let list = admin(&gw, "GET", "/admin/webhooks/subscriptions", None).await;
    assert_eq!(list.body["subscriptions"], json!([]), "nothing stored");

    subscribe(&gw, json!({"url": rx.url("/x"), "event_types": ["*"]})).await;
    for (body, what, code) in [
        (json!({"type": "has space", "data": 1}), "type", 400),
        (json!({"data": 1}), "no type", 400),
        (
            json!({"type": "t", "data": "x".repeat(5000)}),
            "oversized",
            413,
        ),
    ] {
        let a = admin(&gw, "POST", "/admin/events", Some(body)).await;
        assert_eq!(a.status, code, "{what}: {}", a.text);
        assert!(a.body["error"].is_string(), "{what}: {}", a.text);
    }
    let malformed = send(
        http()
            .post(gw.admin_url("/admin/events"))
            .insert_header(("authorization", format!("Bearer {TOKEN}"))),
        Some(b"{not json".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    assert!(deliveries(&gw, "").await.is_empty(), "no event was stored");
    assert!(rx.hits("/x").is_empty());

    // Unknown things are 404.
    for (m, p) in [
        ("GET", "/admin/webhooks/subscriptions/nope"),
        ("DELETE", "/admin/webhooks/subscriptions/nope"),
        ("POST", "/admin/webhooks/subscriptions/nope/rotate-secret"),
        ("POST", "/admin/webhooks/deliveries/999/replay"),
    ] {
        let a = admin(&gw, m, p, None).await;
        assert_eq!(a.status, 404, "{m} {p}: {}", a.text);
    }
    // Publishing needs the admin token or a publisher's API key.
    let anon = send(
        http().post(gw.admin_url("/admin/events")),
        Some(b"{}".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(anon.status, 401);
    let key_of = |roles: Value| {
        let gw = &gw;
        async move {
            let c = admin(
                gw,
                "POST",
                "/admin/clients",
                Some(json!({"name": "svc", "roles": roles, "scopes": []})),
            )
            .await;
            assert_eq!(c.status, 200, "{}", c.text);
            let k = admin(
                gw,
                "POST",
                "/admin/keys",
                Some(json!({"client_id": c.body["client_id"]})),
            )
            .await;
            assert_eq!(k.status, 200, "{}", k.text);
            k.body["key"].as_str().expect("key").to_owned()
        }
    };
    let publisher = key_of(json!(["publisher"])).await;
    let reader = key_of(json!(["reader"])).await;
    let by_key = |key: String| {
        let gw = &gw;
        async move {
            send(
                http()
                    .post(gw.admin_url("/admin/events"))
                    .insert_header(("x-api-key", key)),
                Some(json!({"type": "t", "data": 1}).to_string().into_bytes()),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(by_key(reader).await.status, 401);
    // The data plane's key index follows the state machine: allow it a moment.
    wait_for_async("a publisher key to publish", WAIT, &gw, || async {
        let a = by_key(publisher.clone()).await;
        (a.status == 202).then_some(()).ok_or(a.text)
    })
    .await;
    // Idempotency: the same key twice is one event.
    let first = publish(
        &gw,
        json!({"type": "t", "data": 1, "idempotency_key": "k-1"}),
    )
    .await;
    let again = admin(
        &gw,
        "POST",
        "/admin/events",
        Some(json!({"type": "t", "data": 2, "idempotency_key": "k-1"})),
    )
    .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["id"], first.as_str());
    assert_eq!(again.body["duplicate"], true);
}

#[actix_rt::test]
async fn hanging_and_huge_receivers_cost_one_timeout_and_a_bounded_read() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    rx.default("/hang", Reply::Hang);
    rx.default("/huge", Reply::Huge);
    rx.default("/slow", Reply::Trickle);
    let (hang, _) = subscribe(
        &gw,
        json!({"url": rx.url("/hang"), "event_types": ["*"], "timeout": "1s", "retry_schedule": ["0s"]}),
    )
    .await;
    let (huge, _) = subscribe(
        &gw,
        json!({"url": rx.url("/huge"), "event_types": ["*"], "timeout": "20s"}),
    )
    .await;
    let (slow, _) = subscribe(
        &gw,
        json!({"url": rx.url("/slow"), "event_types": ["*"], "timeout": "1s", "retry_schedule": ["0s"]}),
    )
    .await;
    let (fast, _) = subscribe(&gw, json!({"url": rx.url("/fast"), "event_types": ["*"]})).await;
    let started = Instant::now();
    publish(&gw, json!({"type": "t", "data": 1})).await;
    // The fast receiver is not held up by the hanging one.
    rx.wait_hits(&gw, "/fast", 1).await;
    let dead = wait_for_async("the hanging delivery to be dead", WAIT, &gw, || async {
        let d = deliveries(&gw, &format!("subscription={hang}&status=dead")).await;
        d.into_iter().next().ok_or("not yet")
    })
    .await;
    let err = dead["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!err.is_empty(), "{dead}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "one timeout, not more"
    );
    // A 1 GiB answer: 200 seen, the body read up to 64 KiB, delivered.
    wait_for_async("the huge receiver's delivery", WAIT, &gw, || async {
        let d = deliveries(&gw, &format!("subscription={huge}&status=delivered")).await;
        (d.len() == 1).then_some(()).ok_or(d.len())
    })
    .await;
    // A 200 whose body trickles byte by byte: delivered, after at most the
    // timeout spent reading.
    let d = wait_for_async("the trickling receiver's delivery", WAIT, &gw, || async {
        let d = deliveries(&gw, &format!("subscription={slow}&status=delivered")).await;
        d.into_iter().next().ok_or("not yet")
    })
    .await;
    let latency = d["attempts"][0]["latency_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(latency < 5_000, "{d}");
    let _ = fast;
    // The node still serves.
    let h = send(http().get(gw.url("/health")), None).await.unwrap();
    assert_eq!(h.status, 200);
}

#[actix_rt::test]
async fn deliveries_page_with_a_cursor() {
    let gw = gateway("").await;
    let rx = Receiver::start();
    subscribe(&gw, json!({"url": rx.url("/p"), "event_types": ["*"]})).await;
    for i in 0..5 {
        publish(&gw, json!({"type": "t", "data": i})).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let a = admin(
            &gw,
            "GET",
            &format!("/admin/webhooks/deliveries?limit=2&cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        for d in a.body["deliveries"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_owned());
        }
        match a.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no duplicates across pages");
    let bad = admin(&gw, "GET", "/admin/webhooks/deliveries?status=lost", None).await;
    assert_eq!(bad.status, 400);
}

/// `sluice echo-server`'s sink (the Docker chaos suite's receiver): 204 to every
/// delivery, `GET /sink` lists each `webhook-id` once, retries and duplicates
/// counted in `received`; neither counts as upstream traffic.
#[actix_rt::test]
async fn the_echo_server_sink_records_every_webhook_id() {
    let gw = gateway("").await;
    let echo = support::echo();
    subscribe(
        &gw,
        json!({ "url": format!("{}/sink/x", echo.url()), "event_types": ["*"] }),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(publish(&gw, json!({ "type": "sink.test", "data": { "n": n } })).await);
    }
    // A delivery by hand with an id the sink already has: a duplicate.
    let again = send(
        http()
            .post(format!("{}/sink/other", echo.url()))
            .insert_header(("webhook-id", ids[0].as_str())),
        Some(b"{}".to_vec()),
    )
    .await
    .expect("POST /sink");
    assert_eq!(again.status, 204, "{}", again.text);
    let sink = wait_for_async("three events in the sink", WAIT, &gw, || async {
        let a = send(http().get(format!("{}/sink", echo.url())), None)
            .await
            .map_err(|e| e.to_string())?;
        let got: Vec<String> = a.body["ids"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.iter().all(|id| got.contains(id)) {
            Ok(a.body)
        } else {
            Err(a.text)
        }
    })
    .await;
    assert_eq!(sink["unique"], 3, "{sink}");
    assert_eq!(sink["ids"].as_array().map(Vec::len), Some(3), "{sink}");
    assert!(sink["received"].as_u64() >= Some(4), "{sink}");
    assert_eq!(sink["dropped"], 0, "{sink}");
    let stats = send(http().get(format!("{}/_control/stats", echo.url())), None)
        .await
        .expect("stats");
    assert_eq!(stats.body["requests"], 0, "{}", stats.text);
}
