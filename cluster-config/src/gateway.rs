//! The compiled gateway config: typed, validated, immutable. The data plane holds
//! one `Arc<Gateway>` behind an `ArcSwap` and replaces it whole on change.

use crate::load::Origins;
use crate::routes::RouteTable;
use crate::schema::{GatewaySpec, LoadBalancing};
use crate::ConfigErrors;
use http::Method;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Default upstream timeout (per service, overridable per route).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Gateway {
    /// The spec this was compiled from (what `GET /admin/config` returns). Each
    /// `auth.jwt.keys[].public_key_file` has been read and replaced by the
    /// `public_key` PEM it named, so the spec can be replicated to nodes that do not
    /// have the file.
    pub spec: GatewaySpec,
    pub services: BTreeMap<String, Arc<Service>>,
    pub routes: RouteTable,
    /// `rate_limits`, in config order (every matching limit applies).
    pub rate_limits: Vec<RateLimit>,
    /// `auth.jwt`; `None` when JWTs are not accepted.
    pub jwt: Option<JwtConfig>,
    /// `auth.oauth`, with defaults when the section is absent.
    pub oauth: OAuthConfig,
}

impl Gateway {
    /// The size limit of a bearer token: `auth.jwt.max_token_bytes`, or its default
    /// when `auth.jwt` is absent (tokens the cluster issued are still accepted).
    pub fn max_token_bytes(&self) -> usize {
        self.jwt
            .as_ref()
            .map_or(DEFAULT_MAX_TOKEN_BYTES, |jwt| jwt.max_token_bytes)
    }

    /// Validates `spec` and compiles it. Every problem is reported, each naming the
    /// file and key path it came from (via `origins`; pass `Origins::default()` for
    /// config that came over the API). `config_dir` resolves relative key files.
    pub fn compile(
        spec: GatewaySpec,
        origins: &Origins,
        config_dir: Option<&std::path::Path>,
    ) -> Result<Gateway, ConfigErrors> {
        crate::load::compile_gateway(spec, origins, config_dir)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub upstreams: Vec<Upstream>,
    pub load_balancing: LoadBalancing,
    pub timeout: Duration,
    pub circuit_breaker: CircuitBreakerConfig,
    pub health_check: Option<HealthCheckConfig>,
}

/// One upstream target, split so the proxy can build request URIs without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// As written, e.g. `http://127.0.0.1:9001` (used as the metric/log label).
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`.
    pub authority: String,
    /// Path prefix without trailing slash; empty when the URL has none.
    pub base_path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    /// Failure ratio in the window that opens the breaker (default 0.5).
    pub error_rate: f64,
    /// Rolling window (default 60 s).
    pub window: Duration,
    /// Fewest requests in the window before the rate counts (default 20).
    pub min_requests: u32,
    /// Consecutive failures that open the breaker regardless of rate (default 5).
    pub consecutive_failures: u32,
    /// Time spent open before half-open (default 30 s).
    pub open_for: Duration,
    /// Half-open successes that close it (default 2).
    pub close_after: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enabled: true,
            error_rate: 0.5,
            window: Duration::from_secs(60),
            min_requests: 20,
            consecutive_failures: 5,
            open_for: Duration::from_secs(30),
            close_after: 2,
        }
    }
}

/// Default time between health-check rounds.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default probe timeout, when half the interval is not shorter.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Must start with `/` (default `/health`).
    pub path: String,
    /// Time between probe rounds (default 5 s).
    pub interval: Duration,
    /// Per probe, always shorter than `interval` (default 2 s, or half the interval
    /// when that is shorter).
    pub timeout: Duration,
    /// Consecutive passes that bring a target back (default 2).
    pub healthy_after: u32,
    /// Consecutive failures that take it out (default 3).
    pub unhealthy_after: u32,
}

keywords! {
    /// `routes[].auth`: which credentials a route accepts.
    pub enum AuthMode {
        /// Public: no credentials checked.
        None = "none",
        Jwt = "jwt",
        ApiKey = "api_key",
        /// A JWT, an issued token or an API key (the default).
        Any = "any",
    }
}

/// A compiled route. `template` is the metric label (never the raw request path).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: String,
    /// The path as configured (`/api/v1/users/:id`).
    pub template: String,
    /// Empty means every method.
    pub methods: Vec<Method>,
    pub service: String,
    /// Route timeout if set, else the service's.
    pub timeout: Duration,
    pub auth: AuthMode,
    pub roles: Vec<String>,
    /// Whether the caller's `Authorization` and `X-API-Key` reach the upstream
    /// (default false: the gateway consumed them, and an upstream that logs headers
    /// must not collect reusable credentials).
    pub forward_credentials: bool,
    /// Whether a request path containing `%2F`/`%5C` (any case) is accepted (default
    /// false: 400). Path normalisation leaves those escapes alone, so an upstream
    /// that decodes them could see a path whose route has another policy.
    pub allow_encoded_slashes: bool,
}

impl Route {
    /// Whether the route takes `method`. A route that takes GET also takes HEAD
    /// (RFC 9110 §9.3.2), as nginx does. A route without `methods` takes every
    /// method but CONNECT and TRACE, which only a route that lists them takes (a
    /// tunnel and a loop-back have no business reaching an upstream by default).
    pub fn allows(&self, method: &Method) -> bool {
        if self.methods.is_empty() {
            return !is_explicit_only(method);
        }
        self.methods
            .iter()
            .any(|m| m == method || (*method == Method::HEAD && *m == Method::GET))
    }
}

/// CONNECT and TRACE: taken only by a route that lists them.
pub fn is_explicit_only(method: &Method) -> bool {
    *method == Method::CONNECT || *method == Method::TRACE
}

/// What a route without `methods` takes, for `Allow` headers.
pub const ANY_METHOD_ALLOW: &[&str] = &["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];

impl Route {
    /// The `Allow` entries of this route.
    pub fn allow_list(&self) -> Vec<&str> {
        if self.methods.is_empty() {
            return ANY_METHOD_ALLOW.to_vec();
        }
        let mut out: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        if self.methods.contains(&Method::GET) {
            out.push("HEAD");
        }
        out
    }
}

/// Shortest `rate_limits[].window`.
pub const MIN_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);
/// Longest `rate_limits[].window`.
pub const MAX_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest `rate_limits[].name`, in characters.
pub const MAX_RATE_LIMIT_NAME: usize = 64;
/// The policy name of the per-client limit on `POST /oauth/token`
/// (`auth.oauth.token_endpoint_limit`); reserved, so no `rate_limits` entry can
/// share its counts.
pub const TOKEN_ENDPOINT_POLICY: &str = "oauth-token";

/// A compiled `rate_limits` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Unique among the rate limits: `name` as written, else `{scope}:{endpoint}`
    /// (`user:/api/v1/search`). Printable ASCII without space, `"` or `\`, 1 to
    /// [`MAX_RATE_LIMIT_NAME`] characters, so it can be written as an RFC 8941
    /// string in `RateLimit-Policy` as it is.
    pub name: String,
    pub endpoint: RateLimitEndpoint,
    /// Requests allowed per `window` (> 0).
    pub limit: u64,
    /// From [`MIN_RATE_LIMIT_WINDOW`] to [`MAX_RATE_LIMIT_WINDOW`].
    pub window: Duration,
    pub scope: RateLimitScope,
    pub algorithm: RateLimitAlgorithm,
    /// Token bucket size: `burst` if set, else `limit`. Equal to `limit` for the
    /// sliding window, so callers never need to special-case it.
    pub burst: u64,
}

