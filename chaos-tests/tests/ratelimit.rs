//! Cluster-wide rate limits (issue 9) against three real `sluice` processes:
//! what a client sees (how many 200s and 429s per fixed window) when its
//! requests are spread over the nodes or sent to one, when a node is killed and
//! restarted or frozen mid-window, when the policy changes at runtime, and what
//! `GET`/`DELETE /admin/rate-limits/{scope}/{key}` show and do.
//!
//! Windows are a few seconds long and aligned to the Unix epoch (as the nodes
//! align them); every scenario starts at a window boundary with a key nobody has
//! used, so the sliding estimate has no previous window to weigh. Requests are
//! paced (one every few ms, one at a time) and sent only between 50 ms after a
//! window starts and 300 ms before it ends, so each is decided in the window the
//! test counts it in (a request that finishes after its window ended fails the
//! test rather than being counted in the wrong one). A node starts each window
//! with only its floor (1 % of the limit) until its first report is applied, so
//! a window admits a little less than the limit: 97 to 100 of 100.
//!
//! The tests of this binary run one at a time (they measure timing-sensitive
//! counts; three clusters at once on a small machine would measure the machine).
//! Measurements are printed with a `MEASURED` prefix: run with `-- --nocapture`.
// Each test holds the [`serial`] guard across its awaits on purpose: every
// `#[actix_rt::test]` runs its own runtime on its own thread, so a waiting
// test blocks only itself.
#![allow(clippy::await_holding_lock)]

mod support;

use serde_json::{json, Value};
use sluice_testkit::{send, wait_for_async, Answer, Seen};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::Cluster;

const ALL: [u64; 3] = [1, 2, 3];

/// Routes every test installs: `/u/*` counts users (API keys), `/pub/*` is
/// public, `/free/*` takes API keys and has no limit (to check a key works
/// without spending its allowance).
fn routes() -> Value {
    json!([
        { "path": "/api/*", "service": "echo", "auth": "none" },
        { "path": "/u/*", "service": "echo", "auth": "api_key" },
        { "path": "/pub/*", "service": "echo", "auth": "none" },
        { "path": "/free/*", "service": "echo", "auth": "api_key" },
    ])
}

// ----------------------------------------------------------------- setup ----

/// One test at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Three started nodes serving [`routes`] and `rate_limits`, and an API key
/// (client id, key) that every node accepts.
async fn limited_cluster(tag: &str, rate_limits: Value) -> (Cluster, String, String) {
    let mut c = Cluster::configure(tag, 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    c.wait_agreed_leader(&ALL, 30).await;
    c.wait_seeded(&ALL, 30).await;
    c.edit_config(1, |config| {
        config["routes"] = routes();
        config["rate_limits"] = rate_limits.clone();
    })
    .await;
    let (client_id, key) = c.new_api_key(2).await;
    for id in ALL {
        wait_for_async(
            format!("node {id} to accept the new API key"),
            Duration::from_secs(10),
            &c,
            || async {
                let a = c
                    .data_get_with(id, "/free/check", &[("x-api-key", &key)])
                    .await?;
                if a.status == 200 {
                    Ok(())
                } else {
                    Err(format!("{} {}", a.status, a.text))
                }
            },
        )
        .await;
    }
    (c, client_id, key)
}

/// A `rate_limits` entry.
fn policy(name: &str, endpoint: &str, limit: u64, window_s: u64, scope: &str) -> Value {
    json!({ "name": name, "endpoint": endpoint, "limit": limit,
            "window": format!("{window_s}s"), "scope": scope })
}

fn others(not: &[u64]) -> Vec<u64> {
    ALL.iter().copied().filter(|i| !not.contains(i)).collect()
}

async fn leader(c: &Cluster) -> u64 {
    c.wait_agreed_leader(&ALL, 30).await.0
}

// --------------------------------------------------------------- windows ----

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One fixed window, as the nodes align it (start = floor(now / len) × len).
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Unix seconds.
    unix: u64,
    len_s: u64,
    start: Instant,
}

impl Window {
    /// The next window of `len_s` seconds, once it has begun.
    async fn next(len_s: u64) -> Window {
        let now = unix_ms();
        let len_ms = len_s * 1000;
        let start_ms = (now / len_ms + 1) * len_ms;
        let start = Instant::now() + Duration::from_millis(start_ms - now);
        actix_rt::time::sleep_until(start.into()).await;
        Window {
            unix: start_ms / 1000,
            len_s,
            start,
        }
    }

