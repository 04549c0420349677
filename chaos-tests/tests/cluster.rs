//! Three-node clusters of real `sluice` processes on loopback, faulted from the
//! outside (SIGKILL, forged Raft RPCs) and checked over HTTP against DESIGN.md's
//! failure table. Each test owns its temp dir and ports, so they run in parallel.
//! Measurements (election time, catch-up time) are printed with a `MEASURED`
//! prefix: run with `-- --nocapture` to see them.

mod support;

use serde_json::{json, Value};
use sluice_testkit::{wait_for_async, Seen};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::{admin_put, brief, route_body, send, Answer, Cluster, Info, SECRET};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const ALL: [u64; 3] = [1, 2, 3];

/// A pause of 0–250 ms that differs between runs (start-order jitter).
fn jitter(salt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(
        nanos.wrapping_mul(2_654_435_761).wrapping_add(salt) % 251,
    ))
}

fn others(ids: &[u64], not: &[u64]) -> Vec<u64> {
    ids.iter().copied().filter(|i| !not.contains(i)).collect()
}

/// Checks that node `id` proxies `path` to the echo upstream (200, echoed path).
async fn assert_proxies(c: &Cluster, id: u64, path: &str) {
    let a = c.data_get(id, path).await;
    let ok = a
        .as_ref()
        .is_ok_and(|a| a.status == 200 && a.body["path"] == path);
    assert!(
        ok,
        "node {id} did not proxy {path} to the echo upstream: {a:?}\n{}",
        c.logs()
    );
}

// ------------------------------------------------------------------ tests ----

/// Nodes started in the order 3, 1, 2 with random gaps elect exactly one leader
/// that all agree on; a route written through a follower shows on every node's
/// admin API and data plane.
#[actix_rt::test]
async fn any_start_order_elects_one_leader_and_a_follower_write_reaches_all() {
    let mut c = Cluster::configure("elect", 3, 500, "info");
    let started = Instant::now();
    for (salt, id) in [(1, 3), (2, 1), (3, 2)] {
        actix_rt::time::sleep(jitter(salt)).await;
        c.start(id);
    }
    let (leader, term) = c.wait_agreed_leader(&ALL, 20).await;
    eprintln!(
        "MEASURED elect: leader {leader} term {term} agreed {:?} after the first start",
        started.elapsed()
    );
    c.wait_seeded(&ALL, 20).await;

    let follower = others(&ALL, &[leader])[0];
    let a = c
        .admin_put(follower, "/admin/routes/r1", &route_body("r1"))
        .await
        .expect("PUT /admin/routes/r1 through a follower");
    assert_eq!(
        a.status,
        200,
        "write through follower {follower}: {a:?}\n{}",
        c.logs()
    );
    let version = a.body["version"].as_u64().expect("version in the answer");
    assert_eq!(
        a.header("x-sluice-version"),
        Some(version.to_string().as_str()),
        "X-Sluice-Version header"
    );

    c.wait_version(&ALL, version, 10).await;
    for id in ALL {
        let r = c
            .admin_get(id, "/admin/routes/r1")
            .await
            .expect("GET route");
        assert_eq!(r.status, 200, "route r1 on node {id}: {r:?}\n{}", c.logs());
        assert_eq!(r.body["path"], "/r1/*", "route r1 on node {id}: {r:?}");
        assert_proxies(&c, id, "/r1/hello").await;
    }
    // Still exactly one leader, in the same term: the write did not disturb it.
    let infos = c.infos(&ALL).await;
    let now = infos
        .as_deref()
        .and_then(|v| support::agreed_leader(v, &ALL));
    assert_eq!(
        now,
        Some((leader, term)),
        "after the write: {}",
        brief(&infos)
    );
}

/// What the writer of `leader_kill_...` saw.
#[derive(Default)]
struct Writes {
    /// Route ids answered 200, with when, and the version they were applied at.
    acked: Vec<(String, Instant, u64)>,
    /// 503s (no leader / no quorum), each retried on the next node.
    unavailable: u32,
    /// Any other answer or a transport error: should not happen.
    unexpected: Vec<String>,
    /// Longest time one id took from its first attempt to its 200.
    worst: Duration,
}