impl RateLimit {
    /// Whether this limit applies to a request for `path` that matched `route`.
    pub fn applies_to(&self, route: &Route, path: &str) -> bool {
        match &self.endpoint {
            RateLimitEndpoint::Route(template) => route.template == *template,
            RateLimitEndpoint::Path(p) => path == p,
            RateLimitEndpoint::Prefix(prefix) => prefix_matches(prefix, path),
        }
    }
}

/// `prefix` ends with `/`; like a `/x/*` route it also covers `/x` itself.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix) || path == &prefix[..prefix.len().saturating_sub(1)]
}

/// What a rate limit is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitEndpoint {
    /// A route, by its configured path (template).
    Route(String),
    /// A literal request path that no route is written as (e.g. one served by a
    /// wildcard route).
    Path(String),
    /// Every request path under this prefix (`/api/v1/` from `/api/v1/*`; `/` from `/*`).
    Prefix(String),
}

keywords! {
    /// Whose requests share one counter.
    pub enum RateLimitScope {
        User = "user",
        Ip = "ip",
        Endpoint = "endpoint",
        Client = "client",
    }
}

keywords! {
    #[derive(Default)]
    pub enum RateLimitAlgorithm {
        /// The two-window weighted estimate (the default).
        #[default]
        SlidingWindow = "sliding_window",
        TokenBucket = "token_bucket",
    }
}