    /// `ms` after the window's start.
    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn end(&self) -> Instant {
        self.at(self.len_s * 1000)
    }

    /// The last moment a request may be sent and still be counted in this window.
    fn last_send(&self) -> Instant {
        self.end() - Duration::from_millis(300)
    }

    /// The window after this one (it need not have begun).
    fn following(&self) -> Window {
        Window {
            unix: self.unix + self.len_s,
            len_s: self.len_s,
            start: self.end(),
        }
    }
}

// --------------------------------------------------------------- traffic ----

/// What a run of requests saw.
#[derive(Debug, Default)]
struct Tally {
    admitted: u64,
    refused: u64,
    /// Per node: (admitted, refused).
    per_node: BTreeMap<u64, (u64, u64)>,
    /// Anything but 200 and 429, and responses that broke the contract.
    problems: Vec<String>,
    /// When the last answer arrived.
    last_answer: Option<Instant>,
    /// `RateLimit-Policy` of the answers, with how many carried each.
    policies: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.refused += other.refused;
        for (n, (a, r)) in other.per_node {
            let e = self.per_node.entry(n).or_default();
            e.0 += a;
            e.1 += r;
        }
        self.problems.extend(other.problems);
        self.last_answer = self.last_answer.max(other.last_answer);
        for (p, n) in other.policies {
            *self.policies.entry(p).or_default() += n;
        }
    }
}

/// The rate-limit answer a client must see: `X-RateLimit-*` and the IETF
/// fields on every answer of a limited route; a 429 says when to come back.
fn check_answer(a: &Answer, limit: u64, window_s: u64) -> Result<(), String> {
    let num = |name: &str| -> Result<u64, String> {
        a.header(name)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{} without a numeric {name}: {:?}", a.status, a.headers))
    };
    if num("x-ratelimit-limit")? != limit {
        return Err(format!("X-RateLimit-Limit is not {limit}: {:?}", a.headers));
    }
    if num("x-ratelimit-remaining")? > limit {
        return Err(format!("X-RateLimit-Remaining > {limit}: {:?}", a.headers));
    }
    let reset = num("x-ratelimit-reset")?;
    let now = unix_ms() / 1000;
    if reset + 1 < now || reset > now + window_s + 1 {
        return Err(format!(
            "X-RateLimit-Reset {reset} is not within a window of {now}"
        ));
    }
    let policy = a.header("ratelimit-policy").unwrap_or_default();
    if !policy.ends_with(&format!(";q={limit};w={window_s}")) || !policy.starts_with('"') {
        return Err(format!("RateLimit-Policy {policy:?}"));
    }
    let name = policy.split(';').next().unwrap_or_default();
    let state = a.header("ratelimit").unwrap_or_default();
    if !state.starts_with(&format!("{name};r=")) || !state.contains(";t=") {
        return Err(format!("RateLimit {state:?} for policy {name}"));
    }
    if a.status == 429 {
        let retry = num("retry-after")?;
        if retry == 0 || retry > window_s + 1 {
            return Err(format!("Retry-After {retry} with a window of {window_s}s"));
        }
        if a.body["error"] != "rate_limited" || a.body["retry_after"].as_u64() != Some(retry) {
            return Err(format!("429 body {}", a.text));
        }
    }
    Ok(())
}

