//! The rate-limit step: the limiter policies compiled from `rate_limits` (once per
//! config version, kept in the gateway part beside the rules they came from), the
//! key a request is counted under, and the decision over every policy that
//! applies. Free of actix types like the rest of `phases`; the only state it
//! touches is the node's [`ClientLimiters`], which answers from memory.
//!
//! Keys are namespaced by the scope they were taken from (`user:alice`,
//! `client:c_1`, `ip:203.0.113.9`, `endpoint:/api/v1/search`), so a user named
//! like an address never shares a counter with that address. A `user` or `client`
//! policy on a request without that identity (a public route, a JWT without a
//! client) counts the request under its client address instead: the `ip` scope.

use crate::phases::{Identity, LimitDecision, RequestHead};
use cluster_config::{
    OAuthConfig, RateLimit, RateLimitAlgorithm, RateLimitEndpoint, RateLimitScope, Route,
    TOKEN_ENDPOINT_POLICY,
};
use sluice_actors::limiter::{Algorithm, ClientLimiters, Policy, Quota, Verdict};
use std::sync::Arc;
use std::time::Duration;

/// A `rate_limits` entry and the limiter policy compiled from it.
#[derive(Debug, Clone)]
pub struct LimitPolicy {
    pub rule: RateLimit,
    pub policy: Policy,
}

impl LimitPolicy {
    pub fn compile(rule: &RateLimit) -> LimitPolicy {
        let algorithm = match rule.algorithm {
            RateLimitAlgorithm::SlidingWindow => Algorithm::SlidingWindow,
            RateLimitAlgorithm::TokenBucket => Algorithm::TokenBucket { burst: rule.burst },
        };
        LimitPolicy {
            rule: rule.clone(),
            policy: Policy {
                name: Arc::from(rule.name.as_str()),
                limit: rule.limit,
                window: rule.window,
                algorithm,
            },
        }
    }
}

/// The per-client limit of `POST /oauth/token` (`auth.oauth.token_endpoint_limit`)
/// as a limiter policy, so it is counted like any other (cluster-wide once the
/// limiter is); `None` when the endpoint is `unlimited`. Its name is reserved:
/// no `rate_limits` entry can share its counts.
pub fn token_endpoint_policy(oauth: &OAuthConfig) -> Option<Policy> {
    oauth.token_endpoint_limit.map(|quota| Policy {
        name: Arc::from(TOKEN_ENDPOINT_POLICY),
        limit: quota.count,
        window: quota.per,
        algorithm: Algorithm::SlidingWindow,
    })
}

/// The limiter key of a client under the token endpoint's policy.
pub fn token_endpoint_key(client_id: &str) -> String {
    format!("{}:{client_id}", RateLimitScope::Client.as_str())
}

/// Asks `limiters` about every policy of `policies` that applies to this request.
/// Every one must admit it: on the first refusal, the policies that had admitted
/// it are given back (`release`) and the refusing one is reported. Otherwise the
/// one with the fewest requests left is (the first of them on a tie). `None` when
/// no policy applies.
pub fn decide(
    policies: &[LimitPolicy],
    limiters: &ClientLimiters,
    route: &Route,
    identity: Option<&Identity>,
    head: &RequestHead<'_>,
) -> Option<LimitDecision> {
    let mut client_ip: Option<String> = None;
    let mut admitted: Vec<(&Policy, String)> = Vec::new();
    let mut closest: Option<LimitDecision> = None;
    for p in policies
        .iter()
        .filter(|p| p.rule.applies_to(route, head.path))
    {
        let (scope, key) = key(&p.rule, identity, || {
            client_ip
                .get_or_insert_with(|| {
                    head.client_addr()
                        .map_or_else(|| "unknown".to_owned(), |a| a.to_string())
                })
                .clone()
        });
        match limiters.acquire(&p.policy, &key) {
            Verdict::Admitted(quota) => {
                let closer = match &closest {
                    Some(c) => quota.remaining < c.remaining,
                    None => true,
                };
                if closer {
                    closest = Some(decision(&p.policy, scope, quota, None));
                }
                admitted.push((&p.policy, key));
            }
            Verdict::Refused { quota, retry_after } => {
                for (policy, key) in &admitted {
                    limiters.release(policy, key);
                }
                return Some(decision(&p.policy, scope, quota, Some(retry_after)));
            }
        }
    }
    closest
}

