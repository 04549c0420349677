//! The gateway config as operators write it and as the cluster replicates it.
//!
//! These types are deliberately close to the YAML: durations, URLs and keywords
//! (`auth`, `scope`, `algorithm`, `alg`) stay text here so that validation can
//! report every bad value at once (see [`crate::Gateway::compile`]); the compiled
//! forms in [`crate::gateway`] hold the parsed values. Unknown keys are not silently
//! dropped: the loaders in [`crate::load`] report each one as an error.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The replicated part of the config: what `GET/PUT /admin/config` exchanges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewaySpec {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSpec>,
    #[serde(default)]
    pub auth: AuthSpec,
    /// Webhook delivery settings (`webhooks:`); absent means all defaults.
    #[serde(default, skip_serializing_if = "WebhooksSpec::is_default")]
    pub webhooks: WebhooksSpec,
}

/// `webhooks:`: what subscriber URLs may point at and how large an event may be.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhooksSpec {
    /// Allow loopback and private-range subscriber URLs (tests, labs); default
    /// false. Link-local and cloud-metadata addresses are refused regardless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_private_targets: Option<bool>,
    /// Largest event body accepted by `POST /admin/events` (`256KiB`, `1MiB`,
    /// plain bytes); default 256 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<String>,
}

impl WebhooksSpec {
    pub fn is_default(&self) -> bool {
        *self == WebhooksSpec::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Base URLs, e.g. `http://127.0.0.1:9001`; a path part is prepended to requests.
    #[serde(default)]
    pub upstreams: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
    /// Duration text (`30s`); default 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// Lets `upstreams` point at link-local or cloud-metadata addresses (refused
    /// by default: an admin slip there would proxy instance credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_link_local: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastRequests,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreakerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_after: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_after: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Defaults to `path`; required to tell apart two routes on one path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `/exact`, `/users/:id` (param) or `/static/*` (trailing wildcard).
    pub path: String,
    pub service: String,
    /// Empty or absent: every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Overrides the service's timeout (duration text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `none | jwt | api_key | any`; default `any`: a route is public only when it
    /// says `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Pass the caller's `Authorization` and `X-API-Key` headers on to the
    /// upstream; default false (the gateway consumed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_credentials: Option<bool>,
    /// Accept request paths containing `%2F` or `%5C` (an encoded `/` or `\`);
    /// default false: such a request is refused with 400 before routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_encoded_slashes: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSpec {
    /// Identifies the policy: in `RateLimit-Policy` and in the counts (renaming a
    /// policy starts its counts afresh). Unique; default `{scope}:{endpoint}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A route path, a literal request path, or a prefix ending in `/*`.
    pub endpoint: String,
    pub limit: u64,
    /// Duration text.
    pub window: String,
    /// `user | ip | endpoint | client`.
    pub scope: String,
    /// `sliding_window` (default) or `token_bucket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Token bucket only: the bucket size (default `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JwtSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<String>,
    /// The claim holding the caller's roles; default `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_claim: Option<String>,
    /// Longest bearer token accepted, in bytes; default 8192.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_bytes: Option<u64>,
    #[serde(default)]
    pub keys: Vec<JwtKeySpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JwtKeySpec {
    pub kid: String,
    /// `RS256 | RS384 | RS512 | ES256 | HS256 | HS384 | HS512`.
    pub alg: String,
    /// RS* and ES256: PEM file of the public key, relative to the config directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    /// RS* and ES256: inline PEM (what the API carries once a file has been read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// HS*: shared secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OAuthSpec {
    /// `iss` of the tokens the cluster issues; default `sluice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Duration text; default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl: Option<String>,
    /// `N/sec | N/min | N/hour`, or `unlimited`; default `10/min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_limit: Option<String>,
}