/// A paced run: `GET path` with `headers`, one request every `every` from
/// `from` until `until` (not sent at or after it), to `nodes` in turn, through
/// `client` (the cluster's, or one bound to another source address). Each 200
/// and 429 is checked against `limit`/`window_s` ([`check_answer`]).
#[allow(clippy::too_many_arguments)]
async fn paced(
    c: &Cluster,
    client: &awc::Client,
    nodes: &[u64],
    path: &str,
    headers: &[(&str, &str)],
    every: Duration,
    from: Instant,
    until: Instant,
    (limit, window_s): (u64, u64),
) -> Tally {
    let mut t = Tally::default();
    for i in 0u32.. {
        let at = from + every * i;
        if at >= until || Instant::now() >= until {
            break;
        }
        actix_rt::time::sleep_until(at.into()).await;
        let node = nodes[i as usize % nodes.len()];
        let mut req = client.get(c.data_url(node, path));
        for (n, v) in headers {
            req = req.append_header((*n, *v));
        }
        let a = send(req.timeout(Duration::from_secs(5)), None).await;
        t.last_answer = Some(Instant::now());
        let a = match a {
            Ok(a) => a,
            Err(e) => {
                t.problems.push(format!("node {node}: {e}"));
                continue;
            }
        };
        let e = t.per_node.entry(node).or_default();
        match a.status {
            200 => {
                t.admitted += 1;
                e.0 += 1;
            }
            429 => {
                t.refused += 1;
                e.1 += 1;
            }
            s => {
                t.problems.push(format!("node {node}: {s} {}", a.text));
                continue;
            }
        }
        if let Some(p) = a.header("ratelimit-policy") {
            *t.policies.entry(p.to_owned()).or_default() += 1;
        }
        if let Err(e) = check_answer(&a, limit, window_s) {
            if t.problems.len() < 20 {
                t.problems.push(format!("node {node}: {e}"));
            }
        }
    }
    t
}

/// Fails the test when a run saw anything but well-formed 200s and 429s, or an
/// answer arrived after `window` ended (then it may have been decided in the
/// next one: the machine is too slow for this test's margins).
fn assert_clean(c: &Cluster, what: &str, t: &Tally, window: &Window) {
    assert!(
        t.problems.is_empty(),
        "{what}: unexpected answers (first 20): {:#?}\n{}",
        t.problems,
        c.logs()
    );
    if let Some(last) = t.last_answer {
        assert!(
            last < window.end(),
            "{what}: an answer arrived {:?} after the window ended; counts would be \
             ambiguous (machine overloaded?)",
            last - window.end()
        );
    }
}

/// `GET /admin/rate-limits/{scope}/{key}` on node `id` (200 expected).
async fn standing(c: &Cluster, id: u64, scope: &str, key: &str, consistent: bool) -> Value {
    let q = if consistent { "?consistent=true" } else { "" };
    let path = format!("/admin/rate-limits/{scope}/{key}{q}");
    let a = c
        .admin_get(id, &path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(
        a.status,
        200,
        "GET {path} on node {id}: {a:?}\n{}",
        c.logs()
    );
    assert!(
        a.header("x-sluice-version").is_some(),
        "GET {path}: no X-Sluice-Version"
    );
    a.body
}

/// The standing of policy `name` in a `GET /admin/rate-limits/...` answer.
fn policy_of<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["policies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no policy {name:?} in {body}"))
}

// ------------------------------------------------------------------ tests ----

/// A `user` limit of 100 per 6 s window, the user's requests spread round-robin
/// over the three nodes at three times the limit: the window admits 97 to 100,
/// and every answer carries the rate-limit headers. The window after it (where
/// the sliding estimate weighs the first) admits no more than 100 either.
#[actix_rt::test]
async fn a_user_limit_spread_over_three_nodes_admits_the_limit_once() {
    let _serial = serial();
    let (c, _, key) = limited_cluster(
        "rl-spread",
        json!([policy("per-user", "/u/*", 100, 6, "user")]),
    )
    .await;
    let auth = [("x-api-key", key.as_str())];
    let w = Window::next(6).await;
    let every = Duration::from_millis(18);
    let t = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w.at(50),
        w.last_send(),
        (100, 6),
    )
    .await;
    assert_clean(&c, "first window", &t, &w);
    let w2 = w.following();
    let t2 = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w2.at(50),
        w2.last_send(),
        (100, 6),
    )
    .await;
    assert_clean(&c, "second window", &t2, &w2);
    eprintln!(
        "MEASURED spread: window 1 admitted {} refused {} per node {:?}; window 2 admitted {} refused {}",
        t.admitted, t.refused, t.per_node, t2.admitted, t2.refused
    );
    assert!(
        (97..=100).contains(&t.admitted),
        "a limit of 100 admitted {} of {} requests spread over three nodes (per node \
         (admitted, refused): {:?})\n{}",
        t.admitted,
        t.admitted + t.refused,
        t.per_node,
        c.logs()
    );
    assert!(t.refused >= 150, "the load was not above the limit: {t:?}");
    assert!(
        t2.admitted <= 100,
        "the second window admitted {} (> 100)\n{}",
        t2.admitted,
        c.logs()
    );
    assert_eq!(
        t.policies.keys().collect::<Vec<_>>(),
        ["\"per-user\";q=100;w=6"],
        "RateLimit-Policy of the answers"
    );
}

