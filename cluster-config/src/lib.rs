//! `cluster-config` owns Sluice's model of the world: the configuration schema
//! (node settings and the replicated gateway config), loading a directory of YAML
//! files, validation that reports *every* error with its file and key path, and the
//! compiled, immutable forms the data plane reads (`Gateway`, `RouteTable`).
//!
//! It must never do I/O beyond reading config files, and never hold runtime state:
//! everything here is a value that is built whole, validated, then swapped in.
//!
//! Start reading at [`load_dir`] (files → [`LoadedConfig`]) and [`Gateway::compile`]
//! (spec → what the request path uses; the checks live in `validate.rs`, with
//! the public-key checks of JWT keys in `pem.rs`, the unknown-key, key-path and
//! type-error reporting in `de.rs`, the route table in [`routes`]).
#![forbid(unsafe_code)]

#[macro_use]
mod keyword;
mod de;
pub mod error;
pub mod gateway;
pub mod load;
pub mod node;
mod pem;
pub mod routes;
pub mod schema;
pub mod validate;
pub mod webhooks;

#[cfg(test)]
mod testutil;

pub use error::{ConfigError, ConfigErrors};
pub use gateway::{
    AuthMode, CircuitBreakerConfig, Gateway, HealthCheckConfig, JwtAlg, JwtConfig, JwtKey,
    JwtKeyMaterial, OAuthConfig, Quota, RateLimit, RateLimitAlgorithm, RateLimitEndpoint,
    RateLimitScope, Route, Service, Upstream, TOKEN_ENDPOINT_POLICY,
};
/// Route methods are `http` 0.2 methods: the type actix-web hands the data plane.
pub use http::Method;
pub use load::{
    load_dir, load_dir_with_env, parse_gateway_json, substitute_env, LoadedConfig, Origins,
};
pub use node::{AdminTls, LogFormat, NodeConfig, TlsFiles, TrustedProxies};
pub use routes::{RouteMatch, RouteTable};
pub use schema::{GatewaySpec, LoadBalancing};