/// The scope a request is counted under for `rule`, and its key. `client_ip` is
/// asked only when the scope is `ip`, or a `user`/`client` key is missing.
fn key(
    rule: &RateLimit,
    identity: Option<&Identity>,
    client_ip: impl FnOnce() -> String,
) -> (RateLimitScope, String) {
    let id = match rule.scope {
        RateLimitScope::User => identity.map(|i| i.user_id.as_str()),
        RateLimitScope::Client => identity.and_then(|i| i.client_id.as_deref()),
        RateLimitScope::Endpoint => {
            let endpoint = match &rule.endpoint {
                RateLimitEndpoint::Route(path) | RateLimitEndpoint::Path(path) => path.clone(),
                RateLimitEndpoint::Prefix(prefix) => format!("{prefix}*"),
            };
            return (RateLimitScope::Endpoint, format!("endpoint:{endpoint}"));
        }
        RateLimitScope::Ip => None,
    };
    match id.filter(|id| !id.is_empty()) {
        Some(id) => (rule.scope, format!("{}:{id}", rule.scope.as_str())),
        None => (RateLimitScope::Ip, format!("ip:{}", client_ip())),
    }
}

fn decision(
    policy: &Policy,
    scope: RateLimitScope,
    quota: Quota,
    retry_after: Option<Duration>,
) -> LimitDecision {
    LimitDecision {
        policy: policy.name.clone(),
        scope,
        limit: quota.limit,
        remaining: quota.remaining,
        window_secs: ceil_secs(policy.window),
        reset_secs: ceil_secs(quota.reset),
        // The window's end as the limiter computed it (a whole second for
        // windows of whole seconds), not `now + reset` read off a second clock.
        reset_at: ceil_secs(Duration::from_millis(quota.reset_at_ms)),
        retry_after: retry_after.map(|d| ceil_secs(d).max(1)),
    }
}

/// Whole seconds, rounded up: a client told to wait that long is not early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `RateLimit-Policy: "search";q=100;w=60` (draft-ietf-httpapi-ratelimit-headers:
/// the policy's name as an RFC 8941 string, its quota and window in seconds).
/// Validation keeps names free of `"` and `\`, so the name needs no escaping.
pub fn policy_header(d: &LimitDecision) -> String {
    format!("\"{}\";q={};w={}", d.policy, d.limit, d.window_secs)
}