/// The same limit with every request on one node (a follower, so its reports
/// are forwarded to the leader): a lone busy node reaches 97 to 100 % of it.
#[actix_rt::test]
async fn a_user_limit_on_one_node_reaches_the_whole_limit() {
    let _serial = serial();
    let (c, _, key) = limited_cluster(
        "rl-one",
        json!([policy("per-user", "/u/*", 100, 6, "user")]),
    )
    .await;
    let busy = others(&[leader(&c).await])[0];
    let auth = [("x-api-key", key.as_str())];
    let w = Window::next(6).await;
    let t = paced(
        &c,
        c.client(),
        &[busy],
        "/u/x",
        &auth,
        Duration::from_millis(18),
        w.at(50),
        w.last_send(),
        (100, 6),
    )
    .await;
    assert_clean(&c, "the window", &t, &w);
    eprintln!(
        "MEASURED one node: node {busy} admitted {} refused {}",
        t.admitted, t.refused
    );
    assert!(
        (97..=100).contains(&t.admitted),
        "a limit of 100 admitted {} of {} requests, all sent to node {busy}\n{}",
        t.admitted,
        t.admitted + t.refused,
        c.logs()
    );
}

/// An `ip` limit counts a client address across the nodes (97 to 100 of 100 from
/// 127.0.0.1, round-robin), and another address (127.0.0.2) has its own count:
/// it is still admitted once the first is refused.
#[actix_rt::test]
async fn an_ip_limit_counts_each_address_across_the_nodes() {
    let _serial = serial();
    let (c, _, _) =
        limited_cluster("rl-ip", json!([policy("per-ip", "/pub/*", 100, 6, "ip")])).await;
    let other_ip: IpAddr = "127.0.0.2".parse().expect("ip");
    let other = awc::Client::builder()
        .local_address(other_ip)
        .timeout(Duration::from_secs(5))
        .disable_redirects()
        .finish();
    let w = Window::next(6).await;
    let every = Duration::from_millis(18);
    let first = paced(
        &c,
        c.client(),
        &ALL,
        "/pub/x",
        &[],
        every,
        w.at(50),
        w.at(4000),
        (100, 6),
    )
    .await;
    let second = paced(
        &c,
        &other,
        &ALL,
        "/pub/x",
        &[],
        every,
        w.at(4000),
        w.last_send(),
        (100, 6),
    )
    .await;
    assert_clean(&c, "127.0.0.1", &first, &w);
    assert_clean(&c, "127.0.0.2", &second, &w);
    eprintln!(
        "MEASURED ip: 127.0.0.1 admitted {} refused {}; then 127.0.0.2 admitted {} refused {}",
        first.admitted, first.refused, second.admitted, second.refused
    );
    assert!(
        (97..=100).contains(&first.admitted),
        "an ip limit of 100 admitted {} of {} requests from 127.0.0.1\n{}",
        first.admitted,
        first.admitted + first.refused,
        c.logs()
    );
    assert!(
        (40..=100).contains(&second.admitted),
        "127.0.0.2, after 127.0.0.1 used its limit, admitted {} of {}: addresses must \
         not share a count\n{}",
        second.admitted,
        second.admitted + second.refused,
        c.logs()
    );
    let s = standing(&c, 1, "ip", "127.0.0.1", true).await;
    let p = policy_of(&s, "per-ip");
    assert!(
        p["count"].as_u64().is_some_and(|n| (80..=100).contains(&n)),
        "the ledger's count for ip 127.0.0.1: {s}"
    );
}