/// Writes routes `w0`, `w1`, … in order through the admin APIs at `admins`
/// (round-robin), retrying each on 503 until it is acknowledged, until `stop` is
/// set. Bounded: at most 5000 attempts in all.
async fn write_loop(admins: Vec<String>, stop: Rc<Cell<bool>>, log: Rc<RefCell<Writes>>) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish();
    let mut turn = 0usize;
    let mut attempts = 0u32;
    let mut i = 0u32;
    'ids: while !stop.get() {
        let id = format!("w{i}");
        let first = Instant::now();
        loop {
            if stop.get() || attempts >= 5000 {
                break 'ids;
            }
            attempts += 1;
            let port = &admins[turn % admins.len()];
            turn += 1;
            let path = format!("/admin/routes/{id}");
            match admin_put(&client, port, &path, &route_body(&id)).await {
                Ok(a) if a.status == 200 => {
                    let mut log = log.borrow_mut();
                    log.worst = log.worst.max(first.elapsed());
                    let version = a.body["version"].as_u64().unwrap_or(0);
                    log.acked.push((id, Instant::now(), version));
                    i += 1;
                    continue 'ids;
                }
                Ok(a) if a.status == 503 => {
                    if a.header("retry-after").is_none() {
                        log.borrow_mut()
                            .unexpected
                            .push(format!("{id} via {port}: 503 without Retry-After"));
                    }
                    log.borrow_mut().unavailable += 1;
                }
                Ok(a) => log
                    .borrow_mut()
                    .unexpected
                    .push(format!("{id} via {port}: {} {}", a.status, a.text)),
                Err(e) => log
                    .borrow_mut()
                    .unexpected
                    .push(format!("{id} via {port}: {e}")),
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// SIGKILL the leader under a stream of admin writes through the other nodes: a
/// new leader within 2 s, no acknowledged write lost, and the killed node comes
/// back from its data dir, catches up through a snapshot (the log it missed is
/// purged) and serves every route.
#[actix_rt::test]
async fn leader_kill_under_writes_loses_nothing_and_the_node_catches_up_by_snapshot() {
    // openraft at info: its vote decisions explain a slow election.
    let mut c = Cluster::configure("leaderkill", 3, 20, "info,openraft=info");
    for id in ALL {
        c.start(id);
    }
    let (old, _) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let survivors = others(&ALL, &[old]);

    let stop = Rc::new(Cell::new(false));
    let writes = Rc::new(RefCell::new(Writes::default()));
    let admins = survivors.iter().map(|id| c.admin_url(*id, "")).collect();
    let writer = actix_rt::spawn(write_loop(admins, stop.clone(), writes.clone()));

    wait_for_async(
        "10 acknowledged writes before the kill",
        secs(20),
        &c,
        || async {
            let acked = writes.borrow().acked.len();
            if acked >= 10 {
                Ok(())
            } else {
                Err(format!("{acked} acked"))
            }
        },
    )
    .await;
    // What the leader had in its log just before the kill (plus the one write that
    // may be in flight): the restarted node cannot have more than this on disk.
    let before = c.info(old).await.expect("leader answers before the kill");
    let acked_before = writes.borrow().acked.len();
    c.kill9(old);
    let killed_at = Instant::now();
    let on_disk = before.last_log + 5;

    let (new, election) = wait_for_async(
        format!("a leader other than {old}"),
        secs(10),
        &c,
        || async {
            let mut found = None;
            let mut infos = Vec::new();
            for s in &survivors {
                if let Some(i) = c.info(*s).await {
                    if found.is_none() {
                        found = i
                            .leader
                            .filter(|l| *l != old)
                            .map(|l| (l, killed_at.elapsed()));
                    }
                    infos.push(i);
                }
            }
            found.ok_or_else(|| Seen(brief(&Some(infos))))
        },
    )
    .await;
    eprintln!(
        "MEASURED leader-kill: node {old} killed, node {new} reported as leader after {election:?}"
    );

    // Keep writing until the survivors purged the log the killed node lacks, so
    // its only way back is a snapshot; and well past 40 writes after the kill.
    wait_for_async(
        format!("40 acks after the kill and purged_index > {on_disk} on the survivors"),
        secs(40),
        &c,
        || async {
            let infos = c.infos(&survivors).await;
            let purged = infos
                .as_ref()
                .is_some_and(|v| v.iter().all(|i| i.purged > on_disk));
            let acked = writes.borrow().acked.len();
            if purged && acked >= acked_before + 40 {
                Ok(())
            } else {
                Err(Seen(format!("acked {acked}; {}", brief(&infos))))
            }
        },
    )
    .await;
    stop.set(true);
    writer.await.expect("writer task");
    let writes = writes.take();
    // The write outage: the longest gap between two consecutive acks.
    let outage = writes
        .acked
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    eprintln!(
        "MEASURED leader-kill: {} writes acked ({} before the kill), {} answers 503 (retried), longest gap between acks {:?}, slowest write {:?}",
        writes.acked.len(),
        acked_before,
        writes.unavailable,
        outage,
        writes.worst
    );
    assert!(
        writes.unexpected.is_empty(),
        "writes got answers other than 200/503: {:?}\n{}",
        writes.unexpected,
        c.logs()
    );
    // One writer, one write at a time: each acknowledged write must have been
    // applied after the one acknowledged before it.
    let versions: Vec<u64> = writes.acked.iter().map(|(_, _, v)| *v).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "acknowledged versions out of order: {versions:?}"
    );
    // DESIGN.md's target. Measured on 2 cores: 1.2-1.6 s; under twice this
    // suite's load, 2.7-2.8 s in 2 of 12 runs, when the first candidate lacked
    // the dead leader's last entry and lost, and the other follower campaigned
    // only ~1.3 s later (see the openraft lines in the logs).
    // DESIGN.md's 2 s is a target, measured (MEASURED above) rather than asserted
    // tight: on a loaded CI box a lost first election takes it past 2.5 s. A
    // leader later than this is a fault, not noise.
    assert!(
        election < Duration::from_secs(5),
        "new leader only {election:?} after killing leader {old} (target < 2 s)\n{}",
        c.logs()
    );

    // The survivors' final state; the killed node must reach it.
    let target = c
        .infos(&survivors)
        .await
        .expect("survivors answer")
        .iter()
        .map(|i| i.applied)
        .max()
        .expect("two survivors");
    let newest = writes.acked.iter().map(|(_, _, v)| *v).max().unwrap_or(0);
    c.start(old);
    let restarted = Instant::now();
    c.wait_applied(&ALL, target, 30).await;
    c.wait_version(&ALL, newest, 10).await;
    eprintln!(
        "MEASURED leader-kill: node {old} restarted and applied index {target} after {:?}",
        restarted.elapsed()
    );
    let back = c.info(old).await.expect("restarted node answers");
    assert!(
        back.snapshot > on_disk,
        "node {old} had at most index {on_disk} on disk and the survivors purged past it, \
         so it must hold a snapshot beyond it: {back:?}\n{}",
        c.logs()
    );
    let log = c.log(old);
    eprintln!(
        "MEASURED leader-kill: restarted node snapshot_index {} (on disk ≤ {on_disk}); its log says 'raft snapshot installed': {}",
        back.snapshot,
        log.contains("raft snapshot installed")
    );

    // Every acknowledged write is on every node, and every node serves it.
    for id in ALL {
        let routes = c.route_ids(id).await.expect("GET /admin/config");
        let missing: Vec<&String> = writes
            .acked
            .iter()
            .map(|(r, _, _)| r)
            .filter(|r| !routes.contains(*r))
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks acknowledged routes {missing:?}\n{}",
            c.logs()
        );
        for (r, _, _) in &writes.acked {
            assert_proxies(&c, id, &format!("/{r}/x")).await;
        }
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 10).await;
    assert_ne!(
        leader, old,
        "the restarted node must not have taken over by force"
    );
}

