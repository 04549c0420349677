//! The compiled gateway config: typed, validated, immutable. The data plane holds
//! one `Arc<Gateway>` behind an `ArcSwap` and replaces it whole on change.

use crate::load::Origins;
use crate::routes::RouteTable;
use crate::schema::{GatewaySpec, LoadBalancing};
use crate::ConfigErrors;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Default upstream timeout (per service, overridable per route).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Gateway {
    /// The spec this was compiled from (what `GET /admin/config` returns).
    pub spec: GatewaySpec,
    pub services: BTreeMap<String, Arc<Service>>,
    pub routes: RouteTable,
}

impl Gateway {
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Must start with `/` (default `/health`).
    pub path: String,
    /// Default 5 s.
    pub interval: Duration,
    /// Default 2 s.
    pub timeout: Duration,
    /// Consecutive passes that bring a target back (default 2).
    pub healthy_after: u32,
    /// Consecutive failures that take it out (default 3).
    pub unhealthy_after: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Jwt,
    ApiKey,
    Any,
}

/// A compiled route. `template` is the metric label (never the raw request path).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: String,
    /// The path as configured (`/api/v1/users/:id`).
    pub template: String,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    pub service: String,
    /// Route timeout if set, else the service's.
    pub timeout: Duration,
    pub auth: AuthMode,
    pub roles: Vec<String>,
}

impl Route {
    pub fn allows(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}
