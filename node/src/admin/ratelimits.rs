//! `/admin/rate-limits/{scope}/{key}`: one key's standing under the cluster-wide
//! rate limits, for an operator asking "why was I limited?", and its reset.
//!
//! The key is what the data plane counts a request under, without the scope
//! prefix: a user id (`user/alice`), an API client id (`client/c_1`), a client
//! address (`ip/203.0.113.9`), or a policy's endpoint as written
//! (`endpoint//api/v1/search`, or without the doubled slash). Anything the URL
//! cannot carry as is may be percent-encoded (`%2F`).
//!
//! `GET` reads the replicated ledger ([`sluice_raft::limits::Ledger`]) as this
//! node has applied it, for every policy of the current config with that scope
//! (and, for `client`, the token endpoint's own policy), holding its read lock
//! only for the lookups. A window that has ended by this node's clock is shown as
//! the ledger would roll it at the next report: the current window, empty, with
//! the ended one's count as `previous`. `DELETE` proposes one
//! [`Command::ResetLimits`] with the key's ledger key under each of those
//! policies, through any node like every admin write.

use super::config::percent_decode;
use super::{read, written, Admin, AdminError, Caller};
use actix_web::{web, HttpRequest, HttpResponse};
use cluster_config::{Gateway, RateLimitAlgorithm, RateLimitEndpoint, RateLimitScope};
use serde::Serialize;
use serde_json::json;
use sluice_actors::limiter::Algorithm;
use sluice_raft::limits::{ledger_key, Algo, KeyLedger, Share, Terms, Upcoming};
use sluice_raft::Command;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // `{key:.*}`: endpoint keys are paths, slashes included.
    cfg.route("/rate-limits/{scope}/{key:.*}", web::get().to(get_key))
        .route("/rate-limits/{scope}/{key:.*}", web::delete().to(reset_key));
}

/// Where the token endpoint's limit applies (its policy has no `endpoint`).
const TOKEN_ENDPOINT_PATH: &str = "/oauth/token";

/// A policy a scoped key is counted under, as the config states it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    name: String,
    /// As written (`/api/v1/*` for a prefix).
    endpoint: String,
    limit: u64,
    window: Duration,
    algorithm: RateLimitAlgorithm,
    /// Token bucket only.
    burst: Option<u64>,
}

impl Policy {
    fn terms(&self, window_ms: u64, members: u32) -> Terms {
        Terms {
            limit: self.limit,
            window_ms,
            algo: match (self.algorithm, self.burst) {
                (RateLimitAlgorithm::TokenBucket, Some(burst)) => Algo::TokenBucket { burst },
                _ => Algo::SlidingWindow,
            },
            members,
        }
    }
}

/// A `rate_limits[].endpoint` as written: the key of the `endpoint` scope.
fn endpoint_text(endpoint: &RateLimitEndpoint) -> String {
    match endpoint {
        RateLimitEndpoint::Route(path) | RateLimitEndpoint::Path(path) => path.clone(),
        RateLimitEndpoint::Prefix(prefix) => format!("{prefix}*"),
    }
}

/// Every policy of `gateway` that counts `key` (unscoped) of `scope`, in config
/// order, the token endpoint's last. An `endpoint` key is its policy's endpoint,
/// so only that policy counts it.
fn policies_for(gateway: &Gateway, scope: RateLimitScope, key: &str) -> Vec<Policy> {
    let mut out: Vec<Policy> = gateway
        .rate_limits
        .iter()
        .filter(|rl| rl.scope == scope)
        .filter(|rl| scope != RateLimitScope::Endpoint || endpoint_text(&rl.endpoint) == key)
        .map(|rl| Policy {
            name: rl.name.clone(),
            endpoint: endpoint_text(&rl.endpoint),
            limit: rl.limit,
            window: rl.window,
            algorithm: rl.algorithm,
            burst: (rl.algorithm == RateLimitAlgorithm::TokenBucket).then_some(rl.burst),
        })
        .collect();
    if scope == RateLimitScope::Client {
        if let Some(p) = crate::limits::token_endpoint_policy(&gateway.oauth) {
            let (algorithm, burst) = match p.algorithm {
                Algorithm::SlidingWindow => (RateLimitAlgorithm::SlidingWindow, None),
                Algorithm::TokenBucket { burst } => (RateLimitAlgorithm::TokenBucket, Some(burst)),
            };
            out.push(Policy {
                name: p.name.to_string(),
                endpoint: TOKEN_ENDPOINT_PATH.to_owned(),
                limit: p.limit,
                window: p.window,
                algorithm,
                burst,
            });
        }
    }
    out
}

