//! Chaos scenarios on real hosts: three `sluice` containers behind the DNS alias
//! `gateway` (see `scripts/docker-cluster.sh`), clients that resolve it (`sluice
//! load`, run in a container on the public network), faults made with the docker
//! CLI. Marked `#[ignore]`: they need a Docker engine and the image
//! (`scripts/docker-image.sh`), and take a while. Run them with
//!
//!     cargo test -p chaos-tests --test docker -- --ignored --nocapture
//!
//! One test runs every scenario in turn (they share container names and ports), a
//! fresh cluster each, and prints a REPORT line per scenario and a table at the
//! end; `SLUICE_CHAOS_SCENARIOS=leader-kill,pause` picks some. Each scenario is a
//! fault on a [`Scenario`] (cluster up, `sluice load` traffic, an admin write loop)
//! and [`Scenario::finish`] checks the shared invariants: after healing every
//! acknowledged write is on every node, the nodes agree on the applied index and
//! on `GET /admin/config`, no client got a 5xx, and a leader that was hit was
//! replaced within 10 s.
//!
//! Without an engine or the image they fail when `CI` is set and are skipped,
//! loudly, otherwise.

mod support;

use serde_json::{json, Value};
use sluice_testkit::{wait_for_async, Seen};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::docker::{self, Docker};
use support::{admin_put, brief, Backend, Cluster};

const ALL: [u64; 3] = [1, 2, 3];
const NAME: &str = "sluice-chaos";

/// `Some(reason)` when the Docker tests cannot run here; panics instead in CI.
fn skip() -> Option<String> {
    let why = docker::unavailable()?;
    if std::env::var_os("CI").is_some() {
        panic!("docker chaos tests: {why}");
    }
    // Straight to stderr, past libtest's capture: a skip must be seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! SKIPPED docker chaos tests: {why} !!!!!\n"
    );
    Some(why)
}

/// Admin writes that were acknowledged, and what else happened.
#[derive(Default)]
struct Writes {
    acked: Vec<String>,
    /// 503 (no leader, commit timeout): retried on the next node.
    refused: u32,
    /// A transport error (a node down, paused, or too slow): retried.
    failed: u32,
    /// Any other answer: should not happen.
    unexpected: Vec<String>,
}