/// `RateLimit: "search";r=37;t=12`: requests left and seconds until the reset.
pub fn ratelimit_header(d: &LimitDecision) -> String {
    format!("\"{}\";r={};t={}", d.policy, d.remaining, d.reset_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::HeaderLookup;
    use cluster_config::{AuthMode, Method, TrustedProxies};
    use std::net::IpAddr;

    struct NoHeaders;

    impl HeaderLookup for NoHeaders {
        fn get_str(&self, _: &str) -> Option<&str> {
            None
        }
    }

    fn route(template: &str) -> Route {
        Route {
            id: template.into(),
            template: template.into(),
            methods: vec![],
            service: "s".into(),
            timeout: Duration::from_secs(1),
            auth: AuthMode::Any,
            roles: vec![],
            forward_credentials: false,
            allow_encoded_slashes: false,
        }
    }

    fn rule(name: &str, endpoint: &str, limit: u64, scope: RateLimitScope) -> LimitPolicy {
        let endpoint = match endpoint.strip_suffix('*') {
            Some(prefix) => RateLimitEndpoint::Prefix(prefix.into()),
            None => RateLimitEndpoint::Route(endpoint.into()),
        };
        LimitPolicy::compile(&RateLimit {
            name: name.into(),
            endpoint,
            limit,
            window: Duration::from_secs(60),
            scope,
            algorithm: RateLimitAlgorithm::SlidingWindow,
            burst: limit,
        })
    }

    fn user(id: &str, client: Option<&str>) -> Identity {
        Identity {
            user_id: id.into(),
            roles: vec![],
            client_id: client.map(str::to_owned),
        }
    }

    /// Decides one request for `path` on route `/r` from `peer`.
    fn ask(
        policies: &[LimitPolicy],
        limiters: &ClientLimiters,
        identity: Option<&Identity>,
        peer: &str,
    ) -> Option<LimitDecision> {
        let trusted = TrustedProxies::default();
        let head = RequestHead {
            method: &Method::GET,
            path: "/r",
            headers: &NoHeaders,
            peer: Some(peer.parse::<IpAddr>().expect("ip")),
            trusted_proxies: &trusted,
        };
        decide(policies, limiters, &route("/r"), identity, &head)
    }

    #[test]
    fn keys_are_namespaced_by_the_scope_used() {
        let ip = || "10.0.0.1".to_owned();
        let by = |scope, id: Option<&Identity>| key(&rule("p", "/r", 1, scope).rule, id, ip);
        let alice = user("alice", Some("c_1"));
        assert_eq!(
            by(RateLimitScope::User, Some(&alice)),
            (RateLimitScope::User, "user:alice".into())
        );
        assert_eq!(
            by(RateLimitScope::Client, Some(&alice)),
            (RateLimitScope::Client, "client:c_1".into())
        );
        assert_eq!(
            by(RateLimitScope::Ip, Some(&alice)),
            (RateLimitScope::Ip, "ip:10.0.0.1".into())
        );
        // Missing keys fall back to the client address.
        assert_eq!(
            by(RateLimitScope::User, None),
            (RateLimitScope::Ip, "ip:10.0.0.1".into())
        );
        assert_eq!(
            by(RateLimitScope::Client, Some(&user("jwt-subject", None))),
            (RateLimitScope::Ip, "ip:10.0.0.1".into())
        );
        // Everyone shares the endpoint's key.
        assert_eq!(
            by(RateLimitScope::Endpoint, Some(&alice)),
            (RateLimitScope::Endpoint, "endpoint:/r".into())
        );
        let prefix = rule("p", "/api/*", 1, RateLimitScope::Endpoint);
        assert_eq!(key(&prefix.rule, None, ip).1, "endpoint:/api/*".to_owned());
    }

    #[test]
    fn a_user_named_like_an_address_has_a_counter_of_its_own() {
        let limiters = ClientLimiters::default();
        let policies = [rule("p", "/r", 1, RateLimitScope::User)];
        let sneaky = user("10.0.0.1", None);
        let d = ask(&policies, &limiters, Some(&sneaky), "10.0.0.1").expect("applies");
        assert_eq!((d.scope, d.retry_after), (RateLimitScope::User, None));
        // The anonymous caller from that address is counted apart.
        let d = ask(&policies, &limiters, None, "10.0.0.1").expect("applies");
        assert_eq!((d.scope, d.retry_after), (RateLimitScope::Ip, None));
        let d = ask(&policies, &limiters, None, "10.0.0.1").expect("applies");
        assert!(
            d.retry_after.is_some(),
            "the second anonymous request: {d:?}"
        );
    }

    #[test]
    fn policies_that_do_not_apply_are_not_asked() {
        let limiters = ClientLimiters::default();
        let policies = [rule("other", "/elsewhere", 1, RateLimitScope::Ip)];
        assert_eq!(ask(&policies, &limiters, None, "10.0.0.1"), None);
        assert_eq!(limiters.active_keys(), 0);
    }

    #[test]
    fn reports_the_policy_closest_to_refusing() {
        let limiters = ClientLimiters::default();
        let policies = [
            rule("roomy", "/*", 100, RateLimitScope::Ip),
            rule("tight", "/r", 3, RateLimitScope::Ip),
            rule("roomier", "/r", 1000, RateLimitScope::Endpoint),
        ];
        let d = ask(&policies, &limiters, None, "10.0.0.1").expect("applies");
        assert_eq!(
            (&*d.policy, d.limit, d.remaining, d.window_secs),
            ("tight", 3, 2, 60)
        );
        assert_eq!(d.retry_after, None);
        assert!((1..=60).contains(&d.reset_secs), "{d:?}");
        assert_eq!(d.reset_at % 60, 0, "the window's end, epoch-aligned: {d:?}");
        assert_eq!(policy_header(&d), "\"tight\";q=3;w=60");
        assert_eq!(
            ratelimit_header(&d),
            format!("\"tight\";r=2;t={}", d.reset_secs)
        );
    }

    #[test]
    fn a_refusal_gives_back_what_the_earlier_policies_admitted() {
        let limiters = ClientLimiters::default();
        let policies = [
            rule("first", "/r", 10, RateLimitScope::Ip),
            rule("second", "/*", 2, RateLimitScope::User),
        ];
        let alice = user("alice", None);
        for remaining in [1, 0] {
            let d = ask(&policies, &limiters, Some(&alice), "10.0.0.1").expect("applies");
            assert_eq!((&*d.policy, d.remaining), ("second", remaining));
        }
        for _ in 0..5 {
            let d = ask(&policies, &limiters, Some(&alice), "10.0.0.1").expect("applies");
            assert_eq!(&*d.policy, "second", "the refusing policy is reported");
            assert_eq!(d.scope, RateLimitScope::User);
            let retry = d.retry_after.expect("refused");
            assert!((1..=60).contains(&retry), "{d:?}");
        }
        // `first` counted only the two admitted requests: 8 left before this one.
        let d = ask(&policies[..1], &limiters, Some(&alice), "10.0.0.1").expect("applies");
        assert_eq!((&*d.policy, d.remaining), ("first", 7));
    }

    #[test]
    fn the_token_endpoint_policy_follows_its_setting() {
        let mut oauth = OAuthConfig::default();
        let p = token_endpoint_policy(&oauth).expect("limited by default");
        assert_eq!(
            (&*p.name, p.limit, p.window, p.algorithm),
            (
                "oauth-token",
                10,
                Duration::from_secs(60),
                Algorithm::SlidingWindow
            )
        );
        oauth.token_endpoint_limit = None;
        assert_eq!(token_endpoint_policy(&oauth), None);
        assert_eq!(token_endpoint_key("c_1"), "client:c_1");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
    }
}
