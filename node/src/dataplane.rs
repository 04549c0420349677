//! The data plane's view of the cluster: one immutable [`DataPlaneState`] behind an
//! `ArcSwap` in [`DataPlane`], rebuilt from the replicated state after each apply
//! and swapped whole. The request path does one `ArcSwap` load per request and
//! never locks, waits on Raft, disk, or another node.
//!
//! The state is made of parts, one per domain of the replicated state, each behind
//! its own `Arc` and rebuilt only when its domain changed (the state machine keeps
//! unchanged domains behind the same `Arc`, so "did it change" is a pointer
//! comparison):
//! - [`GatewayPart`]: the compiled config (route table, auth settings, rate-limit
//!   rules with their limiter policies), the upstream pools with their actors,
//!   per-route histograms;
//! - [`CredentialIndex`]: API keys by hash and the clients they belong to;
//! - [`ClusterKeys`]: the cluster's own token signing keys (and the JWKS).
//!
//! High-churn domains (rate-limiter counts, webhook queues) do not belong here:
//! their owners are actors fed by the state machine's deltas
//! (`RaftNode::take_deltas`), and the request path asks those actors.

use crate::auth::cluster::ClusterKeys;
use crate::auth::jwt::ConfigKeys;
use crate::auth::limiter::LocalLimiter;
use crate::limits::LimitPolicy;
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use cluster_config::{Gateway, GatewaySpec, Origins, Route, TrustedProxies};
use http::{Method, StatusCode};
use sluice_actors::limiter::{ClientLimiters, Policy};
use sluice_actors::upstream::{TargetHealth, UpstreamPool};
use sluice_actors::{BreakerState, UpstreamEvents, UpstreamHandle};
use sluice_raft::command::SecretHash;
use sluice_raft::state::Credentials;
use sluice_raft::Published;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::{error, info};

/// Everything a request needs to know, as one value.
pub struct DataPlaneState {
    /// The Raft log index this state reflects (0 while a fresh node serves its own
    /// files before the cluster has a config).
    pub applied_index: u64,
    pub gateway: Arc<GatewayPart>,
    pub credentials: Arc<CredentialIndex>,
    pub cluster_keys: Arc<ClusterKeys>,
}

/// A route's latency histograms, resolved once per build so the request path
/// skips the label hashing and locking of `with_label_values`.
pub struct RouteMetrics {
    pub requests: RouteRequests,
    pub request_duration: prometheus::Histogram,
    pub upstream_duration: prometheus::Histogram,
    pub overhead: prometheus::Histogram,
}

/// `gateway_requests_total` of one route: its children by method and status,
/// kept as they are first used, so counting a request compares two small values
/// instead of hashing three label strings in the metric family.
pub struct RouteRequests {
    family: prometheus::IntCounterVec,
    route: String,
    seen: std::sync::RwLock<Vec<(Method, StatusCode, prometheus::IntCounter)>>,
}

/// Children kept per route; past it (a client spraying made-up methods) the
/// family is asked each time.
const ROUTE_REQUESTS_KEPT: usize = 64;

impl RouteRequests {
    fn new(family: &prometheus::IntCounterVec, route: &str) -> RouteRequests {
        RouteRequests {
            family: family.clone(),
            route: route.to_owned(),
            seen: Default::default(),
        }
    }

    pub fn inc(&self, method: &Method, status: StatusCode) {
        let found = |seen: &[(Method, StatusCode, prometheus::IntCounter)]| {
            seen.iter()
                .find(|(m, s, _)| s == &status && m == method)
                .map(|(_, _, c)| c.inc())
                .is_some()
        };
        if found(&self.seen.read().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let counter =
            self.family
                .with_label_values(&[method.as_str(), &self.route, status.as_str()]);
        counter.inc();
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() < ROUTE_REQUESTS_KEPT
            && !seen.iter().any(|(m, s, _)| s == &status && m == method)
        {
            seen.push((method.clone(), status, counter));
        }
    }
}

/// Hashes a route's address for [`GatewayPart::route_metrics`], looked up twice
/// per request: one multiplication (Fibonacci hashing) instead of SipHash, which
/// defends against keys an attacker picks; these are our own pointers.
#[derive(Clone, Copy, Default)]
struct ByAddress;

impl std::hash::BuildHasher for ByAddress {
    type Hasher = AddressHasher;
    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(0)
    }
}

struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The compiled gateway config and what hangs off it.
pub struct GatewayPart {
    /// Applied index at which this part was (re)built.
    pub version: u64,
    /// The replicated spec it was compiled from; `None` when it came from this
    /// node's files (a fresh node serving before the cluster has a config).
    source: Option<Arc<GatewaySpec>>,
    pub config: Gateway,
    /// Keyed by the address of the route's `Arc` in `config.routes`.
    route_metrics: HashMap<usize, RouteMetrics, ByAddress>,
    /// Service name -> its targets, their state and the actor that owns it (the
    /// operator's keys, looked up on every request: a fast hasher does).
    pub pools: HashMap<String, UpstreamHandle, foldhash::fast::RandomState>,
    /// `auth.jwt.keys`, parsed once for this config.
    pub auth_keys: ConfigKeys,
    /// `rate_limits`, in config order, each with its limiter policy.
    pub limits: Vec<LimitPolicy>,
    /// The per-client limit of `POST /oauth/token`; `None` when unlimited.
    pub token_policy: Option<Policy>,
}

/// What building a [`GatewayPart`] needs besides the config.
pub struct PartDeps<'a> {
    pub events: &'a Arc<dyn UpstreamEvents>,
    pub metrics: &'a Metrics,
}

impl GatewayPart {
    /// Builds the part for `config`. A service whose targets are unchanged keeps its
    /// pool and actor (so health, in-flight counts and an open breaker survive a
    /// change), updated in place if anything else changed; others get new ones.
    pub fn build(
        config: Gateway,
        source: Option<Arc<GatewaySpec>>,
        version: u64,
        previous: Option<&GatewayPart>,
        deps: &PartDeps<'_>,
    ) -> GatewayPart {
        let route_metrics = config
            .routes
            .routes()
            .iter()
            .map(|r| {
                let rm = RouteMetrics {
                    requests: RouteRequests::new(&deps.metrics.requests_total, &r.template),
                    request_duration: deps
                        .metrics
                        .request_duration
                        .with_label_values(&[&r.template]),
                    upstream_duration: deps
                        .metrics
                        .upstream_duration
                        .with_label_values(&[&r.service, &r.template]),
                    overhead: deps.metrics.overhead.with_label_values(&[&r.template]),
                };
                (Arc::as_ptr(r) as usize, rm)
            })
            .collect();
        let pools = config
            .services
            .iter()
            .map(|(name, svc)| {
                let kept = previous
                    .and_then(|p| p.pools.get(name))
                    .filter(|h| h.pool.can_update_to(svc))
                    .cloned();
                let handle = match kept {
                    Some(h) => {
                        if *h.pool.service() != **svc {
                            h.reconfigure(svc.clone());
                        }
                        h
                    }
                    None => UpstreamHandle::start(
                        Arc::new(UpstreamPool::new(svc.clone())),
                        deps.events.clone(),
                    ),
                };
                (name.clone(), handle)
            })
            .collect();
        let auth_keys = ConfigKeys::build(config.jwt.as_ref());
        let limits = config
            .rate_limits
            .iter()
            .map(LimitPolicy::compile)
            .collect();
        let token_policy = crate::limits::token_endpoint_policy(&config.oauth);
        GatewayPart {
            version,
            source,
            config,
            route_metrics,
            pools,
            auth_keys,
            limits,
            token_policy,
        }
    }

    /// The latency histograms of `route` (a route of this part).
    pub fn route_metrics(&self, route: &Arc<Route>) -> Option<&RouteMetrics> {
        self.route_metrics.get(&(Arc::as_ptr(route) as usize))
    }

    /// Whether this part was built from exactly `spec`.
    fn built_from(&self, spec: &Arc<GatewaySpec>) -> bool {
        self.source
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, spec) || **s == **spec)
    }

    /// Services, routes and rate-limit policies: the part's size.
    pub fn entries(&self) -> usize {
        self.config.services.len()
            + self.config.routes.routes().len()
            + self.config.rate_limits.len()
    }
}

/// An active API key, resolved to what authentication needs.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub key_id: String,
    pub client_id: String,
}

/// What the data plane knows of an API client (never its secret hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEntry {
    /// SHA-256 of the client secret (the token endpoint checks it).
    pub secret_hash: SecretHash,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

/// The credentials the request path looks up: active API keys by SHA-256 of the
/// key, and clients by id. OAuth signing keys join it with the auth issue.
pub struct CredentialIndex {
    /// Applied index at which this part was (re)built.
    pub version: u64,
    source: Arc<Credentials>,
    keys: HashMap<SecretHash, KeyEntry>,
    /// Revoked keys, so a refusal can say `revoked` rather than `unknown_key`.
    revoked: std::collections::HashSet<SecretHash>,
    clients: HashMap<String, ClientEntry>,
    /// Keys in the replicated state, revoked ones included (for the debug view).
    keys_total: usize,
}

