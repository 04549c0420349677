//! Rate limits on one node (issue 9), checked from the outside: a real gateway, a
//! real upstream (`sluice echo-server`), policies from the config files and from
//! `PUT /admin/config`.
//!
//! Windows are aligned to the epoch. Tests that only need refusals use a window of
//! an hour, so that a run crossing a window boundary (which would let the sliding
//! estimate admit an extra request) is a one-in-a-thousand event; tests that need
//! time to pass (a bucket refilling) use a window of a few seconds and wait for
//! the state they expect, never for a fixed time.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sluice_testkit::{client, free_port, send, wait_for_async, Answer, Echo, Logs, Seen};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{echo, Gateway};

const ADMIN_TOKEN: &str = "ratelimit-tests-admin-token";
const HS_SECRET: &str = "hs1-secret-of-the-rate-limit-tests-0123456789";

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `services:` with `echo` (the echo upstream) and `dead` (a port nobody listens on).
fn services(echo: &Echo) -> String {
    format!(
        "services:\n  echo: {{ upstreams: [{}] }}\n  dead: {{ upstreams: [http://127.0.0.1:{}] }}\n",
        echo.url(),
        free_port()
    )
}

/// `routes.yaml`: public `/pub/*` and `/other`, a JWT route `/me/*`, and a
/// public `/down` whose upstream is not there.
const ROUTES: &str = "routes:
  - { path: /pub/*, service: echo, auth: none }
  - { path: /other, service: echo, auth: none }
  - { path: /me/*, service: echo, auth: jwt }
  - { path: /down, service: dead, auth: none }
";

const AUTH: &str = "auth:
  jwt:
    keys:
      - { kid: hs1, alg: HS256, secret: \"hs1-secret-of-the-rate-limit-tests-0123456789\" }
";

/// A gateway with [`services`], [`ROUTES`], [`AUTH`], an admin token and
/// `limits` (a `rate_limits:` section); `node_extra` goes under `node:`.
/// Returns once the unlimited route `/other` answers.
async fn gateway(echo: &Echo, limits: &str, node_extra: &str) -> Gateway {
    let gw = Gateway::start_with(
        &[
            ("services.yaml", &services(echo)),
            ("routes.yaml", ROUTES),
            ("auth.yaml", AUTH),
            ("limits.yaml", limits),
            ("admin.yaml", &format!("admin:\n  token: {ADMIN_TOKEN}\n")),
        ],
        node_extra,
    );
    wait_for_async(
        "the route /other to answer 200",
        Duration::from_secs(20),
        &gw,
        || async {
            match send(http().get(gw.url("/other")), None).await {
                Ok(a) if a.status == 200 => Ok(()),
                other => Err(other.map(|a| format!("{} {}", a.status, a.text))),
            }
        },
    )
    .await;
    gw
}

fn http() -> awc::Client {
    client(Duration::from_secs(30))
}

/// `GET path` on the data plane with `headers`.
async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http().get(gw.url(path));
    for (n, v) in headers {
        req = req.append_header((*n, *v));
    }
    send(req, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", gw.logs()))
}

/// `n` requests to `path`; their statuses.
async fn statuses(gw: &Gateway, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(get(gw, path, headers).await.status);
    }
    seen
}

fn bearer_for(sub: &str) -> String {
    let claims = json!({ "sub": sub, "exp": now_unix() + 3600 });
    let mut head = Header::new(Algorithm::HS256);
    head.kid = Some("hs1".into());
    let token = jsonwebtoken::encode(
        &head,
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign a test token");
    format!("Bearer {token}")
}

/// The value of `name`, which must be present.
fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.header(name)
        .unwrap_or_else(|| panic!("no {name} on a {} answer: {:?}", a.status, a.headers))
}

fn number(a: &Answer, name: &str) -> u64 {
    header(a, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", a.header(name)))
}

/// `"name";k1=v1;k2=v2` -> (name, [(k1, v1), (k2, v2)]).
fn structured(value: &str) -> (String, Vec<(String, u64)>) {
    let mut parts = value.split(';');
    let name = parts.next().unwrap_or_default();
    let name = name
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not an sf-string item: {value:?}"));
    let params = parts
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .unwrap_or_else(|| panic!("bad parameter {p:?} in {value:?}"));
            let v = v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {p:?} in {value:?}"));
            (k.to_owned(), v)
        })
        .collect();
    (name.to_owned(), params)
}

/// The five rate-limit headers agree with each other and with `policy`, `limit`,
/// `window` and `remaining`; returns the seconds until the reset they state.
#[track_caller]
fn assert_limit_headers(a: &Answer, policy: &str, limit: u64, window: u64, remaining: u64) -> u64 {
    let what = format!("{} answer {:?}", a.status, a.headers);
    assert_eq!(number(a, "x-ratelimit-limit"), limit, "{what}");
    assert_eq!(number(a, "x-ratelimit-remaining"), remaining, "{what}");
    assert_eq!(
        structured(header(a, "ratelimit-policy")),
        (
            policy.to_owned(),
            vec![("q".to_owned(), limit), ("w".to_owned(), window)]
        ),
        "{what}"
    );
    let (name, params) = structured(header(a, "ratelimit"));
    assert_eq!(name, policy, "{what}");
    assert_eq!(params.len(), 2, "{what}");
    assert_eq!(params[0], ("r".to_owned(), remaining), "{what}");
    let (t_key, t) = params[1].clone();
    assert_eq!(t_key, "t", "{what}");
    assert!(t <= window, "t={t} beyond the window: {what}");
    let reset = number(a, "x-ratelimit-reset");
    let now = now_unix();
    assert!(
        reset + 1 >= now + t && reset <= now + t + 1,
        "X-RateLimit-Reset {reset} is not now ({now}) + t ({t}): {what}"
    );
    t
}

/// A 429 in the JSON error shape, with `Retry-After` and the same number in the
/// body; returns it.
#[track_caller]
fn assert_429(a: &Answer, window: u64) -> u64 {
    assert_eq!(a.status, 429, "want 429, got {} {}", a.status, a.text);
    assert_eq!(a.body["error"], "rate_limited", "{}", a.text);
    assert!(
        a.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        a.text
    );
    assert_eq!(
        a.body["request_id"].as_str(),
        a.header("x-request-id"),
        "{}",
        a.text
    );
    let retry = number(a, "retry-after");
    assert!(
        (1..=window).contains(&retry),
        "Retry-After {retry} outside 1..={window}"
    );
    assert_eq!(a.body["retry_after"], retry, "{}", a.text);
    retry
}

/// `gateway_rate_limit_violations_total{route,scope}` (0 when absent).
async fn violations(gw: &Gateway, route: &str, scope: &str) -> f64 {
    let series =
        format!("gateway_rate_limit_violations_total{{route=\"{route}\",scope=\"{scope}\"}}");
    gw.metric(&series).await.unwrap_or(0.0)
}

/// `PUT /admin/config` with `spec`; waits until the data plane serves it.
async fn put_config(gw: &Gateway, spec: Value) {
    let a = wait_for_async(
        "PUT /admin/config to be answered (not 503)",
        Duration::from_secs(20),
        gw,
        || async {
            let req = http()
                .put(gw.admin_url("/admin/config"))
                .bearer_auth(ADMIN_TOKEN)
                .content_type("application/json");
            match send(req, Some(spec.to_string().into_bytes())).await {
                Ok(a) if a.status != 503 => Ok(a),
                other => Err(other.map(|a| format!("{} {}", a.status, a.text))),
            }
        },
    )
    .await;
    assert_eq!(a.status, 200, "PUT /admin/config: {} {}", a.status, a.text);
    let version: u64 = a
        .header("x-sluice-version")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Sluice-Version: {:?}", a.headers));
    wait_for_async(
        format!("the data plane to serve config version {version}"),
        Duration::from_secs(10),
        gw,
        || async {
            let h = get(gw, "/health", &[]).await;
            match h.body["config_version"].as_u64() {
                Some(v) if v >= version => Ok(()),
                other => Err(Seen(format!("{other:?}"))),
            }
        },
    )
    .await;
}

/// The gateway config of these tests as the admin API takes it, with `limits`.
fn spec(echo: &Echo, limits: Value) -> Value {
    json!({
        "services": { "echo": { "upstreams": [echo.url()] } },
        "routes": [
            { "path": "/pub/*", "service": "echo", "auth": "none" },
            { "path": "/other", "service": "echo", "auth": "none" },
        ],
        "rate_limits": limits,
        "auth": { "jwt": { "keys": [
            { "kid": "hs1", "alg": "HS256", "secret": HS_SECRET }
        ] } },
    })
}

// ----------------------------------------------------------------- tests ----

/// Admitted answers, the 429 and an upstream failure after admission all carry
/// the five headers, counting down; the 429 is the JSON error shape with
/// `Retry-After`, never reaches the upstream, and is counted by route and scope.
#[actix_rt::test]
async fn refusals_are_429_with_retry_after_and_every_answer_has_the_headers() {
    let echo = echo();
    let gw = gateway(
        &echo,
        "rate_limits:
  - { name: search, endpoint: /pub/*, limit: 3, window: 1h, scope: ip }
  - { endpoint: /down, limit: 5, window: 1h, scope: endpoint }
",
        "",
    )
    .await;

    for remaining in [2, 1, 0] {
        let a = get(&gw, "/pub/search", &[]).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["path"], "/pub/search", "proxied: {}", a.text);
        assert_limit_headers(&a, "search", 3, 3600, remaining);
    }
    let a = get(&gw, "/pub/search", &[]).await;
    let retry = assert_429(&a, 3600);
    let t = assert_limit_headers(&a, "search", 3, 3600, 0);
    assert!(retry >= t, "Retry-After {retry} before the reset ({t} s)");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("search")),
        "the message names the policy: {}",
        a.text
    );
    let a = get(&gw, "/pub/other-path", &[]).await;
    assert_429(&a, 3600);
    assert_eq!(violations(&gw, "/pub/*", "ip").await, 2.0);

    // An unlimited route has none of the headers.
    let a = get(&gw, "/other", &[]).await;
    assert_eq!(a.status, 200);
    for name in ["x-ratelimit-limit", "ratelimit-policy", "ratelimit"] {
        assert!(a.header(name).is_none(), "{name} on an unlimited route");
    }

    // Admitted, then the upstream fails: the 502 reports the limit too.
    let a = get(&gw, "/down", &[]).await;
    assert_eq!(a.status, 502, "{}", a.text);
    assert_limit_headers(&a, "endpoint:/down", 5, 3600, 4);

    // Keys have state on this node.
    let keys = gw.metric("gateway_rate_limit_keys").await.unwrap_or(0.0);
    assert!(keys >= 2.0, "gateway_rate_limit_keys = {keys}");
}

/// `scope: ip` counts per client address: without `trusted_proxies` the TCP peer
/// (a client's `X-Forwarded-For` changes nothing and is replaced upstream);
/// behind a trusted proxy, the address it forwarded.
#[actix_rt::test]
async fn the_ip_scope_counts_per_client_address() {
    let echo = echo();
    let limits = "rate_limits:\n  - { endpoint: /pub/*, limit: 2, window: 1h, scope: ip }\n";

    let direct = gateway(&echo, limits, "").await;
    let a = get(&direct, "/pub/a", &[("x-forwarded-for", "203.0.113.1")]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["headers"]["x-forwarded-for"], "127.0.0.1",
        "replaced"
    );
    let a = get(&direct, "/pub/a", &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = get(&direct, "/pub/a", &[("x-forwarded-for", "203.0.113.3")]).await;
    assert_429(&a, 3600);

    let behind = gateway(&echo, limits, "  trusted_proxies: [127.0.0.1]\n").await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for remaining in [1, 0] {
        let a = get(&behind, "/pub/a", &from("203.0.113.1")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_limit_headers(&a, "ip:/pub/*", 2, 3600, remaining);
        assert_eq!(
            a.body["headers"]["x-forwarded-for"], "203.0.113.1, 127.0.0.1",
            "a trusted proxy's list is extended"
        );
    }
    assert_429(&get(&behind, "/pub/a", &from("203.0.113.1")).await, 3600);
    // A client cannot pick its key by prepending an address: the rightmost
    // untrusted one counts.
    assert_429(
        &get(&behind, "/pub/a", &from("198.51.100.77, 203.0.113.1")).await,
        3600,
    );
    let a = get(&behind, "/pub/a", &from("203.0.113.2")).await;
    assert_eq!(a.status, 200, "another client address: {}", a.text);
    assert_eq!(violations(&behind, "/pub/*", "ip").await, 2.0);
}

/// `scope: user` counts per identity (here the JWT subject): one user's refusals
/// leave another's requests alone; the anonymous caller on a public route under a
/// `user` policy is counted by address instead (`scope="ip"` in the metric).
#[actix_rt::test]
async fn the_user_scope_counts_per_identity_and_falls_back_to_ip() {
    let echo = echo();
    let gw = gateway(
        &echo,
        "rate_limits:
  - { name: per-user, endpoint: /me/*, limit: 2, window: 1h, scope: user }
  - { name: public-per-user, endpoint: /pub/*, limit: 2, window: 1h, scope: user }
",
        "",
    )
    .await;
    let alice = bearer_for("alice");
    let bob = bearer_for("bob");
    let as_alice = [("authorization", alice.as_str())];
    let as_bob = [("authorization", bob.as_str())];

    for remaining in [1, 0] {
        let a = get(&gw, "/me/profile", &as_alice).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["headers"]["x-user-id"], "alice");
        assert_limit_headers(&a, "per-user", 2, 3600, remaining);
    }
    assert_429(&get(&gw, "/me/profile", &as_alice).await, 3600);
    let a = get(&gw, "/me/profile", &as_bob).await;
    assert_eq!(a.status, 200, "bob has his own count: {}", a.text);
    assert_limit_headers(&a, "per-user", 2, 3600, 1);
    assert_eq!(violations(&gw, "/me/*", "user").await, 1.0);

    // Anonymous on a public route: counted by address.
    assert_eq!(statuses(&gw, "/pub/x", &[], 3).await, [200, 200, 429]);
    assert_eq!(violations(&gw, "/pub/*", "ip").await, 1.0);
    assert_eq!(violations(&gw, "/pub/*", "user").await, 0.0);
}

/// Two policies on one request: when the second refuses, the first gives the
/// request back, so refused requests never use up the first policy.
#[actix_rt::test]
async fn a_refusal_by_a_later_policy_releases_the_earlier_ones() {
    let echo = echo();
    let gw = gateway(
        &echo,
        "rate_limits:
  - { name: all, endpoint: /pub/*, limit: 6, window: 1h, scope: ip }
  - { name: tight, endpoint: /pub/tight, limit: 2, window: 1h, scope: ip }
",
        "",
    )
    .await;
    // The closest to refusing is reported: `tight`.
    let a = get(&gw, "/pub/tight", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_limit_headers(&a, "tight", 2, 3600, 1);
    let a = get(&gw, "/pub/tight", &[]).await;
    assert_limit_headers(&a, "tight", 2, 3600, 0);
    for _ in 0..5 {
        let a = get(&gw, "/pub/tight", &[]).await;
        assert_429(&a, 3600);
        assert_limit_headers(&a, "tight", 2, 3600, 0);
    }
    // `all` counted the two admitted requests only: 4 left before this one.
    let a = get(&gw, "/pub/elsewhere", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_limit_headers(&a, "all", 6, 3600, 3);
}

/// A token bucket takes a burst of `burst`, then refills at `limit` per `window`
/// (here one token a second). Buckets are cluster-wide: a key's first request
/// asks the ledger (a report's round trip) before its burst is granted.
#[actix_rt::test]
async fn a_token_bucket_takes_a_burst_then_refills() {
    let echo = echo();
    let gw = gateway(
        &echo,
        "rate_limits:
  - { name: bucket, endpoint: /pub/*, limit: 5, window: 5s, scope: ip, algorithm: token_bucket, burst: 5 }
",
        "",
    )
    .await;
    // Start just after a window edge (windows are aligned to the epoch): a
    // grant lasts the window it was made in.
    let into = now_millis() % 5000;
    tokio::time::sleep(Duration::from_millis((5000 - into + 50) % 5000)).await;
    assert_eq!(
        get(&gw, "/pub/b", &[]).await.status,
        429,
        "cold: asks first"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        statuses(&gw, "/pub/b", &[], 6).await,
        [200, 200, 200, 200, 200, 429],
        "a burst of 5"
    );
    // Then about one a second: poll every 100 ms for 3 s.
    let mut admitted = 0;
    for _ in 0..30 {
        if get(&gw, "/pub/b", &[]).await.status == 200 {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (1..=4).contains(&admitted),
        "refilled at one a second, not a fresh burst: {admitted} in 3 s"
    );
}

/// Policies change at runtime through `PUT /admin/config`: a raised limit admits
/// more on top of the counts so far (nothing reset); a new name starts afresh.
#[actix_rt::test]
async fn policy_changes_apply_at_runtime_and_keep_counts_by_name() {
    let echo = echo();
    let gw = gateway(
        &echo,
        "rate_limits:\n  - { name: quota, endpoint: /pub/*, limit: 2, window: 1h, scope: ip }\n",
        "",
    )
    .await;
    assert_eq!(statuses(&gw, "/pub/q", &[], 3).await, [200, 200, 429]);

    let limit = |name: &str, limit: u64| json!([{ "name": name, "endpoint": "/pub/*", "limit": limit, "window": "1h", "scope": "ip" }]);
    put_config(&gw, spec(&echo, limit("quota", 4))).await;
    let a = get(&gw, "/pub/q", &[]).await;
    assert_eq!(a.status, 200, "the raised limit admits: {}", a.text);
    assert_limit_headers(&a, "quota", 4, 3600, 1);
    assert_eq!(
        statuses(&gw, "/pub/q", &[], 2).await,
        [200, 429],
        "4 in all, counting the 2 before the change"
    );

    put_config(&gw, spec(&echo, limit("quota-v2", 4))).await;
    let a = get(&gw, "/pub/q", &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_limit_headers(&a, "quota-v2", 4, 3600, 3);
    assert_eq!(statuses(&gw, "/pub/q", &[], 4).await, [200, 200, 200, 429]);
}