/// PUTs routes `w0`, `w1`, … through the admin APIs of the nodes in `targets` in
/// turn (`admins[id - 1]`), each retried on the next node until acknowledged,
/// until `stop`.
async fn write_loop(
    admins: Vec<String>,
    targets: Rc<RefCell<Vec<u64>>>,
    stop: Rc<Cell<bool>>,
    log: Rc<RefCell<Writes>>,
) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let (mut turn, mut i) = (0usize, 0u32);
    while !stop.get() {
        let target = {
            let t = targets.borrow();
            (!t.is_empty()).then(|| t[turn % t.len()])
        };
        turn += 1;
        let Some(node) = target else {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = &admins[node as usize - 1];
        let id = format!("w{i}");
        let body = json!({ "path": format!("/{id}/*"), "service": "demo", "auth": "none" });
        match admin_put(&client, admin, &format!("/admin/routes/{id}"), &body).await {
            Ok(a) if a.status == 200 => {
                log.borrow_mut().acked.push(id);
                i += 1;
            }
            Ok(a) if a.status == 503 => log.borrow_mut().refused += 1,
            Ok(a) => log
                .borrow_mut()
                .unexpected
                .push(format!("{id} via node {node}: {} {}", a.status, a.text)),
            Err(_) => log.borrow_mut().failed += 1,
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `sluice load` in a container on the public network, for `secs` seconds.
fn start_load(public_network: &str, secs: u64) -> Child {
    Command::new("docker")
        .args(["run", "--rm", "--name", &format!("{NAME}-load")])
        .args(["--network", public_network, docker::IMAGE])
        .args(["load", "--target", "http://gateway:8080/api/chaos"])
        .args(["--duration", &format!("{secs}s"), "--rate", "200"])
        .args(["--concurrency", "8", "--timeout", "3s", "--report", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker run sluice load")
}

fn load_report(child: Child) -> Value {
    let out = child.wait_with_output().expect("sluice load finishes");
    assert!(
        out.status.success(),
        "sluice load failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sluice load printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn sleep(d: Duration) {
    actix_rt::time::sleep(d).await
}

/// One scenario's cluster, traffic and writes; the fault is made in between
/// [`Scenario::start`] and [`Scenario::finish`].
struct Scenario {
    name: &'static str,
    fault: &'static str,
    c: Cluster,
    admins: Vec<String>,
    load: Option<Child>,
    /// Nodes the write loop sends to (a cut-off node is taken out).
    targets: Rc<RefCell<Vec<u64>>>,
    stop: Rc<Cell<bool>>,
    writes: Rc<RefCell<Writes>>,
    writer: Option<actix_rt::task::JoinHandle<()>>,
    leader: u64,
    term: u64,
    /// Time from the fault on the leader to a new leader.
    election: Option<Duration>,
    /// Client answers the scenario allows besides 200 (e.g. timeouts from a
    /// paused node).
    notes: Vec<String>,
    /// Client outcomes other than 200 allowed (None: any but 5xx).
    allowed: Option<&'static [&'static str]>,
}

impl Scenario {
    /// A fresh cluster, `sluice load` for `load_secs`, the write loop on every
    /// node, and 10 acknowledged writes.
    async fn start(name: &'static str, fault: &'static str, load_secs: u64) -> Scenario {
        let backend = Docker::up(NAME, 28080, 29080);
        let load = start_load(&backend.public_network(), load_secs);
        let admins: Vec<String> = ALL.iter().map(|id| backend.addresses(*id).admin).collect();
        let c = Cluster::new(Box::new(backend));
        let (leader, term) = c.wait_agreed_leader(&ALL, 30).await;
        c.wait_seeded(&ALL, 30).await;
        let targets = Rc::new(RefCell::new(ALL.to_vec()));
        let stop = Rc::new(Cell::new(false));
        let writes = Rc::new(RefCell::new(Writes::default()));
        let writer = actix_rt::spawn(write_loop(
            admins.clone(),
            targets.clone(),
            stop.clone(),
            writes.clone(),
        ));
        let s = Scenario {
            name,
            fault,
            c,
            admins,
            load: Some(load),
            targets,
            stop,
            writes,
            writer: Some(writer),
            leader,
            term,
            election: None,
            notes: Vec::new(),
            allowed: None,
        };
        s.more_acks(10, 20).await;
        s
    }

    fn acked(&self) -> usize {
        self.writes.borrow().acked.len()
    }

    /// Waits for `n` more acknowledged writes.
    async fn more_acks(&self, n: usize, within: u64) {
        let want = self.acked() + n;
        wait_for_async(
            format!("{n} more acknowledged writes"),
            secs(within),
            &self.c,
            || async {
                let acked = self.acked();
                if acked >= want {
                    Ok(())
                } else {
                    Err(format!("{acked} acked, want {want}"))
                }
            },
        )
        .await;
    }

    fn followers(&self) -> Vec<u64> {
        ALL.iter()
            .copied()
            .filter(|id| *id != self.leader)
            .collect()
    }

    fn container(&self, id: u64) -> String {
        format!("{NAME}-{id}")
    }

    /// Waits (from `since`) for a leader among `ids` other than the current one
    /// in a later term; records and returns the time.
    async fn wait_new_leader(&mut self, ids: &[u64], since: Instant) -> u64 {
        let (old, term) = (self.leader, self.term);
        let (new, term, took) = wait_for_async(
            format!("a leader other than {old} among {ids:?}"),
            secs(15),
            &self.c,
            || async {
                let mut found = None;
                let mut seen = Vec::new();
                for id in ids {
                    let i = self.c.info(*id).await;
                    if let Some(i) = &i {
                        if i.state == "Leader" && i.node_id != old && i.term > term {
                            found = Some((i.node_id, i.term, since.elapsed()));
                        }
                    }
                    seen.extend(i);
                }
                found.ok_or_else(|| Seen(brief(&Some(seen))))
            },
        )
        .await;
        eprintln!(
            "MEASURED {}: node {old} hit, node {new} leads after {took:?}",
            self.name
        );
        assert!(took <= secs(10), "new leader after {took:?} (bound 10 s)");
        self.election = Some(took);
        self.notes.push(format!(
            "leader {old} hit: node {new} leads after {took:.1?}"
        ));
        self.leader = new;
        self.term = term;
        new
    }

    /// `docker stop` (SIGTERM: the node drains), outside the backend's kill.
    fn stop_gracefully(&self, id: u64) {
        let out = Command::new("docker")
            .args(["stop", &self.container(id)])
            .output()
            .expect("docker stop");
        assert!(out.status.success(), "docker stop {id}: {out:?}");
    }

    /// Waits until node `id` has applied what the others have.
    async fn wait_caught_up(&self, id: u64, within: u64) {
        let others: Vec<u64> = ALL.iter().copied().filter(|i| *i != id).collect();
        let top = self
            .c
            .infos(&others)
            .await
            .map(|v| v.iter().map(|i| i.applied).max().unwrap_or(0))
            .unwrap_or_else(|| panic!("a node does not answer\n{}", self.c.logs()));
        self.c.wait_applied(&[id], top, within).await;
    }

    /// Heals everything, stops traffic and writes, checks the invariants and
    /// returns the REPORT line.
    async fn finish(mut self) -> String {
        let healed = Instant::now();
        let ended = self.load.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(
            ended.is_none(),
            "{}: sluice load ended before the faults were healed: give it longer",
            self.name
        );
        self.c.heal().expect("heal the network");
        for id in ALL {
            if !self.c.running().contains(&id) {
                self.c.start(id);
            }
        }
        self.c.wait_agreed_leader(&ALL, 30).await;
        self.more_acks(5, 30).await;
        self.stop.set(true);
        self.writer.take().unwrap().await.expect("write loop");

        // Everyone applies the same index and holds the same config.
        let (applied, config) = wait_for_async(
            "all nodes to agree on the applied index and GET /admin/config",
            secs(30),
            &self.c,
            || async {
                let infos = self.c.infos(&ALL).await;
                let applied: BTreeSet<u64> = infos.iter().flatten().map(|i| i.applied).collect();
                let mut configs = Vec::new();
                for id in ALL {
                    match self.c.admin_get(id, "/admin/config").await {
                        Ok(a) if a.status == 200 => configs.push(a.body),
                        other => return Err(format!("node {id}: GET /admin/config {other:?}")),
                    }
                }
                if infos.is_some() && applied.len() == 1 && configs.iter().all(|c| *c == configs[0])
                {
                    Ok((*applied.first().unwrap(), configs.swap_remove(0)))
                } else {
                    Err(format!(
                        "applied {applied:?}, configs equal: {}; {}",
                        configs.iter().all(|c| *c == configs[0]),
                        brief(&infos)
                    ))
                }
            },
        )
        .await;
        let converged = healed.elapsed();
        let load = self.load.take().unwrap();
        let report = load_report(load);
        let routes: BTreeSet<String> = config["routes"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|r| r["id"].as_str().or(r["path"].as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let w = self.writes.borrow();
        let lost: Vec<&String> = w.acked.iter().filter(|id| !routes.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "{}: acknowledged writes lost {lost:?}\n{}",
            self.name,
            self.c.logs()
        );
        assert!(
            w.unexpected.is_empty(),
            "{}: unexpected admin answers: {:?}",
            self.name,
            w.unexpected
        );
        let requests = report["requests"].as_u64().unwrap_or(0);
        assert!(requests > 0, "{}: no client traffic: {report}", self.name);
        let fivexx: Vec<(&String, &Value)> = report["by_status"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with('5')).collect())
            .unwrap_or_default();
        assert!(
            fivexx.is_empty(),
            "{}: clients got 5xx from live nodes: {report}",
            self.name
        );
        let failures: BTreeMap<&String, &Value> = report["by_status"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| *k != "200").collect())
            .unwrap_or_default();
        if let Some(allowed) = self.allowed {
            let bad: Vec<&&String> = failures
                .keys()
                .filter(|k| !allowed.contains(&k.as_str()))
                .collect();
            assert!(
                bad.is_empty(),
                "{}: client failures {bad:?} beyond {allowed:?}: {report}",
                self.name
            );
        }
        let retries: u64 = report["connect_retries"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        format!(
            "REPORT {:<14} fault: {} | requests {requests} failures {failures:?} connect retries {retries} | \
             new leader {} | writes acked {} lost 0 (503 {}, transport {}) | applied {applied} converged {:.1?}{}",
            self.name,
            self.fault,
            self.election
                .map(|d| format!("{d:.1?}"))
                .unwrap_or_else(|| "-".into()),
            w.acked.len(),
            w.refused,
            w.failed,
            converged,
            if self.notes.is_empty() {
                String::new()
            } else {
                format!(" | {}", self.notes.join("; "))
            }
        )
    }
}

impl Drop for Scenario {
    /// A failed scenario leaves no load container on the network `down` removes.
    fn drop(&mut self) {
        if let Some(mut child) = self.load.take() {
            let _ = Command::new("docker")
                .args(["rm", "-f", &format!("{NAME}-load")])
                .output();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ------------------------------------------------------------- scenarios ----

async fn leader_kill() -> String {
    let mut s = Scenario::start("leader-kill", "docker kill the leader, restart it", 30).await;
    let old = s.leader;
    s.c.kill9(old);
    let t = Instant::now();
    s.wait_new_leader(&s.followers(), t).await;
    s.more_acks(20, 30).await;
    s.c.start(old);
    s.finish().await
}

async fn follower_kill() -> String {
    let mut s = Scenario::start("follower-kill", "docker kill a follower, restart it", 30).await;
    let f = s.followers()[0];
    s.c.kill9(f);
    s.more_acks(20, 30).await;
    sleep(secs(3)).await;
    s.c.start(f);
    s.wait_caught_up(f, 30).await;
    s.finish().await
}

async fn pause() -> String {
    let mut s = Scenario::start("pause", "docker pause the leader 3 s, unpause", 30).await;
    let old = s.leader;
    s.c.pause(old);
    let t = Instant::now();
    s.wait_new_leader(&s.followers(), t).await;
    let left = secs(3).saturating_sub(t.elapsed());
    sleep(left).await;
    s.c.resume(old);
    s.wait_caught_up(old, 30).await;
    s.more_acks(10, 30).await;
    s.finish().await
}

/// Cuts node `id` off the cluster network for 10 s: it keeps proxying on the
/// public network and acknowledges no admin write sent to it.
async fn cut_off(s: &mut Scenario, id: u64) {
    let was_leader = id == s.leader;
    s.targets.borrow_mut().retain(|n| *n != id);
    s.c.partition(&[&s.followers_but(id)]).expect("cut off");
    let t = Instant::now();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(3))
        .finish();
    let (mut probes, mut refused, mut timed_out, mut proxied) = (0u32, 0u32, 0u32, 0u32);
    let mut k = 0;
    while t.elapsed() < secs(10) {
        if was_leader && s.election.is_none() {
            let others = s.followers_but(id);
            s.wait_new_leader(&others, t).await;
        }
        let rid = format!("cut{k}");
        k += 1;
        let body = json!({ "path": format!("/{rid}/*"), "service": "demo", "auth": "none" });
        probes += 1;
        match admin_put(
            &client,
            &s.admins[id as usize - 1],
            &format!("/admin/routes/{rid}"),
            &body,
        )
        .await
        {
            Ok(a) if a.status == 200 => panic!("node {id}, cut off, acknowledged write {rid}"),
            Ok(a) if a.status == 503 => refused += 1,
            Ok(a) => panic!(
                "node {id}, cut off: write {rid} answered {} {}",
                a.status, a.text
            ),
            Err(_) => timed_out += 1,
        }
        sleep(Duration::from_millis(50)).await;
        let a = s.c.data_get(id, "/api/chaos").await;
        match a {
            Ok(a) if a.status == 200 => proxied += 1,
            other => panic!("node {id}, cut off, does not proxy: {other:?}"),
        }
    }
    s.c.heal().expect("reconnect");
    s.targets.borrow_mut().push(id);
    s.notes.push(format!(
        "cut node {id}: {probes} writes sent to it, 503 {refused}, timed out {timed_out}, 0 acked; proxied {proxied}/{probes}"
    ));
}

impl Scenario {
    /// Every node but `id`.
    fn followers_but(&self, id: u64) -> Vec<u64> {
        ALL.iter().copied().filter(|n| *n != id).collect()
    }
}

async fn cut_leader() -> String {
    let mut s = Scenario::start("cut-leader", "leader off the cluster network 10 s", 35).await;
    let id = s.leader;
    cut_off(&mut s, id).await;
    s.finish().await
}

async fn cut_follower() -> String {
    let mut s = Scenario::start(
        "cut-follower",
        "a follower off the cluster network 10 s",
        35,
    )
    .await;
    let id = s.followers()[0];
    cut_off(&mut s, id).await;
    s.finish().await
}

async fn rolling_restart() -> String {
    let mut s = Scenario::start("rolling", "docker stop + start each node in turn", 50).await;
    s.allowed = Some(&["connect_failed"]);
    for id in ALL {
        let t = Instant::now();
        s.targets.borrow_mut().retain(|n| *n != id);
        s.stop_gracefully(id);
        if id == s.leader {
            s.wait_new_leader(&s.followers(), t).await;
        }
        s.c.start(id);
        s.wait_caught_up(id, 30).await;
        s.targets.borrow_mut().push(id);
        s.notes
            .push(format!("node {id} back in {:.1?}", t.elapsed()));
        s.more_acks(5, 20).await;
    }
    s.finish().await
}

async fn kill_two() -> String {
    let mut s = Scenario::start("kill-two", "docker kill both followers, restart them", 35).await;
    let f = s.followers();
    s.c.kill9(f[0]);
    s.c.kill9(f[1]);
    s.targets.borrow_mut().retain(|n| *n == s.leader);
    sleep(secs(1)).await;
    let (acked, refused) = (s.acked(), s.writes.borrow().refused);
    sleep(secs(6)).await;
    let (acked2, refused2) = (s.acked(), s.writes.borrow().refused);
    assert_eq!(
        acked, acked2,
        "writes acknowledged with one node of three up"
    );
    assert!(
        refused2 > refused,
        "no write refused with 503 with one node up"
    );
    s.notes.push(format!(
        "one node up 6 s: {} writes refused with 503, 0 acked",
        refused2 - refused
    ));
    s.c.start(f[0]);
    s.c.start(f[1]);
    *s.targets.borrow_mut() = ALL.to_vec();
    s.finish().await
}

type Run = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>>;

const SCENARIOS: [(&str, Run); 7] = [
    ("leader-kill", || Box::pin(leader_kill())),
    ("follower-kill", || Box::pin(follower_kill())),
    ("pause", || Box::pin(pause())),
    ("cut-leader", || Box::pin(cut_leader())),
    ("cut-follower", || Box::pin(cut_follower())),
    ("rolling", || Box::pin(rolling_restart())),
    ("kill-two", || Box::pin(kill_two())),
];

/// Every scenario (or those named in `SLUICE_CHAOS_SCENARIOS`), one at a time,
/// each on a fresh cluster; a table at the end; fails if any failed.
#[test]
#[ignore = "needs a Docker engine and sluice:latest: cargo test -p chaos-tests --test docker -- --ignored"]
fn docker_chaos_scenarios() {
    if skip().is_some() {
        return;
    }
    let only: Option<Vec<String>> = std::env::var("SLUICE_CHAOS_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let started = Instant::now();
    let mut rows = Vec::new();
    for (name, run) in SCENARIOS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let t = Instant::now();
        let result = std::panic::catch_unwind(|| actix_rt::System::new().block_on(run()));
        let took = t.elapsed();
        match result {
            Ok(line) => {
                eprintln!("{line}");
                rows.push((name, "PASS", took, line));
            }
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first = why.lines().next().unwrap_or("").to_owned();
                eprintln!("FAILED {name}: {first}");
                rows.push((name, "FAIL", took, first));
            }
        }
    }
    eprintln!("\n{:<14} {:<5} {:>8}  report", "scenario", "", "time");
    for (name, verdict, took, line) in &rows {
        eprintln!("{name:<14} {verdict:<5} {:>7.1?}  {line}", took);
    }
    eprintln!("total {:.1?}", started.elapsed());
    let failed: Vec<&str> = rows.iter().filter(|r| r.1 == "FAIL").map(|r| r.0).collect();
    assert!(
        failed.is_empty(),
        "docker chaos scenarios failed: {failed:?}"
    );
}