impl CredentialIndex {
    pub fn build(source: Arc<Credentials>, version: u64) -> CredentialIndex {
        let keys = source
            .api_keys
            .values()
            .filter(|k| !k.revoked && source.clients.contains_key(&k.client_id))
            .map(|k| {
                let entry = KeyEntry {
                    key_id: k.id.clone(),
                    client_id: k.client_id.clone(),
                };
                (k.key_hash.clone(), entry)
            })
            .collect();
        let revoked = source
            .api_keys
            .values()
            .filter(|k| k.revoked)
            .map(|k| k.key_hash.clone())
            .collect();
        let clients = source
            .clients
            .values()
            .map(|c| {
                let entry = ClientEntry {
                    secret_hash: c.secret_hash.clone(),
                    name: c.name.clone(),
                    roles: c.roles.clone(),
                    scopes: c.scopes.clone(),
                };
                (c.id.clone(), entry)
            })
            .collect();
        CredentialIndex {
            version,
            keys_total: source.api_keys.len(),
            source,
            keys,
            revoked,
            clients,
        }
    }

    /// The active key `presented` is, if any. The map is keyed by the key's SHA-256,
    /// so the lookup never compares the secret itself.
    pub fn api_key(&self, presented: &[u8]) -> Option<&KeyEntry> {
        self.keys.get(&SecretHash::of(presented))
    }

    pub fn is_revoked(&self, presented: &[u8]) -> bool {
        self.revoked.contains(&SecretHash::of(presented))
    }

    pub fn client(&self, id: &str) -> Option<&ClientEntry> {
        self.clients.get(id)
    }

    fn built_from(&self, source: &Arc<Credentials>) -> bool {
        Arc::ptr_eq(&self.source, source) || *self.source == **source
    }

    pub fn active_keys(&self) -> usize {
        self.keys.len()
    }

    pub fn keys_total(&self) -> usize {
        self.keys_total
    }

    pub fn clients_total(&self) -> usize {
        self.clients.len()
    }
}

/// Which parts a rebuild replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub gateway: bool,
    pub credentials: bool,
    pub cluster_keys: bool,
}

impl DataPlaneState {
    /// The state after `published`: each part whose domain changed is rebuilt, the
    /// others are shared with `self`. A replicated config that does not compile
    /// (cannot happen with one binary: apply validated it) keeps the current part.
    pub fn next(&self, published: &Published, deps: &PartDeps<'_>) -> (DataPlaneState, Rebuilt) {
        let version = published.version;
        let state = &published.state;
        let mut rebuilt = Rebuilt::default();
        let gateway = if state.seeded && !self.gateway.built_from(&state.gateway) {
            match compile(&state.gateway) {
                Ok(config) => {
                    rebuilt.gateway = true;
                    let part = GatewayPart::build(
                        config,
                        Some(state.gateway.clone()),
                        version,
                        Some(&self.gateway),
                        deps,
                    );
                    Arc::new(part)
                }
                Err(e) => {
                    error!(version, error = %e, "replicated config does not compile; keeping the current one");
                    self.gateway.clone()
                }
            }
        } else {
            self.gateway.clone()
        };
        let credentials = if self.credentials.built_from(&state.credentials) {
            self.credentials.clone()
        } else {
            rebuilt.credentials = true;
            Arc::new(CredentialIndex::build(state.credentials.clone(), version))
        };
        // Issuer, leeway and token lifetime come from the gateway config.
        let cluster_keys = if rebuilt.gateway || !self.cluster_keys.built_from(&state.signing) {
            rebuilt.cluster_keys = true;
            Arc::new(ClusterKeys::build(
                state.signing.clone(),
                &gateway.config,
                version,
            ))
        } else {
            self.cluster_keys.clone()
        };
        let next = DataPlaneState {
            applied_index: version.max(self.applied_index),
            gateway,
            credentials,
            cluster_keys,
        };
        (next, rebuilt)
    }
}

fn compile(spec: &GatewaySpec) -> Result<Gateway, cluster_config::ConfigErrors> {
    Gateway::compile(spec.clone(), &Origins::default(), None)
}