/// A `token_bucket` of 100 per 10 s with `burst: 50`: a fast burst of 100
/// requests gets the bucket (about 50, plus what refills meanwhile), not the
/// whole limit; after 2 s idle, another burst gets about what refilled
/// (10/s), neither nothing nor a full bucket.
#[actix_rt::test]
async fn a_token_bucket_admits_a_burst_then_refills_at_its_rate() {
    let _serial = serial();
    let mut bucket = policy("bucket", "/u/*", 100, 10, "user");
    bucket["algorithm"] = json!("token_bucket");
    bucket["burst"] = json!(50);
    let (c, _, key) = limited_cluster("rl-bucket", json!([bucket])).await;
    let auth = [("x-api-key", key.as_str())];
    let w = Window::next(10).await;
    let every = Duration::from_millis(10);
    let burst = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w.at(50),
        w.at(1050),
        (100, 10),
    )
    .await;
    let refill = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w.at(3050),
        w.at(4050),
        (100, 10),
    )
    .await;
    assert_clean(&c, "burst", &burst, &w);
    assert_clean(&c, "after 2 s idle", &refill, &w);
    eprintln!(
        "MEASURED bucket: burst admitted {} of {}; after 2 s idle admitted {} of {}",
        burst.admitted,
        burst.admitted + burst.refused,
        refill.admitted,
        refill.admitted + refill.refused
    );
    // 50 in the bucket, ~10 refilled over the second, 3 floors, and slack for
    // the refill between the first grant and the last request.
    assert!(
        (35..=66).contains(&burst.admitted),
        "a burst of {} requests in 1 s against a bucket of 50 refilled at 10/s admitted {}\n{}",
        burst.admitted + burst.refused,
        burst.admitted,
        c.logs()
    );
    // ~20 refilled over 2 s idle, ~10 more during the second burst, and what
    // grants of the first burst had left.
    assert!(
        (12..=42).contains(&refill.admitted),
        "after 2 s idle, a second burst admitted {} (about 30 refilled expected)\n{}",
        refill.admitted,
        c.logs()
    );
}

/// The node serving a user's traffic is killed (SIGKILL) with about 70
/// admitted, restarted at once, and the traffic continues over all three
/// nodes: the window still admits at most 100 (the restarted node's earlier
/// grants count as spent), and the ledger shows its new incarnation.
#[actix_rt::test]
async fn a_node_restarted_mid_window_does_not_reset_the_count() {
    let _serial = serial();
    let (mut c, client_id, key) = limited_cluster(
        "rl-restart",
        json!([policy("per-user", "/u/*", 100, 10, "user")]),
    )
    .await;
    let busy = leader(&c).await;
    let version = c.info(busy).await.map_or(0, |i| i.applied);
    let auth = [("x-api-key", key.as_str())];
    let w = Window::next(10).await;
    let before = paced(
        &c,
        c.client(),
        &[busy],
        "/u/x",
        &auth,
        Duration::from_millis(30),
        w.at(50),
        w.at(2150),
        (100, 10),
    )
    .await;
    assert_clean(&c, "before the kill", &before, &w);
    let witness = others(&[busy])[0];
    let s = standing(&c, witness, "user", &client_id, false).await;
    let old_incarnation = policy_of(&s, "per-user")["leases"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["node"] == busy))
        .and_then(|l| l["incarnation"].as_u64())
        .unwrap_or_else(|| panic!("no lease of node {busy} before the kill: {s}"));

    c.kill9(busy);
    c.start(busy);
    // Serving the config and the API key again (from its own disk and the log).
    c.wait_version(&[busy], version, 10).await;
    let restarted = Instant::now();
    assert!(
        restarted + Duration::from_secs(3) < w.end(),
        "node {busy} took until {:?} into the 10 s window to restart and catch up: no time \
         left to check it (machine overloaded?)\n{}",
        restarted - w.start,
        c.logs()
    );
    let after = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        Duration::from_millis(20),
        restarted,
        w.end() - Duration::from_millis(1500),
        (100, 10),
    )
    .await;
    assert_clean(&c, "after the restart", &after, &w);
    // Still in the window: the restarted node reported under a new incarnation.
    let s = standing(&c, witness, "user", &client_id, false).await;
    let p = policy_of(&s, "per-user");
    eprintln!(
        "MEASURED restart: node {busy} admitted {} before SIGKILL; after the restart \
         ({:?} into the window) the cluster admitted {} more (per node {:?}); ledger {p}",
        before.admitted,
        restarted - w.start,
        after.admitted,
        after.per_node
    );
    assert!(
        before.admitted >= 50,
        "node {busy} admitted only {} before the kill\n{}",
        before.admitted,
        c.logs()
    );
    assert!(
        before.admitted + after.admitted <= 100,
        "with a limit of 100 the window admitted {} before node {busy} was killed and {} after \
         its restart: the restart handed out a fresh window\n{}",
        before.admitted,
        after.admitted,
        c.logs()
    );
    assert_eq!(
        p["window_start"].as_u64(),
        Some(w.unix),
        "the ledger's window: {p}"
    );
    let new_incarnation = p["leases"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["node"] == busy))
        .and_then(|l| l["incarnation"].as_u64());
    assert!(
        new_incarnation.is_some_and(|i| i > old_incarnation),
        "node {busy}'s lease after the restart: {p} (incarnation before: {old_incarnation})"
    );
    assert!(
        p["stranded"].as_u64().is_some_and(|s| s > 0),
        "the killed incarnation's grants are not counted as stranded: {p}"
    );
}