/// Counts of the load loop in `follower_kill_...`.
#[derive(Default)]
struct Load {
    by_status: BTreeMap<u16, u32>,
    errors: Vec<String>,
    total: u32,
}

/// SIGKILL a follower while clients hammer the other two data planes: not one
/// 5xx (nor a refused connection); the follower then rejoins and serves a route
/// written while it was down.
#[actix_rt::test]
async fn follower_kill_under_traffic_never_fails_a_request() {
    let mut c = Cluster::configure("followerkill", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 20).await;
    let victim = others(&ALL, &[leader])[0];
    let targets = others(&ALL, &[victim]);
    c.wait_seeded(&ALL, 20).await;

    let stop = Rc::new(Cell::new(false));
    let load = Rc::new(RefCell::new(Load::default()));
    let mut tasks = Vec::new();
    for lane in 0..4u32 {
        let urls: Vec<String> = targets.iter().map(|id| c.data_url(*id, "")).collect();
        let (stop, load, client) = (stop.clone(), load.clone(), c.client().clone());
        tasks.push(actix_rt::spawn(async move {
            let mut k = 0usize;
            while !stop.get() && k < 20_000 {
                let path = format!("/api/load/{lane}/{k}");
                let url = format!("{}{path}", urls[k % urls.len()]);
                k += 1;
                let a = send(client.get(&url).timeout(Duration::from_secs(5)), None).await;
                let mut load = load.borrow_mut();
                load.total += 1;
                match a {
                    Ok(a) => {
                        *load.by_status.entry(a.status).or_default() += 1;
                        if a.status != 200 || a.body["path"] != path {
                            load.errors.push(format!("{url}: {} {}", a.status, a.text));
                        }
                    }
                    Err(e) => load.errors.push(format!("{url}: {e}")),
                }
            }
        }));
    }

    wait_for_async(
        "100 proxied requests before the kill",
        secs(20),
        &c,
        || async {
            let total = load.borrow().total;
            if total >= 100 {
                Ok(())
            } else {
                Err(format!("{total} sent"))
            }
        },
    )
    .await;
    let before = load.borrow().total;
    c.kill9(victim);
    let killed_at = Instant::now();
    // The load window: long enough for the leader's appends and heartbeats to the
    // dead follower to fail several times over (heartbeat 150 ms).
    wait_for_async(
        "2.5 s and 200 more requests after the kill",
        secs(20),
        &c,
        || async {
            let total = load.borrow().total;
            if killed_at.elapsed() >= Duration::from_millis(2500) && total >= before + 200 {
                Ok(())
            } else {
                Err(format!("{} sent after the kill", total - before))
            }
        },
    )
    .await;
    stop.set(true);
    for t in tasks {
        t.await.expect("load task");
    }
    let load = load.take();
    eprintln!(
        "MEASURED follower-kill: {} requests ({} after the kill), statuses {:?}",
        load.total,
        load.total - before,
        load.by_status
    );
    let server_errors: u32 = load
        .by_status
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        (server_errors, load.errors.len()),
        (0, 0),
        "failed requests (first 10): {:?}\n{}",
        &load.errors[..load.errors.len().min(10)],
        c.logs()
    );

    // The cluster still takes writes with one node down; the follower catches up.
    let a = c
        .admin_put(targets[0], "/admin/routes/late", &route_body("late"))
        .await
        .expect("write with a follower down");
    assert_eq!(
        a.status,
        200,
        "write with one follower down: {a:?}\n{}",
        c.logs()
    );
    let version = a.body["version"].as_u64().expect("version");
    c.start(victim);
    c.wait_version(&ALL, version, 20).await;
    assert_proxies(&c, victim, "/late/x").await;
}