/// Default accepted clock skew for `exp`/`nbf` when `auth.jwt.leeway` is absent.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// Default claim that holds a JWT's roles (`auth.jwt.roles_claim`).
pub const DEFAULT_ROLES_CLAIM: &str = "roles";
/// Default size limit of a bearer token (`auth.jwt.max_token_bytes`). It also
/// applies to tokens the cluster issued when `auth.jwt` is absent.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Default lifetime of tokens issued by `POST /oauth/token`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Default `iss` of the tokens the cluster issues (`auth.oauth.issuer`).
pub const DEFAULT_OAUTH_ISSUER: &str = "sluice";
/// Default per-client limit on `POST /oauth/token` (`auth.oauth.token_endpoint_limit`).
pub const DEFAULT_TOKEN_ENDPOINT_LIMIT: Quota = Quota {
    count: 10,
    per: Duration::from_secs(60),
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Checked against `iss` when set.
    pub issuer: Option<String>,
    /// Checked against `aud` when set.
    pub audience: Option<String>,
    pub leeway: Duration,
    /// The claim that holds the caller's roles (default `roles`), as written
    /// (trimmed, non-empty). Its value is an array of strings or a space-separated
    /// string; `scope` is the fallback when it is absent.
    pub roles_claim: String,
    /// Tokens longer than this many bytes are refused before any decoding (default
    /// 8192, > 0).
    pub max_token_bytes: usize,
    /// Non-empty, unique `kid`s.
    pub keys: Vec<JwtKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKey {
    pub kid: String,
    pub alg: JwtAlg,
    pub material: JwtKeyMaterial,
}

keywords! {
    /// `auth.jwt.keys[].alg`: the algorithms a key verifies.
    pub enum JwtAlg {
        RS256 = "RS256",
        RS384 = "RS384",
        RS512 = "RS512",
        /// ECDSA with P-256 and SHA-256.
        ES256 = "ES256",
        HS256 = "HS256",
        HS384 = "HS384",
        HS512 = "HS512",
    }
}

impl JwtAlg {
    /// HMAC (shared secret) rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, JwtAlg::HS256 | JwtAlg::HS384 | JwtAlg::HS512)
    }

    /// RSA PKCS#1 v1.5 (an RSA public key).
    pub fn is_rsa(self) -> bool {
        matches!(self, JwtAlg::RS256 | JwtAlg::RS384 | JwtAlg::RS512)
    }

    /// ECDSA (an EC public key on the algorithm's curve).
    pub fn is_ec(self) -> bool {
        matches!(self, JwtAlg::ES256)
    }
}

/// Key bytes as text. `Debug` hides HMAC secrets so a logged `Gateway` leaks nothing.
///
/// The PEM variants hold the text as configured (a file's whole content). Validation
/// has checked that its first PEM block is a public key of the kind the variant
/// names (see `pem.rs`): jsonwebtoken's `DecodingKey::from_rsa_pem` /
/// `from_ec_pem` should accept it, and a failure there is a bug worth logging.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKeyMaterial {
    /// PEM text of an RSA public key of 2048 to 8192 bits (`-----BEGIN PUBLIC
    /// KEY-----`, SPKI, or `-----BEGIN RSA PUBLIC KEY-----`, PKCS#1), for RS*.
    RsaPublicPem(String),
    /// PEM text of an EC P-256 public key (`-----BEGIN PUBLIC KEY-----`, SPKI),
    /// for ES256.
    EcPublicPem(String),
    /// HMAC shared secret (non-empty).
    HmacSecret(String),
}

impl std::fmt::Debug for JwtKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeyMaterial::RsaPublicPem(pem) => f.debug_tuple("RsaPublicPem").field(pem).finish(),
            JwtKeyMaterial::EcPublicPem(pem) => f.debug_tuple("EcPublicPem").field(pem).finish(),
            JwtKeyMaterial::HmacSecret(_) => f.write_str("HmacSecret(<redacted>)"),
        }
    }
}

/// `auth.oauth`: the tokens the cluster issues itself (`POST /oauth/token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// `iss` of issued tokens, and what a token claiming to be the cluster's own
    /// is checked against (default `sluice`, non-empty).
    pub issuer: String,
    /// Lifetime of issued tokens (default 1 h).
    pub token_ttl: Duration,
    /// Per-client limit on `POST /oauth/token` (default 10/min); `None` when
    /// configured as `unlimited`.
    pub token_endpoint_limit: Option<Quota>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            issuer: DEFAULT_OAUTH_ISSUER.to_owned(),
            token_ttl: DEFAULT_TOKEN_TTL,
            token_endpoint_limit: Some(DEFAULT_TOKEN_ENDPOINT_LIMIT),
        }
    }
}

/// `N` requests per `per` (from `N/sec`, `N/min`, `N/hour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u64,
    pub per: Duration,
}