/// A follower frozen (SIGSTOP) 2 s into a 10 s window and thawed 3.5 s later:
/// meanwhile the two others keep admitting, and the window's total over the
/// three (before, during and after the freeze) stays within the limit.
#[actix_rt::test]
async fn a_frozen_node_never_lets_the_cluster_pass_the_limit() {
    let _serial = serial();
    let (mut c, _, key) = limited_cluster(
        "rl-freeze",
        json!([policy("per-user", "/u/*", 100, 10, "user")]),
    )
    .await;
    let frozen = others(&[leader(&c).await])[0];
    let up = others(&[frozen]);
    let auth = [("x-api-key", key.as_str())];
    let w = Window::next(10).await;
    let every = Duration::from_millis(30);
    let mut total = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w.at(50),
        w.at(2000),
        (100, 10),
    )
    .await;
    c.pause(frozen);
    let during = paced(
        &c,
        c.client(),
        &up,
        "/u/x",
        &auth,
        every,
        w.at(2050),
        w.at(5500),
        (100, 10),
    )
    .await;
    c.resume(frozen);
    let after = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        Duration::from_millis(20),
        w.at(5550),
        w.last_send(),
        (100, 10),
    )
    .await;
    eprintln!(
        "MEASURED freeze: before admitted {}; node {frozen} frozen: {up:?} admitted {}; thawed: \
         admitted {} (per node {:?})",
        total.admitted, during.admitted, after.admitted, after.per_node
    );
    let during_admitted = during.admitted;
    total.add(during);
    total.add(after);
    assert_clean(&c, "the window", &total, &w);
    assert!(
        total.admitted <= 100,
        "with a limit of 100 the window admitted {} (node {frozen} frozen and thawed in it; \
         per node {:?})\n{}",
        total.admitted,
        total.per_node,
        c.logs()
    );
    assert!(
        during_admitted >= 10,
        "while node {frozen} was frozen the others admitted only {during_admitted}\n{}",
        c.logs()
    );
    assert!(
        total.admitted >= 85,
        "the window admitted only {} of 100 against {} requests\n{}",
        total.admitted,
        total.admitted + total.refused,
        c.logs()
    );
}