/// Shared by every worker thread and the control tasks: the current state plus
/// what does not change with it (metrics, drain flag, node facts).
pub struct DataPlane {
    pub state: ArcSwap<DataPlaneState>,
    pub events: Arc<dyn UpstreamEvents>,
    pub metrics: Metrics,
    /// Set on SIGTERM: `/ready` turns 503 so load balancers stop sending traffic.
    pub draining: AtomicBool,
    /// Why this node's Raft core stopped for good (a storage failure, a panic),
    /// once it has: the node keeps serving with the state it last applied, but
    /// it gets no config, key or limit change any more, so `/ready` is 503
    /// until it is restarted.
    pub consensus_stopped: std::sync::OnceLock<String>,
    /// True once this node's YAML gateway config has been offered to the cluster
    /// (seeded, or found already there), or at once on a joining node, which
    /// seeds nothing. Admin writes wait for it ([`crate::admin::Admin`]).
    pub seed_settled: tokio::sync::watch::Sender<bool>,
    pub started: Instant,
    pub node_id: u64,
    /// Whether the data plane speaks TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
    /// Per-request metrics on (default); off only to measure what they cost.
    pub request_metrics: bool,
    /// The node's rate limiter: every `rate_limits` policy and the token
    /// endpoint's per-client limit count here (built once, in
    /// `cluster::client_limiters`).
    pub limiters: ClientLimiters,
    /// `node.trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Failed client authentications at the token endpoint, per client address,
    /// on this node only (a guessing defence needs no cluster agreement).
    pub failed_logins: LocalLimiter,
}

impl DataPlane {
    /// The data plane a node starts with: the replicated state when the cluster has
    /// a config, else `files` (a fresh node serves at once).
    pub fn start(
        published: &Published,
        files: &Gateway,
        events: Arc<dyn UpstreamEvents>,
        metrics: Metrics,
        limiters: ClientLimiters,
        node_id: u64,
        tls: bool,
    ) -> DataPlane {
        let deps = PartDeps {
            events: &events,
            metrics: &metrics,
        };
        let version = published.version;
        let replicated = published
            .state
            .seeded
            .then(|| compile(&published.state.gateway))
            .and_then(|compiled| {
                compiled
                    .map_err(|e| error!(error = %e, "replicated config does not compile; serving the files"))
                    .ok()
            });
        let gateway = match replicated {
            Some(config) => GatewayPart::build(
                config,
                Some(published.state.gateway.clone()),
                version,
                None,
                &deps,
            ),
            None => GatewayPart::build(files.clone(), None, version, None, &deps),
        };
        let cluster_keys =
            ClusterKeys::build(published.state.signing.clone(), &gateway.config, version);
        let state = DataPlaneState {
            applied_index: version,
            gateway: Arc::new(gateway),
            credentials: Arc::new(CredentialIndex::build(
                published.state.credentials.clone(),
                version,
            )),
            cluster_keys: Arc::new(cluster_keys),
        };
        metrics.config_version.set(version as i64);
        let plane = DataPlane {
            state: ArcSwap::from_pointee(state),
            events,
            metrics,
            draining: AtomicBool::new(false),
            consensus_stopped: std::sync::OnceLock::new(),
            seed_settled: tokio::sync::watch::Sender::new(false),
            started: Instant::now(),
            node_id,
            tls,
            request_metrics: true,
            limiters,
            trusted_proxies: TrustedProxies::default(),
            failed_logins: LocalLimiter::default(),
        };
        plane.publish_health();
        plane
    }

    /// Brings the state up to `published`, rebuilding only the parts that changed;
    /// in-flight requests finish on the state they started with.
    pub fn apply(&self, published: &Published) -> Rebuilt {
        let deps = PartDeps {
            events: &self.events,
            metrics: &self.metrics,
        };
        let current = self.state.load();
        let (next, rebuilt) = current.next(published, &deps);
        let routes = next.gateway.config.routes.routes().len();
        self.state.store(Arc::new(next));
        self.metrics.config_version.set(published.version as i64);
        if rebuilt.gateway {
            self.publish_health();
            info!(
                version = published.version,
                routes, "replicated config applied to the data plane"
            );
        }
        rebuilt
    }