/// The scope and the unscoped key named by the URL; 400 for a scope that is not
/// one of `user | ip | endpoint | client`, or no key. Address keys are written
/// the way the data plane prints addresses (`::1`, not `0:0:0:0:0:0:0:1`), and an
/// endpoint key gets its leading `/` back if the URL dropped it.
/// The longest key a URL may name (no limiter key is longer: user ids come from
/// tokens bounded by `auth.jwt.max_token_bytes`, and paths from routes).
const MAX_KEY_BYTES: usize = 1024;

fn parse_target(scope: &str, raw_key: &str) -> Result<(RateLimitScope, String), AdminError> {
    let scope = RateLimitScope::parse(scope).ok_or_else(|| {
        AdminError::BadRequest(format!(
            "unknown rate-limit scope {scope:?}: expected user, ip, endpoint or client"
        ))
    })?;
    let key = percent_decode(raw_key);
    if key.is_empty() {
        return Err(AdminError::BadRequest(
            "no key: /admin/rate-limits/{scope}/{key}".into(),
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(AdminError::BadRequest(format!(
            "the key is {} bytes long; at most {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    let key = match scope {
        RateLimitScope::Ip => match key.parse::<IpAddr>() {
            Ok(addr) => addr.to_string(),
            Err(_) => key,
        },
        RateLimitScope::Endpoint if !key.starts_with('/') => format!("/{key}"),
        _ => key,
    };
    Ok((scope, key))
}

/// `{scope}:{key}`, what the limiter counts a request under.
fn scoped(scope: RateLimitScope, key: &str) -> String {
    format!("{}:{key}", scope.as_str())
}

/// One node's lease in the shown window.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct LeaseView {
    node: u64,
    /// The holder's boot time (Unix ms): a restarted node is a new incarnation.
    incarnation: u64,
    /// What the ledger granted it in the window (beyond its floor).
    granted: u64,
    /// The hits it reported in the window.
    reported: u64,
    /// More it asked for at its last report.
    want: u64,
}

/// One policy's standing for the key.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct PolicyView {
    name: String,
    endpoint: String,
    limit: u64,
    /// Seconds.
    window: u64,
    algorithm: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
    /// The fixed window shown (Unix seconds; windows are aligned to the epoch).
    window_start: u64,
    window_end: u64,
    /// Hits the nodes reported in the window, cluster-wide. Hits admitted since
    /// each node's last report (at most a `sync_interval` ago) are not in it.
    count: u64,
    /// Hits reported for the window before: the sliding estimate weighs them.
    previous: u64,
    /// Grants of node incarnations that restarted in the window: spent.
    stranded: u64,
    /// Every grant of the window, stranded ones included.
    granted: u64,
    /// What every member may admit per window without a grant (its floor: 1 %
    /// of the limit, 1 for limits from 10 to 99; a one-node cluster's whole
    /// sliding limit), by the cluster's current membership.
    floor_per_node: u64,
    /// What the cluster has left as the ledger sees it: for the sliding window
    /// `limit − ⌊previous × overlap⌋ − count`; for a token bucket its level at
    /// the last report.
    remaining: u64,
    leases: Vec<LeaseView>,
    /// Grants already made for the window after this one (a busy node asks
    /// ahead, so it does not start that window on its floor).
    next_leases: Vec<LeaseView>,
}

/// The answer of `GET /admin/rate-limits/{scope}/{key}`.
#[derive(Debug, Serialize)]
struct KeyView {
    scope: &'static str,
    key: String,
    /// The node that answered, and its clock (Unix ms) windows were judged by.
    node: u64,
    now_ms: u64,
    policies: Vec<PolicyView>,
}

/// What `policy` shows at `now_ms` given the ledger's entry for the key, in a
/// cluster of `members` nodes.
fn view(policy: &Policy, ledger: Option<&KeyLedger>, now_ms: u64, members: u32) -> PolicyView {
    let window_ms = ledger
        .map_or(policy.window.as_millis() as u64, |l| l.terms.window_ms)
        .max(1);
    let current = now_ms / window_ms;
    // The ledger's window if it is current (or ahead of this node's clock); a
    // window that has ended is rolled as the next report would roll it (the
    // grants made ahead for the window after it become its leases).
    let no_upcoming = Upcoming::default();
    let (window, count, previous, stranded, leases, next, bucket) = match ledger {
        Some(l) if l.window >= current => (
            l.window,
            l.count,
            l.previous,
            l.stranded,
            leases_of(&l.shares),
            leases_of(&l.upcoming.as_deref().unwrap_or(&no_upcoming).shares),
            Some(l.bucket_milli / 1000),
        ),
        Some(l) if l.window + 1 == current => {
            let up = l.upcoming.as_deref().unwrap_or(&no_upcoming);
            (
                current,
                0,
                l.count,
                up.stranded,
                leases_of(&up.shares),
                Vec::new(),
                Some(l.bucket_milli / 1000),
            )
        }
        Some(l) => (
            current,
            0,
            0,
            0,
            Vec::new(),
            Vec::new(),
            Some(l.bucket_milli / 1000),
        ),
        None => (current, 0, 0, 0, Vec::new(), Vec::new(), None),
    };
    let start_ms = window.saturating_mul(window_ms);
    let granted = leases
        .iter()
        .map(|l| l.granted)
        .fold(stranded, u64::saturating_add);
    let remaining = match policy.algorithm {
        RateLimitAlgorithm::SlidingWindow => {
            let elapsed = now_ms.saturating_sub(start_ms).min(window_ms);
            let weighted = (u128::from(previous) * u128::from(window_ms - elapsed)
                / u128::from(window_ms)) as u64;
            policy.limit.saturating_sub(weighted).saturating_sub(count)
        }
        RateLimitAlgorithm::TokenBucket => match (ledger.map(|l| l.terms.algo), bucket) {
            (Some(Algo::TokenBucket { .. }), Some(level)) => level,
            _ => policy.burst.unwrap_or(policy.limit),
        },
    };
    PolicyView {
        name: policy.name.clone(),
        endpoint: policy.endpoint.clone(),
        limit: policy.limit,
        window: policy.window.as_secs(),
        algorithm: policy.algorithm.as_str(),
        burst: policy.burst,
        window_start: start_ms / 1000,
        window_end: start_ms.saturating_add(window_ms) / 1000,
        count,
        previous,
        stranded,
        granted,
        floor_per_node: policy.terms(window_ms, members).floor(),
        remaining,
        leases,
        next_leases: next,
    }
}

fn leases_of(shares: &[Share]) -> Vec<LeaseView> {
    shares
        .iter()
        .map(|s| LeaseView {
            node: s.node,
            incarnation: s.incarnation,
            granted: s.granted,
            reported: s.reported,
            want: s.want,
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The policies counting `key` of `scope` under the config this node's data
/// plane serves, or, when a consistent read found the replicated state ahead of
/// the data plane, under that state's config.
fn current_policies(
    admin: &Admin,
    published: Option<&sluice_raft::Published>,
    scope: RateLimitScope,
    key: &str,
) -> Result<Vec<Policy>, AdminError> {
    let plane = admin.plane.state.load_full();
    match published {
        Some(p) if p.state.seeded && plane.applied_index < p.version => {
            let gateway = Gateway::compile(
                (*p.state.gateway).clone(),
                &cluster_config::Origins::default(),
                None,
            )
            .map_err(|e| {
                AdminError::Internal(format!("replicated config does not compile: {e}"))
            })?;
            Ok(policies_for(&gateway, scope, key))
        }
        _ => Ok(policies_for(&plane.gateway.config, scope, key)),
    }
}

/// The scope and key of the request's URL.
fn target(req: &HttpRequest) -> Result<(RateLimitScope, String), AdminError> {
    let info = req.match_info();
    parse_target(
        info.get("scope").unwrap_or_default(),
        info.get("key").unwrap_or_default(),
    )
}

/// `GET /admin/rate-limits/{scope}/{key}[?consistent=true]`.
async fn get_key(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let (scope, key) = target(&req)?;
    let published = admin.read_state(&req).await?;
    let policies = current_policies(&admin, Some(&published), scope, &key)?;
    let scoped_key = scoped(scope, &key);
    let found: Vec<Option<KeyLedger>> = {
        let ledger = admin
            .raft
            .ledger()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        policies
            .iter()
            .map(|p| {
                ledger
                    .keys
                    .get(&ledger_key(&p.name, &scoped_key))
                    .map(|l| (**l).clone())
            })
            .collect()
    };
    let now = now_ms();
    let members = admin
        .raft
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .count();
    let members = u32::try_from(members).unwrap_or(u32::MAX);
    let views = policies
        .iter()
        .zip(&found)
        .map(|(p, l)| view(p, l.as_ref(), now, members))
        .collect();
    Ok(read(
        published.version,
        KeyView {
            scope: scope.as_str(),
            key,
            node: admin.raft.id(),
            now_ms: now,
            policies: views,
        },
    ))
}

/// `DELETE /admin/rate-limits/{scope}/{key}`: a fresh window under every policy
/// of that scope; 404 when no policy has it.
async fn reset_key(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let (scope, key) = target(&req)?;
    let policies = current_policies(&admin, None, scope, &key)?;
    if policies.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no rate limit counts {} keys{}",
            scope.as_str(),
            if scope == RateLimitScope::Endpoint {
                format!(" of endpoint {key:?}")
            } else {
                String::new()
            }
        )));
    }
    let scoped_key = scoped(scope, &key);
    let keys = policies
        .iter()
        .map(|p| ledger_key(&p.name, &scoped_key))
        .collect();
    let version = admin.write(Command::ResetLimits { keys }).await?;
    let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
    Ok(written(
        version,
        json!({ "version": version, "policies": names }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(json: &str) -> Gateway {
        let spec = cluster_config::parse_gateway_json(json.as_bytes()).expect("spec");
        Gateway::compile(spec, &cluster_config::Origins::default(), None).expect("compiles")
    }

    const CONFIG: &str = r#"{
        "services": {"s": {"upstreams": ["http://127.0.0.1:1"]}},
        "routes": [{"path": "/a", "service": "s"}, {"path": "/b/*", "service": "s"}],
        "rate_limits": [
            {"endpoint": "/a", "limit": 100, "window": "60s", "scope": "user"},
            {"endpoint": "/b/*", "limit": 5, "window": "10s", "scope": "user",
             "algorithm": "token_bucket", "burst": 8},
            {"endpoint": "/a", "limit": 1000, "window": "60s", "scope": "endpoint"},
            {"endpoint": "/b/*", "limit": 10, "window": "1s", "scope": "endpoint"},
            {"endpoint": "/a", "limit": 50, "window": "60s", "scope": "client"}
        ]
    }"#;

    #[test]
    fn the_policies_of_a_scope_are_listed_in_config_order() {
        let g = gateway(CONFIG);
        let names = |scope, key| -> Vec<String> {
            policies_for(&g, scope, key)
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(
            names(RateLimitScope::User, "alice"),
            ["user:/a", "user:/b/*"]
        );
        assert_eq!(names(RateLimitScope::Ip, "10.0.0.1"), Vec::<String>::new());
        // An endpoint key is its own policy's endpoint.
        assert_eq!(names(RateLimitScope::Endpoint, "/b/*"), ["endpoint:/b/*"]);
        assert_eq!(names(RateLimitScope::Endpoint, "/c"), Vec::<String>::new());
        // The token endpoint's limit is a client policy too (10/min by default).
        assert_eq!(
            names(RateLimitScope::Client, "c1"),
            ["client:/a", cluster_config::TOKEN_ENDPOINT_POLICY]
        );
        let bucket = &policies_for(&g, RateLimitScope::User, "x")[1];
        assert_eq!(bucket.burst, Some(8));
        assert_eq!(bucket.algorithm, RateLimitAlgorithm::TokenBucket);
        let oauth = &policies_for(&g, RateLimitScope::Client, "x")[1];
        assert_eq!((oauth.limit, oauth.window.as_secs()), (10, 60));
    }

    #[test]
    fn targets_are_parsed_and_normalised() {
        let t = |s: &str, k: &str| parse_target(s, k).map_err(|e| e.to_string());
        assert_eq!(
            t("user", "alice").unwrap(),
            (RateLimitScope::User, "alice".into())
        );
        assert_eq!(
            t("user", "auth0%7C42%2Fx").unwrap(),
            (RateLimitScope::User, "auth0|42/x".into())
        );
        assert_eq!(
            t("ip", "0:0:0:0:0:0:0:1").unwrap(),
            (RateLimitScope::Ip, "::1".into())
        );
        assert_eq!(
            t("ip", "unknown").unwrap(),
            (RateLimitScope::Ip, "unknown".into())
        );
        assert_eq!(
            t("endpoint", "api/v1/search").unwrap(),
            (RateLimitScope::Endpoint, "/api/v1/search".into())
        );
        assert_eq!(
            t("endpoint", "/api/v1/*").unwrap(),
            (RateLimitScope::Endpoint, "/api/v1/*".into())
        );
        assert!(t("users", "alice")
            .unwrap_err()
            .contains("unknown rate-limit scope"));
        assert!(t("user", "").is_err());
    }

    fn sliding(limit: u64) -> Policy {
        Policy {
            name: "p".into(),
            endpoint: "/a".into(),
            limit,
            window: Duration::from_secs(10),
            algorithm: RateLimitAlgorithm::SlidingWindow,
            burst: None,
        }
    }

    fn ledger(window: u64, count: u64, previous: u64) -> KeyLedger {
        KeyLedger {
            terms: Terms {
                limit: 100,
                window_ms: 10_000,
                algo: Algo::SlidingWindow,
                members: 3,
            },
            window,
            shares: vec![
                Share {
                    node: 1,
                    incarnation: 7,
                    granted: 40,
                    reported: 30,
                    want: 10,
                    want_at_ms: 0,
                },
                Share {
                    node: 2,
                    incarnation: 8,
                    granted: 20,
                    reported: 12,
                    want: 0,
                    want_at_ms: 0,
                },
            ],
            stranded: 5,
            count,
            previous,
            bucket_milli: 0,
            bucket_at_ms: 0,
            upcoming: None,
        }
    }

    #[test]
    fn a_current_window_shows_counts_and_leases() {
        // 2.5 s into window 100 (1000..1010 s): 75 % of `previous` still weighs.
        let v = view(&sliding(100), Some(&ledger(100, 42, 20)), 1_002_500, 3);
        assert_eq!((v.window_start, v.window_end), (1000, 1010));
        assert_eq!((v.count, v.previous, v.stranded), (42, 20, 5));
        assert_eq!(v.granted, 65);
        assert_eq!(v.floor_per_node, 1);
        // Floors as the nodes reserve them.
        assert_eq!(view(&sliding(50), None, 0, 3).floor_per_node, 1);
        assert_eq!(view(&sliding(5), None, 0, 3).floor_per_node, 0);
        assert_eq!(view(&sliding(1000), None, 0, 3).floor_per_node, 10);
        assert_eq!(view(&sliding(50), None, 0, 1).floor_per_node, 50);
        assert_eq!(v.remaining, 100 - 15 - 42);
        assert_eq!(
            v.leases,
            [
                LeaseView {
                    node: 1,
                    incarnation: 7,
                    granted: 40,
                    reported: 30,
                    want: 10
                },
                LeaseView {
                    node: 2,
                    incarnation: 8,
                    granted: 20,
                    reported: 12,
                    want: 0
                },
            ]
        );
        let shown = serde_json::to_value(&v).expect("json");
        assert_eq!(shown["algorithm"], "sliding_window");
        assert!(shown.get("burst").is_none());
    }

    #[test]
    fn grants_made_ahead_show_as_next_leases_then_as_leases() {
        let mut l = ledger(100, 42, 20);
        let ahead = Share {
            node: 3,
            incarnation: 9,
            granted: 25,
            reported: 0,
            want: 30,
            want_at_ms: 0,
        };
        l.upcoming = Some(Box::new(Upcoming {
            shares: vec![ahead.clone()],
            stranded: 2,
        }));
        let v = view(&sliding(100), Some(&l), 1_009_000, 3);
        assert_eq!(v.leases.len(), 2);
        assert_eq!(v.next_leases.len(), 1);
        assert_eq!((v.next_leases[0].node, v.next_leases[0].granted), (3, 25));
        // Once window 100 has ended, they are the current window's leases.
        let v = view(&sliding(100), Some(&l), 1_011_000, 3);
        assert_eq!((v.window_start, v.count, v.previous), (1010, 0, 42));
        assert_eq!((v.stranded, v.granted), (2, 27));
        assert_eq!(v.leases.len(), 1);
        assert_eq!((v.leases[0].node, v.leases[0].granted), (3, 25));
        assert!(v.next_leases.is_empty());
    }

    #[test]
    fn an_ended_window_rolls_and_no_state_is_an_empty_window() {
        // The ledger still holds window 99; now is in window 100.
        let v = view(&sliding(100), Some(&ledger(99, 42, 20)), 1_005_000, 3);
        assert_eq!((v.window_start, v.count, v.previous), (1000, 0, 42));
        assert_eq!((v.stranded, v.granted), (0, 0));
        assert!(v.leases.is_empty());
        assert_eq!(v.remaining, 100 - 21);
        // Two windows later nothing weighs.
        let v = view(&sliding(100), Some(&ledger(98, 42, 20)), 1_005_000, 3);
        assert_eq!((v.count, v.previous, v.remaining), (0, 0, 100));
        let v = view(&sliding(100), None, 1_005_000, 3);
        assert_eq!((v.window_start, v.window_end), (1000, 1010));
        assert_eq!(
            (v.count, v.previous, v.granted, v.remaining),
            (0, 0, 0, 100)
        );
        assert!(v.leases.is_empty());
    }

    #[test]
    fn a_token_bucket_shows_its_level() {
        let p = Policy {
            algorithm: RateLimitAlgorithm::TokenBucket,
            burst: Some(30),
            ..sliding(10)
        };
        let mut l = ledger(100, 4, 0);
        l.terms.algo = Algo::TokenBucket { burst: 30 };
        l.bucket_milli = 12_900;
        assert_eq!(view(&p, Some(&l), 1_001_000, 3).remaining, 12);
        assert_eq!(view(&p, None, 1_001_000, 3).remaining, 30);
        let shown = serde_json::to_value(view(&p, None, 1_001_000, 3)).expect("json");
        assert_eq!(shown["burst"], 30);
        assert_eq!(shown["algorithm"], "token_bucket");
    }

    /// How actix hands the `{key:.*}` segment over, and that decoding it once
    /// more gives the key back exactly (`%2F` and `%25` stay encoded in the path).
    #[actix_rt::test]
    async fn keys_with_slashes_and_escapes_survive_the_router() {
        use actix_web::{test, App};
        let app = test::init_service(App::new().route(
            "/admin/rate-limits/{scope}/{key:.*}",
            web::get().to(|req: HttpRequest| async move {
                let (_, key) = target(&req).map_err(|e| e.to_string()).expect("target");
                HttpResponse::Ok().body(key)
            }),
        ))
        .await;
        for (uri, want) in [
            ("/admin/rate-limits/user/alice", "alice"),
            ("/admin/rate-limits/user/a%2Fb%25c%20d", "a/b%c d"),
            ("/admin/rate-limits/user/a%252F", "a%2F"),
            (
                "/admin/rate-limits/endpoint//api/v1/search",
                "/api/v1/search",
            ),
            ("/admin/rate-limits/endpoint/api/v1/*", "/api/v1/*"),
            (
                "/admin/rate-limits/endpoint/%2Fapi%2Fv1%2Fsearch",
                "/api/v1/search",
            ),
            ("/admin/rate-limits/ip/::1", "::1"),
        ] {
            let req = test::TestRequest::get().uri(uri).to_request();
            let body = test::call_and_read_body(&app, req).await;
            assert_eq!(String::from_utf8_lossy(&body), want, "{uri}");
        }
    }
}
