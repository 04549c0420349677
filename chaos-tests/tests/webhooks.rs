//! Webhooks (issue 10) against three real `sluice` processes: an idempotency key
//! reused on another node creates nothing, and events accepted just before the
//! leader is killed with SIGKILL all reach the receiver once a new leader takes
//! over (at-least-once).
//!
//! The receiver is a small raw-TCP HTTP/1.1 server on loopback (a thread per
//! connection) that answers 200 and records every `webhook-id` it sees.
// Each test holds the [`serial`] guard across its awaits on purpose (see
// ratelimit.rs): one cluster at a time on a small machine.
#![allow(clippy::await_holding_lock)]

mod support;

use serde_json::{json, Value};
use sluice_testkit::{wait_for_async, Answer};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::Cluster;

const ALL: [u64; 3] = [1, 2, 3];

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts of every `webhook-id` received.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<BTreeMap<String, u32>>>,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let rx = Receiver {
            seen: Arc::default(),
            port,
        };
        let seen = rx.seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut w = match conn.try_clone() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    let mut r = BufReader::new(conn);
                    loop {
                        let mut id = None;
                        let mut len = 0usize;
                        let mut line = String::new();
                        // Request line, then headers.
                        loop {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                let k = k.trim().to_ascii_lowercase();
                                if k == "webhook-id" {
                                    id = Some(v.trim().to_owned());
                                } else if k == "content-length" {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        // A slow receiver (50 ms an answer, 4 at a time): the
                        // queue is still long when the leader is killed.
                        std::thread::sleep(Duration::from_millis(50));
                        if let Some(id) = id {
                            *seen.lock().unwrap().entry(id).or_default() += 1;
                        }
                        if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        rx
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn ids(&self) -> BTreeMap<String, u32> {
        self.seen.lock().unwrap().clone()
    }
}

async fn post(c: &Cluster, id: u64, path: &str, body: &Value) -> Answer {
    c.admin_call(id, "POST", path, Some(body))
        .await
        .unwrap_or_else(|e| panic!("POST {path} on node {id}: {e}"))
}

/// Three nodes agreeing on a leader, private targets allowed, one subscription
/// to `rx` created through node 2.
async fn cluster_with_subscription(tag: &str, rx: &Receiver) -> (Cluster, String) {
    let mut c = Cluster::configure(tag, 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    c.wait_agreed_leader(&ALL, 30).await;
    c.wait_seeded(&ALL, 30).await;
    c.edit_config(1, |config| {
        config["webhooks"] = json!({ "allow_private_targets": true });
    })
    .await;
    let a = post(
        &c,
        2,
        "/admin/webhooks/subscriptions",
        &json!({ "url": rx.url(), "event_types": ["*"], "retry_schedule": ["0s", "1s", "2s", "5s"] }),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}\n{}", c.logs());
    (c, a.body["id"].as_str().expect("id").to_owned())
}

#[actix_rt::test]
async fn an_idempotency_key_reused_on_another_node_creates_nothing() {
    let _serial = serial();
    let rx = Receiver::start();
    let (c, sub) = cluster_with_subscription("wh-idem", &rx).await;
    let event = |n: u32| json!({ "type": "order.created", "data": { "n": n }, "idempotency_key": "order-77" });
    let first = post(&c, 1, "/admin/events", &event(1)).await;
    assert_eq!(first.status, 202, "{first:?}");
    let id = first.body["id"].as_str().expect("id").to_owned();
    for node in [2, 3, 1] {
        let again = post(&c, node, "/admin/events", &event(2)).await;
        assert_eq!(again.status, 202, "{again:?}");
        assert_eq!(again.body["id"], id.as_str(), "node {node}");
        assert_eq!(again.body["duplicate"], true, "node {node}");
    }
    // One delivery, on every node's copy of the state.
    for node in ALL {
        let a = c
            .admin_get(
                node,
                &format!("/admin/webhooks/deliveries?subscription={sub}&consistent=true"),
            )
            .await
            .expect("deliveries");
        let d = a.body["deliveries"].as_array().cloned().unwrap_or_default();
        assert_eq!(d.len(), 1, "node {node}: {}", a.text);
    }
    wait_for_async(
        "the event to arrive",
        Duration::from_secs(30),
        &c,
        || async {
            let ids = rx.ids();
            ids.contains_key(&id).then_some(()).ok_or(ids.len())
        },
    )
    .await;
    assert_eq!(
        rx.ids().len(),
        1,
        "one event, however many nodes were asked"
    );
}

#[actix_rt::test]
async fn events_accepted_before_the_leader_is_killed_are_all_delivered() {
    let _serial = serial();
    let rx = Receiver::start();
    let (mut c, _sub) = cluster_with_subscription("wh-kill", &rx).await;
    let (leader, _) = c.wait_agreed_leader(&ALL, 30).await;
    let follower = ALL.into_iter().find(|n| *n != leader).expect("a follower");
    // Publish through a follower and the leader alternately, 8 at a time.
    let mut accepted = BTreeSet::new();
    let started = Instant::now();
    let mut n = 0u32;
    while accepted.len() < 200 {
        let mut batch = Vec::new();
        for _ in 0..8 {
            n += 1;
            let via = if n.is_multiple_of(2) {
                leader
            } else {
                follower
            };
            let body = json!({ "type": "bulk.event", "data": { "n": n } });
            let c = &c;
            batch.push(async move { (publish(c, via, &body).await, via) });
        }
        for (a, via) in futures_util::future::join_all(batch).await {
            assert_eq!(a.status, 202, "via node {via}: {a:?}");
            accepted.insert(a.body["id"].as_str().expect("id").to_owned());
        }
    }
    let publish_secs = started.elapsed().as_secs_f64();
    c.kill9(leader);
    let before = rx.ids().len();
    assert!(
        before < accepted.len(),
        "the backlog must outlive the leader for this test to mean anything"
    );
    let rest: Vec<u64> = ALL.into_iter().filter(|n| *n != leader).collect();
    let (new_leader, _) = c.wait_agreed_leader(&rest, 60).await;
    assert_ne!(new_leader, leader);
    wait_for_async(
        "every accepted event to reach the receiver",
        Duration::from_secs(90),
        &c,
        || async {
            let ids = rx.ids();
            let missing = accepted.iter().filter(|id| !ids.contains_key(*id)).count();
            (missing == 0).then_some(()).ok_or(missing)
        },
    )
    .await;
    let ids = rx.ids();
    let dups: u32 = ids.values().map(|n| n - 1).sum();
    println!(
        "MEASURED webhooks kill -9: {} events accepted in {publish_secs:.2}s, {before} delivered \
         before the kill, all delivered after it; {dups} duplicate deliveries",
        accepted.len()
    );
}

/// `POST /admin/events` through node `via`, again while it answers 503.
async fn publish(c: &Cluster, via: u64, body: &Value) -> Answer {
    loop {
        let a = c
            .admin_call(via, "POST", "/admin/events", Some(body))
            .await
            .unwrap_or_else(|e| panic!("POST /admin/events on node {via}: {e}"));
        if a.status != 503 {
            return a;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}