/// With two of three nodes down the survivor refuses admin writes fast (503 +
/// Retry-After, < 6 s), applies nothing, keeps proxying with its last config, and
/// takes writes again once a second node is back.
async fn two_nodes_down(tag: &str, survivor_is_leader: bool) {
    let mut c = Cluster::configure(tag, 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 20).await;
    let survivor = if survivor_is_leader {
        leader
    } else {
        others(&ALL, &[leader])[0]
    };
    let down = others(&ALL, &[survivor]);
    c.wait_seeded(&ALL, 20).await;
    for id in &down {
        c.kill9(*id);
    }

    let writes = [
        ("/admin/routes/nq0", route_body("nq0")),
        (
            "/admin/services/echo2",
            json!({ "upstreams": [c.upstream_url()] }),
        ),
        ("/admin/routes/nq1", route_body("nq1")),
    ];
    // `no_leader`: refused before proposing, so it must never apply. A write sent in
    // the first second after the kill may still be proposed (the lone leader has not
    // yet noticed it lost its quorum) and time out as `commit_timeout`, which means
    // "may still be applied".
    let mut refused = Vec::new();
    for (path, body) in &writes {
        let t = Instant::now();
        let a = c.admin_put(survivor, path, body).await;
        let took = t.elapsed();
        eprintln!(
            "MEASURED two-down ({tag}): PUT {path} on node {survivor} -> {:?} in {took:?}",
            a.as_ref().map(|a| a.status)
        );
        let a = a.unwrap_or_else(|e| panic!("PUT {path}: {e}\n{}", c.logs()));
        assert_eq!(
            a.status,
            503,
            "PUT {path} without quorum: {a:?}\n{}",
            c.logs()
        );
        assert!(
            a.header("retry-after").is_some(),
            "503 without Retry-After: {a:?}"
        );
        assert!(
            took < Duration::from_secs(6),
            "PUT {path} took {took:?} to fail"
        );
        let code = a.body["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            code == "no_leader" || code == "commit_timeout",
            "unexpected 503 code: {a:?}"
        );
        if code == "no_leader" {
            refused.push(*path);
        }
    }
    assert!(
        !refused.is_empty(),
        "every write timed out: a leader without quorum must refuse at once"
    );
    let alone = c.info(survivor).await;
    eprintln!(
        "MEASURED two-down ({tag}): survivor's view without quorum: {} millis_since_quorum_ack={}",
        brief(&alone.clone().map(|i| vec![i])),
        alone
            .as_ref()
            .map_or(json!(null), |i| i.raw["millis_since_quorum_ack"].clone())
    );
    let t = Instant::now();
    let read = c.admin_get(survivor, "/admin/config?consistent=true").await;
    let took = t.elapsed();
    eprintln!(
        "MEASURED two-down ({tag}): consistent read -> {:?} in {took:?}",
        read.as_ref().map(|a| a.status)
    );
    let read = read.unwrap_or_else(|e| panic!("consistent read: {e}\n{}", c.logs()));
    assert_eq!(
        read.status,
        503,
        "linearizable read without quorum: {read:?}\n{}",
        c.logs()
    );
    assert!(
        took < Duration::from_secs(6),
        "consistent read took {took:?} to fail"
    );

    // Nothing was applied, and the data plane serves with what it had.
    for path in &refused {
        let r = c.admin_get(survivor, path).await.expect("GET");
        assert_eq!(r.status, 404, "a write refused with 503 was applied: {r:?}");
    }
    assert_proxies(&c, survivor, "/api/after").await;
    let health = c.data_get(survivor, "/health").await.expect("health");
    assert_eq!(health.status, 200, "{health:?}");

    // Quorum back: writes succeed again (the one pending entry, if any, may commit
    // too; only this one was acknowledged).
    c.start(down[0]);
    let up = [survivor, down[0]];
    let version = wait_for_async(
        format!("a write to succeed once node {} is back", down[0]),
        secs(20),
        &c,
        || async {
            let a = c
                .admin_put(survivor, "/admin/routes/back", &route_body("back"))
                .await;
            let v = a
                .as_ref()
                .ok()
                .filter(|a| a.status == 200)
                .and_then(|a| a.body["version"].as_u64());
            v.ok_or(a)
        },
    )
    .await;
    c.wait_version(&up, version, 20).await;
    for id in up {
        assert_proxies(&c, id, "/back/x").await;
    }
    // Writes refused with `no_leader` stay refused once the quorum is back.
    for path in &refused {
        let r = c.admin_get(survivor, path).await.expect("GET");
        assert_eq!(r.status, 404, "{path} was refused but applied later: {r:?}");
    }
}

#[actix_rt::test]
async fn two_nodes_down_the_leader_alone_refuses_writes_and_keeps_serving() {
    two_nodes_down("twodown-leader", true).await;
}

#[actix_rt::test]
async fn two_nodes_down_a_follower_alone_refuses_writes_and_keeps_serving() {
    two_nodes_down("twodown-follower", false).await;
}