/// A limit raised at runtime (PUT /admin/config, same name) admits more in the
/// same window without starting it over; renaming the policy starts fresh.
#[actix_rt::test]
async fn a_policy_change_at_runtime_keeps_counts_and_a_rename_starts_fresh() {
    let _serial = serial();
    let (c, _, key) = limited_cluster(
        "rl-change",
        json!([policy("search", "/u/*", 50, 20, "user")]),
    )
    .await;
    let auth = [("x-api-key", key.as_str())];
    let every = Duration::from_millis(20);
    let w = Window::next(20).await;
    let at50 = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w.at(50),
        w.at(3000),
        (50, 20),
    )
    .await;
    assert_clean(&c, "limit 50", &at50, &w);

    c.edit_config(2, |config| {
        config["rate_limits"] = json!([policy("search", "/u/*", 80, 20, "user")]);
    })
    .await;
    let raised = Instant::now();
    let at80 = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        raised,
        raised + Duration::from_millis(2500),
        (80, 20),
    )
    .await;
    assert_clean(&c, "limit 80", &at80, &w);

    c.edit_config(3, |config| {
        config["rate_limits"] = json!([policy("search-v2", "/u/*", 80, 20, "user")]);
    })
    .await;
    let renamed = Instant::now();
    let fresh = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        renamed,
        (renamed + Duration::from_millis(3500)).min(w.last_send()),
        (80, 20),
    )
    .await;
    assert_clean(&c, "renamed", &fresh, &w);
    eprintln!(
        "MEASURED policy change: limit 50 admitted {}; raised to 80 ({:?} into the window) \
         admitted {} more; renamed ({:?} in) admitted {}",
        at50.admitted,
        raised - w.start,
        at80.admitted,
        renamed - w.start,
        fresh.admitted
    );
    assert!(
        (48..=50).contains(&at50.admitted),
        "a limit of 50 admitted {}\n{}",
        at50.admitted,
        c.logs()
    );
    assert!(
        at80.admitted >= 20 && at50.admitted + at80.admitted <= 80,
        "raising the limit from 50 to 80 in the window admitted {} more after {} (want \
         about 30: counts kept)\n{}",
        at80.admitted,
        at50.admitted,
        c.logs()
    );
    assert!(
        (60..=80).contains(&fresh.admitted),
        "the renamed policy (limit 80) admitted {} in the same window (want a fresh count)\n{}",
        fresh.admitted,
        c.logs()
    );
    assert!(
        at50.policies.contains_key("\"search\";q=50;w=20")
            && at80.policies.contains_key("\"search\";q=80;w=20")
            && fresh.policies.contains_key("\"search-v2\";q=80;w=20"),
        "RateLimit-Policy before/after: {:?} {:?} {:?}",
        at50.policies,
        at80.policies,
        fresh.policies
    );
}