    /// Mirrors every target's rotation state into `gateway_upstream_health`;
    /// targets of removed services disappear from the metric.
    pub fn publish_health(&self) {
        let state = self.state.load();
        let gauge = &self.metrics.upstream_health;
        gauge.reset();
        self.metrics.breaker_state.reset();
        for (name, handle) in &state.gateway.pools {
            let breaker: BreakerState = handle.pool.breaker_state();
            self.metrics
                .breaker_state
                .with_label_values(&[name])
                .set(breaker as i64);
            for t in handle.pool.targets() {
                let up = i64::from(t.health() != TargetHealth::Unhealthy);
                gauge.with_label_values(&[name, &t.upstream.url]).set(up);
            }
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_raft::command::{ApiClient, ApiKey};
    use sluice_raft::state::{compile_validator, ApplyCtx};
    use sluice_raft::{ClusterState, Command};

    fn spec(yaml_routes: &[&str]) -> GatewaySpec {
        let mut spec = GatewaySpec::default();
        spec.services.insert(
            "users".into(),
            cluster_config::schema::ServiceSpec {
                upstreams: vec!["http://127.0.0.1:9".into()],
                ..Default::default()
            },
        );
        for path in yaml_routes {
            spec.routes.push(cluster_config::schema::RouteSpec {
                path: (*path).into(),
                service: "users".into(),
                ..Default::default()
            });
        }
        spec
    }

    /// Applies `command` to `state` the way every node does, and publishes it.
    fn applied(state: &mut ClusterState, version: u64, command: Command) -> Published {
        let v = compile_validator();
        let answer = state.apply(&command, &mut ApplyCtx::new(&v));
        assert_eq!(answer, sluice_raft::Response::Applied, "{command:?}");
        Published {
            state: state.clone(),
            version,
        }
    }

    #[actix_rt::test]
    async fn each_part_is_rebuilt_only_when_its_domain_changed() {
        let metrics = Metrics::new().expect("metrics");
        let events: Arc<dyn UpstreamEvents> = Arc::new(metrics.events());
        let mut state = ClusterState::default();
        let first = applied(
            &mut state,
            1,
            Command::ReplaceGateway {
                spec: spec(&["/users"]),
            },
        );
        let files = Gateway::compile(GatewaySpec::default(), &Origins::default(), None)
            .expect("empty config compiles");
        let limiters = ClientLimiters::default();
        let plane = DataPlane::start(&first, &files, events, metrics, limiters, 1, false);
        let before = plane.state.load_full();
        assert_eq!(before.gateway.config.routes.routes().len(), 1);

        // A credentials change: a new key index, the very same route table.
        applied(
            &mut state,
            2,
            Command::PutClient {
                client: ApiClient {
                    id: "c1".into(),
                    name: "one".into(),
                    roles: vec!["reader".into()],
                    scopes: vec![],
                    secret_hash: SecretHash::of(b"secret"),
                },
            },
        );
        let published = applied(
            &mut state,
            3,
            Command::PutApiKey {
                key: ApiKey {
                    id: "k1".into(),
                    client_id: "c1".into(),
                    key_hash: SecretHash::of(b"sk_test"),
                    revoked: false,
                },
            },
        );
        let rebuilt = plane.apply(&published);
        assert_eq!(
            rebuilt,
            Rebuilt {
                gateway: false,
                credentials: true,
                cluster_keys: false,
            }
        );
        let after_key = plane.state.load_full();
        assert!(Arc::ptr_eq(&before.gateway, &after_key.gateway));
        assert_eq!(after_key.applied_index, 3);
        assert_eq!(after_key.credentials.version, 3);
        let key = after_key
            .credentials
            .api_key(b"sk_test")
            .expect("key indexed");
        assert_eq!(key.client_id, "c1");
        assert_eq!(
            after_key.credentials.client("c1").map(|c| c.roles.clone()),
            Some(vec!["reader".to_owned()])
        );
        assert!(after_key.credentials.api_key(b"sk_other").is_none());

        // A route change: a new route table, the very same key index.
        let published = applied(
            &mut state,
            4,
            Command::ReplaceGateway {
                spec: spec(&["/users", "/orders"]),
            },
        );
        let rebuilt = plane.apply(&published);
        assert_eq!(
            rebuilt,
            Rebuilt {
                gateway: true,
                credentials: false,
                cluster_keys: true,
            }
        );
        let after_route = plane.state.load_full();
        assert!(Arc::ptr_eq(
            &after_key.credentials,
            &after_route.credentials
        ));
        assert_eq!(after_route.gateway.version, 4);
        assert_eq!(after_route.gateway.config.routes.routes().len(), 2);
        // The unchanged service kept its pool (and so its actor and breaker).
        assert!(Arc::ptr_eq(
            &after_key.gateway.pools["users"].pool,
            &after_route.gateway.pools["users"].pool
        ));

        // A revoked key leaves the index on the next apply.
        let published = applied(&mut state, 5, Command::RevokeApiKey { id: "k1".into() });
        plane.apply(&published);
        let revoked = plane.state.load_full();
        assert!(revoked.credentials.api_key(b"sk_test").is_none());
        assert_eq!(revoked.credentials.keys_total(), 1);
        assert_eq!(revoked.credentials.active_keys(), 0);
    }
}