/// Raft RPCs without the cluster secret, with a wrong one, or with the right one
/// and bodies that are not bincode, are refused (401 / 400) and change nothing.
#[actix_rt::test]
async fn forged_and_malformed_raft_rpcs_are_refused_and_change_nothing() {
    let mut c = Cluster::configure("rpc", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, term) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let applied = c.info(leader).await.expect("leader info").applied;
    c.wait_applied(&ALL, applied, 10).await;
    let before = c.infos(&ALL).await.expect("all answer");

    // Each fails on its first byte or is cut short, whatever type is expected:
    // 0xFF is no valid bincode varint; 0x00 alone is a prefix of every message.
    let mut big = vec![0xFFu8];
    big.extend((0..256 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let garbage: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("0xff", vec![0xFF; 64]),
        ("0x00", vec![0x00]),
        ("256k noise", big),
    ];
    let follower = others(&ALL, &[leader])[0];
    let mut refused = 0;
    for target in [leader, follower] {
        for rpc in ["append", "vote", "snapshot", "write"] {
            for (secret, want) in [(None, 401), (Some("wrong-secret"), 401)] {
                let a = c
                    .raft_rpc(target, rpc, secret, vec![0xFF; 16])
                    .await
                    .expect("rpc answered");
                assert_eq!(
                    a.status, want,
                    "/raft/{rpc} on {target} with {secret:?}: {a:?}"
                );
                refused += 1;
            }
            for (what, body) in &garbage {
                let a = c
                    .raft_rpc(target, rpc, Some(SECRET), body.clone())
                    .await
                    .expect("rpc answered");
                assert_eq!(a.status, 400, "/raft/{rpc} on {target} with {what}: {a:?}");
                refused += 1;
            }
        }
    }
    let no_token = send(
        c.client().get(c.admin_url(follower, "/admin/cluster")),
        None,
    )
    .await
    .expect("admin answered");
    assert_eq!(
        no_token.status, 401,
        "admin API without a token: {no_token:?}"
    );

    let after = c.infos(&ALL).await.expect("all answer");
    let view = |v: &[Info]| {
        v.iter()
            .map(|i| {
                (
                    i.node_id,
                    i.state.clone(),
                    i.leader,
                    i.term,
                    i.applied,
                    i.last_log,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        view(&after),
        view(&before),
        "{refused} refused RPCs changed the cluster\n{}",
        c.logs()
    );
    assert_eq!(support::agreed_leader(&after, &ALL), Some((leader, term)));

    // The cluster still works: a write through a follower lands everywhere.
    let a = c
        .admin_put(follower, "/admin/routes/after", &route_body("after"))
        .await
        .expect("write");
    assert_eq!(
        a.status,
        200,
        "write after the forged RPCs: {a:?}\n{}",
        c.logs()
    );
    let version = a.body["version"].as_u64().expect("version");
    c.wait_version(&ALL, version, 10).await;
    for id in ALL {
        assert_proxies(&c, id, "/after/x").await;
        assert_proxies(&c, id, "/api/still").await;
    }
}

/// Growing and shrinking: a node that is not in `cluster.peers` does not found a
/// cluster of its own; added through a follower (forwarded to the leader) it joins
/// as a learner, catches up, becomes a voter and serves the replicated routes;
/// removed, it leaves the voter set.
#[actix_rt::test]
async fn a_fourth_node_joins_as_a_voter_and_can_be_removed() {
    let mut c = Cluster::configure_with_voters("join", 4, 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let a = c
        .admin_put(leader, "/admin/routes/before", &route_body("before"))
        .await
        .expect("PUT");
    assert_eq!(a.status, 200, "{a:?}");

    c.start(4);
    let alone = c.info(4).await.expect("node 4 answers");
    assert_ne!(
        alone.state, "Leader",
        "a joining node must not found its own cluster"
    );

    let follower = others(&ALL, &[leader])[0];
    let addr = c.peer_addr(4);
    let added = c
        .admin_call(
            follower,
            "POST",
            "/admin/cluster/nodes",
            Some(&json!({ "id": 4, "addr": addr })),
        )
        .await
        .expect("POST");
    assert_eq!(added.status, 200, "{added:?}\n{}", c.logs());
    let version = added.body["version"].as_u64().expect("version");
    assert_eq!(added.body["voters"], json!([1, 2, 3, 4]), "{added:?}");

    c.wait_applied(&[1, 2, 3, 4], version, 20).await;
    let four = c.info(4).await.expect("node 4");
    assert_eq!(four.leader, Some(leader), "{four:?}");
    assert_eq!(four.raw["voters"], json!([1, 2, 3, 4]), "{four:?}");
    let r = c.data_get(4, "/before/x").await.expect("GET");
    assert_eq!(
        r.status, 200,
        "node 4 does not serve the replicated route: {r:?}"
    );

    let removed = c
        .admin_call(leader, "DELETE", "/admin/cluster/nodes/4", None)
        .await
        .expect("DELETE");
    assert_eq!(removed.status, 200, "{removed:?}\n{}", c.logs());
    assert_eq!(removed.body["voters"], json!([1, 2, 3]), "{removed:?}");
    let missing = c
        .admin_call(leader, "DELETE", "/admin/cluster/nodes/9", None)
        .await
        .expect("DELETE");
    assert_eq!(missing.status, 404, "{missing:?}");
}

/// A follower frozen (SIGSTOP) under writes: every write through the other two
/// nodes still succeeds, the frozen node answers nothing meanwhile, and once
/// thawed it catches up to the same applied index as the others and serves every
/// route written while it was frozen.
#[actix_rt::test]
async fn a_paused_follower_does_not_block_writes_and_catches_up_after_resume() {
    let mut c = Cluster::configure("pause", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, term) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let frozen = others(&ALL, &[leader])[0];
    let up = others(&ALL, &[frozen]);

    c.pause(frozen);
    let paused_at = Instant::now();
    let mut versions = Vec::new();
    for i in 0..30 {
        let via = up[i % up.len()];
        let id = format!("p{i}");
        let a = c
            .admin_put(via, &format!("/admin/routes/{id}"), &route_body(&id))
            .await
            .unwrap_or_else(|e| panic!("PUT {id} via node {via}: {e}\n{}", c.logs()));
        assert_eq!(
            a.status,
            200,
            "write {id} through node {via} with node {frozen} paused: {a:?}\n{}",
            c.logs()
        );
        versions.push(a.body["version"].as_u64().expect("version"));
    }
    let writes_took = paused_at.elapsed();
    // The pause is real: the frozen node answers nothing (info gives up after 2 s).
    assert!(
        c.info(frozen).await.is_none(),
        "node {frozen} answered /admin/cluster while paused\n{}",
        c.logs()
    );
    let newest = *versions.last().expect("30 writes");
    c.wait_applied(&up, newest, 10).await;

    c.resume(frozen);
    let resumed = Instant::now();
    // Caught up: all three report the same applied index, at least the newest
    // write's (a re-election on resume may add an entry; all must have it).
    let same = wait_for_async(
        format!("node {frozen} to catch up to the same applied index as {up:?}"),
        secs(20),
        &c,
        || async {
            let infos = c.infos(&ALL).await;
            let applied: Option<BTreeMap<u64, u64>> = infos
                .as_ref()
                .map(|v| v.iter().map(|i| (i.node_id, i.applied)).collect());
            match &applied {
                Some(a)
                    if a.values()
                        .all(|v| *v >= newest && Some(v) == a.values().next()) =>
                {
                    Ok(*a.values().next().expect("three nodes"))
                }
                _ => Err(Seen(brief(&infos))),
            }
        },
    )
    .await;
    let (leader_after, term_after) = c.wait_agreed_leader(&ALL, 10).await;
    eprintln!(
        "MEASURED pause: 30 writes with node {frozen} paused took {writes_took:?}; caught up to \
         applied index {same} {:?} after resume; leader {leader}/term {term} before, \
         {leader_after}/term {term_after} after",
        resumed.elapsed()
    );
    c.wait_version(&[frozen], newest, 10).await;
    for i in [0, 15, 29] {
        assert_proxies(&c, frozen, &format!("/p{i}/x")).await;
    }
}

/// A service written through one follower and, at once, a route naming it
/// through the other: the route write must be accepted every time (the leader
/// validates against the committed state, which has the service), 100 times.
#[actix_rt::test]
async fn dependent_writes_through_two_followers_are_never_refused() {
    let mut c = Cluster::configure("dependent", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let (a, b) = match others(&ALL, &[leader])[..] {
        [a, b] => (a, b),
        ref v => panic!("two followers expected, got {v:?}"),
    };
    let service = json!({ "upstreams": [c.upstream_url()] });

    let mut refused = Vec::new();
    let mut newest = 0;
    for i in 0..100 {
        let s = put_through_elections(&c, a, &format!("/admin/services/svc-{i}"), &service).await;
        assert_eq!(
            s.status,
            200,
            "PUT /admin/services/svc-{i} through follower {a}: {s:?}\n{}",
            c.logs()
        );
        let route =
            json!({ "path": format!("/pair/{i}"), "service": format!("svc-{i}"), "auth": "none" });
        let r = put_through_elections(&c, b, &format!("/admin/routes/pair-{i}"), &route).await;
        match r.body["version"].as_u64() {
            Some(v) if r.status == 200 => newest = newest.max(v),
            _ => refused.push(format!("pair-{i}: {} {}", r.status, r.text)),
        }
    }
    eprintln!(
        "MEASURED dependent writes: {} of 100 route writes through follower {b} refused",
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "{} of 100 route writes through follower {b}, each right after its service was \
         written through follower {a}, were refused (first 5): {:?}\n{}",
        refused.len(),
        &refused[..refused.len().min(5)],
        c.logs()
    );
    c.wait_version(&ALL, newest, 20).await;
    for id in ALL {
        for i in [0, 50, 99] {
            assert_proxies(&c, id, &format!("/pair/{i}")).await;
        }
    }
}

/// `PUT path` through node `id`, sent again (as an admin client would, after
/// `Retry-After`) while the answer is 503 `no_leader` / `commit_timeout`: on a
/// loaded machine an election can happen mid-test, and what the dependent-writes
/// test asserts is that no write is *refused* (422), not that none is delayed.
async fn put_through_elections(c: &Cluster, id: u64, path: &str, body: &Value) -> Answer {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let a = c
            .admin_put(id, path, body)
            .await
            .unwrap_or_else(|e| panic!("PUT {path} via node {id}: {e}\n{}", c.logs()));
        if a.status != 503 || std::time::Instant::now() >= deadline {
            return a;
        }
        eprintln!("PUT {path} via node {id}: 503 {}; retrying", a.text);
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /admin/debug/snapshot` on node `id`: its data-plane snapshot's parts
/// and the versions they were built at. `Err` on anything but 200.
async fn snapshot(c: &Cluster, id: u64) -> Result<serde_json::Value, String> {
    let a = c.admin_get(id, "/admin/debug/snapshot").await?;
    if a.status == 200 {
        Ok(a.body)
    } else {
        Err(format!("{} {}", a.status, a.text))
    }
}

/// Polls every node's `/admin/debug/snapshot` until its applied index is at least
/// `version` and it counts `active` active API keys; returns each node's snapshot.
async fn wait_active_keys(
    c: &Cluster,
    version: u64,
    active: u64,
) -> BTreeMap<u64, serde_json::Value> {
    let mut out = BTreeMap::new();
    for id in ALL {
        let snap = wait_for_async(
            format!("node {id}'s snapshot to reach index {version} with {active} active API keys"),
            secs(10),
            c,
            || async {
                let s = snapshot(c, id).await?;
                let applied = s["applied_index"].as_u64().unwrap_or(0);
                let keys = s["parts"]["credentials"]["active_api_keys"].as_u64();
                if applied >= version && keys == Some(active) {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
        out.insert(id, snap);
    }
    out
}

/// An API key created and revoked through a follower reaches every node's
/// data-plane snapshot (credentials part rebuilt at or after the write's index)
/// without rebuilding the gateway part (routes, services) anywhere.
#[actix_rt::test]
async fn an_api_key_reaches_every_nodes_snapshot_without_rebuilding_the_gateway() {
    let mut c = Cluster::configure("apikey", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let follower = others(&ALL, &[leader])[0];

    let client = c
        .admin_call(
            follower,
            "POST",
            "/admin/clients",
            Some(&json!({ "name": "c" })),
        )
        .await
        .expect("POST /admin/clients");
    assert_eq!(client.status, 200, "{client:?}\n{}", c.logs());
    let client_id = client.body["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    assert!(
        client.body["client_secret"].as_str().is_some(),
        "{client:?}"
    );
    let v = client.body["version"].as_u64().expect("version");
    c.wait_applied(&ALL, v, 10).await;
    // The gateway part as every node had it before the key existed.
    let mut gateway_before = BTreeMap::new();
    for id in ALL {
        let s = snapshot(&c, id).await.unwrap_or_else(|e| {
            panic!("GET /admin/debug/snapshot on node {id}: {e}\n{}", c.logs())
        });
        let g = s["parts"]["gateway"]["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("parts.gateway.version on node {id}: {s}"));
        gateway_before.insert(id, g);
    }

    let key = c
        .admin_call(
            follower,
            "POST",
            "/admin/keys",
            Some(&json!({ "client_id": client_id })),
        )
        .await
        .expect("POST /admin/keys");
    assert_eq!(key.status, 200, "{key:?}\n{}", c.logs());
    let key_id = key.body["id"].as_str().expect("key id").to_owned();
    assert!(key.body["key"].as_str().is_some(), "{key:?}");
    let version: u64 = key
        .header("x-sluice-version")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("X-Sluice-Version on the key write: {key:?}"));

    let created = wait_active_keys(&c, version, 1).await;
    for (id, s) in &created {
        let credentials = s["parts"]["credentials"]["version"].as_u64();
        assert!(
            credentials >= Some(version),
            "node {id} counts the key but its credentials part is from before the write \
             (index {version}): {s}"
        );
        assert_eq!(
            s["parts"]["gateway"]["version"].as_u64(),
            gateway_before.get(id).copied(),
            "node {id} rebuilt its gateway part for a credentials change: {s}"
        );
    }

    let revoked = c
        .admin_call(follower, "DELETE", &format!("/admin/keys/{key_id}"), None)
        .await
        .expect("DELETE /admin/keys/{id}");
    assert_eq!(revoked.status, 200, "{revoked:?}\n{}", c.logs());
    let version: u64 = revoked
        .header("x-sluice-version")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("X-Sluice-Version on the revocation: {revoked:?}"));
    let after = wait_active_keys(&c, version, 0).await;
    for (id, s) in &after {
        assert_eq!(
            s["parts"]["gateway"]["version"].as_u64(),
            gateway_before.get(id).copied(),
            "node {id} rebuilt its gateway part for a key revocation: {s}"
        );
    }
}

/// `node.admin_tls` with `client_auth`: three nodes whose admin listeners speak
/// only TLS and want a client certificate from the cluster CA. The cluster forms,
/// a write through a follower is forwarded to the leader and reaches every node
/// (Raft RPC and forwarding both over mutual TLS), `sluice cluster status` works
/// with the CLI's certificate, and a client without one — or without TLS — gets
/// nothing, not even a 401.
#[actix_rt::test]
async fn admin_tls_with_client_certificates_carries_the_cluster() {
    use sluice_testkit::{free_port, Proc, Sluice, TempDir};
    use std::process::Command;

    let sluice = Sluice::find();
    let dir = TempDir::new("chaos-tls");
    let certs = dir.join("tls");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tls-certs.sh");
    let made = Command::new(script)
        .arg(&certs)
        .args(["node1", "node2", "node3"])
        .output()
        .expect("scripts/tls-certs.sh (needs openssl)");
    assert!(made.status.success(), "{made:?}");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let peers = (1..=3)
        .map(|id| format!("{id}: 127.0.0.1:{}", ports[id - 1].1))
        .collect::<Vec<_>>()
        .join(", ");
    let mut procs: Vec<Proc> = Vec::new();
    for id in 1..=3usize {
        let (port, admin) = ports[id - 1];
        let node_dir = dir.join(format!("node{id}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let yaml = format!(
            "node:\n  id: {id}\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  \
             data_dir: {data}\n  workers: 1\n  shutdown_timeout: 5s\n  \
             admin_tls: {{ cert_file: {c}/node{id}.pem, key_file: {c}/node{id}.key, ca_file: {c}/ca.pem, client_auth: true }}\n\
             cluster:\n  peers: {{ {peers} }}\n  secret: {SECRET}\n\
             admin:\n  token: {token}\n\
             log:\n  level: info\n",
            data = node_dir.join("data").display(),
            c = certs.display(),
            token = support::TOKEN,
        );
        std::fs::write(node_dir.join("node.yaml"), yaml).unwrap();
        std::fs::write(
            node_dir.join("gateway.yaml"),
            "services:\n  s: { upstreams: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: /x, service: s, auth: none }\n",
        )
        .unwrap();
        let p = sluice.spawn(
            &format!("node {id}"),
            &["run", "--config", node_dir.to_str().unwrap()],
            &node_dir.join("sluice.log"),
        );
        p.wait_listening(&[port, admin], secs(30));
        procs.push(p);
    }
    let logs = || {
        procs
            .iter()
            .map(|p| p.log_tail(15))
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let cert = |name: &str| certs.join(name).display().to_string();
    // curl with the CA, and the client certificate unless `bare`; the body, or why not.
    let curl = |bare: bool, args: &[&str]| -> Result<String, String> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--fail-with-body",
            "-m",
            "10",
            "--cacert",
            &cert("ca.pem"),
        ]);
        if !bare {
            cmd.args(["--cert", &cert("client.pem"), "--key", &cert("client.key")]);
        }
        cmd.args(["-H", &format!("Authorization: Bearer {}", support::TOKEN)]);
        let out = cmd.args(args).output().expect("curl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let admin = |id: usize, path: &str| format!("https://127.0.0.1:{}{path}", ports[id - 1].1);

    // A leader with three voters, as every node sees it.
    let deadline = Instant::now() + secs(30);
    let leader = loop {
        let views: Vec<Option<Value>> = (1..=3)
            .map(|id| {
                curl(false, &[&admin(id, "/admin/cluster")])
                    .ok()
                    .and_then(|b| serde_json::from_str(&b).ok())
            })
            .collect();
        let leaders: Vec<Option<u64>> = views
            .iter()
            .map(|v| v.as_ref().and_then(|v| v["leader_id"].as_u64()))
            .collect();
        if leaders.iter().all(|l| l.is_some() && *l == leaders[0]) {
            break leaders[0].unwrap() as usize;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader over TLS: {views:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    };

    // A write through a follower: forwarded to the leader, replicated to all.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let put = curl(
        false,
        &[
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"upstreams":["http://127.0.0.1:9"]}"#,
            &admin(follower, "/admin/services/over-tls"),
        ],
    );
    assert!(
        put.is_ok(),
        "PUT via follower {follower}: {put:?}\n{}",
        logs()
    );
    for id in 1..=3 {
        let deadline = Instant::now() + secs(10);
        while curl(false, &[&admin(id, "/admin/services/over-tls")]).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {id} lacks the service\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // The CLI, with its certificate from the environment.
    let status = sluice
        .command()
        .args(["cluster", "status", "--admin", &admin(follower, "")])
        .env("SLUICE_ADMIN_TOKEN", support::TOKEN)
        .env("SLUICE_ADMIN_CA", cert("ca.pem"))
        .env("SLUICE_ADMIN_CERT", cert("client.pem"))
        .env("SLUICE_ADMIN_KEY", cert("client.key"))
        .output()
        .expect("sluice cluster status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success()
            && text
                .lines()
                .filter(|l| l.split_whitespace().nth(2) == Some("voter"))
                .count()
                == 3
            && !text.contains("down"),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // No client certificate: the handshake fails; no TLS: no HTTP answer at all.
    let bare = curl(true, &[&admin(leader, "/admin/cluster")]);
    assert!(
        bare.is_err(),
        "answered without a client certificate: {bare:?}"
    );
    let plain = curl(
        true,
        &[&format!(
            "http://127.0.0.1:{}/admin/cluster",
            ports[leader - 1].1
        )],
    );
    assert!(
        plain.as_ref().is_err_and(|e| !e.contains("401")),
        "plain HTTP got an answer: {plain:?}"
    );
    drop(procs);
}

/// One admin call must not wedge the cluster (issue 14, finding 3): a malformed
/// address is refused, an id or address already taken is refused, and a node
/// that cannot be reached is added as a learner only — 202 with its progress,
/// never a voter — while writes keep committing, replication to it backs off
/// instead of flooding the log, and it is removed through the API.
#[actix_rt::test]
async fn a_bad_or_unreachable_new_node_cannot_wedge_the_cluster() {
    let mut c = Cluster::configure_with_voters("wedge", 4, 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 20).await;
    c.wait_seeded(&ALL, 20).await;
    let follower = others(&ALL, &[leader])[0];
    let post = |body: Value| {
        let c = &c;
        async move {
            c.admin_call(follower, "POST", "/admin/cluster/nodes", Some(&body))
                .await
                .expect("POST /admin/cluster/nodes")
        }
    };

    for (body, status) in [
        (json!({"id": 2, "addr": "not a host:port"}), 400),
        (json!({"id": 5, "addr": "127.0.0.1:0"}), 400),
        (json!({"id": 5, "addr": "bad_host!:9080"}), 400),
        (json!({"id": 0, "addr": "127.0.0.1:9"}), 400),
        // Node 2 exists at another address; node 3's address is taken.
        (json!({"id": 2, "addr": "127.0.0.1:9"}), 409),
        (json!({"id": 5, "addr": c.peer_addr(3)}), 409),
    ] {
        let a = post(body.clone()).await;
        assert_eq!(a.status, status, "{body}: {a:?}");
        assert!(a.body["error"].is_string(), "{body}: {a:?}");
    }
    let info = c.info(leader).await.expect("leader info");
    assert_eq!(info.raw["voters"], json!([1, 2, 3]), "{info:?}");
    assert_eq!(info.raw["learners"], json!([]), "{info:?}");

    // Node 4 is configured but never started: it cannot catch up.
    let started = Instant::now();
    let a = post(json!({"id": 4, "addr": c.peer_addr(4)})).await;
    assert_eq!(a.status, 202, "{a:?}\n{}", c.logs());
    assert_eq!(a.body["status"], "learner", "{a:?}");
    assert_eq!(a.body["voters"], json!([1, 2, 3]), "{a:?}");
    assert_eq!(a.body["learners"], json!([4]), "{a:?}");
    assert!(
        a.body["progress"]["last_log_index"].as_u64() > Some(0),
        "{a:?}"
    );
    println!(
        "MEASURED unreachable learner answered 202 after {:?}",
        started.elapsed()
    );

    // Writes keep committing with the learner unreachable.
    for i in 0..3 {
        let id = format!("w{i}");
        let w = c
            .admin_put(follower, &format!("/admin/routes/{id}"), &route_body(&id))
            .await
            .expect("PUT");
        assert_eq!(w.status, 200, "{w:?}\n{}", c.logs());
    }
    // Replication to it backs off: a handful of log lines in 5 s, not thousands.
    let lines = |c: &Cluster| c.log(leader).lines().count();
    let before = lines(&c);
    actix_rt::time::sleep(secs(5)).await;
    let added = lines(&c) - before;
    println!("MEASURED leader log lines in 5 s with an unreachable learner: {added}");
    assert!(added < 100, "{added} log lines in 5 s:\n{}", c.log(leader));

    // Asking again while it is still unreachable: still a learner.
    let again = post(json!({"id": 4, "addr": c.peer_addr(4)})).await;
    assert_eq!(again.status, 202, "{again:?}");
    let removed = c
        .admin_call(follower, "DELETE", "/admin/cluster/nodes/4", None)
        .await
        .expect("DELETE");
    assert_eq!(removed.status, 200, "{removed:?}\n{}", c.logs());
    assert_eq!(removed.body["learners"], json!([]), "{removed:?}");
    assert_eq!(removed.body["voters"], json!([1, 2, 3]), "{removed:?}");
    let w = c
        .admin_put(leader, "/admin/routes/after", &route_body("after"))
        .await
        .expect("PUT");
    assert_eq!(w.status, 200, "{w:?}");
}