/// `GET /admin/rate-limits/user/{id}` shows the user's window, the cluster-wide
/// count and each node's lease (the same on every node); `DELETE` through a
/// follower resets it, after which the user is admitted again in the same
/// window. Scopes and keys it does not know are answered as documented.
#[actix_rt::test]
async fn the_admin_api_shows_leases_and_resets_a_key() {
    let _serial = serial();
    let limits = json!([
        policy("per-user", "/u/*", 100, 20, "user"),
        policy("per-endpoint", "/pub/*", 1000, 20, "endpoint"),
    ]);
    let (c, client_id, key) = limited_cluster("rl-admin", limits).await;
    let auth = [("x-api-key", key.as_str())];
    let every = Duration::from_millis(18);
    let w = Window::next(20).await;
    let used = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        w.at(50),
        w.at(3500),
        (100, 20),
    )
    .await;
    assert_clean(&c, "before the reset", &used, &w);
    assert!(
        (97..=100).contains(&used.admitted),
        "a limit of 100 admitted {}\n{}",
        used.admitted,
        c.logs()
    );

    let s = standing(&c, 1, "user", &client_id, true).await;
    eprintln!("MEASURED admin: {used:?} -> {s}");
    assert_eq!(s["scope"], "user", "{s}");
    assert_eq!(s["key"], client_id.as_str(), "{s}");
    assert_eq!(
        s["policies"].as_array().map(Vec::len),
        Some(1),
        "only user policies: {s}"
    );
    let p = policy_of(&s, "per-user");
    assert_eq!(p["limit"], 100, "{p}");
    assert_eq!(p["window"], 20, "{p}");
    assert_eq!(p["algorithm"], "sliding_window", "{p}");
    assert_eq!(p["window_start"].as_u64(), Some(w.unix), "{p}");
    assert_eq!(p["window_end"].as_u64(), Some(w.unix + 20), "{p}");
    let count = p["count"].as_u64().expect("count");
    let floor = p["floor_per_node"].as_u64().expect("floor_per_node");
    assert_eq!(floor, 1, "{p}");
    let leases = p["leases"].as_array().expect("leases");
    let mut nodes: Vec<u64> = leases.iter().filter_map(|l| l["node"].as_u64()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ALL, "one lease per node: {p}");
    let reported: u64 = leases.iter().filter_map(|l| l["reported"].as_u64()).sum();
    let granted: u64 = leases.iter().filter_map(|l| l["granted"].as_u64()).sum();
    assert_eq!(reported, count, "the count is what the nodes reported: {p}");
    assert!(
        count <= used.admitted && count + 10 >= used.admitted,
        "the ledger counts {count} of {} admitted: {p}",
        used.admitted
    );
    for l in leases {
        let (g, r) = (
            l["granted"].as_u64().unwrap_or(0),
            l["reported"].as_u64().unwrap_or(0),
        );
        assert!(
            g > 0 && r <= g + floor,
            "a node reported more than its lease and floor: {l}"
        );
    }
    assert!(
        granted + p["stranded"].as_u64().unwrap_or(0) + 3 * floor <= 100,
        "grants and floors exceed the limit: {p}"
    );
    // Every node applied the same reports: the same count (once caught up).
    for id in [2, 3] {
        wait_for_async(
            format!("node {id} to show the count {count}"),
            Duration::from_secs(5),
            &c,
            || async {
                let s = standing(&c, id, "user", &client_id, false).await;
                let n = policy_of(&s, "per-user")["count"].as_u64();
                if n == Some(count) {
                    Ok(())
                } else {
                    Err(Seen(s.to_string()))
                }
            },
        )
        .await;
    }

    // What it answers about other keys and scopes.
    let fresh = standing(&c, 2, "user", "nobody-yet", false).await;
    let p = policy_of(&fresh, "per-user");
    assert_eq!(
        (p["count"].as_u64(), p["leases"].as_array().map(Vec::len)),
        (Some(0), Some(0)),
        "{p}"
    );
    let e = standing(&c, 2, "endpoint", "/pub/*", false).await;
    policy_of(&e, "per-endpoint");
    let cl = standing(&c, 2, "client", &client_id, false).await;
    policy_of(&cl, "oauth-token");
    for (method, path, want) in [
        ("GET", "/admin/rate-limits/users/x", 400),
        ("DELETE", "/admin/rate-limits/users/x", 400),
        ("DELETE", "/admin/rate-limits/ip/127.0.0.1", 404),
    ] {
        let a = match method {
            "GET" => c.admin_get(3, path).await,
            _ => c.admin_call(3, method, path, None).await,
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(a.status, want, "{method} {path}: {a:?}");
        assert!(a.body["error"].is_string(), "{method} {path}: {}", a.text);
    }
    let anonymous = send(
        c.client()
            .get(c.admin_url(1, &format!("/admin/rate-limits/user/{client_id}"))),
        None,
    )
    .await
    .expect("GET without a token");
    assert_eq!(anonymous.status, 401, "{anonymous:?}");

    // Reset through a follower; the user is admitted again in the same window.
    let via = others(&[leader(&c).await])[0];
    let path = format!("/admin/rate-limits/user/{client_id}");
    let a = c
        .admin_call(via, "DELETE", &path, None)
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    assert_eq!(
        a.status,
        200,
        "DELETE {path} via node {via}: {a:?}\n{}",
        c.logs()
    );
    let version = a.body["version"].as_u64().expect("version");
    assert_eq!(
        a.header("x-sluice-version"),
        Some(version.to_string().as_str()),
        "{a:?}"
    );
    assert_eq!(a.body["policies"], json!(["per-user"]), "{}", a.text);
    c.wait_applied(&ALL, version, 10).await;
    // The counts are forgotten. A lease may already be back: a node that
    // asked ahead for the next window just before the reset is granted again
    // when its report lands after it, but no lease carries a hit.
    let s = standing(&c, 1, "user", &client_id, true).await;
    let p = policy_of(&s, "per-user");
    let hits: u64 = p["leases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["reported"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        (p["count"].as_u64(), p["previous"].as_u64(), hits),
        (Some(0), Some(0), 0),
        "after the reset: {p}"
    );
    let reset_at = Instant::now();
    let again = paced(
        &c,
        c.client(),
        &ALL,
        "/u/x",
        &auth,
        every,
        reset_at,
        (reset_at + Duration::from_millis(2500)).min(w.last_send()),
        (100, 20),
    )
    .await;
    assert_clean(&c, "after the reset", &again, &w);
    eprintln!(
        "MEASURED admin reset: {:?} into the window; admitted {} of {} after it",
        reset_at - w.start,
        again.admitted,
        again.admitted + again.refused
    );
    assert!(
        again.admitted >= 50,
        "after DELETE {path} the user was admitted {} times of {} in the same window (want \
         a fresh count)\n{}",
        again.admitted,
        again.admitted + again.refused,
        c.logs()
    );
}
